/* backend.h - a small CPU compute backend shared by the neural models
 * (Whisper now; Marian, NLLB, VITS later).
 *
 * Activations are always float32, row-major.  Weights are matrices stored
 * [out x in] (PyTorch's nn.Linear layout, one output per row) in f32, f16,
 * bf16 or one of ggml's block-quantized layouts (32 values per block), so a
 * memory-mapped file can be used in place.
 *
 * Large products go through our blocked GEMM (compute/gemm.h; weights
 * that are not f32 are converted to f32 in tiles, never as a whole copy);
 * small ones (decoder steps) use fused dot-product kernels.  Both are
 * chosen at run time by instruction set (AVX-512, AVX2/FMA/F16C), with a
 * portable scalar fallback.  Parallelism is a per-context pthread pool. */
#ifndef AT_COMPUTE_BACKEND_H
#define AT_COMPUTE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Values equal ggml's type ids where ggml has the type, so a ggml file's
 * tensor type maps directly. */
typedef enum {
    AT_DT_F32 = 0,
    AT_DT_F16 = 1,
    AT_DT_Q4_0 = 2,
    AT_DT_Q4_1 = 3,
    AT_DT_Q5_0 = 6,
    AT_DT_Q5_1 = 7,
    AT_DT_Q8_0 = 8,
    AT_DT_BF16 = 30
} at_dtype;

#define AT_QK 32 /* values per quantization block */

/* 1 if t is one of the types above. */
int at_dtype_valid(int t);
const char *at_dtype_name(at_dtype t);
/* Values per block (1 for f32/f16/bf16, 32 for quantized types). */
int at_dtype_block(at_dtype t);
/* Bytes per block. */
size_t at_dtype_block_bytes(at_dtype t);
/* Bytes of a row of n values; 0 when n is not a whole number of blocks. */
size_t at_dtype_row_bytes(at_dtype t, int64_t n);

float at_f16_to_f32(uint16_t h);
uint16_t at_f32_to_f16(float f); /* round to nearest even */
float at_bf16_to_f32(uint16_t h);

/* Converts n values (n a multiple of the block size) from src to float. */
void at_dequant_row(at_dtype t, const void *src, float *dst, int n);
/* Quantizes n floats (n a multiple of the block size) into dst with ggml's
 * reference rounding; returns the bytes written. t may be f32/f16 too. */
size_t at_quant_row(at_dtype t, const float *src, void *dst, int n);

/* A weight matrix [rows x cols] (rows = outputs, cols = inputs). */
typedef struct at_matrix {
    at_dtype type;
    int rows, cols;
    const void *data; /* rows * row_bytes bytes, any alignment */
    size_t row_bytes; /* at_dtype_row_bytes(type, cols) */
} at_matrix;

/* Instruction-set levels of the CPU kernels, chosen by cpuid (never by
 * CPU model).  AMX is not used: it needs the kernel's permission per
 * process, and some virtual machines list it without granting it. */
typedef enum {
    AT_ISA_SCALAR = 0, /* portable C */
    AT_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    AT_ISA_AVX512 = 2  /* AVX-512F on top of AVX2 (f32 products) */
} at_isa;

/* The best level this CPU and operating system run. */
at_isa at_isa_detect(void);
const char *at_isa_name(at_isa isa);
/* "model name (model N)" from /proc/cpuinfo, for logs and figures:
 * kernels are chosen by features, but speed is reported per CPU. */
void at_cpu_name(char *out, size_t cap);

typedef struct at_compute at_compute;

/* n_threads <= 0: number of online CPUs.  A context may be shared by
 * threads: its products (at_matmul, at_attention, at_conv1d_k3_gelu) run
 * one at a time, each on all of the pool's threads. */
at_compute *at_compute_new(int n_threads, at_err *err);
/* A context for one caller (a request or a stream) on a process's shared
 * pool: each product runs on the whole pool when the pool is free, and on
 * the caller's own thread when another caller holds it, so many streams
 * proceed side by side instead of queueing behind each other's small
 * products.  Free it before the pool. */
at_compute *at_compute_new_client(at_compute *pool, at_err *err);
void at_compute_free(at_compute *c);
int at_compute_threads(const at_compute *c);
/* Caps the kernels c runs at max (tests run every level the machine has;
 * the default is at_isa_detect()); returns the level now in use. */
at_isa at_compute_set_isa(at_compute *c, at_isa max);
at_isa at_compute_isa(const at_compute *c);

/* Runs fn(arg, chunk, ith) for chunk = 0..n_chunks-1 on the pool and
 * returns when all chunks are done.  Chunks are handed out dynamically
 * (ith: the running thread, 0 = the caller, for per-thread scratch), so a
 * thread that the OS deschedules (the cores are shared) does not stall the
 * others: whoever is running takes the remaining chunks. */
typedef void (*at_chunk_fn)(void *arg, int chunk, int ith);
void at_compute_run(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks);
/* Per-thread scratch of at least n floats for thread ith (valid until the
 * next at_compute_reserve). */
int at_compute_reserve(at_compute *c, size_t n, at_err *err);
float *at_compute_scratch(at_compute *c, int ith);

/* Y[M x N] = X[M x K] * W^T (+ bias[N]), W [N x K]. Y must not alias X.
 * Fails only on allocation failure (scratch memory). */
int at_matmul(at_compute *c, const float *X, int M, const at_matrix *W, const float *bias, float *Y,
              at_err *err);

/* Row-wise layer norm over N columns: y = (x - mean)/sqrt(var + eps)*w + b.
 * y may equal x. */
void at_layer_norm(const float *x, int M, int N, const float *w, const float *b, float eps, float *y);
/* GELU, exact erf form: 0.5 x (1 + erf(x / sqrt 2)), in place. */
void at_gelu(float *x, size_t n);
/* In-place softmax of one row. */
void at_softmax(float *x, int n);
/* y[i] += x[i] */
void at_add(float *y, const float *x, size_t n);
float at_dot(const float *a, const float *b, int n);

/* Multi-head scaled dot-product attention.
 * Q: Tq rows (stride ldq floats), K/V: Tk rows (strides ldk/ldv); head h
 * uses columns [h*hd, (h+1)*hd).  O: Tq rows, stride ldo.  causal >= 0:
 * query i (at absolute position causal + i) sees keys 0..causal+i only;
 * causal < 0: no mask.  Scale 1/sqrt(hd). */
int at_attention(at_compute *c, const float *Q, int ldq, const float *K, int ldk, const float *V, int ldv,
                 int Tq, int Tk, int n_head, int hd, int causal, float *O, int ldo, at_err *err);

/* 1-D convolution, kernel 3, padding 1, stride 1 or 2, followed by GELU.
 * x: T_in x C_in (time-major), W: [C_out x (C_in*3)] (PyTorch's
 * [C_out, C_in, 3] flattened), y: T_out x C_out with
 * T_out = (T_in + 2 - 3)/stride + 1. */
int at_conv1d_k3_gelu(at_compute *c, const float *x, int T_in, int C_in, const at_matrix *W,
                      const float *bias, int stride, float *y, at_err *err);

#endif
