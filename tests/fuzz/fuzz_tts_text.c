/* fuzz_tts_text - any text to the embedded voices (flite, espeak-ng), as
 * POST /v1/audio/speech hands it over: this is how a run of punctuation
 * that aborted libflite should have been found.  Inputs are capped at the
 * services' default text limit's order (600 bytes) and the audio is
 * discarded. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    at_err err;
    if (!fl) fl = at_tts_flite_new(&err);
    if (!es) es = at_tts_espeak_new(NULL, &err);
    if (size > 600) size = 600;
    char *t = malloc(size + 1);
    if (!t) return 0;
    memcpy(t, data, size);
    t[size] = 0; /* the services stop text at a NUL (they refuse it, 400) */
    if (fl) at_tts_synthesize(fl, at_tts_engine_find_voice(fl, "kal"), t, 1.0f, sink, NULL, &err);
    if (es) at_tts_synthesize(es, at_tts_engine_find_voice(es, "en"), t, 2.0f, sink, NULL, &err);
    free(t);
    return 0;
}
