/* weights.h - a model's named weight tensors, as a loader found them in a
 * file (memory-mapped, read-only), before they are given to a backend.
 *
 * Names and shapes are the file's (PyTorch order, outermost dimension
 * first); each model maps names to its layers itself.  Loaders are here
 * for the formats shared by every model (safetensors.h); a model's own
 * format (Whisper's ggml files) lives with the model. */
#ifndef AT_NN_WEIGHTS_H
#define AT_NN_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "compute/dtype.h"
#include "core/error.h"

#define AT_NN_NAME_MAX 160

typedef struct at_nn_wtensor {
    char name[AT_NN_NAME_MAX];
    at_dtype type;
    int n_dims;
    int64_t shape[4]; /* PyTorch order; unused dimensions are 1 */
    const void *data;
    size_t nbytes;
} at_nn_wtensor;

typedef struct at_nn_weights {
    void *map; /* the mapped file the tensors point into, owned */
    size_t map_size;
    at_nn_wtensor *t; /* owned */
    size_t n, cap;
} at_nn_weights;

/* Maps a whole file read-only; fails on an empty or irregular file. */
int at_nn_map_file(const char *path, void **map, size_t *size, at_err *err);
void at_nn_unmap(void *map, size_t size);

void at_nn_weights_free(at_nn_weights *w);
/* Appends a tensor (name copied); fails on a duplicate or overlong name,
 * or data outside the map. */
int at_nn_weights_add(at_nn_weights *w, const char *name, at_dtype type, int n_dims, const int64_t *shape,
                      const void *data, size_t nbytes, at_err *err);
const at_nn_wtensor *at_nn_weights_find(const at_nn_weights *w, const char *name);
int64_t at_nn_wtensor_numel(const at_nn_wtensor *t);

#endif
