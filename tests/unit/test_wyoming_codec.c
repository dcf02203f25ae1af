/* test_wyoming_codec.c - Wyoming events on a socket (src/core/wyoming.c):
 * framing, merging of additional data, bounds and refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/wyoming.h"

/* Reads the first event of `raw` (sent, then the sending side closed). */
static int read_one(const void *raw, size_t n, at_wy_event *ev, at_err *err)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[0], raw, n), (ssize_t)n);
    shutdown(sv[0], SHUT_WR);
    at_wy_reader *r = at_wy_reader_new(sv[1], 1024);
    int rc = at_wy_read(r, ev, 2000, err);
    at_wy_reader_free(r);
    close(sv[0]);
    close(sv[1]);
    return rc;
}

/* Additional data is merged over the header's; a key given twice keeps
 * its last value (Python's json, the reference implementation's parser). */
static void test_merge_and_duplicates(void **st)
{
    (void)st;
    const char raw[] =
        "{\"type\":\"audio-chunk\",\"data\":{\"rate\":8000,\"rate\":16000,\"x\":1},"
        "\"data_length\":23,\"payload_length\":4}\n{\"x\":2,\"width\":2,\"x\":3}\x01\x02\x03\x04";
    at_wy_event ev;
    at_err err;
    assert_int_equal(read_one(raw, sizeof raw - 1, &ev, &err), 1);
    assert_string_equal(ev.type, "audio-chunk");
    assert_int_equal(cJSON_GetObjectItem(ev.data, "rate")->valueint, 16000);
    assert_int_equal(cJSON_GetObjectItem(ev.data, "x")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(ev.data, "width")->valueint, 2);
    assert_int_equal(cJSON_GetArraySize(ev.data), 3);
    assert_int_equal(ev.payload_len, 4);
    assert_memory_equal(ev.payload, "\x01\x02\x03\x04", 4);
    at_wy_event_free(&ev);
}

static void test_refusals(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "{\"type\":\"x\",\"payload_length\":2048}\n", /* over this reader's 1024 */
        "{\"type\":\"x\",\"data_length\":300000}\n",  /* over the data limit */
        "{\"type\":\"x\",\"data_length\":1.5}\n",
        "{\"type\":\"x\",\"data\":[1]}\n",
        "{\"type\":\"\\u0000\"}\n",
        "{\"type\":\"caf\xe9\"}\n", /* Latin-1, not UTF-8 */
        "{\"type\":\"x\",\"data_length\":3}\n[1]",
        "[\"type\"]\n",
        "{\"type\":\"x\",\"payload_length\":10}\nabc", /* the connection ends inside */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        at_wy_event ev;
        at_err err;
        at_err_clear(&err);
        if (read_one(bad[i], strlen(bad[i]), &ev, &err) != AT_E_INVALID) fail_msg("accepted: %s", bad[i]);
    }
    /* more than 256 fields */
    char big[8192] = "{\"type\":\"x\",\"data\":{";
    for (int i = 0; i < 300; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "%s\"k%d\":0", i ? "," : "", i);
    strcat(big, "}}\n");
    at_wy_event ev;
    at_err err;
    assert_int_equal(read_one(big, strlen(big), &ev, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "fields"));
    /* a clean close between events is not an error */
    assert_int_equal(read_one("", 0, &ev, &err), 0);
}

/* What the writer writes, the reader reads back. */
static void test_write_read(void **st)
{
    (void)st;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "text", "héllo");
    at_err err;
    assert_int_equal(at_wy_write(sv[0], "transcript", d, "pcm!", 4, 1000, &err), 0);
    assert_int_equal(at_wy_write(sv[0], "audio-stop", NULL, NULL, 0, 1000, &err), 0);
    at_wy_reader *r = at_wy_reader_new(sv[1], 1024);
    at_wy_event ev;
    assert_int_equal(at_wy_read(r, &ev, 1000, &err), 1);
    assert_string_equal(ev.type, "transcript");
    assert_string_equal(cJSON_GetObjectItem(ev.data, "text")->valuestring, "héllo");
    assert_int_equal(ev.payload_len, 4);
    at_wy_event_free(&ev);
    assert_int_equal(at_wy_read(r, &ev, 1000, &err), 1);
    assert_string_equal(ev.type, "audio-stop");
    assert_int_equal(cJSON_GetArraySize(ev.data), 0);
    at_wy_event_free(&ev);
    /* nothing more within the deadline: a timeout, not an event */
    assert_int_equal(at_wy_read(r, &ev, 200, &err), AT_E_CANCELLED);
    at_wy_reader_free(r);
    cJSON_Delete(d);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_and_duplicates),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_write_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
