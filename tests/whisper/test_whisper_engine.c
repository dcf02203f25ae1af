/* test_whisper_engine.c - the whisper at_asr engine end to end on the
 * random-weight oracle model (AT_ORACLES_DIR/whisper-mini; exit 77 when
 * it is absent).  The weights are random, so the text is noise: the test
 * checks that everything runs and that the results are well formed.
 *
 * The oracle folder has no tokenizer files, so the test builds a model
 * folder next to it: links to config.json and model.safetensors plus a
 * vocab.json whose text tokens are the 256 GPT-2 byte tokens and then
 * " w<id>" for every other id (one word per token, easy to count). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/asr/asr.h"
#include "engines/asr/whisper/npy.h"
#include "engines/asr/whisper/whisper.h"

static char dir[256];
static at_asr_engine *E;
static at_npy audio;

static int keep_byte(int x)
{
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
}

/* GPT-2's byte tokens: printable bytes first (as themselves), then the
 * others mapped to U+0100.. */
static void write_vocab(FILE *f)
{
    fputc('{', f);
    int id = 0, extra = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            if (keep_byte(b) != (pass == 0)) continue;
            unsigned cp = pass == 0 ? (unsigned)b : 256 + (unsigned)extra++;
            fputc('"', f);
            if (cp == '"' || cp == '\\') fprintf(f, "\\%c", (char)cp);
            else if (cp < 0x80) fputc((int)cp, f);
            else fprintf(f, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
            fprintf(f, "\":%d,", id++);
        }
    for (; id < 50257; id++) fprintf(f, "\"\xC4\xA0w%d\":%d,", id, id);
    fprintf(f, "\"<|endoftext|>\":50257}");
}

static int setup(void **st)
{
    (void)st;
    const char *od = getenv("AT_ORACLES_DIR");
    char src[512], p[1024];
    snprintf(src, sizeof src, "%s/whisper-mini", od ? od : "/work/shared/oracles");
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "oracle %s absent: skipped\n", src);
        exit(77);
    }
    snprintf(dir, sizeof dir, "/tmp/at_weng_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    const char *links[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/%s", src, links[i]);
        snprintf(b, sizeof b, "%s/%s", dir, links[i]);
        if (symlink(a, b) != 0) return -1;
    }
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    write_vocab(f);
    fclose(f);
    at_err err;
    snprintf(p, sizeof p, "%s/audio.npy", src);
    if (at_npy_read(p, &audio, 0, &err) != 0) {
        fprintf(stderr, "audio.npy: %s\n", err.msg);
        return -1;
    }
    E = at_asr_whisper_new(dir, 1, &err); /* 1: the test machine's cores are shared */
    if (!E) {
        fprintf(stderr, "whisper engine: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    at_asr_engine_free(E);
    at_npy_free(&audio);
    const char *names[] = {"config.json", "model.safetensors", "vocab.json"};
    for (int i = 0; i < 3; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return 0;
}

static int count_words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        if (*s == ' ') in = 0;
        else if (!in) { in = 1; n++; }
    }
    return n;
}

static void check_result(const at_asr_result *r, double duration)
{
    assert_true(fabs(r->duration - duration) < 1e-6);
    double prev = 0;
    for (size_t i = 0; i < r->n_segments; i++) {
        const at_asr_segment *g = &r->segments[i];
        assert_non_null(g->text);
        assert_true(g->text[0] != '\0');
        assert_true(g->start >= prev - 1e-9);
        assert_true(g->start <= g->end);
        assert_true(g->end <= duration + 1e-9);
        /* one word per token here; a window samples at most 224 tokens */
        assert_true(count_words(g->text) <= 224);
        assert_true(g->no_speech_prob >= 0 && g->no_speech_prob <= 1);
        assert_true(g->avg_logprob <= 0);
        prev = g->start;
    }
}

static void test_engine_info(void **st)
{
    (void)st;
    assert_string_equal(at_asr_engine_name(E), "whisper");
    const char *const *l = at_asr_engine_languages(E);
    int n = 0;
    while (l[n]) n++;
    assert_int_equal(n, 99);
    assert_true(at_asr_engine_supports_language(E, "de"));
    assert_false(at_asr_engine_supports_language(E, "yue"));
}

static void test_transcribe(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    double dur = (double)n / AT_ASR_SAMPLE_RATE;
    at_asr_options o = {0};
    at_asr_result r;
    at_err err;
    /* detected language */
    int rc = at_asr_transcribe(E, audio.data, n, &o, &r, &err);
    if (rc) fprintf(stderr, "transcribe: %s\n", err.msg);
    assert_int_equal(rc, 0);
    check_result(&r, dur);
    assert_true(r.language[0] != '\0');
    at_asr_result_free(&r);
    /* given language, translate task, prompt */
    o.language = "de";
    o.translate = 1;
    o.prompt = "  Hallo Welt, w12 w13.  ";
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    check_result(&r, dur);
    assert_string_equal(r.language, "de");
    at_asr_result_free(&r);
    /* unknown language */
    o.language = "xx";
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), AT_E_UNSUPPORTED);
    /* no audio at all */
    o.language = "en";
    o.translate = 0;
    assert_int_equal(at_asr_transcribe(E, audio.data, 0, &o, &r, &err), 0);
    assert_int_equal(r.n_segments, 0);
    at_asr_result_free(&r);
}

static void test_beam(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    at_asr_options o = {0};
    o.language = "en";
    o.beam_size = 3;
    at_asr_result r;
    at_err err;
    int rc = at_asr_transcribe(E, audio.data, n, &o, &r, &err);
    if (rc) fprintf(stderr, "transcribe: %s\n", err.msg);
    assert_int_equal(rc, 0);
    check_result(&r, (double)n / AT_ASR_SAMPLE_RATE);
    at_asr_result_free(&r);
}

typedef struct evlog {
    int n_final;
    double prev_start, last_end;
    int bad;
} evlog;

static int on_event(void *user, const at_asr_event *ev)
{
    evlog *l = user;
    if (!ev->is_final || !ev->text || ev->start > ev->end || ev->start < l->prev_start - 1e-9)
        l->bad++;
    l->prev_start = ev->start;
    l->last_end = ev->end;
    l->n_final++;
    return 0;
}

static void test_stream(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    at_asr_options o = {0};
    o.language = "en";
    at_err err;
    at_asr_stream *s = at_asr_stream_open(E, &o, &err);
    assert_non_null(s);
    evlog l = {0};
    /* 11 s in 0.5 s pieces: the window is not full before finish */
    for (size_t off = 0; off < n; off += 8000) {
        size_t k = n - off < 8000 ? n - off : 8000;
        assert_int_equal(at_asr_stream_feed(s, audio.data + off, k, on_event, &l, &err), 0);
    }
    assert_int_equal(l.n_final, 0);
    assert_int_equal(at_asr_stream_finish(s, on_event, &l, &err), 0);
    assert_int_equal(l.bad, 0);
    assert_true(l.last_end <= (double)n / AT_ASR_SAMPLE_RATE + 1e-9);
    at_asr_stream_close(s);

    /* the same audio as a file gives the same segments */
    at_asr_result r;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    assert_int_equal((int)r.n_segments, l.n_final);
    at_asr_result_free(&r);

    /* 40 s (the audio repeated): one window is decoded while feeding */
    size_t total = AT_ASR_SAMPLE_RATE * 40;
    float *big = malloc(total * sizeof *big);
    for (size_t i = 0; i < total; i++) big[i] = audio.data[i % n];
    s = at_asr_stream_open(E, &o, &err);
    assert_non_null(s);
    evlog l2 = {0};
    for (size_t off = 0; off < total; off += 16000)
        assert_int_equal(at_asr_stream_feed(s, big + off, 16000, on_event, &l2, &err), 0);
    assert_int_equal(at_asr_stream_finish(s, on_event, &l2, &err), 0);
    assert_int_equal(l2.bad, 0);
    assert_true(l2.last_end <= 40.0 + 1e-9);
    at_asr_stream_close(s);

    /* all 40 s in one call: taken in pieces, same events */
    s = at_asr_stream_open(E, &o, &err);
    assert_non_null(s);
    evlog l3 = {0};
    assert_int_equal(at_asr_stream_feed(s, big, total, on_event, &l3, &err), 0);
    assert_int_equal(at_asr_stream_finish(s, on_event, &l3, &err), 0);
    assert_int_equal(l3.bad, 0);
    assert_int_equal(l3.n_final, l2.n_final);
    assert_true(fabs(l3.last_end - l2.last_end) < 1e-9);
    at_asr_stream_close(s);
    free(big);
}

typedef struct job {
    size_t n_segments;
    char *text;
    int rc;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    at_asr_options o = {0};
    o.language = "en";
    at_asr_result r;
    at_err err;
    j->rc = at_asr_transcribe(E, audio.data, at_npy_count(&audio), &o, &r, &err);
    if (j->rc == 0) {
        j->n_segments = r.n_segments;
        j->text = at_asr_result_text(&r);
        at_asr_result_free(&r);
    }
    return NULL;
}

static void test_concurrent(void **st)
{
    (void)st;
    pthread_t th[2];
    job jobs[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_int_equal(jobs[0].rc, 0);
    assert_int_equal(jobs[1].rc, 0);
    /* deterministic decoding: both calls agree */
    assert_int_equal(jobs[0].n_segments, jobs[1].n_segments);
    assert_string_equal(jobs[0].text, jobs[1].text);
    free(jobs[0].text);
    free(jobs[1].text);
}

static void test_bad_model(void **st)
{
    (void)st;
    at_err err;
    assert_null(at_asr_whisper_new("/nonexistent/model.bin", 1, &err));
    assert_true(err.code != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_info),
        cmocka_unit_test(test_transcribe),
        cmocka_unit_test(test_beam),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_bad_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
