/* random_weights.c - random-weight model.safetensors files and the
 * folders around them (random_weights.h). */
#include "tools/random_weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compute/dtype.h"

int at_rw_add(at_rw_list *l, int nd, int64_t a, int64_t b, int64_t c, at_rw_init init, float v,
              const char *fmt, ...)
{
    if (l->rc) return l->rc;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        at_rw_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t) return l->rc = at_err_set(l->err, AT_E_NOMEM, "out of memory");
        l->t = t;
        l->cap = cap;
    }
    at_rw_tensor *t = &l->t[l->n];
    *t = (at_rw_tensor){.nd = nd, .shape = {a, b, c}, .init = init, .v = v};
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof t->name)
        return l->rc = at_err_set(l->err, AT_E_INVALID, "tensor name %s... too long", t->name);
    l->n++;
    return 0;
}

void at_rw_norm(at_rw_list *l, const char *pfx, int64_t d)
{
    at_rw_add(l, 1, d, 1, 1, AT_RW_ONE, 0, "%s.weight", pfx);
    at_rw_add(l, 1, d, 1, 1, AT_RW_ZERO, 0, "%s.bias", pfx);
}

void at_rw_list_free(at_rw_list *l)
{
    free(l->t);
    l->t = NULL;
    l->n = l->cap = 0;
}

int64_t at_rw_row_len(const at_rw_tensor *t) { return t->shape[1] * t->shape[2]; }

int64_t at_rw_params(const at_rw_list *l)
{
    int64_t n = 0;
    for (int i = 0; i < l->n; i++) n += l->t[i].shape[0] * at_rw_row_len(&l->t[i]);
    return n;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* One row (the outermost index): a sum of four uniforms per value (close
 * enough to a normal, and a quarter of the draws of Box-Muller's
 * logarithms). */
static void fill_row(const at_rw_tensor *t, uint64_t seed, int64_t row, float *x, int64_t n)
{
    if (t->init != AT_RW_NORMAL) {
        float v = t->init == AT_RW_ONE ? 1.0f : t->init == AT_RW_CONST ? t->v : 0.0f;
        for (int64_t i = 0; i < n; i++) x[i] = v;
        return;
    }
    uint64_t s = seed ^ hash_name(t->name) ^ ((uint64_t)row * 0x2545f4914f6cdd1dull);
    const float k = t->v / 37837.2f; /* std of a sum of four 16-bit uniforms */
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix(&s);
        int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) + (int32_t)((r >> 32) & 0xffff) +
                      (int32_t)(r >> 48);
        x[i] = (float)(sum - 131070) * k;
    }
}

/* The safetensors header: names, types, shapes and offsets, padded with
 * spaces so the data starts on a 64-byte boundary. */
static char *header(const at_rw_list *l, int f16, uint64_t *hlen, at_err *err)
{
    /* an entry is at most its name and ~150 bytes of keys and numbers */
    size_t cap = 256 + (size_t)l->n * (sizeof l->t[0].name + 160), len = 0;
    char *h = malloc(cap);
    if (!h) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    uint64_t off = 0, esz = f16 ? 2 : 4;
    len += (size_t)snprintf(h, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < l->n; i++) {
        const at_rw_tensor *t = &l->t[i];
        uint64_t bytes = (uint64_t)t->shape[0] * (uint64_t)at_rw_row_len(t) * esz;
        char shape[96];
        if (t->nd == 3)
            snprintf(shape, sizeof shape, "%lld,%lld,%lld", (long long)t->shape[0], (long long)t->shape[1],
                     (long long)t->shape[2]);
        else if (t->nd == 2)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->shape[0], (long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
        len += (size_t)snprintf(
            h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%llu,%llu]}",
            t->name, f16 ? "F16" : "F32", shape, (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    h[len++] = '}';
    while ((8 + len) % 64) h[len++] = ' ';
    *hlen = len;
    return h;
}

int at_rw_write_safetensors(const at_rw_list *l, const char *dir, int f16, uint64_t seed, at_err *err)
{
    char tmp[4200], path[4200];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/model.safetensors.part", dir) >= (int)sizeof tmp)
        return at_err_set(err, AT_E_INVALID, "output path too long");
    uint64_t hlen = 0;
    char *h = header(l, f16, &hlen, err);
    if (!h) return AT_E_NOMEM;
    int64_t wmax = 1;
    for (int i = 0; i < l->n; i++) wmax = at_rw_row_len(&l->t[i]) > wmax ? at_rw_row_len(&l->t[i]) : wmax;
    float *row = malloc((size_t)wmax * sizeof *row);
    uint16_t *half = malloc((size_t)wmax * sizeof *half);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!row || !half) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    if (!f) {
        rc = at_err_set(err, AT_E_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hlen >> (8 * i));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(h, 1, hlen, f) != hlen;
    for (int i = 0; i < l->n && !bad; i++) {
        const at_rw_tensor *t = &l->t[i];
        int64_t n = at_rw_row_len(t);
        for (int64_t r = 0; r < t->shape[0] && !bad; r++) {
            fill_row(t, seed, r, row, n);
            if (f16) {
                for (int64_t k = 0; k < n; k++) half[k] = at_f32_to_f16(row[k]);
                bad = fwrite(half, 2, (size_t)n, f) != (size_t)n;
            } else {
                bad = fwrite(row, 4, (size_t)n, f) != (size_t)n;
            }
        }
    }
    bad |= fclose(f) != 0;
    f = NULL;
    if (bad)
        rc = at_err_set(err, AT_E_IO, "cannot write %s", tmp);
    else if (rename(tmp, path) != 0) /* complete or absent, never half */
        rc = at_err_set(err, AT_E_IO, "cannot rename %s: %s", tmp, strerror(errno));
out:
    if (f) fclose(f);
    if (rc) remove(tmp);
    free(h);
    free(row);
    free(half);
    return rc;
}

int at_rw_write_text(const char *dir, const char *name, const char *text, at_err *err)
{
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "output path too long");
    FILE *f = fopen(path, "wb");
    if (!f) return at_err_set(err, AT_E_IO, "cannot create %s: %s", path, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? at_err_set(err, AT_E_IO, "cannot write %s", path) : 0;
}

int at_rw_mkdir_p(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *c = p + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}
