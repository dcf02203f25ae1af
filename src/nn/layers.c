/* layers.c - transformer blocks on the compute interface. */
#include "nn/layers.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                                                          \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_) return rc_;                                                                                 \
    } while (0)

/* ---------------------------------------------------------------- loading */

void at_nn_loader_init(at_nn_loader *L, const at_nn_weights *w, at_backend *be)
{
    memset(L, 0, sizeof *L);
    L->w = w;
    L->be = be;
    L->matrices = -1;
}

void at_nn_loader_release(at_nn_loader *L)
{
    for (size_t i = 0; i < L->n_owned; i++) at_tensor_free(&L->owned[i]);
    free(L->owned);
    free(L->owned_src);
    L->owned = NULL;
    L->owned_src = NULL;
    L->n_owned = L->cap_owned = 0;
    L->bytes = 0;
}

/* Records t (converted from the file's src, or NULL) so that
 * at_nn_loader_release frees it. */
static int keep_src(at_nn_loader *L, const at_tensor *t, const void *src, at_err *err)
{
    if (L->n_owned == L->cap_owned) {
        size_t nc = L->cap_owned ? L->cap_owned * 2 : 256;
        at_tensor *o = realloc(L->owned, nc * sizeof *o);
        if (o) L->owned = o;
        const void **s = realloc(L->owned_src, nc * sizeof *s);
        if (s) L->owned_src = s;
        if (!o || !s) return at_err_set(err, AT_E_NOMEM, "out of memory");
        L->cap_owned = nc;
    }
    L->owned_src[L->n_owned] = src;
    L->owned[L->n_owned++] = *t;
    L->bytes += at_tensor_nbytes(t);
    return 0;
}

static int keep(at_nn_loader *L, const at_tensor *t, at_err *err) { return keep_src(L, t, NULL, err); }

static const at_nn_wtensor *need(const at_nn_weights *w, const char *name, at_err *err)
{
    const at_nn_wtensor *t = at_nn_weights_find(w, name);
    if (!t) at_err_set(err, AT_E_CORRUPT, "model has no tensor %s", name);
    return t;
}

int at_nn_weight_rows(const at_nn_weights *w, const char *name, int max, int *rows, at_err *err)
{
    const at_nn_wtensor *t = need(w, name, err);
    if (!t) return AT_E_CORRUPT;
    if (t->n_dims < 2 || t->shape[0] < 1 || t->shape[0] > max)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad shape", name);
    *rows = (int)t->shape[0];
    return 0;
}

/* A float matrix converted, row by row, to L->matrices in a buffer of
 * the backend's own. */
static int load_converted(at_nn_loader *L, at_tensor *out, const at_nn_wtensor *t, const int64_t *ne,
                          at_err *err)
{
    at_dtype type = (at_dtype)L->matrices;
    /* tied weights (one embedding as encoder, decoder and output table)
     * are converted once and shared, as they share the file's bytes */
    for (size_t i = 0; i < L->n_owned; i++)
        if (L->owned_src[i] == t->data) {
            *out = L->owned[i];
            return 0;
        }
    size_t rb = at_dtype_row_bytes(t->type, ne[0]), qb = at_dtype_row_bytes(type, ne[0]);
    float *row = malloc((size_t)ne[0] * sizeof *row);
    uint8_t *q = malloc(qb * (size_t)ne[1]);
    int rc = 0;
    if (!row || !q) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int64_t i = 0; !rc && i < ne[1]; i++) {
        at_dequant_row(t->type, (const uint8_t *)t->data + (size_t)i * rb, row, (int)ne[0]);
        at_quant_row(type, row, q + (size_t)i * qb, (int)ne[0]);
    }
    if (!rc) rc = at_tensor_new(L->be, out, type, 2, ne, err);
    if (!rc && (rc = at_tensor_upload(L->be, out, q, qb * (size_t)ne[1], err))) at_tensor_free(out);
    free(row);
    free(q);
    return rc ? rc : keep_src(L, out, t->data, err);
}

int at_nn_load_matrix(at_nn_loader *L, at_tensor *out, int rows, int cols, int kernel, const char *name,
                      at_err *err)
{
    const at_nn_wtensor *t = need(L->w, name, err);
    if (!t) return AT_E_CORRUPT;
    int ok = kernel > 0
                 ? (t->n_dims == 3 && t->shape[0] == rows && t->shape[1] == cols && t->shape[2] == kernel)
                 : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        /* as many dimensions as each has: [12 16], not [12 16 0] */
        char has[96] = "", want[64];
        for (int i = 0; i < t->n_dims && i < 4; i++)
            snprintf(has + strlen(has), sizeof has - strlen(has), "%s%lld", i ? " " : "",
                     (long long)t->shape[i]);
        if (kernel > 0)
            snprintf(want, sizeof want, "%d %d %d", rows, cols, kernel);
        else
            snprintf(want, sizeof want, "%d %d", rows, cols);
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has shape [%s], expected [%s]", name, has, want);
    }
    int64_t ne[2] = {(int64_t)cols * (kernel > 0 ? kernel : 1), rows};
    size_t rb = at_dtype_row_bytes(t->type, ne[0]);
    if (!rb || rb * (size_t)rows != t->nbytes)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad size", name);
    if (L->matrices >= 0 && kernel <= 0 && at_dtype_block(t->type) == 1 && (int)t->type != L->matrices &&
        at_dtype_row_bytes((at_dtype)L->matrices, ne[0]))
        return load_converted(L, out, t, ne, err);
    CHECK(at_tensor_from_host(L->be, out, t->type, 2, ne, t->data, t->nbytes, err));
    L->in_place++;
    return keep(L, out, err);
}

int at_nn_load_host_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const float *data, at_err *err)
{
    CHECK(at_tensor_new_2d(L->be, out, AT_DT_F32, cols, rows, err));
    int rc = at_tensor_upload(L->be, out, data, (size_t)rows * cols * sizeof(float), err);
    if (rc) {
        at_tensor_free(out);
        return rc;
    }
    return keep(L, out, err);
}

int at_nn_load_conv_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const float *data,
                        const at_conv1d_params *p, int transposed, at_err *err)
{
    at_tensor t;
    int64_t ne[2] = {cols, rows};
    CHECK(at_tensor_from_host(L->be, &t, AT_DT_F32, 2, ne, data, (size_t)rows * cols * sizeof(float), err));
    int rc = at_conv1d_prepare(L->be, &t, p, transposed, out, err);
    at_tensor_free(&t);
    if (rc) return rc;
    if ((rc = keep(L, out, err))) at_tensor_free(out);
    return rc;
}

int at_nn_load_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const char *name, at_err *err)
{
    const at_nn_wtensor *t = need(L->w, name, err);
    if (!t) return AT_E_CORRUPT;
    int64_t n = (int64_t)rows * cols;
    if (at_nn_wtensor_numel(t) != n)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has %lld values, expected %lld", name,
                          (long long)at_nn_wtensor_numel(t), (long long)n);
    int64_t c = t->shape[t->n_dims - 1], r = n / (c ? c : 1);
    size_t rb = at_dtype_row_bytes(t->type, c);
    if (!rb || rb * (size_t)r != t->nbytes)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad size", name);
    float *host = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!host) return at_err_set(err, AT_E_NOMEM, "out of memory (%lld values of %s)", (long long)n, name);
    for (int64_t i = 0; i < r; i++)
        at_dequant_row(t->type, (const uint8_t *)t->data + (size_t)i * rb, host + i * c, (int)c);
    int rc = at_nn_load_host_f32(L, out, rows, cols, host, err);
    free(host);
    return rc;
}

/* printf into a bounded name buffer. */
static int name_of(char *buf, size_t cap, at_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "tensor name too long");
    return 0;
}

int at_nn_load_linear(at_nn_loader *L, at_nn_linear *l, int out, int in, int bias, const char *prefix,
                      at_err *err)
{
    char n[AT_NN_NAME_MAX];
    memset(l, 0, sizeof *l);
    CHECK(name_of(n, sizeof n, err, "%s.weight", prefix));
    CHECK(at_nn_load_matrix(L, &l->w, out, in, 0, n, err));
    if (bias != AT_NN_BIAS) return 0;
    CHECK(name_of(n, sizeof n, err, "%s.bias", prefix));
    return at_nn_load_f32(L, &l->b, 1, out, n, err);
}

int at_nn_load_norm(at_nn_loader *L, at_nn_norm *nm, int d, const char *prefix, at_err *err)
{
    char n[AT_NN_NAME_MAX];
    memset(nm, 0, sizeof *nm);
    CHECK(name_of(n, sizeof n, err, "%s.weight", prefix));
    CHECK(at_nn_load_f32(L, &nm->w, 1, d, n, err));
    CHECK(name_of(n, sizeof n, err, "%s.bias", prefix));
    return at_nn_load_f32(L, &nm->b, 1, d, n, err);
}

static int load_attn(at_nn_loader *L, at_nn_attn *a, int d, const at_nn_layer_names *nm, const char *pfx,
                     at_err *err)
{
    char n[AT_NN_NAME_MAX];
    CHECK(name_of(n, sizeof n, err, "%s.%s", pfx, nm->q));
    CHECK(at_nn_load_linear(L, &a->q, d, d, AT_NN_BIAS, n, err));
    CHECK(name_of(n, sizeof n, err, "%s.%s", pfx, nm->k));
    CHECK(at_nn_load_linear(L, &a->k, d, d, nm->k_bias ? AT_NN_BIAS : AT_NN_NO_BIAS, n, err));
    CHECK(name_of(n, sizeof n, err, "%s.%s", pfx, nm->v));
    CHECK(at_nn_load_linear(L, &a->v, d, d, AT_NN_BIAS, n, err));
    CHECK(name_of(n, sizeof n, err, "%s.%s", pfx, nm->o));
    return at_nn_load_linear(L, &a->o, d, d, AT_NN_BIAS, n, err);
}

int at_nn_load_layer(at_nn_loader *L, at_nn_layer *y, const at_nn_cfg *cfg, const at_nn_layer_names *nm,
                     int i, at_err *err)
{
    char n[AT_NN_NAME_MAX];
    int d = cfg->d_model, f = cfg->d_ffn;
    memset(y, 0, sizeof *y);
    CHECK(name_of(n, sizeof n, err, nm->self_norm, i));
    CHECK(at_nn_load_norm(L, &y->self_norm, d, n, err));
    CHECK(name_of(n, sizeof n, err, nm->self_attn, i));
    CHECK(load_attn(L, &y->self, d, nm, n, err));
    if (nm->cross_attn) {
        y->has_cross = 1;
        CHECK(name_of(n, sizeof n, err, nm->cross_norm, i));
        CHECK(at_nn_load_norm(L, &y->cross_norm, d, n, err));
        CHECK(name_of(n, sizeof n, err, nm->cross_attn, i));
        CHECK(load_attn(L, &y->cross, d, nm, n, err));
    }
    CHECK(name_of(n, sizeof n, err, nm->ffn_norm, i));
    CHECK(at_nn_load_norm(L, &y->ffn_norm, d, n, err));
    CHECK(name_of(n, sizeof n, err, nm->fc1, i));
    CHECK(at_nn_load_linear(L, &y->fc1, f, d, AT_NN_BIAS, n, err));
    CHECK(name_of(n, sizeof n, err, nm->fc2, i));
    return at_nn_load_linear(L, &y->fc2, d, f, AT_NN_BIAS, n, err);
}

/* ---------------------------------------------------------------- running */

int at_nn_scratch_reserve(at_nn_scratch *s, at_backend *be, int rows, int d, int d_ffn, at_err *err)
{
    if (rows <= s->rows && d == s->d && d_ffn <= s->d_ffn) return 0;
    if (s->rows && d != s->d) return at_err_set(err, AT_E_INVALID, "scratch of another width");
    int r = rows > s->rows ? rows : s->rows, f = d_ffn > s->d_ffn ? d_ffn : s->d_ffn;
    at_nn_scratch_free(s);
    at_tensor *t[] = {&s->y, &s->q, &s->k, &s->v, &s->a};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (at_tensor_new_2d(be, t[i], AT_DT_F32, d, r, err)) goto fail;
    if (at_tensor_new_2d(be, &s->f, AT_DT_F32, f, r, err)) goto fail;
    s->rows = r;
    s->d = d;
    s->d_ffn = f;
    return 0;
fail:
    at_nn_scratch_free(s);
    return err && err->code < 0 ? err->code : AT_E_NOMEM;
}

void at_nn_scratch_free(at_nn_scratch *s)
{
    at_tensor *t[] = {&s->y, &s->q, &s->k, &s->v, &s->a, &s->f};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) at_tensor_free(t[i]);
    s->rows = s->d = s->d_ffn = 0;
}

int at_nn_linear_run(at_backend *be, const at_nn_linear *l, const at_tensor *x, at_tensor *y, at_err *err)
{
    return at_op_matmul(be, x, &l->w, &l->b, y, err);
}

int at_nn_norm_run(at_backend *be, const at_nn_norm *n, float eps, const at_tensor *x, at_tensor *y,
                   at_err *err)
{
    return at_op_layer_norm(be, x, &n->w, &n->b, eps, y, err);
}

/* The first R rows of a scratch tensor. */
static at_tensor rows(const at_tensor *t, int R) { return at_tensor_view_rows(t, 0, R); }

/* The input of a sub-block: norm(x) in y for pre-norm layers, x itself
 * for post-norm ones. */
static int sub_in(at_backend *be, const at_nn_norm *n, const at_nn_cfg *cfg, const at_tensor *x, at_tensor *y,
                  const at_tensor **in, at_err *err)
{
    if (!cfg->pre_norm) {
        *in = x;
        return 0;
    }
    *in = y;
    return at_nn_norm_run(be, n, cfg->eps, x, y, err);
}

/* x += out, then, for post-norm layers, x = norm(x). */
static int sub_out(at_backend *be, const at_nn_norm *n, const at_nn_cfg *cfg, at_tensor *x,
                   const at_tensor *out, at_err *err)
{
    CHECK(at_op_add(be, x, out, x, err));
    return cfg->pre_norm ? 0 : at_nn_norm_run(be, n, cfg->eps, x, x, err);
}

static int ffn(at_backend *be, const at_nn_layer *ly, const at_nn_cfg *cfg, at_tensor *x, at_nn_scratch *s,
               int R, at_err *err)
{
    /* this layer's width: the scratch may be wider */
    at_tensor y = rows(&s->y, R), f = at_tensor_reshape_2d(&s->f, ly->fc1.w.ne[1], R);
    const at_tensor *in;
    CHECK(sub_in(be, &ly->ffn_norm, cfg, x, &y, &in, err));
    CHECK(at_nn_linear_run(be, &ly->fc1, in, &f, err));
    if (cfg->act != AT_ACT_NONE) CHECK(at_op_act(be, cfg->act, &f, &f, err));
    CHECK(at_nn_linear_run(be, &ly->fc2, &f, &y, err));
    return sub_out(be, &ly->ffn_norm, cfg, x, &y, err);
}

static int check_batch(const at_tensor *x, const at_nn_cfg *cfg, const at_nn_scratch *s, at_err *err)
{
    if (at_tensor_cols(x) != cfg->d_model || at_tensor_rows(x) > s->rows || s->d != cfg->d_model)
        return at_err_set(err, AT_E_INVALID, "layer: %lld rows of %lld for a scratch of %d x %d",
                          (long long)at_tensor_rows(x), (long long)at_tensor_cols(x), s->rows, s->d);
    return 0;
}

int at_nn_encoder_layer(at_backend *be, const at_nn_layer *ly, const at_nn_cfg *cfg, at_tensor *x,
                        const at_nn_span *spans, int n_spans, at_nn_scratch *s, at_err *err)
{
    CHECK(check_batch(x, cfg, s, err));
    int R = (int)at_tensor_rows(x);
    at_tensor y = rows(&s->y, R), q = rows(&s->q, R), k = rows(&s->k, R), v = rows(&s->v, R),
              a = rows(&s->a, R);
    const at_tensor *in;
    CHECK(sub_in(be, &ly->self_norm, cfg, x, &y, &in, err));
    CHECK(at_nn_linear_run(be, &ly->self.q, in, &q, err));
    CHECK(at_nn_linear_run(be, &ly->self.k, in, &k, err));
    CHECK(at_nn_linear_run(be, &ly->self.v, in, &v, err));
    at_attn_seq one[8], *as = n_spans <= 8 ? one : malloc((size_t)n_spans * sizeof *as);
    at_tensor kv_one[16], *kv = n_spans <= 8 ? kv_one : malloc((size_t)n_spans * 2 * sizeof *kv);
    if (!as || !kv) {
        if (as != one) free(as);
        if (kv != kv_one) free(kv);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_spans; i++) {
        kv[2 * i] = at_tensor_view_rows(&k, spans[i].row0, spans[i].n);
        kv[2 * i + 1] = at_tensor_view_rows(&v, spans[i].row0, spans[i].n);
        as[i] = (at_attn_seq){spans[i].row0, spans[i].n, &kv[2 * i], &kv[2 * i + 1], spans[i].n, -1};
    }
    int rc = at_op_attention(be, &q, as, n_spans, cfg->n_head, cfg->attn_scale, &a, err);
    if (as != one) free(as);
    if (kv != kv_one) free(kv);
    if (rc) return rc;
    CHECK(at_nn_linear_run(be, &ly->self.o, &a, &y, err));
    CHECK(sub_out(be, &ly->self_norm, cfg, x, &y, err));
    return ffn(be, ly, cfg, x, s, R, err);
}

int at_nn_decoder_layer(at_backend *be, const at_nn_layer *ly, const at_nn_cfg *cfg, at_tensor *x,
                        const at_nn_dec_seq *seqs, int n_seqs, at_nn_scratch *s, at_err *err)
{
    CHECK(check_batch(x, cfg, s, err));
    if (!ly->has_cross) return at_err_set(err, AT_E_INVALID, "decoder layer without cross-attention");
    int R = (int)at_tensor_rows(x), rc = 0;
    at_tensor y = rows(&s->y, R), q = rows(&s->q, R), k = rows(&s->k, R), v = rows(&s->v, R),
              a = rows(&s->a, R);
    at_attn_seq one[16], *as = n_seqs <= 16 ? one : malloc((size_t)n_seqs * sizeof *as);
    if (!as) return at_err_set(err, AT_E_NOMEM, "out of memory");

    /* causal self-attention over each sequence's cache and new rows */
    const at_tensor *in;
    if ((rc = sub_in(be, &ly->self_norm, cfg, x, &y, &in, err)) ||
        (rc = at_nn_linear_run(be, &ly->self.q, in, &q, err)) ||
        (rc = at_nn_linear_run(be, &ly->self.k, in, &k, err)) ||
        (rc = at_nn_linear_run(be, &ly->self.v, in, &v, err)))
        goto out;
    for (int i = 0; i < n_seqs; i++) {
        const at_nn_dec_seq *sq = &seqs[i];
        if (sq->past < 0 || sq->n < 1 || sq->past + sq->n > at_tensor_rows(&sq->self_k) ||
            sq->past + sq->n > at_tensor_rows(&sq->self_v)) {
            rc = at_err_set(err, AT_E_TOO_LARGE, "decoder: %d + %d positions exceed the cache", sq->past,
                            sq->n);
            goto out;
        }
        at_tensor ck = at_tensor_view_rows(&sq->self_k, sq->past, sq->n);
        at_tensor cv = at_tensor_view_rows(&sq->self_v, sq->past, sq->n);
        at_tensor nk = at_tensor_view_rows(&k, sq->row0, sq->n),
                  nv = at_tensor_view_rows(&v, sq->row0, sq->n);
        if ((rc = at_op_copy(be, &nk, &ck, err)) || (rc = at_op_copy(be, &nv, &cv, err))) goto out;
        as[i] = (at_attn_seq){sq->row0, sq->n, &sq->self_k, &sq->self_v, sq->past + sq->n, sq->past};
    }
    if ((rc = at_op_attention(be, &q, as, n_seqs, cfg->n_head, cfg->attn_scale, &a, err)) ||
        (rc = at_nn_linear_run(be, &ly->self.o, &a, &y, err)) ||
        (rc = sub_out(be, &ly->self_norm, cfg, x, &y, err)))
        goto out;

    /* cross-attention to each sequence's memory */
    if ((rc = sub_in(be, &ly->cross_norm, cfg, x, &y, &in, err)) ||
        (rc = at_nn_linear_run(be, &ly->cross.q, in, &q, err)))
        goto out;
    for (int i = 0; i < n_seqs; i++) {
        if (!at_tensor_present(&seqs[i].cross_q)) continue;
        at_tensor src = at_tensor_view_rows(&q, seqs[i].row0, seqs[i].n), dst = seqs[i].cross_q;
        if ((rc = at_op_copy(be, &src, &dst, err))) goto out;
    }
    for (int i = 0; i < n_seqs; i++)
        as[i] =
            (at_attn_seq){seqs[i].row0, seqs[i].n, &seqs[i].cross_k, &seqs[i].cross_v, seqs[i].n_cross, -1};
    if ((rc = at_op_attention(be, &q, as, n_seqs, cfg->n_head, cfg->attn_scale, &a, err)) ||
        (rc = at_nn_linear_run(be, &ly->cross.o, &a, &y, err)) ||
        (rc = sub_out(be, &ly->cross_norm, cfg, x, &y, err)))
        goto out;
    rc = ffn(be, ly, cfg, x, s, R, err);
out:
    if (as != one) free(as);
    return rc;
}

int at_nn_cross_kv(at_backend *be, const at_nn_layer *ly, const at_tensor *memory, at_tensor *k, at_tensor *v,
                   at_err *err)
{
    CHECK(at_nn_linear_run(be, &ly->cross.k, memory, k, err));
    return at_nn_linear_run(be, &ly->cross.v, memory, v, err);
}

/* ---------------------------------------------------------- decoder stacks */

int at_nn_kv_init(at_nn_kv *kv, at_backend *be, int n_layer, int n_ctx, int d, at_err *err)
{
    memset(kv, 0, sizeof *kv);
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->d = d;
    if (n_layer < 1) return at_err_set(err, AT_E_INVALID, "a cache of %d layers", n_layer);
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    int rc = kv->k && kv->v ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory (kv cache)");
    for (int l = 0; l < n_layer && !rc; l++) {
        rc = at_tensor_new_2d(be, &kv->k[l], AT_DT_F32, d, n_ctx, err);
        if (!rc) rc = at_tensor_new_2d(be, &kv->v[l], AT_DT_F32, d, n_ctx, err);
    }
    if (rc) at_nn_kv_release(kv);
    return rc;
}

void at_nn_kv_release(at_nn_kv *kv)
{
    for (int l = 0; l < kv->n_layer; l++) {
        if (kv->k) at_tensor_free(&kv->k[l]);
        if (kv->v) at_tensor_free(&kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
    kv->len = 0;
}

void at_nn_kv_truncate(at_nn_kv *kv, int n)
{
    if (n < 0) n = 0;
    if (n < kv->len) kv->len = n;
}

int at_nn_kv_copy(at_backend *be, at_nn_kv *dst, const at_nn_kv *src, at_err *err)
{
    if (dst == src) return 0;
    if (dst->n_layer != src->n_layer || dst->n_ctx != src->n_ctx || dst->d != src->d)
        return at_err_set(err, AT_E_INVALID, "kv caches of different sizes");
    for (int l = 0; l < src->n_layer && src->len > 0; l++) {
        at_tensor sk = at_tensor_view_rows(&src->k[l], 0, src->len),
                  sv = at_tensor_view_rows(&src->v[l], 0, src->len);
        at_tensor dk = at_tensor_view_rows(&dst->k[l], 0, src->len),
                  dv = at_tensor_view_rows(&dst->v[l], 0, src->len);
        CHECK(at_op_copy(be, &sk, &dk, err));
        CHECK(at_op_copy(be, &sv, &dv, err));
    }
    dst->len = src->len;
    return 0;
}

int at_nn_memory_new(at_backend *be, at_nn_memory *mem, int n_layer, int n, int d, at_err *err)
{
    mem->n_layer = n_layer;
    mem->stride = n;
    mem->len = 0;
    int pad = at_backend_host_memory(be) ? 16 : 0; /* floats: one cache line */
    int64_t rows = (int64_t)n_layer * n;
    at_tensor k, v;
    CHECK(at_tensor_new_2d(be, &k, AT_DT_F32, d + pad, rows, err));
    int rc = at_tensor_new_2d(be, &v, AT_DT_F32, d + pad, rows, err);
    if (rc) {
        at_tensor_free(&k);
        return rc;
    }
    mem->k = at_tensor_view_cols(&k, 0, d);
    mem->v = at_tensor_view_cols(&v, 0, d);
    return 0;
}

int at_nn_memory_compute(at_backend *be, const at_nn_layer *layers, const at_tensor *enc_out,
                         at_nn_memory *mem, at_err *err)
{
    int n = (int)at_tensor_rows(enc_out);
    int64_t kr = at_tensor_rows(&mem->k), vr = at_tensor_rows(&mem->v);
    int64_t room = mem->n_layer > 0 ? (kr < vr ? kr : vr) / mem->n_layer : 0;
    if (n > room)
        return at_err_set(err, AT_E_TOO_LARGE, "memory of %d rows, room for %lld", n, (long long)room);
    /* the layers lie n rows apart: a short memory is one contiguous run
     * of each tensor's first rows, not a piece at the start of each
     * layer's room (fewer pages touched, and fewer huge pages) */
    mem->stride = n;
    mem->len = 0;
    for (int l = 0; l < mem->n_layer; l++) {
        at_tensor k = at_tensor_view_rows(&mem->k, (int64_t)l * mem->stride, n);
        at_tensor v = at_tensor_view_rows(&mem->v, (int64_t)l * mem->stride, n);
        CHECK(at_nn_cross_kv(be, &layers[l], enc_out, &k, &v, err));
    }
    mem->len = n;
    return 0;
}

int at_nn_decoder_stack(at_backend *be, const at_nn_layer *layers, int n_layers, const at_nn_cfg *cfg,
                        at_tensor *x, const at_nn_stack_seq *seqs, int n_seqs, at_nn_scratch *s, at_err *err)
{
    int rows = 0;
    for (int i = 0; i < n_seqs; i++) {
        const at_nn_stack_seq *q = &seqs[i];
        if (!q->kv || !q->mem || q->n < 1)
            return at_err_set(err, AT_E_INVALID, "decoder: sequence %d is empty", i);
        if (q->kv->n_layer != n_layers || q->mem->n_layer != n_layers || q->mem->len < 1)
            return at_err_set(err, AT_E_INVALID,
                              "decoder: sequence %d has a cache or memory of another model", i);
        if (q->n > q->kv->n_ctx - q->kv->len)
            return at_err_set(err, AT_E_TOO_LARGE, "%d + %d tokens exceed the context of %d", q->kv->len,
                              q->n, q->kv->n_ctx);
        for (int j = 0; j < i; j++)
            if (seqs[j].kv == q->kv) return at_err_set(err, AT_E_INVALID, "two sequences share a kv cache");
        if (q->cross_q && (at_tensor_rows(q->cross_q) < (int64_t)n_layers * q->n ||
                           at_tensor_cols(q->cross_q) != cfg->d_model))
            return at_err_set(err, AT_E_INVALID, "decoder: sequence %d's query capture is too small", i);
        rows += q->n;
    }
    if (rows != at_tensor_rows(x))
        return at_err_set(err, AT_E_INVALID, "decoder: %d rows of tokens, x has %lld", rows,
                          (long long)at_tensor_rows(x));
    at_nn_dec_seq one[16], *ds = n_seqs <= 16 ? one : malloc((size_t)n_seqs * sizeof *ds);
    if (!ds) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int rc = 0;
    for (int l = 0; l < n_layers && !rc; l++) {
        for (int i = 0, o = 0; i < n_seqs; o += seqs[i].n, i++) {
            const at_nn_kv *kv = seqs[i].kv;
            const at_nn_memory *mem = seqs[i].mem;
            int64_t mr = (int64_t)l * mem->stride;
            ds[i] = (at_nn_dec_seq){o,
                                    seqs[i].n,
                                    kv->k[l],
                                    kv->v[l],
                                    kv->len,
                                    at_tensor_view_rows(&mem->k, mr, mem->len),
                                    at_tensor_view_rows(&mem->v, mr, mem->len),
                                    mem->len,
                                    {0}};
            if (seqs[i].cross_q)
                ds[i].cross_q = at_tensor_view_rows(seqs[i].cross_q, (int64_t)l * seqs[i].n, seqs[i].n);
        }
        rc = at_nn_decoder_layer(be, &layers[l], cfg, x, ds, n_seqs, s, err);
    }
    if (ds != one) free(ds);
    if (rc) return rc;
    for (int i = 0; i < n_seqs; i++) seqs[i].kv->len += seqs[i].n;
    return 0;
}

int at_nn_logits(at_backend *be, const at_nn_norm *norm, float eps, const at_tensor *x,
                 const at_nn_logit_rows *req, int n_req, const at_tensor *w, const at_tensor *bias,
                 at_tensor *y, at_tensor *logits, at_err *err)
{
    int L = 0;
    for (int i = 0; i < n_req; i++) {
        if (req[i].n < 0 || req[i].row0 < 0 || req[i].row0 + req[i].n > at_tensor_rows(x) ||
            (req[i].n && !req[i].out))
            return at_err_set(err, AT_E_INVALID, "logits: request %d outside the batch", i);
        L += req[i].n;
    }
    if (L == 0) return 0;
    if (L > at_tensor_rows(y) || L > at_tensor_rows(logits))
        return at_err_set(err, AT_E_INVALID, "logits: %d rows for scratch of %lld", L,
                          (long long)at_tensor_rows(y));
    for (int i = 0, r = 0; i < n_req; r += req[i].n, i++) {
        if (!req[i].n) continue;
        at_tensor src = at_tensor_view_rows(x, req[i].row0, req[i].n),
                  dst = at_tensor_view_rows(y, r, req[i].n);
        CHECK(norm && at_tensor_present(&norm->w) ? at_nn_norm_run(be, norm, eps, &src, &dst, err)
                                                  : at_op_copy(be, &src, &dst, err));
    }
    at_tensor yl = at_tensor_view_rows(y, 0, L), lg = at_tensor_view_rows(logits, 0, L);
    /* On host memory, requests whose outputs follow one another (a beam
     * group's, a batch of one) get their rows written in place: copying
     * eight rows of a 51 865-token vocabulary took a batched step longer
     * than its norms, on one thread while the others waited. */
    float *run = NULL;
    for (int i = 0, r = 0; i < n_req; r += req[i].n, i++) {
        if (!req[i].n) continue;
        if (!run) run = req[i].out;
        if (req[i].out != run + (size_t)r * at_tensor_cols(&lg)) {
            run = NULL;
            break;
        }
    }
    if (run && at_backend_host_memory(be)) {
        int64_t ne[2] = {at_tensor_cols(&lg), L};
        at_tensor out;
        CHECK(at_tensor_from_host(be, &out, AT_DT_F32, 2, ne, run, (size_t)L * ne[0] * sizeof(float), err));
        int rc = at_op_matmul(be, &yl, w, bias, &out, err);
        at_tensor_free(&out);
        return rc;
    }
    CHECK(at_op_matmul(be, &yl, w, bias, &lg, err));
    for (int i = 0, r = 0; i < n_req; r += req[i].n, i++) {
        if (!req[i].n) continue;
        at_tensor part = at_tensor_view_rows(&lg, r, req[i].n);
        CHECK(at_tensor_download(be, &part, req[i].out,
                                 (size_t)req[i].n * at_tensor_cols(&lg) * sizeof(float), err));
    }
    return 0;
}

/* -------------------------------------------------------------- positions */

int at_nn_sinusoids(at_nn_sin_kind kind, int n_pos, int d, float *out, at_err *err)
{
    if (n_pos < 0 || d < 2 || d > 65536 || n_pos > 1 << 20)
        return at_err_set(err, AT_E_INVALID, "sinusoids of %d positions x %d", n_pos, d);
    if (kind == AT_NN_SIN_MARIAN) {
        /* numpy in double, stored as f32 */
        int half = (d + 1) / 2;
        for (int p = 0; p < n_pos; p++)
            for (int j = 0; j < d; j++) {
                double a = p / pow(10000.0, 2.0 * (j / 2) / d);
                if (j % 2 == 0)
                    out[(size_t)p * d + j / 2] = (float)sin(a);
                else
                    out[(size_t)p * d + half + j / 2] = (float)cos(a);
            }
        return 0;
    }
    if (kind != AT_NN_SIN_CONCAT) return at_err_set(err, AT_E_INVALID, "unknown sinusoid kind %d", (int)kind);
    /* PyTorch in f32: frequencies exp(j * -step), angles pos * frequency */
    int half = d / 2;
    if (half < 2) return at_err_set(err, AT_E_INVALID, "sinusoids need at least 4 channels");
    float step = (float)(log(10000.0) / (half - 1));
    for (int p = 0; p < n_pos; p++) {
        float *r = out + (size_t)p * d;
        for (int j = 0; j < half; j++) {
            float a = (float)p * expf((float)j * -step);
            r[j] = sinf(a);
            r[half + j] = cosf(a);
        }
        if (d % 2) r[d - 1] = 0.0f;
    }
    return 0;
}
