/* random_weights.h - the machinery behind the random-weight Hugging Face
 * folders (nmt_random_model.c, vits_random_model.c): a list of tensors
 * (name, shape of up to 3 dimensions, how to fill it), written as one
 * model.safetensors of F16 or F32 values streamed a row at a time, and the
 * text files and folders beside it.  Each generator keeps only its
 * presets, its tensor list and its config writer.
 *
 * The values are a pure function of the seed, the tensor's name and the
 * row (the outermost index), so a tensor's weights do not depend on what
 * else the list holds: normal tensors are a sum of four 16-bit uniforms
 * per value, scaled to the tensor's std. */
#ifndef AT_TOOLS_RANDOM_WEIGHTS_H
#define AT_TOOLS_RANDOM_WEIGHTS_H

#include <stdint.h>

#include "core/error.h"

typedef enum {
    AT_RW_NORMAL, /* mean 0, std v */
    AT_RW_ONE,
    AT_RW_ZERO,
    AT_RW_CONST /* every value v */
} at_rw_init;

typedef struct at_rw_tensor {
    char name[112];
    int nd;           /* 1, 2 or 3: the dimensions the header lists */
    int64_t shape[3]; /* unused dimensions are 1 */
    at_rw_init init;
    float v; /* std of AT_RW_NORMAL, the value of AT_RW_CONST */
} at_rw_tensor;

/* The tensors in the order they are written; the first failure of
 * at_rw_add is kept in rc (with its message in err), and later calls do
 * nothing, so a list is built without checking each call. */
typedef struct at_rw_list {
    at_rw_tensor *t; /* owned: at_rw_list_free */
    int n, cap;
    int rc;
    at_err *err;
} at_rw_list;

/* Appends a tensor of shape [a], [a, b] or [a, b, c] (nd; pass 1 for the
 * unused dimensions) named by fmt; returns l->rc. */
int at_rw_add(at_rw_list *l, int nd, int64_t a, int64_t b, int64_t c, at_rw_init init, float v,
              const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* pfx.weight (1) and pfx.bias (0) of a norm over d. */
void at_rw_norm(at_rw_list *l, const char *pfx, int64_t d);
void at_rw_list_free(at_rw_list *l);

/* Values in one row (every dimension but the outermost). */
int64_t at_rw_row_len(const at_rw_tensor *t);
/* Values in the whole list. */
int64_t at_rw_params(const at_rw_list *l);

/* Writes dir/model.safetensors (F16 when f16, else F32) from the list,
 * through dir/model.safetensors.part renamed into place: the file is
 * complete or absent. */
int at_rw_write_safetensors(const at_rw_list *l, const char *dir, int f16, uint64_t seed, at_err *err);
/* Writes text to dir/name. */
int at_rw_write_text(const char *dir, const char *name, const char *text, at_err *err);
/* mkdir -p: the folder and those above it; -1 with errno on failure. */
int at_rw_mkdir_p(const char *dir);

#endif
