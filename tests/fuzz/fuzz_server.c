/* fuzz_server - any bytes sent to the services as a client would send them.
 *
 * The four services (asr_streaming, translate, tts, pipeline) run in this
 * process on loopback with their embedded engines (pocketsphinx, Apertium,
 * flite, espeak-ng), exactly as `serve` mounts them.  The first byte of an
 * input picks the port; the rest is written raw to a fresh connection,
 * which is then half-closed.  So everything our code sees from a socket
 * is under the fuzzer: request lines, paths, query strings, headers, every
 * JSON and form body, WebSocket upgrades, frames and stream/pipeline
 * configurations, audio.  Each connection must be closed by the server
 * within 15 s of the client's end of input; a server that keeps it open
 * (a hang) or crashes is a finding.  Seeds: tests/fuzz/seeds/fuzz_server,
 * one request per file, first byte '0'..'3' for asr/translate/tts/
 * pipeline. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/http.h"
#include "services/app.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_SERVICES = 4, CLOSE_DEADLINE_MS = 15000 };

static int ports[N_SERVICES];

static void *run_loop(void *srv)
{
    at_http_server_run(srv);
    return NULL;
}

static void die(const char *what, const at_err *err)
{
    fprintf(stderr, "fuzz_server: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

/* The services with small limits, so the fuzzer reaches them quickly. */
static void start(void)
{
    at_err err;
    at_err_clear(&err);
    at_app_config ac;
    at_app_config_defaults(&ac);
    ac.kinds = AT_APP_ASR | AT_APP_MT | AT_APP_TTS | AT_APP_PIPELINE;
    ac.loaders = &at_app_local_loaders;
    ac.max_audio_seconds = 5;
    ac.max_text_chars = 300;
    ac.stream_idle_s = 2;
    at_log *log = at_log_new(2, AT_LOG_ERROR, 0);
    at_metrics *metrics = at_metrics_new();
    at_app *app = at_app_new(&ac, log, metrics, &err);
    if (!app || at_app_load(app, &err) != 0) die("loading the engines", &err);
    at_http_config hc;
    at_http_config_defaults(&hc);
    hc.body_limit = 256 * 1024;
    hc.max_inflight = 8;
    hc.max_ws_sessions = 8;
    hc.ws_message_limit = 64 * 1024;
    hc.idle_timeout_s = 5;
    hc.body_timeout_s = 2;
    hc.log = log;
    hc.metrics = metrics;
    at_http_server *srv = at_http_server_new(&hc, &err);
    if (!srv) die("server", &err);
    int (*listen[N_SERVICES])(at_app *, at_http_server *, const char *, int, int *,
                              at_err *) = {at_asr_service_listen, at_translate_service_listen,
                                           at_tts_service_listen, at_pipeline_service_listen};
    for (int i = 0; i < N_SERVICES; i++)
        if (listen[i](app, srv, "127.0.0.1", 0, &ports[i], &err) != 0) die("listen", &err);
    pthread_t t;
    if (pthread_create(&t, NULL, run_loop, srv) != 0) die("loop thread", NULL);
    pthread_detach(t);
}

static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ports[0]) start();
    if (size < 1) return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket", NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[data[0] % N_SERVICES])};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += CLOSE_DEADLINE_MS / 1000;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) die("connect", NULL);
    /* Write the input while draining whatever the server answers (it may
     * answer early, 413, and stop reading: then the rest is dropped). */
    size_t off = 1;
    int reading = 1, writing = 1;
    char buf[16384];
    while (reading) {
        long left = ms_left(&deadline);
        if (left <= 0) {
            fprintf(stderr, "fuzz_server: the server kept the connection open %d s after the input ended\n",
                    CLOSE_DEADLINE_MS / 1000);
            abort();
        }
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (writing ? POLLOUT : 0))};
        if (poll(&p, 1, (int)left) < 0) continue;
        if (writing && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = off < size ? send(fd, data + off, size - off, MSG_NOSIGNAL) : 0;
            if (w > 0) off += (size_t)w;
            if (off >= size || (w < 0 && errno != EAGAIN && errno != EINTR)) {
                shutdown(fd, SHUT_WR);
                writing = 0;
            }
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) reading = 0;
        }
    }
    close(fd);
    return 0;
}
