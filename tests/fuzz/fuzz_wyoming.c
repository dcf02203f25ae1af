/* fuzz_wyoming - bytes a Wyoming peer sends, through the event reader
 * (src/core/wyoming.c) over a socket pair: every event read must have a
 * type and an object of data, its payload exactly its payload_length, and
 * reading must end (an error or the end of the bytes), never hang.  Each
 * event read is written back and must read back the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/http.h"
#include "core/wyoming.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes all of p to fd (the reader drains the other end). */
static void put(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w <= 0) abort();
        b += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 60000) return 0; /* the socket buffer holds it all */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    put(sv[0], data, size);
    shutdown(sv[0], SHUT_WR);
    at_wy_reader *r = at_wy_reader_new(sv[1], 64 * 1024);
    for (int i = 0; i < 1000; i++) {
        at_wy_event ev;
        at_err err;
        int rc = at_wy_read(r, &ev, 2000, &err);
        if (rc == AT_E_CANCELLED) abort(); /* all bytes were there: a timeout is a hang */
        if (rc != 1) break;
        if (!ev.type[0] || !cJSON_IsObject(ev.data) || (ev.payload_len && !ev.payload)) abort();
        /* round trip through the writer */
        int rt[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, rt) != 0) abort();
        setsockopt(rt[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        setsockopt(rt[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        if (at_wy_write(rt[0], ev.type, ev.data, ev.payload, ev.payload_len, 2000, &err) != 0) abort();
        at_wy_reader *r2 = at_wy_reader_new(rt[1], 64 * 1024);
        at_wy_event back;
        if (at_wy_read(r2, &back, 2000, &err) != 1) abort();
        /* data compared as printed: objects may repeat a key */
        char *a = at_json_print(ev.data), *b = at_json_print(back.data);
        if (!a || !b || strcmp(a, b) != 0 || strcmp(back.type, ev.type) != 0 ||
            back.payload_len != ev.payload_len ||
            (ev.payload_len && memcmp(back.payload, ev.payload, ev.payload_len) != 0))
            abort();
        free(a);
        free(b);
        at_wy_event_free(&back);
        at_wy_reader_free(r2);
        close(rt[0]);
        close(rt[1]);
        at_wy_event_free(&ev);
    }
    at_wy_reader_free(r);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
