/* model.h - Whisper weights, features, encoder and decoder (no decoding
 * policy: that is decode.h; no text: that is tokenizer.h).
 *
 * A model is loaded once (memory-mapped, read-only) and shared by any
 * number of states; a state holds one stream's scratch memory, encoder
 * output and cross-attention K/V; a kv cache holds one decoder sequence's
 * self-attention K/V (beam search keeps several and copies them). */
#ifndef AT_ENGINES_ASR_WHISPER_MODEL_H
#define AT_ENGINES_ASR_WHISPER_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "compute/backend.h"
#include "core/error.h"

#define AT_WHISPER_SAMPLE_RATE   16000
#define AT_WHISPER_N_FFT         400
#define AT_WHISPER_HOP           160
#define AT_WHISPER_CHUNK_SECONDS 30
#define AT_WHISPER_N_SAMPLES     (AT_WHISPER_SAMPLE_RATE * AT_WHISPER_CHUNK_SECONDS)
#define AT_WHISPER_N_FRAMES      (AT_WHISPER_N_SAMPLES / AT_WHISPER_HOP) /* 3000 */

typedef struct at_whisper_hparams {
    int n_vocab;       /* 51864 (.en), 51865, 51866 (large-v3) */
    int n_audio_ctx;   /* 1500 */
    int n_audio_state; /* d_model of the encoder */
    int n_audio_head;
    int n_audio_layer;
    int n_text_ctx; /* 448 */
    int n_text_state;
    int n_text_head;
    int n_text_layer;
    int n_mels; /* 80 or 128 */
    int ftype;  /* storage type of the big matrices (informative) */
} at_whisper_hparams;

/* Special token ids, derived from n_vocab the way OpenAI's tokenizer does. */
typedef struct at_whisper_special {
    int eot, sot, translate, transcribe, solm, prev, nosp, not_, beg;
    int n_langs; /* 99, or 100 for large-v3; 0 for English-only */
    int is_multilingual;
} at_whisper_special;

typedef struct at_whisper_model at_whisper_model;
typedef struct at_whisper_state at_whisper_state;
typedef struct at_whisper_kv at_whisper_kv;

/* path: ggml .bin file or Hugging Face folder (config.json +
 * model.safetensors).  Sizes in the file are checked against its length;
 * a corrupt or truncated file fails with AT_E_CORRUPT. */
at_whisper_model *at_whisper_model_load(const char *path, at_err *err);
/* The same on GPU `device` (the CUDA backend: weights uploaded once, every
 * state's activations and caches on the device); device < 0: the CPU.
 * Fails when the build or the machine has no such GPU. */
at_whisper_model *at_whisper_model_load_on(const char *path, int device, at_err *err);
void at_whisper_model_free(at_whisper_model *m);
const at_whisper_hparams *at_whisper_model_hparams(const at_whisper_model *m);
const at_whisper_special *at_whisper_model_special(const at_whisper_model *m);

/* The vocabulary stored in a ggml file (byte strings by id), or 0 tokens
 * for a Hugging Face folder (the tokenizer reads vocab.json etc. itself). */
size_t at_whisper_model_vocab(const at_whisper_model *m, const char *const **tokens, const size_t **lens);

/* Log-mel spectrogram as Whisper defines it (400-point Hann STFT, hop 160,
 * Slaney mel filters, log10, clamp to max-8, (x+4)/4).  The audio is padded
 * with zeros to 30 s; out is n_mels x AT_WHISPER_N_FRAMES, row-major. */
int at_whisper_mel(const at_whisper_model *m, const float *pcm, size_t n, float *out, at_err *err);

at_whisper_state *at_whisper_state_new(const at_whisper_model *m, int n_threads, at_err *err);
/* The same on a thread pool the caller owns and shares (one for every
 * request and stream of a process; see at_compute_new_client); the pool
 * outlives the state. */
at_whisper_state *at_whisper_state_new_shared(const at_whisper_model *m, at_compute *c, at_err *err);
void at_whisper_state_free(at_whisper_state *s);

/* Encodes mel (n_mels x AT_WHISPER_N_FRAMES layout, as at_whisper_mel
 * writes it) and computes the cross-attention K/V.  audio_ctx: number of
 * encoder positions to compute (<= n_audio_ctx; 0 = full 1500); a smaller
 * value encodes only the first 2*audio_ctx mel frames (for short audio). */
int at_whisper_encode(at_whisper_state *s, const float *mel, int audio_ctx, at_err *err);
/* The model a state was made for. */
const at_whisper_model *at_whisper_state_model(const at_whisper_state *s);
/* Positions at_whisper_encode(s, mel, audio_ctx) computes. */
int at_whisper_encode_positions(const at_whisper_state *s, int audio_ctx);

/* Several windows encoded as one batch (concurrent streams and requests):
 * each window's convolutions apart, then every encoder layer over all
 * their positions at once (one weight pass, one round of the pool per
 * product), and each window's keys and values into its own state.  The
 * batch's activations live in a workspace with room for max_rows
 * positions in all, on its own backend (a client of pool, or a stream of
 * the model's GPU). */
typedef struct at_whisper_encbatch at_whisper_encbatch;
at_whisper_encbatch *at_whisper_encbatch_new(const at_whisper_model *m, at_compute *pool, int max_rows,
                                             at_err *err);
void at_whisper_encbatch_free(at_whisper_encbatch *b);
/* Window i: mel[i] and audio_ctx[i] as at_whisper_encode takes them, into
 * st[i] (states of b's model, distinct, none in use elsewhere meanwhile).
 * The same encodings as n calls of at_whisper_encode.  More positions
 * than the workspace holds: AT_E_TOO_LARGE, and no state has an
 * encoding. */
int at_whisper_encode_batch(at_whisper_encbatch *b, at_whisper_state *const *st, const float *const *mel,
                            const int *audio_ctx, int n, at_err *err);

/* Copies the last encoder output (n_ctx x n_audio_state, row-major) into
 * out, which has room for cap floats. */
int at_whisper_encoder_output(at_whisper_state *s, float *out, size_t cap, int *n_ctx, at_err *err);

at_whisper_kv *at_whisper_kv_new(const at_whisper_model *m, at_err *err);
void at_whisper_kv_free(at_whisper_kv *kv);
void at_whisper_kv_copy(at_whisper_kv *dst, const at_whisper_kv *src);
int at_whisper_kv_len(const at_whisper_kv *kv);        /* tokens cached */
void at_whisper_kv_truncate(at_whisper_kv *kv, int n); /* keep first n */

/* Runs the decoder on n new tokens appended after what kv holds (self-
 * attention is causal), using the state's last encoding.  Writes n x
 * n_vocab logits if all_logits, else only the last position's n_vocab. */
int at_whisper_decode(at_whisper_state *s, at_whisper_kv *kv, const int *tokens, int n, int all_logits,
                      float *logits, at_err *err);

/* One sequence of a batched decoder call. */
typedef struct at_whisper_seq {
    at_whisper_kv *kv; /* its own cache: no two sequences share one */
    const int *tokens; /* n new tokens, appended after what kv holds */
    int n;
    const at_whisper_state *audio; /* whose encoding it attends to; NULL: the decoding state's */
    float *logits;                 /* n_vocab floats (n x n_vocab with all_logits); NULL: none */
    int all_logits;
} at_whisper_seq;

/* Runs the decoder on several sequences at once: every linear layer is one
 * matrix product over all their rows, so the weights are read once for
 * the batch (beams, samples, or the steps of concurrent streams).  Each
 * sequence's logits equal what at_whisper_decode() gives it alone.  On
 * failure no cache has changed. */
int at_whisper_decode_batch(at_whisper_state *s, const at_whisper_seq *seqs, int n_seqs, at_err *err);

/* ---- additions (model core) ---------------------------------------- */

/* at_whisper_mel with an explicit number of mel bins (80 or 128, any
 * value in 1..512 works), independent of a model.  out: n_mels x 3000. */
int at_whisper_log_mel(int n_mels, const float *pcm, size_t n, float *out, at_err *err);
/* The Slaney-scale, Slaney-normalized filterbank WhisperFeatureExtractor
 * uses (0-8 kHz, 201 FFT bins): out is n_mels x 201. */
int at_whisper_mel_filters(int n_mels, float *out, at_err *err);

/* ---- word alignment ------------------------------------------------- */

#define AT_WHISPER_MAX_HEADS 64

/* A decoder cross-attention head: layer, head within it. */
typedef struct at_whisper_head {
    int layer, head;
} at_whisper_head;

/* The heads whose cross-attention follows the speech in time: the list of
 * a Hugging Face folder's generation_config.json ("alignment_heads") when
 * it has one, else the preset OpenAI published for a model of these
 * dimensions (tiny to large-v3 and turbo; large v1 and v2 cannot be told
 * apart and get v2's), else, for any other model, every head of the
 * decoder's second half, as OpenAI does.  Writes at most
 * AT_WHISPER_MAX_HEADS; returns how many. */
int at_whisper_alignment_heads(const at_whisper_model *m, at_whisper_head *out);

/* Decodes tokens[0..n) from scratch in kv (emptied first) on the state's
 * last encoding, and writes
 *   qk: n_heads x n x n_frames floats, the score q.k / sqrt(head size)
 *       heads[h] gives encoder position f from token position t, before
 *       the softmax (n_frames <= the positions encoded);
 *   probs (n floats, or NULL): probs[t] the probability of tokens[t+1]
 *       after tokens[0..t], in a softmax over the text tokens alone
 *       (probs[n-1] = 0).
 * The work is one decoder pass over the n tokens, in chunks. */
int at_whisper_cross_scores(at_whisper_state *s, at_whisper_kv *kv, const int *tokens, int n,
                            const at_whisper_head *heads, int n_heads, int n_frames, float *qk, float *probs,
                            at_err *err);

/* Bytes of weights the model maps or owns (for reports). */
size_t at_whisper_model_weight_bytes(const at_whisper_model *m);

#endif
