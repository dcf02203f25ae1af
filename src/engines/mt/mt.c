#include "engines/mt/mt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct at_mt_engine {
    const at_mt_ops *ops;
    void *impl;
};

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

const char *at_mt_engine_name(const at_mt_engine *e) { return e->ops->name; }

const at_mt_pair *at_mt_engine_pairs(const at_mt_engine *e, size_t *n) { return e->ops->pairs(e->impl, n); }

int at_mt_engine_has_pair(const at_mt_engine *e, const char *source, const char *target)
{
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(e, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].source, source) == 0 && strcmp(p[i].target, target) == 0) return 1;
    return 0;
}

int at_mt_translate(at_mt_engine *e, const char *source, const char *target, const char *text, char **out,
                    at_err *err)
{
    *out = NULL;
    if (!source || !*source || !target || !*target)
        return at_err_set(err, AT_E_INVALID, "source and target languages are required");
    if (!text || !*text) return at_err_set(err, AT_E_INVALID, "text is empty");
    if (strcmp(source, target) == 0) {
        *out = strdup(text);
        return *out ? 0 : at_err_set(err, AT_E_NOMEM, "out of memory");
    }
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
    return e->ops->translate(e->impl, source, target, text, out, err);
}
