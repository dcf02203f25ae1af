/* metrics.c - counters, gauges and histograms; Prometheus text format.
 *
 * One mutex per metric guards its label sets (a few hundred at most), the
 * registry mutex guards the list of metrics.  Label sets are capped so a
 * client sending ever-new paths cannot grow memory without bound. */
#include "core/metrics.h"

#include "core/strbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_METRIC_MAX_SETS   256
#define AT_METRIC_MAX_LABELS 16

enum { M_COUNTER, M_GAUGE, M_HISTOGRAM };

typedef struct at_series {
    char *key;        /* label values joined by ',' (normalised) */
    char **values;    /* n_labels strings */
    double value;     /* counter / gauge */
    uint64_t *counts; /* histogram: per bucket (not cumulative), n_buckets + 1 */
    double sum;
    uint64_t count;
} at_series;

struct at_metric {
    int type;
    char *name, *help;
    char **labels;
    size_t n_labels;
    double *buckets;
    size_t n_buckets;
    pthread_mutex_t mu;
    at_series **series;
    size_t n_series, cap;
    struct at_metric *next;
};

struct at_metrics {
    pthread_mutex_t mu;
    at_metric *head, *tail;
};

at_metrics *at_metrics_new(void)
{
    at_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void series_free(at_series *s, size_t n_labels)
{
    if (!s) return;
    for (size_t i = 0; i < n_labels; i++) free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s->key);
    free(s);
}

static void metric_free(at_metric *c)
{
    for (size_t i = 0; i < c->n_series; i++) series_free(c->series[i], c->n_labels);
    free(c->series);
    for (size_t i = 0; i < c->n_labels; i++) free(c->labels[i]);
    free(c->labels);
    free(c->buckets);
    free(c->name);
    free(c->help);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void at_metrics_free(at_metrics *m)
{
    if (!m) return;
    for (at_metric *c = m->head, *nx; c; c = nx) {
        nx = c->next;
        metric_free(c);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int valid_name(const char *s, int allow_colon)
{
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
                 (p != s && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

/* Splits "a,b,c" into exactly n strings: missing values become "", extra
 * ones are dropped.  Returns NULL on allocation failure. */
static char **split_values(const char *s, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v) return NULL;
    const char *p = s ? s : "";
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[i] = strndup(p, len);
        if (!v[i]) {
            for (size_t j = 0; j < i; j++) free(v[j]);
            free(v);
            return NULL;
        }
        p = e ? e + 1 : p + len;
    }
    return v;
}

static at_series *series_new(at_metric *c, char **values)
{
    at_series *s = calloc(1, sizeof *s);
    if (!s) goto fail;
    s->values = values;
    size_t klen = 1;
    for (size_t i = 0; i < c->n_labels; i++) klen += strlen(values[i]) + 1;
    s->key = malloc(klen);
    if (!s->key) goto fail;
    s->key[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; i < c->n_labels; i++) {
        size_t l = strlen(values[i]);
        if (i) s->key[off++] = ',';
        memcpy(s->key + off, values[i], l);
        off += l;
    }
    s->key[off] = '\0';
    if (c->type == M_HISTOGRAM) {
        s->counts = calloc(c->n_buckets + 1, sizeof *s->counts);
        if (!s->counts) goto fail;
    }
    return s;
fail:
    if (s) {
        s->values = NULL; /* values stay owned by the caller on failure */
        free(s->key);
        free(s);
    }
    return NULL;
}

static int append_series(at_metric *c, at_series *s)
{
    if (c->n_series == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 4;
        if (nc > AT_METRIC_MAX_SETS + 1) nc = AT_METRIC_MAX_SETS + 1;
        at_series **p = realloc(c->series, nc * sizeof *p);
        if (!p) return -1;
        c->series = p;
        c->cap = nc;
    }
    c->series[c->n_series++] = s;
    return 0;
}

static at_series *find_key(at_metric *c, const char *key)
{
    for (size_t i = 0; i < c->n_series; i++)
        if (!strcmp(c->series[i]->key, key)) return c->series[i];
    return NULL;
}

/* Finds or creates the series for label_values; caller holds c->mu.  Past
 * the cap, the "other" set (every label "other") takes the update. */
static at_series *get_series(at_metric *c, const char *label_values)
{
    /* Fast path without allocating: normalise the key on the stack. */
    char kb[512];
    size_t kn = 0;
    const char *p = label_values ? label_values : "";
    int fits = 1;
    for (size_t i = 0; i < c->n_labels && fits; i++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (kn + len + 2 > sizeof kb) {
            fits = 0;
            break;
        }
        if (i) kb[kn++] = ',';
        memcpy(kb + kn, p, len);
        kn += len;
        p = e ? e + 1 : p + len;
    }
    kb[kn] = '\0';
    if (fits) {
        at_series *hit = find_key(c, kb);
        if (hit) return hit;
    }
    char **vals = split_values(label_values, c->n_labels);
    if (!vals) return NULL;
    at_series *tmp = series_new(c, vals);
    if (!tmp) {
        for (size_t i = 0; i < c->n_labels; i++) free(vals[i]);
        free(vals);
        return NULL;
    }
    at_series *s = find_key(c, tmp->key);
    if (s) {
        series_free(tmp, c->n_labels);
        return s;
    }
    if (c->n_series >= AT_METRIC_MAX_SETS) {
        series_free(tmp, c->n_labels);
        char other[AT_METRIC_MAX_LABELS * 6 + 1];
        other[0] = '\0';
        for (size_t i = 0; i < c->n_labels; i++) strcat(other, i ? ",other" : "other");
        s = find_key(c, other);
        if (s) return s;
        if (c->n_series > AT_METRIC_MAX_SETS) return NULL; /* cannot happen: the one extra slot is "other" */
        vals = split_values(other, c->n_labels);
        if (!vals) return NULL;
        tmp = series_new(c, vals);
        if (!tmp) {
            for (size_t i = 0; i < c->n_labels; i++) free(vals[i]);
            free(vals);
            return NULL;
        }
    }
    if (append_series(c, tmp)) {
        series_free(tmp, c->n_labels);
        return NULL;
    }
    return tmp;
}

static at_metric *reg(at_metrics *m, int type, const char *name, const char *help, const char *label_names,
                      const double *buckets, size_t n_buckets)
{
    if (!m || !valid_name(name, 1)) return NULL;
    /* Same name registered twice: hand back the existing metric if it is the
     * same kind, so services can share one registry without coordination. */
    pthread_mutex_lock(&m->mu);
    for (at_metric *c = m->head; c; c = c->next) {
        if (!strcmp(c->name, name)) {
            pthread_mutex_unlock(&m->mu);
            return c->type == type ? c : NULL;
        }
    }
    pthread_mutex_unlock(&m->mu);

    at_metric *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->type = type;
    c->name = strdup(name);
    c->help = strdup(help ? help : "");
    if (!c->name || !c->help) goto fail;
    if (label_names && *label_names) {
        size_t n = 1;
        for (const char *p = label_names; *p; p++) n += *p == ',';
        if (n > AT_METRIC_MAX_LABELS) goto fail;
        c->labels = split_values(label_names, n);
        if (!c->labels) goto fail;
        c->n_labels = n;
        for (size_t i = 0; i < n; i++)
            if (!valid_name(c->labels[i], 0) || !strcmp(c->labels[i], "le") ||
                !strncmp(c->labels[i], "__", 2))
                goto fail;
    }
    if (type == M_HISTOGRAM) {
        /* A trailing +Inf given by the caller is implied anyway. */
        if (n_buckets && buckets && isinf(buckets[n_buckets - 1]) && buckets[n_buckets - 1] > 0) n_buckets--;
        if (n_buckets && !buckets) goto fail;
        c->buckets = malloc((n_buckets ? n_buckets : 1) * sizeof(double));
        if (!c->buckets) goto fail;
        for (size_t i = 0; i < n_buckets; i++) {
            if (isnan(buckets[i]) || (i && !(buckets[i] > buckets[i - 1]))) goto fail;
            c->buckets[i] = buckets[i];
        }
        c->n_buckets = n_buckets;
    }
    if (c->n_labels == 0 && !get_series(c, NULL)) /* unlabelled: render 0 from the start */
        goto fail;

    pthread_mutex_lock(&m->mu);
    for (at_metric *o = m->head; o; o = o->next) { /* lost a registration race */
        if (!strcmp(o->name, name)) {
            pthread_mutex_unlock(&m->mu);
            metric_free(c);
            return o->type == type ? o : NULL;
        }
    }
    if (m->tail)
        m->tail->next = c;
    else
        m->head = c;
    m->tail = c;
    pthread_mutex_unlock(&m->mu);
    return c;
fail:
    metric_free(c);
    return NULL;
}

at_metric *at_metrics_counter(at_metrics *m, const char *name, const char *help, const char *label_names)
{
    return reg(m, M_COUNTER, name, help, label_names, NULL, 0);
}

at_metric *at_metrics_gauge(at_metrics *m, const char *name, const char *help, const char *label_names)
{
    return reg(m, M_GAUGE, name, help, label_names, NULL, 0);
}

at_metric *at_metrics_histogram(at_metrics *m, const char *name, const char *help, const char *label_names,
                                const double *buckets, size_t n_buckets)
{
    return reg(m, M_HISTOGRAM, name, help, label_names, buckets, n_buckets);
}

void at_metric_inc(at_metric *c, const char *label_values, double v)
{
    if (!c || c->type == M_HISTOGRAM || isnan(v)) return;
    if (c->type == M_COUNTER && v < 0) return; /* counters only go up */
    pthread_mutex_lock(&c->mu);
    at_series *s = get_series(c, label_values);
    if (s) s->value += v;
    pthread_mutex_unlock(&c->mu);
}

void at_metric_set(at_metric *g, const char *label_values, double v)
{
    if (!g || g->type != M_GAUGE) return;
    pthread_mutex_lock(&g->mu);
    at_series *s = get_series(g, label_values);
    if (s) s->value = v;
    pthread_mutex_unlock(&g->mu);
}

void at_metric_add(at_metric *g, const char *label_values, double v)
{
    if (!g || g->type != M_GAUGE || isnan(v)) return;
    pthread_mutex_lock(&g->mu);
    at_series *s = get_series(g, label_values);
    if (s) s->value += v;
    pthread_mutex_unlock(&g->mu);
}

void at_metric_observe(at_metric *h, const char *label_values, double v)
{
    if (!h || h->type != M_HISTOGRAM || isnan(v)) return;
    pthread_mutex_lock(&h->mu);
    at_series *s = get_series(h, label_values);
    if (s) {
        size_t b = 0;
        while (b < h->n_buckets && v > h->buckets[b]) b++;
        s->counts[b]++;
        s->sum += v;
        s->count++;
    }
    pthread_mutex_unlock(&h->mu);
}

double at_metric_value(at_metric *c, const char *label_values)
{
    if (!c) return 0;
    double r = 0;
    char **vals = split_values(label_values, c->n_labels);
    if (!vals) return 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_series; i++) {
        at_series *s = c->series[i];
        size_t k = 0;
        while (k < c->n_labels && !strcmp(s->values[k], vals[k])) k++;
        if (k == c->n_labels) {
            r = c->type == M_HISTOGRAM ? (double)s->count : s->value;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < c->n_labels; i++) free(vals[i]);
    free(vals);
    return r;
}

/* ---- rendering ---- */

/* Shortest text that reads back to the same double; integers without an
 * exponent; Prometheus spellings for the specials. */
static void fmt_num(char out[40], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* 2^53 */
        snprintf(out, 40, "%.0f", v);
        if (!strcmp(out, "-0")) strcpy(out, "0");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 40, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* HELP escapes \ and newline; label values also escape ". */
static void mb_escaped(at_strbuf *b, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            at_strbuf_put(b, "\\\\", 2);
        else if (*s == '\n')
            at_strbuf_put(b, "\\n", 2);
        else if (quote && *s == '"')
            at_strbuf_put(b, "\\\"", 2);
        else
            at_strbuf_put(b, s, 1);
    }
}

static void mb_labels(at_strbuf *b, const at_metric *c, const at_series *s, const char *le)
{
    if (c->n_labels == 0 && !le) return;
    at_strbuf_put(b, "{", 1);
    for (size_t i = 0; i < c->n_labels; i++) {
        if (i) at_strbuf_put(b, ",", 1);
        at_strbuf_str(b, c->labels[i]);
        at_strbuf_put(b, "=\"", 2);
        mb_escaped(b, s->values[i], 1);
        at_strbuf_put(b, "\"", 1);
    }
    if (le) {
        if (c->n_labels) at_strbuf_put(b, ",", 1);
        at_strbuf_str(b, "le=\"");
        at_strbuf_str(b, le);
        at_strbuf_put(b, "\"", 1);
    }
    at_strbuf_put(b, "}", 1);
}

static void mb_sample(at_strbuf *b, const at_metric *c, const char *suffix, const at_series *s,
                      const char *le, double v)
{
    char num[40];
    at_strbuf_str(b, c->name);
    at_strbuf_str(b, suffix);
    mb_labels(b, c, s, le);
    fmt_num(num, v);
    at_strbuf_put(b, " ", 1);
    at_strbuf_str(b, num);
    at_strbuf_put(b, "\n", 1);
}

static void render_metric(at_strbuf *b, at_metric *c)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    at_strbuf_str(b, "# HELP ");
    at_strbuf_str(b, c->name);
    at_strbuf_put(b, " ", 1);
    mb_escaped(b, c->help, 0);
    at_strbuf_str(b, "\n# TYPE ");
    at_strbuf_str(b, c->name);
    at_strbuf_put(b, " ", 1);
    at_strbuf_str(b, types[c->type]);
    at_strbuf_put(b, "\n", 1);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_series; i++) {
        const at_series *s = c->series[i];
        if (c->type != M_HISTOGRAM) {
            mb_sample(b, c, "", s, NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        char le[40];
        for (size_t k = 0; k <= c->n_buckets; k++) {
            cum += s->counts[k];
            if (k < c->n_buckets)
                fmt_num(le, c->buckets[k]);
            else
                strcpy(le, "+Inf");
            mb_sample(b, c, "_bucket", s, le, (double)cum);
        }
        mb_sample(b, c, "_sum", s, NULL, s->sum);
        mb_sample(b, c, "_count", s, NULL, (double)s->count);
    }
    pthread_mutex_unlock(&c->mu);
}

char *at_metrics_render(at_metrics *m)
{
    if (!m) return NULL;
    at_strbuf b = {0};
    pthread_mutex_lock(&m->mu);
    for (at_metric *c = m->head; c; c = c->next) render_metric(&b, c);
    pthread_mutex_unlock(&m->mu);
    return at_strbuf_take(&b); /* "" rather than NULL for an empty registry */
}
