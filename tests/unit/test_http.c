/* The HTTP + WebSocket server on its own: routing, limits, streaming,
 * backpressure, capacity and draining, over real loopback sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <poll.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "core/access.h"
#include "core/http.h"

typedef struct fixture {
    at_http_server *srv;
    pthread_t loop;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int release; /* lets the "slow" handler finish */
    int slow_running;
    int stream_cancelled;
    int hold_running, hold_release; /* the "hold" handler waits for the test */
    int linger_release;             /* lets the "linger" handlers return */
    at_metrics *metrics;
} fixture;

static fixture fx;

/* The test links with --wrap=pthread_create, so a test can make the
 * server's next worker thread fail to start, as it does when the process
 * reaches its thread limit. */
static atomic_int fail_next_thread;
int __real_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (atomic_exchange(&fail_next_thread, 0)) return EAGAIN;
    return __real_pthread_create(th, attr, fn, arg);
}

static void h_echo(at_http_req *r, void *u)
{
    (void)u;
    size_t n;
    const unsigned char *b = at_http_req_body(r, &n);
    const char *q = at_http_req_query(r, "x");
    at_http_add_header(r, "x-query", q ? q : "-");
    at_http_respond(r, 200, "application/octet-stream", b, n);
}

static void h_slow(at_http_req *r, void *u)
{
    fixture *f = u;
    pthread_mutex_lock(&f->mu);
    f->slow_running++;
    pthread_cond_broadcast(&f->cv);
    while (!f->release) pthread_cond_wait(&f->cv, &f->mu);
    f->slow_running--;
    pthread_mutex_unlock(&f->mu);
    at_http_respond(r, 200, "text/plain", "done", 4);
}

/* Reads its body's length, waits for the test, reads it again and says
 * both: a body must not change under a running handler. */
static void h_hold(at_http_req *r, void *u)
{
    fixture *f = u;
    size_t n0 = 0, n1 = 0;
    at_http_req_body(r, &n0);
    pthread_mutex_lock(&f->mu);
    f->hold_running = 1;
    pthread_cond_broadcast(&f->cv);
    while (!f->hold_release) pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    const unsigned char *b = at_http_req_body(r, &n1);
    size_t sum = 0;
    for (size_t i = 0; i < n1; i++) sum += b[i]; /* reads it all: ASan sees a moved buffer */
    char out[64];
    int len = snprintf(out, sizeof out, "%zu %zu %zu", n0, n1, sum);
    at_http_respond(r, 200, "text/plain", out, (size_t)len);
}

/* Answers at once, then goes on working (a handler may log or clean up
 * after its answer) until the test lets it return. */
static void h_linger(at_http_req *r, void *u)
{
    fixture *f = u;
    at_http_respond(r, 200, "text/plain", "ok", 2);
    pthread_mutex_lock(&f->mu);
    while (!f->linger_release) pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void h_stream(at_http_req *r, void *u)
{
    fixture *f = u;
    at_http_stream_begin(r, 200, "text/plain");
    char chunk[1000];
    memset(chunk, 'z', sizeof chunk);
    int n = at_http_req_query(r, "n") ? atoi(at_http_req_query(r, "n")) : 100;
    for (int i = 0; i < n; i++) {
        chunk[0] = (char)('0' + i % 10);
        if (at_http_stream_write(r, chunk, sizeof chunk) != 0) {
            pthread_mutex_lock(&f->mu);
            f->stream_cancelled++;
            pthread_cond_broadcast(&f->cv);
            pthread_mutex_unlock(&f->mu);
            /* a handler may clean up after it sees the client go: its slot
             * stays taken meanwhile, and the next test must wait for it */
            usleep(100 * 1000);
            return;
        }
    }
    at_http_stream_end(r);
}

static void h_silent(at_http_req *r, void *u)
{
    (void)r;
    (void)u; /* answers nothing: the server must answer 500 for it */
}

/* as the services' /ready: 503 while the server drains */
static void h_ready(at_http_req *r, void *u)
{
    (void)u;
    int d = at_http_req_draining(r);
    at_http_respond(r, d ? 503 : 200, "text/plain", d ? "draining" : "ready", d ? 8 : 5);
}

static void ws_echo(at_ws *ws, void *u)
{
    (void)u;
    at_ws_msg m;
    int rc;
    while ((rc = at_ws_recv(ws, &m, 5000)) == 1) {
        if (m.kind == AT_WS_TEXT && strcmp((char *)m.data, "bye") == 0) {
            free(m.data);
            at_ws_set_close(ws, 4000, "bye");
            return;
        }
        if (m.kind == AT_WS_TEXT)
            at_ws_send_text(ws, (char *)m.data, m.len);
        else
            at_ws_send_binary(ws, m.data, m.len);
        free(m.data);
    }
}

static const at_http_route routes[] = {
    {"POST", "/small", h_echo, NULL, AT_ROUTE_WORKER, 1000},
    {"POST", "/echo", h_echo, NULL, AT_ROUTE_WORKER, 0},
    {"GET", "/slow", h_slow, NULL, AT_ROUTE_WORKER, 0},
    {"GET", "/stream", h_stream, NULL, AT_ROUTE_WORKER, 0},
    {"GET", "/silent", h_silent, NULL, AT_ROUTE_WORKER, 0},
    {"POST", "/slow", h_slow, NULL, AT_ROUTE_WORKER, 0},
    {"POST", "/hold", h_hold, NULL, AT_ROUTE_WORKER, 0},
    {"POST", "/linger", h_linger, NULL, AT_ROUTE_WORKER, 0},
    {"GET", "/health", h_echo, NULL, AT_ROUTE_INLINE, 0},
    {"GET", "/ready", h_ready, NULL, AT_ROUTE_INLINE, 0},
    {NULL, "/ws", NULL, ws_echo, AT_ROUTE_WORKER, 0},
};

static void *loop_main(void *arg)
{
    at_http_server_run(arg);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    pthread_mutex_init(&fx.mu, NULL);
    pthread_cond_init(&fx.cv, NULL);
    at_http_config c;
    at_http_config_defaults(&c);
    c.body_limit = 64 * 1024;
    c.max_inflight = 2;
    c.max_ws_sessions = 2;
    c.ws_message_limit = 32 * 1024;
    c.ws_queue_limit = 16 * 1024;
    c.idle_timeout_s = 3;
    c.drain_timeout_s = 5;
    c.body_timeout_s = 2;
    c.metrics = fx.metrics = at_metrics_new();
    at_err err;
    fx.srv = at_http_server_new(&c, &err);
    if (!fx.srv) return -1;
    if (at_http_server_listen(fx.srv, "test", "127.0.0.1", 0, routes, sizeof routes / sizeof routes[0], &fx,
                              &fx.port, &err))
        return -1;
    if (fx.port <= 0) return -1;
    pthread_create(&fx.loop, NULL, loop_main, fx.srv);
    return 0;
}

static void routing_and_bodies(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "POST", "/echo?x=a%20b", NULL, "hello", 5, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.body, "hello", 5);
    char v[64];
    assert_true(at_test_header(&r, "x-query", v, sizeof v));
    assert_string_equal(v, "a b");
    at_test_resp_free(&r);

    assert_int_equal(at_test_http(fx.port, "GET", "/nothing", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr((char *)r.body, "\"error\""));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "GET", "/echo", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "GET", "/silent", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 500);
    at_test_resp_free(&r);

    /* a body at the limit passes; one byte more is 413 */
    size_t n = 64 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'b', n + 1);
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, big, n, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, n);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, big, n + 1, &r), 0);
    assert_int_equal(r.status, 413);
    at_test_resp_free(&r);
    free(big);

    /* chunked upload beyond the limit without Content-Length */
    char req[70 * 1024];
    int hl =
        snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    size_t off = (size_t)hl;
    for (int i = 0; i < 20; i++) {
        off += (size_t)snprintf(req + off, sizeof req - off, "1000\r\n");
        memset(req + off, 'c', 0x1000);
        off += 0x1000;
        memcpy(req + off, "\r\n", 2);
        off += 2;
        if (off > sizeof req - 0x1100) break;
    }
    memcpy(req + off, "0\r\n\r\n", 5);
    off += 5;
    assert_int_equal(at_test_raw(fx.port, req, off, &r, 10), 0);
    assert_int_equal(r.status, 413);
    at_test_resp_free(&r);
}

static void keep_alive_serves_several_requests(void **state)
{
    (void)state;
    const char two[] = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    /* Two requests in sequence on one connection each get their answer. */
    at_test_resp r;
    assert_int_equal(at_test_raw(fx.port, two, sizeof two - 1, &r, 5), 0);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "abc", 3);
    at_test_resp_free(&r);
}

static void streamed_response_is_chunked_and_complete(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "GET", "/stream?n=300", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_int_equal(r.len, 300 * 1000);
    for (int i = 0; i < 300; i++) assert_int_equal(r.body[i * 1000], '0' + i % 10);
    at_test_resp_free(&r);
}

static void client_gone_cancels_stream(void **state)
{
    (void)state;
    /* Ask for 20 MB and read none of it: the writer blocks on the bounded
     * queue, then sees the client go and stops. */
    const char req[] = "GET /stream?n=20000 HTTP/1.1\r\nHost: x\r\n\r\n";
    at_test_resp r;
    at_test_raw(fx.port, req, sizeof req - 1, &r, 0);
    at_test_resp_free(&r);
    pthread_mutex_lock(&fx.mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    while (!fx.stream_cancelled && pthread_cond_timedwait(&fx.cv, &fx.mu, &dl) == 0) {}
    int c = fx.stream_cancelled;
    pthread_mutex_unlock(&fx.mu);
    assert_int_equal(c, 1);
}

typedef struct slow_call {
    int port;
    int status;
} slow_call;

static void *call_slow(void *arg)
{
    slow_call *c = arg;
    at_test_resp r;
    if (at_test_http(c->port, "GET", "/slow", NULL, NULL, 0, &r) == 0) c->status = r.status;
    at_test_resp_free(&r);
    return NULL;
}

static void wait_in_flight(int n);
static void release_flag(int *flag);

/* Two slow handlers fill max_inflight (2): a third request gets 503 with
 * Retry-After.  It starts once the last test's stream has given its slot
 * back (it could still hold it, and one slow call got the 503 instead,
 * which left the test waiting for ever), and waits at most 10 s. */
static void inflight_limit_gives_503_with_retry_after(void **state)
{
    (void)state;
    wait_in_flight(0);
    fx.release = 0;
    slow_call calls[2] = {{fx.port, 0}, {fx.port, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, call_slow, &calls[i]);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&fx.mu);
    while (fx.slow_running < 2 && pthread_cond_timedwait(&fx.cv, &fx.mu, &dl) == 0) {}
    int running = fx.slow_running;
    pthread_mutex_unlock(&fx.mu);
    if (running < 2) {
        release_flag(&fx.release);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        fail_msg("%d of 2 slow handlers ran (answers %d and %d)", running, calls[0].status, calls[1].status);
    }
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 503);
    char v[16];
    assert_true(at_test_header(&r, "retry-after", v, sizeof v));
    at_test_resp_free(&r);
    release_flag(&fx.release);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(calls[i].status, 200);
    }
}

/* No worker thread can start: the request gets 503 with Retry-After, and
 * its slot and body go back (the in-flight gauge and the buffered total
 * once stayed up, until uploads were refused for good). */
static void worker_thread_failure_gives_503(void **state)
{
    (void)state;
    at_test_resp r;
    char body[4096], v[16];
    memset(body, 'b', sizeof body);
    atomic_store(&fail_next_thread, 1);
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, body, sizeof body, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr((char *)r.body, "cannot start a worker thread"));
    assert_true(at_test_header(&r, "retry-after", v, sizeof v));
    at_test_resp_free(&r);
    assert_int_equal(atomic_load(&fail_next_thread), 0);
    char *m = at_metrics_render(fx.metrics);
    assert_non_null(m);
    if (!strstr(m, "http_requests_in_flight{service=\"test\"} 0\n"))
        fail_msg("in flight after the 503:\n%s", m);
    free(m);
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, body, sizeof body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, sizeof body);
    at_test_resp_free(&r);
}

/* Sets a fixture flag the handlers wait on, and wakes them. */
static void release_flag(int *flag)
{
    pthread_mutex_lock(&fx.mu);
    *flag = 1;
    pthread_cond_broadcast(&fx.cv);
    pthread_mutex_unlock(&fx.mu);
}

/* Reads what the server sends on fd until it closes or is quiet for 5 s;
 * NUL-terminated. */
static size_t read_reply(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t got;
    struct pollfd pf = {fd, POLLIN, 0};
    while (n < cap - 1 && poll(&pf, 1, 5000) > 0 && (got = recv(fd, buf + n, cap - 1 - n, 0)) > 0)
        n += (size_t)got;
    buf[n] = '\0';
    return n;
}

/* A POST without Content-Length or chunked framing has no body (RFC 9112
 * 6.3) and its handler starts at once; bytes the client sends after it
 * are not read into the body while the handler runs (they were, moving
 * the buffer under it: a use after free), and the connection closes after
 * the answer. */
static void post_without_length_keeps_its_body_still(void **state)
{
    (void)state;
    fx.hold_running = fx.hold_release = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)fx.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    static const char head[] = "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\r\n";
    assert_int_equal(send(fd, head, sizeof head - 1, 0), (ssize_t)(sizeof head - 1));
    pthread_mutex_lock(&fx.mu);
    while (!fx.hold_running) pthread_cond_wait(&fx.cv, &fx.mu);
    pthread_mutex_unlock(&fx.mu);
    /* 48 KB (under body_limit, so a buffer that took them would not be
     * refused), a piece at a time, each read by the server before the next */
    char chunk[4096];
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(send(fd, chunk, sizeof chunk, MSG_NOSIGNAL), (ssize_t)sizeof chunk);
        usleep(20000);
    }
    usleep(200000);
    release_flag(&fx.hold_release);
    char resp[4096];
    read_reply(fd, resp, sizeof resp);
    close(fd);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    const char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    if (strcmp(body + 4, "0 0 0") != 0) fail_msg("the handler's body changed under it: %s", body + 4);
    at_test_resp r; /* the server goes on serving */
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "ok", 2, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

/* 1 when the in-flight gauge reads n (never fails: a test may still have
 * handlers to release). */
static int in_flight_is(int n)
{
    char want[64];
    snprintf(want, sizeof want, "http_requests_in_flight{service=\"test\"} %d\n", n);
    char *m = at_metrics_render(fx.metrics);
    int ok = m && strstr(m, want) != NULL;
    free(m);
    return ok;
}

/* A request's max_inflight slot is free once its answer is complete, not
 * when its worker thread ends: a client that sends one request after the
 * other never gets 503 from a limit of 2.  Before, the third of three
 * requests to handlers that go on after answering was refused (and, on a
 * loaded machine, a client's next request could beat its last worker's
 * exit and be refused the same way). */
static void answered_requests_give_their_slots_back(void **state)
{
    (void)state;
    fx.linger_release = 0;
    int status[3];
    for (int i = 0; i < 3; i++) {
        at_test_resp r;
        status[i] = at_test_http(fx.port, "POST", "/linger", NULL, "x", 1, &r) == 0 ? r.status : -1;
        if (status[i] >= 0) at_test_resp_free(&r);
    }
    int idle = in_flight_is(0);
    release_flag(&fx.linger_release); /* before any failure: the server waits for its workers */
    for (int i = 0; i < 3; i++)
        if (status[i] != 200) fail_msg("request %d of 3 got %d", i + 1, status[i]);
    assert_true(idle);
}

/* Opens a connection that sends its headers and part of a body, then
 * stops: an upload in progress. */
static int start_upload(int port, size_t declared, size_t sent)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char h[256];
    int n = snprintf(h, sizeof h, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", declared);
    assert_int_equal(send(fd, h, (size_t)n, 0), n);
    char body[64] = {0};
    if (sent) assert_int_equal(send(fd, body, sent, 0), (ssize_t)sent);
    return fd;
}

/* POSTs a small body until the answer has `status` (the server reads the
 * other connections' headers when it gets to them: on a loaded machine
 * that can take a while), for at most 5 s; returns the last answer. */
static at_test_resp post_until(int status)
{
    at_test_resp r;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "x", 1, &r), 0);
        if (r.status == status) break;
        at_test_resp_free(&r);
        usleep(50 * 1000);
    }
    return r;
}

/* Waits up to 5 s for the in-flight gauge to read n: the loop admits an
 * upload when it gets to its headers, and frees a closed one's slot when
 * it sees the connection go. */
static void wait_in_flight(int n)
{
    for (int i = 0; i < 500 && !in_flight_is(n); i++) usleep(10 * 1000);
    if (!in_flight_is(n)) fail_msg("in flight is not %d after 5 s", n);
}

/* Uploads take their slot when their headers arrive, not when their body
 * is complete: two slow uploads fill max_inflight (2) and a third request
 * is refused at once with 503 and Retry-After, before anything of its body
 * is buffered.  When the uploads go, the slots are free again. */
static void uploads_are_admitted_before_buffering(void **state)
{
    (void)state;
    wait_in_flight(0);
    int a = start_upload(fx.port, 1000, 10), b = start_upload(fx.port, 1000, 10);
    /* with the two uploads admitted, a third request is refused: before,
     * they took no slot until their bodies were complete and it got 200 */
    wait_in_flight(2);
    at_test_resp r = post_until(503);
    assert_int_equal(r.status, 503);
    char v[16];
    assert_true(at_test_header(&r, "retry-after", v, sizeof v));
    assert_non_null(strstr((char *)r.body, "in flight"));
    at_test_resp_free(&r);
    close(a);
    close(b);
    r = post_until(200);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

/* A body trickled too slowly (slowloris) is cut off at its deadline
 * (body_timeout_s 2 here, plus a second per 64 KiB), freeing its slot. */
static void slow_body_is_cut_off(void **state)
{
    (void)state;
    int fd = start_upload(fx.port, 1000, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[512];
    ssize_t got = 1;
    for (int i = 0; i < 20 && got > 0; i++) { /* a byte every 0.5 s: never done in time */
        if (send(fd, "y", 1, MSG_NOSIGNAL) != 1) break;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 500) > 0) got = recv(fd, buf, sizeof buf, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("trickled body cut off after %.1f s\n", dt);
    assert_true(got <= 0);
    assert_true(dt < 6.0);
    close(fd);
}

/* Clients that stream an upload (the OpenAI SDK given a file stream)
 * send Transfer-Encoding: chunked and no Content-Length. */
/* A route's own body limit, below the server's (the text routes': JSON
 * trees take many times their text), with Content-Length and chunked. */
static void route_body_limit(void **state)
{
    (void)state;
    char body[2000];
    memset(body, 'x', sizeof body);
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "POST", "/small", NULL, body, 1000, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 1000);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "POST", "/small", NULL, body, 1001, &r), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr((char *)r.body, "limit of 1000 bytes"));
    at_test_resp_free(&r);
    const char big[] = "POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7d1\r\nabc";
    assert_int_equal(at_test_raw(fx.port, big, sizeof big - 1, &r, 5), 0);
    assert_int_equal(r.status, 413);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, body, sizeof body, &r), 0);
    assert_int_equal(r.status, 200); /* the others keep the server's */
    at_test_resp_free(&r);
}

static void chunked_request_bodies(void **state)
{
    (void)state;
    at_test_resp r;
    /* pieces of a body in chunks of various sizes, with an extension and a
     * trailer; the reply comes and the connection closes after it */
    const char ok[] = "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 0\r\n\r\n";
    assert_int_equal(at_test_raw(fx.port, ok, sizeof ok - 1, &r, 5), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body, "hello world");
    at_test_resp_free(&r);

    /* both framings at once (request smuggling) are refused */
    const char both[] =
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\nabcdef\r\n0\r\n\r\n";
    assert_int_equal(at_test_raw(fx.port, both, sizeof both - 1, &r, 5), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body, "both Content-Length and Transfer-Encoding"));
    at_test_resp_free(&r);

    /* over the body limit (64 KiB here): 413 from the chunk size alone */
    const char big[] = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\nabc";
    assert_int_equal(at_test_raw(fx.port, big, sizeof big - 1, &r, 5), 0);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr((char *)r.body, "limit of 65536 bytes"));
    at_test_resp_free(&r);

    const char bad[] = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhellozz\r\n";
    assert_int_equal(at_test_raw(fx.port, bad, sizeof bad - 1, &r, 5), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body, "chunked body"));
    at_test_resp_free(&r);

    const char gz[] = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxxxx";
    assert_int_equal(at_test_raw(fx.port, gz, sizeof gz - 1, &r, 5), 0);
    assert_int_equal(r.status, 501);
    at_test_resp_free(&r);

    /* neither Content-Length nor chunked: the body is empty (RFC 9112) and
     * the request is answered at once, not held waiting for one */
    const char none[] = "POST /echo HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_int_equal(at_test_raw(fx.port, none, sizeof none - 1, &r, 5), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    at_test_resp_free(&r);
}

/* A chunked upload whose handler runs longer than the idle timeout (3 s
 * here) still gets its answer: libwebsockets arms a body timeout after
 * every piece of a body it believes unfinished. */
static void chunked_upload_with_long_handler(void **state)
{
    (void)state;
    pthread_mutex_lock(&fx.mu);
    fx.release = 0;
    pthread_mutex_unlock(&fx.mu);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char req[] =
        "POST /slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    pthread_mutex_lock(&fx.mu);
    while (fx.slow_running == 0) pthread_cond_wait(&fx.cv, &fx.mu);
    pthread_mutex_unlock(&fx.mu);
    sleep(5);
    release_flag(&fx.release);
    char buf[1024];
    read_reply(fd, buf, sizeof buf);
    close(fd);
    assert_non_null(strstr(buf, "200"));
    assert_non_null(strstr(buf, "done"));
}

/* A second server with API keys, rate limits and CORS: one listener in
 * OpenAI's conventions, one in LibreTranslate's (api_key in the body). */
static void access_control(void **state)
{
    (void)state;
    char keys[64];
    snprintf(keys, sizeof keys, "/tmp/at_http_keys_%d", (int)getpid());
    FILE *kf = fopen(keys, "w");
    assert_non_null(kf);
    fputs("good-key-0001\n", kf);
    fclose(kf);
    at_access_config xc = {keys, 3, 0, 0, "https://app.example"};
    at_err err;
    at_access *acc = at_access_new(&xc, &err);
    assert_non_null(acc);
    unlink(keys);
    static const at_http_route open_routes[] = {
        {"POST", "/echo", h_echo, NULL, AT_ROUTE_WORKER, 0},
        {"GET", "/health", h_echo, NULL, AT_ROUTE_INLINE, 0},
        {"GET", "/list", h_echo, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
        {NULL, "/ws", NULL, ws_echo, AT_ROUTE_WORKER, 0},
    };
    at_http_config c;
    at_http_config_defaults(&c);
    c.access = acc;
    at_http_server *srv = at_http_server_new(&c, &err);
    assert_non_null(srv);
    int oa = 0, lt = 0;
    assert_int_equal(at_http_server_listen(srv, "oa", "127.0.0.1", 0, open_routes, 4, &fx, &oa, &err), 0);
    assert_int_equal(at_http_server_listen(srv, "lt", "127.0.0.1", 0, open_routes, 4, &fx, &lt, &err), 0);
    at_http_server_set_errors(srv, "lt", AT_ERRORS_PLAIN);
    pthread_t loop;
    pthread_create(&loop, NULL, loop_main, srv);

    at_test_resp r;
    /* no key: 401 before the body is read, OpenAI's code */
    assert_int_equal(at_test_http(oa, "POST", "/echo", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body, "\"code\":\"missing_api_key\""));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(oa, "POST", "/echo", "Authorization: Bearer bad-key-0001\r\n", "x", 1, &r),
                     0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body, "\"code\":\"invalid_api_key\""));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(oa, "POST", "/echo", "Authorization: Bearer good-key-0001\r\n", "x", 1, &r),
                     0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(oa, "POST", "/echo?api_key=good-key-0001", NULL, "y", 1, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    /* open routes */
    assert_int_equal(at_test_http(oa, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(lt, "GET", "/list", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    /* the key's third request this minute is its last: 429 after it */
    assert_int_equal(at_test_http(oa, "POST", "/echo", "Authorization: Bearer good-key-0001\r\n", "z", 1, &r),
                     0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(oa, "POST", "/echo", "Authorization: Bearer good-key-0001\r\n", "z", 1, &r),
                     0);
    assert_int_equal(r.status, 429);
    char v[32];
    assert_true(at_test_header(&r, "retry-after", v, sizeof v));
    assert_true(atoi(v) >= 1 && atoi(v) <= 20);
    assert_non_null(strstr((char *)r.body, "rate_limit_exceeded"));
    at_test_resp_free(&r);

    /* LibreTranslate's listener: api_key in a JSON or form body; its
     * errors are {"error": "..."}; this key is spent, so a new server
     * would be needed for 200s: a wrong key and a missing one suffice */
    const char *json = "{\"q\":\"x\",\"api_key\":\"bad-key-0002\"}";
    assert_int_equal(
        at_test_http(lt, "POST", "/echo", "Content-Type: application/json\r\n", json, strlen(json), &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body, "{\"error\":\"invalid API key"));
    at_test_resp_free(&r);
    const char *form = "q=x";
    assert_int_equal(at_test_http(lt, "POST", "/echo", "Content-Type: application/x-www-form-urlencoded\r\n",
                                  form, strlen(form), &r),
                     0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr((char *)r.body, "api_key"));
    at_test_resp_free(&r);
    /* a spent key is refused with 429 even from the body */
    form = "q=x&api_key=good-key-0001";
    assert_int_equal(at_test_http(lt, "POST", "/echo", "Content-Type: application/x-www-form-urlencoded\r\n",
                                  form, strlen(form), &r),
                     0);
    assert_int_equal(r.status, 429);
    at_test_resp_free(&r);

    /* WebSocket upgrades need a key too */
    at_test_ws ws;
    assert_int_equal(at_test_ws_connect(&ws, oa, "/ws", &r), 401);
    assert_non_null(strstr((char *)r.body, "missing_api_key"));
    at_test_resp_free(&r);

    /* CORS: the allowed origin gets its headers and a preflight answer;
     * another origin gets none */
    const char pre[] =
        "OPTIONS /echo HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n"
        "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization\r\n\r\n";
    assert_int_equal(at_test_raw(oa, pre, sizeof pre - 1, &r, 5), 0);
    assert_int_equal(r.status, 200);
    assert_true(at_test_header(&r, "access-control-allow-origin", v, sizeof v));
    assert_string_equal(v, "https://app.example");
    assert_true(at_test_header(&r, "access-control-allow-headers", v, sizeof v));
    assert_string_equal(v, "authorization");
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(oa, "GET", "/health", "Origin: https://evil.example\r\n", NULL, 0, &r), 0);
    assert_false(at_test_header(&r, "access-control-allow-origin", v, sizeof v));
    at_test_resp_free(&r);

    at_http_server_stop(srv);
    pthread_join(loop, NULL);
    at_http_server_free(srv);
    at_access_free(acc);
}

/* Requests pipelined behind another on one connection: each connection
 * gets its first answer and is closed, and the server keeps serving.
 * libwebsockets parsed the second from its buffer without polling again,
 * and the whole server spun for ever (found by fuzz_server). */
static void pipelined_requests_do_not_hang_the_server(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "GET /health HTTP/1.1\r\nHost: t\r\n\r\nPOST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: "
        "3\r\n\r\nabc",
        "GET /health HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: "
        "3\r\n\r\nabc",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcPOST /echo HTTP/1.1\r\nHost: t\r\n"
        "Content-Length: 3\r\n\r\nxyz",
        "POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /health HTTP/1.1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /health HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        at_test_resp r;
        assert_int_equal(at_test_raw(fx.port, cases[i], strlen(cases[i]), &r, 5), 0);
        assert_true(r.status == 200 || r.status == 404);
        char v[32];
        assert_true(at_test_header(&r, "connection", v, sizeof v));
        assert_string_equal(v, "close");
        at_test_resp_free(&r);
        /* the server still answers others, at once */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(at_test_raw(fx.port, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n", 34, &r, 5), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(r.status, 200);
        assert_true(t1.tv_sec - t0.tv_sec < 2);
        at_test_resp_free(&r);
    }
}

static void websocket_echo_limits_and_close_codes(void **state)
{
    (void)state;
    at_test_ws a, b, c;
    assert_int_equal(at_test_ws_connect(&a, fx.port, "/ws", NULL), 0);
    assert_int_equal(at_test_ws_send(&a, 1, "hello", 5), 0);
    char *d;
    size_t l;
    assert_int_equal(at_test_ws_recv(&a, &d, &l, 5000), 1);
    assert_string_equal(d, "hello");
    free(d);
    /* binary, larger than one TCP segment */
    unsigned char bin[20000];
    for (size_t i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)i;
    assert_int_equal(at_test_ws_send(&a, 2, bin, sizeof bin), 0);
    assert_int_equal(at_test_ws_recv(&a, &d, &l, 5000), 2);
    assert_int_equal(l, sizeof bin);
    assert_memory_equal(d, bin, sizeof bin);
    free(d);
    /* second session fits, third is refused with 503 */
    assert_int_equal(at_test_ws_connect(&b, fx.port, "/ws", NULL), 0);
    at_test_resp refused;
    assert_int_equal(at_test_ws_connect(&c, fx.port, "/ws", &refused), 503);
    char v[16];
    assert_true(at_test_header(&refused, "retry-after", v, sizeof v));
    at_test_resp_free(&refused);
    /* the handler's close code reaches the client */
    at_test_ws_send(&b, 1, "bye", 3);
    assert_int_equal(at_test_ws_recv(&b, &d, &l, 5000), 8);
    assert_int_equal(b.close_code, 4000);
    free(d);
    at_test_ws_close(&b);
    /* a message over the 32 KiB limit closes with 1009 */
    unsigned char *huge = calloc(1, 40000);
    at_test_ws_send(&a, 2, huge, 40000);
    free(huge);
    int op = at_test_ws_recv(&a, &d, &l, 5000);
    assert_int_equal(op, 8);
    assert_int_equal(a.close_code, 1009);
    free(d);
    at_test_ws_close(&a);
    /* unknown WebSocket path is refused */
    assert_true(at_test_ws_connect(&c, fx.port, "/nows", NULL) != 0);
    /* slots come back */
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        if (at_test_ws_connect(&c, fx.port, "/ws", NULL) == 0)
            ok = 1;
        else
            usleep(50000);
    }
    assert_true(ok);
    at_test_ws_close(&c);
}

/* Sends `pattern` (whole WebSocket frames) again and again, without
 * reading, until `want` bytes are sent or the socket has taken nothing
 * for a second; returns the bytes sent. */
static size_t flood(int fd, const unsigned char *pattern, size_t len, size_t want)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t accepted = 0, off = 0;
    for (int stalls = 0; accepted < want && stalls < 20;) {
        ssize_t n = send(fd, pattern + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            accepted += (size_t)n;
            off = (off + (size_t)n) % len;
            stalls = 0;
        } else {
            stalls++;
            usleep(50000);
        }
    }
    return accepted;
}

/* A masked binary frame of 16000 zero bytes (zero mask). */
static void frame16000(unsigned char frame[16006])
{
    frame[0] = 0x82;
    frame[1] = 0x80 | 126;
    frame[2] = 16000 >> 8;
    frame[3] = 16000 & 0xff;
    memset(frame + 4, 0, 16006 - 4);
}

static void websocket_backpressure_bounds_memory(void **state)
{
    (void)state;
    /* Send up to 64 MB of echo requests without reading any reply.  The
     * echo handler blocks on its bounded out-queue, stops reading, the
     * server turns rx flow control off and our sends stall: what the
     * server accepted is bounded by its queues plus kernel buffers. */
    at_test_ws a;
    assert_int_equal(at_test_ws_connect(&a, fx.port, "/ws", NULL), 0);
    unsigned char frame[16006];
    frame16000(frame);
    size_t accepted = flood(a.fd, frame, sizeof frame, 64u << 20);
    printf("# server accepted %.1f MB of 64 MB before pushing back\n", accepted / 1048576.0);
    assert_true(accepted < (32u << 20));
    at_test_ws_close(&a);
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "ok", 2, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* The same with empty frames: each costs the server a queue slot and an
 * allocation both ways though it carries nothing, so the queues count a
 * message's overhead too (they counted payload bytes only, and millions
 * of empty frames were taken in without pushing back). */
static void websocket_empty_frames_are_throttled(void **state)
{
    (void)state;
    at_test_ws a;
    assert_int_equal(at_test_ws_connect(&a, fx.port, "/ws", NULL), 0);
    int sndbuf = 64 * 1024; /* what is accepted is the server's, mostly */
    setsockopt(a.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    unsigned char frames[6 * 1024]; /* binary, masked, no payload: 6 bytes each */
    for (size_t i = 0; i < sizeof frames; i += 6) {
        frames[i] = 0x82;
        frames[i + 1] = 0x80;
        memset(frames + i + 2, 0, 4);
    }
    size_t rss0 = rss_bytes(), want = 24u << 20, accepted = flood(a.fd, frames, sizeof frames, want);
    size_t rss1 = rss_bytes();
    printf("# server accepted %zu empty frames (%.1f MB) of %zu; RSS %+.1f MB\n", accepted / 6,
           accepted / 1048576.0, want / 6, ((double)rss1 - (double)rss0) / 1048576.0);
    assert_true(accepted < (16u << 20));
    at_test_ws_close(&a);
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "ok", 2, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

/* Sessions whose clients stop reading (max_ws_sessions is 2 here) give
 * their slots back: a connection whose socket takes nothing for
 * idle_timeout_s (3 s) is closed, as for HTTP (read from libwebsockets
 * 4.1's source: while its own copy of a partial write waits for the
 * socket it asks for no writable callback, so a session that gave up on
 * sending would keep its slot for as long as the keepalive allows). */
static void websocket_clients_that_stop_reading_give_their_slots_back(void **state)
{
    (void)state;
    at_test_ws stuck[2];
    unsigned char frame[16006];
    frame16000(frame);
    for (int k = 0; k < 2; k++) { /* until the server stops taking them: its echoes fill our socket */
        assert_int_equal(at_test_ws_connect(&stuck[k], fx.port, "/ws", NULL), 0);
        flood(stuck[k].fd, frame, sizeof frame, SIZE_MAX);
    }
    at_test_ws a;
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) { /* 20 s at most */
        at_test_resp refused;
        rc = at_test_ws_connect(&a, fx.port, "/ws", &refused);
        if (rc == 503) at_test_resp_free(&refused);
        if (rc != 0) usleep(200000);
    }
    if (rc != 0) fail_msg("no WebSocket slot came back in 20 s (%d)", rc);
    assert_int_equal(at_test_ws_send(&a, 1, "bye", 3), 0);
    at_test_ws_close(&a);
    for (int k = 0; k < 2; k++) at_test_ws_close(&stuck[k]);
}

static void stop_drains_and_returns(void **state)
{
    (void)state;
    /* A request in flight when the server stops still gets its answer. */
    at_test_resp r;
    assert_int_equal(at_test_http(fx.port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    fx.release = 0;
    slow_call call = {fx.port, 0};
    pthread_t th;
    pthread_create(&th, NULL, call_slow, &call);
    pthread_mutex_lock(&fx.mu);
    while (fx.slow_running < 1) pthread_cond_wait(&fx.cv, &fx.mu);
    pthread_mutex_unlock(&fx.mu);
    at_http_server_stop(fx.srv);
    usleep(200000);
    /* new work is refused while draining, and /ready says so (load
     * balancers stop routing here) while /health stays 200 (the process
     * is alive: a liveness probe must not kill it mid-drain) */
    assert_int_equal(at_test_http(fx.port, "POST", "/echo", NULL, "x", 1, &r), 0);
    assert_int_equal(r.status, 503);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal((char *)r.body, "draining");
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(fx.port, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    release_flag(&fx.release);
    pthread_join(th, NULL);
    assert_int_equal(call.status, 200);
    pthread_join(fx.loop, NULL);
    at_http_server_free(fx.srv);
    at_metrics_free(fx.metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routing_and_bodies),
        cmocka_unit_test(worker_thread_failure_gives_503),
        cmocka_unit_test(route_body_limit),
        cmocka_unit_test(post_without_length_keeps_its_body_still),
        cmocka_unit_test(keep_alive_serves_several_requests),
        cmocka_unit_test(streamed_response_is_chunked_and_complete),
        cmocka_unit_test(client_gone_cancels_stream),
        cmocka_unit_test(inflight_limit_gives_503_with_retry_after),
        cmocka_unit_test(uploads_are_admitted_before_buffering),
        cmocka_unit_test(answered_requests_give_their_slots_back),
        cmocka_unit_test(slow_body_is_cut_off),
        cmocka_unit_test(chunked_request_bodies),
        cmocka_unit_test(chunked_upload_with_long_handler),
        cmocka_unit_test(access_control),
        cmocka_unit_test(pipelined_requests_do_not_hang_the_server),
        cmocka_unit_test(websocket_echo_limits_and_close_codes),
        cmocka_unit_test(websocket_backpressure_bounds_memory),
        cmocka_unit_test(websocket_empty_frames_are_throttled),
        cmocka_unit_test(websocket_clients_that_stop_reading_give_their_slots_back),
        cmocka_unit_test(stop_drains_and_returns),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
