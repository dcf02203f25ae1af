/* test_access.c - API keys, rate limits and CORS origins
 * (src/core/access.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/access.h"

static const char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/at_keys_%d.txt", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_keys_file(void **st)
{
    (void)st;
    at_access_config c = {0};
    c.keys_file = write_file("# the team's keys\n  alpha-key-1234  \n\nbeta-key-5678 # ops\n");
    at_err err;
    at_access *a = at_access_new(&c, &err);
    assert_non_null(a);
    assert_true(at_access_keys_required(a));
    assert_true(at_access_key_valid(a, "alpha-key-1234"));
    assert_true(at_access_key_valid(a, "beta-key-5678"));
    assert_false(at_access_key_valid(a, "alpha-key-123"));   /* a prefix */
    assert_false(at_access_key_valid(a, "alpha-key-12345")); /* longer */
    assert_false(at_access_key_valid(a, ""));
    assert_false(at_access_key_valid(a, NULL));
    /* open paths */
    assert_false(at_access_path_guarded(a, "/health"));
    assert_false(at_access_path_guarded(a, "/ready"));
    assert_false(at_access_path_guarded(a, "/metrics"));
    assert_true(at_access_path_guarded(a, "/v1/audio/speech"));
    at_access_free(a);
    unlink(c.keys_file);
}

/* A typo in the file must not leave the service open to everyone. */
static void test_bad_keys_files(void **st)
{
    (void)st;
    static const char *const bad[] = {"", "# only a comment\n", "short\n", "two words here\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        at_access_config c = {0};
        c.keys_file = write_file(bad[i]);
        at_err err;
        assert_null(at_access_new(&c, &err));
        assert_int_equal(err.code, AT_E_INVALID);
        unlink(c.keys_file);
    }
    at_access_config c = {0};
    c.keys_file = "/nonexistent/keys";
    at_err err;
    assert_null(at_access_new(&c, &err));
    assert_int_equal(err.code, AT_E_IO);
    /* no file: nothing needs a key */
    at_access_config open = {0};
    at_access *a = at_access_new(&open, &err);
    assert_false(at_access_keys_required(a));
    assert_false(at_access_path_guarded(a, "/v1/audio/speech"));
    at_access_free(a);
}

static void test_rate_limits(void **st)
{
    (void)st;
    at_access_config c = {0};
    c.key_per_min = 3;
    c.addr_per_min = 5;
    at_err err;
    at_access *a = at_access_new(&c, &err);
    const char *which = NULL;
    for (int i = 0; i < 3; i++) assert_int_equal(at_access_take(a, "k1", "10.0.0.1", &which), 0);
    /* the key's bucket is empty: about 20 s until the next token */
    int wait = at_access_take(a, "k1", "10.0.0.1", &which);
    assert_in_range(wait, 19, 20);
    assert_string_equal(which, "key");
    /* another key from the same address: 2 left of the address's 5 (a
     * refused request cost nothing) */
    assert_int_equal(at_access_take(a, "k2", "10.0.0.1", &which), 0);
    assert_int_equal(at_access_take(a, "k2", "10.0.0.1", &which), 0);
    wait = at_access_take(a, "k2", "10.0.0.1", &which);
    assert_in_range(wait, 1, 12);
    assert_string_equal(which, "address");
    /* other addresses are not affected */
    assert_int_equal(at_access_take(a, NULL, "10.0.0.2", &which), 0);
    at_access_free(a);
}

/* A flood of distinct addresses reuses the fixed table: no memory grows,
 * and a caller seen recently keeps its bucket. */
static void test_bucket_table_is_bounded(void **st)
{
    (void)st;
    at_access_config c = {0};
    c.addr_per_min = 2;
    at_err err;
    at_access *a = at_access_new(&c, &err);
    const char *which;
    assert_int_equal(at_access_take(a, NULL, "192.168.1.1", &which), 0);
    assert_int_equal(at_access_take(a, NULL, "192.168.1.1", &which), 0);
    char addr[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        at_access_take(a, NULL, addr, &which);
    }
    /* evicted or not, the answer is a valid one: 0 or a wait */
    int w = at_access_take(a, NULL, "192.168.1.1", &which);
    assert_true(w >= 0 && w <= 30);
    at_access_free(a);
}

static void test_cors_and_bearer(void **st)
{
    (void)st;
    at_access_config c = {0};
    c.cors_origins = "https://a.example , https://b.example:8443";
    at_err err;
    at_access *a = at_access_new(&c, &err);
    assert_string_equal(at_access_cors(a, "https://a.example"), "https://a.example");
    assert_string_equal(at_access_cors(a, "https://b.example:8443"), "https://b.example:8443");
    assert_null(at_access_cors(a, "https://b.example"));
    assert_null(at_access_cors(a, "https://a.example.evil"));
    assert_null(at_access_cors(a, NULL));
    at_access_free(a);
    c.cors_origins = "*";
    a = at_access_new(&c, &err);
    assert_string_equal(at_access_cors(a, "http://anything"), "*");
    at_access_free(a);
    c.cors_origins = NULL;
    a = at_access_new(&c, &err);
    assert_null(at_access_cors(a, "http://anything"));
    at_access_free(a);

    assert_string_equal(at_access_bearer("Bearer abc"), "abc");
    assert_string_equal(at_access_bearer("bearer  abc"), "abc");
    assert_null(at_access_bearer("Basic abc"));
    assert_null(at_access_bearer("Bearer "));
    assert_null(at_access_bearer(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_file),       cmocka_unit_test(test_bad_keys_files),
        cmocka_unit_test(test_rate_limits),     cmocka_unit_test(test_bucket_table_is_bounded),
        cmocka_unit_test(test_cors_and_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
