/* pool.c - the thread pool behind a compute context, and its clients. */
#include "compute/pool_impl.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/gemm.h"
#include "compute/simd.h"

/* ---------------------------------------------------------- thread pool */

/* How work is published and claimed: pool_impl.h. */
typedef struct {
    at_compute *c;
    int ith;
} worker_arg;

static inline void cpu_relax(void)
{
#if AT_HAVE_X86
    _mm_pause();
#endif
}

#define W_GEN(w) ((w) >> 40)
#define W_N(w)   ((int)(((w) >> 20) & MAX_CHUNKS))
#define W_IDX(w) ((int)((w)&MAX_CHUNKS))

/* Claims and runs chunks of generation gen until none is left: the
 * thread's own share first, then the others'. */
static void drain(at_compute *c, unsigned long long gen, int ith)
{
    unsigned long long w0 = atomic_load_explicit(&c->work, memory_order_acquire);
    if (W_GEN(w0) != gen) return;
    int n = W_N(w0);
    for (int k = 0; k < c->n; k++) {
        atomic_ullong *s = &c->share[(ith + k) % c->n];
        unsigned long long w = atomic_load_explicit(s, memory_order_acquire);
        for (;;) {
            if (W_GEN(w) != gen) return; /* a later round: this one is done */
            if (W_IDX(w) >= W_N(w)) break;
            if (!atomic_compare_exchange_weak_explicit(s, &w, w + 1, memory_order_acq_rel,
                                                       memory_order_acquire))
                continue;
            /* a claimed chunk keeps the round (and fn/arg) alive until done */
            c->fn(c->arg, W_IDX(w), ith);
            if (atomic_fetch_add_explicit(&c->done, 1, memory_order_acq_rel) + 1 == n) {
                pthread_mutex_lock(&c->mu);
                if (c->main_waits) pthread_cond_signal(&c->cv_done);
                pthread_mutex_unlock(&c->mu);
            }
            w = atomic_load_explicit(s, memory_order_acquire);
        }
    }
}

static void *worker(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    at_compute *c = wa.c;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g;
        int spins = 0;
        while ((g = W_GEN(atomic_load_explicit(&c->work, memory_order_acquire))) == seen &&
               !atomic_load_explicit(&c->stop, memory_order_acquire)) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&c->mu);
            c->sleepers++;
            while (W_GEN(atomic_load(&c->work)) == seen && !atomic_load(&c->stop))
                pthread_cond_wait(&c->cv_go, &c->mu);
            c->sleepers--;
            pthread_mutex_unlock(&c->mu);
        }
        if (atomic_load(&c->stop)) return NULL;
        seen = g;
        drain(c, g, wa.ith);
    }
}

at_compute *at_compute_new_client(at_compute *pool, at_err *err)
{
    at_compute *c = at_compute_new(1, err);
    if (c && pool) {
        c->pool = pool;
        c->isa = pool->isa;
        c->simd = pool->simd;
        c->conv = pool->conv;
    }
    return c;
}

/* The context a product runs on, locked: the shared pool when it is free,
 * else the caller's own. */
at_compute *at_compute_op_begin(at_compute *c)
{
    if (c->pool && pthread_mutex_trylock(&c->pool->op_mu) == 0) return c->pool;
    pthread_mutex_lock(&c->op_mu);
    return c;
}

at_compute *at_compute_new(int n_threads, at_err *err)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) n_threads = 256;
    at_compute *c = calloc(1, sizeof *c);
    if (!c) {
        at_err_set(err, AT_E_NOMEM, "out of memory (compute context)");
        return NULL;
    }
    c->n = n_threads;
    c->isa = at_isa_detect();
    c->simd = c->isa >= AT_ISA_AVX2;
    c->scr = calloc((size_t)n_threads, sizeof *c->scr);
    c->pack = calloc((size_t)n_threads, sizeof *c->pack);
    c->th = calloc((size_t)n_threads, sizeof *c->th);
    c->share = calloc((size_t)n_threads, sizeof *c->share);
    int ok = c->scr && c->pack && c->th && c->share;
    for (int i = 0; ok && i < n_threads; i++)
        ok = (c->pack[i] = aligned_alloc(64, AT_GEMM_SCRATCH * sizeof(float))) != NULL;
    if (!ok) {
        for (int i = 0; c->pack && i < n_threads; i++) free(c->pack[i]);
        free(c->scr);
        free(c->pack);
        free(c->th);
        free(c->share);
        free(c);
        at_err_set(err, AT_E_NOMEM, "out of memory (compute context)");
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->op_mu, NULL);
    pthread_cond_init(&c->cv_go, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    atomic_init(&c->work, 0);
    for (int i = 0; i < n_threads; i++) atomic_init(&c->share[i], 0);
    atomic_init(&c->done, 0);
    atomic_init(&c->stop, 0);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) break;
        wa->c = c;
        wa->ith = i;
        if (pthread_create(&c->th[i], NULL, worker, wa) != 0) {
            free(wa);
            break;
        }
        c->n_started++;
    }
    /* fewer threads than asked is not an error: run with what started */
    for (int i = c->n_started + 1; i < n_threads; i++) {
        free(c->pack[i]);
        c->pack[i] = NULL;
    }
    c->n = c->n_started + 1;
    return c;
}

void at_compute_free(at_compute *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stop, 1);
    pthread_cond_broadcast(&c->cv_go);
    pthread_mutex_unlock(&c->mu);
    for (int i = 1; i <= c->n_started; i++) pthread_join(c->th[i], NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->op_mu);
    pthread_cond_destroy(&c->cv_go);
    pthread_cond_destroy(&c->cv_done);
    for (int i = 0; i < c->n; i++) {
        free(c->scr[i]);
        free(c->pack[i]);
    }
    free(c->scr);
    free(c->pack);
    free(c->shared);
    free(c->th);
    free(c->share);
    free(c);
}

int at_compute_threads(const at_compute *c) { return c->n; }

at_isa at_compute_set_isa(at_compute *c, at_isa max)
{
    at_isa best = at_isa_detect();
    c->isa = max < best ? max : best;
    if (c->isa < AT_ISA_SCALAR) c->isa = AT_ISA_SCALAR;
    c->simd = c->isa >= AT_ISA_AVX2;
    return c->isa;
}

at_isa at_compute_isa(const at_compute *c) { return c->isa; }

at_conv_method at_compute_set_conv(at_compute *c, at_conv_method m)
{
    at_conv_method old = c->conv;
    c->conv = m;
    return old;
}

at_conv_method at_compute_conv(const at_compute *c) { return c->conv; }

void at_compute_run(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks)
{
    if (n_chunks <= 0) return;
    if (c->n == 1 || n_chunks == 1) {
        for (int i = 0; i < n_chunks; i++) fn(arg, i, 0);
        return;
    }
    if (n_chunks > MAX_CHUNKS) n_chunks = MAX_CHUNKS; /* callers stay far below */
    c->fn = fn;
    c->arg = arg;
    atomic_store_explicit(&c->done, 0, memory_order_relaxed);
    unsigned long long gen = W_GEN(atomic_load_explicit(&c->work, memory_order_relaxed)) + 1;
    gen &= (1ull << 24) - 1;
    if (!gen) gen = 1; /* workers start with seen = 0 */
    for (int t = 0; t < c->n; t++) {
        unsigned long long lo = (unsigned long long)t * n_chunks / c->n;
        unsigned long long end = (unsigned long long)(t + 1) * n_chunks / c->n;
        atomic_store_explicit(&c->share[t], (gen << 40) | (end << 20) | lo, memory_order_relaxed);
    }
    /* under the mutex so that a worker going to sleep cannot miss it; the
     * release orders the shares before it */
    pthread_mutex_lock(&c->mu);
    atomic_store_explicit(&c->work, (gen << 40) | ((unsigned long long)n_chunks << 20), memory_order_release);
    if (c->sleepers) pthread_cond_broadcast(&c->cv_go);
    pthread_mutex_unlock(&c->mu);
    drain(c, gen, 0);
    for (int spins = 0; spins < SPIN_ITERS; spins++) {
        if (atomic_load_explicit(&c->done, memory_order_acquire) == n_chunks) return;
        cpu_relax();
    }
    pthread_mutex_lock(&c->mu);
    c->main_waits = 1;
    while (atomic_load_explicit(&c->done, memory_order_acquire) < n_chunks)
        pthread_cond_wait(&c->cv_done, &c->mu);
    c->main_waits = 0;
    pthread_mutex_unlock(&c->mu);
}

int at_compute_pooled_threads(const at_compute *c)
{
    return c->pool && c->pool->n > c->n ? c->pool->n : c->n;
}

void at_compute_run_pooled(at_compute *c, at_chunk_fn fn, void *arg, int n_chunks)
{
    at_compute *r = at_compute_op_begin(c);
    at_compute_run(r, fn, arg, n_chunks);
    pthread_mutex_unlock(&r->op_mu);
}

/* Frees *buf and puts a 64-byte aligned buffer of n floats in its place
 * (NULL and an error when there is no memory). */
static int renew_floats(float **buf, size_t n_floats, at_err *err)
{
    free(*buf);
    *buf = NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, n_floats * sizeof(float)) != 0)
        return at_err_set(err, AT_E_NOMEM, "out of memory (%zu bytes of compute scratch)",
                          n_floats * sizeof(float));
    *buf = p;
    return 0;
}

int at_compute_reserve(at_compute *c, size_t n_floats, at_err *err)
{
    if (n_floats <= c->scr_n) return 0;
    c->scr_n = 0;
    for (int i = 0; i < c->n; i++)
        if (renew_floats(&c->scr[i], n_floats, err)) {
            for (int j = 0; j < i; j++) {
                free(c->scr[j]);
                c->scr[j] = NULL;
            }
            return AT_E_NOMEM;
        }
    c->scr_n = n_floats;
    return 0;
}

int at_compute_reserve_shared(at_compute *c, size_t n_floats, at_err *err)
{
    if (n_floats <= c->shared_n) return 0;
    c->shared_n = 0;
    if (renew_floats(&c->shared, n_floats, err)) return AT_E_NOMEM;
    c->shared_n = n_floats;
    return 0;
}

float *at_compute_scratch(at_compute *c, int ith) { return c->scr[ith]; }
