/* vad.h - voice activity detection that gates Whisper streaming.
 *
 * An energy + spectral-flatness detector on 20 ms frames (16 kHz): speech
 * is loud relative to an adaptive noise floor *and* spectrally peaky
 * (harmonics, formants), while digital silence is quiet and steady white
 * or pink noise is flat.  A hangover turns frame decisions into
 * utterances: speech starts after AT_VAD_ONSET speech frames and ends
 * after silence_ms without one.  Cheap: one 512-point FFT per frame.
 * (Silero's network would be more robust to babble and music; this one
 * was measured, see docs/figures.md.) */
#ifndef AT_ENGINES_ASR_WHISPER_VAD_H
#define AT_ENGINES_ASR_WHISPER_VAD_H

#include <stddef.h>

#include "core/error.h"

#define AT_VAD_FRAME 320 /* 20 ms at 16 kHz */
#define AT_VAD_ONSET 3   /* speech frames in a row that open an utterance */

typedef struct at_vad_config {
    float min_db;        /* frames below this level (dBFS) are silence: -50 */
    float snr_db;        /* and below noise floor + this: 6 */
    float max_flatness;  /* spectral flatness above this is noise: 0.30 */
    int silence_ms;      /* silence that ends an utterance: 600 */
} at_vad_config;

void at_vad_config_default(at_vad_config *c);

typedef struct at_vad at_vad;

at_vad *at_vad_new(const at_vad_config *c, at_err *err);
void at_vad_free(at_vad *v);
void at_vad_reset(at_vad *v);

/* Frame-level decision for one AT_VAD_FRAME frame (1 speech, 0 not);
 * also updates the noise floor.  level_db / flatness may be NULL. */
int at_vad_frame(at_vad *v, const float *frame, float *level_db, float *flatness);

/* Utterance events from feeding audio of any length (frames are
 * assembled internally).  Returns the state after the audio: 1 inside an
 * utterance, 0 outside.  *ended is set to 1 when an utterance ended in
 * this audio and *end_sample receives the sample (counted from the
 * stream start) where its trailing silence began; *started likewise. */
int at_vad_feed(at_vad *v, const float *pcm, size_t n, int *started, int *ended,
                size_t *end_sample);
/* Samples seen so far. */
size_t at_vad_samples(const at_vad *v);

#endif
