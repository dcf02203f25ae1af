/* model_internal.h - shared between the Whisper loaders, the model, the
 * converter and the tools.  Not a public interface.
 *
 * Both loaders produce the same thing: a weight table (nn/weights.h)
 * pointing into a memory-mapped file, using OpenAI/whisper.cpp tensor
 * names ("encoder.blocks.0.attn.query.weight") and PyTorch shape order
 * (outermost dimension first); Hugging Face names are mapped to them. */
#ifndef AT_ENGINES_ASR_WHISPER_MODEL_INTERNAL_H
#define AT_ENGINES_ASR_WHISPER_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "compute/backend.h"
#include "engines/asr/whisper/model.h"
#include "nn/weights.h"

/* What a loader hands to the model builder. */
typedef struct at_wsource {
    at_nn_weights w; /* OpenAI/whisper.cpp names, PyTorch shapes, into the mapped file */
    at_whisper_hparams hp;
    /* ggml only: mel filters and vocabulary inside the map */
    const uint8_t *filters; /* n_filt_mel x n_filt_fft floats, LE, unaligned */
    int n_filt_mel, n_filt_fft;
    size_t n_tokens;
    const uint8_t **tok; /* owned array of pointers into the map */
    size_t *tok_len;     /* owned */
    int is_hf;
    /* generation_config.json's alignment heads (Hugging Face only) */
    at_whisper_head heads[AT_WHISPER_MAX_HEADS];
    int n_heads;
} at_wsource;

void at_wsource_free(at_wsource *s);

/* Checks hparams for sane, bounded values (untrusted input). */
int at_whisper_hparams_check(const at_whisper_hparams *hp, const char *what, at_err *err);

int at_whisper_ggml_open(const char *path, at_wsource *out, at_err *err);
int at_whisper_hf_open(const char *dir, at_wsource *out, at_err *err);

/* Model from a source (takes ownership of src's contents on success and
 * failure). */
at_whisper_model *at_whisper_model_from_source(at_wsource *src, int device, at_err *err);
/* The model's tensor table (for the converter). */
const at_wsource *at_whisper_model_source(const at_whisper_model *m);

/* ggml writer */
typedef struct at_ggml_writer at_ggml_writer;
at_ggml_writer *at_ggml_writer_open(const char *path, const at_whisper_hparams *hp, at_err *err);
/* vocabulary: n tokens; toks[i] of lens[i] bytes. */
int at_ggml_writer_header(at_ggml_writer *w, const float *filters, int n_mel, int n_fft, size_t n_tok,
                          const char *const *toks, const size_t *lens, at_err *err);
/* Writes a tensor from f32 rows produced by a callback, converting to
 * type.  shape in PyTorch order; rows = product of all but the last dim. */
typedef int (*at_row_fn)(void *user, int64_t row, float *dst, int n);
int at_ggml_writer_tensor(at_ggml_writer *w, const char *name, int n_dims, const int64_t *shape,
                          at_dtype type, at_row_fn fn, void *user, at_err *err);
int at_ggml_writer_close(at_ggml_writer *w, at_err *err); /* frees w */

/* ftype value for the header (whisper.cpp/ggml's ggml_ftype with the
 * quantization version folded in). */
int at_ggml_ftype_for(at_dtype t);
int at_dtype_from_name(const char *name, at_dtype *out);
/* Storage type a ggml file gets for a tensor when converting to target. */
at_dtype at_whisper_ggml_tensor_type(const char *name, int n_dims, const int64_t *shape, at_dtype target);

#endif
