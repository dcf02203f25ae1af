/* vad.c - the utterance segmenter and the energy + spectral-flatness
 * detector (vad.h); Silero's network is in silero.c. */
#include "engines/vad/vad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NFFT   512
#define BIN_LO 8   /* 250 Hz: below is hum and rumble */
#define BIN_HI 128 /* 4 kHz: where voiced speech has its structure */

struct at_vad {
    at_vad_config c;
    float win[AT_VAD_FRAME];
    float cosv[NFFT / 2], sinv[NFFT / 2];
    float re[NFFT], im[NFFT];
    float prev_pow[BIN_HI - BIN_LO]; /* last frame's spectrum: flatness over two frames */
    at_silero_stream *sil;           /* NULL: the energy detector */
    int silero_speech;               /* last Silero decision (for the hysteresis) */
    float frame[AT_SILERO_CHUNK];
    size_t frame_len, n_frame;
    float floor_db;
    int run_speech;  /* speech frames in a row */
    int run_silence; /* non-speech frames in a row */
    int in_utt;
    size_t samples;
};

void at_vad_config_default(at_vad_config *c)
{
    c->min_db = -50.0f;
    c->snr_db = 6.0f;
    c->max_flatness = 0.30f;
    c->silero = NULL;
    c->threshold = 0.5f;
    c->silence_ms = 600;
}

void at_vad_reset(at_vad *v)
{
    memset(v->prev_pow, 0, sizeof v->prev_pow);
    v->n_frame = 0;
    v->floor_db = -70.0f;
    v->run_speech = v->run_silence = v->in_utt = 0;
    v->samples = 0;
    v->silero_speech = 0;
    if (v->sil) at_silero_stream_reset(v->sil);
}

at_vad *at_vad_new(const at_vad_config *c, at_err *err)
{
    at_vad *v = calloc(1, sizeof *v);
    if (!v) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (c)
        v->c = *c;
    else
        at_vad_config_default(&v->c);
    v->frame_len = AT_VAD_FRAME;
    if (v->c.silero) {
        if (!(v->sil = at_silero_stream_new(v->c.silero, err))) {
            free(v);
            return NULL;
        }
        v->frame_len = AT_SILERO_CHUNK;
    }
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < AT_VAD_FRAME; i++) v->win[i] = (float)(0.5 - 0.5 * cos(2 * pi * i / AT_VAD_FRAME));
    for (int i = 0; i < NFFT / 2; i++) {
        v->cosv[i] = (float)cos(2 * pi * i / NFFT);
        v->sinv[i] = (float)-sin(2 * pi * i / NFFT);
    }
    at_vad_reset(v);
    return v;
}

void at_vad_free(at_vad *v)
{
    if (!v) return;
    at_silero_stream_free(v->sil);
    free(v);
}

size_t at_vad_frame_len(const at_vad *v) { return v->frame_len; }
const char *at_vad_kind(const at_vad *v) { return v->sil ? "silero" : "energy"; }

size_t at_vad_samples(const at_vad *v) { return v->samples; }

/* In-place iterative radix-2 FFT of v->re/v->im. */
static void fft(at_vad *v)
{
    float *re = v->re, *im = v->im;
    for (int i = 1, j = 0; i < NFFT; i++) {
        int bit = NFFT >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            float t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (int len = 2; len <= NFFT; len <<= 1) {
        int step = NFFT / len;
        for (int i = 0; i < NFFT; i += len)
            for (int k = 0; k < len / 2; k++) {
                float wr = v->cosv[k * step], wi = v->sinv[k * step];
                float *ar = &re[i + k], *ai = &im[i + k];
                float *br = &re[i + k + len / 2], *bi = &im[i + k + len / 2];
                float tr = *br * wr - *bi * wi, ti = *br * wi + *bi * wr;
                *br = *ar - tr;
                *bi = *ai - ti;
                *ar += tr;
                *ai += ti;
            }
    }
}

static int energy_frame(at_vad *v, const float *x, float *flatness)
{
    double e = 0;
    for (int i = 0; i < AT_VAD_FRAME; i++) e += (double)x[i] * x[i];
    float db = (float)(10.0 * log10(e / AT_VAD_FRAME + 1e-12));
    memset(v->re, 0, sizeof v->re);
    memset(v->im, 0, sizeof v->im);
    for (int i = 0; i < AT_VAD_FRAME; i++) v->re[i] = x[i] * v->win[i];
    fft(v);
    /* flatness = geometric / arithmetic mean of the power, over this frame
     * and the last (two periodograms halve the variance that makes noise
     * look peaky) */
    double lsum = 0, asum = 0;
    int nb = BIN_HI - BIN_LO;
    for (int b = 0; b < nb; b++) {
        float p = v->re[b + BIN_LO] * v->re[b + BIN_LO] + v->im[b + BIN_LO] * v->im[b + BIN_LO];
        float avg = 0.5f * (p + v->prev_pow[b]) + 1e-12f;
        v->prev_pow[b] = p;
        lsum += log(avg);
        asum += avg;
    }
    float flat = (float)(exp(lsum / nb) / (asum / nb));
    if (!isfinite(db) || !isfinite(flat)) { /* not sound: leave the floor alone */
        memset(v->prev_pow, 0, sizeof v->prev_pow);
        if (flatness) *flatness = 1.0f;
        return 0;
    }
    /* noise floor: follows drops at once, rises with a ~2 s time constant */
    if (db < v->floor_db)
        v->floor_db = db < -100.0f ? -100.0f : db;
    else
        v->floor_db += 0.01f * (db - v->floor_db);
    if (flatness) *flatness = flat;
    return db > v->c.min_db && db > v->floor_db + v->c.snr_db && flat < v->c.max_flatness;
}

int at_vad_frame(at_vad *v, const float *x, float *score)
{
    if (!v->sil) return energy_frame(v, x, score);
    float p = at_silero_stream_prob(v->sil, x);
    if (score) *score = p;
    /* hysteresis: a dip inside speech is not yet silence */
    float th = v->silero_speech ? fmaxf(v->c.threshold - 0.15f, 0.01f) : v->c.threshold;
    v->silero_speech = p >= th;
    return v->silero_speech;
}

int at_vad_feed(at_vad *v, const float *pcm, size_t n, int *started, int *ended, size_t *end_sample)
{
    if (started) *started = 0;
    if (ended) *ended = 0;
    int frame_ms = (int)(v->frame_len * 1000 / 16000);
    int hang = (v->c.silence_ms + frame_ms - 1) / frame_ms; /* at least silence_ms */
    int onset = (AT_VAD_ONSET_MS + frame_ms / 2) / frame_ms;
    if (hang < 1) hang = 1;
    if (onset < 1) onset = 1;
    while (n > 0) {
        size_t k = v->frame_len - v->n_frame;
        if (k > n) k = n;
        memcpy(v->frame + v->n_frame, pcm, k * sizeof *pcm);
        v->n_frame += k;
        v->samples += k;
        pcm += k;
        n -= k;
        if (v->n_frame < v->frame_len) break;
        v->n_frame = 0;
        int sp = at_vad_frame(v, v->frame, NULL);
        if (sp) {
            v->run_speech++;
            v->run_silence = 0;
            if (!v->in_utt && v->run_speech >= onset) {
                v->in_utt = 1;
                if (started) *started = 1;
            }
        } else {
            v->run_speech = 0;
            v->run_silence++;
            if (v->in_utt && v->run_silence >= hang) {
                v->in_utt = 0;
                if (ended) *ended = 1;
                if (end_sample) *end_sample = v->samples - (size_t)v->run_silence * v->frame_len;
            }
        }
    }
    return v->in_utt;
}
