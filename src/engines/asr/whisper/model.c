/* model.c - Whisper weights, encoder and decoder on the compute backend.
 *
 * Matrices stay where the loader mapped them (f16/quantized/f32); only
 * small tensors (norms, biases, positional embeddings) are converted to
 * owned f32 arrays.  All arithmetic is f32. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engines/asr/whisper/model_internal.h"

#define LN_EPS 1e-5f

/* --------------------------------------------------------- weight source */

int at_wmap_file(const char *path, void **map, size_t *size, at_err *err)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return at_err_set(err, AT_E_IO, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return at_err_set(err, AT_E_IO, "%s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return at_err_set(err, AT_E_CORRUPT, "%s is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return at_err_set(err, AT_E_IO, "cannot map %s", path);
    *map = p;
    *size = (size_t)st.st_size;
    return 0;
}

void at_wunmap(void *map, size_t size)
{
    if (map) munmap(map, size);
}

void at_wsource_free(at_wsource *s)
{
    if (!s) return;
    at_wunmap(s->map, s->map_size);
    free(s->t);
    free(s->tok);
    free(s->tok_len);
    memset(s, 0, sizeof *s);
}

int at_wsource_add(at_wsource *s, const char *name, at_dtype type, int n_dims, const int64_t *shape,
                   const void *data, size_t nbytes, at_err *err)
{
    if (strlen(name) >= AT_WT_NAME_MAX) return at_err_set(err, AT_E_CORRUPT, "tensor name too long");
    if (at_wsource_find(s, name)) return at_err_set(err, AT_E_CORRUPT, "duplicate tensor %s", name);
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        if (nc > 100000) return at_err_set(err, AT_E_CORRUPT, "too many tensors");
        at_wtensor *t = realloc(s->t, nc * sizeof *t);
        if (!t) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->t = t;
        s->cap = nc;
    }
    at_wtensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < 4; i++) t->shape[i] = i < n_dims ? shape[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

const at_wtensor *at_wsource_find(const at_wsource *s, const char *name)
{
    /* linear: a few hundred tensors, searched once at load */
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

int at_whisper_hparams_check(const at_whisper_hparams *hp, const char *what, at_err *err)
{
#define RANGE(f, lo, hi)                                                                                     \
    if (hp->f < (lo) || hp->f > (hi))                                                                        \
        return at_err_set(err, AT_E_CORRUPT, "%s: hyper-parameter " #f " = %d outside %d..%d", what, hp->f,  \
                          (lo), (hi));
    RANGE(n_vocab, 51864, 52000);
    RANGE(n_audio_ctx, 1, AT_WHISPER_N_FRAMES / 2);
    RANGE(n_audio_state, 1, 8192);
    RANGE(n_audio_head, 1, 256);
    RANGE(n_audio_layer, 1, 256);
    RANGE(n_text_ctx, 1, 4096);
    RANGE(n_text_state, 1, 8192);
    RANGE(n_text_head, 1, 256);
    RANGE(n_text_layer, 1, 256);
    RANGE(n_mels, 1, 512);
#undef RANGE
    if (hp->n_audio_state != hp->n_text_state)
        return at_err_set(err, AT_E_CORRUPT, "%s: encoder width %d != decoder width %d", what,
                          hp->n_audio_state, hp->n_text_state);
    if (hp->n_audio_state % hp->n_audio_head || hp->n_text_state % hp->n_text_head)
        return at_err_set(err, AT_E_CORRUPT, "%s: width not divisible by the number of heads", what);
    return 0;
}

/* ------------------------------------------------------------------ model */

typedef struct {
    float *w, *b;
} ln_t;
typedef struct {
    at_matrix w;
    float *b; /* NULL: no bias (key projections) */
} lin_t;
typedef struct {
    ln_t ln;
    lin_t q, k, v, o;
} attn_t;
typedef struct {
    attn_t attn;
    ln_t mlp_ln;
    lin_t fc1, fc2;
} enc_layer;
typedef struct {
    attn_t self, cross;
    ln_t mlp_ln;
    lin_t fc1, fc2;
} dec_layer;

struct at_whisper_model {
    at_whisper_hparams hp;
    at_whisper_special sp;
    at_wsource src;
    int n_ffn_enc, n_ffn_dec;
    /* owned f32 copies of the small tensors */
    float **owned;
    size_t n_owned, cap_owned, owned_bytes;
    /* encoder */
    lin_t conv1, conv2;
    float *enc_pos;
    enc_layer *enc;
    ln_t enc_ln;
    /* decoder */
    at_matrix tok;
    float *dec_pos;
    dec_layer *dec;
    ln_t dec_ln;
    /* vocabulary (ggml only), NUL-terminated copies */
    char *vocab_buf;
    const char **vocab;
    size_t *vocab_len;
    size_t n_vocab_file;
};

static float *own(at_whisper_model *m, size_t n, at_err *err)
{
    if (m->n_owned == m->cap_owned) {
        size_t nc = m->cap_owned ? m->cap_owned * 2 : 256;
        float **o = realloc(m->owned, nc * sizeof *o);
        if (!o) {
            at_err_set(err, AT_E_NOMEM, "out of memory");
            return NULL;
        }
        m->owned = o;
        m->cap_owned = nc;
    }
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        at_err_set(err, AT_E_NOMEM, "out of memory (%zu floats)", n);
        return NULL;
    }
    m->owned[m->n_owned++] = p;
    m->owned_bytes += n * sizeof(float);
    return p;
}

static const at_wtensor *need(at_whisper_model *m, const char *name, at_err *err)
{
    const at_wtensor *t = at_wsource_find(&m->src, name);
    if (!t) at_err_set(err, AT_E_CORRUPT, "model has no tensor %s", name);
    return t;
}

static int64_t numel(const at_wtensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

/* A small tensor of n values (any shape with that many values) as f32. */
static int get_f32(at_whisper_model *m, const char *name, int64_t n, float **out, at_err *err)
{
    const at_wtensor *t = need(m, name, err);
    if (!t) return AT_E_CORRUPT;
    if (numel(t) != n)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has %lld values, expected %lld", name,
                          (long long)numel(t), (long long)n);
    int64_t cols = t->shape[t->n_dims - 1], rows = n / cols;
    size_t rb = at_dtype_row_bytes(t->type, cols);
    if (!rb || rb * (size_t)rows != t->nbytes)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad size", name);
    float *p = own(m, (size_t)n, err);
    if (!p) return AT_E_NOMEM;
    for (int64_t r = 0; r < rows; r++)
        at_dequant_row(t->type, (const uint8_t *)t->data + (size_t)r * rb, p + r * cols, (int)cols);
    *out = p;
    return 0;
}

/* A weight matrix: [rows x cols], or for convolutions [rows x c x 3]. */
static int get_mat(at_whisper_model *m, const char *name, int rows, int cols, int k3, at_matrix *out,
                   at_err *err)
{
    const at_wtensor *t = need(m, name, err);
    if (!t) return AT_E_CORRUPT;
    int ok = k3 ? (t->n_dims == 3 && t->shape[0] == rows && t->shape[1] == cols && t->shape[2] == 3)
                : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has shape [%lld %lld %lld], expected [%d %d%s]", name,
                          (long long)t->shape[0], (long long)(t->n_dims > 1 ? t->shape[1] : 0),
                          (long long)(t->n_dims > 2 ? t->shape[2] : 0), rows, cols, k3 ? " 3" : "");
    int c = k3 ? cols * 3 : cols;
    size_t rb = at_dtype_row_bytes(t->type, c);
    if (!rb || rb * (size_t)rows != t->nbytes)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad size", name);
    out->type = t->type;
    out->rows = rows;
    out->cols = c;
    out->data = t->data;
    out->row_bytes = rb;
    return 0;
}

/* Name building with explicit truncation check (names are bounded). */
#define NAME(buf, ...)                                                                                       \
    do {                                                                                                     \
        if (snprintf(buf, sizeof buf, __VA_ARGS__) >= (int)sizeof buf)                                       \
            return at_err_set(err, AT_E_INVALID, "tensor name too long");                                    \
    } while (0)

static int get_lin(at_whisper_model *m, const char *pfx, int rows, int cols, int bias, lin_t *l, at_err *err)
{
    char n[256];
    NAME(n, "%s.weight", pfx);
    int rc = get_mat(m, n, rows, cols, 0, &l->w, err);
    if (rc) return rc;
    l->b = NULL;
    if (!bias) return 0;
    NAME(n, "%s.bias", pfx);
    return get_f32(m, n, rows, &l->b, err);
}

static int get_ln(at_whisper_model *m, const char *pfx, int d, ln_t *l, at_err *err)
{
    char n[256];
    NAME(n, "%s.weight", pfx);
    int rc = get_f32(m, n, d, &l->w, err);
    if (rc) return rc;
    NAME(n, "%s.bias", pfx);
    return get_f32(m, n, d, &l->b, err);
}

static int get_attn(at_whisper_model *m, const char *pfx, const char *lnname, int d, attn_t *a, at_err *err)
{
    char n[256];
    int rc;
    NAME(n, "%s", lnname);
    if ((rc = get_ln(m, n, d, &a->ln, err))) return rc;
    NAME(n, "%s.query", pfx);
    if ((rc = get_lin(m, n, d, d, 1, &a->q, err))) return rc;
    NAME(n, "%s.key", pfx);
    if ((rc = get_lin(m, n, d, d, 0, &a->k, err))) return rc;
    NAME(n, "%s.value", pfx);
    if ((rc = get_lin(m, n, d, d, 1, &a->v, err))) return rc;
    NAME(n, "%s.out", pfx);
    return get_lin(m, n, d, d, 1, &a->o, err);
}

static int ffn_width(at_whisper_model *m, const char *name, int *out, at_err *err)
{
    const at_wtensor *t = need(m, name, err);
    if (!t) return AT_E_CORRUPT;
    if (t->n_dims != 2 || t->shape[0] < 1 || t->shape[0] > 65536)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has a bad shape", name);
    *out = (int)t->shape[0];
    return 0;
}

static void set_special(at_whisper_special *sp, int n_vocab)
{
    /* OpenAI's layout: the base vocabulary, <|endoftext|>, <|startoftranscript|>,
     * one token per language, then the task/control tokens.  English-only
     * models have no language tokens in between. */
    int multi = n_vocab >= 51865;
    sp->is_multilingual = multi;
    sp->n_langs = multi ? n_vocab - 51765 - 1 : 0;
    sp->eot = multi ? 50257 : 50256;
    sp->sot = sp->eot + 1;
    int dt = multi ? sp->n_langs - 98 : 0;
    sp->translate = 50357 + dt;
    sp->transcribe = 50358 + dt;
    sp->solm = 50359 + dt;
    sp->prev = 50360 + dt;
    sp->nosp = 50361 + dt;
    sp->not_ = 50362 + dt;
    sp->beg = 50363 + dt;
}

static int build(at_whisper_model *m, at_err *err)
{
    const at_whisper_hparams *hp = &m->hp;
    int d = hp->n_audio_state, rc;
    char n[AT_WT_NAME_MAX], p[AT_WT_NAME_MAX], l[AT_WT_NAME_MAX];
    if ((rc = ffn_width(m, "encoder.blocks.0.mlp.0.weight", &m->n_ffn_enc, err))) return rc;
    if ((rc = ffn_width(m, "decoder.blocks.0.mlp.0.weight", &m->n_ffn_dec, err))) return rc;
    if ((rc = get_mat(m, "encoder.conv1.weight", d, hp->n_mels, 1, &m->conv1.w, err)) ||
        (rc = get_f32(m, "encoder.conv1.bias", d, &m->conv1.b, err)) ||
        (rc = get_mat(m, "encoder.conv2.weight", d, d, 1, &m->conv2.w, err)) ||
        (rc = get_f32(m, "encoder.conv2.bias", d, &m->conv2.b, err)) ||
        (rc = get_f32(m, "encoder.positional_embedding", (int64_t)hp->n_audio_ctx * d, &m->enc_pos, err)) ||
        (rc = get_ln(m, "encoder.ln_post", d, &m->enc_ln, err)) ||
        (rc = get_mat(m, "decoder.token_embedding.weight", hp->n_vocab, d, 0, &m->tok, err)) ||
        (rc = get_f32(m, "decoder.positional_embedding", (int64_t)hp->n_text_ctx * d, &m->dec_pos, err)) ||
        (rc = get_ln(m, "decoder.ln", d, &m->dec_ln, err)))
        return rc;
    m->enc = calloc((size_t)hp->n_audio_layer, sizeof *m->enc);
    m->dec = calloc((size_t)hp->n_text_layer, sizeof *m->dec);
    if (!m->enc || !m->dec) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < hp->n_audio_layer; i++) {
        enc_layer *L = &m->enc[i];
        NAME(p, "encoder.blocks.%d.attn", i);
        NAME(l, "encoder.blocks.%d.attn_ln", i);
        if ((rc = get_attn(m, p, l, d, &L->attn, err))) return rc;
        NAME(n, "encoder.blocks.%d.mlp_ln", i);
        if ((rc = get_ln(m, n, d, &L->mlp_ln, err))) return rc;
        NAME(n, "encoder.blocks.%d.mlp.0", i);
        if ((rc = get_lin(m, n, m->n_ffn_enc, d, 1, &L->fc1, err))) return rc;
        NAME(n, "encoder.blocks.%d.mlp.2", i);
        if ((rc = get_lin(m, n, d, m->n_ffn_enc, 1, &L->fc2, err))) return rc;
    }
    for (int i = 0; i < hp->n_text_layer; i++) {
        dec_layer *L = &m->dec[i];
        NAME(p, "decoder.blocks.%d.attn", i);
        NAME(l, "decoder.blocks.%d.attn_ln", i);
        if ((rc = get_attn(m, p, l, d, &L->self, err))) return rc;
        NAME(p, "decoder.blocks.%d.cross_attn", i);
        NAME(l, "decoder.blocks.%d.cross_attn_ln", i);
        if ((rc = get_attn(m, p, l, d, &L->cross, err))) return rc;
        NAME(n, "decoder.blocks.%d.mlp_ln", i);
        if ((rc = get_ln(m, n, d, &L->mlp_ln, err))) return rc;
        NAME(n, "decoder.blocks.%d.mlp.0", i);
        if ((rc = get_lin(m, n, m->n_ffn_dec, d, 1, &L->fc1, err))) return rc;
        NAME(n, "decoder.blocks.%d.mlp.2", i);
        if ((rc = get_lin(m, n, d, m->n_ffn_dec, 1, &L->fc2, err))) return rc;
    }
    /* the storage type of the big matrices, for information */
    if (m->hp.ftype < 0) m->hp.ftype = at_ggml_ftype_for(m->enc[0].fc1.w.type) % 1000;
    /* vocabulary copies, NUL-terminated for the tokenizer's convenience */
    if (m->src.n_tokens) {
        size_t total = 0;
        for (size_t i = 0; i < m->src.n_tokens; i++) total += m->src.tok_len[i] + 1;
        m->vocab_buf = malloc(total);
        m->vocab = calloc(m->src.n_tokens, sizeof *m->vocab);
        m->vocab_len = calloc(m->src.n_tokens, sizeof *m->vocab_len);
        if (!m->vocab_buf || !m->vocab || !m->vocab_len)
            return at_err_set(err, AT_E_NOMEM, "out of memory (vocabulary)");
        char *q = m->vocab_buf;
        for (size_t i = 0; i < m->src.n_tokens; i++) {
            memcpy(q, m->src.tok[i], m->src.tok_len[i]);
            q[m->src.tok_len[i]] = 0;
            m->vocab[i] = q;
            m->vocab_len[i] = m->src.tok_len[i];
            q += m->src.tok_len[i] + 1;
        }
        m->n_vocab_file = m->src.n_tokens;
    }
    return 0;
}

at_whisper_model *at_whisper_model_from_source(at_wsource *src, at_err *err)
{
    at_whisper_model *m = calloc(1, sizeof *m);
    if (!m) {
        at_wsource_free(src);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    m->src = *src;
    memset(src, 0, sizeof *src);
    m->hp = m->src.hp;
    set_special(&m->sp, m->hp.n_vocab);
    if (build(m, err)) {
        at_whisper_model_free(m);
        return NULL;
    }
    return m;
}

at_whisper_model *at_whisper_model_load(const char *path, at_err *err)
{
    if (!path || !*path) {
        at_err_set(err, AT_E_INVALID, "no model path");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        at_err_set(err, AT_E_IO, "model %s not found", path);
        return NULL;
    }
    at_wsource src;
    int rc =
        S_ISDIR(st.st_mode) ? at_whisper_hf_open(path, &src, err) : at_whisper_ggml_open(path, &src, err);
    if (rc) return NULL;
    return at_whisper_model_from_source(&src, err);
}

void at_whisper_model_free(at_whisper_model *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->enc);
    free(m->dec);
    free(m->vocab_buf);
    free(m->vocab);
    free(m->vocab_len);
    at_wsource_free(&m->src);
    free(m);
}

const at_whisper_hparams *at_whisper_model_hparams(const at_whisper_model *m) { return &m->hp; }
const at_whisper_special *at_whisper_model_special(const at_whisper_model *m) { return &m->sp; }
const at_wsource *at_whisper_model_source(const at_whisper_model *m) { return &m->src; }

size_t at_whisper_model_vocab(const at_whisper_model *m, const char *const **tokens, const size_t **lens)
{
    if (tokens) *tokens = m->vocab;
    if (lens) *lens = m->vocab_len;
    return m->n_vocab_file;
}

size_t at_whisper_model_weight_bytes(const at_whisper_model *m)
{
    size_t b = m->owned_bytes;
    for (size_t i = 0; i < m->src.n; i++) b += m->src.t[i].nbytes;
    return b;
}

int at_whisper_mel(const at_whisper_model *m, const float *pcm, size_t n, float *out, at_err *err)
{
    return at_whisper_log_mel(m->hp.n_mels, pcm, n, out, err);
}

/* ------------------------------------------------------------------ state */

struct at_whisper_state {
    const at_whisper_model *m;
    at_compute *c;
    at_compute *own_pool; /* the pool c runs on, when made for this state too */
    int n_ctx;            /* positions of the last encoding, 0 = none yet */
    float *enc_out, *cross_k, *cross_v;
    /* encoder scratch (calloc'd: pages are touched only as far as used) */
    float *mel_t, *c1, *x, *y, *q, *k, *v, *a, *f;
    /* decoder scratch, grown to the largest batch of tokens seen */
    int dcap;
    float *dx, *dy, *dq, *da, *df, *dk, *dv;
    int lcap; /* rows of dl: logits of a batch */
    float *dl;
};

void at_whisper_state_free(at_whisper_state *s)
{
    if (!s) return;
    at_compute_free(s->c); /* the state's client of the pool */
    at_compute_free(s->own_pool);
    float *bufs[] = {s->enc_out, s->cross_k, s->cross_v, s->mel_t, s->c1, s->x,  s->y,  s->q,  s->k,  s->v,
                     s->a,       s->f,       s->dx,      s->dy,    s->dq, s->da, s->df, s->dk, s->dv, s->dl};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s);
}

at_whisper_state *at_whisper_state_new(const at_whisper_model *m, int n_threads, at_err *err)
{
    at_compute *c = at_compute_new(n_threads, err);
    if (!c) return NULL;
    at_whisper_state *s = at_whisper_state_new_shared(m, c, err);
    if (!s) {
        at_compute_free(c);
        return NULL;
    }
    s->own_pool = c;
    return s;
}

at_whisper_state *at_whisper_state_new_shared(const at_whisper_model *m, at_compute *c, at_err *err)
{
    at_whisper_state *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->c = at_compute_new_client(c, err);
    if (!s->c) {
        free(s);
        return NULL;
    }
    const at_whisper_hparams *hp = &m->hp;
    size_t n = (size_t)hp->n_audio_ctx, d = (size_t)hp->n_audio_state;
    s->enc_out = calloc(n * d, sizeof(float));
    s->cross_k = calloc((size_t)hp->n_text_layer * n * d, sizeof(float));
    s->cross_v = calloc((size_t)hp->n_text_layer * n * d, sizeof(float));
    s->mel_t = calloc(2 * n * (size_t)hp->n_mels, sizeof(float));
    s->c1 = calloc(2 * n * d, sizeof(float));
    s->x = calloc(n * d, sizeof(float));
    s->y = calloc(n * d, sizeof(float));
    s->q = calloc(n * d, sizeof(float));
    s->k = calloc(n * d, sizeof(float));
    s->v = calloc(n * d, sizeof(float));
    s->a = calloc(n * d, sizeof(float));
    s->f = calloc(n * (size_t)m->n_ffn_enc, sizeof(float));
    if (!s->enc_out || !s->cross_k || !s->cross_v || !s->mel_t || !s->c1 || !s->x || !s->y || !s->q ||
        !s->k || !s->v || !s->a || !s->f) {
        at_whisper_state_free(s);
        at_err_set(err, AT_E_NOMEM, "out of memory (whisper state)");
        return NULL;
    }
    return s;
}

static int linear(at_whisper_state *s, const float *x, int M, const lin_t *l, float *y, at_err *err)
{
    return at_matmul(s->c, x, M, &l->w, l->b, y, err);
}

int at_whisper_encode(at_whisper_state *s, const float *mel, int audio_ctx, at_err *err)
{
    const at_whisper_model *m = s->m;
    const at_whisper_hparams *hp = &m->hp;
    int n = audio_ctx > 0 ? audio_ctx : hp->n_audio_ctx, d = hp->n_audio_state, rc;
    if (!mel) return at_err_set(err, AT_E_INVALID, "no mel input");
    if (n > hp->n_audio_ctx)
        return at_err_set(err, AT_E_INVALID, "audio_ctx %d > n_audio_ctx %d", n, hp->n_audio_ctx);
    s->n_ctx = 0;
    int T1 = 2 * n, nm = hp->n_mels;
    for (int t = 0; t < T1; t++)
        for (int c = 0; c < nm; c++) s->mel_t[(size_t)t * nm + c] = mel[(size_t)c * AT_WHISPER_N_FRAMES + t];
    if ((rc = at_conv1d_k3_gelu(s->c, s->mel_t, T1, nm, &m->conv1.w, m->conv1.b, 1, s->c1, err))) return rc;
    if ((rc = at_conv1d_k3_gelu(s->c, s->c1, T1, d, &m->conv2.w, m->conv2.b, 2, s->x, err))) return rc;
    size_t nd = (size_t)n * d;
    at_add(s->x, m->enc_pos, nd);
    for (int i = 0; i < hp->n_audio_layer; i++) {
        const enc_layer *L = &m->enc[i];
        at_layer_norm(s->x, n, d, L->attn.ln.w, L->attn.ln.b, LN_EPS, s->y);
        if ((rc = linear(s, s->y, n, &L->attn.q, s->q, err)) ||
            (rc = linear(s, s->y, n, &L->attn.k, s->k, err)) ||
            (rc = linear(s, s->y, n, &L->attn.v, s->v, err)))
            return rc;
        if ((rc = at_attention(s->c, s->q, d, s->k, d, s->v, d, n, n, hp->n_audio_head, d / hp->n_audio_head,
                               -1, s->a, d, err)))
            return rc;
        if ((rc = linear(s, s->a, n, &L->attn.o, s->y, err))) return rc;
        at_add(s->x, s->y, nd);
        at_layer_norm(s->x, n, d, L->mlp_ln.w, L->mlp_ln.b, LN_EPS, s->y);
        if ((rc = linear(s, s->y, n, &L->fc1, s->f, err))) return rc;
        at_gelu(s->f, (size_t)n * m->n_ffn_enc);
        if ((rc = linear(s, s->f, n, &L->fc2, s->y, err))) return rc;
        at_add(s->x, s->y, nd);
    }
    at_layer_norm(s->x, n, d, m->enc_ln.w, m->enc_ln.b, LN_EPS, s->enc_out);
    /* cross-attention keys/values depend only on the audio: once per encode */
    for (int i = 0; i < hp->n_text_layer; i++) {
        const dec_layer *L = &m->dec[i];
        size_t off = (size_t)i * hp->n_audio_ctx * d;
        if ((rc = linear(s, s->enc_out, n, &L->cross.k, s->cross_k + off, err)) ||
            (rc = linear(s, s->enc_out, n, &L->cross.v, s->cross_v + off, err)))
            return rc;
    }
    s->n_ctx = n;
    return 0;
}

const float *at_whisper_encoder_output(const at_whisper_state *s, int *n_ctx)
{
    if (n_ctx) *n_ctx = s->n_ctx;
    return s->enc_out;
}

/* --------------------------------------------------------------- kv cache */

struct at_whisper_kv {
    int len, n_layer, n_ctx, d;
    float *k, *v; /* [n_layer][n_ctx][d] */
};

at_whisper_kv *at_whisper_kv_new(const at_whisper_model *m, at_err *err)
{
    at_whisper_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    kv->n_layer = m->hp.n_text_layer;
    kv->n_ctx = m->hp.n_text_ctx;
    kv->d = m->hp.n_text_state;
    size_t n = (size_t)kv->n_layer * kv->n_ctx * kv->d;
    kv->k = calloc(n, sizeof(float));
    kv->v = calloc(n, sizeof(float));
    if (!kv->k || !kv->v) {
        at_whisper_kv_free(kv);
        at_err_set(err, AT_E_NOMEM, "out of memory (kv cache)");
        return NULL;
    }
    return kv;
}

void at_whisper_kv_free(at_whisper_kv *kv)
{
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

void at_whisper_kv_copy(at_whisper_kv *dst, const at_whisper_kv *src)
{
    if (dst == src || dst->n_layer != src->n_layer || dst->n_ctx != src->n_ctx || dst->d != src->d) return;
    size_t rows = (size_t)src->len * src->d, stride = (size_t)src->n_ctx * src->d;
    for (int l = 0; l < src->n_layer; l++) {
        memcpy(dst->k + l * stride, src->k + l * stride, rows * sizeof(float));
        memcpy(dst->v + l * stride, src->v + l * stride, rows * sizeof(float));
    }
    dst->len = src->len;
}

int at_whisper_kv_len(const at_whisper_kv *kv) { return kv->len; }

void at_whisper_kv_truncate(at_whisper_kv *kv, int n)
{
    if (n < 0) n = 0;
    if (n < kv->len) kv->len = n;
}

/* ----------------------------------------------------------------- decode */

static int dec_reserve(at_whisper_state *s, int n, at_err *err)
{
    if (n <= s->dcap) return 0;
    size_t d = (size_t)s->m->hp.n_text_state, f = (size_t)s->m->n_ffn_dec;
    float **bufs[] = {&s->dx, &s->dy, &s->dq, &s->da, &s->dk, &s->dv};
    int ok = 1;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        ok &= (*bufs[i] = malloc((size_t)n * d * sizeof(float))) != NULL;
    }
    free(s->df);
    ok &= (s->df = malloc((size_t)n * f * sizeof(float))) != NULL;
    if (!ok) {
        s->dcap = 0;
        return at_err_set(err, AT_E_NOMEM, "out of memory (decoder scratch)");
    }
    s->dcap = n;
    return 0;
}

int at_whisper_decode(at_whisper_state *s, at_whisper_kv *kv, const int *tokens, int n, int all_logits,
                      float *logits, at_err *err)
{
    if (!logits) return at_err_set(err, AT_E_INVALID, "no logits buffer");
    at_whisper_seq q = {kv, tokens, n, NULL, logits, all_logits};
    return at_whisper_decode_batch(s, &q, 1, err);
}

/* Rows of the batch that need logits: all of a sequence's with all_logits,
 * else its last. */
static int logit_rows(const at_whisper_seq *q) { return !q->logits ? 0 : q->all_logits ? q->n : 1; }

int at_whisper_decode_batch(at_whisper_state *s, const at_whisper_seq *seqs, int n_seqs, at_err *err)
{
    const at_whisper_model *m = s->m;
    const at_whisper_hparams *hp = &m->hp;
    int d = hp->n_text_state, hd = d / hp->n_text_head, rc;
    if (n_seqs <= 0 || !seqs) return at_err_set(err, AT_E_INVALID, "no sequences to decode");
    int R = 0, L = 0; /* rows in all, rows with logits */
    for (int i = 0; i < n_seqs; i++) {
        const at_whisper_seq *q = &seqs[i];
        const at_whisper_state *au = q->audio ? q->audio : s;
        if (au->m != m) return at_err_set(err, AT_E_INVALID, "encoding of another model");
        if (!au->n_ctx) return at_err_set(err, AT_E_INVALID, "decode before encode");
        if (q->n <= 0 || !q->tokens || !q->kv) return at_err_set(err, AT_E_INVALID, "no tokens to decode");
        if (q->kv->d != d || q->kv->n_layer != hp->n_text_layer)
            return at_err_set(err, AT_E_INVALID, "kv cache of another model");
        if (q->n > hp->n_text_ctx - q->kv->len)
            return at_err_set(err, AT_E_TOO_LARGE, "%d + %d tokens exceed the text context of %d", q->kv->len,
                              q->n, hp->n_text_ctx);
        for (int j = 0; j < i; j++)
            if (seqs[j].kv == q->kv) return at_err_set(err, AT_E_INVALID, "two sequences share a kv cache");
        for (int t = 0; t < q->n; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= hp->n_vocab)
                return at_err_set(err, AT_E_INVALID, "token %d out of range 0..%d", q->tokens[t],
                                  hp->n_vocab - 1);
        if (R > INT32_MAX / 2 - q->n) return at_err_set(err, AT_E_TOO_LARGE, "batch too large");
        R += q->n;
        L += logit_rows(q);
    }
    if ((rc = dec_reserve(s, R, err))) return rc;
    if (L > s->lcap) {
        free(s->dl);
        s->dl = malloc((size_t)L * (size_t)hp->n_vocab * sizeof(float));
        s->lcap = s->dl ? L : 0;
        if (!s->dl) return at_err_set(err, AT_E_NOMEM, "out of memory (logits of %d rows)", L);
    }
    float *x = s->dx, *y = s->dy, *q = s->dq, *a = s->da, *f = s->df, *k = s->dk, *v = s->dv;
    for (int i = 0, o = 0; i < n_seqs; o += seqs[i].n, i++)
        for (int t = 0; t < seqs[i].n; t++) {
            float *row = x + (size_t)(o + t) * d;
            at_dequant_row(m->tok.type,
                           (const uint8_t *)m->tok.data + (size_t)seqs[i].tokens[t] * m->tok.row_bytes, row,
                           d);
            at_add(row, m->dec_pos + (size_t)(seqs[i].kv->len + t) * d, (size_t)d);
        }
    size_t nd = (size_t)R * d, xstride = (size_t)hp->n_audio_ctx * d;
    /* The caches' new rows are written layer by layer; a failure below
     * leaves kv->len unchanged, so they are never seen. */
    for (int l = 0; l < hp->n_text_layer; l++) {
        const dec_layer *Ly = &m->dec[l];
        at_layer_norm(x, R, d, Ly->self.ln.w, Ly->self.ln.b, LN_EPS, y);
        if ((rc = linear(s, y, R, &Ly->self.q, q, err)) || (rc = linear(s, y, R, &Ly->self.k, k, err)) ||
            (rc = linear(s, y, R, &Ly->self.v, v, err)))
            return rc;
        for (int i = 0, o = 0; i < n_seqs; o += seqs[i].n, i++) {
            at_whisper_kv *kv = seqs[i].kv;
            size_t lo = (size_t)l * kv->n_ctx * d;
            float *K = kv->k + lo, *V = kv->v + lo;
            int len = kv->len, n = seqs[i].n;
            memcpy(K + (size_t)len * d, k + (size_t)o * d, (size_t)n * d * sizeof(float));
            memcpy(V + (size_t)len * d, v + (size_t)o * d, (size_t)n * d * sizeof(float));
            if ((rc = at_attention(s->c, q + (size_t)o * d, d, K, d, V, d, n, len + n, hp->n_text_head, hd,
                                   len, a + (size_t)o * d, d, err)))
                return rc;
        }
        if ((rc = linear(s, a, R, &Ly->self.o, y, err))) return rc;
        at_add(x, y, nd);

        at_layer_norm(x, R, d, Ly->cross.ln.w, Ly->cross.ln.b, LN_EPS, y);
        if ((rc = linear(s, y, R, &Ly->cross.q, q, err))) return rc;
        /* consecutive sequences on the same audio (beams, samples) are one
         * attention call: their queries are rows of one product */
        for (int i = 0, o = 0; i < n_seqs;) {
            const at_whisper_state *au = seqs[i].audio ? seqs[i].audio : s;
            int rows = 0, e = i;
            while (e < n_seqs && (seqs[e].audio ? seqs[e].audio : s) == au) rows += seqs[e++].n;
            if ((rc = at_attention(s->c, q + (size_t)o * d, d, au->cross_k + l * xstride, d,
                                   au->cross_v + l * xstride, d, rows, au->n_ctx, hp->n_text_head, hd, -1,
                                   a + (size_t)o * d, d, err)))
                return rc;
            o += rows;
            i = e;
        }
        if ((rc = linear(s, a, R, &Ly->cross.o, y, err))) return rc;
        at_add(x, y, nd);

        at_layer_norm(x, R, d, Ly->mlp_ln.w, Ly->mlp_ln.b, LN_EPS, y);
        if ((rc = linear(s, y, R, &Ly->fc1, f, err))) return rc;
        at_gelu(f, (size_t)R * m->n_ffn_dec);
        if ((rc = linear(s, f, R, &Ly->fc2, y, err))) return rc;
        at_add(x, y, nd);
    }
    /* the rows that need logits, gathered, then one product against the
     * (tied) token embedding */
    if (L > 0) {
        int r = 0;
        for (int i = 0, o = 0; i < n_seqs; o += seqs[i].n, i++) {
            int lr = logit_rows(&seqs[i]);
            const float *src = x + (size_t)(o + seqs[i].n - lr) * d;
            at_layer_norm(src, lr, d, m->dec_ln.w, m->dec_ln.b, LN_EPS, y + (size_t)r * d);
            r += lr;
        }
        float *out = n_seqs == 1 ? seqs[0].logits : s->dl;
        if ((rc = at_matmul(s->c, y, L, &m->tok, NULL, out, err))) return rc;
        r = 0;
        for (int i = 0; i < n_seqs; i++) {
            int lr = logit_rows(&seqs[i]);
            if (lr && out != seqs[i].logits)
                memcpy(seqs[i].logits, out + (size_t)r * hp->n_vocab,
                       (size_t)lr * hp->n_vocab * sizeof(float));
            r += lr;
        }
    }
    for (int i = 0; i < n_seqs; i++) seqs[i].kv->len += seqs[i].n;
    return 0;
}
