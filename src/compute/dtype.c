/* dtype.c - tensor data types: sizes, half-precision conversion, and
 * ggml's block quantization (dequantized with F16C/AVX2 where the CPU has
 * them). */
#include "compute/dtype.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/simd.h"

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
#endif

void at_dequant_row_simd(int simd, at_dtype t, const void *src, float *dst, int n)
{
#if AT_HAVE_X86
    if (simd) {
        dequant_avx2(t, src, dst, n);
        return;
    }
#endif
    (void)simd;
    dequant_scalar(t, src, dst, n);
}

void at_dequant_row(at_dtype t, const void *src, float *dst, int n)
{
    at_dequant_row_simd(at_simd_ok(), t, src, dst, n);
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
