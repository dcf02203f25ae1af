/* model.c - VitsModel (modeling_vits.py) in C.
 *
 * Activations are host floats, time-major (T rows of C channels); the
 * products and convolutions run on the compute backend, each input handed
 * over with at_tensor_from_host (used in place by the CPU backend) and
 * each output read back from one scratch tensor the call grows as needed.
 * The decoder runs over pieces of frames with enough context on each side
 * that every sample equals the whole signal's (ctx_frames), which bounds
 * its memory and lets the first piece out early; a stream runs the prior
 * flows first over the frames that piece reads, likewise with context
 * (flow_ctx), and over the rest once it is out. */
#include "engines/tts/vits/model.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/backend.h"
#include "compute/kernels.h"
#include "core/clock.h"
#include "core/mem.h"
#include "nn/layers.h"
#include "nn/safetensors.h"

#define CHECK(expr)                                                                                          \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_) return rc_;                                                                                 \
    } while (0)

#define MAX_UP   8 /* upsampling stages */
#define MAX_KERN 8 /* residual blocks per stage */
#define MAX_DIL  8 /* dilations per residual block */
#define MAX_DS   8 /* depth-separable layers */

/* The spline's floors (transformers' defaults, never configured). */
#define MIN_BIN_WIDTH  1e-3
#define MIN_BIN_HEIGHT 1e-3
#define MIN_DERIVATIVE 1e-3

/* Decoder pieces, in frames: a short first one for an early start, then
 * each twice as long as all the audio already out, up to PIECE, the last
 * one taking in a remainder under half a piece.  Few pieces spare work
 * (each recomputes the context on its sides, and an FFT convolution's
 * spectra are made per call); the next piece is ready before the audio
 * out has played while the decoder runs faster than three times real time
 * (one thread here: five times, bench_vits' "ahead of playback").  Four
 * times the last piece was 8 % faster on two threads but left a gap on
 * one. */
#define FIRST_PIECE 16
#define PIECE       320

/* The length of the decoder's piece from frame a of frames, the first
 * being first long (the rule above). */
static int piece_len(int frames, int a, int first)
{
    int left = frames - a, next = 2 * a < PIECE ? 2 * a : PIECE;
    return a == 0 ? first : left < next + next / 2 ? left : next;
}

/* Largest output a call may make (the decoder indexes samples with int). */
#define MAX_SAMPLES (1 << 30)

/* --------------------------------------------------------------- config */

typedef struct cfg {
    int vocab, d, layers, heads, ffn, ffn_k, window, use_bias;
    at_act act;
    float ln_eps;
    int flow;
    int stochastic, dp_k, dp_filter, ds_layers, ds_channels, bins, dp_flows;
    float tail;
    int prior_flows, wn_layers, wn_k, wn_rate;
    int up_init, n_up, up_rate[MAX_UP], up_k[MAX_UP];
    int n_kern, rb_k[MAX_KERN], n_dil[MAX_KERN], rb_dil[MAX_KERN][MAX_DIL];
    float slope;
    int speakers, spk_dim, sr;
    float noise, noise_dur, rate;
} cfg;

/* A convolution: w is the backend's layout (conv: C_out rows of
 * C_in/groups * k; transposed: C_in rows of C_out * k), or hw/hb on the
 * host for the ones computed there. */
typedef struct vconv {
    at_tensor w, b;
    float *hw, *hb;
    int cin, cout, k, dil, pad, groups, stride, transposed;
    int trim;     /* output rows dropped at the start (an even kernel's padding) */
    int prepared; /* w in the backend's layout (at_conv1d_prepare) */
} vconv;

typedef struct enc_layer {
    at_nn_linear q, k, v, o;
    float *rel_k, *rel_v; /* (2 window + 1) rows of a head's size, or NULL */
    at_nn_norm ln1, ln2;
    vconv ff1, ff2;
} enc_layer;

/* VitsDilatedDepthSeparableConv */
typedef struct dds {
    vconv dw[MAX_DS], pw[MAX_DS];
    at_nn_norm n1[MAX_DS], n2[MAX_DS];
} dds;

/* VitsConvFlow */
typedef struct convflow {
    vconv pre, proj;
    dds dds;
} convflow;

typedef struct wavenet {
    vconv *in, *rs;
    float *cond_w, *cond_b; /* 2 hidden layers rows of the speaker size, or NULL */
} wavenet;

/* VitsResidualCouplingLayer */
typedef struct coupling {
    vconv pre, post;
    wavenet wn;
} coupling;

struct at_vits_model {
    at_vits_hparams hp;
    cfg c;
    at_nn_weights w;
    at_backend *wbe;
    at_nn_loader ld;
    void **host; /* host arrays the model owns */
    size_t n_host, cap_host;
    at_tensor embed;
    enc_layer *enc;
    vconv project;
    /* stochastic duration predictor; flows[f] is the file's flows.(f + 2):
     * transformers drops flows.1 in reverse */
    vconv sdp_pre, sdp_proj;
    dds sdp_dds;
    float *ea_t, *ea_ls;
    convflow *sdp_flows;
    /* plain duration predictor */
    vconv dp_c1, dp_c2, dp_out;
    at_nn_norm dp_n1, dp_n2;
    float *dp_cond_w, *dp_cond_b;
    coupling *flows;
    vconv dec_pre, dec_post, up[MAX_UP];
    vconv *rb[MAX_UP][MAX_KERN]; /* convs1[i] at 2i, convs2[i] at 2i + 1 */
    float *dec_cond_w, *dec_cond_b;
    float *spk; /* speakers rows of spk_dim */
    int ctx_frames;
    int need_after[MAX_UP];  /* samples of context the layers after stage s read, at its rate */
    int need_before[MAX_UP]; /* the same with stage s's residual blocks */
    int flow_ctx;            /* frames of context each side of a span of the prior flows */
    size_t dec_per_frame;    /* floats of the widest decoder activation, per frame */
    struct ws_cache *cache;  /* the working memory of the last synthesis, for the next */
};

static int code_of(const at_err *err) { return err && err->code < 0 ? err->code : AT_E_CORRUPT; }

/* ---- working memory ------------------------------------------------------ */

/* The decoder's five activation buffers (decode_piece). */
typedef struct dec_bufs {
    float *x, *h, *t, *res, *sum;
} dec_bufs;

/* A synthesis's working memory: its compute client and backend (whose
 * buffers grow to the largest operation) and the decoder's buffers.  A
 * voice keeps the last one for its next synthesis, and a synthesis that
 * finds it taken makes its own: fresh memory costs a page fault per page,
 * which in a virtual machine was an eighth of a synthesis (bench_vits,
 * docs/figures.md).  What a voice holds is one synthesis's peak, the
 * decoder's buffers for its longest piece (PIECE frames). */
typedef struct workspace {
    at_compute *pool, *cc;
    at_backend *be;
    at_tensor out; /* run.out */
    size_t out_cap;
    dec_bufs B;
    size_t B_cap; /* floats in each of B's buffers */
} workspace;

typedef struct ws_cache {
    pthread_mutex_t mu;
    workspace *idle;
} ws_cache;

static void ws_free(workspace *w)
{
    if (!w) return;
    at_tensor_free(&w->out);
    at_backend_free(w->be);
    at_compute_free(w->cc);
    float *all[5] = {w->B.x, w->B.h, w->B.t, w->B.res, w->B.sum};
    for (int i = 0; i < 5; i++) free(all[i]);
    free(w);
}

static ws_cache *ws_cache_new(void)
{
    ws_cache *c = calloc(1, sizeof *c);
    if (c) pthread_mutex_init(&c->mu, NULL);
    return c;
}

static void ws_cache_free(ws_cache *c)
{
    if (!c) return;
    ws_free(c->idle);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The voice's idle workspace if it was made on pool, else a new one. */
static workspace *ws_take(ws_cache *c, at_compute *pool, at_err *err)
{
    pthread_mutex_lock(&c->mu);
    workspace *w = c->idle;
    c->idle = NULL;
    pthread_mutex_unlock(&c->mu);
    if (w && w->pool != pool) {
        ws_free(w);
        w = NULL;
    }
    if (w) { /* a pool made later at the same address may differ */
        at_compute_set_isa(w->cc, at_compute_isa(pool));
        at_compute_set_conv(w->cc, at_compute_conv(pool));
        return w;
    }
    if (!(w = calloc(1, sizeof *w))) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    w->pool = pool;
    if (!(w->cc = at_compute_new_client(pool, err)) || !(w->be = at_backend_cpu_new(w->cc, err))) {
        ws_free(w);
        return NULL;
    }
    return w;
}

/* w back to the voice, unless it keeps another already. */
static void ws_give(ws_cache *c, workspace *w)
{
    if (!w) return;
    pthread_mutex_lock(&c->mu);
    if (!c->idle) {
        c->idle = w;
        w = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    ws_free(w);
}

/* B's buffers with room for per floats each (their contents undefined). */
static int ws_bufs(workspace *w, size_t per)
{
    if (w->B_cap >= per) return 0;
    float **all[5] = {&w->B.x, &w->B.h, &w->B.t, &w->B.res, &w->B.sum};
    w->B_cap = 0;
    for (int i = 0; i < 5; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
    for (int i = 0; i < 5; i++)
        if (!(*all[i] = at_mem_large(per * sizeof(float)))) return AT_E_NOMEM;
    w->B_cap = per;
    return 0;
}

static int read_config(const char *dir, cfg *c, at_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    at_hf_config *h = at_hf_config_load(path, err);
    if (!h) return code_of(err);
    const char *type = NULL, *act = NULL;
    double ln_eps, tail, slope, noise, noise_dur, rate;
    int rc, n, ends[MAX_KERN], vals[MAX_KERN * MAX_DIL];
    memset(c, 0, sizeof *c);
    if ((rc = at_hf_config_string_or(h, "model_type", "", &type, err))) goto out;
    if (strcmp(type, "vits") != 0) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: model_type \"%s\" is not vits", path, type);
        goto out;
    }
    /* transformers' VitsConfig defaults where a key is absent */
    if ((rc = at_hf_config_int_or(h, "vocab_size", 1, 1 << 20, 38, &c->vocab, err)) ||
        (rc = at_hf_config_int_or(h, "hidden_size", 2, 4096, 192, &c->d, err)) ||
        (rc = at_hf_config_int_or(h, "num_hidden_layers", 1, 64, 6, &c->layers, err)) ||
        (rc = at_hf_config_int_or(h, "num_attention_heads", 1, 64, 2, &c->heads, err)) ||
        (rc = at_hf_config_int_or(h, "window_size", 0, 1024, 4, &c->window, err)) ||
        (rc = at_hf_config_bool_or(h, "use_bias", 1, &c->use_bias, err)) ||
        (rc = at_hf_config_int_or(h, "ffn_dim", 1, 65536, 768, &c->ffn, err)) ||
        (rc = at_hf_config_int_or(h, "ffn_kernel_size", 1, 63, 3, &c->ffn_k, err)) ||
        (rc = at_hf_config_int_or(h, "flow_size", 2, 4096, 192, &c->flow, err)) ||
        (rc = at_hf_config_string_or(h, "hidden_act", "relu", &act, err)) ||
        (rc = at_hf_config_float_or(h, "layer_norm_eps", 1e-12, 1.0, 1e-5, &ln_eps, err)) ||
        (rc = at_hf_config_bool_or(h, "use_stochastic_duration_prediction", 1, &c->stochastic, err)) ||
        (rc = at_hf_config_int_or(h, "duration_predictor_kernel_size", 1, 63, 3, &c->dp_k, err)) ||
        (rc = at_hf_config_int_or(h, "duration_predictor_filter_channels", 1, 8192, 256, &c->dp_filter,
                                  err)) ||
        (rc = at_hf_config_int_or(h, "depth_separable_num_layers", 1, MAX_DS, 3, &c->ds_layers, err)) ||
        (rc = at_hf_config_int_or(h, "depth_separable_channels", 1, 64, 2, &c->ds_channels, err)) ||
        (rc = at_hf_config_int_or(h, "duration_predictor_flow_bins", 1, 1000, 10, &c->bins, err)) ||
        (rc = at_hf_config_float_or(h, "duration_predictor_tail_bound", 1e-3, 1e4, 5.0, &tail, err)) ||
        (rc = at_hf_config_int_or(h, "duration_predictor_num_flows", 1, 32, 4, &c->dp_flows, err)) ||
        (rc = at_hf_config_int_or(h, "prior_encoder_num_flows", 1, 32, 4, &c->prior_flows, err)) ||
        (rc = at_hf_config_int_or(h, "prior_encoder_num_wavenet_layers", 1, 64, 4, &c->wn_layers, err)) ||
        (rc = at_hf_config_int_or(h, "wavenet_kernel_size", 1, 63, 5, &c->wn_k, err)) ||
        (rc = at_hf_config_int_or(h, "wavenet_dilation_rate", 1, 16, 1, &c->wn_rate, err)) ||
        (rc = at_hf_config_int_or(h, "upsample_initial_channel", 1, 8192, 512, &c->up_init, err)) ||
        (rc = at_hf_config_float_or(h, "leaky_relu_slope", 0.0, 1.0, 0.1, &slope, err)) ||
        (rc = at_hf_config_int_or(h, "num_speakers", 1, 1 << 16, 1, &c->speakers, err)) ||
        (rc = at_hf_config_int_or(h, "speaker_embedding_size", 0, 8192, 0, &c->spk_dim, err)) ||
        (rc = at_hf_config_int_or(h, "sampling_rate", 1000, 384000, 16000, &c->sr, err)) ||
        (rc = at_hf_config_float_or(h, "noise_scale", 0.0, 100.0, 0.667, &noise, err)) ||
        (rc = at_hf_config_float_or(h, "noise_scale_duration", 0.0, 100.0, 0.8, &noise_dur, err)) ||
        (rc = at_hf_config_float_or(h, "speaking_rate", 1e-3, 1e3, 1.0, &rate, err)))
        goto out;
    if (at_act_from_name(act, &c->act)) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: hidden_act \"%s\" not supported", path, act);
        goto out;
    }
    c->ln_eps = (float)ln_eps;
    c->tail = (float)tail;
    c->slope = (float)slope;
    c->noise = (float)noise;
    c->noise_dur = (float)noise_dur;
    c->rate = (float)rate;

    /* the decoder's lists, with transformers' defaults */
    static const int def_rates[] = {8, 8, 2, 2}, def_up_k[] = {16, 16, 4, 4}, def_rb_k[] = {3, 7, 11};
    int n_k;
    if ((rc = at_hf_config_ints(h, "upsample_rates", 1, 64, c->up_rate, MAX_UP, &c->n_up, err)) ||
        (rc = at_hf_config_ints(h, "upsample_kernel_sizes", 1, 256, c->up_k, MAX_UP, &n_k, err)))
        goto out;
    if (!at_hf_config_has(h, "upsample_rates")) {
        c->n_up = 4;
        memcpy(c->up_rate, def_rates, sizeof def_rates);
    }
    if (!at_hf_config_has(h, "upsample_kernel_sizes")) {
        n_k = 4;
        memcpy(c->up_k, def_up_k, sizeof def_up_k);
    }
    if (c->n_up < 1 || n_k != c->n_up) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: %d upsample_rates and %d upsample_kernel_sizes", path,
                        c->n_up, n_k);
        goto out;
    }
    if ((rc = at_hf_config_ints(h, "resblock_kernel_sizes", 1, 63, c->rb_k, MAX_KERN, &c->n_kern, err)) ||
        (rc = at_hf_config_int_lists(h, "resblock_dilation_sizes", 1, 64, vals, MAX_KERN * MAX_DIL, ends,
                                     MAX_KERN, &n, err)))
        goto out;
    if (!at_hf_config_has(h, "resblock_kernel_sizes")) {
        c->n_kern = 3;
        memcpy(c->rb_k, def_rb_k, sizeof def_rb_k);
    }
    if (!at_hf_config_has(h, "resblock_dilation_sizes")) {
        n = 3;
        for (int j = 0; j < 3; j++) {
            vals[3 * j] = 1;
            vals[3 * j + 1] = 3;
            vals[3 * j + 2] = 5;
            ends[j] = 3 * j + 3;
        }
    }
    if (c->n_kern < 1 || n != c->n_kern) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: %d resblock_kernel_sizes and %d resblock_dilation_sizes",
                        path, c->n_kern, n);
        goto out;
    }
    for (int j = 0; j < n; j++) {
        int b = j ? ends[j - 1] : 0;
        c->n_dil[j] = ends[j] - b;
        if (c->n_dil[j] > MAX_DIL) {
            rc = at_err_set(err, AT_E_CORRUPT, "%s: more than %d resblock dilations", path, MAX_DIL);
            goto out;
        }
        memcpy(c->rb_dil[j], vals + b, (size_t)c->n_dil[j] * sizeof(int));
    }

    /* what the shapes need to hold together */
    const char *bad = NULL;
    int64_t hop = 1, dil = 1;
    for (int i = 0; i < c->n_up; i++) {
        hop *= c->up_rate[i];
        if (c->up_k[i] < c->up_rate[i] || (c->up_k[i] - c->up_rate[i]) % 2)
            bad = "each upsample kernel must be the rate plus an even number";
    }
    for (int i = 0; i < c->wn_layers - 1 && !bad; i++)
        if ((dil *= c->wn_rate) > 4096) bad = "wavenet_dilation_rate ^ layers above 4096";
    for (int i = 0, k = 1; i < c->ds_layers - 1 && !bad; i++)
        if ((k *= c->dp_k) > 4096) bad = "duration_predictor_kernel_size ^ layers above 4096";
    for (int j = 0; j < c->n_kern; j++)
        if (c->rb_k[j] % 2 == 0) bad = "resblock_kernel_sizes must be odd";
    if (hop > 4096)
        bad = "the upsample rates multiply to more than 4096";
    else if (c->d % c->heads)
        bad = "hidden_size is not a multiple of num_attention_heads";
    else if (c->flow % 2)
        bad = "flow_size must be even";
    else if (c->wn_k % 2 == 0 || c->dp_k % 2 == 0)
        bad = "wavenet_kernel_size and duration_predictor_kernel_size must be odd";
    else if ((c->up_init >> c->n_up) < 1)
        bad = "upsample_initial_channel too small for the upsampling stages";
    else if (c->stochastic && c->ds_channels != 2)
        bad = "depth_separable_channels must be 2";
    else if (c->speakers > 1 && c->spk_dim < 1)
        bad = "num_speakers > 1 needs speaker_embedding_size";
    if (bad) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: %s", path, bad);
        goto out;
    }
out:
    at_hf_config_free(h);
    return rc;
}

/* -------------------------------------------------------------- weights */

static int keep_host(at_vits_model *m, void *p, at_err *err)
{
    if (m->n_host == m->cap_host) {
        size_t nc = m->cap_host ? 2 * m->cap_host : 64;
        void **h = realloc(m->host, nc * sizeof *h);
        if (!h) {
            free(p);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        m->host = h;
        m->cap_host = nc;
    }
    m->host[m->n_host++] = p;
    return 0;
}

static int name_of(char *buf, size_t cap, at_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int name_of(char *buf, size_t cap, at_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) return at_err_set(err, AT_E_INVALID, "tensor name too long");
    return 0;
}

static void shape_str(char *buf, size_t cap, int nd, const int64_t *s)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < nd && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? " " : "", (long long)s[i]);
}

/* Tensor name as malloc'd host floats, checked to have shape (nd dims). */
static float *host_tensor(const at_vits_model *m, const char *name, int nd, const int64_t *shape, at_err *err)
{
    const at_nn_wtensor *t = at_nn_weights_find(&m->w, name);
    if (!t) {
        at_err_set(err, AT_E_CORRUPT, "model has no tensor %s", name);
        return NULL;
    }
    int ok = t->n_dims == nd;
    for (int i = 0; i < nd && ok; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char got[96], want[96];
        shape_str(got, sizeof got, t->n_dims, t->shape);
        shape_str(want, sizeof want, nd, shape);
        at_err_set(err, AT_E_CORRUPT, "tensor %s has shape [%s], expected [%s]", name, got, want);
        return NULL;
    }
    int64_t n = at_nn_wtensor_numel(t), rows = shape[0] > 0 ? shape[0] : 1, cols = n / rows;
    size_t rb = at_dtype_row_bytes(t->type, cols);
    if (at_dtype_block(t->type) != 1 || !rb || rb * (size_t)rows != t->nbytes || cols > INT32_MAX) {
        at_err_set(err, AT_E_CORRUPT, "tensor %s: %s values of a bad size", name, at_dtype_name(t->type));
        return NULL;
    }
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    if (!x) {
        at_err_set(err, AT_E_NOMEM, "out of memory (%s)", name);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        at_dequant_row(t->type, (const char *)t->data + (size_t)r * rb, x + r * cols, (int)cols);
    return x;
}

/* A convolution's weight of shape [s0 s1 k]: stored folded, or as torch's
 * weight norm (g [s0 1 1], v): w = v g / |v| over all but the first dim. */
static float *conv_weight(const at_vits_model *m, const char *pfx, const int64_t *shape, at_err *err)
{
    char wn[AT_NN_NAME_MAX], gn[AT_NN_NAME_MAX], vn[AT_NN_NAME_MAX];
    if (name_of(wn, sizeof wn, err, "%s.weight", pfx)) return NULL;
    if (at_nn_weights_find(&m->w, wn)) return host_tensor(m, wn, 3, shape, err);
    if (name_of(gn, sizeof gn, err, "%s.weight_g", pfx) || name_of(vn, sizeof vn, err, "%s.weight_v", pfx))
        return NULL;
    if (!at_nn_weights_find(&m->w, gn) &&
        (name_of(gn, sizeof gn, err, "%s.parametrizations.weight.original0", pfx) ||
         name_of(vn, sizeof vn, err, "%s.parametrizations.weight.original1", pfx)))
        return NULL;
    if (!at_nn_weights_find(&m->w, gn)) {
        at_err_set(err, AT_E_CORRUPT, "model has no tensor %s (nor its weight norm)", wn);
        return NULL;
    }
    int64_t gs[3] = {shape[0], 1, 1};
    float *g = host_tensor(m, gn, 3, gs, err);
    float *v = g ? host_tensor(m, vn, 3, shape, err) : NULL;
    if (!v) {
        free(g);
        return NULL;
    }
    size_t per = (size_t)shape[1] * (size_t)shape[2];
    for (int64_t r = 0; r < shape[0]; r++) {
        float *row = v + (size_t)r * per;
        double ss = 0;
        for (size_t i = 0; i < per; i++) ss += (double)row[i] * row[i];
        float norm = (float)sqrt(ss), s = norm > 0 ? g[r] / norm : 0.0f;
        for (size_t i = 0; i < per; i++) row[i] *= s;
    }
    free(g);
    return v;
}

enum { C_BIAS = 1, C_HOST = 2, C_TRANSPOSED = 4 };

/* pfx as a convolution cin -> cout (PyTorch's Conv1d / ConvTranspose1d). */
static int load_conv(at_vits_model *m, vconv *cv, const char *pfx, int cin, int cout, int k, int groups,
                     int dil, int pad, int stride, int flags, at_err *err)
{
    char bn[AT_NN_NAME_MAX];
    memset(cv, 0, sizeof *cv);
    *cv = (vconv){.cin = cin,
                  .cout = cout,
                  .k = k,
                  .dil = dil,
                  .pad = pad,
                  .groups = groups,
                  .stride = stride,
                  .transposed = !!(flags & C_TRANSPOSED)};
    int64_t shape[3] = {cv->transposed ? cin : cout, cv->transposed ? cout : cin / groups, k};
    float *w = conv_weight(m, pfx, shape, err), *b = NULL;
    if (!w) return code_of(err);
    if (flags & C_BIAS) {
        int64_t bs[1] = {cout};
        if (name_of(bn, sizeof bn, err, "%s.bias", pfx) || !(b = host_tensor(m, bn, 1, bs, err))) {
            free(w);
            return code_of(err);
        }
    }
    if (flags & C_HOST) {
        cv->hw = w;
        cv->hb = b;
        int rc = keep_host(m, w, err);
        if (!rc && b)
            rc = keep_host(m, b, err);
        else if (rc)
            free(b);
        return rc;
    }
    /* a pointwise convolution is a product (conv()); the others read a
     * kernel reordered once here rather than on every call */
    int rc;
    if (k == 1 && groups == 1 && !pad && stride == 1 && !cv->transposed) {
        rc = at_nn_load_host_f32(&m->ld, &cv->w, (int)shape[0], (int)(shape[1] * k), w, err);
    } else {
        at_conv1d_params p = {
            .kernel = k, .stride = stride, .padding = pad, .dilation = dil, .groups = groups};
        rc = at_nn_load_conv_f32(&m->ld, &cv->w, (int)shape[0], (int)(shape[1] * k), w, &p, cv->transposed,
                                 err);
        cv->prepared = 1;
    }
    if (!rc && b) rc = at_nn_load_host_f32(&m->ld, &cv->b, 1, cout, b, err);
    free(w);
    free(b);
    return rc;
}

/* Padding "same" for an odd kernel at a dilation. */
static int same_pad(int k, int dil) { return (k * dil - dil) / 2; }

static int load_dds(at_vits_model *m, dds *D, const char *pfx, at_err *err)
{
    const cfg *c = &m->c;
    char n[AT_NN_NAME_MAX];
    for (int i = 0, dil = 1; i < c->ds_layers; i++, dil *= c->dp_k) {
        CHECK(name_of(n, sizeof n, err, "%s.convs_dilated.%d", pfx, i));
        CHECK(load_conv(m, &D->dw[i], n, c->d, c->d, c->dp_k, c->d, dil, same_pad(c->dp_k, dil), 1,
                        C_BIAS | C_HOST, err));
        CHECK(name_of(n, sizeof n, err, "%s.convs_pointwise.%d", pfx, i));
        CHECK(load_conv(m, &D->pw[i], n, c->d, c->d, 1, 1, 1, 0, 1, C_BIAS, err));
        CHECK(name_of(n, sizeof n, err, "%s.norms_1.%d", pfx, i));
        CHECK(at_nn_load_norm(&m->ld, &D->n1[i], c->d, n, err));
        CHECK(name_of(n, sizeof n, err, "%s.norms_2.%d", pfx, i));
        CHECK(at_nn_load_norm(&m->ld, &D->n2[i], c->d, n, err));
    }
    return 0;
}

/* A speaker conditioning layer (pfx, [out, spk_dim, 1]) on the host. */
static int load_cond(at_vits_model *m, const char *pfx, int out, float **w, float **b, at_err *err)
{
    vconv cv;
    CHECK(load_conv(m, &cv, pfx, m->c.spk_dim, out, 1, 1, 1, 0, 1, C_BIAS | C_HOST, err));
    *w = cv.hw;
    *b = cv.hb;
    return 0;
}

static int load_encoder(at_vits_model *m, at_err *err)
{
    const cfg *c = &m->c;
    at_nn_loader *L = &m->ld;
    char n[AT_NN_NAME_MAX];
    int d = c->d, hd = d / c->heads, bias = c->use_bias ? AT_NN_BIAS : AT_NN_NO_BIAS;
    CHECK(at_nn_load_matrix(L, &m->embed, c->vocab, d, 0, "text_encoder.embed_tokens.weight", err));
    if (!(m->enc = calloc((size_t)c->layers, sizeof *m->enc)))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < c->layers; i++) {
        enc_layer *e = &m->enc[i];
        static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        at_nn_linear *lin[] = {&e->q, &e->k, &e->v, &e->o};
        for (int j = 0; j < 4; j++) {
            CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.attention.%s", i, proj[j]));
            CHECK(at_nn_load_linear(L, lin[j], d, d, bias, n, err));
        }
        if (c->window > 0) {
            int64_t s[3] = {1, 2 * c->window + 1, hd};
            CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.attention.emb_rel_k", i));
            if (!(e->rel_k = host_tensor(m, n, 3, s, err))) return code_of(err);
            CHECK(keep_host(m, e->rel_k, err));
            CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.attention.emb_rel_v", i));
            if (!(e->rel_v = host_tensor(m, n, 3, s, err))) return code_of(err);
            CHECK(keep_host(m, e->rel_v, err));
        }
        CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.layer_norm", i));
        CHECK(at_nn_load_norm(L, &e->ln1, d, n, err));
        CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.final_layer_norm", i));
        CHECK(at_nn_load_norm(L, &e->ln2, d, n, err));
        /* transformers pads (k-1)/2 before and k/2 after: an even kernel
         * runs with k/2 on both sides and drops its first output */
        int pad = c->ffn_k / 2, trim = c->ffn_k % 2 == 0;
        CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.feed_forward.conv_1", i));
        CHECK(load_conv(m, &e->ff1, n, d, c->ffn, c->ffn_k, 1, 1, pad, 1, C_BIAS, err));
        CHECK(name_of(n, sizeof n, err, "text_encoder.encoder.layers.%d.feed_forward.conv_2", i));
        CHECK(load_conv(m, &e->ff2, n, c->ffn, d, c->ffn_k, 1, 1, pad, 1, C_BIAS, err));
        e->ff1.trim = e->ff2.trim = trim;
    }
    return load_conv(m, &m->project, "text_encoder.project", d, 2 * c->flow, 1, 1, 1, 0, 1, C_BIAS, err);
}

static int load_duration(at_vits_model *m, at_err *err)
{
    const cfg *c = &m->c;
    char n[AT_NN_NAME_MAX];
    int d = c->d;
    if (c->spk_dim > 0) CHECK(load_cond(m, "duration_predictor.cond", d, &m->dp_cond_w, &m->dp_cond_b, err));
    if (!c->stochastic) {
        int f = c->dp_filter, k = c->dp_k;
        CHECK(load_conv(m, &m->dp_c1, "duration_predictor.conv_1", d, f, k, 1, 1, k / 2, 1, C_BIAS, err));
        CHECK(load_conv(m, &m->dp_c2, "duration_predictor.conv_2", f, f, k, 1, 1, k / 2, 1, C_BIAS, err));
        CHECK(load_conv(m, &m->dp_out, "duration_predictor.proj", f, 1, 1, 1, 1, 0, 1, C_BIAS, err));
        CHECK(at_nn_load_norm(&m->ld, &m->dp_n1, f, "duration_predictor.norm_1", err));
        return at_nn_load_norm(&m->ld, &m->dp_n2, f, "duration_predictor.norm_2", err);
    }
    CHECK(load_conv(m, &m->sdp_pre, "duration_predictor.conv_pre", d, d, 1, 1, 1, 0, 1, C_BIAS, err));
    CHECK(load_conv(m, &m->sdp_proj, "duration_predictor.conv_proj", d, d, 1, 1, 1, 0, 1, C_BIAS, err));
    CHECK(load_dds(m, &m->sdp_dds, "duration_predictor.conv_dds", err));
    int64_t s[2] = {2, 1};
    if (!(m->ea_t = host_tensor(m, "duration_predictor.flows.0.translate", 2, s, err))) return code_of(err);
    CHECK(keep_host(m, m->ea_t, err));
    if (!(m->ea_ls = host_tensor(m, "duration_predictor.flows.0.log_scale", 2, s, err))) return code_of(err);
    CHECK(keep_host(m, m->ea_ls, err));
    if (!(m->sdp_flows = calloc((size_t)c->dp_flows, sizeof *m->sdp_flows)))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int f = 2; f <= c->dp_flows; f++) {
        convflow *cf = &m->sdp_flows[f - 2];
        CHECK(name_of(n, sizeof n, err, "duration_predictor.flows.%d.conv_pre", f));
        CHECK(load_conv(m, &cf->pre, n, 1, d, 1, 1, 1, 0, 1, C_BIAS, err));
        CHECK(name_of(n, sizeof n, err, "duration_predictor.flows.%d.conv_proj", f));
        CHECK(load_conv(m, &cf->proj, n, d, 3 * c->bins - 1, 1, 1, 1, 0, 1, C_BIAS, err));
        CHECK(name_of(n, sizeof n, err, "duration_predictor.flows.%d.conv_dds", f));
        CHECK(load_dds(m, &cf->dds, n, err));
    }
    return 0;
}

static int load_flows(at_vits_model *m, at_err *err)
{
    const cfg *c = &m->c;
    char n[AT_NN_NAME_MAX];
    int d = c->d, half = c->flow / 2, L = c->wn_layers;
    if (!(m->flows = calloc((size_t)c->prior_flows, sizeof *m->flows)))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int f = 0; f < c->prior_flows; f++) {
        coupling *cp = &m->flows[f];
        CHECK(name_of(n, sizeof n, err, "flow.flows.%d.conv_pre", f));
        CHECK(load_conv(m, &cp->pre, n, half, d, 1, 1, 1, 0, 1, C_BIAS, err));
        CHECK(name_of(n, sizeof n, err, "flow.flows.%d.conv_post", f));
        CHECK(load_conv(m, &cp->post, n, d, half, 1, 1, 1, 0, 1, C_BIAS, err));
        cp->wn.in = calloc((size_t)L, sizeof *cp->wn.in);
        cp->wn.rs = calloc((size_t)L, sizeof *cp->wn.rs);
        if (!cp->wn.in || !cp->wn.rs) return at_err_set(err, AT_E_NOMEM, "out of memory");
        for (int i = 0, dil = 1; i < L; i++, dil *= c->wn_rate) {
            CHECK(name_of(n, sizeof n, err, "flow.flows.%d.wavenet.in_layers.%d", f, i));
            CHECK(load_conv(m, &cp->wn.in[i], n, d, 2 * d, c->wn_k, 1, dil, same_pad(c->wn_k, dil), 1, C_BIAS,
                            err));
            CHECK(name_of(n, sizeof n, err, "flow.flows.%d.wavenet.res_skip_layers.%d", f, i));
            CHECK(load_conv(m, &cp->wn.rs[i], n, d, i < L - 1 ? 2 * d : d, 1, 1, 1, 0, 1, C_BIAS, err));
        }
        if (c->spk_dim > 0) {
            CHECK(name_of(n, sizeof n, err, "flow.flows.%d.wavenet.cond_layer", f));
            CHECK(load_cond(m, n, 2 * d * L, &cp->wn.cond_w, &cp->wn.cond_b, err));
        }
    }
    return 0;
}

static int load_decoder(at_vits_model *m, at_err *err)
{
    const cfg *c = &m->c;
    char n[AT_NN_NAME_MAX];
    int ch = c->up_init;
    CHECK(load_conv(m, &m->dec_pre, "decoder.conv_pre", c->flow, ch, 7, 1, 1, 3, 1, C_BIAS, err));
    if (c->spk_dim > 0) CHECK(load_cond(m, "decoder.cond", ch, &m->dec_cond_w, &m->dec_cond_b, err));
    size_t widest = (size_t)c->up_init, steps = 1;
    for (int s = 0; s < c->n_up; s++) {
        int out = c->up_init >> (s + 1), u = c->up_rate[s], k = c->up_k[s];
        CHECK(name_of(n, sizeof n, err, "decoder.upsampler.%d", s));
        CHECK(load_conv(m, &m->up[s], n, ch, out, k, 1, 1, (k - u) / 2, u, C_BIAS | C_TRANSPOSED, err));
        ch = out;
        steps *= (size_t)u;
        if (steps * (size_t)ch > widest) widest = steps * (size_t)ch;
        for (int j = 0; j < c->n_kern; j++) {
            int kk = c->rb_k[j], nd = c->n_dil[j];
            if (!(m->rb[s][j] = calloc(2 * (size_t)nd, sizeof(vconv))))
                return at_err_set(err, AT_E_NOMEM, "out of memory");
            for (int i = 0; i < nd; i++) {
                int dil = c->rb_dil[j][i];
                CHECK(name_of(n, sizeof n, err, "decoder.resblocks.%d.convs1.%d", s * c->n_kern + j, i));
                CHECK(load_conv(m, &m->rb[s][j][2 * i], n, ch, ch, kk, 1, dil, same_pad(kk, dil), 1, C_BIAS,
                                err));
                CHECK(name_of(n, sizeof n, err, "decoder.resblocks.%d.convs2.%d", s * c->n_kern + j, i));
                CHECK(load_conv(m, &m->rb[s][j][2 * i + 1], n, ch, ch, kk, 1, 1, same_pad(kk, 1), 1, C_BIAS,
                                err));
            }
        }
    }
    m->dec_per_frame = widest;
    return load_conv(m, &m->dec_post, "decoder.conv_post", ch, 1, 7, 1, 1, 3, 1, 0, err);
}

/* Frames of context each side of a decoder piece that make its samples
 * those of the whole signal: the receptive field, walked back from the
 * output through each stage (generously rounded up).  need_after[s]: the
 * part of it, in samples at stage s's rate, that the layers after stage
 * s's residual blocks read; need_before[s], with those blocks. */
static int decoder_context(const cfg *c, int *need_after, int *need_before)
{
    int64_t ctx = 3; /* conv_post */
    for (int s = c->n_up - 1; s >= 0; s--) {
        need_after[s] = (int)ctx;
        int64_t widest = 0;
        for (int j = 0; j < c->n_kern; j++) {
            int64_t r = 0;
            for (int i = 0; i < c->n_dil[j]; i++) r += (int64_t)(c->rb_dil[j][i] + 1) * (c->rb_k[j] - 1) / 2;
            if (r > widest) widest = r;
        }
        ctx += widest;
        need_before[s] = (int)ctx;
        ctx = (ctx + c->up_k[s] + c->up_rate[s] - 1) / c->up_rate[s] + 1;
    }
    return (int)(ctx + 3 + 1); /* conv_pre, and one more */
}

/* Frames of context each side of a span of the prior flows that make its
 * frames those of the whole signal: a coupling's WaveNet reaches (k - 1) / 2
 * dilation frames per layer (its 1x1 convolutions none), and each coupling
 * is conditioned on the previous one's output (the flips between them only
 * permute channels), so the reaches add up over the flows. */
static int flow_context(const cfg *c)
{
    int64_t reach = 0;
    for (int i = 0, dil = 1; i < c->wn_layers; i++, dil *= c->wn_rate)
        reach += (int64_t)(c->wn_k - 1) / 2 * dil;
    reach *= c->prior_flows;
    return reach < MAX_SAMPLES ? (int)reach : MAX_SAMPLES;
}

static int build(at_vits_model *m, at_err *err)
{
    const cfg *c = &m->c;
    at_nn_loader_init(&m->ld, &m->w, m->wbe);
    CHECK(load_encoder(m, err));
    CHECK(load_duration(m, err));
    CHECK(load_flows(m, err));
    CHECK(load_decoder(m, err));
    if (c->speakers > 1) {
        int64_t s[2] = {c->speakers, c->spk_dim};
        if (!(m->spk = host_tensor(m, "embed_speaker.weight", 2, s, err))) return code_of(err);
        CHECK(keep_host(m, m->spk, err));
    }
    m->ctx_frames = decoder_context(c, m->need_after, m->need_before);
    m->flow_ctx = flow_context(c);
    return 0;
}

at_vits_model *at_vits_model_load(const char *dir, at_err *err)
{
    at_err tmp;
    if (!err) err = &tmp;
    if (!dir || !*dir) {
        at_err_set(err, AT_E_INVALID, "no model path");
        return NULL;
    }
    at_vits_model *m = calloc(1, sizeof *m);
    if (!m) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (!(m->cache = ws_cache_new())) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    if (read_config(dir, &m->c, err)) goto fail;
    if (at_nn_weights_open_dir(dir, &m->w, NULL, NULL, err)) goto fail;
    if (!(m->wbe = at_backend_cpu_new(NULL, err)) || build(m, err)) goto fail;
    if (!m->ld.in_place) at_nn_weights_free(&m->w);
    const cfg *c = &m->c;
    int64_t hop = 1;
    for (int i = 0; i < c->n_up; i++) hop *= c->up_rate[i];
    m->hp = (at_vits_hparams){c->vocab,    c->d,     c->layers, c->heads,     c->flow, c->sr,
                              c->speakers, (int)hop, c->noise,  c->noise_dur, c->rate, c->stochastic};
    return m;
fail:
    at_vits_model_free(m);
    return NULL;
}

void at_vits_model_free(at_vits_model *m)
{
    if (!m) return;
    at_nn_loader_release(&m->ld);
    at_backend_free(m->wbe);
    at_nn_weights_free(&m->w);
    for (size_t i = 0; i < m->n_host; i++) free(m->host[i]);
    free(m->host);
    free(m->enc);
    free(m->sdp_flows);
    if (m->flows)
        for (int f = 0; f < m->c.prior_flows; f++) {
            free(m->flows[f].wn.in);
            free(m->flows[f].wn.rs);
        }
    free(m->flows);
    for (int s = 0; s < MAX_UP; s++)
        for (int j = 0; j < MAX_KERN; j++) free(m->rb[s][j]);
    ws_cache_free(m->cache);
    free(m);
}

const at_vits_hparams *at_vits_model_hparams(const at_vits_model *m) { return &m->hp; }

void at_vits_params_default(const at_vits_model *m, at_vits_params *p)
{
    memset(p, 0, sizeof *p);
    p->noise_scale = m->hp.noise_scale;
    p->noise_scale_duration = m->hp.noise_scale_duration;
    p->speaking_rate = m->hp.speaking_rate;
}

/* ---------------------------------------------------------------- noise */

/* splitmix64, and normals by Box-Muller: reproducible per seed. */
typedef struct rng {
    uint64_t s;
    int has;
    float spare;
} rng;

static uint64_t rng_next(rng *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float randn(rng *g)
{
    if (g->has) {
        g->has = 0;
        return g->spare;
    }
    double u1 = (double)((rng_next(g) >> 11) + 1) * 0x1.0p-53; /* (0, 1]: log is finite */
    double u2 = (double)(rng_next(g) >> 11) * 0x1.0p-53;
    double r = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    g->spare = (float)(r * sin(th));
    g->has = 1;
    return (float)(r * cos(th));
}

/* ------------------------------------------------------------- running */

typedef struct run {
    const at_vits_model *m;
    const cfg *c;
    at_compute *cc;
    at_backend *be;
    at_tensor out; /* every operation's output, read back from here */
    size_t out_cap;
    at_err *err;
} run;

/* A view of the output tensor as rows of cols floats. */
static int out_view(run *r, int cols, int64_t rows, at_tensor *y)
{
    size_t need = (size_t)cols * (size_t)rows;
    if (need > r->out_cap) {
        at_tensor_free(&r->out);
        r->out_cap = 0;
        int64_t ne[1] = {(int64_t)need};
        CHECK(at_tensor_new(r->be, &r->out, AT_DT_F32, 1, ne, r->err));
        r->out_cap = need;
    }
    *y = at_tensor_reshape_2d(&r->out, cols, rows);
    return 0;
}

/* 1 if the n floats at a and the m floats at b share memory. */
static int overlap(const float *a, size_t n, const float *b, size_t m)
{
    uintptr_t a0 = (uintptr_t)a, a1 = (uintptr_t)(a + n), b0 = (uintptr_t)b, b1 = (uintptr_t)(b + m);
    return a0 < b1 && b0 < a1;
}

/* x (rows of cols host floats) as an input tensor; freed by the caller. */
static int wrap(run *r, at_tensor *t, const float *x, int cols, int64_t rows)
{
    int64_t ne[2] = {cols, rows};
    return at_tensor_from_host(r->be, t, AT_DT_F32, 2, ne, x, (size_t)cols * (size_t)rows * sizeof(float),
                               r->err);
}

/* y = x w^T + b for rows of x. */
static int linear(run *r, const at_nn_linear *l, const float *x, int rows, int in, int out, float *y)
{
    at_tensor xt, yt;
    CHECK(wrap(r, &xt, x, in, rows));
    int rc = out_view(r, out, rows, &yt);
    if (!rc) rc = at_op_matmul(r->be, &xt, &l->w, at_tensor_present(&l->b) ? &l->b : NULL, &yt, r->err);
    if (!rc) rc = at_tensor_download(r->be, &yt, y, (size_t)rows * out * sizeof(float), r->err);
    at_tensor_free(&xt);
    return rc;
}

/* x = norm(x), then act(x) unless AT_ACT_NONE; in place. */
static int norm_act(run *r, const at_nn_norm *n, float eps, at_act act, float *x, int rows, int cols)
{
    at_tensor xt, yt;
    CHECK(wrap(r, &xt, x, cols, rows));
    int rc = out_view(r, cols, rows, &yt);
    if (!rc && n)
        rc = at_op_layer_norm(r->be, &xt, &n->w, at_tensor_present(&n->b) ? &n->b : NULL, eps, &yt, r->err);
    if (!rc && act != AT_ACT_NONE) rc = at_op_act(r->be, act, n ? &yt : &xt, &yt, r->err);
    if (!rc) rc = at_tensor_download(r->be, &yt, x, (size_t)rows * cols * sizeof(float), r->err);
    at_tensor_free(&xt);
    return rc;
}

static void add_to(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Adds v (cols floats) to every row. */
static void add_row(float *x, const float *v, int rows, int cols)
{
    for (int t = 0; t < rows; t++) add_to(x + (size_t)t * cols, v, (size_t)cols);
}

/* The decoder's element-wise steps over its largest activations, in
 * chunks on the pool: y = leaky_relu(a / div) (b NULL), or y = a + b. */
typedef struct ew_job {
    float *y;
    const float *a, *b;
    size_t n;
    float div, slope;
    at_isa isa;
} ew_job;

enum { EW_CHUNK = 16384 };

static void ew_chunk(void *arg, int chunk, int ith)
{
    (void)ith;
    const ew_job *j = arg;
    size_t i0 = (size_t)chunk * EW_CHUNK, n = j->n - i0 < EW_CHUNK ? j->n - i0 : EW_CHUNK;
    if (!j->b)
        at_leaky_relu(j->isa, j->y + i0, j->a + i0, n, j->div, j->slope);
    else
        at_sum(j->isa, j->y + i0, j->a + i0, j->b + i0, n);
}

static void ew_run(run *r, ew_job *j)
{
    at_compute_run_pooled(r->cc, ew_chunk, j, (int)((j->n + EW_CHUNK - 1) / EW_CHUNK));
}

static void par_leaky(run *r, float *y, const float *x, size_t n, float div, float slope)
{
    ew_job j = {y, x, NULL, n, div, slope, at_compute_isa(r->cc)};
    ew_run(r, &j);
}

static void par_add(run *r, float *y, const float *a, const float *b, size_t n)
{
    ew_job j = {y, a, b, n, 1.0f, 0.0f, at_compute_isa(r->cc)};
    ew_run(r, &j);
}

/* y = the convolution of x (T rows of cin), then y += res (T_out rows
 * of cout, or NULL) and leaky ReLU with slope when leaky; *T_out its
 * rows.  Where the backend's tensors are host memory and y overlaps
 * neither x nor res, the operation writes y itself, the epilogue fused;
 * otherwise its output is downloaded into y and the epilogue follows. */
static int conv_ep(run *r, const vconv *cv, const float *x, int T, float *y, int *T_out, const float *res,
                   int leaky, float slope)
{
    at_conv1d_params p = {.kernel = cv->k,
                          .stride = cv->stride,
                          .padding = cv->pad,
                          .dilation = cv->dil,
                          .groups = cv->groups,
                          .prepared = cv->prepared};
    int To = at_conv1d_out_len(&p, T, cv->transposed) - cv->trim;
    if (To < 1) return at_err_set(r->err, AT_E_INVALID, "vits: %d steps too short for a convolution", T);
    size_t n_out = (size_t)To * cv->cout;
    int pointwise = cv->k == 1 && cv->groups == 1 && !cv->pad && cv->stride == 1 && !cv->transposed;
    int direct = !cv->trim && at_backend_host_memory(r->be) && !overlap(y, n_out, x, (size_t)T * cv->cin);
    int fused = direct && !pointwise && !(res && overlap(y, n_out, res, n_out));
    at_tensor xt, yt, rt = {0}, own = {0};
    CHECK(wrap(r, &xt, x, cv->cin, T));
    int rc = direct ? wrap(r, &own, y, cv->cout, To) : out_view(r, cv->cout, To + cv->trim, &yt);
    if (direct) yt = own;
    if (!rc && fused && res && !(rc = wrap(r, &rt, res, cv->cout, To))) p.residual = &rt;
    if (fused) {
        p.leaky = leaky;
        p.leaky_slope = slope;
    }
    const at_tensor *b = at_tensor_present(&cv->b) ? &cv->b : NULL;
    if (!rc) {
        if (pointwise)
            rc = at_op_matmul(r->be, &xt, &cv->w, b, &yt, r->err);
        else if (cv->transposed)
            rc = at_op_conv_transpose1d(r->be, &xt, &cv->w, b, &p, &yt, r->err);
        else
            rc = at_op_conv1d(r->be, &xt, &cv->w, b, &p, &yt, r->err);
    }
    if (!rc && !direct) {
        at_tensor part = at_tensor_view_rows(&yt, cv->trim, To);
        rc = at_tensor_download(r->be, &part, y, n_out * sizeof(float), r->err);
    }
    if (!rc && !fused) {
        if (res) par_add(r, y, y, res, n_out);
        if (leaky) par_leaky(r, y, y, n_out, 1.0f, slope);
    }
    at_tensor_free(&xt);
    at_tensor_free(&rt);
    at_tensor_free(&own);
    if (T_out) *T_out = To;
    return rc;
}

static int conv(run *r, const vconv *cv, const float *x, int T, float *y, int *T_out)
{
    return conv_ep(r, cv, x, T, y, T_out, NULL, 0, 0.0f);
}

/* out = b + w g: a speaker conditioning vector. */
static void cond_vec(const float *w, const float *b, const float *g, int out, int in, float *y)
{
    for (int o = 0; o < out; o++) {
        float s = 0;
        for (int i = 0; i < in; i++) s += w[(size_t)o * in + i] * g[i];
        y[o] = s + b[o];
    }
}

/* ---- text encoder -------------------------------------------------------- */

typedef struct attn_job {
    const float *q, *k, *v, *ek, *ev;
    float *o, *scores; /* scores: n floats per thread */
    int n, d, heads, hd, window, block;
} attn_job;

/* One head over a block of query rows: softmax(q k^T + q e_k[j - i]) and
 * its weighted sum of v plus of e_v[j - i], relative positions within the
 * window (transformers' VitsAttention; q already scaled). */
static void attn_chunk(void *arg, int chunk, int ith)
{
    const attn_job *J = arg;
    int blocks = (J->n + J->block - 1) / J->block, h = chunk / blocks, i0 = (chunk % blocks) * J->block;
    int i1 = i0 + J->block < J->n ? i0 + J->block : J->n, hd = J->hd, d = J->d, w = J->window;
    float *s = J->scores + (size_t)ith * J->n;
    for (int i = i0; i < i1; i++) {
        const float *qi = J->q + (size_t)i * d + h * hd;
        float mx = -INFINITY;
        for (int j = 0; j < J->n; j++) {
            const float *kj = J->k + (size_t)j * d + h * hd;
            float acc = 0;
            for (int e = 0; e < hd; e++) acc += qi[e] * kj[e];
            s[j] = acc;
        }
        if (J->ek) {
            int j0 = i - w < 0 ? 0 : i - w, j1 = i + w >= J->n ? J->n - 1 : i + w;
            for (int j = j0; j <= j1; j++) {
                const float *ej = J->ek + (size_t)(j - i + w) * hd;
                float acc = 0;
                for (int e = 0; e < hd; e++) acc += qi[e] * ej[e];
                s[j] += acc;
            }
        }
        for (int j = 0; j < J->n; j++) mx = s[j] > mx ? s[j] : mx;
        float sum = 0;
        for (int j = 0; j < J->n; j++) sum += (s[j] = expf(s[j] - mx));
        for (int j = 0; j < J->n; j++) s[j] /= sum;
        float *oi = J->o + (size_t)i * d + h * hd;
        for (int e = 0; e < hd; e++) oi[e] = 0;
        for (int j = 0; j < J->n; j++) {
            const float *vj = J->v + (size_t)j * d + h * hd;
            for (int e = 0; e < hd; e++) oi[e] += s[j] * vj[e];
        }
        if (J->ev) {
            int j0 = i - w < 0 ? 0 : i - w, j1 = i + w >= J->n ? J->n - 1 : i + w;
            float rel[512];
            for (int e0 = 0; e0 < hd; e0 += 512) {
                int ne = hd - e0 < 512 ? hd - e0 : 512;
                for (int e = 0; e < ne; e++) rel[e] = 0;
                for (int j = j0; j <= j1; j++) {
                    const float *ej = J->ev + (size_t)(j - i + w) * hd + e0;
                    for (int e = 0; e < ne; e++) rel[e] += s[j] * ej[e];
                }
                for (int e = 0; e < ne; e++) oi[e0 + e] += rel[e];
            }
        }
    }
}

/* hid: n rows of d (the encoder's output); stats: n rows of 2 flow (the
 * prior's means, then log-variances). */
static int text_encoder(run *r, const int *ids, int n, float *hid, float *stats)
{
    const cfg *c = r->c;
    const at_vits_model *m = r->m;
    int d = c->d, hd = d / c->heads, T;
    size_t nd = (size_t)n * d, wide = (size_t)n * (c->ffn > d ? c->ffn : d);
    int threads = at_compute_pooled_threads(r->cc);
    float *q = malloc(nd * sizeof *q), *k = malloc(nd * sizeof *k), *v = malloc(nd * sizeof *v);
    float *a = malloc(nd * sizeof *a), *f = malloc(wide * sizeof *f);
    float *sc = malloc((size_t)(threads > 0 ? threads : 1) * n * sizeof *sc);
    int rc = 0;
    if (!q || !k || !v || !a || !f || !sc) {
        rc = at_err_set(r->err, AT_E_NOMEM, "out of memory (%d tokens)", n);
        goto out;
    }
    at_tensor yt;
    if ((rc = out_view(r, d, n, &yt)) || (rc = at_op_get_rows(r->be, &m->embed, ids, n, &yt, r->err)) ||
        (rc = at_tensor_download(r->be, &yt, hid, nd * sizeof(float), r->err)))
        goto out;
    float emb_scale = (float)sqrt((double)d), q_scale = (float)pow((double)hd, -0.5);
    for (size_t i = 0; i < nd; i++) hid[i] *= emb_scale;
    for (int l = 0; l < c->layers && !rc; l++) {
        const enc_layer *e = &m->enc[l];
        if ((rc = linear(r, &e->q, hid, n, d, d, q)) || (rc = linear(r, &e->k, hid, n, d, d, k)) ||
            (rc = linear(r, &e->v, hid, n, d, d, v)))
            break;
        for (size_t i = 0; i < nd; i++) q[i] *= q_scale;
        attn_job J = {q, k, v, e->rel_k, e->rel_v, a, sc, n, d, c->heads, hd, c->window, 16};
        at_compute_run_pooled(r->cc, attn_chunk, &J, c->heads * ((n + 15) / 16));
        if ((rc = linear(r, &e->o, a, n, d, d, q))) break;
        add_to(hid, q, nd);
        if ((rc = norm_act(r, &e->ln1, c->ln_eps, AT_ACT_NONE, hid, n, d))) break;
        if ((rc = conv(r, &e->ff1, hid, n, f, &T)) || (rc = norm_act(r, NULL, 0, c->act, f, n, c->ffn)) ||
            (rc = conv(r, &e->ff2, f, n, q, &T)))
            break;
        add_to(hid, q, nd);
        rc = norm_act(r, &e->ln2, c->ln_eps, AT_ACT_NONE, hid, n, d);
    }
    if (!rc) rc = conv(r, &m->project, hid, n, stats, &T);
out:
    free(q);
    free(k);
    free(v);
    free(a);
    free(f);
    free(sc);
    return rc;
}

/* ---- duration ------------------------------------------------------------ */

/* x (n rows of d) through a dilated depth-separable stack, in place, with
 * g (n rows of d, or NULL) added first.  tmp: n * d floats. */
static int dds_run(run *r, const dds *D, float *x, const float *g, int n, float *tmp)
{
    const cfg *c = r->c;
    int d = c->d, T;
    size_t nd = (size_t)n * d;
    if (g) add_to(x, g, nd);
    for (int i = 0; i < c->ds_layers; i++) {
        /* depthwise: each channel its own k taps (host: one small loop) */
        const vconv *dw = &D->dw[i];
        for (int t = 0; t < n; t++) {
            float *y = tmp + (size_t)t * d;
            for (int ch = 0; ch < d; ch++) y[ch] = 0;
            for (int j = 0; j < dw->k; j++) {
                int ti = t + j * dw->dil - dw->pad;
                if (ti < 0 || ti >= n) continue;
                const float *xr = x + (size_t)ti * d;
                for (int ch = 0; ch < d; ch++) y[ch] += dw->hw[(size_t)ch * dw->k + j] * xr[ch];
            }
            for (int ch = 0; ch < d; ch++) y[ch] += dw->hb[ch];
        }
        CHECK(norm_act(r, &D->n1[i], 1e-5f, AT_ACT_GELU, tmp, n, d));
        CHECK(conv(r, &D->pw[i], tmp, n, tmp, &T));
        CHECK(norm_act(r, &D->n2[i], 1e-5f, AT_ACT_GELU, tmp, n, d));
        add_to(x, tmp, nd);
    }
    return 0;
}

static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* One value through the inverse of transformers' unconstrained rational-
 * quadratic spline: K bins, uw/uh K unnormalized widths and heights, ud
 * K - 1 inner derivatives; identity outside [-B, B]. */
static float spline_inverse(float x, const float *uw, const float *uh, const float *ud, int K, float B,
                            float *tmp)
{
    if (!(x >= -B && x <= B)) return x;
    float *cw = tmp, *ch = cw + K + 1, *wd = ch + K + 1, *ht = wd + K, *dv = ht + K;
    const float *un[2] = {uw, uh};
    float *cum[2] = {cw, ch}, *size[2] = {wd, ht};
    const float minb[2] = {(float)MIN_BIN_WIDTH, (float)MIN_BIN_HEIGHT};
    const float spread[2] = {(float)(1 - MIN_BIN_WIDTH * K), (float)(1 - MIN_BIN_HEIGHT * K)};
    for (int p = 0; p < 2; p++) {
        float mx = -INFINITY, sum = 0;
        for (int i = 0; i < K; i++) mx = un[p][i] > mx ? un[p][i] : mx;
        for (int i = 0; i < K; i++) sum += (size[p][i] = expf(un[p][i] - mx));
        cum[p][0] = 0;
        for (int i = 0; i < K; i++) {
            float s = minb[p] + spread[p] * (size[p][i] / sum);
            cum[p][i + 1] = cum[p][i] + s;
        }
        for (int i = 0; i <= K; i++) cum[p][i] = 2 * B * cum[p][i] + -B;
        cum[p][0] = -B;
        cum[p][K] = B;
        for (int i = 0; i < K; i++) size[p][i] = cum[p][i + 1] - cum[p][i];
    }
    const float edge = (float)log(exp(1 - MIN_DERIVATIVE) - 1);
    for (int i = 0; i <= K; i++)
        dv[i] = (float)MIN_DERIVATIVE + softplus(i == 0 || i == K ? edge : ud[i - 1]);
    /* the bin whose heights hold x (the last edge nudged up, as there) */
    int idx = -1;
    for (int i = 0; i <= K; i++) idx += x >= (i == K ? ch[K] + 1e-6f : ch[i]);
    idx = idx < 0 ? 0 : idx > K - 1 ? K - 1 : idx;
    float delta = ht[idx] / wd[idx], d0 = dv[idx], d1 = dv[idx + 1], h = ht[idx];
    float i1 = d0 + d1 - 2 * delta, i2 = x - ch[idx], i3 = i2 * i1;
    float a = h * (delta - d0) + i3, b = h * d0 - i3, cc = -delta * i2;
    float disc = b * b - 4 * a * cc;
    if (!(disc >= 0)) disc = 0; /* transformers raises; a root at the vertex instead */
    float root = (2 * cc) / (-b - sqrtf(disc));
    return root * wd[idx] + cw[idx];
}

/* z (n rows of 2) through VitsConvFlow in reverse, conditioned on g. */
static int convflow_inverse(run *r, const convflow *cf, float *z, const float *g, int n, float *h, float *tmp,
                            float *proj)
{
    const cfg *c = r->c;
    int K = c->bins, P = 3 * K - 1, T;
    float *first = tmp; /* n floats, then the spline's scratch */
    for (int t = 0; t < n; t++) first[t] = z[2 * t];
    CHECK(conv(r, &cf->pre, first, n, h, &T));
    CHECK(dds_run(r, &cf->dds, h, g, n, tmp));
    CHECK(conv(r, &cf->proj, h, n, proj, &T));
    float inv = (float)(1.0 / sqrt((double)c->d)), uw[1000], uh[1000];
    for (int t = 0; t < n; t++) {
        const float *p = proj + (size_t)t * P;
        for (int i = 0; i < K; i++) {
            uw[i] = p[i] * inv;
            uh[i] = p[K + i] * inv;
        }
        z[2 * t + 1] = spline_inverse(z[2 * t + 1], uw, uh, p + 2 * K, K, c->tail, tmp);
    }
    return 0;
}

/* Log-durations of n tokens from the encoder's output (n rows of d). */
static int duration(run *r, const float *hid, int n, const float *g, float noise, rng *gen, float *logdur)
{
    const cfg *c = r->c;
    const at_vits_model *m = r->m;
    int d = c->d, T;
    size_t nd = (size_t)n * d;
    int wide = c->stochastic ? (3 * c->bins - 1 > d ? 3 * c->bins - 1 : d) : c->dp_filter;
    float *x = malloc(nd * sizeof *x), *h = malloc(nd * sizeof *h);
    float *tmp = malloc(((size_t)n * (wide > d ? wide : d) + 8 * (size_t)c->bins + 16) * sizeof *tmp);
    float *proj = malloc((size_t)n * wide * sizeof *proj), *z = malloc(2 * (size_t)n * sizeof *z);
    float gv[8192];
    int rc = 0;
    if (!x || !h || !tmp || !proj || !z) {
        rc = at_err_set(r->err, AT_E_NOMEM, "out of memory (%d tokens)", n);
        goto out;
    }
    if (!c->stochastic) {
        memcpy(x, hid, nd * sizeof *x);
        if (g) {
            cond_vec(m->dp_cond_w, m->dp_cond_b, g, d, c->spk_dim, gv);
            add_row(x, gv, n, d);
        }
        int f = c->dp_filter;
        if ((rc = conv(r, &m->dp_c1, x, n, proj, &T)) ||
            (rc = norm_act(r, NULL, 0, AT_ACT_RELU, proj, n, f)) ||
            (rc = norm_act(r, &m->dp_n1, c->ln_eps, AT_ACT_NONE, proj, n, f)) ||
            (rc = conv(r, &m->dp_c2, proj, n, tmp, &T)) ||
            (rc = norm_act(r, NULL, 0, AT_ACT_RELU, tmp, n, f)) ||
            (rc = norm_act(r, &m->dp_n2, c->ln_eps, AT_ACT_NONE, tmp, n, f)))
            goto out;
        rc = conv(r, &m->dp_out, tmp, n, logdur, &T);
        goto out;
    }
    if ((rc = conv(r, &m->sdp_pre, hid, n, x, &T))) goto out;
    if (g) {
        cond_vec(m->dp_cond_w, m->dp_cond_b, g, d, c->spk_dim, gv);
        add_row(x, gv, n, d);
    }
    if ((rc = dds_run(r, &m->sdp_dds, x, NULL, n, tmp)) || (rc = conv(r, &m->sdp_proj, x, n, x, &T)))
        goto out;
    /* latents: 2 channels of noise (channel-major draws, as torch's shape) */
    for (int ch = 0; ch < 2; ch++)
        for (int t = 0; t < n; t++) z[2 * t + ch] = noise > 0 ? randn(gen) * noise : 0.0f;
    for (int f = c->dp_flows; f >= 2 && !rc; f--) {
        for (int t = 0; t < n; t++) {
            float s = z[2 * t];
            z[2 * t] = z[2 * t + 1];
            z[2 * t + 1] = s;
        }
        rc = convflow_inverse(r, &m->sdp_flows[f - 2], z, x, n, h, tmp, proj);
    }
    if (rc) goto out;
    /* the elementwise affine flow, after its flip: channel 0 comes from 1 */
    for (int t = 0; t < n; t++) logdur[t] = (z[2 * t + 1] - m->ea_t[0]) * expf(-m->ea_ls[0]);
out:
    free(x);
    free(h);
    free(tmp);
    free(proj);
    free(z);
    return rc;
}

/* ---- prior flows --------------------------------------------------------- */

/* A WaveNet layer's gate over rows of the input convolution's output hs
 * (T rows of 2 d), plus the conditioning g (2 d, or NULL): acts =
 * tanh(first half) * sigmoid(second half).  On the pool: tanh and exp
 * were a fifth of the flows' time on one thread. */
typedef struct gate_job {
    float *hs, *acts;
    const float *g;
    int T, d;
    at_isa isa;
} gate_job;

enum { GATE_ROWS = 16 };

static void gate_chunk(void *arg, int chunk, int ith)
{
    (void)ith;
    const gate_job *j = arg;
    int d = j->d, t1 = (chunk + 1) * GATE_ROWS < j->T ? (chunk + 1) * GATE_ROWS : j->T;
    for (int t = chunk * GATE_ROWS; t < t1; t++) {
        float *row = j->hs + (size_t)t * 2 * d, *ar = j->acts + (size_t)t * d;
        if (j->g) add_to(row, j->g, 2 * (size_t)d);
        at_tanh_sigmoid(j->isa, ar, row, row + d, d);
    }
}

/* h (T rows of d) through a WaveNet, out: its skip sum (T rows of d).
 * gv: the layers' conditioning (2 d per layer) or NULL. */
static int wavenet_run(run *r, const wavenet *wn, float *h, int T, const float *gv, float *out, float *hs,
                       float *acts)
{
    const cfg *c = r->c;
    int d = c->d, L = c->wn_layers, To;
    size_t td = (size_t)T * d;
    memset(out, 0, td * sizeof *out);
    for (int i = 0; i < L; i++) {
        CHECK(conv(r, &wn->in[i], h, T, hs, &To));
        gate_job gj = {hs, acts, gv ? gv + (size_t)i * 2 * d : NULL, T, d, at_compute_isa(r->cc)};
        at_compute_run_pooled(r->cc, gate_chunk, &gj, (T + GATE_ROWS - 1) / GATE_ROWS);
        CHECK(conv(r, &wn->rs[i], acts, T, hs, &To));
        for (int t = 0; t < T; t++) {
            const float *row = hs + (size_t)t * (i < L - 1 ? 2 : 1) * d;
            if (i < L - 1) {
                add_to(h + (size_t)t * d, row, (size_t)d);
                add_to(out + (size_t)t * d, row + d, (size_t)d);
            } else {
                add_to(out + (size_t)t * d, row, (size_t)d);
            }
        }
    }
    return 0;
}

/* z (T rows of flow) through the coupling flows in reverse. */
static int flows_inverse(run *r, float *z, int T, const float *g)
{
    const cfg *c = r->c;
    const at_vits_model *m = r->m;
    int F = c->flow, half = F / 2, d = c->d, To;
    size_t td = (size_t)T * d;
    float *half_buf = malloc((size_t)T * half * sizeof(float)), *h = malloc(td * sizeof(float));
    float *out = malloc(td * sizeof(float)), *hs = malloc(2 * td * sizeof(float));
    float *acts = malloc(td * sizeof(float));
    float *gv = g ? malloc((size_t)2 * d * c->wn_layers * sizeof(float)) : NULL;
    int rc = 0;
    if (!half_buf || !h || !out || !hs || !acts || (g && !gv)) {
        rc = at_err_set(r->err, AT_E_NOMEM, "out of memory (%d frames)", T);
        goto out;
    }
    for (int f = c->prior_flows - 1; f >= 0 && !rc; f--) {
        const coupling *cp = &m->flows[f];
        for (int t = 0; t < T; t++) {
            float *row = z + (size_t)t * F;
            for (int i = 0; i < half; i++) {
                float s = row[i];
                row[i] = row[F - 1 - i];
                row[F - 1 - i] = s;
            }
            memcpy(half_buf + (size_t)t * half, row, (size_t)half * sizeof(float));
        }
        if (g) cond_vec(cp->wn.cond_w, cp->wn.cond_b, g, 2 * d * c->wn_layers, c->spk_dim, gv);
        if ((rc = conv(r, &cp->pre, half_buf, T, h, &To)) ||
            (rc = wavenet_run(r, &cp->wn, h, T, gv, out, hs, acts)) ||
            (rc = conv(r, &cp->post, out, T, half_buf, &To)))
            break;
        for (int t = 0; t < T; t++) {
            float *row = z + (size_t)t * F + half;
            const float *mean = half_buf + (size_t)t * half;
            for (int i = 0; i < half; i++) row[i] = row[i] - mean[i];
        }
    }
out:
    free(half_buf);
    free(h);
    free(out);
    free(hs);
    free(acts);
    free(gv);
    return rc;
}

/* Rows [lo, hi) of the prior into z (rows of flow): each token's means
 * (stats: n rows of 2 flow) repeated over its frames, plus noise drawn row
 * after row, so that filling the rows in two calls draws what one would. */
static void prior_rows(const float *stats, const int *dur, int n, int F, float noise, rng *gen, float *z,
                       int lo, int hi)
{
    int t = 0, start = 0;
    for (int fr = lo; fr < hi; fr++) {
        while (t < n && fr >= start + dur[t]) start += dur[t++];
        if (t == n) break; /* no token has frames: the one frame stays silent */
        const float *mean = stats + (size_t)t * 2 * F, *logvar = mean + F;
        float *row = z + (size_t)fr * F;
        for (int i = 0; i < F; i++)
            row[i] = noise > 0 ? mean[i] + randn(gen) * expf(logvar[i]) * noise : mean[i];
    }
}

/* ---- decoder ------------------------------------------------------------- */

/* A buffer of B's five that is none of busy (NULL entries ignored). */
static float *free_buf(const dec_bufs *B, float *const *busy, int n_busy)
{
    float *all[5] = {B->x, B->h, B->t, B->res, B->sum};
    for (int i = 0; i < 5; i++) {
        int used = 0;
        for (int k = 0; k < n_busy; k++) used |= busy[k] == all[i];
        if (!used) return all[i];
    }
    return NULL; /* not reached: at most four are busy at once */
}

/* The rows [*lo, *hi) of a stage's n rows (per a frame, the first being
 * row origin of frame wa's samples) that frames [a, b) need with `need`
 * rows of context each side, within the n. */
static void rows_needed(int a, int b, int wa, int64_t per, int64_t origin, int need, int n, int64_t *lo,
                        int64_t *hi)
{
    *lo = (int64_t)(a - wa) * per - origin - need;
    *hi = (int64_t)(b - wa) * per - origin + need;
    if (*lo < 0) *lo = 0;
    if (*hi > n) *hi = n;
}

/* Samples of frames [a, b) of z (T rows of flow) into wave (b - a) hop,
 * from frames [a - ctx, b + ctx) within 0..T.  After each stage only the
 * samples that the later layers read for [a, b) go on (need_after): the
 * context a piece recomputes shrinks from ctx frames at the first stage
 * to a few samples at the last, where most of the work is.  In each
 * residual block the first convolution's leaky ReLU and the second's
 * residual connection run in the convolutions' epilogues; the buffers
 * change roles as they come free. */
static int decode_piece(run *r, const float *z, int T, int a, int b, const float *gv, dec_bufs *B,
                        float *wave)
{
    const cfg *c = r->c;
    const at_vits_model *m = r->m;
    int wa = a - m->ctx_frames < 0 ? 0 : a - m->ctx_frames,
        wb = b + m->ctx_frames > T ? T : b + m->ctx_frames;
    int n = wb - wa, ch = c->up_init, To;
    CHECK(conv(r, &m->dec_pre, z + (size_t)wa * c->flow, n, B->x, &To));
    if (gv) add_row(B->x, gv, n, ch);
    float *in = B->h; /* the next convolution's input */
    par_leaky(r, in, B->x, (size_t)n * ch, 1.0f, c->slope);
    /* rows of the current stage per frame, and the row of the stage's
     * samples where the buffer starts (from frame wa's first) */
    int64_t per = 1, origin = 0;
    for (int s = 0; s < c->n_up; s++) {
        CHECK(conv(r, &m->up[s], in, n, B->x, &To));
        n = To;
        ch = m->up[s].cout;
        per *= c->up_rate[s];
        origin *= c->up_rate[s];
        /* the rows this stage's blocks and the later layers read: the
         * frames of context the window carries for the upsampling are
         * mostly not needed from here on; moving the rows costs a pass,
         * worth it when an eighth of the stage's work goes */
        int64_t lo, hi;
        rows_needed(a, b, wa, per, origin, m->need_before[s], n, &lo, &hi);
        if ((lo + n - hi) * 8 >= n) {
            memmove(B->x, B->x + (size_t)lo * ch, (size_t)(hi - lo) * ch * sizeof *B->x);
            n = (int)(hi - lo);
            origin += lo;
        }
        size_t cnt = (size_t)n * ch;
        float *sum = NULL;
        for (int j = 0; j < c->n_kern; j++) {
            /* every block starts from the stage's input x */
            const vconv *cv = m->rb[s][j];
            float *x_kept = j + 1 < c->n_kern ? B->x : NULL, *cur = B->x;
            for (int i = 0; i < c->n_dil[j]; i++) {
                float *busy_h[3] = {cur, sum, x_kept};
                float *h = free_buf(B, busy_h, 3);
                par_leaky(r, h, cur, cnt, 1.0f, c->slope);
                float *busy_t[4] = {cur, sum, x_kept, h};
                float *t = free_buf(B, busy_t, 4);
                CHECK(conv_ep(r, &cv[2 * i], h, n, t, &To, NULL, 1, c->slope));
                float *busy_o[4] = {cur, sum, x_kept, t};
                float *out = free_buf(B, busy_o, 4);
                CHECK(conv_ep(r, &cv[2 * i + 1], t, n, out, &To, cur, 0, 0.0f));
                cur = out;
            }
            if (!sum)
                sum = cur;
            else
                par_add(r, sum, sum, cur, cnt);
        }
        /* the rows the later layers read (at a real end of the signal
         * the buffer's end is that end), the blocks' mean over them, then
         * the next convolution's leaky ReLU (transformers' default slope
         * 0.01 before conv_post) */
        rows_needed(a, b, wa, per, origin, m->need_after[s], n, &lo, &hi);
        float *busy_in[2] = {sum, B->x};
        in = free_buf(B, busy_in, 2);
        par_leaky(r, in, sum + (size_t)lo * ch, (size_t)(hi - lo) * ch, (float)c->n_kern,
                  s + 1 < c->n_up ? c->slope : 0.01f);
        n = (int)(hi - lo);
        origin += lo;
    }
    CHECK(conv(r, &m->dec_post, in, n, B->x, &To));
    int hop = m->hp.hop, off = (int)((int64_t)(a - wa) * hop - origin), len = (b - a) * hop;
    for (int i = 0; i < len; i++) wave[i] = tanhf(B->x[off + i]);
    return 0;
}

/* ---- synthesis ------------------------------------------------------------ */

static int check_params(const at_vits_model *m, const at_vits_params *p, int *max_frames, at_err *err)
{
    const at_vits_hparams *hp = &m->hp;
    if (!(p->noise_scale >= 0 && p->noise_scale <= 100) ||
        !(p->noise_scale_duration >= 0 && p->noise_scale_duration <= 100))
        return at_err_set(err, AT_E_INVALID, "vits: noise scales must be in 0..100");
    if (!(p->speaking_rate >= 1e-3f && p->speaking_rate <= 1e3f))
        return at_err_set(err, AT_E_INVALID, "vits: speaking rate %g outside 0.001..1000",
                          (double)p->speaking_rate);
    if (hp->num_speakers == 1 && p->speaker_id != 0 && p->speaker_id != -1)
        return at_err_set(err, AT_E_INVALID, "vits: speaker %d: the voice has one speaker (0)",
                          p->speaker_id);
    if (p->speaker_id < -1 || p->speaker_id >= hp->num_speakers)
        return at_err_set(err, AT_E_INVALID, "vits: speaker %d: the voice has speakers 0..%d", p->speaker_id,
                          hp->num_speakers - 1);
    int limit = MAX_SAMPLES / hp->hop;
    if (p->max_frames < 0 || p->max_frames > limit)
        return at_err_set(err, AT_E_INVALID, "vits: max_frames %d outside 0..%d", p->max_frames, limit);
    int64_t def = ((int64_t)AT_VITS_DEFAULT_MAX_SECONDS * hp->sampling_rate + hp->hop - 1) / hp->hop;
    *max_frames = p->max_frames ? p->max_frames : (int)(def < limit ? def : limit);
    return 0;
}

/* The synthesis; early: run the flows over the first piece's frames
 * first, so that it goes out before they have run over the rest. */
static int synthesize(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                      const at_vits_params *p, at_vits_sink sink, void *user, size_t *n_wave, int *durations,
                      at_vits_timing *tm, int early, at_err *err)
{
    at_err tmp_err;
    if (!err) err = &tmp_err;
    if (!m || !pool || !sink) return at_err_set(err, AT_E_INVALID, "vits: no model, pool or sink");
    if (!ids || n < 1) return at_err_set(err, AT_E_INVALID, "vits: no tokens to speak");
    if (n > AT_VITS_MAX_TOKENS)
        return at_err_set(err, AT_E_TOO_LARGE, "vits: %d tokens, at most %d", n, AT_VITS_MAX_TOKENS);
    const cfg *c = &m->c;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return at_err_set(err, AT_E_INVALID, "vits: token %d outside the vocabulary of %d", ids[i],
                              c->vocab);
    at_vits_params def;
    if (!p) {
        at_vits_params_default(m, &def);
        p = &def;
    }
    int max_frames = 0;
    CHECK(check_params(m, p, &max_frames, err));
    const float *g =
        c->speakers > 1 && p->speaker_id >= 0 ? m->spk + (size_t)p->speaker_id * c->spk_dim : NULL;

    run r = {m, c, NULL, NULL, {0}, 0, err};
    rng gen = {p->seed, 0, 0};
    int rc = 0, F = c->flow, d = c->d, frames = 0;
    float *hid = NULL, *stats = NULL, *logdur = NULL, *z = NULL, *head = NULL, *wave = NULL, *gv = NULL;
    int *dur = NULL;
    double t0 = at_now_s(), t1;
    workspace *ws = ws_take(m->cache, pool, err);
    if (!ws) return code_of(err);
    r.cc = ws->cc;
    r.be = ws->be;
    r.out = ws->out;
    r.out_cap = ws->out_cap;
    hid = malloc((size_t)n * d * sizeof *hid);
    stats = malloc((size_t)n * 2 * F * sizeof *stats);
    logdur = malloc((size_t)n * sizeof *logdur);
    dur = malloc((size_t)n * sizeof *dur);
    if (!hid || !stats || !logdur || !dur) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (%d tokens)", n);
        goto out;
    }
    if ((rc = text_encoder(&r, ids, n, hid, stats))) goto out;
    t1 = at_now_s();
    if (tm) tm->encoder += t1 - t0;
    t0 = t1;

    if ((rc = duration(&r, hid, n, g, p->noise_scale_duration, &gen, logdur))) goto out;
    /* frames per token: ceil(exp(log duration) / speaking rate), in f32 */
    float length_scale = (float)(1.0 / (double)p->speaking_rate);
    int64_t total = 0;
    for (int t = 0; t < n; t++) {
        float e = ceilf(expf(logdur[t]) * length_scale);
        if (!(e >= 0)) {
            rc = at_err_set(err, AT_E_ENGINE, "vits: the duration predictor gave token %d no finite length",
                            t);
            goto out;
        }
        if (e > (float)max_frames || (total += (int64_t)e) > max_frames) {
            rc = at_err_set(err, AT_E_TOO_LARGE,
                            "vits: the predicted durations exceed %d frames (%.1f s of audio, the limit)",
                            max_frames, (double)max_frames * m->hp.hop / c->sr);
            goto out;
        }
        dur[t] = (int)e;
    }
    frames = total < 1 ? 1 : (int)total;
    if (durations) memcpy(durations, dur, (size_t)n * sizeof *dur);
    size_t samples = (size_t)frames * m->hp.hop;
    if (n_wave) *n_wave = samples;
    t1 = at_now_s();
    if (tm) tm->duration += t1 - t0;
    t0 = t1;

    /* The prior through the flows.  Early, the flows first run over the
     * frames the decoder's first two pieces read (exact: their length and
     * the decoder's context) and flow_ctx more, into head, of which the
     * first exact frames are the whole signal's; the rest waits until a
     * piece needs it, the third: run after the first, it made the second
     * late on one thread.  Otherwise (or when that covers every frame) in
     * place over all frames at once. */
    int first = frames <= 2 * FIRST_PIECE ? frames : FIRST_PIECE;
    int second = first < frames ? piece_len(frames, first, first) : 0;
    int exact = early && first + second < frames - m->ctx_frames ? first + second + m->ctx_frames : frames;
    int span = exact < frames - m->flow_ctx ? exact + m->flow_ctx : frames;
    if (!(z = calloc((size_t)frames * F, sizeof *z)) ||
        (span < frames && !(head = malloc((size_t)span * F * sizeof *head)))) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (%d frames)", frames);
        goto out;
    }
    prior_rows(stats, dur, n, F, p->noise_scale, &gen, z, 0, span);
    if (head) {
        memcpy(head, z, (size_t)span * F * sizeof *head);
        rc = flows_inverse(&r, head, span, g);
    } else {
        rc = flows_inverse(&r, z, frames, g);
    }
    if (rc) goto out;
    t1 = at_now_s();
    if (tm) tm->flow += t1 - t0;
    t0 = t1;

    /* the decoder, a piece at a time */
    int most = PIECE + PIECE / 2 < frames ? PIECE + PIECE / 2 : frames;
    size_t per = (size_t)(most + 2 * m->ctx_frames) * m->dec_per_frame;
    rc = ws_bufs(ws, per);
    wave = malloc((size_t)(most > frames ? frames : most) * m->hp.hop * sizeof *wave);
    if (g && !(gv = malloc((size_t)c->up_init * sizeof *gv))) rc = AT_E_NOMEM;
    if (rc || !wave) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (decoder of %d frames)", most);
        goto out;
    }
    if (g) cond_vec(m->dec_cond_w, m->dec_cond_b, g, c->up_init, c->spk_dim, gv);
    double rest = 0;
    for (int a = 0, len = 0; a < frames && !rc; a += len) {
        len = piece_len(frames, a, first);
        if (head && a + len + m->ctx_frames > exact) {
            /* the rest of the flows, in place from flow_ctx frames before
             * the first frame head lacks (z holds the prior up to span,
             * its noise continuing where head's stopped), then head's
             * exact frames over the inexact start of that */
            double t2 = at_now_s();
            int from = exact > m->flow_ctx ? exact - m->flow_ctx : 0;
            prior_rows(stats, dur, n, F, p->noise_scale, &gen, z, span, frames);
            rc = flows_inverse(&r, z + (size_t)from * F, frames - from, g);
            memcpy(z, head, (size_t)exact * F * sizeof *z);
            free(head);
            head = NULL;
            rest += at_now_s() - t2;
            if (rc) break;
        }
        rc = decode_piece(&r, head ? head : z, frames, a, a + len, gv, &ws->B, wave);
        if (!rc) rc = sink(user, wave, (size_t)len * m->hp.hop, err);
    }
    if (tm) {
        tm->flow += rest;
        tm->decoder += at_now_s() - t0 - rest;
    }
out:
    ws->out = r.out;
    ws->out_cap = r.out_cap;
    ws_give(m->cache, ws);
    free(hid);
    free(stats);
    free(logdur);
    free(dur);
    free(z);
    free(head);
    free(wave);
    free(gv);
    return rc;
}

int at_vits_synthesize_timed(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                             const at_vits_params *p, at_vits_sink sink, void *user, size_t *n_wave,
                             int *durations, at_vits_timing *tm, at_err *err)
{
    return synthesize(m, pool, ids, n, p, sink, user, n_wave, durations, tm, 1, err);
}

int at_vits_synthesize_stream(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                              const at_vits_params *p, at_vits_sink sink, void *user, size_t *n_wave,
                              int *durations, at_err *err)
{
    return at_vits_synthesize_timed(m, pool, ids, n, p, sink, user, n_wave, durations, NULL, err);
}

typedef struct collect {
    float *buf;
    size_t n, total;
} collect;

/* The whole waveform in one buffer: its length is known before the first
 * piece arrives. */
static int collect_sink(void *user, const float *x, size_t n, at_err *err)
{
    collect *c = user;
    if (!c->buf && !(c->buf = malloc((c->total ? c->total : 1) * sizeof *c->buf)))
        return at_err_set(err, AT_E_NOMEM, "out of memory (%zu samples)", c->total);
    if (n > c->total - c->n) return at_err_set(err, AT_E_ENGINE, "vits: more samples than announced");
    memcpy(c->buf + c->n, x, n * sizeof *x);
    c->n += n;
    return 0;
}

int at_vits_synthesize(const at_vits_model *m, at_compute *pool, const int *ids, int n,
                       const at_vits_params *p, float **wave, size_t *n_wave, int *durations, at_err *err)
{
    at_err tmp_err;
    if (!err) err = &tmp_err;
    if (!wave || !n_wave) return at_err_set(err, AT_E_INVALID, "vits: nowhere to put the waveform");
    collect c = {0};
    *wave = NULL;
    *n_wave = 0;
    /* nobody listens before the end: the flows over all frames at once */
    int rc = synthesize(m, pool, ids, n, p, collect_sink, &c, &c.total, durations, NULL, 0, err);
    if (!rc && c.n != c.total) rc = at_err_set(err, AT_E_ENGINE, "vits: %zu of %zu samples", c.n, c.total);
    if (rc) {
        free(c.buf);
        return rc;
    }
    *wave = c.buf;
    *n_wave = c.n;
    return 0;
}
