/* decode.h - Whisper decoding policy, as OpenAI's decoding.py and
 * transcribe.py define it, independent of the network.
 *
 * The network is reached only through at_wdec_model: a logits function
 * over numbered sequences ("seq", one per beam or sample) plus optional
 * hooks to copy a sequence's cache and to encode a window of audio.  Unit
 * tests plug in small synthetic score functions; the whisper engine plugs
 * in the real decoder (at_whisper_decode + at_whisper_kv_copy).
 *
 * Two levels:
 *   at_wdec_decode()/at_wdec_decode_fallback(): one 30 s window
 *     (DecodingTask.run: greedy, sampling with best_of, beam search,
 *     SuppressBlank, SuppressTokens, ApplyTimestampRules, no_speech_prob,
 *     length-normalised ranking; then temperature fallback).
 *   at_wdec_tx: long-form transcription (transcribe.py's seek loop:
 *     windows, segment splitting on timestamp tokens, previous-text
 *     prompt, no-speech skipping).  It can be fed incrementally, which is
 *     how the engine's streaming API uses it. */
#ifndef AT_ENGINES_ASR_WHISPER_DECODE_H
#define AT_ENGINES_ASR_WHISPER_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/tokenizer.h"

/* Writes the n_vocab logits that follow the whole sequence tokens[0..n)
 * of sequence `seq` (0 <= seq < the n_seq the caller was told).  The
 * implementation may reuse whatever it cached for seq: each call extends
 * or rewrites the sequence it saw last time for that seq (a longer
 * sequence with the same prefix is the common case). */
typedef int (*at_wdec_logits_fn)(void *ctx, int seq, const int *tokens, int n_tokens, float *logits,
                                 at_err *err);
/* Makes seq dst hold what seq src holds (beam search, best_of).  Only an
 * optimisation: a model without it recomputes from the tokens. */
typedef int (*at_wdec_copy_fn)(void *ctx, int dst, int src, at_err *err);
/* Prepares the window of mel frames [seek, seek + n_frames) (10 ms
 * frames, padded to 30 s) for the following logits calls. */
typedef int (*at_wdec_encode_fn)(void *ctx, int seek, int n_frames, at_err *err);

/* The logits of several sequences in one call (one pass over the
 * weights): for i < n, sequence seqs[i] with tokens[i][0..n_tokens[i])
 * into logits[i].  Same contract per sequence as at_wdec_logits_fn. */
typedef int (*at_wdec_logits_batch_fn)(void *ctx, int n, const int *seqs, const int *const *tokens,
                                       const int *n_tokens, float *const *logits, at_err *err);

/* Word alignment of the window encoded last (see at_whisper_cross_scores):
 * for tokens[0..n) decoded from scratch, the cross-attention scores of the
 * model's alignment heads over the first *n_frames encoder positions (set
 * to fewer when fewer were encoded) into a malloc'd *qk of *n_heads x n x
 * *n_frames floats, and into probs[t] the probability of tokens[t+1]. */
typedef int (*at_wdec_align_fn)(void *ctx, const int *tokens, int n, int *n_frames, float **qk, int *n_heads,
                                float *probs, at_err *err);

typedef struct at_wdec_model {
    void *ctx;
    int n_vocab;     /* logits per position */
    int n_text_ctx;  /* decoder positions (448) */
    int n_audio_ctx; /* encoder positions (1500): 30 s / this = 0.02 s */
    at_wdec_logits_fn logits;
    at_wdec_copy_fn copy;     /* may be NULL */
    at_wdec_encode_fn encode; /* needed by at_wdec_tx only */
    /* may be NULL (one logits() call per sequence); with it, the beams or
     * samples of a step are decoded as one batch */
    at_wdec_logits_batch_fn logits_batch;
    at_wdec_align_fn align; /* may be NULL: no word timestamps */
} at_wdec_model;

/* One window's decoding options (OpenAI's DecodingOptions). */
typedef struct at_wdec_options {
    int translate;        /* task: 0 transcribe, 1 translate */
    int lang_token;       /* <0: detect (multilingual models) */
    float temperature;    /* 0: argmax / beam search */
    int sample_len;       /* <=0: n_text_ctx / 2 */
    int best_of;          /* samples when temperature > 0 (<=1: one) */
    int beam_size;        /* beams when temperature == 0 (<=1: greedy) */
    float patience;       /* <=0: 1.0 */
    float length_penalty; /* <0: None (sum logprob / length) */
    const int *prompt;    /* previous text, put after <|startofprev|> */
    int n_prompt;
    const int *prefix; /* forced start of this window's text */
    int n_prefix;
    int suppress_non_speech; /* suppress_tokens "-1" */
    const int *suppress;     /* more token ids to suppress */
    int n_suppress;
    int suppress_blank;
    int without_timestamps;
    float max_initial_timestamp; /* seconds; <=0: no limit */
    uint64_t seed;               /* for sampling */
} at_wdec_options;

/* OpenAI's defaults: transcribe, detect language, temperature 0, greedy,
 * suppress "-1", suppress blank, timestamps, max initial timestamp 1.0. */
void at_wdec_options_default(at_wdec_options *o);

typedef struct at_wdec_result {
    int *tokens;     /* sampled tokens: no sot sequence, no eot */
    float *logprobs; /* log probability of each token */
    int n_tokens;
    char *text;     /* text tokens decoded, whitespace-stripped */
    int lang_token; /* the language token used */
    double sum_logprob;
    double avg_logprob; /* sum_logprob / (n_tokens + 1) */
    float no_speech_prob;
    float temperature;
    float compression_ratio; /* len(text) / len(zlib(text)) */
} at_wdec_result;

void at_wdec_result_free(at_wdec_result *r);

/* Detects the language from the logits after <|startoftranscript|> alone
 * (on seq 0).  probs, if not NULL, receives n_langs probabilities. */
int at_wdec_detect_language(const at_wdec_model *m, const at_wtok *tok, int *lang_token, float *probs,
                            at_err *err);

/* Decodes the current window once (DecodingTask.run). */
int at_wdec_decode(const at_wdec_model *m, const at_wtok *tok, const at_wdec_options *o, at_wdec_result *out,
                   at_err *err);

/* Temperature fallback (transcribe.py decode_with_fallback).  A NAN
 * threshold disables that test. */
typedef struct at_wdec_fallback {
    const float *temperatures; /* NULL: 0.0, 0.2, ..., 1.0 */
    int n_temperatures;
    float compression_ratio_threshold; /* 2.4 */
    float logprob_threshold;           /* -1.0 */
    float no_speech_threshold;         /* 0.6 */
} at_wdec_fallback;

void at_wdec_fallback_default(at_wdec_fallback *f);

/* Decodes with o at each temperature in turn (beam_size only applies at
 * temperature 0, best_of only above it) until the result is neither too
 * repetitive nor too improbable, or is silence. */
int at_wdec_decode_fallback(const at_wdec_model *m, const at_wtok *tok, const at_wdec_options *o,
                            const at_wdec_fallback *f, at_wdec_result *out, at_err *err);

/* zlib compression ratio of text (0 for empty text). */
float at_wdec_compression_ratio(const char *text, size_t len);

/* ---- long-form transcription ------------------------------------------- */

/* A word with its time (seconds, rounded to 10 ms as OpenAI's are). */
typedef struct at_wdec_word {
    const char *text; /* with its leading space */
    double start, end;
    float probability;
} at_wdec_word;

typedef struct at_wdec_segment {
    int seek;              /* mel frame where its window started */
    double start, end;     /* seconds */
    const int *tokens;     /* incl. timestamp tokens; valid during callback */
    const float *logprobs; /* per token */
    int n_tokens;
    const char *text; /* "" for cleared (empty/instantaneous) segments */
    float avg_logprob, no_speech_prob, temperature, compression_ratio;
    const at_wdec_word *words; /* with word timestamps; valid during callback */
    int n_words;
} at_wdec_segment;

/* Return nonzero to stop (at_wdec_tx_run then fails with AT_E_CANCELLED). */
typedef int (*at_wdec_segment_fn)(void *user, const at_wdec_segment *seg);

typedef struct at_wdec_tx_options {
    at_wdec_options decode; /* prompt/prefix are ignored: built per window */
    at_wdec_fallback fallback;
    int condition_on_previous_text;
    const int *initial_prompt; /* tokens of " " + prompt.strip() */
    int n_initial_prompt;
    /* word timestamps (the model needs align); a segment's start and end
     * then follow its words, as OpenAI's do */
    int word_timestamps;
    /* > 0 (seconds, needs word_timestamps): transcribe()'s
     * hallucination_silence_threshold, skipping silence around segments
     * whose words look hallucinated (improbable, too short or too long) */
    float hallucination_silence_threshold;
    at_wdec_segment_fn on_segment;
    void *user;
} at_wdec_tx_options;

/* transcribe()'s defaults (condition_on_previous_text on). */
void at_wdec_tx_options_default(at_wdec_tx_options *o);

typedef struct at_wdec_tx at_wdec_tx;

/* m and tok must outlive the transcription; o is copied (its arrays too). */
at_wdec_tx *at_wdec_tx_new(const at_wdec_model *m, const at_wtok *tok, const at_wdec_tx_options *o,
                           at_err *err);
void at_wdec_tx_free(at_wdec_tx *t);
/* Runs windows over the first content_frames mel frames (audio samples /
 * 160).  Not final: only windows with a full 30 s of audio after the seek
 * point are decoded (call again when more audio came).  Final: decodes up
 * to the end. */
int at_wdec_tx_run(at_wdec_tx *t, int content_frames, int final, at_err *err);
/* Mel frames consumed so far: audio before seek * 160 is not needed again. */
int at_wdec_tx_seek(const at_wdec_tx *t);
/* The language token in use, -1 while not yet detected. */
int at_wdec_tx_lang_token(const at_wdec_tx *t);

#endif
