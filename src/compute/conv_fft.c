/* conv_fft.c - stride-1 convolutions by FFT, overlap-save.
 *
 * The outputs are cut into blocks of B = FFT_N - K + 1 steps.  Block j
 * reads the FFT_N input rows from off + j B on; the circular
 * cross-correlation of those rows with the kernel (zero-padded to FFT_N)
 * equals the convolution at its first B points.  Per block:
 *   1. the FFT of its rows, across channels (every butterfly a vector
 *      operation on C_in floats); two blocks share one complex FFT, as its
 *      real and imaginary parts;
 *   2. per frequency f, Y_f = X_f conj(W_f) summed over input channels,
 *      for all the blocks at once: a complex matrix product, done as
 *      three real GEMMs (Gauss: with a = Re X, b = Im X, c + i d the
 *      kernel's spectrum, k1 = (a + b) c, k2 = a (d - c), k3 = b (c + d),
 *      Re Y = k1 - k3, Im Y = k1 + k2) instead of the four of the plain
 *      product.  The kernel's spectrum is computed by the task of that
 *      frequency, into its own scratch and straight in the GEMM's packed
 *      layout, so it is never held for the whole model (it would be 5-20x
 *      the size of the kernel) nor copied;
 *   3. the inverse FFT, two blocks at once again, and bias and epilogue
 *      on the B outputs kept.
 * The three steps are rounds on the pool; a long signal goes through in
 * groups of blocks so that the spectra stay a few MB. */
#include "compute/conv_fft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compute/gemm.h"
#include "compute/pool_impl.h"

enum {
    FFT_N = 64,
    FFT_BINS = FFT_N / 2 + 1,
    VL = 16,                        /* floats per vector operation (channels come in multiples) */
    ROUND_FLOATS = 4 * 1024 * 1024, /* spectra of one round of blocks */
    MAX_DILATION = 64,              /* phases are found by a walk over them */
    BO = 4 * VL,                    /* outputs of a block of the spectra (their sums in registers) */
    BI = 256,                       /* inputs of a block of the spectra */
};

#if defined(__x86_64__) || defined(__i386__)
#define AT_FFT_X86 1
#define AT_AVX2    __attribute__((target("avx2,fma")))
#define AT_AVX512  __attribute__((target("avx512f,avx2,fma")))
#else
#define AT_FFT_X86 0
#endif
#define AT_INLINE static inline __attribute__((always_inline))

/* Sixteen floats: GCC lowers its operations to the widest vectors of the
 * function they are inlined into (zmm, ymm pairs, or SSE). */
typedef float vf __attribute__((vector_size(VL * sizeof(float))));

typedef struct fft_job {
    at_compute *c;
    const float *X, *W, *bias; /* W: [K][C_in][C_out] */
    const at_epilogue *ep;
    float *Y;
    int T, C_in, off, d, M, C_out, K, ldy;
    int B;                      /* outputs of a phase per block */
    int j0, nb;                 /* this round: first block, blocks */
    float *A, *S;               /* the round's spectra: [bin][block][3 C_in], [bin][block][3 C_out] */
    float *zero;                /* 3 max(C) zeros */
    float cs[FFT_N], sn[FFT_N]; /* cos, sin of 2 pi m / FFT_N */
} fft_job;

/* Global block b: its phase *r (outputs r, r + d, ...) and its first
 * output within the phase (*m0); returns the phase's outputs. */
static int block_of(const fft_job *j, int b, int *r, int *m0)
{
    for (int p = 0;; p++) {
        int Mp = (j->M - p + j->d - 1) / j->d, n = (Mp + j->B - 1) / j->B;
        if (b < n || p == j->d - 1) {
            *r = p;
            *m0 = b * j->B;
            return Mp;
        }
        b -= n;
    }
}

static int bitrev(int n)
{
    int r = 0;
    for (int b = 1; b < FFT_N; b <<= 1) r = (r << 1) | ((n & b) != 0);
    return r;
}

/* x *= wr + i wi, x a vector of real and one of imaginary parts. */
AT_INLINE void cmul(vf *xr, vf *xi, float wr, float wi)
{
    vf r = *xr * wr - *xi * wi;
    *xi = *xr * wi + *xi * wr;
    *xr = r;
}

/* (x, y) <- (x + y, x - y) on complex vectors. */
AT_INLINE void butterfly(vf *xr, vf *xi, vf *yr, vf *yi)
{
    vf sr = *xr + *yr, si = *xi + *yi;
    *yr = *xr - *yr;
    *yi = *xi - *yi;
    *xr = sr;
    *xi = si;
}

/* In place: FFT (sign -1 forward, +1 inverse, unscaled) of FFT_N vectors
 * of C floats (re, im), input in bit-reversed order.  The radix-2 stages
 * two at a time (len and 2 len): four points a pass through registers,
 * half the passes over the data that one stage at a time made. */
AT_INLINE void fft(float *re, float *im, int C, const float *cs, const float *sn, float sign)
{
    for (int len = 2; len < FFT_N; len <<= 2) { /* FFT_N = 4^3: three passes */
        int h = len / 2, s1 = FFT_N / len, s2 = FFT_N / (2 * len);
        for (int s = 0; s < FFT_N; s += 2 * len)
            for (int k = 0; k < h; k++) {
                /* stage len: (p0, p1), (p2, p3) by w1; stage 2 len: (p0, p2)
                 * by w2, (p1, p3) by w3 */
                float w1r = cs[k * s1], w1i = sign * sn[k * s1];
                float w2r = cs[k * s2], w2i = sign * sn[k * s2];
                float w3r = cs[(k + h) * s2], w3i = sign * sn[(k + h) * s2];
                float *r0 = re + (size_t)(s + k) * C, *i0 = im + (size_t)(s + k) * C;
                float *r1 = r0 + (size_t)h * C, *i1 = i0 + (size_t)h * C;
                float *r2 = r0 + (size_t)len * C, *i2 = i0 + (size_t)len * C;
                float *r3 = r2 + (size_t)h * C, *i3 = i2 + (size_t)h * C;
                for (int i = 0; i < C; i += VL) {
                    vf x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i;
                    memcpy(&x0r, r0 + i, sizeof x0r);
                    memcpy(&x0i, i0 + i, sizeof x0i);
                    memcpy(&x1r, r1 + i, sizeof x1r);
                    memcpy(&x1i, i1 + i, sizeof x1i);
                    memcpy(&x2r, r2 + i, sizeof x2r);
                    memcpy(&x2i, i2 + i, sizeof x2i);
                    memcpy(&x3r, r3 + i, sizeof x3r);
                    memcpy(&x3i, i3 + i, sizeof x3i);
                    if (k) { /* else w1 = w2 = 1 */
                        cmul(&x1r, &x1i, w1r, w1i);
                        cmul(&x3r, &x3i, w1r, w1i);
                    }
                    butterfly(&x0r, &x0i, &x1r, &x1i);
                    butterfly(&x2r, &x2i, &x3r, &x3i);
                    if (k) cmul(&x2r, &x2i, w2r, w2i);
                    cmul(&x3r, &x3i, w3r, w3i);
                    butterfly(&x0r, &x0i, &x2r, &x2i);
                    butterfly(&x1r, &x1i, &x3r, &x3i);
                    memcpy(r0 + i, &x0r, sizeof x0r);
                    memcpy(i0 + i, &x0i, sizeof x0i);
                    memcpy(r1 + i, &x1r, sizeof x1r);
                    memcpy(i1 + i, &x1i, sizeof x1i);
                    memcpy(r2 + i, &x2r, sizeof x2r);
                    memcpy(i2 + i, &x2i, sizeof x2i);
                    memcpy(r3 + i, &x3r, sizeof x3r);
                    memcpy(i3 + i, &x3i, sizeof x3i);
                }
            }
    }
}

/* Two blocks' input rows (b0 as the real part, b0 + 1 as the imaginary
 * one), transformed, then their spectra separated into A. */
AT_INLINE void forward_body(void *arg, int chunk, int ith)
{
    const fft_job *j = arg;
    int C = j->C_in, b0 = 2 * chunk, b1 = b0 + 1;
    float *re = j->c->scr[ith], *im = re + (size_t)FFT_N * C;
    /* a missing second block (odd count) reads zeros: its index range is
     * left empty rather than computed from an index past the end */
    int ph[2] = {0, 0}, m0[2] = {0, 0}, have[2] = {1, b1 < j->nb};
    for (int h = 0; h < 2; h++)
        if (have[h]) block_of(j, j->j0 + b0 + h, &ph[h], &m0[h]);
    for (int n = 0; n < FFT_N; n++) {
        int r = bitrev(n);
        for (int h = 0; h < 2; h++) {
            int t = have[h] ? j->off + ph[h] + j->d * (m0[h] + n) : -1;
            const float *src = t >= 0 && t < j->T ? j->X + (size_t)t * C : j->zero;
            memcpy((h ? im : re) + (size_t)r * C, src, (size_t)C * sizeof(float));
        }
    }
    fft(re, im, C, j->cs, j->sn, -1.0f);
    for (int f = 0; f < FFT_BINS; f++) {
        int g = (FFT_N - f) & (FFT_N - 1);
        const float *zr = re + (size_t)f * C, *zi = im + (size_t)f * C;
        const float *gr = re + (size_t)g * C, *gi = im + (size_t)g * C;
        float *a0 = j->A + ((size_t)f * j->nb + b0) * 3 * C, *a1 = a0 + 3 * C;
        int two = b1 < j->nb;
        for (int i = 0; i < C; i += VL) {
            vf ar, ai, br, bi;
            memcpy(&ar, zr + i, sizeof ar);
            memcpy(&ai, zi + i, sizeof ai);
            memcpy(&br, gr + i, sizeof br);
            memcpy(&bi, gi + i, sizeof bi);
            /* X0 = (Z_f + conj Z_g) / 2, X1 = (Z_f - conj Z_g) / 2i;
             * each as Re, Im, and their sum for Gauss's product */
            vf x0r = (ar + br) * 0.5f, x0i = (ai - bi) * 0.5f, x0s = x0r + x0i;
            memcpy(a0 + i, &x0r, sizeof x0r);
            memcpy(a0 + C + i, &x0i, sizeof x0i);
            memcpy(a0 + 2 * C + i, &x0s, sizeof x0s);
            if (two) {
                vf x1r = (ai + bi) * 0.5f, x1i = (br - ar) * 0.5f, x1s = x1r + x1i;
                memcpy(a1 + i, &x1r, sizeof x1r);
                memcpy(a1 + C + i, &x1i, sizeof x1i);
                memcpy(a1 + 2 * C + i, &x1s, sizeof x1s);
            }
        }
    }
}

/* Where row i, columns [o, o + VL) of a packed matrix of the given rows
 * go (o a multiple of VL, nr of VL: a vector stays within a panel). */
AT_INLINE float *packed_at(float *P, int rows, int nr, int i, int o)
{
    return P + (size_t)(o / nr) * rows * nr + (size_t)i * nr + o % nr;
}

/* Frequencies f and FFT_N / 2 - f (chunk f <= FFT_N / 4), a block of
 * BO outputs by BI inputs at a time: the kernel's conjugate spectrum
 * c + i d there, scaled by 1 / FFT_N for the inverse transform, as the
 * packed matrices c, d - c, c + d in this thread's scratch, then their
 * products with a + b, a and b of every block of the round, added into
 * k1, k2 and k3.  A block of the spectra is used while it is in cache:
 * whole spectra, written out and read back, made the products wait on
 * memory.  The two frequencies share their sums: their twiddles are
 * equal at even taps, opposite at odd. */
AT_INLINE void bin_body(void *arg, int f, int ith)
{
    const fft_job *j = arg;
    int Ci = j->C_in, Co = j->C_out, K = j->K, g = FFT_N / 2 - f, two = g != f, nr = AT_GEMM_PANEL;
    int bo_max = (BO + nr - 1) / nr * nr; /* whole panels */
    size_t mat = (size_t)BI * bo_max;
    float *P = j->c->scr[ith]; /* frequency f's three, then g's */
    float tc[FFT_N / 2 + 1], ts[FFT_N / 2 + 1];
    for (int k = 0; k < K; k++) {
        int m = (f * k) & (FFT_N - 1);
        tc[k] = j->cs[m] * (1.0f / FFT_N);
        ts[k] = j->sn[m] * (1.0f / FFT_N);
    }
    static const int a_of[3] = {2, 0, 1};
    for (int o0 = 0; o0 < Co; o0 += BO) {
        int bo = Co - o0 < BO ? Co - o0 : BO, nv = bo / VL;
        for (int i0 = 0; i0 < Ci; i0 += BI) {
            int bi = Ci - i0 < BI ? Ci - i0 : BI;
            if (bo % nr) /* the last panel's columns past bo: read by the GEMM, never kept */
                for (int q = 0; q < 6; q++)
                    for (int i = 0; i < bi; i++)
                        memset(packed_at(P + q * mat, bi, nr, i, bo), 0,
                               (size_t)(nr - bo % nr) * sizeof(float));
            for (int i = 0; i < bi; i++) {
                vf er[BO / VL] = {{0}}, ei[BO / VL] = {{0}}, or [BO / VL] = {{0}}, oi[BO / VL] = {{0}};
                for (int k = 0; k < K; k++) {
                    const float *w = j->W + ((size_t)k * Ci + i0 + i) * Co + o0;
                    for (int v = 0; v < BO / VL && v < nv; v++) {
                        vf x;
                        memcpy(&x, w + v * VL, sizeof x);
                        if (k & 1) {
                            or [v] += x * tc[k];
                            oi[v] += x * ts[k];
                        } else {
                            er[v] += x * tc[k];
                            ei[v] += x * ts[k];
                        }
                    }
                }
                for (int v = 0; v < nv; v++)
                    for (int h = 0; h <= two; h++) {
                        /* at FFT_N / 2 - f: cos' = (-1)^k cos, sin' = -(-1)^k sin */
                        vf wr = h ? er[v] - or [v] : er[v] + or [v], wi = h ? oi[v] - ei[v] : ei[v] + oi[v];
                        vf dc = wi - wr, cd = wr + wi;
                        float *q = packed_at(P + 3 * h * mat, bi, nr, i, v * VL);
                        memcpy(q, &wr, sizeof wr);
                        memcpy(q + mat, &dc, sizeof dc);
                        memcpy(q + 2 * mat, &cd, sizeof cd);
                    }
            }
            for (int h = 0; h <= two; h++) {
                int fh = h ? g : f;
                const float *A = j->A + (size_t)fh * j->nb * 3 * Ci + i0;
                float *S = j->S + (size_t)fh * j->nb * 3 * Co + o0;
                for (int q = 0; q < 3; q++)
                    at_gemm_packed(j->c->isa, j->nb, bo, bi, 1.0f, A + (size_t)a_of[q] * Ci, 3 * Ci,
                                   P + (size_t)(3 * h + q) * mat, i0 > 0, S + (size_t)q * Co, 3 * Co,
                                   j->c->pack[ith]);
            }
        }
    }
}

/* Two blocks' products back to time (b0 real, b0 + 1 imaginary), their
 * first B steps out with bias and epilogue. */
AT_INLINE void inverse_body(void *arg, int chunk, int ith)
{
    const fft_job *j = arg;
    int C = j->C_out, b0 = 2 * chunk, b1 = b0 + 1;
    float *re = j->c->scr[ith], *im = re + (size_t)FFT_N * C;
    for (int f = 0; f < FFT_BINS; f++) {
        const float *y0 = j->S + ((size_t)f * j->nb + b0) * 3 * C;
        const float *y1 = b1 < j->nb ? y0 + 3 * C : j->zero;
        int rf = bitrev(f), rg = bitrev((FFT_N - f) & (FFT_N - 1)), mirror = f > 0 && f < FFT_N / 2;
        for (int i = 0; i < C; i += VL) {
            vf k1, k2, k3, l1, l2, l3;
            memcpy(&k1, y0 + i, sizeof k1);
            memcpy(&k2, y0 + C + i, sizeof k2);
            memcpy(&k3, y0 + 2 * C + i, sizeof k3);
            memcpy(&l1, y1 + i, sizeof l1);
            memcpy(&l2, y1 + C + i, sizeof l2);
            memcpy(&l3, y1 + 2 * C + i, sizeof l3);
            vf ar = k1 - k3, ai = k1 + k2, br = l1 - l3, bi = l1 + l2;
            /* Z = Y0 + i Y1, and at -f the conjugates' sum */
            vf zr = ar - bi, zi = ai + br;
            memcpy(re + (size_t)rf * C + i, &zr, sizeof zr);
            memcpy(im + (size_t)rf * C + i, &zi, sizeof zi);
            if (mirror) {
                vf mr = ar + bi, mi = br - ai;
                memcpy(re + (size_t)rg * C + i, &mr, sizeof mr);
                memcpy(im + (size_t)rg * C + i, &mi, sizeof mi);
            }
        }
    }
    fft(re, im, C, j->cs, j->sn, 1.0f);
    for (int h = 0; h < 2; h++) {
        int b = h ? b1 : b0, r, m0;
        if (b >= j->nb) break;
        int Mp = block_of(j, j->j0 + b, &r, &m0), rows = Mp - m0 < j->B ? Mp - m0 : j->B;
        size_t first = (size_t)r + (size_t)j->d * m0; /* output row of the block's first step */
        const float *src = h ? im : re;
        const at_epilogue *ep = j->ep;
        int leaky = ep && ep->leaky;
        float slope = leaky ? ep->slope : 1.0f;
        const vf zero = {0};
        for (int n = 0; n < rows; n++) {
            size_t row = first + (size_t)j->d * n;
            float *y = j->Y + row * j->ldy;
            const float *x = src + (size_t)n * C, *res = ep && ep->res ? ep->res + row * ep->ldr : NULL;
            for (int i = 0; i < C; i += VL) {
                vf v, t;
                memcpy(&v, x + i, sizeof v);
                if (j->bias) {
                    memcpy(&t, j->bias + i, sizeof t);
                    v += t;
                }
                if (res) {
                    memcpy(&t, res + i, sizeof t);
                    v += t;
                }
                if (leaky) /* (v < 0) is -1 or 0 in each lane */
                    v *= 1.0f - __builtin_convertvector(v < zero, vf) * (slope - 1.0f);
                memcpy(y + i, &v, sizeof v);
            }
        }
    }
}

static void forward_plain(void *a, int k, int t) { forward_body(a, k, t); }
static void bin_plain(void *a, int k, int t) { bin_body(a, k, t); }
static void inverse_plain(void *a, int k, int t) { inverse_body(a, k, t); }
#if AT_FFT_X86
AT_AVX2 static void forward_avx2(void *a, int k, int t) { forward_body(a, k, t); }
AT_AVX2 static void bin_avx2(void *a, int k, int t) { bin_body(a, k, t); }
AT_AVX2 static void inverse_avx2(void *a, int k, int t) { inverse_body(a, k, t); }
AT_AVX512 static void forward_avx512(void *a, int k, int t) { forward_body(a, k, t); }
AT_AVX512 static void bin_avx512(void *a, int k, int t) { bin_body(a, k, t); }
AT_AVX512 static void inverse_avx512(void *a, int k, int t) { inverse_body(a, k, t); }
#endif

static int possible(int K, int C_in, int C_out, int dilation)
{
    return K >= 1 && K <= FFT_N / 2 + 1 && C_in > 0 && C_out > 0 && C_in % VL == 0 && C_out % VL == 0 &&
           dilation >= 1 && dilation <= MAX_DILATION;
}

int at_conv_fft_wanted(at_conv_method how, int K, int C_in, int C_out, int dilation, int M)
{
    if (how == AT_CONV_DIRECT || !possible(K, C_in, C_out, dilation) || M <= 0) return 0;
    if (how == AT_CONV_FFT) return 1;
    /* Short kernels gain little over the direct product (K = 3: 2.1
     * multiply-adds a step against 3), few channels or few blocks make
     * products too small to run at the GEMM's speed, and a phase shorter
     * than two blocks wastes much of its last one. */
    int B = FFT_N - K + 1;
    return K >= 7 && C_in >= 64 && C_out >= 64 && M / dilation >= 2 * B && M / B >= 8;
}

int at_conv_fft(at_compute *c, const float *X, int T, int C_in, int off, int dilation, int M, const float *W,
                int C_out, int K, const float *bias, const at_epilogue *ep, float *Y, int ldy, at_err *err)
{
    if (!possible(K, C_in, C_out, dilation))
        return at_err_set(err, AT_E_INVALID, "conv_fft: %d taps of dilation %d, %d -> %d channels", K,
                          dilation, C_in, C_out);
    if (M <= 0) return 0;
    int B = FFT_N - K + 1, blocks = 0;
    for (int r = 0; r < dilation && r < M; r++) blocks += ((M - r + dilation - 1) / dilation + B - 1) / B;
    int per_round = ROUND_FLOATS / (FFT_BINS * 3 * (C_in + C_out));
    per_round = per_round < 2 ? 2 : per_round & ~1;
    int nb_max = blocks < per_round ? blocks : per_round;
    int Cm = C_in > C_out ? C_in : C_out;
    size_t scr = (size_t)2 * FFT_N * Cm, bin = (size_t)6 * BI * 64; /* nr <= 32: BO in 64 */
    at_compute *r = at_compute_op_begin(c);
    fft_job j = {.c = r,
                 .X = X,
                 .W = W,
                 .bias = bias,
                 .ep = ep,
                 .Y = Y,
                 .T = T,
                 .C_in = C_in,
                 .off = off,
                 .d = dilation < M ? dilation : M,
                 .M = M,
                 .C_out = C_out,
                 .K = K,
                 .ldy = ldy,
                 .B = B};
    size_t spectra = (size_t)FFT_BINS * nb_max * 3 * (C_in + C_out);
    int rc = at_compute_reserve(r, scr > bin ? scr : bin, err);
    if (!rc) rc = at_compute_reserve_shared(r, spectra + (size_t)3 * Cm, err);
    if (rc) {
        pthread_mutex_unlock(&r->op_mu);
        return err && err->code < 0 ? err->code : AT_E_NOMEM;
    }
    for (int m = 0; m < FFT_N; m++) {
        j.cs[m] = (float)cos(2 * M_PI * m / FFT_N);
        j.sn[m] = (float)sin(2 * M_PI * m / FFT_N);
    }
    /* exact zeros where they belong, so that the spectra of real signals
     * stay real at 0 and FFT_N / 2 */
    j.sn[0] = j.sn[FFT_N / 2] = 0.0f;
    j.cs[FFT_N / 4] = j.cs[3 * FFT_N / 4] = 0.0f;
    j.A = r->shared;
    j.S = r->shared + (size_t)FFT_BINS * nb_max * 3 * C_in;
    j.zero = r->shared + spectra;
    memset(j.zero, 0, (size_t)3 * Cm * sizeof(float));
    at_chunk_fn fwd = forward_plain, per_bin = bin_plain, back = inverse_plain;
#if AT_FFT_X86
    if (r->isa >= AT_ISA_AVX512) {
        fwd = forward_avx512;
        per_bin = bin_avx512;
        back = inverse_avx512;
    } else if (r->isa >= AT_ISA_AVX2) {
        fwd = forward_avx2;
        per_bin = bin_avx2;
        back = inverse_avx2;
    }
#endif
    for (j.j0 = 0; j.j0 < blocks; j.j0 += nb_max) {
        j.nb = blocks - j.j0 < nb_max ? blocks - j.j0 : nb_max;
        at_compute_run(r, fwd, &j, (j.nb + 1) / 2);
        at_compute_run(r, per_bin, &j, FFT_N / 4 + 1);
        at_compute_run(r, back, &j, (j.nb + 1) / 2);
    }
    pthread_mutex_unlock(&r->op_mu);
    return 0;
}
