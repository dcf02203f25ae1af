/* bench_conv - the convolutions of a VITS / HiFi-GAN decoder (MMS-TTS's
 * shape: 512 channels upsampled by 8, 8, 2, 2 to 16 kHz, residual blocks
 * of kernels 3, 7, 11 at dilations 1, 3, 5) through the CPU backend, for
 * one second of audio, in milliseconds and GFLOP/s (2 C_out C_in K flops
 * an output step), beside a plain product of the same flops.  Where a
 * decoder's time goes, layer by layer.
 *
 * Kernels are prepared once (at_conv1d_prepare) as a model's loader
 * does; --unprepared: reordered on every call.  --seconds S: S seconds of
 * audio a call (the decoder's pieces are 5 s long; the FFT path's fixed
 * costs weigh more in short calls).
 *
 *   bench_conv [--threads N] [--reps N] [--seconds S] [--unprepared] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/backend.h"
#include "compute/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill(float *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
}

/* A f32 tensor of rows x cols with pseudo-random values. */
static int tensor(at_backend *be, at_tensor *t, int64_t cols, int64_t rows, uint32_t seed, at_err *err)
{
    if (at_tensor_new_2d(be, t, AT_DT_F32, cols, rows, err)) return -1;
    size_t n = (size_t)cols * (size_t)rows;
    float *h = malloc(n * sizeof *h);
    if (!h) return -1;
    fill(h, n, seed);
    int rc = at_tensor_upload(be, t, h, n * sizeof *h, err);
    free(h);
    return rc;
}

/* Milliseconds per call of a convolution of T input steps. */
static double time_conv(at_backend *be, int T, int cin, int cout, const at_conv1d_params *p, int transposed,
                        int prepared, int reps, int *T_out, at_err *err)
{
    int To = at_conv1d_out_len(p, T, transposed);
    at_tensor x, w, b, y;
    int rc = tensor(be, &x, cin, T, 1, err);
    if (!rc)
        rc = transposed ? tensor(be, &w, (int64_t)cout * p->kernel, cin, 2, err)
                        : tensor(be, &w, (int64_t)cin * p->kernel, cout, 2, err);
    if (!rc) rc = tensor(be, &b, cout, 1, 3, err);
    if (!rc) rc = at_tensor_new_2d(be, &y, AT_DT_F32, cout, To, err);
    if (rc) return -1;
    /* the kernel reordered once, as a model's loader does */
    at_conv1d_params pp = *p;
    if (prepared) {
        at_tensor wp;
        if (at_conv1d_prepare(be, &w, p, transposed, &wp, err)) return -1;
        at_tensor_free(&w);
        w = wp;
        pp.prepared = 1;
    }
    p = &pp;
    b = at_tensor_reshape_2d(&b, cout, 1);
    double best = 1e30;
    for (int r = 0; r <= reps && !rc; r++) {
        double t0 = now();
        rc = transposed ? at_op_conv_transpose1d(be, &x, &w, &b, p, &y, err)
                        : at_op_conv1d(be, &x, &w, &b, p, &y, err);
        double dt = now() - t0;
        if (r && dt < best) best = dt; /* the first call warms the caches */
    }
    at_tensor_free(&x);
    at_tensor_free(&w);
    at_tensor_free(&b);
    at_tensor_free(&y);
    *T_out = To;
    return rc ? -1 : best * 1e3;
}

/* Milliseconds per plain product of M x N x K on the pool. */
static double time_matmul(at_backend *be, int M, int N, int K, int reps, at_err *err)
{
    at_tensor x, w, y;
    if (tensor(be, &x, K, M, 4, err) || tensor(be, &w, K, N, 5, err) ||
        at_tensor_new_2d(be, &y, AT_DT_F32, N, M, err))
        return -1;
    double best = 1e30;
    int rc = 0;
    for (int r = 0; r <= reps && !rc; r++) {
        double t0 = now();
        rc = at_op_matmul(be, &x, &w, NULL, &y, err);
        double dt = now() - t0;
        if (r && dt < best) best = dt;
    }
    at_tensor_free(&x);
    at_tensor_free(&w);
    at_tensor_free(&y);
    return rc ? -1 : best * 1e3;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 3, prepared = 1;
    double secs = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--unprepared")) {
            prepared = 0;
            continue;
        }
        if (i + 1 == argc) break;
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            secs = atof(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps N] [--seconds S] [--unprepared]\n", argv[0]);
            return 2;
        }
        i++;
    }
    if (reps < 1) reps = 1;
    if (!(secs >= 0.1 && secs <= 60)) {
        fprintf(stderr, "bench_conv: --seconds outside 0.1..60\n");
        return 2;
    }
    char cpu[300];
    at_cpu_name(cpu, sizeof cpu);
    printf("CPU: %s; kernels: %s; %d threads; %g s of 16 kHz audio a call\n", cpu,
           at_isa_name(at_isa_detect()), threads, secs);
    at_err err = {0};
    at_compute *c = at_compute_new(threads, &err);
    at_backend *be = c ? at_backend_cpu_new(c, &err) : NULL;
    if (!be) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("%-30s %7s %9s %8s %13s\n", "layer (C_in>C_out, k, dil, T)", "calls", "ms", "GFLOP/s",
           "matmul GFLOP/s");
    static const int rb_k[] = {3, 7, 11}, rb_d[] = {1, 3, 5}, up[] = {8, 8, 2, 2};
    double total_ms = 0, total_flop = 0;
    int T = (int)(62.5 * secs + 0.5), ch = 512; /* 62.5 frames a second */
    for (int s = 0; s < 4; s++) {
        int k = 2 * up[s], cout = ch / 2, To;
        at_conv1d_params pu = {
            .kernel = k, .stride = up[s], .padding = (k - up[s]) / 2, .dilation = 1, .groups = 1};
        double ms = time_conv(be, T, ch, cout, &pu, 1, prepared, reps, &To, &err);
        if (ms < 0) goto fail;
        double flop = 2.0 * T * ch * cout * k;
        char name[64];
        snprintf(name, sizeof name, "up%d %d>%d k%d s%d T%d", s, ch, cout, k, up[s], T);
        printf("%-30s %7d %9.2f %8.1f %13s\n", name, 1, ms, flop / ms / 1e6, "");
        total_ms += ms;
        total_flop += flop;
        T = To;
        ch = cout;
        for (int a = 0; a < 3; a++)
            for (int d = 0; d < 3; d++) {
                /* each dilation pairs a dilated convolution with one at 1 */
                int dil = rb_d[d], calls = dil == 1 ? 4 : 1, Ty;
                at_conv1d_params p = {.kernel = rb_k[a],
                                      .stride = 1,
                                      .padding = (rb_k[a] - 1) * dil / 2,
                                      .dilation = dil,
                                      .groups = 1};
                ms = time_conv(be, T, ch, ch, &p, 0, prepared, reps, &Ty, &err);
                double mm = time_matmul(be, T, ch, ch * rb_k[a], reps, &err);
                if (ms < 0 || mm < 0) goto fail;
                flop = 2.0 * T * ch * ch * rb_k[a];
                snprintf(name, sizeof name, "rb%d %d>%d k%d d%d T%d", s, ch, ch, rb_k[a], dil, T);
                printf("%-30s %7d %9.2f %8.1f %13.1f\n", name, calls, ms, flop / ms / 1e6, flop / mm / 1e6);
                total_ms += calls * ms;
                total_flop += calls * flop;
            }
    }
    printf("all %.1f GFLOP in %.1f ms: %.1f GFLOP/s, RTF of the convolutions %.3f\n", total_flop / 1e9,
           total_ms, total_flop / total_ms / 1e6, total_ms / 1e3 / secs);
    at_backend_free(be);
    at_compute_free(c);
    return 0;
fail:
    fprintf(stderr, "%s\n", err.msg);
    return 1;
}
