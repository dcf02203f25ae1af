/* stream_clients.c - concurrent live clients of the pipeline's WebSocket,
 * for checks of a deployed stack (scripts/swarm-check.sh).
 *
 *   at_stream_clients --ports P1,P2 [--clients 4] [--speed 1] [--attempts 4]
 *
 * Each client streams the LibriVox clips of pocketsphinx-testdata (held-out
 * speech, about 30 s) at --speed times real time to the pipeline on
 * 127.0.0.1, client i on port P[i mod n], asking for Spanish with speech,
 * and reads every event.  A session that ends with close 1013 (the
 * recogniser went away: a replica drained or died) or 1001 (the pipeline
 * replica itself drains) is a clean close: the client reconnects, on the
 * next port, and streams again.  Prints one line
 * per client and exits 0 when every client finished a session (summary,
 * close 1000) with finals, translations and audio, and no session ended in
 * any other way. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clips.h"

#define MAX_CLIENTS 64
#define FRAME_MS    100

typedef struct client {
    int id, port_used;
    const int *ports;
    int n_ports, attempts;
    double speed;
    const int16_t *pcm;
    size_t n;
    /* results */
    int ok, sessions, clean_closes, bad_ends, refused;
    int finals, translations;
    size_t audio_bytes;
    char last_error[256];
} client;

typedef struct sender {
    at_test_ws *ws;
    const client *c;
    atomic_int stop;
} sender;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Paced audio, then {"type":"end"}; stops early when the session ends. */
static void *send_main(void *arg)
{
    sender *s = arg;
    const client *c = s->c;
    size_t frame = 16000 * FRAME_MS / 1000;
    double t0 = now_s();
    for (size_t i = 0; i < c->n && !atomic_load(&s->stop); i += frame) {
        size_t k = c->n - i < frame ? c->n - i : frame;
        if (at_test_ws_send(s->ws, 2, c->pcm + i, k * 2) != 0) return NULL;
        double due = t0 + (double)(i + k) / 16000.0 / c->speed;
        double wait = due - now_s();
        if (wait > 0) usleep((useconds_t)(wait * 1e6));
    }
    if (!atomic_load(&s->stop)) at_test_ws_send(s->ws, 1, "{\"type\":\"end\"}", 14);
    return NULL;
}

static int has(const char *d, const char *needle) { return strstr(d, needle) != NULL; }

/* One session; 1 when it finished (summary, close 1000), 0 on a clean
 * close (1013, 1001) or a refused connection, -1 otherwise. */
static int session(client *c, int port)
{
    at_test_ws ws;
    at_test_resp refused;
    int rc = at_test_ws_connect(&ws, port, "/v1/pipeline", &refused);
    if (rc != 0) {
        snprintf(c->last_error, sizeof c->last_error, "connect to :%d: %s", port,
                 rc > 0 ? "refused" : "no connection");
        if (rc > 0) at_test_resp_free(&refused);
        c->refused++;
        return 0;
    }
    c->sessions++;
    c->port_used = port;
    const char *cfg =
        "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\",\"speak\":true,"
        "\"sample_rate\":16000,\"encoding\":\"pcm16\"}";
    at_test_ws_send(&ws, 1, cfg, strlen(cfg));
    sender s = {&ws, c, 0};
    pthread_t t;
    int have_sender = 0, summary = 0, result = -1;
    for (;;) {
        char *d = NULL;
        size_t l = 0;
        int op = at_test_ws_recv(&ws, &d, &l, 60000);
        if (op == 1) {
            if (has(d, "\"type\":\"ready\"") && !have_sender)
                have_sender = pthread_create(&t, NULL, send_main, &s) == 0;
            c->finals += has(d, "\"type\":\"final\"");
            c->translations += has(d, "\"type\":\"translation\"");
            summary |= has(d, "\"type\":\"summary\"");
            if (has(d, "\"type\":\"error\"")) snprintf(c->last_error, sizeof c->last_error, "%s", d);
        } else if (op == 2) {
            c->audio_bytes += l;
        } else {
            if (op == 8 && ws.close_code == 1000 && summary)
                result = 1;
            else if (op == 8 && (ws.close_code == 1013 || ws.close_code == 1001))
                result = 0; /* try again later / the pipeline replica drains */
            else if (op == 8)
                snprintf(c->last_error + strlen(c->last_error), sizeof c->last_error - strlen(c->last_error),
                         " (close %d)", ws.close_code);
            else
                snprintf(c->last_error, sizeof c->last_error, "the connection ended without a close frame");
            free(d);
            break;
        }
        free(d);
    }
    atomic_store(&s.stop, 1);
    if (have_sender) pthread_join(t, NULL);
    at_test_ws_close(&ws);
    return result;
}

static void *client_main(void *arg)
{
    client *c = arg;
    for (int a = 0; a < c->attempts && !c->ok; a++) {
        if (a) sleep(1);
        int r = session(c, c->ports[(c->id + a) % c->n_ports]);
        if (r == 1)
            c->ok = 1;
        else if (r == 0)
            c->clean_closes++;
        else
            c->bad_ends++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int ports[16], n_ports = 0, n_clients = 4, attempts = 4;
    double speed = 1.0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ports") == 0) {
            for (char *p = argv[i + 1]; *p && n_ports < 16;) {
                ports[n_ports++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
        } else if (strcmp(argv[i], "--clients") == 0)
            n_clients = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--speed") == 0)
            speed = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--attempts") == 0)
            attempts = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!n_ports || n_clients < 1 || n_clients > MAX_CLIENTS || speed <= 0 || attempts < 1) {
        fprintf(stderr, "usage: %s --ports P1[,P2...] [--clients 1..%d] [--speed X] [--attempts N]\n",
                argv[0], MAX_CLIENTS);
        return 2;
    }
    size_t n = 0;
    int16_t *pcm = at_test_librivox_stream16(AT_TEST_N_CLIPS, 0.5, 1.0, &n, NULL);
    if (!pcm) return 1;
    static client cs[MAX_CLIENTS];
    pthread_t ts[MAX_CLIENTS];
    double t0 = now_s();
    for (int i = 0; i < n_clients; i++) {
        cs[i] = (client){.id = i,
                         .ports = ports,
                         .n_ports = n_ports,
                         .attempts = attempts,
                         .speed = speed,
                         .pcm = pcm,
                         .n = n};
        if (pthread_create(&ts[i], NULL, client_main, &cs[i]) != 0) return 1;
    }
    int all_ok = 1;
    for (int i = 0; i < n_clients; i++) {
        pthread_join(ts[i], NULL);
        client *c = &cs[i];
        int good = c->ok && c->bad_ends == 0 && c->finals > 0 && c->translations > 0 && c->audio_bytes > 0;
        all_ok &= good;
        printf("client %d: %s; %d session(s), %d closed 1013/1001 and reconnected, %d ended otherwise, %d "
               "refused; "
               "%d finals, %d translations, %zu bytes of speech; last on port %d%s%s\n",
               i, good ? "ok" : "FAILED", c->sessions, c->clean_closes, c->bad_ends, c->refused, c->finals,
               c->translations, c->audio_bytes, c->port_used, c->last_error[0] ? "; last error: " : "",
               c->last_error);
    }
    printf("%d clients, %.1f s of speech each at %.1fx, all done in %.1f s: %s\n", n_clients,
           (double)n / 16000, speed, now_s() - t0, all_ok ? "every client finished" : "FAILED");
    free(pcm);
    return all_ok ? 0 : 1;
}
