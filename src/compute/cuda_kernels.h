/* cuda_kernels.h - the CUDA backend's own kernels (cuda_kernels.cu), for
 * backend_cuda.c only.  Each launcher enqueues its kernel on `stream` (a
 * cudaStream_t) and returns the launch's cudaError_t as an int (0: queued);
 * pointers are device memory, strides ("ld") in elements. */
#ifndef AT_COMPUTE_CUDA_KERNELS_H
#define AT_COMPUTE_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One sequence of a batched attention call, as the kernel reads it. */
typedef struct at_cu_attn_seq {
    const float *k, *v;
    int ldk, ldv;
    int q_row, n_q, n_kv, causal;
} at_cu_attn_seq;

/* rows of `cols` values of type t (at_dtype), rows ld_bytes apart, to f32
 * rows ldy apart; rows[i] (device ids, or NULL for 0..n-1) picks the rows */
int at_cu_dequant_rows(void *stream, int t, const void *src, size_t ld_bytes, const int *rows, int n,
                       int cols, float *y, size_t ldy);
/* the same to f16 (half = 1) or bf16 (half = 0) values, rows ldy apart */
int at_cu_dequant_rows_h(void *stream, int t, const void *src, size_t ld_bytes, int n, int cols, void *y,
                         size_t ldy, int half);
/* f32 rows to f16 (half = 1) or bf16, contiguous */
int at_cu_to_half(void *stream, const float *x, size_t ldx, int rows, int cols, void *y, int half);
int at_cu_layer_norm(void *stream, const float *x, size_t ldx, int rows, int cols, const float *w,
                     const float *b, float eps, float *y, size_t ldy);
/* act: an at_act value */
int at_cu_act(void *stream, int act, const float *x, size_t ldx, int rows, int cols, float *y, size_t ldy);
int at_cu_softmax(void *stream, const float *x, size_t ldx, int rows, int cols, float *y, size_t ldy);
/* y = s * a + b (b NULL: none; ldb 0: one row added to every row) */
int at_cu_axpb(void *stream, float s, const float *a, size_t lda, const float *b, size_t ldb, int rows,
               int cols, float *y, size_t ldy);
/* PyTorch's Conv1d / ConvTranspose1d on time-major rows, f32 weights
 * (conv: [C_out][C_in/g][K]; transposed: [C_in][C_out/g][K]) */
int at_cu_conv1d(void *stream, const float *x, int T_in, int C_in, const float *w, const float *bias, int K,
                 int stride, int pad, int dil, int groups, int transposed, float *y, int T_out, int C_out);
/* seqs: a device table of n_seqs; q and o rows ldq/ldo apart; rows of q
 * that no sequence owns are left alone */
int at_cu_attention(void *stream, const float *q, size_t ldq, int q_rows, const at_cu_attn_seq *seqs,
                    int n_seqs, int n_head, int hd, float scale, float *o, size_t ldo);

#ifdef __cplusplus
}
#endif

#endif
