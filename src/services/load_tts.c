/* load_tts.c - local speech synthesis: the configured neural voices
 * first (a language code then finds a neural voice when one speaks it),
 * then flite (its English voices are the better default for OpenAI's
 * voice names), then every espeak-ng voice. */
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/models.h"
#include "engines/tts/espeak.h"
#include "engines/tts/flite.h"
#include "engines/tts/vits.h"
#include "services/app.h"

#define MAX_VOICES 64

static int load_neural(at_app *a, const char *models, at_err *err)
{
    char *list = strdup(models), *save = NULL;
    char(*paths)[1024] = calloc(MAX_VOICES, sizeof *paths);
    const char *dirs[MAX_VOICES];
    int nd = 0, rc = 0;
    if (!list || !paths) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    for (char *d = rc ? NULL : strtok_r(list, ",", &save); d && !rc; d = strtok_r(NULL, ",", &save)) {
        if (!*d) continue;
        /* a cache name ("mms-tts-spa") stands for <cache>/NAME */
        rc = nd == MAX_VOICES ? at_err_set(err, AT_E_INVALID, "more than %d neural voices", MAX_VOICES)
                              : at_models_resolve_dir(d, paths[nd], sizeof paths[nd], err);
        if (rc >= 0) {
            rc = 0;
            dirs[nd] = paths[nd];
            nd++;
        }
    }
    if (!rc && nd) {
        at_tts_vits_config vc = {at_app_cfg(a)->threads};
        at_tts_engine *v = at_tts_vits_new(dirs, nd, &vc, err);
        if (!v || at_app_add_tts(a, v, err)) rc = err->code ? err->code : AT_E_ENGINE;
    }
    free(list);
    free(paths);
    return rc;
}

int at_app_load_local_tts(at_app *a, at_err *err)
{
    const char *models = at_app_cfg(a)->tts_models;
    if (models && *models && load_neural(a, models, err)) return err->code ? err->code : AT_E_ENGINE;
    at_tts_engine *f = at_tts_flite_new(err);
    if (!f || at_app_add_tts(a, f, err)) return err->code ? err->code : AT_E_ENGINE;
    at_tts_engine *e = at_tts_espeak_new(NULL, err);
    if (!e || at_app_add_tts(a, e, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
