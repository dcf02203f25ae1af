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
#include <unistd.h>

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

/* ADTS: every frame starts with the 12-bit sync word and says its own
 * length; the frames tile the stream exactly. */
static size_t adts_frames(const unsigned char *p, size_t n, int *rate_index, int *channels)
{
    size_t off = 0, frames = 0;
    while (off + 7 <= n) {
        assert_int_equal(p[off], 0xFF);
        assert_int_equal(p[off + 1] & 0xF6, 0xF0); /* sync, layer 0 */
        *rate_index = (p[off + 2] >> 2) & 15;
        *channels = ((p[off + 2] & 1) << 2) | (p[off + 3] >> 6);
        size_t len = ((size_t)(p[off + 3] & 3) << 11) | ((size_t)p[off + 4] << 3) | (p[off + 5] >> 5);
        assert_true(len >= 7);
        off += len;
        frames++;
    }
    assert_int_equal(off, n);
    return frames;
}

/* AAC: the ADTS framing checked here, and the audio decoded by Debian's
 * faad (libfaad2) where it is installed (scripts/install-deps.sh). */
static void test_aac(void **st)
{
    (void)st;
    size_t n;
    int16_t *x = tone(&n);
    sink s = {0};
    at_err err;
    at_encoder *e = at_encoder_new("aac", 22050, 24000, collect, &s, &err);
    assert_non_null(e);
    for (size_t off = 0; off < n; off += 2205)
        assert_int_equal(at_encoder_push(e, x + off, n - off < 2205 ? n - off : 2205, &err), 0);
    size_t before_end = s.n;
    assert_int_equal(at_encoder_finish(e, &err), 0);
    at_encoder_free(e);
    assert_true(before_end > s.n / 2);
    int ri = -1, ch = -1;
    size_t frames = adts_frames(s.p, s.n, &ri, &ch);
    assert_int_equal(ri, 6); /* 24000 Hz */
    assert_int_equal(ch, 1);
    /* 3 s at 24 kHz is 70.3 frames of 1024, plus the encoder's delay */
    print_message("aac: %zu bytes, %zu frames\n", s.n, frames);
    assert_true(frames >= 71 && frames <= 74);
    if (system("command -v faad >/dev/null 2>&1") != 0) {
        print_message("faad not installed: AAC checked by its framing only\n");
    } else {
        char in[64], out[64], cmd[256];
        snprintf(in, sizeof in, "/tmp/at_aac_%d.aac", (int)getpid());
        snprintf(out, sizeof out, "/tmp/at_aac_%d.wav", (int)getpid());
        FILE *f = fopen(in, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(s.p, 1, s.n, f), s.n);
        fclose(f);
        snprintf(cmd, sizeof cmd, "faad -q -o %s %s >/dev/null 2>&1", out, in);
        assert_int_equal(system(cmd), 0);
        at_audio a;
        assert_int_equal(at_audio_decode_file(out, 60, &a, &err), 0);
        double secs = (double)a.n / a.sample_rate;
        print_message("faad decoded %.3f s at %d Hz\n", secs, a.sample_rate);
        /* faad assumes implicit SBR at rates up to 24 kHz and plays them
         * at twice the rate: the same audio */
        assert_true(a.sample_rate == 24000 || a.sample_rate == 48000);
        assert_true(secs > 2.9 && secs < 3.2);
        double rms = at_audio_rms(a.samples, a.n), want = 8000 / 32768.0 / sqrt(2.0);
        assert_true(fabs(rms - want) < 0.2 * want);
        at_audio_free(&a);
        unlink(in);
        unlink(out);
    }
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
    assert_non_null(strstr(err.msg, "mp3, opus, aac, flac, wav, pcm"));
    assert_null(at_encoder_new("aac", 22050, 23000, collect, &s, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_null(at_encoder_new("opus", 22050, 22050, collect, &s, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "8000, 12000, 16000, 24000, 48000"));
    /* libsndfile's format check passes any MP3 rate; its open then fails
     * and leaks the LAME context, so the rate is refused before it */
    assert_null(at_encoder_new("mp3", 22050, 64000, collect, &s, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "mp3 cannot be encoded at 64000 Hz"));
    assert_null(at_encoder_new("mp3", 22050, 7999, collect, &s, &err));
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
        cmocka_unit_test(test_writer_stops), cmocka_unit_test(test_aac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
