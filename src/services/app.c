#include "services/app.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engines/asr/whisper/models.h"

#define MAX_ASR 4
#define MAX_TTS 4

struct at_app {
    at_app_config cfg;
    at_log *log;
    at_metrics *metrics;
    pthread_mutex_t mu;
    int state; /* 0 loading, 1 ready, <0 failed */
    at_err load_err;
    pthread_t loader;
    int loader_started;
    at_asr_engine *asr[MAX_ASR];
    size_t n_asr;
    char asr_names[128];
    at_mt_engine *mt;
    at_tts_engine *tts[MAX_TTS];
    size_t n_tts;
    at_metric *m_audio, *m_latency, *m_streams, *m_pipelines;
    char device[32]; /* the whisper engine's ("": none loaded) */
};

void at_app_config_defaults(at_app_config *c)
{
    memset(c, 0, sizeof *c);
    c->kinds = AT_APP_ASR | AT_APP_MT | AT_APP_TTS;
    c->max_audio_seconds = 3600;
    c->max_text_chars = 5000;
    c->max_streams = 8;
    c->max_jobs = 2;
    c->max_queued = 16;
    c->batch_decode = 1;
    c->stream_idle_s = 30;
    c->pipeline_max_pending = 16;
    c->pipeline_max_backlog_s = 30;
}

int at_app_parse_device(const char *device, int *gpu, at_err *err)
{
    int g = AT_DEVICE_AUTO;
    if (!device || !strcmp(device, "auto"))
        g = AT_DEVICE_AUTO;
    else if (!strcmp(device, "cpu"))
        g = -1;
    else if (!strcmp(device, "cuda"))
        g = 0;
    else {
        char *end = NULL;
        long n = !strncmp(device, "cuda:", 5) && device[5] >= '0' && device[5] <= '9'
                     ? strtol(device + 5, &end, 10)
                     : -1;
        if (n < 0 || *end || n >= 64)
            return at_err_set(err, AT_E_INVALID, "--device must be auto, cpu, cuda or cuda:N, not '%s'",
                              device);
        g = (int)n;
    }
    if (gpu) *gpu = g;
    return 0;
}

void at_app_set_device(at_app *a, const char *device)
{
    pthread_mutex_lock(&a->mu);
    snprintf(a->device, sizeof a->device, "%s", device);
    pthread_mutex_unlock(&a->mu);
}

int at_app_check_vad(const char *mode, at_err *err)
{
    static const char *const modes[] = {"auto", "silero", "energy", "off"};
    if (!mode || !*mode) return 0;
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
        if (strcmp(mode, modes[i]) == 0) return 0;
    return at_err_set(err, AT_E_INVALID, "--vad must be silero, energy, off or auto, not '%s'", mode);
}

at_app *at_app_new(const at_app_config *cfg, at_log *log, at_metrics *metrics, at_err *err)
{
    at_app *a = calloc(1, sizeof *a);
    if (!a) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    a->cfg = *cfg;
    a->log = log;
    a->metrics = metrics;
    pthread_mutex_init(&a->mu, NULL);
    if (metrics) {
        static const double lat[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60};
        a->m_audio = at_metrics_counter(metrics, "audio_seconds_processed_total",
                                        "Seconds of audio recognised or synthesised", "service");
        a->m_latency =
            at_metrics_histogram(metrics, "engine_duration_seconds", "Time spent inside engines per call",
                                 "operation", lat, sizeof lat / sizeof lat[0]);
        a->m_streams =
            at_metrics_gauge(metrics, "asr_streams_active", "ASR WebSocket streams being decoded", NULL);
        a->m_pipelines = at_metrics_gauge(metrics, "pipeline_streams_active",
                                          "Speech-to-speech pipeline sessions open", NULL);
    }
    return a;
}

int at_app_add_asr(at_app *a, at_asr_engine *e, at_err *err)
{
    if (a->n_asr >= MAX_ASR) {
        at_asr_engine_free(e);
        return at_err_set(err, AT_E_INVALID, "too many ASR engines");
    }
    a->asr[a->n_asr++] = e;
    size_t off = strlen(a->asr_names);
    snprintf(a->asr_names + off, sizeof a->asr_names - off, "%s%s", off ? ", " : "", at_asr_engine_name(e));
    return 0;
}

int at_app_set_mt(at_app *a, at_mt_engine *e, at_err *err)
{
    (void)err;
    at_mt_engine_free(a->mt);
    a->mt = e;
    return 0;
}

int at_app_add_tts(at_app *a, at_tts_engine *e, at_err *err)
{
    if (a->n_tts >= MAX_TTS) {
        at_tts_engine_free(e);
        return at_err_set(err, AT_E_INVALID, "too many TTS engines");
    }
    a->tts[a->n_tts++] = e;
    return 0;
}

void at_app_drop_engines(at_app *a)
{
    for (size_t i = 0; i < a->n_asr; i++) at_asr_engine_free(a->asr[i]);
    for (size_t i = 0; i < a->n_tts; i++) at_tts_engine_free(a->tts[i]);
    at_mt_engine_free(a->mt);
    a->n_asr = a->n_tts = 0;
    a->mt = NULL;
    a->asr_names[0] = '\0';
}

/* The loaders come from the binary (see at_app_loaders): app.c names no
 * engine, so a binary links only the engines it asks for. */
static int load_engines(at_app *a, at_err *err)
{
    const at_app_config *c = &a->cfg;
    const at_app_loaders *l = c->loaders;
    if (!l) return c->kinds ? at_err_set(err, AT_E_ENGINE, "no engine loaders configured") : 0;
    if (c->kinds == AT_APP_PIPELINE)
        return l->remote ? l->remote(a, err)
                         : at_err_set(err, AT_E_ENGINE, "this binary cannot reach remote services");
    struct {
        int kind;
        int (*load)(at_app *, at_err *);
        const char *what;
    } steps[] = {
        {AT_APP_ASR, l->asr, "speech recognition"},
        {AT_APP_MT, l->mt, "translation"},
        {AT_APP_TTS, l->tts, "speech synthesis"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (!(c->kinds & steps[i].kind)) continue;
        if (!steps[i].load)
            return at_err_set(err, AT_E_ENGINE, "this binary has no %s engines", steps[i].what);
        int rc = steps[i].load(a, err);
        if (rc) return rc;
    }
    return 0;
}

int at_app_load(at_app *a, at_err *err)
{
    at_err e;
    at_err_clear(&e);
    int rc = load_engines(a, &e);
    pthread_mutex_lock(&a->mu);
    a->state = rc == 0 ? 1 : (rc < 0 ? rc : AT_E_ENGINE);
    a->load_err = e;
    pthread_mutex_unlock(&a->mu);
    if (rc) {
        if (err) *err = e;
        at_log_write(a->log, AT_LOG_ERROR, "engines failed to load", "error", e.msg, NULL);
    } else {
        at_log_write(a->log, AT_LOG_INFO, "engines loaded", NULL);
    }
    return rc;
}

static void *loader_main(void *arg)
{
    at_app_load(arg, NULL);
    return NULL;
}

int at_app_load_async(at_app *a, at_err *err)
{
    if (pthread_create(&a->loader, NULL, loader_main, a) != 0)
        return at_err_set(err, AT_E_ENGINE, "cannot start the engine loader thread");
    a->loader_started = 1;
    return 0;
}

int at_app_ready(at_app *a, at_err *err)
{
    pthread_mutex_lock(&a->mu);
    int s = a->state;
    if (s < 0 && err) *err = a->load_err;
    pthread_mutex_unlock(&a->mu);
    return s;
}

void at_app_free(at_app *a)
{
    if (!a) return;
    if (a->loader_started) pthread_join(a->loader, NULL);
    for (size_t i = 0; i < a->n_asr; i++) at_asr_engine_free(a->asr[i]);
    at_mt_engine_free(a->mt);
    for (size_t i = 0; i < a->n_tts; i++) at_tts_engine_free(a->tts[i]);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

const at_app_config *at_app_cfg(const at_app *a) { return &a->cfg; }
at_log *at_app_log(const at_app *a) { return a->log; }
at_metrics *at_app_metrics(const at_app *a) { return a->metrics; }

at_asr_engine *at_app_asr(at_app *a, const char *name)
{
    if (!a->n_asr) return NULL;
    if (!name || !*name || strcmp(name, "whisper-1") == 0 || strcmp(name, "default") == 0) return a->asr[0];
    for (size_t i = 0; i < a->n_asr; i++)
        if (strcmp(at_asr_engine_name(a->asr[i]), name) == 0) return a->asr[i];
    return NULL;
}

const char *at_app_asr_names(at_app *a) { return a->asr_names; }
at_mt_engine *at_app_mt(at_app *a) { return a->mt; }
size_t at_app_tts_count(at_app *a) { return a->n_tts; }
at_tts_engine *at_app_tts(at_app *a, size_t i) { return i < a->n_tts ? a->tts[i] : NULL; }

int at_app_model_dirs(const char *list, int max, const char *what, char ***dirs, int *n, at_err *err)
{
    *dirs = NULL;
    *n = 0;
    if (!list || !*list) return 0;
    char *copy = strdup(list), *save = NULL, path[1024];
    char **out = calloc((size_t)max, sizeof *out);
    int rc = !copy || !out ? at_err_set(err, AT_E_NOMEM, "out of memory") : 0;
    for (char *d = rc ? NULL : strtok_r(copy, ",", &save); d && !rc; d = strtok_r(NULL, ",", &save)) {
        if (!*d) continue;
        if (*n == max)
            rc = at_err_set(err, AT_E_INVALID, "more than %d %s", max, what);
        else if ((rc = at_models_resolve_dir(d, path, sizeof path, err)) >= 0) {
            rc = 0;
            if (!(out[*n] = strdup(path)))
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            else
                (*n)++;
        }
    }
    free(copy);
    if (rc) {
        at_app_model_dirs_free(out, *n);
        *n = 0;
        return rc;
    }
    *dirs = out;
    return 0;
}

void at_app_model_dirs_free(char **dirs, int n)
{
    for (int i = 0; dirs && i < n; i++) free(dirs[i]);
    free(dirs);
}

const at_tts_voice *at_app_find_voice(at_app *a, const char *name, at_tts_engine **engine)
{
    /* OpenAI's voice names, so existing clients work unchanged. */
    static const char *const openai[][2] = {
        {"alloy", "slt"}, {"nova", "slt"},   {"shimmer", "slt"}, {"coral", "slt"},
        {"sage", "slt"},  {"echo", "kal"},   {"onyx", "rms"},    {"fable", "awb"},
        {"ash", "kal"},   {"ballad", "awb"}, {"verse", "rms"},
    };
    if (!name || !*name) name = "slt";
    for (size_t i = 0; i < sizeof openai / sizeof openai[0]; i++)
        if (strcasecmp(name, openai[i][0]) == 0) {
            name = openai[i][1];
            break;
        }
    /* A language code with a neural voice: that voice, even where an
     * espeak-ng voice has the code for its name ("en", "es"), so the
     * pipeline speaks a target language with the best voice loaded. */
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < a->n_tts; i++) {
            size_t n;
            const at_tts_voice *v = at_tts_engine_voices(a->tts[i], &n);
            for (size_t j = 0; j < n; j++) {
                int hit = pass == 0 ? v[j].neural && strcasecmp(v[j].language, name) == 0
                          : pass == 1
                              ? strcmp(v[j].name, name) == 0
                              : strcasecmp(v[j].language, name) == 0; /* the first voice speaking it */
                if (hit) {
                    *engine = a->tts[i];
                    return &v[j];
                }
            }
        }
    return NULL;
}

void at_app_count_audio(at_app *a, const char *service, double seconds)
{
    if (a->m_audio) at_metric_inc(a->m_audio, service, seconds);
}

void at_app_observe(at_app *a, const char *what, double seconds)
{
    if (a->m_latency) at_metric_observe(a->m_latency, what, seconds);
}

void at_app_streams(at_app *a, int delta)
{
    if (a->m_streams) at_metric_add(a->m_streams, NULL, delta);
}

void at_app_pipelines(at_app *a, int delta)
{
    if (a->m_pipelines) at_metric_add(a->m_pipelines, NULL, delta);
}

cJSON *at_app_voices_json(at_app *a)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t e = 0; e < a->n_tts; e++) {
        size_t n;
        const at_tts_voice *v = at_tts_engine_voices(a->tts[e], &n);
        for (size_t i = 0; i < n; i++) {
            cJSON *vo = cJSON_CreateObject();
            cJSON_AddStringToObject(vo, "name", v[i].name);
            cJSON_AddStringToObject(vo, "language", v[i].language);
            cJSON_AddStringToObject(vo, "gender", v[i].gender);
            cJSON_AddNumberToObject(vo, "sample_rate", v[i].sample_rate);
            cJSON_AddNumberToObject(vo, "speakers", v[i].speakers > 1 ? v[i].speakers : 1);
            cJSON_AddBoolToObject(vo, "neural", v[i].neural != 0);
            cJSON_AddStringToObject(vo, "engine", at_tts_engine_name(a->tts[e]));
            cJSON_AddItemToArray(arr, vo);
        }
    }
    return arr;
}

/* ---- shared handlers ---- */

void at_service_health(at_http_req *req, void *app)
{
    (void)app;
    static const char ok[] = "{\"status\":\"ok\"}";
    at_http_respond(req, 200, "application/json", ok, sizeof ok - 1);
}

void at_service_ready(at_http_req *req, void *app)
{
    at_app *a = app;
    at_err e;
    at_err_clear(&e);
    int st = at_app_ready(a, &e);
    cJSON *o = cJSON_CreateObject();
    if (at_http_req_draining(req)) {
        /* stopping: finishing its work, taking no more */
        cJSON_AddBoolToObject(o, "ready", 0);
        cJSON_AddStringToObject(o, "status", "draining");
        at_http_respond_json(req, 503, o);
        cJSON_Delete(o);
        return;
    }
    cJSON_AddBoolToObject(o, "ready", st == 1);
    cJSON_AddStringToObject(o, "status", st == 1 ? "ready" : st == 0 ? "loading" : "failed");
    if (st < 0) cJSON_AddStringToObject(o, "error", e.msg);
    if (st == 1) {
        cJSON *eng = cJSON_AddObjectToObject(o, "engines");
        pthread_mutex_lock(&a->mu);
        if (a->device[0]) cJSON_AddStringToObject(o, "device", a->device);
        pthread_mutex_unlock(&a->mu);
        if (a->n_asr) {
            cJSON *l = cJSON_AddArrayToObject(eng, "asr");
            for (size_t i = 0; i < a->n_asr; i++)
                cJSON_AddItemToArray(l, cJSON_CreateString(at_asr_engine_name(a->asr[i])));
        }
        if (a->mt) {
            cJSON *l = cJSON_AddArrayToObject(eng, "mt");
            cJSON_AddItemToArray(l, cJSON_CreateString(at_mt_engine_name(a->mt)));
        }
        if (a->n_tts) {
            cJSON *l = cJSON_AddArrayToObject(eng, "tts");
            for (size_t i = 0; i < a->n_tts; i++)
                cJSON_AddItemToArray(l, cJSON_CreateString(at_tts_engine_name(a->tts[i])));
        }
    }
    at_http_respond_json(req, st == 1 ? 200 : 503, o);
    cJSON_Delete(o);
}

void at_service_metrics(at_http_req *req, void *app)
{
    at_app *a = app;
    char *text = a->metrics ? at_metrics_render(a->metrics) : strdup("");
    if (!text) {
        at_http_error(req, 500, "server_error", "out of memory");
        return;
    }
    at_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

int at_service_require_ready(at_app *a, at_http_req *req)
{
    at_err e;
    at_err_clear(&e);
    int st = at_app_ready(a, &e);
    if (st == 1) return 1;
    if (st == 0) {
        at_http_add_header(req, "retry-after", "2");
        at_http_error(req, 503, "overloaded_error", "engines are still loading; retry shortly");
    } else {
        at_http_error(req, 500, "server_error", "engines failed to load: %s", e.msg);
    }
    return 0;
}
