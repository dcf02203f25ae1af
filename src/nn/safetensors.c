/* safetensors.c - Hugging Face safetensors files, the folders holding
 * them and config.json. */
#include "nn/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/torch_pickle.h"

#define MAX_HEADER (64u << 20) /* generous: a large-v3 header is ~100 KB */
#define MAX_CONFIG (1u << 20)

static int dtype_of(const char *s, at_dtype *t)
{
    if (!strcmp(s, "F32"))
        *t = AT_DT_F32;
    else if (!strcmp(s, "F16"))
        *t = AT_DT_F16;
    else if (!strcmp(s, "BF16"))
        *t = AT_DT_BF16;
    else
        return -1;
    return 0;
}

/* One header entry: its type, shape and data, checked against the file. */
static int add_entry(at_nn_weights *w, const cJSON *e, const uint8_t *base, size_t avail, const char *path,
                     at_nn_rename_fn rename, void *user, at_err *err)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    at_dtype t;
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return at_err_set(err, AT_E_CORRUPT, "%s: bad entry for %s", path, e->string);
    if (dtype_of(dt->valuestring, &t))
        return at_err_set(err, AT_E_UNSUPPORTED, "%s: %s has unsupported dtype %s", path, e->string,
                          dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > 4) return at_err_set(err, AT_E_CORRUPT, "%s: %s has %d dimensions", path, e->string, nd);
    int64_t shape[4] = {1, 1, 1, 1};
    uint64_t nel = 1;
    for (int i = 0; i < nd; i++) {
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)(1 << 24))
            return at_err_set(err, AT_E_CORRUPT, "%s: %s has a bad shape", path, e->string);
        shape[i] = (int64_t)d->valuedouble;
        nel *= (uint64_t)shape[i];
        if (nel > avail)
            return at_err_set(err, AT_E_CORRUPT, "%s: %s is larger than the file", path, e->string);
    }
    if (nd == 0) nd = 1; /* scalar */
    const cJSON *b0 = cJSON_GetArrayItem(off, 0), *b1 = cJSON_GetArrayItem(off, 1);
    if (!cJSON_IsNumber(b0) || !cJSON_IsNumber(b1) || b0->valuedouble < 0 ||
        b1->valuedouble < b0->valuedouble || b1->valuedouble > (double)avail)
        return at_err_set(err, AT_E_CORRUPT, "%s: %s has data offsets outside the file", path, e->string);
    uint64_t o0 = (uint64_t)b0->valuedouble, o1 = (uint64_t)b1->valuedouble;
    size_t esz = t == AT_DT_F32 ? 4 : 2;
    if (o1 - o0 != nel * esz)
        return at_err_set(err, AT_E_CORRUPT, "%s: %s has %llu bytes, shape needs %llu", path, e->string,
                          (unsigned long long)(o1 - o0), (unsigned long long)(nel * esz));
    char name[AT_NN_NAME_MAX];
    int keep = 0;
    if (rename)
        keep = rename(user, e->string, name, sizeof name);
    else if (snprintf(name, sizeof name, "%s", e->string) >= (int)sizeof name)
        keep = -1;
    if (keep < 0) return at_err_set(err, AT_E_CORRUPT, "%s: tensor name %.60s... too long", path, e->string);
    if (keep > 0) return 0;
    return at_nn_weights_add(w, name, t, nd, shape, base + o0, (size_t)(o1 - o0), err);
}

int at_nn_safetensors_open(const char *path, at_nn_weights *w, at_nn_rename_fn rename, void *user,
                           at_err *err)
{
    memset(w, 0, sizeof *w);
    int rc = at_nn_map_file(path, &w->map, &w->map_size, err);
    if (rc) return rc;
    const uint8_t *p = w->map;
    uint64_t hlen = 0;
    char *hdr = NULL;
    cJSON *j = NULL;
    if (w->map_size < 8) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: truncated file (%zu bytes)", path, w->map_size);
        goto fail;
    }
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)p[i] << (8 * i);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > w->map_size - 8) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: bad header length %llu (file is %zu bytes)", path,
                        (unsigned long long)hlen, w->map_size);
        goto fail;
    }
    hdr = malloc((size_t)hlen + 1);
    if (!hdr) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(hdr, p + 8, (size_t)hlen);
    hdr[hlen] = 0;
    j = cJSON_Parse(hdr);
    if (!j || !cJSON_IsObject(j)) {
        rc = at_err_set(err, AT_E_CORRUPT, "%s: header is not a JSON object", path);
        goto fail;
    }
    const uint8_t *base = p + 8 + hlen;
    size_t avail = w->map_size - 8 - (size_t)hlen;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!strcmp(e->string, "__metadata__")) continue;
        if ((rc = add_entry(w, e, base, avail, path, rename, user, err))) goto fail;
    }
    cJSON_Delete(j);
    free(hdr);
    return 0;
fail:
    cJSON_Delete(j);
    free(hdr);
    at_nn_weights_free(w);
    return rc;
}

int at_nn_weights_open_dir(const char *dir, at_nn_weights *w, at_nn_rename_fn rename, void *user, at_err *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return at_err_set(err, AT_E_INVALID, "model path too long");
    /* model.safetensors, else pytorch_model.bin (same length: path fits) */
    int st = access(path, F_OK) == 0;
    if (!st) snprintf(path, sizeof path, "%s/pytorch_model.bin", dir);
    if (!st && access(path, F_OK) != 0)
        return at_err_set(err, AT_E_IO, "%s has no model.safetensors or pytorch_model.bin", dir);
    return (st ? at_nn_safetensors_open : at_nn_torch_open)(path, w, rename, user, err);
}

/* ---------------------------------------------------------- config.json */

struct at_hf_config {
    cJSON *j;
    char path[4096];
};

at_hf_config *at_hf_config_load(const char *path, at_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        at_err_set(err, AT_E_IO, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(MAX_CONFIG + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG + 1, f) : 0;
    fclose(f);
    if (!buf) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    if (n > MAX_CONFIG) {
        free(buf);
        at_err_set(err, AT_E_TOO_LARGE, "%s is larger than %u bytes", path, MAX_CONFIG);
        return NULL;
    }
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        at_err_set(err, AT_E_CORRUPT, "%s: not a JSON object", path);
        return NULL;
    }
    at_hf_config *c = calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(j);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    c->j = j;
    snprintf(c->path, sizeof c->path, "%s", path);
    return c;
}

void at_hf_config_free(at_hf_config *c)
{
    if (!c) return;
    cJSON_Delete(c->j);
    free(c);
}

const char *at_hf_config_path(const at_hf_config *c) { return c->path; }

static const cJSON *item(const at_hf_config *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->j, key);
    return cJSON_IsNull(v) ? NULL : v;
}

int at_hf_config_has(const at_hf_config *c, const char *key) { return item(c, key) != NULL; }

int at_hf_config_float_or(const at_hf_config *c, const char *key, double lo, double hi, double def,
                          double *out, at_err *err)
{
    const cJSON *v = item(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be a number in %g..%g", c->path, key, lo, hi);
    *out = v->valuedouble;
    return 0;
}

int at_hf_config_int_or(const at_hf_config *c, const char *key, int lo, int hi, int def, int *out,
                        at_err *err)
{
    const cJSON *v = item(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    /* the range first: converting a double outside int64's range (1e25) is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be an integer in %d..%d", c->path, key, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

int at_hf_config_int(const at_hf_config *c, const char *key, int lo, int hi, int *out, at_err *err)
{
    if (!item(c, key)) return at_err_set(err, AT_E_CORRUPT, "%s: missing \"%s\"", c->path, key);
    return at_hf_config_int_or(c, key, lo, hi, 0, out, err);
}

int at_hf_config_pairs(const at_hf_config *c, const char *key, int lo, int hi, int (*out)[2], int cap, int *n,
                       at_err *err)
{
    const cJSON *v = item(c, key), *p;
    *n = 0;
    if (!v) return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > cap)
        return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be a list of at most %d pairs", c->path, key,
                          cap);
    cJSON_ArrayForEach(p, v)
    {
        const cJSON *a = cJSON_GetArrayItem(p, 0), *b = cJSON_GetArrayItem(p, 1);
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            a->valuedouble < lo || a->valuedouble > hi || b->valuedouble < lo || b->valuedouble > hi ||
            a->valuedouble != (int)a->valuedouble || b->valuedouble != (int)b->valuedouble)
            return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must hold pairs of integers in %d..%d", c->path,
                              key, lo, hi);
        out[*n][0] = (int)a->valuedouble;
        out[*n][1] = (int)b->valuedouble;
        (*n)++;
    }
    return 0;
}

static int int_in(const cJSON *v, int lo, int hi)
{
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
           v->valuedouble == (int)v->valuedouble;
}

/* An integer, or a list of at most cap integers, each in lo..hi. */
static int ints_of(const cJSON *v, int lo, int hi, int *out, int cap, int *n)
{
    const cJSON *e;
    *n = 0;
    if (int_in(v, lo, hi) && cap > 0) {
        out[(*n)++] = (int)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > cap) return -1;
    cJSON_ArrayForEach(e, v)
    {
        if (!int_in(e, lo, hi)) return -1;
        out[(*n)++] = (int)e->valuedouble;
    }
    return 0;
}

int at_hf_config_ints(const at_hf_config *c, const char *key, int lo, int hi, int *out, int cap, int *n,
                      at_err *err)
{
    const cJSON *v = item(c, key);
    *n = 0;
    if (v && ints_of(v, lo, hi, out, cap, n))
        return at_err_set(err, AT_E_CORRUPT,
                          "%s: \"%s\" must be an integer in %d..%d or a list of at most %d", c->path, key, lo,
                          hi, cap);
    return 0;
}

int at_hf_config_int_lists(const at_hf_config *c, const char *key, int lo, int hi, int *vals, int cap,
                           int *ends, int cap_lists, int *n_lists, at_err *err)
{
    const cJSON *v = item(c, key), *l;
    int nv = 0;
    *n_lists = 0;
    if (!v) return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > cap_lists)
        return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be a list of at most %d lists", c->path, key,
                          cap_lists);
    cJSON_ArrayForEach(l, v)
    {
        int k;
        if (!cJSON_IsArray(l) || !cJSON_GetArraySize(l) || ints_of(l, lo, hi, vals + nv, cap - nv, &k))
            return at_err_set(err, AT_E_CORRUPT,
                              "%s: \"%s\" must hold at most %d integers in %d..%d, in lists", c->path, key,
                              cap, lo, hi);
        nv += k;
        ends[(*n_lists)++] = nv;
    }
    return 0;
}

int at_hf_config_bool_or(const at_hf_config *c, const char *key, int def, int *out, at_err *err)
{
    const cJSON *v = item(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be true or false", c->path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int at_hf_config_string_or(const at_hf_config *c, const char *key, const char *def, const char **out,
                           at_err *err)
{
    const cJSON *v = item(c, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v)) return at_err_set(err, AT_E_CORRUPT, "%s: \"%s\" must be a string", c->path, key);
    *out = v->valuestring;
    return 0;
}
