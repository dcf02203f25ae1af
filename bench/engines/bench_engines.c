/* bench_engines - figures for the embedded engines (prints, never asserts).
 *
 *   ASR: real-time factor and peak memory of pocketsphinx on the LibriVox clips
 *   MT:  latency per sentence and words per second through the persistent
 *        Apertium pipeline (en -> es)
 *   TTS: real-time factor and time to first audio chunk, flite and espeak-ng
 *
 * Usage: bench_engines [asr|mt|tts]... (default: all) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/audio.h"
#include "engines/asr/pocketsphinx.h"
#include "engines/mt/apertium.h"
#include "engines/tts/espeak.h"
#include "engines/tts/flite.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static void bench_asr(void)
{
    static const char *const clips[] = {"0870", "0880", "0890", "0920", "0930"};
    at_err err;
    at_err_clear(&err);
    double t0 = now_s();
    at_asr_engine *e = at_asr_pocketsphinx_new(NULL, &err);
    if (!e) {
        printf("asr: %s\n", err.msg);
        return;
    }
    printf("asr  pocketsphinx load: %.2f s\n", now_s() - t0);
    double audio = 0, compute = 0;
    for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++) {
        char path[256];
        snprintf(path, sizeof path,
                 "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-%s.wav",
                 clips[i]);
        at_audio a = {0};
        if (at_audio_decode_file(path, 0, &a, &err) || at_audio_resample(&a, 16000, &err)) {
            printf("asr: %s: %s\n", path, err.msg);
            continue;
        }
        at_asr_options opt = {0};
        at_asr_result r;
        double s = now_s();
        if (at_asr_transcribe(e, a.samples, a.n, &opt, &r, &err) == 0) {
            double dt = now_s() - s;
            double dur = (double)a.n / 16000;
            printf("asr  clip %s: %.2f s audio in %.3f s (RTF %.3f)\n", clips[i], dur, dt, dt / dur);
            audio += dur;
            compute += dt;
            at_asr_result_free(&r);
        }
        at_audio_free(&a);
    }
    printf("asr  pocketsphinx total: %.1f s audio, RTF %.3f, peak RSS %ld MB\n", audio, compute / audio,
           peak_rss_mb());
    at_asr_engine_free(e);
}

static void bench_mt(void)
{
    static const char *const sentences[] = {
        "The house is big and the garden is green.",
        "I would like to buy two tickets for the train to Madrid.",
        "My brother works in a hospital in the city.",
        "We are going to the beach tomorrow morning if the weather is good.",
        "She reads a book every week.",
        "The children are playing in the park with their dog.",
        "Can you tell me where the nearest station is?",
        "This restaurant serves the best food in town.",
    };
    size_t n = sizeof sentences / sizeof sentences[0];
    at_err err;
    at_err_clear(&err);
    at_mt_engine *e = at_mt_apertium_new(NULL, 0, &err);
    if (!e) {
        printf("mt: %s\n", err.msg);
        return;
    }
    char *out = NULL;
    double t0 = now_s();
    if (at_mt_translate(e, "en", "es", "Hello.", &out, &err)) {
        printf("mt: %s\n", err.msg);
        at_mt_engine_free(e);
        return;
    }
    free(out);
    printf("mt   first request (starts the pipeline): %.3f s\n", now_s() - t0);
    int rounds = 10;
    double words = 0, total = 0, worst = 0;
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < n; i++) {
            double s = now_s();
            if (at_mt_translate(e, "en", "es", sentences[i], &out, &err) == 0) {
                double dt = now_s() - s;
                total += dt;
                if (dt > worst) worst = dt;
                free(out);
                for (const char *p = sentences[i]; *p; p++)
                    if (*p == ' ') words++;
                words++;
            }
        }
    printf("mt   apertium en->es warm: %.2f ms per sentence (worst %.2f ms), %.0f words/s\n",
           1000 * total / (rounds * n), 1000 * worst, words / total);
    at_mt_engine_free(e);
}

typedef struct tts_probe {
    double t0, first;
    size_t samples;
} tts_probe;

static int probe_chunk(void *user, const int16_t *pcm, size_t n)
{
    (void)pcm;
    tts_probe *p = user;
    if (!p->first) p->first = now_s() - p->t0;
    p->samples += n;
    return 0;
}

static void bench_tts_engine(at_tts_engine *e, const char *voice_name)
{
    const at_tts_voice *v = at_tts_engine_find_voice(e, voice_name);
    if (!v) {
        printf("tts: no voice %s\n", voice_name);
        return;
    }
    const char *text = "Good morning. The weather is nice today, and we will take the train "
                       "to the city to visit the museum and have lunch with our friends.";
    double audio = 0, compute = 0, first = 0;
    int rounds = 5;
    for (int r = 0; r < rounds; r++) {
        tts_probe p = {now_s(), 0, 0};
        at_err err;
        at_err_clear(&err);
        if (at_tts_synthesize(e, v, text, 1.0f, probe_chunk, &p, &err)) {
            printf("tts: %s\n", err.msg);
            return;
        }
        compute += now_s() - p.t0;
        audio += (double)p.samples / v->sample_rate;
        first += p.first;
    }
    printf("tts  %-9s voice %-4s: RTF %.3f, first audio after %.1f ms (%.1f s of speech)\n",
           at_tts_engine_name(e), v->name, compute / audio, 1000 * first / rounds, audio / rounds);
}

static void bench_tts(void)
{
    at_err err;
    at_err_clear(&err);
    at_tts_engine *f = at_tts_flite_new(&err);
    if (f) {
        bench_tts_engine(f, "slt");
        bench_tts_engine(f, "kal");
        at_tts_engine_free(f);
    }
    double t0 = now_s();
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    if (e) {
        printf("tts  espeak-ng start (its worker, the voice list): %.1f ms\n", 1000 * (now_s() - t0));
        bench_tts_engine(e, "en");
        bench_tts_engine(e, "es");
        at_tts_engine_free(e);
    }
    /* The VITS voices' front end: text to espeak-ng phonemes. */
    const char *text = "Good morning. The weather is nice today, and we will take the train "
                       "to the city to visit the museum and have lunch with our friends.";
    char *ph = NULL;
    if (at_espeak_phonemize("en-us", text, &ph, &err) != 0) {
        printf("tts: %s\n", err.msg);
        return;
    }
    free(ph);
    int rounds = 50;
    t0 = now_s();
    for (int r = 0; r < rounds && at_espeak_phonemize("en-us", text, &ph, &err) == 0; r++) free(ph);
    printf("tts  espeak-ng phonemes en-us: %.2f ms per %zu-byte text\n", 1000 * (now_s() - t0) / rounds,
           strlen(text));
}

int main(int argc, char **argv)
{
    int all = argc < 2;
    for (int i = 1; i < argc || all; i++) {
        const char *w = all ? "all" : argv[i];
        if (all || !strcmp(w, "asr")) bench_asr();
        if (all || !strcmp(w, "mt")) bench_mt();
        if (all || !strcmp(w, "tts")) bench_tts();
        if (all) break;
    }
    return 0;
}
