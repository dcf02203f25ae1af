/* clips.h - the LibriVox recordings of pocketsphinx-testdata as one
 * stream, for tests and benchmarks. */
#ifndef AT_TESTS_COMMON_CLIPS_H
#define AT_TESTS_COMMON_CLIPS_H

#include <stddef.h>
#include <stdint.h>

#define AT_TEST_N_CLIPS 5

/* The first n_clips (1..AT_TEST_N_CLIPS) clips, 16 kHz PCM16 as in the
 * files, in order, after lead_s of silence and each followed by pause_s
 * of silence.  clip_end[i] (may be NULL) receives the second where clip
 * i's audio ends.  Returns a malloc'd buffer of *n samples, or NULL with a
 * message on stderr. */
int16_t *at_test_librivox_stream16(int n_clips, double lead_s, double pause_s, size_t *n, double *clip_end);
/* The same as float in [-1, 1) (sample / 32768, as libsndfile reads it). */
float *at_test_librivox_stream(int n_clips, double lead_s, double pause_s, size_t *n, double *clip_end);

#endif
