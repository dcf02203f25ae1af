/* test_vad.c - voice activity detection.
 *
 * Silero's network in C against ONNX Runtime: the speech probabilities of
 * silero_vad v5 on a LibriVox clip, digital silence and white noise, and
 * the LSTM state after the clip, as tests/data/silero_v5_ref.txt records
 * them (computed with onnxruntime-node; see its header).  Files that are
 * not Silero v5/v6 models, truncated or damaged, are refused with a
 * message, and crafted ones cannot make the reader allocate without bound.  Then both detectors (energy and
 * Silero) through the utterance segmenter on real speech, silence, white and pink noise, tones and music-like
 * notes, and speech in noise; the percentages are printed for docs/figures.md.  The ONNX files come from
 * scripts/fetch-test-data.sh. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/audio.h"
#include "engines/vad/onnx.h"
#include "engines/vad/silero.h"
#include "engines/vad/vad.h"

#define LIBRIVOX "/usr/share/pocketsphinx/test/data/librivox/"
#define SR       16000

static char g_data[512]; /* tests/data */
static at_silero *g_v5;  /* loaded once: the segmenter tests share it */

static void data_path(char *out, size_t cap, const char *rel) { snprintf(out, cap, "%s/%s", g_data, rel); }

static int setup(void **st)
{
    (void)st;
    const char *src = getenv("AT_SOURCE_DIR");
    snprintf(g_data, sizeof g_data, "%s/tests/data", src ? src : ".");
    char p[600];
    data_path(p, sizeof p, "fetched/silero_vad-v5.onnx");
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "%s is missing: run scripts/fetch-test-data.sh\n", p);
        return -1;
    }
    at_err err;
    g_v5 = at_silero_load(p, &err);
    if (!g_v5) fprintf(stderr, "load %s: %s\n", p, err.msg);
    return g_v5 ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    at_silero_free(g_v5);
    return 0;
}

/* The generators the reference file names. */
static void lcg_noise(float *x, size_t n)
{
    uint32_t s = 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((int)((s >> 16) % 8001) - 4000) / 32768.0f;
    }
}

static float *load_clip(const char *name, size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, LIBRIVOX "%s", name);
    at_audio a;
    at_err err;
    if (at_audio_decode_file(path, 0, &a, &err) != 0 || at_audio_resample(&a, SR, &err) != 0) {
        fail_msg("%s: %s", path, err.msg);
        return NULL;
    }
    *n = a.n;
    return a.samples;
}

static void test_matches_onnxruntime(void **st)
{
    (void)st;
    char p[600];
    data_path(p, sizeof p, "silero_v5_ref.txt");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n_speech;
    float *speech = load_clip("sense_and_sensibility_01_austen_64kb-0870.wav", &n_speech);
    assert_true(n_speech >= 51200);
    float *other = calloc(SR, sizeof *other);
    at_err err;
    char line[256], clip[64];
    int clips = 0;
    while (fgets(line, sizeof line, f)) {
        int nchunks;
        if (sscanf(line, "clip %63s %d", clip, &nchunks) != 2) continue;
        const float *x;
        if (strncmp(clip, "speech", 6) == 0) {
            x = speech;
        } else if (strcmp(clip, "silence") == 0) {
            memset(other, 0, SR * sizeof *other);
            x = other;
        } else {
            assert_string_equal(clip, "noise");
            lcg_noise(other, SR);
            x = other;
        }
        at_silero_stream *s = at_silero_stream_new(g_v5, &err);
        assert_non_null(s);
        double maxd = 0;
        for (int c = 0; c < nchunks; c++) {
            assert_non_null(fgets(line, sizeof line, f));
            double want = atof(line);
            double got = at_silero_stream_prob(s, x + (size_t)c * AT_SILERO_CHUNK);
            if (fabs(got - want) > maxd) maxd = fabs(got - want);
        }
        printf("silero v5 %-12s %3d chunks: max |p - onnxruntime| = %.2g\n", clip, nchunks, maxd);
        assert_true(maxd < 2e-5);
        if (strcmp(clip, "speech_state") == 0) {
            int k;
            assert_non_null(fgets(line, sizeof line, f));
            assert_int_equal(sscanf(line, "state %d", &k), 1);
            assert_int_equal(k, 2 * AT_SILERO_HIDDEN);
            float state[2 * AT_SILERO_HIDDEN];
            at_silero_stream_state(s, state);
            double maxs = 0;
            for (int i = 0; i < k; i++) {
                assert_non_null(fgets(line, sizeof line, f));
                if (fabs(state[i] - atof(line)) > maxs) maxs = fabs(state[i] - atof(line));
            }
            printf("silero v5 LSTM state after the clip: max |diff| = %.2g\n", maxs);
            assert_true(maxs < 1e-4);
        }
        at_silero_stream_free(s);
        clips++;
    }
    assert_int_equal(clips, 4);
    fclose(f);
    free(other);
    free(speech);
}

/* Speech is speech and silence is silence with v6 too (no reference run:
 * its layout is v5's, checked op by op when loading). */
static void test_v6_loads(void **st)
{
    (void)st;
    char p[600];
    data_path(p, sizeof p, "fetched/silero_vad-v6.onnx");
    at_err err;
    at_silero *m = at_silero_load(p, &err);
    assert_non_null(m);
    size_t n;
    float *speech = load_clip("sense_and_sensibility_01_austen_64kb-0870.wav", &n);
    at_silero_stream *s = at_silero_stream_new(m, &err);
    int hi = 0, chunks = 0;
    for (size_t off = SR; off + AT_SILERO_CHUNK <= 3 * SR; off += AT_SILERO_CHUNK, chunks++)
        hi += at_silero_stream_prob(s, speech + off) > 0.5f;
    at_silero_stream_reset(s);
    float zeros[AT_SILERO_CHUNK] = {0};
    float maxp = 0;
    for (int i = 0; i < 30; i++) maxp = fmaxf(maxp, at_silero_stream_prob(s, zeros));
    printf("silero v6: %d/%d speech chunks above 0.5; silence at most %.3f\n", hi, chunks, maxp);
    assert_true(hi > chunks * 3 / 4);
    assert_true(maxp < 0.1f);
    at_silero_stream_free(s);
    at_silero_free(m);
    free(speech);
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_all(const char *path, const char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void test_refuses_bad_files(void **st)
{
    (void)st;
    char p[600];
    at_err err;
    /* v4: another network, named in the message */
    data_path(p, sizeof p, "fetched/silero_vad-v4.onnx");
    assert_null(at_silero_load(p, &err));
    assert_int_equal(err.code, AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "v4"));
    printf("v4 refused: %s\n", err.msg);

    assert_null(at_silero_load("/nonexistent/silero.onnx", &err));
    assert_int_equal(err.code, AT_E_IO);

    /* not protobuf at all */
    char tmp[] = "/tmp/at_test_vad_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    static const char garbage[] = "RIFF\x24\x00\x00\x00WAVEfmt this is no model";
    write_all(tmp, garbage, sizeof garbage - 1);
    assert_null(at_silero_load(tmp, &err));
    printf("garbage refused: %s\n", err.msg);

    /* truncated anywhere inside the graph: an error, never a crash or a
     * half-read model (the graph is one message, so any cut inside it
     * leaves a length that overruns the file) */
    data_path(p, sizeof p, "fetched/silero_vad-v5.onnx");
    size_t n;
    char *b = read_all(p, &n);
    int cuts = 0;
    for (size_t cut = 1; cut < n * 99 / 100; cut += n / 61 + 1, cuts++) {
        write_all(tmp, b, cut);
        assert_null(at_silero_load(tmp, &err));
        assert_int_equal(err.code, AT_E_CORRUPT);
    }
    printf("%d truncated copies refused, e.g.: %s\n", cuts, err.msg);

    /* bytes changed at random: refused or loaded, never a crash (ASan) */
    uint32_t r = 7;
    for (int trial = 0; trial < 40; trial++) {
        char *c = malloc(n);
        memcpy(c, b, n);
        for (int k = 0; k < 8; k++) {
            r = r * 1664525u + 1013904223u;
            c[(r >> 8) % n] = (char)(r >> 24);
        }
        at_onnx *o = at_onnx_parse(c, n, &err);
        at_onnx_free(o);
        free(c);
    }
    free(b);
    unlink(tmp);
}

/* ---- crafted ONNX files: bounded work and memory whatever they claim ---- */

typedef struct pbw {
    unsigned char *b;
    size_t n, cap;
} pbw;

static void pbw_bytes(pbw *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    memcpy(w->b + w->n, d, n);
    w->n += n;
}

static void pbw_varint(pbw *w, uint64_t v)
{
    unsigned char t[10];
    int k = 0;
    do {
        t[k] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    pbw_bytes(w, t, (size_t)k);
}

/* field `f` as a length-delimited blob holding `sub` (freed) */
static void pbw_msg(pbw *w, uint32_t f, pbw *sub)
{
    pbw_varint(w, (uint64_t)f << 3 | 2);
    pbw_varint(w, sub->n);
    pbw_bytes(w, sub->b, sub->n);
    free(sub->b);
    memset(sub, 0, sizeof *sub);
}

/* ModelProto { graph = g } */
static at_onnx *parse_graph_msg(pbw *g, at_err *err)
{
    pbw model = {0};
    pbw_msg(&model, 7, g);
    at_onnx *o = at_onnx_parse(model.b, model.n, err);
    free(model.b);
    return o;
}

static void test_onnx_crafted(void **st)
{
    (void)st;
    at_err err;
    /* a node named with 40 KB, its attribute holding 200k empty subgraphs */
    pbw node = {0}, attr = {0}, g = {0};
    char *name = malloc(40000);
    memset(name, 'n', 40000);
    pbw_varint(&node, 3 << 3 | 2);
    pbw_varint(&node, 40000);
    pbw_bytes(&node, name, 40000);
    pbw_varint(&attr, 1 << 3 | 2);
    pbw_varint(&attr, 1);
    pbw_bytes(&attr, "g", 1);
    for (int i = 0; i < 200000; i++) pbw_bytes(&attr, "\x5a\x00", 2); /* graphs: empty */
    pbw_msg(&node, 5, &attr);
    pbw_msg(&g, 1, &node);
    assert_null(parse_graph_msg(&g, &err));
    assert_int_equal(err.code, AT_E_TOO_LARGE);
    printf("long name refused: %s\n", err.msg);

    /* a short name, the same 200k empty subgraphs: parsed, path built once */
    pbw_varint(&node, 3 << 3 | 2);
    pbw_varint(&node, 1);
    pbw_bytes(&node, "n", 1);
    for (int i = 0; i < 200000; i++) pbw_bytes(&attr, "\x5a\x00", 2);
    pbw_msg(&node, 5, &attr);
    pbw_msg(&g, 1, &node);
    at_onnx *o = parse_graph_msg(&g, &err);
    assert_non_null(o);
    assert_int_equal(at_onnx_n_nodes(o), 1);
    at_onnx_free(o);

    /* a float tensor claiming 2^40 x 2^40 elements: refused before allocating */
    pbw t = {0};
    pbw_varint(&t, 1 << 3 | 0);
    pbw_varint(&t, 1ull << 40);
    pbw_varint(&t, 1 << 3 | 0);
    pbw_varint(&t, 1ull << 40);
    pbw_varint(&t, 2 << 3 | 0);
    pbw_varint(&t, AT_ONNX_FLOAT);
    pbw_msg(&g, 5, &t);
    assert_null(parse_graph_msg(&g, &err));
    assert_int_equal(err.code, AT_E_CORRUPT);

    /* 100k empty initializers: over the item cap */
    for (int i = 0; i < 100000; i++) pbw_bytes(&g, "\x2a\x00", 2);
    assert_null(parse_graph_msg(&g, &err));
    assert_int_equal(err.code, AT_E_TOO_LARGE);
    free(name);
}

/* ---- the segmenter with either detector -------------------------------- */

typedef struct vad_stats {
    double pct; /* frames decided speech */
    int utts;   /* utterances opened */
} vad_stats;

static vad_stats measure(const at_silero *sil, const float *x, size_t n)
{
    at_err err;
    at_vad_config c;
    at_vad_config_default(&c);
    c.silero = sil;
    at_vad *v = at_vad_new(&c, &err);
    assert_non_null(v);
    size_t fl = at_vad_frame_len(v), speech = 0, frames = 0;
    for (size_t off = 0; off + fl <= n; off += fl, frames++) speech += (size_t)at_vad_frame(v, x + off, NULL);
    at_vad_reset(v);
    vad_stats s = {0, 0};
    for (size_t off = 0; off < n; off += 1600) { /* 100 ms packets, as a stream */
        int started = 0, ended = 0;
        size_t k = n - off < 1600 ? n - off : 1600;
        at_vad_feed(v, x + off, k, &started, &ended, NULL);
        s.utts += started;
    }
    at_vad_free(v);
    s.pct = frames ? 100.0 * (double)speech / (double)frames : 0;
    return s;
}

static const char *const k_clips[] = {
    "sense_and_sensibility_01_austen_64kb-0870.wav", "sense_and_sensibility_01_austen_64kb-0880.wav",
    "sense_and_sensibility_01_austen_64kb-0890.wav", "sense_and_sensibility_01_austen_64kb-0920.wav",
    "sense_and_sensibility_01_austen_64kb-0930.wav", NULL};

static void test_speech(void **st)
{
    (void)st;
    for (int i = 0; k_clips[i]; i++) {
        size_t n;
        float *x = load_clip(k_clips[i], &n);
        vad_stats e = measure(NULL, x, n), s = measure(g_v5, x, n);
        printf("vad speech %s: energy %5.1f%% frames %d utt | silero %5.1f%% frames %d utt\n",
               k_clips[i] + 31, e.pct, e.utts, s.pct, s.utts);
        assert_true(e.pct > 40.0 && e.utts >= 1);
        assert_true(s.pct > 40.0 && s.utts >= 1);
        free(x);
    }
}

/* xorshift white noise, optionally pinked (Paul Kellet's economy filter) */
static void noise(float *x, size_t n, float amp, int pink, uint64_t *r)
{
    double b0 = 0, b1 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        double w = (double)(*r >> 11) / 9007199254740992.0 * 2 - 1;
        if (pink) {
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            w = (b0 + b1 + b2 + w * 0.1848) * 0.25;
        }
        x[i] = (float)(amp * w);
    }
}

static void test_non_speech(void **st)
{
    (void)st;
    size_t n = SR * 10;
    float *x = calloc(n, sizeof *x);
    vad_stats e = measure(NULL, x, n), s = measure(g_v5, x, n);
    printf("vad digital silence: energy %5.1f%% %d utt | silero %5.1f%% %d utt\n", e.pct, e.utts, s.pct,
           s.utts);
    assert_true(e.pct == 0 && e.utts == 0);
    assert_true(s.pct == 0 && s.utts == 0);
    uint64_t r = 88172645463325252ULL;
    for (int pink = 0; pink < 2; pink++)
        for (int level = 0; level < 2; level++) {
            float amp = level ? 0.3f : 0.03f;
            noise(x, n, amp, pink, &r);
            e = measure(NULL, x, n);
            s = measure(g_v5, x, n);
            printf("vad %s noise amp %.2f: energy %5.1f%% %d utt | silero %5.1f%% %d utt\n",
                   pink ? "pink" : "white", amp, e.pct, e.utts, s.pct, s.utts);
            assert_true(e.pct < 2.0 && e.utts == 0);
            assert_true(s.pct < 2.0 && s.utts == 0);
        }
    /* tonal sounds: loud and spectrally peaky, so the energy detector takes
     * them for speech; Silero must not.  A sung-like note (vibrato) is
     * printed only: it is voice-like, and Silero flags some of it. */
    static const char *const tones[] = {"beep 1 kHz", "chord C-E-G", "piano-like melody",
                                        "sung-like note 220 Hz"};
    static const double melody[8] = {261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3};
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < n; i++) {
            double t = (double)i / SR, v = 0;
            if (k == 0) {
                v = 0.3 * sin(2 * M_PI * 1000 * t);
            } else if (k == 1) {
                for (int a = 0; a < 3; a++)
                    for (int h = 1; h <= 6; h++) v += 0.12 * sin(2 * M_PI * melody[2 * a] * h * t) / (h * h);
            } else if (k == 2) { /* a new note every 0.5 s, decaying */
                int note = (int)(t / 0.5);
                double tt = t - note * 0.5;
                for (int h = 1; h <= 6; h++)
                    v += 0.3 * sin(2 * M_PI * melody[note % 8] * h * tt) / (h * h) * exp(-tt * (3 + h));
            } else {
                double f0 = 220.0 * (1 + 0.01 * sin(2 * M_PI * 5 * t));
                for (int h = 1; h <= 8; h++) v += 0.15 * sin(2 * M_PI * f0 * h * t) / h;
            }
            x[i] = (float)v;
        }
        e = measure(NULL, x, n);
        s = measure(g_v5, x, n);
        printf("vad %s: energy %5.1f%% %d utt | silero %5.1f%% %d utt\n", tones[k], e.pct, e.utts, s.pct,
               s.utts);
        if (k < 2) assert_true(s.pct == 0 && s.utts == 0);
        if (k == 2) assert_true(s.pct < 5.0);
    }
    free(x);
}

/* Speech with pink noise at 10 dB SNR is still found. */
static void test_speech_in_noise(void **st)
{
    (void)st;
    size_t n;
    float *x = load_clip(k_clips[1], &n);
    float *nz = malloc(n * sizeof *nz);
    uint64_t r = 12345;
    noise(nz, n, 1.0f, 1, &r);
    double ps = 0, pn = 0;
    for (size_t i = 0; i < n; i++) ps += (double)x[i] * x[i], pn += (double)nz[i] * nz[i];
    float g = (float)sqrt(ps / pn / 10.0); /* 10 dB below the speech */
    for (size_t i = 0; i < n; i++) x[i] += g * nz[i];
    vad_stats e = measure(NULL, x, n), s = measure(g_v5, x, n);
    printf("vad speech + pink noise at 10 dB SNR: energy %5.1f%% %d utt | silero %5.1f%% %d utt\n", e.pct,
           e.utts, s.pct, s.utts);
    assert_true(s.pct > 40.0 && s.utts >= 1);
    free(nz);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_onnxruntime),
        cmocka_unit_test(test_v6_loads),
        cmocka_unit_test(test_refuses_bad_files),
        cmocka_unit_test(test_onnx_crafted),
        cmocka_unit_test(test_speech),
        cmocka_unit_test(test_non_speech),
        cmocka_unit_test(test_speech_in_noise),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
