/* vad.h - voice activity detection that gates streaming recognition.
 *
 * Two frame classifiers behind one utterance segmenter:
 * - energy (default without a model): an energy + spectral-flatness
 *   detector on 20 ms frames.  Speech is loud relative to an adaptive
 *   noise floor *and* spectrally peaky (harmonics, formants), while
 *   digital silence is quiet and steady white or pink noise is flat.
 *   One 512-point FFT per frame.
 * - silero: the Silero VAD network (silero.h) on 32 ms chunks, a speech
 *   probability with hysteresis (a chunk after a speech chunk is speech
 *   down to threshold - 0.15, others from threshold, as upstream's
 *   iterator).
 *   Robust where the energy detector is not: tones, music, babble.
 * The segmenter turns frame decisions into utterances: speech starts
 * after ~60 ms of speech frames and ends after silence_ms without one.
 * Measured on speech, silence and noise: docs/figures.md. */
#ifndef AT_ENGINES_VAD_VAD_H
#define AT_ENGINES_VAD_VAD_H

#include <stddef.h>

#include "core/error.h"
#include "engines/vad/silero.h"

#define AT_VAD_FRAME    320 /* energy: 20 ms at 16 kHz */
#define AT_VAD_ONSET_MS 60  /* speech that opens an utterance */

typedef struct at_vad_config {
    /* energy detector */
    float min_db;       /* frames below this level (dBFS) are silence: -50 */
    float snr_db;       /* and below noise floor + this: 6 */
    float max_flatness; /* spectral flatness above this is noise: 0.30 */
    /* Silero: used instead when set (shared, read-only, owned by the caller) */
    const at_silero *silero;
    float threshold; /* speech probability that opens speech: 0.5 */
    int silence_ms;  /* silence that ends an utterance: 600 */
} at_vad_config;

void at_vad_config_default(at_vad_config *c);

typedef struct at_vad at_vad;

at_vad *at_vad_new(const at_vad_config *c, at_err *err);
void at_vad_free(at_vad *v);
void at_vad_reset(at_vad *v);

/* Samples per frame decision: AT_VAD_FRAME (energy) or AT_SILERO_CHUNK. */
size_t at_vad_frame_len(const at_vad *v);
/* "energy" or "silero". */
const char *at_vad_kind(const at_vad *v);

/* Frame-level decision for one frame of at_vad_frame_len() samples
 * (1 speech, 0 not); updates the detector's state (noise floor, network
 * state).  score, if not NULL, receives the energy detector's spectral
 * flatness or Silero's speech probability. */
int at_vad_frame(at_vad *v, const float *frame, float *score);

/* Utterance events from feeding audio of any length (frames are
 * assembled internally).  Returns the state after the audio: 1 inside an
 * utterance, 0 outside.  *ended is set to 1 when an utterance ended in
 * this audio and *end_sample receives the sample (counted from the
 * stream start) where its trailing silence began; *started likewise. */
int at_vad_feed(at_vad *v, const float *pcm, size_t n, int *started, int *ended, size_t *end_sample);
/* Samples seen so far. */
size_t at_vad_samples(const at_vad *v);

#endif
