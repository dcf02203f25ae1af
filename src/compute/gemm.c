/* gemm.c - blocked f32 matrix products with register-tiled kernels for
 * AVX-512, AVX2+FMA and plain C.
 *
 * The classic layout (Goto/BLIS): B is packed KC deep and NR wide into
 * panels that stay in L2, a micro-kernel multiplies MR rows of A by one
 * panel into MR x NR accumulators held in registers, and the result is
 * added into C.  A is read in place (MR rows at once; the hardware
 * prefetcher follows MR streams), except for the last rows of a matrix
 * whose count is not a multiple of MR, which are copied into a padded
 * block so that every kernel call is full. */
#include "compute/gemm.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define AT_GEMM_X86 1
#include <immintrin.h>
#define AT_AVX2   __attribute__((target("avx2,fma")))
#define AT_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
#define AT_GEMM_X86 0
#endif

#define MR_MAX 16
#define NR_MAX 32

/* C[MR x NR] (row stride ldc) = alpha * a[MR x kc] * bp[kc x NR], plus C's
 * old values unless first.  Writing C here, vectorised, matters: with the
 * short depths of attention (64) a scalar update cost a quarter of the
 * time. */
typedef void (*ukernel)(int kc, const float *a, int lda, const float *bp, int ldp, float *C, int ldc,
                        float alpha, int first);

static void ukr_scalar(int kc, const float *a, int lda, const float *bp, int ldp, float *C, int ldc,
                       float alpha, int first)
{
    enum { MR = 4, NR = 16 };
    float c[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++) {
            float ai = a[(size_t)i * lda + k];
            for (int j = 0; j < NR; j++) c[i][j] += ai * bp[(size_t)k * ldp + j];
        }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            C[(size_t)i * ldc + j] = alpha * c[i][j] + (first ? 0.0f : C[(size_t)i * ldc + j]);
}

#if AT_GEMM_X86
AT_AVX2 static void ukr_avx2(int kc, const float *a, int lda, const float *bp, int ldp, float *C, int ldc,
                             float alpha, int first)
{
    enum { MR = 6 };
    __m256 c[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp + (size_t)k * ldp), b1 = _mm256_load_ps(bp + (size_t)k * ldp + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + (size_t)i * lda + k);
            c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    __m256 al = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        float *row = C + (size_t)i * ldc;
        __m256 r0 = _mm256_mul_ps(al, c[i][0]), r1 = _mm256_mul_ps(al, c[i][1]);
        if (!first) {
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(row));
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, r0);
        _mm256_storeu_ps(row + 8, r1);
    }
}

AT_AVX512 static void ukr_avx512(int kc, const float *a, int lda, const float *bp, int ldp, float *C, int ldc,
                                 float alpha, int first)
{
    enum { MR = 12 };
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp + (size_t)k * ldp), b1 = _mm512_load_ps(bp + (size_t)k * ldp + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[(size_t)i * lda + k]);
            c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        float *row = C + (size_t)i * ldc;
        __m512 r0 = _mm512_mul_ps(al, c[i][0]), r1 = _mm512_mul_ps(al, c[i][1]);
        if (!first) {
            r0 = _mm512_add_ps(r0, _mm512_loadu_ps(row));
            r1 = _mm512_add_ps(r1, _mm512_loadu_ps(row + 16));
        }
        _mm512_storeu_ps(row, r0);
        _mm512_storeu_ps(row + 16, r1);
    }
}
#endif

#if AT_GEMM_X86
/* Eight rows of B^T (weight rows, k contiguous) into eight panel columns,
 * eight k at a time by an 8x8 register transpose: copying an element at a
 * time was most of at_gemm's own time for the short products of streaming
 * (a few hundred rows of A against each packed panel).  Unaligned loads:
 * a ggml file's f32 weights need not be aligned. */
AT_AVX2 static int pack_bt8_avx2(const char *src, size_t ld_bytes, int kc, int nr, float *o)
{
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8], t[8], u[8];
        for (int i = 0; i < 8; i++)
            r[i] = _mm256_loadu_ps((const float *)(const void *)(src + i * ld_bytes) + k);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
            u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps(o + (size_t)(k + i) * nr, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
            _mm256_storeu_ps(o + (size_t)(k + i + 4) * nr, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
        }
    }
    return k;
}
#endif

/* Packs op(B)[k0, k0+kc) x [n0, n0+nb) into panels of nr columns, each kc
 * rows of nr floats; columns past nb are zero. */
static void pack_b(at_isa isa, const float *B, int ldb, int b_trans, int n0, int nb, int k0, int kc, int nr,
                   float *out)
{
    for (int p = 0; p < nb; p += nr) {
        int w = nb - p < nr ? nb - p : nr;
        float *o = out + (size_t)p * kc;
        if (b_trans) {
            int j = 0;
#if AT_GEMM_X86
            for (; isa >= AT_ISA_AVX2 && j + 8 <= w; j += 8) {
                const char *src = (const char *)(B + (size_t)(n0 + p + j) * ldb + k0);
                size_t ld = (size_t)ldb * sizeof *o;
                for (int k = pack_bt8_avx2(src, ld, kc, nr, o + j); k < kc; k++)
                    for (int i = 0; i < 8; i++)
                        memcpy(&o[k * nr + j + i], src + i * ld + (size_t)k * sizeof *o, sizeof *o);
            }
#else
            (void)isa;
#endif
            for (; j < w; j++) {
                /* byte copies: a ggml file's f32 weights need not be aligned */
                const char *src = (const char *)(B + (size_t)(n0 + p + j) * ldb + k0);
                for (int k = 0; k < kc; k++) memcpy(&o[k * nr + j], src + (size_t)k * sizeof *o, sizeof *o);
            }
        } else {
            const float *src = B + (size_t)k0 * ldb + n0 + p;
            /* copies of a size the compiler knows become vector moves */
            if (w == 32)
                for (int k = 0; k < kc; k++) memcpy(o + k * nr, src + (size_t)k * ldb, 32 * sizeof *o);
            else if (w == 16)
                for (int k = 0; k < kc; k++) memcpy(o + k * nr, src + (size_t)k * ldb, 16 * sizeof *o);
            else
                for (int k = 0; k < kc; k++) memcpy(o + k * nr, src + (size_t)k * ldb, (size_t)w * sizeof *o);
        }
        if (w < nr)
            for (int k = 0; k < kc; k++) memset(o + k * nr + w, 0, (size_t)(nr - w) * sizeof *o);
    }
}

void at_gemm_pack(at_isa isa, int N, int K, const float *B, int ldb, int b_trans, float *Bp)
{
    pack_b(isa, B, ldb, b_trans, 0, N, 0, K, AT_GEMM_PANEL, Bp);
}

/* The kernel of isa and its register tile. */
static ukernel kernel_of(at_isa isa, int *mr, int *nr)
{
    *mr = 4;
    *nr = 16;
#if AT_GEMM_X86
    if (isa >= AT_ISA_AVX512) {
        *mr = 12;
        *nr = 32;
        return ukr_avx512;
    }
    if (isa >= AT_ISA_AVX2) {
        *mr = 6;
        *nr = 16;
        return ukr_avx2;
    }
#else
    (void)isa;
#endif
    return ukr_scalar;
}

/* C[M x nb] (+)= alpha * A[M x kc] * the nb columns of B packed in panels
 * of pw columns (pw a multiple of the kernel's nr): panel q (columns
 * q pw ..) starts at bp + q * panel_ld, kc rows of pw floats. */
static void sweep(ukernel kern, int mr, int nr, int pw, int M, int nb, int kc, float alpha, int first,
                  const float *A, int lda, const float *bp, size_t panel_ld, float *C, int ldc, float *apad)
{
    _Alignas(64) float ct[MR_MAX * NR_MAX];
    for (int m0 = 0; m0 < M; m0 += mr) {
        int mm = M - m0 < mr ? M - m0 : mr;
        const float *ap = A + (size_t)m0 * lda;
        int al = lda;
        if (mm < mr) {
            for (int i = 0; i < mr; i++) {
                if (i < mm)
                    memcpy(apad + (size_t)i * kc, ap + (size_t)i * lda, (size_t)kc * sizeof *apad);
                else
                    memset(apad + (size_t)i * kc, 0, (size_t)kc * sizeof *apad);
            }
            ap = apad;
            al = kc;
        }
        for (int p = 0; p < nb; p += nr) {
            int w = nb - p < nr ? nb - p : nr;
            const float *panel = bp + (size_t)(p / pw) * panel_ld + p % pw;
            float *c = C + (size_t)m0 * ldc + p;
            if (mm == mr && w == nr) { /* a whole tile: straight into C */
                kern(kc, ap, al, panel, pw, c, ldc, alpha, first);
                continue;
            }
            kern(kc, ap, al, panel, pw, ct, nr, 1.0f, 1);
            for (int i = 0; i < mm; i++) {
                float *crow = c + (size_t)i * ldc;
                const float *t = ct + i * nr;
                if (first)
                    for (int j = 0; j < w; j++) crow[j] = alpha * t[j];
                else
                    for (int j = 0; j < w; j++) crow[j] += alpha * t[j];
            }
        }
    }
}

/* C = 0 (or kept) for an empty depth. */
static int empty_product(int M, int N, int K, int accumulate, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return 1;
    if (K > 0) return 0;
    if (!accumulate)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
    return 1;
}

void at_gemm(at_isa isa, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             int b_trans, int accumulate, float *C, int ldc, float *scratch)
{
    int mr, nr;
    ukernel kern = kernel_of(isa, &mr, &nr);
    if (empty_product(M, N, K, accumulate, C, ldc)) return;
    float *bpack = scratch, *apad = scratch + AT_GEMM_NB * AT_GEMM_KC;
    for (int n0 = 0; n0 < N; n0 += AT_GEMM_NB) {
        int nb = N - n0 < AT_GEMM_NB ? N - n0 : AT_GEMM_NB;
        for (int k0 = 0; k0 < K; k0 += AT_GEMM_KC) {
            int kc = K - k0 < AT_GEMM_KC ? K - k0 : AT_GEMM_KC;
            pack_b(isa, B, ldb, b_trans, n0, nb, k0, kc, nr, bpack);
            sweep(kern, mr, nr, nr, M, nb, kc, alpha, k0 == 0 && !accumulate, A + k0, lda, bpack,
                  (size_t)kc * nr, C + n0, ldc, apad);
        }
    }
}

void at_gemm_packed(at_isa isa, int M, int N, int K, float alpha, const float *A, int lda, const float *Bp,
                    int accumulate, float *C, int ldc, float *scratch)
{
    int mr, nr;
    ukernel kern = kernel_of(isa, &mr, &nr);
    if (empty_product(M, N, K, accumulate, C, ldc)) return;
    float *apad = scratch + AT_GEMM_NB * AT_GEMM_KC;
    /* the same blocking as at_gemm: an NB x KC block of B stays in cache
     * while the rows of A go by */
    for (int n0 = 0; n0 < N; n0 += AT_GEMM_NB) {
        int nb = N - n0 < AT_GEMM_NB ? N - n0 : AT_GEMM_NB;
        for (int k0 = 0; k0 < K; k0 += AT_GEMM_KC) {
            int kc = K - k0 < AT_GEMM_KC ? K - k0 : AT_GEMM_KC;
            sweep(kern, mr, nr, AT_GEMM_PANEL, M, nb, kc, alpha, k0 == 0 && !accumulate, A + k0, lda,
                  Bp + (size_t)n0 * K + (size_t)k0 * AT_GEMM_PANEL, (size_t)K * AT_GEMM_PANEL, C + n0, ldc,
                  apad);
        }
    }
}
