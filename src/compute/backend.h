/* backend.h - the compute interface the neural engines use: tensors that
 * live in a backend's memory, and the operations a backend runs on them.
 *
 * A backend is a table of functions (at_backend_ops) plus its execution
 * context: for the CPU a client of a thread pool (compute/pool.h), for a
 * GPU a device stream.  Engines never touch the memory behind a tensor:
 * they create tensors, upload and download host data, make views, and call
 * the operations below.  Operations on one backend run in the order they
 * are called; at_tensor_download() and at_backend_sync() are the points
 * where the host waits for them (docs/compute.md: how CUDA maps on this).
 *
 * Tensors are at most 4-D, ne[0] the innermost (contiguous) dimension:
 * a matrix of R rows and C columns has ne = {C, R, 1, 1}.  nb[] are byte
 * strides; operations need rows whose elements are contiguous, and accept
 * any row stride (views of columns of a wider matrix, e.g. one head).
 * Activations are f32; weights (the right operand of a product, embedding
 * tables, convolution kernels) may be any at_dtype.
 *
 * Shapes are checked by every operation, which fails with AT_E_INVALID and
 * a message instead of reading out of bounds. */
#ifndef AT_COMPUTE_BACKEND_H
#define AT_COMPUTE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "compute/dtype.h"
#include "compute/isa.h"
#include "compute/pool.h"
#include "core/error.h"

#define AT_MAX_DIMS 4

typedef struct at_backend at_backend;
typedef struct at_buffer at_buffer; /* memory of one backend kind */

typedef struct at_tensor {
    at_dtype type;
    int64_t ne[AT_MAX_DIMS]; /* elements per dimension, ne[0] innermost */
    size_t nb[AT_MAX_DIMS];  /* byte strides (nb[0]: one element or block) */
    at_buffer *buf;          /* NULL: no tensor (an absent bias) */
    size_t offs;             /* bytes into buf */
} at_tensor;

/* ---- tensors ------------------------------------------------------------ */

/* Rows of t (product of ne[1..3]) and columns (ne[0]). */
int64_t at_tensor_rows(const at_tensor *t);
static inline int64_t at_tensor_cols(const at_tensor *t) { return t->ne[0]; }
static inline int at_tensor_present(const at_tensor *t) { return t && t->buf != NULL; }
/* Bytes the tensor spans in its buffer (rows * row stride for 2-D). */
size_t at_tensor_nbytes(const at_tensor *t);
/* 1 if every row follows the previous one without gaps. */
int at_tensor_contiguous(const at_tensor *t);

/* A new tensor in its own buffer of be's memory kind (zero-filled).  shape
 * in ne order (innermost first), n_dims 1..4. */
int at_tensor_new(at_backend *be, at_tensor *t, at_dtype type, int n_dims, const int64_t *ne, at_err *err);
static inline int at_tensor_new_2d(at_backend *be, at_tensor *t, at_dtype type, int64_t cols, int64_t rows,
                                   at_err *err)
{
    int64_t ne[2] = {cols, rows};
    return at_tensor_new(be, t, type, 2, ne, err);
}
/* A tensor over host memory the caller keeps alive (weights in a mapped
 * file): the CPU backend uses the memory in place, a device backend copies
 * it into device memory once.  Free it with at_tensor_free. */
int at_tensor_from_host(at_backend *be, at_tensor *t, at_dtype type, int n_dims, const int64_t *ne,
                        const void *data, size_t nbytes, at_err *err);
/* Frees the buffer of a tensor made by at_tensor_new/at_tensor_from_host
 * (not of a view); t becomes absent. */
void at_tensor_free(at_tensor *t);

/* Views share the buffer; they are plain values and are never freed. */
at_tensor at_tensor_view_rows(const at_tensor *t, int64_t row0, int64_t n_rows);
/* Columns col0..col0+n_cols of every row (one attention head, one half of
 * a fused projection). */
at_tensor at_tensor_view_cols(const at_tensor *t, int64_t col0, int64_t n_cols);
/* The same elements as rows of `cols` columns (t must be contiguous). */
at_tensor at_tensor_reshape_2d(const at_tensor *t, int64_t cols, int64_t rows);

/* Host <-> backend copies of a whole (possibly strided) tensor; bytes must
 * equal rows * row bytes.  Download waits for the operations before it. */
int at_tensor_upload(at_backend *be, at_tensor *dst, const void *src, size_t bytes, at_err *err);
int at_tensor_download(at_backend *be, const at_tensor *src, void *dst, size_t bytes, at_err *err);

/* ---- backends ----------------------------------------------------------- */

/* The CPU backend on a compute context: a client of a shared pool
 * (at_compute_new_client), or a pool of its own; c NULL: a backend that
 * allocates and uploads but runs no operation (a model's weights).  The
 * backend does not own c. */
at_backend *at_backend_cpu_new(at_compute *c, at_err *err);
/* The CUDA backend on GPU `device` (built with AT_CUDA; otherwise NULL
 * and a message): a stream of its own per object; weights_only: one that
 * allocates and uploads (a model's weights, shared by every request's
 * backend on the device) but runs no product. */
at_backend *at_backend_cuda_new(int device, int weights_only, at_err *err);
/* GPUs the CUDA runtime sees; 0 with the reason in err when none (no
 * driver, no device, or built without CUDA). */
int at_cuda_devices(at_err *err);
void at_backend_free(at_backend *be);
const char *at_backend_name(const at_backend *be);
/* 1 when be's tensors are host memory: a tensor made by
 * at_tensor_from_host is that memory, so an operation writing into it
 * needs no download. */
int at_backend_host_memory(const at_backend *be);
/* The CPU context behind be, or NULL for another kind. */
at_compute *at_backend_compute(const at_backend *be);
/* Waits until every operation issued on be has finished. */
int at_backend_sync(at_backend *be, at_err *err);

/* ---- operations ---------------------------------------------------------- */

typedef enum { AT_ACT_NONE = 0, AT_ACT_GELU, AT_ACT_RELU, AT_ACT_SILU, AT_ACT_TANH, AT_ACT_SIGMOID } at_act;
const char *at_act_name(at_act a);
/* "gelu", "relu", "silu"/"swish", "tanh", "sigmoid" (Hugging Face's
 * activation_function names); -1 if unknown. */
int at_act_from_name(const char *name, at_act *out);

/* y[M x N] = x[M x K] w^T + bias: w [N x K] (PyTorch's Linear layout) of any
 * type, bias f32 [N] or absent.  y must not alias x. */
int at_op_matmul(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias, at_tensor *y,
                 at_err *err);
/* Row-wise layer norm: y = (x - mean) / sqrt(var + eps) * w + b (b may be
 * absent).  y may be x. */
int at_op_layer_norm(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *b, float eps,
                     at_tensor *y, at_err *err);
/* y = act(x), element-wise; y may be x.  GELU is the exact erf form. */
int at_op_act(at_backend *be, at_act act, const at_tensor *x, at_tensor *y, at_err *err);
/* Row-wise softmax; y may be x. */
int at_op_softmax(at_backend *be, const at_tensor *x, at_tensor *y, at_err *err);
/* y = a + b; b has a's shape or one row (added to every row).  y may be a. */
int at_op_add(at_backend *be, const at_tensor *a, const at_tensor *b, at_tensor *y, at_err *err);
/* y = s * x; y may be x. */
int at_op_scale(at_backend *be, const at_tensor *x, float s, at_tensor *y, at_err *err);
/* y row i = table row ids[i] (any type, converted to f32).  ids are host
 * integers, checked against the table's rows. */
int at_op_get_rows(at_backend *be, const at_tensor *table, const int *ids, int n, at_tensor *y, at_err *err);
/* dst = src (f32, same shape; strides may differ).  Appends to KV caches. */
int at_op_copy(at_backend *be, const at_tensor *src, at_tensor *dst, at_err *err);

/* 1-D convolution on time-major activations (x: T_in rows of C_in).
 * w is PyTorch's Conv1d weight [C_out][C_in/groups][K] as a matrix of
 * C_out rows; for the transposed convolution it is ConvTranspose1d's
 * [C_in][C_out/groups][K] as C_in rows.  Output: T_out rows of C_out,
 *   conv:       T_out = (T_in + 2 pad - dil (K-1) - 1) / stride + 1
 *   transposed: T_out = (T_in - 1) stride - 2 pad + dil (K-1) + out_pad + 1 */
typedef struct at_conv1d_params {
    int kernel, stride, padding, dilation, groups;
    int output_padding; /* transposed only */
    int prepared;       /* w was made by at_conv1d_prepare for these params */
    /* Epilogue, fused where the backend can (the CPU's; others refuse it
     * with AT_E_UNSUPPORTED): after the bias, y += residual (f32, y's
     * shape, not overlapping y; NULL: none), then leaky ReLU with
     * leaky_slope when leaky. */
    const at_tensor *residual;
    int leaky;
    float leaky_slope;
} at_conv1d_params;
int at_conv1d_out_len(const at_conv1d_params *p, int T_in, int transposed);
/* w (PyTorch's layout above, any type) converted once, at load, into a
 * new f32 tensor of w's shape whose elements are in the order this
 * backend's convolution reads them (the CPU's reorders its kernel on
 * every call otherwise).  Use it with p->prepared = 1 and the same
 * kernel, stride, padding, dilation, groups and direction as here. */
int at_conv1d_prepare(at_backend *be, const at_tensor *w, const at_conv1d_params *p, int transposed,
                      at_tensor *out, at_err *err);
int at_op_conv1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                 const at_conv1d_params *p, at_tensor *y, at_err *err);
int at_op_conv_transpose1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                           const at_conv1d_params *p, at_tensor *y, at_err *err);

/* Multi-head attention over a batch of sequences of different lengths.
 * Sequence i owns rows q_row..q_row+n_q-1 of q and o, and attends to the
 * first n_kv rows of its own k and v (its KV cache, or the encoder output
 * of its audio or sentence: keys past n_kv are padding and never seen).
 * causal >= 0: query j, at absolute position causal + j, sees keys
 * 0..causal+j only.  Head h uses columns h*hd..(h+1)*hd-1 of q, k, v, o
 * (hd = columns / n_head).  scale <= 0: 1/sqrt(hd). */
typedef struct at_attn_seq {
    int q_row, n_q;
    const at_tensor *k, *v;
    int n_kv;
    int causal;
} at_attn_seq;
int at_op_attention(at_backend *be, const at_tensor *q, const at_attn_seq *seqs, int n_seqs, int n_head,
                    float scale, at_tensor *o, at_err *err);

#endif
