/* test_audio.c - decoding, resampling and WAV output (src/core/audio.c).
 *
 * Test files are generated with libsndfile itself (WAV, FLAC, Ogg/Vorbis,
 * Ogg/Opus, MP3 through libsndfile's LAME encoder) so no fixtures are
 * needed, plus the LibriVox clips shipped by Debian's pocketsphinx. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <string.h>
#include <unistd.h>

#include "core/audio.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* libsndfile 1.2.0 leaks libvorbis state when an Ogg/Vorbis header is
 * corrupt (its error path skips vorbis_info_clear; libsndfile/libvorbis
 * bug, not ours): tell LeakSanitizer so the fuzz test can cover Ogg. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libvorbis.so\n"; }

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

static int read_all(const char *path, blob *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b->p = malloc(n > 0 ? (size_t)n : 1);
    b->n = fread(b->p, 1, (size_t)n, f);
    fclose(f);
    return 0;
}

static void tmp_path(char *buf, size_t cap, const char *ext)
{
    static int counter; /* test-local uniqueness only */
    snprintf(buf, cap, "/tmp/at_test_audio_%d_%d.%s", (int)getpid(), counter++, ext);
}

/* Writes `seconds` of a sine (left amplitude 0.5, right 0.25) with
 * libsndfile; returns 0, or -1 if libsndfile cannot write that format. */
static int write_sine(const char *path, int format, int rate, int channels, double seconds, double freq)
{
    SF_INFO info = {0};
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) return -1;
    size_t n = (size_t)(seconds * rate);
    float *buf = malloc(n * (size_t)channels * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double s = sin(2 * M_PI * freq * (double)i / rate);
        for (int c = 0; c < channels; c++)
            buf[i * (size_t)channels + (size_t)c] = (float)(s * (c == 0 ? 0.5 : 0.25));
    }
    sf_count_t w = sf_writef_float(sf, buf, (sf_count_t)n);
    free(buf);
    sf_close(sf);
    return w == (sf_count_t)n ? 0 : -1;
}

/* Frequency from zero crossings with hysteresis (robust to codec noise),
 * measured away from the edges. */
static double est_freq(const float *x, size_t n, int rate)
{
    size_t a = (size_t)(0.1 * rate), b = n - (size_t)(0.1 * rate);
    int state = 0;
    size_t first = 0, last = 0, crossings = 0;
    for (size_t i = a; i < b; i++) {
        int s = x[i] > 0.05f ? 1 : x[i] < -0.05f ? -1 : 0;
        if (s && s != state) {
            if (state) {
                if (!crossings) first = i;
                last = i;
                crossings++;
            }
            state = s;
        }
    }
    if (crossings < 2) return 0;
    return (double)(crossings - 1) / 2.0 / ((double)(last - first) / rate);
}

static double peak(const float *x, size_t n)
{
    double p = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > p) p = fabs(x[i]);
    return p;
}

typedef struct fmt {
    const char *name, *ext;
    int format;
    int lossless;
    double dur_tol; /* relative */
} fmt;

static void round_trip(const fmt *f)
{
    static const int rates[] = {8000, 11025, 16000, 22050, 44100, 48000};
    const double seconds = 2.0;
    int tested = 0;
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        for (int ch = 1; ch <= 2; ch++) {
            char path[256];
            tmp_path(path, sizeof path, f->ext);
            if (write_sine(path, f->format, rates[r], ch, seconds, 440.0)) {
                print_message("  %s: libsndfile cannot write %d Hz %d ch (skipped)\n", f->name, rates[r], ch);
                unlink(path);
                continue;
            }
            blob b = {0};
            assert_int_equal(read_all(path, &b), 0);
            at_audio a;
            at_err err;
            at_err_clear(&err);
            int rc = at_audio_load_16k(b.p, b.n, 0, &a, &err);
            if (rc) fail_msg("%s %d Hz %d ch: %s", f->name, rates[r], ch, err.msg);
            assert_int_equal(a.sample_rate, 16000);
            double want = seconds * 16000;
            if (fabs((double)a.n - want) > want * f->dur_tol)
                fail_msg("%s %d Hz %d ch: %zu samples, want %.0f", f->name, rates[r], ch, a.n, want);
            double hz = est_freq(a.samples, a.n, 16000);
            if (fabs(hz - 440.0) > 440.0 * 0.01)
                fail_msg("%s %d Hz %d ch: tone at %.2f Hz, want 440", f->name, rates[r], ch, hz);
            /* mono 0.5; stereo mixes 0.5 and 0.25 to 0.375 */
            double want_peak = ch == 1 ? 0.5 : 0.375;
            double pk = peak(a.samples + 1600, a.n - 3200);
            if (fabs(pk - want_peak) > (f->lossless ? 0.01 : 0.08))
                fail_msg("%s %d Hz %d ch: peak %.3f, want %.3f", f->name, rates[r], ch, pk, want_peak);
            at_audio_free(&a);
            /* the file path gives the same result */
            assert_int_equal(at_audio_decode_file(path, 0, &a, &err), 0);
            assert_int_equal(a.sample_rate, rates[r]);
            at_audio_free(&a);
            free(b.p);
            unlink(path);
            tested++;
        }
    }
    print_message("  %s: %d rate/channel combinations decoded\n", f->name, tested);
    assert_true(tested > 0);
}

static void test_wav(void **st)
{
    (void)st;
    fmt f = {"WAV", "wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 1, 0.001};
    round_trip(&f);
}

static void test_flac(void **st)
{
    (void)st;
    fmt f = {"FLAC", "flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 1, 0.001};
    round_trip(&f);
}

static void test_vorbis(void **st)
{
    (void)st;
    fmt f = {"Ogg/Vorbis", "ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 0, 0.01};
    round_trip(&f);
}

static void test_opus(void **st)
{
    (void)st;
    fmt f = {"Ogg/Opus", "opus", SF_FORMAT_OGG | SF_FORMAT_OPUS, 0, 0.01};
    round_trip(&f);
}

static void test_mp3(void **st)
{
    (void)st;
    fmt f = {"MP3", "mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 0, 0.01};
    round_trip(&f);
}

/* A 16-bit mono WAV of n samples of a ramp, in memory. */
static blob make_wav(int rate, size_t n, uint32_t declared)
{
    blob b = {0};
    b.n = 44 + 2 * n;
    b.p = malloc(b.n);
    at_wav_header(b.p, rate, declared);
    for (size_t i = 0; i < n; i++) {
        int16_t v = (int16_t)((int)(i % 2000) - 1000);
        b.p[44 + 2 * i] = (unsigned char)(v & 0xFF);
        b.p[45 + 2 * i] = (unsigned char)((uint16_t)v >> 8);
    }
    return b;
}

/* A float WAV holding NaN and infinities: every decoded sample is finite
 * (those become silence), at 16 kHz and through the resampler. */
static void test_non_finite_samples(void **st)
{
    (void)st;
    for (int rate = 16000; rate <= 44100; rate += 28100) {
        char path[128];
        tmp_path(path, sizeof path, "wav");
        SF_INFO info = {0};
        info.samplerate = rate;
        info.channels = 2;
        info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
        SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
        assert_non_null(sf);
        float buf[2 * 4000];
        for (int i = 0; i < 4000; i++) buf[2 * i] = buf[2 * i + 1] = 0.25f * (float)sin(i * 0.1);
        buf[2 * 1000] = NAN;
        buf[2 * 2000 + 1] = INFINITY;
        buf[2 * 3000] = -INFINITY;
        assert_int_equal(sf_writef_float(sf, buf, 4000), 4000);
        sf_close(sf);
        blob b = {0};
        assert_int_equal(read_all(path, &b), 0);
        at_audio a;
        at_err err;
        assert_int_equal(at_audio_load_16k(b.p, b.n, 0, &a, &err), 0);
        assert_true(a.n > 0);
        for (size_t i = 0; i < a.n; i++)
            if (!isfinite(a.samples[i])) fail_msg("%d Hz: sample %zu is %g", rate, i, (double)a.samples[i]);
        at_audio_free(&a);
        free(b.p);
        unlink(path);
    }
}

static void test_wav_header_and_values(void **st)
{
    (void)st;
    blob b = make_wav(16000, 16000, 32000);
    assert_memory_equal(b.p, "RIFF", 4);
    assert_memory_equal(b.p + 8, "WAVEfmt ", 8);
    assert_int_equal(b.p[4] | b.p[5] << 8 | b.p[6] << 16 | b.p[7] << 24, 36 + 32000);
    at_audio a;
    at_err err;
    assert_int_equal(at_audio_decode(b.p, b.n, 0, &a, &err), 0);
    assert_int_equal(a.n, 16000);
    assert_int_equal(a.sample_rate, 16000);
    for (size_t i = 0; i < a.n; i++) assert_true(a.samples[i] == (float)((int)(i % 2000) - 1000) / 32768.0f);
    at_audio_free(&a);
    assert_null(a.samples);
    free(b.p);
}

static void test_streaming_wav_size(void **st)
{
    (void)st;
    /* OpenAI-style stream header: data size 0xFFFFFFFF */
    blob b = make_wav(24000, 24000, 0xFFFFFFFFu);
    assert_int_equal(b.p[4] | b.p[5] << 8 | b.p[6] << 16 | (uint32_t)b.p[7] << 24, 0xFFFFFFFFu);
    at_audio a;
    at_err err;
    int rc = at_audio_decode(b.p, b.n, 0, &a, &err);
    if (rc) fail_msg("%s", err.msg);
    assert_int_equal(a.n, 24000);
    at_audio_free(&a);
    free(b.p);
}

static void test_not_audio(void **st)
{
    (void)st;
    at_audio a;
    at_err err;
    const char *text = "hello, this is definitely not an audio file, just some text bytes\n";
    assert_int_equal(at_audio_decode(text, strlen(text), 0, &a, &err), AT_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "not a recognised audio format"));
    assert_null(a.samples);
    unsigned char png[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_int_equal(at_audio_decode(png, sizeof png, 0, &a, &err), AT_E_UNSUPPORTED);
    unsigned char rnd[4096];
    srand(7);
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)rand();
    int rc = at_audio_decode(rnd, sizeof rnd, 0, &a, &err);
    assert_true(rc == AT_E_UNSUPPORTED || rc == AT_E_CORRUPT);
    at_audio_free(&a);
}

static void test_empty(void **st)
{
    (void)st;
    at_audio a;
    at_err err;
    assert_int_equal(at_audio_decode("", 0, 0, &a, &err), AT_E_INVALID);
    assert_int_equal(at_audio_decode(NULL, 0, 0, &a, &err), AT_E_INVALID);
    /* valid header, zero frames */
    blob b = make_wav(16000, 0, 0);
    assert_int_equal(at_audio_decode(b.p, b.n, 0, &a, &err), AT_E_INVALID);
    assert_string_equal(err.msg, "audio is empty");
    free(b.p);
    /* libsndfile's own empty WAV */
    char path[256];
    tmp_path(path, sizeof path, "wav");
    assert_int_equal(write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, 0, 440), 0);
    assert_int_equal(at_audio_decode_file(path, 0, &a, &err), AT_E_INVALID);
    unlink(path);
}

static void test_truncated(void **st)
{
    (void)st;
    at_audio a;
    at_err err;
    blob b = make_wav(16000, 16000, 32000);
    assert_int_equal(at_audio_decode(b.p, b.n / 2, 0, &a, &err), AT_E_CORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    assert_int_equal(at_audio_decode(b.p, 30, 0, &a, &err), AT_E_CORRUPT);
    assert_int_equal(at_audio_decode(b.p, 44, 0, &a, &err), AT_E_CORRUPT);
    assert_int_equal(at_audio_decode(b.p, 12, 0, &a, &err), AT_E_CORRUPT);
    assert_null(a.samples);
    free(b.p);

    /* a libsndfile-written WAV (with its own header layout) cut in half */
    char path[256];
    tmp_path(path, sizeof path, "wav");
    assert_int_equal(write_sine(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, 1.0, 440), 0);
    assert_int_equal(read_all(path, &b), 0);
    assert_int_equal(at_audio_decode(b.p, b.n / 2, 0, &a, &err), AT_E_CORRUPT);
    assert_int_equal(at_audio_decode(b.p, 30, 0, &a, &err), AT_E_CORRUPT);
    free(b.p);
    unlink(path);

    /* FLAC declares its length in STREAMINFO */
    tmp_path(path, sizeof path, "flac");
    assert_int_equal(write_sine(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 16000, 1, 2.0, 440), 0);
    assert_int_equal(read_all(path, &b), 0);
    int rc = at_audio_decode(b.p, b.n / 2, 0, &a, &err);
    assert_int_equal(rc, AT_E_CORRUPT);
    free(b.p);
    unlink(path);

    /* every cut of a small WAV fails cleanly or decodes (no crash, no leak) */
    b = make_wav(8000, 400, 800);
    for (size_t cut = 1; cut < b.n; cut++) {
        rc = at_audio_decode(b.p, cut, 0, &a, &err);
        assert_true(rc == AT_E_CORRUPT || rc == AT_E_UNSUPPORTED || rc == AT_E_INVALID);
        assert_null(a.samples);
    }
    free(b.p);
}

static void test_max_seconds(void **st)
{
    (void)st;
    at_audio a;
    at_err err;
    blob b = make_wav(16000, 32000, 64000); /* 2 s */
    assert_int_equal(at_audio_decode(b.p, b.n, 1.0, &a, &err), AT_E_TOO_LARGE);
    assert_null(a.samples);
    assert_int_equal(at_audio_decode(b.p, b.n, 2.0, &a, &err), 0);
    at_audio_free(&a);
    assert_int_equal(at_audio_decode(b.p, b.n, 2.5, &a, &err), 0);
    at_audio_free(&a);
    assert_int_equal(at_audio_load_16k(b.p, b.n, 1.999, &a, &err), AT_E_TOO_LARGE);
    free(b.p);
    /* unknown length (stream header): the limit stops reading */
    b = make_wav(16000, 48000, 0xFFFFFFFFu);
    assert_int_equal(at_audio_decode(b.p, b.n, 1.0, &a, &err), AT_E_TOO_LARGE);
    free(b.p);
    /* compressed: FLAC 3 s */
    char path[256];
    tmp_path(path, sizeof path, "flac");
    assert_int_equal(write_sine(path, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 48000, 2, 3.0, 440), 0);
    assert_int_equal(at_audio_decode_file(path, 2.0, &a, &err), AT_E_TOO_LARGE);
    assert_int_equal(at_audio_decode_file(path, 3.5, &a, &err), 0);
    at_audio_free(&a);
    unlink(path);
    assert_int_equal(at_audio_decode_file("/nonexistent/x.wav", 0, &a, &err), AT_E_IO);
    assert_int_equal(at_audio_decode_file("/tmp", 0, &a, &err), AT_E_IO);
}

/* High-rate compressed audio is resampled while it is decoded: 200 s of
 * 384 kHz FLAC (a small file: it is quiet) used to be decoded whole at
 * 384 kHz first (307 MB of floats, gigabytes for an hour) before soxr
 * ran.  Measured in a child process, whose peak memory is its own. */
static void test_high_rate_bounded(void **st)
{
    (void)st;
    char path[256];
    tmp_path(path, sizeof path, "flac");
    SF_INFO info = {.samplerate = 384000, .channels = 1, .format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) fail_msg("cannot write 384 kHz FLAC: %s", sf_strerror(NULL));
    enum { SECONDS = 200, CHUNK = 38400 };
    float *chunk = calloc(CHUNK, sizeof *chunk);
    for (int i = 0; i < 400; i++) chunk[i] = (float)(0.1 * sin(2 * M_PI * 440.0 * i / 384000.0));
    for (int i = 0; i < SECONDS * 10; i++) assert_int_equal(sf_writef_float(sf, chunk, CHUNK), CHUNK);
    sf_close(sf);
    free(chunk);
    blob b = {0};
    assert_int_equal(read_all(path, &b), 0);
    unlink(path);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        at_audio a;
        at_err err;
        long res[3] = {at_audio_load_16k(b.p, b.n, 3600, &a, &err), 0, 0};
        getrusage(RUSAGE_SELF, &r1);
        res[1] = res[0] ? 0 : (long)a.n;
        res[2] = r1.ru_maxrss - r0.ru_maxrss; /* KB */
        if (write(fds[1], res, sizeof res) != (ssize_t)sizeof res) _exit(1);
        _exit(0);
    }
    long res[3] = {-1, 0, 0};
    assert_int_equal(read(fds[0], res, sizeof res), (ssize_t)sizeof res);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    free(b.p);
    print_message("%zu KB of FLAC, 200 s at 384 kHz -> %ld samples at 16 kHz; peak memory grew %ld MB\n",
                  b.n / 1024, res[1], res[2] / 1024);
    assert_int_equal(res[0], 0);
    assert_true(labs(res[1] - SECONDS * 16000L) <= 16);
    assert_true(res[2] < 120 * 1024); /* the 16 kHz result is 12.8 MB; at 384 kHz it was 307 MB */
}

static void test_pcm16(void **st)
{
    (void)st;
    at_audio a;
    at_err err;
    const unsigned char mono[] = {0xFF, 0x7F, 0x00, 0x80, 0x00, 0x00, 0x00, 0x40};
    assert_int_equal(at_audio_from_pcm16(mono, sizeof mono, 16000, 1, &a, &err), 0);
    assert_int_equal(a.n, 4);
    assert_true(a.samples[0] == 32767.0f / 32768.0f);
    assert_true(a.samples[1] == -1.0f);
    assert_true(a.samples[2] == 0.0f);
    assert_true(a.samples[3] == 0.5f);
    at_audio_free(&a);
    /* stereo averages: (0x4000 + 0) / 2 and (-32768 + 32767) / 2 */
    const unsigned char st2[] = {0x00, 0x40, 0x00, 0x00, 0x00, 0x80, 0xFF, 0x7F};
    assert_int_equal(at_audio_from_pcm16(st2, sizeof st2, 8000, 2, &a, &err), 0);
    assert_int_equal(a.n, 2);
    assert_true(a.samples[0] == 0.25f);
    assert_true(fabsf(a.samples[1] + 1.0f / 65536.0f) < 1e-9f);
    assert_int_equal(a.sample_rate, 8000);
    at_audio_free(&a);
    assert_int_equal(at_audio_from_pcm16(mono, 7, 16000, 1, &a, &err), AT_E_INVALID);
    assert_non_null(strstr(err.msg, "odd"));
    assert_int_equal(at_audio_from_pcm16(mono, 6, 16000, 2, &a, &err), AT_E_INVALID);
    assert_int_equal(at_audio_from_pcm16(mono, 8, 16000, 0, &a, &err), AT_E_INVALID);
    assert_int_equal(at_audio_from_pcm16(mono, 8, 16000, 9, &a, &err), AT_E_INVALID);
    assert_int_equal(at_audio_from_pcm16(mono, 8, 0, 1, &a, &err), AT_E_INVALID);
    assert_int_equal(at_audio_from_pcm16(mono, 0, 16000, 1, &a, &err), AT_E_INVALID);
    unsigned char eight[16] = {0};
    assert_int_equal(at_audio_from_pcm16(eight, 16, 16000, 8, &a, &err), 0);
    assert_int_equal(a.n, 1);
    at_audio_free(&a);
}

static void test_s16_f32(void **st)
{
    (void)st;
    int16_t in[65536], back[65536];
    float f[65536];
    for (int i = 0; i < 65536; i++) in[i] = (int16_t)(i - 32768);
    at_audio_s16_to_f32(in, 65536, f);
    at_audio_f32_to_s16(f, 65536, back);
    assert_memory_equal(in, back, sizeof in);
    float odd[] = {2.0f, -2.0f, 1.0f, -1.0f, NAN, INFINITY, -INFINITY, 0.5f};
    int16_t o[8];
    at_audio_f32_to_s16(odd, 8, o);
    assert_int_equal(o[0], 32767);
    assert_int_equal(o[1], -32768);
    assert_int_equal(o[2], 32767);
    assert_int_equal(o[3], -32768);
    assert_int_equal(o[4], 0);
    assert_int_equal(o[5], 32767);
    assert_int_equal(o[6], -32768);
    assert_int_equal(o[7], 16384);
}

static void test_resample(void **st)
{
    (void)st;
    at_err err;
    at_audio a = {0};
    a.sample_rate = 44100;
    a.n = 44100;
    a.samples = malloc(a.n * sizeof(float));
    for (size_t i = 0; i < a.n; i++) a.samples[i] = (float)(0.5 * sin(2 * M_PI * 440 * (double)i / 44100));
    assert_int_equal(at_audio_resample(&a, 16000, &err), 0);
    assert_int_equal(a.sample_rate, 16000);
    assert_true(labs((long)a.n - 16000) <= 2);
    assert_true(fabs(est_freq(a.samples, a.n, 16000) - 440) < 2);
    assert_true(fabs(at_audio_rms(a.samples + 1000, a.n - 2000) - 0.5 / sqrt(2)) < 0.01);
    assert_int_equal(at_audio_resample(&a, 16000, &err), 0); /* no-op */
    assert_int_equal(at_audio_resample(&a, 500, &err), AT_E_UNSUPPORTED);
    assert_int_equal(at_audio_resample(&a, 400000, &err), AT_E_UNSUPPORTED);
    assert_int_equal(at_audio_resample(&a, 8000, &err), 0);
    assert_true(labs((long)a.n - 8000) <= 2);
    at_audio_free(&a);
    assert_true(at_audio_rms(NULL, 0) == 0);
}

static void stream_vs_oneshot(int in_rate, int out_rate)
{
    at_err err;
    size_t n = (size_t)in_rate; /* 1 s */
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.4 * sin(2 * M_PI * 300 * (double)i / in_rate));
    at_audio a = {malloc(n * sizeof(float)), n, in_rate};
    memcpy(a.samples, x, n * sizeof(float));
    assert_int_equal(at_audio_resample(&a, out_rate, &err), 0);

    at_resampler *r = at_resampler_new(in_rate, out_rate, &err);
    assert_non_null(r);
    float *out = NULL, *all = malloc((n * (size_t)out_rate / (size_t)in_rate + 4096) * sizeof(float));
    size_t cap = 0, got = 0, total = 0;
    static const size_t chunks[] = {1, 37, 160, 1000, 4410, 17, 320};
    size_t pos = 0, k = 0;
    while (pos < n) {
        size_t c = chunks[k++ % 7];
        if (c > n - pos) c = n - pos;
        assert_int_equal(at_resampler_process(r, x + pos, c, 0, &out, &cap, &got, &err), 0);
        memcpy(all + total, out, got * sizeof(float));
        total += got;
        pos += c;
    }
    assert_int_equal(at_resampler_process(r, NULL, 0, 1, &out, &cap, &got, &err), 0);
    memcpy(all + total, out, got * sizeof(float));
    total += got;
    if (labs((long)total - (long)a.n) > 4)
        fail_msg("%d->%d: stream %zu samples, oneshot %zu", in_rate, out_rate, total, a.n);
    /* same signal: compare the middle */
    double d = 0;
    for (size_t i = a.n / 4; i < a.n * 3 / 4; i++) d = fmax(d, fabs(all[i] - a.samples[i]));
    if (d > 1e-3) fail_msg("%d->%d: max difference %g", in_rate, out_rate, d);
    at_resampler_free(r);
    free(out);
    free(all);
    free(x);
    at_audio_free(&a);
}

static void test_stream_resampler(void **st)
{
    (void)st;
    stream_vs_oneshot(44100, 16000);
    stream_vs_oneshot(8000, 16000);
    stream_vs_oneshot(48000, 16000);
    stream_vs_oneshot(16000, 16000);
    stream_vs_oneshot(16000, 24000);
    at_err err;
    assert_null(at_resampler_new(0, 16000, &err));
    assert_int_equal(err.code, AT_E_UNSUPPORTED);
    at_resampler_free(NULL);
}

static void test_wav_write(void **st)
{
    (void)st;
    at_err err;
    char path[256];
    tmp_path(path, sizeof path, "wav");
    int16_t pcm[1000];
    for (int i = 0; i < 1000; i++) pcm[i] = (int16_t)(i * 60 - 30000);
    assert_int_equal(at_wav_write_file(path, pcm, 1000, 22050, &err), 0);
    at_audio a;
    assert_int_equal(at_audio_decode_file(path, 0, &a, &err), 0);
    assert_int_equal(a.n, 1000);
    assert_int_equal(a.sample_rate, 22050);
    int16_t back[1000];
    at_audio_f32_to_s16(a.samples, a.n, back);
    assert_memory_equal(pcm, back, sizeof pcm);
    at_audio_free(&a);
    unlink(path);
    assert_int_equal(at_wav_write_file("/nonexistent/dir/x.wav", pcm, 10, 16000, &err), AT_E_IO);
}

static void test_librivox(void **st)
{
    (void)st;
    const char *dir = "/usr/share/pocketsphinx/test/data/librivox";
    DIR *d = opendir(dir);
    if (!d) {
        print_message("  %s missing (skipped)\n", dir);
        skip();
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".wav")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        SF_INFO info = {0};
        SNDFILE *sf = sf_open(path, SFM_READ, &info);
        assert_non_null(sf);
        sf_close(sf);
        blob b = {0};
        assert_int_equal(read_all(path, &b), 0);
        at_audio a;
        at_err err;
        int rc = at_audio_load_16k(b.p, b.n, 60, &a, &err);
        if (rc) fail_msg("%s: %s", e->d_name, err.msg);
        assert_int_equal(a.sample_rate, 16000);
        assert_int_equal(info.samplerate, 16000);
        assert_int_equal(info.channels, 1);
        assert_int_equal((sf_count_t)a.n, info.frames);
        /* the header's data size agrees too */
        assert_true(a.n * 2 <= b.n && a.n * 2 + 200 > b.n);
        assert_true(at_audio_rms(a.samples, a.n) > 0.005);
        at_audio_free(&a);
        free(b.p);
        count++;
    }
    closedir(d);
    print_message("  %d LibriVox clips decoded\n", count);
    assert_true(count >= 1);
}

/* Random byte flips and cuts of real files: the decoder must fail cleanly
 * or decode, never crash or read outside the buffer (ASan build). */
static void test_mutation_fuzz(void **st)
{
    (void)st;
    static const struct {
        int format;
        const char *ext;
    } kinds[] = {{SF_FORMAT_WAV | SF_FORMAT_PCM_16, "wav"},
                 {SF_FORMAT_FLAC | SF_FORMAT_PCM_16, "flac"},
                 {SF_FORMAT_OGG | SF_FORMAT_VORBIS, "ogg"}};
    srand(99);
    for (size_t k = 0; k < 3; k++) {
        char path[256];
        tmp_path(path, sizeof path, kinds[k].ext);
        assert_int_equal(write_sine(path, kinds[k].format, 16000, 2, 0.3, 440), 0);
        blob b = {0};
        assert_int_equal(read_all(path, &b), 0);
        unlink(path);
        int ok = 0, bad = 0;
        for (int it = 0; it < 150; it++) {
            size_t n = b.n;
            unsigned char *m = malloc(n);
            memcpy(m, b.p, n);
            int flips = 1 + rand() % 8;
            for (int f = 0; f < flips; f++) {
                /* mostly hit the header, where the sizes live */
                size_t pos = (size_t)rand() % (rand() % 2 ? (n < 64 ? n : 64) : n);
                m[pos] = (unsigned char)rand();
            }
            if (rand() % 3 == 0) n = 1 + (size_t)rand() % n;
            at_audio a;
            at_err err;
            int rc = at_audio_decode(m, n, 30, &a, &err);
            if (rc == 0) {
                ok++;
                assert_true(a.n > 0 && a.sample_rate > 0);
                at_audio_free(&a);
            } else {
                bad++;
                assert_null(a.samples);
                assert_true(err.msg[0] != '\0');
            }
            free(m);
        }
        print_message("  %s fuzz: %d decoded, %d rejected\n", kinds[k].ext, ok, bad);
        free(b.p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav),
        cmocka_unit_test(test_flac),
        cmocka_unit_test(test_vorbis),
        cmocka_unit_test(test_opus),
        cmocka_unit_test(test_mp3),
        cmocka_unit_test(test_wav_header_and_values),
        cmocka_unit_test(test_non_finite_samples),
        cmocka_unit_test(test_streaming_wav_size),
        cmocka_unit_test(test_not_audio),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_max_seconds),
        cmocka_unit_test(test_high_rate_bounded),
        cmocka_unit_test(test_pcm16),
        cmocka_unit_test(test_s16_f32),
        cmocka_unit_test(test_resample),
        cmocka_unit_test(test_stream_resampler),
        cmocka_unit_test(test_wav_write),
        cmocka_unit_test(test_librivox),
        cmocka_unit_test(test_mutation_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
