/* conv_fft.h - stride-1 convolutions by FFT (overlap-save), for the CPU
 * backend's convolutions with long kernels (HiFi-GAN's residual blocks).
 *
 * A convolution of K taps costs K multiply-adds per input channel, output
 * channel and step when computed directly.  In the frequency domain a
 * block of B = 64 - K + 1 outputs costs one complex product per frequency
 * (33 of them, 4 real multiply-adds each): about 2.3 per step for any K,
 * so K = 7 and 11 need 3-5x fewer operations.  The products run as our
 * GEMM, one per frequency; the transforms run across channels, so that
 * every butterfly is a vector operation. */
#ifndef AT_COMPUTE_CONV_FFT_H
#define AT_COMPUTE_CONV_FFT_H

#include "compute/kernels.h"
#include "compute/pool.h"
#include "core/error.h"

/* Whether to compute a convolution of K taps of a dilation, C_in -> C_out
 * channels and M outputs by at_conv_fft: with AT_CONV_AUTO where that is
 * expected to be faster than the direct product, with AT_CONV_FFT
 * wherever at_conv_fft can. */
int at_conv_fft_wanted(at_conv_method how, int K, int C_in, int C_out, int dilation, int M);

/* Y[m] = bias + sum over k < K of X[off + m + dilation k] W_k for m < M,
 * then the epilogue ep (NULL: none) on each output row.  X: T rows of C_in
 * floats (zero outside); W: f32 [K][C_in][C_out]; Y rows ldy floats
 * apart.  C_in and C_out multiples of 16, K at most 33, dilation at most
 * 64.  A dilation splits the outputs into phases (r, r + d, ...), each a
 * convolution over every d-th input row, read in place; the phases share
 * the products.  The result equals the direct product within float
 * rounding. */
int at_conv_fft(at_compute *c, const float *X, int T, int C_in, int off, int dilation, int M, const float *W,
                int C_out, int K, const float *bias, const at_epilogue *ep, float *Y, int ldy, at_err *err);

#endif
