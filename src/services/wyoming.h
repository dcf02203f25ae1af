/* wyoming.h - asr_streaming and tts over the Wyoming protocol, as Home
 * Assistant's local voice pipeline talks to speech services (10300 and
 * 10200 by convention).
 *
 *   describe                                  -> info (our engines, voices)
 *   transcribe, audio-start, audio-chunk...,
 *   audio-stop                                -> transcript
 *   synthesize                                -> audio-start, audio-chunk..., audio-stop
 *
 * Bad input gets the protocol's own `error` event ({text, code}); an
 * event that cannot be parsed also ends the connection, since the stream
 * cannot be followed after it.  Each connection has a thread; at most
 * max_streams connections at once (more get an error and are closed). */
#ifndef AT_SERVICES_WYOMING_H
#define AT_SERVICES_WYOMING_H

#include "services/app.h"

typedef struct at_wyoming at_wyoming;

/* kind: AT_APP_ASR or AT_APP_TTS.  Listens on iface:port (0: a free
 * port, told by *bound) and serves on threads of its own. */
at_wyoming *at_wyoming_start(at_app *app, int kind, const char *iface, int port, int *bound, at_err *err);
/* Stops listening, closes every connection (its work sees itself
 * cancelled) and waits up to grace_ms for them to end. */
void at_wyoming_stop(at_wyoming *w, int grace_ms);

#endif
