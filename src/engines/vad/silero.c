/* silero.c - the Silero VAD network in C (silero.h). */
#include "engines/vad/silero.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/vad/onnx.h"

#define H               AT_SILERO_HIDDEN
#define NFFT            256 /* filter_length */
#define HOP             128
#define NBIN            (NFFT / 2 + 1)                        /* 129 */
#define NIN             (AT_SILERO_CONTEXT + AT_SILERO_CHUNK) /* 576 samples in */
#define PAD             64                                    /* reflection, right side */
#define NFRAMES         ((NIN + PAD - NFFT) / HOP + 1)        /* 4 */
#define MAX_MODEL_BYTES (16u << 20)                           /* the real files are 1.8-2.3 MB */

/* One Conv1d(kernel 3, padding 1) layer. */
typedef struct conv {
    int cin, cout, stride;
    float *w; /* [cout][cin][3] */
    float *b; /* [cout] */
} conv;

struct at_silero {
    float *basis; /* [2 * NBIN][NFFT]: real rows, then imaginary rows */
    conv enc[4];
    float *w_ih, *w_hh, *b; /* [4H][H], [4H][H], b_ih + b_hh [4H] */
    float *dec_w;           /* [H] */
    float dec_b;
    void *mem; /* one allocation holding all the arrays above */
};

struct at_silero_stream {
    const at_silero *m;
    float h[H], c[H];
    float ctx[AT_SILERO_CONTEXT];
    /* scratch */
    float x[NIN + PAD];
    float mag[NBIN * NFRAMES];
    float a[H * NFRAMES], bb[H * NFRAMES];
    float gates[4 * H];
};

/* The layers' output widths for NFRAMES input frames, and the
 * encoder geometry of v5/v6 (strides 1, 2, 2, 1). */
static const int k_enc_in[4] = {NBIN, 128, 64, 64};
static const int k_enc_out[4] = {128, 64, 64, 128};
static const int k_enc_stride[4] = {1, 2, 2, 1};

/* Finds prefix+suffix in the given (sub)graph with exactly the given dims. */
static const at_onnx_tensor *need(const at_onnx *o, const char *graph, const char *prefix, const char *suffix,
                                  int ndims, const int64_t *dims, at_err *err)
{
    char name[1024];
    snprintf(name, sizeof name, "%s%s", prefix, suffix);
    const at_onnx_tensor *t = at_onnx_find(o, graph, name);
    int ok = t && t->f && t->ndims == ndims;
    for (int d = 0; ok && d < ndims; d++) ok = t->dims[d] == dims[d];
    if (!ok) {
        char want[96] = "";
        size_t len = 0;
        for (int d = 0; d < ndims && len < sizeof want; d++)
            len +=
                (size_t)snprintf(want + len, sizeof want - len, "%s%lld", d ? "x" : "", (long long)dims[d]);
        at_err_set(err, AT_E_CORRUPT,
                   "silero: the model has no float tensor %s of shape %s "
                   "(not a Silero VAD v5/v6 file?)",
                   suffix, want);
        return NULL;
    }
    return t;
}

/* The branch may hold only the ops this file computes, in this order,
 * plus shape plumbing (constants, casts, reshapes, the exporter's If
 * wrappers): any other op means another network, refused rather than
 * misread.  (Shapes are checked tensor by tensor when the weights are
 * taken.) */
static int check_ops(const at_onnx *o, const char *graph, at_err *err)
{
    static const char *const want[] = {"Pad",  "Conv", "Pow",  "Pow",     "Add",       "Sqrt", "Conv",
                                       "Relu", "Conv", "Relu", "Conv",    "Relu",      "Conv", "Relu",
                                       "LSTM", "Relu", "Conv", "Sigmoid", "ReduceMean"};
    static const char *const plumbing[] = {
        "Constant", "ConstantOfShape", "Cast",    "Shape",     "Size",  "Gather", "Equal",     "Not",
        "If",       "Identity",        "Reshape", "Transpose", "Slice", "Concat", "Unsqueeze", "Squeeze"};
    size_t k = 0, glen = strlen(graph);
    for (size_t i = 0; i < at_onnx_n_nodes(o); i++) {
        const at_onnx_node *n = at_onnx_node_at(o, i);
        if (strncmp(n->graph, graph, glen) != 0 || (n->graph[glen] && n->graph[glen] != '/')) continue;
        int skip = 0;
        for (size_t c = 0; c < sizeof plumbing / sizeof *plumbing && !skip; c++)
            skip = strcmp(n->op, plumbing[c]) == 0;
        /* the exporter emits the LSTM twice, in the two arms of an If on
         * whether a state was passed: one LSTM */
        if (skip || (k > 0 && strcmp(n->op, "LSTM") == 0 && strcmp(want[k - 1], "LSTM") == 0)) continue;
        if (k >= sizeof want / sizeof *want || strcmp(n->op, want[k]) != 0)
            return at_err_set(err, AT_E_UNSUPPORTED,
                              "silero: unexpected %s node in the 16 kHz branch "
                              "(a layout this engine does not implement)",
                              n->op);
        k++;
    }
    if (k != sizeof want / sizeof *want)
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "silero: the 16 kHz branch has %zu of the %zu expected layers", k,
                          sizeof want / sizeof *want);
    return 0;
}

at_silero *at_silero_load(const char *path, at_err *err)
{
    at_onnx *o = at_onnx_load(path, MAX_MODEL_BYTES, err);
    if (!o) return NULL;
    at_silero *m = calloc(1, sizeof *m);
    if (!m) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    /* The 16 kHz weights: found by the STFT basis's shape; the other
     * tensors share its name prefix (the export inlines both branches). */
    const at_onnx_tensor *basis = NULL;
    for (size_t i = 0; i < at_onnx_n_tensors(o) && !basis; i++) {
        const at_onnx_tensor *t = at_onnx_tensor_at(o, i);
        const char *suf = "stft.forward_basis_buffer";
        size_t nl = strlen(t->name), sl = strlen(suf);
        if (t->f && t->ndims == 3 && t->dims[0] == 2 * NBIN && t->dims[1] == 1 && t->dims[2] == NFFT &&
            nl >= sl && strcmp(t->name + nl - sl, suf) == 0)
            basis = t;
    }
    if (!basis) {
        at_err_set(err, AT_E_CORRUPT,
                   "silero: %s has no 16 kHz STFT basis (258x1x256); "
                   "expected Silero VAD v5 or v6 (v4 files are not supported)",
                   path);
        goto fail;
    }
    char prefix[256];
    size_t pl = strlen(basis->name) - strlen("stft.forward_basis_buffer");
    if (pl >= sizeof prefix) {
        at_err_set(err, AT_E_CORRUPT, "silero: tensor names too long");
        goto fail;
    }
    memcpy(prefix, basis->name, pl);
    prefix[pl] = 0;
    if (check_ops(o, basis->graph, err) < 0) goto fail;

    const at_onnx_tensor *ew[4], *eb[4];
    for (int l = 0; l < 4; l++) {
        char sw[64], sb[64];
        snprintf(sw, sizeof sw, "encoder.%d.reparam_conv.weight", l);
        snprintf(sb, sizeof sb, "encoder.%d.reparam_conv.bias", l);
        int64_t dw[3] = {k_enc_out[l], k_enc_in[l], 3}, db[1] = {k_enc_out[l]};
        if (!(ew[l] = need(o, basis->graph, prefix, sw, 3, dw, err)) ||
            !(eb[l] = need(o, basis->graph, prefix, sb, 1, db, err)))
            goto fail;
    }
    int64_t d_w[2] = {4 * H, H}, d_b[1] = {4 * H}, d_dw[3] = {1, H, 1}, d_db[1] = {1};
    const at_onnx_tensor *wih, *whh, *bih, *bhh, *dw, *db;
    if (!(wih = need(o, basis->graph, prefix, "decoder.rnn.weight_ih", 2, d_w, err)) ||
        !(whh = need(o, basis->graph, prefix, "decoder.rnn.weight_hh", 2, d_w, err)) ||
        !(bih = need(o, basis->graph, prefix, "decoder.rnn.bias_ih", 1, d_b, err)) ||
        !(bhh = need(o, basis->graph, prefix, "decoder.rnn.bias_hh", 1, d_b, err)) ||
        !(dw = need(o, basis->graph, prefix, "decoder.decoder.2.weight", 3, d_dw, err)) ||
        !(db = need(o, basis->graph, prefix, "decoder.decoder.2.bias", 1, d_db, err)))
        goto fail;

    /* copy everything into one block: the ONNX parse is freed below */
    size_t total = basis->n + wih->n + whh->n + bih->n + H;
    for (int l = 0; l < 4; l++) total += ew[l]->n + eb[l]->n;
    float *p = malloc(total * sizeof *p);
    if (!p) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    m->mem = p;
#define TAKE(dst, t) (memcpy(p, (t)->f, (t)->n * sizeof *p), (dst) = p, p += (t)->n)
    TAKE(m->basis, basis);
    for (int l = 0; l < 4; l++) {
        m->enc[l].cin = k_enc_in[l];
        m->enc[l].cout = k_enc_out[l];
        m->enc[l].stride = k_enc_stride[l];
        TAKE(m->enc[l].w, ew[l]);
        TAKE(m->enc[l].b, eb[l]);
    }
    TAKE(m->w_ih, wih);
    TAKE(m->w_hh, whh);
    TAKE(m->b, bih);
#undef TAKE
    for (int i = 0; i < 4 * H; i++) m->b[i] += bhh->f[i];
    m->dec_w = p;
    memcpy(m->dec_w, dw->f, H * sizeof *p);
    m->dec_b = db->f[0];
    at_onnx_free(o);
    return m;
fail:
    at_onnx_free(o);
    at_silero_free(m);
    return NULL;
}

void at_silero_free(at_silero *m)
{
    if (!m) return;
    free(m->mem);
    free(m);
}

at_silero_stream *at_silero_stream_new(const at_silero *m, at_err *err)
{
    at_silero_stream *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    return s;
}

void at_silero_stream_free(at_silero_stream *s) { free(s); }

void at_silero_stream_reset(at_silero_stream *s)
{
    memset(s->h, 0, sizeof s->h);
    memset(s->c, 0, sizeof s->c);
    memset(s->ctx, 0, sizeof s->ctx);
}

void at_silero_stream_state(const at_silero_stream *s, float out[2 * H])
{
    memcpy(out, s->h, sizeof s->h);
    memcpy(out + H, s->c, sizeof s->c);
}

/* out[cout][tout] = relu(b + sum w[co][ci][k] * in[ci][t*stride + k - 1]) */
static int conv_relu(const conv *c, const float *in, int tin, float *out)
{
    int tout = (tin + 2 - 3) / c->stride + 1;
    for (int co = 0; co < c->cout; co++)
        for (int t = 0; t < tout; t++) {
            float acc = c->b[co];
            const float *w = c->w + (size_t)co * c->cin * 3;
            for (int k = 0; k < 3; k++) {
                int ti = t * c->stride + k - 1;
                if (ti < 0 || ti >= tin) continue;
                for (int ci = 0; ci < c->cin; ci++) acc += w[ci * 3 + k] * in[ci * tin + ti];
            }
            out[co * tout + t] = acc > 0 ? acc : 0;
        }
    return tout;
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

float at_silero_stream_prob(at_silero_stream *s, const float *chunk)
{
    const at_silero *m = s->m;
    float *x = s->x;
    memcpy(x, s->ctx, sizeof s->ctx);
    memcpy(x + AT_SILERO_CONTEXT, chunk, AT_SILERO_CHUNK * sizeof *x);
    memcpy(s->ctx, chunk + AT_SILERO_CHUNK - AT_SILERO_CONTEXT, sizeof s->ctx);
    for (int k = 0; k < PAD; k++) x[NIN + k] = x[NIN - 2 - k]; /* reflect, edge excluded */

    /* STFT magnitudes, [bin][frame] */
    for (int f = 0; f < NBIN; f++)
        for (int t = 0; t < NFRAMES; t++) {
            const float *wr = m->basis + (size_t)f * NFFT;
            const float *wi = m->basis + (size_t)(f + NBIN) * NFFT;
            const float *xs = x + t * HOP;
            float re = 0, im = 0;
            for (int k = 0; k < NFFT; k++) {
                re += wr[k] * xs[k];
                im += wi[k] * xs[k];
            }
            s->mag[f * NFRAMES + t] = sqrtf(re * re + im * im);
        }

    int t = conv_relu(&m->enc[0], s->mag, NFRAMES, s->a);
    t = conv_relu(&m->enc[1], s->a, t, s->bb);
    t = conv_relu(&m->enc[2], s->bb, t, s->a);
    t = conv_relu(&m->enc[3], s->a, t, s->bb); /* t == 1: the LSTM input is [H] */

    /* LSTM cell, PyTorch gate order: input, forget, cell, output */
    const float *in = s->bb;
    for (int g = 0; g < 4 * H; g++) {
        const float *wi = m->w_ih + (size_t)g * H, *wh = m->w_hh + (size_t)g * H;
        float acc = m->b[g];
        for (int k = 0; k < H; k++) acc += wi[k] * in[k] + wh[k] * s->h[k];
        s->gates[g] = acc;
    }
    float out = m->dec_b;
    for (int k = 0; k < H; k++) {
        float ig = sigmoidf(s->gates[k]), fg = sigmoidf(s->gates[H + k]);
        float cg = tanhf(s->gates[2 * H + k]), og = sigmoidf(s->gates[3 * H + k]);
        s->c[k] = fg * s->c[k] + ig * cg;
        s->h[k] = og * tanhf(s->c[k]);
        out += m->dec_w[k] * (s->h[k] > 0 ? s->h[k] : 0);
    }
    (void)t;
    return sigmoidf(out);
}
