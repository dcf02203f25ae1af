/* bench_whisper_transcribe - real-time factor of a full transcription
 * through the whisper engine (mel, encoder, decoding with the reference
 * policy) and peak memory.  Prints figures, never asserts.
 *
 * Usage: bench_whisper_transcribe AUDIO MODEL... [--threads 1,2] [--words]
 *                                 [--no-fallback]
 *   AUDIO: 16 kHz WAV or .npy of float32 samples (e.g. the oracle's
 *          audio.npy, an 11 s recording)
 *   --words: each run twice, without and with word timestamps, and the
 *            second's extra time (the alignment pass and DTW)
 *   --no-fallback: one decode per window (temperature 0 only)
 *
 * Random-weight models never satisfy the fallback thresholds, so they
 * decode each window at every temperature (0.0 .. 1.0) with up to 224
 * tokens: their RTF is an upper bound for a trained model of that shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/audio.h"
#include "nn/npy.h"
#include "engines/asr/whisper/whisper.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int load_audio(const char *path, at_audio *a, at_err *err)
{
    size_t l = strlen(path);
    if (l > 4 && strcmp(path + l - 4, ".npy") == 0) {
        at_npy n;
        if (at_npy_read(path, &n, 1u << 30, err)) return -1;
        a->n = at_npy_count(&n);
        a->samples = malloc(a->n * sizeof *a->samples);
        if (!a->samples) return -1;
        memcpy(a->samples, n.data, a->n * sizeof *a->samples);
        a->sample_rate = 16000;
        at_npy_free(&n);
        return 0;
    }
    if (at_audio_decode_file(path, 0, a, err)) return -1;
    return at_audio_resample(a, 16000, err);
}

static int with_words, no_fallback;

/* The same transcription warm, without and with word timestamps. */
static void words_cost(at_asr_engine *e, const at_audio *a, at_asr_options *opt, const char *name,
                       int threads)
{
    at_err err;
    at_asr_result r;
    double t[2];
    size_t nw = 0;
    for (int w = 0; w < 2; w++) {
        opt->word_timestamps = w;
        double t0 = now_s();
        if (at_asr_transcribe(e, a->samples, a->n, opt, &r, &err) != 0) {
            printf("%s: %s\n", name, err.msg);
            return;
        }
        t[w] = now_s() - t0;
        for (size_t i = 0; i < r.n_segments; i++) nw += r.segments[i].n_words;
        at_asr_result_free(&r);
    }
    printf("%-28s threads %d: warm %.2f s without words, %.2f s with %zu words: +%.0f ms (%.1f %%)\n", name,
           threads, t[0], t[1], nw, (t[1] - t[0]) * 1e3, (t[1] - t[0]) / t[0] * 100);
}

/* One configuration per child process so peak RSS is its own. */
static void run_one(const at_audio *a, const char *model, int threads)
{
    at_err err;
    at_err_clear(&err);
    double t0 = now_s();
    at_asr_engine *e = at_asr_whisper_new(model, threads, &err);
    if (!e) {
        printf("%s: %s\n", model, err.msg);
        return;
    }
    double load = now_s() - t0;
    at_asr_options opt = {0};
    opt.language = "en";
    if (no_fallback) opt.temperature_inc = -1;
    at_asr_result r;
    t0 = now_s();
    int rc = at_asr_transcribe(e, a->samples, a->n, &opt, &r, &err);
    double dt = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double dur = (double)a->n / 16000;
    const char *base = strrchr(model, '/');
    if (rc == 0) {
        printf("%-28s threads %d: load %.2f s, %.1f s audio in %.2f s, RTF %.3f, "
               "%zu segments, peak RSS %ld MB\n",
               base ? base + 1 : model, threads, load, dur, dt, dt / dur, r.n_segments, ru.ru_maxrss / 1024);
        at_asr_result_free(&r);
        if (with_words) words_cost(e, a, &opt, base ? base + 1 : model, threads);
    } else {
        printf("%s: %s\n", model, err.msg);
    }
    at_asr_engine_free(e);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s AUDIO MODEL... [--threads 1,2] [--words] [--no-fallback]\n", argv[0]);
        return 2;
    }
    int threads[8] = {1, 2}, n_threads = 2;
    const char *models[32];
    int n_models = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--words") == 0) {
            with_words = 1;
        } else if (strcmp(argv[i], "--no-fallback") == 0) {
            no_fallback = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            n_threads = 0;
            for (char *p = strtok(argv[++i], ","); p && n_threads < 8; p = strtok(NULL, ","))
                threads[n_threads++] = atoi(p);
        } else if (n_models < 32) {
            models[n_models++] = argv[i];
        }
    }
    at_audio a = {0};
    at_err err;
    at_err_clear(&err);
    if (load_audio(argv[1], &a, &err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    for (int m = 0; m < n_models; m++)
        for (int t = 0; t < n_threads; t++) {
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                run_one(&a, models[m], threads[t]);
                fflush(stdout);
                _exit(0);
            }
            waitpid(pid, NULL, 0);
        }
    at_audio_free(&a);
    return 0;
}
