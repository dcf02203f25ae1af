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
    int speakers;      /* a multi-speaker voice's count (speaker_id 0..speakers-1); 0 or 1: one */
    int neural;        /* a neural voice (noise_scale, seed apply) */
} at_tts_voice;

/* How to say it.  Formant voices use speed only; neural voices (VITS)
 * also take the sampling noise of their prior and durations, a seed that
 * makes noisy output reproducible, and a speaker. */
typedef struct at_tts_params {
    float speed;                /* 1.0 = normal, 0.25..4.0 */
    float noise_scale;          /* < 0: the voice's own (its config) */
    float noise_scale_duration; /* < 0: the voice's own */
    int64_t seed;               /* < 0: a fresh one per request */
    int speaker_id;             /* 0..speakers-1 */
} at_tts_params;

/* Speed 1, the voice's noise scales, a fresh seed, speaker 0. */
void at_tts_params_init(at_tts_params *p);

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
    /* p has been checked (speed range, speaker_id within the voice's) */
    int (*synthesize)(void *impl, const at_tts_voice *voice, const char *text, const at_tts_params *p,
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

/* Length in bytes of the sentence at the start of s (n bytes): through its
 * end mark and the blanks after it, or a line, or at most
 * AT_TTS_SENTENCE_MAX bytes cut after a blank (else at a UTF-8
 * boundary).  Engines that split text themselves use it too. */
#define AT_TTS_SENTENCE_MAX 400
size_t at_tts_sentence_len(const char *s, size_t n);

/* speed: 1.0 = normal, accepted range 0.25..4.0 (AT_E_INVALID outside).
 * Empty text is AT_E_INVALID. */
int at_tts_synthesize(at_tts_engine *e, const at_tts_voice *voice, const char *text, float speed,
                      at_tts_chunk_cb cb, void *user, at_err *err);
/* The same with every parameter; AT_E_INVALID for a speed out of range
 * or a speaker the voice does not have. */
int at_tts_synthesize_params(at_tts_engine *e, const at_tts_voice *voice, const char *text,
                             const at_tts_params *p, at_tts_chunk_cb cb, void *user, at_err *err);

#endif
