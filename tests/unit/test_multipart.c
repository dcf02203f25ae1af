/* test_multipart.c - multipart/form-data parsing (src/core/multipart.c).
 *
 * Includes a mutation loop: under ASan any read outside the body buffer
 * (each body is copied into an exactly-sized heap block) aborts the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/multipart.h"

#define CT "multipart/form-data; boundary=XyZ123"

typedef struct body {
    unsigned char *p;
    size_t n, cap;
} body;

static void put(body *b, const void *s, size_t n)
{
    if (n == 0) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void puts_(body *b, const char *s) { put(b, s, strlen(s)); }

/* Exactly-sized heap copy so ASan sees a read one past the end. */
static unsigned char *exact(const body *b)
{
    unsigned char *p = malloc(b->n ? b->n : 1);
    if (b->n) memcpy(p, b->p, b->n);
    return p;
}

static int parse(const char *ct, const body *b, at_form *f, at_err *e)
{
    unsigned char *p = exact(b);
    at_err_clear(e);
    int rc = at_multipart_parse(ct, p, b->n, f, e);
    /* parts point into p; callers only check metadata after free, so
     * copy what the tests compare first */
    if (rc == 0) {
        for (size_t i = 0; i < f->n; i++)
            f->parts[i].data = f->parts[i].data ? b->p + (f->parts[i].data - p) : NULL;
    }
    free(p);
    return rc;
}

static void test_simple_form(void **st)
{
    (void)st;
    body b = {0};
    puts_(&b, "--XyZ123\r\n"
              "Content-Disposition: form-data; name=\"model\"\r\n"
              "\r\n"
              "whisper-1\r\n"
              "--XyZ123\r\n"
              "content-disposition: form-data; name=\"language\"\r\n"
              "\r\n"
              "es\r\n"
              "--XyZ123--\r\n");
    at_form f;
    at_err e;
    assert_int_equal(parse(CT, &b, &f, &e), 0);
    assert_int_equal(f.n, 2);
    char buf[32];
    assert_int_equal(at_form_text(&f, "model", buf, sizeof buf, &e), 1);
    assert_string_equal(buf, "whisper-1");
    assert_int_equal(at_form_text(&f, "language", buf, sizeof buf, &e), 1);
    assert_string_equal(buf, "es");
    assert_int_equal(at_form_text(&f, "absent", buf, sizeof buf, &e), 0);
    assert_int_equal(at_form_text(&f, "model", buf, 9, &e), AT_E_INVALID); /* needs 10 */
    assert_int_equal(at_form_text(&f, "model", buf, 10, &e), 1);
    assert_null(at_form_get(&f, "nope"));
    assert_string_equal(at_form_get(&f, "model")->filename, "");
    assert_string_equal(at_form_get(&f, "model")->content_type, "");
    free(b.p);
}

static void test_binary_file(void **st)
{
    (void)st;
    /* payload full of CR, LF, "--", and prefixes of the delimiter */
    unsigned char payload[4096];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (unsigned char)(i * 131 + 7);
    const char *tricky[] = {"\r\n", "\r\n--", "\r\n--XyZ12", "--XyZ123", "\n--XyZ123", "\r", "\r\n\r\n"};
    size_t off = 100;
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        memcpy(payload + off, tricky[i], strlen(tricky[i]));
        off += 300;
    }
    payload[sizeof payload - 1] = '\r'; /* ends in CR right before the delimiter */
    body b = {0};
    puts_(&b, "preamble to be ignored\r\n--XyZ123\r\n"
              "Content-Disposition: form-data; name=\"file\"; filename=\"a b\\\"c\\\\.wav\"\r\n"
              "Content-Type: audio/wav\r\n"
              "X-Ignored: yes\r\n"
              "\r\n");
    put(&b, payload, sizeof payload);
    puts_(&b, "\r\n--XyZ123\r\n"
              "Content-Disposition: form-data; name=\"empty\"\r\n"
              "\r\n"
              "\r\n--XyZ123--");
    at_form f;
    at_err e;
    int rc = parse(CT, &b, &f, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(f.n, 2);
    const at_part *p = at_form_get(&f, "file");
    assert_non_null(p);
    assert_string_equal(p->filename, "a b\"c\\.wav");
    assert_string_equal(p->content_type, "audio/wav");
    assert_int_equal(p->len, sizeof payload);
    assert_memory_equal(p->data, payload, sizeof payload);
    assert_int_equal(at_form_get(&f, "empty")->len, 0);
    free(b.p);
}

static void test_content_types(void **st)
{
    (void)st;
    body b = {0};
    puts_(&b, "--a:b=c\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--a:b=c--\r\n");
    at_form f;
    at_err e;
    assert_int_equal(parse("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a:b=c\"", &b, &f, &e), 0);
    assert_int_equal(f.n, 1);
    assert_string_equal(f.parts[0].name, "x");
    free(b.p);
    b = (body){0};
    puts_(&b, "--simple\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nv\r\n--simple--");
    assert_int_equal(parse("multipart/form-data;boundary=simple", &b, &f, &e), 0);
    assert_int_equal(parse("multipart/form-data; boundary=\"simple\"", &b, &f, &e), 0);
    assert_int_equal(parse("multipart/form-data; boundary=simple ; foo=bar", &b, &f, &e), 0);
    /* no / bad boundary */
    assert_int_equal(parse("multipart/form-data", &b, &f, &e), AT_E_INVALID);
    assert_non_null(strstr(e.msg, "boundary"));
    assert_int_equal(parse("multipart/form-data; boundary=", &b, &f, &e), AT_E_INVALID);
    assert_int_equal(parse("multipart/form-data; boundary=\"unterminated", &b, &f, &e), AT_E_INVALID);
    assert_int_equal(parse("multipart/form-datax; boundary=simple", &b, &f, &e), AT_E_INVALID);
    assert_int_equal(parse("application/json", &b, &f, &e), AT_E_INVALID);
    assert_int_equal(parse(NULL, &b, &f, &e), AT_E_INVALID);
    char longct[200];
    snprintf(longct, sizeof longct, "multipart/form-data; boundary=%071d", 0);
    assert_int_equal(parse(longct, &b, &f, &e), AT_E_INVALID);
    snprintf(longct, sizeof longct, "multipart/form-data; boundary=%070d", 0);
    body b70 = {0};
    char line[256];
    snprintf(line, sizeof line, "--%070d\r\nContent-Disposition: form-data; name=a\r\n\r\nz\r\n--%070d--", 0,
             0);
    puts_(&b70, line);
    assert_int_equal(parse(longct, &b70, &f, &e), 0);
    free(b70.p);
    free(b.p);
}

static void expect_invalid(const char *text, const char *msg_part)
{
    body b = {0};
    puts_(&b, text);
    at_form f;
    at_err e;
    int rc = parse(CT, &b, &f, &e);
    if (rc != AT_E_INVALID) fail_msg("accepted: %s", text);
    if (msg_part && !strstr(e.msg, msg_part)) fail_msg("message '%s' lacks '%s'", e.msg, msg_part);
    free(b.p);
}

static void test_malformed(void **st)
{
    (void)st;
    expect_invalid("", "empty");
    expect_invalid("no boundary anywhere", "boundary");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata", "closing boundary");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata\r\n--XyZ12",
                   "closing boundary");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n", "blank line");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name=\"a\"\r\n--XyZ123--", "header");
    expect_invalid("--XyZ123\r\n\r\nno headers\r\n--XyZ123--", "Content-Disposition");
    expect_invalid("--XyZ123\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ123--",
                   "form-data");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ123--", "name");
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ123--", NULL);
    expect_invalid("--XyZ123\r\nContent-Disposition: form-data; name\r\n\r\nx\r\n--XyZ123--", NULL);
    expect_invalid("--XyZ123garbage\r\n", "boundary line");
    expect_invalid("--XyZ123\r\nno colon here\r\n\r\nx\r\n--XyZ123--", "header");
    char big[600];
    snprintf(big, sizeof big,
             "--XyZ123\r\nContent-Disposition: form-data; name=\"%0200d\"\r\n\r\nx\r\n--XyZ123--", 0);
    expect_invalid(big, "name too long");
    snprintf(big, sizeof big,
             "--XyZ123\r\nContent-Disposition: form-data; name=a; filename=\"%0300d\"\r\n\r\nx\r\n--XyZ123--",
             0);
    expect_invalid(big, "too long");
    snprintf(
        big, sizeof big,
        "--XyZ123\r\nContent-Disposition: form-data; name=a\r\nContent-Type: %0200d\r\n\r\nx\r\n--XyZ123--",
        0);
    expect_invalid(big, "too long");
}

static void test_too_many_parts(void **st)
{
    (void)st;
    for (int n = AT_MULTIPART_MAX_PARTS; n <= AT_MULTIPART_MAX_PARTS + 1; n++) {
        body b = {0};
        for (int i = 0; i < n; i++) {
            char part[128];
            snprintf(part, sizeof part,
                     "--XyZ123\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\n%d\r\n", i, i);
            puts_(&b, part);
        }
        puts_(&b, "--XyZ123--\r\n");
        at_form f;
        at_err e;
        int rc = parse(CT, &b, &f, &e);
        if (n == AT_MULTIPART_MAX_PARTS) {
            assert_int_equal(rc, 0);
            assert_int_equal(f.n, AT_MULTIPART_MAX_PARTS);
            char buf[8];
            assert_int_equal(at_form_text(&f, "f31", buf, sizeof buf, &e), 1);
            assert_string_equal(buf, "31");
        } else {
            assert_int_equal(rc, AT_E_INVALID);
            assert_non_null(strstr(e.msg, "too many parts"));
        }
        free(b.p);
    }
}

static void test_lenient_bits(void **st)
{
    (void)st;
    /* LF-only header lines, transport padding after the boundary, an
     * epilogue, and a duplicate name (first one wins in at_form_get) */
    body b = {0};
    puts_(&b, "--XyZ123  \n"
              "Content-Disposition: form-data; name=\"a\"; filename=C:\\dir\\x.wav\n"
              "\n"
              "one\r\n"
              "--XyZ123\r\n"
              "Content-Disposition: form-data; name=\"a\"\r\n"
              "\r\n"
              "two\r\n"
              "--XyZ123--epilogue");
    at_form f;
    at_err e;
    int rc = parse(CT, &b, &f, &e);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(f.n, 2);
    assert_string_equal(at_form_get(&f, "a")->filename, "C:\\dir\\x.wav");
    char buf[8];
    assert_int_equal(at_form_text(&f, "a", buf, sizeof buf, &e), 1);
    assert_string_equal(buf, "one");
    free(b.p);
}

static void test_mutation_fuzz(void **st)
{
    (void)st;
    body seed = {0};
    puts_(&seed, "--XyZ123\r\n"
                 "Content-Disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n"
                 "Content-Type: audio/wav\r\n\r\n"
                 "RIFF\r\n--XyZ12\r\n\r\n--\r\n"
                 "\r\n--XyZ123\r\n"
                 "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
                 "whisper\r\n--XyZ123--\r\n");
    at_form f;
    at_err e;
    assert_int_equal(parse(CT, &seed, &f, &e), 0);
    srand(12345);
    const char alphabet[] = "\r\n-\"\\;=:XyZ123 a\0";
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; iter++) {
        body b = {0};
        put(&b, seed.p, seed.n);
        int muts = 1 + rand() % 4;
        for (int m = 0; m < muts && b.n; m++) {
            size_t pos = (size_t)rand() % b.n;
            switch (rand() % 4) {
            case 0: /* replace a byte */
                b.p[pos] = (unsigned char)(rand() % 2 ? alphabet[rand() % (sizeof alphabet)] : rand());
                break;
            case 1: /* truncate */ b.n = pos; break;
            case 2: /* delete a byte */
                memmove(b.p + pos, b.p + pos + 1, b.n - pos - 1);
                b.n--;
                break;
            default: { /* duplicate a slice */
                size_t len = (size_t)rand() % 40;
                if (pos + len > b.n) len = b.n - pos;
                unsigned char tmp[40];
                memcpy(tmp, b.p + pos, len);
                put(&b, tmp, len);
                break;
            }
            }
        }
        unsigned char *p = exact(&b);
        int rc = at_multipart_parse(CT, p, b.n, &f, &e);
        if (rc == 0) {
            ok++;
            assert_true(f.n <= AT_MULTIPART_MAX_PARTS);
            for (size_t i = 0; i < f.n; i++) {
                assert_true(f.parts[i].data >= p && f.parts[i].data + f.parts[i].len <= p + b.n);
                assert_true(strlen(f.parts[i].name) < sizeof f.parts[i].name);
            }
        } else {
            bad++;
            assert_int_equal(rc, AT_E_INVALID);
            assert_true(e.msg[0] != '\0');
        }
        free(p);
        free(b.p);
    }
    print_message("  fuzz: %d accepted, %d rejected\n", ok, bad);
    free(seed.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_form),    cmocka_unit_test(test_binary_file),
        cmocka_unit_test(test_content_types),  cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_too_many_parts), cmocka_unit_test(test_lenient_bits),
        cmocka_unit_test(test_mutation_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
