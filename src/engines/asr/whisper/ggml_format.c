/* ggml_format.c - whisper.cpp's ggml .bin model format, read and write.
 *
 * Layout (all integers int32 little-endian, no padding anywhere):
 *   magic 0x67676d6c
 *   hparams: n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
 *            n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
 *   mel filters: n_mel n_fft, then n_mel*n_fft float32
 *   vocabulary: n, then n x (uint32 len, len bytes)
 *   tensors until end of file: n_dims name_len ttype, n_dims dims
 *            (innermost first), name, data (ggml row layout)
 * Every count and size is checked against the file length before use:
 * the file is untrusted input. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/asr/whisper/model_internal.h"

#define GGML_MAGIC         0x67676d6cu
#define QNT_VERSION        2
#define QNT_VERSION_FACTOR 1000

typedef struct {
    const uint8_t *p;
    size_t off, size;
    const char *path;
} cursor;

static int rd_i32(cursor *c, int32_t *v, const char *what, at_err *err)
{
    *v = 0;
    if (c->size - c->off < 4) {
        at_err_set(err, AT_E_CORRUPT, "%s: truncated file (reading %s at offset %zu)", c->path, what, c->off);
        return AT_E_CORRUPT;
    }
    memcpy(v, c->p + c->off, 4);
    c->off += 4;
    return 0;
}

int at_ggml_ftype_for(at_dtype t)
{
    switch (t) {
    case AT_DT_F32: return 0;
    case AT_DT_F16: return 1;
    case AT_DT_Q4_0: return 2 + QNT_VERSION * QNT_VERSION_FACTOR;
    case AT_DT_Q4_1: return 3 + QNT_VERSION * QNT_VERSION_FACTOR;
    case AT_DT_Q8_0: return 7 + QNT_VERSION * QNT_VERSION_FACTOR;
    case AT_DT_Q5_0: return 8 + QNT_VERSION * QNT_VERSION_FACTOR;
    case AT_DT_Q5_1: return 9 + QNT_VERSION * QNT_VERSION_FACTOR;
    default: return 1;
    }
}

int at_dtype_from_name(const char *name, at_dtype *out)
{
    static const struct {
        const char *n;
        at_dtype t;
    } tab[] = {{"f32", AT_DT_F32},   {"f16", AT_DT_F16},   {"q8_0", AT_DT_Q8_0}, {"q5_0", AT_DT_Q5_0},
               {"q5_1", AT_DT_Q5_1}, {"q4_0", AT_DT_Q4_0}, {"q4_1", AT_DT_Q4_1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(name, tab[i].n)) {
            *out = tab[i].t;
            return 0;
        }
    return -1;
}

int at_whisper_ggml_open(const char *path, at_wsource *out, at_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = at_nn_map_file(path, &out->w.map, &out->w.map_size, err);
    if (rc) return rc;
    cursor c = {out->w.map, 0, out->w.map_size, path};
    int32_t v;
    if ((rc = rd_i32(&c, &v, "magic", err))) goto fail;
    if ((uint32_t)v != GGML_MAGIC) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: not a ggml model (bad magic 0x%08x)", path, (unsigned)v);
        goto fail;
    }
    int32_t hv[11];
    for (int i = 0; i < 11; i++)
        if ((rc = rd_i32(&c, &hv[i], "hparams", err))) goto fail;
    at_whisper_hparams *hp = &out->hp;
    hp->n_vocab = hv[0];
    hp->n_audio_ctx = hv[1];
    hp->n_audio_state = hv[2];
    hp->n_audio_head = hv[3];
    hp->n_audio_layer = hv[4];
    hp->n_text_ctx = hv[5];
    hp->n_text_state = hv[6];
    hp->n_text_head = hv[7];
    hp->n_text_layer = hv[8];
    hp->n_mels = hv[9];
    hp->ftype = hv[10] % QNT_VERSION_FACTOR;
    if ((rc = at_whisper_hparams_check(hp, path, err))) goto fail;

    int32_t nm, nf;
    if ((rc = rd_i32(&c, &nm, "mel filter size", err)) || (rc = rd_i32(&c, &nf, "mel filter size", err)))
        goto fail;
    if (nm < 0 || nm > 512 || nf < 0 || nf > 4096) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: bad mel filter size %d x %d", path, nm, nf);
        goto fail;
    }
    size_t fbytes = (size_t)nm * (size_t)nf * 4;
    if (c.size - c.off < fbytes) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: truncated file (mel filters)", path);
        goto fail;
    }
    out->filters = c.p + c.off;
    out->n_filt_mel = nm;
    out->n_filt_fft = nf;
    c.off += fbytes;

    int32_t ntok;
    if ((rc = rd_i32(&c, &ntok, "vocabulary size", err))) goto fail;
    /* each token takes at least 4 bytes, which bounds the allocation */
    if (ntok < 0 || (size_t)ntok > (c.size - c.off) / 4 || ntok > (1 << 20)) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: bad vocabulary size %d", path, ntok);
        goto fail;
    }
    out->n_tokens = (size_t)ntok;
    out->tok = calloc((size_t)ntok + 1, sizeof *out->tok);
    out->tok_len = calloc((size_t)ntok + 1, sizeof *out->tok_len);
    if (!out->tok || !out->tok_len) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (vocabulary)");
        goto fail;
    }
    for (int32_t i = 0; i < ntok; i++) {
        int32_t len;
        if ((rc = rd_i32(&c, &len, "token length", err))) goto fail;
        if (len < 0 || (size_t)len > c.size - c.off) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: bad length %d of token %d", path, len, i);
            goto fail;
        }
        out->tok[i] = c.p + c.off;
        out->tok_len[i] = (size_t)len;
        c.off += (size_t)len;
    }

    while (c.off < c.size) {
        int32_t nd, nl, tt;
        if ((rc = rd_i32(&c, &nd, "tensor header", err)) || (rc = rd_i32(&c, &nl, "tensor header", err)) ||
            (rc = rd_i32(&c, &tt, "tensor header", err)))
            goto fail;
        if (nd < 1 || nd > 4 || nl < 1 || nl >= AT_NN_NAME_MAX || !at_dtype_valid(tt) || tt == AT_DT_BF16) {
            rc = at_err_set(err, AT_E_CORRUPT,
                            "%s: bad tensor header at offset %zu (dims %d, name length %d, type %d)", path,
                            c.off - 12, nd, nl, tt);
            goto fail;
        }
        int64_t ne[4] = {1, 1, 1, 1}, shape[4];
        uint64_t nel = 1;
        for (int i = 0; i < nd; i++) {
            int32_t d;
            if ((rc = rd_i32(&c, &d, "tensor dims", err))) goto fail;
            if (d < 1 || d > (1 << 24)) {
                rc = at_err_set(err, AT_E_CORRUPT, "%s: bad tensor dimension %d", path, d);
                goto fail;
            }
            ne[i] = d;
            nel *= (uint64_t)d;
            /* bound by the bytes the type needs (4-bit types hold more
             * values than bytes), and stop before the product overflows */
            if ((double)nel * (double)at_dtype_block_bytes((at_dtype)tt) / at_dtype_block((at_dtype)tt) >
                (double)c.size) {
                rc = at_err_set(err, AT_E_CORRUPT, "%s: tensor larger than the file", path);
                goto fail;
            }
        }
        if (c.size - c.off < (size_t)nl) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: truncated file (tensor name)", path);
            goto fail;
        }
        char name[AT_NN_NAME_MAX];
        memcpy(name, c.p + c.off, (size_t)nl);
        name[nl] = 0;
        c.off += (size_t)nl;
        size_t rb = at_dtype_row_bytes((at_dtype)tt, ne[0]);
        if (!rb) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: tensor %s: row of %lld is not whole %s blocks", path,
                            name, (long long)ne[0], at_dtype_name((at_dtype)tt));
            goto fail;
        }
        uint64_t nbytes = rb * (nel / (uint64_t)ne[0]);
        if (nbytes > c.size - c.off) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: truncated file (tensor %s needs %llu bytes, %zu left)",
                            path, name, (unsigned long long)nbytes, c.size - c.off);
            goto fail;
        }
        for (int i = 0; i < nd; i++) shape[i] = ne[nd - 1 - i];
        if ((rc =
                 at_nn_weights_add(&out->w, name, (at_dtype)tt, nd, shape, c.p + c.off, (size_t)nbytes, err)))
            goto fail;
        c.off += (size_t)nbytes;
    }
    return 0;
fail:
    at_wsource_free(out);
    return rc;
}

/* ----------------------------------------------------------------- writer */

struct at_ggml_writer {
    FILE *f;
    char *path;
    int failed;
    float *row;
    void *qrow;
    size_t row_cap;
};

static void wr(at_ggml_writer *w, const void *p, size_t n)
{
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) w->failed = 1;
}

static void wr_i32(at_ggml_writer *w, int32_t v) { wr(w, &v, 4); }

at_ggml_writer *at_ggml_writer_open(const char *path, const at_whisper_hparams *hp, at_err *err)
{
    at_ggml_writer *w = calloc(1, sizeof *w);
    if (!w) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    w->path = strdup(path);
    w->f = fopen(path, "wb");
    if (!w->f || !w->path) {
        at_err_set(err, AT_E_IO, "cannot create %s: %s", path, strerror(errno));
        if (w->f) fclose(w->f);
        free(w->path);
        free(w);
        return NULL;
    }
    wr_i32(w, (int32_t)GGML_MAGIC);
    int32_t hv[11] = {hp->n_vocab,       hp->n_audio_ctx, hp->n_audio_state, hp->n_audio_head,
                      hp->n_audio_layer, hp->n_text_ctx,  hp->n_text_state,  hp->n_text_head,
                      hp->n_text_layer,  hp->n_mels,      hp->ftype};
    for (int i = 0; i < 11; i++) wr_i32(w, hv[i]);
    return w;
}

int at_ggml_writer_header(at_ggml_writer *w, const float *filters, int n_mel, int n_fft, size_t n_tok,
                          const char *const *toks, const size_t *lens, at_err *err)
{
    wr_i32(w, n_mel);
    wr_i32(w, n_fft);
    wr(w, filters, (size_t)n_mel * (size_t)n_fft * 4);
    wr_i32(w, (int32_t)n_tok);
    for (size_t i = 0; i < n_tok; i++) {
        wr_i32(w, (int32_t)lens[i]);
        wr(w, toks[i], lens[i]);
    }
    if (w->failed) return at_err_set(err, AT_E_IO, "write to %s failed", w->path);
    return 0;
}

int at_ggml_writer_tensor(at_ggml_writer *w, const char *name, int n_dims, const int64_t *shape,
                          at_dtype type, at_row_fn fn, void *user, at_err *err)
{
    int64_t cols = shape[n_dims - 1], rows = 1;
    for (int i = 0; i < n_dims - 1; i++) rows *= shape[i];
    size_t rb = at_dtype_row_bytes(type, cols);
    if (!rb)
        return at_err_set(err, AT_E_INVALID, "%s: %lld columns do not fit %s blocks", name, (long long)cols,
                          at_dtype_name(type));
    if ((size_t)cols > w->row_cap) {
        free(w->row);
        free(w->qrow);
        w->row = malloc((size_t)cols * sizeof(float));
        w->qrow = malloc((size_t)cols * sizeof(float));
        w->row_cap = w->row && w->qrow ? (size_t)cols : 0;
        if (!w->row_cap) return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    size_t nl = strlen(name);
    wr_i32(w, n_dims);
    wr_i32(w, (int32_t)nl);
    wr_i32(w, (int32_t)type);
    for (int i = n_dims - 1; i >= 0; i--) wr_i32(w, (int32_t)shape[i]);
    wr(w, name, nl);
    for (int64_t r = 0; r < rows; r++) {
        int rc = fn(user, r, w->row, (int)cols);
        if (rc) return rc;
        size_t nb = at_quant_row(type, w->row, w->qrow, (int)cols);
        wr(w, w->qrow, nb);
    }
    if (w->failed) return at_err_set(err, AT_E_IO, "write to %s failed", w->path);
    return 0;
}

int at_ggml_writer_close(at_ggml_writer *w, at_err *err)
{
    if (!w) return 0;
    int bad = w->failed;
    if (fclose(w->f) != 0) bad = 1;
    int rc = bad ? at_err_set(err, AT_E_IO, "write to %s failed", w->path) : 0;
    free(w->row);
    free(w->qrow);
    free(w->path);
    free(w);
    return rc;
}
