/* load_tts.c - local speech synthesis: the configured neural voices
 * first (a language code then finds a neural voice when one speaks it),
 * then flite (its English voices are the better default for OpenAI's
 * voice names), then every espeak-ng voice. */
#include "engines/tts/espeak.h"
#include "engines/tts/flite.h"
#include "engines/tts/vits.h"
#include "services/app.h"

#define MAX_VOICES 64

/* a cache name ("mms-tts-spa") stands for <cache>/NAME, and the voice is
 * named after its folder */
static int load_neural(at_app *a, const char *models, at_err *err)
{
    char **dirs = NULL;
    int nd = 0, rc = at_app_model_dirs(models, MAX_VOICES, "neural voices", &dirs, &nd, err);
    if (rc < 0 || !nd) return rc;
    at_tts_vits_config vc = {at_app_cfg(a)->threads};
    at_tts_engine *v = at_tts_vits_new((const char *const *)dirs, nd, &vc, err);
    at_app_model_dirs_free(dirs, nd);
    if (!v || at_app_add_tts(a, v, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}

int at_app_load_local_tts(at_app *a, at_err *err)
{
    if (load_neural(a, at_app_cfg(a)->tts_models, err)) return err->code ? err->code : AT_E_ENGINE;
    at_tts_engine *f = at_tts_flite_new(err);
    if (!f || at_app_add_tts(a, f, err)) return err->code ? err->code : AT_E_ENGINE;
    at_tts_engine *e = at_tts_espeak_new(NULL, err);
    if (!e || at_app_add_tts(a, e, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
