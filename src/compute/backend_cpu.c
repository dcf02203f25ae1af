/* backend_cpu.c - the CPU backend: host memory, and the kernels of
 * kernels.c run on a compute context (a client of the process's pool).
 *
 * Weights made with at_tensor_from_host are used where they lie (a mapped
 * file), so loading a model copies nothing. */
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compute/backend_impl.h"
#include "compute/conv_fft.h"
#include "compute/gemm.h"
#include "compute/kernels.h"
#include "core/mem.h"

static const char CPU_KIND[] = "cpu";

typedef struct {
    at_backend base;
    at_compute *c; /* NULL: allocation only */
    /* The phase copies of dilated convolutions, kept from call to call:
     * a fresh buffer of several MB per call cost a page fault per page
     * (or huge page, cleared by the kernel) every time, a tenth of a VITS
     * voice's synthesis.  Whoever holds the lock uses it; a caller that
     * finds it taken allocates its own. */
    pthread_mutex_t keep_mu;
    float *keep;
    size_t keep_n;
} cpu_backend;

typedef struct {
    at_buffer base;
    int owned;
    void *raw;     /* what calloc or at_mem_map returned (base is aligned within it) */
    size_t mapped; /* bytes at_mem_map gave, 0 for calloc */
} cpu_buffer;

static at_compute *ctx(at_backend *be) { return ((cpu_backend *)be)->c; }

/* n floats of scratch: the backend's kept buffer (grown if needed) when no
 * one else holds it, else a buffer of the caller's own; *kept says which,
 * for keep_release. */
static float *keep_take(at_backend *be, size_t n, int *kept)
{
    cpu_backend *b = (cpu_backend *)be;
    *kept = 0;
    if (pthread_mutex_trylock(&b->keep_mu) != 0) return at_mem_large(n * sizeof(float));
    if (b->keep_n < n) {
        free(b->keep);
        b->keep_n = 0;
        if (!(b->keep = at_mem_large(n * sizeof(float)))) {
            pthread_mutex_unlock(&b->keep_mu);
            return NULL;
        }
        b->keep_n = n;
    }
    *kept = 1;
    return b->keep;
}

static void keep_release(at_backend *be, float *p, int kept)
{
    if (kept)
        pthread_mutex_unlock(&((cpu_backend *)be)->keep_mu);
    else
        free(p);
}

int at_backend_host_memory(const at_backend *be) { return be && be->kind == CPU_KIND; }

at_compute *at_backend_compute(const at_backend *be)
{
    return be && be->kind == CPU_KIND ? ((const cpu_backend *)be)->c : NULL;
}

static inline float *F(const at_tensor *t) { return (float *)at_tensor_host(t); }
static inline float *ROW(const at_tensor *t, int64_t r)
{
    return (float *)((char *)at_tensor_host(t) + (size_t)r * t->nb[1]);
}
static inline size_t LD(const at_tensor *t) { return t->nb[1] / sizeof(float); }

static int rows_of(const at_tensor *t, at_err *err) { return at_tensor_rows_even(t, "cpu", err); }

/* --------------------------------------------------------------- memory */

static at_buffer *buf_new(at_backend *be, size_t bytes, at_err *err)
{
    /* Zeroed, and pages touched only as far as used (a state sized for
     * 30 s of audio that encodes 5 s).  Large buffers are mapped with huge
     * pages: a transcription's state made afresh spent about as long in
     * 4 KiB page faults as in encoding 10 s of audio. */
    cpu_buffer *b = calloc(1, sizeof *b);
    void *p = NULL;
    if (b && bytes >= AT_MEM_LARGE_MIN && (p = at_mem_map(bytes)))
        b->mapped = bytes;
    else if (b && bytes <= SIZE_MAX - 64)
        p = calloc(1, bytes + 64);
    if (!p) {
        free(b);
        at_err_set(err, AT_E_NOMEM, "out of memory (%zu bytes for a tensor)", bytes);
        return NULL;
    }
    b->base.ops = be->ops;
    b->base.kind = CPU_KIND;
    b->raw = p;
    /* 64-byte aligned: the products read packed weights with aligned
     * vector loads */
    b->base.base = (char *)p + (64 - (uintptr_t)p % 64) % 64;
    b->base.size = bytes;
    b->owned = 1;
    return &b->base;
}

static at_buffer *buf_from_host(at_backend *be, const void *data, size_t bytes, at_err *err)
{
    cpu_buffer *b = calloc(1, sizeof *b);
    if (!b) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    b->base.ops = be->ops;
    b->base.kind = CPU_KIND;
    b->base.base = (void *)data; /* in place: weights, or a caller's output written without a download */
    b->base.size = bytes;
    return &b->base;
}

static void buf_free(at_buffer *ab)
{
    cpu_buffer *b = (cpu_buffer *)ab;
    if (b->owned && b->mapped)
        at_mem_unmap(b->raw, b->mapped);
    else if (b->owned)
        free(b->raw);
    free(b);
}

static size_t rbytes(const at_tensor *t) { return at_dtype_row_bytes(t->type, t->ne[0]); }

static int upload(at_backend *be, at_tensor *dst, const void *src, at_err *err)
{
    (void)be;
    if (rows_of(dst, err)) return AT_E_UNSUPPORTED;
    size_t rb = rbytes(dst);
    if (at_tensor_contiguous(dst)) { /* one copy, not one per row */
        memcpy(at_tensor_host(dst), src, rb * (size_t)at_tensor_rows(dst));
        return 0;
    }
    for (int64_t r = 0; r < at_tensor_rows(dst); r++)
        memcpy((char *)at_tensor_host(dst) + (size_t)r * dst->nb[1], (const char *)src + (size_t)r * rb, rb);
    return 0;
}

static int download(at_backend *be, const at_tensor *src, void *dst, at_err *err)
{
    (void)be;
    if (rows_of(src, err)) return AT_E_UNSUPPORTED;
    size_t rb = rbytes(src);
    if (at_tensor_contiguous(src)) {
        memcpy(dst, at_tensor_host(src), rb * (size_t)at_tensor_rows(src));
        return 0;
    }
    for (int64_t r = 0; r < at_tensor_rows(src); r++)
        memcpy((char *)dst + (size_t)r * rb, (const char *)at_tensor_host(src) + (size_t)r * src->nb[1], rb);
    return 0;
}

static int sync_(at_backend *be, at_err *err)
{
    (void)be;
    (void)err;
    return 0; /* operations run to completion when called */
}

static int need_ctx(at_backend *be, at_err *err)
{
    if (!ctx(be))
        return at_err_set(err, AT_E_INVALID, "cpu backend without a compute context runs no operation");
    return 0;
}

/* ----------------------------------------------------------- operations */

static at_matrix matrix_of(const at_tensor *w)
{
    at_matrix m = {w->type, (int)at_tensor_rows(w), (int)at_tensor_cols(w), at_tensor_host(w), w->nb[1], 0,
                   0};
    return m;
}

static int matmul(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias, at_tensor *y,
                  at_err *err)
{
    int rc = need_ctx(be, err);
    if (rc) return rc;
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    at_matrix W = matrix_of(w);
    return at_matmul_ld(ctx(be), F(x), (int)LD(x), (int)at_tensor_rows(x), &W, bias ? F(bias) : NULL, F(y),
                        (int)LD(y), err);
}

static int layer_norm(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *b, float eps,
                      at_tensor *y, at_err *err)
{
    (void)be;
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    int N = (int)at_tensor_cols(x);
    for (int64_t r = 0; r < at_tensor_rows(x); r++)
        at_layer_norm(ROW(x, r), 1, N, F(w), b ? F(b) : NULL, eps, ROW(y, r));
    return 0;
}

/* y = x row by row (a no-op when they are the same memory). */
static void copy_rows(const at_tensor *x, at_tensor *y)
{
    size_t n = (size_t)at_tensor_cols(x) * sizeof(float);
    for (int64_t r = 0; r < at_tensor_rows(x); r++)
        if (ROW(x, r) != ROW(y, r)) memmove(ROW(y, r), ROW(x, r), n);
}

static void act_run(at_act a, float *x, size_t n)
{
    switch (a) {
    case AT_ACT_GELU: at_gelu(x, n); break;
    case AT_ACT_RELU: at_relu(x, n); break;
    case AT_ACT_SILU: at_silu(x, n); break;
    case AT_ACT_TANH: at_tanh(x, n); break;
    case AT_ACT_SIGMOID: at_sigmoid(x, n); break;
    default: break;
    }
}

#define ACT_PIECE 2048 /* elements a task takes: a multiple of every vector width */

typedef struct {
    at_act a;
    at_tensor *y;
    size_t n;
    int per_row;
} act_job;

static void act_chunk(void *p, int chunk, int ith)
{
    (void)ith;
    act_job *j = p;
    size_t c0 = (size_t)(chunk % j->per_row) * ACT_PIECE;
    act_run(j->a, ROW(j->y, chunk / j->per_row) + c0, j->n - c0 < ACT_PIECE ? j->n - c0 : ACT_PIECE);
}

static int act(at_backend *be, at_act a, const at_tensor *x, at_tensor *y, at_err *err)
{
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    copy_rows(x, y);
    size_t n = (size_t)at_tensor_cols(y);
    int64_t rows = at_tensor_rows(y);
    /* a batch's feed-forward activations (8 x 2048 for Whisper base) on
     * the pool; pieces start on a multiple of the vectors, so each
     * element takes the same path as in one pass over its row */
    act_job j = {a, y, n, (int)((n + ACT_PIECE - 1) / ACT_PIECE)};
    if (ctx(be) && n * (size_t)rows >= 4 * ACT_PIECE && rows * j.per_row <= 1 << 16) {
        at_compute_run_pooled(ctx(be), act_chunk, &j, (int)rows * j.per_row);
        return 0;
    }
    for (int64_t r = 0; r < rows; r++) act_run(a, ROW(y, r), n);
    return 0;
}

static int softmax(at_backend *be, const at_tensor *x, at_tensor *y, at_err *err)
{
    (void)be;
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    copy_rows(x, y);
    for (int64_t r = 0; r < at_tensor_rows(y); r++) at_softmax(ROW(y, r), (int)at_tensor_cols(y));
    return 0;
}

static int add(at_backend *be, const at_tensor *a, const at_tensor *b, at_tensor *y, at_err *err)
{
    (void)be;
    if (rows_of(a, err) || rows_of(b, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    copy_rows(a, y);
    int64_t rb = at_tensor_rows(b);
    for (int64_t r = 0; r < at_tensor_rows(y); r++)
        at_add(ROW(y, r), ROW(b, rb == 1 ? 0 : r), (size_t)at_tensor_cols(y));
    return 0;
}

static int scale(at_backend *be, const at_tensor *x, float s, at_tensor *y, at_err *err)
{
    (void)be;
    if (rows_of(x, err) || rows_of(y, err)) return AT_E_UNSUPPORTED;
    copy_rows(x, y);
    for (int64_t r = 0; r < at_tensor_rows(y); r++) {
        float *row = ROW(y, r);
        for (int64_t i = 0; i < at_tensor_cols(y); i++) row[i] *= s;
    }
    return 0;
}

static int get_rows(at_backend *be, const at_tensor *table, const int *ids, int n, at_tensor *y, at_err *err)
{
    (void)be;
    if (rows_of(y, err) || rows_of(table, err)) return AT_E_UNSUPPORTED;
    for (int i = 0; i < n; i++)
        at_dequant_row(table->type, (const char *)at_tensor_host(table) + (size_t)ids[i] * table->nb[1],
                       ROW(y, i), (int)at_tensor_cols(table));
    return 0;
}

static int copy(at_backend *be, const at_tensor *src, at_tensor *dst, at_err *err)
{
    (void)be;
    if (rows_of(src, err) || rows_of(dst, err)) return AT_E_UNSUPPORTED;
    copy_rows(src, dst);
    return 0;
}

/* Time steps per piece of a convolution: its im2col matrix stays near
 * 4 MB however long the signal (a VITS decoder upsamples to 100k+ steps). */
static int conv_piece(int64_t cols)
{
    int64_t t = ((int64_t)1 << 20) / (cols > 0 ? cols : 1);
    return t < 16 ? 16 : t > 4096 ? 4096 : (int)t;
}

/* The order conv_prepare puts a kernel in for p and the convolution
 * reads it: the taps of each output channel as one row for a convolution
 * of one group, the s stride-1 kernels of the output phases for a
 * transposed one of one group at dilation 1, otherwise PyTorch's. */
typedef enum { LAYOUT_TORCH, LAYOUT_TAPS, LAYOUT_PHASES } kernel_layout;

static kernel_layout layout_of(const at_conv1d_params *p, int transposed)
{
    if (p->groups != 1) return LAYOUT_TORCH;
    if (!transposed) return LAYOUT_TAPS;
    return p->dilation == 1 ? LAYOUT_PHASES : LAYOUT_TORCH;
}

/* Whether a prepared kernel of one group is stored input-major: for the
 * kernels the FFT path may take, which computes their spectra from that
 * order (the direct product reads either; row-major packs faster). */
static int taps_input_major(int K, int C_in, int C_out)
{
    return at_conv_fft_wanted(AT_CONV_AUTO, K, C_in, C_out, 1, INT_MAX);
}

/* How a prepared kernel of one group holds its rows of taps: input-major
 * (above), packed for the products (at_matrix packed: the stride-1 path,
 * whose products would otherwise pack it again on every call, a twentieth
 * of a VITS voice's time), or as rows. */
typedef enum { TAPS_ROWS, TAPS_INPUT_MAJOR, TAPS_PACKED } taps_order;

static taps_order taps_order_of(const at_conv1d_params *p, int C_in, int C_out)
{
    if (taps_input_major(p->kernel, C_in, C_out)) return TAPS_INPUT_MAJOR;
    return p->stride == 1 && C_out % AT_GEMM_PANEL == 0 ? TAPS_PACKED : TAPS_ROWS;
}

/* Element (co, kc) of a prepared kernel of C_out rows of KC taps. */
static float taps_at(const float *w, taps_order o, int C_out, int KC, int co, int kc)
{
    switch (o) {
    case TAPS_INPUT_MAJOR: return w[(size_t)kc * C_out + co];
    case TAPS_PACKED:
        return w[(size_t)(co / AT_GEMM_PANEL) * KC * AT_GEMM_PANEL + (size_t)kc * AT_GEMM_PANEL +
                 co % AT_GEMM_PANEL];
    default: return w[(size_t)co * KC + kc];
    }
}

/* Direct convolution: per group and piece of time, im2col (each row the
 * taps of every input channel of the group, in PyTorch's [C_in/g][K]
 * order, or [K][C_in] for a prepared kernel) times the group's weight
 * rows. */
static int conv_direct(at_compute *c, const at_tensor *x, const at_tensor *w, const at_conv1d_params *p,
                       at_tensor *y, at_err *err)
{
    int taps_order = p->prepared && layout_of(p, 0) == LAYOUT_TAPS; /* never packed: a stride */
    int T_in = (int)at_tensor_rows(x), C_in = (int)at_tensor_cols(x), C_out = (int)at_tensor_cols(y);
    int T_out = (int)at_tensor_rows(y), g = p->groups, cig = C_in / g, cog = C_out / g, K = p->kernel;
    int KC = cig * K, piece = conv_piece(KC);
    float *col = malloc((size_t)piece * (size_t)KC * sizeof(float));
    float *tmp = g > 1 ? malloc((size_t)piece * (size_t)cog * sizeof(float)) : NULL;
    if (!col || (g > 1 && !tmp)) {
        free(col);
        free(tmp);
        return at_err_set(err, AT_E_NOMEM, "out of memory (conv1d of %d x %d)", piece, KC);
    }
    at_matrix W = matrix_of(w);
    if (taps_order && taps_input_major(K, C_in, C_out)) { /* one group */
        W.input_major = 1;
        W.row_bytes = (size_t)C_out * sizeof(float);
    }
    int rc = 0;
    for (int gi = 0; gi < g && !rc; gi++) {
        at_matrix Wg = W;
        Wg.rows = cog;
        Wg.data = (const char *)W.data + (size_t)gi * cog * W.row_bytes;
        for (int t0 = 0; t0 < T_out && !rc; t0 += piece) {
            int nt = T_out - t0 < piece ? T_out - t0 : piece;
            for (int t = 0; t < nt; t++) {
                float *r = col + (size_t)t * KC;
                for (int k = 0; k < K; k++) {
                    int ti = (t0 + t) * p->stride + k * p->dilation - p->padding;
                    const float *xr = ti >= 0 && ti < T_in ? F(x) + (size_t)ti * C_in + gi * cig : NULL;
                    if (taps_order)
                        for (int ci = 0; ci < cig; ci++) r[k * cig + ci] = xr ? xr[ci] : 0.0f;
                    else
                        for (int ci = 0; ci < cig; ci++) r[ci * K + k] = xr ? xr[ci] : 0.0f;
                }
            }
            float *out = g > 1 ? tmp : F(y) + (size_t)t0 * C_out;
            rc = at_matmul(c, col, nt, &Wg, NULL, out, err);
            if (!rc && g > 1)
                for (int t = 0; t < nt; t++)
                    memcpy(F(y) + (size_t)(t0 + t) * C_out + gi * cog, tmp + (size_t)t * cog,
                           (size_t)cog * sizeof(float));
        }
    }
    free(col);
    free(tmp);
    return rc;
}

/* ep for output rows row0, row0 + step, ... (NULL: none), in *tmp. */
static const at_epilogue *ep_rows(const at_epilogue *ep, int64_t row0, int step, at_epilogue *tmp)
{
    if (!ep) return NULL;
    *tmp = *ep;
    if (ep->res) tmp->res = ep->res + (size_t)row0 * (size_t)ep->ldr;
    tmp->ldr = ep->ldr * step;
    return tmp;
}

/* Y[m] = sum over k < n_taps of X[off + m + k] W_k for m < M (Y rows ldy
 * floats apart; X rows of C floats, T of them, zero outside): W is
 * [C_out][n_taps][C], stored as rows of n_taps * C or input-major.  The
 * taps of one output are n_taps consecutive rows of X, which a product
 * reads in place as one row (rows that overlap: ldx = C); only the
 * outputs whose taps reach past either end of X go through a padded copy.  bias (C_out, or NULL) is
 * added to each output. */
static int taps_product(at_compute *c, const float *X, int T, int C, int off, int M, const at_matrix *W,
                        const float *bias, const at_epilogue *ep, float *Y, int ldy, at_err *err)
{
    int n_taps = W->cols / C;
    int lo = -off < 0 ? 0 : -off < M ? -off : M;                  /* first output inside */
    int hi = T - n_taps + 1 - off < M ? T - n_taps + 1 - off : M; /* past the last one */
    if (hi < lo) hi = lo;
    int rc = 0;
    at_epilogue e_at;
    if (hi > lo)
        rc = at_matmul_ep(c, X + (size_t)(off + lo) * C, C, hi - lo, W, bias, ep_rows(ep, lo, 1, &e_at),
                          Y + (size_t)lo * ldy, ldy, err);
    int edge[2][2] = {{0, lo}, {hi, M}};
    for (int e = 0; e < 2 && !rc; e++) {
        int n = edge[e][1] - edge[e][0];
        if (n <= 0) continue;
        int rows = n + n_taps - 1, r0 = off + edge[e][0];
        float *buf = malloc((size_t)rows * (size_t)C * sizeof(float));
        if (!buf) return at_err_set(err, AT_E_NOMEM, "out of memory (convolution edge)");
        for (int j = 0; j < rows; j++) {
            int ti = r0 + j;
            if (ti >= 0 && ti < T)
                memcpy(buf + (size_t)j * C, X + (size_t)ti * C, (size_t)C * sizeof(float));
            else
                memset(buf + (size_t)j * C, 0, (size_t)C * sizeof(float));
        }
        rc = at_matmul_ep(c, buf, C, n, W, bias, ep_rows(ep, edge[e][0], 1, &e_at),
                          Y + (size_t)edge[e][0] * ldy, ldy, err);
        free(buf);
    }
    return rc;
}

/* The kernel of a convolution of one group (PyTorch's [C_out][C_in][K])
 * in f32 as rows of taps, [C_out][K][C_in], or input-major, that is
 * [K][C_in][C_out] (at_matrix input_major). */
static void taps_weights(const at_tensor *w, int C_out, int C_in, int K, int input_major, float *wk,
                         float *row)
{
    size_t KC = (size_t)K * C_in;
    for (int co = 0; co < C_out; co++) {
        at_dequant_row(w->type, (const char *)at_tensor_host(w) + (size_t)co * w->nb[1], row, (int)KC);
        for (int ci = 0; ci < C_in; ci++)
            for (int k = 0; k < K; k++) {
                size_t kc = (size_t)k * C_in + ci;
                wk[input_major ? kc * C_out + co : co * KC + kc] = row[(size_t)ci * K + k];
            }
    }
}

/* The inputs of a dilated convolution, phase by phase: phase r (outputs
 * r, r + d, ...; M_r of them) reads input rows r - pad + d j for
 * j < M_r + K - 1, copied one after the other with zeros outside the
 * input.  Phase r starts at row r (q + K - 1) + min(r, rem) of the copy,
 * T_out = q d + rem. */
typedef struct phase_job {
    const float *x;
    float *xr;
    int T_in, C, d, pad, K, q, rem, per_phase;
} phase_job;

enum { PHASE_ROWS = 256 }; /* rows of a phase copied by one chunk */

static int phase_start(const phase_job *j, int r)
{
    return r * (j->q + j->K - 1) + (r < j->rem ? r : j->rem);
}

static void phase_copy(void *arg, int chunk, int ith)
{
    (void)ith;
    const phase_job *j = arg;
    int r = chunk / j->per_phase, j0 = chunk % j->per_phase * PHASE_ROWS;
    int rows = j->q + (r < j->rem) + j->K - 1, j1 = rows < j0 + PHASE_ROWS ? rows : j0 + PHASE_ROWS;
    float *dst = j->xr + (size_t)phase_start(j, r) * j->C;
    for (int i = j0; i < j1; i++) {
        int ti = r - j->pad + j->d * i;
        if (ti >= 0 && ti < j->T_in)
            memcpy(dst + (size_t)i * j->C, j->x + (size_t)ti * j->C, (size_t)j->C * sizeof(float));
        else
            memset(dst + (size_t)i * j->C, 0, (size_t)j->C * sizeof(float));
    }
}

/* Stride-1 convolution without im2col: the kernel reordered to
 * [C_out][K][C_in] or input-major (once, by at_conv1d_prepare, or here;
 * the FFT path reads input-major only), so that at
 * dilation 1 the taps of output t are the K input rows from t - pad on
 * (taps_product).  A dilation d splits the outputs into d phases, each
 * reading every d-th input row: each phase's rows are copied once, on
 * the pool, with the padding (where im2col wrote each row K times), and
 * each phase is one product. */
static int conv_taps(at_backend *be, const at_tensor *x, const at_tensor *w, const float *bias,
                     const at_conv1d_params *p, const at_epilogue *ep, at_tensor *y, at_err *err)
{
    at_compute *c = ctx(be);
    int T_in = (int)at_tensor_rows(x), C_in = (int)at_tensor_cols(x), C_out = (int)at_tensor_cols(y);
    int T_out = (int)at_tensor_rows(y), K = p->kernel, d = p->dilation, pad = p->padding, KC = K * C_in;
    int phases = d < T_out ? d : T_out;
    phase_job pj = {F(x), NULL, T_in, C_in, d, pad, K, T_out / d, T_out % d, 0};
    pj.per_phase = (pj.q + 1 + K - 1 + PHASE_ROWS - 1) / PHASE_ROWS;
    int fft = at_conv_fft_wanted(at_compute_conv(c), K, C_in, C_out, d, T_out);
    /* a prepared kernel keeps its order unless the FFT path needs
     * input-major (forced there: a test, a benchmark) */
    taps_order order = p->prepared ? taps_order_of(p, C_in, C_out) : fft ? TAPS_INPUT_MAJOR : TAPS_ROWS;
    int im = order == TAPS_INPUT_MAJOR, own = !p->prepared || (fft && !im);
    float *wk = own ? malloc((size_t)C_out * (size_t)KC * sizeof(float)) : NULL;
    float *row = own ? malloc((size_t)KC * sizeof(float)) : NULL;
    int kept = 0;
    float *xr = d > 1 && !fft ? keep_take(be, (size_t)phase_start(&pj, phases) * (size_t)C_in, &kept) : NULL;
    int rc = 0;
    if ((own && (!wk || !row)) || (d > 1 && !fft && !xr)) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (conv1d of %d x %d)", C_out, KC);
        goto out;
    }
    if (!p->prepared) {
        taps_weights(w, C_out, C_in, K, im, wk, row);
    } else if (own) { /* a prepared kernel, to input-major */
        for (int co = 0; co < C_out; co++)
            for (int kc = 0; kc < KC; kc++)
                wk[(size_t)kc * C_out + co] = taps_at(F(w), order, C_out, KC, co, kc);
        im = 1;
    }
    at_matrix Wk = {AT_DT_F32,
                    C_out,
                    KC,
                    own ? wk : F(w),
                    (im ? (size_t)C_out : (size_t)KC) * sizeof(float),
                    im,
                    !own && order == TAPS_PACKED};
    if (fft) {
        rc = at_conv_fft(c, F(x), T_in, C_in, -pad, d, T_out, Wk.data, C_out, K, bias, ep, F(y), C_out, err);
        goto out;
    }
    if (d == 1) {
        rc = taps_product(c, F(x), T_in, C_in, -pad, T_out, &Wk, bias, ep, F(y), C_out, err);
        goto out;
    }
    pj.xr = xr;
    at_compute_run_pooled(c, phase_copy, &pj, phases * pj.per_phase);
    for (int r = 0; r < phases && !rc; r++) {
        int M = pj.q + (r < pj.rem);
        at_epilogue e_at;
        rc = taps_product(c, xr + (size_t)phase_start(&pj, r) * C_in, M + K - 1, C_in, 0, M, &Wk, bias,
                          ep_rows(ep, r, d, &e_at), F(y) + (size_t)r * C_out, d * C_out, err);
    }
out:
    free(wk);
    free(row);
    if (xr) keep_release(be, xr, kept);
    return rc;
}

/* Output phase q of a transposed convolution of stride s: output
 * t = q + s m receives x[i] W_k for t = i s - pad + k, that is the taps
 * k = k0, k0 + s, ... (k0 = (q + pad) mod s, *kq of them) of the inputs
 * m + e, m + e - 1, ... (e = (q + pad - k0) / s).  Returns e. */
static int phase_taps(int K, int s, int pad, int q, int *k0, int *kq)
{
    *k0 = (q + pad) % s;
    *kq = *k0 < K ? (K - *k0 + s - 1) / s : 0;
    return (q + pad - *k0) / s;
}

/* The kernel of a transposed convolution of one group (PyTorch's
 * [C_in][C_out][K]) as the stride-1 kernels of its s phases one after the
 * other, phase q [C_out][kq][C_in] with tap j = kernel index
 * k0 + s (kq - 1 - j): K C_out C_in floats in all. */
static void phase_weights(const at_tensor *w, int C_in, int C_out, int K, int s, int pad, float *wq,
                          float *wf)
{
    for (int ci = 0; ci < C_in; ci++) /* [C_in][C_out][K] as f32 */
        at_dequant_row(w->type, (const char *)at_tensor_host(w) + (size_t)ci * w->nb[1],
                       wf + (size_t)ci * C_out * K, C_out * K);
    for (int q = 0; q < s; q++) {
        int k0, kq;
        phase_taps(K, s, pad, q, &k0, &kq);
        for (int co = 0; co < C_out; co++)
            for (int j = 0; j < kq; j++)
                for (int ci = 0; ci < C_in; ci++)
                    wq[((size_t)co * kq + j) * C_in + ci] =
                        wf[((size_t)ci * C_out + co) * K + k0 + s * (kq - 1 - j)];
        wq += (size_t)C_out * kq * C_in;
    }
}

/* Transposed convolution of one group at dilation 1, by phases: each
 * phase (phase_taps) is a stride-1 convolution of x with its taps,
 * reversed (taps_product), written to every s-th output row.  No
 * zero-stuffing, and no scatter of each input's taps into the outputs. */
static int conv_transposed_phases(at_compute *c, const at_tensor *x, const at_tensor *w, const float *bias,
                                  const at_conv1d_params *p, const at_epilogue *ep, at_tensor *y, at_err *err)
{
    int T_in = (int)at_tensor_rows(x), C_in = (int)at_tensor_cols(x), C_out = (int)at_tensor_cols(y);
    int T_out = (int)at_tensor_rows(y), K = p->kernel, s = p->stride;
    float *wq = p->prepared ? F(w) : malloc((size_t)C_out * (size_t)K * (size_t)C_in * sizeof(float));
    float *wf = p->prepared ? NULL : malloc((size_t)C_in * (size_t)C_out * (size_t)K * sizeof(float));
    int rc = 0;
    if (!wq || (!p->prepared && !wf)) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (conv_transpose1d of %d x %d)", C_in, C_out * K);
        goto out;
    }
    if (!p->prepared) phase_weights(w, C_in, C_out, K, s, p->padding, wq, wf);
    const float *wp = wq;
    for (int q = 0; q < s && !rc; q++) {
        int k0, kq, e = phase_taps(K, s, p->padding, q, &k0, &kq), M = (T_out - q + s - 1) / s;
        const float *wph = wp;
        wp += (size_t)C_out * kq * C_in;
        if (q >= T_out) continue;
        float *yq = F(y) + (size_t)q * C_out;
        at_epilogue e_at;
        const at_epilogue *eq = ep_rows(ep, q, s, &e_at);
        if (!kq) {
            for (int m = 0; m < M; m++)
                for (int co = 0; co < C_out; co++) yq[(size_t)m * s * C_out + co] = bias ? bias[co] : 0.0f;
            at_epilogue_rows(at_compute_isa(c), eq, yq, s * C_out, M, C_out);
            continue;
        }
        /* tap j reads input row m + e - kq + 1 + j */
        at_matrix Wq = {AT_DT_F32, C_out, kq * C_in, wph, (size_t)kq * C_in * sizeof(float), 0, 0};
        rc = taps_product(c, F(x), T_in, C_in, e - kq + 1, M, &Wq, bias, eq, yq, s * C_out, err);
    }
out:
    if (!p->prepared) free(wq);
    free(wf);
    return rc;
}

/* Transposed convolution: per group, Z = x_g W_g ([T_in x C_in/g] times
 * [C_in/g x C_out/g*K], W_g converted to f32 and transposed once per call),
 * then each input step's taps are added into the outputs they reach. */
static int conv_transposed(at_compute *c, const at_tensor *x, const at_tensor *w, const at_conv1d_params *p,
                           at_tensor *y, at_err *err)
{
    int T_in = (int)at_tensor_rows(x), C_in = (int)at_tensor_cols(x), C_out = (int)at_tensor_cols(y);
    int T_out = (int)at_tensor_rows(y), g = p->groups, cig = C_in / g, cog = C_out / g, K = p->kernel;
    int NK = cog * K, piece = conv_piece(NK > cig ? NK : cig);
    float *wt = malloc((size_t)NK * (size_t)cig * sizeof(float));
    float *row = malloc((size_t)NK * sizeof(float));
    float *xg = malloc((size_t)piece * (size_t)cig * sizeof(float));
    float *z = malloc((size_t)piece * (size_t)NK * sizeof(float));
    int rc = 0;
    if (!wt || !row || !xg || !z) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (conv_transpose1d of %d x %d)", NK, cig);
        goto out;
    }
    memset(F(y), 0, (size_t)T_out * C_out * sizeof(float));
    for (int gi = 0; gi < g && !rc; gi++) {
        for (int ci = 0; ci < cig; ci++) {
            at_dequant_row(w->type, (const char *)at_tensor_host(w) + (size_t)(gi * cig + ci) * w->nb[1], row,
                           NK);
            for (int j = 0; j < NK; j++) wt[(size_t)j * cig + ci] = row[j];
        }
        at_matrix Wt = {AT_DT_F32, NK, cig, wt, (size_t)cig * sizeof(float), 0, 0};
        for (int t0 = 0; t0 < T_in && !rc; t0 += piece) {
            int nt = T_in - t0 < piece ? T_in - t0 : piece;
            for (int t = 0; t < nt; t++)
                memcpy(xg + (size_t)t * cig, F(x) + (size_t)(t0 + t) * C_in + gi * cig,
                       (size_t)cig * sizeof(float));
            if ((rc = at_matmul(c, xg, nt, &Wt, NULL, z, err))) break;
            for (int t = 0; t < nt; t++) {
                const float *zr = z + (size_t)t * NK;
                for (int k = 0; k < K; k++) {
                    int to = (t0 + t) * p->stride - p->padding + k * p->dilation;
                    if (to < 0 || to >= T_out) continue;
                    float *yr = F(y) + (size_t)to * C_out + gi * cog;
                    for (int co = 0; co < cog; co++) yr[co] += zr[co * K + k];
                }
            }
        }
    }
out:
    free(wt);
    free(row);
    free(xg);
    free(z);
    return rc;
}

static int conv1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                  const at_conv1d_params *p, int transposed, at_tensor *y, at_err *err)
{
    int rc = need_ctx(be, err);
    if (rc) return rc;
    /* the products of the phase and tap paths add the bias and run the
     * epilogue themselves */
    const float *b = bias ? F(bias) : NULL;
    at_epilogue e = {p->residual ? F(p->residual) : NULL, p->residual ? (int)LD(p->residual) : 0, p->leaky,
                     p->leaky_slope};
    const at_epilogue *ep = p->residual || p->leaky ? &e : NULL;
    kernel_layout layout = layout_of(p, transposed);
    if (layout == LAYOUT_PHASES) return conv_transposed_phases(ctx(be), x, w, b, p, ep, y, err);
    /* reordering the kernel on every call costs C_out rows of K * C_in,
     * im2col T_out of them: short inputs (a sentence's tokens) keep im2col
     * unless the kernel was prepared */
    if (layout == LAYOUT_TAPS && p->stride == 1 && (p->prepared || at_tensor_rows(y) >= at_tensor_cols(y)))
        return conv_taps(be, x, w, b, p, ep, y, err);
    rc = transposed ? conv_transposed(ctx(be), x, w, p, y, err) : conv_direct(ctx(be), x, w, p, y, err);
    if (!rc && bias)
        for (int64_t t = 0; t < at_tensor_rows(y); t++) at_add(ROW(y, t), F(bias), (size_t)at_tensor_cols(y));
    if (!rc)
        at_epilogue_rows(at_compute_isa(ctx(be)), ep, F(y), (int)LD(y), (int)at_tensor_rows(y),
                         (int)at_tensor_cols(y));
    return rc;
}

/* w in f32, in layout_of(p, transposed). */
static int conv_prepare(at_backend *be, const at_tensor *w, const at_conv1d_params *p, int transposed,
                        at_tensor *out, at_err *err)
{
    int64_t rows = at_tensor_rows(w), cols = at_tensor_cols(w);
    int rc = at_tensor_new_2d(be, out, AT_DT_F32, cols, rows, err);
    if (rc) return rc;
    int K = p->kernel;
    kernel_layout layout = layout_of(p, transposed);
    taps_order order = layout == LAYOUT_TAPS ? taps_order_of(p, (int)(cols / K), (int)rows) : TAPS_ROWS;
    size_t scratch = layout == LAYOUT_TAPS     ? (size_t)cols * (order == TAPS_PACKED ? (size_t)rows + 1 : 1)
                     : layout == LAYOUT_PHASES ? (size_t)rows * (size_t)cols
                                               : 0;
    float *tmp = scratch ? malloc(scratch * sizeof(float)) : NULL;
    if (scratch && !tmp) {
        at_tensor_free(out);
        return at_err_set(err, AT_E_NOMEM, "out of memory (preparing a convolution)");
    }
    if (layout == LAYOUT_TAPS && order == TAPS_PACKED) {
        taps_weights(w, (int)rows, (int)(cols / K), K, 0, tmp + cols, tmp);
        at_gemm_pack(ctx(be) ? at_compute_isa(ctx(be)) : AT_ISA_SCALAR, (int)rows, (int)cols, tmp + cols,
                     (int)cols, 1, F(out));
    } else if (layout == LAYOUT_TAPS) {
        taps_weights(w, (int)rows, (int)(cols / K), K, order == TAPS_INPUT_MAJOR, F(out), tmp);
    } else if (layout == LAYOUT_PHASES)
        phase_weights(w, (int)rows, (int)(cols / K), K, p->stride, p->padding, F(out), tmp);
    else
        for (int64_t r = 0; r < rows; r++)
            at_dequant_row(w->type, (const char *)at_tensor_host(w) + (size_t)r * w->nb[1], ROW(out, r),
                           (int)cols);
    free(tmp);
    return 0;
}

static int same_view(const at_tensor *a, const at_tensor *b)
{
    return a->buf == b->buf && a->offs == b->offs && a->nb[1] == b->nb[1];
}

static int attention(at_backend *be, const at_tensor *q, const at_attn_seq *seqs, int n_seqs, int n_head,
                     float scale, at_tensor *o, at_err *err)
{
    int rc = need_ctx(be, err);
    if (rc) return rc;
    if (rows_of(q, err) || rows_of(o, err)) return AT_E_UNSUPPORTED;
    int D = (int)at_tensor_cols(q), hd = D / n_head, n_calls = 0;
    at_attn_call *calls = malloc(sizeof *calls * (size_t)(n_seqs > 0 ? n_seqs : 1));
    if (!calls) return at_err_set(err, AT_E_NOMEM, "out of memory (attention)");
    for (int i = 0; i < n_seqs;) {
        const at_attn_seq *s = &seqs[i];
        /* consecutive sequences on the same keys without a causal mask
         * (beams and samples on one audio) are one call: their queries
         * are rows of one product */
        int rows = s->n_q, e = i + 1;
        while (s->causal < 0 && e < n_seqs && seqs[e].causal < 0 && seqs[e].n_kv == s->n_kv &&
               seqs[e].q_row == s->q_row + rows && same_view(seqs[e].k, s->k) && same_view(seqs[e].v, s->v))
            rows += seqs[e++].n_q;
        if (rows > 0)
            calls[n_calls++] = (at_attn_call){
                ROW(q, s->q_row), F(s->k),    F(s->v), ROW(o, s->q_row), (int)LD(q), (int)LD(s->k),
                (int)LD(s->v),    (int)LD(o), rows,    s->n_kv,          s->causal};
        i = e;
    }
    /* every sequence's attention in one round on the pool */
    rc = at_attention_multi(ctx(be), calls, n_calls, n_head, hd, scale, err);
    free(calls);
    return rc;
}

static void cpu_free(at_backend *be)
{
    cpu_backend *b = (cpu_backend *)be;
    if (!b) return;
    pthread_mutex_destroy(&b->keep_mu);
    free(b->keep);
    free(b);
}

static const at_backend_ops CPU_OPS = {
    .name = "cpu",
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
    .conv_prepare = conv_prepare,
    .attention = attention,
    .free = cpu_free,
};

at_backend *at_backend_cpu_new(at_compute *c, at_err *err)
{
    cpu_backend *b = calloc(1, sizeof *b);
    if (!b) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    b->base.ops = &CPU_OPS;
    b->base.kind = CPU_KIND;
    b->c = c;
    pthread_mutex_init(&b->keep_mu, NULL);
    return &b->base;
}
