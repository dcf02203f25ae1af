/* `audio-translator serve` (all services, a process each) and the CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "wer.h"

static at_test_proc proc;
static int asr_port, mt_port, tts_port;

static int setup(void **state)
{
    (void)state;
    const char *args[] = {"serve", "--host",     "127.0.0.1", "--asr-port", "0", "--translate-port",
                          "0",     "--tts-port", "0",         NULL};
    if (at_test_spawn(&proc, "audio-translator", args, 3, 120) != 0) return -1;
    asr_port = proc.ports[0];
    mt_port = proc.ports[1];
    tts_port = proc.ports[2];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return 0; /* the last test stops it and checks the drain */
}

static void every_service_answers(void **state)
{
    (void)state;
    int ports[3] = {asr_port, mt_port, tts_port};
    for (int i = 0; i < 3; i++) {
        at_test_resp r;
        assert_int_equal(at_test_http(ports[i], "GET", "/health", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        at_test_resp_free(&r);
        assert_int_equal(at_test_http(ports[i], "GET", "/ready", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr((char *)r.body, "\"ready\":true"));
        at_test_resp_free(&r);
    }
    /* each port answers its own API only */
    at_test_resp r;
    assert_int_equal(at_test_http(asr_port, "GET", "/languages", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(mt_port, "GET", "/languages", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

/* Speech made by flite is recognised back by the ASR service. */
static void flite_speech_is_recognised_back(void **state)
{
    (void)state;
    const char *sentence = "the weather is nice today and we will go for a walk in the park";
    char body[512];
    snprintf(body, sizeof body, "{\"input\":\"%s\",\"voice\":\"slt\",\"response_format\":\"wav\"}", sentence);
    at_test_resp s;
    assert_int_equal(at_test_http(tts_port, "POST", "/v1/audio/speech", "Content-Type: application/json\r\n",
                                  body, strlen(body), &s),
                     0);
    assert_int_equal(s.status, 200);
    /* streamed WAV has 0xFFFFFFFF sizes: fix them so any decoder accepts it */
    uint32_t v = (uint32_t)(s.len - 8);
    memcpy(s.body + 4, &v, 4);
    v = (uint32_t)(s.len - 44);
    memcpy(s.body + 40, &v, 4);
    at_test_form f;
    at_test_form_init(&f);
    at_test_form_file(&f, "file", "speech.wav", "audio/wav", s.body, s.len);
    at_test_form_field(&f, "response_format", "text");
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    at_test_resp r;
    assert_int_equal(at_test_http(asr_port, "POST", "/v1/audio/transcriptions", hdr, f.data, f.len, &r), 0);
    assert_int_equal(r.status, 200);
    double wer = at_test_wer(sentence, (char *)r.body);
    printf("# flite -> pocketsphinx: WER %.0f%%: %s", wer * 100, r.body);
    assert_true(wer < 0.35);
    at_test_resp_free(&r);
    at_test_form_free(&f);
    at_test_resp_free(&s);
}

/* Recognised English, translated to Spanish, spoken by espeak-ng. */
static void the_three_services_chain(void **state)
{
    (void)state;
    const char *q = "{\"q\":\"the weather is nice today\",\"source\":\"en\",\"target\":\"es\"}";
    at_test_resp t;
    assert_int_equal(
        at_test_http(mt_port, "POST", "/translate", "Content-Type: application/json\r\n", q, strlen(q), &t),
        0);
    assert_int_equal(t.status, 200);
    assert_non_null(strcasestr((char *)t.body, "hoy"));
    const char *p = strstr((char *)t.body, "\"translatedText\":\"") + 18;
    char es[256];
    snprintf(es, sizeof es, "%.*s", (int)strcspn(p, "\""), p);
    char body[512];
    snprintf(body, sizeof body, "{\"input\":\"%s\",\"voice\":\"es\",\"response_format\":\"wav\"}", es);
    at_test_resp s;
    assert_int_equal(at_test_http(tts_port, "POST", "/v1/audio/speech", "Content-Type: application/json\r\n",
                                  body, strlen(body), &s),
                     0);
    assert_int_equal(s.status, 200);
    assert_true(s.len > 22050); /* more than half a second of audio */
    at_test_resp_free(&s);
    at_test_resp_free(&t);
}

/* The pid of serve's child process running `name` (its comm), or 0. */
static pid_t child_named(const char *name)
{
    char path[128], line[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)proc.pid, (int)proc.pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n")) {
        char comm[64] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", tok);
        FILE *c = fopen(path, "r");
        if (!c) continue;
        if (fgets(comm, sizeof comm, c)) comm[strcspn(comm, "\n")] = '\0';
        fclose(c);
        if (strcmp(comm, name) == 0) return (pid_t)atoi(tok);
    }
    return 0;
}

static int ready(int port)
{
    at_test_resp r;
    static const char req[] = "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (at_test_raw(port, req, sizeof req - 1, &r, 5) != 0) return 0;
    int st = r.status;
    at_test_resp_free(&r);
    return st;
}

/* An engine that crashes (libflite aborted on a run of punctuation) takes
 * down its own service's process only: the others keep answering, and
 * the supervisor brings it back on the same port. */
static void a_crashed_service_is_restarted_alone(void **state)
{
    (void)state;
    pid_t tts = child_named("tts");
    assert_true(tts > 0);
    assert_int_equal(kill(tts, SIGABRT), 0); /* as libflite's abort() did */
    for (int i = 0; i < 100 && kill(tts, 0) == 0; i++) usleep(20000);
    assert_int_equal(ready(asr_port), 200);
    assert_int_equal(ready(mt_port), 200);
    int back = 0;
    for (int i = 0; i < 300 && !back; i++) { /* restarted after 1 s, then loads */
        back = ready(tts_port) == 200;
        if (!back) usleep(100000);
    }
    assert_true(back);
    pid_t again = child_named("tts");
    assert_true(again > 0 && again != tts);
    the_three_services_chain(state);
}

static void sigterm_drains_quickly(void **state)
{
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = at_test_stop(&proc, 10);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(rc, 0);
    double dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("# serve stopped %.2f s after SIGTERM\n", dt);
}

/* ---- the CLI ---- */

static int run(const char *cmd, char *out, size_t cap)
{
    char full[2048];
    snprintf(full, sizeof full, "%s/audio-translator %s 2>&1", getenv("AT_BUILD_DIR"), cmd);
    FILE *p = popen(full, "r");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cli_commands(void **state)
{
    (void)state;
    char out[65536];
    static const char *const helps[] = {"--help", "serve --help", "transcribe --help", "translate --help",
                                        "speak --help"};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        assert_int_equal(run(helps[i], out, sizeof out), 0);
        assert_non_null(strcasestr(out, "usage"));
    }
    assert_int_equal(run("frobnicate", out, sizeof out), 2);
    assert_non_null(strstr(out, "unknown command"));
    assert_int_equal(run("translate 'The house is red.' --from en --to es", out, sizeof out), 0);
    assert_non_null(strcasestr(out, "casa"));
    assert_int_equal(run("translate hello --from en --to zz", out, sizeof out), 1);
    assert_non_null(strstr(out, "en-es"));
    char tmp[] = "/tmp/at-cli-XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "speak 'he was not an ill disposed young man' -o %s/s.wav", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "transcribe %s/s.wav", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    double wer = at_test_wer("he was not an ill disposed young man", out);
    printf("# CLI speak -> transcribe: WER %.0f%%: %s", wer * 100, out);
    assert_true(wer < 0.4);
    snprintf(cmd, sizeof cmd, "transcribe %s/s.wav --format srt", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_true(strncmp(out, "1\n00:00:", 8) == 0);
    snprintf(cmd, sizeof cmd, "transcribe %s/s.wav --format verbose_json --word-timestamps", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"words\":[{\"word\":"));
    snprintf(cmd, sizeof cmd, "transcribe %s/missing.wav", tmp);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_service_answers),    cmocka_unit_test(flite_speech_is_recognised_back),
        cmocka_unit_test(the_three_services_chain), cmocka_unit_test(a_crashed_service_is_restarted_alone),
        cmocka_unit_test(sigterm_drains_quickly),   cmocka_unit_test(cli_commands),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
