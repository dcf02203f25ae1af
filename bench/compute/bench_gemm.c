/* bench_gemm - GFLOP/s of Y = X * W^T on the encoder's shapes, with our
 * GEMM at each instruction-set level this CPU has and with OpenBLAS's
 * sgemm, on 1 thread and on the whole pool (at_matmul).  Prints the CPU
 * model and the kernel OpenBLAS chose for it.
 *
 *   bench_gemm [--threads N] [--reps N] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/kernels.h"
#include "compute/gemm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--threads N] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    char cpu[300];
    at_cpu_name(cpu, sizeof cpu);
    openblas_set_num_threads(1);
    printf("CPU: %s\nour best kernel: %s; OpenBLAS core: %s\n", cpu, at_isa_name(at_isa_detect()),
           openblas_get_corename());
    /* M x N x K: tiny's and base's attention/MLP products over 1500 frames */
    static const int shapes[][3] = {
        {1500, 384, 384}, {1500, 1536, 384}, {1500, 512, 512}, {1500, 1536, 512}, {1500, 512, 2048}};
    at_err err;
    at_compute *c = at_compute_new(threads, &err);
    if (!c) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    float *scratch = aligned_alloc(64, AT_GEMM_SCRATCH * sizeof(float));
    printf("%-17s %-8s %9s %12s\n", "M x N x K", "kernel", "1 thr", "pool GFLOP/s");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *X = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * (size_t)N * K);
        float *Y = malloc(sizeof(float) * (size_t)M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)(i % 17) * 0.01f;
        for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 13) * 0.01f;
        double flop = 2.0 * M * N * K;
        char shape[40];
        snprintf(shape, sizeof shape, "%dx%dx%d", M, N, K);
        for (int isa = 0; isa <= (int)at_isa_detect() + 1; isa++) {
            int blas = isa > (int)at_isa_detect();
            double best1 = 1e9, bestp = 1e9;
            for (int r = 0; r < reps; r++) {
                double t0 = now();
                if (blas)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, X, K, W, K, 0.0f, Y,
                                N);
                else
                    at_gemm((at_isa)isa, M, N, K, 1.0f, X, K, W, K, 1, 0, Y, N, scratch);
                double t1 = now() - t0;
                if (t1 < best1) best1 = t1;
            }
            if (!blas) {
                at_compute_set_isa(c, (at_isa)isa);
                at_matrix Wm = {AT_DT_F32, N, K, W, (size_t)K * sizeof(float), 0, 0};
                for (int r = 0; r < reps; r++) {
                    double t0 = now();
                    at_matmul(c, X, M, &Wm, NULL, Y, &err);
                    double t1 = now() - t0;
                    if (t1 < bestp) bestp = t1;
                }
                printf("%-17s %-8s %9.1f %12.1f\n", shape, at_isa_name((at_isa)isa), flop / best1 * 1e-9,
                       flop / bestp * 1e-9);
            } else {
                printf("%-17s %-8s %9.1f %12s\n", shape, "openblas", flop / best1 * 1e-9, "-");
            }
        }
        free(X);
        free(W);
        free(Y);
    }
    free(scratch);
    at_compute_free(c);
    return 0;
}
