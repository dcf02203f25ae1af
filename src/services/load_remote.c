/* load_remote.c - the standalone pipeline: every engine is a client of a
 * remote service (asr_streaming, translate, tts at configured URLs). */
#include <time.h>

#include "engines/remote/remote.h"
#include "services/app.h"

static int load_remote_once(at_app *a, at_err *err)
{
    const at_app_config *c = at_app_cfg(a);
    at_asr_engine *asr = at_asr_remote_new(c->asr_url, c->upstream_key, err);
    if (!asr || at_app_add_asr(a, asr, err)) return err->code ? err->code : AT_E_IO;
    at_mt_engine *mt = at_mt_remote_new(c->translate_url, c->upstream_key, err);
    if (!mt || at_app_set_mt(a, mt, err)) return err->code ? err->code : AT_E_IO;
    at_tts_engine *tts = at_tts_remote_new(c->tts_url, c->upstream_key, err);
    if (!tts || at_app_add_tts(a, tts, err)) return err->code ? err->code : AT_E_IO;
    return 0;
}

/* Services of a deployment start in any order: wait up to a minute for
 * them to be reachable and ready. */
int at_app_load_remote(at_app *a, at_err *err)
{
    for (int attempt = 0;; attempt++) {
        int rc = load_remote_once(a, err);
        if (rc == 0 || (rc != AT_E_IO && rc != AT_E_BUSY) || attempt >= 120) return rc;
        at_app_drop_engines(a);
        if (attempt % 10 == 0)
            at_log_write(at_app_log(a), AT_LOG_WARN, "waiting for services", "error", err->msg, NULL);
        struct timespec ts = {0, 500000000L};
        nanosleep(&ts, NULL);
    }
}
