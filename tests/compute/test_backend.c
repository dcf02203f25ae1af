/* test_backend.c - the compute interface (compute/backend.h) on every
 * backend: every operation against a direct double-precision evaluation
 * of its definition (PyTorch's, for the convolutions), matrix products
 * with each weight type, views and strides, batched attention against one
 * sequence at a time, and the shape checks that keep a backend from
 * reading outside a tensor.  The CUDA backend runs the same tests when
 * the build has it and a GPU is present; otherwise they are skipped with
 * the reason. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compute/backend.h"
#include "compute/kernels.h"
#include "nn/layers.h"

typedef struct {
    at_compute *pool;
    at_backend *be; /* NULL: the backend is not here (skip) */
    double tol;     /* of products with f16/bf16/quantized weights */
    at_err why;
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    f->pool = at_compute_new(2, &f->why);
    f->be = at_backend_cpu_new(f->pool, &f->why);
    f->tol = 1e-5;
    *st = f;
    return f->be ? 0 : -1;
}

/* The CUDA backend computes products of f16 and bf16 values with f32
 * sums: issue 14's tolerance of 2e-2. */
static int setup_cuda(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    f->be = at_backend_cuda_new(0, 0, &f->why);
    f->tol = 2e-2;
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    at_backend_free(f->be);
    at_compute_free(f->pool);
    free(f);
    return 0;
}

/* The fixture's backend, or the test is skipped with the reason. */
static at_backend *backend(void **st)
{
    fixture *f = *st;
    if (!f->be) {
        print_message("skipped: %s\n", f->why.msg);
        skip();
    }
    return f->be;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0) - 1.0f;
}

static float *rand_vec(size_t n)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

/* A new f32 tensor of rows x cols holding data (or zeros). */
static at_tensor mat(at_backend *be, int rows, int cols, const float *data)
{
    at_tensor t;
    at_err err = {0};
    assert_int_equal(at_tensor_new_2d(be, &t, AT_DT_F32, cols, rows, &err), 0);
    if (data) assert_int_equal(at_tensor_upload(be, &t, data, (size_t)rows * cols * sizeof(float), &err), 0);
    return t;
}

static float *get(at_backend *be, const at_tensor *t)
{
    size_t n = (size_t)at_tensor_rows(t) * at_tensor_cols(t);
    float *o = malloc(n * sizeof *o);
    at_err err = {0};
    assert_int_equal(at_tensor_download(be, t, o, n * sizeof *o, &err), 0);
    return o;
}

static void near(const float *got, const double *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i]))))
            fail_msg("%s: element %zu is %.7g, expected %.7g", what, i, got[i], want[i]);
}

/* ----------------------------------------------------------- convolution */

/* PyTorch's Conv1d on time-major x [T][Cin], weight [Cout][Cin/g][K]. */
static double *conv_ref(const float *x, int T, int Cin, const float *w, const float *b, int Cout,
                        const at_conv1d_params *p, int To)
{
    double *y = calloc((size_t)To * Cout, sizeof *y);
    int cig = Cin / p->groups, cog = Cout / p->groups;
    for (int t = 0; t < To; t++)
        for (int co = 0; co < Cout; co++) {
            int g = co / cog;
            double s = b ? b[co] : 0;
            for (int ci = 0; ci < cig; ci++)
                for (int k = 0; k < p->kernel; k++) {
                    int ti = t * p->stride - p->padding + k * p->dilation;
                    if (ti >= 0 && ti < T)
                        s += (double)x[(size_t)ti * Cin + g * cig + ci] *
                             w[((size_t)co * cig + ci) * p->kernel + k];
                }
            y[(size_t)t * Cout + co] = s;
        }
    return y;
}

/* PyTorch's ConvTranspose1d: weight [Cin][Cout/g][K]; input step t reaches
 * output t*stride - pad + k*dil. */
static double *convt_ref(const float *x, int T, int Cin, const float *w, const float *b, int Cout,
                         const at_conv1d_params *p, int To)
{
    double *y = calloc((size_t)To * Cout, sizeof *y);
    int cig = Cin / p->groups, cog = Cout / p->groups;
    for (int t = 0; t < To; t++)
        for (int co = 0; co < Cout; co++) y[(size_t)t * Cout + co] = b ? b[co] : 0;
    for (int t = 0; t < T; t++)
        for (int ci = 0; ci < Cin; ci++) {
            int g = ci / cig;
            for (int c = 0; c < cog; c++)
                for (int k = 0; k < p->kernel; k++) {
                    int to = t * p->stride - p->padding + k * p->dilation;
                    if (to >= 0 && to < To)
                        y[(size_t)to * Cout + g * cog + c] +=
                            (double)x[(size_t)t * Cin + ci] * w[((size_t)ci * cog + c) * p->kernel + k];
                }
        }
    return y;
}

/* Convolution parameters: kernel, stride, padding, dilation, groups,
 * output padding. */
static at_conv1d_params params(int k, int s, int pad, int dil, int g, int out_pad)
{
    return (at_conv1d_params){
        .kernel = k, .stride = s, .padding = pad, .dilation = dil, .groups = g, .output_padding = out_pad};
}

static void conv_case(at_backend *be, int transposed, int T, int Cin, int Cout, at_conv1d_params p,
                      at_dtype wt)
{
    at_err err = {0};
    int cig = Cin / p.groups, cog = Cout / p.groups;
    int wrows = transposed ? Cin : Cout, wcols = (transposed ? cog : cig) * p.kernel;
    float *x = rand_vec((size_t)T * Cin), *w = rand_vec((size_t)wrows * wcols), *b = rand_vec((size_t)Cout);
    int To = at_conv1d_out_len(&p, T, transposed);
    assert_true(To > 0);
    /* weights stored in the type under test; the reference sees the same
     * rounded values */
    size_t rb = at_dtype_row_bytes(wt, wcols);
    unsigned char *wq = malloc((size_t)wrows * rb);
    for (int r = 0; r < wrows; r++) {
        at_quant_row(wt, w + (size_t)r * wcols, wq + (size_t)r * rb, wcols);
        at_dequant_row(wt, wq + (size_t)r * rb, w + (size_t)r * wcols, wcols);
    }
    int64_t ne[2] = {wcols, wrows};
    at_tensor tw, tx = mat(be, T, Cin, x), tb = mat(be, 1, Cout, b), ty = mat(be, To, Cout, NULL);
    assert_int_equal(at_tensor_from_host(be, &tw, wt, 2, ne, wq, (size_t)wrows * rb, &err), 0);
    int rc = transposed ? at_op_conv_transpose1d(be, &tx, &tw, &tb, &p, &ty, &err)
                        : at_op_conv1d(be, &tx, &tw, &tb, &p, &ty, &err);
    if (rc) fail_msg("conv: %s", err.msg);
    double *ref =
        transposed ? convt_ref(x, T, Cin, w, b, Cout, &p, To) : conv_ref(x, T, Cin, w, b, Cout, &p, To);
    float *y = get(be, &ty);
    near(y, ref, (size_t)To * Cout, 1e-4, transposed ? "conv_transpose1d" : "conv1d");
    free(y);
    /* the same with the kernel prepared once (at_conv1d_prepare) */
    at_tensor tp;
    if (at_conv1d_prepare(be, &tw, &p, transposed, &tp, &err)) fail_msg("prepare: %s", err.msg);
    assert_int_equal(tp.type, AT_DT_F32);
    assert_int_equal(at_tensor_rows(&tp), wrows);
    assert_int_equal(at_tensor_cols(&tp), wcols);
    /* the unprepared kernel is refused as prepared: it is not f32 */
    at_conv1d_params pp = p;
    pp.prepared = 1;
    if (wt != AT_DT_F32)
        assert_int_equal(transposed ? at_op_conv_transpose1d(be, &tx, &tw, &tb, &pp, &ty, &err)
                                    : at_op_conv1d(be, &tx, &tw, &tb, &pp, &ty, &err),
                         AT_E_INVALID);
    rc = transposed ? at_op_conv_transpose1d(be, &tx, &tp, &tb, &pp, &ty, &err)
                    : at_op_conv1d(be, &tx, &tp, &tb, &pp, &ty, &err);
    if (rc) fail_msg("prepared conv: %s", err.msg);
    y = get(be, &ty);
    near(y, ref, (size_t)To * Cout, 1e-4, transposed ? "prepared conv_transpose1d" : "prepared conv1d");
    free(y);
    /* the fused epilogue: a residual added, then leaky ReLU */
    float *res = rand_vec((size_t)To * Cout);
    at_tensor tr = mat(be, To, Cout, res);
    pp.residual = &tr;
    pp.leaky = 1;
    pp.leaky_slope = 0.1f;
    for (size_t i = 0; i < (size_t)To * Cout; i++) {
        ref[i] += res[i];
        if (ref[i] < 0) ref[i] *= 0.1f;
    }
    for (int prep = 0; prep < 2; prep++) {
        pp.prepared = prep;
        rc = transposed ? at_op_conv_transpose1d(be, &tx, prep ? &tp : &tw, &tb, &pp, &ty, &err)
                        : at_op_conv1d(be, &tx, prep ? &tp : &tw, &tb, &pp, &ty, &err);
        if (rc == AT_E_UNSUPPORTED && strcmp(at_backend_name(be), "cpu")) break; /* fused on the CPU only */
        if (rc) fail_msg("conv with epilogue: %s", err.msg);
        y = get(be, &ty);
        near(y, ref, (size_t)To * Cout, 1e-4,
             transposed ? "conv_transpose1d + epilogue" : "conv1d + epilogue");
        free(y);
    }
    /* a residual that is the output itself is refused */
    pp.residual = &ty;
    assert_int_equal(transposed ? at_op_conv_transpose1d(be, &tx, &tp, &tb, &pp, &ty, &err)
                                : at_op_conv1d(be, &tx, &tp, &tb, &pp, &ty, &err),
                     AT_E_INVALID);
    at_tensor_free(&tr);
    free(res);
    at_tensor_free(&tp);
    free(ref);
    at_tensor_free(&tx);
    at_tensor_free(&tw);
    at_tensor_free(&tb);
    at_tensor_free(&ty);
    free(wq);
    free(x);
    free(w);
    free(b);
}

static void test_conv1d(void **st)
{
    at_backend *be = backend(st);
    /* Whisper's (k3 pad1, strides 1 and 2), VITS's (k7 pad3; dilated
     * residual blocks; depthwise with groups; pointwise k1), odd lengths */
    conv_case(be, 0, 50, 8, 12, params(3, 1, 1, 1, 1, 0), AT_DT_F32);
    conv_case(be, 0, 51, 8, 12, params(3, 2, 1, 1, 1, 0), AT_DT_F16);
    conv_case(be, 0, 40, 6, 5, params(7, 1, 3, 1, 1, 0), AT_DT_F32);
    conv_case(be, 0, 37, 4, 4, params(3, 1, 5, 5, 1, 0), AT_DT_F32);
    /* a dilation wider than the signal: fewer phases than d */
    conv_case(be, 0, 5, 4, 4, params(3, 1, 9, 9, 1, 0), AT_DT_F32);
    conv_case(be, 0, 30, 8, 8, params(3, 1, 9, 9, 8, 0), AT_DT_F32);
    conv_case(be, 0, 30, 6, 9, params(5, 3, 0, 2, 3, 0), AT_DT_F32);
    conv_case(be, 0, 20, 64, 32, params(1, 1, 0, 1, 1, 0), AT_DT_Q8_0);
    /* long enough to be done in several pieces of time */
    conv_case(be, 0, 9000, 16, 4, params(11, 1, 5, 1, 1, 0), AT_DT_F32);
    /* HiFi-GAN's dilated residual blocks over several pieces, in f16 */
    conv_case(be, 0, 5000, 8, 4, params(5, 1, 10, 5, 1, 0), AT_DT_F16);
    /* long kernels over many steps and channels go through the FFT
     * (compute/conv_fft.h): an odd number of blocks with a short last one,
     * and dilations whose phases differ in length */
    conv_case(be, 0, 1501, 64, 80, params(11, 1, 5, 1, 1, 0), AT_DT_F32);
    conv_case(be, 0, 1201, 64, 64, params(7, 1, 9, 3, 1, 0), AT_DT_F16);
    conv_case(be, 0, 2003, 96, 64, params(11, 1, 25, 5, 1, 0), AT_DT_F32);
    /* such kernels, prepared input-major for the FFT, in the direct
     * products: too few steps for the FFT, and a stride */
    conv_case(be, 0, 45, 64, 80, params(11, 1, 5, 1, 1, 0), AT_DT_F32);
    conv_case(be, 0, 61, 64, 64, params(7, 2, 3, 1, 1, 0), AT_DT_F16);
}

/* Kernels packed when prepared (32 outputs a panel) at every kernel
 * level: the narrower levels take each panel in halves.  Dilated, and so
 * short that the product has fewer rows than a register tile. */
static void test_conv1d_packed_levels(void **st)
{
    fixture *f = *st;
    at_backend *be = backend(st);
    at_isa best = at_isa_detect();
    for (int isa = AT_ISA_SCALAR; isa <= (int)best; isa++) {
        assert_int_equal(at_compute_set_isa(f->pool, (at_isa)isa), isa);
        conv_case(be, 0, 300, 16, 64, params(3, 1, 5, 5, 1, 0), AT_DT_F32);
        conv_case(be, 0, 7, 8, 32, params(3, 1, 1, 1, 1, 0), AT_DT_F16);
        conv_case(be, 0, 100, 24, 96, params(5, 1, 2, 1, 1, 0), AT_DT_F32);
    }
    at_compute_set_isa(f->pool, best);
}

static void test_conv_transpose1d(void **st)
{
    at_backend *be = backend(st);
    /* HiFi-GAN's upsampling (kernel 2 x stride, padding (k - s) / 2) */
    conv_case(be, 1, 10, 8, 4, params(16, 8, 4, 1, 1, 0), AT_DT_F32);
    conv_case(be, 1, 13, 4, 6, params(4, 2, 1, 1, 1, 0), AT_DT_F16);
    conv_case(be, 1, 9, 6, 6, params(3, 2, 1, 2, 3, 1), AT_DT_F32);
    conv_case(be, 1, 7, 5, 3, params(5, 3, 0, 1, 1, 2), AT_DT_F32);
    conv_case(be, 1, 3000, 8, 4, params(4, 4, 0, 1, 1, 0), AT_DT_F32);
}

/* Dilated convolutions copy their input phase by phase into a buffer the
 * backend keeps between calls; callers that share the backend at the same
 * time must not share that buffer. */
typedef struct {
    at_backend *be;
    const at_tensor *x, *w, *b;
    at_conv1d_params p;
    const double *ref;
    int T, C, rc;
    double err;
    at_err why;
} conv_thread;

static void *conv_thread_run(void *arg)
{
    conv_thread *a = arg;
    at_err *err = &a->why;
    at_tensor y;
    if ((a->rc = at_tensor_new_2d(a->be, &y, AT_DT_F32, a->C, a->T, err))) return NULL;
    float *o = malloc((size_t)a->T * a->C * sizeof *o);
    for (int it = 0; it < 40 && !a->rc && o; it++) {
        a->rc = at_op_conv1d(a->be, a->x, a->w, a->b, &a->p, &y, err);
        if (!a->rc) a->rc = at_tensor_download(a->be, &y, o, (size_t)a->T * a->C * sizeof *o, err);
        for (size_t i = 0; !a->rc && i < (size_t)a->T * a->C; i++) {
            double e = fabs(o[i] - a->ref[i]) / (1 + fabs(a->ref[i]));
            if (!(e <= a->err)) a->err = e;
        }
    }
    if (!o) a->rc = -1;
    free(o);
    at_tensor_free(&y);
    return NULL;
}

static void test_conv_shared_backend(void **st)
{
    at_backend *be = backend(st);
    enum { T = 600, C = 16, THREADS = 3 };
    at_conv1d_params p = params(3, 1, 5, 5, 1, 0);
    float *w = rand_vec((size_t)C * C * 3), *b = rand_vec(C), *x[THREADS];
    double *ref[THREADS];
    at_tensor tx[THREADS], tw = mat(be, C, C * 3, w), tb = mat(be, 1, C, b);
    conv_thread a[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) { /* each its own signal */
        x[i] = rand_vec((size_t)T * C);
        ref[i] = conv_ref(x[i], T, C, w, b, C, &p, T);
        tx[i] = mat(be, T, C, x[i]);
        a[i] = (conv_thread){be, &tx[i], &tw, &tb, p, ref[i], T, C, 0, 0.0, {0}};
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conv_thread_run, &a[i]), 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (a[i].rc) fail_msg("thread %d: %s", i, a[i].why.msg);
        if (!(a[i].err <= 1e-4)) fail_msg("thread %d: relative error %g", i, a[i].err);
    }
    for (int i = 0; i < THREADS; i++) {
        at_tensor_free(&tx[i]);
        free(ref[i]);
        free(x[i]);
    }
    at_tensor_free(&tw);
    at_tensor_free(&tb);
    free(w);
    free(b);
}

/* ------------------------------------------------- element-wise and rows */

static void test_elementwise(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    int R = 5, C = 37;
    float *x = rand_vec((size_t)R * C), *w = rand_vec(C), *b = rand_vec(C);
    for (int i = 0; i < R * C; i++) x[i] *= 4;
    double *ref = malloc(sizeof(double) * R * C);
    at_tensor tx = mat(be, R, C, x), ty = mat(be, R, C, NULL), tw = mat(be, 1, C, w), tb = mat(be, 1, C, b);
    const at_act acts[] = {AT_ACT_GELU, AT_ACT_RELU, AT_ACT_SILU, AT_ACT_TANH, AT_ACT_SIGMOID};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        assert_int_equal(at_op_act(be, acts[a], &tx, &ty, &err), 0);
        for (int i = 0; i < R * C; i++) {
            double v = x[i];
            ref[i] = acts[a] == AT_ACT_GELU   ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                     : acts[a] == AT_ACT_RELU ? (v > 0 ? v : 0)
                     : acts[a] == AT_ACT_SILU ? v / (1 + exp(-v))
                     : acts[a] == AT_ACT_TANH ? tanh(v)
                                              : 1 / (1 + exp(-v));
        }
        float *y = get(be, &ty);
        near(y, ref, (size_t)R * C, 1e-5, at_act_name(acts[a]));
        free(y);
    }
    at_act parsed;
    assert_int_equal(at_act_from_name("swish", &parsed), 0);
    assert_int_equal(parsed, AT_ACT_SILU);
    assert_int_equal(at_act_from_name("gelu_new", &parsed), -1);

    /* layer norm, with and without bias */
    for (int withb = 0; withb < 2; withb++) {
        at_tensor nb = withb ? tb : (at_tensor){0};
        assert_int_equal(at_op_layer_norm(be, &tx, &tw, &nb, 1e-5f, &ty, &err), 0);
        for (int r = 0; r < R; r++) {
            double mu = 0, var = 0;
            for (int c = 0; c < C; c++) mu += x[r * C + c];
            mu /= C;
            for (int c = 0; c < C; c++) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
            var /= C;
            for (int c = 0; c < C; c++)
                ref[r * C + c] = (x[r * C + c] - mu) / sqrt(var + 1e-5) * w[c] + (withb ? b[c] : 0);
        }
        float *y = get(be, &ty);
        near(y, ref, (size_t)R * C, 1e-5, "layer_norm");
        free(y);
    }
    /* softmax, scale, add with a broadcast row, in place */
    assert_int_equal(at_op_softmax(be, &tx, &ty, &err), 0);
    for (int r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0;
        for (int c = 0; c < C; c++) mx = fmax(mx, x[r * C + c]);
        for (int c = 0; c < C; c++) s += exp(x[r * C + c] - mx);
        for (int c = 0; c < C; c++) ref[r * C + c] = exp(x[r * C + c] - mx) / s;
    }
    float *y = get(be, &ty);
    near(y, ref, (size_t)R * C, 1e-5, "softmax");
    free(y);
    assert_int_equal(at_op_scale(be, &tx, 0.5f, &ty, &err), 0);
    assert_int_equal(at_op_add(be, &ty, &tb, &ty, &err), 0);
    for (int i = 0; i < R * C; i++) ref[i] = 0.5 * x[i] + b[i % C];
    y = get(be, &ty);
    near(y, ref, (size_t)R * C, 1e-6, "scale + add");
    free(y);

    /* views: the middle columns of the middle rows, updated in place */
    at_tensor v = at_tensor_view_cols(&tx, 10, 7);
    v = at_tensor_view_rows(&v, 1, 3);
    assert_false(at_tensor_contiguous(&v));
    assert_int_equal(at_op_scale(be, &v, 2.0f, &v, &err), 0);
    y = get(be, &tx);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            int in = r >= 1 && r < 4 && c >= 10 && c < 17;
            assert_true(y[r * C + c] == (in ? 2 * x[r * C + c] : x[r * C + c]));
        }
    free(y);
    at_tensor_free(&tx);
    at_tensor_free(&ty);
    at_tensor_free(&tw);
    at_tensor_free(&tb);
    free(x);
    free(w);
    free(b);
    free(ref);
}

/* Activations large enough to go to the pool in pieces (a batch's
 * feed-forward rows): every element the same bits as one pass over its
 * row, including a row's last, partial piece and a view's rows. */
static void test_elementwise_pieces(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    int R = 3, C = 5000, V = 4100; /* 2048-element pieces: two full and a partial one a row */
    float *x = rand_vec((size_t)R * C), *want = malloc(sizeof(float) * (size_t)R * C);
    assert_non_null(want);
    for (int i = 0; i < R * C; i++) x[i] *= 6;
    at_tensor tx = mat(be, R, C, x), ty = mat(be, R, C, NULL);
    static const at_act acts[] = {AT_ACT_GELU, AT_ACT_RELU, AT_ACT_SILU, AT_ACT_TANH, AT_ACT_SIGMOID};
    static void (*const alone[])(float *, size_t) = {at_gelu, at_relu, at_silu, at_tanh, at_sigmoid};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        memcpy(want, x, sizeof(float) * (size_t)R * C);
        for (int r = 0; r < R; r++) alone[a](want + (size_t)r * C, (size_t)C);
        assert_int_equal(at_op_act(be, acts[a], &tx, &ty, &err), 0);
        float *y = get(be, &ty);
        if (memcmp(y, want, sizeof(float) * (size_t)R * C) != 0)
            fail_msg("%s: pieces differ from one pass over each row", at_act_name(acts[a]));
        free(y);
        /* the first V columns of each row, in place (rows C apart) */
        memcpy(want, x, sizeof(float) * (size_t)R * C);
        for (int r = 0; r < R; r++) alone[a](want + (size_t)r * C, (size_t)V);
        at_tensor tz = mat(be, R, C, x), v = at_tensor_view_cols(&tz, 0, V);
        assert_int_equal(at_op_act(be, acts[a], &v, &v, &err), 0);
        y = get(be, &tz);
        if (memcmp(y, want, sizeof(float) * (size_t)R * C) != 0)
            fail_msg("%s: pieces of a view differ from one pass over each row", at_act_name(acts[a]));
        free(y);
        at_tensor_free(&tz);
    }
    at_tensor_free(&tx);
    at_tensor_free(&ty);
    free(x);
    free(want);
}

static void test_get_rows_and_copy(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    int V = 10, D = 64;
    float *tab = rand_vec((size_t)V * D);
    uint16_t *h = malloc(sizeof *h * V * D);
    for (int i = 0; i < V * D; i++) {
        h[i] = at_f32_to_f16(tab[i]);
        tab[i] = at_f16_to_f32(h[i]);
    }
    int64_t ne[2] = {D, V};
    at_tensor t, y = mat(be, 3, D, NULL);
    assert_int_equal(at_tensor_from_host(be, &t, AT_DT_F16, 2, ne, h, sizeof *h * V * D, &err), 0);
    int ids[3] = {7, 0, 7};
    assert_int_equal(at_op_get_rows(be, &t, ids, 3, &y, &err), 0);
    float *o = get(be, &y);
    for (int r = 0; r < 3; r++) assert_memory_equal(o + r * D, tab + ids[r] * D, sizeof(float) * D);
    free(o);
    int bad = V;
    at_tensor y1 = at_tensor_view_rows(&y, 0, 1);
    assert_int_equal(at_op_get_rows(be, &t, &bad, 1, &y1, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "outside"));
    at_tensor_free(&t);
    at_tensor_free(&y);
    free(tab);
    free(h);
}

/* Tensors start as zeros, large ones (mapped by pages) included, and a
 * tensor made after another was freed does not show its values. */
static void test_tensor_zeroed(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    const int rows[] = {3, 2048, 8192}; /* 3 KiB, 8 MiB, 32 MiB of floats */
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (int round = 0; round < 2; round++) {
            at_tensor t;
            assert_int_equal(at_tensor_new_2d(be, &t, AT_DT_F32, 1024, rows[i], &err), 0);
            size_t n = (size_t)rows[i] * 1024;
            float *h = get(be, &t);
            for (size_t k = 0; k < n; k++)
                if (h[k] != 0.0f) fail_msg("element %zu of %d rows is %g", k, rows[i], (double)h[k]);
            for (size_t k = 0; k < n; k++) h[k] = 1.5f;
            assert_int_equal(at_tensor_upload(be, &t, h, n * sizeof *h, &err), 0);
            free(h);
            at_tensor_free(&t);
        }
}

/* ------------------------------------------------------------- attention */

static void test_batched_attention(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    int D = 32, H = 4;
    /* three sequences: a causal one with a cache (4 past + 3 new), one
     * attending to 5 of 9 rows (padding after), one sharing the second's
     * keys (a beam) */
    enum { NQ = 3 + 2 + 2, NK = 9 };
    float *q = rand_vec((size_t)NQ * D), *k1 = rand_vec((size_t)NK * D), *v1 = rand_vec((size_t)NK * D);
    float *k2 = rand_vec((size_t)NK * D), *v2 = rand_vec((size_t)NK * D);
    at_tensor tq = mat(be, NQ, D, q), to = mat(be, NQ, D, NULL), tk1 = mat(be, NK, D, k1),
              tv1 = mat(be, NK, D, v1);
    at_tensor tk2 = mat(be, NK, D, k2), tv2 = mat(be, NK, D, v2);
    at_attn_seq seqs[3] = {{0, 3, &tk1, &tv1, 7, 4}, {3, 2, &tk2, &tv2, 5, -1}, {5, 2, &tk2, &tv2, 5, -1}};
    assert_int_equal(at_op_attention(be, &tq, seqs, 3, H, 0.0f, &to, &err), 0);
    float *o = get(be, &to);
    double ref[NQ * 32];
    int hd = D / H;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < seqs[s].n_q; i++) {
            int row = seqs[s].q_row + i;
            const float *K = s == 0 ? k1 : k2, *Vv = s == 0 ? v1 : v2;
            int nk = seqs[s].causal >= 0 ? seqs[s].causal + i + 1 : seqs[s].n_kv;
            for (int h = 0; h < H; h++) {
                double sc[NK], mx = -INFINITY, sum = 0;
                for (int j = 0; j < nk; j++) {
                    double dot = 0;
                    for (int c = 0; c < hd; c++)
                        dot += (double)q[row * D + h * hd + c] * K[j * D + h * hd + c];
                    sc[j] = dot / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j < nk; j++) acc += sc[j] / sum * Vv[j * D + h * hd + c];
                    ref[row * D + h * hd + c] = acc;
                }
            }
        }
    near(o, ref, (size_t)NQ * D, 1e-5, "attention");
    free(o);
    /* queries past the keys they may see are refused */
    at_attn_seq past = {0, 3, &tk1, &tv1, 7, 5};
    assert_int_equal(at_op_attention(be, &tq, &past, 1, H, 0.0f, &to, &err), AT_E_INVALID);
    at_tensor *ts[] = {&tq, &to, &tk1, &tv1, &tk2, &tv2};
    for (size_t i = 0; i < 6; i++) at_tensor_free(ts[i]);
    free(q);
    free(k1);
    free(v1);
    free(k2);
    free(v2);
}

/* Many keys: several of the GPU kernel's tiles of keys, with and without
 * a causal mask, a query row no sequence owns left alone. */
static void test_long_attention(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    enum { D = 64, H = 2, NK = 150, NQ = 6 };
    int hd = D / H;
    float *q = rand_vec((size_t)NQ * D), *k = rand_vec((size_t)NK * D), *v = rand_vec((size_t)NK * D);
    for (int i = 0; i < NQ * D; i++) q[i] *= 3; /* peaked softmax: the running maximum moves */
    float *o0 = malloc(sizeof(float) * NQ * D);
    for (int i = 0; i < NQ * D; i++) o0[i] = 7.0f;
    at_tensor tq = mat(be, NQ, D, q), to = mat(be, NQ, D, o0), tk = mat(be, NK, D, k), tv = mat(be, NK, D, v);
    /* rows 0-2: causal at 147 (a cache of 147, 3 new); row 3: none; 4-5: all 150 */
    at_attn_seq seqs[2] = {{0, 3, &tk, &tv, NK, 147}, {4, 2, &tk, &tv, NK, -1}};
    assert_int_equal(at_op_attention(be, &tq, seqs, 2, H, 0.0f, &to, &err), 0);
    float *o = get(be, &to);
    double ref[NQ * D];
    for (int row = 0; row < NQ; row++)
        for (int h = 0; h < H; h++) {
            int nk = row < 3 ? 147 + row + 1 : NK;
            double sc[NK], mx = -INFINITY, sum = 0;
            for (int j = 0; j < nk; j++) {
                double dot = 0;
                for (int c = 0; c < hd; c++) dot += (double)q[row * D + h * hd + c] * k[j * D + h * hd + c];
                sc[j] = dot / sqrt((double)hd);
                mx = fmax(mx, sc[j]);
            }
            for (int j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int c = 0; c < hd; c++) {
                double acc = 0;
                for (int j = 0; j < nk; j++) acc += sc[j] / sum * v[j * D + h * hd + c];
                ref[row * D + h * hd + c] = row == 3 ? 7.0 : acc;
            }
        }
    near(o, ref, (size_t)NQ * D, 1e-5, "attention over 150 keys");
    free(o);
    /* a copy into a column view, the rest untouched */
    at_tensor dst = mat(be, NQ, D, o0), half = at_tensor_view_cols(&dst, 0, D / 2),
              src = at_tensor_view_cols(&tq, D / 2, D / 2);
    assert_int_equal(at_op_copy(be, &src, &half, &err), 0);
    o = get(be, &dst);
    for (int r = 0; r < NQ; r++)
        for (int c = 0; c < D; c++) assert_true(o[r * D + c] == (c < D / 2 ? q[r * D + D / 2 + c] : 7.0f));
    free(o);
    at_tensor *ts[] = {&tq, &to, &tk, &tv, &dst};
    for (size_t i = 0; i < 5; i++) at_tensor_free(ts[i]);
    free(q);
    free(k);
    free(v);
    free(o0);
}

/* --------------------------------------------------------------- products */

/* y = x w^T + b for every weight type, the reference on the same rounded
 * weights; a decoder step's one row, an encoder's many, and columns that
 * are a view of a wider matrix. */
static void test_matmul(void **st)
{
    at_backend *be = backend(st);
    double tol = ((fixture *)*st)->tol;
    at_err err = {0};
    static const at_dtype types[] = {AT_DT_F32,  AT_DT_F16,  AT_DT_BF16, AT_DT_Q8_0,
                                     AT_DT_Q4_0, AT_DT_Q4_1, AT_DT_Q5_0, AT_DT_Q5_1};
    static const int Ms[] = {1, 37};
    const int K = 96;
    for (size_t ti = 0; ti <= sizeof types / sizeof types[0]; ti++)
        for (size_t mi = 0; mi < 2; mi++) {
            /* last: q4_0 of 4100 rows, past one tile of converted rows */
            int tall = ti == sizeof types / sizeof types[0];
            at_dtype t = tall ? AT_DT_Q4_0 : types[ti];
            int M = Ms[mi], N = tall ? 4100 : 70;
            float *x = rand_vec((size_t)M * (K + 8)), *w = rand_vec((size_t)N * K), *b = rand_vec(N);
            size_t rb = at_dtype_row_bytes(t, K);
            unsigned char *wq = malloc((size_t)N * rb);
            for (int r = 0; r < N; r++) {
                at_quant_row(t, w + (size_t)r * K, wq + (size_t)r * rb, K);
                at_dequant_row(t, wq + (size_t)r * rb, w + (size_t)r * K, K);
            }
            int64_t ne[2] = {K, N};
            at_tensor tw, wide = mat(be, M, K + 8, x), ty = mat(be, M, N, NULL), tb = mat(be, 1, N, b);
            at_tensor tx = at_tensor_view_cols(&wide, 8, K); /* columns 8.. of each row */
            assert_int_equal(at_tensor_from_host(be, &tw, t, 2, ne, wq, (size_t)N * rb, &err), 0);
            if (at_op_matmul(be, &tx, &tw, &tb, &ty, &err))
                fail_msg("matmul %s: %s", at_dtype_name(t), err.msg);
            double *ref = malloc(sizeof(double) * M * N);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double acc = b[n];
                    for (int k = 0; k < K; k++)
                        acc += (double)x[(size_t)m * (K + 8) + 8 + k] * w[(size_t)n * K + k];
                    ref[(size_t)m * N + n] = acc;
                }
            float *y = get(be, &ty);
            char what[64];
            snprintf(what, sizeof what, "matmul %s, %d rows", at_dtype_name(t), M);
            near(y, ref, (size_t)M * N, t == AT_DT_F32 ? 1e-5 : tol, what);
            free(y);
            free(ref);
            at_tensor_free(&tw);
            at_tensor_free(&wide);
            at_tensor_free(&ty);
            at_tensor_free(&tb);
            free(wq);
            free(x);
            free(w);
            free(b);
        }
}

/* -------------------------------------------------------- checked shapes */

static void test_shape_checks(void **st)
{
    at_backend *be = backend(st);
    at_err err = {0};
    at_tensor x = mat(be, 4, 8, NULL), w = mat(be, 6, 9, NULL), y = mat(be, 4, 6, NULL), none = {0};
    assert_int_equal(at_op_matmul(be, &x, &w, NULL, &y, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "do not fit"));
    assert_int_equal(at_op_add(be, &x, &y, &x, &err), AT_E_INVALID);
    assert_int_equal(at_op_act(be, AT_ACT_GELU, &none, &x, &err), AT_E_INVALID);
    /* a view reaching past its buffer */
    at_tensor over = at_tensor_view_rows(&x, 2, 5);
    assert_int_equal(at_op_scale(be, &over, 1.0f, &over, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "outside"));
    /* a tensor of another backend kind is refused, not dereferenced */
    at_backend *alloc_only = at_backend_cpu_new(NULL, &err);
    assert_int_equal(at_op_scale(alloc_only, &x, 1.0f, &x, &err), 0); /* element-wise needs no pool */
    at_tensor w2 = mat(be, 6, 8, NULL);
    assert_int_equal(at_op_matmul(alloc_only, &x, &w2, NULL, &y, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "compute context"));
    at_backend_free(alloc_only);
    /* a conv whose output length does not match */
    at_conv1d_params p = {.kernel = 3, .stride = 1, .padding = 1, .dilation = 1, .groups = 1};
    at_tensor cw = mat(be, 6, 24, NULL), cy = mat(be, 5, 6, NULL);
    assert_int_equal(at_op_conv1d(be, &x, &cw, NULL, &p, &cy, &err), AT_E_INVALID);
    /* a huge tensor is refused before allocating */
    at_tensor big;
    int64_t ne[2] = {1 << 30, 1 << 30};
    assert_int_equal(at_tensor_new(be, &big, AT_DT_F32, 2, ne, &err), AT_E_TOO_LARGE);
    at_tensor *ts[] = {&x, &w, &y, &w2, &cw, &cy};
    for (size_t i = 0; i < 6; i++) at_tensor_free(ts[i]);
}

/* ------------------------------------------------------------- positions */

static void test_sinusoids(void **st)
{
    (void)st;
    at_err err = {0};
    float t[4 * 8];
    assert_int_equal(at_nn_sinusoids(AT_NN_SIN_CONCAT, 4, 8, t, &err), 0);
    /* position 3, channel 1 of 4: sin(3 * 10000^(-1/3)) and its cosine */
    assert_float_equal(t[3 * 8 + 1], sin(3 * pow(10000, -1.0 / 3)), 1e-6);
    assert_float_equal(t[3 * 8 + 5], cos(3 * pow(10000, -1.0 / 3)), 1e-6);
    assert_int_equal(at_nn_sinusoids(AT_NN_SIN_MARIAN, 4, 8, t, &err), 0);
    /* Marian: channel 2 (even) -> sin in the first half, channel 3 (odd) ->
     * cos in the second, both of pos / 10000^(2/8) */
    assert_float_equal(t[3 * 8 + 1], sin(3 / pow(10000, 2.0 / 8)), 1e-6);
    assert_float_equal(t[3 * 8 + 5], cos(3 / pow(10000, 2.0 / 8)), 1e-6);
    assert_int_equal(at_nn_sinusoids(AT_NN_SIN_CONCAT, 4, 2, t, &err), AT_E_INVALID);
}

int main(void)
{
#define BACKEND_TESTS(setup_fn)                                                                              \
    cmocka_unit_test_setup_teardown(test_conv1d, setup_fn, teardown),                                        \
        cmocka_unit_test_setup_teardown(test_conv_transpose1d, setup_fn, teardown),                          \
        cmocka_unit_test_setup_teardown(test_elementwise, setup_fn, teardown),                               \
        cmocka_unit_test_setup_teardown(test_get_rows_and_copy, setup_fn, teardown),                         \
        cmocka_unit_test_setup_teardown(test_tensor_zeroed, setup_fn, teardown),                             \
        cmocka_unit_test_setup_teardown(test_matmul, setup_fn, teardown),                                    \
        cmocka_unit_test_setup_teardown(test_batched_attention, setup_fn, teardown),                         \
        cmocka_unit_test_setup_teardown(test_long_attention, setup_fn, teardown)
    const struct CMUnitTest cpu[] = {
        BACKEND_TESTS(setup),
        cmocka_unit_test_setup_teardown(test_shape_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_shared_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv1d_packed_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elementwise_pieces, setup, teardown),
        cmocka_unit_test(test_sinusoids),
    };
    const struct CMUnitTest cuda[] = {BACKEND_TESTS(setup_cuda)};
    int failed = cmocka_run_group_tests_name("cpu", cpu, NULL, NULL);
    return failed + cmocka_run_group_tests_name("cuda", cuda, NULL, NULL);
}
