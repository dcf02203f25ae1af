/* layers.h - the transformer blocks the neural engines share (Whisper,
 * Marian/OPUS-MT, M2M100/NLLB; VITS's text encoder), on the compute
 * interface (compute/backend.h): linear layers, layer norms, attention
 * with KV caches, feed-forward, whole encoder and decoder layers in
 * pre-norm and post-norm form, and sinusoidal positions.
 *
 * A model loads its layers from a weight table (nn/weights.h) with a
 * loader that checks every shape, then calls the forward functions on a
 * batch: rows of one activation tensor, split into sequences.  Each
 * sequence attends only to its own rows (encoder) or to its own KV cache
 * and memory (decoder), so sequences of different lengths share every
 * matrix product without padding. */
#ifndef AT_NN_LAYERS_H
#define AT_NN_LAYERS_H

#include "compute/backend.h"
#include "nn/weights.h"

typedef struct at_nn_linear {
    at_tensor w; /* [out x in], any type */
    at_tensor b; /* [out] f32, or absent */
} at_nn_linear;

typedef struct at_nn_norm {
    at_tensor w, b; /* [d] f32; b may be absent */
} at_nn_norm;

typedef struct at_nn_attn {
    at_nn_linear q, k, v, o;
} at_nn_attn;

/* One encoder or decoder layer: self-attention, cross-attention (decoder
 * layers only), feed-forward, each with its layer norm. */
typedef struct at_nn_layer {
    at_nn_norm self_norm;
    at_nn_attn self;
    at_nn_norm cross_norm;
    at_nn_attn cross;
    at_nn_norm ffn_norm;
    at_nn_linear fc1, fc2;
    int has_cross;
} at_nn_layer;

typedef struct at_nn_cfg {
    int d_model, n_head, d_ffn;
    at_act act;       /* of the feed-forward */
    int pre_norm;     /* 1: x + f(norm(x)) (Whisper, NLLB); 0: norm(x + f(x)) (Marian, BART) */
    float eps;        /* layer norm epsilon */
    float attn_scale; /* <= 0: 1/sqrt(head size) */
} at_nn_cfg;

/* ---- loading ------------------------------------------------------------ */

/* Where a layer's tensors are in a weight table: printf patterns with one
 * %d, the layer's index ("encoder.blocks.%d.attn"), and the names of the
 * projections inside an attention ("query" or "q_proj").  Each name is
 * followed by ".weight" / ".bias" in the file. */
typedef struct at_nn_layer_names {
    const char *self_norm, *self_attn, *cross_norm, *cross_attn, *ffn_norm, *fc1, *fc2;
    const char *q, *k, *v, *o;
    int k_bias; /* 0: the key projection has no bias (Whisper) */
} at_nn_layer_names;

/* Makes backend tensors of a weight table's entries and remembers them, so
 * a model frees everything it loaded with one call. */
typedef struct at_nn_loader {
    const at_nn_weights *w;
    at_backend *be;
    at_tensor *owned;
    const void **owned_src; /* the file data a converted tensor was made from, else NULL */
    size_t n_owned, cap_owned;
    size_t bytes;    /* of the tensors made (weights used in place count too) */
    int matrices;    /* -1: matrices in the file's type; AT_DT_Q8_0: float ones quantized at load */
    size_t in_place; /* tensors made over the file's memory: while any, it must stay mapped */
} at_nn_loader;

void at_nn_loader_init(at_nn_loader *L, const at_nn_weights *w, at_backend *be);
/* Frees every tensor the loader made. */
void at_nn_loader_release(at_nn_loader *L);

/* Rows (outermost dimension) of a weight in the table, e.g. a layer's
 * feed-forward width; fails when missing or outside 1..max. */
int at_nn_weight_rows(const at_nn_weights *w, const char *name, int max, int *rows, at_err *err);
/* A matrix of rows x cols in the file's type, used in place where the
 * backend can (or quantized to L->matrices when set and the rows are
 * whole blocks); kernel > 0: a convolution weight [rows][cols][kernel],
 * as rows of cols * kernel, always as in the file. */
int at_nn_load_matrix(at_nn_loader *L, at_tensor *out, int rows, int cols, int kernel, const char *name,
                      at_err *err);
/* rows x cols values of any shape, converted to f32 (norms, biases,
 * position tables). */
int at_nn_load_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const char *name, at_err *err);
/* A tensor made from host floats (computed positions); copied. */
int at_nn_load_host_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const float *data, at_err *err);
/* A convolution kernel (PyTorch's layout, rows x cols host floats) in the
 * backend's own layout for convolutions with p (at_conv1d_prepare): use
 * it with p->prepared = 1. */
int at_nn_load_conv_f32(at_nn_loader *L, at_tensor *out, int rows, int cols, const float *data,
                        const at_conv1d_params *p, int transposed, at_err *err);

enum { AT_NN_NO_BIAS = 0, AT_NN_BIAS = 1 };
/* prefix.weight [out x in] and, with AT_NN_BIAS, prefix.bias [out]. */
int at_nn_load_linear(at_nn_loader *L, at_nn_linear *l, int out, int in, int bias, const char *prefix,
                      at_err *err);
/* prefix.weight and prefix.bias, [d] each. */
int at_nn_load_norm(at_nn_loader *L, at_nn_norm *n, int d, const char *prefix, at_err *err);
/* Layer i; names->cross_attn NULL: an encoder layer. */
int at_nn_load_layer(at_nn_loader *L, at_nn_layer *layer, const at_nn_cfg *cfg,
                     const at_nn_layer_names *names, int i, at_err *err);

/* ---- running --------------------------------------------------------------- */

/* Activations of a layer's sub-blocks, grown to the largest batch seen. */
typedef struct at_nn_scratch {
    int rows, d, d_ffn;
    at_tensor y, q, k, v, a, f;
} at_nn_scratch;

int at_nn_scratch_reserve(at_nn_scratch *s, at_backend *be, int rows, int d, int d_ffn, at_err *err);
void at_nn_scratch_free(at_nn_scratch *s);

/* y = x w^T + b */
int at_nn_linear_run(at_backend *be, const at_nn_linear *l, const at_tensor *x, at_tensor *y, at_err *err);
int at_nn_norm_run(at_backend *be, const at_nn_norm *n, float eps, const at_tensor *x, at_tensor *y,
                   at_err *err);

/* Rows row0..row0+n-1 of x: one sequence of an encoder batch. */
typedef struct at_nn_span {
    int row0, n;
} at_nn_span;

/* One encoder layer over x (rows of d_model, updated in place); each span
 * attends to itself only. */
int at_nn_encoder_layer(at_backend *be, const at_nn_layer *layer, const at_nn_cfg *cfg, at_tensor *x,
                        const at_nn_span *spans, int n_spans, at_nn_scratch *s, at_err *err);

/* One sequence of a decoder batch, for one layer. */
typedef struct at_nn_dec_seq {
    int row0, n;                /* its new tokens: rows of x */
    at_tensor self_k, self_v;   /* this layer's cache (rows: positions) */
    int past;                   /* positions already cached; the new ones go after */
    at_tensor cross_k, cross_v; /* this layer's keys and values of the memory */
    int n_cross;                /* memory rows attended to */
    at_tensor cross_q;          /* absent, or n rows receiving the cross-attention queries */
} at_nn_dec_seq;

/* One decoder layer over x: appends the new keys and values to each
 * sequence's cache (causal self-attention), attends to its memory, runs
 * the feed-forward. */
int at_nn_decoder_layer(at_backend *be, const at_nn_layer *layer, const at_nn_cfg *cfg, at_tensor *x,
                        const at_nn_dec_seq *seqs, int n_seqs, at_nn_scratch *s, at_err *err);

/* The keys and values a decoder layer's cross-attention reads, computed
 * once per memory (an encoder output). */
int at_nn_cross_kv(at_backend *be, const at_nn_layer *layer, const at_tensor *memory, at_tensor *k,
                   at_tensor *v, at_err *err);

/* ---- decoder stacks ------------------------------------------------------- */

/* One sequence's self-attention cache: every layer's keys and values,
 * n_ctx positions each, len of them filled. */
typedef struct at_nn_kv {
    int n_layer, n_ctx, d, len;
    /* n_layer tensors each of n_ctx rows of d.  One a layer, not one for
     * all: a cache fills from its first rows, and in separate tensors
     * those are the only pages touched (huge pages, which large tensors
     * get, would each back a few rows of a layer). */
    at_tensor *k, *v;
} at_nn_kv;

int at_nn_kv_init(at_nn_kv *kv, at_backend *be, int n_layer, int n_ctx, int d, at_err *err);
void at_nn_kv_release(at_nn_kv *kv);
/* Keeps the first n positions (n < 0: none); never grows the cache. */
void at_nn_kv_truncate(at_nn_kv *kv, int n);
/* dst = src (same sizes): beams that fork copy their parent's cache. */
int at_nn_kv_copy(at_backend *be, at_nn_kv *dst, const at_nn_kv *src, at_err *err);

/* What a sequence's cross-attention reads in every layer: the keys and
 * values of one memory (an encoder output), layer l's at rows l * stride,
 * len of them valid. */
typedef struct at_nn_memory {
    int n_layer, stride, len;
    at_tensor k, v; /* n_layer times the longest memory's rows, of d */
} at_nn_memory;

/* Room in mem for n_layer memories of up to n rows of d (stride n, len
 * 0).  On host memory each row is padded by a cache line, so that a block
 * of keys read a head at a time spreads over the L1 sets instead of a few
 * of them (rows 2 KB apart, Whisper base's, fell into two).
 * at_tensor_free of k and v frees it. */
int at_nn_memory_new(at_backend *be, at_nn_memory *mem, int n_layer, int n, int d, at_err *err);

/* Fills mem's keys and values for every layer from an encoder output of
 * n rows (at most the rows of k and v over n_layer); afterwards stride
 * and len are n. */
int at_nn_memory_compute(at_backend *be, const at_nn_layer *layers, const at_tensor *enc_out,
                         at_nn_memory *mem, at_err *err);

/* One sequence of a decoder batch: n new tokens (consecutive rows of x,
 * in batch order), its cache and its memory. */
typedef struct at_nn_stack_seq {
    int n;
    at_nn_kv *kv;
    const at_nn_memory *mem;
    /* NULL, or n_layers * n rows of d_model (layer-major) receiving each
     * layer's cross-attention queries: Whisper's word timestamps read the
     * attention of chosen heads from them */
    at_tensor *cross_q;
} at_nn_stack_seq;

/* Runs x through every decoder layer for a batch of sequences, appending
 * to their caches; on success each cache's len grows by its n, on failure
 * no len changes (rows written past len are never read). */
int at_nn_decoder_stack(at_backend *be, const at_nn_layer *layers, int n_layers, const at_nn_cfg *cfg,
                        at_tensor *x, const at_nn_stack_seq *seqs, int n_seqs, at_nn_scratch *s, at_err *err);

/* Logits of chosen rows: row0..row0+n-1 of x, to out (n x vocabulary,
 * host memory). */
typedef struct at_nn_logit_rows {
    int row0, n;
    float *out;
} at_nn_logit_rows;

/* Gathers the rows into y (norm applied when present), multiplies them by
 * w (vocabulary x d) plus bias into logits, and downloads each request's
 * part.  y and logits: scratch of at least the total rows. */
int at_nn_logits(at_backend *be, const at_nn_norm *norm, float eps, const at_tensor *x,
                 const at_nn_logit_rows *req, int n_req, const at_tensor *w, const at_tensor *bias,
                 at_tensor *y, at_tensor *logits, at_err *err);

/* ---- positions ------------------------------------------------------------ */

typedef enum {
    /* [sin | cos] of pos * exp(-ln(10000) j / (d/2 - 1)): Whisper's encoder,
     * fairseq's M2M100/NLLB (whose positions start at padding_idx + 1) */
    AT_NN_SIN_CONCAT = 0,
    /* Marian's: [sin of even | cos of odd] of pos / 10000^(2 (j/2) / d) */
    AT_NN_SIN_MARIAN = 1
} at_nn_sin_kind;

/* n_pos rows of d values, computed in f32 as PyTorch does. */
int at_nn_sinusoids(at_nn_sin_kind kind, int n_pos, int d, float *out, at_err *err);

#endif
