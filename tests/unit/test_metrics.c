/* test_metrics.c - registry, label sets, Prometheus text (src/core/metrics.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

/* Parses one sample line "name{labels} value" (labels kept verbatim);
 * returns 0 for comments/blank, 1 for a sample, -1 if malformed. */
static int parse_sample(const char *line, char *name, char *labels, double *v)
{
    if (!*line || line[0] == '#') return 0;
    const char *sp = strrchr(line, ' ');
    if (!sp) return -1;
    const char *br = strchr(line, '{');
    if (br && br < sp) {
        const char *close = strrchr(line, '}');
        if (!close || close > sp || close[1] != ' ') return -1;
        memcpy(name, line, (size_t)(br - line));
        name[br - line] = '\0';
        memcpy(labels, br, (size_t)(close - br + 1));
        labels[close - br + 1] = '\0';
    } else {
        memcpy(name, line, (size_t)(sp - line));
        name[sp - line] = '\0';
        labels[0] = '\0';
    }
    char *e;
    if (!strcmp(sp + 1, "+Inf"))
        *v = INFINITY;
    else if (!strcmp(sp + 1, "-Inf"))
        *v = -INFINITY;
    else if (!strcmp(sp + 1, "NaN"))
        *v = NAN;
    else {
        *v = strtod(sp + 1, &e);
        if (*e) return -1;
    }
    return 1;
}

/* Value of the sample "name{labels}" in a rendered document. */
static int lookup(const char *doc, const char *want_name, const char *want_labels, double *out)
{
    char *copy = strdup(doc), *save = NULL;
    int found = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], labels[1024];
        double v;
        int r = parse_sample(line, name, labels, &v);
        if (r < 0) fail_msg("malformed line: %s", line);
        if (r == 1 && !strcmp(name, want_name) && !strcmp(labels, want_labels)) {
            *out = v;
            found++;
        }
    }
    free(copy);
    return found;
}

static double val(const char *doc, const char *name, const char *labels)
{
    double v = 0;
    if (lookup(doc, name, labels, &v) != 1)
        fail_msg("sample %s%s missing or duplicated in:\n%s", name, labels, doc);
    return v;
}

static void test_counter_gauge(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    at_metric *req = at_metrics_counter(m, "at_requests_total", "Requests served.", "method,path,status");
    at_metric *up = at_metrics_gauge(m, "at_up", "1 when serving.", NULL);
    at_metric *inflight = at_metrics_gauge(m, "at_inflight", "Requests in progress.", "service");
    assert_non_null(req);
    assert_non_null(up);
    assert_non_null(inflight);
    at_metric_inc(req, "POST,/v1/translate,200", 1);
    at_metric_inc(req, "POST,/v1/translate,200", 2);
    at_metric_inc(req, "GET,/health,200", 1);
    at_metric_inc(req, "GET,/health,200", -5); /* counters never go down */
    at_metric_set(up, NULL, 1);
    at_metric_add(inflight, "asr", 3);
    at_metric_add(inflight, "asr", -1);
    at_metric_set(inflight, "tts", 0.25);
    assert_true(at_metric_value(req, "POST,/v1/translate,200") == 3);
    assert_true(at_metric_value(req, "GET,/health,200") == 1);
    assert_true(at_metric_value(req, "GET,/nothing,200") == 0);
    assert_true(at_metric_value(inflight, "asr") == 2);
    char *doc = at_metrics_render(m);
    assert_non_null(doc);
    const char *want = "# HELP at_requests_total Requests served.\n"
                       "# TYPE at_requests_total counter\n"
                       "at_requests_total{method=\"POST\",path=\"/v1/translate\",status=\"200\"} 3\n"
                       "at_requests_total{method=\"GET\",path=\"/health\",status=\"200\"} 1\n"
                       "# HELP at_up 1 when serving.\n"
                       "# TYPE at_up gauge\n"
                       "at_up 1\n"
                       "# HELP at_inflight Requests in progress.\n"
                       "# TYPE at_inflight gauge\n"
                       "at_inflight{service=\"asr\"} 2\n"
                       "at_inflight{service=\"tts\"} 0.25\n";
    assert_string_equal(doc, want);
    free(doc);
    at_metrics_free(m);
}

static void test_unlabelled_zero_and_numbers(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    at_metric *c = at_metrics_counter(m, "c_total", "help", NULL);
    at_metric *g = at_metrics_gauge(m, "g", "help", NULL);
    char *doc = at_metrics_render(m);
    assert_true(val(doc, "c_total", "") == 0);
    free(doc);
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.1, "0.1"},
        {1e21, "1e+21"},
        {123456789, "123456789"},
        {-2, "-2"},
        {1.0 / 3, "0.3333333333333333"},
        {9007199254740991.0, "9007199254740991"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {-0.0, "0"},
        {2.5e-7, "2.5e-07"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        at_metric_set(g, NULL, cases[i].v);
        doc = at_metrics_render(m);
        char line[128];
        snprintf(line, sizeof line, "\ng %s\n", cases[i].text);
        if (!strstr(doc, line)) fail_msg("value %g: want %s in\n%s", cases[i].v, cases[i].text, doc);
        free(doc);
    }
    at_metric_set(g, NULL, NAN);
    doc = at_metrics_render(m);
    assert_non_null(strstr(doc, "\ng NaN\n"));
    free(doc);
    /* every shortest form reads back exactly */
    srand(3);
    for (int i = 0; i < 2000; i++) {
        double v = ((double)rand() / RAND_MAX - 0.5) * pow(10, rand() % 40 - 20);
        at_metric_set(g, NULL, v);
        doc = at_metrics_render(m);
        assert_true(val(doc, "g", "") == v);
        free(doc);
    }
    (void)c;
    at_metrics_free(m);
}

static void test_escaping_and_padding(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    at_metric *c = at_metrics_counter(m, "esc_total", "line one\nback\\slash \"quoted\"", "a,b");
    at_metric_inc(c, "x\"y\\z\nw,", 1);
    at_metric_inc(c, "only", 1);  /* missing value -> "" */
    at_metric_inc(c, "p,q,r", 1); /* extra value dropped */
    char *doc = at_metrics_render(m);
    assert_non_null(strstr(doc, "# HELP esc_total line one\\nback\\\\slash \"quoted\"\n"));
    assert_non_null(strstr(doc, "esc_total{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 1\n"));
    assert_non_null(strstr(doc, "esc_total{a=\"only\",b=\"\"} 1\n"));
    assert_non_null(strstr(doc, "esc_total{a=\"p\",b=\"q\"} 1\n"));
    free(doc);
    at_metrics_free(m);
}

static void test_histogram(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    const double b[] = {0.005, 0.1, 1, 10};
    at_metric *h = at_metrics_histogram(m, "lat_seconds", "Latency.", "route", b, 4);
    assert_non_null(h);
    const double obs[] = {0.001, 0.005, 0.05, 0.5, 0.5, 5, 50, 1};
    double sum = 0;
    for (size_t i = 0; i < 8; i++) {
        at_metric_observe(h, "asr", obs[i]);
        sum += obs[i];
    }
    at_metric_observe(h, "asr", NAN); /* ignored */
    at_metric_observe(h, "tts", 0.2);
    char *doc = at_metrics_render(m);
    assert_non_null(strstr(doc, "# TYPE lat_seconds histogram\n"));
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"asr\",le=\"0.005\"}") == 2);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"asr\",le=\"0.1\"}") == 3);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"asr\",le=\"1\"}") == 6);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"asr\",le=\"10\"}") == 7);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"asr\",le=\"+Inf\"}") == 8);
    assert_true(val(doc, "lat_seconds_count", "{route=\"asr\"}") == 8);
    assert_true(fabs(val(doc, "lat_seconds_sum", "{route=\"asr\"}") - sum) < 1e-9);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"tts\",le=\"0.1\"}") == 0);
    assert_true(val(doc, "lat_seconds_bucket", "{route=\"tts\",le=\"1\"}") == 1);
    assert_true(at_metric_value(h, "asr") == 8);
    /* cumulative: every bucket line >= the previous one of its series */
    char *copy = strdup(doc), *save = NULL;
    double prev = -1;
    char prev_series[256] = "";
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], labels[1024];
        double v;
        if (parse_sample(line, name, labels, &v) != 1 || strcmp(name, "lat_seconds_bucket")) continue;
        char series[256];
        snprintf(series, sizeof series, "%.*s", (int)(strstr(labels, ",le=") - labels), labels);
        if (!strcmp(series, prev_series)) assert_true(v >= prev);
        snprintf(prev_series, sizeof prev_series, "%s", series);
        prev = v;
    }
    free(copy);
    free(doc);

    /* unlabelled, with a caller-given +Inf that is implied anyway */
    const double b2[] = {1, INFINITY};
    at_metric *h2 = at_metrics_histogram(m, "size_bytes", "Sizes.", NULL, b2, 2);
    assert_non_null(h2);
    at_metric_observe(h2, NULL, 3);
    doc = at_metrics_render(m);
    assert_non_null(strstr(doc, "size_bytes_bucket{le=\"1\"} 0\nsize_bytes_bucket{le=\"+Inf\"} 1\n"
                                "size_bytes_sum 3\nsize_bytes_count 1\n"));
    free(doc);
    const double bad[] = {1, 0.5};
    assert_null(at_metrics_histogram(m, "bad_hist", "x", NULL, bad, 2));
    at_metrics_free(m);
}

static void test_registration_rules(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    at_metric *a = at_metrics_counter(m, "dup_total", "x", NULL);
    assert_ptr_equal(at_metrics_counter(m, "dup_total", "x", NULL), a);
    assert_null(at_metrics_gauge(m, "dup_total", "x", NULL));
    assert_null(at_metrics_counter(m, "bad name", "x", NULL));
    assert_null(at_metrics_counter(m, "9lives", "x", NULL));
    assert_null(at_metrics_counter(m, "ok_total", "x", "bad-label"));
    assert_null(at_metrics_histogram(m, "h", "x", "le", (const double[]){1}, 1));
    assert_non_null(at_metrics_counter(m, "ns:sub_total", "x", NULL));
    /* NULL-safe updates (a failed registration must not crash callers) */
    at_metric_inc(NULL, NULL, 1);
    at_metric_set(NULL, NULL, 1);
    at_metric_observe(NULL, NULL, 1);
    assert_true(at_metric_value(NULL, NULL) == 0);
    at_metrics_free(m);
    at_metrics_free(NULL);
    at_metrics *e = at_metrics_new();
    char *doc = at_metrics_render(e);
    assert_string_equal(doc, "");
    free(doc);
    at_metrics_free(e);
}

typedef struct targ {
    at_metric *c, *h;
} targ;

static void *hammer(void *p)
{
    targ *t = p;
    for (int i = 0; i < 10000; i++) {
        at_metric_inc(t->c, "a,b", 1);
        if (i % 10 == 0) at_metric_observe(t->h, NULL, i % 3);
    }
    return NULL;
}

static void test_concurrency(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    targ t = {at_metrics_counter(m, "conc_total", "x", "x,y"),
              at_metrics_histogram(m, "conc_h", "x", NULL, (const double[]){1, 2}, 2)};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, hammer, &t);
    for (int r = 0; r < 20; r++) { /* render while updating */
        char *doc = at_metrics_render(m);
        assert_non_null(doc);
        free(doc);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_true(at_metric_value(t.c, "a,b") == 40000);
    assert_true(at_metric_value(t.h, NULL) == 4000);
    char *doc = at_metrics_render(m);
    assert_true(val(doc, "conc_total", "{x=\"a\",y=\"b\"}") == 40000);
    assert_true(val(doc, "conc_h_count", "") == 4000);
    free(doc);
    at_metrics_free(m);
}

static void test_label_overflow(void **st)
{
    (void)st;
    at_metrics *m = at_metrics_new();
    at_metric *c = at_metrics_counter(m, "paths_total", "x", "path,code");
    char lv[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(lv, sizeof lv, "/p%d,200", i);
        at_metric_inc(c, lv, 1);
    }
    at_metric_inc(c, "/p0,200", 1); /* existing sets still update */
    char *doc = at_metrics_render(m);
    int samples = 0;
    for (const char *p = doc; (p = strstr(p, "\npaths_total{")); p++) samples++;
    assert_int_equal(samples, 257); /* 256 + "other" */
    assert_true(val(doc, "paths_total", "{path=\"other\",code=\"other\"}") == 1000 - 256);
    assert_true(val(doc, "paths_total", "{path=\"/p0\",code=\"200\"}") == 2);
    free(doc);
    at_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge),        cmocka_unit_test(test_unlabelled_zero_and_numbers),
        cmocka_unit_test(test_escaping_and_padding), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_registration_rules),   cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_label_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
