/* mel.c - Whisper's log-mel features, matching Hugging Face's
 * WhisperFeatureExtractor bit for bit up to float rounding:
 *   pad/truncate to 30 s, reflect-pad 200 samples each side (center=True),
 *   400-sample periodic Hann frames every 160 samples, |rfft|^2, drop the
 *   last of the 3001 frames, Slaney mel filters, log10(max(x, 1e-10)),
 *   clamp to (global max - 8), (x + 4) / 4.
 * The DFT is a dense product with an exact cos/sin table (N = 400 is not a
 * power of two), done in f32 on the compute layer's GEMM.  Against a
 * float64 reference: 3.3e-5 on the oracle's speech; with noise that puts
 * many bins just above the clamp floor, where the products cancel most,
 * up to 5.2e-4 (the model's tolerance is 1e-3).  A float64 kernel would
 * bring those bins back to ~2e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/gemm.h"
#include "engines/asr/whisper/model.h"

#define N_FFT  AT_WHISPER_N_FFT
#define N_BINS (N_FFT / 2 + 1)
#define PAD    (N_FFT / 2)
#define CHUNK  256 /* frames per product: bounds the temporaries to ~1 MB */
_Static_assert(PAD > AT_WHISPER_HOP, "the live frames cover the reflection's source");

static double hz_to_mel(double f)
{
    /* Slaney: linear below 1 kHz, logarithmic above */
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = 27.0 / log(6.4);
    if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) * logstep;
    return 3.0 * f / 200.0;
}

static double mel_to_hz(double m)
{
    const double min_log_hz = 1000.0, min_log_mel = 15.0, logstep = log(6.4) / 27.0;
    if (m >= min_log_mel) return min_log_hz * exp(logstep * (m - min_log_mel));
    return 200.0 * m / 3.0;
}

int at_whisper_mel_filters(int n_mels, float *out, at_err *err)
{
    if (n_mels < 1 || n_mels > 512)
        return at_err_set(err, AT_E_INVALID, "n_mels %d out of range 1..512", n_mels);
    double *ff = malloc(sizeof(double) * (size_t)(n_mels + 2));
    if (!ff) return at_err_set(err, AT_E_NOMEM, "out of memory");
    double mmin = hz_to_mel(0.0), mmax = hz_to_mel(AT_WHISPER_SAMPLE_RATE / 2.0);
    for (int i = 0; i < n_mels + 2; i++) ff[i] = mel_to_hz(mmin + (mmax - mmin) * i / (n_mels + 1));
    for (int m = 0; m < n_mels; m++) {
        double enorm = 2.0 / (ff[m + 2] - ff[m]);
        for (int k = 0; k < N_BINS; k++) {
            double f = (AT_WHISPER_SAMPLE_RATE / 2.0) * k / (N_BINS - 1);
            double down = (f - ff[m]) / (ff[m + 1] - ff[m]);
            double up = (ff[m + 2] - f) / (ff[m + 2] - ff[m + 1]);
            double v = down < up ? down : up;
            out[(size_t)m * N_BINS + k] = (float)((v > 0 ? v : 0.0) * enorm);
        }
    }
    free(ff);
    return 0;
}

int at_whisper_log_mel(int n_mels, const float *pcm, size_t n, float *out, at_err *err)
{
    if (n_mels < 1 || n_mels > 512)
        return at_err_set(err, AT_E_INVALID, "n_mels %d out of range 1..512", n_mels);
    if (!pcm && n) return at_err_set(err, AT_E_INVALID, "no audio");
    if (n > AT_WHISPER_N_SAMPLES) n = AT_WHISPER_N_SAMPLES; /* one 30 s window */
    const int T = AT_WHISPER_N_FRAMES;
    /* frames that start past the audio see only the zero padding (unless
     * the audio reaches the reflected end): their power, and so their mel
     * values, are exactly 0.  Only the live frames are computed and held,
     * so a stream's few seconds cost a few seconds' frames, not 30 s. */
    int live = T;
    if (n + PAD + 1 < AT_WHISPER_N_SAMPLES) {
        /* at least 2 (PAD > HOP): x holds the reflection's source body[1..PAD] */
        size_t first_zero = (PAD + n + AT_WHISPER_HOP - 1) / AT_WHISPER_HOP;
        if (first_zero < (size_t)T) live = (int)first_zero;
    }
    size_t padn = live == T ? AT_WHISPER_N_SAMPLES + 2 * PAD : (size_t)(live - 1) * AT_WHISPER_HOP + N_FFT;
    float *x = malloc(sizeof(float) * padn);
    /* the two products run on the compute layer's GEMM (see the top) */
    float *basis = malloc(sizeof(float) * N_FFT * 2 * N_BINS);
    float *frames = malloc(sizeof(float) * CHUNK * N_FFT);
    float *spec = malloc(sizeof(float) * CHUNK * 2 * N_BINS);
    float *power = malloc(sizeof(float) * (size_t)live * N_BINS);
    float *filt = malloc(sizeof(float) * (size_t)n_mels * N_BINS);
    float *melf = malloc(sizeof(float) * (size_t)n_mels * live);
    double *mel = malloc(sizeof(double) * (size_t)n_mels * live);
    float *scratch = aligned_alloc(64, AT_GEMM_SCRATCH * sizeof(float));
    int rc = 0;
    if (!x || !basis || !frames || !spec || !power || !filt || !melf || !mel || !scratch) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (log-mel)");
        goto out;
    }
    if ((rc = at_whisper_mel_filters(n_mels, filt, err))) goto out;
    at_isa isa = at_isa_detect();

    /* zero-padded to 30 s, then reflect-padded (edge sample not repeated);
     * with live < T the frames read neither the end nor its reflection */
    float *body = x + PAD;
    size_t nbody = padn - PAD < AT_WHISPER_N_SAMPLES ? padn - PAD : AT_WHISPER_N_SAMPLES;
    for (size_t i = 0; i < nbody; i++) body[i] = i < n ? pcm[i] : 0.0f;
    for (int i = 1; i <= PAD; i++) {
        /* analyzer: nbody >= 360 > PAD: body[1..PAD] were written above
         * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
        x[PAD - i] = body[i];
        if (live == T) body[AT_WHISPER_N_SAMPLES - 1 + i] = body[AT_WHISPER_N_SAMPLES - 1 - i];
    }

    /* basis[t][k] = w(t) cos(2 pi t k / N), basis[t][N_BINS + k] = -w(t) sin(...):
     * the periodic Hann window is folded into the table. */
    double cs[N_FFT], sn[N_FFT];
    for (int i = 0; i < N_FFT; i++) {
        cs[i] = cos(2.0 * M_PI * i / N_FFT);
        sn[i] = sin(2.0 * M_PI * i / N_FFT);
    }
    for (int t = 0; t < N_FFT; t++) {
        double w = 0.5 - 0.5 * cs[t];
        for (int k = 0; k < N_BINS; k++) {
            int idx = (t * k) % N_FFT;
            basis[(size_t)t * 2 * N_BINS + k] = (float)(w * cs[idx]);
            basis[(size_t)t * 2 * N_BINS + N_BINS + k] = (float)(-w * sn[idx]);
        }
    }
    for (int t0 = 0; t0 < live; t0 += CHUNK) {
        int nt = live - t0 < CHUNK ? live - t0 : CHUNK;
        for (int t = 0; t < nt; t++)
            memcpy(frames + (size_t)t * N_FFT, x + (size_t)(t0 + t) * AT_WHISPER_HOP, sizeof(float) * N_FFT);
        at_gemm(isa, nt, 2 * N_BINS, N_FFT, 1.0f, frames, N_FFT, basis, 2 * N_BINS, 0, 0, spec, 2 * N_BINS,
                scratch);
        for (int t = 0; t < nt; t++) {
            const float *s = spec + (size_t)t * 2 * N_BINS;
            float *p = power + (size_t)(t0 + t) * N_BINS;
            for (int k = 0; k < N_BINS; k++)
                p[k] = (float)((double)s[k] * s[k] + (double)s[N_BINS + k] * s[N_BINS + k]);
        }
    }
    /* mel[m][t] = sum_k filt[m][k] power[t][k] */
    at_gemm(isa, n_mels, live, N_BINS, 1.0f, filt, N_BINS, power, N_BINS, 1, 0, melf, live, scratch);
    const double floor_log = log10(1e-10); /* the frames past the audio */
    double mx = live < T ? floor_log : -1e300;
    for (size_t i = 0; i < (size_t)n_mels * live; i++) {
        double v = log10(melf[i] > 1e-10 ? (double)melf[i] : 1e-10);
        mel[i] = v;
        if (v > mx) mx = v;
    }
    for (int m = 0; m < n_mels; m++)
        for (int t = 0; t < T; t++) {
            double v = t < live ? mel[(size_t)m * live + t] : floor_log;
            v = v < mx - 8.0 ? mx - 8.0 : v;
            out[(size_t)m * T + t] = (float)((v + 4.0) / 4.0);
        }
out:
    free(x);
    free(basis);
    free(frames);
    free(spec);
    free(power);
    free(filt);
    free(melf);
    free(mel);
    free(scratch);
    return rc;
}
