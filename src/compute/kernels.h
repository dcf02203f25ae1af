/* kernels.h - the CPU kernels on host float buffers (activations f32,
 * row-major), behind the CPU backend.  Above src/compute only tests,
 * benches, host-side feature extraction (Whisper's mel) and searches over
 * downloaded logits (log-softmax, argmax) use them; engines go through
 * backend.h.
 *
 * Large products go through our blocked GEMM (compute/gemm.h; weights
 * that are not f32 are converted to f32 in tiles, never as a whole copy);
 * small ones (decoder steps) use fused dot-product kernels.  Both are
 * chosen at run time by instruction set (AVX-512, AVX2/FMA/F16C), with a
 * portable scalar fallback. */
#ifndef AT_COMPUTE_KERNELS_H
#define AT_COMPUTE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "compute/dtype.h"
#include "compute/pool.h"
#include "core/error.h"

/* A weight matrix [rows x cols] (rows = outputs, cols = inputs). */
typedef struct at_matrix {
    at_dtype type;
    int rows, cols;
    const void *data; /* rows * row_bytes bytes, any alignment */
    size_t row_bytes; /* at_dtype_row_bytes(type, cols) */
    /* Stored transposed (f32 only): data holds cols rows of rows floats,
     * one per input, row_bytes apart.  The order a product packs fastest,
     * and the one a convolution by FFT reads its kernel in. */
    int input_major;
    /* Packed for the products (f32 only, gemm.h's at_gemm_pack): data
     * holds ceil(rows / AT_GEMM_PANEL) panels of cols x AT_GEMM_PANEL
     * floats, 64-byte aligned; row_bytes is unused.  Done once when a
     * model loads, it spares every product its own packing. */
    int packed;
} at_matrix;

/* Y[M x N] = X[M x K] * W^T (+ bias[N]), W [N x K]. Y must not alias X.
 * Fails only on allocation failure (scratch memory). */
int at_matmul(at_compute *c, const float *X, int M, const at_matrix *W, const float *bias, float *Y,
              at_err *err);
/* The same with row strides: X row m at X + m ldx, Y row m at Y + m ldy
 * (ldx may be less than the row's length: rows that overlap, as the
 * taps of a convolution's consecutive steps do). */
int at_matmul_ld(at_compute *c, const float *X, int ldx, int M, const at_matrix *W, const float *bias,
                 float *Y, int ldy, at_err *err);
/* What a product does with each output after its bias, while the output
 * is still in cache: y += res (the row of R at the same index; R must not
 * overlap Y), then y = leaky_relu(y) with slope when leaky. */
typedef struct at_epilogue {
    const float *res;
    int ldr;
    int leaky;
    float slope;
} at_epilogue;
/* at_matmul_ld followed by the epilogue ep (NULL: none). */
int at_matmul_ep(at_compute *c, const float *X, int ldx, int M, const at_matrix *W, const float *bias,
                 const at_epilogue *ep, float *Y, int ldy, at_err *err);
/* The epilogue on rows of n outputs already computed (paths that do not
 * end in at_matmul_ep). */
void at_epilogue_rows(at_isa isa, const at_epilogue *ep, float *Y, int ldy, int M, int n);
/* y = leaky_relu(x / div) with slope (y may be x), and y = a + b, with
 * isa's vectors; the same bits at every level. */
void at_leaky_relu(at_isa isa, float *y, const float *x, size_t n, float div, float slope);
void at_sum(at_isa isa, float *y, const float *a, const float *b, size_t n);
/* y = tanh(a) sigmoid(b) (WaveNet's gate) with isa's vectors: within
 * 1e-6 of libm's, absolute. */
void at_tanh_sigmoid(at_isa isa, float *y, const float *a, const float *b, int n);

/* Row-wise layer norm over N columns: y = (x - mean)/sqrt(var + eps)*w + b
 * (b NULL: no bias).  y may equal x. */
void at_layer_norm(const float *x, int M, int N, const float *w, const float *b, float eps, float *y);
/* GELU, exact erf form: 0.5 x (1 + erf(x / sqrt 2)), in place. */
void at_gelu(float *x, size_t n);
/* In place: max(x, 0); x sigmoid(x); 1/(1 + exp(-x)); tanh(x). */
void at_relu(float *x, size_t n);
void at_silu(float *x, size_t n);
void at_sigmoid(float *x, size_t n);
void at_tanh(float *x, size_t n);
/* In-place softmax of one row. */
void at_softmax(float *x, int n);
/* In place: x - log(sum(exp(x))), one row of logits (a search's
 * log-probabilities); a row of -inf is left as it is. */
void at_log_softmax(float *x, int n);
/* log(sum(exp(x))) of one row, summed in double precision; -INFINITY for
 * a row of -inf or an empty one (n <= 0). */
double at_log_sum_exp(const float *x, int n);
/* The index of the largest value, the first of equal ones (as
 * torch.argmax answers). */
int at_argmax(const float *x, int n);
/* y[i] += x[i] */
void at_add(float *y, const float *x, size_t n);
float at_dot(const float *a, const float *b, int n);

/* Multi-head scaled dot-product attention.
 * Q: Tq rows (stride ldq floats), K/V: Tk rows (strides ldk/ldv); head h
 * uses columns [h*hd, (h+1)*hd).  O: Tq rows, stride ldo.  causal >= 0:
 * query i (at absolute position causal + i) sees keys 0..causal+i only;
 * causal < 0: no mask.  scale <= 0: 1/sqrt(hd). */
int at_attention(at_compute *c, const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                 int Tq, int Tk, int n_head, int hd, int causal, float scale, float *O, int ldo, at_err *err);

/* One at_attention call's arguments. */
typedef struct at_attn_call {
    const float *Q, *K, *V;
    float *O;
    int ldq, ldk, ldv, ldo, Tq, Tk, causal;
} at_attn_call;
/* Several attentions with the same heads (the sequences of a batched
 * decoder step, each on its own keys) in one round on the pool instead of
 * one each: each call's output is the same bits as at_attention's. */
int at_attention_multi(at_compute *c, const at_attn_call *calls, int n_calls, int n_head, int hd, float scale,
                       at_err *err);

#endif
