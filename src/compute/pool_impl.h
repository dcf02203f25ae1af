/* pool_impl.h - the compute context's insides, for the CPU kernels in
 * src/compute only. */
#ifndef AT_COMPUTE_POOL_IMPL_H
#define AT_COMPUTE_POOL_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "compute/pool.h"

/* A round of work is published as one atomic word, (generation << 40) |
 * (n_chunks << 20), and its chunks are dealt out in contiguous shares,
 * one per thread, each an atomic word (generation << 40) | (end << 20) |
 * next_chunk.  A thread claims chunks of its own share with
 * compare-and-swap, then what is left of the others' (a thread the OS
 * deschedules stalls no one); with the generation in every word, a worker
 * that wakes up late for a finished round never touches the old job.
 * Shares in order keep the data in cache: operations that split their
 * rows the same way, one after the other, find each thread's rows where
 * that thread wrote them (on two cores: 10 % off HiFi-GAN's
 * convolutions).  Workers spin briefly before sleeping on a condition
 * variable: a decoder step issues ~40 small parallel ops, and a futex
 * wake-up per op would cost more than the ops themselves. */
#define SPIN_ITERS 20000 /* pause iterations (well under 1 ms) before sleeping */
#define MAX_CHUNKS ((1 << 20) - 1)

struct at_compute {
    int n;
    int simd;   /* isa >= AT_ISA_AVX2: the dot-product kernels */
    at_isa isa; /* GEMM kernels */
    at_conv_method conv;
    pthread_t *th;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_go, cv_done;
    atomic_ullong work;
    atomic_ullong *share; /* per thread */
    atomic_int done;
    atomic_int stop;
    int sleepers;   /* workers asleep on cv_go; guarded by mu */
    int main_waits; /* caller asleep on cv_done; guarded by mu */
    at_chunk_fn fn;
    void *arg;
    /* per-thread scratch, grown on the caller's thread before a run */
    float **scr;
    size_t scr_n;
    float *shared; /* one buffer all threads of a run write parts of */
    size_t shared_n;
    float **pack;          /* per-thread at_gemm scratch (AT_GEMM_SCRATCH floats) */
    pthread_mutex_t op_mu; /* one product at a time: callers may share the context */
    at_compute *pool;      /* a client's shared pool (NULL: none) */
};

/* The context an operation runs on, with its op_mu held: the shared pool
 * when it is free, else the caller's own.  Unlock r->op_mu when done. */
at_compute *at_compute_op_begin(at_compute *c);
/* Grows c's shared buffer to n floats (on the caller's thread, before a
 * run); its contents are undefined after growing. */
int at_compute_reserve_shared(at_compute *c, size_t n_floats, at_err *err);

#endif
