/* test_remote_asr.c - the remote ASR engine's WebSocket handshake against
 * a scripted server on loopback: it sends a fresh random key, checks the
 * server's Sec-WebSocket-Accept, gives up on a server that never answers
 * instead of waiting forever, tells a busy (503) refusal from another, and
 * sends a long backlog as frames within the service's message limit. */
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engines/remote/remote.h"

typedef enum { ANSWER_RIGHT, ANSWER_WRONG, ANSWER_NOTHING, ANSWER_503, ANSWER_401, ANSWER_FRAMES } answer;

typedef struct {
    int lfd, port;
    answer mode;
    char key[64]; /* the key the client sent */
    int done;
    /* ANSWER_FRAMES: the binary frames the client sent */
    size_t n_binary, largest, audio_bytes;
} server;

static int recv_all(int fd, unsigned char *b, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, b + got, n - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Reads the client's frames until it closes, counting its binary ones. */
static void count_frames(server *s, int fd)
{
    unsigned char h[10], *p = NULL;
    while (recv_all(fd, h, 2) == 0) {
        uint64_t len = h[1] & 0x7f;
        size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
        if (ext && recv_all(fd, h + 2, ext) != 0) break;
        if (ext) len = 0;
        for (size_t i = 0; i < ext; i++) len = len << 8 | h[2 + i];
        unsigned char mask[4];
        if ((h[1] & 0x80) && recv_all(fd, mask, 4) != 0) break;
        if (len > (64u << 20) || !(p = realloc(p, len ? len : 1)) || recv_all(fd, p, len) != 0) break;
        if ((h[0] & 0x0f) == 2) {
            s->n_binary++;
            s->audio_bytes += len;
            if (len > s->largest) s->largest = len;
        }
        if ((h[0] & 0x0f) == 8) break; /* close */
    }
    free(p);
}

static int read_head(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) return -1;
        n += (size_t)r;
        buf[n] = 0;
        if (strstr(buf, "\r\n\r\n")) return 0;
    }
    return -1;
}

/* Connection 1: the engine's GET /v1/models; connection 2: the upgrade. */
static void *serve(void *arg)
{
    server *s = arg;
    char buf[4096];
    for (int c = 0; c < 2; c++) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) break;
        if (read_head(fd, buf, sizeof buf) == 0) {
            if (c == 0) {
                const char *body = "{\"data\":[{\"id\":\"pocketsphinx\"}]}";
                char r[256];
                int n =
                    snprintf(r, sizeof r,
                             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s",
                             strlen(body), body);
                send(fd, r, (size_t)n, MSG_NOSIGNAL);
            } else {
                const char *k = strcasestr(buf, "Sec-WebSocket-Key:");
                if (k) sscanf(k + 18, " %63s", s->key);
                char acc[64] = "d3Jvbmcgd3Jvbmcgd3Jvbmc=";
                if (s->mode == ANSWER_RIGHT || s->mode == ANSWER_FRAMES) {
                    char cat[128];
                    unsigned char md[20];
                    int n = snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", s->key);
                    lws_SHA1((const unsigned char *)cat, (size_t)n, md);
                    lws_b64_encode_string((const char *)md, 20, acc, sizeof acc);
                }
                if (s->mode == ANSWER_503 || s->mode == ANSWER_401) {
                    const char *r = s->mode == ANSWER_503
                                        ? "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                                        : "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
                    send(fd, r, strlen(r), MSG_NOSIGNAL);
                } else if (s->mode != ANSWER_NOTHING) {
                    char r[256];
                    int n = snprintf(r, sizeof r,
                                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                                     acc);
                    send(fd, r, (size_t)n, MSG_NOSIGNAL);
                }
                /* hold the connection until the client gives up or closes */
                if (s->mode == ANSWER_FRAMES)
                    count_frames(s, fd);
                else
                    while (recv(fd, buf, sizeof buf, 0) > 0) {}
            }
        }
        close(fd);
    }
    s->done = 1;
    return NULL;
}

static void start(server *s, answer mode, pthread_t *th)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(pthread_create(th, NULL, serve, s), 0);
}

static at_asr_stream *open_stream(server *s, at_err *err, at_asr_engine **eng)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
    *eng = at_asr_remote_new(url, NULL, err);
    assert_non_null(*eng);
    at_asr_options o = {0};
    return at_asr_stream_open(*eng, &o, err);
}

static void test_accept_checked(void **st)
{
    (void)st;
    server s;
    pthread_t th;
    at_err err = {0};
    at_asr_engine *e;
    /* the right accept for the key sent: the stream opens */
    start(&s, ANSWER_RIGHT, &th);
    at_asr_stream *as = open_stream(&s, &err, &e);
    if (!as) fail_msg("%s", err.msg);
    char first[64];
    snprintf(first, sizeof first, "%s", s.key);
    assert_int_equal(strlen(first), 24); /* 16 bytes, base64 */
    at_asr_stream_close(as);
    at_asr_engine_free(e);
    pthread_join(th, NULL);
    close(s.lfd);
    /* a wrong one: refused, with the reason; and the key is fresh */
    start(&s, ANSWER_WRONG, &th);
    assert_null(open_stream(&s, &err, &e));
    assert_non_null(strstr(err.msg, "Sec-WebSocket-Accept"));
    assert_string_not_equal(s.key, first);
    at_asr_engine_free(e);
    pthread_join(th, NULL);
    close(s.lfd);
}

static int no_events(void *u, const at_asr_event *ev)
{
    (void)u;
    (void)ev;
    return 0;
}

/* 40 s fed at once (a pipeline's backlog after a slow spell) go as
 * several frames within asr_streaming's 1 MiB message limit, all of it
 * sent; before, one 1.28 MB frame made the service close the stream. */
static void test_backlog_is_split_into_frames(void **st)
{
    (void)st;
    server s;
    pthread_t th;
    at_err err = {0};
    at_asr_engine *e;
    start(&s, ANSWER_FRAMES, &th);
    at_asr_stream *as = open_stream(&s, &err, &e);
    if (!as) fail_msg("%s", err.msg);
    size_t n = 40 * 16000;
    float *pcm = calloc(n, sizeof *pcm);
    assert_non_null(pcm);
    for (size_t i = 0; i < n; i++) pcm[i] = (i / 20) % 2 ? 0.25f : -0.25f;
    if (at_asr_stream_feed(as, pcm, n, no_events, NULL, &err) != 0) fail_msg("%s", err.msg);
    at_asr_stream_close(as);
    at_asr_engine_free(e);
    pthread_join(th, NULL);
    close(s.lfd);
    free(pcm);
    print_message("%zu binary frames, largest %zu bytes\n", s.n_binary, s.largest);
    assert_int_equal(s.audio_bytes, n * 2);
    assert_true(s.largest <= (1u << 20));
    assert_true(s.n_binary >= 2);
}

static void test_silent_server_times_out(void **st)
{
    (void)st;
    server s;
    pthread_t th;
    at_err err = {0};
    at_asr_engine *e;
    start(&s, ANSWER_NOTHING, &th);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_null(open_stream(&s, &err, &e));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("gave up on a silent server after %.1f s: %s\n", dt, err.msg);
    assert_true(dt < 15.0);
    assert_non_null(strstr(err.msg, "did not answer"));
    at_asr_engine_free(e);
    pthread_join(th, NULL);
    close(s.lfd);
}

/* A replica that refuses with 503 (full, or draining) is busy: the
 * pipeline asks its client to retry; another refusal (a wrong key) is not
 * cured by retrying. */
static void test_refusals(void **st)
{
    (void)st;
    static const answer modes[] = {ANSWER_503, ANSWER_401};
    static const int codes[] = {AT_E_BUSY, AT_E_ENGINE};
    for (int i = 0; i < 2; i++) {
        server s;
        pthread_t th;
        at_err err = {0};
        at_asr_engine *e;
        start(&s, modes[i], &th);
        assert_null(open_stream(&s, &err, &e));
        assert_int_equal(err.code, codes[i]);
        assert_non_null(strstr(err.msg, "refused the stream"));
        at_asr_engine_free(e);
        pthread_join(th, NULL);
        close(s.lfd);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_checked),
        cmocka_unit_test(test_backlog_is_split_into_frames),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
