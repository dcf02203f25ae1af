/* bench_whisper_stream - live streaming through the whisper engine at
 * real-time pace: LibriVox clips separated by 1.5 s pauses, fed in 0.1 s
 * ticks.  Prints per-step compute, the delay from the end of an utterance
 * (end of a clip) to the final that closes it (median, p90), CPU per
 * stream, and the largest number of concurrent streams that keep up.
 * Prints figures, never asserts.
 *
 * Usage: bench_whisper_stream MODEL [--max-streams N] [--from N] [--clips K]
 *                             [--vad-model SILERO.onnx] [--batch-decode 0|1]
 * Random weights never pass the hallucination guards, so they are off
 * here (every step decodes, an upper bound for a trained model).  The
 * delay after an utterance is the VAD's hangover (600 ms of silence) plus
 * the decode that flushes the tail. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clips.h"
#include "engines/asr/whisper/whisper.h"

#define TICK 1600

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

typedef struct run {
    at_asr_engine *e;
    const float *pcm;
    size_t n;
    const double *utt_end; /* seconds */
    int n_utt;
    int paced;
    /* results */
    double steps[4096];
    size_t n_steps;
    double delays[64];
    size_t n_delays;
    double compute, max_lag;
    double clock; /* simulated or real time of the current call's end */
    double pos;
    int next_utt;
} run;

static int on_ev(void *u, const at_asr_event *ev)
{
    run *r = u;
    if (!ev->is_final) return 0;
    /* the first final after an utterance's end closes it */
    while (r->next_utt < r->n_utt && r->utt_end[r->next_utt] <= r->pos + 1e-9) {
        if (r->n_delays < 64) r->delays[r->n_delays++] = -1; /* filled after the call */
        r->next_utt++;
    }
    return 0;
}

static void *stream_thread(void *arg)
{
    run *r = arg;
    at_err err;
    at_asr_options o = {0};
    o.language = "en";
    at_asr_stream *s = at_asr_stream_open(r->e, &o, &err);
    if (!s) {
        fprintf(stderr, "open: %s\n", err.msg);
        return NULL;
    }
    double t0 = now_s(), sim = 0;
    for (size_t off = 0; off < r->n; off += TICK) {
        size_t k = r->n - off < TICK ? r->n - off : TICK;
        r->pos = (double)(off + k) / 16000;
        if (r->paced) {
            double wait = t0 + r->pos - now_s();
            if (wait > 0) usleep((useconds_t)(wait * 1e6));
        }
        size_t d0 = r->n_delays;
        double a = now_s();
        if (at_asr_stream_feed(s, r->pcm + off, k, on_ev, r, &err) < 0) {
            fprintf(stderr, "feed at %.1f s: %s\n", r->pos, err.msg);
            break;
        }
        double c = now_s() - a;
        r->compute += c;
        if (c > 0.002 && r->n_steps < 4096) r->steps[r->n_steps++] = c;
        /* simulated real-time clock: a call starts when its audio has
         * arrived and the previous call is done */
        sim = (sim > r->pos ? sim : r->pos) + c;
        double end = r->paced ? now_s() - t0 : sim;
        double lag = end - r->pos;
        if (lag > r->max_lag) r->max_lag = lag;
        for (size_t i = d0; i < r->n_delays; i++) {
            int u = r->next_utt - (int)(r->n_delays - i);
            r->delays[i] = end - r->utt_end[u];
        }
    }
    at_asr_stream_finish(s, on_ev, r, &err);
    at_asr_stream_close(s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s MODEL [--max-streams N] [--from N] [--clips K] [--vad-model FILE] [--batch-decode "
                "0|1]\n",
                argv[0]);
        return 2;
    }
    int max_streams = 4, n_clips = 5, from = 1, batch = 1;
    const char *vad_model = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--max-streams") == 0) max_streams = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--clips") == 0) n_clips = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--from") == 0) from = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--vad-model") == 0) vad_model = argv[i + 1];
        if (strcmp(argv[i], "--batch-decode") == 0) batch = atoi(argv[i + 1]);
    }
    if (n_clips < 1 || n_clips > AT_TEST_N_CLIPS) n_clips = AT_TEST_N_CLIPS;
    double utt_end[AT_TEST_N_CLIPS];
    size_t n;
    /* 1 s lead-in, 1.5 s pauses */
    float *pcm = at_test_librivox_stream(n_clips, 1.0, 1.5, &n, utt_end);
    if (!pcm) return 1;
    at_err err;
    at_whisper_stream_config c;
    at_whisper_stream_config_default(&c);
    c.no_speech_threshold = c.logprob_threshold = c.compression_threshold = NAN;
    c.vad_model = vad_model;
    c.batch_decode = batch;
    /* one pool of every core, shared by all streams (as the service runs) */
    at_asr_engine *e = at_asr_whisper_new_ex(argv[1], 0, &c, &err);
    if (!e) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    double dur = (double)n / 16000;
    printf("model %s, %.1f s of audio (%d utterances), step %d ms, VAD %s, pool of all cores, %s\n", argv[1],
           dur, n_clips, c.step_ms, vad_model ? "silero" : "energy",
           batch ? "decoder steps batched across streams" : "each stream decodes its own steps");
    /* one stream, simulated real-time clock (no sleeping) */
    run *r = calloc(1, sizeof *r);
    *r = (run){.e = e, .pcm = pcm, .n = n, .utt_end = utt_end, .n_utt = n_clips};
    stream_thread(r);
    printf("1 stream: step compute median %.0f ms p90 %.0f ms max %.0f ms (%zu decoding steps)\n",
           1e3 * pct(r->steps, r->n_steps, 0.5), 1e3 * pct(r->steps, r->n_steps, 0.9),
           1e3 * pct(r->steps, r->n_steps, 1.0), r->n_steps);
    printf("1 stream: utterance end -> final median %.2f s p90 %.2f s (%zu utterances)\n",
           pct(r->delays, r->n_delays, 0.5), pct(r->delays, r->n_delays, 0.9), r->n_delays);
    printf("1 stream: CPU %.0f%% of one core (compute %.1f s for %.1f s of audio)\n", 100 * r->compute / dur,
           r->compute, dur);
    free(r);
    /* N streams at real-time pace in parallel: keeps up while the lag
     * stays below 2 s */
    for (int ns = from < 1 ? 1 : from; ns <= max_streams && ns <= 64; ns++) {
        run *rs = calloc((size_t)ns, sizeof *rs);
        pthread_t th[64];
        for (int i = 0; i < ns; i++) {
            rs[i] = (run){.e = e, .pcm = pcm, .n = n, .utt_end = utt_end, .n_utt = n_clips, .paced = 1};
            pthread_create(&th[i], NULL, stream_thread, &rs[i]);
        }
        double lag = 0, del[512];
        size_t nd = 0;
        for (int i = 0; i < ns; i++) {
            pthread_join(th[i], NULL);
            if (rs[i].max_lag > lag) lag = rs[i].max_lag;
            for (size_t k = 0; k < rs[i].n_delays && nd < 512; k++) del[nd++] = rs[i].delays[k];
        }
        printf(
            "%d concurrent real-time streams: max lag %.2f s, final delay median %.2f s p90 %.2f s -> %s\n",
            ns, lag, pct(del, nd, 0.5), pct(del, nd, 0.9), lag < 2.0 ? "keeps up" : "falls behind");
        free(rs);
        if (lag >= 2.0) break;
    }
    at_asr_engine_free(e);
    free(pcm);
    return 0;
}
