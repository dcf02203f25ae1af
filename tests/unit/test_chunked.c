/* test_chunked.c - decoding chunked request bodies (src/core/chunked.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chunked.h"

typedef struct {
    char buf[4096];
    size_t n;
} sinkbuf;

static int collect(void *user, const unsigned char *d, size_t len, at_err *err)
{
    sinkbuf *b = user;
    if (b->n + len >= sizeof b->buf) return at_err_set(err, AT_E_NOMEM, "test buffer full");
    memcpy(b->buf + b->n, d, len);
    b->n += len;
    b->buf[b->n] = '\0';
    return 0;
}

/* Feeds `raw` in pieces of `step` bytes; returns the final result and how
 * many bytes the body took. */
static int feed_all(const char *raw, size_t limit, size_t step, sinkbuf *out, size_t *taken, at_err *err)
{
    at_chunked *c = at_chunked_new(limit);
    assert_non_null(c);
    size_t len = strlen(raw), off = 0;
    int rc = 0;
    *taken = 0;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used;
        rc = at_chunked_feed(c, (const unsigned char *)raw + off, n, &used, collect, out, err);
        *taken += used;
        if (rc != 0) break;
        assert_int_equal(used, n);
        off += n;
    }
    if (rc == 1) assert_int_equal(at_chunked_total(c), out->n);
    at_chunked_free(c);
    return rc;
}

/* Any split of the input gives the same payload: bytes arrive from the
 * network in whatever pieces TCP makes. */
static void test_every_split_decodes_the_same(void **st)
{
    (void)st;
    const char *raw =
        "5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\nGET /next";
    for (size_t step = 1; step <= strlen(raw); step++) {
        sinkbuf out = {0};
        size_t taken;
        at_err err;
        assert_int_equal(feed_all(raw, 1000, step, &out, &taken, &err), 1);
        assert_string_equal(out.buf, "hello 0123456789");
        /* the bytes of the next request are not the body's */
        assert_int_equal(taken, strlen(raw) - strlen("GET /next"));
    }
}

static void test_bare_lf_and_upper_case_hex(void **st)
{
    (void)st;
    sinkbuf out = {0};
    size_t taken;
    at_err err;
    char raw[64];
    snprintf(raw, sizeof raw, "B\n%s\n00\n\n", "abcdefghijk");
    assert_int_equal(feed_all(raw, 100, 3, &out, &taken, &err), 1);
    assert_string_equal(out.buf, "abcdefghijk");
}

static void test_empty_body(void **st)
{
    (void)st;
    sinkbuf out = {0};
    size_t taken;
    at_err err;
    assert_int_equal(feed_all("0\r\n\r\n", 100, 1, &out, &taken, &err), 1);
    assert_int_equal(out.n, 0);
}

/* The limit is enforced from the size line, before the data arrives. */
static void test_over_the_limit(void **st)
{
    (void)st;
    sinkbuf out = {0};
    size_t taken;
    at_err err;
    assert_int_equal(feed_all("4\r\nabcd\r\n4\r\nefgh\r\n", 6, 64, &out, &taken, &err), AT_E_TOO_LARGE);
    assert_int_equal(err.code, AT_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "limit of 6 bytes"));
    assert_string_equal(out.buf, "abcd");
    assert_int_equal(feed_all("fffffffffffffff\r\n", 1 << 20, 64, &out, &taken, &err), AT_E_TOO_LARGE);
}

static void test_malformed(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "zz\r\n",               /* not hex */
        "\r\n",                 /* no size */
        "3\r\nabcd\r\n",        /* longer than its size */
        "3\r\nabc\rX",          /* CR without LF */
        "1000000000000000\r\n", /* 16 hex digits */
        "-1\r\n",               /* a sign is not hex */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sinkbuf out = {0};
        size_t taken;
        at_err err;
        at_err_clear(&err);
        assert_int_equal(feed_all(bad[i], 1 << 20, 64, &out, &taken, &err), AT_E_INVALID);
        assert_int_equal(err.code, AT_E_INVALID);
        assert_non_null(strstr(err.msg, "chunked body"));
    }
}

/* Endless extension and trailer lines are refused, not buffered. */
static void test_bounded_lines(void **st)
{
    (void)st;
    size_t n = 20000;
    char *raw = malloc(n + 8);
    assert_non_null(raw);
    memcpy(raw, "1;", 2);
    memset(raw + 2, 'x', n);
    raw[n + 2] = '\0';
    sinkbuf out = {0};
    size_t taken;
    at_err err;
    assert_int_equal(feed_all(raw, 100, 1000, &out, &taken, &err), AT_E_INVALID);
    memcpy(raw, "0\r\nX:", 5);
    memset(raw + 5, 'y', n);
    raw[n + 5] = '\0';
    assert_int_equal(feed_all(raw, 100, 1000, &out, &taken, &err), AT_E_INVALID);
    free(raw);
}

/* A sink error stops decoding and is kept. */
static void test_sink_error(void **st)
{
    (void)st;
    at_chunked *c = at_chunked_new(1 << 20);
    sinkbuf out = {0};
    out.n = sizeof out.buf - 2; /* nearly full: the next chunk fails */
    size_t used;
    at_err err;
    const char *raw = "5\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(at_chunked_feed(c, (const unsigned char *)raw, strlen(raw), &used, collect, &out, &err),
                     AT_E_NOMEM);
    assert_string_equal(err.msg, "test buffer full");
    assert_int_equal(at_chunked_feed(c, (const unsigned char *)"x", 1, &used, collect, &out, &err),
                     AT_E_NOMEM);
    at_chunked_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_decodes_the_same),
        cmocka_unit_test(test_bare_lf_and_upper_case_hex),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_over_the_limit),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bounded_lines),
        cmocka_unit_test(test_sink_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
