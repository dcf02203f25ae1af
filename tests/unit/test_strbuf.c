/* test_strbuf.c - the growable string buffer (src/core/strbuf.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

/* Many small appends force repeated growth; the content must match a
 * reference built by hand, and stay NUL-terminated throughout. */
static void test_put_str_growth(void **st)
{
    (void)st;
    at_strbuf b = {0};
    size_t want_n = 0;
    char *want = malloc(5 * 4000 + 1);
    assert_non_null(want);
    for (int i = 0; i < 4000; i++) {
        const char *piece = (i % 2) ? "ab" : "cde";
        if (i % 3)
            at_strbuf_str(&b, piece);
        else
            at_strbuf_put(&b, piece, strlen(piece));
        memcpy(want + want_n, piece, strlen(piece));
        want_n += strlen(piece);
        assert_int_equal(b.n, want_n);
        assert_true(b.cap > b.n);
        assert_int_equal(b.p[b.n], '\0');
    }
    want[want_n] = '\0';
    assert_false(b.oom);
    assert_string_equal(b.p, want);
    /* A partial put copies exactly n bytes. */
    at_strbuf_put(&b, "xyz", 1);
    assert_int_equal(b.n, want_n + 1);
    assert_string_equal(b.p + want_n, "x");
    at_strbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.cap, 0);
    free(want);
}

static void test_printf_growth(void **st)
{
    (void)st;
    at_strbuf b = {0};
    char want[32];
    size_t off = 0;
    for (int i = 0; i < 3000; i++) at_strbuf_printf(&b, "%d,", i);
    assert_false(b.oom);
    for (int i = 0; i < 3000; i++) {
        int k = snprintf(want, sizeof want, "%d,", i);
        assert_memory_equal(b.p + off, want, (size_t)k);
        off += (size_t)k;
    }
    assert_int_equal(b.n, off);
    assert_int_equal(strlen(b.p), off);
    /* An empty format appends nothing but keeps the string valid. */
    at_strbuf_printf(&b, "%s", "");
    assert_int_equal(b.n, off);
    at_strbuf_free(&b);
}

/* One printf whose output alone is larger than the first allocation, in
 * the middle of other text. */
static void test_printf_long(void **st)
{
    (void)st;
    size_t big = 5000;
    char *s = malloc(big + 1);
    assert_non_null(s);
    for (size_t i = 0; i < big; i++) s[i] = (char)('a' + i % 26);
    s[big] = '\0';

    at_strbuf b = {0};
    at_strbuf_str(&b, "<");
    at_strbuf_printf(&b, "[%s|%5d|%-4s]", s, 42, "x");
    at_strbuf_put(&b, ">", 1);
    assert_false(b.oom);
    assert_int_equal(b.n, 1 + 1 + big + 1 + 5 + 1 + 4 + 1 + 1);
    assert_int_equal(b.p[0], '<');
    assert_int_equal(b.p[1], '[');
    assert_memory_equal(b.p + 2, s, big);
    assert_string_equal(b.p + 2 + big, "|   42|x   ]>");

    /* First append to an empty buffer, also larger than the first block. */
    at_strbuf c = {0};
    at_strbuf_printf(&c, "%s%s", s, s);
    assert_int_equal(c.n, 2 * big);
    assert_memory_equal(c.p, s, big);
    assert_memory_equal(c.p + big, s, big);
    assert_int_equal(c.p[2 * big], '\0');

    at_strbuf_free(&b);
    at_strbuf_free(&c);
    free(s);
}

static void test_take_free(void **st)
{
    (void)st;
    at_strbuf b = {0};
    at_strbuf_str(&b, "hello ");
    at_strbuf_printf(&b, "%s %d", "world", 7);
    char *s = at_strbuf_take(&b);
    assert_string_equal(s, "hello world 7");
    /* take leaves the buffer empty and reusable. */
    assert_null(b.p);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.cap, 0);
    at_strbuf_str(&b, "again");
    char *t = at_strbuf_take(&b);
    assert_string_equal(t, "again");
    free(s);
    free(t);

    /* Nothing appended: take gives "" (not NULL); free is a no-op. */
    at_strbuf e = {0};
    char *u = at_strbuf_take(&e);
    assert_non_null(u);
    assert_string_equal(u, "");
    free(u);
    at_strbuf_free(&e);
    at_strbuf_free(&e);
}

/* An allocation failure is sticky: later appends do nothing and take
 * frees the partial text and returns NULL.  A size that cannot be
 * allocated stands in for a failing malloc. */
static void test_oom_sticky(void **st)
{
    (void)st;
    at_strbuf b = {0};
    at_strbuf_str(&b, "partial");
    at_strbuf_put(&b, "x", SIZE_MAX); /* too large: sets oom, reads nothing */
    assert_true(b.oom);
    assert_int_equal(b.n, 7);
    at_strbuf_str(&b, "more");
    at_strbuf_printf(&b, "%d", 1);
    assert_int_equal(b.n, 7);
    assert_string_equal(b.p, "partial");
    assert_null(at_strbuf_take(&b));
    assert_null(b.p);
    assert_false(b.oom);

    at_strbuf e = {0};
    e.oom = 1;
    assert_null(at_strbuf_take(&e));
}

/* Invalid bytes become U+FFFD; valid multi-byte characters pass whole;
 * overlong forms, surrogates and cut sequences are invalid. */
static void test_utf8(void **st)
{
    (void)st;
    at_strbuf b = {0};
    const char in[] = "a\xc3\xa9\xff\xe2\x82\xac\xc0\xaf\xed\xa0\x80\xf0\x9f\x98\x80\xe2\x82";
    at_strbuf_utf8(&b, in, sizeof in - 1);
    char *s = at_strbuf_take(&b);
    const char *R = "\xEF\xBF\xBD";
    char want[128];
    snprintf(want, sizeof want, "a\xc3\xa9%s\xe2\x82\xac%s%s%s%s%s\xf0\x9f\x98\x80%s%s", R, R, R, R, R, R, R,
             R);
    assert_string_equal(s, want);
    free(s);
    assert_int_equal(at_utf8_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0); /* past U+10FFFF */
    assert_int_equal(at_utf8_len((const unsigned char *)"\xe2\x82\xac", 2), 0);     /* cut short */
    assert_int_equal(at_utf8_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),          cmocka_unit_test(test_put_str_growth),
        cmocka_unit_test(test_printf_growth), cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_take_free),     cmocka_unit_test(test_oom_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
