/* test_whisper_model.c - the Whisper model core against Hugging Face
 * reference outputs (tests/data/oracles/whisper-mini, copied from the project oracles; see its
 * README.txt): features, encoder, decoder logits, greedy tokens, both
 * loaders, the converter and quantized weights, corrupt files, and the
 * whisper-check command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compute/backend.h"
#include "compute/kernels.h"
#include "engines/asr/whisper/model.h"
#include "engines/asr/whisper/model_internal.h"
#include "engines/asr/whisper/sched.h"
#include "engines/asr/whisper/tokenizer.h"
#include "nn/npy.h"
#include "engines/asr/whisper/whisper.h"
#include "tools/tools.h"

static char g_oracle[1024];
static char g_tmp[256];

typedef struct {
    at_npy audio, mel80, mel128, enc, logits;
    int tokens[64], n_tokens, n_prefix;
    float margins[64];
    int n_margins;
} refs_t;

static refs_t R;

static void opath(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_oracle, name); }

static void load_npy(const char *name, at_npy *out)
{
    char p[1200];
    at_err err = {0};
    opath(p, sizeof p, name);
    if (at_npy_read(p, out, 0, &err)) fail_msg("%s", err.msg);
}

static void load_greedy(void)
{
    char p[1200];
    opath(p, sizeof p, "greedy.json");
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    cJSON *e;
    R.n_prefix = cJSON_GetArraySize(cJSON_GetObjectItem(j, "prefix"));
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "greedy_tokens")) R.tokens[R.n_tokens++] = e->valueint;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "top1_minus_top2")) R.margins[R.n_margins++] =
        (float)e->valuedouble;
    cJSON_Delete(j);
    assert_int_equal(R.n_tokens, R.n_prefix + R.n_margins);
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN counts as a failure too */
    }
    return m;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Runs a model on the reference audio: mel, encoder, teacher-forced logits
 * over the reference tokens (one batch).  Caller frees the outputs. */
static void run_model_on(const char *path, int device, float **mel_out, float **enc_out, float **logits_out)
{
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load_on(path, device, &err);
    if (!m) fail_msg("load %s: %s", path, err.msg);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab * (size_t)R.n_tokens);
    assert_non_null(mel);
    assert_non_null(logits);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 2, &err);
    assert_non_null(s);
    assert_int_equal(at_whisper_encode(s, mel, 0, &err), 0);
    int n_ctx;
    float *e = malloc(sizeof(float) * (size_t)hp->n_audio_ctx * hp->n_audio_state);
    assert_non_null(e);
    assert_int_equal(
        at_whisper_encoder_output(s, e, (size_t)hp->n_audio_ctx * hp->n_audio_state, &n_ctx, &err), 0);
    assert_int_equal(n_ctx, hp->n_audio_ctx);
    at_whisper_kv *kv = at_whisper_kv_new(m, &err);
    assert_non_null(kv);
    if (at_whisper_decode(s, kv, R.tokens, R.n_tokens, 1, logits, &err)) fail_msg("decode: %s", err.msg);
    at_whisper_kv_free(kv);
    at_whisper_state_free(s);
    at_whisper_model_free(m);
    if (mel_out)
        *mel_out = mel;
    else
        free(mel);
    *enc_out = e;
    *logits_out = logits;
}

static void run_model(const char *path, float **mel_out, float **enc_out, float **logits_out)
{
    run_model_on(path, -1, mel_out, enc_out, logits_out);
}

/* ------------------------------------------------------------------ tests */

static void test_whisper_model_mel(void **state)
{
    (void)state;
    at_err err = {0};
    float *mel = malloc(sizeof(float) * 128 * AT_WHISPER_N_FRAMES);
    assert_non_null(mel);
    assert_int_equal(at_whisper_log_mel(80, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    assert_int_equal(at_npy_count(&R.mel80), 80 * AT_WHISPER_N_FRAMES);
    float e80 = max_abs_diff(mel, R.mel80.data, 80 * AT_WHISPER_N_FRAMES);
    assert_int_equal(at_whisper_log_mel(128, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    assert_int_equal(at_npy_count(&R.mel128), 128 * AT_WHISPER_N_FRAMES);
    float e128 = max_abs_diff(mel, R.mel128.data, 128 * AT_WHISPER_N_FRAMES);
    print_message("mel max abs err: 80 bins %.3g, 128 bins %.3g\n", e80, e128);
    assert_true(e80 <= 1e-3f);
    assert_true(e128 <= 1e-3f);
    /* frames past the audio are skipped as zeros: the same bits as the
     * audio zero-padded to 30 s by the caller (every frame computed), for
     * lengths around a frame's hop and at the reflected end */
    float *padded = calloc(AT_WHISPER_N_SAMPLES, sizeof(float)),
          *full = malloc(sizeof(float) * 80 * AT_WHISPER_N_FRAMES);
    assert_true(padded && full);
    size_t na = at_npy_count(&R.audio);
    static const size_t lens[] = {
        1, 159, 160, 161, 8000, AT_WHISPER_N_SAMPLES - 201, AT_WHISPER_N_SAMPLES - 200};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        for (size_t i = 0; i < AT_WHISPER_N_SAMPLES; i++) padded[i] = i < n ? R.audio.data[i % na] : 0.0f;
        assert_int_equal(at_whisper_log_mel(80, padded, n, mel, &err), 0);
        assert_int_equal(at_whisper_log_mel(80, padded, AT_WHISPER_N_SAMPLES, full, &err), 0);
        if (memcmp(mel, full, sizeof(float) * 80 * AT_WHISPER_N_FRAMES) != 0)
            fail_msg("log-mel of %zu samples differs from the same audio padded to 30 s", n);
    }
    free(padded);
    free(full);
    /* silence and bad arguments */
    assert_int_equal(at_whisper_log_mel(80, NULL, 0, mel, &err), 0);
    assert_true(at_whisper_log_mel(0, R.audio.data, 10, mel, &err) == AT_E_INVALID);
    free(mel);
}

static void check_logits(const char *what, const float *logits, float tol)
{
    int V = (int)R.logits.shape[1];
    float e = max_abs_diff(logits, R.logits.data, (size_t)R.n_tokens * V);
    print_message("%s: logits max abs err %.3g\n", what, e);
    assert_true(e <= tol);
    /* the argmax must agree wherever the reference is not a near tie */
    for (int i = R.n_prefix - 1; i < R.n_tokens - 1; i++) {
        int step = i - (R.n_prefix - 1);
        if (R.margins[step] > 0.05f) assert_int_equal(argmax(logits + (size_t)i * V, V), R.tokens[i + 1]);
    }
}

static void test_whisper_model_hf(void **state)
{
    (void)state;
    float *enc, *logits;
    run_model(g_oracle, NULL, &enc, &logits);
    float e = max_abs_diff(enc, R.enc.data, at_npy_count(&R.enc));
    print_message("HF: encoder max abs err %.3g\n", e);
    assert_true(e <= 2e-3f);
    check_logits("HF batch", logits, 5e-3f);
    free(enc);
    free(logits);
}

/* The model on the GPU (the CUDA backend, f16 products with f32 sums):
 * encoder output and logits within issue 14's 2e-2 of the Hugging Face
 * references, the greedy tokens where the reference's margin is clear,
 * and a batch of decoder steps equal to each step alone within 1e-3.
 * Skipped, with the reason, without a GPU or a CUDA build. */
static void test_whisper_model_gpu(void **state)
{
    (void)state;
    at_err err = {0};
    if (at_cuda_devices(&err) <= 0) {
        print_message("skipped: %s\n", err.msg);
        skip();
    }
    float *enc, *logits;
    run_model_on(g_oracle, 0, NULL, &enc, &logits);
    float e = max_abs_diff(enc, R.enc.data, at_npy_count(&R.enc));
    print_message("GPU: encoder max abs err %.3g\n", e);
    assert_true(e <= 2e-2f);
    at_whisper_model *m = at_whisper_model_load_on(g_oracle, 0, &err);
    assert_non_null(m);
    int V = at_whisper_model_hparams(m)->n_vocab;
    float worst = 0;
    for (int i = 0; i < R.n_tokens; i++) {
        const float *ref = R.logits.data + (size_t)i * V;
        float d = max_abs_diff(logits + (size_t)i * V, ref, (size_t)V);
        worst = d > worst ? d : worst;
        /* the reference's best token, where it leads the second by 0.1 */
        int best = argmax(ref, V);
        float second = -INFINITY;
        for (int v = 0; v < V; v++)
            if (v != best && ref[v] > second) second = ref[v];
        if (ref[best] - second > 0.1f) assert_int_equal(argmax(logits + (size_t)i * V, V), best);
    }
    print_message("GPU: logits max abs err %.3g\n", worst);
    assert_true(worst <= 2e-2f);
    /* three sequences of different lengths in one batch, then alone */
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 1, &err);
    assert_non_null(s);
    assert_int_equal(at_whisper_encode(s, mel, 0, &err), 0);
    enum { NB = 3 };
    at_whisper_kv *kb[NB], *kr[NB];
    float *lb = malloc(sizeof(float) * (size_t)V * NB), *lr = malloc(sizeof(float) * (size_t)V);
    at_whisper_seq q[NB];
    for (int j = 0; j < NB; j++) {
        kb[j] = at_whisper_kv_new(m, &err);
        kr[j] = at_whisper_kv_new(m, &err);
        assert_non_null(kb[j]);
        assert_non_null(kr[j]);
        q[j] = (at_whisper_seq){kb[j], R.tokens, 1 + j, NULL, lb + (size_t)j * V, 0};
    }
    assert_int_equal(at_whisper_decode_batch(s, q, NB, &err), 0);
    float bw = 0;
    for (int j = 0; j < NB; j++) {
        assert_int_equal(at_whisper_decode(s, kr[j], R.tokens, 1 + j, 0, lr, &err), 0);
        float d = max_abs_diff(lb + (size_t)j * V, lr, (size_t)V);
        bw = d > bw ? d : bw;
        at_whisper_kv_free(kb[j]);
        at_whisper_kv_free(kr[j]);
    }
    print_message("GPU: batched vs alone max abs diff %.3g\n", bw);
    assert_true(bw <= 1e-3f);
    at_whisper_state_free(s);
    at_whisper_model_free(m);
    free(mel);
    free(lb);
    free(lr);
    free(enc);
    free(logits);
}

/* Token-by-token decoding with the kv cache: logits of every step equal
 * the reference, greedy tokens reproduced; kv copy/truncate behave. */
static void test_whisper_model_incremental(void **state)
{
    (void)state;
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_non_null(m);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    const at_whisper_special *sp = at_whisper_model_special(m);
    assert_int_equal(sp->eot, 50257);
    assert_int_equal(sp->sot, 50258);
    assert_int_equal(sp->translate, 50358);
    assert_int_equal(sp->transcribe, 50359);
    assert_int_equal(sp->not_, 50363);
    assert_int_equal(sp->beg, 50364);
    assert_int_equal(sp->n_langs, 99);
    int V = hp->n_vocab;
    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    float *lg = malloc(sizeof(float) * (size_t)V), *lg2 = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 1, &err);
    assert_non_null(s);
    at_whisper_kv *kv = at_whisper_kv_new(m, &err), *kv2 = at_whisper_kv_new(m, &err);
    /* decoding before encoding is an error, not a crash */
    assert_int_equal(at_whisper_decode(s, kv, R.tokens, 1, 0, lg, &err), AT_E_INVALID);
    assert_int_equal(at_whisper_encode(s, mel, 0, &err), 0);
    int seq[64], n = 0;
    float worst = 0;
    for (int i = 0; i < R.n_tokens; i++) {
        int tok = i < R.n_prefix ? R.tokens[i] : seq[n - 1];
        if (i >= R.n_prefix) assert_int_equal(tok, R.tokens[i]); /* greedy reproduced */
        if (i < R.n_prefix) seq[n++] = tok;
        assert_int_equal(at_whisper_decode(s, kv, &tok, 1, 0, lg, &err), 0);
        float e = max_abs_diff(lg, R.logits.data + (size_t)i * V, (size_t)V);
        worst = e > worst ? e : worst;
        if (i >= R.n_prefix - 1 && i + 1 < R.n_tokens) seq[n++] = argmax(lg, V);
    }
    print_message("incremental: logits max abs err %.3g\n", worst);
    assert_true(worst <= 5e-3f);
    assert_int_equal(at_whisper_kv_len(kv), R.n_tokens);
    /* copy + truncate: re-decoding the last token from a copy gives the
     * same logits */
    at_whisper_kv_copy(kv2, kv);
    at_whisper_kv_truncate(kv2, R.n_tokens - 1);
    assert_int_equal(at_whisper_kv_len(kv2), R.n_tokens - 1);
    assert_int_equal(at_whisper_decode(s, kv2, &R.tokens[R.n_tokens - 1], 1, 0, lg2, &err), 0);
    assert_true(max_abs_diff(lg, lg2, (size_t)V) <= 1e-5f);
    /* out-of-range tokens and context overflow are rejected */
    int bad = V;
    assert_int_equal(at_whisper_decode(s, kv2, &bad, 1, 0, lg2, &err), AT_E_INVALID);
    /* truncating beyond the length is a no-op; to 0 empties the cache */
    at_whisper_kv_truncate(kv2, hp->n_text_ctx);
    assert_int_equal(at_whisper_kv_len(kv2), R.n_tokens);
    at_whisper_kv_truncate(kv2, 0);
    assert_int_equal(at_whisper_kv_len(kv2), 0);
    /* more tokens than the text context holds */
    int *many = calloc((size_t)hp->n_text_ctx + 1, sizeof(int));
    float *lgm = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(at_whisper_decode(s, kv2, many, hp->n_text_ctx + 1, 0, lgm, &err), AT_E_TOO_LARGE);
    free(many);
    free(lgm);
    /* a shorter audio context works and gives finite output */
    assert_int_equal(at_whisper_encode(s, mel, 100, &err), 0);
    int n_ctx;
    float *enc100 = malloc(sizeof(float) * 100 * (size_t)hp->n_audio_state);
    assert_non_null(enc100);
    assert_int_equal(at_whisper_encoder_output(s, enc100, 100 * (size_t)hp->n_audio_state, &n_ctx, &err), 0);
    assert_int_equal(n_ctx, 100);
    /* too small a buffer is refused */
    assert_int_equal(at_whisper_encoder_output(s, enc100, 99, &n_ctx, &err), AT_E_INVALID);
    free(enc100);
    at_whisper_kv_truncate(kv, 0);
    assert_int_equal(at_whisper_decode(s, kv, R.tokens, R.n_prefix, 0, lg, &err), 0);
    for (int i = 0; i < V; i++) assert_true(isfinite(lg[i]));
    /* and the same bits as a state that only ever encoded that context:
     * the shorter memory is laid out anew, not read at the longer one's
     * places */
    at_whisper_state *s3 = at_whisper_state_new(m, 1, &err);
    at_whisper_kv *kv3 = at_whisper_kv_new(m, &err);
    assert_non_null(s3);
    assert_non_null(kv3);
    assert_int_equal(at_whisper_encode(s3, mel, 100, &err), 0);
    assert_int_equal(at_whisper_decode(s3, kv3, R.tokens, R.n_prefix, 0, lg2, &err), 0);
    assert_memory_equal(lg, lg2, sizeof(float) * (size_t)V);
    at_whisper_kv_free(kv3);
    at_whisper_state_free(s3);
    assert_int_equal(at_whisper_encode(s, mel, hp->n_audio_ctx + 1, &err), AT_E_INVALID);
    at_whisper_kv_free(kv);
    at_whisper_kv_free(kv2);
    at_whisper_state_free(s);
    at_whisper_model_free(m);
    free(mel);
    free(lg);
    free(lg2);
}

/* The batched decoder gives each sequence the logits it gets alone, for
 * batches of 1, 2, 7 and 16 sequences of different lengths, positions and
 * audio, joining and leaving between steps, with their outputs in order
 * and not. */
static void test_whisper_model_batch(void **state)
{
    (void)state;
    enum { NS = 16, STEPS = 6 };
    /* active sequences per step (bit j: sequence j) */
    static const unsigned active[STEPS] = {0xFFFF, 0x007F, 0x0060, 0x0040, 0x1FC0, 0xFFFF};
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_non_null(m);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    int V = hp->n_vocab;
    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 2, &err), *s2 = at_whisper_state_new(m, 1, &err);
    assert_non_null(s);
    assert_non_null(s2);
    assert_int_equal(at_whisper_encode(s, mel, 0, &err), 0);
    /* the other "stream": a shorter context of other audio */
    assert_int_equal(at_whisper_mel(m, R.audio.data + 16000, at_npy_count(&R.audio) - 16000, mel, &err), 0);
    assert_int_equal(at_whisper_encode(s2, mel, 300, &err), 0);
    at_whisper_kv *kb[NS], *kr[NS];
    for (int j = 0; j < NS; j++) {
        kb[j] = at_whisper_kv_new(m, &err);
        kr[j] = at_whisper_kv_new(m, &err);
        assert_non_null(kb[j]);
        assert_non_null(kr[j]);
    }
    float *lb = malloc(sizeof(float) * (size_t)V * NS), *lr = malloc(sizeof(float) * (size_t)V);
    int toks[NS][8];
    uint32_t rng = 7;
    float worst = 0;
    for (int step = 0; step < STEPS; step++) {
        at_whisper_seq q[NS];
        int n = 0, idx[NS];
        for (int j = 0; j < NS; j++) {
            if (!(active[step] >> j & 1)) continue;
            int len = step == 0 ? 1 + j % 4 : 1; /* a prompt of its own length first */
            for (int t = 0; t < len; t++) {
                rng = rng * 1664525u + 1013904223u;
                toks[j][t] = (int)(rng >> 8) % 50257;
            }
            /* the outputs one after another (written in place), or in
             * reverse order on odd steps (through the scratch) */
            float *out = lb + (size_t)(step % 2 ? NS - 1 - n : n) * V;
            q[n] = (at_whisper_seq){kb[j], toks[j], len, j % 2 ? s2 : NULL, out, 0};
            idx[n++] = j;
        }
        assert_int_equal(at_whisper_decode_batch(s, q, n, &err), 0);
        for (int i = 0; i < n; i++) {
            int j = idx[i];
            assert_int_equal(at_whisper_decode(j % 2 ? s2 : s, kr[j], toks[j], q[i].n, 0, lr, &err), 0);
            assert_int_equal(at_whisper_kv_len(kb[j]), at_whisper_kv_len(kr[j]));
            /* relative to the logit's size: the batch's products sum in
             * another order (blocked GEMM instead of dot products) */
            float e = 0;
            for (int v = 0; v < V; v++) {
                float d = fabsf(q[i].logits[v] - lr[v]) / (1.0f + fabsf(lr[v]));
                e = d > e ? d : e;
            }
            if (!(e <= 1e-5f))
                fail_msg("step %d, batch of %d, sequence %d: logits differ by %g", step, n, j, e);
            worst = e > worst ? e : worst;
        }
    }
    print_message("batched vs one at a time: logits max relative diff %.3g\n", worst);
    /* refused without touching any cache: a shared cache, an audio state
     * that has not encoded */
    int t0 = 1, len0 = at_whisper_kv_len(kb[0]);
    at_whisper_seq bad[2] = {{kb[0], &t0, 1, NULL, lb, 0}, {kb[0], &t0, 1, NULL, lb + V, 0}};
    assert_int_equal(at_whisper_decode_batch(s, bad, 2, &err), AT_E_INVALID);
    at_whisper_state *fresh = at_whisper_state_new(m, 1, &err);
    bad[1] = (at_whisper_seq){kb[1], &t0, 1, fresh, lb + V, 0};
    assert_int_equal(at_whisper_decode_batch(s, bad, 2, &err), AT_E_INVALID);
    assert_int_equal(at_whisper_kv_len(kb[0]), len0);
    at_whisper_state_free(fresh);
    for (int j = 0; j < NS; j++) {
        at_whisper_kv_free(kb[j]);
        at_whisper_kv_free(kr[j]);
    }
    at_whisper_state_free(s);
    at_whisper_state_free(s2);
    at_whisper_model_free(m);
    free(mel);
    free(lb);
    free(lr);
}

/* The scheduler: callers on their own threads, each with its own state
 * (audio) and caches, submit steps at once; their logits equal what each
 * gets decoding alone, and steps are batched. */
enum { SCH_CALLERS = 5, SCH_STEPS = 8, SCH_SEQS = 2 };
typedef struct {
    at_wsched *sched;
    at_whisper_state *st;
    at_whisper_kv *kv[SCH_SEQS];
    int toks[SCH_STEPS][SCH_SEQS][4];
    float *logits; /* SCH_STEPS x SCH_SEQS x V */
    int V, rc;
    pthread_barrier_t *bar;
    at_err err;
} sch_caller;

static void *sch_run(void *p)
{
    sch_caller *c = p;
    for (int step = 0; step < SCH_STEPS && !c->rc; step++) {
        at_whisper_seq q[SCH_SEQS];
        for (int j = 0; j < SCH_SEQS; j++)
            q[j] = (at_whisper_seq){c->kv[j],
                                    c->toks[step][j],
                                    step == 0 ? 2 + j : 1,
                                    NULL,
                                    c->logits + ((size_t)step * SCH_SEQS + j) * c->V,
                                    0};
        pthread_barrier_wait(c->bar);
        c->rc = at_wsched_decode(c->sched, c->st, q, SCH_SEQS, &c->err);
    }
    return NULL;
}

static void test_whisper_model_sched(void **state)
{
    (void)state;
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_non_null(m);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    int V = hp->n_vocab;
    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    at_compute *pool = at_compute_new(2, &err);
    at_wsched *sched = at_wsched_new(64, NULL, &err);
    assert_non_null(sched);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, SCH_CALLERS);
    sch_caller c[SCH_CALLERS];
    pthread_t th[SCH_CALLERS];
    uint32_t rng = 11;
    for (int i = 0; i < SCH_CALLERS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].sched = sched;
        c[i].V = V;
        c[i].bar = &bar;
        c[i].st = at_whisper_state_new_shared(m, pool, &err);
        assert_non_null(c[i].st);
        /* each caller its own audio and context length */
        size_t off = (size_t)i * 8000;
        assert_int_equal(at_whisper_mel(m, R.audio.data + off, at_npy_count(&R.audio) - off, mel, &err), 0);
        assert_int_equal(at_whisper_encode(c[i].st, mel, 100 + 50 * i, &err), 0);
        for (int j = 0; j < SCH_SEQS; j++) {
            c[i].kv[j] = at_whisper_kv_new(m, &err);
            assert_non_null(c[i].kv[j]);
        }
        for (int step = 0; step < SCH_STEPS; step++)
            for (int j = 0; j < SCH_SEQS; j++)
                for (int t = 0; t < 4; t++) {
                    rng = rng * 1664525u + 1013904223u;
                    c[i].toks[step][j][t] = (int)(rng >> 8) % 50257;
                }
        c[i].logits = malloc(sizeof(float) * (size_t)SCH_STEPS * SCH_SEQS * V);
    }
    for (int i = 0; i < SCH_CALLERS; i++) assert_int_equal(pthread_create(&th[i], NULL, sch_run, &c[i]), 0);
    for (int i = 0; i < SCH_CALLERS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < SCH_CALLERS; i++)
        if (c[i].rc) fail_msg("caller %d: %s", i, c[i].err.msg);
    at_wsched_stats stats;
    at_wsched_get_stats(sched, &stats);
    print_message("scheduler: %lld steps in %lld batches (at most %d in one)\n", stats.steps, stats.batches,
                  stats.max_steps);
    assert_int_equal(stats.steps, SCH_CALLERS * SCH_STEPS);
    assert_true(stats.max_steps >= 2); /* five callers released together are batched */

    /* the same steps alone, on fresh caches */
    float *lr = malloc(sizeof(float) * (size_t)V);
    float worst = 0;
    for (int i = 0; i < SCH_CALLERS; i++)
        for (int j = 0; j < SCH_SEQS; j++) {
            at_whisper_kv_truncate(c[i].kv[j], 0);
            for (int step = 0; step < SCH_STEPS; step++) {
                int n = step == 0 ? 2 + j : 1;
                assert_int_equal(at_whisper_decode(c[i].st, c[i].kv[j], c[i].toks[step][j], n, 0, lr, &err),
                                 0);
                const float *got = c[i].logits + ((size_t)step * SCH_SEQS + j) * V;
                for (int v = 0; v < V; v++) {
                    float d = fabsf(got[v] - lr[v]) / (1.0f + fabsf(lr[v]));
                    worst = d > worst ? d : worst;
                }
            }
        }
    print_message("scheduled vs alone: logits max relative diff %.3g\n", worst);
    assert_true(worst <= 1e-5f);

    /* a bad step fails for its caller only, with its own message */
    int bad = V + 5;
    at_whisper_seq q = {c[0].kv[0], &bad, 1, NULL, lr, 0};
    assert_int_equal(at_wsched_decode(sched, c[0].st, &q, 1, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "out of range"));

    for (int i = 0; i < SCH_CALLERS; i++) {
        for (int j = 0; j < SCH_SEQS; j++) at_whisper_kv_free(c[i].kv[j]);
        at_whisper_state_free(c[i].st);
        free(c[i].logits);
    }
    pthread_barrier_destroy(&bar);
    at_wsched_free(sched);
    at_compute_free(pool);
    at_whisper_model_free(m);
    free(mel);
    free(lr);
}

/* Encoder windows as one batch (at_whisper_encode_batch, and the
 * scheduler's at_wsched_encode): windows of different lengths give the
 * encodings and logits each gets encoded alone; a batch too large for its
 * workspace fails and leaves no state with an encoding. */
enum { EB_N = 3 };
typedef struct {
    at_wsched *sched;
    at_whisper_state *st;
    const float *mel;
    int ctx, rc;
    pthread_barrier_t *bar;
    at_err err;
} eb_caller;

static void *eb_run(void *p)
{
    eb_caller *c = p;
    pthread_barrier_wait(c->bar);
    c->rc = at_wsched_encode(c->sched, c->st, c->mel, c->ctx, &c->err);
    return NULL;
}

/* Max relative difference between the encodings and between the logits
 * of three tokens decoded on a and b. */
static float eb_diff(const at_whisper_model *m, at_whisper_state *a, at_whisper_state *b, int n)
{
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    const at_whisper_special *sp = at_whisper_model_special(m);
    size_t cap = (size_t)hp->n_audio_ctx * hp->n_audio_state;
    float *ea = malloc(cap * sizeof *ea), *eb = malloc(cap * sizeof *eb),
          *la = malloc(sizeof(float) * (size_t)hp->n_vocab),
          *lb = malloc(sizeof(float) * (size_t)hp->n_vocab);
    at_err err = {0};
    int na = 0, nb = 0;
    assert_int_equal(at_whisper_encoder_output(a, ea, cap, &na, &err), 0);
    assert_int_equal(at_whisper_encoder_output(b, eb, cap, &nb, &err), 0);
    assert_int_equal(na, n);
    assert_int_equal(nb, n);
    float worst = 0;
    for (size_t i = 0; i < (size_t)n * hp->n_audio_state; i++) {
        float d = fabsf(ea[i] - eb[i]) / (1.0f + fabsf(ea[i]));
        worst = d > worst ? d : worst;
    }
    int toks[3] = {sp->sot, sp->transcribe, sp->not_};
    at_whisper_kv *ka = at_whisper_kv_new(m, &err), *kb = at_whisper_kv_new(m, &err);
    assert_int_equal(at_whisper_decode(a, ka, toks, 3, 0, la, &err), 0);
    assert_int_equal(at_whisper_decode(b, kb, toks, 3, 0, lb, &err), 0);
    for (int v = 0; v < hp->n_vocab; v++) {
        float d = fabsf(la[v] - lb[v]) / (1.0f + fabsf(la[v]));
        worst = d > worst ? d : worst;
    }
    at_whisper_kv_free(ka);
    at_whisper_kv_free(kb);
    free(ea);
    free(eb);
    free(la);
    free(lb);
    return worst;
}

static void test_whisper_model_encode_batch(void **state)
{
    (void)state;
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_non_null(m);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    at_compute *pool = at_compute_new(2, &err);
    assert_non_null(pool);
    int ctx[EB_N] = {100, 37, 150}, total = 287;
    float *mel[EB_N];
    at_whisper_state *alone[EB_N], *bat[EB_N], *sch[EB_N];
    for (int i = 0; i < EB_N; i++) {
        mel[i] = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
        assert_non_null(mel[i]);
        size_t off = (size_t)i * 8000;
        assert_int_equal(at_whisper_mel(m, R.audio.data + off, at_npy_count(&R.audio) - off, mel[i], &err),
                         0);
        alone[i] = at_whisper_state_new_shared(m, pool, &err);
        bat[i] = at_whisper_state_new_shared(m, pool, &err);
        sch[i] = at_whisper_state_new_shared(m, pool, &err);
        assert_true(alone[i] && bat[i] && sch[i]);
        assert_int_equal(at_whisper_encode(alone[i], mel[i], ctx[i], &err), 0);
    }
    at_whisper_encbatch *b = at_whisper_encbatch_new(m, pool, total, &err);
    assert_non_null(b);
    const float *const *mels = (const float *const *)mel;
    if (at_whisper_encode_batch(b, bat, mels, ctx, EB_N, &err)) fail_msg("encode batch: %s", err.msg);
    float worst = 0;
    for (int i = 0; i < EB_N; i++) {
        float d = eb_diff(m, alone[i], bat[i], ctx[i]);
        worst = d > worst ? d : worst;
    }
    print_message("encoder batch of %d windows vs alone: max relative diff %.3g\n", EB_N, worst);
    assert_true(worst <= 1e-5f);

    /* one position more than the workspace holds */
    at_whisper_encbatch *small = at_whisper_encbatch_new(m, pool, total - 1, &err);
    assert_non_null(small);
    assert_int_equal(at_whisper_encode_batch(small, bat, mels, ctx, EB_N, &err), AT_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "positions"));
    for (int i = 0; i < EB_N; i++) {
        int n = -1;
        float one;
        assert_int_equal(at_whisper_encoder_output(bat[i], &one, 1, &n, &err), AT_E_INVALID);
        assert_int_equal(n, 0);
    }

    /* callers of the scheduler released together */
    at_wsched *sched = at_wsched_new(64, pool, &err);
    assert_non_null(sched);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, EB_N);
    eb_caller c[EB_N];
    pthread_t th[EB_N];
    for (int i = 0; i < EB_N; i++) {
        c[i] = (eb_caller){sched, sch[i], mel[i], ctx[i], 0, &bar, {0}};
        assert_int_equal(pthread_create(&th[i], NULL, eb_run, &c[i]), 0);
    }
    for (int i = 0; i < EB_N; i++) pthread_join(th[i], NULL);
    worst = 0;
    for (int i = 0; i < EB_N; i++) {
        if (c[i].rc) fail_msg("caller %d: %s", i, c[i].err.msg);
        float d = eb_diff(m, alone[i], sch[i], ctx[i]);
        worst = d > worst ? d : worst;
    }
    at_wsched_stats stats;
    at_wsched_get_stats(sched, &stats);
    print_message("scheduler: %lld windows in %lld encoder batches (at most %d in one); vs alone %.3g\n",
                  stats.windows, stats.enc_batches, stats.max_windows, worst);
    assert_int_equal(stats.windows, EB_N);
    assert_true(worst <= 1e-5f);

    pthread_barrier_destroy(&bar);
    at_wsched_free(sched);
    at_whisper_encbatch_free(small);
    at_whisper_encbatch_free(b);
    for (int i = 0; i < EB_N; i++) {
        at_whisper_state_free(alone[i]);
        at_whisper_state_free(bat[i]);
        at_whisper_state_free(sch[i]);
        free(mel[i]);
    }
    at_compute_free(pool);
    at_whisper_model_free(m);
}

/* A quantized tensor may hold more values than its file has bytes (4-bit
 * types: 18 bytes per 32 values): the loader bounds a tensor by the bytes
 * its type needs, not by its element count.  A file of one such tensor of
 * each quantized type loads; one whose data is cut short does not. */
static int ramp_rows(void *user, int64_t row, float *dst, int n)
{
    (void)user;
    for (int i = 0; i < n; i++) dst[i] = (float)((row * 7 + i) % 17) / 17.0f - 0.5f;
    return 0;
}

static void test_whisper_model_ggml_quant_sizes(void **state)
{
    (void)state;
    static const at_dtype types[] = {AT_DT_Q4_0, AT_DT_Q4_1, AT_DT_Q5_0, AT_DT_Q5_1, AT_DT_Q8_0};
    at_whisper_hparams hp = {51865, 1500, 64, 2, 1, 448, 64, 2, 1, 80, 2};
    char path[512];
    snprintf(path, sizeof path, "%s/quant-size.bin", g_tmp);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        at_err err = {0};
        at_ggml_writer *w = at_ggml_writer_open(path, &hp, &err);
        assert_non_null(w);
        float filt[80 * 201] = {0};
        const char *tok[1] = {"a"};
        size_t len[1] = {1};
        assert_int_equal(at_ggml_writer_header(w, filt, 80, 201, 1, tok, len, &err), 0);
        int64_t shape[2] = {2048, 1024}; /* 2M values; the whole file is ~1.2-2.2 MB */
        assert_int_equal(at_ggml_writer_tensor(w, "big", 2, shape, types[t], ramp_rows, NULL, &err), 0);
        assert_int_equal(at_ggml_writer_close(w, &err), 0);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        at_wsource src;
        if (at_whisper_ggml_open(path, &src, &err))
            fail_msg("%s (file of %lld bytes): %s", at_dtype_name(types[t]), (long long)st.st_size, err.msg);
        const at_nn_wtensor *big = at_nn_weights_find(&src.w, "big");
        assert_non_null(big);
        assert_int_equal(big->nbytes, at_dtype_row_bytes(types[t], 1024) * 2048);
        if (types[t] != AT_DT_Q8_0) assert_true(2048 * 1024 > st.st_size); /* more values than bytes */
        at_wsource_free(&src);
        /* cut off the last row: refused, with the reason */
        assert_int_equal(truncate(path, st.st_size - 10), 0);
        assert_int_equal(at_whisper_ggml_open(path, &src, &err), AT_E_CORRUPT);
        assert_non_null(strstr(err.msg, "truncated"));
    }
    unlink(path);
}

static void convert_to(const char *type, char *out, size_t cap)
{
    snprintf(out, cap, "%s/mini-%s.bin", g_tmp, type);
    struct stat st;
    if (stat(out, &st) == 0) return;
    at_err err = {0};
    if (at_whisper_convert(g_oracle, out, type, &err)) fail_msg("convert %s: %s", type, err.msg);
}

/* f16 and f32 ggml files hold exactly the f16 reference weights, so the
 * ggml path must reproduce the safetensors path. */
static void test_whisper_model_ggml(void **state)
{
    (void)state;
    float *enc0, *lg0;
    run_model(g_oracle, NULL, &enc0, &lg0);
    const char *types[] = {"f16", "f32"};
    for (int t = 0; t < 2; t++) {
        char p[512];
        convert_to(types[t], p, sizeof p);
        float *enc, *lg;
        run_model(p, NULL, &enc, &lg);
        float de = max_abs_diff(enc, enc0, at_npy_count(&R.enc));
        float dl = max_abs_diff(lg, lg0, at_npy_count(&R.logits));
        print_message("ggml %s vs safetensors: encoder %.3g, logits %.3g\n", types[t], de, dl);
        assert_true(de <= 1e-5f);
        assert_true(dl <= 1e-4f);
        check_logits(types[t], lg, 5e-3f);
        /* the converted file carries a placeholder vocabulary (no vocab.json) */
        at_err err = {0};
        at_whisper_model *m = at_whisper_model_load(p, &err);
        assert_non_null(m);
        const char *const *toks;
        const size_t *lens;
        size_t nt = at_whisper_model_vocab(m, &toks, &lens);
        assert_int_equal(nt, 50257);
        assert_string_equal(toks[5], "[_tok_5]");
        assert_int_equal(lens[5], 8);
        assert_int_equal(at_whisper_model_hparams(m)->ftype, t == 0 ? 1 : 0);
        at_whisper_model_free(m);
        free(enc);
        free(lg);
    }
    /* the HF folder has no vocabulary of its own */
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_int_equal(at_whisper_model_vocab(m, NULL, NULL), 0);
    at_whisper_model_free(m);
    free(enc0);
    free(lg0);
}

/* Quantized weights: teacher-forced over the reference tokens.
 *
 * Tolerances are measured on this model, not derived.  It is a random
 * network with d_model 64 (two 32-value blocks per row, so one outlier
 * sets the scale of half a row) whose logits span about +-18 (mean
 * magnitude ~3.2, RMS ~4).  Round-trip error of the formats on Gaussian
 * data is 0.5% (q8_0), 4% (q5_0/q5_1) and 8% (q4_0/q4_1) RMS (checked in
 * the kernels test), and it compounds through 2+2 layers, the quantized
 * input embedding and the quantized 51865-row output projection.
 * Measured logit errors, max abs / RMS: q8_0 0.32 / 0.056 (1.4% of the
 * logit RMS), q5_1 2.2 / 0.38, q5_0 2.4 / 0.42, q4_1 3.8 / 0.69,
 * q4_0 5.1 / 0.88.  The computation is deterministic, so the limits are
 * ~1.5x the measurement: they catch a broken block layout (which gives
 * errors of the order of the logits themselves) without being flaky.  For
 * q8_0 the argmax must also agree wherever the reference margin > 0.5. */
static void test_whisper_model_quant(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        float max_tol, rms_tol;
    } Q[] = {{"q8_0", 0.5f, 0.085f},
             {"q5_1", 3.5f, 0.6f},
             {"q5_0", 3.5f, 0.65f},
             {"q4_1", 6.0f, 1.05f},
             {"q4_0", 7.5f, 1.3f}};
    int V = (int)R.logits.shape[1];
    for (size_t q = 0; q < sizeof Q / sizeof Q[0]; q++) {
        char p[512];
        convert_to(Q[q].type, p, sizeof p);
        float *enc, *lg;
        run_model(p, NULL, &enc, &lg);
        size_t n = at_npy_count(&R.logits);
        float mx = max_abs_diff(lg, R.logits.data, n);
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (double)(lg[i] - R.logits.data[i]) * (lg[i] - R.logits.data[i]);
        float rms = (float)sqrt(ss / (double)n);
        print_message("%s: logits max abs err %.3g, rms %.3g (allowed %.3g / %.3g)\n", Q[q].type, mx, rms,
                      Q[q].max_tol, Q[q].rms_tol);
        assert_true(mx <= Q[q].max_tol);
        assert_true(rms <= Q[q].rms_tol);
        if (!strcmp(Q[q].type, "q8_0"))
            for (int i = R.n_prefix - 1; i < R.n_tokens - 1; i++)
                if (R.margins[i - (R.n_prefix - 1)] > 0.5f)
                    assert_int_equal(argmax(lg + (size_t)i * V, V), R.tokens[i + 1]);
        free(enc);
        free(lg);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void expect_corrupt(const char *path, const char *what)
{
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(path, &err);
    if (m) fail_msg("%s: a corrupt model loaded", what);
    if (err.code != AT_E_CORRUPT)
        fail_msg("%s: code %d (%s), expected AT_E_CORRUPT", what, err.code, err.msg);
    assert_true(strlen(err.msg) > 0);
}

static void put_i32(unsigned char *b, size_t off, int32_t v) { memcpy(b + off, &v, 4); }

static void test_whisper_model_corrupt(void **state)
{
    (void)state;
    char src[512], p[512];
    convert_to("f16", src, sizeof src);
    size_t n;
    unsigned char *b = slurp(src, &n);
    snprintf(p, sizeof p, "%s/bad.bin", g_tmp);
    /* offsets: 48 = after hparams, filters 8 + 80*201*4, vocabulary after */
    size_t filt_end = 48 + 8 + 80 * 201 * 4;
    size_t cuts[] = {1,
                     3,
                     4,
                     20,
                     47,
                     48,
                     52,
                     56,
                     1000,
                     filt_end - 1,
                     filt_end,
                     filt_end + 3,
                     filt_end + 100,
                     n / 3,
                     n / 2,
                     n - 4096,
                     n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(p, b, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], n);
        expect_corrupt(p, what);
    }
    /* header fields flipped to absurd values */
    struct {
        size_t off;
        int32_t v;
        const char *what;
    } flips[] = {{0, 0x12345678, "magic"},
                 {4, -1, "n_vocab"},
                 {4, 0x7fffffff, "n_vocab huge"},
                 {8, 100000, "n_audio_ctx"},
                 {12, 0, "n_audio_state"},
                 {20, 100000, "n_audio_layer"},
                 {20, 3, "n_audio_layer +1"},
                 {28, 65, "n_text_state"},
                 {40, 0, "n_mels"},
                 {40, 128, "n_mels 128"},
                 {48, 1 << 30, "filter rows"},
                 {52, -5, "filter cols"},
                 {filt_end, 0x7fffffff, "vocab size"},
                 {filt_end + 4, 0x7ffffff0, "token length"}};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        unsigned char *c = malloc(n);
        memcpy(c, b, n);
        put_i32(c, flips[i].off, flips[i].v);
        spit(p, c, n);
        expect_corrupt(p, flips[i].what);
        free(c);
    }
    /* first tensor header: find it after the vocabulary */
    size_t off = filt_end;
    int32_t ntok;
    memcpy(&ntok, b + off, 4);
    off += 4;
    for (int i = 0; i < ntok; i++) {
        int32_t len;
        memcpy(&len, b + off, 4);
        off += 4 + (size_t)len;
    }
    struct {
        size_t off;
        int32_t v;
        const char *what;
    } tflips[] = {{off, 9, "tensor n_dims"},      {off + 4, 100000, "tensor name length"},
                  {off + 8, 99, "tensor type"},   {off + 12, 1 << 24, "tensor dim"},
                  {off + 12, -7, "negative dim"}, {off + 4, 0, "empty name"}};
    for (size_t i = 0; i < sizeof tflips / sizeof tflips[0]; i++) {
        unsigned char *c = malloc(n);
        memcpy(c, b, n);
        put_i32(c, tflips[i].off, tflips[i].v);
        spit(p, c, n);
        expect_corrupt(p, tflips[i].what);
        free(c);
    }
    /* an extra byte after the last tensor is a truncated tensor header */
    unsigned char *c = malloc(n + 1);
    memcpy(c, b, n);
    c[n] = 7;
    spit(p, c, n + 1);
    expect_corrupt(p, "trailing byte");
    free(c);
    spit(p, b, 0);
    expect_corrupt(p, "empty file");
    free(b);

    /* safetensors: truncated data, absurd header length, broken JSON */
    char dir[512], fp[600], srcp[1200];
    snprintf(dir, sizeof dir, "%s/badhf", g_tmp);
    mkdir(dir, 0755);
    opath(srcp, sizeof srcp, "config.json");
    b = slurp(srcp, &n);
    snprintf(fp, sizeof fp, "%s/config.json", dir);
    spit(fp, b, n);
    free(b);
    opath(srcp, sizeof srcp, "model.safetensors");
    b = slurp(srcp, &n);
    snprintf(fp, sizeof fp, "%s/model.safetensors", dir);
    size_t st_cuts[] = {4, 8, 100, n / 2, n - 1};
    for (size_t i = 0; i < sizeof st_cuts / sizeof st_cuts[0]; i++) {
        spit(fp, b, st_cuts[i]);
        expect_corrupt(dir, "truncated safetensors");
    }
    c = malloc(n);
    memcpy(c, b, n);
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(c, &huge, 8);
    spit(fp, c, n);
    expect_corrupt(dir, "safetensors header length");
    memcpy(c, b, n);
    c[8] = '[';
    spit(fp, c, n);
    expect_corrupt(dir, "safetensors JSON");
    free(c);
    /* a config that disagrees with the weights */
    spit(fp, b, n);
    snprintf(fp, sizeof fp, "%s/config.json", dir);
    const char *cfg =
        "{\"model_type\":\"whisper\",\"d_model\":64,\"vocab_size\":51865,\"num_mel_bins\":80,"
        "\"encoder_layers\":3,\"encoder_attention_heads\":4,\"decoder_layers\":2,"
        "\"decoder_attention_heads\":4,\"max_source_positions\":1500,\"max_target_positions\":448}";
    spit(fp, cfg, strlen(cfg));
    expect_corrupt(dir, "config with an extra layer");
    cfg = "{\"model_type\":\"whisper\",\"d_model\":96,\"vocab_size\":51865,\"num_mel_bins\":80,"
          "\"encoder_layers\":2,\"encoder_attention_heads\":4,\"decoder_layers\":2,"
          "\"decoder_attention_heads\":4,\"max_source_positions\":1500,\"max_target_positions\":448}";
    spit(fp, cfg, strlen(cfg));
    expect_corrupt(dir, "config with another width");
    free(b);
}

/* Word alignment's inputs: the alignment heads (OpenAI's default for a
 * model without a preset, or generation_config.json's list) and the
 * cross-attention scores, whose decoder pass runs in chunks of 32
 * positions: a prefix gets the same rows, and the probabilities match the
 * logits at_whisper_decode gives. */
static void test_whisper_model_alignment(void **state)
{
    (void)state;
    at_err err = {0};
    at_whisper_model *m = at_whisper_model_load(g_oracle, &err);
    assert_non_null(m);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    const at_whisper_special *sp = at_whisper_model_special(m);
    at_whisper_head heads[AT_WHISPER_MAX_HEADS];
    int nh = at_whisper_alignment_heads(m, heads);
    assert_int_equal(nh, hp->n_text_head); /* every head of the second half: layer 1 */
    for (int h = 0; h < nh; h++) assert_true(heads[h].layer == 1 && heads[h].head == h);

    float *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 1, &err);
    at_whisper_kv *kv = at_whisper_kv_new(m, &err);
    assert_int_equal(at_whisper_encode(s, mel, 100, &err), 0);
    enum { N = 40, F = 100 };
    int toks[N] = {sp->sot, sp->sot + 1, sp->transcribe, sp->not_};
    for (int i = 4; i < N - 1; i++) toks[i] = (i * 7919) % sp->eot;
    toks[N - 1] = sp->eot;
    float *qk = malloc(sizeof(float) * (size_t)nh * N * F), *qk2 = malloc(sizeof(float) * (size_t)nh * N * F);
    float probs[N], probs2[N];
    assert_int_equal(at_whisper_cross_scores(s, kv, toks, N, heads, nh, F, qk, probs, &err), 0);
    assert_int_equal(at_whisper_cross_scores(s, kv, toks, 33, heads, nh, F, qk2, probs2, &err), 0);
    float worst = 0;
    for (int h = 0; h < nh; h++)
        for (int t = 0; t < 33; t++)
            for (int f = 0; f < F; f++) {
                float a = qk[((size_t)h * N + t) * F + f], b = qk2[((size_t)h * 33 + t) * F + f];
                assert_true(isfinite(a));
                worst = fmaxf(worst, fabsf(a - b));
            }
    print_message("alignment: chunked vs prefix scores max abs diff %.3g\n", worst);
    assert_true(worst <= 1e-4f);
    /* probabilities: softmax over the text tokens of the decoder's logits */
    float *lg = malloc(sizeof(float) * (size_t)N * hp->n_vocab);
    at_whisper_kv_truncate(kv, 0);
    assert_int_equal(at_whisper_decode(s, kv, toks, N, 1, lg, &err), 0);
    for (int t = 0; t + 1 < N; t++) {
        const float *x = lg + (size_t)t * hp->n_vocab;
        double mx = x[0], sum = 0;
        for (int v = 0; v < sp->eot; v++) mx = fmax(mx, x[v]);
        for (int v = 0; v < sp->eot; v++) sum += exp(x[v] - mx);
        double want = toks[t + 1] < sp->eot ? exp(x[toks[t + 1]] - mx) / sum : 0;
        assert_true(fabs(probs[t] - want) <= 1e-5 + 1e-3 * want);
    }
    assert_true(probs[N - 1] == 0);
    /* refusals: frames past the encoding, heads not in the decoder */
    assert_int_equal(at_whisper_cross_scores(s, kv, toks, N, heads, nh, 101, qk, probs, &err), AT_E_INVALID);
    at_whisper_head bad = {2, 0};
    assert_int_equal(at_whisper_cross_scores(s, kv, toks, N, &bad, 1, F, qk, probs, &err), AT_E_INVALID);
    free(lg);
    free(qk);
    free(qk2);
    free(mel);
    at_whisper_kv_free(kv);
    at_whisper_state_free(s);
    at_whisper_model_free(m);

    /* a Hugging Face folder's generation_config.json names the heads */
    char dir[512], fp[600], srcp[1200];
    snprintf(dir, sizeof dir, "%s/heads", g_tmp);
    mkdir(dir, 0755);
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        size_t n;
        opath(srcp, sizeof srcp, files[i]);
        unsigned char *b = slurp(srcp, &n);
        snprintf(fp, sizeof fp, "%s/%s", dir, files[i]);
        spit(fp, b, n);
        free(b);
    }
    snprintf(fp, sizeof fp, "%s/generation_config.json", dir);
    const char *gc = "{\"alignment_heads\": [[0, 1], [1, 3]], \"no_timestamps_token_id\": 50363}";
    spit(fp, gc, strlen(gc));
    m = at_whisper_model_load(dir, &err);
    assert_non_null(m);
    nh = at_whisper_alignment_heads(m, heads);
    assert_int_equal(nh, 2);
    assert_true(heads[0].layer == 0 && heads[0].head == 1 && heads[1].layer == 1 && heads[1].head == 3);
    at_whisper_model_free(m);
    gc = "{\"alignment_heads\": [[2, 0]]}";
    spit(fp, gc, strlen(gc));
    assert_null(at_whisper_model_load(dir, &err));
    assert_int_equal(err.code, AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "alignment head [2, 0]"));
    gc = "{\"alignment_heads\": [[0, \"x\"]]}";
    spit(fp, gc, strlen(gc));
    assert_null(at_whisper_model_load(dir, &err));
    assert_int_equal(err.code, AT_E_CORRUPT);
}

/* The safetensors loader with F32 and BF16 tensors: the oracle's f16
 * weights rewritten losslessly to F32 must give the same logits; BF16
 * (8-bit mantissa) is a lossy rewrite, measured max abs logit error
 * 0.14, allowed 0.3.  The converter reads vocab.json's byte-level BPE
 * strings back to raw bytes. */
static void write_st_variant(const char *dir, const char *dtype)
{
    char srcp[1200], fp[600];
    size_t n;
    mkdir(dir, 0755);
    opath(srcp, sizeof srcp, "config.json");
    unsigned char *b = slurp(srcp, &n);
    snprintf(fp, sizeof fp, "%s/config.json", dir);
    spit(fp, b, n);
    free(b);
    opath(srcp, sizeof srcp, "model.safetensors");
    b = slurp(srcp, &n);
    uint64_t hl;
    memcpy(&hl, b, 8);
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    cJSON *j = cJSON_Parse(h);
    free(h);
    assert_non_null(j);
    int f32 = !strcmp(dtype, "F32");
    size_t total = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!strcmp(e->string, "__metadata__")) continue;
        cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
        size_t o0 = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble,
               o1 = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        size_t nb = (o1 - o0) * (f32 ? 2 : 1);
        cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString(dtype));
        cJSON_ReplaceItemInObject(e, "data_offsets",
                                  cJSON_CreateIntArray((const int[]){(int)total, (int)(total + nb)}, 2));
        total += nb;
    }
    char *hs = cJSON_PrintUnformatted(j);
    size_t hn = strlen(hs), pad = (8 - hn % 8) % 8;
    unsigned char *out = malloc(8 + hn + pad + total);
    uint64_t nh = hn + pad;
    memcpy(out, &nh, 8);
    memcpy(out + 8, hs, hn);
    memset(out + 8 + hn, ' ', pad);
    unsigned char *data = out + 8 + nh;
    const unsigned char *src = b + 8 + hl;
    size_t pos = 0;
    /* walk the original header for source offsets, in the same order */
    h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    cJSON *jo = cJSON_Parse(h);
    free(h);
    cJSON_ArrayForEach(e, jo)
    {
        if (!strcmp(e->string, "__metadata__")) continue;
        cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
        size_t o0 = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble,
               o1 = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        for (size_t i = o0; i < o1; i += 2) {
            uint16_t hv;
            memcpy(&hv, src + i, 2);
            float f = at_f16_to_f32(hv);
            if (f32) {
                memcpy(data + pos, &f, 4);
                pos += 4;
            } else {
                uint32_t bits;
                memcpy(&bits, &f, 4);
                bits += 0x7fffu + ((bits >> 16) & 1u);
                uint16_t bf = (uint16_t)(bits >> 16);
                memcpy(data + pos, &bf, 2);
                pos += 2;
            }
        }
    }
    assert_int_equal(pos, total);
    snprintf(fp, sizeof fp, "%s/model.safetensors", dir);
    spit(fp, out, 8 + nh + total);
    cJSON_Delete(jo);
    cJSON_Delete(j);
    free(hs);
    free(out);
    free(b);
}

static void test_whisper_model_dtypes(void **state)
{
    (void)state;
    float *enc0, *lg0, *enc, *lg;
    char dir[512];
    run_model(g_oracle, NULL, &enc0, &lg0);
    snprintf(dir, sizeof dir, "%s/hf-f32", g_tmp);
    write_st_variant(dir, "F32");
    run_model(dir, NULL, &enc, &lg);
    float dl = max_abs_diff(lg, lg0, at_npy_count(&R.logits));
    print_message("safetensors F32 vs F16: logits %.3g\n", dl);
    assert_true(dl <= 1e-4f);
    free(enc);
    free(lg);
    /* vocabulary: GPT-2 byte-level strings -> bytes (U+0120 is a space,
     * U+010A a newline); absent ids are empty; specials are dropped */
    char fp[600], bin[600];
    snprintf(fp, sizeof fp, "%s/vocab.json", dir);
    const char *vj = "{\"!\": 0, \"\xc4\xa0hello\": 5, \"\xc4\x8a\": 6, \"<|endoftext|>\": 50257}";
    spit(fp, vj, strlen(vj));
    snprintf(bin, sizeof bin, "%s/vocab.bin", g_tmp);
    at_err err = {0};
    assert_int_equal(at_whisper_convert(dir, bin, "q8_0", &err), 0);
    at_whisper_model *m = at_whisper_model_load(bin, &err);
    assert_non_null(m);
    const char *const *toks;
    const size_t *lens;
    assert_int_equal(at_whisper_model_vocab(m, &toks, &lens), 50257);
    assert_string_equal(toks[0], "!");
    assert_string_equal(toks[5], " hello");
    assert_string_equal(toks[6], "\n");
    assert_int_equal(lens[1], 0);
    assert_int_equal(at_whisper_model_hparams(m)->ftype, 7);
    at_whisper_model_free(m);
    assert_int_equal(at_whisper_convert(dir, bin, "q3_k", &err), AT_E_INVALID);
    /* a vocab.json that is JSON but not an object of ids is refused (an
     * array's items have no names: it once crashed) */
    spit(fp, "[1, 2]", 6);
    assert_int_equal(at_whisper_convert(dir, bin, "q8_0", &err), AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "not a JSON object"));
    snprintf(dir, sizeof dir, "%s/hf-bf16", g_tmp);
    write_st_variant(dir, "BF16");
    run_model(dir, NULL, &enc, &lg);
    dl = max_abs_diff(lg, R.logits.data, at_npy_count(&R.logits));
    print_message("safetensors BF16: logits max abs err vs reference %.3g\n", dl);
    assert_true(dl <= 0.3f);
    free(enc);
    free(lg);
    free(enc0);
    free(lg0);
}

/* Runs whisper-check; via the CLI binary when it is built with the
 * command, else via the function in a child process.  Returns the exit
 * status; stdout goes to out_path. */
static int run_check(char **args, int nargs, const char *out_path)
{
    const char *bd = getenv("AT_BUILD_DIR");
    char bin[1024] = "";
    if (bd) snprintf(bin, sizeof bin, "%s/audio-translator", bd);
    int use_bin = bin[0] && access(bin, X_OK) == 0;
    if (use_bin) { /* the CLI may not have the command yet */
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "%s whisper-check --help >/dev/null 2>&1", bin);
        use_bin = system(cmd) == 0;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *o = freopen(out_path, "w", stdout);
        if (!o) _exit(99);
        char *argv[32];
        int k = 0;
        if (use_bin) argv[k++] = bin;
        argv[k++] = "whisper-check";
        for (int i = 0; i < nargs; i++) argv[k++] = args[i];
        argv[k] = NULL;
        if (use_bin) {
            execv(bin, argv);
            _exit(98);
        }
        int rc = at_whisper_check_main(k, argv);
        fflush(stdout);
        _exit(rc);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_whisper_model_check(void **state)
{
    (void)state;
    char audio[1200], dump[512], out[512], fp[600];
    opath(audio, sizeof audio, "audio.npy");
    snprintf(dump, sizeof dump, "%s/dump", g_tmp);
    snprintf(out, sizeof out, "%s/check.json", g_tmp);
    char *args[] = {"--model", g_oracle, "--audio",    audio, "--prefix", "50258,50259,50359,50363",
                    "--steps", "20",     "--dump-dir", dump};
    assert_int_equal(run_check(args, 10, out), 0);
    size_t n;
    unsigned char *b = slurp(out, &n);
    char *txt = malloc(n + 1);
    memcpy(txt, b, n);
    txt[n] = 0;
    free(b);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    cJSON *toks = cJSON_GetObjectItem(j, "tokens"), *mg = cJSON_GetObjectItem(j, "margins");
    assert_int_equal(cJSON_GetArraySize(toks), R.n_tokens);
    assert_int_equal(cJSON_GetArraySize(mg), R.n_margins);
    for (int i = 0; i < R.n_tokens; i++) assert_int_equal(cJSON_GetArrayItem(toks, i)->valueint, R.tokens[i]);
    for (int i = 0; i < R.n_margins; i++)
        assert_true(fabs(cJSON_GetArrayItem(mg, i)->valuedouble - R.margins[i]) < 1e-2);
    cJSON_Delete(j);
    at_npy a;
    at_err err = {0};
    snprintf(fp, sizeof fp, "%s/mel.npy", dump);
    assert_int_equal(at_npy_read(fp, &a, 0, &err), 0);
    assert_true(a.ndim == 2 && a.shape[0] == 80 && a.shape[1] == 3000);
    assert_true(max_abs_diff(a.data, R.mel80.data, at_npy_count(&a)) <= 1e-3f);
    at_npy_free(&a);
    snprintf(fp, sizeof fp, "%s/encoder_out.npy", dump);
    assert_int_equal(at_npy_read(fp, &a, 0, &err), 0);
    assert_true(a.ndim == 2 && a.shape[0] == 1500 && a.shape[1] == 64);
    assert_true(max_abs_diff(a.data, R.enc.data, at_npy_count(&a)) <= 2e-3f);
    at_npy_free(&a);
    snprintf(fp, sizeof fp, "%s/logits.npy", dump);
    assert_int_equal(at_npy_read(fp, &a, 0, &err), 0);
    assert_true(a.ndim == 2 && a.shape[0] == (size_t)R.n_tokens && a.shape[1] == 51865);
    assert_true(max_abs_diff(a.data, R.logits.data, at_npy_count(&a)) <= 5e-3f);
    at_npy_free(&a);

    /* the same audio as a 16 kHz WAV gives the same tokens */
    char wav[512];
    snprintf(wav, sizeof wav, "%s/audio.wav", g_tmp);
    SF_INFO info = {.samplerate = 16000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *sf = sf_open(wav, SFM_WRITE, &info);
    assert_non_null(sf);
    assert_int_equal(sf_writef_float(sf, R.audio.data, (sf_count_t)at_npy_count(&R.audio)),
                     (sf_count_t)at_npy_count(&R.audio));
    sf_close(sf);
    char *args2[] = {"--model", g_oracle, "--audio", wav, "--prefix", "50258,50259,50359,50363",
                     "--steps", "20"};
    assert_int_equal(run_check(args2, 8, out), 0);
    b = slurp(out, &n);
    txt = malloc(n + 1);
    memcpy(txt, b, n);
    txt[n] = 0;
    free(b);
    j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    toks = cJSON_GetObjectItem(j, "tokens");
    for (int i = 0; i < R.n_tokens; i++) assert_int_equal(cJSON_GetArrayItem(toks, i)->valueint, R.tokens[i]);
    cJSON_Delete(j);
    /* another sample rate is resampled (core/audio, as the services do) */
    info.samplerate = 44100;
    sf = sf_open(wav, SFM_WRITE, &info);
    assert_non_null(sf);
    sf_writef_float(sf, R.audio.data, 1000);
    sf_close(sf);
    assert_int_equal(run_check(args2, 8, out), 0);
    /* a file that is not audio is an error (exit 1) */
    FILE *g = fopen(wav, "wb");
    assert_non_null(g);
    fputs("not audio at all", g);
    fclose(g);
    assert_int_equal(run_check(args2, 8, out), 1);
    /* bad arguments: exit 2 */
    char *bad1[] = {"--model", g_oracle};
    assert_int_equal(run_check(bad1, 2, out), 2);
    char *bad2[] = {"--model", g_oracle, "--audio", audio, "--steps", "x"};
    assert_int_equal(run_check(bad2, 6, out), 2);
    char *bad3[] = {"--model", g_oracle, "--audio", audio, "--prefix", "1,,2"};
    assert_int_equal(run_check(bad3, 6, out), 2);
    char *bad4[] = {"--bogus"};
    assert_int_equal(run_check(bad4, 1, out), 2);
    char *help[] = {"--help"};
    assert_int_equal(run_check(help, 1, out), 0);
}

/* Random-weight models of official shapes load and run (small audio_ctx
 * keeps it quick); English-only special tokens. */
static void test_whisper_model_random(void **state)
{
    (void)state;
    char p[512];
    at_err err = {0};
    snprintf(p, sizeof p, "%s/tiny-en-q4.bin", g_tmp);
    assert_int_equal(at_whisper_random_model("tiny.en", "q4_0", p, 7, &err), 0);
    at_whisper_model *m = at_whisper_model_load(p, &err);
    if (!m) fail_msg("%s", err.msg);
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    const at_whisper_special *sp = at_whisper_model_special(m);
    assert_int_equal(hp->n_vocab, 51864);
    assert_int_equal(hp->n_audio_layer, 4);
    assert_int_equal(hp->ftype, 2);
    assert_int_equal(sp->eot, 50256);
    assert_int_equal(sp->sot, 50257);
    assert_int_equal(sp->transcribe, 50358);
    assert_int_equal(sp->not_, 50362);
    assert_int_equal(sp->beg, 50363);
    assert_int_equal(sp->is_multilingual, 0);
    float *mel = malloc(sizeof(float) * 80 * AT_WHISPER_N_FRAMES), *lg = malloc(sizeof(float) * 51864 * 3);
    assert_int_equal(at_whisper_mel(m, R.audio.data, at_npy_count(&R.audio), mel, &err), 0);
    at_whisper_state *s = at_whisper_state_new(m, 2, &err);
    assert_int_equal(at_whisper_encode(s, mel, 64, &err), 0);
    at_whisper_kv *kv = at_whisper_kv_new(m, &err);
    int toks[3] = {sp->sot, sp->not_, 300};
    assert_int_equal(at_whisper_decode(s, kv, toks, 3, 1, lg, &err), 0);
    for (int i = 0; i < 51864 * 3; i++) assert_true(isfinite(lg[i]));
    /* its vocabulary encodes any text (a streaming prompt) and round trips:
     * the 256 single bytes come first, then one word per id */
    const char *const *vt;
    const size_t *vl;
    size_t nv = at_whisper_model_vocab(m, &vt, &vl);
    assert_true(nv >= 50256);
    assert_string_equal(vt[300], " w300");
    at_wtok *tk = at_wtok_new_bytes(vt, vl, nv, sp, &err);
    assert_non_null(tk);
    const char *text = " w300 w301 caf\xc3\xa9, 42!";
    int *ids = NULL;
    size_t nids = 0;
    assert_int_equal(at_wtok_encode(tk, text, strlen(text), &ids, &nids, &err), 0);
    char *back = at_wtok_decode(tk, ids, nids, &err);
    assert_string_equal(back, text);
    free(back);
    free(ids);
    at_wtok_free(tk);
    at_whisper_kv_free(kv);
    at_whisper_state_free(s);
    at_whisper_model_free(m);
    assert_int_equal(at_whisper_random_model("huge", "f16", p, 1, &err), AT_E_INVALID);
    free(mel);
    free(lg);
}

/* Kernels: f16 conversion round trips, quantization round-trip error
 * bounds, SIMD and scalar agreement on matmul against a plain loop. */
static void test_whisper_model_kernels(void **state)
{
    (void)state;
    float vals[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 1e-9f, 70000.0f};
    float want[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.0f, INFINITY};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        assert_true(at_f16_to_f32(at_f32_to_f16(vals[i])) == want[i]);
    enum { M = 20, K = 96, N = 37 };
    float X[M * K], W[N * K], Y[M * N], ref[M * N], bias[N];
    uint64_t s = 1;
    for (int i = 0; i < M * K; i++)
        X[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 8388608.0f - 1.0f;
    for (int i = 0; i < N * K; i++)
        W[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 8388608.0f - 1.0f;
    for (int i = 0; i < N; i++) bias[i] = (float)i * 0.1f;
    at_err err = {0};
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    at_dtype types[] = {AT_DT_F32, AT_DT_F16, AT_DT_Q8_0, AT_DT_Q5_0, AT_DT_Q5_1, AT_DT_Q4_0, AT_DT_Q4_1};
    float tol[] = {1e-4f, 0.05f, 0.1f, 0.8f, 0.8f, 1.6f, 1.6f};
    unsigned char *qw = malloc((size_t)N * K * 4);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t rb = at_dtype_row_bytes(types[t], K);
        for (int n = 0; n < N; n++) at_quant_row(types[t], W + n * K, qw + n * rb, K);
        at_matrix mat = {types[t], N, K, qw, rb, 0, 0};
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double acc = bias[n];
                for (int k = 0; k < K; k++) acc += (double)X[m * K + k] * W[n * K + k];
                ref[m * N + n] = (float)acc;
            }
        /* M = 20 takes the BLAS path, M = 1 and 3 the vector kernels */
        int ms[] = {M, 1, 3};
        for (int i = 0; i < 3; i++) {
            assert_int_equal(at_matmul(c, X, ms[i], &mat, bias, Y, &err), 0);
            float e = max_abs_diff(Y, ref, (size_t)ms[i] * N);
            if (e > tol[t]) fail_msg("%s M=%d: err %g", at_dtype_name(types[t]), ms[i], e);
        }
    }
    free(qw);
    /* attention with a causal mask equals a plain implementation */
    enum { T = 70, D = 32, H = 2 };
    float Q[T * D], Kk[T * D], V[T * D], O[T * D], O1[D];
    for (int i = 0; i < T * D; i++) {
        Q[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 8388608.0f - 1.0f;
        Kk[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 8388608.0f - 1.0f;
        V[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / 8388608.0f - 1.0f;
    }
    assert_int_equal(at_attention(c, Q, D, Kk, D, V, D, T, T, H, D / H, 0, 0.0f, O, D, &err), 0);
    int hd = D / H;
    for (int i = 0; i < T; i++)
        for (int h = 0; h < H; h++) {
            double sc[T], mx = -1e30, sum = 0;
            for (int j = 0; j <= i; j++) {
                double a = 0;
                for (int d = 0; d < hd; d++) a += (double)Q[i * D + h * hd + d] * Kk[j * D + h * hd + d];
                sc[j] = a / sqrt((double)hd);
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int j = 0; j <= i; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = 0; j <= i; j++) o += sc[j] / sum * V[j * D + h * hd + d];
                assert_true(fabs(o - O[i * D + h * hd + d]) < 1e-4);
            }
        }
    /* one query at position T-1 (decoder step path) equals the last row */
    assert_int_equal(at_attention(c, Q + (T - 1) * D, D, Kk, D, V, D, 1, T, H, hd, T - 1, 0.0f, O1, D, &err),
                     0);
    assert_true(max_abs_diff(O1, O + (T - 1) * D, D) < 1e-5f);
    /* GELU against erf */
    float g[40];
    for (int i = 0; i < 40; i++) g[i] = -10.0f + 0.5f * (float)i;
    at_gelu(g, 40);
    for (int i = 0; i < 40; i++) {
        double x = -10.0 + 0.5 * i, r = 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
        assert_true(fabs(g[i] - r) < 1e-6 + 1e-6 * fabs(r));
    }
    at_compute_free(c);
}

/* ------------------------------------------------------------------ main */

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    const char *od = getenv("AT_ORACLES_DIR");
    snprintf(g_oracle, sizeof g_oracle, "%s/whisper-mini", od ? od : "tests/data/oracles");
    char probe[1200];
    snprintf(probe, sizeof probe, "%s/model.safetensors", g_oracle);
    if (access(probe, R_OK) != 0) {
        /* the oracle is part of the repository: its absence is a failure */
        printf("Whisper oracle not found at %s (set AT_ORACLES_DIR)\n", g_oracle);
        return 1;
    }
    const char *td = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/at-whisper-test-XXXXXX", td ? td : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    load_npy("audio.npy", &R.audio);
    load_npy("mel80.npy", &R.mel80);
    load_npy("mel128.npy", &R.mel128);
    load_npy("encoder_out.npy", &R.enc);
    load_npy("logits.npy", &R.logits);
    load_greedy();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whisper_model_kernels),
        cmocka_unit_test(test_whisper_model_mel),
        cmocka_unit_test(test_whisper_model_hf),
        cmocka_unit_test(test_whisper_model_incremental),
        cmocka_unit_test(test_whisper_model_batch),
        cmocka_unit_test(test_whisper_model_sched),
        cmocka_unit_test(test_whisper_model_encode_batch),
        cmocka_unit_test(test_whisper_model_ggml),
        cmocka_unit_test(test_whisper_model_ggml_quant_sizes),
        cmocka_unit_test(test_whisper_model_quant),
        cmocka_unit_test(test_whisper_model_corrupt),
        cmocka_unit_test(test_whisper_model_check),
        cmocka_unit_test(test_whisper_model_random),
        cmocka_unit_test(test_whisper_model_dtypes),
        cmocka_unit_test(test_whisper_model_alignment),
        cmocka_unit_test(test_whisper_model_gpu),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(g_tmp);
    at_npy_free(&R.audio);
    at_npy_free(&R.mel80);
    at_npy_free(&R.mel128);
    at_npy_free(&R.enc);
    at_npy_free(&R.logits);
    return rc;
}
