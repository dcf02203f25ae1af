/* model.h - Hugging Face VitsModel inference (Meta's MMS-TTS voices,
 * kakao-enterprise/vits-ljs, vits-vctk): token ids in, a waveform out.
 *
 * The text encoder (a transformer with relative positions), the duration
 * predictor (stochastic flows, or the plain convolutional one), the prior
 * flows (WaveNet couplings, run in reverse) and the HiFi-GAN decoder, as
 * transformers' modeling_vits.py computes them in f32, on the compute
 * interface (compute/backend.h).  The small pieces the backend has no
 * operation for (relative attention, the rational-quadratic spline,
 * gates, leaky ReLU, depthwise convolutions) are plain C on host floats.
 *
 * Noise (noise_scale, noise_scale_duration > 0) comes from our own seeded
 * generator, not torch's: the same seed gives the same audio, but not the
 * audio transformers gives for a torch seed.  With both scales 0 the
 * output is transformers' own (tests/data/oracles/vits-mini).
 *
 * A loaded model is read-only: threads may synthesize with it at once,
 * each call running on a client of a shared pool. */
#ifndef AT_ENGINES_TTS_VITS_MODEL_H
#define AT_ENGINES_TTS_VITS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "compute/pool.h"
#include "core/error.h"

/* Token ids one call takes at most. */
#define AT_VITS_MAX_TOKENS          4096
/* Audio one call makes at most unless its max_frames says otherwise. */
#define AT_VITS_DEFAULT_MAX_SECONDS 60

typedef struct at_vits_hparams {
    int vocab, hidden, n_layers, n_heads, flow_size, sampling_rate, num_speakers;
    int hop; /* samples per frame: the product of upsample_rates */
    float noise_scale, noise_scale_duration, speaking_rate;
    int stochastic; /* use_stochastic_duration_prediction */
} at_vits_hparams;

typedef struct at_vits_model at_vits_model;

/* dir: config.json (model_type "vits") and model.safetensors, else
 * pytorch_model.bin.  Every size in the config is bounded and every
 * tensor's shape checked; weight-normed convolutions may be stored as
 * weight_g/weight_v, parametrizations.weight.original0/1, or folded. */
at_vits_model *at_vits_model_load(const char *dir, at_err *err);
void at_vits_model_free(at_vits_model *m);
const at_vits_hparams *at_vits_model_hparams(const at_vits_model *m);

typedef struct at_vits_params {
    float noise_scale, noise_scale_duration, speaking_rate;
    uint64_t seed;
    int speaker_id; /* 0..num_speakers-1; -1: no speaker conditioning
                       (transformers' speaker_id=None) */
    int max_frames; /* refuse longer audio; 0: AT_VITS_DEFAULT_MAX_SECONDS */
} at_vits_params;

/* The config's noise scales and speaking rate, seed 0, speaker 0. */
void at_vits_params_default(const at_vits_model *m, at_vits_params *p);

/* Receives the waveform in order, a piece at a time (the first piece is
 * short, so a stream can start early); non-zero stops the synthesis with
 * that code (err set by the sink). */
typedef int (*at_vits_sink)(void *user, const float *samples, size_t n, at_err *err);

/* ids: n token ids (1..AT_VITS_MAX_TOKENS, each < vocab); p NULL: the
 * defaults.  *wave: malloc'd floats (the caller frees them), *n_wave
 * samples at sampling_rate, hop per frame.  durations: NULL or n ints
 * receiving each token's frames.  Fails with AT_E_INVALID on bad ids or
 * parameters (an unknown speaker: the message names the range), with
 * AT_E_TOO_LARGE on too many tokens or durations past max_frames (checked
 * before any audio is made).  Memory: the flows' frames, plus the decoder
 * working a piece of a few seconds at a time, however long the audio. */
int at_vits_synthesize(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                       const at_vits_params *p, float **wave, size_t *n_wave, int *durations, at_err *err);
/* The same, handing the samples to sink as they are made; *n_wave (may be
 * NULL) receives the total, known before the first piece.  The prior flows
 * run over the first piece's frames (with their context) before it, over
 * the rest after it: the samples are at_vits_synthesize's within float
 * rounding (which computes the flows over all frames at once). */
int at_vits_synthesize_stream(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                              const at_vits_params *p, at_vits_sink sink, void *user, size_t *n_wave,
                              int *durations, at_err *err);

/* Where one call's time went, in seconds (benchmarks). */
typedef struct at_vits_timing {
    double encoder, duration, flow, decoder;
} at_vits_timing;
/* at_vits_synthesize_stream, adding each stage's time to *t. */
int at_vits_synthesize_timed(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                             const at_vits_params *p, at_vits_sink sink, void *user, size_t *n_wave,
                             int *durations, at_vits_timing *t, at_err *err);

#endif
