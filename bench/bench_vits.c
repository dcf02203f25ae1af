/* bench_vits.c - VITS voices (engines/tts/vits): real-time factor with 1
 * and 2 threads, the latency of a sentence's first audio (the decoder's
 * first piece handed to the caller), and where the time goes (text
 * encoder, duration predictor, prior flows, HiFi-GAN decoder).
 *
 *   bench_vits [--model DIR] [--preset mms-tts] [--tokens N] [--runs R] [--threads T]
 *
 * Without --model, a random-weight voice of the preset's shape is written
 * to a temporary folder first (tools.h: at_vits_random_model).  The
 * sentence is N token ids (default 61: about ten words of characters with
 * the blanks MMS-TTS puts between them); --threads T runs T threads only
 * (default: 1, then 2).  Figures only; never asserts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compute/isa.h"
#include "compute/pool.h"
#include "core/clock.h"
#include "engines/tts/vits/model.h"
#include "tools/tools.h"

/* CPU time of the whole process: on a machine others share, the figure
 * of one thread that their load does not inflate. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A listener that starts playing when the first samples arrive: slack
 * is how far the stream stays ahead of it at worst (negative: a gap). */
typedef struct first_audio {
    double t0, first;
    double played; /* seconds of audio out before this piece */
    double slack;
    int rate;
} first_audio;

static int sink(void *user, const float *x, size_t n, at_err *err)
{
    (void)x;
    (void)err;
    first_audio *f = user;
    double now = at_now_s() - f->t0;
    if (f->first < 0) f->first = now;
    double ahead = f->first + f->played - now;
    if (f->played > 0 && ahead < f->slack) f->slack = ahead;
    f->played += (double)n / f->rate;
    return 0;
}

/* Resident memory in MB (Linux), or -1. */
static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, res = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = -1;
        fclose(f);
    }
    return res < 0 ? -1 : (double)res * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *preset = "mms-tts";
    int n_tok = 61, runs = 3, only = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--preset"))
            preset = argv[i + 1];
        else if (!strcmp(argv[i], "--tokens"))
            n_tok = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            only = atoi(argv[i + 1]);
        else {
            fprintf(stderr,
                    "usage: bench_vits [--model DIR] [--preset P] [--tokens N] [--runs R] [--threads T]\n");
            return 2;
        }
    }
    if (n_tok < 1 || n_tok > AT_VITS_MAX_TOKENS || runs < 1 || only < 0 || only > 256) {
        fprintf(stderr, "bench_vits: bad --tokens, --runs or --threads\n");
        return 2;
    }
    at_err err = {0};
    char tmp[] = "/tmp/at-bench-vits-XXXXXX";
    if (!dir) {
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        double t = at_now_s();
        if (at_vits_random_model(preset, "f16", tmp, 1, NULL, &err)) {
            fprintf(stderr, "bench_vits: %s\n", err.msg);
            return 1;
        }
        printf("random %s voice written in %.1f s\n", preset, at_now_s() - t);
        dir = tmp;
    }
    double t = at_now_s();
    at_vits_model *m = at_vits_model_load(dir, &err);
    if (!m) {
        fprintf(stderr, "bench_vits: %s\n", err.msg);
        return 1;
    }
    const at_vits_hparams *hp = at_vits_model_hparams(m);
    char cpu[128];
    at_cpu_name(cpu, sizeof cpu);
    printf("loaded in %.2f s: hidden %d, %d layers, flow %d, hop %d, %d Hz; cpu %s\n", at_now_s() - t,
           hp->hidden, hp->n_layers, hp->flow_size, hp->hop, hp->sampling_rate, cpu);
    double rss_loaded = rss_mb();
    int *ids = malloc((size_t)n_tok * sizeof *ids);
    for (int i = 0; i < n_tok; i++) ids[i] = i % 2 == 0 ? 0 : 1 + (i * 7) % (hp->vocab - 1);
    at_vits_params p;
    at_vits_params_default(m, &p);
    p.seed = 1;
    for (int threads = only ? only : 1; threads <= (only ? only : 2); threads++) {
        at_compute *pool = at_compute_new(threads, &err);
        at_vits_timing tm = {0};
        double wall = 0, audio = 0, first = 0, cpu = 0, best = 1e30, slack = 1e30;
        size_t n_wave = 0;
        /* one run to warm up (page faults, the pool's threads) */
        first_audio fa = {at_now_s(), -1, 0, 1e30, hp->sampling_rate};
        if (at_vits_synthesize_stream(m, pool, ids, n_tok, &p, sink, &fa, &n_wave, NULL, &err)) {
            fprintf(stderr, "bench_vits: %s\n", err.msg);
            return 1;
        }
        for (int r = 0; r < runs; r++) {
            double c0 = cpu_s();
            fa = (first_audio){at_now_s(), -1, 0, 1e30, hp->sampling_rate};
            if (at_vits_synthesize_timed(m, pool, ids, n_tok, &p, sink, &fa, &n_wave, NULL, &tm, &err)) {
                fprintf(stderr, "bench_vits: %s\n", err.msg);
                return 1;
            }
            double w = at_now_s() - fa.t0, a = (double)n_wave / hp->sampling_rate;
            if (w / a < best) best = w / a;
            wall += w;
            cpu += cpu_s() - c0;
            first += fa.first;
            if (fa.slack < slack) slack = fa.slack;
            audio += (double)n_wave / hp->sampling_rate;
        }
        double all = tm.encoder + tm.duration + tm.flow + tm.decoder;
        /* the best run beside the mean: on a shared machine the others
         * carry its neighbours' load */
        printf(
            "%d thread%s: %d tokens -> %.2f s of audio in %.3f s: RTF %.3f (best run %.3f; CPU time / audio "
            "%.3f), first audio after %.0f ms, the stream ahead of playback by %.0f ms at least\n",
            threads, threads > 1 ? "s" : "", n_tok, audio / runs, wall / runs, wall / audio, best,
            cpu / audio, 1e3 * first / runs, 1e3 * slack);
        printf("  text encoder %.1f ms (%.1f%%), duration %.1f ms (%.1f%%), flow %.1f ms (%.1f%%), "
               "HiFi-GAN %.1f ms (%.1f%%)\n",
               1e3 * tm.encoder / runs, 100 * tm.encoder / all, 1e3 * tm.duration / runs,
               100 * tm.duration / all, 1e3 * tm.flow / runs, 100 * tm.flow / all, 1e3 * tm.decoder / runs,
               100 * tm.decoder / all);
        at_compute_free(pool);
    }
    /* a voice keeps one synthesis's working memory for the next */
    printf("resident memory: %.0f MB loaded, %.0f MB after synthesis\n", rss_loaded, rss_mb());
    free(ids);
    at_vits_model_free(m);
    if (dir == tmp) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", tmp);
        unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        unlink(path);
        rmdir(tmp);
    }
    return 0;
}
