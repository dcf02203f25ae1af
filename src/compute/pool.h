/* pool.h - compute contexts: a thread pool, and clients that share one.
 *
 * A process makes one pool (at_compute_new) and gives every request or
 * stream a client (at_compute_new_client); the CPU backend runs its
 * operations on a client. */
#ifndef AT_COMPUTE_POOL_H
#define AT_COMPUTE_POOL_H

#include <stddef.h>

#include "compute/isa.h"
#include "core/error.h"

typedef struct at_compute at_compute;

/* n_threads <= 0: number of online CPUs.  A context may be shared by
 * threads: its products (at_matmul, at_attention) run
 * one at a time, each on all of the pool's threads. */
at_compute *at_compute_new(int n_threads, at_err *err);
/* A context for one caller (a request or a stream) on a process's shared
 * pool: each product runs on the whole pool when the pool is free, and on
 * the caller's own thread when another caller holds it, so many streams
 * proceed side by side instead of queueing behind each other's small
 * products.  Free it before the pool. */
at_compute *at_compute_new_client(at_compute *pool, at_err *err);
void at_compute_free(at_compute *c);
int at_compute_threads(const at_compute *c);
/* Caps the kernels c runs at max (tests run every level the machine has;
 * the default is at_isa_detect()); returns the level now in use. */
at_isa at_compute_set_isa(at_compute *c, at_isa max);
at_isa at_compute_isa(const at_compute *c);

/* How the CPU backend computes convolutions of long kernels:
 * AT_CONV_AUTO, the default, by FFT where that is expected to be faster
 * (compute/conv_fft.h); AT_CONV_FFT by FFT wherever the shapes allow
 * (tests use it to check that path on small models); AT_CONV_DIRECT
 * never.  A client starts with its pool's.  Returns the previous. */
typedef enum { AT_CONV_AUTO = 0, AT_CONV_DIRECT, AT_CONV_FFT } at_conv_method;
at_conv_method at_compute_set_conv(at_compute *c, at_conv_method m);
at_conv_method at_compute_conv(const at_compute *c);

/* Runs fn(arg, chunk, ith) for chunk = 0..n_chunks-1 on the pool and
 * returns when all chunks are done (ith: the running thread, 0 = the
 * caller, for per-thread scratch).  Each thread starts on its own
 * contiguous share of the chunks, in order, so that operations that split
 * their rows alike find each thread's rows in its cache; a thread that
 * the OS deschedules (the cores are shared) does not stall the others:
 * whoever is running takes the remaining chunks. */
typedef void (*at_chunk_fn)(void *arg, int chunk, int ith);
void at_compute_run(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks);
/* at_compute_run for a client's own work outside the backend (an
 * engine's element-wise steps): on the shared pool when it is free, else
 * on the client's thread, as the backend's operations run.  A client
 * context has one thread, so at_compute_run on it is serial. */
void at_compute_run_pooled(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks);
/* The threads at_compute_run_pooled may run on (ith stays below it). */
int at_compute_pooled_threads(const at_compute *c);
/* Per-thread scratch of at least n floats for thread ith (valid until the
 * next at_compute_reserve). */
int at_compute_reserve(at_compute *c, size_t n, at_err *err);
float *at_compute_scratch(at_compute *c, int ith);

#endif
