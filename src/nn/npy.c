/* npy.c - see npy.h.  The header is a Python dict literal; we look for the
 * three keys we need rather than parsing Python syntax in general. */
#include "nn/npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t at_npy_count(const at_npy *a)
{
    size_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

void at_npy_free(at_npy *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static int parse_shape(const char *h, at_npy *out)
{
    const char *s = strstr(h, "'shape'");
    if (!s) return -1;
    s = strchr(s, '(');
    if (!s) return -1;
    s++;
    out->ndim = 0;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*s < '0' || *s > '9') return -1;
        if (out->ndim >= AT_NPY_MAX_DIMS) return -1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || v > (1ull << 40)) return -1;
        out->shape[out->ndim++] = (size_t)v;
        s = end;
    }
    return 0;
}

int at_npy_read(const char *path, at_npy *out, size_t max_bytes, at_err *err)
{
    memset(out, 0, sizeof *out);
    if (!max_bytes) max_bytes = (size_t)1 << 30;
    FILE *f = fopen(path, "rb");
    if (!f) return at_err_set(err, AT_E_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char pre[10];
    int rc = AT_E_CORRUPT;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        at_err_set(err, rc, "%s: not a .npy file", path);
        goto out;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) {
            at_err_set(err, rc, "%s: truncated header", path);
            goto out;
        }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    } else {
        at_err_set(err, rc, "%s: unsupported .npy version %d", path, pre[6]);
        goto out;
    }
    if (hlen > 65536) {
        at_err_set(err, rc, "%s: header too large", path);
        goto out;
    }
    hdr = calloc(1, hlen + 1);
    if (!hdr) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        at_err_set(err, rc, "%s: truncated header", path);
        goto out;
    }
    if (!strstr(hdr, "'<f4'")) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: only little-endian float32 arrays are supported", path);
        goto out;
    }
    if (strstr(hdr, "'fortran_order': True")) {
        rc = at_err_set(err, AT_E_UNSUPPORTED, "%s: Fortran-order arrays are not supported", path);
        goto out;
    }
    if (parse_shape(hdr, out)) {
        at_err_set(err, rc, "%s: bad shape in header", path);
        goto out;
    }
    size_t n = 1;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] && n > max_bytes / 4 / out->shape[i]) {
            rc = at_err_set(err, AT_E_TOO_LARGE, "%s: array larger than %zu bytes", path, max_bytes);
            goto out;
        }
        n *= out->shape[i];
    }
    out->data = malloc(n ? n * 4 : 4);
    if (!out->data) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (%zu floats)", n);
        goto out;
    }
    if (fread(out->data, 4, n, f) != n) {
        at_err_set(err, rc, "%s: truncated data", path);
        goto out;
    }
    rc = 0;
out:
    free(hdr);
    fclose(f);
    if (rc) at_npy_free(out);
    return rc;
}

int at_npy_write(const char *path, const float *data, const size_t *shape, int ndim, at_err *err)
{
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%zu%s", shape[i],
                        ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        n *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* pad so that data starts at a multiple of 64 bytes, newline-terminated */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)len + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f) return at_err_set(err, AT_E_IO, "cannot create %s: %s", path, strerror(errno));
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, 4, n, f) == n;
    if (fclose(f) != 0) ok = 0;
    if (!ok) return at_err_set(err, AT_E_IO, "write to %s failed", path);
    return 0;
}
