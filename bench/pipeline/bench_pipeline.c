/* bench_pipeline - speech-to-speech latency of /v1/pipeline.
 *
 * Streams a real recording (five LibriVox sentences, 1.5 s of silence
 * between them) at real-time pace, in 100 ms frames, and prints for each
 * utterance the delay from the end of its speech (the final segment's end
 * time, on the wall clock of the stream's start) to: the final transcript,
 * the translation, and the first byte of synthesized audio.  Then the
 * median and 90th percentile; then the same with N concurrent streams.
 *
 *   bench_pipeline [STREAMS] [PORT]
 *     STREAMS  concurrent streams for the second run (default 4)
 *     PORT     a running pipeline (default: spawn `audio-translator serve`)
 *
 * Prints figures; never asserts. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "clips.h"

#define MAX_SEGS 64

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct seg_times {
    double end;                       /* end of speech, stream time */
    double final, translation, audio; /* arrival, stream time; 0 = not yet */
} seg_times;

typedef struct stream_run {
    int port;
    const int16_t *pcm;
    size_t n;
    at_test_ws ws;
    double t0;
    seg_times seg[MAX_SEGS];
    int n_segs;
    int ok;
} stream_run;

static void *sender(void *arg)
{
    stream_run *r = arg;
    size_t frame = 1600;
    for (size_t i = 0; i < r->n; i += frame) {
        double due = r->t0 + (double)i / 16000.0;
        double wait = due - now_s();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        size_t k = r->n - i < frame ? r->n - i : frame;
        if (at_test_ws_send(&r->ws, 2, r->pcm + i, k * 2) != 0) return NULL;
    }
    at_test_ws_send(&r->ws, 1, "{\"type\":\"end\"}", 14);
    return NULL;
}

static void *run_stream(void *arg)
{
    stream_run *r = arg;
    if (at_test_ws_connect(&r->ws, r->port, "/v1/pipeline", NULL) != 0) return NULL;
    const char *cfg = "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\"}";
    at_test_ws_send(&r->ws, 1, cfg, strlen(cfg));
    char *d;
    size_t l;
    if (at_test_ws_recv(&r->ws, &d, &l, 30000) != 1 || !strstr(d, "\"ready\"")) {
        fprintf(stderr, "no ready: %s\n", d ? d : "");
        free(d);
        return NULL;
    }
    free(d);
    r->t0 = now_s();
    pthread_t th;
    pthread_create(&th, NULL, sender, r);
    for (;;) {
        int op = at_test_ws_recv(&r->ws, &d, &l, 60000);
        double t = now_s() - r->t0;
        if (op != 1) {
            free(d);
            if (op == 8) r->ok = r->ws.close_code == 1000;
            if (op == 2) continue;
            break;
        }
        cJSON *o = cJSON_Parse(d);
        free(d);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
        const cJSON *sg = cJSON_GetObjectItem(o, "segment");
        int id = cJSON_IsNumber(sg) ? sg->valueint : -1;
        if (type && id >= 0 && id < MAX_SEGS) {
            seg_times *s = &r->seg[id];
            if (strcmp(type, "final") == 0) {
                s->end = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "end"));
                s->final = t;
                if (id + 1 > r->n_segs) r->n_segs = id + 1;
            } else if (strcmp(type, "translation") == 0) {
                s->translation = t;
            } else if (strcmp(type, "audio") == 0 && !s->audio) {
                s->audio = t;
            } else if (strcmp(type, "error") == 0) {
                fprintf(stderr, "error: %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(o, "message")));
            }
        }
        cJSON_Delete(o);
    }
    pthread_join(th, NULL);
    at_test_ws_close(&r->ws);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (!n) return NAN;
    qsort(v, n, sizeof *v, cmp);
    double idx = p * (double)(n - 1);
    size_t lo = (size_t)idx;
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (idx - (double)lo);
}

static void bench(int port, const int16_t *pcm, size_t n, int streams)
{
    stream_run *r = calloc((size_t)streams, sizeof *r);
    pthread_t *th = calloc((size_t)streams, sizeof *th);
    for (int i = 0; i < streams; i++) {
        r[i].port = port;
        r[i].pcm = pcm;
        r[i].n = n;
        pthread_create(&th[i], NULL, run_stream, &r[i]);
    }
    for (int i = 0; i < streams; i++) pthread_join(th[i], NULL);
    printf("\n== %d stream%s at real-time pace (%.1f s of audio each) ==\n", streams, streams > 1 ? "s" : "",
           (double)n / 16000);
    printf("%-6s %-4s %8s %10s %12s %14s\n", "stream", "seg", "end (s)", "final (s)", "translation",
           "first audio");
    double *df = calloc(MAX_SEGS * (size_t)streams, sizeof *df);
    double *dt = calloc(MAX_SEGS * (size_t)streams, sizeof *dt);
    double *da = calloc(MAX_SEGS * (size_t)streams, sizeof *da);
    size_t nf = 0, nt = 0, na = 0;
    for (int i = 0; i < streams; i++) {
        if (!r[i].ok) printf("stream %d did not finish cleanly\n", i);
        for (int k = 0; k < r[i].n_segs; k++) {
            seg_times *s = &r[i].seg[k];
            double f = s->final - s->end, t = s->translation ? s->translation - s->end : NAN,
                   a = s->audio ? s->audio - s->end : NAN;
            printf("%-6d %-4d %8.2f %10.3f %12.3f %14.3f\n", i, k, s->end, f, t, a);
            df[nf++] = f;
            if (!isnan(t)) dt[nt++] = t;
            if (!isnan(a)) da[na++] = a;
        }
    }
    printf("%-24s %10s %12s %14s\n", "delay after speech ends", "final", "translation", "first audio");
    printf("%-24s %10.3f %12.3f %14.3f\n", "median (s)", pct(df, nf, 0.5), pct(dt, nt, 0.5),
           pct(da, na, 0.5));
    printf("%-24s %10.3f %12.3f %14.3f\n", "p90 (s)", pct(df, nf, 0.9), pct(dt, nt, 0.9), pct(da, na, 0.9));
    printf("utterances: %zu\n", nf);
    fflush(stdout);
    free(df);
    free(dt);
    free(da);
    free(r);
    free(th);
}

int main(int argc, char **argv)
{
    int streams = argc > 1 ? atoi(argv[1]) : 4;
    int port = argc > 2 ? atoi(argv[2]) : 0;
    if (streams < 1 || streams > 32) {
        fprintf(stderr, "usage: bench_pipeline [STREAMS 1..32] [PORT]\n");
        return 2;
    }
    setenv("AT_BUILD_DIR", AT_DEFAULT_BUILD_DIR, 0);
    size_t n;
    int16_t *pcm = at_test_librivox_stream16(AT_TEST_N_CLIPS, 1.0, 1.5, &n, NULL);
    if (!pcm) return 1;
    at_test_proc proc = {0};
    if (!port) {
        const char *args[] = {"serve", "--host",     "127.0.0.1", "--asr-port",      "0", "--translate-port",
                              "0",     "--tts-port", "0",         "--pipeline-port", "0", "--max-streams",
                              "16",    NULL};
        if (at_test_spawn(&proc, "audio-translator", args, 4, 120) != 0) {
            fprintf(stderr, "cannot start %s/audio-translator serve\n", getenv("AT_BUILD_DIR"));
            return 1;
        }
        port = proc.ports[3];
        printf("audio-translator serve: pocketsphinx -> apertium en-es -> espeak-ng es\n");
    }
    bench(port, pcm, n, 1);
    if (streams > 1) bench(port, pcm, n, streams);
    if (proc.pid) at_test_stop(&proc, 15);
    free(pcm);
    return 0;
}
