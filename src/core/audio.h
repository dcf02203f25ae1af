/* audio.h - decoding uploads and converting them to what engines take.
 *
 * Any input a user can send (WAV, FLAC, Ogg/Vorbis, Ogg/Opus, MP3 through
 * libsndfile; raw PCM16) becomes 16 kHz mono float32 here; nothing else in
 * the project decodes or resamples. */
#ifndef AT_CORE_AUDIO_H
#define AT_CORE_AUDIO_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct at_audio {
    float *samples;  /* mono, [-1, 1] */
    size_t n;        /* number of samples */
    int sample_rate; /* Hz */
} at_audio;

void at_audio_free(at_audio *a);

/* Decodes a file held in memory (format sniffed by libsndfile) to mono at
 * its own rate.  Errors: AT_E_INVALID for empty input, AT_E_UNSUPPORTED for
 * bytes that are not a known audio format ("not an audio file: ..."),
 * AT_E_CORRUPT for truncated or malformed audio, AT_E_TOO_LARGE when the
 * decoded audio would exceed max_seconds (0 = no limit). */
int at_audio_decode(const void *data, size_t len, double max_seconds, at_audio *out, at_err *err);
/* Notes (added): the AT_E_UNSUPPORTED message reads "not an audio file:
 * not a recognised audio format (...)"; a known container signature
 * (RIFF, fLaC, OggS, ID3, ...) that libsndfile cannot open is AT_E_CORRUPT
 * ("truncated audio: ..."), as is a WAV data chunk or FLAC stream shorter
 * than its header declares; a WAV with zero frames is AT_E_INVALID "audio
 * is empty".  MP3 lengths are estimates, so a cut MP3 decodes what is
 * there.  On any error *out is left empty ({NULL, 0, 0}). */
/* Same, from a path. */
int at_audio_decode_file(const char *path, double max_seconds, at_audio *out, at_err *err);

/* Resamples in place to `rate` (soxr, high quality); no-op if equal.
 * Accepts source rates 1 kHz .. 384 kHz. */
int at_audio_resample(at_audio *a, int rate, at_err *err);

/* decode + resample to 16 kHz mono: what every ASR engine takes. */
int at_audio_load_16k(const void *data, size_t len, double max_seconds, at_audio *out, at_err *err);

/* Little-endian PCM16 (interleaved if channels > 1) to mono float.
 * AT_E_INVALID for len 0, an odd byte count, a partial frame, channels
 * outside 1..8 or a rate outside 1 kHz .. 384 kHz. */
int at_audio_from_pcm16(const void *data, size_t len, int sample_rate, int channels, at_audio *out,
                        at_err *err);

/* Float -> int16 with clipping; and back. */
void at_audio_f32_to_s16(const float *in, size_t n, int16_t *out);
void at_audio_s16_to_f32(const int16_t *in, size_t n, float *out);

/* A streaming resampler for live audio (WebSocket frames of any rate). */
typedef struct at_resampler at_resampler;
at_resampler *at_resampler_new(int in_rate, int out_rate, at_err *err);
/* Converts n input samples; *out is grown as needed (caller frees with
 * free()), *out_n set to the samples produced.  last=1 flushes. */
int at_resampler_process(at_resampler *r, const float *in, size_t n, int last, float **out, size_t *out_cap,
                         size_t *out_n, at_err *err);
void at_resampler_free(at_resampler *r);
/* Notes (added): rates 1 kHz .. 384 kHz (else NULL, AT_E_UNSUPPORTED);
 * equal rates copy through.  Each call writes from (*out)[0]; after a
 * call with last=1 only empty calls are accepted. */

/* A 44-byte canonical WAV header for PCM16 mono; data_bytes may be
 * 0xFFFFFFFF for a stream of unknown length (what OpenAI's API sends). */
void at_wav_header(uint8_t hdr[44], int sample_rate, uint32_t data_bytes);
/* Writes PCM16 mono to a WAV file. */
int at_wav_write_file(const char *path, const int16_t *pcm, size_t n, int sample_rate, at_err *err);

/* A growing PCM16 buffer; at_pcm16_buf_append has the shape of a TTS
 * chunk callback, so synthesis can be collected into one directly. */
typedef struct at_pcm16_buf {
    int16_t *pcm;
    size_t n, cap;
} at_pcm16_buf;
/* Appends n samples; returns nonzero (stop) when out of memory. */
int at_pcm16_buf_append(void *buf, const int16_t *pcm, size_t n);
void at_pcm16_buf_free(at_pcm16_buf *b);

/* Root-mean-square level of float audio (0 for n == 0). */
double at_audio_rms(const float *x, size_t n);

#endif
