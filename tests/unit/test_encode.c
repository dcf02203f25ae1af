/* test_encode.c - streaming speech encoders (src/core/encode.c): every
 * format decodes back (with libsndfile, as Debian's tools do) to the audio
 * that went in, at the rate asked for, and bytes leave before the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/audio.h"
#include "core/encode.h"

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int fail_after; /* >0: the write that many calls in fails */
    int calls;
} sink;

static int collect(void *user, const void *data, size_t len)
{
    sink *s = user;
    if (s->fail_after && ++s->calls >= s->fail_after) return 1;
    if (s->n + len > s->cap) {
        s->cap = (s->n + len) * 2;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->n, data, len);
    s->n += len;
    return 0;
}

/* 3 s of a 440 Hz tone at 22050 Hz (espeak-ng's rate). */
static int16_t *tone(size_t *n)
{
    *n = 3 * 22050;
    int16_t *x = malloc(*n * sizeof *x);
    for (size_t i = 0; i < *n; i++) x[i] = (int16_t)(8000 * sin(2 * M_PI * 440.0 * (double)i / 22050.0));
    return x;
}

static void roundtrip(const char *format)
{
    size_t n;
    int16_t *x = tone(&n);
    sink s = {0};
    at_err err;
    at_encoder *e = at_encoder_new(format, 22050, 24000, collect, &s, &err);
    assert_non_null(e);
    for (size_t off = 0; off < n; off += 2205) /* 0.1 s pieces, as an engine gives them */
        assert_int_equal(at_encoder_push(e, x + off, n - off < 2205 ? n - off : 2205, &err), 0);
    size_t before_end = s.n;
    assert_int_equal(at_encoder_finish(e, &err), 0);
    assert_int_equal(at_encoder_bytes(e), s.n);
    at_encoder_free(e);
    print_message("%s: %zu bytes, %zu before the end\n", format, s.n, before_end);
    /* streamed: most of it was out before the end */
    assert_true(before_end > s.n / 2);

    at_audio a;
    if (strcmp(format, "pcm") == 0)
        assert_int_equal(at_audio_from_pcm16(s.p, s.n, 24000, 1, &a, &err), 0);
    else
        assert_int_equal(at_audio_decode(s.p, s.n, 60, &a, &err), 0);
    assert_int_equal(a.sample_rate, 24000);
    double secs = (double)a.n / a.sample_rate;
    print_message("decoded %.3f s\n", secs);
    /* codecs pad a frame or two */
    assert_true(secs > 2.9 && secs < 3.2);
    double rms = at_audio_rms(a.samples, a.n), want = 8000 / 32768.0 / sqrt(2.0);
    assert_true(fabs(rms - want) < 0.2 * want);
    at_audio_free(&a);
    free(s.p);
    free(x);
}

static void test_wav(void **st) { (void)st, roundtrip("wav"); }
static void test_pcm(void **st) { (void)st, roundtrip("pcm"); }
static void test_mp3(void **st) { (void)st, roundtrip("mp3"); }
static void test_opus(void **st) { (void)st, roundtrip("opus"); }
static void test_flac(void **st) { (void)st, roundtrip("flac"); }

static void test_refusals(void **st)
{
    (void)st;
    sink s = {0};
    at_err err;
    assert_null(at_encoder_new("ogg-vorbis", 22050, 24000, collect, &s, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "mp3, opus, flac, wav, pcm"));
    assert_null(at_encoder_new("opus", 22050, 22050, collect, &s, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_string_equal(at_encoder_content_type("mp3"), "audio/mpeg");
    assert_null(at_encoder_content_type("x"));
}

/* A client that leaves: the writer says stop, encoding ends cancelled. */
static void test_writer_stops(void **st)
{
    (void)st;
    size_t n;
    int16_t *x = tone(&n);
    sink s = {0};
    s.fail_after = 2;
    at_err err;
    at_encoder *e = at_encoder_new("pcm", 22050, 22050, collect, &s, &err);
    assert_non_null(e);
    assert_int_equal(at_encoder_push(e, x, 1000, &err), 0);
    assert_int_equal(at_encoder_push(e, x, 1000, &err), AT_E_CANCELLED);
    assert_int_equal(at_encoder_finish(e, &err), AT_E_CANCELLED);
    at_encoder_free(e);
    free(s.p);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav),          cmocka_unit_test(test_pcm),  cmocka_unit_test(test_mp3),
        cmocka_unit_test(test_opus),         cmocka_unit_test(test_flac), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_writer_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
