/* backend_cuda.c - the CUDA backend: device memory, one CUDA stream per
 * backend object, cuBLAS for the matrix products and the kernels of
 * cuda_kernels.cu for the rest (docs/compute.md, "How a CUDA backend maps
 * onto this").
 *
 * Every operation is enqueued on the backend's stream and returns at once;
 * at_tensor_download and at_backend_sync wait.  Weights of every type live
 * on the device as they were loaded: f16 and bf16 go to cuBLAS as they are
 * (f32 accumulation), the block-quantized types are converted to f16 a
 * tile of rows at a time just before their product.  Backends of one
 * device share buffers (one memory kind), so a model's weights, uploaded
 * once, serve every stream. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/backend_impl.h"
#include "compute/cuda_kernels.h"

static const char CUDA_KIND[] = "cuda";

/* Rows of a quantized weight converted to f16 per product: 32 MB of f16
 * for a 4096-wide matrix, however tall the matrix (a vocabulary). */
#define DEQ_TILE_ROWS 4096

typedef struct {
    at_backend base;
    int device;
    cudaStream_t stream; /* cudaStreamLegacy for weights */
    cublasHandle_t blas; /* NULL for weights: no products */
    /* device buffers grown as needed (dev_grow), capacities in bytes */
    void *scratch; /* f16 copies of activations and weight tiles */
    size_t scratch_cap;
    void *seqs; /* the attention call's sequence table */
    size_t seqs_cap;
    void *ids; /* get_rows' row ids */
    size_t ids_cap;
} cuda_backend;

static cuda_backend *CB(at_backend *be) { return (cuda_backend *)be; }

static int cu_fail(at_err *err, cudaError_t e, const char *what)
{
    (void)cudaGetLastError(); /* not left for the next launch to report */
    return at_err_set(err, e == cudaErrorMemoryAllocation ? AT_E_NOMEM : AT_E_ENGINE, "cuda %s: %s", what,
                      cudaGetErrorString(e));
}

#define CU(call, what)                                                                                       \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) return cu_fail(err, e_, what);                                                \
    } while (0)

/* Every call runs on the backend's GPU, whichever thread makes it (a
 * batch is run by whichever caller leads it). */
#define ON_DEVICE(be) CU(cudaSetDevice(CB(be)->device), "device")

/* A launcher's result (a cudaError_t as int). */
#define LAUNCH(call, what) CU((cudaError_t)(call), what)

static int blas_fail(at_err *err, cublasStatus_t s, const char *what)
{
    return at_err_set(err, s == CUBLAS_STATUS_ALLOC_FAILED ? AT_E_NOMEM : AT_E_ENGINE, "cublas %s: status %d",
                      what, (int)s);
}

int at_cuda_devices(at_err *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cu_fail(err, e, "no device");
        return 0;
    }
    if (n == 0) at_err_set(err, AT_E_UNSUPPORTED, "cuda: no device");
    return n;
}

/* --------------------------------------------------------------- memory */

static at_buffer *buf_alloc(at_backend *be, size_t bytes, at_err *err)
{
    at_buffer *b = calloc(1, sizeof *b);
    void *p = NULL;
    cudaError_t e = b ? cudaSetDevice(CB(be)->device) : cudaErrorMemoryAllocation;
    if (e == cudaSuccess) e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        free(b);
        (void)cudaGetLastError();
        at_err_set(err, AT_E_NOMEM, "cuda: no memory for %zu bytes (%s)", bytes, cudaGetErrorString(e));
        return NULL;
    }
    b->ops = be->ops;
    b->kind = CUDA_KIND;
    b->base = p;
    b->size = bytes;
    return b;
}

static void buf_free(at_buffer *b)
{
    /* cudaFree waits for the device's work, whichever stream it is on */
    cudaFree(b->base);
    free(b);
}

static at_buffer *buf_new(at_backend *be, size_t bytes, at_err *err)
{
    at_buffer *b = buf_alloc(be, bytes, err);
    /* waited for: another backend's stream may use the buffer next (a KV
     * cache made by the model's backend) */
    cudaError_t e = b ? cudaMemsetAsync(b->base, 0, bytes, CB(be)->stream) : cudaSuccess;
    if (e == cudaSuccess && b) e = cudaStreamSynchronize(CB(be)->stream);
    if (e != cudaSuccess) {
        buf_free(b);
        cu_fail(err, e, "memset");
        return NULL;
    }
    return b;
}

static at_buffer *buf_from_host(at_backend *be, const void *data, size_t bytes, at_err *err)
{
    at_buffer *b = buf_alloc(be, bytes, err);
    /* synchronous: the weights are uploaded once, at model load */
    cudaError_t e = b ? cudaMemcpy(b->base, data, bytes, cudaMemcpyHostToDevice) : cudaSuccess;
    if (e != cudaSuccess) {
        buf_free(b);
        cu_fail(err, e, "weight upload");
        return NULL;
    }
    return b;
}

static void *DEV(const at_tensor *t) { return (char *)t->buf->base + t->offs; }
static float *F(const at_tensor *t) { return (float *)DEV(t); }
static size_t LD(const at_tensor *t) { return t->nb[1] / sizeof(float); }
static size_t rbytes(const at_tensor *t) { return at_dtype_row_bytes(t->type, t->ne[0]); }

static int rows_of(const at_tensor *t, at_err *err) { return at_tensor_rows_even(t, "cuda", err); }

static int upload(at_backend *be, at_tensor *dst, const void *src, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(dst, err)) return AT_E_UNSUPPORTED;
    size_t rb = rbytes(dst);
    CU(cudaMemcpy2DAsync(DEV(dst), dst->nb[1], src, rb, rb, (size_t)at_tensor_rows(dst),
                         cudaMemcpyHostToDevice, CB(be)->stream),
       "upload");
    return 0;
}

static int download(at_backend *be, const at_tensor *src, void *dst, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(src, err)) return AT_E_UNSUPPORTED;
    size_t rb = rbytes(src);
    CU(cudaMemcpy2DAsync(dst, rb, DEV(src), src->nb[1], rb, (size_t)at_tensor_rows(src),
                         cudaMemcpyDeviceToHost, CB(be)->stream),
       "download");
    CU(cudaStreamSynchronize(CB(be)->stream), "download");
    return 0;
}

static int sync_(at_backend *be, at_err *err)
{
    ON_DEVICE(be);
    CU(cudaStreamSynchronize(CB(be)->stream), "sync");
    return 0;
}

/* Grows a device buffer of b's (*p, *cap bytes) to at least bytes; the
 * stream is drained before the older, smaller one is freed (queued
 * kernels may still read it). */
static void *dev_grow(cuda_backend *b, void **p, size_t *cap, size_t bytes, const char *what, at_err *err)
{
    if (bytes <= *cap) return *p;
    cudaError_t e = cudaStreamSynchronize(b->stream);
    cudaFree(*p);
    *p = NULL;
    *cap = 0;
    if (e == cudaSuccess) e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cu_fail(err, e, what);
        return NULL;
    }
    *cap = bytes;
    return *p;
}

/* ----------------------------------------------------------- operations */

/* y[M x N] (+)= x w^T for n rows of w held as f16/bf16 (wh, ldw elements
 * apart) and x converted to the same type (xh, K apart): cuBLAS is column
 * major, so it computes y^T = w x^T. */
static int gemm_half(cuda_backend *b, const void *wh, size_t ldw, cudaDataType_t wt, const void *xh, int M,
                     int N, int K, float *y, size_t ldy, at_err *err)
{
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s =
        cublasGemmEx(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, wh, wt, (int)ldw, xh, wt, K, &zero, y,
                     CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(err, s, "gemm");
}

static int matmul(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias, at_tensor *y,
                  at_err *err)
{
    cuda_backend *b = CB(be);
    ON_DEVICE(be);
    if (!b->blas) return at_err_set(err, AT_E_INVALID, "cuda backend of weights only runs no product");
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    int M = (int)at_tensor_rows(x), K = (int)at_tensor_cols(x), N = (int)at_tensor_rows(w);
    if (w->type == AT_DT_F32) {
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s = cublasSgemm(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, F(w), (int)LD(w),
                                       F(x), (int)LD(x), &zero, F(y), (int)LD(y));
        if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(err, s, "sgemm");
    } else {
        /* bf16 weights meet bf16 activations, all others f16 */
        int half = w->type != AT_DT_BF16;
        cudaDataType_t wt = half ? CUDA_R_16F : CUDA_R_16BF;
        int tile = w->type == AT_DT_F16 || w->type == AT_DT_BF16 ? 0 : N < DEQ_TILE_ROWS ? N : DEQ_TILE_ROWS;
        size_t xbytes = (size_t)M * K * 2, need = xbytes + (size_t)tile * K * 2;
        char *sc = dev_grow(b, &b->scratch, &b->scratch_cap, need, "scratch", err);
        if (!sc) return AT_E_NOMEM;
        LAUNCH(at_cu_to_half(b->stream, F(x), LD(x), M, K, sc, half), "convert");
        if (!tile) {
            int rc = gemm_half(b, DEV(w), w->nb[1] / 2, wt, sc, M, N, K, F(y), LD(y), err);
            if (rc) return rc;
        }
        for (int n0 = 0; tile && n0 < N; n0 += tile) {
            int n = N - n0 < tile ? N - n0 : tile;
            LAUNCH(at_cu_dequant_rows_h(b->stream, w->type, (const char *)DEV(w) + (size_t)n0 * w->nb[1],
                                        w->nb[1], n, K, sc + xbytes, (size_t)K, 1),
                   "dequantize");
            int rc = gemm_half(b, sc + xbytes, (size_t)K, CUDA_R_16F, sc, M, n, K, F(y) + n0, LD(y), err);
            if (rc) return rc;
        }
    }
    if (bias) LAUNCH(at_cu_axpb(b->stream, 1.0f, F(y), LD(y), F(bias), 0, M, N, F(y), LD(y)), "bias");
    return 0;
}

static int layer_norm(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bb, float eps,
                      at_tensor *y, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    LAUNCH(at_cu_layer_norm(CB(be)->stream, F(x), LD(x), (int)at_tensor_rows(x), (int)at_tensor_cols(x), F(w),
                            bb ? F(bb) : NULL, eps, F(y), LD(y)),
           "layer_norm");
    return 0;
}

static int act(at_backend *be, at_act a, const at_tensor *x, at_tensor *y, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    LAUNCH(at_cu_act(CB(be)->stream, (int)a, F(x), LD(x), (int)at_tensor_rows(x), (int)at_tensor_cols(x),
                     F(y), LD(y)),
           "act");
    return 0;
}

static int softmax(at_backend *be, const at_tensor *x, at_tensor *y, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    LAUNCH(at_cu_softmax(CB(be)->stream, F(x), LD(x), (int)at_tensor_rows(x), (int)at_tensor_cols(x), F(y),
                         LD(y)),
           "softmax");
    return 0;
}

static int add(at_backend *be, const at_tensor *a, const at_tensor *bt, at_tensor *y, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(a, err) || rows_of(bt, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    size_t ldb = at_tensor_rows(bt) == 1 ? 0 : LD(bt);
    LAUNCH(at_cu_axpb(CB(be)->stream, 1.0f, F(a), LD(a), F(bt), ldb, (int)at_tensor_rows(a),
                      (int)at_tensor_cols(a), F(y), LD(y)),
           "add");
    return 0;
}

static int scale(at_backend *be, const at_tensor *x, float s, at_tensor *y, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    LAUNCH(at_cu_axpb(CB(be)->stream, s, F(x), LD(x), NULL, 0, (int)at_tensor_rows(x), (int)at_tensor_cols(x),
                      F(y), LD(y)),
           "scale");
    return 0;
}

static int get_rows(at_backend *be, const at_tensor *tab, const int *ids, int n, at_tensor *y, at_err *err)
{
    cuda_backend *b = CB(be);
    ON_DEVICE(be);
    if (rows_of(y, err) || rows_of(tab, err)) return AT_E_UNSUPPORTED;
    int *d = dev_grow(b, &b->ids, &b->ids_cap, (size_t)n * sizeof *ids, "get_rows ids", err);
    if (!d) return AT_E_NOMEM;
    /* from pageable memory: returns once the ids are staged, so the
     * caller may reuse its array */
    CU(cudaMemcpyAsync(d, ids, (size_t)n * sizeof *ids, cudaMemcpyHostToDevice, b->stream), "get_rows ids");
    LAUNCH(at_cu_dequant_rows(b->stream, tab->type, DEV(tab), tab->nb[1], d, n, (int)at_tensor_cols(tab),
                              F(y), LD(y)),
           "get_rows");
    return 0;
}

static int copy(at_backend *be, const at_tensor *src, at_tensor *dst, at_err *err)
{
    ON_DEVICE(be);
    if (rows_of(src, err) || rows_of(dst, err)) return AT_E_UNSUPPORTED;
    if (DEV(src) == DEV(dst) && src->nb[1] == dst->nb[1]) return 0;
    size_t rb = rbytes(src);
    CU(cudaMemcpy2DAsync(DEV(dst), dst->nb[1], DEV(src), src->nb[1], rb, (size_t)at_tensor_rows(src),
                         cudaMemcpyDeviceToDevice, CB(be)->stream),
       "copy");
    return 0;
}

static int conv1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                  const at_conv1d_params *p, int transposed, at_tensor *y, at_err *err)
{
    cuda_backend *b = CB(be);
    ON_DEVICE(be);
    if (!at_tensor_contiguous(x) || !at_tensor_contiguous(y))
        return at_err_set(err, AT_E_UNSUPPORTED, "cuda conv1d: activations must be contiguous");
    if (p->residual || p->leaky) return at_err_set(err, AT_E_UNSUPPORTED, "cuda conv1d: no fused epilogue");
    const float *wf = F(w);
    if (w->type != AT_DT_F32) { /* the kernel reads f32 weights */
        size_t n = (size_t)at_tensor_rows(w) * (size_t)at_tensor_cols(w);
        float *sc = dev_grow(b, &b->scratch, &b->scratch_cap, n * sizeof(float), "scratch", err);
        if (!sc) return AT_E_NOMEM;
        LAUNCH(at_cu_dequant_rows(b->stream, w->type, DEV(w), w->nb[1], NULL, (int)at_tensor_rows(w),
                                  (int)at_tensor_cols(w), sc, (size_t)at_tensor_cols(w)),
               "conv1d weights");
        wf = sc;
    }
    LAUNCH(at_cu_conv1d(b->stream, F(x), (int)at_tensor_rows(x), (int)at_tensor_cols(x), wf,
                        bias ? F(bias) : NULL, p->kernel, p->stride, p->padding, p->dilation, p->groups,
                        transposed, F(y), (int)at_tensor_rows(y), (int)at_tensor_cols(y)),
           "conv1d");
    return 0;
}

static int attention(at_backend *be, const at_tensor *q, const at_attn_seq *seqs, int n_seqs, int n_head,
                     float sc, at_tensor *o, at_err *err)
{
    cuda_backend *b = CB(be);
    ON_DEVICE(be);
    if (rows_of(q, err) || rows_of(o, err)) return AT_E_UNSUPPORTED;
    if (n_seqs == 0) return 0;
    at_cu_attn_seq *host = malloc((size_t)n_seqs * sizeof *host);
    if (!host) return at_err_set(err, AT_E_NOMEM, "out of memory (attention table)");
    for (int i = 0; i < n_seqs; i++)
        host[i] = (at_cu_attn_seq){F(seqs[i].k),  F(seqs[i].v), (int)LD(seqs[i].k), (int)LD(seqs[i].v),
                                   seqs[i].q_row, seqs[i].n_q,  seqs[i].n_kv,       seqs[i].causal};
    at_cu_attn_seq *d =
        dev_grow(b, &b->seqs, &b->seqs_cap, (size_t)n_seqs * sizeof *host, "attention table", err);
    cudaError_t e =
        d ? cudaMemcpyAsync(d, host, (size_t)n_seqs * sizeof *host, cudaMemcpyHostToDevice, b->stream)
          : cudaSuccess;
    free(host);
    if (!d) return AT_E_NOMEM;
    CU(e, "attention table");
    int D = (int)at_tensor_cols(q), hd = D / n_head;
    LAUNCH(at_cu_attention(b->stream, F(q), LD(q), (int)at_tensor_rows(q), d, n_seqs, n_head, hd,
                           sc > 0 ? sc : 1.0f / sqrtf((float)hd), F(o), LD(o)),
           "attention");
    return 0;
}

static void cuda_free(at_backend *be)
{
    cuda_backend *b = CB(be);
    cudaSetDevice(b->device);
    cudaStreamSynchronize(b->stream);
    if (b->blas) cublasDestroy(b->blas);
    cudaFree(b->scratch);
    cudaFree(b->seqs);
    cudaFree(b->ids);
    if (b->stream != cudaStreamLegacy) cudaStreamDestroy(b->stream);
    free(b);
}

static const at_backend_ops CUDA_OPS = {
    .name = "cuda",
    .buffer_new = buf_new,
    .buffer_from_host = buf_from_host,
    .buffer_free = buf_free,
    .upload = upload,
    .download = download,
    .sync = sync_,
    .matmul = matmul,
    .layer_norm = layer_norm,
    .act = act,
    .softmax = softmax,
    .add = add,
    .scale = scale,
    .get_rows = get_rows,
    .copy = copy,
    .conv1d = conv1d,
    .attention = attention,
    .free = cuda_free,
};

at_backend *at_backend_cuda_new(int device, int weights_only, at_err *err)
{
    int n = at_cuda_devices(err);
    if (n <= 0) return NULL;
    if (device < 0 || device >= n) {
        at_err_set(err, AT_E_INVALID, "cuda: device %d of %d", device, n);
        return NULL;
    }
    cuda_backend *b = calloc(1, sizeof *b);
    if (!b) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    b->base.ops = &CUDA_OPS;
    b->base.kind = CUDA_KIND;
    b->device = device;
    /* Operations of a model's backend (copies between KV caches) go on
     * the legacy default stream, which waits for the work of every
     * stream and makes them wait for its own; a request's backend has a
     * (blocking) stream of its own. */
    cudaError_t e = cudaSetDevice(device);
    b->stream = cudaStreamLegacy;
    if (e == cudaSuccess && !weights_only) e = cudaStreamCreate(&b->stream);
    if (e != cudaSuccess) {
        cu_fail(err, e, "stream");
        cuda_free(&b->base);
        return NULL;
    }
    if (!weights_only) {
        cublasStatus_t s = cublasCreate(&b->blas);
        if (s != CUBLAS_STATUS_SUCCESS) b->blas = NULL;
        if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(b->blas, b->stream);
        if (s != CUBLAS_STATUS_SUCCESS) {
            blas_fail(err, s, "create");
            cuda_free(&b->base);
            return NULL;
        }
    }
    return &b->base;
}
