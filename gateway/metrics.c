/* Metrics registry and Prometheus text rendering; see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/utf8.h"

const double pgw_metrics_latency_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5,   1,      2.5,   5,    10,    30,   60,
};
const size_t pgw_metrics_n_latency_buckets =
    PGW_ARRAY_SIZE(pgw_metrics_latency_buckets);

/* 0xff never occurs in UTF-8, so it separates values in a series key. */
#define KEY_SEP '\xff'

struct pgw_metric_series {
    struct pgw_metric_family *family;
    char *key;                                  /* values joined by KEY_SEP */
    const char *values[PGW_METRICS_MAX_LABELS]; /* point into |vals| */
    char *vals;
    double value; /* counter, gauge */
    double sum;   /* histogram */
    uint64_t count;
    uint64_t buckets[]; /* histogram: n_buckets + 1 (+Inf), not cumulative */
};

struct pgw_metric_family {
    enum pgw_metric_type type;
    char *name;
    char *help;
    char *label_names[PGW_METRICS_MAX_LABELS];
    size_t n_labels;
    size_t max_series;
    double buckets[PGW_METRICS_MAX_BUCKETS];
    size_t n_buckets;

    struct pgw_metric_series **series; /* creation order */
    size_t n_series;
    size_t cap_series;
    size_t n_capped; /* series that count toward max_series */

    size_t *slots; /* open addressing: index + 1 into |series|, 0 empty */
    size_t n_slots;
};

struct collector {
    pgw_metrics_collect_fn fn;
    void *arg;
};

struct pgw_metrics {
    struct pgw_metric_family *families[PGW_METRICS_MAX_FAMILIES];
    size_t n_families;
    struct pgw_metric_family *std[PGW_M_STD_COUNT];
    struct collector collectors[PGW_METRICS_MAX_COLLECTORS];
    size_t n_collectors;
};

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static bool valid_name(const char *s, bool label)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     c == '_' || (!label && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    if (label && strncmp(s, "__", 2) == 0)
        return false;
    return true;
}

static void family_free(struct pgw_metric_family *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_series; i++) {
        free(f->series[i]->key);
        free(f->series[i]->vals);
        free(f->series[i]);
    }
    free(f->series);
    free(f->slots);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void pgw_metrics_free(struct pgw_metrics *self)
{
    if (self == NULL)
        return;
    for (size_t i = 0; i < self->n_families; i++)
        family_free(self->families[i]);
    free(self);
}

/* Rebuilds the hash index with |n_slots| slots (a power of two). */
static int rehash(struct pgw_metric_family *f, size_t n_slots)
{
    size_t *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return PGW_ERR_NOMEM;
    for (size_t i = 0; i < f->n_series; i++) {
        const char *k = f->series[i]->key;
        size_t j = fnv1a(k, strlen(k)) & (n_slots - 1);
        while (slots[j] != 0)
            j = (j + 1) & (n_slots - 1);
        slots[j] = i + 1;
    }
    free(f->slots);
    f->slots = slots;
    f->n_slots = n_slots;
    return 0;
}

static struct pgw_metric_series *lookup(struct pgw_metric_family *f,
                                        const char *key, size_t key_len)
{
    if (f->n_slots == 0)
        return NULL;
    size_t j = fnv1a(key, key_len) & (f->n_slots - 1);
    while (f->slots[j] != 0) {
        struct pgw_metric_series *s = f->series[f->slots[j] - 1];
        if (strlen(s->key) == key_len && memcmp(s->key, key, key_len) == 0)
            return s;
        j = (j + 1) & (f->n_slots - 1);
    }
    return NULL;
}

/* Adds a new series for the |n_labels| values (already checked). */
static struct pgw_metric_series *create(struct pgw_metric_family *f,
                                        const char *const *values,
                                        const char *key, size_t key_len)
{
    struct pgw_metric_series *s = NULL;
    size_t nb = f->type == PGW_METRIC_HISTOGRAM ? f->n_buckets + 1 : 0;

    {
        struct pgw_metric_series **v = pgw_array_grow(
            f->series, &f->cap_series, f->n_series, sizeof(*f->series), 8);
        if (v == NULL)
            return NULL;
        f->series = v;
    }
    /* Keep the table at most half full. */
    if ((f->n_series + 1) * 2 > f->n_slots &&
        rehash(f, f->n_slots ? f->n_slots * 2 : 16) < 0)
        return NULL;

    s = calloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));
    if (s == NULL)
        return NULL;
    s->family = f;
    s->key = malloc(key_len + 1);
    /* The values again, NUL-separated: the key with KEY_SEP → NUL. */
    s->vals = malloc(key_len + 1);
    if (s->key == NULL || s->vals == NULL) {
        free(s->key);
        free(s->vals);
        free(s);
        return NULL;
    }
    memcpy(s->key, key, key_len);
    s->key[key_len] = '\0';
    char *p = s->vals;
    for (size_t i = 0; i < f->n_labels; i++) {
        size_t l = strlen(values[i]);
        memcpy(p, values[i], l);
        p[l] = '\0';
        s->values[i] = p;
        p += l + 1;
    }
    if (f->n_labels == 0)
        s->vals[0] = '\0';

    f->series[f->n_series] = s;
    size_t j = fnv1a(key, key_len) & (f->n_slots - 1);
    while (f->slots[j] != 0)
        j = (j + 1) & (f->n_slots - 1);
    f->slots[j] = ++f->n_series;
    return s;
}

/* Joins |values| into |buf| of |size| bytes; -1 when it does not fit. */
static long join_key(const struct pgw_metric_family *f,
                     const char *const *values, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n_labels; i++) {
        size_t l = strlen(values[i]);
        if (n + l + 2 > size)
            return -1;
        memcpy(buf + n, values[i], l);
        n += l;
        if (i + 1 < f->n_labels)
            buf[n++] = KEY_SEP;
    }
    buf[n] = '\0';
    return (long)n;
}

struct pgw_metric_series *pgw_metrics_series(struct pgw_metric_family *f,
                                             const char *const *values)
{
    char key[PGW_METRICS_MAX_LABELS * (PGW_METRICS_MAX_VALUE_BYTES + 1) + 8];
    const char *vals[PGW_METRICS_MAX_LABELS];
    bool overflow = false;
    long key_len;

    if (f == NULL)
        return NULL;
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values != NULL && values[i] != NULL ? values[i] : "";
        size_t l = strlen(v);
        if (l > PGW_METRICS_MAX_VALUE_BYTES || !pgw_utf8_valid(v, l)) {
            /* Unrepresentable: this label becomes "other". */
            if (i + 1 == f->n_labels)
                overflow = true;
            v = PGW_METRICS_OTHER;
        }
        vals[i] = v;
    }
    if (overflow)
        goto other;
    key_len = join_key(f, vals, key, sizeof(key));
    if (key_len < 0)
        return NULL;
    struct pgw_metric_series *s = lookup(f, key, (size_t)key_len);
    if (s != NULL)
        return s;
    if (f->n_capped < f->max_series || f->n_labels == 0) {
        s = create(f, vals, key, (size_t)key_len);
        if (s != NULL)
            f->n_capped++;
        return s;
    }
other:
    vals[f->n_labels - 1] = PGW_METRICS_OTHER;
    key_len = join_key(f, vals, key, sizeof(key));
    if (key_len < 0)
        return NULL;
    s = lookup(f, key, (size_t)key_len);
    if (s != NULL)
        return s;
    /* Overflow series: at most the product of the other labels' values,
     * themselves bounded by their callers; outside the cap. */
    return create(f, vals, key, (size_t)key_len);
}

struct pgw_metric_series *pgw_metrics_series1(struct pgw_metric_family *family,
                                              const char *v1)
{
    const char *v[] = {v1};
    return pgw_metrics_series(family, v);
}

struct pgw_metric_series *pgw_metrics_series2(struct pgw_metric_family *family,
                                              const char *v1, const char *v2)
{
    const char *v[] = {v1, v2};
    return pgw_metrics_series(family, v);
}

struct pgw_metric_series *pgw_metrics_series3(struct pgw_metric_family *family,
                                              const char *v1, const char *v2,
                                              const char *v3)
{
    const char *v[] = {v1, v2, v3};
    return pgw_metrics_series(family, v);
}

int pgw_metrics_register(struct pgw_metrics *self, enum pgw_metric_type type,
                         const char *name, const char *help,
                         const char *const *label_names, size_t n_labels,
                         size_t max_series, const double *buckets,
                         size_t n_buckets,
                         struct pgw_metric_family **ret_family)
{
    struct pgw_metric_family *f = NULL;
    int err;

    if (!valid_name(name, false) || n_labels > PGW_METRICS_MAX_LABELS ||
        (n_labels > 0 && label_names == NULL))
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(label_names[i], true) ||
            (type == PGW_METRIC_HISTOGRAM && strcmp(label_names[i], "le") == 0))
            return PGW_ERR_INVAL;
    }
    if (type == PGW_METRIC_HISTOGRAM) {
        if (n_buckets == 0 || n_buckets > PGW_METRICS_MAX_BUCKETS ||
            buckets == NULL)
            return PGW_ERR_INVAL;
        for (size_t i = 0; i < n_buckets; i++) {
            if (!isfinite(buckets[i]) ||
                (i > 0 && buckets[i] <= buckets[i - 1]))
                return PGW_ERR_INVAL;
        }
    }
    for (size_t i = 0; i < self->n_families; i++) {
        if (strcmp(self->families[i]->name, name) == 0)
            return PGW_ERR_INVAL;
    }
    if (self->n_families == PGW_METRICS_MAX_FAMILIES)
        return PGW_ERR_TOO_LARGE;

    err = PGW_ERR_NOMEM;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        goto out;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto out;
    for (size_t i = 0; i < n_labels; i++) {
        f->label_names[i] = strdup(label_names[i]);
        if (f->label_names[i] == NULL)
            goto out;
        f->n_labels++;
    }
    f->max_series = max_series ? max_series : PGW_METRICS_STD_MAX_SERIES;
    if (type == PGW_METRIC_HISTOGRAM) {
        memcpy(f->buckets, buckets, n_buckets * sizeof(*buckets));
        f->n_buckets = n_buckets;
    }
    if (n_labels == 0 && pgw_metrics_series(f, NULL) == NULL)
        goto out;

    self->families[self->n_families++] = f;
    if (ret_family != NULL)
        *ret_family = f;
    f = NULL;
    err = 0;
out:
    family_free(f);
    return err;
}

struct std_def {
    enum pgw_metric_type type;
    const char *name;
    const char *help;
    const char *labels[3];
    size_t n_labels;
};

static const struct std_def std_defs[PGW_M_STD_COUNT] = {
    [PGW_M_EVENTS_TOTAL] =
        {PGW_METRIC_COUNTER,
         "pushgw_events_total",
         "Events the webhook API answered, by app and result.",
         {"app", "result"},
         2},
    [PGW_M_PUSHES_TOTAL] = {PGW_METRIC_COUNTER,
                            "pushgw_pushes_total",
                            "Pushes finished, by provider, outcome and reason.",
                            {"provider", "outcome", "reason"},
                            3},
    [PGW_M_PUSH_LATENCY] = {PGW_METRIC_HISTOGRAM,
                            "pushgw_push_latency_seconds",
                            "Time from an event accepted to the provider's "
                            "answer to one of its pushes, by provider.",
                            {"provider"},
                            1},
    [PGW_M_BACKLOG_EVENTS] =
        {PGW_METRIC_GAUGE,
         "pushgw_backlog_events",
         "Events stored and not finished in the database: its count, refreshed "
         "every second, plus the events accepted since.",
         {NULL},
         0},
    [PGW_M_INFLIGHT_REQUESTS] =
        {PGW_METRIC_GAUGE,
         "pushgw_inflight_requests",
         "Provider requests awaiting an answer, by provider.",
         {"provider"},
         1},
    [PGW_M_HOOK_REQUESTS_TOTAL] =
        {PGW_METRIC_COUNTER,
         "pushgw_hook_requests_total",
         "Calls of the apps' server hooks, by app and result.",
         {"app", "result"},
         2},
    [PGW_M_INVALIDATED_TOTAL] =
        {PGW_METRIC_COUNTER,
         "pushgw_installations_invalidated_total",
         "Installations invalidated, by provider and reason.",
         {"provider", "reason"},
         2},
    [PGW_M_PROVIDER_CONNECTIONS] =
        {PGW_METRIC_GAUGE,
         "pushgw_provider_connections",
         "Provider connections, by provider and state.",
         {"provider", "state"},
         2},
};

int pgw_metrics_new(struct pgw_metrics **ret_metrics)
{
    struct pgw_metrics *m = calloc(1, sizeof(*m));
    int err = PGW_ERR_NOMEM;

    if (m == NULL)
        goto out;
    for (size_t i = 0; i < PGW_M_STD_COUNT; i++) {
        const struct std_def *d = &std_defs[i];
        err = pgw_metrics_register(
            m, d->type, d->name, d->help, d->labels, d->n_labels, 0,
            d->type == PGW_METRIC_HISTOGRAM ? pgw_metrics_latency_buckets
                                            : NULL,
            d->type == PGW_METRIC_HISTOGRAM ? pgw_metrics_n_latency_buckets : 0,
            &m->std[i]);
        if (err < 0)
            goto out;
    }
    *ret_metrics = m;
    m = NULL;
    err = 0;
out:
    pgw_metrics_free(m);
    return err;
}

struct pgw_metric_family *pgw_metrics_std(struct pgw_metrics *self,
                                          enum pgw_metrics_std which)
{
    if (self == NULL || (unsigned)which >= PGW_M_STD_COUNT)
        return NULL;
    return self->std[which];
}

void pgw_metric_inc(struct pgw_metric_series *s)
{
    if (s != NULL)
        s->value += 1.0;
}

void pgw_metric_add(struct pgw_metric_series *s, double v)
{
    if (s != NULL && v >= 0)
        s->value += v;
}

void pgw_metric_set(struct pgw_metric_series *s, double v)
{
    if (s != NULL)
        s->value = v;
}

void pgw_metric_gauge_add(struct pgw_metric_series *s, double v)
{
    if (s != NULL)
        s->value += v;
}

void pgw_metric_observe(struct pgw_metric_series *s, double v)
{
    if (s == NULL || s->family->type != PGW_METRIC_HISTOGRAM || isnan(v))
        return;
    const struct pgw_metric_family *f = s->family;
    size_t i = 0;
    while (i < f->n_buckets && v > f->buckets[i])
        i++;
    s->buckets[i]++;
    s->count++;
    s->sum += v;
}

double pgw_metric_value(const struct pgw_metric_series *s)
{
    if (s == NULL)
        return 0;
    if (s->family->type == PGW_METRIC_HISTOGRAM)
        return (double)s->count;
    return s->value;
}

size_t pgw_metrics_family_size(const struct pgw_metric_family *family)
{
    return family != NULL ? family->n_series : 0;
}

int pgw_metrics_add_collector(struct pgw_metrics *self,
                              pgw_metrics_collect_fn fn, void *arg)
{
    if (self->n_collectors == PGW_METRICS_MAX_COLLECTORS)
        return PGW_ERR_TOO_LARGE;
    self->collectors[self->n_collectors].fn = fn;
    self->collectors[self->n_collectors].arg = arg;
    self->n_collectors++;
    return 0;
}

/* ---- rendering ---------------------------------------------------------- */

/* Escapes \ and newline (and " when |quote|), as 0.0.4 asks. */
static void out_escaped(struct pgw_buf *o, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (esc != NULL) {
            pgw_buf_add(o, run, (size_t)(s - run));
            pgw_buf_str(o, esc);
            run = s + 1;
        }
    }
    pgw_buf_add(o, run, (size_t)(s - run));
}

/* Formats |v| the way Prometheus reads it: integers without a fraction,
 * others with the shortest text that reads back as the same double. */
static void fmt_value(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(buf, size, "%lld", (long long)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    }
}

static void out_value(struct pgw_buf *o, double v)
{
    char b[64];
    fmt_value(b, sizeof(b), v);
    pgw_buf_str(o, b);
}

static void out_u64(struct pgw_buf *o, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    pgw_buf_str(o, b);
}

/* name{l1="v1",…,extra} — |le| (may be NULL) is appended as le="…". */
static void out_series_name(struct pgw_buf *o,
                            const struct pgw_metric_family *f,
                            const struct pgw_metric_series *s,
                            const char *suffix, const char *le)
{
    pgw_buf_str(o, f->name);
    pgw_buf_str(o, suffix);
    if (f->n_labels == 0 && le == NULL)
        return;
    pgw_buf_str(o, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i > 0)
            pgw_buf_str(o, ",");
        pgw_buf_str(o, f->label_names[i]);
        pgw_buf_str(o, "=\"");
        out_escaped(o, s->values[i], true);
        pgw_buf_str(o, "\"");
    }
    if (le != NULL) {
        if (f->n_labels > 0)
            pgw_buf_str(o, ",");
        pgw_buf_str(o, "le=\"");
        pgw_buf_str(o, le);
        pgw_buf_str(o, "\"");
    }
    pgw_buf_str(o, "}");
}

static void render_family(struct pgw_buf *o, const struct pgw_metric_family *f)
{
    static const char *const type_names[] = {
        [PGW_METRIC_COUNTER] = "counter",
        [PGW_METRIC_GAUGE] = "gauge",
        [PGW_METRIC_HISTOGRAM] = "histogram",
    };

    pgw_buf_str(o, "# HELP ");
    pgw_buf_str(o, f->name);
    pgw_buf_str(o, " ");
    out_escaped(o, f->help, false);
    pgw_buf_str(o, "\n# TYPE ");
    pgw_buf_str(o, f->name);
    pgw_buf_str(o, " ");
    pgw_buf_str(o, type_names[f->type]);
    pgw_buf_str(o, "\n");

    for (size_t i = 0; i < f->n_series; i++) {
        const struct pgw_metric_series *s = f->series[i];
        if (f->type != PGW_METRIC_HISTOGRAM) {
            out_series_name(o, f, s, "", NULL);
            pgw_buf_str(o, " ");
            out_value(o, s->value);
            pgw_buf_str(o, "\n");
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; b <= f->n_buckets; b++) {
            char le[64];
            if (b < f->n_buckets)
                fmt_value(le, sizeof(le), f->buckets[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            cum += s->buckets[b];
            out_series_name(o, f, s, "_bucket", le);
            pgw_buf_str(o, " ");
            out_u64(o, cum);
            pgw_buf_str(o, "\n");
        }
        out_series_name(o, f, s, "_sum", NULL);
        pgw_buf_str(o, " ");
        out_value(o, s->sum);
        pgw_buf_str(o, "\n");
        out_series_name(o, f, s, "_count", NULL);
        pgw_buf_str(o, " ");
        out_u64(o, s->count);
        pgw_buf_str(o, "\n");
    }
}

int pgw_metrics_render(struct pgw_metrics *self, char **ret_text,
                       size_t *ret_len)
{
    struct pgw_buf o = PGW_BUF_INIT;

    for (size_t i = 0; i < self->n_collectors; i++)
        self->collectors[i].fn(self->collectors[i].arg, self);
    /* a page to start with; "" even when nothing is registered */
    pgw_buf_reserve(&o, 4096);
    pgw_buf_add(&o, "", 0);
    for (size_t i = 0; i < self->n_families && !o.oom; i++)
        render_family(&o, self->families[i]);
    if (o.oom) {
        pgw_buf_release(&o);
        return PGW_ERR_NOMEM;
    }
    *ret_text = o.p;
    *ret_len = o.len;
    return 0;
}
