/* bench_attention - a decoder step's attention on the pool: few queries
 * (one sequence, a beam, eight sequences on one audio) against an
 * encoder's keys, with Whisper base's heads (8 of 64), in microseconds a
 * call and GFLOP/s (4 Tq Tk D flops).  Prints the CPU and kernel level.
 *
 *   bench_attention [--threads N] [--reps N] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 2000;
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
    printf("CPU: %s; kernels: %s; %d threads\n", cpu, at_isa_name(at_isa_detect()), threads);
    at_err err = {0};
    at_compute *c = at_compute_new(threads, &err);
    if (!c) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    enum { H = 8, HD = 64, D = H * HD, TQ_MAX = 8, TK_MAX = 1500 };
    float *Q = malloc(sizeof(float) * TQ_MAX * D), *K = malloc(sizeof(float) * TK_MAX * D);
    float *V = malloc(sizeof(float) * TK_MAX * D), *O = malloc(sizeof(float) * TQ_MAX * D);
    if (!Q || !K || !V || !O) return 1;
    uint32_t s = 1;
    for (int i = 0; i < TK_MAX * D; i++) {
        s = s * 1664525u + 1013904223u;
        K[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
        V[i] = (float)(s >> 9) / 8388608.0f - 0.5f;
        if (i < TQ_MAX * D) Q[i] = K[i];
    }
    static const int tq[] = {1, 2, 5, 8}, tk[] = {500, 1500};
    printf("%4s %5s %10s %8s\n", "Tq", "Tk", "us/call", "GFLOP/s");
    for (size_t a = 0; a < sizeof tk / sizeof *tk; a++)
        for (size_t b = 0; b < sizeof tq / sizeof *tq; b++) {
            for (int r = 0; r < 20; r++)
                at_attention(c, Q, D, K, D, V, D, tq[b], tk[a], H, HD, -1, 0.0f, O, D, &err);
            double t0 = now();
            for (int r = 0; r < reps; r++)
                if (at_attention(c, Q, D, K, D, V, D, tq[b], tk[a], H, HD, -1, 0.0f, O, D, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
            double dt = (now() - t0) / reps;
            printf("%4d %5d %10.1f %8.1f\n", tq[b], tk[a], dt * 1e6, 4.0 * tq[b] * tk[a] * D / dt / 1e9);
        }
    at_compute_free(c);
    free(Q);
    free(K);
    free(V);
    free(O);
    return 0;
}
