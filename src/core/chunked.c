/* chunked.c - HTTP/1.1 chunked transfer coding, decoding side.
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 *
 * Bare LF is accepted where CRLF is expected (as most servers do); every
 * line (size + extensions, each trailer) is bounded so a client cannot
 * make the server read an endless line. */
#include "core/chunked.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LINE_MAX_BYTES     4096 /* chunk-size line with its extensions */
#define TRAILERS_MAX_BYTES 8192 /* the whole trailer section */

typedef enum {
    S_SIZE,    /* hex digits of the chunk size */
    S_EXT,     /* ";ext" up to the end of the size line */
    S_DATA,    /* chunk payload */
    S_DATA_CR, /* CRLF after the payload */
    S_DATA_LF, /* LF after that CR */
    S_TRAILER, /* trailer lines after the last chunk, ending at an empty one */
    S_DONE,
    S_FAILED
} state;

struct at_chunked {
    state st;
    size_t limit, total;
    uint64_t size;   /* current chunk size (S_SIZE/S_EXT) or bytes left (S_DATA) */
    int digits;      /* hex digits read for the current size */
    size_t line;     /* bytes on the current size or trailer line */
    size_t trailers; /* bytes of the trailer section so far */
    int result;      /* what to return once S_DONE or S_FAILED */
    at_err failure;
};

at_chunked *at_chunked_new(size_t limit)
{
    at_chunked *c = calloc(1, sizeof *c);
    if (c) c->limit = limit;
    return c;
}

void at_chunked_free(at_chunked *c) { free(c); }

size_t at_chunked_total(const at_chunked *c) { return c->total; }

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int fail(at_chunked *c, int code, const char *msg, at_err *err)
{
    c->st = S_FAILED;
    c->result = code;
    at_err_set(&c->failure, code, "%s", msg);
    if (err) *err = c->failure;
    return code;
}

/* The size line ended: either a data chunk follows or the trailers. */
static int end_of_size_line(at_chunked *c, at_err *err)
{
    if (c->digits == 0) return fail(c, AT_E_INVALID, "chunked body: a chunk size is missing", err);
    c->line = 0;
    if (c->size == 0) {
        c->st = S_TRAILER;
        return 0;
    }
    if (c->size > c->limit - c->total) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", c->limit);
        return fail(c, AT_E_TOO_LARGE, msg, err);
    }
    c->st = S_DATA;
    return 0;
}

int at_chunked_feed(at_chunked *c, const unsigned char *in, size_t len, size_t *used, at_chunked_sink sink,
                    void *user, at_err *err)
{
    size_t i = 0;
    *used = 0;
    if (c->st == S_FAILED) {
        if (err) *err = c->failure;
        return c->result;
    }
    if (c->st == S_DONE) return 1;
    while (i < len) {
        int ch = in[i];
        switch (c->st) {
        case S_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                /* 15 hex digits are far beyond any limit; more is hostile */
                if (++c->digits > 15) return fail(c, AT_E_INVALID, "chunked body: chunk size too long", err);
                c->size = c->size * 16 + (uint64_t)v;
                i++;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->st = S_EXT;
            } else if (ch == '\r') {
                i++;
                c->st = S_EXT;
            } else if (ch == '\n') {
                i++;
                int rc = end_of_size_line(c, err);
                if (rc) return rc;
            } else {
                return fail(c, AT_E_INVALID, "chunked body: a chunk size must be hexadecimal", err);
            }
            break;
        }
        case S_EXT:
            i++;
            if (ch == '\n') {
                int rc = end_of_size_line(c, err);
                if (rc) return rc;
            } else if (++c->line > LINE_MAX_BYTES) {
                return fail(c, AT_E_INVALID, "chunked body: chunk extension too long", err);
            }
            break;
        case S_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->size) n = (size_t)c->size;
            if (sink) {
                at_err serr;
                at_err_clear(&serr);
                int rc = sink(user, in + i, n, &serr);
                if (rc < 0) {
                    c->st = S_FAILED;
                    c->result = rc;
                    c->failure = serr;
                    if (err) *err = serr;
                    *used = i;
                    return rc;
                }
            }
            i += n;
            c->total += n;
            c->size -= n;
            if (c->size == 0) c->st = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            i++;
            if (ch == '\r') {
                c->st = S_DATA_LF;
                break;
            }
            if (ch != '\n')
                return fail(c, AT_E_INVALID, "chunked body: a chunk is longer than its size", err);
            c->st = S_SIZE;
            c->size = 0;
            c->digits = 0;
            c->line = 0;
            break;
        case S_DATA_LF:
            i++;
            if (ch != '\n') return fail(c, AT_E_INVALID, "chunked body: CR without LF after a chunk", err);
            c->st = S_SIZE;
            c->size = 0;
            c->digits = 0;
            c->line = 0;
            break;
        case S_TRAILER:
            i++;
            if (++c->trailers > TRAILERS_MAX_BYTES)
                return fail(c, AT_E_INVALID, "chunked body: trailer section too long", err);
            if (ch == '\n') {
                if (c->line == 0) {
                    c->st = S_DONE;
                    *used = i;
                    return 1;
                }
                c->line = 0;
            } else if (ch != '\r' || c->line > 0) {
                c->line++;
            }
            break;
        case S_DONE:
        case S_FAILED: break;
        }
    }
    *used = i;
    return 0;
}
