/* app.h - what the services share: engines, limits, logs and metrics.
 *
 * One at_app backs the three services.  In the deployment each service
 * binary loads only the engines its API needs; `serve` loads all three
 * kinds into one app and mounts every service on one event loop.
 * Engines load on a background thread so /health answers at once and
 * /ready tells when they are usable. */
#ifndef AT_SERVICES_APP_H
#define AT_SERVICES_APP_H

#include <stddef.h>

#include "core/error.h"
#include "core/http.h"
#include "core/log.h"
#include "core/metrics.h"
#include "engines/asr/asr.h"
#include "engines/mt/mt.h"
#include "engines/tts/tts.h"

/* AT_APP_PIPELINE: the speech-to-speech front door.  With the *_url
 * fields set (the standalone `pipeline` binary) its engines are remote
 * clients of the three services instead of local engines. */
typedef struct cJSON cJSON;

enum { AT_APP_ASR = 1, AT_APP_MT = 2, AT_APP_TTS = 4, AT_APP_PIPELINE = 8 };

typedef struct at_app at_app;

/* Engine loaders, one per kind; each adds its engines with at_app_add_*.
 * A binary passes only those it needs, so it links only those engines
 * (and their libraries): the translate image carries no ASR model code. */
typedef struct at_app_loaders {
    int (*asr)(at_app *app, at_err *err);    /* local ASR engines */
    int (*mt)(at_app *app, at_err *err);     /* local MT engines */
    int (*tts)(at_app *app, at_err *err);    /* local TTS engines */
    int (*remote)(at_app *app, at_err *err); /* the standalone pipeline's clients */
} at_app_loaders;

int at_app_load_local_asr(at_app *app, at_err *err); /* whisper (if a model), pocketsphinx */
int at_app_load_local_mt(at_app *app, at_err *err);  /* the neural models, then apertium */
int at_app_load_local_tts(at_app *app, at_err *err); /* neural voices, flite, espeak-ng */
int at_app_load_remote(at_app *app, at_err *err);    /* asr/translate/tts over HTTP */
/* All three local loaders (serve and the CLI). */
extern const at_app_loaders at_app_local_loaders;

/* Used by loaders: the app takes ownership (also on failure). */
int at_app_add_asr(at_app *app, at_asr_engine *e, at_err *err);
int at_app_set_mt(at_app *app, at_mt_engine *e, at_err *err);
int at_app_add_tts(at_app *app, at_tts_engine *e, at_err *err);
/* The folders of a comma-separated list of models (--mt-models,
 * --tts-models): each entry a folder, or a cache name standing for
 * <cache>/NAME (at_models_resolve_dir); empty entries are skipped, more
 * than max is an error naming `what`.  *dirs receives *n malloc'd paths
 * (NULL and 0 for none), freed with at_app_model_dirs_free. */
int at_app_model_dirs(const char *list, int max, const char *what, char ***dirs, int *n, at_err *err);
void at_app_model_dirs_free(char **dirs, int n);
void at_app_drop_engines(at_app *app);

typedef struct at_app_config {
    int kinds;                     /* AT_APP_* bits: which engines to load */
    const at_app_loaders *loaders; /* how (must outlive loading) */
    const char *whisper_model;     /* path; NULL = pocketsphinx only */
    const char *pocketsphinx_dir;  /* NULL = Debian default */
    const char *apertium_modes;    /* NULL = Debian default */
    const char *mt_models;         /* neural translation folders, comma-separated (NULL: none) */
    int mt_beams;                  /* their beams (0: each model's generation config) */
    int mt_q8;                     /* their matrices quantized to q8_0 at load */
    const char *tts_models;        /* neural voices (VITS folders), comma-separated (NULL: none) */
    int threads;                   /* whisper threads (0 = all cores) */
    int whisper_step_ms;           /* live streams: 0 = engine default */
    double whisper_max_buffer_s;   /* live streams: 0 = engine default */
    const char *vad;               /* whisper streams: "silero", "energy", "off",
                                      NULL/"auto": silero if vad_model is there */
    const char *vad_model;         /* Silero ONNX path or cache name; NULL: "silero-vad" */
    double max_audio_seconds;      /* per upload / per stream */
    size_t max_text_chars;         /* translate q and tts input */
    int max_streams;               /* concurrent ASR WebSocket streams */
    int max_inflight;              /* requests worked on at once (the HTTP server's limit) */
    int max_jobs, max_queued;      /* whisper transcriptions at once, and waiting */
    int batch_decode;              /* whisper: decoder steps batched across callers */
    int batch_encode;              /* whisper: encoder windows batched across callers */
    const char *device;            /* whisper: "auto", "cpu", "cuda" or "cuda:N"; NULL: auto */
    int stream_idle_s;             /* a stream silent this long is closed */
    /* pipeline: remote services (NULL = engines in this process) */
    const char *asr_url;           /* e.g. http://asr_streaming:8003 */
    const char *translate_url;     /* e.g. http://translate:8004 */
    const char *tts_url;           /* e.g. http://tts:8005 */
    const char *upstream_key;      /* API key the remote engines send (NULL: none) */
    int api_keys_required;         /* requests need a key (--api-keys): told to clients */
    int pipeline_max_pending;      /* finals awaiting translation + speech */
    double pipeline_max_backlog_s; /* audio received but not yet recognised */
} at_app_config;

void at_app_config_defaults(at_app_config *c);
/* Checks a --vad value (NULL and "" mean auto); AT_E_INVALID names the
 * allowed ones. */
/* Parses a --device value: "auto" (or NULL) sets *gpu to AT_DEVICE_AUTO,
 * "cpu" to -1, "cuda" to 0 and "cuda:N" to N (gpu may be NULL: a check). */
#define AT_DEVICE_AUTO (-2)
int at_app_parse_device(const char *device, int *gpu, at_err *err);
/* The device the whisper engine runs on ("cpu", "cuda:0"), shown by /ready. */
void at_app_set_device(at_app *a, const char *device);
int at_app_check_vad(const char *mode, at_err *err);

/* Creates the app; engines are not loaded yet. */
at_app *at_app_new(const at_app_config *cfg, at_log *log, at_metrics *metrics, at_err *err);
/* Loads the configured engines synchronously (CLI commands, tests). */
int at_app_load(at_app *app, at_err *err);
/* Loads them on a background thread (services). */
int at_app_load_async(at_app *app, at_err *err);
/* 1 once loaded, 0 while loading, negative if loading failed (message in err). */
int at_app_ready(at_app *app, at_err *err);
void at_app_free(at_app *app);

const at_app_config *at_app_cfg(const at_app *app);
at_log *at_app_log(const at_app *app);
at_metrics *at_app_metrics(const at_app *app);

/* Engines (valid once ready).  asr: by name ("pocketsphinx", "whisper"),
 * NULL/""/"whisper-1" = the default (whisper when a model is configured). */
at_asr_engine *at_app_asr(at_app *app, const char *name);
/* Names of the loaded ASR engines, comma-separated, for error messages. */
const char *at_app_asr_names(at_app *app);
at_mt_engine *at_app_mt(at_app *app);
/* Voice lookup across TTS engines: a language code that a neural voice
 * speaks (that voice), an exact voice name, an OpenAI voice name (alloy,
 * echo, ... mapped to flite's English voices), or another language code
 * (its first voice).  NULL/"" = the default English voice.  *engine
 * receives its engine. */
const at_tts_voice *at_app_find_voice(at_app *app, const char *name, at_tts_engine **engine);
size_t at_app_tts_count(at_app *app);
at_tts_engine *at_app_tts(at_app *app, size_t i);

/* Metrics the services update. */
void at_app_count_audio(at_app *app, const char *service, double seconds);
void at_app_observe(at_app *app, const char *what, double seconds);
void at_app_streams(at_app *app, int delta);
void at_app_pipelines(at_app *app, int delta);

/* Services: each mounts its routes on a listener of srv. */
int at_asr_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                          at_err *err);
int at_translate_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                                at_err *err);
int at_tts_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                          at_err *err);
/* The pipeline: WebSocket /v1/pipeline, the web page at /, /v1/config. */
int at_pipeline_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                               at_err *err);

/* verbose_json's timestamp granularities (OpenAI's
 * timestamp_granularities[]): 0 is "segment" alone, the default. */
enum {
    AT_ASR_WORDS = 1,      /* "word": words at the top level and in each segment */
    AT_ASR_NO_SEGMENTS = 2 /* "word" without "segment": no segments */
};

/* An ASR result as the API answers it: fmt = json | verbose_json | text |
 * srt | vtt; granularity: AT_ASR_* flags for verbose_json.  Malloc'd,
 * NUL-terminated; NULL on allocation failure. */
char *at_asr_format_result(const at_asr_result *r, const char *fmt, const char *task, int granularity,
                           const char **content_type);

/* Every voice of every TTS engine as a JSON array of {name, language,
 * gender, sample_rate, speakers, neural, engine} (GET /v1/voices and the
 * pipeline page). */
cJSON *at_app_voices_json(at_app *app);

/* Shared handlers: GET /health, GET /ready, GET /metrics. */
void at_service_health(at_http_req *req, void *app);
void at_service_ready(at_http_req *req, void *app);
void at_service_metrics(at_http_req *req, void *app);
/* The text routes' request bodies (translate, detect, speech): JSON or a
 * form around at most --max-text-chars (100 000: 6 bytes a character when
 * every one is a \u escape) and a few fields.  Bounded below the server's
 * --max-body-mb, which is sized for audio: a JSON tree takes about 40
 * times its text's bytes, and an API key is looked for in it before the
 * key is checked. */
#define AT_TEXT_BODY_MAX (1u << 20)

/* The routes every service answers, first in each route table. */
#define AT_SERVICE_COMMON_ROUTES                                                                             \
    {"GET", "/health", at_service_health, NULL, AT_ROUTE_INLINE, 0},                                         \
        {"GET", "/ready", at_service_ready, NULL, AT_ROUTE_INLINE, 0},                                       \
    {                                                                                                        \
        "GET", "/metrics", at_service_metrics, NULL, AT_ROUTE_INLINE, 0                                      \
    }

/* Answers 503 (loading) or 500 (failed) and returns 0 when engines are not
 * usable; returns 1 when they are. */
int at_service_require_ready(at_app *app, at_http_req *req);

#endif
