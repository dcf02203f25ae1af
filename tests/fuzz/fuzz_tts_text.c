/* fuzz_tts_text - any text to the embedded voices (flite, espeak-ng), as
 * POST /v1/audio/speech hands it over: this is how a run of punctuation
 * that aborted libflite should have been found.  Inputs are capped at the
 * services' default text limit's order (600 bytes) and the audio is
 * discarded.  The first byte picks the espeak-ng voice: what the library
 * does with a script depends on the voice reading it.  libespeak-ng runs
 * in its worker process, so what this finds on that side is our text
 * preparation and protocol; the library's own crashes cost one request. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engines/tts/espeak.h"
#include "engines/tts/flite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *user, const int16_t *pcm, size_t n)
{
    (void)user;
    (void)pcm;
    (void)n;
    return 0;
}

static at_tts_engine *fl, *es;

static const char *const es_voices[] = {"en", "de", "fr", "ru", "ka",  "hi", "bn", "hy",
                                        "el", "ta", "ko", "ja", "cmn", "ar", "vi", "sw"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_err err;
    if (!fl) fl = at_tts_flite_new(&err);
    if (!es) es = at_tts_espeak_new(NULL, &err);
    const char *voice = "en";
    if (size > 0) {
        voice = es_voices[data[0] % (sizeof es_voices / sizeof es_voices[0])];
        data++;
        size--;
    }
    if (size > 600) size = 600;
    char *t = malloc(size + 1);
    if (!t) return 0;
    memcpy(t, data, size);
    t[size] = 0; /* the services stop text at a NUL (they refuse it, 400) */
    if (fl) at_tts_synthesize(fl, at_tts_engine_find_voice(fl, "kal"), t, 1.0f, sink, NULL, &err);
    const at_tts_voice *v = es ? at_tts_engine_find_voice(es, voice) : NULL;
    if (v) at_tts_synthesize(es, v, t, 2.0f, sink, NULL, &err);
    free(t);
    return 0;
}
