/* load_mt.c - local translation: the configured neural models (their
 * pairs first), then every installed Apertium pair, behind one router
 * that also pivots through English. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/models.h"
#include "engines/mt/apertium.h"
#include "engines/mt/neural.h"
#include "engines/mt/router.h"
#include "services/app.h"

#define MAX_MODELS 32

int at_app_load_local_mt(at_app *a, at_err *err)
{
    const at_app_config *c = at_app_cfg(a);
    at_mt_engine *e[2];
    int n = 0;
    if (c->mt_models && *c->mt_models) {
        char *list = strdup(c->mt_models), *save = NULL;
        /* a cache name ("opus-mt-en-es") stands for <cache>/NAME; the
         * folder keeps that name, which gives a Marian model its pair */
        char(*paths)[1024] = calloc(MAX_MODELS, sizeof *paths);
        const char *dirs[MAX_MODELS];
        int nd = 0;
        if (!list || !paths) {
            free(list);
            free(paths);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        for (char *d = strtok_r(list, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
            if (!*d) continue;
            int rc = nd == MAX_MODELS
                         ? at_err_set(err, AT_E_INVALID, "more than %d translation models", MAX_MODELS)
                         : at_models_resolve_dir(d, paths[nd], sizeof paths[nd], err);
            if (rc < 0) {
                free(list);
                free(paths);
                return rc;
            }
            dirs[nd] = paths[nd];
            nd++;
        }
        at_mt_neural_config nc = {c->threads, c->mt_beams, 0, 0, c->mt_q8};
        e[n] = nd ? at_mt_neural_new(dirs, nd, &nc, err) : NULL;
        free(list);
        free(paths);
        if (nd && !e[n]) return err->code ? err->code : AT_E_ENGINE;
        n += nd > 0;
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
