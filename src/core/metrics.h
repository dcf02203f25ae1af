/* metrics.h - Prometheus text-format metrics.
 *
 * A registry owns counters, gauges and histograms, each with an optional
 * fixed set of label values given at update time.  Updates are thread-safe
 * (atomic or mutex); rendering produces the text exposition format 0.0.4. */
#ifndef AT_CORE_METRICS_H
#define AT_CORE_METRICS_H

#include <stddef.h>

typedef struct at_metrics at_metrics;
typedef struct at_metric at_metric;

at_metrics *at_metrics_new(void);
void at_metrics_free(at_metrics *m);

/* label_names: comma-separated, e.g. "method,path,status", or NULL.
 * Returns NULL on allocation failure.  Names are copied. */
at_metric *at_metrics_counter(at_metrics *m, const char *name, const char *help, const char *label_names);
at_metric *at_metrics_gauge(at_metrics *m, const char *name, const char *help, const char *label_names);
/* buckets: ascending upper bounds (+Inf implied). */
at_metric *at_metrics_histogram(at_metrics *m, const char *name, const char *help, const char *label_names,
                                const double *buckets, size_t n_buckets);

/* label_values: comma-separated values in the order of label_names, or NULL.
 * Values must not contain commas.  A metric holds at most 256 label sets;
 * beyond that updates go to an "other" set, so memory stays bounded. */
void at_metric_inc(at_metric *c, const char *label_values, double v);
void at_metric_set(at_metric *g, const char *label_values, double v);
void at_metric_add(at_metric *g, const char *label_values, double v); /* gauge +/- */
void at_metric_observe(at_metric *h, const char *label_values, double v);

/* Renders all metrics; caller frees.  NULL on allocation failure. */
char *at_metrics_render(at_metrics *m);

/* Reads back a counter/gauge value (for tests); 0 if absent. */
double at_metric_value(at_metric *c, const char *label_values);

/* Notes (added): registration also returns NULL for an invalid metric or
 * label name (Prometheus syntax; "le" and "__*" reserved), more than 16
 * labels, or non-ascending buckets; registering an existing name returns
 * that metric if the type matches, else NULL.  All update functions
 * accept a NULL metric (no-op) and ignore NaN; counters ignore v < 0;
 * set/add apply to gauges only, inc to counters and gauges.  Missing label
 * values are "", extra ones are dropped.  The overflow set has every label
 * value "other".  at_metric_value of a histogram is its count.
 * Unlabelled metrics render 0 before their first update. */

#endif
