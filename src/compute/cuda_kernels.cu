/* cuda_kernels.cu - the CUDA backend's kernels: weight conversion (every
 * at_dtype, on the device), layer norm, activations, softmax, element-wise
 * sums, direct 1-D convolution and batched attention.  Matrix products are
 * cuBLAS's (backend_cuda.c).  Arithmetic is f32; only the inputs of the
 * f16 products are rounded to f16. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>

#include "compute/cuda_kernels.h"

extern "C" {
#include "compute/backend.h"
}

#define THREADS 256

/* The launch's error (cudaGetLastError also returns an earlier call's
 * error nobody cleared: the launchers clear it first, with ready()). */
static int launched(void) { return (int)cudaGetLastError(); }
static void ready(void) { (void)cudaGetLastError(); }

/* Blocks for a grid-stride loop over n items. */
static unsigned blocks_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

/* ------------------------------------------------------------ weights */

__device__ static float half_at(const uint8_t *p)
{
    return __half2float(__ushort_as_half((unsigned short)(p[0] | p[1] << 8)));
}

__device__ static size_t block_bytes(int t)
{
    switch (t) {
    case AT_DT_Q4_0: return 18;
    case AT_DT_Q4_1: return 20;
    case AT_DT_Q5_0: return 22;
    case AT_DT_Q5_1: return 24;
    default: return 34; /* q8_0 */
    }
}

/* Value i of a row of type t (ggml's block layouts, as dtype.c). */
__device__ static float value_at(int t, const uint8_t *row, int i)
{
    switch (t) {
    case AT_DT_F32: return ((const float *)(const void *)row)[i];
    case AT_DT_F16: return half_at(row + 2 * i);
    case AT_DT_BF16: return __uint_as_float((unsigned)(row[2 * i] | row[2 * i + 1] << 8) << 16);
    default: break;
    }
    const uint8_t *p = row + (size_t)(i / AT_QK) * block_bytes(t);
    int j = i % AT_QK, lo = j < 16;
    float d = half_at(p);
    switch (t) {
    case AT_DT_Q8_0: return d * (float)(int8_t)p[2 + j];
    case AT_DT_Q4_0: {
        int q = p[2 + (j & 15)];
        return d * (float)((lo ? q & 15 : q >> 4) - 8);
    }
    case AT_DT_Q4_1: {
        int q = p[4 + (j & 15)];
        return d * (float)(lo ? q & 15 : q >> 4) + half_at(p + 2);
    }
    case AT_DT_Q5_0:
    case AT_DT_Q5_1: {
        int one = t == AT_DT_Q5_1; /* q5_1 has a minimum after the scale */
        const uint8_t *h = p + 2 + 2 * one;
        unsigned qh = h[0] | h[1] << 8 | h[2] << 16 | (unsigned)h[3] << 24;
        int q = h[4 + (j & 15)];
        int v = lo ? (q & 15) | (int)((qh >> j) << 4 & 0x10) : (q >> 4) | (int)(qh >> (j - 4) & 0x10);
        return one ? d * (float)v + half_at(p + 2) : d * (float)(v - 16);
    }
    default: return 0.0f;
    }
}

__global__ static void dequant_kernel(int t, const uint8_t *src, size_t ld, const int *rows, int n, int cols,
                                      float *y, size_t ldy)
{
    size_t total = (size_t)n * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int r = (int)(i / cols), c = (int)(i % cols);
        int sr = rows ? rows[r] : r;
        y[(size_t)r * ldy + c] = value_at(t, src + (size_t)sr * ld, c);
    }
}

__global__ static void dequant_half_kernel(int t, const uint8_t *src, size_t ld, int n, int cols, void *y,
                                           size_t ldy, int half)
{
    size_t total = (size_t)n * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int r = (int)(i / cols), c = (int)(i % cols);
        float v = value_at(t, src + (size_t)r * ld, c);
        if (half)
            ((__half *)y)[(size_t)r * ldy + c] = __float2half(v);
        else
            ((__nv_bfloat16 *)y)[(size_t)r * ldy + c] = __float2bfloat16(v);
    }
}

__global__ static void to_half_kernel(const float *x, size_t ldx, int rows, int cols, void *y, int half)
{
    size_t total = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[(i / cols) * ldx + i % cols];
        if (half)
            ((__half *)y)[i] = __float2half(v);
        else
            ((__nv_bfloat16 *)y)[i] = __float2bfloat16(v);
    }
}

extern "C" int at_cu_dequant_rows(void *stream, int t, const void *src, size_t ld_bytes, const int *rows,
                                  int n, int cols, float *y, size_t ldy)
{
    if (n <= 0 || cols <= 0) return 0;
    ready();
    dequant_kernel<<<blocks_for((size_t)n * cols), THREADS, 0, (cudaStream_t)stream>>>(
        t, (const uint8_t *)src, ld_bytes, rows, n, cols, y, ldy);
    return launched();
}

extern "C" int at_cu_dequant_rows_h(void *stream, int t, const void *src, size_t ld_bytes, int n, int cols,
                                    void *y, size_t ldy, int half)
{
    if (n <= 0 || cols <= 0) return 0;
    ready();
    dequant_half_kernel<<<blocks_for((size_t)n * cols), THREADS, 0, (cudaStream_t)stream>>>(
        t, (const uint8_t *)src, ld_bytes, n, cols, y, ldy, half);
    return launched();
}

extern "C" int at_cu_to_half(void *stream, const float *x, size_t ldx, int rows, int cols, void *y, int half)
{
    if (rows <= 0 || cols <= 0) return 0;
    ready();
    to_half_kernel<<<blocks_for((size_t)rows * cols), THREADS, 0, (cudaStream_t)stream>>>(x, ldx, rows, cols,
                                                                                          y, half);
    return launched();
}

/* ------------------------------------------------------------ rows */

__device__ static float warp_reduce(float v, int is_max)
{
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

/* The sum (or maximum) of v over the block; sh holds 33 floats.  Every
 * thread of the block must call it. */
__device__ static float block_reduce(float v, float *sh, int is_max)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, is_max);
    __syncthreads(); /* sh may still be read from the previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float u = lane < nw ? sh[lane] : is_max ? -INFINITY : 0.0f;
        u = warp_reduce(u, is_max);
        if (lane == 0) sh[32] = u;
    }
    __syncthreads();
    return sh[32];
}

__global__ static void layer_norm_kernel(const float *x, size_t ldx, int cols, const float *w, const float *b,
                                         float eps, float *y, size_t ldy)
{
    __shared__ float sh[33];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float *yr = y + (size_t)blockIdx.x * ldy;
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
    float mu = block_reduce(s, sh, 0) / (float)cols;
    float v = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) v += (xr[c] - mu) * (xr[c] - mu);
    float inv = rsqrtf(block_reduce(v, sh, 0) / (float)cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        yr[c] = (xr[c] - mu) * inv * w[c] + (b ? b[c] : 0.0f);
}

extern "C" int at_cu_layer_norm(void *stream, const float *x, size_t ldx, int rows, int cols, const float *w,
                                const float *b, float eps, float *y, size_t ldy)
{
    if (rows <= 0 || cols <= 0) return 0;
    ready();
    layer_norm_kernel<<<rows, THREADS, 0, (cudaStream_t)stream>>>(x, ldx, cols, w, b, eps, y, ldy);
    return launched();
}

__global__ static void act_kernel(int act, const float *x, size_t ldx, int rows, int cols, float *y,
                                  size_t ldy)
{
    size_t total = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / cols, c = i % cols;
        float v = x[r * ldx + c];
        switch (act) {
        case AT_ACT_GELU: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case AT_ACT_RELU: v = v > 0.0f ? v : 0.0f; break;
        case AT_ACT_SILU: v = v / (1.0f + expf(-v)); break;
        case AT_ACT_TANH: v = tanhf(v); break;
        case AT_ACT_SIGMOID: v = 1.0f / (1.0f + expf(-v)); break;
        default: break;
        }
        y[r * ldy + c] = v;
    }
}

extern "C" int at_cu_act(void *stream, int act, const float *x, size_t ldx, int rows, int cols, float *y,
                         size_t ldy)
{
    if (rows <= 0 || cols <= 0) return 0;
    ready();
    act_kernel<<<blocks_for((size_t)rows * cols), THREADS, 0, (cudaStream_t)stream>>>(act, x, ldx, rows, cols,
                                                                                      y, ldy);
    return launched();
}

__global__ static void softmax_kernel(const float *x, size_t ldx, int cols, float *y, size_t ldy)
{
    __shared__ float sh[33];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float *yr = y + (size_t)blockIdx.x * ldy;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
    m = block_reduce(m, sh, 1);
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - m);
    s = block_reduce(s, sh, 0);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = expf(xr[c] - m) / s;
}

extern "C" int at_cu_softmax(void *stream, const float *x, size_t ldx, int rows, int cols, float *y,
                             size_t ldy)
{
    if (rows <= 0 || cols <= 0) return 0;
    ready();
    softmax_kernel<<<rows, THREADS, 0, (cudaStream_t)stream>>>(x, ldx, cols, y, ldy);
    return launched();
}

__global__ static void axpb_kernel(float s, const float *a, size_t lda, const float *b, size_t ldb, int rows,
                                   int cols, float *y, size_t ldy)
{
    size_t total = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / cols, c = i % cols;
        y[r * ldy + c] = s * a[r * lda + c] + (b ? b[r * ldb + c] : 0.0f);
    }
}

extern "C" int at_cu_axpb(void *stream, float s, const float *a, size_t lda, const float *b, size_t ldb,
                          int rows, int cols, float *y, size_t ldy)
{
    if (rows <= 0 || cols <= 0) return 0;
    ready();
    axpb_kernel<<<blocks_for((size_t)rows * cols), THREADS, 0, (cudaStream_t)stream>>>(s, a, lda, b, ldb,
                                                                                       rows, cols, y, ldy);
    return launched();
}

/* ------------------------------------------------------- convolution */

/* One output value per thread: PyTorch's definitions read directly
 * (no im2col); the GPU has threads enough for every output of a VITS
 * decoder's layer. */
__global__ static void conv_kernel(const float *x, int T_in, int C_in, const float *w, const float *bias,
                                   int K, int stride, int pad, int dil, int g, int transposed, float *y,
                                   int T_out, int C_out)
{
    size_t total = (size_t)T_out * C_out;
    int cig = C_in / g, cog = C_out / g;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(i / C_out), co = (int)(i % C_out), gi = co / cog;
        float s = bias ? bias[co] : 0.0f;
        for (int k = 0; k < K; k++) {
            int ti;
            if (transposed) {
                int num = t + pad - k * dil;
                if (num < 0 || num % stride) continue;
                ti = num / stride;
            } else {
                ti = t * stride + k * dil - pad;
            }
            if (ti < 0 || ti >= T_in) continue;
            const float *xr = x + (size_t)ti * C_in + (size_t)gi * cig;
            for (int ci = 0; ci < cig; ci++) {
                size_t wi = transposed ? ((size_t)(gi * cig + ci) * cog + (co - gi * cog)) * K + k
                                       : ((size_t)co * cig + ci) * K + k;
                s += xr[ci] * w[wi];
            }
        }
        y[(size_t)t * C_out + co] = s;
    }
}

extern "C" int at_cu_conv1d(void *stream, const float *x, int T_in, int C_in, const float *w,
                            const float *bias, int K, int stride, int pad, int dil, int groups,
                            int transposed, float *y, int T_out, int C_out)
{
    if (T_out <= 0 || C_out <= 0) return 0;
    ready();
    conv_kernel<<<blocks_for((size_t)T_out * C_out), THREADS, 0, (cudaStream_t)stream>>>(
        x, T_in, C_in, w, bias, K, stride, pad, dil, groups, transposed, y, T_out, C_out);
    return launched();
}

/* ---------------------------------------------------------- attention */

#define ATT_TILE    64
#define ATT_THREADS 128

/* One block per (query row, head): keys a tile at a time, a warp per key
 * for the scores (lanes read the key's head slice together), then the
 * tile's probabilities fold into a running maximum, sum and output
 * (online softmax): no score matrix over all keys is ever stored. */
__global__ static void attention_kernel(const float *q, size_t ldq, const at_cu_attn_seq *seqs, int n_seqs,
                                        int hd, float scale, float *o, size_t ldo)
{
    extern __shared__ float sm[];
    float *qs = sm, *acc = qs + hd, *p = acc + hd, *red = p + ATT_TILE;
    int row = blockIdx.x, h = blockIdx.y, s = -1;
    for (int i = 0; i < n_seqs && s < 0; i++)
        if (row >= seqs[i].q_row && row < seqs[i].q_row + seqs[i].n_q) s = i;
    if (s < 0) return; /* the whole block leaves together */
    const at_cu_attn_seq S = seqs[s];
    int j = row - S.q_row;
    int len = S.causal >= 0 && S.causal + j + 1 < S.n_kv ? S.causal + j + 1 : S.n_kv;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        qs[d] = q[(size_t)row * ldq + (size_t)h * hd + d] * scale;
        acc[d] = 0.0f;
    }
    __syncthreads();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    float m = -INFINITY, l = 0.0f;
    for (int k0 = 0; k0 < len; k0 += ATT_TILE) {
        int n = len - k0 < ATT_TILE ? len - k0 : ATT_TILE;
        for (int t = warp; t < n; t += nw) {
            const float *kr = S.k + (size_t)(k0 + t) * S.ldk + (size_t)h * hd;
            float dot = 0.0f;
            for (int d = lane; d < hd; d += 32) dot += qs[d] * kr[d];
            dot = warp_reduce(dot, 0);
            if (lane == 0) p[t] = dot;
        }
        __syncthreads();
        float mx = -INFINITY;
        for (int t = threadIdx.x; t < n; t += blockDim.x) mx = fmaxf(mx, p[t]);
        float mnew = fmaxf(m, block_reduce(mx, red, 1)), ps = 0.0f;
        float corr = expf(m - mnew); /* 0 on the first tile */
        for (int t = threadIdx.x; t < n; t += blockDim.x) {
            float e = expf(p[t] - mnew);
            p[t] = e;
            ps += e;
        }
        l = l * corr + block_reduce(ps, red, 0); /* also publishes p */
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            const float *vc = S.v + (size_t)k0 * S.ldv + (size_t)h * hd + d;
            float a = acc[d] * corr;
            for (int t = 0; t < n; t++) a += p[t] * vc[(size_t)t * S.ldv];
            acc[d] = a;
        }
        m = mnew;
        __syncthreads(); /* p is rewritten by the next tile */
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) o[(size_t)row * ldo + (size_t)h * hd + d] = acc[d] / l;
}

extern "C" int at_cu_attention(void *stream, const float *q, size_t ldq, int q_rows,
                               const at_cu_attn_seq *seqs, int n_seqs, int n_head, int hd, float scale,
                               float *o, size_t ldo)
{
    if (q_rows <= 0 || n_seqs <= 0 || n_head <= 0) return 0;
    ready();
    dim3 grid((unsigned)q_rows, (unsigned)n_head);
    size_t shared = (2 * (size_t)hd + ATT_TILE + 33) * sizeof(float);
    attention_kernel<<<grid, ATT_THREADS, shared, (cudaStream_t)stream>>>(q, ldq, seqs, n_seqs, hd, scale, o,
                                                                          ldo);
    return launched();
}
