/* cpu.c - the CPU implementation of backend.h.
 *
 * SIMD: kernels marked AT_SIMD are compiled for AVX2+FMA+F16C with a
 * target attribute and used only when the running CPU has those features
 * (checked once per context), so a default (-march=x86-64) build is both
 * portable and fast.  Every kernel has a scalar twin.  Unaligned data (a
 * ggml file packs tensors without padding) is read with loadu/memcpy. */
#include "compute/backend.h"

#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#define AT_HAVE_X86 1
#include <immintrin.h>
#define AT_SIMD    __attribute__((target("avx2,fma,f16c")))
#define AT_SIMD512 __attribute__((target("avx512f,avx2,fma,f16c")))
#else
#define AT_HAVE_X86 0
#endif

/* ---------------------------------------------------------------- types */

int at_dtype_valid(int t)
{
    switch (t) {
    case AT_DT_F32:
    case AT_DT_F16:
    case AT_DT_Q4_0:
    case AT_DT_Q4_1:
    case AT_DT_Q5_0:
    case AT_DT_Q5_1:
    case AT_DT_Q8_0:
    case AT_DT_BF16: return 1;
    default: return 0;
    }
}

const char *at_dtype_name(at_dtype t)
{
    switch (t) {
    case AT_DT_F32: return "f32";
    case AT_DT_F16: return "f16";
    case AT_DT_Q4_0: return "q4_0";
    case AT_DT_Q4_1: return "q4_1";
    case AT_DT_Q5_0: return "q5_0";
    case AT_DT_Q5_1: return "q5_1";
    case AT_DT_Q8_0: return "q8_0";
    case AT_DT_BF16: return "bf16";
    }
    return "?";
}

int at_dtype_block(at_dtype t)
{
    switch (t) {
    case AT_DT_F32:
    case AT_DT_F16:
    case AT_DT_BF16: return 1;
    default: return AT_QK;
    }
}

/* ggml block layouts (QK = 32): q4_0 {f16 d; u8 qs[16]}, q4_1 {f16 d, m;
 * u8 qs[16]}, q5_0 {f16 d; u8 qh[4]; u8 qs[16]}, q5_1 {f16 d, m; u8 qh[4];
 * u8 qs[16]}, q8_0 {f16 d; i8 qs[32]}. */
size_t at_dtype_block_bytes(at_dtype t)
{
    switch (t) {
    case AT_DT_F32: return 4;
    case AT_DT_F16:
    case AT_DT_BF16: return 2;
    case AT_DT_Q4_0: return 18;
    case AT_DT_Q4_1: return 20;
    case AT_DT_Q5_0: return 22;
    case AT_DT_Q5_1: return 24;
    case AT_DT_Q8_0: return 34;
    }
    return 0;
}

size_t at_dtype_row_bytes(at_dtype t, int64_t n)
{
    int blk = at_dtype_block(t);
    if (n < 0 || n % blk) return 0;
    return (size_t)(n / blk) * at_dtype_block_bytes(t);
}

float at_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (e == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize the mantissa */
            int s = -1;
            do {
                s++;
                man <<= 1;
            } while (!(man & 0x400u));
            man &= 0x3ffu;
            bits = sign | ((uint32_t)(112 - s) << 23) | (man << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((e + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t at_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf / nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: subnormal half */
        float v;
        memcpy(&v, &ax, 4);
        return (uint16_t)(sign | (uint16_t)lrintf(v * 16777216.0f));
    }
    ax += 0xfffu + ((ax >> 13) & 1u); /* round to nearest even */
    ax -= 112u << 23;
    return (uint16_t)(sign | (ax >> 13));
}

float at_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float rdhalf(const uint8_t *p) { return at_f16_to_f32(rd16(p)); }

/* ------------------------------------------------------ dequantization */

static void dequant_scalar(at_dtype t, const void *src, float *dst, int n)
{
    const uint8_t *p = src;
    switch (t) {
    case AT_DT_F32: memcpy(dst, src, (size_t)n * 4); return;
    case AT_DT_F16:
        for (int i = 0; i < n; i++) dst[i] = rdhalf(p + 2 * i);
        return;
    case AT_DT_BF16:
        for (int i = 0; i < n; i++) dst[i] = at_bf16_to_f32(rd16(p + 2 * i));
        return;
    default: break;
    }
    size_t bb = at_dtype_block_bytes(t);
    for (int b = 0; b < n / AT_QK; b++, p += bb) {
        float *y = dst + b * AT_QK;
        float d = rdhalf(p);
        switch (t) {
        case AT_DT_Q8_0:
            for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)p[2 + j];
            break;
        case AT_DT_Q4_0:
            for (int j = 0; j < 16; j++) {
                y[j] = d * (float)((p[2 + j] & 0x0f) - 8);
                y[j + 16] = d * (float)((p[2 + j] >> 4) - 8);
            }
            break;
        case AT_DT_Q4_1: {
            float m = rdhalf(p + 2);
            for (int j = 0; j < 16; j++) {
                y[j] = d * (float)(p[4 + j] & 0x0f) + m;
                y[j + 16] = d * (float)(p[4 + j] >> 4) + m;
            }
            break;
        }
        case AT_DT_Q5_0: {
            uint32_t qh;
            memcpy(&qh, p + 2, 4);
            for (int j = 0; j < 16; j++) {
                int h0 = (int)((qh >> j) << 4) & 0x10;
                int h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = d * (float)(((p[6 + j] & 0x0f) | h0) - 16);
                y[j + 16] = d * (float)(((p[6 + j] >> 4) | h1) - 16);
            }
            break;
        }
        case AT_DT_Q5_1: {
            float m = rdhalf(p + 2);
            uint32_t qh;
            memcpy(&qh, p + 4, 4);
            for (int j = 0; j < 16; j++) {
                int h0 = (int)((qh >> j) << 4) & 0x10;
                int h1 = (int)(qh >> (j + 12)) & 0x10;
                y[j] = d * (float)((p[8 + j] & 0x0f) | h0) + m;
                y[j + 16] = d * (float)((p[8 + j] >> 4) | h1) + m;
            }
            break;
        }
        default: break;
        }
    }
}

#if AT_HAVE_X86
/* The F16C instruction: the scalar conversion per block was the largest
 * cost of quantized decoding. */
AT_SIMD static inline float rdhalf_f16c(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

AT_SIMD static float hsum256(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    return _mm_cvtss_f32(lo);
}

/* 8 signed bytes -> 8 floats */
AT_SIMD static inline __m256 i8x8_ps(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* 32 4-bit values of a q4 block (low nibbles = 0..15, high = 16..31) as
 * four vectors of 8 unsigned ints, as floats. */
AT_SIMD static inline void nib32_ps(const uint8_t *qs, __m256 out[4])
{
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(v, m);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

AT_SIMD static void dequant_avx2(at_dtype t, const void *src, float *dst, int n)
{
    const uint8_t *p = src;
    if (t == AT_DT_F16) {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
        for (; i < n; i++) dst[i] = rdhalf_f16c(p + 2 * i);
        return;
    }
    if (t == AT_DT_Q8_0) {
        for (int b = 0; b < n / AT_QK; b++, p += 34) {
            __m256 d = _mm256_set1_ps(rdhalf_f16c(p));
            float *y = dst + b * AT_QK;
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(d, i8x8_ps(p + 2 + 8 * j)));
        }
        return;
    }
    if (t == AT_DT_Q4_0) {
        __m256 off = _mm256_set1_ps(-8.0f);
        for (int b = 0; b < n / AT_QK; b++, p += 18) {
            __m256 d = _mm256_set1_ps(rdhalf_f16c(p)), q[4];
            nib32_ps(p + 2, q);
            float *y = dst + b * AT_QK;
            for (int j = 0; j < 4; j++)
                _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(d, _mm256_add_ps(q[j], off)));
        }
        return;
    }
    if (t == AT_DT_BF16) {
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
            _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; i < n; i++) dst[i] = at_bf16_to_f32(rd16(p + 2 * i));
        return;
    }
    if (t == AT_DT_Q4_1 || t == AT_DT_Q5_0 || t == AT_DT_Q5_1) {
        size_t bb = at_dtype_block_bytes(t);
        int has_m = t != AT_DT_Q5_0, has_h = t != AT_DT_Q4_1;
        for (int b = 0; b < n / AT_QK; b++, p += bb) {
            __m256 d = _mm256_set1_ps(rdhalf_f16c(p)),
                   m = _mm256_set1_ps(has_m ? rdhalf_f16c(p + 2) : -16.0f), q[4];
            const uint8_t *qs = p + 2 + (has_m ? 2 : 0) + (has_h ? 4 : 0);
            nib32_ps(qs, q);
            float *y = dst + b * AT_QK;
            if (has_h) { /* fifth bits: element j's in bit j of qh */
                uint32_t qh;
                memcpy(&qh, p + 2 + (has_m ? 2 : 0), 4);
                const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
                for (int k = 0; k < 4; k++) {
                    __m256i hv = _mm256_and_si256(_mm256_set1_epi32((int)(qh >> (8 * k))), bit);
                    __m256 h = _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(hv, bit)),
                                             _mm256_set1_ps(16.0f));
                    q[k] = _mm256_add_ps(q[k], h);
                }
            }
            /* q5_0: d*(q-16); q4_1/q5_1: d*q + m */
            for (int k = 0; k < 4; k++)
                _mm256_storeu_ps(y + 8 * k, has_m ? _mm256_fmadd_ps(d, q[k], m)
                                                  : _mm256_mul_ps(d, _mm256_add_ps(q[k], m)));
        }
        return;
    }
    dequant_scalar(t, src, dst, n);
}

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

/* Features are checked once per process by the compiler runtime; reading
 * them is cheap, so no cached global is needed. */
static int simd_ok(void)
{
#if AT_HAVE_X86
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return 1;
#else
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#endif
#else
    return 0;
#endif
}

at_isa at_isa_detect(void)
{
#if AT_HAVE_X86
    /* libgcc's feature bits include the OS check (XGETBV) for AVX and
     * AVX-512 state */
    if (!simd_ok()) return AT_ISA_SCALAR;
    return __builtin_cpu_supports("avx512f") ? AT_ISA_AVX512 : AT_ISA_AVX2;
#else
    return AT_ISA_SCALAR;
#endif
}

const char *at_isa_name(at_isa isa)
{
    switch (isa) {
    case AT_ISA_AVX512: return "avx512";
    case AT_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

void at_cpu_name(char *out, size_t cap)
{
    if (cap == 0) return;
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512], name[256] = "";
    int model = -1;
    while (fgets(line, sizeof line, f) && (!name[0] || model < 0)) {
        const char *v = strchr(line, ':');
        if (!v) continue;
        if (!name[0] && !strncmp(line, "model name", 10))
            snprintf(name, sizeof name, "%s", v + 2);
        else if (model < 0 && !strncmp(line, "model\t", 6))
            model = atoi(v + 1);
    }
    fclose(f);
    name[strcspn(name, "\n")] = '\0';
    if (name[0]) snprintf(out, cap, "%s (model %d)", name, model);
}

void at_dequant_row(at_dtype t, const void *src, float *dst, int n)
{
#if AT_HAVE_X86
    if (simd_ok()) {
        dequant_avx2(t, src, dst, n);
        return;
    }
#endif
    dequant_scalar(t, src, dst, n);
}

float at_dot(const float *a, const float *b, int n)
{
#if AT_HAVE_X86
    if (simd_ok()) return dot_f32_avx2(a, b, n);
#endif
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* --------------------------------------------------------- quantization */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

size_t at_quant_row(at_dtype t, const float *x, void *dst, int n)
{
    uint8_t *p = dst;
    if (t == AT_DT_F32) {
        memcpy(dst, x, (size_t)n * 4);
        return (size_t)n * 4;
    }
    if (t == AT_DT_F16 || t == AT_DT_BF16) {
        for (int i = 0; i < n; i++) {
            if (t == AT_DT_F16) {
                put16(p + 2 * i, at_f32_to_f16(x[i]));
            } else { /* round to nearest even */
                uint32_t b;
                memcpy(&b, &x[i], 4);
                b += 0x7fffu + ((b >> 16) & 1u);
                put16(p + 2 * i, (uint16_t)(b >> 16));
            }
        }
        return (size_t)n * 2;
    }
    size_t bb = at_dtype_block_bytes(t);
    for (int b = 0; b < n / AT_QK; b++, p += bb, x += AT_QK) {
        if (t == AT_DT_Q8_0) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            put16(p, at_f32_to_f16(d));
            for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        } else if (t == AT_DT_Q4_0 || t == AT_DT_Q5_0) {
            /* scale from the signed value of largest magnitude, so that
             * value maps exactly to the most negative code */
            float amax = 0, mx = 0;
            for (int j = 0; j < 32; j++)
                if (amax < fabsf(x[j])) {
                    amax = fabsf(x[j]);
                    mx = x[j];
                }
            int q4 = t == AT_DT_Q4_0;
            float d = mx / (q4 ? -8.0f : -16.0f), id = d ? 1.0f / d : 0.0f;
            put16(p, at_f32_to_f16(d));
            uint8_t *qs = p + (q4 ? 2 : 6);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                int lim = q4 ? 15 : 31;
                float bias = q4 ? 8.5f : 16.5f;
                int a = (int8_t)(x[j] * id + bias), c = (int8_t)(x[j + 16] * id + bias);
                uint8_t x0 = (uint8_t)(a < lim ? a : lim), x1 = (uint8_t)(c < lim ? c : lim);
                qs[j] = (uint8_t)((x0 & 0x0f) | ((x1 & 0x0f) << 4));
                qh |= ((uint32_t)(x0 & 0x10u) >> 4) << j;
                qh |= ((uint32_t)(x1 & 0x10u) >> 4) << (j + 16);
            }
            if (!q4) memcpy(p + 2, &qh, 4);
        } else { /* q4_1, q5_1: min + scale */
            float mn = x[0], mx = x[0];
            for (int j = 1; j < 32; j++) {
                mn = fminf(mn, x[j]);
                mx = fmaxf(mx, x[j]);
            }
            int q4 = t == AT_DT_Q4_1;
            float d = (mx - mn) / (q4 ? 15.0f : 31.0f), id = d ? 1.0f / d : 0.0f;
            put16(p, at_f32_to_f16(d));
            put16(p + 2, at_f32_to_f16(mn));
            uint8_t *qs = p + (q4 ? 4 : 8);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                int a = (int)((x[j] - mn) * id + 0.5f), c = (int)((x[j + 16] - mn) * id + 0.5f);
                if (q4) {
                    a = a > 15 ? 15 : a;
                    c = c > 15 ? 15 : c;
                }
                uint8_t x0 = (uint8_t)a, x1 = (uint8_t)c;
                qs[j] = (uint8_t)((x0 & 0x0f) | ((x1 & 0x0f) << 4));
                qh |= ((uint32_t)(x0 & 0x10u) >> 4) << j;
                qh |= ((uint32_t)(x1 & 0x10u) >> 4) << (j + 16);
            }
            if (!q4) memcpy(p + 4, &qh, 4);
        }
    }
    return (size_t)(n / AT_QK) * bb;
}

/* ---------------------------------------------------------- thread pool */

/* Work is published as one atomic word: (generation << 40) | (n_chunks << 20)
 * | next_chunk.  Threads claim chunks with compare-and-swap, so a worker
 * that wakes up late for a finished round sees a new generation and never
 * touches the old job.  Workers spin briefly before sleeping on a
 * condition variable: a decoder step issues ~40 small parallel ops, and a
 * futex wake-up per op would cost more than the ops themselves. */
#define SPIN_ITERS 20000 /* pause iterations (well under 1 ms) before sleeping */
#define MAX_CHUNKS ((1 << 20) - 1)

struct at_compute {
    int n;
    int simd;   /* isa >= AT_ISA_AVX2: the dot-product kernels */
    at_isa isa; /* GEMM kernels */
    pthread_t *th;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_go, cv_done;
    atomic_ullong work;
    atomic_int done;
    atomic_int stop;
    int sleepers;   /* workers asleep on cv_go; guarded by mu */
    int main_waits; /* caller asleep on cv_done; guarded by mu */
    at_chunk_fn fn;
    void *arg;
    /* per-thread scratch, grown on the caller's thread before a run */
    float **scr;
    size_t scr_n;
    float **pack;          /* per-thread at_gemm scratch (AT_GEMM_SCRATCH floats) */
    pthread_mutex_t op_mu; /* one product at a time: callers may share the context */
    at_compute *pool;      /* a client's shared pool (NULL: none) */
};

typedef struct {
    at_compute *c;
    int ith;
} worker_arg;

static inline void cpu_relax(void)
{
#if AT_HAVE_X86
    _mm_pause();
#endif
}

#define W_GEN(w) ((w) >> 40)
#define W_N(w)   ((int)(((w) >> 20) & MAX_CHUNKS))
#define W_IDX(w) ((int)((w)&MAX_CHUNKS))

/* Claims and runs chunks of generation gen until none is left. */
static void drain(at_compute *c, unsigned long long gen, int ith)
{
    unsigned long long w = atomic_load_explicit(&c->work, memory_order_acquire);
    for (;;) {
        if (W_GEN(w) != gen || W_IDX(w) >= W_N(w)) return;
        if (!atomic_compare_exchange_weak_explicit(&c->work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* a claimed chunk keeps the round (and fn/arg) alive until done */
        int n = W_N(w);
        c->fn(c->arg, W_IDX(w), ith);
        if (atomic_fetch_add_explicit(&c->done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&c->mu);
            if (c->main_waits) pthread_cond_signal(&c->cv_done);
            pthread_mutex_unlock(&c->mu);
        }
        w = atomic_load_explicit(&c->work, memory_order_acquire);
    }
}

static void *worker(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    at_compute *c = wa.c;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g;
        int spins = 0;
        while ((g = W_GEN(atomic_load_explicit(&c->work, memory_order_acquire))) == seen &&
               !atomic_load_explicit(&c->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&c->mu);
            c->sleepers++;
            while (W_GEN(atomic_load(&c->work)) == seen && !atomic_load(&c->stop))
                pthread_cond_wait(&c->cv_go, &c->mu);
            c->sleepers--;
            pthread_mutex_unlock(&c->mu);
        }
        if (atomic_load(&c->stop)) return NULL;
        seen = g;
        drain(c, g, wa.ith);
    }
}

at_compute *at_compute_new_client(at_compute *pool, at_err *err)
{
    at_compute *c = at_compute_new(1, err);
    if (c && pool) {
        c->pool = pool;
        c->isa = pool->isa;
        c->simd = pool->simd;
    }
    return c;
}

/* The context a product runs on, locked: the shared pool when it is free,
 * else the caller's own. */
static at_compute *op_begin(at_compute *c)
{
    if (c->pool && pthread_mutex_trylock(&c->pool->op_mu) == 0) return c->pool;
    pthread_mutex_lock(&c->op_mu);
    return c;
}

at_compute *at_compute_new(int n_threads, at_err *err)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) n_threads = 256;
    at_compute *c = calloc(1, sizeof *c);
    if (!c) {
        at_err_set(err, AT_E_NOMEM, "out of memory (compute context)");
        return NULL;
    }
    c->n = n_threads;
    c->isa = at_isa_detect();
    c->simd = c->isa >= AT_ISA_AVX2;
    c->scr = calloc((size_t)n_threads, sizeof *c->scr);
    c->pack = calloc((size_t)n_threads, sizeof *c->pack);
    c->th = calloc((size_t)n_threads, sizeof *c->th);
    int ok = c->scr && c->pack && c->th;
    for (int i = 0; ok && i < n_threads; i++)
        ok = (c->pack[i] = aligned_alloc(64, AT_GEMM_SCRATCH * sizeof(float))) != NULL;
    if (!ok) {
        for (int i = 0; c->pack && i < n_threads; i++) free(c->pack[i]);
        free(c->scr);
        free(c->pack);
        free(c->th);
        free(c);
        at_err_set(err, AT_E_NOMEM, "out of memory (compute context)");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->op_mu, NULL);
    pthread_cond_init(&c->cv_go, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    atomic_init(&c->work, 0);
    atomic_init(&c->done, 0);
    atomic_init(&c->stop, 0);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->c = c;
        wa->ith = i;
        if (pthread_create(&c->th[i], NULL, worker, wa) != 0) {
            free(wa);
            break;
        }
        c->n_started++;
    }
    /* fewer threads than asked is not an error: run with what started */
    for (int i = c->n_started + 1; i < n_threads; i++) {
        free(c->pack[i]);
        c->pack[i] = NULL;
    }
    c->n = c->n_started + 1;
    return c;
}

void at_compute_free(at_compute *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stop, 1);
    pthread_cond_broadcast(&c->cv_go);
    pthread_mutex_unlock(&c->mu);
    for (int i = 1; i <= c->n_started; i++) pthread_join(c->th[i], NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->op_mu);
    pthread_cond_destroy(&c->cv_go);
    pthread_cond_destroy(&c->cv_done);
    for (int i = 0; i < c->n; i++) {
        free(c->scr[i]);
        free(c->pack[i]);
    }
    free(c->scr);
    free(c->pack);
    free(c->th);
    free(c);
}

int at_compute_threads(const at_compute *c) { return c->n; }

at_isa at_compute_set_isa(at_compute *c, at_isa max)
{
    at_isa best = at_isa_detect();
    c->isa = max < best ? max : best;
    if (c->isa < AT_ISA_SCALAR) c->isa = AT_ISA_SCALAR;
    c->simd = c->isa >= AT_ISA_AVX2;
    return c->isa;
}

at_isa at_compute_isa(const at_compute *c) { return c->isa; }

void at_compute_run(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks)
{
    if (n_chunks <= 0) return;
    if (c->n == 1 || n_chunks == 1) {
        for (int i = 0; i < n_chunks; i++) fn(arg, i, 0);
        return;
    }
    if (n_chunks > MAX_CHUNKS) n_chunks = MAX_CHUNKS; /* callers stay far below */
    c->fn = fn;
    c->arg = arg;
    atomic_store_explicit(&c->done, 0, memory_order_relaxed);
    unsigned long long gen = W_GEN(atomic_load_explicit(&c->work, memory_order_relaxed)) + 1;
    gen &= (1ull << 24) - 1;
    if (!gen) gen = 1; /* workers start with seen = 0 */
    /* under the mutex so that a worker going to sleep cannot miss it */
    pthread_mutex_lock(&c->mu);
    atomic_store_explicit(&c->work, (gen << 40) | ((unsigned long long)n_chunks << 20), memory_order_release);
    if (c->sleepers) pthread_cond_broadcast(&c->cv_go);
    pthread_mutex_unlock(&c->mu);
    drain(c, gen, 0);
    for (int spins = 0; spins < SPIN_ITERS; spins++) {
        if (atomic_load_explicit(&c->done, memory_order_acquire) == n_chunks) return;
        cpu_relax();
    }
    pthread_mutex_lock(&c->mu);
    c->main_waits = 1;
    while (atomic_load_explicit(&c->done, memory_order_acquire) < n_chunks)
        pthread_cond_wait(&c->cv_done, &c->mu);
    c->main_waits = 0;
    pthread_mutex_unlock(&c->mu);
}

static int reserve(at_compute *c, size_t n_floats, at_err *err)
{
    if (n_floats <= c->scr_n) return 0;
    for (int i = 0; i < c->n; i++) {
        free(c->scr[i]);
        c->scr[i] = NULL;
        void *p = NULL;
        if (posix_memalign(&p, 64, n_floats * sizeof(float)) != 0) {
            c->scr_n = 0;
            for (int j = 0; j < i; j++) {
                free(c->scr[j]);
                c->scr[j] = NULL;
            }
            return at_err_set(err, AT_E_NOMEM, "out of memory (%zu bytes of compute scratch)",
                              n_floats * sizeof(float));
        }
        c->scr[i] = p;
    }
    c->scr_n = n_floats;
    return 0;
}

int at_compute_reserve(at_compute *c, size_t n, at_err *err) { return reserve(c, n, err); }
float *at_compute_scratch(at_compute *c, int ith) { return c->scr[ith]; }

/* ---------------------------------------------------------------- matmul */

#define TILE_N  64 /* weight rows converted to f32 per chunk */
#define MR_LCM  12 /* a multiple of every kernel's MR */
#define SMALL_M 16 /* below this, a matrix-vector style loop is faster */

typedef struct {
    at_compute *c;
    const float *X;
    int M, K, N;
    const at_matrix *W;
    const float *bias;
    float *Y;
    int tile_m; /* rows of X per chunk of a large product */
} mm_job;

static float row_dot(int simd, at_dtype t, const float *x, const uint8_t *w, int K, float *buf)
{
#if AT_HAVE_X86
    if (simd) {
        switch (t) {
        case AT_DT_F32: return dot_f32_avx2(x, (const float *)(const void *)w, K);
        case AT_DT_F16: return dot_f16_avx2(x, w, K);
        case AT_DT_Q8_0: return dot_q8_0_avx2(x, w, K);
        case AT_DT_Q4_0: return dot_q4_0_avx2(x, w, K);
        default: dequant_avx2(t, w, buf, K); return dot_f32_avx2(x, buf, K);
        }
    }
#endif
    (void)simd;
    dequant_scalar(t, w, buf, K);
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
AT_SIMD static void rows4x2_avx2(const float *const x[4], const void *w0p, const void *w1p, int half, int K,
                                 float *out)
{
    const float *w0 = w0p, *w1 = w1p;
    const uint8_t *h0 = w0p, *h1 = w1p;
    __m256 a[4][2];
    for (int m = 0; m < 4; m++) a[m][0] = a[m][1] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v0 =
            half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h0 + 2 * k))) : _mm256_loadu_ps(w0 + k);
        __m256 v1 =
            half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h1 + 2 * k))) : _mm256_loadu_ps(w1 + k);
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) {
            __m256 xv = _mm256_loadu_ps(x[m] + k);
            a[m][0] = _mm256_fmadd_ps(xv, v0, a[m][0]);
            a[m][1] = _mm256_fmadd_ps(xv, v1, a[m][1]);
        }
    }
    for (int m = 0; m < 4; m++) {
        float s0 = hsum256(a[m][0]), s1 = hsum256(a[m][1]);
        for (int r = k; r < K; r++) {
            s0 += x[m][r] * (half ? rdhalf_f16c(h0 + 2 * r) : ldf(w0p, r));
            s1 += x[m][r] * (half ? rdhalf_f16c(h1 + 2 * r) : ldf(w1p, r));
        }
        out[2 * m] = s0;
        out[2 * m + 1] = s1;
    }
}

AT_SIMD512 static void rows4x2_avx512(const float *const x[4], const void *w0p, const void *w1p, int half,
                                      int K, float *out)
{
    const float *w0 = w0p, *w1 = w1p;
    const uint8_t *h0 = w0p, *h1 = w1p;
    __m512 a[4][2];
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) a[m][0] = a[m][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 v0 = half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h0 + 2 * k)))
                         : _mm512_loadu_ps(w0 + k);
        __m512 v1 = half ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h1 + 2 * k)))
                         : _mm512_loadu_ps(w1 + k);
#pragma GCC unroll 4
        for (int m = 0; m < 4; m++) {
            __m512 xv = _mm512_loadu_ps(x[m] + k);
            a[m][0] = _mm512_fmadd_ps(xv, v0, a[m][0]);
            a[m][1] = _mm512_fmadd_ps(xv, v1, a[m][1]);
        }
    }
    for (int m = 0; m < 4; m++) {
        float s0 = _mm512_reduce_add_ps(a[m][0]), s1 = _mm512_reduce_add_ps(a[m][1]);
        for (int r = k; r < K; r++) {
            s0 += x[m][r] * (half ? rdhalf_f16c(h0 + 2 * r) : ldf(w0p, r));
            s1 += x[m][r] * (half ? rdhalf_f16c(h1 + 2 * r) : ldf(w1p, r));
        }
        out[2 * m] = s0;
        out[2 * m + 1] = s1;
    }
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
        if (j->c->simd && j->M > 1) {
            /* several rows: convert two weight rows once, then four rows
             * of X a pass against both */
            int pair = n + 1 < n1;
            const uint8_t *w1 = pair ? w + j->W->row_bytes : w;
            const void *wf0 = w, *wf1 = w1;
            int half = j->W->type == AT_DT_F16; /* converted in registers */
            if (j->W->type != AT_DT_F32 && !half) {
                at_dequant_row(j->W->type, w, buf, j->K);
                if (pair) at_dequant_row(j->W->type, w1, buf + j->K, j->K);
                wf0 = buf;
                wf1 = pair ? buf + j->K : buf;
            }
            float b1 = pair && j->bias ? j->bias[n + 1] : 0.0f, o[8];
            for (int m0 = 0; m0 < j->M; m0 += 4) {
                int mm = j->M - m0 < 4 ? j->M - m0 : 4;
                const float *x[4];
                for (int m = 0; m < 4; m++) x[m] = j->X + (size_t)(m0 + (m < mm ? m : 0)) * j->K;
                if (j->c->isa >= AT_ISA_AVX512)
                    rows4x2_avx512(x, wf0, wf1, half, j->K, o);
                else
                    rows4x2_avx2(x, wf0, wf1, half, j->K, o);
                for (int m = 0; m < mm; m++) {
                    j->Y[(size_t)(m0 + m) * j->N + n] = o[2 * m] + b;
                    if (pair) j->Y[(size_t)(m0 + m) * j->N + n + 1] = o[2 * m + 1] + b1;
                }
            }
            n += pair;
            continue;
        }
#endif
        for (int m = 0; m < j->M; m++)
            j->Y[(size_t)m * j->N + n] =
                row_dot(j->c->simd, j->W->type, j->X + (size_t)m * j->K, w, j->K, buf) + b;
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
    if (j->W->type == AT_DT_F32) {
        Wt = (const float *)((const uint8_t *)j->W->data + (size_t)n0 * j->W->row_bytes);
    } else {
        for (int r = 0; r < tn; r++)
            at_dequant_row(j->W->type, (const uint8_t *)j->W->data + (size_t)(n0 + r) * j->W->row_bytes,
                           buf + (size_t)r * j->K, j->K);
        Wt = buf;
    }
    float *Y = j->Y + (size_t)m0 * j->N + n0;
    at_gemm(j->c->isa, tm, tn, j->K, 1.0f, j->X + (size_t)m0 * j->K, j->K, Wt, j->K, 1, 0, Y, j->N,
            j->c->pack[ith]);
    if (j->bias)
        for (int m = 0; m < tm; m++) at_add(Y + (size_t)m * j->N, j->bias + n0, (size_t)tn);
}

static int matmul_locked(at_compute *c, const float *X, int M, const at_matrix *W, const float *bias,
                         float *Y, at_err *err)
{
    mm_job j = {c, X, M, W->cols, W->rows, W, bias, Y, 0};
    if (M < SMALL_M) {
        if (reserve(c, 2 * (size_t)W->cols, err)) return err && err->code < 0 ? err->code : AT_E_NOMEM;
        at_compute_run(c, mm_small, &j, (j.N + SMALL_ROWS - 1) / SMALL_ROWS);
    } else {
        if (W->type != AT_DT_F32 && reserve(c, (size_t)TILE_N * (size_t)W->cols, err))
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
    at_compute *r = op_begin(c);
    int rc = matmul_locked(r, X, M, W, bias, Y, err);
    pthread_mutex_unlock(&r->op_mu);
    return rc;
}

/* ------------------------------------------------------------ elementwise */

void at_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void at_layer_norm(const float *x, int M, int N, const float *w, const float *b, float eps, float *y)
{
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * N;
        float *yr = y + (size_t)m * N;
        /* two-pass in double: rows of large activations lose precision in
         * a single-pass float variance */
        double mean = 0, var = 0;
        for (int i = 0; i < N; i++) mean += xr[i];
        mean /= N;
        for (int i = 0; i < N; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= N;
        float inv = (float)(1.0 / sqrt(var + eps)), mu = (float)mean;
        for (int i = 0; i < N; i++) yr[i] = (xr[i] - mu) * inv * w[i] + b[i];
    }
}

void at_gelu(float *x, size_t n)
{
#if AT_HAVE_X86
    if (simd_ok()) {
        gelu_avx2(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void at_softmax(float *x, int n)
{
#if AT_HAVE_X86
    if (simd_ok()) {
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
    float *O;
} att_job;

#define ATT_GEMM_MIN 16 /* fewer query rows: one at a time (no key packing) */

/* Query row i of head h: scores over its visible keys, softmax, weighted
 * sum of the values.  S: scratch of Tk floats. */
static void att_one(const att_job *j, int h, int i, int tk, float *S)
{
    float scale = 1.0f / sqrtf((float)j->hd);
    int len = tk;
    if (j->causal >= 0 && j->causal + i + 1 < len) len = j->causal + i + 1;
    const float *q = j->Q + (size_t)i * j->ldq + h * j->hd;
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
    float scale = 1.0f / sqrtf((float)j->hd);
    {
        int h = t % j->n_head, i0 = (t / j->n_head) * ATT_CHUNK;
        int ch = j->Tq - i0 < ATT_CHUNK ? j->Tq - i0 : ATT_CHUNK;
        /* keys visible to the last row of the chunk bound the work */
        int tk = j->Tk;
        if (j->causal >= 0 && j->causal + i0 + ch < tk) tk = j->causal + i0 + ch;
        if (ch < ATT_GEMM_MIN) {
            /* few queries (decoder steps): per query, scores, softmax and
             * a weighted sum; packing the keys for a GEMM costs more */
            for (int r = 0; r < ch; r++) att_one(j, h, i0 + r, tk, S);
            return;
        }
        float *pack = j->c->pack[ith];
        at_gemm(j->c->isa, ch, tk, j->hd, scale, j->Q + (size_t)i0 * j->ldq + h * j->hd, j->ldq,
                j->K + h * j->hd, j->ldk, 1, 0, S, tk, pack);
        for (int r = 0; r < ch; r++) {
            float *row = S + (size_t)r * tk;
            int len = tk;
            if (j->causal >= 0 && j->causal + i0 + r + 1 < len) len = j->causal + i0 + r + 1;
            at_softmax(row, len);
            for (int k = len; k < tk; k++) row[k] = 0.0f;
        }
        at_gemm(j->c->isa, ch, j->hd, tk, 1.0f, S, tk, j->V + h * j->hd, j->ldv, 0, 0,
                j->O + (size_t)i0 * j->ldo + h * j->hd, j->ldo, pack);
    }
}

int at_attention(at_compute *c, const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                 int Tq, int Tk, int n_head, int hd, int causal, float *O, int ldo, at_err *err)
{
    if (Tq <= 0 || Tk <= 0) return 0;
    at_compute *r = op_begin(c);
    /* a task holds the scores of its chunk of queries: a decoder step
     * needs one row, not a whole chunk's */
    int rc = reserve(r, (size_t)(Tq < ATT_CHUNK ? Tq : ATT_CHUNK) * (size_t)Tk, err);
    if (rc == 0) {
        att_job j = {r, Q, K, V, ldq, ldk, ldv, ldo, Tq, Tk, n_head, hd, causal, O};
        at_compute_run(r, att_task, &j, ((Tq + ATT_CHUNK - 1) / ATT_CHUNK) * n_head);
    }
    pthread_mutex_unlock(&r->op_mu);
    return rc ? (err && err->code < 0 ? err->code : AT_E_NOMEM) : 0;
}

/* ---------------------------------------------------------------- conv1d */

int at_conv1d_k3_gelu(at_compute *c, const float *x, int T_in, int C_in, const at_matrix *W,
                      const float *bias, int stride, float *y, at_err *err)
{
    int T_out = (T_in + 2 - 3) / stride + 1, KC = C_in * 3;
    if (W->cols != KC)
        return at_err_set(err, AT_E_INVALID, "conv1d: weight has %d inputs, expected %d", W->cols, KC);
    /* im2col: row t holds the 3 taps of every input channel in PyTorch's
     * [C_in][3] order, so the convolution is one matrix product */
    float *col = malloc((size_t)T_out * (size_t)KC * sizeof(float));
    if (!col) return at_err_set(err, AT_E_NOMEM, "out of memory (conv1d, %d x %d)", T_out, KC);
    for (int t = 0; t < T_out; t++) {
        float *r = col + (size_t)t * KC;
        for (int k = 0; k < 3; k++) {
            int ti = t * stride + k - 1;
            if (ti < 0 || ti >= T_in) {
                for (int ci = 0; ci < C_in; ci++) r[ci * 3 + k] = 0.0f;
            } else {
                const float *xr = x + (size_t)ti * C_in;
                for (int ci = 0; ci < C_in; ci++) r[ci * 3 + k] = xr[ci];
            }
        }
    }
    int rc = at_matmul(c, col, T_out, W, bias, y, err);
    free(col);
    if (rc) return rc;
    at_gelu(y, (size_t)T_out * (size_t)W->rows);
    return 0;
}
