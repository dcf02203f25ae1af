/* hf_models.h - Hugging Face model folders in the model cache
 * (engines/asr/whisper/models.h): a table of repositories, each pulled as
 * a folder <cache>/NAME - translation models (OPUS-MT pairs, NLLB-200,
 * M2M100) that `--mt-models NAME` loads, and neural voices (VITS: Meta's
 * MMS-TTS, kakao-enterprise's vits-ljs and vits-vctk) that
 * `--tts-models NAME` loads.
 *
 * Every file is checked against the publisher's hashes: the repository's
 * listing, GET <endpoint>/api/models/<repo>/tree/<revision>, gives each
 * file's git blob id ("oid": SHA-1 of "blob <size>" NUL content) and, for
 * files kept in LFS, the SHA-256 of the content ("lfs": {"oid", "size"});
 * the files come from <endpoint>/<repo>/resolve/<revision>/<path>.  Only
 * the files the loaders read are fetched.  The folder is staged as
 * <cache>/NAME.part/ (each file as FILE.part, resumed with HTTP Range and
 * renamed to FILE once its hash matched) and renamed to <cache>/NAME when
 * all are in: a folder under its own name is complete, and a later pull
 * leaves it alone. */
#ifndef AT_TOOLS_HF_MODELS_H
#define AT_TOOLS_HF_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define AT_HF_DEFAULT_ENDPOINT "https://huggingface.co"

typedef enum {
    AT_HF_MODELS_MARIAN = 1, /* OPUS-MT: source.spm, target.spm, vocab.json */
    AT_HF_MODELS_NLLB = 2,   /* sentencepiece.bpe.model */
    AT_HF_MODELS_M2M100 = 3, /* sentencepiece.bpe.model, vocab.json */
    AT_HF_MODELS_VITS = 4    /* a voice: vocab.json, tokenizer_config.json; no generation config */
} at_hf_models_kind;

typedef struct at_hf_model_info {
    const char *name;     /* the cache folder; Marian: ends in opus-mt-SRC-TGT;
                             VITS: the voice's name (MMS: mms-tts-ISO639-3) */
    const char *repo;     /* "Helsinki-NLP/opus-mt-en-es" */
    const char *revision; /* branch, tag or commit */
    at_hf_models_kind kind;
    uint32_t max_mib; /* bound on the fetched files together */
} at_hf_model_info;

const at_hf_model_info *at_hf_models_table(size_t *n);
const at_hf_model_info *at_hf_models_find(const char *name);
/* "marian", "nllb", "m2m100", "vits". */
const char *at_hf_models_kind_name(at_hf_models_kind kind);

typedef struct at_hf_models_pull_opts {
    const char *endpoint; /* NULL: AT_HF_ENDPOINT, else AT_HF_DEFAULT_ENDPOINT */
    int progress;         /* 1 bars on stderr, 0 none, -1 when stderr is a TTY */
    const char *dir;      /* NULL: at_models_dir() */
} at_hf_models_pull_opts;

/* Pulls the folder of table entry NAME; path receives <cache>/NAME.  An
 * unknown name fails with AT_E_INVALID and the known names; a listing that
 * is not a JSON array of files, or that names a path outside the folder,
 * with AT_E_CORRUPT, as does a file whose content does not match its
 * listed hash (it is not installed). */
int at_hf_models_pull(const char *name, const at_hf_models_pull_opts *o, char *path, size_t cap, at_err *err);

#endif
