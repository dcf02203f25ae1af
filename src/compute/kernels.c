/* kernels.c - the CPU kernels on host float buffers: matrix products of
 * every weight type, attention, convolution, norms and activations. */
#include "compute/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/gemm.h"
#include "compute/pool_impl.h"
#include "compute/simd.h"

#if AT_HAVE_X86
/* dot(x, w-row) for the common decoder types, fused (no row copy). */
AT_SIMD static float dot_f32_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AT_SIMD static float dot_f16_avx2(const float *x, const uint8_t *w, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i + 16)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), w0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), w1, s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * rdhalf_f16c(w + 2 * i);
    return s;
}

AT_SIMD static float dot_q8_0_avx2(const float *x, const uint8_t *w, int n)
{
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / AT_QK; b++, w += 34, x += 32) {
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x), i8x8_ps(w + 2));
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), i8x8_ps(w + 10), s);
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), i8x8_ps(w + 18), s);
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), i8x8_ps(w + 26), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(rdhalf_f16c(w)), s, acc);
    }
    return hsum256(acc);
}

AT_SIMD static float dot_q4_0_avx2(const float *x, const uint8_t *w, int n)
{
    __m256 acc = _mm256_setzero_ps(), off = _mm256_set1_ps(-8.0f);
    for (int b = 0; b < n / AT_QK; b++, w += 18, x += 32) {
        __m256 q[4];
        nib32_ps(w + 2, q);
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_add_ps(q[0], off));
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), _mm256_add_ps(q[1], off), s);
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), _mm256_add_ps(q[2], off), s);
        s = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), _mm256_add_ps(q[3], off), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(rdhalf_f16c(w)), s, acc);
    }
    return hsum256(acc);
}

/* exp for a vector: range reduction by ln 2 and a degree-6 polynomial
 * (Cephes coefficients); relative error ~1e-7, enough for softmax/GELU. */
AT_SIMD static inline __m256 exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* exp256 on sixteen lanes. */
AT_SIMD512 static inline __m512 exp512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/* The sums of a[0..15]: lane i of the result is the sum of a[i]'s lanes,
 * added in the same order for every i (pairs within 128-bit lanes, then
 * across them). */
AT_SIMD512 static inline __attribute__((always_inline)) __m512 hsum16_512(const __m512 a[16])
{
    __m512 b[8], c[4];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
    __m512 d0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
    __m512 d1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xDD));
}

/* GELU with erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
AT_SIMD static void gelu_avx2(float *x, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 sgnmask = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
        __m256 az = _mm256_andnot_ps(sgnmask, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
        __m256 p = _mm256_set1_ps(1.061405429f);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
        p = _mm256_mul_ps(p, t);
        __m256 e = exp256(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az));
        __m256 erfa = _mm256_fnmadd_ps(p, e, one);
        __m256 erfz = _mm256_or_ps(erfa, _mm256_and_ps(sgnmask, z));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erfz)));
    }
    for (; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

AT_SIMD static void softmax_avx2(float *x, int n)
{
    int i = 0;
    __m256 mx8 = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) mx8 = _mm256_max_ps(mx8, _mm256_loadu_ps(x + i));
    float tmp[8], mx = -INFINITY;
    _mm256_storeu_ps(tmp, mx8);
    for (int j = 0; j < 8; j++) mx = tmp[j] > mx ? tmp[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    __m256 m = _mm256_set1_ps(mx), s8 = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        s8 = _mm256_add_ps(s8, e);
    }
    float s = hsum256(s8);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    __m256 inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / s;
}
#endif

float at_dot(const float *a, const float *b, int n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) return dot_f32_avx2(a, b, n);
#endif
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------- matmul */

#define TILE_N 64 /* weight rows converted to f32 per chunk (whole panels) */
_Static_assert(TILE_N % AT_GEMM_PANEL == 0, "a tile is whole panels");
#define MR_LCM  12 /* a multiple of every kernel's MR */
/* Below SMALL_M rows a matrix-vector style loop is faster: it converts
 * each weight row once for all the rows; the packed GEMM wins from about
 * 32 rows (bench_nmt, batch 16: 540 -> 865 target tokens/s). */
#define SMALL_M 32

typedef struct {
    at_compute *c;
    const float *X;
    int M, K, N;
    const at_matrix *W;
    const float *bias;
    float *Y;
    int tile_m;   /* rows of X per chunk of a large product */
    int ldx, ldy; /* row strides of X and Y in floats */
    const at_epilogue *ep;
} mm_job;

/* The epilogue of a row of outputs: y = y + bias + r, then leaky ReLU
 * with slope (each term optional), one pass while the row is in cache.
 * Sixteen lanes a step in GCC's vector type, which each instantiation
 * below lowers to its widest registers; lane by lane the same IEEE
 * operations as the scalar tail, so every level gives the same bits. */
typedef float ep_vf __attribute__((vector_size(64)));
typedef int32_t ep_vi __attribute__((vector_size(64)));

#define EP_INLINE static inline __attribute__((always_inline))

EP_INLINE void ep_row_body(float *y, const float *bias, const float *r, int leaky, float slope, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        ep_vf v, t;
        memcpy(&v, y + i, sizeof v);
        if (bias) {
            memcpy(&t, bias + i, sizeof t);
            v += t;
        }
        if (r) {
            memcpy(&t, r + i, sizeof t);
            v += t;
        }
        if (leaky) { /* (v < 0) is -1 or 0 in each lane */
            ep_vi neg = v < 0, a = (ep_vi)v, b = (ep_vi)(v * slope);
            v = (ep_vf)((b & neg) | (a & ~neg));
        }
        memcpy(y + i, &v, sizeof v);
    }
    for (; i < n; i++) {
        float v = y[i];
        if (bias) v += bias[i];
        if (r) v += r[i];
        y[i] = leaky && v < 0 ? v * slope : v;
    }
}

EP_INLINE void leaky_body(float *y, const float *x, size_t n, float div, float slope)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        ep_vf v;
        memcpy(&v, x + i, sizeof v);
        if (div != 1.0f) v /= div;
        ep_vi neg = v < 0, a = (ep_vi)v, b = (ep_vi)(v * slope);
        v = (ep_vf)((b & neg) | (a & ~neg));
        memcpy(y + i, &v, sizeof v);
    }
    for (; i < n; i++) {
        float v = div != 1.0f ? x[i] / div : x[i];
        y[i] = v < 0 ? v * slope : v;
    }
}

EP_INLINE void sum_body(float *y, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        ep_vf u, v;
        memcpy(&u, a + i, sizeof u);
        memcpy(&v, b + i, sizeof v);
        u += v;
        memcpy(y + i, &u, sizeof u);
    }
    for (; i < n; i++) y[i] = a[i] + b[i];
}

static void ep_row_c(float *y, const float *bias, const float *r, int leaky, float slope, int n)
{
    ep_row_body(y, bias, r, leaky, slope, n);
}
static void leaky_c(float *y, const float *x, size_t n, float div, float slope)
{
    leaky_body(y, x, n, div, slope);
}
static void sum_c(float *y, const float *a, const float *b, size_t n) { sum_body(y, a, b, n); }
#if AT_HAVE_X86
AT_SIMD static void ep_row_avx2(float *y, const float *bias, const float *r, int leaky, float slope, int n)
{
    ep_row_body(y, bias, r, leaky, slope, n);
}
AT_SIMD512 static void ep_row_avx512(float *y, const float *bias, const float *r, int leaky, float slope,
                                     int n)
{
    ep_row_body(y, bias, r, leaky, slope, n);
}
AT_SIMD static void leaky_avx2(float *y, const float *x, size_t n, float div, float slope)
{
    leaky_body(y, x, n, div, slope);
}
AT_SIMD512 static void leaky_avx512(float *y, const float *x, size_t n, float div, float slope)
{
    leaky_body(y, x, n, div, slope);
}
AT_SIMD static void sum_avx2(float *y, const float *a, const float *b, size_t n) { sum_body(y, a, b, n); }
AT_SIMD512 static void sum_avx512(float *y, const float *a, const float *b, size_t n)
{
    sum_body(y, a, b, n);
}
#endif

static void ep_row(at_isa isa, float *y, const float *bias, const float *r, int leaky, float slope, int n)
{
#if AT_HAVE_X86
    if (isa >= AT_ISA_AVX512) {
        ep_row_avx512(y, bias, r, leaky, slope, n);
        return;
    }
    if (isa >= AT_ISA_AVX2) {
        ep_row_avx2(y, bias, r, leaky, slope, n);
        return;
    }
#endif
    (void)isa;
    ep_row_c(y, bias, r, leaky, slope, n);
}

void at_leaky_relu(at_isa isa, float *y, const float *x, size_t n, float div, float slope)
{
#if AT_HAVE_X86
    if (isa >= AT_ISA_AVX512) {
        leaky_avx512(y, x, n, div, slope);
        return;
    }
    if (isa >= AT_ISA_AVX2) {
        leaky_avx2(y, x, n, div, slope);
        return;
    }
#endif
    (void)isa;
    leaky_c(y, x, n, div, slope);
}

void at_sum(at_isa isa, float *y, const float *a, const float *b, size_t n)
{
#if AT_HAVE_X86
    if (isa >= AT_ISA_AVX512) {
        sum_avx512(y, a, b, n);
        return;
    }
    if (isa >= AT_ISA_AVX2) {
        sum_avx2(y, a, b, n);
        return;
    }
#endif
    (void)isa;
    sum_c(y, a, b, n);
}

void at_epilogue_rows(at_isa isa, const at_epilogue *ep, float *Y, int ldy, int M, int n)
{
    if (!ep) return;
    for (int m = 0; m < M; m++)
        ep_row(isa, Y + (size_t)m * ldy, NULL, ep->res ? ep->res + (size_t)m * ep->ldr : NULL, ep->leaky,
               ep->slope, n);
}

static float row_dot(int simd, at_dtype t, const float *x, const uint8_t *w, int K, float *buf)
{
#if AT_HAVE_X86
    if (simd) {
        switch (t) {
        case AT_DT_F32: return dot_f32_avx2(x, (const float *)(const void *)w, K);
        case AT_DT_F16: return dot_f16_avx2(x, w, K);
        case AT_DT_Q8_0: return dot_q8_0_avx2(x, w, K);
        case AT_DT_Q4_0: return dot_q4_0_avx2(x, w, K);
        default: at_dequant_row_simd(1, t, w, buf, K); return dot_f32_avx2(x, buf, K);
        }
    }
#endif
    at_dequant_row_simd(0, t, w, buf, K);
    float s = 0;
    for (int i = 0; i < K; i++) s += x[i] * buf[i];
    return s;
}

#define SMALL_ROWS 64 /* output rows per chunk of a matrix-vector product */

#if AT_HAVE_X86
/* Element i of f32 data that may not be aligned (ggml files). */
static inline float ldf(const void *p, int i)
{
    float v;
    memcpy(&v, (const char *)p + (size_t)i * sizeof v, sizeof v);
    return v;
}

/* out[2m + r] = x[m] . w_r for four rows x and two weight rows: eight
 * accumulators, six loads per eight multiply-adds. */
AT_SIMD static inline __attribute__((always_inline)) void rowsx2_avx2_impl(const int R,
                                                                           const float *const x[4],
                                                                           const void *w0p, const void *w1p,
                                                                           int half, int K, float *out)
{
    const float *w0 = w0p, *w1 = w1p;
    const uint8_t *h0 = w0p, *h1 = w1p;
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++) a[m][0] = a[m][1] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v0 =
            half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h0 + 2 * k))) : _mm256_loadu_ps(w0 + k);
        __m256 v1 =
            half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h1 + 2 * k))) : _mm256_loadu_ps(w1 + k);
        _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
        {
            __m256 xv = _mm256_loadu_ps(x[m] + k);
            a[m][0] = _mm256_fmadd_ps(xv, v0, a[m][0]);
            a[m][1] = _mm256_fmadd_ps(xv, v1, a[m][1]);
        }
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
    {
        float s0 = hsum256(a[m][0]), s1 = hsum256(a[m][1]);
        for (int r = k; r < K; r++) {
            s0 += x[m][r] * (half ? rdhalf_f16c(h0 + 2 * r) : ldf(w0p, r));
            s1 += x[m][r] * (half ? rdhalf_f16c(h1 + 2 * r) : ldf(w1p, r));
        }
        out[2 * m] = s0;
        out[2 * m + 1] = s1;
    }
}

/* R (1..4) rows of X against two weight rows; a batch of 5 is 4 + 1
 * rows, not 4 + 4 with three repeated. */
AT_SIMD static void rowsx2_avx2(int R, const float *const x[4], const void *w0, const void *w1, int half,
                                int K, float *out)
{
    switch (R) {
    case 1: rowsx2_avx2_impl(1, x, w0, w1, half, K, out); break;
    case 2: rowsx2_avx2_impl(2, x, w0, w1, half, K, out); break;
    case 3: rowsx2_avx2_impl(3, x, w0, w1, half, K, out); break;
    default: rowsx2_avx2_impl(4, x, w0, w1, half, K, out); break;
    }
}

AT_SIMD512 static inline __attribute__((always_inline)) void
rowsx2_avx512_impl(const int R, const float *const x[4], const void *w0p, const void *w1p, int half, int K,
                   float *out)
{
    const float *w0 = w0p, *w1 = w1p;
    const uint8_t *h0 = w0p, *h1 = w1p;
    __m512 a[4][2];
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++) a[m][0] = a[m][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 v0 = half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h0 + 2 * k)))
                         : _mm512_loadu_ps(w0 + k);
        __m512 v1 = half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h1 + 2 * k)))
                         : _mm512_loadu_ps(w1 + k);
        _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
        {
            __m512 xv = _mm512_loadu_ps(x[m] + k);
            a[m][0] = _mm512_fmadd_ps(xv, v0, a[m][0]);
            a[m][1] = _mm512_fmadd_ps(xv, v1, a[m][1]);
        }
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
    {
        float s0 = _mm512_reduce_add_ps(a[m][0]), s1 = _mm512_reduce_add_ps(a[m][1]);
        for (int r = k; r < K; r++) {
            s0 += x[m][r] * (half ? rdhalf_f16c(h0 + 2 * r) : ldf(w0p, r));
            s1 += x[m][r] * (half ? rdhalf_f16c(h1 + 2 * r) : ldf(w1p, r));
        }
        out[2 * m] = s0;
        out[2 * m + 1] = s1;
    }
}

/* R (1..4) rows of X against two weight rows; a batch of 5 is 4 + 1
 * rows, not 4 + 4 with three repeated. */
AT_SIMD512 static void rowsx2_avx512(int R, const float *const x[4], const void *w0, const void *w1, int half,
                                     int K, float *out)
{
    switch (R) {
    case 1: rowsx2_avx512_impl(1, x, w0, w1, half, K, out); break;
    case 2: rowsx2_avx512_impl(2, x, w0, w1, half, K, out); break;
    case 3: rowsx2_avx512_impl(3, x, w0, w1, half, K, out); break;
    default: rowsx2_avx512_impl(4, x, w0, w1, half, K, out); break;
    }
}

/* The same for q8_0 weight rows, converted in registers: 32 signed bytes
 * times the block's f16 scale (the values at_dequant_row gives), so a
 * batch never writes the weights out as f32. */
#define Q8_BYTES 34 /* a q8_0 block: f16 scale, 32 int8 */

AT_SIMD static inline __attribute__((always_inline)) void
rowsx2_q8_avx2_impl(const int R, const float *const x[4], const uint8_t *w0, const uint8_t *w1, int K,
                    float *out)
{
    __m256 a[4][2];
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++) a[m][0] = a[m][1] = _mm256_setzero_ps();
    for (int b = 0; b < K / AT_QK; b++) {
        const uint8_t *b0 = w0 + (size_t)b * Q8_BYTES, *b1 = w1 + (size_t)b * Q8_BYTES;
        __m256 d0 = _mm256_set1_ps(rdhalf_f16c(b0)), d1 = _mm256_set1_ps(rdhalf_f16c(b1));
        for (int q = 0; q < 4; q++) {
            __m256 v0 = _mm256_mul_ps(i8x8_ps(b0 + 2 + 8 * q), d0),
                   v1 = _mm256_mul_ps(i8x8_ps(b1 + 2 + 8 * q), d1);
            int k = b * AT_QK + 8 * q;
            _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
            {
                __m256 xv = _mm256_loadu_ps(x[m] + k);
                a[m][0] = _mm256_fmadd_ps(xv, v0, a[m][0]);
                a[m][1] = _mm256_fmadd_ps(xv, v1, a[m][1]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
    {
        out[2 * m] = hsum256(a[m][0]);
        out[2 * m + 1] = hsum256(a[m][1]);
    }
}

AT_SIMD static void rowsx2_q8_avx2(int R, const float *const x[4], const uint8_t *w0, const uint8_t *w1,
                                   int K, float *out)
{
    switch (R) {
    case 1: rowsx2_q8_avx2_impl(1, x, w0, w1, K, out); break;
    case 2: rowsx2_q8_avx2_impl(2, x, w0, w1, K, out); break;
    case 3: rowsx2_q8_avx2_impl(3, x, w0, w1, K, out); break;
    default: rowsx2_q8_avx2_impl(4, x, w0, w1, K, out); break;
    }
}

/* lines cache lines at *pf, then *pf moves pf_step bytes on: the
 * four-row kernels' prefetch, a piece with each step along K.  The
 * number of lines is a constant of each kernel: a loop and a test here
 * cost a one-row product over the vocabulary a tenth of its time. */
static inline __attribute__((always_inline)) void prefetch_step(const char **pf, const int lines, int pf_step)
{
    for (int l = 0; l < lines; l++) _mm_prefetch(*pf + 64 * l, _MM_HINT_T0);
    *pf += pf_step;
}

/* The sixteen sums of a[m][r] into out[4m + r] as one vector: pairs of
 * accumulators are interleaved and added at each level (within 128-bit
 * lanes, then across them): 43 operations instead of sixteen horizontal
 * sums' 128, a quarter of a pass's multiply-adds on a 512-element row.
 * Each sum is added in the same order whatever the other fifteen hold,
 * so a row's result does not depend on the rows beside it in a batch. */
AT_SIMD512 static inline __attribute__((always_inline)) void sum16_avx512(__m512 a[4][4], float *out)
{
    __m512 s[8], t[4];
    for (int i = 0; i < 8; i++) {
        __m512 u = a[(2 * i) / 4][(2 * i) % 4], v = a[(2 * i + 1) / 4][(2 * i + 1) % 4];
        s[i] = _mm512_add_ps(_mm512_unpacklo_ps(u, v), _mm512_unpackhi_ps(u, v));
    }
    for (int i = 0; i < 4; i++) {
        __m512d u = _mm512_castps_pd(s[2 * i]), v = _mm512_castps_pd(s[2 * i + 1]);
        t[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u, v)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(u, v)));
    }
    __m512 y01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 y23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(3, 2, 3, 2)));
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(3, 1, 3, 1))));
}

/* AVX-512 has 32 registers: four weight rows against four rows of X, 16
 * accumulators, eight loads per sixteen multiply-adds.  Each pass over
 * the batch reads X once for four weight rows instead of two, which
 * halves the cache traffic that bounds a batch of 16 (the vocabulary
 * projection of a translation batch). */
AT_SIMD512 static inline __attribute__((always_inline)) void
rowsx4_avx512_impl(const int R, const float *const x[4], const uint8_t *const w[4], const int half, int K,
                   float *out, const char *pf, int pf_step)
{
    __m512 a[4][4];
    _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
    {
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[m][r] = _mm512_setzero_ps();
    }
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 v[4];
        prefetch_step(&pf, half ? 2 : 4, pf_step);
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) v[r] =
            half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w[r] + 2 * k)))
                 : _mm512_loadu_ps((const float *)(const void *)w[r] + k);
        _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
        {
            __m512 xv = _mm512_loadu_ps(x[m] + k);
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[m][r] = _mm512_fmadd_ps(xv, v[r], a[m][r]);
        }
    }
    sum16_avx512(a, out);
    for (int m = 0; k < K && m < R; m++)
        for (int r = 0; r < 4; r++) {
            float s = out[4 * m + r];
            for (int i = k; i < K; i++) s += x[m][i] * (half ? rdhalf_f16c(w[r] + 2 * i) : ldf(w[r], i));
            out[4 * m + r] = s;
        }
}

AT_SIMD512 static inline __attribute__((always_inline)) void
rowsx4_q8_avx512_impl(const int R, const float *const x[4], const uint8_t *const w[4], int K, float *out,
                      const char *pf, int pf_step)
{
    __m512 a[4][4];
    _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
    {
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[m][r] = _mm512_setzero_ps();
    }
    for (int b = 0; b < K / AT_QK; b++) {
        __m512 d[4];
        prefetch_step(&pf, 3, pf_step);
        _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) d[r] =
            _mm512_set1_ps(rdhalf_f16c(w[r] + (size_t)b * Q8_BYTES));
        for (int h = 0; h < 2; h++) {
            __m512 v[4];
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) v[r] =
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                  (const __m128i *)(w[r] + (size_t)b * Q8_BYTES + 2 + 16 * h)))),
                              d[r]);
            int k = b * AT_QK + 16 * h;
            _Pragma("GCC unroll 4") for (int m = 0; m < R; m++)
            {
                __m512 xv = _mm512_loadu_ps(x[m] + k);
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) a[m][r] =
                    _mm512_fmadd_ps(xv, v[r], a[m][r]);
            }
        }
    }
    sum16_avx512(a, out);
}

/* R (1..4) rows of X against four weight rows (f32, f16 or q8_0).  pf:
 * bytes to prefetch, pf_step of them with each step along K (at most
 * 128 for f16, 256 for f32, 192 for q8_0), so the next rows arrive spread
 * over this call's work instead of in one burst. */
AT_SIMD512 static void rowsx4_avx512(int R, const float *const x[4], const uint8_t *const w[4], at_dtype t,
                                     int K, float *out, const char *pf, int pf_step)
{
#define AT_ROWSX4(fn, ...)                                                                                   \
    switch (R) {                                                                                             \
    case 1: fn(1, __VA_ARGS__); break;                                                                       \
    case 2: fn(2, __VA_ARGS__); break;                                                                       \
    case 3: fn(3, __VA_ARGS__); break;                                                                       \
    default: fn(4, __VA_ARGS__); break;                                                                      \
    }
    if (t == AT_DT_Q8_0) {
        AT_ROWSX4(rowsx4_q8_avx512_impl, x, w, K, out, pf, pf_step);
    } else if (t == AT_DT_F16) {
        AT_ROWSX4(rowsx4_avx512_impl, x, w, 1, K, out, pf, pf_step);
    } else {
        AT_ROWSX4(rowsx4_avx512_impl, x, w, 0, K, out, pf, pf_step);
    }
#undef AT_ROWSX4
}

/* y += a * x */
AT_SIMD static void axpy_avx2(float a, const float *x, float *y, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

static void mm_small(void *p, int chunk, int ith)
{
    mm_job *j = p;
    int n0 = chunk * SMALL_ROWS, n1 = n0 + SMALL_ROWS < j->N ? n0 + SMALL_ROWS : j->N;
    const uint8_t *base = j->W->data;
    float *buf = j->c->scr[ith];
    for (int n = n0; n < n1; n++) {
        const uint8_t *w = base + (size_t)n * j->W->row_bytes;
        float b = j->bias ? j->bias[n] : 0.0f;
#if AT_HAVE_X86
        at_dtype t = j->W->type;
        if (j->c->simd && j->c->isa >= AT_ISA_AVX512 &&
            (t == AT_DT_F32 || t == AT_DT_F16 || t == AT_DT_Q8_0)) {
            /* one row of X too: sixteen lanes and four weight rows a pass
             * beat the eight-lane dot products below, and a sequence's
             * step gives the same bits alone as in a batch.  The last
             * rows of a chunk repeat its first row, not stored. */
            int nw = n1 - n < 4 ? n1 - n : 4;
            const uint8_t *w4[4];
            float b4[4], o[16];
            for (int r = 0; r < 4; r++) {
                w4[r] = w + (size_t)(r < nw ? r : 0) * j->W->row_bytes;
                b4[r] = j->bias && r < nw ? j->bias[n + r] : 0.0f;
            }
            /* The next four rows, spread along K over all the passes (a
             * burst of 64 lines at once stalled an eight-row batch on
             * memory; asked for in the first pass only, they left memory
             * idle during the second), and past the chunk's end: the pool
             * deals a thread consecutive chunks.  (A prefetch never
             * faults, so rounding the step up may touch a line past the
             * matrix.)  At the matrix's end the prefetches go over these
             * rows, already in cache: cheaper than a test in the kernel's
             * loop. */
            int steps = t == AT_DT_Q8_0 ? j->K / AT_QK : j->K / 16, pf_step = 0, passes = (j->M + 3) / 4;
            size_t span = (size_t)steps * (size_t)passes;
            if (span > 0) pf_step = (int)((4 * j->W->row_bytes + span - 1) / span);
            const char *next = n + 7 < j->N ? (const char *)w + 4 * j->W->row_bytes : NULL;
            for (int m0 = 0; m0 < j->M; m0 += 4) {
                int mm = j->M - m0 < 4 ? j->M - m0 : 4;
                const float *x[4];
                for (int m = 0; m < 4; m++) x[m] = j->X + (size_t)(m0 + (m < mm ? m : 0)) * j->ldx;
                const char *pf =
                    next ? next + (size_t)(m0 / 4) * (size_t)steps * (size_t)pf_step : (const char *)w;
                rowsx4_avx512(mm, x, w4, t, j->K, o, pf, pf_step);
                for (int m = 0; m < mm; m++) {
                    float *y = j->Y + (size_t)(m0 + m) * j->ldy + n;
                    if (nw == 4) {
                        _mm_storeu_ps(y, _mm_add_ps(_mm_loadu_ps(o + 4 * m), _mm_loadu_ps(b4)));
                        continue;
                    }
                    for (int r = 0; r < nw; r++) y[r] = o[4 * m + r] + b4[r];
                }
            }
            n += nw - 1;
            continue;
        }
        if (j->c->simd && j->M > 1) {
            /* several rows: convert two weight rows once, then four rows
             * of X a pass against both */
            int pair = n + 1 < n1;
            const uint8_t *w1 = pair ? w + j->W->row_bytes : w;
            const void *wf0 = w, *wf1 = w1;
            int half = j->W->type == AT_DT_F16, q8 = j->W->type == AT_DT_Q8_0; /* converted in registers */
            if (j->W->type != AT_DT_F32 && !half && !q8) {
                at_dequant_row(j->W->type, w, buf, j->K);
                if (pair) at_dequant_row(j->W->type, w1, buf + j->K, j->K);
                wf0 = buf;
                wf1 = pair ? buf + j->K : buf;
            }
            /* the next pair's rows: a batch spends long enough on each
             * pair that the hardware prefetcher falls behind */
            if (n + 3 < n1)
                for (size_t l = 0; l < 2 * j->W->row_bytes; l += 64)
                    _mm_prefetch((const char *)(w + 2 * j->W->row_bytes + l), _MM_HINT_T0);
            float b1 = pair && j->bias ? j->bias[n + 1] : 0.0f, o[8];
            for (int m0 = 0; m0 < j->M; m0 += 4) {
                int mm = j->M - m0 < 4 ? j->M - m0 : 4;
                const float *x[4];
                for (int m = 0; m < 4; m++) x[m] = j->X + (size_t)(m0 + (m < mm ? m : 0)) * j->ldx;
                if (q8)
                    rowsx2_q8_avx2(mm, x, wf0, wf1, j->K, o);
                else if (j->c->isa >= AT_ISA_AVX512)
                    rowsx2_avx512(mm, x, wf0, wf1, half, j->K, o);
                else
                    rowsx2_avx2(mm, x, wf0, wf1, half, j->K, o);
                for (int m = 0; m < mm; m++) {
                    j->Y[(size_t)(m0 + m) * j->ldy + n] = o[2 * m] + b;
                    if (pair) j->Y[(size_t)(m0 + m) * j->ldy + n + 1] = o[2 * m + 1] + b1;
                }
            }
            n += pair;
            continue;
        }
        if (j->c->simd && n + 4 < n1)
            for (size_t l = 0; l < j->W->row_bytes; l += 64)
                _mm_prefetch((const char *)(w + 4 * j->W->row_bytes + l), _MM_HINT_T0);
#endif
        for (int m = 0; m < j->M; m++)
            j->Y[(size_t)m * j->ldy + n] =
                row_dot(j->c->simd, j->W->type, j->X + (size_t)m * j->ldx, w, j->K, buf) + b;
    }
}

static void mm_big(void *p, int t, int ith)
{
    mm_job *j = p;
    float *buf = j->c->scr[ith];
    int n_tiles = (j->N + TILE_N - 1) / TILE_N;
    int n0 = (t % n_tiles) * TILE_N, tn = j->N - n0 < TILE_N ? j->N - n0 : TILE_N;
    int m0 = (t / n_tiles) * j->tile_m, tm = j->M - m0 < j->tile_m ? j->M - m0 : j->tile_m;
    const float *Wt;
    int ldb = j->K, b_trans = 1;
    float *Y = j->Y + (size_t)m0 * j->ldy + n0;
    if (j->W->packed) { /* TILE_N is a multiple of the panel width */
        at_gemm_packed(j->c->isa, tm, tn, j->K, 1.0f, j->X + (size_t)m0 * j->ldx, j->ldx,
                       (const float *)j->W->data + (size_t)n0 * j->K, 0, Y, j->ldy, j->c->pack[ith]);
        goto epilogue;
    }
    if (j->W->input_major) {
        Wt = (const float *)j->W->data + n0;
        ldb = (int)(j->W->row_bytes / sizeof(float));
        b_trans = 0;
    } else if (j->W->type == AT_DT_F32) {
        Wt = (const float *)((const uint8_t *)j->W->data + (size_t)n0 * j->W->row_bytes);
    } else {
        for (int r = 0; r < tn; r++)
            at_dequant_row(j->W->type, (const uint8_t *)j->W->data + (size_t)(n0 + r) * j->W->row_bytes,
                           buf + (size_t)r * j->K, j->K);
        Wt = buf;
    }
    at_gemm(j->c->isa, tm, tn, j->K, 1.0f, j->X + (size_t)m0 * j->ldx, j->ldx, Wt, ldb, b_trans, 0, Y, j->ldy,
            j->c->pack[ith]);
epilogue:
    if (j->bias || j->ep)
        for (int m = 0; m < tm; m++)
            ep_row(j->c->isa, Y + (size_t)m * j->ldy, j->bias ? j->bias + n0 : NULL,
                   j->ep && j->ep->res ? j->ep->res + (size_t)(m0 + m) * j->ep->ldr + n0 : NULL,
                   j->ep && j->ep->leaky, j->ep ? j->ep->slope : 1.0f, tn);
}

static int matmul_locked(at_compute *c, const float *X, int ldx, int M, const at_matrix *W, const float *bias,
                         const at_epilogue *ep, float *Y, int ldy, at_err *err)
{
    mm_job j = {c, X, M, W->cols, W->rows, W, bias, Y, 0, ldx, ldy, ep};
    if (M < SMALL_M && !W->input_major && !W->packed) {
        if (at_compute_reserve(c, 2 * (size_t)W->cols, err))
            return err && err->code < 0 ? err->code : AT_E_NOMEM;
        at_compute_run(c, mm_small, &j, (j.N + SMALL_ROWS - 1) / SMALL_ROWS);
        at_epilogue_rows(c->isa, ep, Y, ldy, M, W->rows); /* few rows */
    } else {
        if (W->type != AT_DT_F32 && at_compute_reserve(c, (size_t)TILE_N * (size_t)W->cols, err))
            return err && err->code < 0 ? err->code : AT_E_NOMEM;
        /* Each chunk converts and packs its weight tile once for all its
         * rows: split the rows only as far as the threads need work. */
        int n_tiles = (j.N + TILE_N - 1) / TILE_N;
        int m_blocks = (4 * c->n + n_tiles - 1) / n_tiles;
        if (m_blocks < 1) m_blocks = 1;
        j.tile_m = ((M + m_blocks - 1) / m_blocks + MR_LCM - 1) / MR_LCM * MR_LCM;
        at_compute_run(c, mm_big, &j, n_tiles * ((M + j.tile_m - 1) / j.tile_m));
    }
    return 0;
}

int at_matmul(at_compute *c, const float *X, int M, const at_matrix *W, const float *bias, float *Y,
              at_err *err)
{
    if (M <= 0) return 0;
    /* the scratch sizes and the run belong together: one caller at a time */
    at_compute *r = at_compute_op_begin(c);
    int rc = matmul_locked(r, X, W->cols, M, W, bias, NULL, Y, W->rows, err);
    pthread_mutex_unlock(&r->op_mu);
    return rc;
}

int at_matmul_ld(at_compute *c, const float *X, int ldx, int M, const at_matrix *W, const float *bias,
                 float *Y, int ldy, at_err *err)
{
    if (M <= 0) return 0;
    return at_matmul_ep(c, X, ldx, M, W, bias, NULL, Y, ldy, err);
}

int at_matmul_ep(at_compute *c, const float *X, int ldx, int M, const at_matrix *W, const float *bias,
                 const at_epilogue *ep, float *Y, int ldy, at_err *err)
{
    if (M <= 0) return 0;
    at_compute *r = at_compute_op_begin(c);
    int rc = matmul_locked(r, X, ldx, M, W, bias, ep, Y, ldy, err);
    pthread_mutex_unlock(&r->op_mu);
    return rc;
}

/* ------------------------------------------------------------ elementwise */

void at_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

#if AT_HAVE_X86
/* The row's mean and variance in double, sixteen partial sums at a time:
 * one running sum waited 4 cycles an element, 4 000 cycles a row of 512,
 * and a batched decoder step's norms (8 rows, 19 norms) run on one
 * thread between the parallel products. */
AT_SIMD static void moments_avx2(const float *x, int n, double *mean, double *var)
{
    __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int u = 0; u < 4; u++) s[u] = _mm256_add_pd(s[u], _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * u)));
    double t[4], sum = 0;
    _mm256_storeu_pd(t, _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3])));
    sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) sum += x[i];
    double mu = sum / n;
    __m256d mv = _mm256_set1_pd(mu);
    for (int u = 0; u < 4; u++) s[u] = _mm256_setzero_pd();
    for (i = 0; i + 16 <= n; i += 16)
        for (int u = 0; u < 4; u++) {
            __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * u)), mv);
            s[u] = _mm256_add_pd(s[u], _mm256_mul_pd(d, d));
        }
    _mm256_storeu_pd(t, _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3])));
    sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) sum += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *var = sum / n;
}
#endif

void at_layer_norm(const float *x, int M, int N, const float *w, const float *b, float eps, float *y)
{
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * N;
        float *yr = y + (size_t)m * N;
        /* two-pass in double: rows of large activations lose precision in
         * a single-pass float variance */
        double mean = 0, var = 0;
#if AT_HAVE_X86
        if (at_simd_ok())
            moments_avx2(xr, N, &mean, &var);
        else
#endif
        {
            for (int i = 0; i < N; i++) mean += xr[i];
            mean /= N;
            for (int i = 0; i < N; i++) {
                double d = xr[i] - mean;
                var += d * d;
            }
            var /= N;
        }
        float inv = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        if (b)
            for (int i = 0; i < N; i++) yr[i] = (xr[i] - mu) * inv * w[i] + b[i];
        else
            for (int i = 0; i < N; i++) yr[i] = (xr[i] - mu) * inv * w[i];
    }
}

void at_gelu(float *x, size_t n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) {
        gelu_avx2(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void at_relu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void at_silu(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void at_sigmoid(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
}

void at_tanh(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}

/* WaveNet's gate, tanh(a) sigmoid(b), from one exponential each:
 * tanh |a| = 1 - 2 / (exp(2 |a|) + 1) (within 1e-7 of libm's, absolute:
 * the cancellation near 0 loses relative, not absolute, precision) and
 * sigmoid b = 1 / (1 + exp(-b)); exp256/exp512 clamp their argument, so
 * large inputs saturate to +-1 and 0 or 1 without overflow. */
#if AT_HAVE_X86
AT_SIMD static void tanh_sigmoid_avx2(float *y, const float *a, const float *b, int n)
{
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        __m256 s = _mm256_and_ps(va, sign), ab = _mm256_andnot_ps(sign, va);
        __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp256(_mm256_add_ps(ab, ab)), one)));
        __m256 g = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), vb))));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_or_ps(t, s), g));
    }
    for (; i < n; i++) y[i] = tanhf(a[i]) * (1.0f / (1.0f + expf(-b[i])));
}

AT_SIMD512 static void tanh_sigmoid_avx512(float *y, const float *a, const float *b, int n)
{
    const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
    const __m512i sign = _mm512_set1_epi32(INT32_MIN);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
        __m512i ia = _mm512_castps_si512(va), s = _mm512_and_si512(ia, sign);
        __m512 ab = _mm512_castsi512_ps(_mm512_andnot_si512(sign, ia));
        __m512 t = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp512(_mm512_add_ps(ab, ab)), one)));
        __m512 g = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), vb))));
        t = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), s));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(t, g));
    }
    for (; i < n; i++) y[i] = tanhf(a[i]) * (1.0f / (1.0f + expf(-b[i])));
}
#endif

void at_tanh_sigmoid(at_isa isa, float *y, const float *a, const float *b, int n)
{
#if AT_HAVE_X86
    if (isa >= AT_ISA_AVX512) {
        tanh_sigmoid_avx512(y, a, b, n);
        return;
    }
    if (isa >= AT_ISA_AVX2) {
        tanh_sigmoid_avx2(y, a, b, n);
        return;
    }
#endif
    (void)isa;
    for (int i = 0; i < n; i++) y[i] = tanhf(a[i]) * (1.0f / (1.0f + expf(-b[i])));
}

#if AT_HAVE_X86
/* The largest of n values (-INFINITY for none). */
AT_SIMD static float max_avx2(const float *x, int n)
{
    int i = 0;
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
    float tmp[8], mx = -INFINITY;
    _mm256_storeu_ps(tmp, m8);
    for (int j = 0; j < 8; j++) mx = tmp[j] > mx ? tmp[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

AT_SIMD static void log_softmax_avx2(float *x, int n)
{
    float mx = max_avx2(x, n);
    if (mx == -INFINITY) return;
    __m256 m = _mm256_set1_ps(mx), s8 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) s8 = _mm256_add_ps(s8, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
    float s = hsum256(s8);
    for (; i < n; i++) s += expf(x[i] - mx);
    float lse = mx + logf(s);
    __m256 l = _mm256_set1_ps(lse);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), l));
    for (; i < n; i++) x[i] -= lse;
}

/* log(sum(exp(x))) with the exponentials in vectors and their sum in
 * double precision (a search compares such sums over 51 865 logits). */
AT_SIMD static double log_sum_exp_avx2(const float *x, int n)
{
    float mx = max_avx2(x, n);
    if (mx == -INFINITY) return -INFINITY;
    __m256 m = _mm256_set1_ps(mx), ninf = _mm256_set1_ps(-INFINITY);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(v, m)), _mm256_cmp_ps(v, ninf, _CMP_NEQ_OQ));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4], s = 0;
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* The first index holding the maximum: 8 at a time by mask. */
AT_SIMD static int argmax_avx2(const float *x, int n)
{
    float mx = max_avx2(x, n);
    __m256 m = _mm256_set1_ps(mx);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), m, _CMP_EQ_OQ));
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
    for (; i < n; i++)
        if (x[i] == mx) return i;
    return 0; /* every value NaN */
}
#endif

void at_log_softmax(float *x, int n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) {
        log_softmax_avx2(x, n);
        return;
    }
#endif
    float mx = -INFINITY;
    double s = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) return;
    for (int i = 0; i < n; i++) s += expf(x[i] - mx);
    float lse = mx + (float)log(s);
    for (int i = 0; i < n; i++) x[i] -= lse;
}

double at_log_sum_exp(const float *x, int n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) return log_sum_exp_avx2(x, n);
#endif
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) return -INFINITY;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

int at_argmax(const float *x, int n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) return argmax_avx2(x, n);
#endif
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void at_softmax(float *x, int n)
{
#if AT_HAVE_X86
    if (at_simd_ok()) {
        softmax_avx2(x, n);
        return;
    }
#endif
    float mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= s;
}

/* ------------------------------------------------------------- attention */

#define ATT_CHUNK 256 /* query rows per task: the keys are packed once for them all; scratch 256 x Tk */

typedef struct {
    at_compute *c;
    const float *Q, *K, *V;
    int ldq, ldk, ldv, ldo;
    int Tq, Tk, n_head, hd, causal;
    float scale;
    float *O;
    int hg; /* heads a task takes */
} att_job;

#define ATT_GEMM_MIN 16 /* fewer query rows: one at a time (no key packing) */

/* Keys query row i sees among the first tk: all, or up to its own
 * position under a causal mask. */
static inline int att_len(const att_job *j, int i, int tk)
{
    return j->causal >= 0 && j->causal + i + 1 < tk ? j->causal + i + 1 : tk;
}

/* Query row i of head h: scores over its visible keys, softmax, weighted
 * sum of the values.  S: scratch of Tk floats. */
#if AT_HAVE_X86
#define ATT_HD_MAX 128 /* head sizes the register kernel takes (Whisper's and NLLB's are 64) */

/* att_one with the query and the output in AVX-512 registers: four keys'
 * dot products at a time, and the weighted sum of the values without
 * storing the output per key.  hd: a multiple of 16, at most ATT_HD_MAX. */
AT_SIMD512 static void att_one_avx512(const att_job *j, const float *q, float *o, int h, int len, float *S)
{
    int nv = j->hd / 16;
    __m512 qv[ATT_HD_MAX / 16], ov[ATT_HD_MAX / 16];
    __m512 sc = _mm512_set1_ps(j->scale);
    for (int c = 0; c < nv; c++) {
        qv[c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), sc);
        ov[c] = _mm512_setzero_ps();
    }
    const float *K = j->K + h * j->hd, *V = j->V + h * j->hd;
    int k = 0;
    for (; k + 4 <= len; k += 4) {
        const float *k0 = K + (size_t)k * j->ldk;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < nv; c++) {
            a0 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 16 * c), a0);
            a1 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + j->ldk + 16 * c), a1);
            a2 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 2 * (size_t)j->ldk + 16 * c), a2);
            a3 = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(k0 + 3 * (size_t)j->ldk + 16 * c), a3);
        }
        S[k] = _mm512_reduce_add_ps(a0);
        S[k + 1] = _mm512_reduce_add_ps(a1);
        S[k + 2] = _mm512_reduce_add_ps(a2);
        S[k + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; k < len; k++) {
        __m512 a = _mm512_setzero_ps();
        for (int c = 0; c < nv; c++)
            a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(K + (size_t)k * j->ldk + 16 * c), a);
        S[k] = _mm512_reduce_add_ps(a);
    }
    at_softmax(S, len);
    for (k = 0; k < len; k++) {
        __m512 p = _mm512_set1_ps(S[k]);
        const float *v = V + (size_t)k * j->ldv;
        for (int c = 0; c < nv; c++) ov[c] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v + 16 * c), ov[c]);
    }
    for (int c = 0; c < nv; c++) _mm512_storeu_ps(o + 16 * c, ov[c]);
}
#endif

#if AT_HAVE_X86
/* Up to four queries of one head on the same keys (beams, or the steps of
 * several sequences on one audio): each key's and value's slice is loaded
 * once for all of them, instead of once per query.  Scores of query r go
 * to S + r * tk; query r sees its first lens[r] keys. */
AT_SIMD512 static void att_group_avx512(const att_job *j, int h, int i0, int g, const int *lens, int tk,
                                        float *S)
{
    int nv = j->hd / 16, lmax = 0;
    __m512 qv[4][ATT_HD_MAX / 16];
    __m512 sc = _mm512_set1_ps(j->scale);
    for (int r = 0; r < 4; r++) {
        int rr = r < g ? r : g - 1; /* padding rows repeat the last query */
        const float *q = j->Q + (size_t)(i0 + rr) * j->ldq + h * j->hd;
        for (int c = 0; c < nv; c++) qv[r][c] = _mm512_mul_ps(_mm512_loadu_ps(q + 16 * c), sc);
        if (r < g && lens[r] > lmax) lmax = lens[r];
    }
    const float *K = j->K + h * j->hd, *V = j->V + h * j->hd;
    for (int k = 0; k < lmax; k++) {
        const float *kr = K + (size_t)k * j->ldk;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < nv; c++) {
            __m512 kv = _mm512_loadu_ps(kr + 16 * c);
            a0 = _mm512_fmadd_ps(qv[0][c], kv, a0);
            a1 = _mm512_fmadd_ps(qv[1][c], kv, a1);
            a2 = _mm512_fmadd_ps(qv[2][c], kv, a2);
            a3 = _mm512_fmadd_ps(qv[3][c], kv, a3);
        }
        S[k] = _mm512_reduce_add_ps(a0);
        if (g > 1) S[tk + k] = _mm512_reduce_add_ps(a1);
        if (g > 2) S[2 * (size_t)tk + k] = _mm512_reduce_add_ps(a2);
        if (g > 3) S[3 * (size_t)tk + k] = _mm512_reduce_add_ps(a3);
    }
    for (int r = 0; r < g; r++) {
        at_softmax(S + (size_t)r * tk, lens[r]);
        for (int k = lens[r]; k < lmax; k++) S[(size_t)r * tk + k] = 0.0f;
    }
    /* the outputs of all g queries live in registers: 4 x nv <= 32 */
    __m512 ov[4][ATT_HD_MAX / 16];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < nv; c++) ov[r][c] = _mm512_setzero_ps();
    for (int k = 0; k < lmax; k++) {
        const float *vr = V + (size_t)k * j->ldv;
        __m512 p0 = _mm512_set1_ps(S[k]), p1 = _mm512_set1_ps(g > 1 ? S[tk + k] : 0.0f);
        __m512 p2 = _mm512_set1_ps(g > 2 ? S[2 * (size_t)tk + k] : 0.0f);
        __m512 p3 = _mm512_set1_ps(g > 3 ? S[3 * (size_t)tk + k] : 0.0f);
        for (int c = 0; c < nv; c++) {
            __m512 v = _mm512_loadu_ps(vr + 16 * c);
            ov[0][c] = _mm512_fmadd_ps(p0, v, ov[0][c]);
            ov[1][c] = _mm512_fmadd_ps(p1, v, ov[1][c]);
            ov[2][c] = _mm512_fmadd_ps(p2, v, ov[2][c]);
            ov[3][c] = _mm512_fmadd_ps(p3, v, ov[3][c]);
        }
    }
    for (int r = 0; r < g; r++) {
        float *o = j->O + (size_t)(i0 + r) * j->ldo + h * j->hd;
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(o + 16 * c, ov[r][c]);
    }
}
#endif

#if AT_HAVE_X86
/* The four sums of a0..a3, in that order. */
AT_SIMD static inline __m128 hsum4_256(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

#define ATT_GROUP_AVX2 8 /* queries per pass of the AVX2 kernel */
/* Keys ahead to prefetch: a head's slice of a key or value row is a few
 * cache lines a row apart (the row holds every head), a stride the
 * hardware prefetchers follow poorly. */
#define ATT_PREFETCH   16

/* AVX2 attention for R (1..8) queries of one head on the same keys (up
 * to ATT_SPLIT_MIN_KEYS keys: more go by key blocks, below): the steps of
 * several sequences, beams, or one query.  Scores four keys at a time
 * per query (the four key rows stay in L1 for all R queries, so a key
 * row comes from L2 or memory once, not once per query), then the
 * weighted sum of the values sixteen columns at a time (eight
 * for more than four queries) with the outputs in registers, no store
 * per key.  Query r sees its first lens[r] keys; its scores go to
 * S + r * tk.  hd: a multiple of 16, at most ATT_HD_MAX. */
AT_SIMD static inline __attribute__((always_inline)) void
att_group_avx2_impl(const int R, const att_job *j, int h, int i0, const int *lens, int tk, float *S)
{
    const int hd = j->hd, nc = hd / 8, W = R <= 4 ? 2 : 1; /* W: column chunks of 8 per pass */
    float qs[ATT_GROUP_AVX2][ATT_HD_MAX];
    int lmax = 0;
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
    {
        const float *q = j->Q + (size_t)(i0 + r) * j->ldq + h * hd;
        for (int d = 0; d < hd; d++) qs[r][d] = q[d] * j->scale;
        if (lens[r] > lmax) lmax = lens[r];
    }
    const float *K = j->K + h * hd, *V = j->V + h * hd;
    int k = 0;
    for (; k + 4 <= lmax; k += 4) {
        const float *k0 = K + (size_t)k * j->ldk, *k1 = k0 + j->ldk, *k2 = k1 + j->ldk, *k3 = k2 + j->ldk;
        if (k + ATT_PREFETCH + 4 <= lmax)
            for (int x = 0; x < 4; x++)
                for (int l = 0; l < hd; l += 16)
                    _mm_prefetch((const char *)(K + (size_t)(k + ATT_PREFETCH + x) * j->ldk + l),
                                 _MM_HINT_T0);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int c = 0; c < nc; c++) {
                __m256 qv = _mm256_loadu_ps(qs[r] + 8 * c);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 8 * c), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + 8 * c), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + 8 * c), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + 8 * c), a3);
            }
            _mm_storeu_ps(S + (size_t)r * tk + k, hsum4_256(a0, a1, a2, a3));
        }
    }
    for (; k < lmax; k++) {
        const float *kr = K + (size_t)k * j->ldk;
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        {
            __m256 a = _mm256_setzero_ps();
            for (int c = 0; c < nc; c++)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(qs[r] + 8 * c), _mm256_loadu_ps(kr + 8 * c), a);
            S[(size_t)r * tk + k] = hsum256(a);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
    {
        at_softmax(S + (size_t)r * tk, lens[r]);
        for (int x = lens[r]; x < lmax; x++) S[(size_t)r * tk + x] = 0.0f;
    }
    for (int c = 0; c < hd; c += 8 * W) {
        __m256 o[ATT_GROUP_AVX2][2];
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) o[r][0] = o[r][1] = _mm256_setzero_ps();
        for (k = 0; k < lmax; k++) {
            const float *vr = V + (size_t)k * j->ldv + c;
            if (k + ATT_PREFETCH < lmax)
                _mm_prefetch((const char *)(vr + ATT_PREFETCH * (size_t)j->ldv), _MM_HINT_T0);
            __m256 v0 = _mm256_loadu_ps(vr), v1 = W > 1 ? _mm256_loadu_ps(vr + 8) : v0;
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            {
                __m256 p = _mm256_broadcast_ss(S + (size_t)r * tk + k);
                o[r][0] = _mm256_fmadd_ps(p, v0, o[r][0]);
                if (W > 1) o[r][1] = _mm256_fmadd_ps(p, v1, o[r][1]);
            }
        }
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        {
            float *out = j->O + (size_t)(i0 + r) * j->ldo + h * hd + c;
            _mm256_storeu_ps(out, o[r][0]);
            if (W > 1) _mm256_storeu_ps(out + 8, o[r][1]);
        }
    }
}

AT_SIMD static void att_group_avx2(const att_job *j, int h, int i0, int g, const int *lens, int tk, float *S)
{
    switch (g) {
    case 1: att_group_avx2_impl(1, j, h, i0, lens, tk, S); break;
    case 2: att_group_avx2_impl(2, j, h, i0, lens, tk, S); break;
    case 3: att_group_avx2_impl(3, j, h, i0, lens, tk, S); break;
    case 4: att_group_avx2_impl(4, j, h, i0, lens, tk, S); break;
    case 5: att_group_avx2_impl(5, j, h, i0, lens, tk, S); break;
    case 6: att_group_avx2_impl(6, j, h, i0, lens, tk, S); break;
    case 7: att_group_avx2_impl(7, j, h, i0, lens, tk, S); break;
    default: att_group_avx2_impl(8, j, h, i0, lens, tk, S); break;
    }
}
#endif

#if AT_HAVE_X86
/* Few queries on many keys (a decoder step's cross-attention: 1500 keys
 * of every head, 6 MB a layer for base): split over blocks of keys, all
 * heads at once ("flash decoding").  The per-head kernel above reads a
 * head's slice of each key row, a few cache lines every row of D floats,
 * which the prefetchers follow poorly (a third of the bandwidth of a
 * sequential read, measured here); a block of whole rows streams.  A
 * task takes a run of consecutive blocks (how many depends on the number
 * of keys only) and keeps, per query and head, a running maximum, sum and
 * output over them (online softmax); the caller merges the tasks' states
 * in order.  A task's result does not depend on which thread ran it or on
 * how many threads the pool had free, so a sequence's logits are the same
 * on every run. */
#define ATT_SPLIT_MIN_KEYS 256 /* fewer keys: one task per head */
#define ATT_KBLK           64  /* keys per block */
#define ATT_SPLIT_TASKS    4   /* tasks at most (a decoder step has other work for more threads) */

typedef struct {
    const att_job *j;
    int i0, g, kmax;
    int per;     /* blocks per task */
    int block64; /* att_block64 (AVX-512, heads of 64), else att_split_block */
    int n_tasks;
    size_t state0; /* where its tasks' states start in the shared buffer */
    int lens[ATT_GROUP_AVX2];
} att_split;

/* a task's state: O (g*H*hd), m (g*H), l (g*H); per thread, a block's
 * scores (g*H*ATT_KBLK) */
static size_t att_state_floats(int GH, int hd) { return (size_t)GH * (hd + 2); }

/* Task t's state for GH query-heads: returns O, sets m and l. */
static float *att_split_state(const att_split *a, int t, int GH, float **m, float **l)
{
    const att_job *j = a->j;
    float *O = j->c->shared + a->state0 + (size_t)t * att_state_floats(GH, j->hd);
    *m = O + (size_t)GH * j->hd;
    *l = *m + GH;
    return O;
}

/* Four consecutive rows from row k of a matrix of stride ld; rows past
 * the nk that exist repeat row k (their weights or scores are not used). */
static inline void att_rows4(const float *base, int ld, int k, int nk, const float *out[4])
{
    for (int x = 0; x < 4; x++) out[x] = base + (size_t)(k + (x < nk ? x : 0)) * ld;
}

/* Folds one block's scores (n of them, -INFINITY where masked) into a
 * query-head's running state: rescales O and l to the new maximum *m and
 * turns the scores into probabilities relative to it. */
AT_SIMD static void att_fold(float *row, int n, float *m, float *l, float *O, int hd)
{
    float mb = -INFINITY;
    for (int x = 0; x < n; x++) mb = row[x] > mb ? row[x] : mb;
    if (mb == -INFINITY) { /* no visible key in this block */
        for (int x = 0; x < n; x++) row[x] = 0.0f;
        return;
    }
    float M = *m > mb ? *m : mb;
    if (*m != M) {
        float f = *m == -INFINITY ? 0.0f : expf(*m - M);
        for (int d = 0; d < hd; d++) O[d] *= f;
        *l *= f;
        *m = M;
    }
    __m256 mv = _mm256_set1_ps(M), ninf = _mm256_set1_ps(-INFINITY), sum = _mm256_setzero_ps();
    int x = 0;
    for (; x + 8 <= n; x += 8) {
        __m256 v = _mm256_loadu_ps(row + x);
        __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(v, mv)), _mm256_cmp_ps(v, ninf, _CMP_NEQ_OQ));
        _mm256_storeu_ps(row + x, e);
        sum = _mm256_add_ps(sum, e);
    }
    float ls = hsum256(sum);
    for (; x < n; x++) ls += row[x] = row[x] == -INFINITY ? 0.0f : expf(row[x] - M);
    *l += ls;
}

/* One block of keys: scores, folded into the state (O, m, l). */
AT_SIMD static void att_split_block(const att_split *a, int blk, float *O, float *m, float *l, float *S)
{
    const att_job *j = a->j;
    const int H = j->n_head, hd = j->hd, g = a->g, nc = hd / 8, GH = g * H;
    int k0 = blk * ATT_KBLK, k1 = k0 + ATT_KBLK < a->kmax ? k0 + ATT_KBLK : a->kmax, n = k1 - k0;
    for (int k = k0; k < k1; k += 4) {
        int nk = k1 - k < 4 ? k1 - k : 4;
        const float *kr[4];
        att_rows4(j->K, j->ldk, k, nk, kr);
        for (int h = 0; h < H; h++)
            for (int r = 0; r < g; r++) {
                const float *q = j->Q + (size_t)(a->i0 + r) * j->ldq + h * hd;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int c = 0; c < nc; c++) {
                    __m256 qv = _mm256_loadu_ps(q + 8 * c);
                    int o = h * hd + 8 * c;
                    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[0] + o), a0);
                    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[1] + o), a1);
                    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[2] + o), a2);
                    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[3] + o), a3);
                }
                float sc[4];
                _mm_storeu_ps(sc, hsum4_256(a0, a1, a2, a3));
                float *row = S + (size_t)(r * H + h) * ATT_KBLK + (k - k0);
                for (int x = 0; x < nk; x++) row[x] = k + x < a->lens[r] ? sc[x] * j->scale : -INFINITY;
            }
    }
    for (int rh = 0; rh < GH; rh++)
        att_fold(S + (size_t)rh * ATT_KBLK, n, m + rh, l + rh, O + (size_t)rh * hd, hd);
    /* the weighted sum of whole value rows, four at a time */
    for (int k = k0; k < k1; k += 4) {
        int nk = k1 - k < 4 ? k1 - k : 4;
        const float *vr[4];
        att_rows4(j->V, j->ldv, k, nk, vr);
        for (int h = 0; h < H; h++)
            for (int r = 0; r < g; r++) {
                const float *row = S + (size_t)(r * H + h) * ATT_KBLK + (k - k0);
                __m256 p0 = _mm256_set1_ps(row[0]), p1 = _mm256_set1_ps(nk > 1 ? row[1] : 0.0f),
                       p2 = _mm256_set1_ps(nk > 2 ? row[2] : 0.0f),
                       p3 = _mm256_set1_ps(nk > 3 ? row[3] : 0.0f);
                float *o = O + (size_t)(r * H + h) * hd;
                for (int c = 0; c < nc; c++) {
                    int off = h * hd + 8 * c;
                    __m256 acc = _mm256_loadu_ps(o + 8 * c);
                    acc = _mm256_fmadd_ps(p0, _mm256_loadu_ps(vr[0] + off), acc);
                    acc = _mm256_fmadd_ps(p1, _mm256_loadu_ps(vr[1] + off), acc);
                    acc = _mm256_fmadd_ps(p2, _mm256_loadu_ps(vr[2] + off), acc);
                    acc = _mm256_fmadd_ps(p3, _mm256_loadu_ps(vr[3] + off), acc);
                    _mm256_storeu_ps(o + 8 * c, acc);
                }
            }
    }
}

/* att_fold for a head of 64 with AVX-512 (row: the block's n scores). */
AT_SIMD512 static inline __attribute__((always_inline)) void att_fold64(float *row, int n, float *m, float *l,
                                                                        float *O)
{
    const int nv = (n + 15) / 16;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 v[ATT_KBLK / 16], mx = ninf;
    for (int c = 0; c < nv; c++) {
        int left = n - 16 * c;
        v[c] = _mm512_mask_loadu_ps(ninf, left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1),
                                    row + 16 * c);
        mx = _mm512_max_ps(mx, v[c]);
    }
    float mb = _mm512_reduce_max_ps(mx);
    if (mb == -INFINITY) { /* no visible key in this block */
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(row + 16 * c, _mm512_setzero_ps());
        return;
    }
    float M = *m > mb ? *m : mb;
    if (*m != M) {
        float f = *m == -INFINITY ? 0.0f : expf(*m - M);
        __m512 fv = _mm512_set1_ps(f);
        for (int c = 0; c < 4; c++)
            _mm512_storeu_ps(O + 16 * c, _mm512_mul_ps(fv, _mm512_loadu_ps(O + 16 * c)));
        *l *= f;
        *m = M;
    }
    __m512 mv = _mm512_set1_ps(M), sum = _mm512_setzero_ps();
    for (int c = 0; c < nv; c++) {
        __m512 e =
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v[c], ninf, _CMP_NEQ_OQ), exp512(_mm512_sub_ps(v[c], mv)));
        _mm512_storeu_ps(row + 16 * c, e);
        sum = _mm512_add_ps(sum, e);
    }
    *l += _mm512_reduce_add_ps(sum);
}

/* The weighted sum of a block's values (n rows of a head's 64 columns,
 * ldv apart) for G (1 or 2) queries with probabilities p[r], added to
 * their outputs o[r]: even and odd keys in separate registers, so that a
 * query's multiply-adds do not wait on each other.  A query's sum does
 * not depend on the other query of the pair. */
AT_SIMD512 static inline __attribute__((always_inline)) void
att_vsum64(const int G, const float *V, int ldv, int n, const float *const p[2], float *const o[2])
{
    __m512 a[2][2][4];
    for (int r = 0; r < G; r++)
        for (int u = 0; u < 2; u++)
            for (int c = 0; c < 4; c++) a[r][u][c] = _mm512_setzero_ps();
    int x = 0;
    for (; x + 2 <= n; x += 2, V += 2 * (size_t)ldv)
        for (int u = 0; u < 2; u++) {
            const float *vr = V + (size_t)u * ldv;
            __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16);
            __m512 v2 = _mm512_loadu_ps(vr + 32), v3 = _mm512_loadu_ps(vr + 48);
            for (int r = 0; r < G; r++) {
                __m512 pb = _mm512_set1_ps(p[r][x + u]);
                a[r][u][0] = _mm512_fmadd_ps(pb, v0, a[r][u][0]);
                a[r][u][1] = _mm512_fmadd_ps(pb, v1, a[r][u][1]);
                a[r][u][2] = _mm512_fmadd_ps(pb, v2, a[r][u][2]);
                a[r][u][3] = _mm512_fmadd_ps(pb, v3, a[r][u][3]);
            }
        }
    if (x < n)
        for (int r = 0; r < G; r++) {
            __m512 pb = _mm512_set1_ps(p[r][x]);
            for (int c = 0; c < 4; c++)
                a[r][0][c] = _mm512_fmadd_ps(pb, _mm512_loadu_ps(V + 16 * c), a[r][0][c]);
        }
    for (int r = 0; r < G; r++)
        for (int c = 0; c < 4; c++)
            _mm512_storeu_ps(o[r] + 16 * c, _mm512_add_ps(_mm512_loadu_ps(o[r] + 16 * c),
                                                          _mm512_add_ps(a[r][0][c], a[r][1][c])));
}

/* att_split_block for heads of 64 with AVX-512 and R queries (1..8), a
 * head at a time: its scores, their fold into the state, and the
 * weighted sum of its values, while the head's slices of the block are in
 * L1.  Scores go two queries on eight keys a pass (16 accumulators, one
 * transposing sum for the sixteen dot products instead of a horizontal
 * sum each).  Every query's result is the same bits whatever R is and
 * whichever query it is paired with, so a batched step matches the same
 * sequence stepped alone. */
AT_SIMD512 static inline __attribute__((always_inline)) void
att_block64_impl(const int R, const att_split *a, int blk, float *O, float *m, float *l, float *S)
{
    const att_job *j = a->j;
    const int H = j->n_head;
    /* S: the head's scores, R rows of ATT_KBLK; then room for its slices */
    float *Ks = S + (size_t)ATT_GROUP_AVX2 * ATT_KBLK, *Vs = Ks + 64 * ATT_KBLK;
    int k0 = blk * ATT_KBLK, k1 = k0 + ATT_KBLK < a->kmax ? k0 + ATT_KBLK : a->kmax, n = k1 - k0;
    const __m512 sc = _mm512_set1_ps(j->scale), ninf = _mm512_set1_ps(-INFINITY);
    const int per = (8 + (R + 1) / 2 - 1) / ((R + 1) / 2); /* rows of 8 each pair prefetches */
    for (int h = 0; h < H; h++) {
        /* the head's slices of the block's keys and values: in place for
         * one or two queries, or for rows an odd number of cache lines
         * apart (a padded memory), which go round all the L1 sets; else
         * copied together first, since rows 2 KB apart (Whisper base's)
         * fall into two sets and would evict each other between the
         * queries */
        const float *kh = j->K + (size_t)k0 * j->ldk + h * 64, *vh = j->V + (size_t)k0 * j->ldv + h * 64;
        int ldk = j->ldk, ldv = j->ldv;
        const float *pk = NULL, *pv = NULL;
        if (R > 2) {
            /* the next head's slices (the next block's first, after the
             * last head) are fetched while this head's scores run: asked
             * for during the copy, they arrived too late to overlap with
             * anything but the copy, and the cache's keys and values come
             * from memory in a batched step (a beam's or a stream's) */
            pk = h + 1 < H ? kh + 64 : j->K + (size_t)k1 * j->ldk;
            pv = h + 1 < H ? vh + 64 : j->V + (size_t)k1 * j->ldv;
        }
        if (R > 2 && (ldk % 32 == 0 || ldv % 32 == 0)) {
            for (int x = 0; x < n; x++) {
                for (int c = 0; c < 64; c += 16) {
                    _mm512_storeu_ps(Ks + x * 64 + c, _mm512_loadu_ps(kh + (size_t)x * ldk + c));
                    _mm512_storeu_ps(Vs + x * 64 + c, _mm512_loadu_ps(vh + (size_t)x * ldv + c));
                }
            }
            kh = Ks, vh = Vs, ldk = ldv = 64;
        }
        /* a pair of queries at a time over all the block's keys, the pair
         * held in registers: reloaded for every key, they made the
         * scores wait on loads (three for every two multiply-adds) */
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r += 2)
        {
            int r1 = r + 1 < R ? r + 1 : r;
            const float *qa = j->Q + (size_t)(a->i0 + r) * j->ldq + h * 64;
            const float *qb = j->Q + (size_t)(a->i0 + r1) * j->ldq + h * 64;
            __m512 qva[4], qvb[4];
            for (int c = 0; c < 4; c++)
                qva[c] = _mm512_loadu_ps(qa + 16 * c), qvb[c] = _mm512_loadu_ps(qb + 16 * c);
            for (int x0 = 0; x0 < n; x0 += 8) {
                __m512 acc[16];
                if (pk) /* each pair asks for its share of these 8 rows */
                    for (int x = x0 + (r / 2) * per; x < x0 + (r / 2 + 1) * per && x < x0 + 8 && x < n; x++)
                        for (int c = 0; c < 64; c += 16) {
                            _mm_prefetch((const char *)(pk + (size_t)x * j->ldk + c), _MM_HINT_T0);
                            _mm_prefetch((const char *)(pv + (size_t)x * j->ldv + c), _MM_HINT_T0);
                        }
                for (int i = 0; i < 8; i++) {
                    const float *kr = kh + (size_t)(x0 + i < n ? x0 + i : n - 1) * ldk;
                    __m512 k = _mm512_loadu_ps(kr);
                    __m512 ta = _mm512_mul_ps(qva[0], k), tb = _mm512_mul_ps(qvb[0], k);
                    for (int c = 1; c < 4; c++) {
                        k = _mm512_loadu_ps(kr + 16 * c);
                        ta = _mm512_fmadd_ps(qva[c], k, ta);
                        tb = _mm512_fmadd_ps(qvb[c], k, tb);
                    }
                    acc[i] = ta, acc[8 + i] = tb;
                }
                /* lanes 0-7: query r on keys x0.., lanes 8-15: query r1 */
                int va = (a->lens[r] < k1 ? a->lens[r] : k1) - (k0 + x0);
                int vb = (a->lens[r1] < k1 ? a->lens[r1] : k1) - (k0 + x0);
                unsigned ma = va >= 8 ? 0xFFu : va <= 0 ? 0u : (1u << va) - 1;
                unsigned mb = vb >= 8 ? 0xFFu : vb <= 0 ? 0u : (1u << vb) - 1;
                __m512 sv = _mm512_mask_mul_ps(ninf, (__mmask16)(ma | mb << 8), hsum16_512(acc), sc);
                _mm512_mask_storeu_ps(S + (size_t)r * ATT_KBLK + x0, 0x00FF, sv);
                if (r1 != r) _mm512_mask_storeu_ps(S + (size_t)r1 * ATT_KBLK + x0 - 8, 0xFF00, sv);
            }
        }
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        {
            int rh = r * H + h;
            att_fold64(S + (size_t)r * ATT_KBLK, n, m + rh, l + rh, O + (size_t)rh * 64);
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r += 2)
        {
            int r1 = r + 1 < R ? r + 1 : r;
            const float *p[2] = {S + (size_t)r * ATT_KBLK, S + (size_t)r1 * ATT_KBLK};
            float *o[2] = {O + (size_t)(r * H + h) * 64, O + (size_t)(r1 * H + h) * 64};
            if (r1 != r)
                att_vsum64(2, vh, ldv, n, p, o);
            else
                att_vsum64(1, vh, ldv, n, p, o);
        }
    }
}

AT_SIMD512 static void att_block64(const att_split *a, int blk, float *O, float *m, float *l, float *S)
{
    switch (a->g) {
    case 1: att_block64_impl(1, a, blk, O, m, l, S); break;
    case 2: att_block64_impl(2, a, blk, O, m, l, S); break;
    case 3: att_block64_impl(3, a, blk, O, m, l, S); break;
    case 4: att_block64_impl(4, a, blk, O, m, l, S); break;
    case 5: att_block64_impl(5, a, blk, O, m, l, S); break;
    case 6: att_block64_impl(6, a, blk, O, m, l, S); break;
    case 7: att_block64_impl(7, a, blk, O, m, l, S); break;
    default: att_block64_impl(8, a, blk, O, m, l, S); break;
    }
}

/* Task t: blocks t*per .. of keys, folded one after another into the
 * task's state. */
AT_SIMD static void att_split_task(const att_split *a, int t, int ith)
{
    const att_job *j = a->j;
    const int hd = j->hd, GH = a->g * j->n_head;
    float *m, *l, *O = att_split_state(a, t, GH, &m, &l), *S = j->c->scr[ith];
    memset(O, 0, (size_t)GH * hd * sizeof *O);
    for (int rh = 0; rh < GH; rh++) m[rh] = -INFINITY, l[rh] = 0.0f;
    for (int blk = t * a->per; blk < (t + 1) * a->per && blk * ATT_KBLK < a->kmax; blk++)
        if (a->block64)
            att_block64(a, blk, O, m, l, S);
        else
            att_split_block(a, blk, O, m, l, S);
}

/* Plans queries i0..i0+g-1 (g <= ATT_GROUP_AVX2) by key blocks: at most
 * ATT_SPLIT_TASKS tasks of consecutive blocks, whatever the threads
 * (fewer states to clear and merge).  Returns the floats of state its
 * tasks need. */
static size_t att_split_plan(const att_job *j, int i0, int g, att_split *a)
{
    *a = (att_split){j, i0, g, 0, 1, j->c->isa >= AT_ISA_AVX512 && j->hd == 64, 0, 0, {0}};
    for (int r = 0; r < g; r++) {
        a->lens[r] = att_len(j, i0 + r, j->Tk);
        if (a->lens[r] > a->kmax) a->kmax = a->lens[r];
    }
    int blocks = (a->kmax + ATT_KBLK - 1) / ATT_KBLK;
    a->per = (blocks + ATT_SPLIT_TASKS - 1) / ATT_SPLIT_TASKS;
    /* analyzer: kmax >= 1: every query row attends to at least one key
     * NOLINTNEXTLINE(clang-analyzer-core.DivideZero) */
    a->n_tasks = (blocks + a->per - 1) / a->per;
    return (size_t)a->n_tasks * att_state_floats(g * j->n_head, j->hd);
}

/* Merges the tasks' states of a in order into the outputs. */
AT_SIMD static void att_split_merge(const att_split *a)
{
    const att_job *j = a->j;
    const int H = j->n_head, hd = j->hd, GH = a->g * H;
    for (int rh = 0; rh < GH; rh++) {
        float M = -INFINITY, L = 0.0f;
        for (int t = 0; t < a->n_tasks; t++) {
            float *m, *l;
            att_split_state(a, t, GH, &m, &l);
            M = m[rh] > M ? m[rh] : M;
        }
        float *out = j->O + (size_t)(a->i0 + rh / H) * j->ldo + (rh % H) * hd;
        for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(out + d, _mm256_setzero_ps());
        for (int t = 0; t < a->n_tasks; t++) {
            float *m, *l, *O = att_split_state(a, t, GH, &m, &l);
            if (m[rh] == -INFINITY) continue;
            float f = expf(m[rh] - M);
            L += f * l[rh];
            __m256 fv = _mm256_set1_ps(f);
            for (int d = 0; d < hd; d += 8)
                _mm256_storeu_ps(out + d, _mm256_fmadd_ps(fv, _mm256_loadu_ps(O + (size_t)rh * hd + d),
                                                          _mm256_loadu_ps(out + d)));
        }
        __m256 lv = _mm256_set1_ps(L);
        for (int d = 0; d < hd; d += 8)
            _mm256_storeu_ps(out + d, _mm256_div_ps(_mm256_loadu_ps(out + d), lv));
    }
}
#endif

static void att_one(const att_job *j, int h, int i, int tk, float *S)
{
    float scale = j->scale;
    int len = att_len(j, i, tk);
    const float *q = j->Q + (size_t)i * j->ldq + h * j->hd;
#if AT_HAVE_X86
    if (j->c->isa >= AT_ISA_AVX512 && j->hd % 16 == 0 && j->hd <= ATT_HD_MAX) {
        att_one_avx512(j, q, j->O + (size_t)i * j->ldo + h * j->hd, h, len, S);
        return;
    }
#endif
    for (int k = 0; k < len; k++) S[k] = scale * at_dot(q, j->K + (size_t)k * j->ldk + h * j->hd, j->hd);
    at_softmax(S, len);
    float *o = j->O + (size_t)i * j->ldo + h * j->hd;
    for (int d = 0; d < j->hd; d++) o[d] = 0.0f;
    for (int k = 0; k < len; k++) {
        const float *v = j->V + (size_t)k * j->ldv + h * j->hd;
#if AT_HAVE_X86
        if (j->c->simd) {
            axpy_avx2(S[k], v, o, j->hd);
            continue;
        }
#endif
        for (int d = 0; d < j->hd; d++) o[d] += S[k] * v[d];
    }
}

static void att_task(void *p, int t, int ith)
{
    att_job *j = p;
    float *S = j->c->scr[ith];
    float scale = j->scale;
    int hg = j->hg, ng = (j->n_head + hg - 1) / hg;
    for (int h = (t % ng) * hg; h < (t % ng + 1) * hg && h < j->n_head; h++) {
        int i0 = (t / ng) * ATT_CHUNK;
        int ch = j->Tq - i0 < ATT_CHUNK ? j->Tq - i0 : ATT_CHUNK;
        /* keys visible to the last row of the chunk bound the work */
        int tk = j->Tk;
        if (j->causal >= 0 && j->causal + i0 + ch < tk) tk = j->causal + i0 + ch;
        if (ch < ATT_GEMM_MIN) {
            /* few queries (decoder steps): per query, scores, softmax and
             * a weighted sum; packing the keys for a GEMM costs more */
#if AT_HAVE_X86
            int avx512 = ch > 1 && j->c->isa >= AT_ISA_AVX512 && j->hd % 16 == 0 && j->hd <= 64;
            int avx2 = j->c->simd && j->c->isa < AT_ISA_AVX512 && j->hd % 16 == 0 && j->hd <= ATT_HD_MAX;
            if (avx512 || avx2) {
                int gmax = avx512 ? 4 : ATT_GROUP_AVX2;
                for (int r = 0; r < ch; r += gmax) {
                    int g = ch - r < gmax ? ch - r : gmax, lens[ATT_GROUP_AVX2];
                    for (int q = 0; q < g; q++) {
                        int i = i0 + r + q;
                        lens[q] = att_len(j, i, tk);
                    }
                    if (avx512)
                        att_group_avx512(j, h, i0 + r, g, lens, tk, S);
                    else
                        att_group_avx2(j, h, i0 + r, g, lens, tk, S);
                }
                continue;
            }
#endif
            for (int r = 0; r < ch; r++) att_one(j, h, i0 + r, tk, S);
            continue;
        }
        float *pack = j->c->pack[ith];
        at_gemm(j->c->isa, ch, tk, j->hd, scale, j->Q + (size_t)i0 * j->ldq + h * j->hd, j->ldq,
                j->K + h * j->hd, j->ldk, 1, 0, S, tk, pack);
        for (int r = 0; r < ch; r++) {
            float *row = S + (size_t)r * tk;
            int len = att_len(j, i0 + r, tk);
            at_softmax(row, len);
            for (int k = len; k < tk; k++) row[k] = 0.0f;
        }
        at_gemm(j->c->isa, ch, j->hd, tk, 1.0f, S, tk, j->V + h * j->hd, j->ldv, 0, 0,
                j->O + (size_t)i0 * j->ldo + h * j->hd, j->ldo, pack);
    }
}

/* The calls of one at_attention_multi, as tasks of one round on the pool:
 * first every split group's block runs, then every other call's (query
 * chunk, head) tasks.  A task does what it would do in its own call, so
 * each call's output is the same bits as when it runs alone. */
#define ATT_MULTI_MAX 32 /* calls a round takes; more go in further rounds */

typedef struct {
    att_job jobs[ATT_MULTI_MAX];
#if AT_HAVE_X86
    att_split splits[ATT_MULTI_MAX * ((ATT_GEMM_MIN + ATT_GROUP_AVX2 - 1) / ATT_GROUP_AVX2)];
#endif
    int first[ATT_MULTI_MAX * 3]; /* first task of each split group, then of each call's tasks */
    int owner[ATT_MULTI_MAX * 3]; /* the group or call a range belongs to; -1: a split group */
    int n_ranges, n_tasks;
} att_multi;

static void att_multi_task(void *p, int t, int ith)
{
    att_multi *mu = p;
    int lo = 0, hi = mu->n_ranges - 1;
    while (lo < hi) { /* the last range starting at or before t */
        int mid = (lo + hi + 1) / 2;
        if (mu->first[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    int k = mu->owner[lo];
#if AT_HAVE_X86
    if (k < 0) {
        att_split_task(&mu->splits[-k - 1], t - mu->first[lo], ith);
        return;
    }
#endif
    att_task(&mu->jobs[k], t - mu->first[lo], ith);
}

/* Up to ATT_MULTI_MAX calls on r (locked) in one round. */
static int att_multi_round(at_compute *r, const at_attn_call *calls, int n, int n_head, int hd, float scale,
                           att_multi *mu, at_err *err)
{
    size_t scr = 0, shared = 0;
    int n_splits = 0;
    char by_blocks[ATT_MULTI_MAX] = {0};
    mu->n_ranges = mu->n_tasks = 0;
    for (int i = 0; i < n; i++) {
        const at_attn_call *q = &calls[i];
        mu->jobs[i] = (att_job){
            r,      q->Q,  q->K,  q->V,   q->ldq, q->ldk,    q->ldv,
            q->ldo, q->Tq, q->Tk, n_head, hd,     q->causal, scale > 0 ? scale : 1.0f / sqrtf((float)hd),
            q->O,   1};
    }
#if AT_HAVE_X86
    /* few queries on many keys: by key blocks */
    for (int i = 0; i < n; i++) {
        const at_attn_call *q = &calls[i];
        if (!(r->simd && q->Tq > 0 && q->Tq < ATT_GEMM_MIN && q->Tk >= ATT_SPLIT_MIN_KEYS && hd % 8 == 0))
            continue;
        for (int i0 = 0; i0 < q->Tq; i0 += ATT_GROUP_AVX2) {
            att_split *a = &mu->splits[n_splits];
            size_t need = att_split_plan(&mu->jobs[i], i0,
                                         q->Tq - i0 < ATT_GROUP_AVX2 ? q->Tq - i0 : ATT_GROUP_AVX2, a);
            a->state0 = shared;
            shared += need;
            mu->first[mu->n_ranges] = mu->n_tasks;
            mu->owner[mu->n_ranges++] = -(n_splits + 1);
            mu->n_tasks += a->n_tasks;
            n_splits++;
        }
        /* per thread: a block's scores (att_block64: a head's, and the
         * head's slices of the block) */
        size_t s1 = (size_t)ATT_GROUP_AVX2 * n_head * ATT_KBLK,
               s64 = (size_t)(ATT_GROUP_AVX2 + 128) * ATT_KBLK;
        if (s1 > scr) scr = s1;
        if (s64 > scr) scr = s64;
        by_blocks[i] = 1;
    }
#endif
    /* A decoder step's (sequence, head) tasks are small: a batch's 64
     * cost more to claim and count than to run, so a task then takes
     * several heads, about eight tasks a thread in all. */
    int small = 0, hg = 1;
    for (int i = 0; i < n; i++)
        if (!by_blocks[i] && calls[i].Tq > 0 && calls[i].Tq < ATT_GEMM_MIN && calls[i].Tk > 0)
            small += n_head;
    if (small > 8 * r->n) hg = (small + 8 * r->n - 1) / (8 * r->n);
    for (int i = 0; i < n; i++) {
        const at_attn_call *q = &calls[i];
        if (by_blocks[i] || q->Tq <= 0 || q->Tk <= 0) continue;
        /* a task holds the scores of its chunk of queries: a decoder step
         * needs one row, not a whole chunk's */
        size_t s1 = (size_t)(q->Tq < ATT_CHUNK ? q->Tq : ATT_CHUNK) * (size_t)q->Tk;
        if (s1 > scr) scr = s1;
        if (q->Tq < ATT_GEMM_MIN) mu->jobs[i].hg = hg;
        mu->first[mu->n_ranges] = mu->n_tasks;
        mu->owner[mu->n_ranges++] = i;
        mu->n_tasks +=
            ((q->Tq + ATT_CHUNK - 1) / ATT_CHUNK) * ((n_head + mu->jobs[i].hg - 1) / mu->jobs[i].hg);
    }
    if (at_compute_reserve(r, scr, err) || at_compute_reserve_shared(r, shared, err))
        return err && err->code < 0 ? err->code : AT_E_NOMEM;
    at_compute_run(r, att_multi_task, mu, mu->n_tasks);
#if AT_HAVE_X86
    for (int s = 0; s < n_splits; s++) att_split_merge(&mu->splits[s]);
#endif
    return 0;
}

int at_attention_multi(at_compute *c, const at_attn_call *calls, int n_calls, int n_head, int hd, float scale,
                       at_err *err)
{
    if (n_calls <= 0) return 0;
    att_multi mu; /* about 9 KB: every decoder layer calls this, so not from the heap */
    at_compute *r = at_compute_op_begin(c);
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_calls; i += ATT_MULTI_MAX)
        rc = att_multi_round(r, calls + i, n_calls - i < ATT_MULTI_MAX ? n_calls - i : ATT_MULTI_MAX, n_head,
                             hd, scale, &mu, err);
    pthread_mutex_unlock(&r->op_mu);
    return rc;
}

int at_attention(at_compute *c, const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                 int Tq, int Tk, int n_head, int hd, int causal, float scale, float *O, int ldo, at_err *err)
{
    at_attn_call q = {Q, K, V, O, ldq, ldk, ldv, ldo, Tq, Tk, causal};
    return at_attention_multi(c, &q, 1, n_head, hd, scale, err);
}
