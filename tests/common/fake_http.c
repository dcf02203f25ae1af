/* fake_http.c - a loopback HTTP server for tests of download code. */
#include "fake_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct at_fake_http {
    int fd;
    volatile int stop;
    at_fake_http_fn fn;
    void *user;
    pthread_t th;
};

static void serve_one(at_fake_http *s, int c)
{
    char req[4096];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t k = recv(c, req + n, sizeof req - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = '\0';
    s->fn(s->user, c, req);
}

static void *server_main(void *arg)
{
    at_fake_http *s = arg;
    while (!s->stop) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        serve_one(s, c);
        close(c);
    }
    return NULL;
}

at_fake_http *at_fake_http_start(at_fake_http_fn fn, void *user, int *port)
{
    at_fake_http *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fn = fn;
    s->user = user;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 8) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0 || pthread_create(&s->th, NULL, server_main, s)) {
        if (s->fd >= 0) close(s->fd);
        free(s);
        return NULL;
    }
    *port = ntohs(a.sin_port);
    return s;
}

void at_fake_http_stop(at_fake_http *s)
{
    if (!s) return;
    s->stop = 1;
    pthread_join(s->th, NULL);
    close(s->fd);
    free(s);
}

void at_fake_http_reply(int fd, const char *status, const char *body, size_t len)
{
    char hdr[256];
    snprintf(hdr, sizeof hdr, "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status, len);
    send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
    if (len) send(fd, body, len, MSG_NOSIGNAL);
}

long at_fake_http_range(const char *head)
{
    const char *r = strcasestr(head, "\r\nRange: bytes=");
    return r ? atol(r + 15) : -1;
}

void at_fake_http_send_file(int fd, const char *head, const unsigned char *data, size_t len, size_t cut_after,
                            int corrupt)
{
    long range = at_fake_http_range(head);
    size_t from = range > 0 ? (size_t)range : 0;
    if (from >= len && len > 0) {
        at_fake_http_reply(fd, "416 Range Not Satisfiable", "", 0);
        return;
    }
    char hdr[512];
    if (from > 0)
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                 "Content-Range: bytes %zu-%zu/%zu\r\nConnection: close\r\n\r\n",
                 len - from, from, len - 1, len);
    else
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
    send(fd, hdr, strlen(hdr), MSG_NOSIGNAL);
    size_t end = cut_after ? from + cut_after : len;
    if (end > len) end = len;
    for (size_t off = from; off < end;) {
        unsigned char chunk[65536];
        size_t k = end - off < sizeof chunk ? end - off : sizeof chunk;
        memcpy(chunk, data + off, k);
        if (corrupt && off <= len / 2 && len / 2 < off + k) chunk[len / 2 - off] ^= 0x55;
        ssize_t w = send(fd, chunk, k, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
}
