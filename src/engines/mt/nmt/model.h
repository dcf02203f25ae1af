/* model.h - neural machine translation models in the Hugging Face
 * encoder-decoder family: MarianMT (OPUS-MT: post-norm, SiLU, sinusoidal
 * positions, scaled embeddings, final_logits_bias) and M2M100 (the
 * NLLB-200 architecture: pre-norm, ReLU, sinusoidal positions offset by
 * 2, final layer norms), built from the shared blocks of nn/layers.h.
 *
 * Weights, encoder and decoder only: no tokenizer and no decoding policy.
 * A model is loaded once from a Hugging Face folder (config.json +
 * model.safetensors or pytorch_model.bin) and shared; a state holds one caller's backend and
 * scratch; a memory holds one source sentence's encoding; a kv cache one
 * target sequence's self-attention keys and values. */
#ifndef AT_ENGINES_MT_NMT_MODEL_H
#define AT_ENGINES_MT_NMT_MODEL_H

#include "compute/backend.h"
#include "core/error.h"

typedef enum { AT_NMT_MARIAN = 1, AT_NMT_M2M100 = 2 } at_nmt_arch;

typedef struct at_nmt_hparams {
    at_nmt_arch arch;
    int vocab, d_model;
    int dec_vocab; /* the logits' width (Marian may have its own target vocabulary) */
    int enc_layers, enc_heads, enc_ffn;
    int dec_layers, dec_heads, dec_ffn;
    int max_pos; /* positions of the source and of the target */
    at_act act;
    int scale_embedding; /* embeddings times sqrt(d_model) */
    int pad_id, eos_id, decoder_start_id;
} at_nmt_hparams;

typedef struct at_nmt_model at_nmt_model;
typedef struct at_nmt_state at_nmt_state;
typedef struct at_nmt_memory at_nmt_memory;
typedef struct at_nmt_kv at_nmt_kv;

/* dir: config.json (model_type "marian" or "m2m_100") and
 * model.safetensors, else pytorch_model.bin (nn/torch_pickle.h). */
at_nmt_model *at_nmt_model_load(const char *dir, at_err *err);
/* The same with the matrices (embeddings, projections) converted at load
 * to matrices (AT_DT_Q8_0: a quarter of f32's memory, faster on CPUs);
 * -1 keeps the file's types. */
at_nmt_model *at_nmt_model_load_as(const char *dir, int matrices, at_err *err);
void at_nmt_model_free(at_nmt_model *m);
const at_nmt_hparams *at_nmt_model_hparams(const at_nmt_model *m);

/* pool: the process's compute pool (the state runs on a client of it). */
at_nmt_state *at_nmt_state_new(const at_nmt_model *m, at_compute *pool, at_err *err);
void at_nmt_state_free(at_nmt_state *s);
const at_nmt_model *at_nmt_state_model(const at_nmt_state *s);

/* Room for one source sentence of up to max_len tokens. */
at_nmt_memory *at_nmt_memory_new(const at_nmt_model *m, int max_len, at_err *err);
void at_nmt_memory_free(at_nmt_memory *mem);

/* Encodes n sentences as one batch (every matrix product over all their
 * tokens, each sentence attending to itself only): sentence i, lens[i]
 * token ids, into mems[i]. */
int at_nmt_encode(at_nmt_state *s, const int *const *src, const int *lens, int n, at_nmt_memory *const *mems,
                  at_err *err);
/* The encoder's output for a memory: len x d_model floats. */
int at_nmt_memory_output(at_nmt_state *s, const at_nmt_memory *mem, float *out, size_t cap, int *len,
                         at_err *err);

at_nmt_kv *at_nmt_kv_new(const at_nmt_model *m, at_err *err);
/* A cache for n_ctx target tokens (1..max positions): a search that stops
 * at max_length tokens needs no more, and the memory is the cache's size. */
at_nmt_kv *at_nmt_kv_new_ctx(const at_nmt_model *m, int n_ctx, at_err *err);
void at_nmt_kv_free(at_nmt_kv *kv);
int at_nmt_kv_copy(at_nmt_kv *dst, const at_nmt_kv *src, at_err *err);
int at_nmt_kv_len(const at_nmt_kv *kv);
void at_nmt_kv_truncate(at_nmt_kv *kv, int n);

/* One sequence of a decoder batch (as at_whisper_seq). */
typedef struct at_nmt_seq {
    at_nmt_kv *kv;
    const int *tokens; /* n new target tokens */
    int n;
    const at_nmt_memory *mem; /* the source it translates */
    float *logits;            /* vocab floats (n x vocab with all_logits); NULL: none */
    int all_logits;
} at_nmt_seq;

/* Runs the decoder on a batch of sequences: one weight pass for all of
 * them (beams, and the sentences of concurrent requests). */
int at_nmt_decode(at_nmt_state *s, const at_nmt_seq *seqs, int n_seqs, at_err *err);

#endif
