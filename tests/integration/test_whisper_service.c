/* asr_streaming with a Whisper model: the engine is chosen when a model is
 * configured, pocketsphinx stays available by name, and translations work.
 * The model is a random-weight tiny written by `whisper-random-model`, so
 * the text is meaningless: these tests check the API mechanics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"

static at_test_proc proc;
static int port;
static char dir[] = "/tmp/at-whisper-svc-XXXXXX";
static char model[256];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    snprintf(model, sizeof model, "%s/tiny-q8_0.bin", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/audio-translator whisper-random-model --preset tiny --type q8_0 --out %s",
             getenv("AT_BUILD_DIR"), model);
    if (system(cmd) != 0) return -1;
    const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--model", model, "--threads", "1", NULL};
    if (at_test_spawn(&proc, "asr_streaming", args, 1, 120) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = at_test_stop(&proc, 30);
    unlink(model);
    rmdir(dir);
    return rc == 0 ? 0 : -1;
}

/* Posts the 2.99 s clip.  Whisper requests bound their work: one decode
 * per window (temperature_inc 0: no fallback) of at most max_tokens
 * tokens, so the test takes seconds on any CPU however slow its BLAS. */
static at_test_resp post_fields_to(const char *path, const char *const *fields);

static at_test_resp post_ex(const char *path, const char *model_name, const char *fmt, const char *temp_inc,
                            const char *max_tokens)
{
    const char *fields[] = {"model",  model_name,       "response_format", fmt, "temperature_inc",
                            temp_inc, "max_new_tokens", max_tokens,        NULL};
    return post_fields_to(path, fields);
}

/* The clip posted to path with form fields: pairs of name, value,
 * NULL-ended (a NULL value leaves the field out). */
static at_test_resp post_fields_to(const char *path, const char *const *fields)
{
    size_t len;
    char clip[512];
    snprintf(clip, sizeof clip, "%s/sense_and_sensibility_01_austen_64kb-0880.wav", at_test_librivox_dir());
    unsigned char *wav = at_test_read_file(clip, &len);
    assert_non_null(wav);
    at_test_form f;
    at_test_form_init(&f);
    at_test_form_file(&f, "file", "clip.wav", "audio/wav", wav, len);
    for (int i = 0; fields[i]; i += 2)
        if (fields[i + 1]) at_test_form_field(&f, fields[i], fields[i + 1]);
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", path, hdr, f.data, f.len, &r), 0);
    at_test_form_free(&f);
    free(wav);
    return r;
}

static at_test_resp post_fields(const char *const *fields)
{
    return post_fields_to("/v1/audio/transcriptions", fields);
}

/* A transcription that must succeed, its JSON body parsed. */
static cJSON *post_json(const char *const *fields)
{
    at_test_resp r = post_fields(fields);
    if (r.status != 200) fail_msg("%d %s", r.status, (char *)r.body);
    cJSON *j = cJSON_Parse((char *)r.body);
    assert_non_null(j);
    at_test_resp_free(&r);
    return j;
}

static at_test_resp post(const char *path, const char *model_name, const char *fmt)
{
    return post_ex(path, model_name, fmt, "0", "8");
}

static int count_words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ' || *s == '\n')
            in = 0;
        else if (!in) {
            in = 1;
            n++;
        }
    }
    return n;
}

static void ready_lists_both_engines(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"asr\":[\"whisper\",\"pocketsphinx\"]"));
    /* --device auto: the CPU, or a GPU where the build and machine have one */
    assert_true(strstr((char *)r.body, "\"device\":\"cpu\"") ||
                strstr((char *)r.body, "\"device\":\"cuda:0\""));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(port, "GET", "/v1/models", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body, "\"id\":\"whisper\""));
    at_test_resp_free(&r);
}

/* A GPU asked for by name that is not there fails the engines' load with
 * the reason, in /ready and the log, instead of running on the CPU. */
static void missing_gpu_is_an_error(void **state)
{
    (void)state;
    at_test_proc p;
    const char *args[] = {"--host", "127.0.0.1", "--port",  "0", "--model",
                          model,    "--device",  "cuda:63", NULL};
    assert_int_equal(at_test_spawn_listening(&p, "asr_streaming", args, 1, 120), 0);
    at_test_resp r = {0};
    for (int i = 0; i < 100; i++) { /* the engines load in the background */
        assert_int_equal(at_test_http(p.ports[0], "GET", "/ready", NULL, NULL, 0, &r), 0);
        if (strstr((char *)r.body, "\"failed\"")) break;
        at_test_resp_free(&r);
        usleep(100 * 1000);
    }
    assert_int_equal(r.status, 503);
    assert_non_null(strstr((char *)r.body, "--device cuda:63"));
    at_test_resp_free(&r);
    assert_int_equal(at_test_stop(&p, 20), 0);
}

static void whisper_is_the_default_and_answers_verbose_json(void **state)
{
    (void)state;
    at_test_resp r = post("/v1/audio/transcriptions", "whisper-1", "verbose_json");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"task\":\"transcribe\""));
    assert_non_null(strstr((char *)r.body, "\"segments\":["));
    /* every segment ends within the 2.99 s clip */
    for (const char *p = strstr((char *)r.body, "\"end\":"); p; p = strstr(p + 1, "\"end\":"))
        assert_true(atof(p + 6) <= 3.0);
    at_test_resp_free(&r);
}

/* The decoding options users pass (OpenAI's and faster-whisper's names)
 * are taken, bounded, and verbose_json carries OpenAI's segment fields. */
static void decoding_options_and_segment_fields(void **state)
{
    (void)state;
    static const char *const ok[] = {"model",
                                     "whisper-1",
                                     "response_format",
                                     "verbose_json",
                                     "language",
                                     "en",
                                     "temperature",
                                     "0",
                                     "temperature_inc",
                                     "0",
                                     "max_new_tokens",
                                     "6",
                                     "beam_size",
                                     "2",
                                     "best_of",
                                     "2",
                                     "patience",
                                     "1.5",
                                     "length_penalty",
                                     "1",
                                     "suppress_tokens",
                                     "-1,50",
                                     "condition_on_previous_text",
                                     "false",
                                     "vad_filter",
                                     "true",
                                     NULL};
    cJSON *j = post_json(ok);
    assert_string_equal(cJSON_GetObjectItem(j, "language")->valuestring, "english");
    const cJSON *seg = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "segments"), 0);
    if (seg) { /* a random model may say nothing at all */
        static const char *const fields[] = {"id",
                                             "seek",
                                             "start",
                                             "end",
                                             "temperature",
                                             "avg_logprob",
                                             "compression_ratio",
                                             "no_speech_prob"};
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            if (!cJSON_IsNumber(cJSON_GetObjectItem(seg, fields[i]))) fail_msg("segment lacks %s", fields[i]);
        assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(seg, "tokens")) > 0);
        assert_true(cJSON_GetObjectItem(seg, "compression_ratio")->valuedouble > 0);
    }
    cJSON_Delete(j);
    /* a temperature schedule as a list */
    static const char *const sched[] = {"model",          "whisper-1", "temperature", "0,0.5,1",
                                        "max_new_tokens", "4",         NULL};
    at_test_resp r = post_fields(sched);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    static const char *const bad[][2] = {{"beam_size", "0"},       {"beam_size", "17"},
                                         {"best_of", "2.5"},       {"patience", "-1"},
                                         {"temperature", "0,2"},   {"temperature", "a"},
                                         {"suppress_tokens", "x"}, {"condition_on_previous_text", "maybe"},
                                         {"vad_filter", "yes"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *fields[] = {"model", "whisper-1", bad[i][0], bad[i][1], NULL};
        r = post_fields(fields);
        if (r.status != 400 || !strstr((char *)r.body, bad[i][0]))
            fail_msg("%s=%s -> %d %s", bad[i][0], bad[i][1], r.status, (char *)r.body);
        at_test_resp_free(&r);
    }
}

/* Whisper's word timestamps through the API (random weights: the words
 * are nonsense, their shape is not), and the hallucination guard. */
static void word_timestamps_and_hallucination_guard(void **state)
{
    (void)state;
    static const char *const req[] = {"model",
                                      "whisper-1",
                                      "response_format",
                                      "verbose_json",
                                      "language",
                                      "en",
                                      "temperature_inc",
                                      "0",
                                      "max_new_tokens",
                                      "8",
                                      "timestamp_granularities[]",
                                      "word",
                                      "timestamp_granularities[]",
                                      "segment",
                                      "hallucination_silence_threshold",
                                      "2",
                                      NULL};
    cJSON *j = post_json(req);
    const cJSON *words = cJSON_GetObjectItem(j, "words"), *w;
    assert_true(cJSON_IsArray(words));
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "segments")));
    double prev = 0;
    cJSON_ArrayForEach(w, words)
    {
        double a = cJSON_GetObjectItem(w, "start")->valuedouble,
               b = cJSON_GetObjectItem(w, "end")->valuedouble;
        double p = cJSON_GetObjectItem(w, "probability")->valuedouble;
        assert_true(a >= prev && a <= b && p >= 0 && p <= 1);
        assert_non_null(cJSON_GetStringValue(cJSON_GetObjectItem(w, "word")));
        prev = a;
    }
    print_message("whisper words: %d\n", cJSON_GetArraySize(words));
    cJSON_Delete(j);
}

static void max_new_tokens_bounds_the_text(void **state)
{
    (void)state;
    /* The random model's vocabulary has one word per token, so 3 tokens
     * in the one window of this clip give at most 3 words. */
    at_test_resp r = post_ex("/v1/audio/transcriptions", "whisper-1", "text", "0", "3");
    assert_int_equal(r.status, 200);
    if (count_words((char *)r.body) > 3) fail_msg("more than 3 tokens: '%s'", (char *)r.body);
    at_test_resp_free(&r);
}

static void bad_decoding_options_are_400(void **state)
{
    (void)state;
    static const char *const bad[][2] = {{"abc", "8"}, {"-0.1", "8"}, {"0", "0"},
                                         {"0", "225"}, {"0", "2.5"},  {"nan", "8"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        at_test_resp r = post_ex("/v1/audio/transcriptions", "whisper-1", "json", bad[i][0], bad[i][1]);
        if (r.status != 400)
            fail_msg("temperature_inc=%s max_new_tokens=%s -> %d", bad[i][0], bad[i][1], r.status);
        assert_non_null(strstr((char *)r.body, "invalid_request_error"));
        at_test_resp_free(&r);
    }
}

static void translations_use_whisper(void **state)
{
    (void)state;
    at_test_resp r = post("/v1/audio/translations", NULL, "verbose_json");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"task\":\"translate\""));
    at_test_resp_free(&r);
}

static void pocketsphinx_still_available_by_name(void **state)
{
    (void)state;
    at_test_resp r = post("/v1/audio/transcriptions", "pocketsphinx", "text");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "young man"));
    at_test_resp_free(&r);
}

/* SIGTERM while a long transcription runs (random weights, every
 * fallback temperature, up to 224 tokens a window: minutes of work): the
 * drain waits its --drain-timeout, then the work is cancelled at its next
 * decoder step and the process exits.  Before, Whisper polled only
 * between 30 s windows, so the process ran on until SIGKILL. */
typedef struct {
    int port;
    at_test_form f;
    char hdr[256];
    at_test_resp r;
    int rc;
} long_req;

/* No assertions here: cmocka's may not jump out of another thread. */
static void *post_long(void *arg)
{
    long_req *q = arg;
    q->rc = at_test_http(q->port, "POST", "/v1/audio/transcriptions", q->hdr, q->f.data, q->f.len, &q->r);
    return NULL;
}

static void sigterm_stops_long_work(void **state)
{
    (void)state;
    at_test_proc p;
    const char *args[] = {"--host",    "127.0.0.1", "--port",          "0", "--model", model,
                          "--threads", "1",         "--drain-timeout", "1", NULL};
    assert_int_equal(at_test_spawn(&p, "asr_streaming", args, 1, 120), 0);
    long_req q = {.port = p.ports[0]};
    size_t len;
    char clip[512];
    snprintf(clip, sizeof clip, "%s/sense_and_sensibility_01_austen_64kb-0880.wav", at_test_librivox_dir());
    unsigned char *wav = at_test_read_file(clip, &len);
    assert_non_null(wav);
    at_test_form_init(&q.f);
    at_test_form_file(&q.f, "file", "clip.wav", "audio/wav", wav, len);
    at_test_form_field(&q.f, "max_new_tokens", "224");
    at_test_form_finish(&q.f, q.hdr, sizeof q.hdr);
    free(wav);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_long, &q), 0);
    usleep(1500 * 1000); /* the transcription is decoding */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = at_test_stop(&p, 20);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("asr_streaming exited %.2f s after SIGTERM (drain timeout 1 s), status %d\n", dt, rc);
    assert_int_equal(rc, 0);
    assert_true(dt < 8.0);
    pthread_join(th, NULL);
    if (q.rc == 0) at_test_resp_free(&q.r);
    at_test_form_free(&q.f);
}

static void streams_pick_a_streaming_engine(void **state)
{
    (void)state;
    /* Whisper streams (LocalAgreement-2) by default once a model is loaded;
     * pocketsphinx stays available by name. */
    static const char *const cfg[2] = {"{\"type\":\"config\",\"sample_rate\":16000}",
                                       "{\"type\":\"config\",\"model\":\"pocketsphinx\"}"};
    static const char *const want[2] = {"\"engine\":\"whisper\"", "\"engine\":\"pocketsphinx\""};
    for (int i = 0; i < 2; i++) {
        at_test_ws ws;
        assert_int_equal(at_test_ws_connect(&ws, port, "/v1/stream", NULL), 0);
        assert_int_equal(at_test_ws_send(&ws, 1, cfg[i], strlen(cfg[i])), 0);
        char *d;
        size_t l;
        assert_int_equal(at_test_ws_recv(&ws, &d, &l, 10000), 1);
        if (!strstr(d, want[i])) fail_msg("%s -> %s", cfg[i], d);
        free(d);
        at_test_ws_send(&ws, 1, "{\"type\":\"end\"}", 14);
        while (at_test_ws_recv(&ws, &d, &l, 30000) == 1) free(d);
        free(d);
        at_test_ws_close(&ws);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_lists_both_engines),
        cmocka_unit_test(missing_gpu_is_an_error),
        cmocka_unit_test(whisper_is_the_default_and_answers_verbose_json),
        cmocka_unit_test(decoding_options_and_segment_fields),
        cmocka_unit_test(max_new_tokens_bounds_the_text),
        cmocka_unit_test(word_timestamps_and_hallucination_guard),
        cmocka_unit_test(bad_decoding_options_are_400),
        cmocka_unit_test(translations_use_whisper),
        cmocka_unit_test(pocketsphinx_still_available_by_name),
        cmocka_unit_test(streams_pick_a_streaming_engine),
        cmocka_unit_test(sigterm_stops_long_work),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
