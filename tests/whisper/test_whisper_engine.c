/* test_whisper_engine.c - the whisper at_asr engine end to end on the
 * random-weight oracle model (AT_ORACLES_DIR/whisper-mini, a copy of
 * Hugging Face's outputs kept in tests/data/oracles).  The weights are random, so the text is noise: the test
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
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/asr/asr.h"
#include "nn/npy.h"
#include "engines/asr/whisper/whisper.h"

static char dir[256];
static at_asr_engine *E;
static at_npy audio;

static int keep_byte(int x) { return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174; }

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
            if (cp == '"' || cp == '\\')
                fprintf(f, "\\%c", (char)cp);
            else if (cp < 0x80)
                fputc((int)cp, f);
            else
                fprintf(f, "%c%c", (char)(0xC0 | (cp >> 6)), (char)(0x80 | (cp & 0x3F)));
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
    snprintf(src, sizeof src, "%s/whisper-mini", od ? od : "tests/data/oracles");
    snprintf(p, sizeof p, "%s/model.safetensors", src);
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "oracle %s absent (it is part of the repository)\n", src);
        exit(1);
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
        if (*s == ' ')
            in = 0;
        else if (!in) {
            in = 1;
            n++;
        }
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

static int always_cancelled(void *user)
{
    (void)user;
    return 1;
}

/* Every transcription here bounds its work (the weights are random, so
 * each fallback temperature would run, each to the window's 224 tokens):
 * no fallback and a few tokens per window, so the suite passes in
 * seconds on a slow CPU. */
static at_asr_options bounded(int max_tokens)
{
    at_asr_options o = {0};
    o.temperature_inc = -1;
    o.max_tokens = max_tokens;
    return o;
}

static void test_transcribe(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    double dur = (double)n / AT_ASR_SAMPLE_RATE;
    at_asr_options o = bounded(16);
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
    /* the client is gone: the work stops at the next window, nothing kept */
    o.cancelled = always_cancelled;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), AT_E_CANCELLED);
    assert_int_equal(r.n_segments, 0);
}

/* A client that leaves during a short clip (one window) stops the work
 * within a decoder step: the hook is polled every step, not only between
 * 30 s windows, where a short clip never got cancelled. */
static int cancel_on_third_poll(void *user)
{
    int *polls = user;
    return ++*polls >= 3;
}

static void test_cancel_within_window(void **st)
{
    (void)st;
    at_asr_options o = bounded(200);
    o.language = "en";
    int polls = 0;
    o.cancelled = cancel_on_third_poll;
    o.cancel_user = &polls;
    at_asr_result r;
    at_err err;
    assert_int_equal(at_asr_transcribe(E, audio.data, at_npy_count(&audio), &o, &r, &err), AT_E_CANCELLED);
    assert_int_equal(polls, 3); /* nothing decoded after the client left */
    assert_non_null(strstr(err.msg, "cancelled"));
}

/* max_tokens caps each window's text: one word per token with this
 * vocabulary, and the clip is one window. */
static void test_max_tokens(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    at_asr_options o = bounded(3);
    o.language = "en";
    at_asr_result r;
    at_err err;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    char *text = at_asr_result_text(&r);
    assert_non_null(text);
    if (count_words(text) > 3) fail_msg("more than 3 tokens: '%s'", text);
    free(text);
    at_asr_result_free(&r);
    /* a bounded fallback (0, 0.5, 1.0) runs and stays bounded */
    o.temperature_inc = 0.5f;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    text = at_asr_result_text(&r);
    assert_non_null(text);
    assert_true(count_words(text) <= 3);
    free(text);
    at_asr_result_free(&r);
}

/* Word timestamps on the random-weight model: each segment's words
 * spell its text, in order, inside the segment and the clip. */
static void test_word_timestamps(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    double dur = (double)n / 16000;
    at_asr_options o = bounded(8);
    o.language = "en";
    o.word_timestamps = 1;
    at_asr_result r;
    at_err err;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    size_t total = 0;
    for (size_t i = 0; i < r.n_segments; i++) {
        const at_asr_segment *g = &r.segments[i];
        char joined[1024] = "", text[1024] = "";
        double prev = g->start;
        for (size_t w = 0; w < g->n_words; w++) {
            const at_asr_word *x = &g->words[w];
            assert_true(x->start >= prev - 1e-9 && x->start <= x->end && x->end <= dur + 1e-9);
            assert_true(x->prob >= 0 && x->prob <= 1);
            prev = x->start;
            for (const char *p = x->text; *p && strlen(joined) + 2 < sizeof joined; p++)
                if (*p != ' ') strncat(joined, p, 1);
        }
        /* the words without their spaces are the text without its */
        size_t k = 0;
        for (const char *p = g->text; *p && k + 1 < sizeof text; p++)
            if (*p != ' ') text[k++] = *p;
        text[k] = '\0';
        assert_string_equal(joined, text);
        total += g->n_words;
    }
    print_message("word timestamps: %zu segments, %zu words\n", r.n_segments, total);
    at_asr_result_free(&r);
    /* off by default: no words */
    o.word_timestamps = 0;
    assert_int_equal(at_asr_transcribe(E, audio.data, n, &o, &r, &err), 0);
    for (size_t i = 0; i < r.n_segments; i++) assert_int_equal(r.segments[i].n_words, 0);
    at_asr_result_free(&r);
}

static void test_beam(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio);
    at_asr_options o = bounded(8);
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

/* vad_filter: only the speech is decoded, and the times given are the
 * original audio's (the silence before the speech is counted). */
static void test_vad_filter(void **st)
{
    (void)st;
    size_t n = at_npy_count(&audio), lead = 16000 * 5, total = lead + n + 16000 * 5;
    float *b = calloc(total, sizeof *b);
    memcpy(b + lead, audio.data, n * sizeof *b);
    at_asr_options o = bounded(16);
    o.language = "en";
    o.vad_filter = 1;
    at_asr_result r;
    at_err err;
    int rc = at_asr_transcribe(E, b, total, &o, &r, &err);
    if (rc) fprintf(stderr, "transcribe: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_true(fabs(r.duration - (double)total / 16000) < 1e-6);
    assert_true(r.n_segments > 0);
    for (size_t i = 0; i < r.n_segments; i++) {
        /* within the speech, padded: from 5 s less 0.3 s of padding and
         * the detector's onset */
        if (r.segments[i].start < 4.5 || r.segments[i].end > 5.0 + (double)n / 16000 + 0.5)
            fail_msg("segment %zu at %.2f-%.2f s, outside the speech", i, r.segments[i].start,
                     r.segments[i].end);
    }
    at_asr_result_free(&r);
    /* silence only: no decoding at all, nothing said */
    memset(b, 0, total * sizeof *b);
    assert_int_equal(at_asr_transcribe(E, b, total, &o, &r, &err), 0);
    assert_int_equal(r.n_segments, 0);
    at_asr_result_free(&r);
    free(b);
}

typedef struct evlog {
    int n_final, n_partial;
    double prev_start, last_end, first_start;
    int bad;
    int no_language; /* events that did not say the language */
    char language[16];
    char text[4096];
} evlog;

static int on_event(void *user, const at_asr_event *ev)
{
    evlog *l = user;
    if (!ev->text || !ev->text[0] || ev->start > ev->end + 1e-9) l->bad++;
    if (ev->language)
        snprintf(l->language, sizeof l->language, "%s", ev->language);
    else
        l->no_language++;
    if (!ev->is_final) {
        l->n_partial++;
        return 0;
    }
    if (ev->start < l->prev_start - 0.2) l->bad++; /* finals move forward */
    if (l->n_final == 0) l->first_start = ev->start;
    l->prev_start = ev->start;
    l->last_end = ev->end;
    l->n_final++;
    size_t k = strlen(l->text);
    snprintf(l->text + k, sizeof l->text - k, "%s%s", k ? " " : "", ev->text);
    return 0;
}

/* Random weights: the guards (log-probability, no-speech, compression)
 * would reject every hypothesis, so the mechanics run with them off. */
static at_asr_engine *mech_engine_vad(int max_streams, const char *vad_model)
{
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.no_speech_threshold = c.logprob_threshold = c.compression_threshold = NAN;
    c.max_streams = max_streams;
    c.vad_model = vad_model;
    at_err err;
    at_asr_engine *e = at_asr_whisper_new_ex(dir, 1, &c, &err);
    if (!e) fprintf(stderr, "engine: %s\n", err.msg);
    return e;
}

static at_asr_engine *mech_engine(int max_streams) { return mech_engine_vad(max_streams, NULL); }

static float *with_silence(double lead_s, double tail_s, size_t *total)
{
    size_t n = at_npy_count(&audio), lead = (size_t)(lead_s * 16000), tail = (size_t)(tail_s * 16000);
    float *b = calloc(lead + n + tail, sizeof *b);
    memcpy(b + lead, audio.data, n * sizeof *b);
    *total = lead + n + tail;
    return b;
}

static void stream_lang(at_asr_engine *e, const char *language, const float *pcm, size_t n, size_t piece,
                        evlog *l, int *finals_before_finish)
{
    at_asr_options o = bounded(12);
    o.language = language;
    at_err err;
    at_asr_stream *s = at_asr_stream_open(e, &o, &err);
    assert_non_null(s);
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        if (at_asr_stream_feed(s, pcm + off, k, on_event, l, &err) != 0)
            fail_msg("feed at %.1f s: %s", (double)off / 16000, err.msg);
    }
    if (finals_before_finish) *finals_before_finish = l->n_final;
    assert_int_equal(at_asr_stream_finish(s, on_event, l, &err), 0);
    at_asr_stream_close(s);
}

static void stream_all(at_asr_engine *e, const float *pcm, size_t n, size_t piece, evlog *l,
                       int *finals_before_finish)
{
    stream_lang(e, "en", pcm, n, piece, l, finals_before_finish);
}

/* The streaming checks with either VAD: the energy detector (NULL) or
 * Silero's network (its ONNX file from scripts/fetch-test-data.sh). */
static void stream_checks(const char *vad_model)
{
    at_asr_engine *e = mech_engine_vad(0, vad_model);
    assert_non_null(e);
    /* 2 s of silence, the clip, 2 s of silence, in 0.5 s pieces */
    size_t total;
    float *b = with_silence(2.0, 2.0, &total);
    evlog l = {0};
    int before = 0;
    stream_all(e, b, total, 8000, &l, &before);
    assert_int_equal(l.bad, 0);
    assert_true(l.n_final > 0);
    /* times count from the stream start: nothing before the speech */
    assert_true(l.first_start >= 1.5);
    assert_true(l.last_end <= (double)total / 16000 + 1e-6);
    /* the trailing silence ended the utterance: everything was final
     * before finish() */
    assert_int_equal(before, l.n_final);

    /* every event says the language: the one asked for */
    assert_int_equal(l.no_language, 0);
    assert_string_equal(l.language, "en");
    /* detected when not asked for, for each of two utterances */
    size_t gap = 16000 * 2;
    float *two = calloc(2 * (total + gap), sizeof *two);
    memcpy(two, b, total * sizeof *two);
    memcpy(two + total + gap, b, total * sizeof *two);
    evlog la = {0};
    stream_lang(e, NULL, two, 2 * (total + gap), 8000, &la, NULL);
    assert_true(la.n_final >= 2);
    assert_int_equal(la.no_language, 0);
    assert_true(strlen(la.language) >= 2);
    free(two);

    /* the same audio in one call gives the same finals */
    evlog l2 = {0};
    stream_all(e, b, total, total, &l2, NULL);
    assert_string_equal(l.text, l2.text);

    /* only silence: nothing decoded, nothing said, little compute */
    float *z = calloc(16000 * 20, sizeof *z);
    evlog l3 = {0};
    stream_all(e, z, 16000 * 20, 16000, &l3, NULL);
    assert_int_equal(l3.n_final + l3.n_partial, 0);
    free(z);
    free(b);
    at_asr_engine_free(e);
}

static void test_stream(void **st)
{
    (void)st;
    stream_checks(NULL);
}

static void test_stream_silero(void **st)
{
    (void)st;
    char p[600];
    const char *src = getenv("AT_SOURCE_DIR");
    snprintf(p, sizeof p, "%s/tests/data/fetched/silero_vad-v5.onnx", src ? src : ".");
    stream_checks(p);
    /* a VAD model that is not one: the engine is refused, saying why */
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.vad_model = dir; /* a folder, not an ONNX file */
    at_err err;
    assert_null(at_asr_whisper_new_ex(dir, 1, &c, &err));
    assert_true(err.code != 0 && err.msg[0]);
    c.vad_model = "no-such-vad-model";
    assert_null(at_asr_whisper_new_ex(dir, 1, &c, &err));
    assert_non_null(strstr(err.msg, "models pull"));
}

/* Long speech without pauses: the buffer is trimmed/flushed, memory and
 * per-step work stay bounded, and finals keep coming. */
static void test_stream_long(void **st)
{
    (void)st;
    at_asr_engine *e = mech_engine(0);
    size_t n = at_npy_count(&audio), total = 16000 * 40;
    float *big = malloc(total * sizeof *big);
    for (size_t i = 0; i < total; i++) big[i] = audio.data[i % n];
    evlog l = {0};
    int before = 0;
    stream_all(e, big, total, 16000, &l, &before);
    assert_int_equal(l.bad, 0);
    assert_true(before > 0); /* finals while feeding, not only at the end */
    assert_true(l.last_end <= 40.0 + 1e-6);
    free(big);
    at_asr_engine_free(e);
}

typedef struct sjob {
    at_asr_engine *e;
    const float *pcm;
    size_t n;
    evlog l;
} sjob;

static void *stream_worker(void *arg)
{
    sjob *j = arg;
    stream_all(j->e, j->pcm, j->n, 8000, &j->l, NULL);
    return NULL;
}

static void test_stream_concurrent_and_limit(void **st)
{
    (void)st;
    at_asr_engine *e = mech_engine(2);
    size_t total;
    float *b = with_silence(0.5, 1.0, &total);
    /* two streams on one model at once: each has its own state */
    sjob j[2] = {{e, b, total, {0}}, {e, b, total, {0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, stream_worker, &j[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    assert_int_equal(j[0].l.bad + j[1].l.bad, 0);
    assert_string_equal(j[0].l.text, j[1].l.text);
    /* a third stream past the limit is refused with a clear message */
    at_err err;
    at_asr_options o = {0};
    at_asr_stream *s1 = at_asr_stream_open(e, &o, &err), *s2 = at_asr_stream_open(e, &o, &err);
    assert_non_null(s1);
    assert_non_null(s2);
    assert_null(at_asr_stream_open(e, &o, &err));
    assert_int_equal(err.code, AT_E_BUSY);
    assert_non_null(strstr(err.msg, "maximum"));
    at_asr_stream_close(s1);
    at_asr_stream *s3 = at_asr_stream_open(e, &o, &err);
    assert_non_null(s3);
    at_asr_stream_close(s2);
    at_asr_stream_close(s3);
    free(b);
    at_asr_engine_free(e);
}

typedef struct job {
    size_t n_segments;
    char *text;
    int rc;
    at_asr_engine *e; /* NULL: E */
    int beams;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    at_asr_options o = bounded(16);
    o.language = "en";
    if (j->beams) o.beam_size = j->beams;
    at_asr_result r;
    at_err err;
    j->rc = at_asr_transcribe(j->e ? j->e : E, audio.data, at_npy_count(&audio), &o, &r, &err);
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

/* The largest step with the largest buffer (10 s steps, 28 s buffer, the
 * clamps' extremes) never overflows the stream's buffer: it did, killing
 * the stream with "stream buffer overflow" ("cannot happen"). */
static void test_stream_long_steps(void **st)
{
    (void)st;
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.no_speech_threshold = c.logprob_threshold = c.compression_threshold = NAN;
    c.step_ms = 10000;
    c.max_buffer_s = 28;
    c.vad = 0; /* every step decodes */
    at_err err;
    at_asr_engine *e = at_asr_whisper_new_ex(dir, 1, &c, &err);
    assert_non_null(e);
    size_t n = at_npy_count(&audio), total = 16000 * 75;
    float *big = malloc(total * sizeof *big);
    for (size_t i = 0; i < total; i++) big[i] = audio.data[i % n];
    evlog l = {0};
    stream_all(e, big, total, 16000, &l, NULL);
    assert_int_equal(l.bad, 0);
    assert_true(l.n_final > 0);
    free(big);
    at_asr_engine_free(e);
}

/* Decoder steps batched across concurrent transcriptions (the scheduler)
 * give each exactly what it gets alone; so do their encoder windows when
 * they are batched too. */
static void concurrent_batched(int batch_encode)
{
    at_err err = {0};
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.batch_decode = 1;
    c.batch_encode = batch_encode;
    c.max_jobs = 4;
    at_asr_engine *eb = at_asr_whisper_new_ex(dir, 2, &c, &err);
    assert_non_null(eb);
    enum { N = 4 };
    pthread_t th[N];
    job alone[N] = {{0}}, together[N] = {{0}};
    for (int i = 0; i < N; i++) {
        alone[i].beams = together[i].beams = i % 2 ? 3 : 0; /* greedy and beam search side by side */
        together[i].e = eb;
        worker(&alone[i]);
        assert_int_equal(alone[i].rc, 0);
    }
    for (int i = 0; i < N; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, &together[i]), 0);
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(together[i].rc, 0);
        assert_string_equal(together[i].text, alone[i].text);
        free(together[i].text);
        free(alone[i].text);
    }
    at_asr_engine_free(eb);
}

static void test_concurrent_batched(void **st)
{
    (void)st;
    concurrent_batched(0);
}

static void test_concurrent_batched_encode(void **st)
{
    (void)st;
    concurrent_batched(1);
}

/* Admission: with one job at a time and one place in the queue, a second
 * request waits, a third is refused at once (AT_E_BUSY: HTTP 503), a
 * waiting client that leaves is dropped from the queue, and the slots are
 * free again afterwards. */
typedef struct gate {
    atomic_int hold, entered;   /* the running job blocks in its first poll */
    atomic_int waiting, cancel; /* the queued one reports its polls */
    at_asr_engine *e;
    int rc;
    at_asr_options o;
} gate;

static int hold_running(void *u)
{
    gate *g = u;
    atomic_store(&g->entered, 1);
    while (atomic_load(&g->hold)) usleep(1000);
    return 0;
}

static int poll_waiting(void *u)
{
    gate *g = u;
    atomic_store(&g->waiting, 1);
    return atomic_load(&g->cancel);
}

static void *gate_job(void *arg)
{
    gate *g = arg;
    at_asr_result r;
    at_err err;
    g->rc = at_asr_transcribe(g->e, audio.data, at_npy_count(&audio), &g->o, &r, &err);
    if (g->rc == 0) at_asr_result_free(&r);
    return NULL;
}

static void test_admission(void **st)
{
    (void)st;
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.max_jobs = 1;
    c.max_queued = 1;
    at_err err;
    at_asr_engine *e = at_asr_whisper_new_ex(dir, 1, &c, &err);
    assert_non_null(e);
    gate a = {0}, b = {0};
    atomic_store(&a.hold, 1);
    a.e = b.e = e;
    a.o = b.o = bounded(4);
    a.o.cancelled = hold_running;
    a.o.cancel_user = &a;
    b.o.cancelled = poll_waiting;
    b.o.cancel_user = &b;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, gate_job, &a), 0);
    while (!atomic_load(&a.entered)) usleep(1000);
    assert_int_equal(pthread_create(&tb, NULL, gate_job, &b), 0);
    while (!atomic_load(&b.waiting)) usleep(1000); /* b polls its client while queued */
    at_asr_options o = bounded(4);
    at_asr_result r;
    assert_int_equal(at_asr_transcribe(e, audio.data, at_npy_count(&audio), &o, &r, &err), AT_E_BUSY);
    assert_non_null(strstr(err.msg, "1 transcriptions running and 1 waiting"));
    atomic_store(&b.cancel, 1); /* b's client leaves while waiting */
    pthread_join(tb, NULL);
    assert_int_equal(b.rc, AT_E_CANCELLED);
    atomic_store(&a.hold, 0);
    pthread_join(ta, NULL);
    assert_int_equal(a.rc, 0);
    /* all slots free again */
    assert_int_equal(at_asr_transcribe(e, audio.data, at_npy_count(&audio), &o, &r, &err), 0);
    at_asr_result_free(&r);
    at_asr_engine_free(e);
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
        cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_word_timestamps),
        cmocka_unit_test(test_beam),
        cmocka_unit_test(test_vad_filter),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_silero),
        cmocka_unit_test(test_stream_long),
        cmocka_unit_test(test_stream_concurrent_and_limit),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_stream_long_steps),
        cmocka_unit_test(test_cancel_within_window),
        cmocka_unit_test(test_concurrent_batched),
        cmocka_unit_test(test_concurrent_batched_encode),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_bad_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
