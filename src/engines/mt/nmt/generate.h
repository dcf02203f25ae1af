/* generate.h - Hugging Face transformers' generate() for the translation
 * models of model.h: greedy search and beam search, with the logits
 * processors a generation_config.json configures (bad_words_ids, forced
 * BOS/EOS, min_length, no_repeat_ngram_size, renormalize_logits), the
 * length penalty and the three early-stopping rules.
 *
 * The beam search follows transformers' vectorised _beam_search: each step
 * keeps the best max(2, 1 + eos ids) x num_beams continuations, the best
 * num_beams that did not stop go on, and those that stopped among the top
 * num_beams compete for the finished slots with their length-normalised
 * score.  Scores are float32 as torch keeps them, so the same model gives
 * the same tokens.
 *
 * Every sentence of a call decodes in one batch: each step runs the
 * running beams of all unfinished sentences through one at_nmt_decode. */
#ifndef AT_ENGINES_MT_NMT_GENERATE_H
#define AT_ENGINES_MT_NMT_GENERATE_H

#include "engines/mt/nmt/model.h"

#define AT_NMT_MAX_BEAMS    16
#define AT_NMT_MAX_EOS      4
#define AT_NMT_MAX_BAD      256 /* tokens of all bad_words_ids together */
#define AT_NMT_MAX_BAD_SEQS 64

/* early_stopping: false (a heuristic on the best running score), true
 * (stop once num_beams hypotheses finished) or "never". */
typedef enum { AT_NMT_STOP_HEURISTIC = 0, AT_NMT_STOP_EARLY = 1, AT_NMT_STOP_NEVER = 2 } at_nmt_stopping;

typedef struct at_nmt_gen {
    int num_beams;  /* 1: greedy */
    int max_length; /* decoder tokens in all, the start token included */
    int min_length; /* eos forbidden below it */
    float length_penalty;
    at_nmt_stopping early_stopping;
    int decoder_start_id;
    int eos[AT_NMT_MAX_EOS], n_eos;
    int forced_bos_id; /* the first generated token (NLLB's target language); -1 none */
    int forced_eos_id; /* the last token at max_length; -1 none */
    int no_repeat_ngram_size;
    int renormalize; /* log-softmax again after the processors */
    /* bad_words_ids: sequence i is bad[bad_end[i-1]..bad_end[i]) */
    int bad[AT_NMT_MAX_BAD], bad_end[AT_NMT_MAX_BAD_SEQS], n_bad_seqs;
} at_nmt_gen;

/* transformers' defaults for a model: greedy, max_length 20, the model's
 * eos and decoder start. */
void at_nmt_gen_defaults(const at_nmt_model *m, at_nmt_gen *g);
/* The defaults, then config.json's generation keys, then
 * generation_config.json's when that file exists (as transformers reads a
 * folder).  Every value is checked against the model. */
int at_nmt_gen_load(const char *dir, const at_nmt_model *m, at_nmt_gen *g, at_err *err);

/* One sentence to translate. */
typedef struct at_nmt_job {
    const at_nmt_memory *mem; /* its encoded source */
    int forced_bos_id;        /* >= 0: overrides the config's (each sentence its target) */
    int max_length;           /* > 0: a lower max_length for this sentence */
    int *tokens;              /* result, malloc'd: the start token first, eos last when reached */
    int n_tokens;
    float score; /* beam search: the length-normalised log-probability */
} at_nmt_job;

/* Generates for n sentences at once on a state's model; frees nothing the
 * jobs held before. */
int at_nmt_generate(at_nmt_state *s, const at_nmt_gen *g, at_nmt_job *jobs, int n, at_err *err);

/* What the search needs of a decoder: a model's (at_nmt_generate), or a
 * test's language model.  Its caches are opaque to the search, which only
 * creates, copies and frees them through these functions. */
typedef struct at_nmt_decoder {
    void *user;
    int vocab, max_pos;
    int (*decode)(void *user, const at_nmt_seq *seqs, int n, at_err *err);
    at_nmt_kv *(*kv_new)(void *user, int n_ctx, at_err *err); /* room for n_ctx tokens */
    void (*kv_free)(void *user, at_nmt_kv *kv);
    int (*kv_copy)(void *user, at_nmt_kv *dst, const at_nmt_kv *src, at_err *err);
} at_nmt_decoder;

int at_nmt_generate_on(const at_nmt_decoder *d, const at_nmt_gen *g, at_nmt_job *jobs, int n, at_err *err);

#endif
