/* npy.h - minimal NumPy .npy reader/writer for float32 arrays (the format
 * of the reference outputs and of whisper-check's dumps).  Only '<f4',
 * C order, header versions 1-3. */
#ifndef AT_NN_NPY_H
#define AT_NN_NPY_H

#include <stddef.h>

#include "core/error.h"

#define AT_NPY_MAX_DIMS 8

typedef struct at_npy {
    float *data; /* owned, count() floats */
    int ndim;
    size_t shape[AT_NPY_MAX_DIMS];
} at_npy;

size_t at_npy_count(const at_npy *a);
/* Reads a float32 array. max_bytes bounds the data size (0 = 1 GiB). */
int at_npy_read(const char *path, at_npy *out, size_t max_bytes, at_err *err);
void at_npy_free(at_npy *a);
int at_npy_write(const char *path, const float *data, const size_t *shape, int ndim, at_err *err);

#endif
