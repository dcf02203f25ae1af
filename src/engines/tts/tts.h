/* tts.h - the speech synthesis engine interface.
 *
 * Engines synthesise UTF-8 text into mono PCM16 and hand it over in chunks
 * as soon as they have it, so a service can stream audio before the whole
 * utterance is done.  Each engine lists its voices; a service may hold
 * several engines and route by voice name.
 *
 * Thread-safety: at_tts_synthesize() may be called from several threads at
 * once; engines whose library is not reentrant serialise internally.  Such
 * an engine sets `serialised`: at_tts_synthesize then gives it the text a
 * sentence at a time and hands each sentence's audio to the caller only
 * after the engine returned, so a caller that blocks (a client that stopped
 * reading) never holds the library's lock, and the engine's memory is that
 * of one sentence, not of the whole text. */
#ifndef AT_ENGINES_TTS_H
#define AT_ENGINES_TTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct at_tts_voice {
    char name[64];     /* unique within the engine, e.g. "en", "slt" */
    char language[16]; /* ISO 639-1, e.g. "en" */
    char gender[16];   /* "female", "male" or "" */
    int sample_rate;   /* of the PCM this voice produces */
} at_tts_voice;

/* Receives PCM16 mono at the voice's sample rate.  Return nonzero to stop
 * synthesis (the client went away); synthesize then fails with
 * AT_E_CANCELLED.  An engine that waits on something slow (a remote
 * service) also calls it with n == 0 and pcm NULL, about once a second, to
 * ask whether to go on. */
typedef int (*at_tts_chunk_cb)(void *user, const int16_t *pcm, size_t n);

typedef struct at_tts_engine at_tts_engine;

typedef struct at_tts_ops {
    const char *name; /* "espeak-ng", "flite" */
    int serialised;   /* synthesis holds a lock shared with other requests */
    void (*destroy)(void *impl);
    int (*synthesize)(void *impl, const at_tts_voice *voice, const char *text, float speed,
                      at_tts_chunk_cb cb, void *user, at_err *err);
    const at_tts_voice *(*voices)(void *impl, size_t *n);
} at_tts_ops;

/* Takes ownership of impl (destroyed also on failure). */
at_tts_engine *at_tts_engine_new(const at_tts_ops *ops, void *impl, at_err *err);
void at_tts_engine_free(at_tts_engine *e);
const char *at_tts_engine_name(const at_tts_engine *e);
const at_tts_voice *at_tts_engine_voices(const at_tts_engine *e, size_t *n);
/* Exact voice name match, else NULL. */
const at_tts_voice *at_tts_engine_find_voice(const at_tts_engine *e, const char *name);

/* speed: 1.0 = normal, accepted range 0.25..4.0 (AT_E_INVALID outside).
 * Empty text is AT_E_INVALID. */
int at_tts_synthesize(at_tts_engine *e, const at_tts_voice *voice, const char *text, float speed,
                      at_tts_chunk_cb cb, void *user, at_err *err);

#endif
