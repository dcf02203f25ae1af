/* tokenizer.h - the tokenizers of Hugging Face translation folders, on top
 * of SentencePiece (spm.h), with the id rules of transformers' slow
 * tokenizers (tokenization_marian.py, tokenization_nllb.py,
 * tokenization_m2m_100.py):
 *
 *   Marian (OPUS-MT): source.spm encodes, vocab.json maps pieces to model
 *     ids (unknown -> <unk>), </s> appended; a leading ">>xxx<<" target
 *     language code is one token.  target.spm decodes, through
 *     target_vocab.json when the folder has separate vocabularies.
 *   NLLB-200: sentencepiece.bpe.model with the fairseq ids (<s>=0, <pad>=1,
 *     </s>=2, <unk>=3, spm id + 1 for the rest), the 202 language codes
 *     (eng_Latn, ...) after the spm vocabulary, then <mask>.  Source ids:
 *     [src_lang] tokens </s> (the non-legacy behaviour; legacy_behaviour in
 *     tokenizer_config.json gives tokens </s> [src_lang]).
 *   M2M100: sentencepiece.bpe.model + vocab.json, "__xx__" tokens for its
 *     100 languages after the vocabulary; source ids: __src__ tokens </s>.
 *
 * Text is plain text: special-token strings in it are not interpreted
 * (except Marian's leading >>xxx<<).  Decoding skips special tokens and
 * language tokens.  Immutable once loaded: share between threads. */
#ifndef AT_ENGINES_MT_NMT_TOKENIZER_H
#define AT_ENGINES_MT_NMT_TOKENIZER_H

#include <stddef.h>

#include "core/error.h"
#include "engines/mt/nmt/spm.h"

typedef enum { AT_NMT_TOK_MARIAN = 1, AT_NMT_TOK_NLLB = 2, AT_NMT_TOK_M2M100 = 3 } at_nmt_tok_kind;

typedef struct at_nmt_tok at_nmt_tok;

/* Loads the tokenizer files of a model folder; the kind comes from
 * config.json's model_type ("marian", "m2m_100", "nllb*") when present,
 * else from the files (source.spm -> Marian; sentencepiece.bpe.model with
 * vocab.json -> M2M100, without -> NLLB).  AT_E_IO when none is there. */
at_nmt_tok *at_nmt_tok_load(const char *dir, at_err *err);
void at_nmt_tok_free(at_nmt_tok *t);

at_nmt_tok_kind at_nmt_tok_kind_of(const at_nmt_tok *t);
/* Number of model ids the tokenizer knows (vocabulary + language tokens). */
int at_nmt_tok_vocab_size(const at_nmt_tok *t);
int at_nmt_tok_eos_id(const at_nmt_tok *t);
int at_nmt_tok_pad_id(const at_nmt_tok *t);
int at_nmt_tok_unk_id(const at_nmt_tok *t);

/* Source text -> model input ids (malloc'd into *ids, *n of them), with
 * the model's special tokens.  src_lang names the source language for
 * NLLB/M2M100 (NULL: transformers' default, English; see lang_id for the
 * accepted spellings); Marian ignores it. */
int at_nmt_tok_encode(const at_nmt_tok *t, const char *src_lang, const char *text, size_t len, int **ids,
                      int *n, at_err *err);
/* Model output ids -> text (malloc'd), special and language tokens skipped. */
int at_nmt_tok_decode(const at_nmt_tok *t, const int *ids, int n, char **out, at_err *err);

/* The model id of a language token: NLLB codes ("spa_Latn") or, where the
 * mapping is obvious, ISO 639-1/639-3 ("es", "spa"); M2M100 codes ("es",
 * "__es__", or "spa_Latn"); Marian ">>spa<<" tokens of multilingual models
 * ("spa", ">>spa<<" or "es").  -1 when the model has no such language. */
int at_nmt_tok_lang_id(const at_nmt_tok *t, const char *lang);
/* The languages the tokenizer has tokens for, in id order, as the model
 * names them ("eng_Latn", "en", ">>spa<<"): i from 0 until NULL. */
const char *at_nmt_tok_lang(const at_nmt_tok *t, int i);

/* The SentencePiece model that encodes source text. */
const at_spm *at_nmt_tok_source_spm(const at_nmt_tok *t);

#endif
