/* weights.c - the table of a model file's tensors. */
#include "nn/weights.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int at_nn_map_file(const char *path, void **map, size_t *size, at_err *err)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return at_err_set(err, AT_E_IO, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return at_err_set(err, AT_E_IO, "%s is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return at_err_set(err, AT_E_CORRUPT, "%s is empty", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return at_err_set(err, AT_E_IO, "cannot map %s", path);
    *map = p;
    *size = (size_t)st.st_size;
    return 0;
}

void at_nn_unmap(void *map, size_t size)
{
    if (map) munmap(map, size);
}

void at_nn_weights_free(at_nn_weights *w)
{
    if (!w) return;
    at_nn_unmap(w->map, w->map_size);
    free(w->t);
    memset(w, 0, sizeof *w);
}

int at_nn_weights_add(at_nn_weights *w, const char *name, at_dtype type, int n_dims, const int64_t *shape,
                      const void *data, size_t nbytes, at_err *err)
{
    if (strlen(name) >= AT_NN_NAME_MAX) return at_err_set(err, AT_E_CORRUPT, "tensor name too long");
    if (n_dims < 1 || n_dims > 4)
        return at_err_set(err, AT_E_CORRUPT, "tensor %s has %d dimensions", name, n_dims);
    if (w->map && ((const char *)data < (const char *)w->map ||
                   (size_t)((const char *)data - (const char *)w->map) > w->map_size ||
                   nbytes > w->map_size - (size_t)((const char *)data - (const char *)w->map)))
        return at_err_set(err, AT_E_CORRUPT, "tensor %s lies outside the file", name);
    if (at_nn_weights_find(w, name)) return at_err_set(err, AT_E_CORRUPT, "duplicate tensor %s", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 64;
        if (nc > 100000) return at_err_set(err, AT_E_CORRUPT, "too many tensors");
        at_nn_wtensor *t = realloc(w->t, nc * sizeof *t);
        if (!t) return at_err_set(err, AT_E_NOMEM, "out of memory");
        w->t = t;
        w->cap = nc;
    }
    at_nn_wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < 4; i++) t->shape[i] = i < n_dims ? shape[i] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

const at_nn_wtensor *at_nn_weights_find(const at_nn_weights *w, const char *name)
{
    /* linear: a few hundred tensors, searched once at load */
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return &w->t[i];
    return NULL;
}

int64_t at_nn_wtensor_numel(const at_nn_wtensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}
