/* test_mt_router.c - several translation engines as one (router.h): the
 * first engine with a pair serves it, a pair none has goes through
 * English, the route is named; and the neural engine's sentence splitter
 * (neural.h), whose spans decide what the models see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engines/mt/neural.h"
#include "engines/mt/router.h"

/* A fake engine: "[name:src>tgt text]", over a fixed pair list. */
typedef struct fake {
    const char *name;
    at_mt_pair pairs[8];
    size_t n;
    int calls, batches;
} fake;

static int fk_translate(void *impl, const char *s, const char *t, const char *text, char **out, at_err *err)
{
    fake *f = impl;
    char buf[512];
    f->calls++;
    snprintf(buf, sizeof buf, "[%s:%s>%s %s]", f->name, s, t, text);
    *out = strdup(buf);
    return *out ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
}

static int fk_many(void *impl, const char *s, const char *t, const char *const *texts, int n, char **outs,
                   at_err *err)
{
    fake *f = impl;
    f->batches++;
    for (int i = 0; i < n; i++)
        if (fk_translate(impl, s, t, texts[i], &outs[i], err)) return -1;
    return 0;
}

static const at_mt_pair *fk_pairs(void *impl, size_t *n)
{
    fake *f = impl;
    *n = f->n;
    return f->pairs;
}

static void fk_destroy(void *impl) { (void)impl; }

static const at_mt_ops batch_ops = {.name = "batch",
                                    .destroy = fk_destroy,
                                    .translate = fk_translate,
                                    .pairs = fk_pairs,
                                    .translate_many = fk_many};
static const at_mt_ops plain_ops = {
    .name = "plain", .destroy = fk_destroy, .translate = fk_translate, .pairs = fk_pairs};

static void test_routes(void **state)
{
    (void)state;
    /* "nmt" has en<->es and de->en; "rules" has en->es too (second
     * choice), es->ca and en->fr */
    fake a = {"nmt", {{"en", "es"}, {"es", "en"}, {"de", "en"}}, 3, 0, 0};
    fake b = {"rules", {{"en", "es"}, {"es", "ca"}, {"en", "fr"}}, 3, 0, 0};
    at_err err = {0};
    at_mt_engine *e[2] = {at_mt_engine_new(&batch_ops, &a, &err), at_mt_engine_new(&plain_ops, &b, &err)};
    at_mt_engine *r = at_mt_router_new(e, 2, &err);
    assert_non_null(r);
    assert_string_equal(at_mt_engine_name(r), "batch+plain");

    /* direct pairs, then de->es, de->fr, es->fr through English (not
     * es->es, and not de->ca: nothing goes ca-wards from English) */
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(r, &n);
    static const char *const want[][2] = {{"de", "en"}, {"de", "es"}, {"de", "fr"}, {"en", "es"},
                                          {"en", "fr"}, {"es", "ca"}, {"es", "en"}, {"es", "fr"}};
    assert_int_equal(n, sizeof want / sizeof *want);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(p[i].source, want[i][0]);
        assert_string_equal(p[i].target, want[i][1]);
    }

    char *out = NULL, via[128];
    assert_int_equal(at_mt_translate(r, "en", "es", "hi", &out, &err), 0);
    assert_string_equal(out, "[nmt:en>es hi]"); /* the first engine wins */
    free(out);
    assert_string_equal(at_mt_route(r, "en", "es", via, sizeof via), "batch");
    assert_int_equal(at_mt_translate(r, "es", "ca", "hola", &out, &err), 0);
    assert_string_equal(out, "[rules:es>ca hola]");
    free(out);
    assert_int_equal(at_mt_translate(r, "de", "fr", "hallo", &out, &err), 0);
    assert_string_equal(out, "[rules:en>fr [nmt:de>en hallo]]");
    free(out);
    assert_string_equal(at_mt_route(r, "de", "fr", via, sizeof via), "batch + plain via en");

    /* many texts: one batch call on the engine that has it */
    const char *texts[3] = {"a", "b", "c"};
    char *outs[3];
    a.batches = 0;
    assert_int_equal(at_mt_translate_many(r, "de", "es", texts, 3, outs, &err), 0);
    assert_int_equal(a.batches, 2); /* de->en, then en->es */
    assert_string_equal(outs[2], "[nmt:en>es [nmt:de>en c]]");
    for (int i = 0; i < 3; i++) free(outs[i]);
    /* the same language: copies; empty items stay empty */
    texts[1] = "";
    assert_int_equal(at_mt_translate_many(r, "es", "es", texts, 3, outs, &err), 0);
    assert_string_equal(outs[0], "a");
    assert_string_equal(outs[1], "");
    for (int i = 0; i < 3; i++) free(outs[i]);

    /* a pair nothing reaches: a clear error naming the pair */
    assert_int_not_equal(at_mt_translate(r, "ca", "de", "x", &out, &err), 0);
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "ca-de"));
    assert_null(out);
    at_mt_engine_free(r);
}

static void expect_split(const char *text, size_t max, const char *const *want)
{
    at_mt_span sp[16];
    size_t n = at_mt_split_sentences(text, max, sp, 16), k = 0;
    while (want[k]) k++;
    if (n != k) fail_msg("\"%s\": %zu sentences, expected %zu", text, n, k);
    for (size_t i = 0; i < n; i++) {
        size_t len = sp[i].end - sp[i].start;
        if (len != strlen(want[i]) || memcmp(text + sp[i].start, want[i], len))
            fail_msg("\"%s\" sentence %zu: \"%.*s\", expected \"%s\"", text, i, (int)len, text + sp[i].start,
                     want[i]);
    }
}

static void test_sentences(void **state)
{
    (void)state;
    expect_split("Hello there. How are you?  Fine!", 400,
                 (const char *const[]){"Hello there.", "How are you?", "Fine!", NULL});
    /* closing quotes stay with their sentence; 3.5 is not an end */
    expect_split("He said \"stop.\" Then 3.5 left.", 400,
                 (const char *const[]){"He said \"stop.\"", "Then 3.5 left.", NULL});
    /* line breaks end sentences; blank lines are separators */
    expect_split("  line one\n\nline two  ", 400, (const char *const[]){"line one", "line two", NULL});
    /* CJK marks need no space after them; the ellipsis ends one too */
    expect_split(
        "\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82\xe5\x86\x8d\xe8\xa7\x81\xef\xbc\x81 Wait\xe2\x80\xa6 ok", 400,
        (const char *const[]){"\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80\x82", "\xe5\x86\x8d\xe8\xa7\x81\xef\xbc\x81",
                              "Wait\xe2\x80\xa6", "ok", NULL});
    /* a long sentence is cut at its last space before the limit */
    expect_split("aaaa bbbb cccc dddd", 12, (const char *const[]){"aaaa bbbb", "cccc dddd", NULL});
    /* no space: cut on a UTF-8 boundary (é is two bytes) */
    expect_split("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 9,
                 (const char *const[]){"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9", NULL});
    expect_split(" \n\t ", 400, (const char *const[]){NULL});
    /* the count is returned when there is no room */
    assert_int_equal(at_mt_split_sentences("A. B. C.", 400, NULL, 0), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_routes), cmocka_unit_test(test_sentences)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
