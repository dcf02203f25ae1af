/* sched.h - continuous batching of decoder steps and encoder windows
 * across callers.
 *
 * Every stream and transcription of an engine decodes on its own thread;
 * each step it submits (its beams or samples, a few tokens each) joins the
 * next batch, which one of the waiting callers runs for all of them as a
 * single at_whisper_decode_batch call: the weights are read once for
 * every stream's step.  Callers join and leave between steps; a caller
 * whose step arrives while no batch is running starts one at once, so a
 * lone stream waits for nobody. */
#ifndef AT_ENGINES_ASR_WHISPER_SCHED_H
#define AT_ENGINES_ASR_WHISPER_SCHED_H

#include "engines/asr/whisper/model.h"

typedef struct at_wsched at_wsched;

/* max_rows: most token rows one batch takes (a step larger than that runs
 * alone).  pool: the thread pool the callers' states share, for batches
 * of encoder windows (at_wsched_encode); NULL: each window alone. */
at_wsched *at_wsched_new(int max_rows, at_compute *pool, at_err *err);
void at_wsched_free(at_wsched *s);

/* Decodes the caller's sequences (on st's encoding, unless a sequence
 * names another) in the next batch; returns when their logits are
 * written.  The result is what at_whisper_decode_batch(st, seqs, n) gives:
 * when a batch fails, each caller's step is run again alone, so an error
 * is reported to the caller it belongs to. */
int at_wsched_decode(at_wsched *s, at_whisper_state *st, const at_whisper_seq *seqs, int n, at_err *err);

/* Encodes the caller's window (as at_whisper_encode(st, mel, audio_ctx))
 * together with the windows other callers submit meanwhile: the same
 * leader/follower scheme, as one at_whisper_encode_batch of at most two
 * full windows' positions.  A lone window is encoded at once on its own
 * state.  When a batch fails, each window is encoded again alone. */
int at_wsched_encode(at_wsched *s, at_whisper_state *st, const float *mel, int audio_ctx, at_err *err);

typedef struct at_wsched_stats {
    long long batches, steps, rows; /* batches run, callers' steps in them, token rows */
    int max_steps;                  /* most steps one batch held */
    long long enc_batches, windows; /* encoder batches run (lone windows included), windows in them */
    int max_windows;                /* most windows one encoder batch held */
} at_wsched_stats;
void at_wsched_get_stats(at_wsched *s, at_wsched_stats *out);

#endif
