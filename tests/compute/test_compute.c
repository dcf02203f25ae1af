/* test_compute.c - the CPU backend's kernels at every instruction-set level
 * this machine has (scalar, AVX2, AVX-512), against plain double-precision
 * references: GEMM shapes that hit every edge of the blocking, matmul with
 * each weight type, and attention with and without a causal mask. */
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

#include "compute/conv_fft.h"
#include "compute/gemm.h"
#include "compute/kernels.h"

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rand_vec(size_t n)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

/* max |a - b| / (1 + |b|) */
static double max_rel(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

/* b_trans 2: B is K x N, handed to at_gemm_packed in its packed layout
 * (the last panel's extra columns NaN: they must not reach C). */
static void gemm_case(at_isa isa, int M, int N, int K, int b_trans, int accumulate, float *scratch)
{
    int packed = b_trans == 2, mode = b_trans;
    if (packed) b_trans = 0;
    int lda = K + 3, ldb = (b_trans ? K : N) + 5, ldc = N + 7;
    float *A = rand_vec((size_t)M * lda), *B = rand_vec((size_t)(b_trans ? N : K) * ldb);
    float *C = rand_vec((size_t)M * ldc);
    double *ref = malloc((size_t)M * N * sizeof *ref);
    assert_non_null(ref);
    float alpha = 0.75f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)A[(size_t)i * lda + k] *
                     (b_trans ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            ref[(size_t)i * N + j] = alpha * s + (accumulate ? C[(size_t)i * ldc + j] : 0.0);
        }
    float guard = C[(size_t)(M - 1) * ldc + N]; /* past the last column: untouched */
    if (packed) {
        int nr = AT_GEMM_PANEL, Np = (N + nr - 1) / nr * nr;
        float *Bp = aligned_alloc(64, (size_t)Np * K * sizeof(float));
        assert_non_null(Bp);
        for (int n = 0; n < Np; n++)
            for (int k = 0; k < K; k++)
                Bp[(size_t)(n / nr) * K * nr + (size_t)k * nr + n % nr] =
                    n < N ? B[(size_t)k * ldb + n] : NAN;
        at_gemm_packed(isa, M, N, K, alpha, A, lda, Bp, accumulate, C, ldc, scratch);
        free(Bp);
    } else {
        at_gemm(isa, M, N, K, alpha, A, lda, B, ldb, b_trans, accumulate, C, ldc, scratch);
    }
    float *got = malloc((size_t)M * N * sizeof *got);
    assert_non_null(got);
    for (int i = 0; i < M; i++) memcpy(got + (size_t)i * N, C + (size_t)i * ldc, (size_t)N * sizeof *got);
    double e = max_rel(got, ref, (size_t)M * N);
    if (!(e < 1e-5 * (1 + K / 64.0)))
        fail_msg("%s gemm M=%d N=%d K=%d %s acc=%d: error %g", at_isa_name(isa), M, N, K,
                 mode == 2 ? "packed"
                 : b_trans ? "b_trans"
                           : "plain",
                 accumulate, e);
    assert_true(C[(size_t)(M - 1) * ldc + N] == guard);
    free(A);
    free(B);
    free(C);
    free(ref);
    free(got);
}

static void test_gemm_every_level(void **st)
{
    (void)st;
    float *scratch = aligned_alloc(64, AT_GEMM_SCRATCH * sizeof(float));
    assert_non_null(scratch);
    /* shapes around each kernel's MR (4, 6, 12) and NR (16, 32), the
     * packing width 128 and the depth block 256 */
    static const int shapes[][3] = {{1, 1, 1},      {3, 5, 7},     {12, 32, 64},   {13, 33, 65},
                                    {25, 130, 257}, {64, 64, 512}, {37, 200, 300}, {6, 16, 256}};
    at_isa best = at_isa_detect();
    print_message("  CPU kernels up to %s\n", at_isa_name(best));
    for (int isa = AT_ISA_SCALAR; isa <= (int)best; isa++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int t = 0; t < 3; t++)
                for (int acc = 0; acc < 2; acc++)
                    gemm_case((at_isa)isa, shapes[s][0], shapes[s][1], shapes[s][2], t, acc, scratch);
    free(scratch);
}

/* at_matmul for each weight type and both paths (decoder-sized M < 32 and
 * encoder-sized), at each level, against the dequantized weights; rows of
 * 320 values, and of 328 (not a multiple of the vector width) for the
 * types that allow it. */
/* The element-wise kernels against their definitions (PyTorch's
 * leaky_relu: x > 0 ? x : x * slope), bit for bit at every level, over
 * lengths around the vector width and values with a sign to get wrong:
 * -0, infinities, NaN, subnormals. */
static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

static void test_elementwise_levels(void **st)
{
    (void)st;
    static const size_t lens[] = {0, 1, 15, 16, 17, 33, 16389};
    static const float special[] = {-0.0f, 0.0f, INFINITY, -INFINITY, NAN, -1e-40f, 1e-40f, -3.5f};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        float *x = rand_vec(n + 1), *b = rand_vec(n + 1), *y = malloc((n + 1) * sizeof *y),
              *r = rand_vec(n + 1);
        assert_non_null(y);
        for (size_t i = 0; i < n; i += 3) x[i] = special[(i / 3) % 8];
        for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++)
            for (int d = 0; d < 2; d++) {
                float div = d ? 3.0f : 1.0f, slope = 0.1f;
                at_leaky_relu((at_isa)isa, y, x, n, div, slope);
                for (size_t i = 0; i < n; i++) {
                    float v = d ? x[i] / div : x[i], want = v > 0 ? v : v * slope;
                    if (!same_float(y[i], want))
                        fail_msg("%s leaky_relu n=%zu div=%g: [%zu] = %a, expected %a",
                                 at_isa_name((at_isa)isa), n, div, i, y[i], want);
                }
                at_sum((at_isa)isa, y, x, b, n);
                for (size_t i = 0; i < n; i++)
                    if (!same_float(y[i], x[i] + b[i]))
                        fail_msg("%s sum n=%zu: [%zu] = %a", at_isa_name((at_isa)isa), n, i, y[i]);
                /* the epilogue of products: y += r, then leaky ReLU */
                at_epilogue ep = {r, 0, 1, slope};
                memcpy(y, x, n * sizeof *y);
                at_epilogue_rows((at_isa)isa, &ep, y, (int)n, n ? 1 : 0, (int)n);
                for (size_t i = 0; i < n; i++) {
                    float v = x[i] + r[i], want = v > 0 ? v : v * slope;
                    if (!same_float(y[i], want))
                        fail_msg("%s epilogue n=%zu: [%zu] = %a, expected %a", at_isa_name((at_isa)isa), n, i,
                                 y[i], want);
                }
            }
        /* WaveNet's gate: within 1e-6 of tanh(a) sigmoid(b) in double,
         * saturating without overflow */
        static const float big[] = {-0.0f, 1e-30f, -1e-5f, 9.0f, -9.0f, 100.0f, -100.0f, 3e38f, -3e38f};
        for (size_t i = 0; i < n; i++) {
            x[i] = isfinite(x[i]) ? x[i] * 4.0f : 0.5f;
            b[i] *= 6.0f;
        }
        for (size_t i = 0; i < n; i += 5) x[i] = big[(i / 5) % 9];
        for (size_t i = 2; i < n; i += 7) b[i] = big[(i / 7) % 9];
        for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
            at_tanh_sigmoid((at_isa)isa, y, x, b, (int)n);
            for (size_t i = 0; i < n; i++) {
                double want = tanh((double)x[i]) / (1.0 + exp(-(double)b[i]));
                if (!(fabs(y[i] - want) <= 1e-6))
                    fail_msg("%s tanh_sigmoid(%g, %g) = %.9g, expected %.9g", at_isa_name((at_isa)isa), x[i],
                             b[i], y[i], want);
            }
        }
        free(x);
        free(b);
        free(y);
        free(r);
    }
}

static void test_matmul_types(void **st)
{
    (void)st;
    static const at_dtype types[] = {AT_DT_F32,  AT_DT_F16,  AT_DT_BF16, AT_DT_Q8_0,
                                     AT_DT_Q5_0, AT_DT_Q5_1, AT_DT_Q4_0, AT_DT_Q4_1};
    const int N = 150;
    at_err err;
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    for (int K = 320; K <= 328; K += 8)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            at_dtype t = types[ti];
            if (K % 32 && t != AT_DT_F32 && t != AT_DT_F16 && t != AT_DT_BF16) continue;
            float *w = rand_vec((size_t)N * K), *bias = rand_vec(N),
                  *deq = malloc((size_t)N * K * sizeof *deq);
            assert_non_null(deq);
            size_t rb = at_dtype_row_bytes(t, K);
            uint8_t *q = malloc(rb * N);
            assert_non_null(q);
            for (int n = 0; n < N; n++) {
                at_quant_row(t, w + (size_t)n * K, q + (size_t)n * rb, K);
                at_dequant_row(t, q + (size_t)n * rb, deq + (size_t)n * K, K);
            }
            at_matrix W = {t, N, K, q, rb, 0, 0};
            /* one row; batches of 2..15 rows in every remainder of four; the
             * blocked GEMM */
            static const int Ms[] = {1, 2, 3, 5, 6, 7, 8, 9, 15, 31, 300};
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                int M = Ms[mi];
                float *X = rand_vec((size_t)M * K), *Y = malloc((size_t)M * N * sizeof *Y);
                double *ref = malloc((size_t)M * N * sizeof *ref);
                assert_non_null(Y);
                assert_non_null(ref);
                for (int m = 0; m < M; m++)
                    for (int n = 0; n < N; n++) {
                        double s = bias[n];
                        for (int k = 0; k < K; k++)
                            s += (double)X[(size_t)m * K + k] * deq[(size_t)n * K + k];
                        ref[(size_t)m * N + n] = s;
                    }
                for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
                    assert_int_equal(at_compute_set_isa(c, (at_isa)isa), isa);
                    memset(Y, 0xff, (size_t)M * N * sizeof *Y);
                    assert_int_equal(at_matmul(c, X, M, &W, bias, Y, &err), 0);
                    double e = max_rel(Y, ref, (size_t)M * N);
                    if (!(e < 1e-4))
                        fail_msg("%s matmul %s M=%d K=%d: error %g", at_isa_name((at_isa)isa),
                                 at_dtype_name(t), M, K, e);
                }
                free(X);
                free(Y);
                free(ref);
            }
            free(q);
            free(w);
            free(bias);
            free(deq);
        }
    at_compute_free(c);
}

/* A decoder step batched with others (beams, samples, the scheduler's
 * streams) gives each sequence the bits it gets alone: with AVX-512 each
 * row of a small batch is the same bits as that row's product alone, for
 * the types decoders use, whatever the batch's size. */
static void test_matmul_rows_independent(void **st)
{
    (void)st;
    if (at_isa_detect() < AT_ISA_AVX512) {
        print_message("skipped: this CPU has no AVX-512 (only its kernels promise this)\n");
        return;
    }
    static const at_dtype types[] = {AT_DT_F32, AT_DT_F16, AT_DT_Q8_0};
    const int N = 150, MMAX = 12;
    at_err err;
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    for (int K = 320; K <= 328; K += 8)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            at_dtype t = types[ti];
            if (K % 32 && t == AT_DT_Q8_0) continue;
            float *w = rand_vec((size_t)N * K), *bias = rand_vec(N), *X = rand_vec((size_t)MMAX * K);
            float *alone = malloc((size_t)MMAX * N * sizeof *alone),
                  *Y = malloc((size_t)MMAX * N * sizeof *Y);
            size_t rb = at_dtype_row_bytes(t, K);
            uint8_t *q = malloc(rb * N);
            assert_true(alone && Y && q);
            for (int n = 0; n < N; n++) at_quant_row(t, w + (size_t)n * K, q + (size_t)n * rb, K);
            at_matrix W = {t, N, K, q, rb, 0, 0};
            for (int m = 0; m < MMAX; m++)
                assert_int_equal(at_matmul(c, X + (size_t)m * K, 1, &W, bias, alone + (size_t)m * N, &err),
                                 0);
            for (int M = 2; M <= MMAX; M++) {
                assert_int_equal(at_matmul(c, X, M, &W, bias, Y, &err), 0);
                for (int m = 0; m < M; m++)
                    if (memcmp(Y + (size_t)m * N, alone + (size_t)m * N, sizeof(float) * N) != 0)
                        fail_msg("%s K=%d: row %d of a batch of %d differs from alone", at_dtype_name(t), K,
                                 m, M);
            }
            free(q);
            free(w);
            free(bias);
            free(X);
            free(alone);
            free(Y);
        }
    at_compute_free(c);
}

static void test_attention(void **st)
{
    (void)st;
    at_err err;
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    /* head sizes: 40 (generic paths), 64 (Whisper's: the register kernels
     * of decoder queries, up to four at a time), 96 and 128 (the largest
     * the AVX2 kernel takes); key counts not a multiple of four; from 256
     * keys, few queries go by blocks of keys (more than eight: in groups) */
    static const int cases[][4] = {
        {1, 37, -1, 40},   {1, 37, 36, 40},   {70, 70, 0, 40},    {5, 90, 85, 40},  {130, 150, -1, 40},
        {300, 300, 0, 40}, {1, 1501, -1, 64}, {3, 22, 19, 64},    {7, 9, -1, 64},   {6, 1503, -1, 64},
        {2, 7, 3, 96},     {4, 13, 9, 128},   {3, 400, 397, 64},  {9, 700, -1, 64}, {2, 300, 298, 40},
        {8, 300, 290, 64}, {5, 257, -1, 64},  {2, 1000, 995, 64}, {7, 330, 260, 64}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int Tq = cases[ci][0], Tk = cases[ci][1], causal = cases[ci][2], hd = cases[ci][3];
        const int H = 3, D = H * hd;
        float *Q = rand_vec((size_t)Tq * D), *K = rand_vec((size_t)Tk * D), *V = rand_vec((size_t)Tk * D);
        float *O = malloc((size_t)Tq * D * sizeof *O);
        double *ref = malloc((size_t)Tq * D * sizeof *ref), *p = malloc((size_t)Tk * sizeof *p);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                int len = causal >= 0 && causal + i + 1 < Tk ? causal + i + 1 : Tk;
                double mx = -INFINITY, sum = 0;
                for (int k = 0; k < len; k++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += (double)Q[(size_t)i * D + h * hd + d] * K[(size_t)k * D + h * hd + d];
                    p[k] = s / sqrt(hd);
                    if (p[k] > mx) mx = p[k];
                }
                for (int k = 0; k < len; k++) sum += (p[k] = exp(p[k] - mx));
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int k = 0; k < len; k++) o += p[k] / sum * V[(size_t)k * D + h * hd + d];
                    ref[(size_t)i * D + h * hd + d] = o;
                }
            }
        for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
            at_compute_set_isa(c, (at_isa)isa);
            assert_int_equal(at_attention(c, Q, D, K, D, V, D, Tq, Tk, H, hd, causal, 0.0f, O, D, &err), 0);
            double e = max_rel(O, ref, (size_t)Tq * D);
            if (!(e < 1e-5))
                fail_msg("%s attention Tq=%d Tk=%d causal=%d: error %g", at_isa_name((at_isa)isa), Tq, Tk,
                         causal, e);
        }
        free(Q);
        free(K);
        free(V);
        free(O);
        free(ref);
        free(p);
    }
    at_compute_free(c);
}

/* The same product gives the same bits however many threads run it and
 * whichever thread takes which chunk: a stream's logits must not change
 * between runs, or with how busy the shared pool is.  Attention of few
 * queries on many keys (the split by key blocks), and matmul of decoder
 * and encoder shapes. */
static void test_deterministic(void **st)
{
    (void)st;
    at_err err;
    const int H = 6, hd = 64, D = H * hd, Tk = 1501, N = 200;
    float *Q = rand_vec((size_t)9 * D), *K = rand_vec((size_t)Tk * D), *V = rand_vec((size_t)Tk * D);
    float *X = rand_vec((size_t)40 * D), *w = rand_vec((size_t)N * D);
    at_matrix W = {AT_DT_F32, N, D, w, (size_t)D * sizeof(float), 0, 0};
    float *first = malloc(sizeof(float) * 9 * D), *O = malloc(sizeof(float) * 9 * D);
    float *Y0[2] = {malloc(sizeof(float) * 40 * N), malloc(sizeof(float) * 40 * N)};
    float *Y = malloc(sizeof(float) * 40 * N);
    static const int tq[] = {1, 3, 9}, ms[] = {1, 40};
    for (int ti = 0; ti < 3; ti++)
        for (int threads = 1; threads <= 3; threads++) {
            at_compute *c = at_compute_new(threads, &err);
            assert_non_null(c);
            for (int rep = 0; rep < 3; rep++) {
                int first_run = threads == 1 && rep == 0;
                float *out = first_run ? first : O;
                assert_int_equal(at_attention(c, Q, D, K, D, V, D, tq[ti], Tk, H, hd, -1, 0.0f, out, D, &err),
                                 0);
                if (!first_run && memcmp(first, O, sizeof(float) * (size_t)tq[ti] * D) != 0)
                    fail_msg("attention of %d queries on %d threads differs from 1 thread", tq[ti], threads);
            }
            for (int mi = 0; mi < 2; mi++) {
                int M = ms[mi];
                assert_int_equal(at_matmul(c, X, M, &W, NULL, threads == 1 ? Y0[mi] : Y, &err), 0);
                if (threads > 1 && memcmp(Y0[mi], Y, sizeof(float) * (size_t)M * N) != 0)
                    fail_msg("matmul of %d rows on %d threads differs from 1 thread", M, threads);
            }
            at_compute_free(c);
        }
    free(Q);
    free(K);
    free(V);
    free(X);
    free(w);
    free(first);
    free(O);
    free(Y0[0]);
    free(Y0[1]);
    free(Y);
}

/* A decoder step's attention for several sequences on one audio (beams,
 * or the streams a scheduler batches) is one call: each query's output
 * must be the same bits as that query's call alone, or a sequence's
 * logits would change with who else is in the batch.  For every kernel
 * level and for few keys (per head) and many (by key blocks). */
static void test_query_independent(void **st)
{
    (void)st;
    at_err err;
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    static const int tks[] = {37, 300, 1501}, hds[] = {64, 40};
    /* keys and values 1 KB a row (a multiple: copied a head at a time for
     * several queries) and padded by a line (read in place) */
    for (int pad = 0; pad <= 16; pad += 16)
        for (int hi = 0; hi < 2; hi++)
            for (int ki = 0; ki < 3; ki++) {
                const int H = 4, hd = hds[hi], D = H * hd, Tk = tks[ki], Tq = 8, ld = D + pad;
                float *Q = rand_vec((size_t)Tq * D), *K = rand_vec((size_t)Tk * ld),
                      *V = rand_vec((size_t)Tk * ld);
                float *all = malloc(sizeof(float) * Tq * D), *one = malloc(sizeof(float) * D);
                for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
                    at_compute_set_isa(c, (at_isa)isa);
                    for (int tq = 2; tq <= Tq; tq += 3) {
                        assert_int_equal(
                            at_attention(c, Q, D, K, ld, V, ld, tq, Tk, H, hd, -1, 0.0f, all, D, &err), 0);
                        for (int i = 0; i < tq; i++) {
                            assert_int_equal(at_attention(c, Q + (size_t)i * D, D, K, ld, V, ld, 1, Tk, H, hd,
                                                          -1, 0.0f, one, D, &err),
                                             0);
                            if (memcmp(one, all + (size_t)i * D, sizeof(float) * D) != 0)
                                fail_msg("%s attention, head size %d, %d keys, rows %d apart: query %d of %d "
                                         "differs from alone",
                                         at_isa_name((at_isa)isa), hd, Tk, ld, i, tq);
                        }
                    }
                }
                free(Q);
                free(K);
                free(V);
                free(all);
                free(one);
            }
    at_compute_free(c);
}

/* at_attention_multi: the sequences of a batched step, each on its own
 * keys (few and many keys, causal or not, one query or several), in one
 * round: every call's output the same bits as its own at_attention, and
 * more calls than one round takes. */
static void test_attention_multi(void **st)
{
    (void)st;
    at_err err;
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    enum { N = 41, H = 6, HD = 64, D = H * HD };
    at_attn_call calls[N];
    float *mem[N][4], *alone = malloc(sizeof(float) * 20 * D);
    for (int i = 0; i < N; i++) {
        int tq = 1 + (i * 7) % 20, tk = (i % 3 == 0) ? 300 + 37 * i : 5 + 13 * i % 200;
        int causal = i % 4 == 1 ? tk - tq : -1;
        mem[i][0] = rand_vec((size_t)tq * D);
        mem[i][1] = rand_vec((size_t)tk * D);
        mem[i][2] = rand_vec((size_t)tk * D);
        mem[i][3] = malloc(sizeof(float) * (size_t)tq * D);
        calls[i] = (at_attn_call){mem[i][0], mem[i][1], mem[i][2], mem[i][3], D, D, D, D, tq, tk, causal};
    }
    for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
        at_compute_set_isa(c, (at_isa)isa);
        assert_int_equal(at_attention_multi(c, calls, N, H, HD, 0.0f, &err), 0);
        for (int i = 0; i < N; i++) {
            const at_attn_call *q = &calls[i];
            assert_int_equal(at_attention(c, q->Q, D, q->K, D, q->V, D, q->Tq, q->Tk, H, HD, q->causal, 0.0f,
                                          alone, D, &err),
                             0);
            if (memcmp(alone, q->O, sizeof(float) * (size_t)q->Tq * D) != 0)
                fail_msg("%s: call %d of %d (%d queries, %d keys) differs from alone",
                         at_isa_name((at_isa)isa), i, N, q->Tq, q->Tk);
        }
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 4; k++) free(mem[i][k]);
    free(alone);
    at_compute_free(c);
}

/* Convolutions by FFT (overlap-save) against the direct sum in double, at
 * every level: block counts odd and even, a last block cut short,
 * dilations whose phases differ in length, edges read as zeros, output
 * rows apart (ldy), bias, residual and leaky ReLU.  Channel counts above
 * the vector width check that every lane is computed. */
static void test_conv_fft(void **state)
{
    (void)state;
    at_err err = {0};
    at_compute *c = at_compute_new(2, &err);
    assert_non_null(c);
    const struct {
        int T, Ci, Co, K, d, off, M;
    } cases[] = {
        {1000, 32, 48, 11, 1, -5, 1000}, /* 19 blocks of 54 */
        {700, 16, 16, 7, 3, -9, 700},    /* phases of 234, 233, 233 */
        {300, 48, 32, 33, 2, 0, 236},    /* the longest kernel, no padding */
        {90, 16, 32, 5, 1, -40, 200},    /* most taps outside the input */
        {1, 16, 16, 3, 64, -1, 64},      /* the widest dilation, one step each */
        {150, 272, 80, 7, 1, -3, 150},   /* inputs past one block of the spectra, outputs past a panel */
    };
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        int T = cases[n].T, Ci = cases[n].Ci, Co = cases[n].Co, K = cases[n].K, d = cases[n].d;
        int off = cases[n].off, M = cases[n].M, ldy = Co + 16;
        float *X = rand_vec((size_t)T * Ci), *W = rand_vec((size_t)Co * K * Ci), *b = rand_vec((size_t)Co);
        float *res = rand_vec((size_t)M * Co), *Y = malloc(sizeof(float) * (size_t)M * ldy);
        double *ref = malloc(sizeof(double) * (size_t)M * Co);
        for (int m = 0; m < M; m++)
            for (int o = 0; o < Co; o++) {
                double s = b[o];
                for (int k = 0; k < K; k++) {
                    int t = off + m + d * k;
                    if (t < 0 || t >= T) continue;
                    for (int i = 0; i < Ci; i++)
                        s += (double)X[(size_t)t * Ci + i] * W[((size_t)k * Ci + i) * Co + o];
                }
                s += res[(size_t)m * Co + o];
                ref[(size_t)m * Co + o] = s < 0 ? s * 0.2 : s;
            }
        at_epilogue ep = {res, Co, 1, 0.2f};
        for (int isa = AT_ISA_SCALAR; isa <= (int)at_isa_detect(); isa++) {
            at_compute_set_isa(c, (at_isa)isa);
            for (size_t i = 0; i < (size_t)M * ldy; i++) Y[i] = NAN;
            assert_int_equal(at_conv_fft(c, X, T, Ci, off, d, M, W, Co, K, b, &ep, Y, ldy, &err), 0);
            for (int m = 0; m < M; m++) {
                double e = max_rel(Y + (size_t)m * ldy, ref + (size_t)m * Co, (size_t)Co);
                if (!(e < 1e-4))
                    fail_msg("%s, case %zu: output %d off by %g", at_isa_name((at_isa)isa), n, m, e);
                for (int o = Co; o < ldy; o++) assert_true(isnan(Y[(size_t)m * ldy + o])); /* untouched */
            }
        }
        free(X);
        free(W);
        free(b);
        free(res);
        free(Y);
        free(ref);
    }
    /* what it cannot do is refused, not computed wrongly */
    float x[16] = {0};
    assert_int_equal(at_conv_fft(c, x, 1, 16, 0, 1, 1, x, 16, 34, NULL, NULL, x, 16, &err), AT_E_INVALID);
    assert_int_equal(at_conv_fft(c, x, 1, 12, 0, 1, 1, x, 16, 3, NULL, NULL, x, 16, &err), AT_E_INVALID);
    assert_int_equal(at_conv_fft(c, x, 1, 16, 0, 65, 1, x, 16, 3, NULL, NULL, x, 16, &err), AT_E_INVALID);
    at_compute_free(c);
}

/* Clients of one pool: products from several threads at once, each run
 * on the pool or on its caller's thread, all correct. */
typedef struct client_job {
    at_compute *c;
    const float *X, *deq;
    const at_matrix *W;
    int M, N, K;
    double err;
} client_job;

static void *client_run(void *arg)
{
    client_job *j = arg;
    float *Y = malloc((size_t)j->M * j->N * sizeof *Y);
    double *ref = malloc((size_t)j->M * j->N * sizeof *ref);
    for (int m = 0; m < j->M; m++)
        for (int n = 0; n < j->N; n++) {
            double s = 0;
            for (int k = 0; k < j->K; k++)
                s += (double)j->X[(size_t)m * j->K + k] * j->deq[(size_t)n * j->K + k];
            ref[(size_t)m * j->N + n] = s;
        }
    at_err err;
    for (int rep = 0; rep < 20; rep++) {
        if (at_matmul(j->c, j->X, j->M, j->W, NULL, Y, &err) != 0) {
            j->err = 1;
            break;
        }
        double e = max_rel(Y, ref, (size_t)j->M * j->N);
        if (e > j->err) j->err = e;
    }
    free(Y);
    free(ref);
    return NULL;
}

static void test_pool_clients(void **st)
{
    (void)st;
    enum { T = 4 };
    const int N = 96, K = 128;
    at_err err;
    at_compute *pool = at_compute_new(2, &err);
    assert_non_null(pool);
    float *w = rand_vec((size_t)N * K);
    at_matrix W = {AT_DT_F32, N, K, w, (size_t)K * sizeof(float), 0, 0};
    client_job jobs[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        int M = i % 2 ? 1 : 40; /* decoder steps and encoder-sized products */
        jobs[i] = (client_job){at_compute_new_client(pool, &err), rand_vec((size_t)M * K), w, &W, M, N, K, 0};
        assert_non_null(jobs[i].c);
        assert_int_equal(at_compute_isa(jobs[i].c), at_compute_isa(pool));
    }
    for (int i = 0; i < T; i++) assert_int_equal(pthread_create(&th[i], NULL, client_run, &jobs[i]), 0);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++) {
        if (!(jobs[i].err < 1e-5)) fail_msg("client %d: error %g", i, jobs[i].err);
        at_compute_free(jobs[i].c);
        free((void *)jobs[i].X);
    }
    free(w);
    at_compute_free(pool);
}

/* The pool's rounds: every chunk runs exactly once, each thread starting
 * on its own contiguous share; a thread that stalls (here: sleeps in its
 * first chunk) has the rest of its share taken by the others. */
typedef struct {
    atomic_int runs[1000];
    atomic_int by[1000];
    int stall; /* chunk that sleeps */
} round_job;

static void round_chunk(void *arg, int chunk, int ith)
{
    round_job *j = arg;
    if (chunk == j->stall && ith == 0) usleep(50 * 1000);
    atomic_fetch_add(&j->runs[chunk], 1);
    atomic_store(&j->by[chunk], ith);
}

static void test_pool_rounds(void **st)
{
    (void)st;
    at_err err;
    at_compute *c = at_compute_new(3, &err);
    assert_non_null(c);
    int threads = at_compute_threads(c);
    static round_job j;
    const int counts[] = {1, 2, 3, 7, 1000};
    for (int r = 0; r < 2; r++)
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            int n = counts[k];
            for (int i = 0; i < n; i++) {
                atomic_store(&j.runs[i], 0);
                atomic_store(&j.by[i], -1);
            }
            j.stall = r ? 0 : -1;
            at_compute_run(c, round_chunk, &j, n);
            for (int i = 0; i < n; i++)
                if (atomic_load(&j.runs[i]) != 1)
                    fail_msg("%d chunks: chunk %d ran %d times", n, i, j.runs[i]);
            if (r && n == 1000 && threads > 1 && atomic_load(&j.by[0]) == 0) {
                /* the caller (thread 0) slept in chunk 0: its share went on elsewhere */
                int taken = 0;
                for (int i = 1; i < n / threads; i++) taken += atomic_load(&j.by[i]) != 0;
                assert_true(taken > 0);
            }
        }
    at_compute_free(c);
}

/* The search kernels: log-softmax and log-sum-exp against double
 * arithmetic, -inf kept;
 * argmax the first of equal maxima wherever they fall (SIMD body or
 * tail). */
static void test_search_kernels(void **st)
{
    (void)st;
    enum { N = 1003 };
    static float x[N], y[N];
    unsigned r = 7;
    for (int i = 0; i < N; i++) {
        r = r * 1103515245u + 12345u;
        x[i] = (float)((r >> 8) % 20000) / 1000.0f - 10.0f;
    }
    x[5] = x[999] = -INFINITY;
    memcpy(y, x, sizeof y);
    at_log_softmax(y, N);
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < N; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < N; i++) s += exp((double)x[i] - mx);
    for (int i = 0; i < N; i++) {
        if (isinf(x[i])) {
            assert_true(isinf(y[i]) && y[i] < 0);
            continue;
        }
        double want = x[i] - mx - log(s);
        if (fabs(y[i] - want) > 1e-5) fail_msg("log_softmax[%d] %g, want %g", i, y[i], want);
    }
    /* log-sum-exp of every length from 1 (SIMD body and tail) */
    for (int n = 1; n <= N; n += n < 20 ? 1 : 97) {
        double m = -INFINITY, t = 0;
        for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
        for (int i = 0; i < n; i++) t += exp((double)x[i] - m);
        double got = at_log_sum_exp(x, n), want = m + log(t);
        if (fabs(got - want) > 1e-6) fail_msg("log_sum_exp of %d: %.9g, want %.9g", n, got, want);
    }
    for (int i = 0; i < N; i++) y[i] = -INFINITY;
    assert_true(isinf(at_log_sum_exp(y, N)) && at_log_sum_exp(y, N) < 0);
    assert_true(isinf(at_log_sum_exp(x, 0)) && at_log_sum_exp(x, 0) < 0);
    at_log_softmax(y, N);
    assert_true(isinf(y[0]) && y[0] < 0);
    /* argmax: a maximum placed at each position, a tie after it */
    for (int at = 0; at < N; at += 37) {
        for (int i = 0; i < N; i++) y[i] = x[i] > 9.9f ? 9.9f : x[i];
        y[at] = 50;
        if (at + 9 < N) y[at + 9] = 50;
        assert_int_equal(at_argmax(y, N), at);
        assert_int_equal(at_argmax(y + at, N - at), 0);
    }
    assert_int_equal(at_argmax(x, 1), 0);
}

static void test_isa_cap(void **st)
{
    (void)st;
    at_err err;
    at_compute *c = at_compute_new(1, &err);
    assert_non_null(c);
    assert_int_equal(at_compute_isa(c), at_isa_detect());
    assert_int_equal(at_compute_set_isa(c, AT_ISA_SCALAR), AT_ISA_SCALAR);
    /* asking for more than the CPU has gives what it has */
    assert_int_equal(at_compute_set_isa(c, AT_ISA_AVX512), at_isa_detect());
    assert_string_equal(at_isa_name(AT_ISA_AVX2), "avx2");
    at_compute_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_every_level),
        cmocka_unit_test(test_matmul_types),
        cmocka_unit_test(test_matmul_rows_independent),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_query_independent),
        cmocka_unit_test(test_attention_multi),
        cmocka_unit_test(test_pool_clients),
        cmocka_unit_test(test_pool_rounds),
        cmocka_unit_test(test_isa_cap),
        cmocka_unit_test(test_search_kernels),
        cmocka_unit_test(test_conv_fft),
        cmocka_unit_test(test_elementwise_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
