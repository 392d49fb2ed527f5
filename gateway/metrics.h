/*
 * Metrics of DESIGN §12: counters, gauges and histograms with labels, and
 * their rendering in the Prometheus text exposition format 0.0.4.
 * Pure: no I/O, no logging; the admin listener of http_api serves the text.
 *
 * Hot path: look a series up once (pgw_metrics_series()) and keep the
 * returned handle; pgw_metric_inc()/_add()/_set()/_observe() on a handle
 * do no string work and no allocation. A handle stays valid until
 * pgw_metrics_free().
 *
 * Cardinality: each family has a cap on its distinct series. A lookup that
 * would create a series beyond the cap gets the series whose overflow label
 * (the family's last label, e.g. "reason") is "other" instead, created on
 * demand outside the cap. So a provider inventing reasons, or a label value
 * that is too long (> PGW_METRICS_MAX_VALUE_BYTES) or not valid UTF-8, never
 * grows memory without bound.
 *
 * Gauges owned by other modules (backlog, in-flight, connections) are
 * either set by their owner whenever they change, or computed at render
 * time by a collector (pgw_metrics_add_collector()) that sets them just
 * before the text is produced. Both are fine; a collector avoids work on
 * the hot path.
 *
 * Threads: single-threaded; every call must come from the loop thread.
 * A second loop thread would need per-thread shards of each series (plain
 * uint64/double per thread, summed at render time under a lock taken only
 * by the renderer and by series creation), not atomics on the hot path.
 */
#ifndef PUSHGW_METRICS_H
#define PUSHGW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "pushgw.h"

#define PGW_METRICS_MAX_LABELS 4
#define PGW_METRICS_MAX_VALUE_BYTES 128
#define PGW_METRICS_MAX_FAMILIES 64
#define PGW_METRICS_MAX_COLLECTORS 16
#define PGW_METRICS_MAX_BUCKETS 32
/* The value an overflowing label takes. */
#define PGW_METRICS_OTHER "other"

enum pgw_metric_type {
    PGW_METRIC_COUNTER,
    PGW_METRIC_GAUGE,
    PGW_METRIC_HISTOGRAM,
};

struct pgw_metrics;
struct pgw_metric_family;
struct pgw_metric_series;

/*
 * The families of DESIGN §12, registered by pgw_metrics_new() in this
 * order (with these labels):
 */
enum pgw_metrics_std {
    PGW_M_EVENTS_TOTAL,         /* counter {app,result} */
    PGW_M_PUSHES_TOTAL,         /* counter {provider,outcome,reason} */
    PGW_M_PUSH_LATENCY,         /* histogram {provider}, seconds */
    PGW_M_BACKLOG_EVENTS,       /* gauge, no labels */
    PGW_M_INFLIGHT_REQUESTS,    /* gauge {provider} */
    PGW_M_HOOK_REQUESTS_TOTAL,  /* counter {app,result} */
    PGW_M_INVALIDATED_TOTAL,    /* counter {provider,reason} */
    PGW_M_PROVIDER_CONNECTIONS, /* gauge {provider,state} */
    PGW_M_STD_COUNT,
};

/* Caps of the standard families (distinct series before "other"). */
#define PGW_METRICS_STD_MAX_SERIES 4096

/* Bucket upper bounds of pushgw_push_latency_seconds (+Inf implied). */
extern const double pgw_metrics_latency_buckets[];
extern const size_t pgw_metrics_n_latency_buckets;

/*
 * Creates a registry holding the standard families above. Free with
 * pgw_metrics_free(). Errors: PGW_ERR_NOMEM.
 */
int pgw_metrics_new(struct pgw_metrics **ret_metrics);

/* Frees the registry and every family and series. NULL is a no-op. */
void pgw_metrics_free(struct pgw_metrics *self);

/* The standard family |which|; never NULL for a valid |which|. */
struct pgw_metric_family *pgw_metrics_std(struct pgw_metrics *self,
                                          enum pgw_metrics_std which);

/*
 * Registers a further family |name| (a valid metric name, copied) with
 * help text |help| (copied), |n_labels| label names (<=
 * PGW_METRICS_MAX_LABELS, copied), at most |max_series| distinct series
 * (0: PGW_METRICS_STD_MAX_SERIES) and, for a histogram, |n_buckets|
 * increasing upper bounds |buckets| (<= PGW_METRICS_MAX_BUCKETS; +Inf is
 * implied). A family without labels has its one series created at once.
 * Errors: PGW_ERR_INVAL (bad name, labels or buckets; name taken),
 * PGW_ERR_TOO_LARGE (PGW_METRICS_MAX_FAMILIES reached), PGW_ERR_NOMEM.
 */
int pgw_metrics_register(struct pgw_metrics *self, enum pgw_metric_type type,
                         const char *name, const char *help,
                         const char *const *label_names, size_t n_labels,
                         size_t max_series, const double *buckets,
                         size_t n_buckets,
                         struct pgw_metric_family **ret_family);

/*
 * The series of |family| with the label values |values| (one per label, in
 * the family's order; NULL or empty allowed when the family has no labels),
 * created at zero when new. Values are copied. Over the cap, or for a value
 * that is too long or not UTF-8, returns the overflow series (see above).
 * Returns NULL only on allocation failure; the pgw_metric_*() functions
 * accept NULL and do nothing, so callers may use the result unchecked.
 */
struct pgw_metric_series *pgw_metrics_series(struct pgw_metric_family *family,
                                             const char *const *values);

/* As pgw_metrics_series() for families of 1, 2 or 3 labels. */
struct pgw_metric_series *pgw_metrics_series1(struct pgw_metric_family *family,
                                              const char *v1);
struct pgw_metric_series *pgw_metrics_series2(struct pgw_metric_family *family,
                                              const char *v1, const char *v2);
struct pgw_metric_series *pgw_metrics_series3(struct pgw_metric_family *family,
                                              const char *v1, const char *v2,
                                              const char *v3);

/* Counter: adds 1 / |v| (>= 0; negative is ignored). */
void pgw_metric_inc(struct pgw_metric_series *s);
void pgw_metric_add(struct pgw_metric_series *s, double v);
/* Gauge: sets to |v| / adds |v| (may be negative). */
void pgw_metric_set(struct pgw_metric_series *s, double v);
void pgw_metric_gauge_add(struct pgw_metric_series *s, double v);
/* Histogram: records one observation |v| (seconds for latencies). */
void pgw_metric_observe(struct pgw_metric_series *s, double v);

/* The current value (counter or gauge) or observation count (histogram). */
double pgw_metric_value(const struct pgw_metric_series *s);
/* Distinct series of |family|, the overflow ones included. */
size_t pgw_metrics_family_size(const struct pgw_metric_family *family);

/*
 * Registers |fn|, called with |arg| at the start of every
 * pgw_metrics_render() to set the gauges its owner computes.
 * Errors: PGW_ERR_TOO_LARGE (PGW_METRICS_MAX_COLLECTORS reached).
 */
typedef void (*pgw_metrics_collect_fn)(void *arg, struct pgw_metrics *metrics);
int pgw_metrics_add_collector(struct pgw_metrics *self,
                              pgw_metrics_collect_fn fn, void *arg);

/*
 * Renders every family in registration order, series in creation order,
 * as Prometheus text format 0.0.4 (# HELP, # TYPE, samples; histograms
 * with cumulative _bucket{le=…}, _sum and _count). Label values are
 * escaped (\\, \", \n). Stores a malloc'd NUL-terminated text in
 * |*ret_text| and its length in |*ret_len| (caller frees with free()).
 * Errors: PGW_ERR_NOMEM.
 */
int pgw_metrics_render(struct pgw_metrics *self, char **ret_text,
                       size_t *ret_len);

#endif
