/* neural.c - translation with Hugging Face models (see neural.h). */
#include "engines/mt/neural.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/pool.h"
#include "core/lang.h"
#include "core/strbuf.h"
#include "engines/mt/nmt/generate.h"
#include "engines/mt/nmt/tokenizer.h"
#include "nn/safetensors.h"

/* ------------------------------------------------------------- sentences */

static size_t utf8_back(const char *t, size_t i, size_t lo)
{
    while (i > lo && ((unsigned char)t[i] & 0xC0) == 0x80) i--;
    return i;
}

/* Length of a sentence end at t[i] (. ! ? and U+2026 U+3002 U+FF01 U+FF1F,
 * then closing quotes and brackets), 0 when none. */
static size_t end_mark(const char *t, size_t i)
{
    static const char *const marks[] = {"\xe2\x80\xa6", "\xe3\x80\x82", "\xef\xbc\x81", "\xef\xbc\x9f"};
    static const char *const closers[] = {"\"",           "'",        ")",           "]", "\xe2\x80\x9d",
                                          "\xe2\x80\x99", "\xc2\xbb", "\xe3\x80\x8d"};
    size_t n = 0;
    if (t[i] == '.' || t[i] == '!' || t[i] == '?')
        n = 1;
    else
        for (size_t k = 0; k < sizeof marks / sizeof *marks && !n; k++)
            if (!strncmp(t + i, marks[k], strlen(marks[k]))) n = strlen(marks[k]);
    if (!n) return 0;
    for (int more = 1; more;) {
        more = 0;
        for (size_t k = 0; k < sizeof closers / sizeof *closers; k++)
            if (!strncmp(t + i + n, closers[k], strlen(closers[k]))) {
                n += strlen(closers[k]);
                more = 1;
                break;
            }
    }
    return n;
}

static int is_cjk_mark(const char *t, size_t i)
{
    return (unsigned char)t[i] >= 0xE3 && (unsigned char)t[i] <= 0xEF; /* CJK marks need no space after */
}

size_t at_mt_split_sentences(const char *t, size_t max_bytes, at_mt_span *spans, size_t cap)
{
    size_t n = 0, i = 0, len = strlen(t);
    if (max_bytes < 8) max_bytes = 8;
    while (i < len) {
        while (i < len && isspace((unsigned char)t[i])) i++;
        if (i == len) break;
        size_t start = i, end = len;
        for (size_t j = i; j < len; j++) {
            if (t[j] == '\n' || t[j] == '\r') {
                end = j;
                break;
            }
            size_t m = end_mark(t, j);
            if (m && (j + m == len || isspace((unsigned char)t[j + m]) || is_cjk_mark(t, j))) {
                end = j + m;
                break;
            }
            if (m) j += m - 1;
        }
        while (end > start && isspace((unsigned char)t[end - 1])) end--;
        if (end - start > max_bytes) {
            size_t cut = start + max_bytes;
            size_t sp = cut;
            while (sp > start && !isspace((unsigned char)t[sp])) sp--;
            end = sp > start ? sp : utf8_back(t, cut, start + 1);
            if (end == start) end = cut; /* not UTF-8: any byte */
        }
        if (n < cap) spans[n] = (at_mt_span){start, end};
        n++;
        i = end;
    }
    return n;
}

/* ------------------------------------------------------------- languages */

/* ISO 639-1: the codes a many-to-many model is asked for. */
static const char ISO1[] =
    "af am ar as ast az be bg bn bs ca ceb cs cy da de el en eo es et eu fa ff fi fr fy ga "
    "gd gl gu ha he hi hr ht hu hy id ig is it ja jv ka kk km kn ko ku ky lb lg ln lo lt lv "
    "mg mi mk ml mn mr ms mt my ne nl nn no ns oc om or pa pl ps pt qu ro ru rw sa sc sd si "
    "sk sl sn so sq sr ss su sv sw ta te tg th ti tk tl tn tr ts tt ug uk ur uz vi wo xh yi "
    "yo zh zu";

/* A language code as ISO 639-1: two letters as they are, three letters
 * (ISO 639-3 and OPUS-MT's spellings) mapped. */
static const char *iso1_of(const char *code, char *buf, size_t cap)
{
    size_t n = strlen(code);
    if (n == 2) {
        snprintf(buf, cap, "%c%c", tolower((unsigned char)code[0]), tolower((unsigned char)code[1]));
        return buf;
    }
    const char *iso = at_lang_iso1(code);
    if (!iso) return NULL;
    snprintf(buf, cap, "%s", iso);
    return buf;
}

/* -------------------------------------------------------------- the engine */

typedef struct item { /* one sentence of a call */
    int *ids, n_ids;
    int forced_bos;
    int *out, n_out;
} item;

typedef struct call { /* one caller's sentences, queued on a model */
    item *items;
    int n, next, n_done, rc;
    at_err err;
    struct call *qnext;
} call;

typedef struct nmodel {
    char name[128];
    at_nmt_model *m;
    at_nmt_tok *tok;
    at_nmt_gen gen;
    at_nmt_state *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int locks, busy;
    call *head, *tail;
} nmodel;

/* How a pair is served: a model, the text before each sentence (Marian's
 * >>xxx<< target token), the source language's name for the tokenizer and
 * the forced first token. */
typedef struct route {
    int model;
    char prefix[24];
    char src_lang[16];
    int forced_bos;
} route;

typedef struct neural {
    nmodel *mods;
    int n_mods;
    at_compute *pool;
    at_mt_pair *pairs; /* sorted; routes[i] serves pairs[i] */
    route *routes;
    size_t n_pairs, cap_pairs;
    at_mt_neural_config cfg;
} neural;

static void nm_destroy(void *impl)
{
    neural *N = impl;
    for (int i = 0; i < N->n_mods; i++) {
        nmodel *M = &N->mods[i];
        at_nmt_state_free(M->s);
        at_nmt_tok_free(M->tok);
        at_nmt_model_free(M->m);
        if (M->locks) {
            pthread_mutex_destroy(&M->mu);
            pthread_cond_destroy(&M->cv);
        }
    }
    at_compute_free(N->pool);
    free(N->mods);
    free(N->pairs);
    free(N->routes);
    free(N);
}

/* Runs the sentences of a batch (no lock held): one encoder pass, one
 * search. */
static int run_batch(nmodel *M, item **it, int n, const at_mt_neural_config *cfg, at_err *err)
{
    const at_nmt_hparams *hp = at_nmt_model_hparams(M->m);
    at_nmt_memory **mems = calloc((size_t)n, sizeof *mems);
    const int **src = calloc((size_t)n, sizeof *src);
    int *lens = calloc((size_t)n, sizeof *lens), rc = -1;
    at_nmt_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!mems || !src || !lens || !jobs) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (!(mems[i] = at_nmt_memory_new(M->m, it[i]->n_ids, err))) goto out;
        src[i] = it[i]->ids;
        lens[i] = it[i]->n_ids;
        /* a translation rarely runs past twice its source: the bound keeps
         * a model that repeats itself from running to 512 tokens */
        jobs[i] = (at_nmt_job){mems[i], it[i]->forced_bos, 2 * it[i]->n_ids + 16, NULL, 0, 0};
    }
    if (at_nmt_encode(M->s, src, lens, n, mems, err)) goto out;
    at_nmt_gen g = M->gen;
    if (cfg->num_beams > 0) g.num_beams = cfg->num_beams;
    if (g.max_length > hp->max_pos) g.max_length = hp->max_pos;
    if (at_nmt_generate(M->s, &g, jobs, n, err)) goto out;
    for (int i = 0; i < n; i++) {
        it[i]->out = jobs[i].tokens;
        it[i]->n_out = jobs[i].n_tokens;
    }
    rc = 0;
out:
    for (int i = 0; mems && i < n; i++) at_nmt_memory_free(mems[i]);
    free(mems);
    free(src);
    free(lens);
    free(jobs);
    return rc;
}

/* Queues a call's sentences and returns when they are translated: the
 * caller that finds the model idle runs the queue's sentences (its own
 * and others') as one batch. */
static void translate_call(nmodel *M, call *c, const at_mt_neural_config *cfg)
{
    int max = cfg->max_batch > 0 ? cfg->max_batch : 32;
    item **batch = malloc((size_t)max * sizeof *batch);
    call **owner = malloc((size_t)max * sizeof *owner);
    if (!batch || !owner) {
        free(batch);
        free(owner);
        c->rc = at_err_set(&c->err, AT_E_NOMEM, "out of memory");
        return;
    }
    pthread_mutex_lock(&M->mu);
    c->qnext = NULL;
    if (M->tail)
        M->tail->qnext = c;
    else
        M->head = c;
    M->tail = c;
    while (c->n_done < c->n) {
        if (M->busy) {
            pthread_cond_wait(&M->cv, &M->mu);
            continue;
        }
        int n = 0;
        while (M->head && n < max) {
            call *h = M->head;
            while (h->next < h->n && n < max) {
                owner[n] = h;
                batch[n++] = &h->items[h->next++];
            }
            if (h->next == h->n) {
                M->head = h->qnext;
                if (!M->head) M->tail = NULL;
            }
        }
        M->busy = 1;
        pthread_mutex_unlock(&M->mu);
        at_err err = {0};
        int rc = run_batch(M, batch, n, cfg, &err);
        pthread_mutex_lock(&M->mu);
        for (int i = 0; i < n; i++) {
            if (rc && !owner[i]->rc) {
                owner[i]->rc = rc;
                owner[i]->err = err;
            }
            owner[i]->n_done++;
        }
        M->busy = 0;
        pthread_cond_broadcast(&M->cv);
    }
    pthread_mutex_unlock(&M->mu);
    free(batch);
    free(owner);
}

static int nm_translate_many(void *impl, const char *source, const char *target, const char *const *texts,
                             int n, char **outs, at_err *err)
{
    neural *N = impl;
    long r = at_mt_pairs_find(N->pairs, N->n_pairs, source, target);
    if (r < 0) return at_err_set(err, AT_E_UNSUPPORTED, "unsupported language pair %s-%s", source, target);
    const route *R = &N->routes[r];
    nmodel *M = &N->mods[R->model];
    const at_nmt_hparams *hp = at_nmt_model_hparams(M->m);
    size_t max_bytes = N->cfg.max_sentence > 0 ? (size_t)N->cfg.max_sentence : 400;
    if (max_bytes < 8) max_bytes = 8; /* as the splitter takes it: buf holds its longest span */
    size_t total = 0, *first = calloc((size_t)n + 1, sizeof *first);
    at_mt_span *spans = NULL;
    call c = {0};
    int rc = -1;
    char *buf = NULL;
    if (!first) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        first[i] = total;
        total += at_mt_split_sentences(texts[i], max_bytes, NULL, 0);
    }
    first[n] = total;
    spans = calloc(total ? total : 1, sizeof *spans);
    c.items = calloc(total ? total : 1, sizeof *c.items);
    buf = malloc(max_bytes + sizeof R->prefix + 1);
    if (!spans || !c.items || !buf) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        at_mt_split_sentences(texts[i], max_bytes, spans + first[i], first[i + 1] - first[i]);
    for (int i = 0; i < n; i++)
        for (size_t k = first[i]; k < first[i + 1]; k++) {
            int len = snprintf(buf, max_bytes + sizeof R->prefix + 1, "%s%.*s", R->prefix,
                               (int)(spans[k].end - spans[k].start), texts[i] + spans[k].start);
            item *it = &c.items[k];
            if (at_nmt_tok_encode(M->tok, R->src_lang[0] ? R->src_lang : NULL, buf, (size_t)len, &it->ids,
                                  &it->n_ids, err))
                goto out;
            if (it->n_ids > hp->max_pos) {
                at_err_set(err, AT_E_TOO_LARGE, "a sentence of %d tokens exceeds %s's %d positions",
                           it->n_ids, M->name, hp->max_pos);
                goto out;
            }
            it->forced_bos = R->forced_bos;
        }
    c.n = (int)total;
    if (c.n) translate_call(M, &c, &N->cfg);
    if (c.rc) {
        rc = c.rc;
        if (err) *err = c.err;
        goto out;
    }
    /* each text: its leading space, then every sentence's translation
     * followed by the separator that followed it */
    for (int i = 0; i < n; i++) {
        at_strbuf sb = {0};
        size_t lead = first[i] < first[i + 1] ? spans[first[i]].start : strlen(texts[i]);
        at_strbuf_put(&sb, texts[i], lead);
        for (size_t k = first[i]; k < first[i + 1]; k++) {
            char *tr = NULL;
            item *it = &c.items[k];
            if (at_nmt_tok_decode(M->tok, it->out, it->n_out, &tr, err)) {
                at_strbuf_free(&sb);
                goto out;
            }
            at_strbuf_str(&sb, tr);
            free(tr);
            size_t next = k + 1 < first[i + 1] ? spans[k + 1].start : strlen(texts[i]);
            at_strbuf_put(&sb, texts[i] + spans[k].end, next - spans[k].end);
        }
        if (!(outs[i] = at_strbuf_take(&sb))) {
            at_err_set(err, AT_E_NOMEM, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    if (rc)
        for (int i = 0; i < n; i++) {
            free(outs[i]);
            outs[i] = NULL;
        }
    for (size_t k = 0; c.items && k < total; k++) {
        free(c.items[k].ids);
        free(c.items[k].out);
    }
    free(c.items);
    free(spans);
    free(first);
    free(buf);
    return rc;
}

static int nm_translate(void *impl, const char *source, const char *target, const char *text, char **out,
                        at_err *err)
{
    return nm_translate_many(impl, source, target, &text, 1, out, err);
}

static const at_mt_pair *nm_pairs(void *impl, size_t *n)
{
    neural *N = impl;
    *n = N->n_pairs;
    return N->pairs;
}

static const char *nm_route(void *impl, const char *source, const char *target, char *buf, size_t cap)
{
    neural *N = impl;
    long r = at_mt_pairs_find(N->pairs, N->n_pairs, source, target);
    if (r < 0)
        snprintf(buf, cap, "none");
    else /* with the target token a multi-target model is given */
        snprintf(buf, cap, "%s%s%.*s", N->mods[N->routes[r].model].name, N->routes[r].prefix[0] ? " " : "",
                 (int)strcspn(N->routes[r].prefix, " "), N->routes[r].prefix);
    return buf;
}

static const at_mt_ops nm_ops = {
    .name = "neural",
    .destroy = nm_destroy,
    .translate = nm_translate,
    .pairs = nm_pairs,
    .translate_many = nm_translate_many,
    .route = nm_route,
};

/* ------------------------------------------------------------------ loading */

static int add_pair(neural *N, const char *src, const char *tgt, const route *r, at_err *err)
{
    if (!strcmp(src, tgt)) return 0;
    if (N->n_pairs == N->cap_pairs) {
        size_t nc = N->cap_pairs ? N->cap_pairs * 2 : 64;
        at_mt_pair *p = realloc(N->pairs, nc * sizeof *p);
        if (p) N->pairs = p;
        route *q = realloc(N->routes, nc * sizeof *q);
        if (q) N->routes = q;
        if (!p || !q) return at_err_set(err, AT_E_NOMEM, "out of memory");
        N->cap_pairs = nc;
    }
    at_mt_pair *p = &N->pairs[N->n_pairs];
    snprintf(p->source, sizeof p->source, "%.15s", src); /* codes are short: at most 15 bytes kept */
    snprintf(p->target, sizeof p->target, "%.15s", tgt);
    N->routes[N->n_pairs++] = *r;
    return 0;
}

/* Marian: "opus-mt-en-es" (also opus-mt-tc-big-en-es) from the folder's
 * name, else tokenizer_config.json; a target group ("ROMANCE", "mul") is
 * every >>xxx<< token the tokenizer has. */
static int marian_pairs(neural *N, int idx, const char *dir, at_err *err)
{
    nmodel *M = &N->mods[idx];
    char a[16] = "", b[16] = "", sa[16], sb[16];
    const char *o = strstr(M->name, "opus-mt-");
    if (o) {
        const char *last = strrchr(o, '-'), *prev = last;
        while (prev > o && prev[-1] != '-') prev--;
        if (last - prev < (long)sizeof a && prev >= o + 8) {
            snprintf(a, sizeof a, "%.*s", (int)(last - prev), prev);
            snprintf(b, sizeof b, "%s", last + 1);
        }
    }
    if (!a[0]) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        at_err e2 = {0};
        at_hf_config *c = at_hf_config_load(path, &e2);
        const char *s = NULL, *t = NULL;
        if (c && !at_hf_config_string_or(c, "source_lang", "", &s, &e2) &&
            !at_hf_config_string_or(c, "target_lang", "", &t, &e2)) {
            snprintf(a, sizeof a, "%s", s);
            snprintf(b, sizeof b, "%s", t);
        }
        at_hf_config_free(c);
    }
    const char *src = iso1_of(a, sa, sizeof sa), *tgt = iso1_of(b, sb, sizeof sb);
    if (!src)
        return at_err_set(err, AT_E_UNSUPPORTED,
                          "%s: which languages it translates is unknown (name the folder opus-mt-SRC-TGT, as "
                          "downloaded)",
                          dir);
    /* A multi-target model needs its >>xxx<< token first, also under a
     * pair's name (opus-mt-en-zh wants >>cmn_Hans<<): the first token of
     * each language serves it. */
    route r = {idx, "", "", -1};
    int added = 0;
    for (int i = 0; at_nmt_tok_lang(M->tok, i); i++) {
        const char *tok = at_nmt_tok_lang(M->tok, i);
        char code[16], iso[16];
        size_t len = strlen(tok);
        if (len < 5 || len - 4 >= sizeof code || strncmp(tok, ">>", 2)) continue;
        snprintf(code, sizeof code, "%.*s", (int)strcspn(tok + 2, "_<"), tok + 2); /* cmn_Hans: cmn */
        if (!iso1_of(code, iso, sizeof iso) || (tgt && strcmp(iso, tgt))) continue;
        snprintf(r.prefix, sizeof r.prefix, "%s ", tok);
        if (add_pair(N, src, iso, &r, err)) return -1;
        added++;
        if (tgt) break;
    }
    if (tgt && !added) {
        r.prefix[0] = 0;
        return add_pair(N, src, tgt, &r, err);
    }
    return added ? 0 : at_err_set(err, AT_E_UNSUPPORTED, "%s: no target language found", dir);
}

/* Many to many: every pair of the ISO 639-1 languages the tokenizer has. */
static int m2m_pairs(neural *N, int idx, at_err *err)
{
    nmodel *M = &N->mods[idx];
    char langs[128][4];
    int ids[128], n = 0;
    for (const char *p = ISO1; *p && n < 128;) {
        size_t l = strcspn(p, " ");
        snprintf(langs[n], sizeof langs[n], "%.*s", (int)l, p);
        if ((ids[n] = at_nmt_tok_lang_id(M->tok, langs[n])) >= 0) n++;
        p += l + (p[l] == ' ');
    }
    for (int s = 0; s < n; s++)
        for (int t = 0; t < n; t++) {
            route r = {idx, "", "", ids[t]};
            memcpy(r.src_lang, langs[s], sizeof langs[s]);
            if (add_pair(N, langs[s], langs[t], &r, err)) return -1;
        }
    return n ? 0
             : at_err_set(err, AT_E_UNSUPPORTED, "%s: no language of its tokenizer is known here", M->name);
}

static int load_model(neural *N, int idx, const char *dir, at_err *err)
{
    nmodel *M = &N->mods[idx];
    const char *base = dir;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    for (size_t i = 0; i + 1 < len; i++)
        if (dir[i] == '/') base = dir + i + 1;
    snprintf(M->name, sizeof M->name, "%.*s", (int)(dir + len - base), base);
    if (pthread_mutex_init(&M->mu, NULL)) return at_err_set(err, AT_E_ENGINE, "mutex");
    if (pthread_cond_init(&M->cv, NULL)) {
        pthread_mutex_destroy(&M->mu);
        return at_err_set(err, AT_E_ENGINE, "condition variable");
    }
    M->locks = 1;
    if (!(M->m = at_nmt_model_load_as(dir, N->cfg.q8 ? AT_DT_Q8_0 : -1, err)) ||
        at_nmt_gen_load(dir, M->m, &M->gen, err) || !(M->tok = at_nmt_tok_load(dir, err)) ||
        !(M->s = at_nmt_state_new(M->m, N->pool, err)))
        return -1;
    return 0;
}

static int cmp_idx(const void *a, const void *b, void *arg)
{
    const at_mt_pair *p = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = at_mt_pair_cmp(&p[x], &p[y]);
    return c ? c : (x > y) - (x < y); /* stable: the first model's route wins */
}

/* Sorts the pairs, keeping the first route of each. */
static int sort_pairs(neural *N, at_err *err)
{
    size_t n = N->n_pairs, *ix = malloc((n ? n : 1) * sizeof *ix), u = 0;
    at_mt_pair *p = malloc((n ? n : 1) * sizeof *p);
    route *r = malloc((n ? n : 1) * sizeof *r);
    if (!ix || !p || !r) {
        free(ix);
        free(p);
        free(r);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) ix[i] = i;
    qsort_r(ix, n, sizeof *ix, cmp_idx, N->pairs);
    for (size_t i = 0; i < n; i++)
        if (!u || at_mt_pair_cmp(&p[u - 1], &N->pairs[ix[i]])) {
            p[u] = N->pairs[ix[i]];
            r[u++] = N->routes[ix[i]];
        }
    free(ix);
    free(N->pairs);
    free(N->routes);
    N->pairs = p;
    N->routes = r;
    N->n_pairs = u;
    return 0;
}

at_mt_engine *at_mt_neural_new(const char *const *dirs, int n, const at_mt_neural_config *cfg, at_err *err)
{
    neural *N = calloc(1, sizeof *N);
    if (!N || n < 1 || !(N->mods = calloc((size_t)n, sizeof *N->mods))) {
        free(N);
        at_err_set(err, n < 1 ? AT_E_INVALID : AT_E_NOMEM, n < 1 ? "no translation models" : "out of memory");
        return NULL;
    }
    if (cfg) N->cfg = *cfg;
    if (!(N->pool = at_compute_new(N->cfg.threads, err))) goto fail;
    for (int i = 0; i < n; i++) {
        N->n_mods++;
        if (load_model(N, i, dirs[i], err)) goto fail;
    }
    /* Marian models first: a pair's own model before a many-to-many one */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N->n_mods; i++) {
            int marian = at_nmt_model_hparams(N->mods[i].m)->arch == AT_NMT_MARIAN;
            if (marian != (pass == 0)) continue;
            if (marian ? marian_pairs(N, i, dirs[i], err) : m2m_pairs(N, i, err)) goto fail;
        }
    if (sort_pairs(N, err)) goto fail;
    return at_mt_engine_new(&nm_ops, N, err);
fail:
    nm_destroy(N);
    return NULL;
}
