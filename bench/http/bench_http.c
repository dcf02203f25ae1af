/* bench_http - requests per second of GET /health on the real server
 * (one event loop) under concurrent keep-alive clients.  Prints figures.
 *
 * Usage: bench_http [CLIENTS] [SECONDS]   (default 8 clients, 5 s) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "services/app.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct client {
    int port;
    double until;
    long done, failed;
    double worst;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)c->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        c->failed++;
        return NULL;
    }
    static const char req[] = "GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
    char buf[4096];
    while (now_s() < c->until) {
        double t0 = now_s();
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
            c->failed++;
            break;
        }
        /* The body is 15 bytes after a header block; read until it is in. */
        size_t got = 0;
        int ok = 0;
        while (got < sizeof buf - 1) {
            ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0) break;
            got += (size_t)n;
            buf[got] = '\0';
            char *h = strstr(buf, "\r\n\r\n");
            if (h && strstr(h, "}")) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            c->failed++;
            break;
        }
        double dt = now_s() - t0;
        if (dt > c->worst) c->worst = dt;
        c->done++;
    }
    close(fd);
    return NULL;
}

static void *loop_main(void *srv)
{
    at_http_server_run(srv);
    return NULL;
}

int main(int argc, char **argv)
{
    int clients = argc > 1 ? atoi(argv[1]) : 8;
    double seconds = argc > 2 ? atof(argv[2]) : 5;
    if (clients < 1 || clients > 1024) clients = 8;
    at_err err;
    at_err_clear(&err);
    at_app_config ac;
    at_app_config_defaults(&ac);
    ac.kinds = 0; /* /health needs no engines */
    at_app *app = at_app_new(&ac, NULL, NULL, &err);
    at_http_config hc;
    at_http_config_defaults(&hc);
    at_http_server *srv = at_http_server_new(&hc, &err);
    int port = 0;
    if (!app || !srv || at_translate_service_listen(app, srv, "127.0.0.1", 0, &port, &err)) {
        fprintf(stderr, "bench_http: %s\n", err.msg);
        return 1;
    }
    pthread_t loop;
    pthread_create(&loop, NULL, loop_main, srv);
    client *c = calloc((size_t)clients, sizeof *c);
    pthread_t *th = calloc((size_t)clients, sizeof *th);
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        c[i].port = port;
        c[i].until = t0 + seconds;
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    long done = 0, failed = 0;
    double worst = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        done += c[i].done;
        failed += c[i].failed;
        if (c[i].worst > worst) worst = c[i].worst;
    }
    double dt = now_s() - t0;
    printf("http GET /health: %d keep-alive clients, %.1f s: %.0f requests/s, "
           "%ld failed, worst latency %.2f ms\n",
           clients, dt, done / dt, failed, worst * 1000);
    at_http_server_stop(srv);
    pthread_join(loop, NULL);
    at_http_server_free(srv);
    at_app_free(app);
    free(c);
    free(th);
    return 0;
}
