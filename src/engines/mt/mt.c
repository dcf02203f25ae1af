#include "engines/mt/mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct at_mt_engine {
    const at_mt_ops *ops;
    void *impl;
    char name[64]; /* "" = ops->name */
};

int at_mt_pair_cmp(const void *a, const void *b)
{
    const at_mt_pair *x = a, *y = b;
    int c = strcmp(x->source, y->source);
    return c ? c : strcmp(x->target, y->target);
}

long at_mt_pairs_find(const at_mt_pair *sorted, size_t n, const char *source, const char *target)
{
    at_mt_pair key;
    if (snprintf(key.source, sizeof key.source, "%s", source) >= (int)sizeof key.source ||
        snprintf(key.target, sizeof key.target, "%s", target) >= (int)sizeof key.target)
        return -1;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at_mt_pair_cmp(&sorted[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && !at_mt_pair_cmp(&sorted[lo], &key) ? (long)lo : -1;
}

at_mt_engine *at_mt_engine_new(const at_mt_ops *ops, void *impl, at_err *err)
{
    at_mt_engine *e = calloc(1, sizeof *e);
    if (!e) {
        if (ops && ops->destroy) ops->destroy(impl);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->ops = ops;
    e->impl = impl;
    return e;
}

void at_mt_engine_free(at_mt_engine *e)
{
    if (!e) return;
    if (e->ops->destroy) e->ops->destroy(e->impl);
    free(e);
}

const char *at_mt_engine_name(const at_mt_engine *e) { return e->name[0] ? e->name : e->ops->name; }

void at_mt_engine_set_name(at_mt_engine *e, const char *name)
{
    snprintf(e->name, sizeof e->name, "%s", name);
}

const at_mt_pair *at_mt_engine_pairs(const at_mt_engine *e, size_t *n) { return e->ops->pairs(e->impl, n); }

int at_mt_engine_has_pair(const at_mt_engine *e, const char *source, const char *target)
{
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(e, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].source, source) == 0 && strcmp(p[i].target, target) == 0) return 1;
    return 0;
}

/* The pair's checks, shared by both entry points: 0 when the engine must
 * translate, 1 when source = target (a copy), else an error. */
static int check_pair(at_mt_engine *e, const char *source, const char *target, at_err *err)
{
    if (!source || !*source || !target || !*target)
        return at_err_set(err, AT_E_INVALID, "source and target languages are required");
    if (strcmp(source, target) == 0) return 1;
    if (!at_mt_engine_has_pair(e, source, target)) {
        size_t n;
        const at_mt_pair *p = at_mt_engine_pairs(e, &n);
        char list[256] = "";
        size_t off = 0;
        for (size_t i = 0; i < n && off < sizeof list - 1; i++) {
            int w =
                snprintf(list + off, sizeof list - off, "%s%s-%s", i ? ", " : "", p[i].source, p[i].target);
            if (w < 0) break;
            off += (size_t)w;
        }
        return at_err_set(err, AT_E_UNSUPPORTED, "unsupported language pair %s-%s; supported: %s", source,
                          target, n ? list : "(none installed)");
    }
    return 0;
}

int at_mt_translate(at_mt_engine *e, const char *source, const char *target, const char *text, char **out,
                    at_err *err)
{
    *out = NULL;
    int rc = check_pair(e, source, target, err);
    if (rc < 0) return rc;
    if (!text || !*text) return at_err_set(err, AT_E_INVALID, "text is empty");
    if (rc == 1) {
        *out = strdup(text);
        return *out ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    return e->ops->translate(e->impl, source, target, text, out, err);
}

int at_mt_translate_many(at_mt_engine *e, const char *source, const char *target, const char *const *texts,
                         int n, char **outs, at_err *err)
{
    for (int i = 0; i < n; i++) outs[i] = NULL;
    int rc = check_pair(e, source, target, err);
    if (rc < 0) return rc;
    if (rc == 0 && e->ops->translate_many)
        return e->ops->translate_many(e->impl, source, target, texts, n, outs, err);
    for (int i = 0; i < n; i++) {
        int r;
        if (rc == 1 || !*texts[i])
            r = (outs[i] = strdup(texts[i])) ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
        else
            r = e->ops->translate(e->impl, source, target, texts[i], &outs[i], err);
        if (r) {
            for (int j = 0; j <= i; j++) {
                free(outs[j]);
                outs[j] = NULL;
            }
            return r < 0 ? r : AT_E_ENGINE;
        }
    }
    return 0;
}

const char *at_mt_route(at_mt_engine *e, const char *source, const char *target, char *buf, size_t cap)
{
    if (e->ops->route) return e->ops->route(e->impl, source, target, buf, cap);
    snprintf(buf, cap, "%s", e->ops->name);
    return buf;
}
