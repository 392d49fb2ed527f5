/* Tests of the metrics registry and its Prometheus text rendering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "metrics.h"

static char *render(struct pgw_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(pgw_metrics_render(m, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static struct pgw_metrics *empty_registry(void)
{
    /* pgw_metrics_new() registers the standard families; tests of exact
     * text use a registry whose families they register themselves, so
     * they start from an empty one by checking what the std set renders
     * separately. */
    struct pgw_metrics *m = NULL;
    assert_int_equal(pgw_metrics_new(&m), 0);
    return m;
}

static void test_counter_exact_text(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = NULL;
    const char *labels[] = {"app", "result"};

    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "t_total",
                                          "Things counted.", labels, 2, 0, NULL,
                                          0, &f),
                     0);
    struct pgw_metric_series *a = pgw_metrics_series2(f, "demo", "accepted");
    struct pgw_metric_series *b = pgw_metrics_series2(f, "demo", "invalid");
    assert_non_null(a);
    assert_non_null(b);
    /* The same values give the same handle. */
    assert_ptr_equal(pgw_metrics_series2(f, "demo", "accepted"), a);
    pgw_metric_inc(a);
    pgw_metric_inc(a);
    pgw_metric_add(b, 40);
    pgw_metric_add(b, -5); /* ignored: counters only go up */

    char *text = render(m);
    const char *want = "# HELP t_total Things counted.\n"
                       "# TYPE t_total counter\n"
                       "t_total{app=\"demo\",result=\"accepted\"} 2\n"
                       "t_total{app=\"demo\",result=\"invalid\"} 40\n";
    assert_non_null(strstr(text, want));
    free(text);
    pgw_metrics_free(m);
}

static void test_gauge_and_values(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = NULL;

    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_GAUGE, "t_gauge",
                                          "A level.", NULL, 0, 0, NULL, 0, &f),
                     0);
    struct pgw_metric_series *s = pgw_metrics_series(f, NULL);
    pgw_metric_set(s, 2.5);
    pgw_metric_gauge_add(s, -4);
    assert_true(pgw_metric_value(s) == -1.5);
    char *text = render(m);
    assert_non_null(strstr(text, "# HELP t_gauge A level.\n"
                                 "# TYPE t_gauge gauge\n"
                                 "t_gauge -1.5\n"));
    free(text);
    pgw_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = NULL;
    const char *labels[] = {"reason"};

    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "t_esc",
                                          "Help with \\ and\nnewline \"q\".",
                                          labels, 1, 0, NULL, 0, &f),
                     0);
    pgw_metric_inc(pgw_metrics_series1(f, "a\\b\"c\nd"));
    char *text = render(m);
    /* HELP escapes \ and newline only; label values also ". */
    assert_non_null(
        strstr(text, "# HELP t_esc Help with \\\\ and\\nnewline \"q\".\n"));
    assert_non_null(strstr(text, "t_esc{reason=\"a\\\\b\\\"c\\nd\"} 1\n"));
    free(text);
    pgw_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = NULL;
    const double buckets[] = {0.1, 1, 2.5};
    const char *labels[] = {"provider"};

    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_HISTOGRAM, "t_lat",
                                          "Latency.", labels, 1, 0, buckets, 3,
                                          &f),
                     0);
    struct pgw_metric_series *s = pgw_metrics_series1(f, "apns");
    pgw_metric_observe(s, 0.0625);
    pgw_metric_observe(s, 0.09375);
    pgw_metric_observe(s, 1); /* le is inclusive */
    pgw_metric_observe(s, 2);
    pgw_metric_observe(s, 100);
    char *text = render(m);
    const char *want = "# HELP t_lat Latency.\n"
                       "# TYPE t_lat histogram\n"
                       "t_lat_bucket{provider=\"apns\",le=\"0.1\"} 2\n"
                       "t_lat_bucket{provider=\"apns\",le=\"1\"} 3\n"
                       "t_lat_bucket{provider=\"apns\",le=\"2.5\"} 4\n"
                       "t_lat_bucket{provider=\"apns\",le=\"+Inf\"} 5\n"
                       "t_lat_sum{provider=\"apns\"} 103.15625\n"
                       "t_lat_count{provider=\"apns\"} 5\n";
    assert_non_null(strstr(text, want));
    free(text);

    /* Bad bucket lists and names are refused. */
    const double bad[] = {1, 0.5};
    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_HISTOGRAM, "t_bad", "",
                                          NULL, 0, 0, bad, 2, NULL),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "9bad", "",
                                          NULL, 0, 0, NULL, 0, NULL),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "t_lat", "",
                                          NULL, 0, 0, NULL, 0, NULL),
                     PGW_ERR_INVAL);
    pgw_metrics_free(m);
}

static void test_std_families(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();

    struct pgw_metric_series *lat =
        pgw_metrics_series1(pgw_metrics_std(m, PGW_M_PUSH_LATENCY), "apns");
    pgw_metric_observe(lat, 0.0007);
    pgw_metric_observe(lat, 45);
    pgw_metric_set(
        pgw_metrics_series(pgw_metrics_std(m, PGW_M_BACKLOG_EVENTS), NULL), 12);
    pgw_metric_inc(pgw_metrics_series3(pgw_metrics_std(m, PGW_M_PUSHES_TOTAL),
                                       "apns", "delivered", ""));
    char *text = render(m);
    static const char *const names[] = {
        "# TYPE pushgw_events_total counter\n",
        "# TYPE pushgw_pushes_total counter\n",
        "# TYPE pushgw_push_latency_seconds histogram\n",
        "# TYPE pushgw_backlog_events gauge\n",
        "# TYPE pushgw_inflight_requests gauge\n",
        "# TYPE pushgw_hook_requests_total counter\n",
        "# TYPE pushgw_installations_invalidated_total counter\n",
        "# TYPE pushgw_provider_connections gauge\n",
        "pushgw_push_latency_seconds_bucket{provider=\"apns\",le=\"0.001\"} "
        "1\n",
        "pushgw_push_latency_seconds_bucket{provider=\"apns\",le=\"30\"} 1\n",
        "pushgw_push_latency_seconds_bucket{provider=\"apns\",le=\"60\"} 2\n",
        "pushgw_push_latency_seconds_bucket{provider=\"apns\",le=\"+Inf\"} 2\n",
        "pushgw_push_latency_seconds_count{provider=\"apns\"} 2\n",
        "pushgw_backlog_events 12\n",
        ("pushgw_pushes_total{provider=\"apns\",outcome=\"delivered\","
         "reason=\"\"} 1\n"),
    };
    for (size_t i = 0; i < PGW_ARRAY_SIZE(names); i++) {
        if (strstr(text, names[i]) == NULL)
            fail_msg("missing '%s' in:\n%s", names[i], text);
    }
    free(text);
    pgw_metrics_free(m);
}

static void test_cardinality_cap(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = NULL;
    const char *labels[] = {"provider", "reason"};

    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "t_cap",
                                          "Capped.", labels, 2, 3, NULL, 0, &f),
                     0);
    char reason[32];
    for (int i = 0; i < 10; i++) {
        snprintf(reason, sizeof(reason), "R%d", i);
        pgw_metric_inc(pgw_metrics_series2(f, "apns", reason));
    }
    /* Three distinct series, then everything else in reason="other". */
    assert_int_equal(pgw_metrics_family_size(f), 4);
    assert_true(pgw_metric_value(pgw_metrics_series2(f, "apns", "other")) == 7);
    /* Existing series still resolve to themselves. */
    assert_true(pgw_metric_value(pgw_metrics_series2(f, "apns", "R1")) == 1);

    /* A too long or non-UTF-8 value is "other" even under the cap. */
    struct pgw_metric_family *g = NULL;
    assert_int_equal(pgw_metrics_register(m, PGW_METRIC_COUNTER, "t_cap2", "",
                                          labels, 2, 100, NULL, 0, &g),
                     0);
    char longv[PGW_METRICS_MAX_VALUE_BYTES + 2];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    pgw_metric_inc(pgw_metrics_series2(g, "fcm", longv));
    pgw_metric_inc(pgw_metrics_series2(g, "fcm", "bad\xff\xfe"));
    assert_int_equal(pgw_metrics_family_size(g), 1);
    assert_true(pgw_metric_value(pgw_metrics_series2(g, "fcm", "other")) == 2);

    char *text = render(m);
    assert_non_null(
        strstr(text, "t_cap{provider=\"apns\",reason=\"other\"} 7\n"));
    assert_null(strstr(text, "R5"));
    free(text);
    pgw_metrics_free(m);
}

static int collected;

static void collect(void *arg, struct pgw_metrics *m)
{
    collected++;
    pgw_metric_set(
        pgw_metrics_series1(pgw_metrics_std(m, PGW_M_INFLIGHT_REQUESTS), "fcm"),
        *(double *)arg);
}

static void test_collector(void **state)
{
    (void)state;
    struct pgw_metrics *m = empty_registry();
    double v = 17;
    collected = 0;
    assert_int_equal(pgw_metrics_add_collector(m, collect, &v), 0);
    char *text = render(m);
    assert_int_equal(collected, 1);
    assert_non_null(
        strstr(text, "pushgw_inflight_requests{provider=\"fcm\"} 17\n"));
    free(text);
    v = 3;
    text = render(m);
    assert_non_null(
        strstr(text, "pushgw_inflight_requests{provider=\"fcm\"} 3\n"));
    free(text);
    pgw_metrics_free(m);
}

static void test_many_series(void **state)
{
    (void)state;
    /* Enough series to grow the index several times; all distinct. */
    struct pgw_metrics *m = empty_registry();
    struct pgw_metric_family *f = pgw_metrics_std(m, PGW_M_EVENTS_TOTAL);
    char app[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(app, sizeof(app), "app%d", i);
        pgw_metric_add(pgw_metrics_series2(f, app, "accepted"), i);
    }
    assert_int_equal(pgw_metrics_family_size(f), 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(app, sizeof(app), "app%d", i);
        assert_true(pgw_metric_value(pgw_metrics_series2(f, app, "accepted")) ==
                    i);
    }
    pgw_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_exact_text),
        cmocka_unit_test(test_gauge_and_values),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_std_families),
        cmocka_unit_test(test_cardinality_cap),
        cmocka_unit_test(test_collector),
        cmocka_unit_test(test_many_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
