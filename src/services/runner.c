#include "services/runner.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/access.h"
#include "core/config.h"
#include "services/supervisor.h"
#include "services/wyoming.h"

#define RUNNER_EXIT_GRACE_MS 3000 /* after the drain timeout */

int at_services_main(const char *prog, int kinds, const at_app_loaders *loaders, int argc, char **argv,
                     int first)
{
    char *host = NULL, *model = NULL, *ps_dir = NULL, *modes = NULL, *log_level = NULL;
    char *asr_url = NULL, *mt_url = NULL, *tts_url = NULL, *vad = NULL, *vad_model = NULL, *device = NULL;
    char *api_keys = NULL, *cors = NULL, *upstream_key = NULL, *mt_models = NULL, *tts_models = NULL;
    long mt_beams = 0;
    int mt_q8 = 0;
    double key_rate = 0, addr_rate = 0;
    long wy_asr_port = -1, wy_tts_port = -1;
    int metrics_key = 0;
    long max_jobs = 2, max_queued = 16, body_timeout = 30;
    long port = 0, asr_port = 0, mt_port = 0, tts_port = 0, pl_port = 0, threads = 0, max_streams = 0,
         max_inflight = 0, idle = 0, drain = 0, max_chars = 0, max_pending = 0;
    double max_body_mb = 0, max_audio = 0, max_backlog = 0, step_ms = 0, max_buffer = 0;
    int json_logs = 0, batch_decode = 1, batch_encode = 0, one_process = 0;
    int single = kinds == AT_APP_ASR || kinds == AT_APP_MT || kinds == AT_APP_TTS || kinds == AT_APP_PIPELINE;
    const char *def_port = kinds == AT_APP_ASR   ? "8003"
                           : kinds == AT_APP_MT  ? "8004"
                           : kinds == AT_APP_TTS ? "8005"
                                                 : "8000";

    at_option opts[64];
    size_t n = 0;
    opts[n++] = (at_option){"host",
                            "AT_HOST",
                            AT_OPT_STRING,
                            "0.0.0.0",
                            "interface to listen on (127.0.0.1 = this machine only)",
                            &host,
                            0,
                            0};
    if (single)
        opts[n++] =
            (at_option){"port", "AT_PORT", AT_OPT_INT, def_port, "port to listen on (0 = any free port)",
                        &port,  0,         65535};
    else {
        opts[n++] = (at_option){"asr-port",           "AT_ASR_PORT", AT_OPT_INT, "8003",
                                "asr_streaming port", &asr_port,     0,          65535};
        opts[n++] = (at_option){
            "translate-port", "AT_TRANSLATE_PORT", AT_OPT_INT, "8004", "translate port", &mt_port, 0, 65535};
        opts[n++] =
            (at_option){"tts-port", "AT_TTS_PORT", AT_OPT_INT, "8005", "tts port", &tts_port, 0, 65535};
        if (kinds & AT_APP_PIPELINE)
            opts[n++] = (at_option){"pipeline-port",
                                    "AT_PIPELINE_PORT",
                                    AT_OPT_INT,
                                    "8000",
                                    "speech-to-speech pipeline and web page port",
                                    &pl_port,
                                    0,
                                    65535};
    }
    /* Wyoming (Home Assistant) beside the HTTP ports of asr and tts */
    if (kinds & AT_APP_ASR)
        opts[n++] = (at_option){single ? "wyoming-port" : "wyoming-asr-port",
                                single ? "AT_WYOMING_PORT" : "AT_WYOMING_ASR_PORT",
                                AT_OPT_INT,
                                "10300",
                                "Wyoming protocol port for speech recognition (-1 = off, 0 = any free port)",
                                &wy_asr_port,
                                -1,
                                65535};
    if (kinds & AT_APP_TTS)
        opts[n++] = (at_option){single ? "wyoming-port" : "wyoming-tts-port",
                                single ? "AT_WYOMING_PORT" : "AT_WYOMING_TTS_PORT",
                                AT_OPT_INT,
                                "10200",
                                "Wyoming protocol port for speech synthesis (-1 = off, 0 = any free port)",
                                &wy_tts_port,
                                -1,
                                65535};
    if (kinds == AT_APP_PIPELINE) {
        /* The standalone pipeline reaches the three services over HTTP. */
        opts[n++] = (at_option){"asr-url",
                                "AT_ASR_URL",
                                AT_OPT_STRING,
                                "http://localhost:8003",
                                "asr_streaming base URL",
                                &asr_url,
                                0,
                                0};
        opts[n++] = (at_option){"translate-url",
                                "AT_TRANSLATE_URL",
                                AT_OPT_STRING,
                                "http://localhost:8004",
                                "translate base URL",
                                &mt_url,
                                0,
                                0};
        opts[n++] = (at_option){
            "tts-url", "AT_TTS_URL", AT_OPT_STRING, "http://localhost:8005", "tts base URL", &tts_url, 0, 0};
        opts[n++] = (at_option){"upstream-api-key",
                                "AT_UPSTREAM_API_KEY",
                                AT_OPT_STRING,
                                NULL,
                                "API key sent to those services when they need one (--api-keys)",
                                &upstream_key,
                                0,
                                0};
        opts[n++] = (at_option){"max-streams",
                                "AT_MAX_STREAMS",
                                AT_OPT_INT,
                                "8",
                                "concurrent pipeline sessions (more get 503)",
                                &max_streams,
                                1,
                                1024};
        opts[n++] = (at_option){"max-audio-seconds",
                                "AT_MAX_AUDIO_SECONDS",
                                AT_OPT_DOUBLE,
                                "3600",
                                "longest audio per session",
                                &max_audio,
                                1,
                                86400};
    }
    if (kinds & AT_APP_PIPELINE) {
        opts[n++] = (at_option){"pipeline-max-pending",
                                "AT_PIPELINE_MAX_PENDING",
                                AT_OPT_INT,
                                "16",
                                "finals waiting for translation and speech before a "
                                "session overflows",
                                &max_pending,
                                1,
                                100000};
        opts[n++] = (at_option){"pipeline-max-backlog",
                                "AT_PIPELINE_MAX_BACKLOG",
                                AT_OPT_DOUBLE,
                                "30",
                                "seconds of audio waiting for recognition before a "
                                "session overflows",
                                &max_backlog,
                                0.1,
                                3600};
    }
    if (kinds & AT_APP_ASR) {
        opts[n++] = (at_option){"model",
                                "AT_WHISPER_MODEL",
                                AT_OPT_STRING,
                                NULL,
                                "whisper model: ggml .bin, Hugging Face folder, or a name "
                                "from 'audio-translator models list'; without one, "
                                "pocketsphinx answers",
                                &model,
                                0,
                                0};
        opts[n++] = (at_option){"whisper-step-ms",
                                "AT_WHISPER_STEP_MS",
                                AT_OPT_DOUBLE,
                                "1000",
                                "live streams: re-decode after this much new audio",
                                &step_ms,
                                100,
                                10000};
        opts[n++] = (at_option){"whisper-max-buffer",
                                "AT_WHISPER_MAX_BUFFER_S",
                                AT_OPT_DOUBLE,
                                "15",
                                "live streams: seconds of unconfirmed audio kept",
                                &max_buffer,
                                2,
                                30};
        opts[n++] = (at_option){"vad",
                                "AT_VAD",
                                AT_OPT_STRING,
                                "auto",
                                "whisper live streams: silero, energy, off, or auto (silero "
                                "when its model is in the cache, else energy)",
                                &vad,
                                0,
                                0};
        opts[n++] = (at_option){"vad-model",
                                "AT_VAD_MODEL",
                                AT_OPT_STRING,
                                "silero-vad",
                                "Silero VAD ONNX file, or a name from 'audio-translator "
                                "models list'",
                                &vad_model,
                                0,
                                0};
        opts[n++] = (at_option){
            "threads", "AT_THREADS", AT_OPT_INT, "0", "whisper threads (0 = all cores)", &threads, 0, 256};
        opts[n++] = (at_option){"pocketsphinx-model",
                                "AT_POCKETSPHINX_MODEL",
                                AT_OPT_STRING,
                                NULL,
                                "pocketsphinx model folder",
                                &ps_dir,
                                0,
                                0};
        opts[n++] = (at_option){"max-streams",
                                "AT_MAX_STREAMS",
                                AT_OPT_INT,
                                "8",
                                "concurrent live streams (more get 503)",
                                &max_streams,
                                1,
                                1024};
        opts[n++] = (at_option){"max-jobs",
                                "AT_MAX_JOBS",
                                AT_OPT_INT,
                                "2",
                                "whisper file transcriptions decoding at once (each holds "
                                "its buffers)",
                                &max_jobs,
                                1,
                                256};
        opts[n++] = (at_option){"batch-decode",
                                "AT_BATCH_DECODE",
                                AT_OPT_BOOL,
                                "1",
                                "whisper: run the decoder steps of concurrent streams and "
                                "transcriptions as shared batches (docs/compute.md)",
                                &batch_decode,
                                0,
                                0};
        opts[n++] = (at_option){"batch-encode",
                                "AT_BATCH_ENCODE",
                                AT_OPT_BOOL,
                                "0",
                                "whisper: encode the windows of concurrent streams and "
                                "transcriptions as shared batches too (with --batch-decode; "
                                "docs/compute.md)",
                                &batch_encode,
                                0,
                                0};
        opts[n++] = (at_option){"device",
                                "AT_DEVICE",
                                AT_OPT_STRING,
                                "auto",
                                "whisper: cpu, cuda, cuda:N, or auto (the first GPU when the build "
                                "and the machine have one, else the CPU)",
                                &device,
                                0,
                                0};
        opts[n++] = (at_option){"max-queued",
                                "AT_MAX_QUEUED",
                                AT_OPT_INT,
                                "16",
                                "whisper transcriptions waiting for a turn; more get 503",
                                &max_queued,
                                0,
                                10000};
        opts[n++] = (at_option){"max-audio-seconds",
                                "AT_MAX_AUDIO_SECONDS",
                                AT_OPT_DOUBLE,
                                "3600",
                                "longest audio per upload or stream",
                                &max_audio,
                                1,
                                86400};
    }
    if (kinds & AT_APP_MT)
        opts[n++] = (at_option){"apertium-modes",
                                "AT_APERTIUM_MODES",
                                AT_OPT_STRING,
                                NULL,
                                "folder of Apertium .mode files",
                                &modes,
                                0,
                                0};
    if (kinds & AT_APP_TTS)
        opts[n++] = (at_option){"tts-models",
                                "AT_TTS_MODELS",
                                AT_OPT_STRING,
                                NULL,
                                "neural voices (Hugging Face VITS folders: MMS-TTS, vits-ljs, "
                                "vits-vctk), comma-separated; they come before flite and espeak-ng",
                                &tts_models,
                                0,
                                0};
    if (kinds & AT_APP_MT) {
        opts[n++] = (at_option){"mt-models",
                                "AT_MT_MODELS",
                                AT_OPT_STRING,
                                NULL,
                                "translation models (Hugging Face folders of OPUS-MT, NLLB-200 or "
                                "M2M100), comma-separated; their pairs come before Apertium's",
                                &mt_models,
                                0,
                                0};
        opts[n++] = (at_option){"mt-beams",
                                "AT_MT_BEAMS",
                                AT_OPT_INT,
                                "0",
                                "beams of the translation models' search (0: each model's "
                                "generation_config.json)",
                                &mt_beams,
                                0,
                                16};
        opts[n++] = (at_option){"mt-q8",
                                "AT_MT_Q8",
                                AT_OPT_BOOL,
                                "0",
                                "quantize the translation models' matrices to q8_0 at load "
                                "(faster; logits within a few percent)",
                                &mt_q8,
                                0,
                                0};
    }
    if (kinds & (AT_APP_MT | AT_APP_TTS))
        opts[n++] = (at_option){"max-text-chars",
                                "AT_MAX_TEXT_CHARS",
                                AT_OPT_INT,
                                "5000",
                                "longest text to translate or speak",
                                &max_chars,
                                1,
                                100000};
    opts[n++] = (at_option){"max-body-mb",
                            "AT_MAX_BODY_MB",
                            AT_OPT_DOUBLE,
                            "25",
                            "largest request body in MiB (more gets 413)",
                            &max_body_mb,
                            0.001,
                            4096};
    opts[n++] = (at_option){"max-inflight",
                            "AT_MAX_INFLIGHT",
                            AT_OPT_INT,
                            "16",
                            "requests worked on at once (more get 503)",
                            &max_inflight,
                            1,
                            4096};
    opts[n++] = (at_option){"body-timeout",
                            "AT_BODY_TIMEOUT",
                            AT_OPT_INT,
                            "30",
                            "seconds for a request body to arrive, plus one per 64 KiB (slow senders "
                            "are dropped)",
                            &body_timeout,
                            1,
                            3600};
    opts[n++] = (at_option){"idle-timeout",
                            "AT_IDLE_TIMEOUT",
                            AT_OPT_INT,
                            "30",
                            "seconds before a silent client is dropped",
                            &idle,
                            1,
                            3600};
    opts[n++] = (at_option){"drain-timeout",
                            "AT_DRAIN_TIMEOUT",
                            AT_OPT_INT,
                            "30",
                            "seconds to finish work after SIGTERM",
                            &drain,
                            0,
                            3600};
    opts[n++] = (at_option){"api-keys",
                            "AT_API_KEYS_FILE",
                            AT_OPT_STRING,
                            NULL,
                            "file of API keys, one a line: requests must carry one (Authorization: Bearer "
                            "KEY, LibreTranslate's api_key, or ?api_key=); /health and /ready stay open",
                            &api_keys,
                            0,
                            0};
    opts[n++] = (at_option){"rate-limit",
                            "AT_RATE_LIMIT",
                            AT_OPT_DOUBLE,
                            "0",
                            "requests a minute per API key (0 = no limit; more get 429)",
                            &key_rate,
                            0,
                            1e9};
    opts[n++] = (at_option){"ip-rate-limit",
                            "AT_IP_RATE_LIMIT",
                            AT_OPT_DOUBLE,
                            "0",
                            "requests a minute per client address (0 = no limit; more get 429)",
                            &addr_rate,
                            0,
                            1e9};
    opts[n++] = (at_option){"metrics-need-key",
                            "AT_METRICS_NEED_KEY",
                            AT_OPT_BOOL,
                            "0",
                            "/metrics needs an API key too",
                            &metrics_key,
                            0,
                            0};
    opts[n++] = (at_option){"cors-origins",
                            "AT_CORS_ORIGINS",
                            AT_OPT_STRING,
                            NULL,
                            "origins browsers may call from: * or a comma-separated list (default: none)",
                            &cors,
                            0,
                            0};
    opts[n++] = (at_option){
        "log-level", "AT_LOG_LEVEL", AT_OPT_STRING, "info", "debug, info, warn or error", &log_level, 0, 0};
    opts[n++] = (at_option){"json-logs",
                            "AT_JSON_LOGS",
                            AT_OPT_BOOL,
                            "0",
                            "log JSON lines instead of key=value",
                            &json_logs,
                            0,
                            0};
    if (!single)
        opts[n++] = (at_option){"one-process",
                                "AT_ONE_PROCESS",
                                AT_OPT_BOOL,
                                "0",
                                "run every service in this one process (by default each gets a process "
                                "of its own, restarted if it crashes)",
                                &one_process,
                                0,
                                0};

    char usage[128];
    snprintf(usage, sizeof usage, "%s [OPTIONS]", prog);
    at_err err;
    at_err_clear(&err);
    size_t n_pos = 0;
    const char *pos[1];
    int rc = at_config_parse(opts, n, argc, argv, first, usage, pos, 1, &n_pos, &err);
    if (rc == 1) {
        at_config_free(opts, n);
        return 0;
    }
    if (rc != 0 || n_pos) {
        fprintf(stderr, "%s: %s\n", prog, rc ? err.msg : "unexpected argument");
        fprintf(stderr, "Try '%s --help'.\n", prog);
        at_config_free(opts, n);
        return 2;
    }
    if (at_app_check_vad(vad, &err) != 0 || at_app_parse_device(device, NULL, &err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        at_config_free(opts, n);
        return 2;
    }
    int level = at_log_level_parse(log_level);
    if (level < 0) {
        fprintf(stderr, "%s: unknown --log-level '%s'\n", prog, log_level);
        at_config_free(opts, n);
        return 2;
    }
    /* read before serve forks: a bad keys file stops it at once */
    at_access_config xc = {api_keys, key_rate, addr_rate, metrics_key, cors};
    at_access *access = at_access_new(&xc, &err);
    if (!access) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        at_config_free(opts, n);
        return 2;
    }
    /* The services, in the order serve starts them and logs their ports;
     * a single-service binary listens on --port instead. */
    struct {
        int kind;
        long *port;
        int (*listen)(at_app *, at_http_server *, const char *, int, int *, at_err *);
        const char *name;
    } svc[] = {
        {AT_APP_ASR, &asr_port, at_asr_service_listen, "asr_streaming"},
        {AT_APP_MT, &mt_port, at_translate_service_listen, "translate"},
        {AT_APP_TTS, &tts_port, at_tts_service_listen, "tts"},
        {AT_APP_PIPELINE, &pl_port, at_pipeline_service_listen, "pipeline"},
    };
    enum { N_SVC = sizeof svc / sizeof svc[0] };
    int listen_kinds = kinds; /* the services this process answers */
    if (!single && !one_process) {
        /* serve: a process per service (supervisor.h); this returns in
         * each child, which goes on as that one service. */
        at_supervisor_cfg sc = {.host = host, .drain_timeout_s = (int)drain};
        int idx[N_SVC];
        for (int k = 0; k < N_SVC; k++) {
            if (!(kinds & svc[k].kind)) continue;
            idx[sc.n] = k;
            sc.names[sc.n] = svc[k].name;
            sc.ports[sc.n++] = (int)*svc[k].port;
        }
        sc.log = at_log_new(2, (at_log_level)level, json_logs);
        int which = 0;
        int rc = at_supervise(&sc, &which);
        at_log_free(sc.log);
        if (rc >= 0) {
            at_access_free(access);
            at_config_free(opts, n);
            return rc;
        }
        for (int i = 0; i < sc.n; i++) *svc[idx[i]].port = sc.ports[i];
        listen_kinds = svc[idx[which]].kind;
        /* The pipeline keeps engines of its own, as in one process: its
         * backlog limit then measures recognition itself (a remote
         * recogniser takes audio faster than it recognises it), and a
         * crash in them costs the pipeline, not the services. */
        if (listen_kinds != AT_APP_PIPELINE) kinds = listen_kinds;
    }
    /* Big buffers (Whisper's per-request state, decoded audio, bodies)
     * come and go with requests.  glibc raises its mmap threshold as such
     * buffers are freed and then keeps later ones in per-thread arenas, so
     * a burst's memory would never go back to the system: a fixed
     * threshold maps and unmaps them. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    at_log *log = at_log_new(2, (at_log_level)level, json_logs);
    at_metrics *metrics = at_metrics_new();

    at_app_config ac;
    at_app_config_defaults(&ac);
    ac.kinds = kinds;
    ac.loaders = loaders;
    ac.whisper_model = model;
    ac.pocketsphinx_dir = ps_dir;
    ac.apertium_modes = modes;
    ac.mt_models = mt_models;
    ac.mt_beams = (int)mt_beams;
    ac.mt_q8 = mt_q8;
    ac.tts_models = tts_models;
    ac.threads = (int)threads;
    ac.whisper_step_ms = (int)step_ms;
    ac.whisper_max_buffer_s = max_buffer;
    ac.vad = vad;
    ac.vad_model = vad_model;
    if (max_audio > 0) ac.max_audio_seconds = max_audio;
    if (max_chars > 0) ac.max_text_chars = (size_t)max_chars;
    if (max_streams > 0) ac.max_streams = (int)max_streams;
    ac.max_jobs = (int)max_jobs;
    ac.max_inflight = max_inflight > 0 ? (int)max_inflight : 16;
    ac.max_queued = (int)max_queued;
    ac.batch_decode = batch_decode;
    ac.batch_encode = batch_encode;
    ac.device = device;
    ac.stream_idle_s = (int)idle;
    ac.asr_url = asr_url;
    ac.translate_url = mt_url;
    ac.tts_url = tts_url;
    ac.upstream_key = upstream_key;
    ac.api_keys_required = at_access_keys_required(access);
    if (max_pending > 0) ac.pipeline_max_pending = (int)max_pending;
    if (max_backlog > 0) ac.pipeline_max_backlog_s = max_backlog;

    at_http_config hc;
    at_http_config_defaults(&hc);
    hc.body_limit = (size_t)(max_body_mb * 1024 * 1024);
    hc.max_inflight = (int)max_inflight;
    hc.body_timeout_s = (int)body_timeout;
    hc.max_ws_sessions = ac.max_streams;
    hc.idle_timeout_s = (int)idle;
    hc.drain_timeout_s = (int)drain;
    hc.log = log;
    hc.metrics = metrics;
    hc.access = access;

    int status = 1;
    at_wyoming *wy[2] = {NULL, NULL};
    at_app *app = at_app_new(&ac, log, metrics, &err);
    at_http_server *srv = app ? at_http_server_new(&hc, &err) : NULL;
    if (!srv) goto out;
    for (int i = 0; i < N_SVC; i++) {
        if (!(listen_kinds & svc[i].kind)) continue;
        int bound = 0;
        if (svc[i].listen(app, srv, host, (int)(single ? port : *svc[i].port), &bound, &err) != 0) goto out;
        char url[128];
        snprintf(url, sizeof url, "http://%s:%d", strcmp(host, "0.0.0.0") == 0 ? "localhost" : host, bound);
        at_log_write(log, AT_LOG_INFO, "listening", "service", svc[i].name, "url", url, NULL);
    }
    /* A Wyoming port already taken (another service on this machine)
     * leaves HTTP serving: logged, not fatal. */
    static const struct {
        int kind;
        const char *name;
    } wy_kinds[] = {{AT_APP_ASR, "wyoming-asr"}, {AT_APP_TTS, "wyoming-tts"}};
    for (int i = 0; i < 2; i++) {
        long wp = wy_kinds[i].kind == AT_APP_ASR ? wy_asr_port : wy_tts_port;
        if (!(listen_kinds & wy_kinds[i].kind) || wp < 0) continue;
        int bound = 0;
        at_err werr;
        wy[i] = at_wyoming_start(app, wy_kinds[i].kind, host, (int)wp, &bound, &werr);
        char url[128];
        snprintf(url, sizeof url, "tcp://%s:%d", strcmp(host, "0.0.0.0") == 0 ? "localhost" : host, bound);
        if (wy[i])
            at_log_write(log, AT_LOG_INFO, "wyoming listening", "service", wy_kinds[i].name, "url", url,
                         NULL);
        else
            at_log_write(log, AT_LOG_ERROR, "wyoming not started", "service", wy_kinds[i].name, "error",
                         werr.msg, NULL);
    }
    if (at_app_load_async(app, &err) != 0) goto out;
    at_http_server_stop_on_signals(srv);
    at_http_server_run(srv);
    status = 0;
    /* The drain is over: connections close (their work sees itself
     * cancelled); work that does not stop within a few seconds is not
     * waited for, the process exits anyway. */
    for (int i = 0; i < 2; i++) {
        at_wyoming_stop(wy[i], RUNNER_EXIT_GRACE_MS);
        wy[i] = NULL;
    }
    int left = at_http_server_close(srv, RUNNER_EXIT_GRACE_MS);
    if (left > 0) {
        char n_left[16];
        snprintf(n_left, sizeof n_left, "%d", left);
        at_log_write(log, AT_LOG_WARN, "exiting with work still running", "workers", n_left, NULL);
        fflush(NULL); /* the log is not freed: those workers may still write to it */
        _exit(0);
    }
out:
    for (int i = 0; i < 2; i++) at_wyoming_stop(wy[i], RUNNER_EXIT_GRACE_MS);
    if (status) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        at_log_write(log, AT_LOG_ERROR, "fatal", "error", err.msg, NULL);
    }
    at_http_server_free(srv);
    at_access_free(access);
    at_app_free(app);
    at_metrics_free(metrics);
    at_log_free(log);
    at_config_free(opts, n);
    return status;
}
