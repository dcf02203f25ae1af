/* la2.h - the LocalAgreement-2 streaming policy (Machacek et al. 2023,
 * whisper_streaming), independent of the recogniser.
 *
 * The engine re-decodes a growing audio buffer each step and hands the
 * hypothesis over as words with absolute times.  Words the last two
 * hypotheses agree on (longest common prefix) become a final segment;
 * the rest is sent as a partial.  Words that end before the committed
 * point are skipped, as is an n-gram (n <= 5) that repeats the committed
 * tail, so re-decoding audio that is still buffered never emits twice. */
#ifndef AT_ENGINES_ASR_WHISPER_LA2_H
#define AT_ENGINES_ASR_WHISPER_LA2_H

#include <stddef.h>

#include "core/error.h"
#include "engines/asr/asr.h"

typedef struct at_la2_word {
    const char *text;  /* as decoded, usually with a leading space */
    double start, end; /* seconds from the stream start */
} at_la2_word;

typedef struct at_la2 at_la2;

at_la2 *at_la2_new(at_err *err);
void at_la2_free(at_la2 *p);

/* Takes a new hypothesis; emits a final for the newly agreed words and a
 * partial for the unconfirmed tail.  *n_done (may be NULL) receives how
 * many leading words of w are now committed (skipped ones included). */
int at_la2_insert(at_la2 *p, const at_la2_word *w, size_t n, size_t *n_done, at_asr_event_cb cb, void *user,
                  at_err *err);
/* Commits the unconfirmed tail of the last hypothesis (utterance end,
 * end of stream). */
int at_la2_flush(at_la2 *p, at_asr_event_cb cb, void *user, at_err *err);
/* End time of the last committed word (-1: none). */
double at_la2_committed_end(const at_la2 *p);
/* The committed text's tail (at most ~1000 bytes), the next prompt. */
const char *at_la2_prompt(const at_la2 *p);
/* Words of the last hypothesis not yet committed. */
size_t at_la2_pending(const at_la2 *p);
/* Finals cancelled by the repeated-text guard so far. */
int at_la2_repeats_dropped(const at_la2 *p);

#endif
