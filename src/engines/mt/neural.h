/* neural.h - translation with Hugging Face models: MarianMT (OPUS-MT, one
 * model per pair, or one source to several targets chosen by a >>xxx<<
 * token) and M2M100 / NLLB-200 (many to many, the target language forced
 * as the first generated token), on the models, tokenizers and search of
 * engines/mt/nmt.
 *
 * A text is split into sentences (long ones at spaces), and the sentences
 * of a call, and of the calls that arrive while a model is busy, are
 * translated as one batch: the caller that finds the model idle takes
 * every queued sentence, runs them together, and hands each caller its
 * own; the others wait.  Sentence separators are kept as they were.
 *
 * Pairs use ISO 639-1 codes.  A Marian folder's pair comes from its name
 * (opus-mt-en-es, as downloaded) or from tokenizer_config.json's
 * source_lang / target_lang; a many-to-many model gives every pair of the
 * languages its tokenizer has.  When several models have a pair, the
 * first Marian model given wins, then the first many-to-many one. */
#ifndef AT_ENGINES_MT_NEURAL_H
#define AT_ENGINES_MT_NEURAL_H

#include "engines/mt/mt.h"

typedef struct at_mt_neural_config {
    int threads;      /* compute threads (0: every core) */
    int num_beams;    /* 0: each model's generation config */
    int max_batch;    /* sentences per batch (0: 32) */
    int max_sentence; /* bytes of a sentence before it is cut at a space (0: 400) */
    int q8;           /* matrices quantized to q8_0 at load (faster, a quarter of f32's memory) */
} at_mt_neural_config;

/* dirs: Hugging Face folders (config.json, model.safetensors or
 * pytorch_model.bin, the tokenizer files, generation_config.json). */
at_mt_engine *at_mt_neural_new(const char *const *dirs, int n, const at_mt_neural_config *cfg, at_err *err);

/* Splits text into sentences: spans [start, end) of text, each followed by
 * the separator text[end..next start).  A sentence ends after . ! ? and
 * their CJK and ellipsis forms (with closing quotes and brackets) before
 * whitespace, and at a line break; one longer than max_bytes is cut at its
 * last space (or a UTF-8 boundary) before the limit.  Returns the number
 * of spans (at most cap; 0 for text of only whitespace). */
typedef struct at_mt_span {
    size_t start, end;
} at_mt_span;
size_t at_mt_split_sentences(const char *text, size_t max_bytes, at_mt_span *spans, size_t cap);

#endif
