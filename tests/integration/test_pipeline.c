/* The speech-to-speech pipeline: WebSocket /v1/pipeline and its page in
 * `audio-translator serve` (engines in-process), the standalone `pipeline`
 * binary against separately spawned asr_streaming, translate and tts
 * (remote engines), and the CLI's translate-speech.  Speech is real
 * LibriVox English; the target is Spanish (Apertium, espeak-ng). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clips.h"

static at_test_proc serve;
static int pl_port;
static char tmpdir[64];
static int16_t *speech; /* five LibriVox clips with a second of silence between */
static size_t speech_n;

static void build_recording(void)
{
    /* half a second of silence first, a second after each clip */
    speech = at_test_librivox_stream16(AT_TEST_N_CLIPS, 0.5, 1.0, &speech_n, NULL);
    assert_non_null(speech);
}

static int setup_serve(void **state)
{
    (void)state;
    build_recording();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/at-pipe-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    const char *args[] = {"serve", "--host", "127.0.0.1", "--asr-port", "0", "--translate-port", "0",
                          "--tts-port", "0", "--pipeline-port", "0", "--idle-timeout", "20",
                          /* tests send whole recordings faster than real time */
                          "--pipeline-max-backlog", "120", NULL};
    if (at_test_spawn(&serve, "audio-translator", args, 4, 120) != 0) return -1;
    pl_port = serve.ports[3];
    return 0;
}

static int teardown_serve(void **state)
{
    (void)state;
    int rc = at_test_stop(&serve, 15);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return -1;
    return rc == 0 ? 0 : -1;
}

/* ---- a session and what it received ---- */

typedef struct msg {
    int op;      /* 1 text, 2 binary */
    cJSON *json; /* text messages */
    size_t len;  /* binary length */
} msg;

typedef struct session {
    msg *m;
    size_t n;
    int close_code;
} session;

static void session_free(session *s)
{
    for (size_t i = 0; i < s->n; i++) cJSON_Delete(s->m[i].json);
    free(s->m);
}

static const char *type_of(const msg *m)
{
    const cJSON *t = m->json ? cJSON_GetObjectItemCaseSensitive(m->json, "type") : NULL;
    return cJSON_IsString(t) ? t->valuestring : "";
}

static double num(const msg *m, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const msg *m, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m->json, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Reads until the server closes (or timeout); everything is kept. */
static void read_all(at_test_ws *ws, session *s, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    for (;;) {
        char *d = NULL;
        size_t l = 0;
        int op = at_test_ws_recv(ws, &d, &l, timeout_ms);
        if (op != 1 && op != 2) {
            free(d);
            if (op == 8)
                s->close_code = ws->close_code;
            else
                fail_msg("the session ended without a close frame (%d)", op);
            return;
        }
        s->m = realloc(s->m, (s->n + 1) * sizeof *s->m);
        s->m[s->n].op = op;
        s->m[s->n].json = op == 1 ? cJSON_Parse(d) : NULL;
        s->m[s->n].len = l;
        if (op == 1) assert_non_null(s->m[s->n].json);
        s->n++;
        free(d);
    }
}

static void send_text(at_test_ws *ws, const char *t)
{
    assert_int_equal(at_test_ws_send(ws, 1, t, strlen(t)), 0);
}

/* Connects, configures and waits for "ready". */
static void start(at_test_ws *ws, int port, const char *config)
{
    assert_int_equal(at_test_ws_connect(ws, port, "/v1/pipeline", NULL), 0);
    send_text(ws, config);
    char *d = NULL;
    size_t l;
    assert_int_equal(at_test_ws_recv(ws, &d, &l, 30000), 1);
    if (!strstr(d, "\"type\":\"ready\"")) fail_msg("expected ready, got %s", d);
    free(d);
}

static void send_audio(at_test_ws *ws, const int16_t *pcm, size_t n, size_t frame)
{
    for (size_t i = 0; i < n; i += frame) {
        size_t k = n - i < frame ? n - i : frame;
        assert_int_equal(at_test_ws_send(ws, 2, pcm + i, k * 2), 0);
    }
}

/* The whole contract of a finished session: order, ids, headers, summary. */
static int check_session(const session *s, int speak)
{
    int next_final = 0, next_translation = 0, audio_seg = -1, audio_done = -1;
    size_t audio_bytes = 0;
    int summary = 0;
    double last_end = 0;
    for (size_t i = 0; i < s->n; i++) {
        const msg *m = &s->m[i];
        assert_int_equal(summary, 0); /* nothing after the summary */
        if (m->op == 2) {
            /* every binary frame follows its own header */
            assert_true(i > 0);
            const msg *h = &s->m[i - 1];
            assert_string_equal(type_of(h), "audio");
            assert_int_equal((size_t)num(h, "bytes"), m->len);
            audio_bytes += m->len;
            continue;
        }
        const char *t = type_of(m);
        if (strcmp(t, "partial") == 0) continue;
        if (strcmp(t, "final") == 0) {
            assert_int_equal((int)num(m, "segment"), next_final);
            assert_true(num(m, "start") >= last_end - 0.05);
            assert_true(num(m, "end") >= num(m, "start"));
            last_end = num(m, "end");
            assert_true(strlen(str(m, "text")) > 0);
            next_final++;
        } else if (strcmp(t, "translation") == 0) {
            int id = (int)num(m, "segment");
            assert_int_equal(id, next_translation);
            assert_true(id < next_final); /* after its final */
            /* the previous segment's audio is complete before this one */
            if (speak && id > 0) assert_int_equal(audio_done, id - 1);
            assert_true(strlen(str(m, "source_text")) > 0);
            assert_true(strlen(str(m, "translated_text")) > 0);
            assert_string_equal(str(m, "target_language"), "es");
            next_translation++;
        } else if (strcmp(t, "audio") == 0) {
            assert_true(speak);
            int id = (int)num(m, "segment");
            assert_int_equal(id, next_translation - 1);
            assert_true(num(m, "sample_rate") >= 8000);
            assert_string_equal(str(m, "encoding"), "pcm16");
            assert_true(i + 1 < s->n && s->m[i + 1].op == 2);
            audio_seg = id;
        } else if (strcmp(t, "audio_end") == 0) {
            assert_int_equal((int)num(m, "segment"), audio_seg);
            assert_int_equal((int)num(m, "segment"), next_translation - 1);
            audio_done = audio_seg;
        } else if (strcmp(t, "summary") == 0) {
            assert_int_equal((int)num(m, "segments"), next_final);
            assert_int_equal((int)num(m, "errors"), 0);
            summary = 1;
        } else {
            char *p = cJSON_PrintUnformatted(m->json);
            fail_msg("unexpected message %s", p);
        }
    }
    assert_int_equal(summary, 1);
    assert_int_equal(next_translation, next_final);
    if (speak) {
        assert_int_equal(audio_done, next_final - 1);
        assert_true(audio_bytes > 44100); /* over a second of speech */
    } else {
        assert_int_equal(audio_bytes, 0);
    }
    assert_int_equal(s->close_code, 1000);
    return next_final;
}

static const char *const es_config =
    "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\","
    "\"speak\":true,\"sample_rate\":16000,\"encoding\":\"pcm16\"}";

static void run_full_session(int port, const char *config, int speak, int rate)
{
    at_test_ws ws;
    start(&ws, port, config);
    if (rate == 16000) {
        send_audio(&ws, speech, speech_n, 1600);
    } else {
        /* naive decimation is enough to check the server converts rates */
        size_t step = 16000 / (size_t)rate, n = speech_n / step;
        int16_t *d = malloc(n * sizeof *d);
        for (size_t i = 0; i < n; i++) d[i] = speech[i * step];
        send_audio(&ws, d, n, (size_t)rate / 10);
        free(d);
    }
    send_text(&ws, "{\"type\":\"end\"}");
    session s;
    read_all(&ws, &s, 60000);
    at_test_ws_close(&ws);
    int segs = check_session(&s, speak);
    printf("# %d segments, %zu messages\n", segs, s.n);
    for (size_t i = 0; i < s.n; i++)
        if (strcmp(type_of(&s.m[i]), "translation") == 0)
            printf("#   %s -> %s\n", str(&s.m[i], "source_text"), str(&s.m[i], "translated_text"));
    /* five sentences separated by a second of silence */
    assert_true(segs >= 4);
    assert_true(segs <= 10);
    session_free(&s);
}

static void page_config_and_health(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(pl_port, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/html"));
    assert_non_null(strstr((char *)r.body, "app.js"));
    at_test_resp_free(&r);
    static const char *const js[] = {"/app.js", "/pcm-worklet.js"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(at_test_http(pl_port, "GET", js[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
        assert_non_null(strstr(ct, "javascript"));
        assert_true(r.len > 100);
        at_test_resp_free(&r);
    }
    assert_int_equal(at_test_http(pl_port, "GET", "/v1/config", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *o = cJSON_Parse((char *)r.body);
    assert_non_null(o);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(o, "source_languages")) >= 1);
    assert_non_null(strstr((char *)r.body, "{\"source\":\"en\",\"target\":\"es\"}"));
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(o, "voices")) > 10);
    cJSON_Delete(o);
    at_test_resp_free(&r);
    static const char *const paths[] = {"/health", "/ready", "/metrics"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(at_test_http(pl_port, "GET", paths[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        at_test_resp_free(&r);
    }
    assert_int_equal(at_test_http(pl_port, "GET", "/nope.js", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    at_test_resp_free(&r);
}

static void events_in_order_with_audio(void **state)
{
    (void)state;
    run_full_session(pl_port, es_config, 1, 16000);
}

static void text_only_at_8khz(void **state)
{
    (void)state;
    run_full_session(pl_port,
                     "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"speak\":false,"
                     "\"sample_rate\":8000}",
                     0, 8000);
}

static void bad_configurations(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json",
        "[1,2]",
        "{\"type\":\"config\",\"source\":\"en\"}",                      /* no target */
        "{\"type\":\"config\",\"source\":\"en\",\"target\":\"zz\"}",    /* no such pair */
        "{\"type\":\"config\",\"source\":\"xx\",\"target\":\"es\"}",    /* ASR language */
        "{\"type\":\"config\",\"target\":\"es\",\"voice\":\"nobody\"}", /* voice */
        "{\"type\":\"config\",\"target\":\"es\",\"sample_rate\":1000}", /* rate */
        "{\"type\":\"config\",\"target\":\"es\",\"encoding\":\"mp3\"}", /* encoding */
        "{\"type\":\"config\",\"target\":\"es\",\"speak\":\"yes\"}",    /* speak */
        "{\"type\":\"hello\",\"target\":\"es\"}",                       /* type */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0] + 1; i++) {
        at_test_ws ws;
        assert_int_equal(at_test_ws_connect(&ws, pl_port, "/v1/pipeline", NULL), 0);
        if (i < sizeof bad / sizeof bad[0])
            send_text(&ws, bad[i]);
        else
            assert_int_equal(at_test_ws_send(&ws, 2, speech, 3200), 0); /* audio first */
        session s;
        read_all(&ws, &s, 10000);
        at_test_ws_close(&ws);
        assert_int_equal(s.n, 1);
        assert_string_equal(type_of(&s.m[0]), "error");
        assert_string_equal(str(&s.m[0], "code"), "bad_config");
        printf("# %s -> %s\n", i < sizeof bad / sizeof bad[0] ? bad[i] : "(audio)", str(&s.m[0], "message"));
        assert_int_equal(s.close_code, 1008);
        session_free(&s);
    }
    /* the pair error names what is available */
    at_test_ws ws;
    assert_int_equal(at_test_ws_connect(&ws, pl_port, "/v1/pipeline", NULL), 0);
    send_text(&ws, bad[3]);
    session s;
    read_all(&ws, &s, 10000);
    at_test_ws_close(&ws);
    assert_non_null(strstr(str(&s.m[0], "message"), "en-es"));
    session_free(&s);
}

static double active_sessions(void)
{
    at_test_resp r;
    assert_int_equal(at_test_http(pl_port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    const char *p = strstr((char *)r.body, "\npipeline_streams_active ");
    double v = p ? atof(p + 25) : -1;
    at_test_resp_free(&r);
    return v;
}

static void client_disconnects_mid_utterance(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        at_test_ws ws;
        start(&ws, pl_port, es_config);
        /* into the middle of the first sentence, then gone */
        send_audio(&ws, speech, 8000 + 16000 * 2 + round * 4000, 1600);
        if (round == 2) {
            /* after the first sentence: its translation is being spoken */
            send_audio(&ws, speech + 40000, 16000 * 6, 1600);
            char *d;
            size_t l;
            while (at_test_ws_recv(&ws, &d, &l, 20000) == 1 && !strstr(d, "\"final\"")) free(d);
            free(d);
        }
        at_test_ws_close(&ws);
    }
    double v = -1;
    for (int i = 0; i < 100 && (v = active_sessions()) != 0; i++) usleep(100000);
    assert_true(v == 0);
    /* and the service still works */
    at_test_ws ws;
    start(&ws, pl_port, es_config);
    send_text(&ws, "{\"type\":\"end\"}");
    session s;
    read_all(&ws, &s, 20000);
    at_test_ws_close(&ws);
    assert_int_equal(s.close_code, 1000);
    assert_string_equal(type_of(&s.m[s.n - 1]), "summary");
    session_free(&s);
}

static void overflow_closes_with_1013(void **state)
{
    (void)state;
    /* A client that pushes 30 s at once against a 1 s backlog. */
    at_test_ws ws;
    start(&ws, pl_port, "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"max_backlog_s\":1}");
    for (size_t i = 0; i + 16000 <= speech_n; i += 16000)
        if (at_test_ws_send(&ws, 2, speech + i, 32000) != 0) break; /* closed under us */
    session s;
    read_all(&ws, &s, 20000);
    at_test_ws_close(&ws);
    assert_int_equal(s.close_code, 1013);
    const msg *last = &s.m[s.n - 1];
    assert_string_equal(type_of(last), "error");
    assert_string_equal(str(last, "code"), "overflow");
    printf("# overflow: %s\n", str(last, "message"));
    session_free(&s);
    double v = -1;
    for (int i = 0; i < 100 && (v = active_sessions()) != 0; i++) usleep(100000);
    assert_true(v == 0);
}

static void unknown_control_message_is_not_fatal(void **state)
{
    (void)state;
    at_test_ws ws;
    start(&ws, pl_port, es_config);
    send_text(&ws, "{\"type\":\"pause\"}");
    send_text(&ws, "{\"type\":\"end\"}");
    session s;
    read_all(&ws, &s, 20000);
    at_test_ws_close(&ws);
    assert_string_equal(str(&s.m[0], "code"), "bad_message");
    assert_string_equal(type_of(&s.m[s.n - 1]), "summary");
    assert_int_equal(s.close_code, 1000);
    session_free(&s);
}

/* ---- the CLI ---- */

static void cli_translate_speech(void **state)
{
    (void)state;
    char in[128], wav[128], srt[128], vtt[128], cmd[1024];
    snprintf(in, sizeof in, "%s/in.wav", tmpdir);
    snprintf(wav, sizeof wav, "%s/out.wav", tmpdir);
    snprintf(srt, sizeof srt, "%s/out.srt", tmpdir);
    snprintf(vtt, sizeof vtt, "%s/out.vtt", tmpdir);
    size_t len;
    unsigned char *bytes = at_test_wav_bytes(speech, speech_n, 16000, 1, &len);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    free(bytes);
    snprintf(cmd, sizeof cmd,
             "%s/audio-translator translate-speech %s --from en --to es -o %s --srt %s --vtt %s "
             "2>&1",
             getenv("AT_BUILD_DIR"), in, wav, srt, vtt);
    FILE *p = popen(cmd, "r");
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    printf("# %s", out);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* no progress bar when stderr is not a terminal */
    assert_null(strchr(out, '\r'));

    int rate;
    size_t samples;
    int16_t *o = at_test_read_wav16(wav, &samples, &rate);
    assert_non_null(o);
    double energy = 0;
    for (size_t i = 0; i < samples; i++) energy += (double)o[i] * o[i];
    double rms = sqrt(energy / (double)samples);
    printf("# out.wav: %.1f s at %d Hz, RMS %.0f\n", (double)samples / rate, rate, rms);
    assert_true(rms > 100);
    assert_true((double)samples / rate >= (double)speech_n / 16000 - 0.5);
    free(o);

    /* one cue per segment, times increasing, source then translation */
    unsigned char *doc = at_test_read_file(srt, &len);
    assert_non_null(doc);
    int cues = 0;
    double last = -1;
    char *save = NULL;
    for (char *line = strtok_r((char *)doc, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int h1, m1, s1, ms1, h2, m2, s2, ms2;
        if (sscanf(line, "%d:%d:%d,%d --> %d:%d:%d,%d", &h1, &m1, &s1, &ms1, &h2, &m2, &s2, &ms2) == 8) {
            double a = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000.0, b = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000.0;
            assert_true(a > last);
            assert_true(b >= a);
            last = b;
            cues++;
            char *src = strtok_r(NULL, "\n", &save), *tr = strtok_r(NULL, "\n", &save);
            assert_non_null(src);
            assert_non_null(tr);
        }
    }
    printf("# %d cues\n", cues);
    assert_true(cues >= 4 && cues <= 10);
    free(doc);
    doc = at_test_read_file(vtt, &len);
    assert_non_null(doc);
    assert_true(strncmp((char *)doc, "WEBVTT", 6) == 0);
    free(doc);

    /* errors */
    snprintf(cmd, sizeof cmd,
             "%s/audio-translator translate-speech %s --from en --to zz -o %s 2>&1 >/dev/null",
             getenv("AT_BUILD_DIR"), in, wav);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    st = pclose(p);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_non_null(strstr(out, "en-es"));
    snprintf(cmd, sizeof cmd, "%s/audio-translator translate-speech %s 2>/dev/null", getenv("AT_BUILD_DIR"),
             in);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

/* ---- the standalone pipeline against the three services ---- */

static at_test_proc svc[3], remote;
static int remote_port;

/* The services of the standalone pipeline need an API key, which it
 * sends (--upstream-api-key) on every call and stream. */
static char keys_file[64];
#define UPSTREAM_KEY "pipeline-upstream-key"

static int setup_remote(void **state)
{
    (void)state;
    snprintf(keys_file, sizeof keys_file, "/tmp/at-pipe-keys-%d", (int)getpid());
    FILE *kf = fopen(keys_file, "w");
    if (!kf) return -1;
    fputs(UPSTREAM_KEY "\n", kf);
    fclose(kf);
    static const char *const bins[] = {"asr_streaming", "translate", "tts"};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--api-keys", keys_file, NULL};
        if (at_test_spawn(&svc[i], bins[i], args, 1, 120) != 0) return -1;
    }
    /* without the key a service refuses */
    at_test_resp r;
    if (at_test_http(svc[2].ports[0], "GET", "/v1/voices", NULL, NULL, 0, &r) != 0 || r.status != 401)
        return -1;
    at_test_resp_free(&r);
    char asr[64], mt[64], tts[64];
    snprintf(asr, sizeof asr, "http://127.0.0.1:%d", svc[0].ports[0]);
    snprintf(mt, sizeof mt, "http://127.0.0.1:%d/", svc[1].ports[0]);
    snprintf(tts, sizeof tts, "http://localhost:%d", svc[2].ports[0]);
    const char *args[] = {"--host",
                          "127.0.0.1",
                          "--port",
                          "0",
                          "--asr-url",
                          asr,
                          "--translate-url",
                          mt,
                          "--tts-url",
                          tts,
                          "--upstream-api-key",
                          UPSTREAM_KEY,
                          "--pipeline-max-backlog",
                          "120",
                          NULL};
    if (at_test_spawn(&remote, "pipeline", args, 1, 120) != 0) return -1;
    remote_port = remote.ports[0];
    return 0;
}

static int teardown_remote(void **state)
{
    (void)state;
    int bad = at_test_stop(&remote, 15) != 0;
    for (int i = 0; i < 3; i++) bad |= at_test_stop(&svc[i], 15) != 0;
    unlink(keys_file);
    free(speech);
    return bad ? -1 : 0;
}

static void remote_events_in_order_with_audio(void **state)
{
    (void)state;
    run_full_session(remote_port, es_config, 1, 16000);
}

static void remote_config_and_errors(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(remote_port, "GET", "/v1/config", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "{\"source\":\"en\",\"target\":\"es\"}"));
    assert_non_null(strstr((char *)r.body, "\"name\":\"slt\""));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(remote_port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body, "remote-asr"));
    at_test_resp_free(&r);
    at_test_ws ws;
    assert_int_equal(at_test_ws_connect(&ws, remote_port, "/v1/pipeline", NULL), 0);
    send_text(&ws, "{\"type\":\"config\",\"source\":\"en\",\"target\":\"zz\"}");
    session s;
    read_all(&ws, &s, 10000);
    at_test_ws_close(&ws);
    assert_string_equal(str(&s.m[0], "code"), "bad_config");
    assert_int_equal(s.close_code, 1008);
    session_free(&s);
}

/* A downstream failure of one segment is reported and the stream goes on:
 * with tts gone, each segment gets an error, ASR and MT keep working. */
/* A client that sends a burst of speech and then pauses, without "end",
 * still gets every final and translation during the pause (the remote
 * recogniser's events are collected while no audio comes). */
static void remote_finals_arrive_while_client_pauses(void **state)
{
    (void)state;
    at_test_ws ws;
    start(&ws, remote_port,
          "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"speak\":false,"
          "\"sample_rate\":16000,\"encoding\":\"pcm16\"}");
    send_audio(&ws, speech, speech_n, 1600);
    int finals = 0, translations = 0;
    while (translations < 5) {
        char *d = NULL;
        size_t l = 0;
        int op = at_test_ws_recv(&ws, &d, &l, 20000);
        if (op != 1) {
            free(d);
            break;
        }
        finals += strstr(d, "\"type\":\"final\"") != NULL;
        translations += strstr(d, "\"type\":\"translation\"") != NULL;
        free(d);
    }
    printf("# paused client: %d finals, %d translations before any \"end\"\n", finals, translations);
    assert_int_equal(finals, 5);
    assert_int_equal(translations, 5);
    send_text(&ws, "{\"type\":\"end\"}");
    session s;
    read_all(&ws, &s, 30000);
    at_test_ws_close(&ws);
    assert_int_equal(s.close_code, 1000);
    session_free(&s);
}

/* Speech that cannot keep up: the TTS service hangs (SIGSTOP), so finals
 * pile up behind the first one; past the client's max_pending of 1 the
 * session ends with "overflow" and close 1013 instead of queueing more. */
static void remote_stalled_tts_overflows_finals(void **state)
{
    (void)state;
    at_test_ws ws;
    start(&ws, remote_port,
          "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\","
          "\"speak\":true,\"sample_rate\":16000,\"encoding\":\"pcm16\",\"max_pending\":1}");
    /* after "ready": the voice was checked, the first synthesis will hang */
    assert_int_equal(kill(svc[2].pid, SIGSTOP), 0);
    send_audio(&ws, speech, speech_n, 1600);
    /* read by hand: the TTS service must be continued whatever happens */
    int finals = 0, op = 0;
    char last[512] = "";
    for (;;) {
        char *d = NULL;
        size_t l = 0;
        op = at_test_ws_recv(&ws, &d, &l, 30000);
        if (op == 1) {
            finals += strstr(d, "\"type\":\"final\"") != NULL;
            snprintf(last, sizeof last, "%s", d);
        }
        free(d);
        if (op != 1 && op != 2) break;
    }
    int close_code = ws.close_code;
    at_test_ws_close(&ws);
    assert_int_equal(kill(svc[2].pid, SIGCONT), 0);
    printf("# stalled tts: %d finals, then %s (close %d)\n", finals, last, close_code);
    assert_int_equal(op, 8);
    assert_int_equal(close_code, 1013);
    assert_non_null(strstr(last, "\"code\":\"overflow\""));
    assert_non_null(strstr(last, "waiting for translation and speech"));
    assert_true(finals >= 2); /* one being spoken, one waiting, the next overflows */
}

static void remote_tts_failure_is_per_segment(void **state)
{
    (void)state;
    assert_int_equal(at_test_stop(&svc[2], 15), 0);
    at_test_ws ws;
    start(&ws, remote_port, es_config);
    send_audio(&ws, speech, speech_n, 1600);
    send_text(&ws, "{\"type\":\"end\"}");
    session s;
    read_all(&ws, &s, 60000);
    at_test_ws_close(&ws);
    int finals = 0, translations = 0, errors = 0, next_error = 0;
    for (size_t i = 0; i < s.n; i++) {
        const char *t = type_of(&s.m[i]);
        if (strcmp(t, "final") == 0)
            finals++;
        else if (strcmp(t, "translation") == 0)
            translations++;
        else if (strcmp(t, "error") == 0) {
            assert_string_equal(str(&s.m[i], "code"), "synthesis_failed");
            assert_int_equal((int)num(&s.m[i], "segment"), next_error++);
            errors++;
        } else
            assert_int_not_equal(s.m[i].op, 2);
    }
    printf("# tts down: %d finals, %d translations, %d errors\n", finals, translations, errors);
    assert_true(finals >= 4);
    assert_int_equal(translations, finals);
    assert_int_equal(errors, finals);
    assert_string_equal(type_of(&s.m[s.n - 1]), "summary");
    assert_int_equal(s.close_code, 1000);
    session_free(&s);
    const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--api-keys", keys_file, NULL};
    assert_int_equal(at_test_spawn(&svc[2], "tts", args, 1, 120), 0);
}

/* The recognition service goes away in the middle of a session, as one
 * replica does in a rolling update (SIGTERM: it drains, flushing its
 * finals) or when it is killed (SIGKILL).  The session's finals so far are
 * all translated, then the client gets "asr_unavailable" and close 1013
 * (try again later); a client that reconnects once the service is back
 * (a healthy replica) gets a whole new session. */
static void asr_lost_mid_session(int sig)
{
    at_test_ws ws;
    start(&ws, remote_port,
          "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"speak\":false,"
          "\"sample_rate\":16000,\"encoding\":\"pcm16\"}");
    send_audio(&ws, speech, speech_n / 2, 1600);
    int finals = 0;
    while (finals == 0) {
        char *d = NULL;
        size_t l = 0;
        assert_int_equal(at_test_ws_recv(&ws, &d, &l, 30000), 1);
        finals += strstr(d, "\"type\":\"final\"") != NULL;
        free(d);
    }
    int asr_port = svc[0].ports[0];
    assert_int_equal(kill(svc[0].pid, sig), 0);
    session s;
    read_all(&ws, &s, 30000);
    at_test_ws_close(&ws);
    int status = at_test_stop(&svc[0], 30);
    int translations = 0;
    finals = 1;
    for (size_t i = 0; i < s.n; i++) {
        finals += strcmp(type_of(&s.m[i]), "final") == 0;
        translations += strcmp(type_of(&s.m[i]), "translation") == 0;
    }
    const msg *last = s.n ? &s.m[s.n - 1] : NULL;
    printf("# asr_streaming %s mid-session: %d finals, %d translations, then %s (close %d)\n",
           sig == SIGTERM ? "drained" : "killed", finals, translations,
           last ? str(last, "message") : "nothing", s.close_code);
    assert_int_equal(s.close_code, 1013);
    assert_non_null(last);
    assert_string_equal(type_of(last), "error");
    assert_string_equal(str(last, "code"), "asr_unavailable");
    assert_non_null(strstr(str(last, "message"), "reconnect"));
    assert_int_equal(translations, finals);
    if (sig == SIGTERM) assert_int_equal(status, 0); /* drained, then exited by itself */
    session_free(&s);

    char port[16];
    snprintf(port, sizeof port, "%d", asr_port);
    const char *args[] = {"--host", "127.0.0.1", "--port", port, "--api-keys", keys_file, NULL};
    assert_int_equal(at_test_spawn(&svc[0], "asr_streaming", args, 1, 120), 0);
    start(&ws, remote_port,
          "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"speak\":false,"
          "\"sample_rate\":16000,\"encoding\":\"pcm16\"}");
    send_audio(&ws, speech, speech_n / 4, 1600);
    send_text(&ws, "{\"type\":\"end\"}");
    read_all(&ws, &s, 60000);
    at_test_ws_close(&ws);
    assert_string_equal(type_of(&s.m[s.n - 1]), "summary");
    assert_true(num(&s.m[s.n - 1], "segments") >= 1);
    assert_int_equal(s.close_code, 1000);
    session_free(&s);
}

static void remote_asr_drained_mid_session(void **state)
{
    (void)state;
    asr_lost_mid_session(SIGTERM);
}

static void remote_asr_killed_mid_session(void **state)
{
    (void)state;
    asr_lost_mid_session(SIGKILL);
}

int main(void)
{
    const struct CMUnitTest in_process[] = {
        cmocka_unit_test(page_config_and_health),
        cmocka_unit_test(events_in_order_with_audio),
        cmocka_unit_test(text_only_at_8khz),
        cmocka_unit_test(bad_configurations),
        cmocka_unit_test(unknown_control_message_is_not_fatal),
        cmocka_unit_test(client_disconnects_mid_utterance),
        cmocka_unit_test(overflow_closes_with_1013),
        cmocka_unit_test(cli_translate_speech),
    };
    const struct CMUnitTest standalone[] = {
        cmocka_unit_test(remote_config_and_errors),
        cmocka_unit_test(remote_events_in_order_with_audio),
        cmocka_unit_test(remote_finals_arrive_while_client_pauses),
        cmocka_unit_test(remote_stalled_tts_overflows_finals),
        cmocka_unit_test(remote_tts_failure_is_per_segment),
        cmocka_unit_test(remote_asr_drained_mid_session),
        cmocka_unit_test(remote_asr_killed_mid_session),
    };
    int failed = cmocka_run_group_tests_name("serve", in_process, setup_serve, teardown_serve);
    failed += cmocka_run_group_tests_name("pipeline", standalone, setup_remote, teardown_remote);
    return failed;
}
