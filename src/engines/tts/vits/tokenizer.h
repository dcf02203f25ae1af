/* tokenizer.h - the tokenizer of Hugging Face VITS voices (transformers'
 * VitsTokenizer): UTF-8 text to the input ids of the VITS text encoder.
 *
 * A voice folder holds vocab.json ({"character": id, ...}) and
 * tokenizer_config.json (add_blank, normalize, phonemize, is_uroman,
 * language, pad_token, unk_token).  Two kinds of voices:
 *   - character voices (Meta's MMS-TTS, facebook/mms-tts-<iso639-3>,
 *     "phonemize": false): the text is lowercased where a character is not
 *     in the vocabulary itself, characters outside the vocabulary dropped;
 *   - phoneme voices (kakao-enterprise/vits-ljs, vits-vctk, "phonemize":
 *     true): the text goes through espeak-ng as the Python package
 *     phonemizer does it; at_vits does not link espeak-ng, the caller hands
 *     a phonemiser in (at_espeak_phonemizer in engines/tts/espeak.h).
 * Then each character of the result is one token, and with add_blank the
 * blank id 0 goes before, between and after them.
 *
 * What VitsTokenizer does, step by step, and what we do differently:
 *   1. normalize (config, default true): at each position the first
 *      vocabulary entry (file order, then the pad and unk tokens) that the
 *      text continues with is kept as is, else the character is lowercased
 *      with Python's str.lower() (Unicode 14 tables here).
 *   2. language "ron": U+021B (t comma) becomes U+0163 (t cedilla).
 *   3. is_uroman and a character outside ASCII: Python romanises with the
 *      uroman package; we fail with AT_E_UNSUPPORTED ("this voice needs
 *      uroman romanisation, which is not supported").  Pure ASCII text
 *      goes on, as in Python.
 *   4. phonemize: phonemizer.phonemize(text, language="en-us", ...) - the
 *      language is "en-us" whatever the config says, as transformers has
 *      it - then every whitespace run becomes one space.  Otherwise, with
 *      normalize, characters not in the vocabulary are dropped and the
 *      ends stripped of whitespace.
 *   5. the pad and unk tokens split the text (they are special tokens): a
 *      special token found in the text is one token, without blanks around
 *      it; the pieces between them are tokenised on their own.  A special
 *      token that is not in vocab.json (Python gives it an id past the
 *      vocabulary, which the model cannot embed) is dropped here.
 *   6. characters: a character not in the vocabulary becomes the unk id
 *      when unk_token is in vocab.json; otherwise (Python yields None and
 *      fails later) it is dropped, before the blanks go in.
 * Not read: special_tokens_map.json and tokenizer_config's
 * added_tokens_decoder (pad and unk come from tokenizer_config.json, as
 * plain tokens: no lstrip/rstrip), and do_lower_case (VitsTokenizer has no
 * such attribute, transformers ignores it too).
 *
 * A tokenizer is immutable once loaded: share it between threads. */
#ifndef AT_ENGINES_TTS_VITS_TOKENIZER_H
#define AT_ENGINES_TTS_VITS_TOKENIZER_H

#include <stddef.h>

#include "core/error.h"

/* Longest text at_vits_tokenizer_encode accepts, in bytes (the engine
 * gives it a sentence at a time).  Longer text is AT_E_TOO_LARGE. */
#define AT_VITS_TOK_MAX_TEXT   65536
/* Largest vocab.json / tokenizer_config.json read, in bytes. */
#define AT_VITS_TOK_MAX_FILE   (1 << 20)
/* Most vocabulary entries, and the bound on their ids (exclusive). */
#define AT_VITS_TOK_MAX_TOKENS 65536
#define AT_VITS_TOK_MAX_ID     65536

/* Turns text into phonemes for `language` (an espeak-ng language code):
 * *out is a malloc'd UTF-8 string the tokenizer frees.  Returns 0, or a
 * negative at_status with err set. */
typedef int (*at_vits_phonemize_fn)(void *user, const char *language, const char *text, char **out,
                                    at_err *err);

typedef struct at_vits_tokenizer at_vits_tokenizer;

/* dir: vocab.json + tokenizer_config.json (a missing config means
 * VitsTokenizer's defaults: add_blank, normalize and phonemize true). */
at_vits_tokenizer *at_vits_tokenizer_load(const char *dir, at_err *err);
/* The same from the files' contents; config_json may be NULL (defaults). */
at_vits_tokenizer *at_vits_tokenizer_load_mem(const char *vocab_json, size_t vocab_len,
                                              const char *config_json, size_t config_len, at_err *err);
void at_vits_tokenizer_free(at_vits_tokenizer *t);

/* Nonzero when encode needs a phonemiser. */
int at_vits_tokenizer_phonemizes(const at_vits_tokenizer *t);
/* Nonzero when the config asks for uroman (encode then refuses text with
 * characters outside ASCII). */
int at_vits_tokenizer_needs_uroman(const at_vits_tokenizer *t);
/* tokenizer_config's "language" (MMS: ISO 639-3 "eng"; vits-ljs: "en-us"),
 * or "". */
const char *at_vits_tokenizer_language(const at_vits_tokenizer *t);
/* The language handed to the phonemiser: "en-us", as transformers does. */
const char *at_vits_tokenizer_phoneme_language(const at_vits_tokenizer *t);
/* Number of entries in vocab.json, and 1 + the largest id. */
int at_vits_tokenizer_vocab_size(const at_vits_tokenizer *t);
int at_vits_tokenizer_max_id(const at_vits_tokenizer *t);

/* text (UTF-8, at most AT_VITS_TOK_MAX_TEXT bytes) -> *ids (malloc'd, the
 * caller frees), *n.  phonemize may be NULL for character voices.  Fails
 * with AT_E_INVALID on invalid UTF-8 and when no token is left (empty
 * text, or only characters the voice does not know). */
int at_vits_tokenizer_encode(const at_vits_tokenizer *t, const char *text, at_vits_phonemize_fn phonemize,
                             void *user, int **ids, int *n, at_err *err);

#endif
