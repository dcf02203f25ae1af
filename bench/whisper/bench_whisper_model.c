/* bench_whisper_model - encoder time (30 s window, and 10 s with
 * audio_ctx = 500), decoder time per token and peak memory, for random-
 * weight models of the official shapes.  Each configuration runs in its
 * own child process so ru_maxrss is that configuration's peak.  "enc1st"
 * is the first encode after loading (pages the mapped weights in, like a
 * whisper.cpp whisper-bench run); "enc 30s" a warm one.  "align" is
 * word timestamps' extra work for a 30 s window of 100 text tokens: the
 * decoder pass over them and the alignment heads' scores
 * (at_whisper_cross_scores), without the DTW itself.  "fresh 10s" is a
 * request's encoder: a state made, 10 s encoded, the state freed (the
 * memory a request allocates is faulted in each time).
 *
 *   bench_whisper_model [--presets tiny,base,small] [--types f16,q8_0]
 *                       [--threads 1,2] [--tokens 32] [--dir DIR]
 *                       [--model FILE]   (benchmark one existing model)
 *                       [--device N]     (GPU N, the CUDA backend; -1: CPU)
 * Models are generated once into DIR (default $TMPDIR/at-whisper-bench). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compute/backend.h"
#include "engines/asr/whisper/model.h"
#include "tools/tools.h"

typedef struct {
    double load_s, cold_s, enc30_s, enc10_s, tok_ms, tok8_ms, tok5_ms, align_ms, fresh10_s;
    long maxrss_kb;
    int ok;
} result_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int g_device = -1;

static void run_child(const char *path, int threads, int n_tok, int fd)
{
    result_t r = {0};
    at_err err = {0};
    double t0 = now();
    at_whisper_model *m = at_whisper_model_load_on(path, g_device, &err);
    if (!m) {
        fprintf(stderr, "load %s: %s\n", path, err.msg);
        _exit(1);
    }
    r.load_s = now() - t0;
    const at_whisper_hparams *hp = at_whisper_model_hparams(m);
    const at_whisper_special *sp = at_whisper_model_special(m);
    /* 30 s of a chirp plus noise: content does not change the cost */
    size_t n = AT_WHISPER_N_SAMPLES;
    float *pcm = malloc(n * sizeof(float)),
          *mel = malloc(sizeof(float) * (size_t)hp->n_mels * AT_WHISPER_N_FRAMES);
    float *lg = malloc(sizeof(float) * (size_t)hp->n_vocab);
    uint32_t s = 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        double t = (double)i / AT_WHISPER_SAMPLE_RATE;
        pcm[i] =
            0.3f * (float)sin(2 * M_PI * (200 + 40 * t) * t) + 0.01f * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    at_compute *pool = at_compute_new(threads, &err);
    at_whisper_state *st = pool ? at_whisper_state_new_shared(m, pool, &err) : NULL;
    at_whisper_kv *kv = at_whisper_kv_new(m, &err);
    if (!pcm || !mel || !lg || !st || !kv || at_whisper_mel(m, pcm, n, mel, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        _exit(1);
    }
    /* first (cold) run pages in the mapped weights; then the measured runs */
    t0 = now();
    if (at_whisper_encode(st, mel, 0, &err)) _exit(1);
    r.cold_s = now() - t0;
    t0 = now();
    if (at_whisper_encode(st, mel, 0, &err)) _exit(1);
    r.enc30_s = now() - t0;
    t0 = now();
    if (at_whisper_encode(st, mel, 500, &err)) _exit(1);
    r.enc10_s = now() - t0;
    t0 = now();
    for (int i = 0; i < 3; i++) {
        at_whisper_state *fs = at_whisper_state_new_shared(m, pool, &err);
        if (!fs || at_whisper_encode(fs, mel, 500, &err)) _exit(1);
        at_whisper_state_free(fs);
    }
    r.fresh10_s = (now() - t0) / 3;
    int prefix[4] = {sp->sot, sp->sot + 1, sp->transcribe, sp->not_};
    if (at_whisper_decode(st, kv, prefix, 4, 0, lg, &err)) _exit(1);
    t0 = now();
    for (int i = 0; i < n_tok; i++) {
        int tok = 100 + i * 37; /* fixed tokens: argmax of a random model is meaningless */
        if (at_whisper_decode(st, kv, &tok, 1, 0, lg, &err)) {
            fprintf(stderr, "decode: %s\n", err.msg);
            _exit(1);
        }
    }
    r.tok_ms = (now() - t0) * 1e3 / n_tok;
    /* one decoder step for 8 sequences in one batch (beams, samples or
     * concurrent streams): the weights are read once for all eight */
    enum { NB = 8 };
    at_whisper_kv *kvs[NB];
    at_whisper_seq q[NB];
    float *lgs = malloc(sizeof(float) * (size_t)hp->n_vocab * NB);
    int toks[NB];
    for (int b = 0; b < NB; b++) {
        kvs[b] = at_whisper_kv_new(m, &err);
        if (!kvs[b] || !lgs) _exit(1);
        q[b] = (at_whisper_seq){kvs[b], prefix, 4, NULL, lgs + (size_t)b * hp->n_vocab, 0};
    }
    if (at_whisper_decode_batch(st, q, NB, &err)) _exit(1);
    t0 = now();
    for (int i = 0; i < n_tok; i++) {
        for (int b = 0; b < NB; b++) {
            toks[b] = 100 + i * 37 + b;
            q[b].tokens = &toks[b];
            q[b].n = 1;
        }
        if (at_whisper_decode_batch(st, q, NB, &err)) {
            fprintf(stderr, "decode batch: %s\n", err.msg);
            _exit(1);
        }
    }
    r.tok8_ms = (now() - t0) * 1e3 / n_tok;
    /* a beam-5 step: five sequences on one audio (the first five caches,
     * as long as the single sequence's was) */
    t0 = now();
    for (int i = 0; i < n_tok; i++) {
        for (int b = 0; b < 5; b++) toks[b] = 200 + i * 41 + b;
        if (at_whisper_decode_batch(st, q, 5, &err)) {
            fprintf(stderr, "decode beams: %s\n", err.msg);
            _exit(1);
        }
    }
    r.tok5_ms = (now() - t0) * 1e3 / n_tok;
    /* word alignment of a window: sot sequence, notimestamps, 100 text
     * tokens, eot, over the full 30 s encoding */
    if (at_whisper_encode(st, mel, 0, &err)) _exit(1);
    enum { NA = 105 };
    at_whisper_head heads[AT_WHISPER_MAX_HEADS];
    int nh = at_whisper_alignment_heads(m, heads),
        atok[NA] = {sp->sot, sp->sot + 1, sp->transcribe, sp->not_};
    for (int i = 4; i < NA - 1; i++) atok[i] = 100 + i * 37;
    atok[NA - 1] = sp->eot;
    float *qk = malloc(sizeof(float) * (size_t)nh * NA * 1500), probs[NA];
    t0 = now();
    if (!qk || at_whisper_cross_scores(st, kv, atok, NA, heads, nh, 1500, qk, probs, &err)) {
        fprintf(stderr, "align: %s\n", err.msg);
        _exit(1);
    }
    r.align_ms = (now() - t0) * 1e3;
    free(qk);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.maxrss_kb = ru.ru_maxrss;
    r.ok = 1;
    if (write(fd, &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
    _exit(0);
}

static int bench(const char *path, int threads, int n_tok, result_t *r)
{
    int p[2];
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(p[0]);
        run_child(path, threads, n_tok, p[1]);
    }
    close(p[1]);
    memset(r, 0, sizeof *r);
    ssize_t got = read(p[0], r, sizeof *r);
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return got == (ssize_t)sizeof *r && r->ok ? 0 : -1;
}

static int split(char *s, char **out, int max)
{
    int n = 0;
    for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ",")) out[n++] = t;
    return n;
}

int main(int argc, char **argv)
{
    char presets_s[256] = "tiny,base,small", types_s[128] = "f16,q8_0", threads_s[64] = "1,2";
    const char *model = NULL, *td = getenv("TMPDIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/at-whisper-bench", td ? td : "/tmp");
    int n_tok = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr,
                    "usage: %s [--presets L] [--types L] [--threads L] [--tokens N] [--dir D] [--model F] "
                    "[--device N]\n",
                    argv[0]);
            return 2;
        }
        if (!strcmp(a, "--presets"))
            snprintf(presets_s, sizeof presets_s, "%s", v);
        else if (!strcmp(a, "--types"))
            snprintf(types_s, sizeof types_s, "%s", v);
        else if (!strcmp(a, "--threads"))
            snprintf(threads_s, sizeof threads_s, "%s", v);
        else if (!strcmp(a, "--tokens"))
            n_tok = atoi(v) > 0 ? atoi(v) : 32;
        else if (!strcmp(a, "--dir"))
            snprintf(dir, sizeof dir, "%s", v);
        else if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--device"))
            g_device = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    char *presets[16], *types[8], *threads[8];
    int np = split(presets_s, presets, 16), nt = split(types_s, types, 8), nth = split(threads_s, threads, 8);
    if (model) {
        np = 1;
        nt = 1;
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    char cpu[300];
    at_cpu_name(cpu, sizeof cpu);
    printf("CPU: %s; kernels: %s\n", cpu, at_isa_name(at_isa_detect()));
    if (g_device >= 0) printf("device: cuda:%d (the thread counts below are the host's)\n", g_device);
    printf("%-16s %-5s %3s %7s %10s %10s %10s %9s %8s %10s %10s %9s %10s\n", "model", "type", "thr", "load s",
           "enc1st s", "enc 30s s", "enc 10s s", "ms/token", "peak MB", "x8 ms/step", "beam5 ms", "align ms",
           "fresh 10s");
    for (int p = 0; p < np; p++)
        for (int t = 0; t < nt; t++) {
            char path[1200];
            if (model) {
                snprintf(path, sizeof path, "%s", model);
            } else {
                snprintf(path, sizeof path, "%s/%s-%s.bin", dir, presets[p], types[t]);
                struct stat st;
                if (stat(path, &st) != 0) {
                    at_err err = {0};
                    fprintf(stderr, "generating %s ...\n", path);
                    if (at_whisper_random_model(presets[p], types[t], path, 1, &err)) {
                        fprintf(stderr, "%s\n", err.msg);
                        return 1;
                    }
                }
            }
            for (int h = 0; h < nth; h++) {
                result_t r;
                int thr = atoi(threads[h]);
                if (bench(path, thr, n_tok, &r)) {
                    printf("%-16s %-5s %3d   failed\n", model ? "model" : presets[p], model ? "" : types[t],
                           thr);
                    continue;
                }
                printf("%-16s %-5s %3d %7.3f %10.3f %10.3f %10.3f %9.2f %8.1f %10.2f %10.2f %9.1f %10.3f\n",
                       model ? "model" : presets[p], model ? "" : types[t], thr, r.load_s, r.cold_s,
                       r.enc30_s, r.enc10_s, r.tok_ms, r.maxrss_kb / 1024.0, r.tok8_ms, r.tok5_ms, r.align_ms,
                       r.fresh10_s);
                fflush(stdout);
            }
        }
    return 0;
}
