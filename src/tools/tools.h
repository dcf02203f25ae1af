/* tools.h - developer and operator tools of the CLI, apart from the
 * runtime engines the services link: the model cache's downloads (libcurl,
 * OpenSSL's SHA-256), the ggml converter, random-weight models of the
 * official shapes, and whisper-check (one window decoded from a file).
 * Only the `audio-translator` binary, the tests and the benches link them. */
#ifndef AT_TOOLS_TOOLS_H
#define AT_TOOLS_TOOLS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ---- Whisper model files ---------------------------------------------- */

/* Writes a ggml .bin (whisper.cpp format) from a model (ggml file or
 * Hugging Face folder).  type: "f32", "f16", "q8_0", "q5_0", "q5_1",
 * "q4_0" or "q4_1" for the 2-D weight matrices; norms, biases and
 * positional embeddings stay f32, convolution kernels f16 (f32 for "f32"),
 * as whisper.cpp's converter and quantizer do.  The vocabulary comes from
 * vocab.json of a HF folder (GPT-2 byte-level strings decoded to bytes);
 * without one, placeholder tokens "[_tok_<id>]" are written. */
int at_whisper_convert(const char *in_path, const char *out_path, const char *type, at_err *err);
/* `audio-translator whisper-convert --model IN --out FILE --type T`. */
int at_whisper_convert_main(int argc, char **argv);

/* Writes a random-weight ggml model of an official shape.  preset: tiny,
 * tiny.en, base, base.en, small, small.en, medium, medium.en, large-v3,
 * large-v3-turbo; type as for at_whisper_convert. */
int at_whisper_random_model(const char *preset, const char *type, const char *out_path, uint64_t seed,
                            at_err *err);
/* The options of both random-model commands (--preset, --type, --out,
 * --seed, --help): 0 to go on, 1 after printing usage for --help, 2 on a
 * bad or missing option (usage on stderr). */
int at_tools_random_model_opts(int argc, char **argv, const char *cmd, const char *usage, const char **preset,
                               const char **type, const char **out, unsigned long long *seed);
/* `audio-translator whisper-random-model --preset P --type T --out FILE`. */
int at_whisper_random_model_main(int argc, char **argv);

/* ---- translation model folders ---------------------------------------- */

/* Writes a Hugging Face folder (config.json, generation_config.json,
 * model.safetensors) of a published translation model's shape with random
 * weights: preset opus-mt-base, nllb-600m or m2m100-418m (tests also use
 * tiny and tiny-m2m100); type "f16" or "f32".  n_params (may be NULL)
 * receives the parameters written. */
int at_nmt_random_model(const char *preset, const char *type, const char *out_dir, uint64_t seed,
                        int64_t *n_params, at_err *err);
/* `audio-translator nmt-random-model --preset P --out DIR [--type T]`. */
int at_nmt_random_model_main(int argc, char **argv);

/* ---- VITS voices ------------------------------------------------------- */

/* Writes a Hugging Face VitsModel folder (config.json, model.safetensors)
 * of a published voice's shape with random weights: preset mms-tts
 * (facebook/mms-tts-eng) or vits-ljs (kakao-enterprise/vits-ljs); tests
 * use tiny (two speakers) and tiny-phonemes (one, with vits-ljs's 178
 * symbols).  type "f16" or "f32".  n_params (may be NULL) receives the
 * parameters written. */
int at_vits_random_model(const char *preset, const char *type, const char *out_dir, uint64_t seed,
                         int64_t *n_params, at_err *err);
/* `audio-translator vits-random-model --preset P --out DIR [--type T]`. */
int at_vits_random_model_main(int argc, char **argv);

/* ---- the model cache (engines/asr/whisper/models.h) -------------------- */

typedef struct at_models_pull_opts {
    const char *url_base; /* NULL: AT_MODELS_URL, else the table's URL or
                             AT_MODELS_DEFAULT_URL; a base gets /<file name> */
    const char *sha256;   /* pins a hash (overrides the table); NULL = table */
    int progress;         /* 1 bar on stderr, 0 none, -1 when stderr is a TTY */
    const char *dir;      /* NULL: at_models_dir() */
} at_models_pull_opts;

/* Downloads NAME into the cache (resuming a .part file), verifies it and
 * renames it into place; path receives the installed file. */
int at_models_pull(const char *name, const at_models_pull_opts *o, char *path, size_t cap, at_err *err);

/* SHA-256 of a file as 64 lowercase hex digits. */
int at_sha256_file(const char *path, char hex[65], at_err *err);
/* Git's blob id of a file (SHA-1 of "blob <size>", a NUL, the content) as
 * 40 lowercase hex digits: what a Hugging Face listing gives for files
 * outside LFS. */
int at_git_blob_sha1_file(const char *path, char hex[41], at_err *err);

/* Downloads url into part, appending to what part already holds (HTTP
 * Range; a server that ignores it starts the file over).  max_bytes caps
 * the whole file (AT_E_TOO_LARGE, part removed); label names it in the
 * messages and the bar.  0 when part holds the whole file, unchecked. */
int at_models_fetch(const char *url, const char *part, int64_t max_bytes, int progress, const char *label,
                    at_err *err);
/* mkdir -p. */
int at_models_mkdirs(const char *path, at_err *err);

/* `audio-translator models list|pull|path ...`: argv[0] is "models". */
int at_models_main(int argc, char **argv);

/* ---- checks ------------------------------------------------------------ */

/* `audio-translator whisper-check ...`: argv[0] is "whisper-check". */
int at_whisper_check_main(int argc, char **argv);
/* `audio-translator mt-check ...`: argv[0] is "mt-check". */
int at_mt_check_main(int argc, char **argv);
/* `audio-translator tts-check ...`: argv[0] is "tts-check". */
int at_tts_check_main(int argc, char **argv);

/* Option values: a decimal integer in lo..hi; comma-separated token ids
 * (at most cap, each 0..1000000).  0, or -1 when malformed. */
int at_tools_parse_int(const char *s, int lo, int hi, int *out);
int at_tools_parse_ids(const char *s, int *toks, int cap, int *n);
/* Prints a check's JSON result on stdout, then frees it. */
struct cJSON;
void at_tools_print_json(struct cJSON *j);

#endif
