/* bench_whisper_transcribe - real-time factor of a full transcription
 * through the whisper engine (mel, encoder, decoding with the reference
 * policy) and peak memory.  Prints figures, never asserts.
 *
 * Usage: bench_whisper_transcribe AUDIO MODEL... [--threads 1,2]
 *   AUDIO: 16 kHz WAV or .npy of float32 samples (e.g. the oracle's
 *          audio.npy, an 11 s recording)
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
    } else {
        printf("%s: %s\n", model, err.msg);
    }
    at_asr_engine_free(e);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s AUDIO MODEL... [--threads 1,2]\n", argv[0]);
        return 2;
    }
    int threads[8] = {1, 2}, n_threads = 2;
    const char *models[32];
    int n_models = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
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
