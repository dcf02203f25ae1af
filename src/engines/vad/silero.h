/* silero.h - the Silero VAD network (v5/v6, 16 kHz) in plain C.
 *
 * Weights come from the published ONNX file (silero_vad.onnx, MIT; also
 * shipped in npm's @ricky0123/vad-web).  Per 512-sample chunk (32 ms) the
 * network takes the chunk with the last 64 samples of the previous one in
 * front, and computes: a 256-point STFT as a convolution with the stored
 * basis (hop 128, reflection padding of 64 on the right, 4 frames,
 * magnitudes of 129 bins) -> four Conv1d(k=3, pad 1)+ReLU layers (129->128
 * stride 1, ->64 stride 2, ->64 stride 2, ->128 stride 1) -> one LSTM cell
 * (128, PyTorch gate order i f g o) -> ReLU -> Conv1d(128->1, k=1) ->
 * sigmoid: the speech probability.  ~0.7 M multiply-adds per chunk.
 *
 * The weights (at_silero) are read-only and shared by every stream; a
 * stream (at_silero_stream) owns the LSTM state and the 64-sample context. */
#ifndef AT_ENGINES_VAD_SILERO_H
#define AT_ENGINES_VAD_SILERO_H

#include <stddef.h>

#include "core/error.h"

#define AT_SILERO_CHUNK   512 /* samples per decision at 16 kHz */
#define AT_SILERO_CONTEXT 64  /* samples of the previous chunk fed again */
#define AT_SILERO_HIDDEN  128

typedef struct at_silero at_silero;
typedef struct at_silero_stream at_silero_stream;

/* Loads silero_vad.onnx (v5 or v6 layout).  Other files, including the
 * older v4 layout, are refused with a message naming what is missing. */
at_silero *at_silero_load(const char *path, at_err *err);
void at_silero_free(at_silero *m);

at_silero_stream *at_silero_stream_new(const at_silero *m, at_err *err);
void at_silero_stream_free(at_silero_stream *s);
/* Back to the state of a new stream (zero LSTM state and context). */
void at_silero_stream_reset(at_silero_stream *s);
/* Speech probability of the next AT_SILERO_CHUNK samples (float, [-1,1]). */
float at_silero_stream_prob(at_silero_stream *s, const float *chunk);
/* The LSTM state as the ONNX model's stateN: h[128] then c[128]. */
void at_silero_stream_state(const at_silero_stream *s, float out[2 * AT_SILERO_HIDDEN]);

#endif
