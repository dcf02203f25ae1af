/* test_log.c - logfmt / JSON lines (src/core/log.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Reads everything written to the pipe so far (non-blocking: the writer
 * is done before we read). */
static char *drain(int fd)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 + 1 > cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, 4096);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return buf;
}

static char *capture_to_file(int json, at_log_level min, void (*fn)(at_log *))
{
    char path[] = "/tmp/at_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    at_log *l = at_log_new(fd, min, json);
    assert_non_null(l);
    fn(l);
    at_log_free(l);
    lseek(fd, 0, SEEK_SET);
    char *s = drain(fd);
    close(fd);
    return s;
}

static void write_basic(at_log *l)
{
    at_log_write(l, AT_LOG_INFO, "request", "method", "POST", "path", "/v1/audio/translations", "status",
                 "200", NULL);
}

static void test_logfmt_basic(void **st)
{
    (void)st;
    char *s = capture_to_file(0, AT_LOG_DEBUG, write_basic);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                             "level=info msg=\"request\" method=POST path=/v1/audio/translations "
                             "status=200\n$",
                             REG_EXTENDED),
                     0);
    if (regexec(&re, s, 0, NULL, 0)) fail_msg("unexpected line: %s", s);
    regfree(&re);
    free(s);
}

static void write_escapes(at_log *l)
{
    at_log_write(l, AT_LOG_WARN, "say \"hi\"\n", "empty", "", "sp", "a b", "eq", "k=v", "q",
                 "he said \"x\\y\"", "ctl", "a\tb\x01", "utf8", "café", "bad", "\xff\xfe", "bad key!", "v",
                 NULL);
}

static void test_logfmt_escapes(void **st)
{
    (void)st;
    char *s = capture_to_file(0, AT_LOG_DEBUG, write_escapes);
    const char *rest = strstr(s, " level=");
    assert_non_null(rest);
    assert_string_equal(rest, " level=warn msg=\"say \\\"hi\\\"\\n\" empty=\"\" sp=\"a b\" "
                              "eq=\"k=v\" q=\"he said \\\"x\\\\y\\\"\" ctl=\"a\\tb\\u0001\" "
                              "utf8=\"café\" bad=\"\\ufffd\\ufffd\" bad_key_=v\n");
    free(s);
}

static void test_json(void **st)
{
    (void)st;
    char *s = capture_to_file(1, AT_LOG_DEBUG, write_escapes);
    assert_int_equal(strchr(s, '\n') - s, (long)strlen(s) - 1); /* one line */
    cJSON *j = cJSON_Parse(s);
    if (!j) fail_msg("not JSON: %s", s);
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "say \"hi\"\n");
    assert_string_equal(cJSON_GetObjectItem(j, "q")->valuestring, "he said \"x\\y\"");
    assert_string_equal(cJSON_GetObjectItem(j, "ctl")->valuestring, "a\tb\x01");
    assert_string_equal(cJSON_GetObjectItem(j, "utf8")->valuestring, "café");
    assert_string_equal(cJSON_GetObjectItem(j, "empty")->valuestring, "");
    assert_string_equal(cJSON_GetObjectItem(j, "bad key!")->valuestring, "v");
    const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    cJSON_Delete(j);
    free(s);
}

static void write_levels(at_log *l)
{
    at_log_write(l, AT_LOG_DEBUG, "d", NULL);
    at_log_write(l, AT_LOG_INFO, "i", NULL);
    at_log_write(l, AT_LOG_WARN, "w", NULL);
    at_log_write(l, AT_LOG_ERROR, "e", "k", NULL); /* odd key: logged empty */
    at_log_write(NULL, AT_LOG_ERROR, "nothing", NULL);
}

static void test_levels(void **st)
{
    (void)st;
    char *s = capture_to_file(0, AT_LOG_WARN, write_levels);
    assert_null(strstr(s, "msg=\"d\""));
    assert_null(strstr(s, "msg=\"i\""));
    assert_non_null(strstr(s, "level=warn msg=\"w\"\n"));
    assert_non_null(strstr(s, "level=error msg=\"e\" k=\"\"\n"));
    free(s);
    assert_int_equal(at_log_level_parse("debug"), AT_LOG_DEBUG);
    assert_int_equal(at_log_level_parse("INFO"), AT_LOG_INFO);
    assert_int_equal(at_log_level_parse("warn"), AT_LOG_WARN);
    assert_int_equal(at_log_level_parse("warning"), AT_LOG_WARN);
    assert_int_equal(at_log_level_parse("error"), AT_LOG_ERROR);
    assert_int_equal(at_log_level_parse("loud"), -1);
    assert_int_equal(at_log_level_parse(NULL), -1);
}

static void write_long(at_log *l)
{
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    at_log_write(l, AT_LOG_INFO, "big", "v", big, NULL);
    free(big);
}

static void test_long_value(void **st)
{
    (void)st;
    char *s = capture_to_file(0, AT_LOG_DEBUG, write_long);
    assert_true(strlen(s) < 4096 + 200);
    assert_non_null(strstr(s, "xxx...\"\n"));
    free(s);
}

typedef struct thr {
    at_log *l;
    int id;
} thr;

static void *writer(void *p)
{
    thr *t = p;
    char id[16];
    snprintf(id, sizeof id, "%d", t->id);
    for (int i = 0; i < 500; i++)
        at_log_write(t->l, AT_LOG_INFO, "concurrent", "thread", id, "pad",
                     "0123456789012345678901234567890123456789", NULL);
    return NULL;
}

static void test_threads_whole_lines(void **st)
{
    (void)st;
    char path[] = "/tmp/at_test_log_XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    at_log *l = at_log_new(fd, AT_LOG_DEBUG, 1);
    pthread_t th[4];
    thr args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr){l, i};
        pthread_create(&th[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    at_log_free(l);
    lseek(fd, 0, SEEK_SET);
    char *s = drain(fd);
    close(fd);
    int lines = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        if (!j) fail_msg("interleaved line: %s", line);
        cJSON_Delete(j);
        lines++;
    }
    assert_int_equal(lines, 2000);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_basic), cmocka_unit_test(test_logfmt_escapes),
        cmocka_unit_test(test_json),         cmocka_unit_test(test_levels),
        cmocka_unit_test(test_long_value),   cmocka_unit_test(test_threads_whole_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
