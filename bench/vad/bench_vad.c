/* bench_vad - what voice activity detection costs: CPU time per second of
 * audio for the energy detector and for Silero's network, on the five
 * LibriVox clips fed as a stream in 100 ms packets, one thread, and the
 * memory the loaded network takes.  Prints figures, never asserts.
 *
 * Usage: bench_vad [SILERO.onnx]   (default: tests/data/fetched's v5) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clips.h"
#include "engines/vad/vad.h"

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "tests/data/fetched/silero_vad-v5.onnx";
    size_t n;
    float *pcm = at_test_librivox_stream(AT_TEST_N_CLIPS, 0, 0, &n, NULL);
    if (!pcm) return 1;
    at_err err;
    double secs = (double)n / 16000;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss0 = ru.ru_maxrss;
    double t0 = cpu_s();
    at_silero *sil = at_silero_load(model, &err);
    double load = cpu_s() - t0;
    getrusage(RUSAGE_SELF, &ru);
    if (!sil) {
        fprintf(stderr, "%s: %s (run scripts/fetch-test-data.sh)\n", model, err.msg);
        return 1;
    }
    printf("%.1f s of LibriVox speech, 100 ms packets, 1 thread; Silero load %.1f ms, "
           "peak RSS +%.1f MB while loading\n",
           secs, 1e3 * load, (double)(ru.ru_maxrss - rss0) / 1024);
    for (int k = 0; k < 2; k++) {
        at_vad_config c;
        at_vad_config_default(&c);
        c.silero = k ? sil : NULL;
        at_vad *v = at_vad_new(&c, &err);
        if (!v) {
            fprintf(stderr, "vad: %s\n", err.msg);
            return 1;
        }
        int reps = k ? 3 : 20, utts = 0;
        double a = cpu_s();
        for (int r = 0; r < reps; r++) {
            at_vad_reset(v);
            for (size_t off = 0; off < n; off += 1600) {
                int st = 0, en = 0;
                at_vad_feed(v, pcm + off, n - off < 1600 ? n - off : 1600, &st, &en, NULL);
                utts += st;
            }
        }
        double per = (cpu_s() - a) / reps;
        printf("%-7s %6.2f ms CPU per second of audio (RTF %.5f), %d utterances per pass\n", at_vad_kind(v),
               1e3 * per / secs, per / secs, utts / reps);
        at_vad_free(v);
    }
    at_silero_free(sil);
    free(pcm);
    return 0;
}
