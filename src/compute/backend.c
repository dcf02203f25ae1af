/* backend.c - tensors, and the checks every backend's operations share:
 * a backend implements the arithmetic, this file makes sure it is never
 * asked to read or write outside a tensor. */
#include "compute/backend_impl.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- tensors */

int64_t at_tensor_rows(const at_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

/* Bytes of one row of ne[0] elements. */
static size_t row_bytes(const at_tensor *t) { return at_dtype_row_bytes(t->type, t->ne[0]); }

int at_tensor_contiguous(const at_tensor *t)
{
    return t->nb[1] == row_bytes(t) && t->nb[2] == t->nb[1] * (size_t)t->ne[1] &&
           t->nb[3] == t->nb[2] * (size_t)t->ne[2];
}

int at_tensor_rows_even(const at_tensor *t, const char *backend, at_err *err)
{
    if ((t->ne[2] > 1 && t->nb[2] != t->nb[1] * (size_t)t->ne[1]) ||
        (t->ne[3] > 1 && t->nb[3] != t->nb[2] * (size_t)t->ne[2]))
        return at_err_set(err, AT_E_UNSUPPORTED, "%s backend: tensor with gaps between its matrices",
                          backend);
    return 0;
}

size_t at_tensor_nbytes(const at_tensor *t)
{
    if (at_tensor_rows(t) == 0) return 0;
    /* the last row ends at its own length, not at a full stride */
    return (size_t)(t->ne[1] - 1) * t->nb[1] + (size_t)(t->ne[2] - 1) * t->nb[2] +
           (size_t)(t->ne[3] - 1) * t->nb[3] + row_bytes(t);
}

/* Fills ne/nb for a contiguous tensor; checks the shape. */
static int shape_init(at_tensor *t, at_dtype type, int n_dims, const int64_t *ne, at_err *err)
{
    memset(t, 0, sizeof *t);
    if (!at_dtype_valid(type)) return at_err_set(err, AT_E_INVALID, "tensor of unknown type %d", (int)type);
    if (n_dims < 1 || n_dims > AT_MAX_DIMS)
        return at_err_set(err, AT_E_INVALID, "tensor of %d dimensions (1..%d)", n_dims, AT_MAX_DIMS);
    t->type = type;
    uint64_t total = 1;
    for (int i = 0; i < AT_MAX_DIMS; i++) {
        t->ne[i] = i < n_dims ? ne[i] : 1;
        if (t->ne[i] < 0 || t->ne[i] > ((int64_t)1 << 32))
            return at_err_set(err, AT_E_INVALID, "tensor dimension %d of %lld", i, (long long)t->ne[i]);
        total *= (uint64_t)(t->ne[i] ? t->ne[i] : 1);
        if (total > ((uint64_t)1 << 40)) return at_err_set(err, AT_E_TOO_LARGE, "tensor too large");
    }
    size_t rb = row_bytes(t);
    if (!rb && t->ne[0])
        return at_err_set(err, AT_E_INVALID, "%s rows of %lld values are not whole blocks",
                          at_dtype_name(type), (long long)t->ne[0]);
    t->nb[0] = at_dtype_block_bytes(type); /* one element, or one block of 32 */
    t->nb[1] = rb;
    t->nb[2] = rb * (size_t)t->ne[1];
    t->nb[3] = t->nb[2] * (size_t)t->ne[2];
    return 0;
}

int at_tensor_new(at_backend *be, at_tensor *t, at_dtype type, int n_dims, const int64_t *ne, at_err *err)
{
    int rc = shape_init(t, type, n_dims, ne, err);
    if (rc) return rc;
    size_t bytes = at_tensor_nbytes(t);
    t->buf = be->ops->buffer_new(be, bytes ? bytes : 1, err);
    return t->buf ? 0 : (err && err->code < 0 ? err->code : AT_E_NOMEM);
}

int at_tensor_from_host(at_backend *be, at_tensor *t, at_dtype type, int n_dims, const int64_t *ne,
                        const void *data, size_t nbytes, at_err *err)
{
    int rc = shape_init(t, type, n_dims, ne, err);
    if (rc) return rc;
    if (nbytes != at_tensor_nbytes(t))
        return at_err_set(err, AT_E_INVALID, "%zu bytes for a tensor of %zu", nbytes, at_tensor_nbytes(t));
    t->buf = be->ops->buffer_from_host(be, data, nbytes, err);
    return t->buf ? 0 : (err && err->code < 0 ? err->code : AT_E_NOMEM);
}

void at_tensor_free(at_tensor *t)
{
    if (t && t->buf) t->buf->ops->buffer_free(t->buf);
    if (t) memset(t, 0, sizeof *t);
}

at_tensor at_tensor_view_rows(const at_tensor *t, int64_t row0, int64_t n_rows)
{
    /* rows of a 2-D view: callers flatten higher dimensions first */
    at_tensor v = *t;
    v.offs += (size_t)row0 * t->nb[1];
    v.ne[1] = n_rows;
    v.ne[2] = v.ne[3] = 1;
    v.nb[2] = v.nb[3] = t->nb[1] * (size_t)n_rows;
    return v;
}

at_tensor at_tensor_view_cols(const at_tensor *t, int64_t col0, int64_t n_cols)
{
    at_tensor v = *t;
    v.offs += at_dtype_row_bytes(t->type, col0);
    v.ne[0] = n_cols;
    return v;
}

at_tensor at_tensor_reshape_2d(const at_tensor *t, int64_t cols, int64_t rows)
{
    at_tensor v = *t;
    v.ne[0] = cols;
    v.ne[1] = rows;
    v.ne[2] = v.ne[3] = 1;
    v.nb[1] = at_dtype_row_bytes(t->type, cols);
    v.nb[2] = v.nb[3] = v.nb[1] * (size_t)rows;
    return v;
}

/* ----------------------------------------------------------- checking */

static int absent(const at_tensor *t) { return !t || !t->buf; }

/* A tensor an operation may use: present, of be's memory kind, rows with
 * contiguous elements, inside its buffer. */
static int usable(const at_backend *be, const at_tensor *t, const char *what, at_err *err)
{
    if (absent(t)) return at_err_set(err, AT_E_INVALID, "%s: no tensor", what);
    if (t->buf->kind != be->kind)
        return at_err_set(err, AT_E_INVALID, "%s: a %s tensor given to the %s backend", what, t->buf->kind,
                          be->kind);
    if (t->offs > t->buf->size || at_tensor_nbytes(t) > t->buf->size - t->offs)
        return at_err_set(err, AT_E_INVALID, "%s: view outside its buffer", what);
    return 0;
}

static int f32(const at_tensor *t, const char *what, at_err *err)
{
    if (t->type != AT_DT_F32)
        return at_err_set(err, AT_E_INVALID, "%s: %s activations (f32 expected)", what,
                          at_dtype_name(t->type));
    return 0;
}

#define CHECK(expr)                                                                                          \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_) return rc_;                                                                                 \
    } while (0)

static int same_shape(const at_tensor *a, const at_tensor *b, const char *op, at_err *err)
{
    if (at_tensor_cols(a) != at_tensor_cols(b) || at_tensor_rows(a) != at_tensor_rows(b))
        return at_err_set(err, AT_E_INVALID, "%s: shapes %lldx%lld and %lldx%lld differ", op,
                          (long long)at_tensor_rows(a), (long long)at_tensor_cols(a),
                          (long long)at_tensor_rows(b), (long long)at_tensor_cols(b));
    return 0;
}

int at_tensor_upload(at_backend *be, at_tensor *dst, const void *src, size_t bytes, at_err *err)
{
    CHECK(usable(be, dst, "upload", err));
    if (bytes != (size_t)at_tensor_rows(dst) * row_bytes(dst))
        return at_err_set(err, AT_E_INVALID, "upload: %zu bytes for a tensor of %zu", bytes,
                          (size_t)at_tensor_rows(dst) * row_bytes(dst));
    return be->ops->upload(be, dst, src, err);
}

int at_tensor_download(at_backend *be, const at_tensor *src, void *dst, size_t bytes, at_err *err)
{
    CHECK(usable(be, src, "download", err));
    if (bytes != (size_t)at_tensor_rows(src) * row_bytes(src))
        return at_err_set(err, AT_E_INVALID, "download: %zu bytes for a tensor of %zu", bytes,
                          (size_t)at_tensor_rows(src) * row_bytes(src));
    return be->ops->download(be, src, dst, err);
}

/* ------------------------------------------------------------ backends */

void at_backend_free(at_backend *be)
{
    if (be) be->ops->free(be);
}

const char *at_backend_name(const at_backend *be) { return be->ops->name; }

int at_backend_sync(at_backend *be, at_err *err) { return be->ops->sync(be, err); }

const char *at_act_name(at_act a)
{
    switch (a) {
    case AT_ACT_GELU: return "gelu";
    case AT_ACT_RELU: return "relu";
    case AT_ACT_SILU: return "silu";
    case AT_ACT_TANH: return "tanh";
    case AT_ACT_SIGMOID: return "sigmoid";
    default: return "none";
    }
}

int at_act_from_name(const char *name, at_act *out)
{
    static const struct {
        const char *name;
        at_act act;
    } names[] = {{"gelu", AT_ACT_GELU},  {"relu", AT_ACT_RELU},  {"silu", AT_ACT_SILU},
                 {"swish", AT_ACT_SILU}, {"tanh", AT_ACT_TANH},  {"sigmoid", AT_ACT_SIGMOID},
                 {"none", AT_ACT_NONE},  {"linear", AT_ACT_NONE}};
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *out = names[i].act;
            return 0;
        }
    return -1;
}

/* ---------------------------------------------------------- operations */

int at_op_matmul(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias, at_tensor *y,
                 at_err *err)
{
    CHECK(usable(be, x, "matmul x", err));
    CHECK(usable(be, w, "matmul w", err));
    CHECK(usable(be, y, "matmul y", err));
    CHECK(f32(x, "matmul x", err));
    CHECK(f32(y, "matmul y", err));
    int64_t M = at_tensor_rows(x), K = at_tensor_cols(x), N = at_tensor_rows(w);
    if (at_tensor_cols(w) != K || at_tensor_rows(y) != M || at_tensor_cols(y) != N)
        return at_err_set(err, AT_E_INVALID, "matmul: x %lldx%lld, w %lldx%lld, y %lldx%lld do not fit",
                          (long long)M, (long long)K, (long long)N, (long long)at_tensor_cols(w),
                          (long long)at_tensor_rows(y), (long long)at_tensor_cols(y));
    if (!at_tensor_contiguous(w))
        return at_err_set(err, AT_E_INVALID, "matmul: weight rows are not contiguous");
    if (!absent(bias)) {
        CHECK(usable(be, bias, "matmul bias", err));
        CHECK(f32(bias, "matmul bias", err));
        if (at_tensor_cols(bias) * at_tensor_rows(bias) != N)
            return at_err_set(err, AT_E_INVALID, "matmul: bias of %lld values for %lld outputs",
                              (long long)(at_tensor_cols(bias) * at_tensor_rows(bias)), (long long)N);
    }
    if (M == 0) return 0;
    return be->ops->matmul(be, x, w, absent(bias) ? NULL : bias, y, err);
}

/* A per-column vector (norm weight, bias) of n f32 values. */
static int vec(const at_backend *be, const at_tensor *t, int64_t n, const char *what, at_err *err)
{
    CHECK(usable(be, t, what, err));
    CHECK(f32(t, what, err));
    if (at_tensor_cols(t) * at_tensor_rows(t) != n || !at_tensor_contiguous(t))
        return at_err_set(err, AT_E_INVALID, "%s: %lld values, expected %lld", what,
                          (long long)(at_tensor_cols(t) * at_tensor_rows(t)), (long long)n);
    return 0;
}

int at_op_layer_norm(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *b, float eps,
                     at_tensor *y, at_err *err)
{
    CHECK(usable(be, x, "layer_norm x", err));
    CHECK(usable(be, y, "layer_norm y", err));
    CHECK(f32(x, "layer_norm x", err));
    CHECK(f32(y, "layer_norm y", err));
    CHECK(same_shape(x, y, "layer_norm", err));
    CHECK(vec(be, w, at_tensor_cols(x), "layer_norm weight", err));
    if (!absent(b)) CHECK(vec(be, b, at_tensor_cols(x), "layer_norm bias", err));
    return be->ops->layer_norm(be, x, w, absent(b) ? NULL : b, eps, y, err);
}

/* Element-wise operations: x and y f32 of one shape. */
static int unary_args(const at_backend *be, const at_tensor *x, const at_tensor *y, const char *op,
                      at_err *err)
{
    CHECK(usable(be, x, op, err));
    CHECK(usable(be, y, op, err));
    CHECK(f32(x, op, err));
    CHECK(f32(y, op, err));
    return same_shape(x, y, op, err);
}

int at_op_act(at_backend *be, at_act act, const at_tensor *x, at_tensor *y, at_err *err)
{
    if (act < AT_ACT_NONE || act > AT_ACT_SIGMOID)
        return at_err_set(err, AT_E_INVALID, "unknown activation %d", (int)act);
    CHECK(unary_args(be, x, y, "act", err));
    return be->ops->act(be, act, x, y, err);
}

int at_op_softmax(at_backend *be, const at_tensor *x, at_tensor *y, at_err *err)
{
    CHECK(unary_args(be, x, y, "softmax", err));
    return be->ops->softmax(be, x, y, err);
}

int at_op_add(at_backend *be, const at_tensor *a, const at_tensor *b, at_tensor *y, at_err *err)
{
    CHECK(unary_args(be, a, y, "add", err));
    CHECK(usable(be, b, "add b", err));
    CHECK(f32(b, "add b", err));
    if (at_tensor_cols(b) != at_tensor_cols(a) ||
        (at_tensor_rows(b) != 1 && at_tensor_rows(b) != at_tensor_rows(a)))
        return at_err_set(err, AT_E_INVALID, "add: %lldx%lld to %lldx%lld", (long long)at_tensor_rows(b),
                          (long long)at_tensor_cols(b), (long long)at_tensor_rows(a),
                          (long long)at_tensor_cols(a));
    return be->ops->add(be, a, b, y, err);
}

int at_op_scale(at_backend *be, const at_tensor *x, float s, at_tensor *y, at_err *err)
{
    CHECK(unary_args(be, x, y, "scale", err));
    return be->ops->scale(be, x, s, y, err);
}

int at_op_get_rows(at_backend *be, const at_tensor *table, const int *ids, int n, at_tensor *y, at_err *err)
{
    CHECK(usable(be, table, "get_rows table", err));
    CHECK(usable(be, y, "get_rows y", err));
    CHECK(f32(y, "get_rows y", err));
    if (n < 0 || (n && !ids)) return at_err_set(err, AT_E_INVALID, "get_rows: no ids");
    if (at_tensor_rows(y) != n || at_tensor_cols(y) != at_tensor_cols(table))
        return at_err_set(err, AT_E_INVALID, "get_rows: %d rows of %lld into %lldx%lld", n,
                          (long long)at_tensor_cols(table), (long long)at_tensor_rows(y),
                          (long long)at_tensor_cols(y));
    int64_t rows = at_tensor_rows(table);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= rows)
            return at_err_set(err, AT_E_INVALID, "get_rows: id %d outside 0..%lld", ids[i],
                              (long long)rows - 1);
    if (n == 0) return 0;
    return be->ops->get_rows(be, table, ids, n, y, err);
}

int at_op_copy(at_backend *be, const at_tensor *src, at_tensor *dst, at_err *err)
{
    CHECK(unary_args(be, src, dst, "copy", err));
    return be->ops->copy(be, src, dst, err);
}

int at_conv1d_out_len(const at_conv1d_params *p, int T_in, int transposed)
{
    int64_t span = (int64_t)p->dilation * (p->kernel - 1);
    int64_t t = transposed
                    ? (int64_t)(T_in - 1) * p->stride - 2 * (int64_t)p->padding + span + p->output_padding + 1
                    : ((int64_t)T_in + 2 * (int64_t)p->padding - span - 1) / p->stride + 1;
    if (!transposed && (int64_t)T_in + 2 * (int64_t)p->padding - span - 1 < 0) return 0;
    return t < 0 ? 0 : t > INT32_MAX ? -1 : (int)t;
}

static int conv_args(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                     const at_conv1d_params *p, int transposed, at_tensor *y, at_err *err)
{
    const char *op = transposed ? "conv_transpose1d" : "conv1d";
    CHECK(usable(be, x, op, err));
    CHECK(usable(be, w, op, err));
    CHECK(usable(be, y, op, err));
    CHECK(f32(x, op, err));
    CHECK(f32(y, op, err));
    if (!p || p->kernel < 1 || p->stride < 1 || p->dilation < 1 || p->padding < 0 || p->groups < 1 ||
        p->output_padding < 0 || (!transposed && p->output_padding) ||
        (transposed && p->output_padding >= p->stride && p->output_padding >= p->dilation))
        return at_err_set(err, AT_E_INVALID, "%s: bad parameters", op);
    if (p->prepared && w->type != AT_DT_F32)
        return at_err_set(err, AT_E_INVALID, "%s: a prepared weight is f32 (at_conv1d_prepare)", op);
    int64_t T_in = at_tensor_rows(x), C_in = at_tensor_cols(x), C_out = at_tensor_cols(y), g = p->groups;
    if (C_in % g || C_out % g)
        return at_err_set(err, AT_E_INVALID, "%s: channels not divisible by groups", op);
    /* conv: C_out rows of C_in/g * K; transposed: C_in rows of C_out/g * K */
    int64_t wr = transposed ? C_in : C_out, wc = (transposed ? C_out : C_in) / g * p->kernel;
    if (at_tensor_rows(w) != wr || at_tensor_cols(w) != wc || !at_tensor_contiguous(w))
        return at_err_set(err, AT_E_INVALID, "%s: weight %lldx%lld, expected %lldx%lld", op,
                          (long long)at_tensor_rows(w), (long long)at_tensor_cols(w), (long long)wr,
                          (long long)wc);
    int T_out = at_conv1d_out_len(p, (int)T_in, transposed);
    if (T_in > INT32_MAX || T_out < 1 || at_tensor_rows(y) != T_out)
        return at_err_set(err, AT_E_INVALID, "%s: %lld input steps give %d outputs, y has %lld", op,
                          (long long)T_in, T_out, (long long)at_tensor_rows(y));
    if (!at_tensor_contiguous(x) || !at_tensor_contiguous(y))
        return at_err_set(err, AT_E_INVALID, "%s: input and output must be contiguous", op);
    if (!absent(bias)) CHECK(vec(be, bias, C_out, "conv bias", err));
    if (p->residual) {
        const at_tensor *r = p->residual;
        CHECK(usable(be, r, op, err));
        CHECK(f32(r, op, err));
        if (at_tensor_rows(r) != T_out || at_tensor_cols(r) != C_out || !at_tensor_contiguous(r))
            return at_err_set(err, AT_E_INVALID, "%s: residual is not of the output's shape", op);
        size_t r0 = r->offs, r1 = r0 + at_tensor_nbytes(r), y0 = y->offs, y1 = y0 + at_tensor_nbytes(y);
        if (r->buf == y->buf && r0 < y1 && y0 < r1)
            return at_err_set(err, AT_E_INVALID, "%s: residual overlaps the output", op);
    }
    return 0;
}

int at_conv1d_prepare(at_backend *be, const at_tensor *w, const at_conv1d_params *p, int transposed,
                      at_tensor *out, at_err *err)
{
    CHECK(usable(be, w, "conv1d prepare", err));
    if (!p || p->kernel < 1 || p->stride < 1 || p->dilation < 1 || p->padding < 0 || p->groups < 1 ||
        p->prepared || at_tensor_cols(w) % p->kernel || !at_tensor_contiguous(w))
        return at_err_set(err, AT_E_INVALID, "conv1d prepare: bad parameters or weight");
    if (be->ops->conv_prepare) return be->ops->conv_prepare(be, w, p, transposed, out, err);
    /* PyTorch's layout in f32, by way of the host */
    int64_t rows = at_tensor_rows(w), cols = at_tensor_cols(w);
    size_t rb = at_dtype_row_bytes(w->type, cols);
    char *raw = malloc(rb * (size_t)rows);
    float *f = malloc((size_t)rows * (size_t)cols * sizeof(float));
    int rc = raw && f ? at_tensor_download(be, w, raw, rb * (size_t)rows, err)
                      : at_err_set(err, AT_E_NOMEM, "out of memory (preparing a convolution)");
    for (int64_t r = 0; !rc && r < rows; r++)
        at_dequant_row(w->type, raw + (size_t)r * rb, f + r * cols, (int)cols);
    if (!rc) rc = at_tensor_new_2d(be, out, AT_DT_F32, cols, rows, err);
    if (!rc && (rc = at_tensor_upload(be, out, f, (size_t)rows * (size_t)cols * sizeof(float), err)))
        at_tensor_free(out);
    free(raw);
    free(f);
    return rc;
}

int at_op_conv1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                 const at_conv1d_params *p, at_tensor *y, at_err *err)
{
    CHECK(conv_args(be, x, w, bias, p, 0, y, err));
    return be->ops->conv1d(be, x, w, absent(bias) ? NULL : bias, p, 0, y, err);
}

int at_op_conv_transpose1d(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                           const at_conv1d_params *p, at_tensor *y, at_err *err)
{
    CHECK(conv_args(be, x, w, bias, p, 1, y, err));
    return be->ops->conv1d(be, x, w, absent(bias) ? NULL : bias, p, 1, y, err);
}

int at_op_attention(at_backend *be, const at_tensor *q, const at_attn_seq *seqs, int n_seqs, int n_head,
                    float scale, at_tensor *o, at_err *err)
{
    CHECK(unary_args(be, q, o, "attention", err));
    int64_t D = at_tensor_cols(q), R = at_tensor_rows(q);
    if (n_head < 1 || D % n_head)
        return at_err_set(err, AT_E_INVALID, "attention: %lld columns, %d heads", (long long)D, n_head);
    if (n_seqs < 0 || (n_seqs && !seqs)) return at_err_set(err, AT_E_INVALID, "attention: no sequences");
    for (int i = 0; i < n_seqs; i++) {
        const at_attn_seq *s = &seqs[i];
        if (s->q_row < 0 || s->n_q < 0 || s->q_row > R - s->n_q)
            return at_err_set(err, AT_E_INVALID, "attention: sequence %d rows %d+%d outside %lld", i,
                              s->q_row, s->n_q, (long long)R);
        CHECK(usable(be, s->k, "attention k", err));
        CHECK(usable(be, s->v, "attention v", err));
        CHECK(f32(s->k, "attention k", err));
        CHECK(f32(s->v, "attention v", err));
        if (at_tensor_cols(s->k) != D || at_tensor_cols(s->v) != D || s->n_kv < 1 ||
            s->n_kv > at_tensor_rows(s->k) || s->n_kv > at_tensor_rows(s->v))
            return at_err_set(err, AT_E_INVALID, "attention: sequence %d has %d keys of %lld columns", i,
                              s->n_kv, (long long)at_tensor_cols(s->k));
        if (s->causal >= 0 && s->causal + s->n_q > s->n_kv)
            return at_err_set(err, AT_E_INVALID, "attention: sequence %d queries past its keys", i);
    }
    return be->ops->attention(be, q, seqs, n_seqs, n_head, scale, o, err);
}
