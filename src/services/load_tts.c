/* load_tts.c - local speech synthesis: flite first (its English voices
 * are the better default), then every espeak-ng voice. */
#include "engines/tts/espeak.h"
#include "engines/tts/flite.h"
#include "services/app.h"

int at_app_load_local_tts(at_app *a, at_err *err)
{
    at_tts_engine *f = at_tts_flite_new(err);
    if (!f || at_app_add_tts(a, f, err)) return err->code ? err->code : AT_E_ENGINE;
    at_tts_engine *e = at_tts_espeak_new(NULL, err);
    if (!e || at_app_add_tts(a, e, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
