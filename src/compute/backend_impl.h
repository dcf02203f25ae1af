/* backend_impl.h - what a backend implements (src/compute only): its
 * table of functions and the heads of its backend and buffer objects.
 * Engines see these types only as opaque handles. */
#ifndef AT_COMPUTE_BACKEND_IMPL_H
#define AT_COMPUTE_BACKEND_IMPL_H

#include "compute/backend.h"

/* ---- implementing a backend ---------------------------------------------- */

/* What a backend provides.  The generic functions above check arguments
 * and shapes, then call these. */
typedef struct at_backend_ops {
    const char *name;
    /* memory */
    at_buffer *(*buffer_new)(at_backend *be, size_t bytes, at_err *err);
    at_buffer *(*buffer_from_host)(at_backend *be, const void *data, size_t bytes, at_err *err);
    void (*buffer_free)(at_buffer *b);
    int (*upload)(at_backend *be, at_tensor *dst, const void *src, at_err *err);
    int (*download)(at_backend *be, const at_tensor *src, void *dst, at_err *err);
    int (*sync)(at_backend *be, at_err *err);
    /* operations (arguments already checked) */
    int (*matmul)(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias, at_tensor *y,
                  at_err *err);
    int (*layer_norm)(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *b, float eps,
                      at_tensor *y, at_err *err);
    int (*act)(at_backend *be, at_act act, const at_tensor *x, at_tensor *y, at_err *err);
    int (*softmax)(at_backend *be, const at_tensor *x, at_tensor *y, at_err *err);
    int (*add)(at_backend *be, const at_tensor *a, const at_tensor *b, at_tensor *y, at_err *err);
    int (*scale)(at_backend *be, const at_tensor *x, float s, at_tensor *y, at_err *err);
    int (*get_rows)(at_backend *be, const at_tensor *table, const int *ids, int n, at_tensor *y, at_err *err);
    int (*copy)(at_backend *be, const at_tensor *src, at_tensor *dst, at_err *err);
    int (*conv1d)(at_backend *be, const at_tensor *x, const at_tensor *w, const at_tensor *bias,
                  const at_conv1d_params *p, int transposed, at_tensor *y, at_err *err);
    /* optional: w in the layout conv1d reads (at_conv1d_prepare); absent,
     * a prepared weight is w in f32 */
    int (*conv_prepare)(at_backend *be, const at_tensor *w, const at_conv1d_params *p, int transposed,
                        at_tensor *out, at_err *err);
    int (*attention)(at_backend *be, const at_tensor *q, const at_attn_seq *seqs, int n_seqs, int n_head,
                     float scale, at_tensor *o, at_err *err);
    void (*free)(at_backend *be);
} at_backend_ops;

/* The common head of every backend object (a backend's own struct starts
 * with it) and of every buffer. */
struct at_backend {
    const at_backend_ops *ops;
    const char *kind; /* buffers of the same kind can be used by any backend of it */
};
struct at_buffer {
    const at_backend_ops *ops; /* who frees it */
    const char *kind;
    void *base; /* backend memory: a host pointer for the CPU, a device pointer otherwise */
    size_t size;
};

/* 0 if t's dimensions above 1 are evenly strided more rows, as every
 * operation treats them; else AT_E_UNSUPPORTED naming the backend. */
int at_tensor_rows_even(const at_tensor *t, const char *backend, at_err *err);

/* The host address of a tensor's first element (CPU buffers only). */
static inline void *at_tensor_host(const at_tensor *t) { return (char *)t->buf->base + t->offs; }

#endif
