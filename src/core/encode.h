/* encode.h - streaming audio encoders for speech responses.
 *
 * Synthesised PCM goes in as the engine makes it; encoded bytes come out
 * through a write callback as soon as the encoder emits them, so a
 * response can stream.  Formats are OpenAI's `response_format` values:
 *
 *   wav   PCM16 WAV, sizes unknown (0xFFFFFFFF) as OpenAI streams it
 *   pcm   raw PCM16 little-endian, no header
 *   mp3   MPEG-1/2 layer III (LAME, through libsndfile)
 *   opus  Ogg Opus (libopus + libogg, through libsndfile)
 *   flac  FLAC (libFLAC, through libsndfile)
 *   aac   AAC-LC in ADTS frames, 64 kbit/s (VisualOn's encoder: libvo-aacenc)
 *
 * The output rate is chosen by the caller (OpenAI's is 24 kHz); input is
 * resampled with soxr when it differs.  Ogg Opus takes 8, 12, 16, 24 or
 * 48 kHz only. */
#ifndef AT_CORE_ENCODE_H
#define AT_CORE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct at_encoder at_encoder;

/* Receives encoded bytes; nonzero stops encoding (the client left). */
typedef int (*at_encoder_write)(void *user, const void *data, size_t len);

/* 1 if `format` is one of the names above. */
int at_encoder_known(const char *format);
/* The Content-Type of a format ("audio/mpeg"); NULL if unknown. */
const char *at_encoder_content_type(const char *format);
/* "mp3, opus, aac, flac, wav, pcm": for error messages. */
const char *at_encoder_formats(void);

/* 0 if `format` can be written at `rate`, else AT_E_UNSUPPORTED saying
 * why: checked before a response starts. */
int at_encoder_check(const char *format, int rate, at_err *err);
/* AT_E_UNSUPPORTED for an unknown format or a rate it cannot take. */
at_encoder *at_encoder_new(const char *format, int in_rate, int out_rate, at_encoder_write write, void *user,
                           at_err *err);
/* Encodes n mono samples at in_rate.  AT_E_CANCELLED once write returned
 * nonzero. */
int at_encoder_push(at_encoder *e, const int16_t *pcm, size_t n, at_err *err);
/* Flushes the resampler and the encoder and writes the stream's end. */
int at_encoder_finish(at_encoder *e, at_err *err);
/* Encoded bytes written so far. */
size_t at_encoder_bytes(const at_encoder *e);
void at_encoder_free(at_encoder *e);

#endif
