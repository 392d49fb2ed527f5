/*
 * Crash during a broadcast: a push request to a few thousand devices
 * (a third iOS with badge "Increment", the rest Android) is sent by
 * `pushgw serve`, which is killed with SIGKILL in the middle, restarted,
 * killed again and restarted. Afterwards every device got the push, at
 * most the sender's window (6,000 devices) twice per kill, the request's
 * counters count every device once, and no badge was incremented twice.
 *
 * Short form (ctest): 20,000 devices, 2 kills. Long form
 * (PUSHGW_RELIABILITY_LONG=1): 60,000 devices, 5 kills.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* broadcast.c: BC_WINDOW x BC_PAGE devices sent and not committed */
#define WINDOW 6000

/* The device number of a token of this test, or -1. */
static int device_of(const char *tok)
{
    if (strncmp(tok, "fcm-crash-", 10) == 0)
        return atoi(tok + 10);
    if (strncmp(tok, "ab", 2) == 0 && strlen(tok) == 64)
        return atoi(tok + 2);
    return -1;
}

static void test_broadcast_crash(void **state)
{
    static const char *const slow[] = {"--delay-ms", "5", NULL};
    struct tu_svc_options o = {.apns_args = slow,
                               .fcm_args = slow,
                               .delivery_ini = "lease_ms = 1000\n"};
    struct tu_svc s;
    int n = tu_long() ? 60000 : 20000;
    int kills = tu_long() ? 5 : 2;
    int *counts = calloc((size_t)n + 1, sizeof(int));
    const char *files[] = {NULL, NULL, NULL};
    long lost = 0, dups = 0;
    char sql[1024];
    char *v;
    (void)state;

    assert_non_null(counts);
    memset(&s, 0, sizeof(s));
    tu_svc_start(&s, &o);
    snprintf(sql, sizeof(sql),
             "INSERT INTO installations (app_id, device_type, device_token, "
             "channels) SELECT 'demo', CASE WHEN g %% 3 = 0 THEN 'ios' ELSE "
             "'android' END, CASE WHEN g %% 3 = 0 THEN 'ab' || lpad(g::text, "
             "62, '0') ELSE 'fcm-crash-' || g END, '{all}' FROM "
             "generate_series(1, %d) g RETURNING 1",
             n);
    free(tu_svc_query(&s, sql));
    v = tu_svc_query(&s, "INSERT INTO api_pushes (app_id, query, data, "
                         "expires_at) VALUES ('demo', "
                         "'{\"channels\":{\"$in\":[\"all\"]}}', "
                         "'{\"alert\":\"to all\",\"badge\":\"Increment\"}', "
                         "now() + interval '1 day') RETURNING id");
    assert_non_null(v);
    free(v);

    for (int k = 0; k < kills; k++) {
        size_t at = (size_t)n * (size_t)(k + 1) / (size_t)(kills + 2);
        size_t got;

        /* The kill comes in the middle of a page, pushes in flight. */
        while ((got = tu_records_count(s.apns.record) +
                      tu_records_count(s.fcm.record)) < at)
            usleep(2000);
        assert_int_equal(tu_svc_kill_gateway(&s, SIGKILL), 128 + SIGKILL);
        v = tu_svc_query(&s, "SELECT cursor_id || ' ' || devices FROM "
                             "api_pushes");
        printf("# kill %d after %zu records: cursor, devices %s\n", k + 1, got,
               v ? v : "?");
        free(v);
        tu_svc_start_gateway(&s);
    }
    if (!tu_svc_wait_query(&s, "SELECT state FROM api_pushes", "done",
                           tu_long() ? 600000 : 120000))
        fail_msg("the request did not end");

    files[0] = s.apns.record;
    files[1] = s.fcm.record;
    for (int f = 0; f < 2; f++) {
        cJSON *recs = tu_records_read(files[f]), *r;

        cJSON_ArrayForEach(r, recs)
        {
            int d = device_of(tu_json_str(r, "token"));

            if (d < 1 || d > n)
                continue;
            assert_string_equal(tu_json_str(r, "status"), "200");
            counts[d]++;
        }
        cJSON_Delete(recs);
    }
    for (int d = 1; d <= n; d++) {
        if (counts[d] < 1) {
            lost++;
            if (lost < 10)
                print_error("device %d: no push\n", d);
        }
        if (counts[d] > 1)
            dups += counts[d] - 1;
    }
    printf("# broadcast crash: devices=%d kills=%d lost=%ld duplicates=%ld\n",
           n, kills, lost, dups);
    assert_int_equal(lost, 0);
    assert_true(dups <= (long)kills * WINDOW);
    /* Every device counted once, whatever was sent twice. */
    snprintf(sql, sizeof(sql), "%d/%d/0/0 sent", n, n);
    v = tu_svc_query(&s, "SELECT devices || '/' || successes || '/' || errors "
                         "|| '/' || invalid_tokens || ' ' || result FROM "
                         "api_pushes");
    assert_string_equal(v, sql);
    free(v);
    /* A page sent again gives its devices the badge they already had. */
    v = tu_svc_query(&s, "SELECT count(*) FILTER (WHERE badge <> 1) || '/' "
                         "|| count(*) FROM installations WHERE device_type "
                         "= 'ios'");
    snprintf(sql, sizeof(sql), "0/%d", n / 3);
    assert_string_equal(v, sql);
    free(v);
    v = tu_svc_query(&s, "SELECT count(*) FROM push_retries");
    assert_string_equal(v, "0");
    free(v);
    tu_svc_stop(&s);
    free(counts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broadcast_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
