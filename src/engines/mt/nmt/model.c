/* model.c - MarianMT and M2M100 on the shared transformer blocks.
 *
 * The two differ in where the layer norm sits (after each residual in
 * Marian, before each sub-block plus a final norm in M2M100), the
 * activation, how positions are numbered, and Marian's final_logits_bias;
 * nn/layers.h does the rest. */
#include "engines/mt/nmt/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/safetensors.h"

#define LN_EPS 1e-5f

#define CHECK(expr)                                                                                          \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_) return rc_;                                                                                 \
    } while (0)

struct at_nmt_model {
    at_nmt_hparams hp;
    int dec_vocab;
    int pos_offset; /* row of the positions table for position 0 */
    at_nn_weights w;
    at_backend *wbe; /* the memory the weights, memories and caches are made in */
    at_nn_loader ld;
    int matrices; /* -1 or the type matrices are converted to at load */
    at_nn_cfg enc_cfg, dec_cfg;
    at_tensor enc_tok, dec_tok, pos, lm_head, logits_bias;
    at_nn_layer *enc, *dec;
    at_nn_norm enc_ln, dec_ln; /* M2M100 only */
};

struct at_nmt_memory {
    const at_nmt_model *m;
    int max_len;
    at_tensor out; /* the encoder output */
    at_nn_memory mem;
};

struct at_nmt_kv {
    const at_nmt_model *m;
    at_nn_kv c;
};

struct at_nmt_state {
    const at_nmt_model *m;
    at_compute *c;
    at_backend *be;
    at_nn_scratch es, ds;
    int xcap, lcap, scap;
    at_tensor x, logits;
    int *ids; /* tokens then positions of a batch */
    at_nn_span *spans;
    at_nn_stack_seq *sseq;
    at_nn_logit_rows *lreq;
};

static const at_nn_layer_names ENC_NAMES = {"model.encoder.layers.%d.self_attn_layer_norm",
                                            "model.encoder.layers.%d.self_attn",
                                            NULL,
                                            NULL,
                                            "model.encoder.layers.%d.final_layer_norm",
                                            "model.encoder.layers.%d.fc1",
                                            "model.encoder.layers.%d.fc2",
                                            "q_proj",
                                            "k_proj",
                                            "v_proj",
                                            "out_proj",
                                            1};
static const at_nn_layer_names DEC_NAMES = {"model.decoder.layers.%d.self_attn_layer_norm",
                                            "model.decoder.layers.%d.self_attn",
                                            "model.decoder.layers.%d.encoder_attn_layer_norm",
                                            "model.decoder.layers.%d.encoder_attn",
                                            "model.decoder.layers.%d.final_layer_norm",
                                            "model.decoder.layers.%d.fc1",
                                            "model.decoder.layers.%d.fc2",
                                            "q_proj",
                                            "k_proj",
                                            "v_proj",
                                            "out_proj",
                                            1};

/* ------------------------------------------------------------------ loading */

static int read_config(const char *dir, at_nmt_hparams *hp, int *dec_vocab, at_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    at_hf_config *c = at_hf_config_load(path, err);
    if (!c) return err ? err->code : AT_E_IO;
    const char *type = NULL, *act = NULL;
    int rc;
    memset(hp, 0, sizeof *hp);
    if ((rc = at_hf_config_string_or(c, "model_type", "", &type, err))) goto out;
    if (!strcmp(type, "marian"))
        hp->arch = AT_NMT_MARIAN;
    else if (!strcmp(type, "m2m_100") || !strcmp(type, "nllb"))
        hp->arch = AT_NMT_M2M100;
    else {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: model_type \"%s\" is not marian or m2m_100", path, type);
        goto out;
    }
    const int BIG = 1 << 20, W = 65536;
    if ((rc = at_hf_config_int(c, "vocab_size", 2, BIG, &hp->vocab, err)) ||
        (rc = at_hf_config_int(c, "d_model", 4, W, &hp->d_model, err)) ||
        (rc = at_hf_config_int(c, "encoder_layers", 1, 256, &hp->enc_layers, err)) ||
        (rc = at_hf_config_int(c, "encoder_attention_heads", 1, 256, &hp->enc_heads, err)) ||
        (rc = at_hf_config_int(c, "encoder_ffn_dim", 1, W * 4, &hp->enc_ffn, err)) ||
        (rc = at_hf_config_int(c, "decoder_layers", 1, 256, &hp->dec_layers, err)) ||
        (rc = at_hf_config_int(c, "decoder_attention_heads", 1, 256, &hp->dec_heads, err)) ||
        (rc = at_hf_config_int(c, "decoder_ffn_dim", 1, W * 4, &hp->dec_ffn, err)) ||
        (rc = at_hf_config_int(c, "max_position_embeddings", 1, W, &hp->max_pos, err)) ||
        (rc = at_hf_config_int_or(c, "decoder_vocab_size", 2, BIG, hp->vocab, dec_vocab, err)) ||
        (rc = at_hf_config_bool_or(c, "scale_embedding", 0, &hp->scale_embedding, err)) ||
        (rc = at_hf_config_int_or(c, "pad_token_id", 0, BIG, 0, &hp->pad_id, err)) ||
        (rc = at_hf_config_int_or(c, "eos_token_id", 0, BIG, 0, &hp->eos_id, err)) ||
        (rc = at_hf_config_int_or(c, "decoder_start_token_id", 0, BIG, hp->pad_id, &hp->decoder_start_id,
                                  err)) ||
        (rc = at_hf_config_string_or(c, "activation_function", "relu", &act, err)))
        goto out;
    if (at_act_from_name(act, &hp->act)) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: activation \"%s\" not supported", path, act);
        goto out;
    }
    if (hp->d_model % hp->enc_heads || hp->d_model % hp->dec_heads)
        rc = at_err_set(err, AT_E_CORRUPT, "%s: d_model %d not divisible by the heads", path, hp->d_model);
    else if (hp->arch == AT_NMT_MARIAN ? !at_hf_config_has(c, "max_position_embeddings") : hp->d_model < 4)
        rc = at_err_set(err, AT_E_CORRUPT, "%s: no positions", path);
out:
    at_hf_config_free(c);
    return rc;
}

/* Tensor `name`, or `alt` when the file has no `name` (tied weights). */
static const char *either(const at_nn_weights *w, const char *name, const char *alt)
{
    return at_nn_weights_find(w, name) ? name : alt;
}

static int load_positions(at_nmt_model *m, at_err *err)
{
    const at_nmt_hparams *hp = &m->hp;
    int d = hp->d_model, rows;
    at_nn_sin_kind kind;
    if (hp->arch == AT_NMT_MARIAN) {
        /* Marian's table: stored in recent checkpoints, computed otherwise */
        if (at_nn_weights_find(&m->w, "model.encoder.embed_positions.weight"))
            return at_nn_load_f32(&m->ld, &m->pos, hp->max_pos, d, "model.encoder.embed_positions.weight",
                                  err);
        kind = AT_NN_SIN_MARIAN;
        rows = hp->max_pos;
        m->pos_offset = 0;
    } else {
        /* fairseq numbers positions from padding_idx + 1 */
        kind = AT_NN_SIN_CONCAT;
        m->pos_offset = hp->pad_id + 1;
        rows = hp->max_pos + m->pos_offset;
    }
    float *t = malloc((size_t)rows * d * sizeof(float));
    if (!t) return at_err_set(err, AT_E_NOMEM, "out of memory (positions)");
    int rc = at_nn_sinusoids(kind, rows, d, t, err);
    if (!rc) rc = at_nn_load_host_f32(&m->ld, &m->pos, rows, d, t, err);
    free(t);
    return rc;
}

static int build(at_nmt_model *m, at_err *err)
{
    const at_nmt_hparams *hp = &m->hp;
    at_nn_loader *L = &m->ld;
    const at_nn_weights *w = &m->w;
    int d = hp->d_model, pre = hp->arch == AT_NMT_M2M100;
    m->enc_cfg = (at_nn_cfg){d, hp->enc_heads, hp->enc_ffn, hp->act, pre, LN_EPS, 0.0f};
    m->dec_cfg = (at_nn_cfg){d, hp->dec_heads, hp->dec_ffn, hp->act, pre, LN_EPS, 0.0f};
    at_nn_loader_init(L, w, m->wbe);
    L->matrices = m->matrices;
    const char *dec_tok = either(w, "model.decoder.embed_tokens.weight", "model.shared.weight");
    CHECK(at_nn_load_matrix(L, &m->enc_tok, hp->vocab, d, 0,
                            either(w, "model.encoder.embed_tokens.weight", "model.shared.weight"), err));
    CHECK(at_nn_load_matrix(L, &m->dec_tok, m->dec_vocab, d, 0, dec_tok, err));
    CHECK(at_nn_load_matrix(L, &m->lm_head, m->dec_vocab, d, 0, either(w, "lm_head.weight", dec_tok), err));
    if (at_nn_weights_find(w, "final_logits_bias"))
        CHECK(at_nn_load_f32(L, &m->logits_bias, 1, m->dec_vocab, "final_logits_bias", err));
    CHECK(load_positions(m, err));
    if (pre) {
        CHECK(at_nn_load_norm(L, &m->enc_ln, d, "model.encoder.layer_norm", err));
        CHECK(at_nn_load_norm(L, &m->dec_ln, d, "model.decoder.layer_norm", err));
    }
    m->enc = calloc((size_t)hp->enc_layers, sizeof *m->enc);
    m->dec = calloc((size_t)hp->dec_layers, sizeof *m->dec);
    if (!m->enc || !m->dec) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < hp->enc_layers; i++)
        CHECK(at_nn_load_layer(L, &m->enc[i], &m->enc_cfg, &ENC_NAMES, i, err));
    for (int i = 0; i < hp->dec_layers; i++)
        CHECK(at_nn_load_layer(L, &m->dec[i], &m->dec_cfg, &DEC_NAMES, i, err));
    return 0;
}

at_nmt_model *at_nmt_model_load(const char *dir, at_err *err) { return at_nmt_model_load_as(dir, -1, err); }

at_nmt_model *at_nmt_model_load_as(const char *dir, int matrices, at_err *err)
{
    if (!dir || !*dir) {
        at_err_set(err, AT_E_INVALID, "no model path");
        return NULL;
    }
    at_nmt_model *m = calloc(1, sizeof *m);
    if (!m) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    m->matrices = matrices;
    if (read_config(dir, &m->hp, &m->dec_vocab, err)) goto fail;
    m->hp.dec_vocab = m->dec_vocab;
    if (at_nn_weights_open_dir(dir, &m->w, NULL, NULL, err)) goto fail;
    if (!(m->wbe = at_backend_cpu_new(NULL, err)) || build(m, err)) goto fail;
    /* every weight converted into memory of its own (q8_0): the file's
     * pages need not stay resident */
    if (!m->ld.in_place) at_nn_weights_free(&m->w);
    return m;
fail:
    at_nmt_model_free(m);
    return NULL;
}

void at_nmt_model_free(at_nmt_model *m)
{
    if (!m) return;
    at_nn_loader_release(&m->ld);
    at_backend_free(m->wbe);
    at_nn_weights_free(&m->w);
    free(m->enc);
    free(m->dec);
    free(m);
}

const at_nmt_hparams *at_nmt_model_hparams(const at_nmt_model *m) { return &m->hp; }

/* ------------------------------------------------------- memories, caches */

at_nmt_memory *at_nmt_memory_new(const at_nmt_model *m, int max_len, at_err *err)
{
    if (max_len < 1 || max_len > m->hp.max_pos) {
        at_err_set(err, AT_E_TOO_LARGE, "a source of %d tokens (the model takes 1..%d)", max_len,
                   m->hp.max_pos);
        return NULL;
    }
    at_nmt_memory *mem = calloc(1, sizeof *mem);
    if (!mem) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    int d = m->hp.d_model;
    mem->m = m;
    mem->max_len = max_len;
    if (at_tensor_new_2d(m->wbe, &mem->out, AT_DT_F32, d, max_len, err) ||
        at_nn_memory_new(m->wbe, &mem->mem, m->hp.dec_layers, max_len, d, err)) {
        at_nmt_memory_free(mem);
        return NULL;
    }
    return mem;
}

void at_nmt_memory_free(at_nmt_memory *mem)
{
    if (!mem) return;
    at_tensor_free(&mem->out);
    at_tensor_free(&mem->mem.k);
    at_tensor_free(&mem->mem.v);
    free(mem);
}

at_nmt_kv *at_nmt_kv_new(const at_nmt_model *m, at_err *err)
{
    return at_nmt_kv_new_ctx(m, m->hp.max_pos, err);
}

at_nmt_kv *at_nmt_kv_new_ctx(const at_nmt_model *m, int n_ctx, at_err *err)
{
    if (n_ctx < 1 || n_ctx > m->hp.max_pos) {
        at_err_set(err, AT_E_INVALID, "a cache of %d positions (the model has %d)", n_ctx, m->hp.max_pos);
        return NULL;
    }
    at_nmt_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    kv->m = m;
    if (at_nn_kv_init(&kv->c, m->wbe, m->hp.dec_layers, n_ctx, m->hp.d_model, err)) {
        free(kv);
        return NULL;
    }
    return kv;
}

void at_nmt_kv_free(at_nmt_kv *kv)
{
    if (!kv) return;
    at_nn_kv_release(&kv->c);
    free(kv);
}

int at_nmt_kv_copy(at_nmt_kv *dst, const at_nmt_kv *src, at_err *err)
{
    if (dst->m != src->m) return at_err_set(err, AT_E_INVALID, "kv caches of different models");
    return at_nn_kv_copy(src->m->wbe, &dst->c, &src->c, err);
}

int at_nmt_kv_len(const at_nmt_kv *kv) { return kv->c.len; }

void at_nmt_kv_truncate(at_nmt_kv *kv, int n) { at_nn_kv_truncate(&kv->c, n); }

/* -------------------------------------------------------------------- state */

at_nmt_state *at_nmt_state_new(const at_nmt_model *m, at_compute *pool, at_err *err)
{
    at_nmt_state *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    if (!(s->c = at_compute_new_client(pool, err)) || !(s->be = at_backend_cpu_new(s->c, err))) {
        at_nmt_state_free(s);
        return NULL;
    }
    return s;
}

void at_nmt_state_free(at_nmt_state *s)
{
    if (!s) return;
    at_nn_scratch_free(&s->es);
    at_nn_scratch_free(&s->ds);
    at_tensor_free(&s->x);
    at_tensor_free(&s->logits);
    at_backend_free(s->be);
    at_compute_free(s->c);
    free(s->ids);
    free(s->spans);
    free(s->sseq);
    free(s->lreq);
    free(s);
}

const at_nmt_model *at_nmt_state_model(const at_nmt_state *s) { return s->m; }

/* Room for R rows of activations, L of logits, n sequences. */
static int reserve(at_nmt_state *s, int R, int L, int n, at_err *err)
{
    const at_nmt_model *m = s->m;
    if (R > s->xcap) {
        at_tensor_free(&s->x);
        free(s->ids);
        s->xcap = 0;
        if (!(s->ids = malloc(2 * (size_t)R * sizeof *s->ids)))
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        CHECK(at_tensor_new_2d(s->be, &s->x, AT_DT_F32, m->hp.d_model, R, err));
        s->xcap = R;
    }
    if (L > s->lcap) {
        at_tensor_free(&s->logits);
        s->lcap = 0;
        CHECK(at_tensor_new_2d(s->be, &s->logits, AT_DT_F32, m->dec_vocab, L, err));
        s->lcap = L;
    }
    if (n > s->scap) {
        free(s->spans);
        free(s->sseq);
        free(s->lreq);
        s->scap = 0;
        s->spans = malloc((size_t)n * sizeof *s->spans);
        s->sseq = malloc((size_t)n * sizeof *s->sseq);
        s->lreq = malloc((size_t)n * sizeof *s->lreq);
        if (!s->spans || !s->sseq || !s->lreq) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->scap = n;
    }
    return 0;
}

/* x = embedding(tokens) * scale + positions, for R rows whose token ids
 * and position rows are in s->ids. */
static int embed(at_nmt_state *s, const at_tensor *table, int R, at_tensor *x, at_tensor *tmp, at_err *err)
{
    const at_nmt_model *m = s->m;
    at_backend *be = s->be;
    CHECK(at_op_get_rows(be, table, s->ids, R, x, err));
    if (m->hp.scale_embedding) CHECK(at_op_scale(be, x, sqrtf((float)m->hp.d_model), x, err));
    CHECK(at_op_get_rows(be, &m->pos, s->ids + R, R, tmp, err));
    return at_op_add(be, x, tmp, x, err);
}

int at_nmt_encode(at_nmt_state *s, const int *const *src, const int *lens, int n, at_nmt_memory *const *mems,
                  at_err *err)
{
    const at_nmt_model *m = s->m;
    const at_nmt_hparams *hp = &m->hp;
    at_backend *be = s->be;
    int R = 0;
    if (n < 1 || !src || !lens || !mems) return at_err_set(err, AT_E_INVALID, "nothing to encode");
    for (int i = 0; i < n; i++) {
        if (!src[i] || lens[i] < 1 || !mems[i] || mems[i]->m != m)
            return at_err_set(err, AT_E_INVALID, "sentence %d: no tokens or no memory of this model", i);
        if (lens[i] > mems[i]->max_len)
            return at_err_set(err, AT_E_TOO_LARGE, "sentence %d: %d tokens, room for %d", i, lens[i],
                              mems[i]->max_len);
        for (int t = 0; t < lens[i]; t++)
            if (src[i][t] < 0 || src[i][t] >= hp->vocab)
                return at_err_set(err, AT_E_INVALID, "token %d outside the vocabulary of %d", src[i][t],
                                  hp->vocab);
        if (R > INT32_MAX / 4 - lens[i]) return at_err_set(err, AT_E_TOO_LARGE, "batch too large");
        R += lens[i];
    }
    CHECK(reserve(s, R, 0, n, err));
    CHECK(at_nn_scratch_reserve(&s->es, be, R, hp->d_model, hp->enc_ffn, err));
    for (int i = 0, o = 0; i < n; o += lens[i], i++) {
        s->spans[i] = (at_nn_span){o, lens[i]};
        for (int t = 0; t < lens[i]; t++) {
            s->ids[o + t] = src[i][t];
            s->ids[R + o + t] = m->pos_offset + t;
        }
    }
    at_tensor x = at_tensor_view_rows(&s->x, 0, R), y = at_tensor_view_rows(&s->es.y, 0, R);
    CHECK(embed(s, &m->enc_tok, R, &x, &y, err));
    for (int l = 0; l < hp->enc_layers; l++)
        CHECK(at_nn_encoder_layer(be, &m->enc[l], &m->enc_cfg, &x, s->spans, n, &s->es, err));
    if (at_tensor_present(&m->enc_ln.w)) CHECK(at_nn_norm_run(be, &m->enc_ln, LN_EPS, &x, &x, err));
    for (int i = 0; i < n; i++) {
        at_tensor part = at_tensor_view_rows(&x, s->spans[i].row0, lens[i]);
        at_tensor out = at_tensor_view_rows(&mems[i]->out, 0, lens[i]);
        mems[i]->mem.len = 0;
        CHECK(at_op_copy(be, &part, &out, err));
        CHECK(at_nn_memory_compute(be, m->dec, &out, &mems[i]->mem, err));
    }
    return 0;
}

int at_nmt_memory_output(at_nmt_state *s, const at_nmt_memory *mem, float *out, size_t cap, int *len,
                         at_err *err)
{
    size_t need = (size_t)mem->mem.len * s->m->hp.d_model;
    if (len) *len = mem->mem.len;
    if (!mem->mem.len) return at_err_set(err, AT_E_INVALID, "nothing encoded yet");
    if (cap < need) return at_err_set(err, AT_E_INVALID, "%zu floats for an encoding of %zu", cap, need);
    at_tensor o = at_tensor_view_rows(&mem->out, 0, mem->mem.len);
    return at_tensor_download(s->be, &o, out, need * sizeof(float), err);
}

int at_nmt_decode(at_nmt_state *s, const at_nmt_seq *seqs, int n, at_err *err)
{
    const at_nmt_model *m = s->m;
    at_backend *be = s->be;
    int R = 0, L = 0;
    if (n < 1 || !seqs) return at_err_set(err, AT_E_INVALID, "no sequences to decode");
    for (int i = 0; i < n; i++) {
        const at_nmt_seq *q = &seqs[i];
        if (!q->kv || q->kv->m != m || !q->mem || q->mem->m != m || !q->mem->mem.len)
            return at_err_set(err, AT_E_INVALID, "sequence %d: no cache or encoding of this model", i);
        if (q->n < 1 || !q->tokens) return at_err_set(err, AT_E_INVALID, "sequence %d: no tokens", i);
        if (q->n > q->kv->c.n_ctx - q->kv->c.len)
            return at_err_set(err, AT_E_TOO_LARGE, "%d + %d tokens exceed the cache's %d positions",
                              q->kv->c.len, q->n, q->kv->c.n_ctx);
        for (int t = 0; t < q->n; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= m->dec_vocab)
                return at_err_set(err, AT_E_INVALID, "token %d outside the vocabulary of %d", q->tokens[t],
                                  m->dec_vocab);
        if (R > INT32_MAX / 4 - q->n) return at_err_set(err, AT_E_TOO_LARGE, "batch too large");
        R += q->n;
        L += !q->logits ? 0 : q->all_logits ? q->n : 1;
    }
    CHECK(reserve(s, R, L, n, err));
    CHECK(at_nn_scratch_reserve(&s->ds, be, R, m->hp.d_model, m->hp.dec_ffn, err));
    for (int i = 0, o = 0; i < n; o += seqs[i].n, i++) {
        int lr = !seqs[i].logits ? 0 : seqs[i].all_logits ? seqs[i].n : 1;
        s->sseq[i] = (at_nn_stack_seq){seqs[i].n, &seqs[i].kv->c, &seqs[i].mem->mem, NULL};
        s->lreq[i] = (at_nn_logit_rows){o + seqs[i].n - lr, lr, seqs[i].logits};
        for (int t = 0; t < seqs[i].n; t++) {
            s->ids[o + t] = seqs[i].tokens[t];
            s->ids[R + o + t] = m->pos_offset + seqs[i].kv->c.len + t;
        }
    }
    at_tensor x = at_tensor_view_rows(&s->x, 0, R), y = at_tensor_view_rows(&s->ds.y, 0, R);
    CHECK(embed(s, &m->dec_tok, R, &x, &y, err));
    CHECK(at_nn_decoder_stack(be, m->dec, m->hp.dec_layers, &m->dec_cfg, &x, s->sseq, n, &s->ds, err));
    int rc = at_nn_logits(be, &m->dec_ln, LN_EPS, &x, s->lreq, n, &m->lm_head, &m->logits_bias, &s->ds.y,
                          &s->logits, err);
    if (rc)
        for (int i = 0; i < n; i++) seqs[i].kv->c.len -= seqs[i].n;
    return rc;
}
