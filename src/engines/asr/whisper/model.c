/* model.c - Whisper's encoder and decoder, built from the shared
 * transformer blocks (nn/layers.h) on the compute interface.
 *
 * What is Whisper's own: the tensor names, the two convolutions in front
 * of the encoder, the learned decoder positions, the token embedding tied
 * to the output projection.  Matrices stay where the loader mapped them
 * (f16/quantized/f32); small tensors (norms, biases, positions) are
 * converted to f32.  All arithmetic is f32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engines/asr/whisper/model_internal.h"
#include "nn/layers.h"

#define LN_EPS 1e-5f

/* --------------------------------------------------------- weight source */

void at_wsource_free(at_wsource *s)
{
    if (!s) return;
    at_nn_weights_free(&s->w);
    free(s->tok);
    free(s->tok_len);
    memset(s, 0, sizeof *s);
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

#define LN_EPS 1e-5f

struct at_whisper_model {
    at_whisper_hparams hp;
    at_whisper_special sp;
    at_wsource src;
    at_backend *wbe; /* the memory the weights and caches are made in */
    int device;      /* its GPU, or -1: the CPU */
    at_nn_loader ld;
    at_nn_cfg enc_cfg, dec_cfg;
    /* encoder */
    at_tensor conv1_w, conv1_b, conv2_w, conv2_b, enc_pos;
    at_nn_layer *enc;
    at_nn_norm enc_ln;
    /* decoder */
    at_tensor tok, dec_pos;
    at_nn_layer *dec;
    at_nn_norm dec_ln;
    /* vocabulary (ggml only), NUL-terminated copies */
    char *vocab_buf;
    const char **vocab;
    size_t *vocab_len;
    size_t n_vocab_file;
};

static const at_nn_layer_names ENC_NAMES = {"encoder.blocks.%d.attn_ln",
                                            "encoder.blocks.%d.attn",
                                            NULL,
                                            NULL,
                                            "encoder.blocks.%d.mlp_ln",
                                            "encoder.blocks.%d.mlp.0",
                                            "encoder.blocks.%d.mlp.2",
                                            "query",
                                            "key",
                                            "value",
                                            "out",
                                            0};
static const at_nn_layer_names DEC_NAMES = {"decoder.blocks.%d.attn_ln",
                                            "decoder.blocks.%d.attn",
                                            "decoder.blocks.%d.cross_attn_ln",
                                            "decoder.blocks.%d.cross_attn",
                                            "decoder.blocks.%d.mlp_ln",
                                            "decoder.blocks.%d.mlp.0",
                                            "decoder.blocks.%d.mlp.2",
                                            "query",
                                            "key",
                                            "value",
                                            "out",
                                            0};

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

static int copy_vocab(at_whisper_model *m, at_err *err)
{
    if (!m->src.n_tokens) return 0;
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
    return 0;
}

static int build(at_whisper_model *m, at_err *err)
{
    const at_whisper_hparams *hp = &m->hp;
    const at_nn_weights *w = &m->src.w;
    at_nn_loader *L = &m->ld;
    int d = hp->n_audio_state, rc, f_enc, f_dec;
    if ((rc = at_nn_weight_rows(w, "encoder.blocks.0.mlp.0.weight", 65536, &f_enc, err)) ||
        (rc = at_nn_weight_rows(w, "decoder.blocks.0.mlp.0.weight", 65536, &f_dec, err)))
        return rc;
    m->enc_cfg = (at_nn_cfg){d, hp->n_audio_head, f_enc, AT_ACT_GELU, 1, LN_EPS, 0.0f};
    m->dec_cfg = (at_nn_cfg){d, hp->n_text_head, f_dec, AT_ACT_GELU, 1, LN_EPS, 0.0f};
    at_nn_loader_init(L, w, m->wbe);
    if ((rc = at_nn_load_matrix(L, &m->conv1_w, d, hp->n_mels, 3, "encoder.conv1.weight", err)) ||
        (rc = at_nn_load_f32(L, &m->conv1_b, 1, d, "encoder.conv1.bias", err)) ||
        (rc = at_nn_load_matrix(L, &m->conv2_w, d, d, 3, "encoder.conv2.weight", err)) ||
        (rc = at_nn_load_f32(L, &m->conv2_b, 1, d, "encoder.conv2.bias", err)) ||
        (rc = at_nn_load_f32(L, &m->enc_pos, hp->n_audio_ctx, d, "encoder.positional_embedding", err)) ||
        (rc = at_nn_load_norm(L, &m->enc_ln, d, "encoder.ln_post", err)) ||
        (rc = at_nn_load_matrix(L, &m->tok, hp->n_vocab, d, 0, "decoder.token_embedding.weight", err)) ||
        (rc = at_nn_load_f32(L, &m->dec_pos, hp->n_text_ctx, d, "decoder.positional_embedding", err)) ||
        (rc = at_nn_load_norm(L, &m->dec_ln, d, "decoder.ln", err)))
        return rc;
    m->enc = calloc((size_t)hp->n_audio_layer, sizeof *m->enc);
    m->dec = calloc((size_t)hp->n_text_layer, sizeof *m->dec);
    if (!m->enc || !m->dec) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < hp->n_audio_layer; i++)
        if ((rc = at_nn_load_layer(L, &m->enc[i], &m->enc_cfg, &ENC_NAMES, i, err))) return rc;
    for (int i = 0; i < hp->n_text_layer; i++)
        if ((rc = at_nn_load_layer(L, &m->dec[i], &m->dec_cfg, &DEC_NAMES, i, err))) return rc;
    /* the storage type of the big matrices, for information */
    if (m->hp.ftype < 0) m->hp.ftype = at_ggml_ftype_for(m->enc[0].fc1.w.type) % 1000;
    return copy_vocab(m, err);
}

at_whisper_model *at_whisper_model_from_source(at_wsource *src, int device, at_err *err)
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
    m->device = device < 0 ? -1 : device;
    m->wbe = device < 0 ? at_backend_cpu_new(NULL, err) : at_backend_cuda_new(device, 1, err);
    if (!m->wbe || build(m, err)) {
        at_whisper_model_free(m);
        return NULL;
    }
    return m;
}

at_whisper_model *at_whisper_model_load(const char *path, at_err *err)
{
    return at_whisper_model_load_on(path, -1, err);
}

at_whisper_model *at_whisper_model_load_on(const char *path, int device, at_err *err)
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
    return at_whisper_model_from_source(&src, device, err);
}

void at_whisper_model_free(at_whisper_model *m)
{
    if (!m) return;
    at_nn_loader_release(&m->ld);
    at_backend_free(m->wbe);
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

size_t at_whisper_model_weight_bytes(const at_whisper_model *m) { return m->ld.bytes; }

int at_whisper_mel(const at_whisper_model *m, const float *pcm, size_t n, float *out, at_err *err)
{
    return at_whisper_log_mel(m->hp.n_mels, pcm, n, out, err);
}

/* ------------------------------------------------------------------ state */

struct at_whisper_state {
    const at_whisper_model *m;
    at_compute *c;
    at_compute *own_pool; /* the pool c runs on, when made for this state too */
    at_backend *be;
    int n_ctx; /* positions of the last encoding, 0 = none yet */
    /* encoder */
    float *mel_host; /* the mel frames time-major, as the convolution reads them */
    at_tensor mel_t, c1, x, enc_out;
    at_nn_memory mem; /* the decoder's cross-attention keys and values */
    at_nn_scratch es;
    /* decoder, grown to the largest batch seen */
    at_nn_scratch ds;
    int dcap, lcap, scap;
    at_tensor dx, dl; /* activations, logits */
    int *ids;         /* token then position ids of a batch */
    at_nn_stack_seq *sseq;
    at_nn_logit_rows *lreq;
};

void at_whisper_state_free(at_whisper_state *s)
{
    if (!s) return;
    at_tensor *t[] = {&s->mel_t, &s->c1, &s->x, &s->enc_out, &s->mem.k, &s->mem.v, &s->dx, &s->dl};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) at_tensor_free(t[i]);
    at_nn_scratch_free(&s->es);
    at_nn_scratch_free(&s->ds);
    at_backend_free(s->be);
    at_compute_free(s->c); /* the state's client of the pool */
    at_compute_free(s->own_pool);
    free(s->mel_host);
    free(s->ids);
    free(s->sseq);
    free(s->lreq);
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
    const at_whisper_hparams *hp = &m->hp;
    int n = hp->n_audio_ctx, d = hp->n_audio_state;
    /* on a GPU the pool runs nothing of the state's: its backend is a
     * stream of the model's device */
    if (m->device >= 0) {
        if (!(s->be = at_backend_cuda_new(m->device, 0, err))) goto fail;
    } else if (!(s->c = at_compute_new_client(c, err)) || !(s->be = at_backend_cpu_new(s->c, err))) {
        goto fail;
    }
    s->mel_host = malloc((size_t)2 * n * hp->n_mels * sizeof(float));
    if (!s->mel_host) {
        at_err_set(err, AT_E_NOMEM, "out of memory (whisper state)");
        goto fail;
    }
    if (at_tensor_new_2d(s->be, &s->mel_t, AT_DT_F32, hp->n_mels, 2 * n, err) ||
        at_tensor_new_2d(s->be, &s->c1, AT_DT_F32, d, 2 * n, err) ||
        at_tensor_new_2d(s->be, &s->x, AT_DT_F32, d, n, err) ||
        at_tensor_new_2d(s->be, &s->enc_out, AT_DT_F32, d, n, err) ||
        at_nn_memory_new(s->be, &s->mem, hp->n_text_layer, n, d, err) ||
        at_nn_scratch_reserve(&s->es, s->be, n, d, m->enc_cfg.d_ffn, err))
        goto fail;
    return s;
fail:
    at_whisper_state_free(s);
    return NULL;
}

#define CHECK(expr)                                                                                          \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_) return rc_;                                                                                 \
    } while (0)

static const at_conv1d_params CONV1 = {.kernel = 3, .stride = 1, .padding = 1, .dilation = 1, .groups = 1},
                              CONV2 = {.kernel = 3, .stride = 2, .padding = 1, .dilation = 1, .groups = 1};

/* Positions audio_ctx asks for (0: all), checked. */
static int enc_positions(const at_whisper_hparams *hp, const float *mel, int audio_ctx, int *n, at_err *err)
{
    if (!mel) return at_err_set(err, AT_E_INVALID, "no mel input");
    *n = audio_ctx > 0 ? audio_ctx : hp->n_audio_ctx;
    if (*n > hp->n_audio_ctx)
        return at_err_set(err, AT_E_INVALID, "audio_ctx %d > n_audio_ctx %d", *n, hp->n_audio_ctx);
    return 0;
}

/* The convolutions of one window on be: mel (n_mels x 3000 layout) to n
 * positions in x, with s's buffers for the frames in between. */
static int enc_front(at_backend *be, at_whisper_state *s, const float *mel, int n, at_tensor *x, at_err *err)
{
    const at_whisper_model *m = s->m;
    int nm = m->hp.n_mels, T1 = 2 * n;
    for (int t = 0; t < T1; t++)
        for (int c = 0; c < nm; c++)
            s->mel_host[(size_t)t * nm + c] = mel[(size_t)c * AT_WHISPER_N_FRAMES + t];
    at_tensor mt = at_tensor_view_rows(&s->mel_t, 0, T1), c1 = at_tensor_view_rows(&s->c1, 0, T1);
    at_tensor pos = at_tensor_view_rows(&m->enc_pos, 0, n);
    CHECK(at_tensor_upload(be, &mt, s->mel_host, (size_t)T1 * nm * sizeof(float), err));
    CHECK(at_op_conv1d(be, &mt, &m->conv1_w, &m->conv1_b, &CONV1, &c1, err));
    CHECK(at_op_act(be, AT_ACT_GELU, &c1, &c1, err));
    CHECK(at_op_conv1d(be, &c1, &m->conv2_w, &m->conv2_b, &CONV2, x, err));
    CHECK(at_op_act(be, AT_ACT_GELU, x, x, err));
    return at_op_add(be, x, &pos, x, err);
}

/* The final norm of one window's n positions x into s's encoder output,
 * and the decoder's cross-attention keys and values from it (they depend
 * only on the audio: once per encode). */
static int enc_tail(at_backend *be, at_whisper_state *s, const at_tensor *x, int n, at_err *err)
{
    at_tensor out = at_tensor_view_rows(&s->enc_out, 0, n);
    CHECK(at_nn_norm_run(be, &s->m->enc_ln, LN_EPS, x, &out, err));
    CHECK(at_nn_memory_compute(be, s->m->dec, &out, &s->mem, err));
    s->n_ctx = n;
    return 0;
}

int at_whisper_encode(at_whisper_state *s, const float *mel, int audio_ctx, at_err *err)
{
    const at_whisper_model *m = s->m;
    int n = 0;
    CHECK(enc_positions(&m->hp, mel, audio_ctx, &n, err));
    s->n_ctx = 0;
    at_tensor x = at_tensor_view_rows(&s->x, 0, n);
    CHECK(enc_front(s->be, s, mel, n, &x, err));
    at_nn_span all = {0, n};
    for (int i = 0; i < m->hp.n_audio_layer; i++)
        CHECK(at_nn_encoder_layer(s->be, &m->enc[i], &m->enc_cfg, &x, &all, 1, &s->es, err));
    CHECK(enc_tail(s->be, s, &x, n, err));
    /* done when it returns, on a GPU too (and a failed kernel is reported
     * here, not by the next decoder step) */
    return at_backend_sync(s->be, err);
}

struct at_whisper_encbatch {
    const at_whisper_model *m;
    at_compute *c;
    at_backend *be;
    int cap;     /* positions of all windows together */
    at_tensor x; /* their activations, one window after another */
    at_nn_scratch es;
};

void at_whisper_encbatch_free(at_whisper_encbatch *b)
{
    if (!b) return;
    at_tensor_free(&b->x);
    at_nn_scratch_free(&b->es);
    at_backend_free(b->be);
    at_compute_free(b->c);
    free(b);
}

at_whisper_encbatch *at_whisper_encbatch_new(const at_whisper_model *m, at_compute *pool, int max_rows,
                                             at_err *err)
{
    if (max_rows < 1 || max_rows > 64 * m->hp.n_audio_ctx) {
        at_err_set(err, AT_E_INVALID, "encoder batch of %d positions", max_rows);
        return NULL;
    }
    at_whisper_encbatch *b = calloc(1, sizeof *b);
    if (!b) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    b->m = m;
    b->cap = max_rows;
    int d = m->hp.n_audio_state;
    if (m->device >= 0) {
        if (!(b->be = at_backend_cuda_new(m->device, 0, err))) goto fail;
    } else if (!pool || !(b->c = at_compute_new_client(pool, err)) ||
               !(b->be = at_backend_cpu_new(b->c, err))) {
        if (!pool) at_err_set(err, AT_E_INVALID, "encoder batch without a thread pool");
        goto fail;
    }
    if (at_tensor_new_2d(b->be, &b->x, AT_DT_F32, d, max_rows, err) ||
        at_nn_scratch_reserve(&b->es, b->be, max_rows, d, m->enc_cfg.d_ffn, err))
        goto fail;
    return b;
fail:
    at_whisper_encbatch_free(b);
    return NULL;
}

int at_whisper_encode_batch(at_whisper_encbatch *b, at_whisper_state *const *st, const float *const *mel,
                            const int *audio_ctx, int n, at_err *err)
{
    if (n < 1) return at_err_set(err, AT_E_INVALID, "no window to encode");
    if (n == 1) return at_whisper_encode(st[0], mel[0], audio_ctx[0], err);
    const at_whisper_model *m = b->m;
    at_nn_span *sp = malloc((size_t)n * sizeof *sp);
    if (!sp) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int rows = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (st[i]->m != m) {
            rc = at_err_set(err, AT_E_INVALID, "encoder batch: a state of another model");
            break;
        }
        int k = 0;
        if ((rc = enc_positions(&m->hp, mel[i], audio_ctx[i], &k, err))) break;
        if (k > b->cap - rows) {
            rc = at_err_set(err, AT_E_TOO_LARGE, "encoder batch: more than %d positions", b->cap);
            break;
        }
        sp[i] = (at_nn_span){rows, k};
        rows += k;
    }
    for (int i = 0; i < n; i++) st[i]->n_ctx = 0;
    /* each window's convolutions apart (their padding is the window's),
     * every layer over all windows' rows, then each window's keys and
     * values into its own state */
    for (int i = 0; i < n && rc == 0; i++) {
        at_tensor xi = at_tensor_view_rows(&b->x, sp[i].row0, sp[i].n);
        rc = enc_front(b->be, st[i], mel[i], sp[i].n, &xi, err);
    }
    at_tensor all = at_tensor_view_rows(&b->x, 0, rows);
    for (int l = 0; l < m->hp.n_audio_layer && rc == 0; l++)
        rc = at_nn_encoder_layer(b->be, &m->enc[l], &m->enc_cfg, &all, sp, n, &b->es, err);
    for (int i = 0; i < n && rc == 0; i++) {
        at_tensor xi = at_tensor_view_rows(&b->x, sp[i].row0, sp[i].n);
        rc = enc_tail(b->be, st[i], &xi, sp[i].n, err);
    }
    free(sp);
    if (rc) {
        for (int i = 0; i < n; i++) st[i]->n_ctx = 0;
        return rc;
    }
    return at_backend_sync(b->be, err);
}

const at_whisper_model *at_whisper_state_model(const at_whisper_state *s) { return s->m; }

int at_whisper_encode_positions(const at_whisper_state *s, int audio_ctx)
{
    int n = audio_ctx > 0 ? audio_ctx : s->m->hp.n_audio_ctx;
    return n < s->m->hp.n_audio_ctx ? n : s->m->hp.n_audio_ctx;
}

int at_whisper_encoder_output(at_whisper_state *s, float *out, size_t cap, int *n_ctx, at_err *err)
{
    size_t need = (size_t)s->n_ctx * s->m->hp.n_audio_state;
    if (n_ctx) *n_ctx = s->n_ctx;
    if (!s->n_ctx) return at_err_set(err, AT_E_INVALID, "nothing encoded yet");
    if (cap < need) return at_err_set(err, AT_E_INVALID, "%zu floats for an encoding of %zu", cap, need);
    at_tensor o = at_tensor_view_rows(&s->enc_out, 0, s->n_ctx);
    return at_tensor_download(s->be, &o, out, need * sizeof(float), err);
}

/* --------------------------------------------------------------- kv cache */

struct at_whisper_kv {
    const at_whisper_model *m;
    at_nn_kv c;
};

at_whisper_kv *at_whisper_kv_new(const at_whisper_model *m, at_err *err)
{
    at_whisper_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    kv->m = m;
    if (at_nn_kv_init(&kv->c, m->wbe, m->hp.n_text_layer, m->hp.n_text_ctx, m->hp.n_text_state, err)) {
        free(kv);
        return NULL;
    }
    return kv;
}

void at_whisper_kv_free(at_whisper_kv *kv)
{
    if (!kv) return;
    at_nn_kv_release(&kv->c);
    free(kv);
}

void at_whisper_kv_copy(at_whisper_kv *dst, const at_whisper_kv *src)
{
    /* caches of one model in one memory: cannot fail */
    if (dst->m == src->m) (void)at_nn_kv_copy(src->m->wbe, &dst->c, &src->c, NULL);
}

int at_whisper_kv_len(const at_whisper_kv *kv) { return kv->c.len; }

void at_whisper_kv_truncate(at_whisper_kv *kv, int n) { at_nn_kv_truncate(&kv->c, n); }

/* ----------------------------------------------------------------- decode */

static int dec_reserve(at_whisper_state *s, int R, int L, int n_seqs, at_err *err)
{
    const at_whisper_hparams *hp = &s->m->hp;
    int d = hp->n_text_state;
    CHECK(at_nn_scratch_reserve(&s->ds, s->be, R, d, s->m->dec_cfg.d_ffn, err));
    if (R > s->dcap) {
        at_tensor_free(&s->dx);
        free(s->ids);
        s->dcap = 0;
        s->ids = malloc(2 * (size_t)R * sizeof *s->ids);
        if (!s->ids) return at_err_set(err, AT_E_NOMEM, "out of memory (decoder ids)");
        CHECK(at_tensor_new_2d(s->be, &s->dx, AT_DT_F32, d, R, err));
        s->dcap = R;
    }
    if (L > s->lcap) {
        at_tensor_free(&s->dl);
        s->lcap = 0;
        CHECK(at_tensor_new_2d(s->be, &s->dl, AT_DT_F32, hp->n_vocab, L, err));
        s->lcap = L;
    }
    if (n_seqs > s->scap) {
        free(s->sseq);
        free(s->lreq);
        s->scap = 0;
        s->sseq = malloc((size_t)n_seqs * sizeof *s->sseq);
        s->lreq = malloc((size_t)n_seqs * sizeof *s->lreq);
        if (!s->sseq || !s->lreq) return at_err_set(err, AT_E_NOMEM, "out of memory");
        s->scap = n_seqs;
    }
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

static int check_seqs(const at_whisper_state *s, const at_whisper_seq *seqs, int n_seqs, int *R, int *L,
                      at_err *err)
{
    const at_whisper_model *m = s->m;
    const at_whisper_hparams *hp = &m->hp;
    *R = *L = 0;
    for (int i = 0; i < n_seqs; i++) {
        const at_whisper_seq *q = &seqs[i];
        const at_whisper_state *au = q->audio ? q->audio : s;
        if (au->m != m) return at_err_set(err, AT_E_INVALID, "encoding of another model");
        if (!au->n_ctx) return at_err_set(err, AT_E_INVALID, "decode before encode");
        if (q->n <= 0 || !q->tokens || !q->kv) return at_err_set(err, AT_E_INVALID, "no tokens to decode");
        if (q->kv->m != m) return at_err_set(err, AT_E_INVALID, "kv cache of another model");
        if (q->n > hp->n_text_ctx - q->kv->c.len)
            return at_err_set(err, AT_E_TOO_LARGE, "%d + %d tokens exceed the text context of %d",
                              q->kv->c.len, q->n, hp->n_text_ctx);
        for (int t = 0; t < q->n; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= hp->n_vocab)
                return at_err_set(err, AT_E_INVALID, "token %d out of range 0..%d", q->tokens[t],
                                  hp->n_vocab - 1);
        if (*R > INT32_MAX / 2 - q->n) return at_err_set(err, AT_E_TOO_LARGE, "batch too large");
        *R += q->n;
        *L += logit_rows(q);
    }
    return 0;
}

/* The batch, with each layer's cross-attention queries of a single
 * sequence copied to capture when it is not NULL. */
static int decode_rows(at_whisper_state *s, const at_whisper_seq *seqs, int n_seqs, at_tensor *capture,
                       at_err *err)
{
    const at_whisper_model *m = s->m;
    at_backend *be = s->be;
    int R, L;
    if (n_seqs <= 0 || !seqs) return at_err_set(err, AT_E_INVALID, "no sequences to decode");
    CHECK(check_seqs(s, seqs, n_seqs, &R, &L, err));
    CHECK(dec_reserve(s, R, L, n_seqs, err));
    /* token embeddings plus learned positions */
    int *tok = s->ids, *pos = s->ids + R;
    for (int i = 0, o = 0; i < n_seqs; o += seqs[i].n, i++) {
        const at_whisper_state *au = seqs[i].audio ? seqs[i].audio : s;
        s->sseq[i] = (at_nn_stack_seq){seqs[i].n, &seqs[i].kv->c, &au->mem, n_seqs == 1 ? capture : NULL};
        s->lreq[i] =
            (at_nn_logit_rows){o + seqs[i].n - logit_rows(&seqs[i]), logit_rows(&seqs[i]), seqs[i].logits};
        for (int t = 0; t < seqs[i].n; t++) {
            tok[o + t] = seqs[i].tokens[t];
            pos[o + t] = seqs[i].kv->c.len + t;
        }
    }
    at_tensor x = at_tensor_view_rows(&s->dx, 0, R), y = at_tensor_view_rows(&s->ds.y, 0, R);
    CHECK(at_op_get_rows(be, &m->tok, tok, R, &x, err));
    CHECK(at_op_get_rows(be, &m->dec_pos, pos, R, &y, err));
    CHECK(at_op_add(be, &x, &y, &x, err));
    CHECK(at_nn_decoder_stack(be, m->dec, m->hp.n_text_layer, &m->dec_cfg, &x, s->sseq, n_seqs, &s->ds, err));
    /* the (tied) token embedding is the output projection; when this
     * fails, the caches go back to what they held */
    int rc = at_nn_logits(be, &m->dec_ln, LN_EPS, &x, s->lreq, n_seqs, &m->tok, NULL, &s->ds.y, &s->dl, err);
    if (rc)
        for (int i = 0; i < n_seqs; i++) seqs[i].kv->c.len -= seqs[i].n;
    return rc;
}

int at_whisper_decode_batch(at_whisper_state *s, const at_whisper_seq *seqs, int n_seqs, at_err *err)
{
    return decode_rows(s, seqs, n_seqs, NULL, err);
}

/* ---------------------------------------------------------- word alignment */

/* OpenAI's published alignment heads (whisper/__init__.py), by model:
 * {layer, head} pairs.  Large v1 and v2 have the same dimensions; v2's. */
typedef struct head_preset {
    const char *name;
    int n_audio_layer, n_text_layer, n_state, n_vocab; /* n_vocab 0: any */
    int n;
    at_whisper_head h[24];
} head_preset;

/* clang-format off */
static const head_preset PRESETS[] = {
    {"tiny.en", 4, 4, 384, 51864, 8, {{1,0},{2,0},{2,5},{3,0},{3,1},{3,2},{3,3},{3,4}}},
    {"tiny", 4, 4, 384, 0, 6, {{2,2},{3,0},{3,2},{3,3},{3,4},{3,5}}},
    {"base.en", 6, 6, 512, 51864, 5, {{3,3},{4,7},{5,1},{5,5},{5,7}}},
    {"base", 6, 6, 512, 0, 8, {{3,1},{4,2},{4,3},{4,7},{5,1},{5,2},{5,4},{5,6}}},
    {"small.en", 12, 12, 768, 51864, 19, {{6,6},{7,0},{7,3},{7,8},{8,2},{8,5},{8,7},{9,0},{9,4},{9,8},
        {9,10},{10,0},{10,1},{10,2},{10,3},{10,6},{10,11},{11,2},{11,4}}},
    {"small", 12, 12, 768, 0, 10, {{5,3},{5,9},{8,0},{8,4},{8,7},{8,8},{9,0},{9,7},{9,9},{10,5}}},
    {"medium.en", 24, 24, 1024, 51864, 18, {{11,4},{14,1},{14,12},{14,14},{15,4},{16,0},{16,4},{16,9},
        {17,12},{17,14},{18,7},{18,10},{18,15},{20,0},{20,3},{20,9},{20,14},{21,12}}},
    {"medium", 24, 24, 1024, 0, 6, {{13,15},{15,4},{15,15},{16,1},{20,0},{23,4}}},
    {"large-v3", 32, 32, 1280, 51866, 10, {{7,0},{10,17},{12,18},{13,12},{16,1},{17,14},{19,11},{21,4},
        {24,1},{25,6}}},
    {"large-v2", 32, 32, 1280, 0, 23, {{10,12},{13,17},{16,11},{16,12},{16,13},{17,15},{17,16},{18,4},
        {18,11},{18,19},{19,11},{21,2},{21,3},{22,3},{22,9},{22,12},{23,5},{23,7},{23,13},{25,5},{26,1},
        {26,12},{27,15}}},
    {"large-v3-turbo", 32, 4, 1280, 0, 6, {{2,4},{2,11},{3,3},{3,6},{3,11},{3,14}}},
};
/* clang-format on */

int at_whisper_alignment_heads(const at_whisper_model *m, at_whisper_head *out)
{
    const at_whisper_hparams *hp = &m->hp;
    if (m->src.n_heads > 0) {
        memcpy(out, m->src.heads, (size_t)m->src.n_heads * sizeof *out);
        return m->src.n_heads;
    }
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const head_preset *p = &PRESETS[i];
        if (p->n_audio_layer == hp->n_audio_layer && p->n_text_layer == hp->n_text_layer &&
            p->n_state == hp->n_text_state && hp->n_audio_state == p->n_state &&
            (!p->n_vocab || p->n_vocab == hp->n_vocab)) {
            memcpy(out, p->h, (size_t)p->n * sizeof *out);
            return p->n;
        }
    }
    int n = 0;
    for (int l = hp->n_text_layer / 2; l < hp->n_text_layer; l++)
        for (int h = 0; h < hp->n_text_head && n < AT_WHISPER_MAX_HEADS; h++)
            out[n++] = (at_whisper_head){l, h};
    return n;
}

#define SCORE_CHUNK 32 /* token positions a decoder call; bounds the logits held */

/* The probability of next among the text tokens' logits. */
static float text_prob(const float *logits, int n_text, int next)
{
    if (next < 0 || next >= n_text) return 0;
    float mx = logits[0], sum = 0;
    for (int v = 1; v < n_text; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int v = 0; v < n_text; v++) sum += expf(logits[v] - mx);
    return expf(logits[next] - mx) / sum;
}

int at_whisper_cross_scores(at_whisper_state *s, at_whisper_kv *kv, const int *tokens, int n,
                            const at_whisper_head *heads, int n_heads, int n_frames, float *qk, float *probs,
                            at_err *err)
{
    const at_whisper_model *m = s->m;
    const at_whisper_hparams *hp = &m->hp;
    at_backend *be = s->be;
    int d = hp->n_text_state, L = hp->n_text_layer, hd = d / hp->n_text_head;
    if (!s->n_ctx) return at_err_set(err, AT_E_INVALID, "decode before encode");
    if (!kv || kv->m != m) return at_err_set(err, AT_E_INVALID, "kv cache of another model");
    if (n < 1 || n > hp->n_text_ctx || !tokens)
        return at_err_set(err, AT_E_INVALID, "%d tokens to align (1..%d)", n, hp->n_text_ctx);
    if (n_frames < 1 || n_frames > s->n_ctx)
        return at_err_set(err, AT_E_INVALID, "%d frames to align, %d encoded", n_frames, s->n_ctx);
    if (n_heads < 1 || n_heads > AT_WHISPER_MAX_HEADS || !heads)
        return at_err_set(err, AT_E_INVALID, "%d alignment heads", n_heads);
    for (int h = 0; h < n_heads; h++)
        if (heads[h].layer < 0 || heads[h].layer >= L || heads[h].head < 0 ||
            heads[h].head >= hp->n_text_head)
            return at_err_set(err, AT_E_INVALID, "alignment head [%d, %d] is not in the decoder",
                              heads[h].layer, heads[h].head);
    /* the layers the heads are in keep their queries, in the backend */
    int *slot = malloc((size_t)L * sizeof *slot), n_used = 0;
    if (!slot) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int l = 0; l < L; l++) slot[l] = -1;
    for (int h = 0; h < n_heads; h++)
        if (slot[heads[h].layer] < 0) slot[heads[h].layer] = n_used++;
    int ch = n < SCORE_CHUNK ? n : SCORE_CHUNK;
    float *logits = probs ? malloc((size_t)ch * hp->n_vocab * sizeof *logits) : NULL;
    at_tensor capture = {0}, q_all = {0}, qh = {0}, kh = {0}, y = {0};
    int rc = 0;
    if (probs && !logits) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (alignment of %d tokens)", n);
        goto out;
    }
    if ((rc = at_tensor_new_2d(be, &capture, AT_DT_F32, d, (int64_t)L * ch, err)) ||
        (rc = at_tensor_new_2d(be, &q_all, AT_DT_F32, d, (int64_t)n_used * n, err)) ||
        (rc = at_tensor_new_2d(be, &qh, AT_DT_F32, hd, n, err)) ||
        (rc = at_tensor_new_2d(be, &kh, AT_DT_F32, hd, n_frames, err)) ||
        (rc = at_tensor_new_2d(be, &y, AT_DT_F32, n_frames, n, err)))
        goto out;
    at_nn_kv_truncate(&kv->c, 0);
    for (int t0 = 0; t0 < n && !rc; t0 += ch) {
        int c = n - t0 < ch ? n - t0 : ch;
        at_whisper_seq one = {kv, tokens + t0, c, NULL, logits, 1};
        at_tensor cv = at_tensor_view_rows(&capture, 0, (int64_t)L * c);
        if ((rc = decode_rows(s, &one, 1, &cv, err))) break;
        for (int l = 0; l < L && !rc; l++) {
            if (slot[l] < 0) continue;
            at_tensor src = at_tensor_view_rows(&capture, (int64_t)l * c, c);
            at_tensor dst = at_tensor_view_rows(&q_all, (int64_t)slot[l] * n + t0, c);
            rc = at_op_copy(be, &src, &dst, err);
        }
        for (int r = 0; probs && r < c; r++) {
            int t = t0 + r;
            probs[t] = t + 1 < n ? text_prob(logits + (size_t)r * hp->n_vocab, m->sp.eot, tokens[t + 1]) : 0;
        }
    }
    /* per head: its queries times its keys, q.k / sqrt(head size) */
    for (int h = 0; h < n_heads && !rc; h++) {
        int l = heads[h].layer;
        at_tensor qv = at_tensor_view_cols(&q_all, (int64_t)heads[h].head * hd, hd);
        qv = at_tensor_view_rows(&qv, (int64_t)slot[l] * n, n);
        at_tensor kv_ = at_tensor_view_rows(&s->mem.k, (int64_t)l * s->mem.stride, n_frames);
        kv_ = at_tensor_view_cols(&kv_, (int64_t)heads[h].head * hd, hd);
        if ((rc = at_op_copy(be, &qv, &qh, err)) || (rc = at_op_copy(be, &kv_, &kh, err)) ||
            (rc = at_op_matmul(be, &qh, &kh, NULL, &y, err)) ||
            (rc = at_op_scale(be, &y, 1.0f / sqrtf((float)hd), &y, err)) ||
            (rc = at_tensor_download(be, &y, qk + (size_t)h * n * n_frames, (size_t)n * n_frames * sizeof *qk,
                                     err)))
            break;
    }
out:
    at_tensor_free(&capture);
    at_tensor_free(&q_all);
    at_tensor_free(&qh);
    at_tensor_free(&kh);
    at_tensor_free(&y);
    at_nn_kv_truncate(&kv->c, 0);
    free(slot);
    free(logits);
    return rc;
}
