/* test_subtitle.c - SRT and WebVTT documents (src/core/subtitle.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/subtitle.h"

static void test_srt_basic(void **st)
{
    (void)st;
    at_cue c[] = {{1.234, 2.0, "Hello there."}, {2.5, 4.75, "General Kenobi!"}};
    char *s = at_subtitle_srt(c, 2);
    assert_string_equal(s, "1\n00:00:01,234 --> 00:00:02,000\nHello there.\n\n"
                           "2\n00:00:02,500 --> 00:00:04,750\nGeneral Kenobi!\n\n");
    free(s);
}

static void test_vtt_basic(void **st)
{
    (void)st;
    at_cue c[] = {{1.234, 2.0, "Hello there."}, {2.5, 4.75, "General Kenobi!"}};
    char *s = at_subtitle_vtt(c, 2);
    assert_string_equal(s, "WEBVTT\n\n"
                           "00:00:01.234 --> 00:00:02.000\nHello there.\n\n"
                           "00:00:02.500 --> 00:00:04.750\nGeneral Kenobi!\n\n");
    free(s);
}

static void test_empty(void **st)
{
    (void)st;
    char *s = at_subtitle_srt(NULL, 0);
    assert_string_equal(s, "");
    free(s);
    s = at_subtitle_vtt(NULL, 0);
    assert_string_equal(s, "WEBVTT\n\n");
    free(s);
    /* empty / whitespace / NULL text skipped, numbering stays consecutive */
    at_cue c[] = {{0, 1, ""}, {1, 2, "one"}, {2, 3, "  \n\t "}, {3, 4, NULL}, {4, 5, "two"}};
    s = at_subtitle_srt(c, 5);
    assert_string_equal(s, "1\n00:00:01,000 --> 00:00:02,000\none\n\n"
                           "2\n00:00:04,000 --> 00:00:05,000\ntwo\n\n");
    free(s);
}

static void test_rounding(void **st)
{
    (void)st;
    at_cue c[] = {
        {1.9996, 59.9999, "a"},      /* -> 2.000 and 60.000 = 00:01:00 */
        {3599.9996, 3600.0004, "b"}, /* hour boundary */
        {0.0004, 0.0005, "c"},       /* 0.0005*1000 is just above .5 in binary */
        {0.001, 0.0014999, "d"},
    };
    char *s = at_subtitle_srt(c, 4);
    assert_string_equal(s, "1\n00:00:02,000 --> 00:01:00,000\na\n\n"
                           "2\n01:00:00,000 --> 01:00:00,000\nb\n\n"
                           "3\n00:00:00,000 --> 00:00:00,001\nc\n\n"
                           "4\n00:00:00,001 --> 00:00:00,001\nd\n\n");
    free(s);
    /* no "1000" millisecond field ever, over a fine sweep */
    for (int i = 0; i < 200000; i++) {
        double t = i * 0.0000537;
        at_cue one = {t, t + 0.5, "x"};
        char *v = at_subtitle_vtt(&one, 1);
        const char *ts = v + 8;
        assert_int_equal(ts[8], '.');
        assert_int_equal(ts[12], ' ');
        assert_true(ts[6] <= '5');
        long long ms = ((long long)atoi(ts) * 3600 + atoi(ts + 3) * 60 + atoi(ts + 6)) * 1000 + atoi(ts + 9);
        assert_true(llabs(ms - llround(t * 1000)) <= 1);
        free(v);
    }
}

static void test_hours_and_clamps(void **st)
{
    (void)st;
    at_cue c[] = {
        {360000.5, 360001.25, "long"}, /* 100 hours */
        {5, 3, "backwards"},           /* end clamped to start */
        {-2, NAN, "negative"},         /* both clamp to 0 */
    };
    char *s = at_subtitle_srt(c, 3);
    assert_string_equal(s, "1\n100:00:00,500 --> 100:00:01,250\nlong\n\n"
                           "2\n00:00:05,000 --> 00:00:05,000\nbackwards\n\n"
                           "3\n00:00:00,000 --> 00:00:00,000\nnegative\n\n");
    free(s);
    s = at_subtitle_vtt(c, 1);
    assert_string_equal(s, "WEBVTT\n\n100:00:00.500 --> 100:00:01.250\nlong\n\n");
    free(s);
}

static void test_text_cleanup(void **st)
{
    (void)st;
    at_cue c[] = {{0, 1, "  line one\r\n\r\n\n  line two  \r third\n"}, {1, 2, "a --> b & <i>c</i>"}};
    char *s = at_subtitle_srt(c, 2);
    assert_string_equal(s, "1\n00:00:00,000 --> 00:00:01,000\nline one\nline two\nthird\n\n"
                           "2\n00:00:01,000 --> 00:00:02,000\na --> b & <i>c</i>\n\n");
    free(s);
    s = at_subtitle_vtt(c, 2);
    assert_string_equal(s, "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nline one\nline two\nthird\n\n"
                           "00:00:01.000 --> 00:00:02.000\na --&gt; b &amp; &lt;i&gt;c&lt;/i&gt;\n\n");
    free(s);
    at_cue u = {0, 1, "¿Dónde está la biblioteca?"};
    s = at_subtitle_vtt(&u, 1);
    assert_non_null(strstr(s, "\n¿Dónde está la biblioteca?\n\n"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_srt_basic),
        cmocka_unit_test(test_vtt_basic),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_hours_and_clamps),
        cmocka_unit_test(test_text_cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
