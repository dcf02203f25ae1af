/* test_nmt_model.c - MarianMT and M2M100 built from the shared blocks,
 * against what Hugging Face transformers computed for the same random-
 * weight models (tests/data/oracles/{marian,m2m100}-mini: the encoder
 * output and the decoder logits at every position of the greedy tokens),
 * and batched against one-at-a-time. */
#include <cjson/cJSON.h>
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

#include "engines/mt/nmt/model.h"
#include "nn/npy.h"
#include "nn/safetensors.h"

typedef struct {
    int src[64], n_src;
    int greedy[64], n_greedy;
    at_npy enc, logits;
} reference;

static const char *oracles(void)
{
    const char *d = getenv("AT_ORACLES_DIR");
    return d ? d : "tests/data/oracles";
}

static int ints(const cJSON *a, int *out, int cap)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (n == cap || !cJSON_IsNumber(e)) return -1;
        out[n++] = (int)e->valuedouble;
    }
    return n;
}

static void load_ref(const char *name, reference *r)
{
    char path[4096];
    at_err err = {0};
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/%s/reference.json", oracles(), name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("%s missing: the oracle data is part of the repository", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    r->n_src = ints(cJSON_GetObjectItem(j, "source_ids"), r->src, 64);
    r->n_greedy = ints(cJSON_GetObjectItem(j, "greedy_tokens"), r->greedy, 64);
    cJSON_Delete(j);
    assert_true(r->n_src > 0 && r->n_greedy > 1);
    snprintf(path, sizeof path, "%s/%s/encoder_out.npy", oracles(), name);
    if (at_npy_read(path, &r->enc, 0, &err)) fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/%s/logits.npy", oracles(), name);
    if (at_npy_read(path, &r->logits, 0, &err)) fail_msg("%s", err.msg);
}

static at_nmt_model *load_model(const char *name)
{
    char path[4096];
    at_err err = {0};
    snprintf(path, sizeof path, "%s/%s", oracles(), name);
    at_nmt_model *m = at_nmt_model_load(path, &err);
    if (!m) fail_msg("load %s: %s", path, err.msg);
    return m;
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

static double max_mag(const float *a, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fabs(a[i]) > d ? fabs(a[i]) : d;
    return d;
}

/* An oracle's reference, its model, and a state on a pool of 2 threads. */
typedef struct {
    reference R;
    at_nmt_model *m;
    at_compute *pool;
    at_nmt_state *s;
} oracle;

static void oracle_open(oracle *o, const char *name)
{
    at_err err = {0};
    load_ref(name, &o->R);
    o->m = load_model(name);
    o->pool = at_compute_new(2, &err);
    o->s = at_nmt_state_new(o->m, o->pool, &err);
    assert_non_null(o->s);
}

static void oracle_close(oracle *o)
{
    at_nmt_state_free(o->s);
    at_compute_free(o->pool);
    at_nmt_model_free(o->m);
    at_npy_free(&o->R.enc);
    at_npy_free(&o->R.logits);
}

/* The oracle's encoder output and every logit of the teacher-forced greedy
 * sequence; then token by token with the cache, whose argmax must be the
 * reference's wherever the reference's margin is clear. */
static void check_oracle(const char *name)
{
    oracle o;
    oracle_open(&o, name);
    const reference R = o.R;
    at_nmt_model *m = o.m;
    at_nmt_state *s = o.s;
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    int V = hp->vocab, d = hp->d_model;
    at_err err = {0};
    at_nmt_memory *mem = at_nmt_memory_new(m, R.n_src, &err);
    at_nmt_kv *kv = at_nmt_kv_new(m, &err);
    assert_non_null(mem);
    assert_non_null(kv);
    assert_int_equal(R.enc.shape[R.enc.ndim - 2], R.n_src);
    assert_int_equal(R.logits.shape[R.logits.ndim - 2], R.n_greedy);

    const int *src = R.src;
    if (at_nmt_encode(s, &src, &R.n_src, 1, &mem, &err)) fail_msg("encode: %s", err.msg);
    float *enc = malloc(sizeof(float) * (size_t)R.n_src * d);
    int len = 0;
    assert_int_equal(at_nmt_memory_output(s, mem, enc, (size_t)R.n_src * d, &len, &err), 0);
    assert_int_equal(len, R.n_src);
    double de = max_abs(enc, R.enc.data, (size_t)R.n_src * d), me = max_mag(R.enc.data, (size_t)R.n_src * d);
    printf("%s: encoder max |diff| %.2e (values up to %.2f)\n", name, de, me);
    assert_true(de <= 1e-4 * (me > 1 ? me : 1));

    size_t NL = (size_t)R.n_greedy * V;
    float *lg = malloc(sizeof(float) * NL), *step = malloc(sizeof(float) * V);
    at_nmt_seq q = {kv, R.greedy, R.n_greedy, mem, lg, 1};
    if (at_nmt_decode(s, &q, 1, &err)) fail_msg("decode: %s", err.msg);
    double dl = max_abs(lg, R.logits.data, NL), ml = max_mag(R.logits.data, NL);
    printf("%s: logits max |diff| %.2e (values up to %.2f)\n", name, dl, ml);
    assert_true(dl <= 1e-4 * (ml > 1 ? ml : 1));

    /* incremental: each step's logits equal the teacher-forced row */
    at_nmt_kv_truncate(kv, 0);
    int agree = 0, clear = 0;
    for (int t = 0; t < R.n_greedy; t++) {
        at_nmt_seq one = {kv, &R.greedy[t], 1, mem, step, 0};
        if (at_nmt_decode(s, &one, 1, &err)) fail_msg("step %d: %s", t, err.msg);
        const float *ref = R.logits.data + (size_t)t * V;
        assert_true(max_abs(step, lg + (size_t)t * V, (size_t)V) <= 1e-5 * (ml > 1 ? ml : 1));
        if (t + 1 < R.n_greedy) {
            int best = 0, second = -1;
            for (int i = 1; i < V; i++)
                if (ref[i] > ref[best]) best = i;
            for (int i = 0; i < V; i++)
                if (i != best && (second < 0 || ref[i] > ref[second])) second = i;
            int ours = 0;
            for (int i = 1; i < V; i++)
                if (step[i] > step[ours]) ours = i;
            /* (M2M100's first target token is forced, not the argmax) */
            if (ref[best] - ref[second] > 0.1) {
                clear++;
                assert_int_equal(ours, best);
                agree++;
            }
        }
    }
    printf("%s: greedy tokens equal at %d of %d clear steps\n", name, agree, clear);
    assert_int_equal(at_nmt_kv_len(kv), R.n_greedy);

    /* bad input is refused with a message, and leaves the cache alone */
    int bad = V;
    at_nmt_seq b = {kv, &bad, 1, mem, step, 0};
    assert_int_equal(at_nmt_decode(s, &b, 1, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "vocabulary"));
    assert_int_equal(at_nmt_kv_len(kv), R.n_greedy);
    int too_long = R.n_src + 1;
    assert_int_equal(at_nmt_encode(s, &src, &too_long, 1, &mem, &err), AT_E_TOO_LARGE);

    free(enc);
    free(lg);
    free(step);
    at_nmt_kv_free(kv);
    at_nmt_memory_free(mem);
    oracle_close(&o);
}

/* Each test runs on one oracle folder, named by its state. */
static void test_oracle(void **st) { check_oracle(*st); }

/* Sentences encoded together equal each encoded alone; sequences of
 * different lengths, positions and sources decoded in one batch equal each
 * decoded alone, as sequences join and leave between steps. */
static void check_batch(const char *name)
{
    oracle o;
    oracle_open(&o, name);
    const reference R = o.R;
    at_nmt_model *m = o.m;
    at_nmt_state *s = o.s;
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    int V = hp->vocab, d = hp->d_model;
    at_err err = {0};
    enum { NS = 3 };
    /* three sources: the reference, its last 5 tokens, its first 9 */
    const int *src[NS] = {R.src, R.src + R.n_src - 5, R.src};
    int lens[NS] = {R.n_src, 5, 9};
    at_nmt_memory *batch[NS], *alone[NS];
    for (int i = 0; i < NS; i++) {
        batch[i] = at_nmt_memory_new(m, R.n_src, &err);
        alone[i] = at_nmt_memory_new(m, R.n_src, &err);
        assert_non_null(batch[i]);
        assert_non_null(alone[i]);
        assert_int_equal(at_nmt_encode(s, &src[i], &lens[i], 1, &alone[i], &err), 0);
    }
    assert_int_equal(at_nmt_encode(s, src, lens, NS, batch, &err), 0);
    float *a = malloc(sizeof(float) * (size_t)R.n_src * d), *b = malloc(sizeof(float) * (size_t)R.n_src * d);
    for (int i = 0; i < NS; i++) {
        int la, lb;
        assert_int_equal(at_nmt_memory_output(s, batch[i], a, (size_t)R.n_src * d, &la, &err), 0);
        assert_int_equal(at_nmt_memory_output(s, alone[i], b, (size_t)R.n_src * d, &lb, &err), 0);
        assert_int_equal(la, lens[i]);
        assert_int_equal(lb, lens[i]);
        assert_true(max_abs(a, b, (size_t)la * d) <= 1e-5);
    }

    /* decoding: sequence i starts with a prefix of i+1 greedy tokens,
     * then steps one token; sequence 1 leaves after the first step and
     * sequence 2 joins at the second */
    at_nmt_kv *kb[NS], *ka[NS];
    float *lb[NS], *la[NS];
    for (int i = 0; i < NS; i++) {
        kb[i] = at_nmt_kv_new(m, &err);
        ka[i] = at_nmt_kv_new(m, &err);
        lb[i] = malloc(sizeof(float) * (size_t)V * 4);
        la[i] = malloc(sizeof(float) * (size_t)V * 4);
        assert_non_null(kb[i]);
        assert_non_null(ka[i]);
    }
    for (int stepno = 0; stepno < 3; stepno++) {
        at_nmt_seq seqs[NS];
        int n = 0, who[NS];
        for (int i = 0; i < NS; i++) {
            if ((i == 1 && stepno > 0) || (i == 2 && stepno == 0)) continue;
            int past = at_nmt_kv_len(kb[i]);
            int cnt = past == 0 ? i + 1 : 1;
            seqs[n] = (at_nmt_seq){kb[i], R.greedy + past, cnt, batch[i], lb[i], stepno == 0};
            who[n++] = i;
        }
        assert_int_equal(at_nmt_decode(s, seqs, n, &err), 0);
        for (int k = 0; k < n; k++) {
            int i = who[k];
            at_nmt_seq one = seqs[k];
            one.kv = ka[i];
            one.mem = alone[i];
            one.logits = la[i];
            assert_int_equal(at_nmt_decode(s, &one, 1, &err), 0);
            size_t cnt = (size_t)V * (one.all_logits ? (size_t)one.n : 1);
            double dd = max_abs(lb[i], la[i], cnt);
            if (dd > 1e-5) fail_msg("%s: step %d sequence %d: batched differs by %.2e", name, stepno, i, dd);
        }
    }
    /* a forked beam continues exactly like its parent */
    assert_int_equal(at_nmt_kv_copy(ka[1], ka[0], &err), 0);
    assert_int_equal(at_nmt_kv_len(ka[1]), at_nmt_kv_len(ka[0]));
    int tok = R.greedy[at_nmt_kv_len(ka[0])];
    at_nmt_seq p = {ka[0], &tok, 1, alone[0], la[0], 0}, c = {ka[1], &tok, 1, alone[0], la[1], 0};
    assert_int_equal(at_nmt_decode(s, &p, 1, &err), 0);
    assert_int_equal(at_nmt_decode(s, &c, 1, &err), 0);
    assert_true(max_abs(la[0], la[1], (size_t)V) == 0.0);

    for (int i = 0; i < NS; i++) {
        at_nmt_kv_free(kb[i]);
        at_nmt_kv_free(ka[i]);
        free(lb[i]);
        free(la[i]);
        at_nmt_memory_free(batch[i]);
        at_nmt_memory_free(alone[i]);
    }
    free(a);
    free(b);
    oracle_close(&o);
}

static void test_batch(void **st) { check_batch(*st); }

/* The oracle's logits from a model loaded from dir (matrices: as
 * at_nmt_model_load_as): within 3 % of their range of transformers', and
 * every clear argmax kept. */
static void check_close(const char *name, const char *dir, int matrices, const char *what)
{
    reference R;
    load_ref(name, &R);
    at_err err = {0};
    at_nmt_model *m = at_nmt_model_load_as(dir, matrices, &err);
    if (!m) fail_msg("%s", err.msg);
    at_compute *pool = at_compute_new(2, &err);
    at_nmt_state *s = at_nmt_state_new(m, pool, &err);
    at_nmt_memory *mem = at_nmt_memory_new(m, R.n_src, &err);
    at_nmt_kv *kv = at_nmt_kv_new(m, &err);
    assert_non_null(kv);
    int V = at_nmt_model_hparams(m)->dec_vocab;
    const int *src = R.src;
    assert_int_equal(at_nmt_encode(s, &src, &R.n_src, 1, &mem, &err), 0);
    size_t NL = (size_t)R.n_greedy * V;
    float *lg = malloc(sizeof(float) * NL);
    at_nmt_seq q = {kv, R.greedy, R.n_greedy, mem, lg, 1};
    assert_int_equal(at_nmt_decode(s, &q, 1, &err), 0);
    double dl = max_abs(lg, R.logits.data, NL), ml = max_mag(R.logits.data, NL);
    printf("%s %s: logits max |diff| %.2e (values up to %.2f)\n", name, what, dl, ml);
    assert_true(dl <= 0.03 * ml);
    for (int t = 1; t + 1 < R.n_greedy; t++) {
        const float *ref = R.logits.data + (size_t)t * V, *ours = lg + (size_t)t * V;
        int best = 0, mine = 0;
        for (int i = 1; i < V; i++) {
            if (ref[i] > ref[best]) best = i;
            if (ours[i] > ours[mine]) mine = i;
        }
        if (ref[best] - ref[mine] > 2 * dl) assert_int_equal(mine, best);
    }
    free(lg);
    at_nmt_kv_free(kv);
    at_nmt_memory_free(mem);
    at_nmt_state_free(s);
    at_compute_free(pool);
    at_nmt_model_free(m);
    at_npy_free(&R.enc);
    at_npy_free(&R.logits);
}

/* Matrices quantized to q8_0 at load. */
static void test_q8(void **st)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", oracles(), (const char *)*st);
    check_close(*st, path, AT_DT_Q8_0, "q8_0");
}

static void write_all(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* A bf16 model.safetensors (as a bf16 checkpoint is published) with the
 * oracle's config.json, in a new folder under /tmp. */
static void write_bf16_copy(const char *name, char *dir)
{
    char path[4200];
    at_err err = {0};
    at_nn_weights w = {0};
    snprintf(path, sizeof path, "%s/%s/model.safetensors", oracles(), name);
    if (at_nn_safetensors_open(path, &w, NULL, NULL, &err)) fail_msg("%s", err.msg);
    assert_non_null(mkdtemp(dir));
    cJSON *h = cJSON_CreateObject();
    size_t total = 0;
    for (size_t i = 0; i < w.n; i++) total += (size_t)at_nn_wtensor_numel(&w.t[i]) * 2;
    uint16_t *data = malloc(total ? total : 1), *o = data;
    for (size_t i = 0; i < w.n; i++) {
        const at_nn_wtensor *t = &w.t[i];
        int64_t n = at_nn_wtensor_numel(t), cols = t->shape[t->n_dims - 1];
        float *row = malloc(sizeof(float) * (size_t)cols);
        for (int64_t r = 0; r < n / cols; r++) {
            at_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * at_dtype_row_bytes(t->type, cols),
                           row, (int)cols);
            for (int64_t c = 0; c < cols; c++) *o++ = bf16_of(row[c]);
        }
        free(row);
        cJSON *e = cJSON_AddObjectToObject(h, t->name), *shape = cJSON_AddArrayToObject(e, "shape"),
              *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", "BF16");
        for (int d = 0; d < t->n_dims; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)((size_t)(o - data) * 2 - (size_t)n * 2)));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)((size_t)(o - data) * 2)));
    }
    char *hs = cJSON_PrintUnformatted(h);
    uint64_t hl = strlen(hs);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(len8, 1, 8, f), 8);
    assert_int_equal(fwrite(hs, 1, hl, f), hl);
    assert_int_equal(fwrite(data, 1, total, f), total);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof path, "%s/%s/config.json", oracles(), name);
    f = fopen(path, "rb");
    assert_non_null(f);
    static char cfg[1 << 16];
    size_t cn = fread(cfg, 1, sizeof cfg, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_all(path, cfg, cn);
    free(hs);
    free(data);
    cJSON_Delete(h);
    at_nn_weights_free(&w);
}

/* Weights published in bf16, used as they are (matrices in the file's
 * type, others converted). */
static void test_bf16(void **st)
{
    const char *name = *st;
    char dir[] = "/tmp/at-bf16-XXXXXX", path[4200];
    write_bf16_copy(name, dir);
    check_close(name, dir, -1, "bf16");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

static void test_load_errors(void **st)
{
    (void)st;
    at_err err = {0};
    assert_null(at_nmt_model_load("/nonexistent", &err));
    assert_int_equal(err.code, AT_E_IO);
    char path[4096];
    snprintf(path, sizeof path, "%s/whisper-mini", oracles());
    assert_null(at_nmt_model_load(path, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "whisper"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_oracle, (void *)"marian-mini"),
        cmocka_unit_test_prestate(test_oracle, (void *)"m2m100-mini"),
        cmocka_unit_test_prestate(test_batch, (void *)"marian-mini"),
        cmocka_unit_test_prestate(test_batch, (void *)"m2m100-mini"),
        cmocka_unit_test_prestate(test_q8, (void *)"marian-mini"),
        cmocka_unit_test_prestate(test_q8, (void *)"m2m100-mini"),
        cmocka_unit_test_prestate(test_bf16, (void *)"marian-mini"),
        cmocka_unit_test_prestate(test_bf16, (void *)"m2m100-mini"),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
