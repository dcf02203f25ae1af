/* bench_nmt - translation model speed (engines/mt/nmt): target tokens per
 * second and the latency of 20-token sentences, greedy and beam search,
 * batches of sentences, thread counts; where a step's time goes; peak
 * memory.  Meant for the random-weight folders `audio-translator
 * nmt-random-model` writes (bench/nmt.sh), works on any model folder.
 *
 * Every sentence is a source of T random ids plus eos, and generates
 * exactly T tokens: min_length = max_length = 1 + T keeps eos out (a
 * random model's argmax would stop anywhere), so every configuration
 * does the same work.  "gen" is at_nmt_generate's wall time; it is split
 * into the decoder calls ("dec", at_nmt_decode: the layers and the
 * vocabulary projection), the beams' cache copies and allocations ("kv")
 * and the rest, the search itself (log-softmax, processors, top-k/argmax).
 * "latency" is encode + generate of the batch (the median run; the best in
 * brackets).  The second table splits one decoder step at a cache length
 * of 10 into the layers (at_nmt_decode without logits) and the projection
 * to the vocabulary (the difference with logits requested).  The weights
 * are memory-mapped: "peak after loading" is before they are paged in.
 *
 *   bench_nmt DIR [--threads 1,2] [--beams 1,4] [--batches 1,16]
 *             [--tokens 20] [--reps 3] [--label NAME] [--q8] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "compute/isa.h"
#include "compute/pool.h"
#include "engines/mt/nmt/generate.h"

#define MAX_LIST  8
#define MAX_BATCH 64
#define MAX_REPS  16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double peak_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static double rss_mb(void)
{
    long pages = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return (double)res * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* ------------------------------------------------ the timed decoder */

typedef struct {
    at_nmt_state *s;
    double dec_s, kv_s;
    int calls;
} timed;

static int t_decode(void *u, const at_nmt_seq *q, int n, at_err *err)
{
    timed *t = u;
    double t0 = now();
    int rc = at_nmt_decode(t->s, q, n, err);
    t->dec_s += now() - t0;
    t->calls++;
    return rc;
}

static at_nmt_kv *t_kv_new(void *u, int n_ctx, at_err *err)
{
    timed *t = u;
    double t0 = now();
    at_nmt_kv *kv = at_nmt_kv_new_ctx(at_nmt_state_model(t->s), n_ctx, err);
    t->kv_s += now() - t0;
    return kv;
}

static void t_kv_free(void *u, at_nmt_kv *kv)
{
    timed *t = u;
    double t0 = now();
    at_nmt_kv_free(kv);
    t->kv_s += now() - t0;
}

static int t_kv_copy(void *u, at_nmt_kv *dst, const at_nmt_kv *src, at_err *err)
{
    timed *t = u;
    double t0 = now();
    int rc = at_nmt_kv_copy(dst, src, err);
    t->kv_s += now() - t0;
    return rc;
}

/* ------------------------------------------------------------ a run */

typedef struct {
    double enc_s, gen_s, dec_s, kv_s;
    int steps, tokens;
} run_t;

typedef struct {
    const at_nmt_model *m;
    at_nmt_state *s;
    at_nmt_memory *mems[MAX_BATCH];
    int *src[MAX_BATCH];
    int src_len, T, forced_bos;
    at_nmt_gen base;
} bench_t;

static int run_once(bench_t *b, int beams, int n, run_t *r, at_err *err)
{
    at_nmt_job jobs[MAX_BATCH];
    const int *srcs[MAX_BATCH];
    int lens[MAX_BATCH];
    at_nmt_gen g = b->base;
    g.num_beams = beams;
    g.max_length = 1 + b->T;
    g.min_length = 1 + b->T; /* eos never: exactly T new tokens */
    g.forced_eos_id = -1;
    for (int i = 0; i < n; i++) {
        srcs[i] = b->src[i];
        lens[i] = b->src_len;
        jobs[i] = (at_nmt_job){b->mems[i], b->forced_bos, 0, NULL, 0, 0.0f};
    }
    timed t = {b->s, 0, 0, 0};
    const at_nmt_hparams *hp = at_nmt_model_hparams(b->m);
    at_nmt_decoder d = {&t, hp->dec_vocab, hp->max_pos, t_decode, t_kv_new, t_kv_free, t_kv_copy};
    double t0 = now();
    if (at_nmt_encode(b->s, srcs, lens, n, b->mems, err)) return -1;
    double t1 = now();
    if (at_nmt_generate_on(&d, &g, jobs, n, err)) return -1;
    double t2 = now();
    *r = (run_t){t1 - t0, t2 - t1, t.dec_s, t.kv_s, t.calls, 0};
    for (int i = 0; i < n; i++) {
        r->tokens += jobs[i].n_tokens - 1; /* the start token is not generated */
        free(jobs[i].tokens);
    }
    return 0;
}

static int cmp_run(const void *a, const void *b)
{
    double x = ((const run_t *)a)->enc_s + ((const run_t *)a)->gen_s,
           y = ((const run_t *)b)->enc_s + ((const run_t *)b)->gen_s;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One decoder step of `rows` sequences at cache length 10: the layers
 * alone, then with the logits; median of reps, in seconds. */
static int step_split(bench_t *b, int rows, int reps, float *logits, double *layers_s, double *total_s,
                      at_err *err)
{
    const at_nmt_hparams *hp = at_nmt_model_hparams(b->m);
    at_nmt_kv *kv[MAX_BATCH] = {0};
    at_nmt_seq q[MAX_BATCH];
    int prefix[10], tok[MAX_BATCH], rc = -1;
    double a[MAX_REPS], c[MAX_REPS];
    int V = hp->dec_vocab - 8;
    for (int i = 0; i < 10; i++) prefix[i] = 4 + (10 + 7 * i) % V;
    for (int i = 0; i < rows; i++) {
        if (!(kv[i] = at_nmt_kv_new(b->m, err))) goto out;
        tok[i] = 4 + (100 + 13 * i) % V;
        q[i] = (at_nmt_seq){kv[i], prefix, 10, b->mems[i % 16], NULL, 0};
    }
    /* every memory the rows use encoded (the runs may not have) */
    const int *srcs[16], lens[16] = {b->src_len, b->src_len, b->src_len, b->src_len, b->src_len, b->src_len,
                                     b->src_len, b->src_len, b->src_len, b->src_len, b->src_len, b->src_len,
                                     b->src_len, b->src_len, b->src_len, b->src_len};
    for (int i = 0; i < 16; i++) srcs[i] = b->src[i];
    if (at_nmt_encode(b->s, srcs, lens, 16, b->mems, err) || at_nmt_decode(b->s, q, rows, err)) goto out;
    for (int r = 0; r < reps; r++)
        for (int with = 0; with < 2; with++) {
            for (int i = 0; i < rows; i++)
                q[i] = (at_nmt_seq){
                    kv[i], &tok[i], 1, b->mems[i % 16], with ? logits + (size_t)i * hp->dec_vocab : NULL, 0};
            double t0 = now();
            if (at_nmt_decode(b->s, q, rows, err)) goto out;
            (with ? c : a)[r] = now() - t0;
            for (int i = 0; i < rows; i++) at_nmt_kv_truncate(kv[i], 10);
        }
    qsort(a, (size_t)reps, sizeof *a, cmp_double);
    qsort(c, (size_t)reps, sizeof *c, cmp_double);
    *layers_s = a[reps / 2];
    *total_s = c[reps / 2];
    rc = 0;
out:
    for (int i = 0; i < rows; i++) at_nmt_kv_free(kv[i]);
    return rc;
}

static int split_list(char *s, int *out, int max)
{
    int n = 0;
    for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ",")) out[n++] = atoi(t);
    return n;
}

int main(int argc, char **argv)
{
    char threads_s[64] = "1,2", beams_s[64] = "1,4", batches_s[64] = "1,16";
    const char *dir = NULL, *label = NULL;
    int T = 20, reps = 3, q8 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            dir = a;
            continue;
        }
        if (!strcmp(a, "--q8")) { /* matrices quantized at load, as --mt-q8 */
            q8 = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr,
                    "usage: %s DIR [--threads L] [--beams L] [--batches L] [--tokens N] [--reps N] "
                    "[--label S] [--q8]\n",
                    argv[0]);
            return 2;
        }
        if (!strcmp(a, "--threads"))
            snprintf(threads_s, sizeof threads_s, "%s", v);
        else if (!strcmp(a, "--beams"))
            snprintf(beams_s, sizeof beams_s, "%s", v);
        else if (!strcmp(a, "--batches"))
            snprintf(batches_s, sizeof batches_s, "%s", v);
        else if (!strcmp(a, "--tokens"))
            T = atoi(v);
        else if (!strcmp(a, "--reps"))
            reps = atoi(v);
        else if (!strcmp(a, "--label"))
            label = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    int thr[MAX_LIST], bm[MAX_LIST], bt[MAX_LIST];
    int nthr = split_list(threads_s, thr, MAX_LIST), nbm = split_list(beams_s, bm, MAX_LIST),
        nbt = split_list(batches_s, bt, MAX_LIST);
    if (!dir || T < 1 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: %s DIR [options]: a model folder, --tokens >= 1, --reps 1..%d\n", argv[0],
                MAX_REPS);
        return 2;
    }
    for (int i = 0; i < nbt; i++)
        if (bt[i] < 1 || bt[i] > 16) {
            fprintf(stderr, "batches of 1..16 sentences\n");
            return 2;
        }
    if (!label) {
        const char *sl = strrchr(dir, '/');
        label = sl && sl[1] ? sl + 1 : dir;
    }

    at_err err = {0};
    bench_t b;
    memset(&b, 0, sizeof b);
    double t0 = now();
    at_nmt_model *m = at_nmt_model_load_as(dir, q8 ? AT_DT_Q8_0 : -1, &err);
    if (!m || at_nmt_gen_load(dir, m, &b.base, &err)) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        return 1;
    }
    double load_s = now() - t0, load_peak = peak_mb();
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    b.m = m;
    b.T = T;
    b.src_len = T + 1;
    /* M2M100/NLLB: a target language forced first, as a request does */
    b.forced_bos = hp->arch == AT_NMT_M2M100 ? hp->dec_vocab - 10 : -1;
    if (1 + T > hp->max_pos || b.src_len > hp->max_pos) {
        fprintf(stderr, "%d tokens exceed the model's %d positions\n", T, hp->max_pos);
        return 1;
    }
    /* ids clear of the specials at both ends (language codes at the top) */
    uint32_t rng = 12345, span = (uint32_t)(hp->vocab > 400 ? hp->vocab - 200 : hp->vocab - 8);
    for (int i = 0; i < 16; i++) {
        b.src[i] = malloc((size_t)b.src_len * sizeof(int));
        if (!b.src[i] || !(b.mems[i] = at_nmt_memory_new(m, b.src_len, &err))) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (int t = 0; t < T; t++) {
            rng = rng * 1664525u + 1013904223u;
            b.src[i][t] = 4 + (int)((rng >> 8) % (uint32_t)span);
        }
        b.src[i][T] = hp->eos_id;
    }
    float *logits = malloc((size_t)MAX_BATCH * hp->dec_vocab * sizeof *logits);
    if (!logits) return 1;

    char cpu[300];
    at_cpu_name(cpu, sizeof cpu);
    printf("CPU: %s; kernels: %s\n", cpu, at_isa_name(at_isa_detect()));
    printf("model %s: %s, d_model %d, %d+%d layers, vocab %d; load %.2f s, peak %.0f MB after loading\n",
           label, hp->arch == AT_NMT_MARIAN ? "marian" : "m2m_100", hp->d_model, hp->enc_layers,
           hp->dec_layers, hp->dec_vocab, load_s, load_peak);
    printf("sources of %d tokens + eos, exactly %d generated tokens each; median of %d runs (best in "
           "brackets)\n",
           T, T, reps);
    const char *head = "| model | thr | beams | batch | enc ms | gen ms | target tok/s | latency ms (best) "
                       "| dec ms/step | kv ms/step | search ms/step | RSS MB |\n"
                       "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    double split[MAX_LIST][4][2];
    int split_rows[4] = {1, 4, 16, 64};
    for (int h = 0; h < nthr; h++) {
        at_compute *pool = at_compute_new(thr[h], &err);
        b.s = pool ? at_nmt_state_new(m, pool, &err) : NULL;
        if (!b.s) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        if (h == 0) {
            /* the first translation pages the mapped weights in */
            run_t cold;
            t0 = now();
            if (run_once(&b, 1, 1, &cold, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            printf("first translation (cold, batch 1 greedy): %.0f ms\n\n%s", (now() - t0) * 1e3, head);
            fflush(stdout);
        }
        for (int k = 0; k < nbm; k++)
            for (int j = 0; j < nbt; j++) {
                run_t r[MAX_REPS];
                for (int i = 0; i < reps; i++)
                    if (run_once(&b, bm[k], bt[j], &r[i], &err)) {
                        fprintf(stderr, "%s\n", err.msg);
                        return 1;
                    }
                qsort(r, (size_t)reps, sizeof *r, cmp_run);
                const run_t *x = &r[reps / 2];
                double st = x->steps ? x->steps : 1;
                printf(
                    "| %s | %d | %d | %d | %.1f | %.1f | %.0f | %.1f (%.1f) | %.2f | %.2f | %.2f | %.0f |\n",
                    label, thr[h], bm[k], bt[j], x->enc_s * 1e3, x->gen_s * 1e3, x->tokens / x->gen_s,
                    (x->enc_s + x->gen_s) * 1e3, (r[0].enc_s + r[0].gen_s) * 1e3, x->dec_s * 1e3 / st,
                    x->kv_s * 1e3 / st, (x->gen_s - x->dec_s - x->kv_s) * 1e3 / st, rss_mb());
                fflush(stdout);
            }
        for (int i = 0; i < 4; i++)
            if (step_split(&b, split_rows[i], reps + 2, logits, &split[h][i][0], &split[h][i][1], &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
        at_nmt_state_free(b.s);
        at_compute_free(pool);
    }
    printf("\nOne decoder step at a cache length of 10 (median of %d): the layers, and the projection to the "
           "%d-token vocabulary\n\n",
           reps + 2, hp->dec_vocab);
    printf("| model | thr | rows | layers ms | logits ms | logits share |\n|---|---|---|---|---|---|\n");
    for (int h = 0; h < nthr; h++)
        for (int i = 0; i < 4; i++) {
            double l = split[h][i][0], lg = split[h][i][1] - split[h][i][0];
            printf("| %s | %d | %d | %.2f | %.2f | %.0f %% |\n", label, thr[h], split_rows[i], l * 1e3,
                   lg * 1e3, 100.0 * lg / (l + lg));
        }
    printf("\npeak memory: %.0f MB after loading, %.0f MB after the runs\n\n", load_peak, peak_mb());
    for (int i = 0; i < 16; i++) {
        at_nmt_memory_free(b.mems[i]);
        free(b.src[i]);
    }
    free(logits);
    at_nmt_model_free(m);
    return 0;
}
