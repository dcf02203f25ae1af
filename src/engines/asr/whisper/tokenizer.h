/* tokenizer.h - Whisper's byte-level BPE tokenizer (GPT-2 style) and its
 * special tokens.
 *
 * Token ids [0, n_text) are text tokens (byte strings); the special tokens
 * follow in OpenAI's order: eot, sot, one token per language, translate,
 * transcribe, startoflm, startofprev, nospeech, notimestamps, then 1501
 * timestamps <|0.00|> .. <|30.00|>.  So the whole layout follows from
 * n_text and the number of languages (see at_wtok_layout).
 *
 * Vocabularies come from a whisper.cpp ggml file (raw byte strings by id,
 * no merges: merge ranks are the token ids, as in OpenAI's tiktoken files)
 * or from Hugging Face files (vocab.json + merges.txt, or tokenizer.json),
 * whose strings use GPT-2's byte-to-unicode mapping.
 *
 * A tokenizer is immutable once built: share it between threads freely. */
#ifndef AT_ENGINES_ASR_WHISPER_TOKENIZER_H
#define AT_ENGINES_ASR_WHISPER_TOKENIZER_H

#include <stddef.h>

#include "core/error.h"
#include "engines/asr/whisper/model.h"

#define AT_WTOK_N_TIMESTAMPS     1501 /* <|0.00|> .. <|30.00|>, 0.02 s apart */
#define AT_WTOK_MAX_LANGS        100
/* Longest text at_wtok_encode accepts (BPE is quadratic in a word). */
#define AT_WTOK_MAX_ENCODE_BYTES 16384

typedef struct at_wtok at_wtok;

/* Special token ids for a vocabulary of n_text text tokens and n_langs
 * language tokens (OpenAI's get_encoding order). */
void at_wtok_layout(int n_text, int n_langs, at_whisper_special *out);
/* The layout OpenAI derives from a model's n_vocab (51864 = .en,
 * 51865 = multilingual, 51866 = large-v3).  Fails for sizes that cannot
 * hold the special tokens. */
int at_wtok_layout_from_n_vocab(int n_vocab, at_whisper_special *out, at_err *err);

/* From raw byte strings by id (the ggml vocabulary).  Entries at or past
 * eot are ignored (ggml files may list special names); missing ids decode
 * to nothing.  Merge ranks are the token ids. */
at_wtok *at_wtok_new_bytes(const char *const *tokens, const size_t *lens, size_t n_tokens,
                           const at_whisper_special *sp, at_err *err);
/* From a Hugging Face model folder: tokenizer.json, else vocab.json +
 * merges.txt.  Fails with AT_E_IO when neither exists. */
at_wtok *at_wtok_new_hf_dir(const char *dir, const at_whisper_special *sp, at_err *err);
/* The same from explicit files (merges_txt may be NULL: ranks = ids). */
at_wtok *at_wtok_new_hf_files(const char *vocab_json, const char *merges_txt, const at_whisper_special *sp,
                              at_err *err);
at_wtok *at_wtok_new_hf_tokenizer_json(const char *path, const at_whisper_special *sp, at_err *err);
void at_wtok_free(at_wtok *t);

const at_whisper_special *at_wtok_special(const at_wtok *t);
/* Number of text tokens (= eot). */
int at_wtok_n_text(const at_wtok *t);

/* Raw bytes of a text token; NULL (and *len 0) for specials / unknown. */
const char *at_wtok_bytes(const at_wtok *t, int id, size_t *len);

/* Text of the text tokens among ids (specials and timestamps are skipped),
 * as valid UTF-8: invalid byte sequences become U+FFFD like Python's
 * errors="replace".  Returns a NUL-terminated malloc'd string. */
char *at_wtok_decode(const at_wtok *t, const int *ids, size_t n, at_err *err);
/* Like decode but also writes specials as "<|name|>" and timestamps as
 * "<|1.24|>" (for logs and debugging). */
char *at_wtok_decode_with_timestamps(const at_wtok *t, const int *ids, size_t n, at_err *err);

/* Encodes text (plain text, never special tokens) into *ids (malloc'd,
 * caller frees) with GPT-2's pre-tokenizer and BPE merges. */
int at_wtok_encode(const at_wtok *t, const char *text, size_t len, int **ids, size_t *n, at_err *err);

/* OpenAI's non_speech_tokens(): ids to suppress so the model does not
 * write speaker tags, music symbols and the like.  Sorted, malloc'd. */
int at_wtok_non_speech_tokens(const at_wtok *t, int **ids, size_t *n, at_err *err);

/* Language code <-> token.  Codes follow OpenAI's LANGUAGES order. */
int at_wtok_lang_token(const at_wtok *t, const char *code); /* -1: none */
const char *at_wtok_lang_code(const at_wtok *t, int token); /* NULL: none */
/* NULL-terminated list of the first n_langs codes (static storage);
 * n_langs is clamped to [0, AT_WTOK_MAX_LANGS]. */
const char *const *at_wtok_languages(int n_langs);

/* Timestamp token helpers: id of <|i*0.02|>, and back (-1 if not one). */
int at_wtok_is_timestamp(const at_wtok *t, int id);

#endif
