/* test_config.c - flags, environment, defaults, help (src/core/config.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

typedef struct cfg {
    char *host;
    long port;
    double max_seconds;
    int json_logs;
    char *model;
} cfg;

#define N_OPTS 5

static void make_opts(at_option o[N_OPTS], cfg *c)
{
    o[0] = (at_option){"host", "AT_TEST_HOST", AT_OPT_STRING, "127.0.0.1", "listen address", &c->host, 0, 0};
    o[1] = (at_option){"port", "AT_TEST_PORT", AT_OPT_INT, "8080", "listen port", &c->port, 1, 65535};
    o[2] = (at_option){"max-seconds",    "AT_TEST_MAX_SECONDS", AT_OPT_DOUBLE, "600",
                       "longest upload", &c->max_seconds,       0.5,           7200};
    o[3] = (at_option){"json-logs",      "AT_TEST_JSON_LOGS", AT_OPT_BOOL, "0",
                       "log JSON lines", &c->json_logs,       0,           0};
    o[4] = (at_option){"model", NULL, AT_OPT_STRING, NULL, "model file", &c->model, 0, 0};
}

static void clear_env(void)
{
    unsetenv("AT_TEST_HOST");
    unsetenv("AT_TEST_PORT");
    unsetenv("AT_TEST_MAX_SECONDS");
    unsetenv("AT_TEST_JSON_LOGS");
}

/* Runs the parser on a NULL-terminated word list (argv[0] = "prog"). */
static int run(cfg *c, at_option *o, at_err *e, const char **pos, size_t *npos, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "prog";
    va_list ap;
    va_start(ap, npos);
    for (char *w; (w = va_arg(ap, char *));) argv[argc++] = w;
    va_end(ap);
    memset(c, 0, sizeof *c);
    make_opts(o, c);
    at_err_clear(e);
    return at_config_parse(o, N_OPTS, argc, argv, 1, "prog [options] FILE", pos, 4, npos, e);
}

static void test_defaults(void **st)
{
    (void)st;
    clear_env();
    cfg c;
    at_option o[N_OPTS];
    at_err e;
    size_t np = 99;
    const char *pos[4];
    assert_int_equal(run(&c, o, &e, pos, &np, NULL), 0);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_true(c.max_seconds == 600);
    assert_int_equal(c.json_logs, 0);
    assert_null(c.model);
    assert_int_equal(np, 0);
    at_config_free(o, N_OPTS);
    assert_null(c.host);
}

static void test_flags(void **st)
{
    (void)st;
    clear_env();
    cfg c;
    at_option o[N_OPTS];
    at_err e;
    size_t np;
    const char *pos[4];
    int rc = run(&c, o, &e, pos, &np, "in.wav", "--port", "9000", "--host=0.0.0.0", "--json-logs",
                 "--max-seconds=12.5", "--model", "/m/ggml.bin", "out.srt", "--", "--not-a-flag", "-", NULL);
    if (rc) fail_msg("%s", e.msg);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "0.0.0.0");
    assert_int_equal(c.json_logs, 1);
    assert_true(c.max_seconds == 12.5);
    assert_string_equal(c.model, "/m/ggml.bin");
    assert_int_equal(np, 4);
    assert_string_equal(pos[0], "in.wav");
    assert_string_equal(pos[1], "out.srt");
    assert_string_equal(pos[2], "--not-a-flag");
    assert_string_equal(pos[3], "-");
    at_config_free(o, N_OPTS);

    /* repeated flag: last wins (and the first copy is not leaked) */
    assert_int_equal(run(&c, o, &e, pos, &np, "--model", "a", "--model=b", "--json-logs=false", NULL), 0);
    assert_string_equal(c.model, "b");
    assert_int_equal(c.json_logs, 0);
    at_config_free(o, N_OPTS);
    assert_int_equal(run(&c, o, &e, pos, &np, "--json-logs", "--no-json-logs", NULL), 0);
    assert_int_equal(c.json_logs, 0);
    at_config_free(o, N_OPTS);
    /* a bool flag takes no separate value: "yes" becomes positional */
    assert_int_equal(run(&c, o, &e, pos, &np, "--json-logs", "yes", NULL), 0);
    assert_int_equal(c.json_logs, 1);
    assert_int_equal(np, 1);
    at_config_free(o, N_OPTS);
    /* a value may start with a single dash */
    assert_int_equal(run(&c, o, &e, pos, &np, "--host", "-weird", NULL), 0);
    assert_string_equal(c.host, "-weird");
    at_config_free(o, N_OPTS);
    /* empty string value is allowed for strings */
    assert_int_equal(run(&c, o, &e, pos, &np, "--host=", NULL), 0);
    assert_string_equal(c.host, "");
    at_config_free(o, N_OPTS);
}

static void test_env_and_precedence(void **st)
{
    (void)st;
    clear_env();
    cfg c;
    at_option o[N_OPTS];
    at_err e;
    size_t np;
    const char *pos[4];
    setenv("AT_TEST_PORT", "7000", 1);
    setenv("AT_TEST_HOST", "::1", 1);
    setenv("AT_TEST_JSON_LOGS", "yes", 1);
    assert_int_equal(run(&c, o, &e, pos, &np, NULL), 0);
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.json_logs, 1);
    at_config_free(o, N_OPTS);
    /* flag beats env */
    assert_int_equal(run(&c, o, &e, pos, &np, "--port", "7001", NULL), 0);
    assert_int_equal(c.port, 7001);
    assert_string_equal(c.host, "::1");
    at_config_free(o, N_OPTS);
    static const struct {
        const char *v;
        int want;
    } bools[] = {{"1", 1}, {"true", 1}, {"YES", 1}, {"on", 1}, {"0", 0}, {"false", 0}, {"No", 0}, {"off", 0}};
    for (size_t i = 0; i < 8; i++) {
        setenv("AT_TEST_JSON_LOGS", bools[i].v, 1);
        assert_int_equal(run(&c, o, &e, pos, &np, NULL), 0);
        assert_int_equal(c.json_logs, bools[i].want);
        at_config_free(o, N_OPTS);
    }
    setenv("AT_TEST_JSON_LOGS", "maybe", 1);
    assert_int_equal(run(&c, o, &e, pos, &np, NULL), AT_E_INVALID);
    assert_non_null(strstr(e.msg, "AT_TEST_JSON_LOGS"));
    at_config_free(o, N_OPTS);
    setenv("AT_TEST_JSON_LOGS", "", 1); /* empty = unset */
    assert_int_equal(run(&c, o, &e, pos, &np, NULL), 0);
    assert_int_equal(c.json_logs, 0);
    at_config_free(o, N_OPTS);
    setenv("AT_TEST_PORT", "70000", 1);
    assert_int_equal(run(&c, o, &e, pos, &np, NULL), AT_E_INVALID);
    assert_non_null(strstr(e.msg, "AT_TEST_PORT"));
    assert_non_null(strstr(e.msg, "out of range"));
    at_config_free(o, N_OPTS);
    /* a broken environment value is reported even when a flag would
     * override it: it is never silently ignored */
    assert_int_equal(run(&c, o, &e, pos, &np, "--port", "80", NULL), AT_E_INVALID);
    at_config_free(o, N_OPTS);
    clear_env();
}

static void expect_error(const char *needle, ...)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "prog";
    va_list ap;
    va_start(ap, needle);
    for (char *w; (w = va_arg(ap, char *));) argv[argc++] = w;
    va_end(ap);
    cfg c = {0};
    at_option o[N_OPTS];
    make_opts(o, &c);
    at_err e;
    at_err_clear(&e);
    const char *pos[1];
    size_t np;
    int rc = at_config_parse(o, N_OPTS, argc, argv, 1, "prog", pos, 1, &np, &e);
    if (rc != AT_E_INVALID) fail_msg("no error for %s (rc %d)", argv[1], rc);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
    at_config_free(o, N_OPTS);
}

static void test_errors(void **st)
{
    (void)st;
    clear_env();
    expect_error("unknown flag '--colour'", "--colour", "red", NULL);
    expect_error("unknown flag '-x'", "-x", NULL);
    expect_error("--port: missing value", "--port", NULL);
    expect_error("--port: missing value", "--port", "--json-logs", NULL);
    expect_error("--port: not an integer: 'abc'", "--port", "abc", NULL);
    expect_error("--port: not an integer: '80x'", "--port=80x", NULL);
    expect_error("--port: not an integer: ''", "--port=", NULL);
    expect_error("--port: 0 is out of range", "--port", "0", NULL);
    expect_error("--port: integer out of range", "--port", "99999999999999999999999", NULL);
    expect_error("--max-seconds: not a number", "--max-seconds", "lots", NULL);
    expect_error("--max-seconds: not a number", "--max-seconds", "inf", NULL);
    expect_error("--max-seconds: 0.1 is out of range", "--max-seconds", "0.1", NULL);
    expect_error("--json-logs: expected", "--json-logs=perhaps", NULL);
    expect_error("unexpected argument 'b'", "a", "b", NULL);
    expect_error("unknown flag '--no-port'", "--no-port", NULL);
    /* a bad default is reported like a bad flag */
    long v;
    at_option bad = {"n", NULL, AT_OPT_INT, "ten", "a number", &v, 0, 0};
    at_err e;
    char *argv[] = {"prog"};
    assert_int_equal(at_config_parse(&bad, 1, 1, argv, 1, "prog", NULL, 0, NULL, &e), AT_E_INVALID);
    assert_non_null(strstr(e.msg, "default of --n"));
}

static char *capture_stdout(int (*fn)(void *), void *arg, int *rc)
{
    fflush(stdout);
    char path[] = "/tmp/at_test_cfg_XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    int saved = dup(1);
    dup2(fd, 1);
    *rc = fn(arg);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *s = calloc(1, (size_t)n + 1);
    pread(fd, s, (size_t)n, 0);
    close(fd);
    return s;
}

static int call_help(void *arg)
{
    (void)arg;
    cfg c = {0};
    at_option o[N_OPTS];
    make_opts(o, &c);
    char *argv[] = {"prog", "--port", "1", "--help", "--bogus"};
    at_err e;
    int rc = at_config_parse(o, N_OPTS, 5, argv, 1, "prog [options] FILE", NULL, 0, NULL, &e);
    at_config_free(o, N_OPTS);
    return rc;
}

static void test_help(void **st)
{
    (void)st;
    clear_env();
    int rc;
    char *out = capture_stdout(call_help, NULL, &rc);
    assert_int_equal(rc, 1);
    const char *want =
        "usage: prog [options] FILE\n"
        "\n"
        "options:\n"
        "  --host <str>         listen address [env: AT_TEST_HOST] [default: 127.0.0.1]\n"
        "  --port <int>         listen port (1..65535) [env: AT_TEST_PORT] [default: 8080]\n"
        "  --max-seconds <num>  longest upload (0.5..7200) [env: AT_TEST_MAX_SECONDS] [default: 600]\n"
        "  --json-logs          log JSON lines [env: AT_TEST_JSON_LOGS] [default: 0]\n"
        "  --model <str>        model file\n"
        "  -h, --help           show this help and exit\n";
    assert_string_equal(out, want);
    cfg c = {0};
    at_option o[N_OPTS];
    make_opts(o, &c);
    char *h = at_config_help(o, N_OPTS, "prog [options] FILE");
    assert_string_equal(h, want);
    free(h);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_env_and_precedence),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
