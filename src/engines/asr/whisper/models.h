/* models.h - the model cache: the official Whisper ggml files and the
 * Silero VAD network by name, downloaded over HTTPS (libcurl) with
 * resumption and a SHA-256 check.
 *
 * The cache folder is AT_MODELS_DIR, else $XDG_CACHE_HOME/audio-translator/
 * models, else ~/.cache/audio-translator/models.  A Whisper model NAME lives
 * there as ggml-NAME.bin (other models under the file name in the table);
 * a download in progress as that name + .part, which a later pull resumes
 * (HTTP Range).  The file is renamed into place only after its SHA-256
 * matched.  A Hugging Face model (src/tools/hf_models.h) is a folder
 * <cache>/NAME, staged as NAME.part/ until every file is verified. */
#ifndef AT_ENGINES_ASR_WHISPER_MODELS_H
#define AT_ENGINES_ASR_WHISPER_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define AT_MODELS_DEFAULT_URL "https://huggingface.co/ggerganov/whisper.cpp/resolve/main"

typedef struct at_model_info {
    const char *name;   /* "tiny", "base.en", "small-q5_1", ... */
    const char *sha256; /* lowercase hex (every entry has one) */
    uint32_t max_mib;   /* upper bound on the size: caps what a server may send */
    const char *url;    /* NULL: <url base>/ggml-NAME.bin */
    const char *file;   /* name in the cache and under a url base; NULL: ggml-NAME.bin */
} at_model_info;

/* The project's table of official ggml files. */
const at_model_info *at_models_table(size_t *n);
const at_model_info *at_models_find(const char *name);

/* The cache folder (not created). */
int at_models_dir(char *out, size_t cap, at_err *err);

/* A model argument: an existing path is returned as is; otherwise a table
 * name (or any plain name) found in the cache gives its cached file.
 * Fails with a message that says how to pull it. */
int at_models_resolve(const char *name_or_path, char *out, size_t cap, at_err *err);
/* The same for a model that is a folder (a translation model, a voice): an existing
 * path, or anything that is not a plain name, is returned as is; a plain
 * name gives <cache>/NAME when that folder is there (`models pull` puts a
 * folder there only once all its files are verified). */
int at_models_resolve_dir(const char *name_or_path, char *out, size_t cap, at_err *err);

/* The file name of model NAME in the cache: the table's, else
 * ggml-NAME.bin (-1 if it does not fit). */
int at_models_file_name(const char *name, char *out, size_t cap);
/* <dir>/<file name of name><suffix> into out (AT_E_INVALID if too long). */
int at_models_cache_file(const char *dir, const char *name, const char *suffix, char *out, size_t cap,
                         at_err *err);

#endif
