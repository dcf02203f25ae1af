/* test_load - load and faults against the real service binaries on
 * loopback, in bounded phases that stop by themselves:
 *
 *   burst      200 connections at once, mixed requests to the four services
 *   streams    100 live WebSocket streams of speech, paced in real time
 *   slowloris  senders that trickle headers or a body a byte at a time,
 *              while normal requests go on
 *   no-read    clients that ask for a lot and stop reading
 *   downstream a pipeline session whose translate service is killed
 *              (SIGKILL) and restarted in the middle
 *   whisper    more transcriptions at once than Whisper admits (a random
 *              tiny model, a few tokens each): one thread pool, bounded
 *              jobs, the rest refused with 503
 *
 * Prints, per phase, requests served, errors by kind and p50/p99 latency,
 * and per service the idle, peak and settled RSS.  Exits 1 when a rule is
 * broken: a service crashed or did not exit cleanly on SIGTERM, a refused
 * request lacked a JSON error, a slow or non-reading client was never
 * dropped, normal requests starved, or the pipeline did not recover.
 * ctest runs the quick mode in every build, the ASan one included, so
 * nothing may crash under the sanitizers; the full mode gives the figures
 * of docs/figures.md.
 *
 * Usage: AT_BUILD_DIR=build build/tests/load/test_load [--quick]
 *   --quick  a tenth of the clients and shorter phases */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clips.h"

enum { ASR, MT, TTS, PIPE, N_SVC };
static const char *const svc_name[N_SVC] = {"asr_streaming", "translate", "tts", "pipeline"};

/* Under AddressSanitizer freed memory waits in its quarantine (256 MB)
 * and RSS says nothing about ours: the RSS rules are reported, not
 * enforced, in that build. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_RULES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_RULES 0
#endif
#endif
#ifndef RSS_RULES
#define RSS_RULES 1
#endif

static at_test_proc procs[N_SVC];
static int port[N_SVC];
static int failures;
static int quick;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
    failures++;
}

/* ---- processes ---- */

static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') v = atol(line + fl + 1);
    fclose(f);
    return v;
}

/* 1 while the service runs; otherwise 0 and *how says why it stopped. */
static int alive(int s, char *how, size_t cap)
{
    int st = 0;
    pid_t r = procs[s].pid > 0 ? waitpid(procs[s].pid, &st, WNOHANG) : -1;
    if (r == 0) return 1;
    if (r > 0 && WIFSIGNALED(st))
        snprintf(how, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (r > 0 && WIFEXITED(st))
        snprintf(how, cap, "exited with status %d", WEXITSTATUS(st));
    else
        snprintf(how, cap, "gone");
    return 0;
}

static void check_alive(const char *phase)
{
    char how[96];
    for (int s = 0; s < N_SVC; s++)
        if (!alive(s, how, sizeof how)) {
            fail("%s: %s is not running any more: %s", phase, svc_name[s], how);
            procs[s].pid = 0;
        }
}

static int spawn(int s, int fixed_port)
{
    char p[16], u[3][64];
    snprintf(p, sizeof p, "%d", fixed_port);
    for (int i = 0; i < 3; i++) snprintf(u[i], sizeof u[i], "http://127.0.0.1:%d", port[i]);
    const char *streams = quick ? "16" : "110";
    const char *args[24];
    int n = 0;
    args[n++] = "--host", args[n++] = "127.0.0.1", args[n++] = "--port", args[n++] = p;
    args[n++] = "--max-inflight", args[n++] = "16", args[n++] = "--body-timeout", args[n++] = "5";
    args[n++] = "--idle-timeout", args[n++] = "10";
    if (s == ASR || s == PIPE) args[n++] = "--max-streams", args[n++] = streams;
    if (s == PIPE) {
        args[n++] = "--asr-url", args[n++] = u[0];
        args[n++] = "--translate-url", args[n++] = u[1];
        args[n++] = "--tts-url", args[n++] = u[2];
    }
    args[n] = NULL;
    if (at_test_spawn(&procs[s], svc_name[s], args, 1, 120) != 0) {
        fprintf(stderr, "test_load: could not start %s (AT_BUILD_DIR?)\n", svc_name[s]);
        return -1;
    }
    port[s] = procs[s].ports[0];
    return 0;
}

/* ---- requests ---- */

typedef struct result {
    int status; /* 0: connection failed or timed out */
    double latency;
    int json_error; /* a non-2xx answer carried {"error": ...} */
    int retry_after;
} result;

static void classify(const at_test_resp *r, result *out)
{
    out->status = r->status;
    char ct[128];
    out->json_error = at_test_header(r, "content-type", ct, sizeof ct) && strstr(ct, "json") && r->body &&
                      strstr((const char *)r->body, "\"error\"");
    out->retry_after = at_test_header(r, "retry-after", ct, sizeof ct);
}

static unsigned char *speech_wav;
static size_t speech_wav_len;
static int16_t *speech;
static size_t n_speech;

static void one_request(int kind, int i, result *out)
{
    at_test_resp r;
    char hdr[256], body[512];
    double t0 = now_s();
    int rc = -1;
    switch (kind) {
    case 0: /* cheap, on the event loop */
        rc = at_test_http(port[i % N_SVC], "GET", i % 2 ? "/health" : "/ready", NULL, NULL, 0, &r);
        break;
    case 1:
    case 2: { /* a JSON POST: translate or speech */
        static const struct {
            int svc;
            const char *path, *fmt;
        } json[] = {
            {MT, "/translate",
             "{\"q\":\"The house number %d is big and my brother works there.\",\"source\":\"en\","
             "\"target\":\"es\"}"},
            {TTS, "/v1/audio/speech",
             "{\"input\":\"Hello number %d, how are you today?\",\"voice\":\"alloy\",\"response_format\":"
             "\"wav\"}"},
        };
        snprintf(body, sizeof body, json[kind - 1].fmt, i);
        rc = at_test_http(port[json[kind - 1].svc], "POST", json[kind - 1].path,
                          "Content-Type: application/json\r\n", body, strlen(body), &r);
        break;
    }
    default: {
        at_test_form f;
        at_test_form_init(&f);
        at_test_form_field(&f, "model", "pocketsphinx");
        at_test_form_file(&f, "file", "speech.wav", "audio/wav", speech_wav, speech_wav_len);
        at_test_form_finish(&f, hdr, sizeof hdr);
        rc = at_test_http(port[ASR], "POST", "/v1/audio/transcriptions", hdr, f.data, f.len, &r);
        at_test_form_free(&f);
    }
    }
    out->latency = now_s() - t0;
    if (rc != 0) {
        out->status = 0;
        return;
    }
    classify(&r, out);
    at_test_resp_free(&r);
}

typedef struct summary {
    long ok, refused_503, client_4xx, server_5xx, no_answer, bad_error;
    double p50, p99;
} summary;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static summary summarise(const char *phase, result *res, size_t n)
{
    summary s = {0};
    double *lat = malloc((n ? n : 1) * sizeof *lat);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        const result *r = &res[i];
        if (r->status == 0)
            s.no_answer++;
        else if (r->status < 300)
            s.ok++, lat[nl++] = r->latency;
        else if (r->status == 503)
            s.refused_503++;
        else if (r->status < 500)
            s.client_4xx++;
        else
            s.server_5xx++;
        if (r->status >= 300 && (!r->json_error || (r->status == 503 && !r->retry_after))) s.bad_error++;
    }
    qsort(lat, nl, sizeof *lat, cmp_d);
    s.p50 = nl ? lat[nl / 2] : NAN;
    s.p99 = nl ? lat[(size_t)((double)(nl - 1) * 0.99)] : NAN;
    free(lat);
    printf("  %-10s %5zu requests: %ld ok, %ld 503, %ld 4xx, %ld 5xx, %ld unanswered; "
           "p50 %.3f s, p99 %.3f s\n",
           phase, n, s.ok, s.refused_503, s.client_4xx, s.server_5xx, s.no_answer, s.p50, s.p99);
    if (s.bad_error)
        fail("%s: %ld refusals without a JSON error (or a 503 without Retry-After)", phase, s.bad_error);
    return s;
}

/* ---- phase 1: a burst of mixed requests ---- */

typedef struct burst_arg {
    int i;
    pthread_barrier_t *go;
    result *out;
} burst_arg;

static void *burst_main(void *p)
{
    burst_arg *a = p;
    pthread_barrier_wait(a->go);
    one_request(a->i % 4, a->i, a->out);
    return NULL;
}

static void phase_burst(const char *label, int n)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    burst_arg *args = calloc((size_t)n, sizeof *args);
    result *res = calloc((size_t)n, sizeof *res);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        args[i] = (burst_arg){i, &go, &res[i]};
        pthread_create(&th[i], NULL, burst_main, &args[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    printf("%s: %d connections at once, mixed (health/ready, translate, speech, transcription), %.1f s\n",
           label, n, now_s() - t0);
    summary s = summarise(label, res, (size_t)n);
    if (s.ok == 0) fail("%s: nothing was served", label);
    if (s.server_5xx || s.no_answer)
        fail("%s: %ld 5xx other than 503 and %ld unanswered", label, s.server_5xx, s.no_answer);
    free(th);
    free(args);
    free(res);
}

/* ---- phase 2: live WebSocket streams ---- */

typedef struct stream_arg {
    double seconds;
    int refused, finals, errors, closed_clean, partials;
    double last_final_lag; /* seconds after the end was sent */
} stream_arg;

static void *stream_main(void *p)
{
    stream_arg *a = p;
    at_test_ws ws;
    at_test_resp refused;
    int rc = at_test_ws_connect(&ws, port[ASR], "/v1/stream?model=pocketsphinx", &refused);
    if (rc != 0) {
        a->refused = rc;
        if (rc > 0) at_test_resp_free(&refused);
        return NULL;
    }
    static const char cfg[] =
        "{\"type\":\"config\",\"language\":\"en\",\"sample_rate\":16000,\"encoding\":\"pcm16\"}";
    at_test_ws_send(&ws, 1, cfg, sizeof cfg - 1);
    size_t n = (size_t)(a->seconds * 16000);
    if (n > n_speech) n = n_speech;
    double t0 = now_s();
    for (size_t off = 0; off < n; off += 1600) {
        size_t k = n - off < 1600 ? n - off : 1600;
        if (at_test_ws_send(&ws, 2, speech + off, k * 2) != 0) break;
        double due = t0 + (double)(off + k) / 16000;
        /* Read what has come while pacing in real time. */
        for (;;) {
            double left = due - now_s();
            if (left <= 0) break;
            char *d;
            size_t len;
            int op = at_test_ws_recv(&ws, &d, &len, (int)(left * 1000) + 1);
            if (op == 1) {
                if (strstr(d, "\"final\"")) a->finals++;
                if (strstr(d, "\"partial\"")) a->partials++;
                if (strstr(d, "\"error\"")) a->errors++;
            }
            if (op > 0) free(d);
            if (op == 8 || op < 0) goto out;
        }
    }
    static const char end[] = "{\"type\":\"end\"}";
    at_test_ws_send(&ws, 1, end, sizeof end - 1);
    double t_end = now_s();
    for (;;) {
        char *d;
        size_t len;
        int op = at_test_ws_recv(&ws, &d, &len, 180000);
        if (op == 1) {
            if (strstr(d, "\"final\"")) a->finals++, a->last_final_lag = now_s() - t_end;
            if (strstr(d, "\"error\"")) a->errors++;
            if (strstr(d, "\"summary\"")) a->closed_clean = 1;
        }
        if (op > 0) free(d);
        if (op <= 0 || op == 8) break;
    }
out:
    at_test_ws_close(&ws);
    return NULL;
}

static void phase_streams(int n, double seconds)
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    stream_arg *a = calloc((size_t)n, sizeof *a);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        a[i].seconds = seconds;
        pthread_create(&th[i], NULL, stream_main, &a[i]);
        usleep(20000); /* streams start 20 ms apart, as users would */
    }
    int refused = 0, failed = 0, finals = 0, clean = 0, errors = 0, with_final = 0;
    double *lag = calloc((size_t)n, sizeof *lag);
    int nl = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (a[i].refused > 0) refused++;
        if (a[i].refused < 0) failed++;
        finals += a[i].finals;
        errors += a[i].errors;
        clean += a[i].closed_clean;
        if (a[i].finals) with_final++, lag[nl++] = a[i].last_final_lag;
    }
    qsort(lag, (size_t)nl, sizeof *lag, cmp_d);
    printf("streams: %d live streams of %.0f s of speech, paced in real time, %.1f s\n", n, seconds,
           now_s() - t0);
    printf("  %d refused at the upgrade (503), %d failed to connect, %d ended with a summary, %d errors; "
           "%d finals, %d streams with a final; last final after the end: p50 %.2f s, p99 %.2f s\n",
           refused, failed, clean, errors, finals, with_final, nl ? lag[nl / 2] : NAN,
           nl ? lag[(int)((nl - 1) * 0.99)] : NAN);
    if (failed) fail("streams: %d connections failed (not a clean 503)", failed);
    if (clean + refused + errors < n)
        fail("streams: %d streams ended without a summary, an error or a 503", n - clean - refused - errors);
    free(lag);
    free(th);
    free(a);
}

/* ---- phase 3: slowloris ---- */

/* rcvbuf > 0: a small receive window, set before the handshake so that
 * a client that does not read holds the server's output back at once. */
static int connect_port_rcvbuf(int p, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_port(int p) { return connect_port_rcvbuf(p, 0); }

/* One misbehaving client of an attack phase. */
typedef struct attacker {
    int kind; /* which of the phase's two kinds */
    double max_s;
    double dropped_after; /* < 0: still open when it gave up */
} attacker;

static void *slow_main(void *p)
{
    attacker *a = p; /* kind 0: trickles the headers; 1: headers whole, trickles the body */
    a->dropped_after = -1;
    int fd = connect_port(port[MT]);
    if (fd < 0) return NULL;
    static const char hdrs[] = "POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: 100000\r\n\r\n";
    size_t off = 0;
    if (a->kind) {
        send(fd, hdrs, sizeof hdrs - 1, MSG_NOSIGNAL);
        off = 0;
    }
    double t0 = now_s();
    while (now_s() - t0 < a->max_s) {
        /* Headers: the request line, then header lines without end. */
        static const char pad[] = "X-Pad: 1\r\n";
        size_t lead = sizeof hdrs - 3;
        char c = a->kind ? ' ' : off < lead ? hdrs[off] : pad[(off - lead) % (sizeof pad - 1)];
        off++;
        if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) {
            a->dropped_after = now_s() - t0;
            break;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 500) > 0) {
            char buf[4096];
            ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r <= 0 || (r > 0 && memmem(buf, (size_t)r, "HTTP/1.1 4", 10))) {
                a->dropped_after = now_s() - t0;
                break;
            }
        }
    }
    close(fd);
    return NULL;
}

typedef struct probe_arg {
    double until;
    result res[256];
    int n;
} probe_arg;

static void *probe_main(void *p)
{
    probe_arg *a = p;
    while (now_s() < a->until && a->n < 256) {
        one_request(1, a->n, &a->res[a->n]);
        a->n++;
        usleep(200000);
    }
    return NULL;
}

/* Slow senders hold their request slots until they are dropped, so
 * requests alongside them may get 503 (with Retry-After, which summarise
 * checks); once they are gone, every request must be served again. */
static void after_attack(const char *phase)
{
    for (int k = 0; k < 4; k++) {
        result r;
        one_request(1 + k % 3, k, &r);
        if (r.status < 200 || r.status >= 300)
            fail("%s: after the attack, a %s request got %d", phase,
                 k % 3 == 0   ? "translate"
                 : k % 3 == 1 ? "speech"
                              : "transcription",
                 r.status);
    }
}

/* Runs n attackers (kinds alternating) against the services while a
 * normal client goes on, then checks that each attacker was dropped and
 * that service resumes once they are gone. */
static void attack(const char *phase, const char *const kinds[2], int n, double max_s, void *(*fn)(void *))
{
    pthread_t *th = calloc((size_t)n, sizeof *th);
    attacker *a = calloc((size_t)n, sizeof *a);
    long before[N_SVC], during[N_SVC];
    for (int s = 0; s < N_SVC; s++) before[s] = proc_kb(procs[s].pid, "VmRSS");
    for (int i = 0; i < n; i++) {
        a[i] = (attacker){i % 2, max_s, -1};
        pthread_create(&th[i], NULL, fn, &a[i]);
    }
    probe_arg pr = {.until = now_s() + (quick ? 5 : 15)};
    pthread_t pt;
    pthread_create(&pt, NULL, probe_main, &pr);
    pthread_join(pt, NULL);
    for (int s = 0; s < N_SVC; s++) during[s] = proc_kb(procs[s].pid, "VmRSS");
    int kept[2] = {0, 0}, dropped[2] = {0, 0};
    double worst[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (a[i].dropped_after < 0)
            kept[a[i].kind]++;
        else {
            dropped[a[i].kind]++;
            if (a[i].dropped_after > worst[a[i].kind]) worst[a[i].kind] = a[i].dropped_after;
        }
    }
    for (int k = 0; k < 2; k++)
        printf("  %-9s %d dropped by the server (the last after %.1f s), %d still open after %.0f s\n",
               kinds[k], dropped[k], worst[k], kept[k], max_s);
    printf("  RSS while they hang (MiB):");
    for (int s = 0; s < N_SVC; s++)
        printf(" %s %.1f -> %.1f", svc_name[s], before[s] / 1024.0, during[s] / 1024.0);
    printf("\n");
    summarise("alongside", pr.res, (size_t)pr.n);
    if (kept[0] || kept[1]) fail("%s: %d clients were never dropped", phase, kept[0] + kept[1]);
    after_attack(phase);
    free(th);
    free(a);
}

static void phase_slowloris(int n, double max_s)
{
    printf("slowloris: %d senders of a byte every 0.5 s (half headers, half a body) on translate, "
           "normal requests alongside\n",
           n);
    static const char *const kinds[2] = {"headers:", "bodies:"};
    attack("slowloris", kinds, n, max_s, slow_main);
}

/* ---- phase 4: clients that stop reading ---- */

static void *noread_main(void *p)
{
    attacker *a = p; /* kind 0: a long speech request; 1: a pipeline session */
    a->dropped_after = -1;
    int fd;
    double t0 = now_s();
    if (!a->kind) {
        /* The longest speech the service allows, never read. */
        char body[4096];
        int k = snprintf(body, sizeof body, "{\"voice\":\"alloy\",\"response_format\":\"pcm\",\"input\":\"");
        while (k < 3900) k += snprintf(body + k, sizeof body - (size_t)k, "A sentence to say slowly. ");
        k += snprintf(body + k, sizeof body - (size_t)k, "\"}");
        char req[4400];
        int hl = snprintf(req, sizeof req,
                          "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n%s",
                          k, body);
        fd = connect_port_rcvbuf(port[TTS], 4096);
        if (fd < 0) return NULL;
        send(fd, req, (size_t)hl, MSG_NOSIGNAL);
    } else {
        at_test_ws ws;
        if (at_test_ws_connect(&ws, port[PIPE], "/v1/pipeline", NULL) != 0) return NULL;
        fd = ws.fd;
        static const char cfg[] =
            "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\"}";
        at_test_ws_send(&ws, 1, cfg, sizeof cfg - 1);
        /* Three seconds of speech, then silence both ways: the session
         * has things to say that nobody reads, and nothing more comes. */
        for (size_t off = 0; off < 48000 && off < n_speech; off += 3200)
            if (at_test_ws_send(&ws, 2, speech + off, 3200 * 2) != 0) break;
    }
    /* Wait for the server to give up on us (it closes or resets). */
    while (now_s() - t0 < a->max_s) {
        struct pollfd pf = {fd, POLLRDHUP | POLLHUP | POLLERR, 0};
        if (poll(&pf, 1, 500) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            a->dropped_after = now_s() - t0;
            break;
        }
    }
    /* Its close may also sit behind the bytes we left unread: read them
     * now; a connection the server closed ends at once. */
    if (a->dropped_after < 0) {
        char buf[65536];
        ssize_t r;
        while ((r = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {}
        if (r == 0 || (r < 0 && errno != EAGAIN)) a->dropped_after = now_s() - t0;
    }
    close(fd);
    return NULL;
}

static void phase_noread(int n, double max_s)
{
    printf("no-read: %d clients that stop reading (half long speech requests, half pipeline sessions)\n", n);
    static const char *const kinds[2] = {"speech:", "pipeline:"};
    attack("no-read", kinds, n, max_s, noread_main);
}

/* ---- phase 5: a downstream service killed and restarted ---- */

typedef struct pl_events {
    pthread_mutex_t mu;
    int translations[3]; /* before the kill, while down, after the restart */
    int failures[3];
    int audio[3];
    int epoch; /* 0, 1, 2 */
    int closed;
} pl_events;

typedef struct pl_arg {
    at_test_ws ws;
    pl_events *ev;
} pl_arg;

static void *pl_reader(void *p)
{
    pl_arg *a = p;
    for (;;) {
        char *d;
        size_t len;
        int op = at_test_ws_recv(&a->ws, &d, &len, 90000);
        if (op == 8) free(d);
        if (op <= 0 || op == 8) break;
        pthread_mutex_lock(&a->ev->mu);
        int e = a->ev->epoch;
        if (op == 1 && strstr(d, "\"translation\"")) a->ev->translations[e]++;
        if (op == 1 && strstr(d, "translation_failed")) a->ev->failures[e]++;
        if (op == 2) a->ev->audio[e]++;
        pthread_mutex_unlock(&a->ev->mu);
        free(d);
    }
    pthread_mutex_lock(&a->ev->mu);
    a->ev->closed = 1;
    pthread_mutex_unlock(&a->ev->mu);
    return NULL;
}

static void phase_downstream(size_t third)
{
    pl_events ev = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pl_arg a = {.ev = &ev};
    if (at_test_ws_connect(&a.ws, port[PIPE], "/v1/pipeline", NULL) != 0) {
        fail("downstream: the pipeline refused the session");
        return;
    }
    static const char cfg[] = "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\"}";
    at_test_ws_send(&a.ws, 1, cfg, sizeof cfg - 1);
    pthread_t rt;
    pthread_create(&rt, NULL, pl_reader, &a);
    /* Speech three times over at twice real time: kill translate after
     * the first third, restart it after the second. */
    size_t total = 3 * third;
    double t0 = now_s();
    for (size_t off = 0; off < total; off += 1600) {
        if (off / third != (off + 1600) / third && off + 1600 < total) {
            int next = (int)((off + 1600) / third);
            if (next == 1) {
                /* the first translation must be out before the kill: on a
                 * slow (sanitizer, busy) machine it comes later than the
                 * first third of the audio, which is not what this phase
                 * tests */
                for (int w = 0; w < 300; w++) {
                    pthread_mutex_lock(&ev.mu);
                    int got = ev.translations[0];
                    pthread_mutex_unlock(&ev.mu);
                    if (got) break;
                    usleep(100000);
                }
                t0 = now_s() - (double)(off + 1600) / 32000; /* the pacing goes on from here */
            }
            pthread_mutex_lock(&ev.mu);
            ev.epoch = next;
            pthread_mutex_unlock(&ev.mu);
            if (next == 1) {
                kill(procs[MT].pid, SIGKILL);
                at_test_stop(&procs[MT], 5);
                printf("downstream: translate killed (SIGKILL) at %.1f s into the session\n", now_s() - t0);
            } else {
                int rc = spawn(MT, port[MT]);
                printf("downstream: translate restarted on the same port at %.1f s%s\n", now_s() - t0,
                       rc ? " (FAILED)" : "");
                if (rc) fail("downstream: translate did not restart");
            }
        }
        size_t k = 1600;
        if (at_test_ws_send(&a.ws, 2, speech + off % third, k * 2) != 0) break;
        double due = t0 + (double)(off + k) / 32000;
        double left = due - now_s();
        if (left > 0) usleep((useconds_t)(left * 1e6));
    }
    static const char end[] = "{\"type\":\"end\"}";
    at_test_ws_send(&a.ws, 1, end, sizeof end - 1);
    pthread_join(rt, NULL);
    at_test_ws_close(&a.ws);
    printf("  translations: %d before the kill, %d while down (%d translation_failed errors), %d after the "
           "restart; audio frames %d/%d/%d\n",
           ev.translations[0], ev.translations[1], ev.failures[1], ev.translations[2], ev.audio[0],
           ev.audio[1], ev.audio[2]);
    if (ev.translations[0] == 0) fail("downstream: no translation before the kill");
    if (ev.failures[1] + ev.failures[2] == 0)
        fail("downstream: the outage went unreported (no translation_failed error)");
    if (ev.translations[2] == 0) fail("downstream: the pipeline did not recover after the restart");
}

/* ---- phase 6: Whisper beyond its admission limits ---- */

typedef struct sampler {
    pid_t pid;
    volatile int stop;
    long max_threads, max_rss;
} sampler;

static void *sampler_main(void *p)
{
    sampler *sa = p;
    while (!sa->stop) {
        long t = proc_kb(sa->pid, "Threads"), r = proc_kb(sa->pid, "VmRSS");
        if (t > sa->max_threads) sa->max_threads = t;
        if (r > sa->max_rss) sa->max_rss = r;
        usleep(20000);
    }
    return NULL;
}

typedef struct wh_arg {
    int port;
    pthread_barrier_t *go;
    result out;
} wh_arg;

static void *whisper_main(void *p)
{
    wh_arg *a = p;
    at_test_form f;
    char hdr[256];
    at_test_form_init(&f);
    at_test_form_field(&f, "response_format", "json");
    at_test_form_field(&f, "temperature_inc", "0"); /* random weights: bound the work */
    at_test_form_field(&f, "max_new_tokens", "8");
    at_test_form_file(&f, "file", "speech.wav", "audio/wav", speech_wav, speech_wav_len);
    at_test_form_finish(&f, hdr, sizeof hdr);
    pthread_barrier_wait(a->go);
    at_test_resp r;
    double t0 = now_s();
    int rc = at_test_http(a->port, "POST", "/v1/audio/transcriptions", hdr, f.data, f.len, &r);
    a->out.latency = now_s() - t0;
    if (rc == 0) {
        classify(&r, &a->out);
        at_test_resp_free(&r);
    }
    at_test_form_free(&f);
    return NULL;
}

/* Every transcription used to build its own Whisper state and an
 * all-core thread pool: n users, n pools.  Now one pool serves the
 * process, --max-jobs decode at once and --max-queued wait; the rest get
 * 503.  The thread count shows which: a pool per request would add
 * threads per request beyond the one worker thread each has. */
static void phase_whisper(int n)
{
    char dir[] = "/tmp/at-load-XXXXXX", model[128], cmd[512];
    if (!mkdtemp(dir)) {
        fail("whisper: no temporary folder");
        return;
    }
    snprintf(model, sizeof model, "%s/tiny-q8_0.bin", dir);
    snprintf(cmd, sizeof cmd,
             "%s/audio-translator whisper-random-model --preset tiny --type q8_0 --out %s >/dev/null",
             getenv("AT_BUILD_DIR") ? getenv("AT_BUILD_DIR") : ".", model);
    at_test_proc w;
    const char *args[] = {"--host",         "127.0.0.1", "--port",     "0", "--model",      model,
                          "--threads",      "2",         "--max-jobs", "2", "--max-queued", "4",
                          "--max-inflight", "32",        NULL};
    if (system(cmd) != 0 || at_test_spawn(&w, "asr_streaming", args, 1, 120) != 0) {
        fail("whisper: could not start asr_streaming with a random tiny model");
        return;
    }
    sleep(1);
    long idle_threads = proc_kb(w.pid, "Threads"), idle_rss = proc_kb(w.pid, "VmRSS");
    sampler sa = {.pid = w.pid};
    pthread_t st;
    pthread_create(&st, NULL, sampler_main, &sa);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    wh_arg *a = calloc((size_t)n, sizeof *a);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, (unsigned)n);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        a[i].port = w.ports[0];
        a[i].go = &go;
        pthread_create(&th[i], NULL, whisper_main, &a[i]);
    }
    result *res = calloc((size_t)n, sizeof *res);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        res[i] = a[i].out;
    }
    double wall = now_s() - t0;
    sa.stop = 1;
    pthread_join(st, NULL);
    pthread_barrier_destroy(&go);
    sleep(2);
    long after_rss = proc_kb(w.pid, "VmRSS"), after_threads = proc_kb(w.pid, "Threads");
    printf("whisper: %d transcriptions at once (random tiny q8_0, 8 tokens, --threads 2 --max-jobs 2 "
           "--max-queued 4), %.1f s\n",
           n, wall);
    summary s = summarise("whisper", res, (size_t)n);
    printf("  threads: %ld idle, %ld at most, %ld after; RSS (MiB): %.1f idle, %.1f at most, %.1f after\n",
           idle_threads, sa.max_threads, after_threads, idle_rss / 1024.0, sa.max_rss / 1024.0,
           after_rss / 1024.0);
    if (s.ok < 2 + 4 && s.ok < n) fail("whisper: only %ld of the admitted transcriptions were served", s.ok);
    if (s.server_5xx || s.no_answer) fail("whisper: %ld 5xx and %ld unanswered", s.server_5xx, s.no_answer);
    /* One worker thread per request in flight, one pool: never more. */
    if (RSS_RULES && after_rss > idle_rss * 3 / 2 + 16 * 1024)
        fail("whisper: RSS stayed at %.1f MiB after the burst (idle %.1f MiB)", after_rss / 1024.0,
             idle_rss / 1024.0);
    if (sa.max_threads > idle_threads + n + 4)
        fail("whisper: %ld threads for %d requests: more than one per request", sa.max_threads, n);
    int rc = at_test_stop(&w, 30);
    if (rc != 0) fail("whisper: asr_streaming exited with status %d", rc);
    unlink(model);
    rmdir(dir);
    free(th);
    free(a);
    free(res);
}

/* ---- main ---- */

static void rss_line(const char *what, long kb[N_SVC])
{
    printf("  %-22s", what);
    for (int s = 0; s < N_SVC; s++) printf(" %10.1f", kb[s] / 1024.0);
    printf("\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    double lead = 0.5, pause = 1.0, ends[AT_TEST_N_CLIPS];
    speech = at_test_librivox_stream16(AT_TEST_N_CLIPS, lead, pause, &n_speech, ends);
    if (!speech) return 2;
    size_t n_short = 16000; /* one second for the uploads */
    speech_wav = at_test_wav_bytes(speech + (size_t)(lead * 16000), n_short, 16000, 1, &speech_wav_len);
    for (int s = 0; s < N_SVC; s++)
        if (spawn(s, 0) != 0) return 2;
    printf("test_load: %s mode; services asr_streaming:%d translate:%d tts:%d pipeline:%d\n",
           quick ? "quick" : "full", port[ASR], port[MT], port[TTS], port[PIPE]);
    /* Warm every path, two transcriptions at once (the recogniser keeps
     * two decoders loaded), then take the idle level. */
    phase_burst("warm-up", 8);
    sleep(1);
    long idle[N_SVC];
    for (int s = 0; s < N_SVC; s++) idle[s] = proc_kb(procs[s].pid, "VmRSS");

    phase_burst("burst", quick ? 20 : 200);
    check_alive("burst");
    phase_streams(quick ? 10 : 100, quick ? 4 : 8);
    check_alive("streams");
    phase_slowloris(quick ? 8 : 40, quick ? 20 : 30);
    check_alive("slowloris");
    phase_noread(quick ? 4 : 20, 60);
    check_alive("no-read");
    long peak[N_SVC];
    for (int s = 0; s < N_SVC; s++) peak[s] = proc_kb(procs[s].pid, "VmHWM");
    phase_downstream(quick ? (size_t)(ends[1] * 16000) + 16000 : n_speech);
    check_alive("downstream");
    phase_whisper(quick ? 12 : 24);

    /* RSS settles back: glibc keeps some freed memory, so "back" is within
     * 50% of idle plus 16 MiB. */
    long after[N_SVC];
    double t0 = now_s();
    int settled = 0;
    while (!settled && now_s() - t0 < (RSS_RULES ? 20 : 2)) {
        sleep(1);
        settled = 1;
        for (int s = 0; s < N_SVC; s++) {
            after[s] = proc_kb(procs[s].pid, "VmRSS");
            if (s != MT && after[s] > idle[s] * 3 / 2 + 16 * 1024) settled = 0;
        }
    }
    printf("RSS (MiB)                 asr_streaming  translate        tts   pipeline\n");
    rss_line("idle", idle);
    rss_line("peak (VmHWM)", peak);
    rss_line("after, settled", after);
    printf("  (translate restarted in the downstream phase: its figures are the new process's)\n");
    if (!settled && RSS_RULES) fail("RSS did not return near its idle level within 20 s");
    if (!RSS_RULES) printf("  (AddressSanitizer build: RSS includes its quarantine; not checked)\n");
    for (int s = 0; s < N_SVC; s++) {
        int rc = at_test_stop(&procs[s], 30);
        if (rc != 0) fail("%s exited with status %d on SIGTERM", svc_name[s], rc);
    }
    printf("test_load: %s\n", failures ? "FAILED" : "ok");
    free(speech);
    free(speech_wav);
    return failures ? 1 : 0;
}
