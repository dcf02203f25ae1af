/* multipart.c - multipart/form-data (RFC 7578 / RFC 2046) over a buffer.
 *
 * Every scan is bounded by the end of the body: the parser only uses
 * lengths it has checked against `end`, so hostile bodies cannot make it
 * read outside the buffer.  Part bodies are delimited strictly by
 * CRLF "--" boundary, so binary data containing CRLF or a partial
 * boundary string comes through byte for byte. */
#include "core/multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define AT_BOUNDARY_MAX     70 /* RFC 2046 */
#define AT_PART_HEADERS_MAX 16 /* header lines per part */
#define AT_HEADER_LINE_MAX  4096

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static int is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

/* Parses a parameter value at *pp (token or quoted-string with backslash
 * escapes) up to end into out (cap bytes).  Returns 0, -1 if malformed,
 * -2 if it does not fit.  Backslash before anything but " or \ is kept,
 * as browsers send Windows paths unescaped. */
static int param_value(const char **pp, const char *end, char *out, size_t cap)
{
    const char *p = *pp;
    size_t n = 0;
    int toolong = 0;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p >= end) return -1; /* unterminated quote */
            char c = *p++;
            if (c == '"') break;
            if (c == '\\' && p < end && (*p == '"' || *p == '\\')) c = *p++;
            if (c == '\r' || c == '\n' || c == '\0') return -1;
            if (n + 1 < cap)
                out[n++] = c;
            else
                toolong = 1;
        }
    } else {
        while (p < end && *p != ';' && !is_ws(*p)) {
            if (*p == '\0' || *p == '"') return -1;
            if (n + 1 < cap)
                out[n++] = *p;
            else
                toolong = 1;
            p++;
        }
        if (n == 0 && !toolong) return -1;
    }
    out[n] = '\0';
    *pp = p;
    return toolong ? -2 : 0;
}

/* Walks "; key=value" parameters of a header value.  For each one the
 * callback gets the key and the position of its value. */
typedef int (*param_cb)(void *ctx, const char *key, size_t klen, const char **vp, const char *end,
                        at_err *err);

static int walk_params(const char *p, const char *end, void *ctx, param_cb cb, at_err *err, const char *what)
{
    for (;;) {
        while (p < end && is_ws(*p)) p++;
        if (p >= end) return 0;
        if (*p != ';') return at_err_set(err, AT_E_INVALID, "malformed %s header", what);
        p++;
        while (p < end && is_ws(*p)) p++;
        if (p >= end) return 0; /* trailing ';' */
        const char *k = p;
        while (p < end && is_tchar(*p) && *p != '=') p++;
        size_t klen = (size_t)(p - k);
        while (p < end && is_ws(*p)) p++;
        if (klen == 0 || p >= end || *p != '=')
            return at_err_set(err, AT_E_INVALID, "malformed parameter in %s header", what);
        p++;
        while (p < end && is_ws(*p)) p++;
        int rc = cb(ctx, k, klen, &p, end, err);
        if (rc) return rc;
    }
}

static int skip_value(const char **vp, const char *end)
{
    char tmp[AT_HEADER_LINE_MAX];
    return param_value(vp, end, tmp, sizeof tmp) == -1 ? -1 : 0;
}

typedef struct ct_ctx {
    char boundary[AT_BOUNDARY_MAX + 1]; /* one more byte reads as too long */
    int found;
} ct_ctx;

static int ct_param(void *vctx, const char *key, size_t klen, const char **vp, const char *end, at_err *err)
{
    ct_ctx *c = vctx;
    if (klen == 8 && !strncasecmp(key, "boundary", 8)) {
        int rc = param_value(vp, end, c->boundary, sizeof c->boundary);
        if (rc == -2)
            return at_err_set(err, AT_E_INVALID, "multipart boundary longer than %d characters",
                              AT_BOUNDARY_MAX);
        if (rc || !c->boundary[0]) return at_err_set(err, AT_E_INVALID, "malformed multipart boundary");
        c->found = 1;
        return 0;
    }
    if (skip_value(vp, end)) return at_err_set(err, AT_E_INVALID, "malformed Content-Type parameter");
    return 0;
}

/* Extracts the boundary from a Content-Type header value. */
static int get_boundary(const char *ct, char *out, at_err *err)
{
    if (!ct) return at_err_set(err, AT_E_INVALID, "missing Content-Type (expected multipart/form-data)");
    const char *p = ct, *end = ct + strlen(ct);
    while (p < end && is_ws(*p)) p++;
    static const char mt[] = "multipart/form-data";
    size_t ml = sizeof mt - 1;
    if ((size_t)(end - p) < ml || strncasecmp(p, mt, ml) || (p + ml < end && !is_ws(p[ml]) && p[ml] != ';'))
        return at_err_set(err, AT_E_INVALID, "Content-Type is not multipart/form-data");
    ct_ctx c = {{0}, 0};
    int rc = walk_params(p + ml, end, &c, ct_param, err, "Content-Type");
    if (rc) return rc;
    if (!c.found) return at_err_set(err, AT_E_INVALID, "multipart/form-data without a boundary");
    strcpy(out, c.boundary);
    return 0;
}

typedef struct cd_ctx {
    at_part *part;
    int have_name;
} cd_ctx;

static int cd_param(void *vctx, const char *key, size_t klen, const char **vp, const char *end, at_err *err)
{
    cd_ctx *c = vctx;
    at_part *pt = c->part;
    int rc;
    if (klen == 4 && !strncasecmp(key, "name", 4)) {
        rc = param_value(vp, end, pt->name, sizeof pt->name);
        if (rc == -2)
            return at_err_set(err, AT_E_INVALID, "form field name too long (max %zu bytes)",
                              sizeof pt->name - 1);
        c->have_name = 1;
    } else if (klen == 8 && !strncasecmp(key, "filename", 8)) {
        rc = param_value(vp, end, pt->filename, sizeof pt->filename);
        if (rc == -2)
            return at_err_set(err, AT_E_INVALID, "file name too long (max %zu bytes)",
                              sizeof pt->filename - 1);
    } else {
        rc = skip_value(vp, end); /* filename*= and friends are not needed */
    }
    if (rc) return at_err_set(err, AT_E_INVALID, "malformed Content-Disposition parameter");
    return 0;
}

/* One header line [p, e) (no line ending). */
static int part_header(at_part *pt, size_t idx, const char *p, const char *e, int *have_cd, at_err *err)
{
    const char *colon = memchr(p, ':', (size_t)(e - p));
    if (!colon || colon == p || is_ws(*p))
        return at_err_set(err, AT_E_INVALID, "part %zu: malformed header line", idx + 1);
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    while (v < e && is_ws(*v)) v++;
    const char *ve = e;
    while (ve > v && is_ws(ve[-1])) ve--;
    if (nlen == 19 && !strncasecmp(p, "Content-Disposition", 19)) {
        static const char fd[] = "form-data";
        size_t fl = sizeof fd - 1;
        if ((size_t)(ve - v) < fl || strncasecmp(v, fd, fl) || (v + fl < ve && !is_ws(v[fl]) && v[fl] != ';'))
            return at_err_set(err, AT_E_INVALID, "part %zu: Content-Disposition is not form-data", idx + 1);
        cd_ctx c = {pt, 0};
        int rc = walk_params(v + fl, ve, &c, cd_param, err, "Content-Disposition");
        if (rc) return rc;
        if (!c.have_name)
            return at_err_set(err, AT_E_INVALID, "part %zu: Content-Disposition has no name", idx + 1);
        *have_cd = 1;
    } else if (nlen == 12 && !strncasecmp(p, "Content-Type", 12)) {
        size_t l = (size_t)(ve - v);
        if (l >= sizeof pt->content_type)
            return at_err_set(err, AT_E_INVALID, "part %zu: Content-Type too long", idx + 1);
        memcpy(pt->content_type, v, l);
        pt->content_type[l] = '\0';
    }
    return 0;
}

/* Finds needle in [h, h+hl); NULL if absent. */
static const unsigned char *find(const unsigned char *h, size_t hl, const unsigned char *nd, size_t nl)
{
    if (nl == 0 || hl < nl) return NULL;
    const unsigned char *last = h + hl - nl;
    for (const unsigned char *p = h; p <= last;) {
        const unsigned char *q = memchr(p, nd[0], (size_t)(last - p) + 1);
        if (!q) return NULL;
        if (!memcmp(q, nd, nl)) return q;
        p = q + 1;
    }
    return NULL;
}

/* After "--boundary": "--" closes; otherwise optional LWSP then CRLF (or
 * LF).  Returns 1 for close, 0 for next part (*pp past the line), -1. */
static int after_delim(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
        *pp = p + 2;
        return 1;
    }
    while (p < end && is_ws((char)*p)) p++;
    if (p < end && *p == '\n') {
        *pp = p + 1;
        return 0;
    }
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
        *pp = p + 2;
        return 0;
    }
    return -1;
}

int at_multipart_parse(const char *content_type, const unsigned char *body, size_t len, at_form *form,
                       at_err *err)
{
    if (!form) return at_err_set(err, AT_E_INVALID, "no form");
    memset(form, 0, sizeof *form);
    char boundary[AT_BOUNDARY_MAX + 2];
    int rc = get_boundary(content_type, boundary, err);
    if (rc) return rc;
    if (!body || len == 0) return at_err_set(err, AT_E_INVALID, "empty multipart body");

    /* delim = CRLF "--" boundary; the first one may start the body. */
    unsigned char delim[AT_BOUNDARY_MAX + 5];
    size_t bl = strlen(boundary);
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, bl);
    size_t dl = bl + 4;
    const unsigned char *end = body + len, *p;
    if (len >= dl - 2 && !memcmp(body, delim + 2, dl - 2)) {
        p = body + dl - 2;
    } else {
        const unsigned char *q = find(body, len, delim, dl); /* skip a preamble */
        if (!q) return at_err_set(err, AT_E_INVALID, "multipart body does not contain the boundary");
        p = q + dl;
    }
    for (;;) {
        int st = after_delim(&p, end);
        if (st < 0) return at_err_set(err, AT_E_INVALID, "malformed multipart boundary line");
        if (st == 1) return 0; /* close delimiter; the epilogue is ignored */
        if (form->n == AT_MULTIPART_MAX_PARTS)
            return at_err_set(err, AT_E_INVALID, "too many parts (max %d)", AT_MULTIPART_MAX_PARTS);
        at_part *pt = &form->parts[form->n];
        memset(pt, 0, sizeof *pt);
        int have_cd = 0, nh = 0;
        for (;;) { /* header lines up to the blank line */
            const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                return at_err_set(err, AT_E_INVALID, "part %zu: headers not terminated by a blank line",
                                  form->n + 1);
            const unsigned char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
            if (le == p) {
                p = nl + 1;
                break;
            }
            if ((size_t)(le - p) > AT_HEADER_LINE_MAX || ++nh > AT_PART_HEADERS_MAX)
                return at_err_set(err, AT_E_INVALID, "part %zu: headers too large", form->n + 1);
            rc = part_header(pt, form->n, (const char *)p, (const char *)le, &have_cd, err);
            if (rc) return rc;
            p = nl + 1;
        }
        if (!have_cd)
            return at_err_set(err, AT_E_INVALID, "part %zu: missing Content-Disposition header", form->n + 1);
        const unsigned char *q = find(p, (size_t)(end - p), delim, dl);
        if (!q)
            return at_err_set(err, AT_E_INVALID, "part %zu: missing closing boundary (truncated body?)",
                              form->n + 1);
        pt->data = p;
        pt->len = (size_t)(q - p);
        form->n++;
        p = q + dl;
    }
}

const at_part *at_form_get(const at_form *f, const char *name)
{
    if (!f || !name) return NULL;
    for (size_t i = 0; i < f->n && i < AT_MULTIPART_MAX_PARTS; i++)
        if (!strcmp(f->parts[i].name, name)) return &f->parts[i];
    return NULL;
}

int at_form_text(const at_form *f, const char *name, char *buf, size_t cap, at_err *err)
{
    const at_part *p = at_form_get(f, name);
    if (!p) return 0;
    if (!buf || cap == 0 || p->len >= cap)
        return at_err_set(err, AT_E_INVALID, "field '%s' too long (max %zu bytes)", name, cap ? cap - 1 : 0);
    if (p->len) memcpy(buf, p->data, p->len);
    buf[p->len] = '\0';
    return 1;
}
