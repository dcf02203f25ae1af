/* load_asr.c - local speech recognition: Whisper when a model is
 * configured (then the default), and pocketsphinx always. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "compute/backend.h"

#include "engines/asr/pocketsphinx.h"
#include "engines/asr/whisper/models.h"
#include "engines/asr/whisper/whisper.h"
#include "services/app.h"

/* Which device Whisper runs on: --device, where "auto" takes the first GPU
 * when the build has the CUDA backend and the machine a GPU, and says why
 * not otherwise; an explicit "cuda" without one is an error. */
static int choose_device(at_app *a, const char *device, int *out, at_err *err)
{
    int want;
    if (at_app_parse_device(device, &want, err) != 0) return err->code;
    at_err why;
    at_err_clear(&why);
    int have = want != -1 ? at_cuda_devices(&why) : 0;
    if (want == AT_DEVICE_AUTO) {
        want = have > 0 ? 0 : -1;
        if (want < 0)
            at_log_write(at_app_log(a), AT_LOG_INFO, "whisper runs on the CPU", "device", "cpu", "reason",
                         why.msg, NULL);
    } else if (want >= have) {
        return at_err_set(err, AT_E_UNSUPPORTED, "--device %s: %s", device, have ? "no such GPU" : why.msg);
    }
    char name[32];
    if (want >= 0) {
        snprintf(name, sizeof name, "cuda:%d", want);
        at_log_write(at_app_log(a), AT_LOG_INFO, "whisper runs on the GPU", "device", name, NULL);
    } else {
        snprintf(name, sizeof name, "cpu");
    }
    at_app_set_device(a, name);
    *out = want;
    return 0;
}

/* Which VAD gates Whisper's live streams: --vad, where "auto" takes Silero
 * when its model can be found (the shared model cache in containers). */
static int choose_vad(const at_app_config *c, at_whisper_stream_config *sc, at_err *err)
{
    if (at_app_check_vad(c->vad, err) != 0) return err->code;
    const char *mode = c->vad && *c->vad ? c->vad : "auto";
    const char *model = c->vad_model && *c->vad_model ? c->vad_model : "silero-vad";
    char path[1024];
    at_err ignored;
    if (strcmp(mode, "off") == 0) {
        sc->vad = 0;
    } else if (strcmp(mode, "energy") == 0) {
        sc->vad = 1;
        sc->vad_model = NULL;
    } else if (strcmp(mode, "silero") == 0) {
        sc->vad = 1;
        sc->vad_model = model; /* a missing model fails the load, saying how to pull it */
    } else {                   /* auto */
        struct stat st;        /* a path is "resolved" whether or not it exists */
        sc->vad = 1;
        sc->vad_model = at_models_resolve(model, path, sizeof path, &ignored) == 0 && stat(path, &st) == 0 &&
                                S_ISREG(st.st_mode)
                            ? model
                            : NULL;
    }
    return 0;
}

int at_app_load_local_asr(at_app *a, at_err *err)
{
    const at_app_config *c = at_app_cfg(a);
    if (c->whisper_model && *c->whisper_model) {
        at_whisper_stream_config sc;
        at_whisper_stream_config_default(&sc);
        if (c->whisper_step_ms > 0) sc.step_ms = c->whisper_step_ms;
        if (c->whisper_max_buffer_s > 0) sc.max_buffer_s = c->whisper_max_buffer_s;
        sc.max_streams = c->max_streams;
        if (c->max_jobs > 0) sc.max_jobs = c->max_jobs;
        if (c->max_queued >= 0) sc.max_queued = c->max_queued;
        sc.batch_decode = c->batch_decode;
        sc.batch_encode = c->batch_encode;
        if (choose_device(a, c->device, &sc.device, err) < 0) return err->code;
        if (choose_vad(c, &sc, err) < 0) return err->code;
        at_log_write(at_app_log(a), AT_LOG_INFO, "whisper live-stream VAD", "vad",
                     !sc.vad        ? "off"
                     : sc.vad_model ? "silero"
                                    : "energy",
                     "vad_model", sc.vad_model ? sc.vad_model : "-", NULL);
        at_asr_engine *w = at_asr_whisper_new_ex(c->whisper_model, c->threads, &sc, err);
        if (!w || at_app_add_asr(a, w, err)) return err->code ? err->code : AT_E_ENGINE;
    }
    /* One limit story: every live stream (--max-streams) and every request
     * in flight (--max-inflight) may hold a decoder, so a request the
     * server admitted never finds them all busy.  Decoders are loaded
     * when first needed and kept, so memory follows the peak of use. */
    at_asr_engine *ps = at_asr_pocketsphinx_new_ex(
        c->pocketsphinx_dir, c->max_streams + (c->max_inflight > 0 ? c->max_inflight : 16), err);
    if (!ps || at_app_add_asr(a, ps, err)) return err->code ? err->code : AT_E_ENGINE;
    return 0;
}
