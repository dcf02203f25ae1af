/* router.c - several translation engines as one (see router.h). */
#include "engines/mt/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One pair and how it is served: engine a directly (b < 0), or a to the
 * pivot then b from it. */
typedef struct route {
    at_mt_pair p;
    int a, b;
} route;

typedef struct router {
    at_mt_engine **e;
    int n;
    route *r; /* sorted by source, then target */
    at_mt_pair *pairs;
    size_t n_r;
} router;

static int cmp_route(const void *x, const void *y)
{
    const route *a = x, *b = y;
    int c = at_mt_pair_cmp(&a->p, &b->p);
    /* equal pairs: the preferred (direct, then earlier engine) first */
    if (!c) c = (a->b >= 0) - (b->b >= 0);
    if (!c) c = a->a - b->a;
    return c;
}

static const route *find(const router *R, const char *source, const char *target)
{
    long i = at_mt_pairs_find(R->pairs, R->n_r, source, target);
    return i < 0 ? NULL : &R->r[i];
}

static void rt_destroy(void *impl)
{
    router *R = impl;
    for (int i = 0; i < R->n; i++) at_mt_engine_free(R->e[i]);
    free(R->e);
    free(R->r);
    free(R->pairs);
    free(R);
}

static int rt_translate_many(void *impl, const char *source, const char *target, const char *const *texts,
                             int n, char **outs, at_err *err)
{
    router *R = impl;
    const route *r = find(R, source, target);
    if (!r) return at_err_set(err, AT_E_UNSUPPORTED, "unsupported language pair %s-%s", source, target);
    if (r->b < 0) return at_mt_translate_many(R->e[r->a], source, target, texts, n, outs, err);
    char **mid = calloc((size_t)n, sizeof *mid);
    if (!mid) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int rc = at_mt_translate_many(R->e[r->a], source, AT_MT_PIVOT, texts, n, mid, err);
    if (!rc)
        rc = at_mt_translate_many(R->e[r->b], AT_MT_PIVOT, target, (const char *const *)mid, n, outs, err);
    for (int i = 0; i < n; i++) free(mid[i]);
    free(mid);
    return rc;
}

static int rt_translate(void *impl, const char *source, const char *target, const char *text, char **out,
                        at_err *err)
{
    return rt_translate_many(impl, source, target, &text, 1, out, err);
}

static const at_mt_pair *rt_pairs(void *impl, size_t *n)
{
    router *R = impl;
    *n = R->n_r;
    return R->pairs;
}

static const char *rt_route(void *impl, const char *source, const char *target, char *buf, size_t cap)
{
    router *R = impl;
    const route *r = find(R, source, target);
    char a[128], b[128];
    if (!r)
        snprintf(buf, cap, "none");
    else if (r->b < 0)
        at_mt_route(R->e[r->a], source, target, buf, cap);
    else
        snprintf(buf, cap, "%s + %s via " AT_MT_PIVOT,
                 at_mt_route(R->e[r->a], source, AT_MT_PIVOT, a, sizeof a),
                 at_mt_route(R->e[r->b], AT_MT_PIVOT, target, b, sizeof b));
    return buf;
}

static const at_mt_ops rt_ops = {
    .name = "router",
    .destroy = rt_destroy,
    .translate = rt_translate,
    .pairs = rt_pairs,
    .translate_many = rt_translate_many,
    .route = rt_route,
};

static int add_route(route **r, size_t *n, size_t *cap, const at_mt_pair *p, int a, int b, at_err *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        route *x = realloc(*r, nc * sizeof *x);
        if (!x) return at_err_set(err, AT_E_NOMEM, "out of memory");
        *r = x;
        *cap = nc;
    }
    (*r)[(*n)++] = (route){*p, a, b};
    return 0;
}

/* Every direct pair, then source -> en -> target for each source and
 * target the engines reach and join through English; sorted, the
 * preferred route of each pair kept. */
static int build_routes(router *R, at_err *err)
{
    size_t n = 0, cap = 0;
    route *r = NULL;
    for (int i = 0; i < R->n; i++) {
        size_t np;
        const at_mt_pair *p = at_mt_engine_pairs(R->e[i], &np);
        for (size_t k = 0; k < np; k++)
            if (add_route(&r, &n, &cap, &p[k], i, -1, err)) goto fail;
    }
    /* the first route of each language into and out of English */
    size_t direct = n, *in = malloc((n ? n : 1) * sizeof *in), *out = malloc((n ? n : 1) * sizeof *out);
    size_t n_in = 0, n_out = 0;
    if (!in || !out) {
        free(in);
        free(out);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t x = 0; x < direct; x++) {
        int to = !strcmp(r[x].p.target, AT_MT_PIVOT), from = !strcmp(r[x].p.source, AT_MT_PIVOT);
        size_t *list = to ? in : from ? out : NULL, *len = to ? &n_in : &n_out;
        const char *lang = to ? r[x].p.source : r[x].p.target;
        int seen = 0;
        for (size_t k = 0; list && k < *len && !seen; k++)
            seen = !strcmp(to ? r[list[k]].p.source : r[list[k]].p.target, lang);
        if (list && !seen) list[(*len)++] = x;
    }
    int rc = 0;
    for (size_t i = 0; i < n_in && !rc; i++)
        for (size_t o = 0; o < n_out && !rc; o++) {
            route a = r[in[i]], b = r[out[o]];
            at_mt_pair p;
            if (!strcmp(a.p.source, b.p.target)) continue;
            memcpy(p.source, a.p.source, sizeof p.source);
            memcpy(p.target, b.p.target, sizeof p.target);
            rc = add_route(&r, &n, &cap, &p, a.a, b.a, err);
        }
    free(in);
    free(out);
    if (rc) goto fail;
    if (n) qsort(r, n, sizeof *r, cmp_route);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (!u || at_mt_pair_cmp(&r[u - 1].p, &r[i].p)) r[u++] = r[i];
    R->r = r;
    R->n_r = u;
    if (!(R->pairs = malloc((u ? u : 1) * sizeof *R->pairs)))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < u; i++) R->pairs[i] = r[i].p;
    return 0;
fail:
    free(r);
    return -1;
}

at_mt_engine *at_mt_router_new(at_mt_engine **engines, int n, at_err *err)
{
    router *R = calloc(1, sizeof *R);
    if (!R || !(R->e = calloc((size_t)(n > 0 ? n : 1), sizeof *R->e))) {
        free(R);
        for (int i = 0; i < n; i++) at_mt_engine_free(engines[i]);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(R->e, engines, (size_t)n * sizeof *R->e);
    R->n = n;
    if (build_routes(R, err)) {
        rt_destroy(R);
        return NULL;
    }
    char name[64] = "";
    for (int i = 0; i < n; i++)
        snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s", i ? "+" : "",
                 at_mt_engine_name(engines[i]));
    at_mt_engine *e = at_mt_engine_new(&rt_ops, R, err);
    if (e) at_mt_engine_set_name(e, name);
    return e;
}
