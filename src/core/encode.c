/* encode.c - streaming speech encoders (see encode.h).
 *
 * libsndfile (1.1 and later) writes MP3, Ogg Opus and FLAC; it is given a
 * virtual file that only appends, handing each write straight to the
 * caller, so nothing is buffered beyond the codec's own frame.  A seek
 * back (to patch a header at close) is refused: the formats used here
 * stream without one. */
#include "core/encode.h"

#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vo-aacenc/cmnMemory.h>
#include <vo-aacenc/voAAC.h>

#include "core/audio.h"

/* The rates each codec's standard defines.  libsndfile's sf_format_check
 * accepts any rate for MP3 and Opus; opening the stream then fails (and
 * for MP3 leaks the LAME context), or writes one players refuse. */
static const int mpeg_rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 0};
static const int opus_rates[] = {8000, 12000, 16000, 24000, 48000, 0};

static const struct {
    const char *name, *ctype;
    int sf_format;     /* 0: written here (wav, pcm, aac) */
    const char *codec; /* the codec's name in errors about its rates */
    const int *rates;  /* 0-ended; NULL: any rate the writer takes */
} formats[] = {
    {"wav", "audio/wav", 0, NULL, NULL},
    {"pcm", "audio/pcm", 0, NULL, NULL},
    {"mp3", "audio/mpeg", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, "MP3", mpeg_rates},
    {"opus", "audio/ogg", SF_FORMAT_OGG | SF_FORMAT_OPUS, "Opus", opus_rates},
    {"flac", "audio/flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, NULL, NULL},
    {"aac", "audio/aac", 0, "AAC", mpeg_rates}, /* ADTS, by VisualOn's encoder (libvo-aacenc) */
};

#define AAC_FRAME   1024  /* samples a frame */
#define AAC_BITRATE 64000 /* mono speech at 24 kHz */
#define N_FORMATS   (sizeof formats / sizeof formats[0])

struct at_encoder {
    int fmt; /* index into formats */
    int out_rate;
    at_encoder_write write;
    void *user;
    int stopped;      /* write returned nonzero */
    size_t bytes;     /* written to the caller */
    at_resampler *rs; /* NULL when rates are equal */
    float *fin, *fout;
    size_t fin_cap, fout_cap;
    int16_t *s16;
    size_t s16_cap;
    SNDFILE *sf;
    int finished;
    /* aac */
    VO_AUDIO_CODECAPI aac_api;
    VO_HANDLE aac;
    VO_MEM_OPERATOR aac_mem;
    int16_t aac_in[AAC_FRAME];
    size_t aac_n;
    unsigned char aac_out[8192];
};

static int find(const char *name)
{
    for (size_t i = 0; name && i < N_FORMATS; i++)
        if (strcmp(formats[i].name, name) == 0) return (int)i;
    return -1;
}

int at_encoder_known(const char *format) { return find(format) >= 0; }

const char *at_encoder_content_type(const char *format)
{
    int i = find(format);
    return i < 0 ? NULL : formats[i].ctype;
}

const char *at_encoder_formats(void) { return "mp3, opus, aac, flac, wav, pcm"; }

/* ---- the append-only virtual file ---- */

static sf_count_t vio_len(void *u) { return (sf_count_t)((at_encoder *)u)->bytes; }
static sf_count_t vio_tell(void *u) { return (sf_count_t)((at_encoder *)u)->bytes; }
static sf_count_t vio_read(void *p, sf_count_t n, void *u)
{
    (void)p, (void)n, (void)u;
    return 0;
}
static sf_count_t vio_seek(sf_count_t off, int whence, void *u)
{
    at_encoder *e = u;
    /* the file's end is where it is now: SEEK_CUR and SEEK_END agree */
    sf_count_t at = whence == SEEK_SET ? off : (sf_count_t)e->bytes + off;
    return at == (sf_count_t)e->bytes ? at : -1;
}

static int emit(at_encoder *e, const void *data, size_t len)
{
    if (e->stopped || len == 0) return e->stopped;
    if (e->write(e->user, data, len) != 0) {
        e->stopped = 1;
        return 1;
    }
    e->bytes += len;
    return 0;
}

static sf_count_t vio_write(const void *p, sf_count_t n, void *u)
{
    at_encoder *e = u;
    /* a short count makes libsndfile give up on the stream */
    return emit(e, p, (size_t)n) ? 0 : n;
}

int at_encoder_check(const char *format, int rate, at_err *err)
{
    int fi = find(format);
    if (fi < 0)
        return at_err_set(err, AT_E_UNSUPPORTED, "unsupported response_format '%s'; supported: %s",
                          format ? format : "(null)", at_encoder_formats());
    if (rate < 1000 || rate > 384000)
        return at_err_set(err, AT_E_UNSUPPORTED, "sample rate %d Hz is out of range", rate);
    const int *rates = formats[fi].rates;
    if (rates) {
        char list[128] = "";
        size_t len = 0;
        for (const int *r = rates; *r; r++) {
            if (*r == rate) return 0;
            int k =
                len < sizeof list ? snprintf(list + len, sizeof list - len, "%s%d", len ? ", " : "", *r) : 0;
            if (k > 0) len += (size_t)k; /* past the end (a longer table): the list stays cut */
        }
        return at_err_set(err, AT_E_UNSUPPORTED, "%s cannot be encoded at %d Hz (%s takes %s Hz)", format,
                          rate, formats[fi].codec, list);
    }
    if (!formats[fi].sf_format) return 0;
    SF_INFO info = {0};
    info.samplerate = rate;
    info.channels = 1;
    info.format = formats[fi].sf_format;
    if (!sf_format_check(&info))
        return at_err_set(err, AT_E_UNSUPPORTED, "%s cannot be encoded at %d Hz", format, rate);
    return 0;
}

at_encoder *at_encoder_new(const char *format, int in_rate, int out_rate, at_encoder_write write, void *user,
                           at_err *err)
{
    if (at_encoder_check(format, out_rate, err) != 0) return NULL;
    int fi = find(format);
    at_encoder *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->fmt = fi;
    e->out_rate = out_rate;
    e->write = write;
    e->user = user;
    if (in_rate != out_rate && !(e->rs = at_resampler_new(in_rate, out_rate, err))) {
        free(e);
        return NULL;
    }
    if (formats[fi].sf_format) {
        SF_VIRTUAL_IO io = {vio_len, vio_seek, vio_read, vio_write, vio_tell};
        SF_INFO info = {0};
        info.samplerate = out_rate;
        info.channels = 1;
        info.format = formats[fi].sf_format;
        if (!(e->sf = sf_open_virtual(&io, SFM_WRITE, &info, e))) {
            at_err_set(err, AT_E_ENGINE, "cannot start the %s encoder: %s", format, sf_strerror(NULL));
            at_encoder_free(e);
            return NULL;
        }
        if (strcmp(format, "mp3") == 0) {
            /* Constant bit rate: a VBR stream without the header LAME
             * writes by seeking back at the end has no length a decoder
             * can trust (libsndfile then reads a fifth of it).  Level 0.5
             * is about 80 kbit/s at 24 kHz. */
            int mode = SF_BITRATE_MODE_CONSTANT;
            double q = 0.5;
            sf_command(e->sf, SFC_SET_BITRATE_MODE, &mode, sizeof mode);
            sf_command(e->sf, SFC_SET_COMPRESSION_LEVEL, &q, sizeof q);
        }
    } else if (strcmp(format, "aac") == 0) {
        AACENC_PARAM prm = {0};
        VO_CODEC_INIT_USERDATA ud = {0};
        e->aac_mem.Alloc = cmnMemAlloc;
        e->aac_mem.Copy = cmnMemCopy;
        e->aac_mem.Free = cmnMemFree;
        e->aac_mem.Set = cmnMemSet;
        e->aac_mem.Check = cmnMemCheck;
        ud.memflag = VO_IMF_USERMEMOPERATOR;
        ud.memData = &e->aac_mem;
        prm.sampleRate = out_rate;
        prm.bitRate = AAC_BITRATE;
        prm.nChannels = 1;
        prm.adtsUsed = 1; /* ADTS frames: a stream any decoder can start on */
        if (voGetAACEncAPI(&e->aac_api) != VO_ERR_NONE ||
            e->aac_api.Init(&e->aac, VO_AUDIO_CodingAAC, &ud) != VO_ERR_NONE || !e->aac ||
            e->aac_api.SetParam(e->aac, VO_PID_AAC_ENCPARAM, &prm) != VO_ERR_NONE) {
            at_err_set(err, AT_E_ENGINE, "cannot start the AAC encoder at %d Hz", out_rate);
            at_encoder_free(e);
            return NULL;
        }
    } else if (strcmp(format, "wav") == 0) {
        uint8_t hdr[44];
        at_wav_header(hdr, out_rate, 0xFFFFFFFFu);
        if (emit(e, hdr, sizeof hdr)) {
            at_err_set(err, AT_E_CANCELLED, "the client went away");
            at_encoder_free(e);
            return NULL;
        }
    }
    return e;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < n) c *= 2;
    void *np = realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

/* Encodes the full frame in aac_in (zero-padded by the caller at the end). */
static int aac_frame(at_encoder *e, at_err *err)
{
    VO_CODECBUFFER in = {0}, out = {0};
    VO_AUDIO_OUTPUTINFO info = {0};
    in.Buffer = (VO_PBYTE)e->aac_in;
    in.Length = AAC_FRAME * sizeof e->aac_in[0];
    if (e->aac_api.SetInputData(e->aac, &in) != VO_ERR_NONE)
        return at_err_set(err, AT_E_ENGINE, "the AAC encoder refused its input");
    out.Buffer = e->aac_out;
    out.Length = sizeof e->aac_out;
    VO_U32 rc = e->aac_api.GetOutputData(e->aac, &out, &info);
    e->aac_n = 0;
    if (rc != VO_ERR_NONE && rc != VO_ERR_INPUT_BUFFER_SMALL)
        return at_err_set(err, AT_E_ENGINE, "AAC encoding failed (0x%x)", (unsigned)rc);
    emit(e, out.Buffer, out.Length);
    return 0;
}

/* Encodes n samples already at the output rate. */
static int encode(at_encoder *e, const int16_t *pcm, size_t n, at_err *err)
{
    if (n == 0) return 0;
    if (e->aac) {
        while (n > 0 && !e->stopped) {
            size_t k = AAC_FRAME - e->aac_n < n ? AAC_FRAME - e->aac_n : n;
            memcpy(e->aac_in + e->aac_n, pcm, k * sizeof *pcm);
            e->aac_n += k;
            pcm += k;
            n -= k;
            if (e->aac_n == AAC_FRAME && aac_frame(e, err) != 0) return err ? err->code : -1;
        }
        return e->stopped ? at_err_set(err, AT_E_CANCELLED, "the client went away") : 0;
    }
    if (e->sf) {
        if (sf_writef_short(e->sf, pcm, (sf_count_t)n) != (sf_count_t)n && !e->stopped)
            return at_err_set(err, AT_E_ENGINE, "encoding %s failed: %s", formats[e->fmt].name,
                              sf_strerror(e->sf));
    } else {
        /* PCM16 little-endian on the wire; this host is little-endian */
        emit(e, pcm, n * sizeof *pcm);
    }
    return e->stopped ? at_err_set(err, AT_E_CANCELLED, "the client went away") : 0;
}

static int resample_and_encode(at_encoder *e, const int16_t *pcm, size_t n, int last, at_err *err)
{
    if (!e->rs) return encode(e, pcm, n, err);
    if (grow((void **)&e->fin, &e->fin_cap, n ? n : 1, sizeof *e->fin))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    at_audio_s16_to_f32(pcm, n, e->fin);
    size_t got = 0;
    if (at_resampler_process(e->rs, e->fin, n, last, &e->fout, &e->fout_cap, &got, err))
        return err ? err->code : -1;
    if (grow((void **)&e->s16, &e->s16_cap, got ? got : 1, sizeof *e->s16))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    at_audio_f32_to_s16(e->fout, got, e->s16);
    return encode(e, e->s16, got, err);
}

int at_encoder_push(at_encoder *e, const int16_t *pcm, size_t n, at_err *err)
{
    if (e->finished) return at_err_set(err, AT_E_INVALID, "encoder already finished");
    return resample_and_encode(e, pcm, n, 0, err);
}

int at_encoder_finish(at_encoder *e, at_err *err)
{
    if (e->finished) return 0;
    int rc = e->rs ? resample_and_encode(e, NULL, 0, 1, err) : 0;
    if (!rc && e->aac && e->aac_n > 0) { /* the last frame, padded with silence */
        memset(e->aac_in + e->aac_n, 0, (AAC_FRAME - e->aac_n) * sizeof e->aac_in[0]);
        rc = aac_frame(e, err);
    }
    e->finished = 1;
    if (e->sf) {
        /* closing writes the codec's last frames and the stream's end */
        sf_close(e->sf);
        e->sf = NULL;
    }
    if (!rc && e->stopped) rc = at_err_set(err, AT_E_CANCELLED, "the client went away");
    return rc;
}

size_t at_encoder_bytes(const at_encoder *e) { return e->bytes; }

void at_encoder_free(at_encoder *e)
{
    if (!e) return;
    if (e->sf) sf_close(e->sf);
    if (e->aac) e->aac_api.Uninit(e->aac);
    at_resampler_free(e->rs);
    free(e->fin);
    free(e->fout);
    free(e->s16);
    free(e);
}
