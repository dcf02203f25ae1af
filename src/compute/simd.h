/* simd.h - instruction-set helpers shared by the CPU kernels (internal to
 * src/compute).
 *
 * Kernels marked AT_SIMD are compiled for AVX2+FMA+F16C with a target
 * attribute and used only when the running CPU has those features, so a
 * default (-march=x86-64) build is both portable and fast.  Every kernel
 * has a scalar twin.  Unaligned data (a ggml file packs tensors without
 * padding) is read with loadu/memcpy. */
#ifndef AT_COMPUTE_SIMD_H
#define AT_COMPUTE_SIMD_H

#include <stdint.h>
#include <string.h>

#include "compute/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#define AT_HAVE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define AT_SIMD    __attribute__((target("avx2,fma,f16c")))
#define AT_SIMD512 __attribute__((target("avx512f,avx2,fma,f16c")))
#else
#define AT_HAVE_X86 0
#endif

/* at_dequant_row with the kernels of a context's level (simd: AVX2/F16C). */
void at_dequant_row_simd(int simd, at_dtype t, const void *src, float *dst, int n);

/* 1 when the CPU runs the AT_SIMD kernels (AVX2, FMA and F16C).  Asked
 * once per process: the F16C bit comes from cpuid itself (clang's
 * __builtin_cpu_supports does not know it), and cpuid traps to the
 * hypervisor in a virtual machine, microseconds a call; the kernels ask
 * for every row. */
int at_simd_ok(void);

static inline uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float rdhalf(const uint8_t *p) { return at_f16_to_f32(rd16(p)); }

#if AT_HAVE_X86
/* The F16C instruction: the scalar conversion per block was the largest
 * cost of quantized decoding. */
AT_SIMD static inline float rdhalf_f16c(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

AT_SIMD static inline float hsum256(__m256 v)
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

#endif

#endif
