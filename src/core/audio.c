/* audio.c - decoding (libsndfile), resampling (soxr) and WAV output.
 *
 * Untrusted input rules: every size read from a header is checked against
 * the bytes actually present or the configured duration limit before it
 * is used to allocate; decoded data grows geometrically from what was
 * really decoded, never from what a header claims. */
#include "core/audio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AT_RATE_MIN     1000
#define AT_RATE_MAX     384000
#define AT_DECODE_CHUNK 4096 /* frames per sf_readf_float call */

void at_audio_free(at_audio *a)
{
    if (!a) return;
    free(a->samples);
    a->samples = NULL;
    a->n = 0;
    a->sample_rate = 0;
}

/* ---- virtual I/O: one reader over either a memory buffer or a file ---- */

typedef struct at_vio {
    const unsigned char *mem; /* memory source, or NULL */
    int fd;                   /* file source when mem == NULL */
    sf_count_t len, pos;
} at_vio;

/* Reads up to n bytes at off without moving pos; returns bytes read. */
static sf_count_t vio_pread(at_vio *v, sf_count_t off, void *buf, sf_count_t n)
{
    if (off < 0 || off >= v->len || n <= 0) return 0;
    if (n > v->len - off) n = v->len - off;
    if (v->mem) {
        memcpy(buf, v->mem + off, (size_t)n);
        return n;
    }
    sf_count_t got = 0;
    while (got < n) {
        ssize_t r = pread(v->fd, (char *)buf + got, (size_t)(n - got), (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += r;
    }
    return got;
}

static sf_count_t vio_get_filelen(void *ud) { return ((at_vio *)ud)->len; }

static sf_count_t vio_seek(sf_count_t offset, int whence, void *ud)
{
    at_vio *v = ud;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? v->pos : v->len;
    sf_count_t np = base + offset;
    if (np < 0) return -1;
    v->pos = np; /* beyond end allowed, reads then return 0 */
    return v->pos;
}

static sf_count_t vio_read(void *ptr, sf_count_t count, void *ud)
{
    at_vio *v = ud;
    sf_count_t got = vio_pread(v, v->pos, ptr, count);
    v->pos += got;
    return got;
}

static sf_count_t vio_write(const void *ptr, sf_count_t count, void *ud)
{
    (void)ptr;
    (void)count;
    (void)ud;
    return 0; /* read-only */
}

static sf_count_t vio_tell(void *ud) { return ((at_vio *)ud)->pos; }

/* ---- container checks libsndfile does not report ---- */

static uint32_t rd_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* libsndfile silently shortens a RIFF "data" chunk that claims more bytes
 * than the file holds, so walk the chunks ourselves: returns 1 when the
 * data chunk is cut short (streaming sizes 0 / 0xFFFFFFFF excepted). */
static int wav_data_truncated(at_vio *v, sf_count_t *declared, sf_count_t *present)
{
    unsigned char h[12];
    if (vio_pread(v, 0, h, 12) != 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4)) return 0;
    sf_count_t off = 12;
    for (int i = 0; i < 1024; i++) { /* bounded walk */
        unsigned char c[8];
        if (vio_pread(v, off, c, 8) != 8) return 0;
        uint32_t sz = rd_le32(c + 4);
        if (!memcmp(c, "data", 4)) {
            if (sz == 0 || sz == 0xFFFFFFFFu) return 0;
            sf_count_t avail = v->len - (off + 8);
            if ((sf_count_t)sz > avail) {
                *declared = sz;
                *present = avail < 0 ? 0 : avail;
                return 1;
            }
            return 0;
        }
        off += 8 + (sf_count_t)sz + (sz & 1);
    }
    return 0;
}

/* A recognisable container signature: if libsndfile then fails to open it,
 * the file is damaged rather than "not audio". */
static int looks_like_audio(at_vio *v)
{
    unsigned char h[12] = {0};
    sf_count_t n = vio_pread(v, 0, h, sizeof h);
    if (n >= 4 &&
        (!memcmp(h, "RIFF", 4) || !memcmp(h, "RIFX", 4) || !memcmp(h, "RF64", 4) || !memcmp(h, "fLaC", 4) ||
         !memcmp(h, "OggS", 4) || !memcmp(h, "FORM", 4) || !memcmp(h, ".snd", 4)))
        return 1;
    if (n >= 3 && !memcmp(h, "ID3", 3)) return 1;
    return 0;
}

static int fmt_is_mpeg(int format) { return (format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG; }

static int rate_ok(int r) { return r >= AT_RATE_MIN && r <= AT_RATE_MAX; }

/* Decoded mono samples, appended as they come: at the file's rate, or
 * through soxr at a target rate, so a long high-rate file never exists
 * in memory at its own rate (384 kHz FLAC would be 24x the 16 kHz
 * result). */
typedef struct pcm_sink {
    float *p;
    size_t n, cap;
    soxr_t sx;       /* NULL: no resampling */
    float tmp[4096]; /* soxr's output, before it is appended */
} pcm_sink;

static int sink_append(pcm_sink *k, const float *x, size_t n, at_err *err)
{
    if (k->n + n > k->cap) {
        size_t ncap = k->cap ? k->cap : 1 << 16;
        while (ncap < k->n + n) ncap *= 2;
        if (ncap > SIZE_MAX / sizeof(float) / 2) return at_err_set(err, AT_E_TOO_LARGE, "audio too large");
        float *p = realloc(k->p, ncap * sizeof(float));
        if (!p) return at_err_set(err, AT_E_NOMEM, "out of memory decoding audio");
        k->p = p;
        k->cap = ncap;
    }
    memcpy(k->p + k->n, x, n * sizeof(float));
    k->n += n;
    return AT_OK;
}

/* Appends n samples (NULL, 0: the end of the input, flushing soxr). */
static int sink_push(pcm_sink *k, const float *x, size_t n, at_err *err)
{
    if (!k->sx) return n ? sink_append(k, x, n, err) : AT_OK;
    size_t used = 0;
    for (;;) {
        size_t idone = 0, od = 0;
        soxr_error_t e = soxr_process(k->sx, x ? x + used : NULL, n - used, &idone, k->tmp,
                                      sizeof k->tmp / sizeof k->tmp[0], &od);
        if (e) return at_err_set(err, AT_E_ENGINE, "resampling failed: %s", e);
        used += idone;
        if (od && sink_append(k, k->tmp, od, err)) return err ? err->code : AT_E_NOMEM;
        if (x ? used >= n && od < sizeof k->tmp / sizeof k->tmp[0] : od == 0) return AT_OK;
    }
}

/* The end of the input: flushes soxr, keeps at least one sample (a few
 * input samples can resample to nothing) and gives back the spare room. */
static int sink_finish(pcm_sink *k, at_err *err)
{
    int rc = sink_push(k, NULL, 0, err);
    if (rc) return rc;
    if (k->n == 0) {
        float z = 0;
        if ((rc = sink_append(k, &z, 1, err))) return rc;
    }
    float *shr = k->cap > k->n + k->n / 4 ? realloc(k->p, k->n * sizeof(float)) : NULL;
    if (shr) {
        k->p = shr;
        k->cap = k->n;
    }
    return AT_OK;
}

static soxr_t resampler_new(int from, int to, const char **why)
{
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_runtime_spec_t rt = soxr_runtime_spec(1); /* no extra threads */
    soxr_error_t e = NULL;
    soxr_t sx = soxr_create(from, to, 1, &e, &io, &q, &rt);
    if (e && sx) {
        soxr_delete(sx);
        sx = NULL;
    }
    *why = e ? e : "soxr_create";
    return sx;
}

static int decode_vio(at_vio *v, double max_seconds, int rate, at_audio *out, at_err *err)
{
    memset(out, 0, sizeof *out);
    if (v->len <= 0) return at_err_set(err, AT_E_INVALID, "audio is empty");
    if (max_seconds < 0 || isnan(max_seconds)) return at_err_set(err, AT_E_INVALID, "invalid max_seconds");

    SF_VIRTUAL_IO io = {vio_get_filelen, vio_seek, vio_read, vio_write, vio_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&io, SFM_READ, &info, v);
    if (!sf) {
        const char *why = sf_strerror(NULL);
        if (looks_like_audio(v))
            return at_err_set(err, AT_E_CORRUPT, "truncated audio: malformed or incomplete header (%s)", why);
        return at_err_set(err, AT_E_UNSUPPORTED, "not an audio file: not a recognised audio format (%s)",
                          why);
    }
    int rc = AT_OK;
    float *buf = NULL, *mono = NULL;
    size_t n = 0;
    pcm_sink sink = {0};

    if (info.channels < 1 || info.channels > 1024 || info.samplerate < 1 || info.samplerate > AT_RATE_MAX) {
        rc = at_err_set(err, AT_E_CORRUPT, "malformed audio: %d channels at %d Hz", info.channels,
                        info.samplerate);
        goto done;
    }
    sf_count_t declared = 0, present = 0;
    if (wav_data_truncated(v, &declared, &present)) {
        rc = at_err_set(err, AT_E_CORRUPT,
                        "truncated audio: WAV data chunk declares %lld bytes, only %lld present",
                        (long long)declared, (long long)present);
        goto done;
    }
    /* Some formats report unknown length as 0 or SF_COUNT_MAX. */
    int known = info.frames > 0 && info.frames != SF_COUNT_MAX;
    if (info.frames == 0 && (info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAV) {
        rc = at_err_set(err, AT_E_INVALID, "audio is empty");
        goto done;
    }
    double limit_frames = max_seconds > 0 ? max_seconds * info.samplerate : 0;
    if (known && limit_frames > 0 && (double)info.frames > limit_frames + 0.5) {
        rc = at_err_set(err, AT_E_TOO_LARGE, "audio is %.1f s long, limit is %.1f s",
                        (double)info.frames / info.samplerate, max_seconds);
        goto done;
    }
    size_t ch = (size_t)info.channels;
    if (rate > 0 && rate != info.samplerate) {
        const char *why;
        if (!rate_ok(info.samplerate) || !rate_ok(rate)) {
            rc = at_err_set(err, AT_E_UNSUPPORTED, "cannot resample %d Hz to %d Hz (supported %d..%d Hz)",
                            info.samplerate, rate, AT_RATE_MIN, AT_RATE_MAX);
            goto done;
        }
        if (!(sink.sx = resampler_new(info.samplerate, rate, &why))) {
            rc = at_err_set(err, AT_E_ENGINE, "resampling failed: %s", why);
            goto done;
        }
    }
    buf = malloc(sizeof(float) * ch * AT_DECODE_CHUNK);
    mono = malloc(sizeof(float) * AT_DECODE_CHUNK);
    if (!buf || !mono) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    for (;;) {
        sf_count_t got = sf_readf_float(sf, buf, AT_DECODE_CHUNK);
        if (got <= 0) break;
        if (limit_frames > 0 && (double)(n + (size_t)got) > limit_frames + 0.5) {
            rc = at_err_set(err, AT_E_TOO_LARGE, "audio is longer than the %.1f s limit", max_seconds);
            goto done;
        }
        /* Mix down by averaging so a full-scale stereo signal stays in range. */
        for (sf_count_t i = 0; i < got; i++) {
            const float *f = buf + (size_t)i * ch;
            double s = 0;
            for (size_t c = 0; c < ch; c++) s += f[c];
            s /= (double)ch;
            /* a float file's NaN or infinity is no sound: passed on, one
             * made the energy VAD's noise floor NaN for the rest of the
             * file, and soxr spreads it over ~30 ms */
            mono[i] = isfinite(s) ? (float)s : 0.0f;
        }
        if ((rc = sink_push(&sink, mono, (size_t)got, err))) goto done;
        n += (size_t)got;
    }
    if (sf_error(sf) != SF_ERR_NO_ERROR && n == 0) {
        rc = at_err_set(err, AT_E_CORRUPT, "malformed audio: %s", sf_strerror(sf));
        goto done;
    }
    if (n == 0) {
        rc = known ? at_err_set(err, AT_E_CORRUPT, "truncated audio: no frames could be decoded")
                   : at_err_set(err, AT_E_INVALID, "audio is empty");
        goto done;
    }
    /* MP3 lengths are estimates from the stream headers; elsewhere a short
     * read means the file ends before its header says it should. */
    if (known && (sf_count_t)n < info.frames && !fmt_is_mpeg(info.format)) {
        rc = at_err_set(err, AT_E_CORRUPT, "truncated audio: header declares %lld frames, only %zu decoded",
                        (long long)info.frames, n);
        goto done;
    }
    if ((rc = sink_finish(&sink, err))) goto done;
    out->samples = sink.p;
    out->n = sink.n;
    out->sample_rate = sink.sx ? rate : info.samplerate;
    sink.p = NULL;
done:
    soxr_delete(sink.sx);
    free(sink.p);
    free(mono);
    free(buf);
    sf_close(sf);
    return rc;
}

static int decode_mem(const void *data, size_t len, double max_seconds, int rate, at_audio *out, at_err *err)
{
    if (!out) return at_err_set(err, AT_E_INVALID, "no output");
    memset(out, 0, sizeof *out);
    if (!data || len == 0) return at_err_set(err, AT_E_INVALID, "audio is empty");
    if (len > (size_t)INT64_MAX) return at_err_set(err, AT_E_TOO_LARGE, "audio too large");
    at_vio v = {data, -1, (sf_count_t)len, 0};
    return decode_vio(&v, max_seconds, rate, out, err);
}

int at_audio_decode(const void *data, size_t len, double max_seconds, at_audio *out, at_err *err)
{
    return decode_mem(data, len, max_seconds, 0, out, err);
}

int at_audio_decode_file(const char *path, double max_seconds, at_audio *out, at_err *err)
{
    if (!out) return at_err_set(err, AT_E_INVALID, "no output");
    memset(out, 0, sizeof *out);
    if (!path) return at_err_set(err, AT_E_INVALID, "no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return at_err_set(err, AT_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return at_err_set(err, AT_E_IO, "%s: not a regular file", path);
    }
    at_vio v = {NULL, fd, (sf_count_t)st.st_size, 0};
    int rc = decode_vio(&v, max_seconds, 0, out, err);
    close(fd);
    return rc;
}

/* ---- resampling ---- */

#define AT_RESAMPLE_PIECE 65536 /* input samples per soxr_process call */

int at_audio_resample(at_audio *a, int rate, at_err *err)
{
    if (!a) return at_err_set(err, AT_E_INVALID, "no audio");
    if (!rate_ok(a->sample_rate) || !rate_ok(rate))
        return at_err_set(err, AT_E_UNSUPPORTED, "cannot resample %d Hz to %d Hz (supported %d..%d Hz)",
                          a->sample_rate, rate, AT_RATE_MIN, AT_RATE_MAX);
    if (a->sample_rate == rate || a->n == 0) {
        a->sample_rate = rate;
        return AT_OK;
    }
    pcm_sink k = {0};
    const char *why;
    if (!(k.sx = resampler_new(a->sample_rate, rate, &why)))
        return at_err_set(err, AT_E_ENGINE, "resampling failed: %s", why);
    /* Fed in bounded pieces: given everything at once (soxr_oneshot),
     * soxr grows its input FIFO by small reallocs, quadratic where realloc
     * copies (ASan's always does: 70 s for 4 minutes of 8 kHz audio). */
    int rc = AT_OK;
    for (size_t i = 0; i < a->n && !rc; i += AT_RESAMPLE_PIECE)
        rc = sink_push(&k, a->samples + i, a->n - i < AT_RESAMPLE_PIECE ? a->n - i : AT_RESAMPLE_PIECE, err);
    if (!rc) rc = sink_finish(&k, err);
    soxr_delete(k.sx);
    if (rc) {
        free(k.p);
        return rc;
    }
    free(a->samples);
    a->samples = k.p;
    a->n = k.n;
    a->sample_rate = rate;
    return AT_OK;
}

int at_audio_load_16k(const void *data, size_t len, double max_seconds, at_audio *out, at_err *err)
{
    /* resampled while decoding: memory follows the 16 kHz result */
    return decode_mem(data, len, max_seconds, 16000, out, err);
}

int at_audio_from_pcm16(const void *data, size_t len, int sample_rate, int channels, at_audio *out,
                        at_err *err)
{
    if (!out) return at_err_set(err, AT_E_INVALID, "no output");
    memset(out, 0, sizeof *out);
    if (channels < 1 || channels > 8)
        return at_err_set(err, AT_E_INVALID, "PCM16: channels must be 1..8, got %d", channels);
    if (!rate_ok(sample_rate))
        return at_err_set(err, AT_E_INVALID, "PCM16: sample rate must be %d..%d Hz, got %d", AT_RATE_MIN,
                          AT_RATE_MAX, sample_rate);
    if (!data || len == 0) return at_err_set(err, AT_E_INVALID, "audio is empty");
    if (len % 2) return at_err_set(err, AT_E_INVALID, "PCM16: odd byte count %zu", len);
    size_t fb = 2 * (size_t)channels;
    if (len % fb)
        return at_err_set(err, AT_E_INVALID, "PCM16: %zu bytes is not a whole number of %d-channel frames",
                          len, channels);
    size_t n = len / fb;
    float *s = malloc(n * sizeof(float));
    if (!s) return at_err_set(err, AT_E_NOMEM, "out of memory");
    const unsigned char *p = data; /* byte access: no alignment assumptions */
    for (size_t i = 0; i < n; i++) {
        int32_t sum = 0;
        for (int c = 0; c < channels; c++, p += 2) sum += (int16_t)(uint16_t)(p[0] | (p[1] << 8));
        s[i] = (float)sum / (32768.0f * (float)channels);
    }
    out->samples = s;
    out->n = n;
    out->sample_rate = sample_rate;
    return AT_OK;
}

/* Scale by 32768 both ways so s16 -> f32 -> s16 is exact. */
void at_audio_f32_to_s16(const float *in, size_t n, int16_t *out)
{
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        if (!(x == x)) { /* NaN */
            out[i] = 0;
            continue;
        }
        float v = x * 32768.0f;
        if (v >= 32767.0f)
            out[i] = 32767;
        else if (v <= -32768.0f)
            out[i] = -32768;
        else
            out[i] = (int16_t)lrintf(v);
    }
}

void at_audio_s16_to_f32(const int16_t *in, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = (float)in[i] / 32768.0f;
}

/* ---- streaming resampler ---- */

struct at_resampler {
    soxr_t s; /* NULL when in_rate == out_rate (plain copy) */
    double ratio;
    int flushed;
};

at_resampler *at_resampler_new(int in_rate, int out_rate, at_err *err)
{
    if (!rate_ok(in_rate) || !rate_ok(out_rate)) {
        at_err_set(err, AT_E_UNSUPPORTED, "cannot resample %d Hz to %d Hz (supported %d..%d Hz)", in_rate,
                   out_rate, AT_RATE_MIN, AT_RATE_MAX);
        return NULL;
    }
    at_resampler *r = calloc(1, sizeof *r);
    if (!r) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    r->ratio = (double)out_rate / in_rate;
    const char *why;
    if (in_rate != out_rate && !(r->s = resampler_new(in_rate, out_rate, &why))) {
        at_err_set(err, AT_E_ENGINE, "resampling failed: %s", why);
        free(r);
        return NULL;
    }
    return r;
}

static int ensure_cap(float **out, size_t *cap, size_t need, at_err *err)
{
    if (need <= *cap && *out) return AT_OK;
    size_t nc = *cap > 256 ? *cap : 256;
    while (nc < need) {
        if (nc > SIZE_MAX / sizeof(float) / 2)
            return at_err_set(err, AT_E_TOO_LARGE, "resampler output too large");
        nc *= 2;
    }
    float *p = realloc(*out, nc * sizeof(float));
    if (!p) return at_err_set(err, AT_E_NOMEM, "out of memory");
    *out = p;
    *cap = nc;
    return AT_OK;
}

int at_resampler_process(at_resampler *r, const float *in, size_t n, int last, float **out, size_t *out_cap,
                         size_t *out_n, at_err *err)
{
    if (!r || !out || !out_cap || !out_n || (n && !in))
        return at_err_set(err, AT_E_INVALID, "bad resampler arguments");
    *out_n = 0;
    if (r->flushed && n) return at_err_set(err, AT_E_INVALID, "resampler already flushed");
    if (!r->s) {
        int rc = ensure_cap(out, out_cap, n ? n : 1, err);
        if (rc) return rc;
        if (n) memcpy(*out, in, n * sizeof(float));
        *out_n = n;
        r->flushed = last != 0;
        return AT_OK;
    }
    static const float dummy = 0; /* non-NULL input pointer: NULL means "flush" to soxr */
    const float *ip = n ? in : &dummy;
    size_t left = n;
    int flushing = 0;
    for (;;) {
        size_t room_want = *out_n + (size_t)ceil((double)left * r->ratio) + 1024;
        int rc = ensure_cap(out, out_cap, room_want, err);
        if (rc) return rc;
        size_t room = *out_cap - *out_n, idone = 0, odone = 0;
        soxr_error_t e = soxr_process(r->s, flushing ? NULL : ip, flushing ? 0 : left, &idone, *out + *out_n,
                                      room, &odone);
        if (e) return at_err_set(err, AT_E_ENGINE, "resampling failed: %s", e);
        if (!flushing) {
            ip += idone;
            left -= idone;
        }
        *out_n += odone;
        if (odone == room) continue; /* output was full: more may be pending */
        if (left) continue;
        if (last && !flushing) {
            flushing = 1;
            continue;
        }
        break;
    }
    if (last) r->flushed = 1;
    return AT_OK;
}

void at_resampler_free(at_resampler *r)
{
    if (!r) return;
    if (r->s) soxr_delete(r->s);
    free(r);
}

/* ---- WAV output ---- */

static void wr_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void wr_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void at_wav_header(uint8_t hdr[44], int sample_rate, uint32_t data_bytes)
{
    uint32_t riff = data_bytes > 0xFFFFFFFFu - 36 ? 0xFFFFFFFFu : data_bytes + 36;
    memcpy(hdr, "RIFF", 4);
    wr_le32(hdr + 4, riff);
    memcpy(hdr + 8, "WAVEfmt ", 8);
    wr_le32(hdr + 16, 16);
    wr_le16(hdr + 20, 1); /* PCM */
    wr_le16(hdr + 22, 1); /* mono */
    wr_le32(hdr + 24, (uint32_t)sample_rate);
    wr_le32(hdr + 28, (uint32_t)sample_rate * 2);
    wr_le16(hdr + 32, 2);
    wr_le16(hdr + 34, 16);
    memcpy(hdr + 36, "data", 4);
    wr_le32(hdr + 40, data_bytes);
}

int at_wav_write_file(const char *path, const int16_t *pcm, size_t n, int sample_rate, at_err *err)
{
    if (!path || (n && !pcm) || sample_rate < 1) return at_err_set(err, AT_E_INVALID, "bad WAV arguments");
    if (n > (0xFFFFFFFFu - 36) / 2) return at_err_set(err, AT_E_TOO_LARGE, "too many samples for a WAV file");
    FILE *f = fopen(path, "wb");
    if (!f) return at_err_set(err, AT_E_IO, "cannot create %s: %s", path, strerror(errno));
    uint8_t hdr[44];
    at_wav_header(hdr, sample_rate, (uint32_t)(n * 2));
    int ok = fwrite(hdr, 1, 44, f) == 44;
    uint8_t chunk[8192];
    for (size_t i = 0; ok && i < n;) {
        size_t k = 0;
        for (; k < sizeof chunk / 2 && i < n; k++, i++) wr_le16(chunk + 2 * k, (uint16_t)pcm[i]);
        ok = fwrite(chunk, 2, k, f) == k;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        unlink(path);
        return at_err_set(err, AT_E_IO, "writing %s failed", path);
    }
    return AT_OK;
}

double at_audio_rms(const float *x, size_t n)
{
    if (!x || n == 0) return 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / (double)n);
}

int at_pcm16_buf_append(void *buf, const int16_t *pcm, size_t n)
{
    at_pcm16_buf *b = buf;
    if (n == 0) return 0; /* a "go on?" probe (tts.h): yes */
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + n) cap *= 2;
        int16_t *p = realloc(b->pcm, cap * sizeof *p);
        if (!p) return 1;
        b->pcm = p;
        b->cap = cap;
    }
    memcpy(b->pcm + b->n, pcm, n * sizeof *pcm);
    b->n += n;
    return 0;
}

void at_pcm16_buf_free(at_pcm16_buf *b)
{
    free(b->pcm);
    b->pcm = NULL;
    b->n = b->cap = 0;
}
