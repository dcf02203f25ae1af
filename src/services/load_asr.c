/* load_asr.c - local speech recognition: Whisper when a model is
 * configured (then the default), and pocketsphinx always. */
#include "engines/asr/pocketsphinx.h"
#include "engines/asr/whisper/whisper.h"
#include "services/app.h"

int at_app_load_local_asr(at_app *a, at_err *err)
{
    const at_app_config *c = at_app_cfg(a);
    if (c->whisper_model && *c->whisper_model) {
        at_whisper_stream_config sc;
        at_whisper_stream_config_default(&sc);
        if (c->whisper_step_ms > 0) sc.step_ms = c->whisper_step_ms;
        if (c->whisper_max_buffer_s > 0) sc.max_buffer_s = c->whisper_max_buffer_s;
        sc.max_streams = c->max_streams;
        at_asr_engine *w = at_asr_whisper_new_ex(c->whisper_model, c->threads, &sc, err);
        if (!w || at_app_add_asr(a, w, err)) return err->code ? err->code : AT_E_ENGINE;
    }
    /* One decoder per live stream, plus two for file uploads. */
    at_asr_engine *ps = at_asr_pocketsphinx_new_ex(c->pocketsphinx_dir, c->max_streams + 2, err);
    if (!ps || at_app_add_asr(a, ps, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
