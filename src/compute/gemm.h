/* gemm.h - single-threaded f32 matrix products for the CPU backend (its
 * callers split the work over the thread pool).
 *
 * Our own kernels rather than a BLAS: a BLAS that picks its kernels by
 * CPU model (Debian's OpenBLAS 0.3.21) runs its slowest ones on CPUs it
 * does not know, so the speed of a service would depend on which machine
 * it lands on.  These kernels are chosen by instruction set (cpuid), and
 * a caller may cap the level to test each one. */
#ifndef AT_COMPUTE_GEMM_H
#define AT_COMPUTE_GEMM_H

#include "compute/isa.h"

/* Blocking: B is packed NB columns by KC depth at a time. */
#define AT_GEMM_NB      128
#define AT_GEMM_KC      256
/* Floats of scratch at_gemm needs (packed B plus a padded block of A). */
#define AT_GEMM_SCRATCH (AT_GEMM_NB * AT_GEMM_KC + 16 * AT_GEMM_KC)

/* C[M x N] = alpha * A[M x K] * op(B) + (accumulate ? C : 0).
 * b_trans: B is N x K (row n holds column n of op(B): PyTorch's Linear
 * weight, or the keys of attention); otherwise B is K x N.  Leading
 * dimensions in floats.  scratch: AT_GEMM_SCRATCH floats, 64-byte
 * aligned. */
void at_gemm(at_isa isa, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
             int b_trans, int accumulate, float *C, int ldc, float *scratch);

/* Columns per panel of a packed B: one width for every level (kernels
 * narrower than a panel take it in parts), so that B can be packed once,
 * when a model loads, whatever level a context later runs. */
#define AT_GEMM_PANEL 32

/* As at_gemm with B already packed, for a B that is computed rather than
 * stored (a caller writes it in this layout and spares the copy): panel
 * p holds columns [p nr, p nr + nr) as K rows of nr floats, panels one
 * after the other, nr = AT_GEMM_PANEL, the last panel whole too (its
 * columns past N are read, best as zeros, and dropped); Bp 64-byte
 * aligned.  scratch as for at_gemm. */
void at_gemm_packed(at_isa isa, int M, int N, int K, float alpha, const float *A, int lda, const float *Bp,
                    int accumulate, float *C, int ldc, float *scratch);

/* Writes op(B) (N columns, depth K; b_trans and ldb as for at_gemm) in
 * at_gemm_packed's layout: ceil(N / AT_GEMM_PANEL) panels, columns past N
 * zero. */
void at_gemm_pack(at_isa isa, int N, int K, const float *B, int ldb, int b_trans, float *Bp);

#endif
