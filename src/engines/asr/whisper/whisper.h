/* whisper.h - Whisper speech recognition in C (ggml .bin and Hugging Face
 * safetensors weights), exposed as an at_asr engine. */
#ifndef AT_ENGINES_ASR_WHISPER_H
#define AT_ENGINES_ASR_WHISPER_H

#include "engines/asr/asr.h"
#include "engines/vad/vad.h"

/* Live streaming (at_asr_stream_*): LocalAgreement-2 over a growing
 * buffer, gated by voice activity detection, with hallucination guards.
 * The settings come from the caller (the services' configuration:
 * --whisper-step-ms, --whisper-max-buffer, --max-streams, --vad). */
typedef struct at_whisper_stream_config {
    int step_ms;           /* re-decode every this much new audio: 1000 */
    double max_buffer_s;   /* buffer cap, flushed beyond it: 15 */
    int vad;               /* 1: decode only around speech */
    const char *vad_model; /* Silero VAD: a path or a cache name ("silero-vad");
                              NULL: the energy detector */
    at_vad_config vad_cfg; /* its .silero is set by the engine */
    /* guards; NAN disables one.  A hypothesis is dropped when
     * no_speech_prob > no_speech && avg_logprob < logprob, when
     * avg_logprob < logprob - 0.5, or when compression > compression. */
    float no_speech_threshold;   /* 0.6 */
    float logprob_threshold;     /* -1.0 */
    float compression_threshold; /* 2.4 */
    int max_streams;             /* open streams per engine (0: no limit): 0 */
    /* File transcriptions decoding at once (each holds its buffers, ~75 MB
     * for base), and how many more may wait for a turn; past that a
     * request fails at once with AT_E_BUSY (HTTP 503, Retry-After). */
    int max_jobs;   /* 2 */
    int max_queued; /* 16 */
    /* 1: the decoder steps of concurrent streams and transcriptions run
     * as shared batches (continuous batching, sched.h); 0: each caller
     * runs its own steps on the shared pool */
    int batch_decode; /* 1 */
    /* 1: the encoder windows of concurrent streams and transcriptions
     * are encoded as shared batches too (with batch_decode); 0: each
     * alone.  Off by default: on the CPU a batch gains 4-17 % throughput
     * on short windows but delays the windows that wait for it, so live
     * streams lag more (docs/figures.md) */
    int batch_encode; /* 0 */
    /* the GPU the model runs on (the CUDA backend), or -1: the CPU; the
     * services choose it (--device) */
    int device; /* -1 */
} at_whisper_stream_config;

void at_whisper_stream_config_default(at_whisper_stream_config *c);

/* model: a whisper.cpp ggml .bin file, a Hugging Face folder, or a model
 * name from the cache (see models.h: "base.en", "tiny-q5_1", ...).
 * n_threads <= 0: number of online CPUs.  The weights are loaded once, and
 * one pool of n_threads threads runs the products of every stream and
 * transcription (one product at a time, each on all threads). */
at_asr_engine *at_asr_whisper_new(const char *model, int n_threads, at_err *err);
/* The same with explicit streaming settings (NULL: defaults). */
at_asr_engine *at_asr_whisper_new_ex(const char *model, int n_threads, const at_whisper_stream_config *sc,
                                     at_err *err);

#endif
