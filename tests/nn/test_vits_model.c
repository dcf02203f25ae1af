/* test_vits_model.c - VitsModel inference (engines/tts/vits/model.h)
 * against what transformers' VitsModel computed for a random-weight voice
 * (tests/data/oracles/vits-mini: every sample within 2e-3), through the
 * library and through `audio-translator tts-check`; then what the oracle
 * does not cover: bad input and hostile configs refused with a message,
 * reproducible noise, the speaking rate, the decoder's pieces, threads on
 * one model, the folders of tests/data/vits (make_models.py: two
 * speakers, the plain duration predictor, weight_g/weight_v, bf16) and
 * vits-random-model's. */
#include <cjson/cJSON.h>
#include <fcntl.h>
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

#include "compute/pool.h"
#include "engines/tts/vits/model.h"
#include "nn/npy.h"
#include "tools/tools.h"

#define TOL 2e-3

static const char *oracles(void)
{
    const char *d = getenv("AT_ORACLES_DIR");
    return d ? d : "tests/data/oracles";
}

static void data_dir(char *out, size_t cap, const char *name)
{
    const char *src = getenv("AT_SOURCE_DIR");
    snprintf(out, cap, "%s/tests/data/vits/%s", src ? src : ".", name);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s missing: the test data is part of the repository", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    b[len] = 0;
    return b;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The oracle: its input ids, its length, its waveform. */
typedef struct {
    int ids[256], n;
    long length;
    at_npy wave;
} reference;

static void load_ref(reference *r)
{
    char path[4096];
    at_err err = {0};
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/vits-mini/reference.json", oracles());
    char *txt = read_text(path);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "input_ids"))
    {
        assert_true(r->n < 256);
        r->ids[r->n++] = (int)e->valuedouble;
    }
    r->length = (long)cJSON_GetArrayItem(cJSON_GetObjectItem(j, "sequence_lengths"), 0)->valuedouble;
    cJSON_Delete(j);
    assert_true(r->n > 0 && r->length > 0);
    snprintf(path, sizeof path, "%s/vits-mini/waveform.npy", oracles());
    if (at_npy_read(path, &r->wave, 0, &err)) fail_msg("%s", err.msg);
}

static at_vits_model *load(const char *dir)
{
    at_err err = {0};
    at_vits_model *m = at_vits_model_load(dir, &err);
    if (!m) fail_msg("load %s: %s", dir, err.msg);
    return m;
}

static at_vits_model *load_oracle_model(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/vits-mini", oracles());
    return load(dir);
}

static double max_abs(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (!(x <= d)) d = x; /* NaN propagates */
    }
    return d;
}

static int sum(const int *x, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return s;
}

/* Synthesizes, failing the test on an error. */
static float *speak(const at_vits_model *m, at_compute *pool, const int *ids, int n, const at_vits_params *p,
                    size_t *len, int *dur)
{
    at_err err = {0};
    float *w = NULL;
    if (at_vits_synthesize(m, pool, ids, n, p, &w, len, dur, &err)) fail_msg("synthesize: %s", err.msg);
    return w;
}

/* The synthesis is expected to fail with code, its message holding what. */
static void refused(const at_vits_model *m, at_compute *pool, const int *ids, int n, const at_vits_params *p,
                    int code, const char *what)
{
    at_err err = {0};
    float *w = (float *)1;
    size_t len = 7;
    int rc = at_vits_synthesize(m, pool, ids, n, p, &w, &len, NULL, &err);
    if (rc == 0) fail_msg("accepted (expected: %s)", what);
    if (rc != code || err.code != code) fail_msg("code %d, expected %d (%s)", rc, code, err.msg);
    if (!strstr(err.msg, what)) fail_msg("\"%s\" does not mention %s", err.msg, what);
    assert_null(w);
    assert_int_equal(len, 0);
}

/* ------------------------------------------------------------ the oracle */

static void test_oracle(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    at_vits_model *m = load_oracle_model();
    const at_vits_hparams *hp = at_vits_model_hparams(m);
    assert_int_equal(hp->hop, 256);
    assert_int_equal(hp->sampling_rate, 16000);
    assert_int_equal(hp->vocab, 40);
    assert_int_equal(hp->num_speakers, 1);
    assert_true(hp->stochastic);
    at_vits_params p;
    at_vits_params_default(m, &p);
    /* the oracle's config has no noise: transformers' output exactly */
    assert_true(p.noise_scale == 0 && p.noise_scale_duration == 0 && p.speaking_rate == 1);
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    assert_non_null(pool);
    /* as the backend chooses, then with every convolution the shapes
     * allow done by FFT (the model is too small for the backend to choose
     * that path itself) */
    for (int how = AT_CONV_AUTO; how <= AT_CONV_FFT; how += AT_CONV_FFT - AT_CONV_AUTO) {
        at_compute_set_conv(pool, (at_conv_method)how);
        int dur[256];
        size_t len;
        float *w = speak(m, pool, R.ids, R.n, &p, &len, dur);
        assert_int_equal(R.wave.ndim, 1);
        assert_int_equal(len, (size_t)R.length);
        assert_int_equal(len, at_npy_count(&R.wave));
        /* the durations set the length and, through the alignment, where
         * each token's sound lies: a frame off anywhere would move the
         * waveform after it far more than the tolerance */
        assert_int_equal((size_t)sum(dur, R.n) * hp->hop, len);
        printf("durations:");
        for (int i = 0; i < R.n; i++) printf(" %d", dur[i]);
        double d = max_abs(w, R.wave.data, len);
        printf("\nvits-mini%s: %zu samples, max |ours - transformers| = %.3g\n",
               how == AT_CONV_FFT ? " (convolutions by FFT)" : "", len, d);
        if (!(d <= TOL)) fail_msg("waveform differs by %g", d);
        free(w);
    }
    at_npy_free(&R.wave);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* Runs the command's entry function with its stdout in a file; returns
 * what it printed. */
static char *run_command(int (*fn)(int, char **), char **argv, int argc, int *rc)
{
    char path[] = "/tmp/at-ttscheck-stdout-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0 && dup2(fd, 1) == 1);
    *rc = fn(argc, argv);
    fflush(stdout);
    assert_int_equal(dup2(saved, 1), 1);
    close(saved);
    close(fd);
    char *txt = read_text(path);
    unlink(path);
    return txt;
}

/* tts-check on the oracle: its JSON, and an .npy that reads back as the
 * library's own waveform and as transformers'. */
static void test_tts_check(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    char dir[4096], ids[2048] = "", out[] = "/tmp/at-ttscheck-XXXXXX", npy[4200];
    snprintf(dir, sizeof dir, "%s/vits-mini", oracles());
    for (int i = 0; i < R.n; i++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%s%d", i ? "," : "", R.ids[i]);
    assert_non_null(mkdtemp(out));
    snprintf(npy, sizeof npy, "%s/wave.npy", out);
    char *argv[] = {"tts-check", "--model", dir, "--input-ids", ids, "--out", npy, "--threads", "2", NULL};
    int rc;
    char *txt = run_command(at_tts_check_main, argv, 9, &rc);
    assert_int_equal(rc, 0);
    cJSON *j = cJSON_Parse(txt);
    if (!j) fail_msg("tts-check printed: %s", txt);
    free(txt);
    assert_int_equal((long)cJSON_GetObjectItem(j, "length")->valuedouble, R.length);
    assert_int_equal((int)cJSON_GetObjectItem(j, "sample_rate")->valuedouble, 16000);
    const cJSON *durs = cJSON_GetObjectItem(j, "durations");
    assert_int_equal(cJSON_GetArraySize(durs), R.n);

    at_vits_model *m = load(dir);
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    int dur[256];
    size_t len;
    float *w = speak(m, pool, R.ids, R.n, NULL, &len, dur);
    for (int i = 0; i < R.n; i++) assert_int_equal((int)cJSON_GetArrayItem(durs, i)->valuedouble, dur[i]);
    at_npy a;
    if (at_npy_read(npy, &a, 0, &err)) fail_msg("%s", err.msg);
    assert_int_equal(a.ndim, 1);
    assert_int_equal(at_npy_count(&a), len);
    assert_memory_equal(a.data, w, len * sizeof *w);
    assert_true(max_abs(a.data, R.wave.data, len) <= TOL);
    at_npy_free(&a);
    unlink(npy);

    /* refusals: the command's usage errors, and the model's */
    char *bad_id[] = {"tts-check", "--model", dir, "--input-ids", "0,40", "--out", npy, NULL};
    txt = run_command(at_tts_check_main, bad_id, 7, &rc);
    free(txt);
    assert_int_equal(rc, 2);
    char *no_out[] = {"tts-check", "--model", dir, "--input-ids", "0,4", NULL};
    txt = run_command(at_tts_check_main, no_out, 5, &rc);
    free(txt);
    assert_int_equal(rc, 2);
    char *bad_rate[] = {"tts-check", "--model",         dir, "--input-ids", "0,4", "--out",
                        npy,         "--speaking-rate", "x", NULL};
    txt = run_command(at_tts_check_main, bad_rate, 9, &rc);
    free(txt);
    assert_int_equal(rc, 2);
    assert_int_equal(access(npy, F_OK), -1);
    rmdir(out);
    cJSON_Delete(j);
    free(w);
    at_npy_free(&R.wave);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* ---------------------------------------------------------- bad input */

static void test_bad_input(void **state)
{
    (void)state;
    at_vits_model *m = load_oracle_model();
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    int ids[] = {0, 5, 0, 12, 0};
    refused(m, pool, ids, 0, &p, AT_E_INVALID, "no tokens");
    refused(m, pool, NULL, 3, &p, AT_E_INVALID, "no tokens");
    int big[] = {0, 40, 0};
    refused(m, pool, big, 3, &p, AT_E_INVALID, "vocabulary");
    int neg[] = {0, -1, 0};
    refused(m, pool, neg, 3, &p, AT_E_INVALID, "vocabulary");
    int *many = calloc(AT_VITS_MAX_TOKENS + 1, sizeof *many);
    refused(m, pool, many, AT_VITS_MAX_TOKENS + 1, &p, AT_E_TOO_LARGE, "4096");
    free(many);
    p.speaker_id = 1;
    refused(m, pool, ids, 5, &p, AT_E_INVALID, "speaker");
    p.speaker_id = 0;
    p.max_frames = 10; /* these tokens take about 100 */
    refused(m, pool, ids, 5, &p, AT_E_TOO_LARGE, "10 frames");
    p.max_frames = -1;
    refused(m, pool, ids, 5, &p, AT_E_INVALID, "max_frames");
    p.max_frames = 0;
    p.speaking_rate = 0;
    refused(m, pool, ids, 5, &p, AT_E_INVALID, "speaking rate");
    p.speaking_rate = 1;
    p.noise_scale = NAN;
    refused(m, pool, ids, 5, &p, AT_E_INVALID, "noise");
    p.noise_scale = 0;
    /* the default cap is 60 s: a speaking rate of 0.001 asks for hours */
    p.speaking_rate = 0.001f;
    refused(m, pool, ids, 5, &p, AT_E_TOO_LARGE, "60.0 s");
    /* and after all that, it still speaks */
    p.speaking_rate = 1;
    size_t len;
    int dur[5];
    float *w = speak(m, pool, ids, 5, &p, &len, dur);
    assert_int_equal(len, (size_t)sum(dur, 5) * 256);
    free(w);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* A folder with the oracle's weights and a config edited by one key. */
static void check_config(const char *dir, const char *orig, const char *key, const char *json,
                         const char *what)
{
    char path[4200];
    cJSON *c = cJSON_Parse(orig);
    assert_non_null(c);
    cJSON *v = cJSON_Parse(json);
    assert_non_null(v);
    if (cJSON_GetObjectItem(c, key))
        cJSON_ReplaceItemInObject(c, key, v);
    else
        cJSON_AddItemToObject(c, key, v);
    char *txt = cJSON_Print(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, txt);
    free(txt);
    cJSON_Delete(c);
    at_err err = {0};
    at_vits_model *m = at_vits_model_load(dir, &err);
    if (m) fail_msg("%s = %s accepted", key, json);
    if (!strstr(err.msg, what)) fail_msg("%s = %s: \"%s\" does not mention %s", key, json, err.msg, what);
}

static void test_bad_configs(void **state)
{
    (void)state;
    char dir[] = "/tmp/at-vits-cfg-XXXXXX", path[4200], src[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/vits-mini/config.json", oracles());
    char *orig = read_text(src);
    snprintf(src, sizeof src, "%s/vits-mini/model.safetensors", oracles());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, path), 0);
    static const char *const bad[][3] = {
        {"model_type", "\"bert\"", "vits"},
        {"hidden_size", "-32", "hidden_size"},
        {"hidden_size", "1000000000", "hidden_size"},
        {"hidden_size", "64", "shape"}, /* a sane value the weights do not have */
        {"vocab_size", "0", "vocab_size"},
        {"vocab_size", "12", "shape [40 32], expected [12 32]"}, /* a matrix's two dimensions */
        {"num_attention_heads", "3", "num_attention_heads"},
        {"num_hidden_layers", "3", "layers.2"},
        {"ffn_dim", "\"64\"", "ffn_dim"},
        {"flow_size", "33", "flow_size"},
        {"upsample_rates", "[8, 8, 2]", "upsample"},
        {"upsample_rates", "[]", "upsample"},
        {"upsample_kernel_sizes", "[16, 16, 4, 5]", "upsample kernel"},
        {"upsample_rates", "[64, 64, 64, 64]", "4096"},
        {"upsample_initial_channel", "8", "upsample_initial_channel"},
        {"resblock_kernel_sizes", "[3, 7]", "resblock"},
        {"resblock_kernel_sizes", "[3, 7, 12]", "odd"},
        {"resblock_dilation_sizes", "[[1, 3, 5], [1, 3, 5]]", "resblock"},
        {"resblock_dilation_sizes", "[[1, 3, 5], [], [1]]", "resblock_dilation_sizes"},
        {"resblock_dilation_sizes", "[[1, 3, 5], [1, 3, -5], [1]]", "resblock_dilation_sizes"},
        {"wavenet_kernel_size", "4", "odd"},
        {"wavenet_dilation_rate", "17", "wavenet_dilation_rate"},
        {"prior_encoder_num_wavenet_layers", "65", "prior_encoder_num_wavenet_layers"},
        {"depth_separable_channels", "4", "depth_separable_channels"},
        {"duration_predictor_flow_bins", "100000", "duration_predictor_flow_bins"},
        {"duration_predictor_tail_bound", "-5", "duration_predictor_tail_bound"},
        {"num_speakers", "2", "speaker_embedding_size"},
        {"speaker_embedding_size", "4", "cond"},
        {"sampling_rate", "0", "sampling_rate"},
        {"noise_scale", "-1", "noise_scale"},
        {"speaking_rate", "0", "speaking_rate"},
        {"layer_norm_eps", "\"x\"", "layer_norm_eps"},
        {"hidden_act", "\"swoosh\"", "hidden_act"},
        {"use_stochastic_duration_prediction", "false", "duration_predictor.conv_1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check_config(dir, orig, bad[i][0], bad[i][1], bad[i][2]);
    /* not JSON at all, and no config */
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"model_type\": \"vits\"");
    at_err err = {0};
    assert_null(at_vits_model_load(dir, &err));
    unlink(path);
    assert_null(at_vits_model_load(dir, &err));
    /* a truncated weights file */
    write_text(path, orig);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    char *weights = NULL;
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    weights = malloc(1 << 20);
    size_t n = fread(weights, 1, 1 << 20, f);
    fclose(f);
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(weights, 1, n / 2, f);
    fclose(f);
    free(weights);
    assert_null(at_vits_model_load(dir, &err));
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    free(orig);
    assert_null(at_vits_model_load("", &err));
    assert_null(at_vits_model_load("/nonexistent/vits", &err));
}

/* ----------------------------------------------------- noise and rate */

static int same(const float *a, size_t na, const float *b, size_t nb)
{
    return na == nb && memcmp(a, b, na * sizeof *a) == 0;
}

static void test_noise_seeds(void **state)
{
    (void)state;
    at_vits_model *m = load_oracle_model();
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.noise_scale = 0.667f;
    p.noise_scale_duration = 0.8f;
    p.seed = 7;
    int ids[] = {0, 5, 0, 12, 0, 7, 0};
    size_t la, lb, lc;
    int da[7], db[7], dc[7];
    float *a = speak(m, pool, ids, 7, &p, &la, da);
    float *b = speak(m, pool, ids, 7, &p, &lb, db);
    p.seed = 8;
    float *c = speak(m, pool, ids, 7, &p, &lc, dc);
    assert_true(same(a, la, b, lb));
    assert_memory_equal(da, db, sizeof da);
    assert_false(same(a, la, c, lc));
    /* duration noise only: the same frames as without noise would be
     * unlikely; prior noise only: the durations stay those of no noise */
    at_vits_params q;
    at_vits_params_default(m, &q);
    int d0[7], d1[7];
    free(speak(m, pool, ids, 7, &q, &la, d0));
    q.noise_scale = 0.667f;
    q.seed = 3;
    float *x = speak(m, pool, ids, 7, &q, &lb, d1);
    assert_memory_equal(d0, d1, sizeof d0);
    for (size_t i = 0; i < lb; i++) assert_true(fabsf(x[i]) <= 1);
    free(a);
    free(b);
    free(c);
    free(x);
    at_compute_free(pool);
    at_vits_model_free(m);
}

static void test_speaking_rate(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    at_vits_model *m = load_oracle_model();
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    int d1[256], d2[256];
    size_t l1, l2;
    float *a = speak(m, pool, R.ids, R.n, &p, &l1, d1);
    p.speaking_rate = 2;
    float *b = speak(m, pool, R.ids, R.n, &p, &l2, d2);
    /* ceil(e) = k gives ceil(e / 2) = ceil(k / 2), token by token */
    for (int i = 0; i < R.n; i++) assert_int_equal(d2[i], (d1[i] + 1) / 2);
    assert_true(l2 * 2 <= l1 + (size_t)R.n * 256 && l2 * 2 >= l1);
    printf("speaking rate 1: %zu samples, 2: %zu\n", l1, l2);
    free(a);
    free(b);
    at_npy_free(&R.wave);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* ---------------------------------------------------- streaming, threads */

typedef struct pieces {
    float *buf;
    size_t n, cap, calls, first;
    int fail_at;
} pieces;

static int piece_sink(void *user, const float *x, size_t n, at_err *err)
{
    pieces *p = user;
    if (p->calls == 0) p->first = n;
    if ((int)++p->calls == p->fail_at) return at_err_set(err, AT_E_CANCELLED, "listener went away");
    assert_true(p->n + n <= p->cap);
    memcpy(p->buf + p->n, x, n * sizeof *x);
    p->n += n;
    return 0;
}

/* The decoder's pieces (a short first one, then longer, each with its
 * context) join into the whole waveform; a sink's error stops the call. */
static void test_stream(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    at_vits_model *m = load_oracle_model();
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    size_t len, total = 0;
    float *w = speak(m, pool, R.ids, R.n, NULL, &len, NULL);
    pieces P = {malloc(len * sizeof(float)), 0, len, 0, 0, 0};
    assert_int_equal(at_vits_synthesize_stream(m, pool, R.ids, R.n, NULL, piece_sink, &P, &total, NULL, &err),
                     0);
    assert_int_equal(total, len);
    assert_true(P.calls >= 2);
    assert_true(P.first < len);
    /* the flows too run in pieces there (test_stream_flows) */
    assert_int_equal(P.n, len);
    assert_true(max_abs(P.buf, w, len) <= 2e-4);
    P.n = P.calls = 0;
    P.fail_at = 2;
    assert_int_equal(at_vits_synthesize_stream(m, pool, R.ids, R.n, NULL, piece_sink, &P, &total, NULL, &err),
                     AT_E_CANCELLED);
    assert_non_null(strstr(err.msg, "listener"));
    free(P.buf);
    free(w);
    at_npy_free(&R.wave);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* The stream of one sentence against at_vits_synthesize's waveform: the
 * stream runs the prior flows over the first piece's frames (with their
 * context) before that piece goes out and over the rest after, the whole
 * synthesis over every frame at once.  Their samples agree within tol:
 * float rounding (the backend picks a convolution's method by its length,
 * so a piece may round unlike the whole), which the decoder may amplify.
 * Returns the frames. */
static size_t stream_as_whole(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                              const at_vits_params *p, double tol, const char *what)
{
    at_err err = {0};
    size_t len, total = 0;
    float *w = speak(m, pool, ids, n, p, &len, NULL);
    pieces P = {malloc(len * sizeof(float)), 0, len, 0, 0, 0};
    if (at_vits_synthesize_stream(m, pool, ids, n, p, piece_sink, &P, &total, NULL, &err))
        fail_msg("%s: %s", what, err.msg);
    assert_int_equal(total, len);
    assert_int_equal(P.n, len);
    assert_true(P.calls >= 2);
    double d = max_abs(P.buf, w, len);
    size_t frames = len / (size_t)at_vits_model_hparams(m)->hop;
    printf("%s: %zu frames, max |stream - whole| = %.3g\n", what, frames, d);
    if (!(d <= tol)) fail_msg("%s: the stream differs from the whole by %g", what, d);
    free(P.buf);
    free(w);
    return frames;
}

/* dir's config.json with key set to the number v. */
static void set_config(const char *dir, const char *key, double v)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt = read_text(path);
    cJSON *c = cJSON_Parse(txt);
    free(txt);
    assert_non_null(c);
    if (cJSON_GetObjectItem(c, key))
        cJSON_ReplaceItemInObject(c, key, cJSON_CreateNumber(v));
    else
        cJSON_AddNumberToObject(c, key, v);
    txt = cJSON_Print(c);
    cJSON_Delete(c);
    write_text(path, txt);
    free(txt);
}

static void remove_folder(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* The flows run piecewise in a stream, with noise (drawn per frame over
 * the whole range, so that each frame gets the same values both ways): on
 * the oracle's weights, at wavenet_dilation_rate 2 too (a flow context of
 * 4 flows of 2 (1 + 2 + 4 + 8) = 120 frames), and on vits-random-model's
 * tiny voice at wavenet_dilation_rate 16, with a speaker: 2 flows of
 * 1 + 16 = 34 frames of context against a first piece of 16.  The far
 * end of a flow's reach weighs little, hence tight tolerances: measured on
 * the tiny voice, a context halved, of one flow only, or without the
 * dilation is off by 2.7e-4, 2.7e-4 and 0.024 (2 frames short: 1.5e-5;
 * 1 short: 3e-6, rounding's size) where the right one gave 0; the
 * oracle's decoder amplifies rounding to 6.4e-5. */
static void test_stream_flows(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_model *m = load_oracle_model();
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.noise_scale = 0.667f;
    p.noise_scale_duration = 0.8f;
    p.seed = 7;
    /* past the first piece, the decoder's context and the flows' (4 flows
     * of 2 (1 + 1 + 1 + 1) = 32 frames), so that both parts run */
    assert_true(stream_as_whole(m, pool, R.ids, R.n, &p, 2e-4, "vits-mini, noise") > 200);
    at_vits_model_free(m);

    char dir[] = "/tmp/at-vits-dil-XXXXXX", path[4200], src[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/vits-mini/model.safetensors", oracles());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, path), 0);
    snprintf(src, sizeof src, "%s/vits-mini/config.json", oracles());
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *txt = read_text(src);
    write_text(path, txt);
    free(txt);
    set_config(dir, "wavenet_dilation_rate", 2);
    m = load(dir);
    assert_true(stream_as_whole(m, pool, R.ids, R.n, &p, 2e-4, "vits-mini, dilation rate 2, noise") > 200);
    at_vits_model_free(m);
    remove_folder(dir);

    char tiny[] = "/tmp/at-vits-tiny-XXXXXX";
    assert_non_null(mkdtemp(tiny));
    if (at_vits_random_model("tiny", "f16", tiny, 5, NULL, &err)) fail_msg("%s", err.msg);
    set_config(tiny, "wavenet_dilation_rate", 16);
    m = load(tiny);
    at_vits_params_default(m, &p);
    p.seed = 11;
    p.speaker_id = 1;
    int ids[40];
    for (int i = 0; i < 40; i++) ids[i] = i % 2 ? 1 + (i * 5) % 11 : 0;
    assert_true(stream_as_whole(m, pool, ids, 40, &p, 1e-5, "tiny, dilation rate 16, speaker 1, noise") >
                100);
    at_vits_model_free(m);
    remove_folder(tiny);
    at_npy_free(&R.wave);
    at_compute_free(pool);
}

typedef struct job {
    const at_vits_model *m;
    at_compute *pool;
    const int *ids;
    int n;
    float *w;
    size_t len;
    int rc;
} job;

static void *job_run(void *arg)
{
    job *j = arg;
    at_err err = {0};
    j->rc = at_vits_synthesize(j->m, j->pool, j->ids, j->n, NULL, &j->w, &j->len, NULL, &err);
    return NULL;
}

/* One model, one pool, three threads at once: each gets what it gets
 * alone. */
static void test_threads(void **state)
{
    (void)state;
    reference R;
    load_ref(&R);
    at_vits_model *m = load_oracle_model();
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    size_t len;
    float *w = speak(m, pool, R.ids, R.n, NULL, &len, NULL);
    job J[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        J[i] = (job){m, pool, R.ids, R.n, NULL, 0, -1};
        assert_int_equal(pthread_create(&th[i], NULL, job_run, &J[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(J[i].rc, 0);
        assert_true(max_abs(J[i].w, w, len) <= 1e-5 && J[i].len == len);
        free(J[i].w);
    }
    free(w);
    at_npy_free(&R.wave);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* --------------------------------------------- the generated folders */

static void test_multi_speaker(void **state)
{
    (void)state;
    char dir[4096];
    data_dir(dir, sizeof dir, "multi-speaker");
    at_vits_model *m = load(dir);
    const at_vits_hparams *hp = at_vits_model_hparams(m);
    assert_int_equal(hp->num_speakers, 2);
    assert_int_equal(hp->hop, 8);
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.noise_scale = p.noise_scale_duration = 0;
    int ids[] = {0, 5, 0, 7, 0, 3, 0, 11, 0}, d[3][9];
    float *w[3];
    size_t len[3];
    for (int s = -1; s < 2; s++) {
        p.speaker_id = s;
        w[s + 1] = speak(m, pool, ids, 9, &p, &len[s + 1], d[s + 1]);
        assert_int_equal(len[s + 1], (size_t)sum(d[s + 1], 9) * hp->hop);
        for (size_t i = 0; i < len[s + 1]; i++) assert_true(fabsf(w[s + 1][i]) <= 1);
        printf("speaker %d: %zu samples\n", s, len[s + 1]);
    }
    /* each speaker its own voice (and none: transformers' speaker_id=None) */
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) assert_false(same(w[a], len[a], w[b], len[b]));
    /* and the same again for the same speaker */
    p.speaker_id = 1;
    size_t l2;
    float *again = speak(m, pool, ids, 9, &p, &l2, NULL);
    assert_true(same(again, l2, w[2], len[2]));
    free(again);
    p.speaker_id = 2;
    refused(m, pool, ids, 9, &p, AT_E_INVALID, "0..1");
    p.speaker_id = -2;
    refused(m, pool, ids, 9, &p, AT_E_INVALID, "0..1");
    for (int i = 0; i < 3; i++) free(w[i]);
    at_compute_free(pool);
    at_vits_model_free(m);
}

static void test_plain_duration(void **state)
{
    (void)state;
    char dir[4096];
    data_dir(dir, sizeof dir, "plain-dp");
    at_vits_model *m = load(dir);
    const at_vits_hparams *hp = at_vits_model_hparams(m);
    assert_false(hp->stochastic);
    at_err err = {0};
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.noise_scale = 0;
    int ids[] = {0, 5, 0, 7, 0, 3, 0, 11, 0}, d1[9], d2[9];
    size_t l1, l2;
    float *a = speak(m, pool, ids, 9, &p, &l1, d1);
    assert_int_equal(l1, (size_t)sum(d1, 9) * hp->hop);
    for (size_t i = 0; i < l1; i++) assert_true(fabsf(a[i]) <= 1);
    p.speaking_rate = 2;
    float *b = speak(m, pool, ids, 9, &p, &l2, d2);
    for (int i = 0; i < 9; i++) assert_int_equal(d2[i], (d1[i] + 1) / 2);
    free(a);
    free(b);
    at_compute_free(pool);
    at_vits_model_free(m);
}

/* vits-random-model's tiny preset: a folder that loads, and two speakers
 * that differ (the mms-tts and vits-ljs presets are bench_vits's). */
static void test_random_model(void **state)
{
    (void)state;
    char dir[] = "/tmp/at-vits-random-XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    at_err err = {0};
    int64_t n = 0;
    if (at_vits_random_model("tiny", "f16", dir, 5, &n, &err)) fail_msg("%s", err.msg);
    assert_true(n > 1000);
    assert_int_not_equal(at_vits_random_model("mms-tts-xl", "f16", dir, 5, NULL, &err), 0);
    assert_int_not_equal(at_vits_random_model("tiny", "q4_0", dir, 5, NULL, &err), 0);
    at_vits_model *m = load(dir);
    assert_int_equal(at_vits_model_hparams(m)->num_speakers, 2);
    at_compute *pool = at_compute_new(2, &err);
    at_vits_params p;
    at_vits_params_default(m, &p);
    int ids[] = {0, 3, 0, 5, 0, 9, 0}, d0[7], d1[7];
    size_t l0, l1;
    float *a = speak(m, pool, ids, 7, &p, &l0, d0);
    p.speaker_id = 1;
    float *b = speak(m, pool, ids, 7, &p, &l1, d1);
    assert_false(same(a, l0, b, l1));
    for (size_t i = 0; i < l0; i++) assert_true(fabsf(a[i]) <= 1);
    printf("tiny random voice: %lld parameters, %zu and %zu samples\n", (long long)n, l0, l1);
    free(a);
    free(b);
    at_compute_free(pool);
    at_vits_model_free(m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),         cmocka_unit_test(test_tts_check),
        cmocka_unit_test(test_bad_input),      cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_noise_seeds),    cmocka_unit_test(test_speaking_rate),
        cmocka_unit_test(test_stream),         cmocka_unit_test(test_stream_flows),
        cmocka_unit_test(test_threads),        cmocka_unit_test(test_multi_speaker),
        cmocka_unit_test(test_plain_duration), cmocka_unit_test(test_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
