/* load_mt.c - local translation: the configured neural models (their
 * pairs first), then every installed Apertium pair, behind one router
 * that also pivots through English. */
#include "engines/mt/apertium.h"
#include "engines/mt/neural.h"
#include "engines/mt/router.h"
#include "services/app.h"

#define MAX_MODELS 32

int at_app_load_local_mt(at_app *a, at_err *err)
{
    const at_app_config *c = at_app_cfg(a);
    at_mt_engine *e[2];
    int n = 0, nd = 0;
    /* a cache name ("opus-mt-en-es") keeps its folder's name, which gives a
     * Marian model its pair */
    char **dirs = NULL;
    int rc = at_app_model_dirs(c->mt_models, MAX_MODELS, "translation models", &dirs, &nd, err);
    if (rc < 0) return rc;
    if (nd) {
        at_mt_neural_config nc = {c->threads, c->mt_beams, 0, 0, c->mt_q8};
        e[n] = at_mt_neural_new((const char *const *)dirs, nd, &nc, err);
        at_app_model_dirs_free(dirs, nd);
        if (!e[n]) return err->code ? err->code : AT_E_ENGINE;
        n++;
    }
    if (!(e[n] = at_mt_apertium_new(c->apertium_modes, 0, err))) {
        if (n) at_mt_engine_free(e[0]);
        return err->code ? err->code : AT_E_ENGINE;
    }
    n++;
    at_mt_engine *mt = at_mt_router_new(e, n, err);
    if (!mt || at_app_set_mt(a, mt, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
