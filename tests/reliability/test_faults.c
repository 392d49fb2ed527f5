/*
 * Provider faults, mixed in one run: events are posted steadily while the
 * mock APNs (on a fixed port) is restarted through phases of faults —
 * (restarted on the same port each time) —
 * GOAWAY every 200 streams with 503 bursts and the stream limit dropped
 * to 1; 429 with Retry-After and TCP connections cut; answers delayed past
 * [apns] request_timeout_ms; PINGs unanswered with connections cut; then
 * the mock stopped (an outage), and finally healthy again. The mock FCM
 * stays healthy.
 *
 * Afterwards: every push to a good token was delivered; the pushes to a
 * BadDeviceToken (APNs) and an UNREGISTERED token (FCM) ended invalidated
 * (push_failures, installations.valid = false); nothing is stuck; the
 * gateway's memory stayed bounded; FCM pushes stayed prompt throughout.
 *
 * Short form: 1.5 s per phase, 3 s outage. Long form
 * (PUSHGW_RELIABILITY_LONG=1): 60 s per phase, a 10-minute outage.
 * PUSHGW_RELIABILITY_PHASE_MS / _OUTAGE_MS override the two durations.
 *
 * Note: the gateway PINGs after 60 s without a frame (h2client default,
 * not configurable), so the unanswered PINGs matter only in the long
 * form, where the phase is longer than that.
 */
#include "pushgw.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_IOS "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f101"
#define T_IOS_BAD                                                              \
    "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1bad0"
#define T_FCM "fcm-token-faults-good"
#define T_FCM_GONE "fcm-token-faults-gone"
#define MAX_EVENTS 100000

struct run {
    struct tu_svc s;
    volatile int stop;
    int n;
    long long *posted_ms; /* wall clock when the request was sent */
    long rss_max;
    int rate; /* events per second */
};

static void *poster_main(void *arg)
{
    struct run *r = arg;
    struct tu_http *h = tu_http_new();
    long long start = tu_mono_ms();

    while (!r->stop && r->n < MAX_EVENTS) {
        char body[512];
        int i = r->n;
        long long sent = tu_wall_ms();
        int len = snprintf(body, sizeof(body),
                           "{\"fromPeer\":\"Spike\",\"convId\":\"f%d\","
                           "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
                           "\"msgId\":\"f%d\",\"pushData\":{\"alert\":"
                           "\"message %d\"}}",
                           i, tu_wall_ms(), i, i);
        int st = tu_http_post(
            h, r->s.gw.port, "/v1/apps/demo/receivers-offline",
            "demo-hook-key-0001", NULL, body, (size_t)len, 20000, NULL, NULL);
        if (st == 202) {
            r->posted_ms[i] = sent;
            r->n++;
        } else {
            print_error("event %d: status %d\n", i, st);
        }
        /* Steady rate. */
        long long due = start + (long long)r->n * 1000 / r->rate;
        long long now = tu_mono_ms();
        if (due > now)
            usleep((useconds_t)(due - now) * 1000);
        long rss = tu_rss_kib(r->s.gw.pid);
        if (rss > r->rss_max)
            r->rss_max = rss;
    }
    tu_http_free(h);
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void test_faults(void **state)
{
    struct run *r = calloc(1, sizeof(*r));
    int port;
    static const char *const apns0[] = {"--bad-token", T_IOS_BAD, NULL};
    static const char *const fcm0[] = {"--unregistered", T_FCM_GONE, NULL};
    const char *pe = getenv("PUSHGW_RELIABILITY_PHASE_MS");
    const char *oe = getenv("PUSHGW_RELIABILITY_OUTAGE_MS");
    int phase_ms = pe && *pe ? atoi(pe) : tu_long() ? 60000 : 1500;
    int outage_ms = oe && *oe ? atoi(oe) : tu_long() ? 600000 : 3000;
    struct {
        const char *name;
        const char *args[12];
    } phases[] = {
        {"goaway+503+streams=1",
         {"--goaway-after", "200", "--fail-every", "7:503:ServiceUnavailable",
          "--retry-after", "1", "--lower-streams-after", "20:1", NULL}},
        {"429+cut",
         {"--fail-every", "5:429:TooManyRequests", "--retry-after", "1",
          "--close-after", "150", NULL}},
        {"delay>timeout", {"--delay-ms", "1500", NULL}},
        {"no-ping-ack+cut", {"--no-ping-ack", "--close-after", "40", NULL}},
    };
    const char *toks[] = {T_IOS, T_FCM};
    const char *files[3];
    struct tu_tally t;
    long long *lat;
    size_t n_lat = 0;
    pthread_t th;
    long rss0, hwm, lost = 0, dups = 0;
    long long inst_bad, inst_gone;
    char *v;
    (void)state;

    assert_non_null(r);
    r->posted_ms = calloc(MAX_EVENTS, sizeof(long long));
    assert_non_null(r->posted_ms);
    r->rate = tu_long() ? 100 : 150;
    struct tu_svc_options o = {
        .apns_args = apns0,
        .fcm_args = fcm0,
        .delivery_ini = tu_long() ? "max_attempts = 1000\nretry_max_ms = "
                                    "5000\nlease_ms = 5000\n"
                                  : "max_attempts = 60\nlease_ms = 5000\n"};
    setenv("PUSHGW_APNS_REQUEST_TIMEOUT_MS", "500", 1);
    tu_svc_start(&r->s, &o);
    unsetenv("PUSHGW_APNS_REQUEST_TIMEOUT_MS");
    /* The production APNs is restarted on the port it got (the gateway's
     * config names it); the development one is not used here. */
    port = r->s.apns.port;
    tu_svc_add_device(&r->s, "demo", "ios", T_IOS, "{Jerry}", NULL);
    inst_bad =
        tu_svc_add_device(&r->s, "demo", "ios", T_IOS_BAD, "{Jerry}", NULL);
    tu_svc_add_device(&r->s, "demo", "android", T_FCM, "{Jerry}", NULL);
    inst_gone = tu_svc_add_device(&r->s, "demo", "android", T_FCM_GONE,
                                  "{Jerry}", NULL);
    rss0 = tu_rss_kib(r->s.gw.pid);

    assert_int_equal(pthread_create(&th, NULL, poster_main, r), 0);
    /* The sleeps below are the scenario: each phase lasts phase_ms (the
     * outage outage_ms) while the poster keeps its rate. */
    usleep((useconds_t)phase_ms * 1000);
    for (size_t p = 0; p < PGW_ARRAY_SIZE(phases); p++) {
        const char *args[20];
        size_t n = 0;
        for (size_t i = 0; phases[p].args[i]; i++)
            args[n++] = phases[p].args[i];
        args[n++] = "--bad-token";
        args[n++] = T_IOS_BAD;
        args[n] = NULL;
        tu_mock_restart(&r->s.apns, port, args);
        printf("# phase %s from event %d\n", phases[p].name, r->n);
        usleep((useconds_t)phase_ms * 1000);
    }
    tu_mock_kill(&r->s.apns);
    printf("# APNs down from event %d\n", r->n);
    usleep((useconds_t)outage_ms * 1000);
    {
        const char *healthy[] = {"--bad-token", T_IOS_BAD, NULL};
        tu_mock_restart(&r->s.apns, port, healthy);
    }
    printf("# APNs healthy again from event %d\n", r->n);
    usleep((useconds_t)phase_ms * 1000);
    r->stop = 1;
    pthread_join(th, NULL);

    if (!tu_svc_wait_query(&r->s,
                           "SELECT count(*) FILTER (WHERE state <> 'done') + "
                           "(SELECT count(*) FROM push_retries) FROM events",
                           "0", tu_long() ? 900000 : 120000)) {
        v = tu_svc_query(
            &r->s, "SELECT (SELECT string_agg(state || ':' || c, ' ') FROM "
                   "(SELECT state, count(*) c FROM events GROUP BY state) "
                   "x) || ' retries ' || (SELECT count(*) FROM "
                   "push_retries)");
        fail_msg("not finished: %s", v ? v : "?");
    }
    hwm = tu_hwm_kib(r->s.gw.pid);
    {
        /* What the gateway saw, from its own metrics. */
        char *m = NULL, *save = NULL;
        assert_int_equal(tu_svc_admin_get(&r->s, "/metrics", &m), 200);
        for (char *l = strtok_r(m, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save))
            if (strncmp(l, "pushgw_pushes_total{", 20) == 0 ||
                strncmp(l, "pushgw_provider_connections{", 28) == 0)
                printf("#   %s\n", l);
        free(m);
    }

    files[0] = r->s.apns.record;
    files[1] = r->s.fcm.record;
    files[2] = NULL;
    tu_tally(&t, files, (size_t)r->n, toks, 2);
    lat = calloc((size_t)r->n + 1, sizeof(long long));
    assert_non_null(lat);
    for (int i = 0; i < r->n; i++) {
        for (int d = 0; d < 2; d++) {
            int c = t.counts[i * 2 + d];
            if (c < 1) {
                lost++;
                print_error("event %d: no delivery to %s\n", i, toks[d]);
            }
            dups += c > 1 ? c - 1 : 0;
        }
        if (t.first_ms[i * 2 + 1])
            lat[n_lat++] = t.first_ms[i * 2 + 1] - r->posted_ms[i];
    }
    qsort(lat, n_lat, sizeof(long long), cmp_ll);

    v = tu_svc_query(&r->s, "SELECT coalesce(string_agg(provider || '/' || "
                            "outcome || '/' || coalesce(reason, '-') || '=' || "
                            "c, ' '), 'none') FROM (SELECT provider, outcome, "
                            "reason, count(*) c FROM push_failures GROUP BY 1, "
                            "2, 3) x");
    printf("# faults: events=%d pushes_to_good_tokens=%d lost=%ld "
           "duplicates=%ld records=%zu non_200_records=%zu; "
           "push_failures: %s\n",
           r->n, r->n * 2, lost, dups, t.records, t.non_200, v);
    free(v);
    printf("# faults: FCM latency during the APNs faults (ms, 202 -> mock "
           "record): p50=%lld p99=%lld max=%lld (n=%zu)\n",
           n_lat ? lat[n_lat / 2] : -1, n_lat ? lat[n_lat * 99 / 100] : -1,
           n_lat ? lat[n_lat - 1] : -1, n_lat);
    printf("# faults: gateway RSS %ld KiB at start, max %ld KiB while "
           "posting, VmHWM %ld KiB\n",
           rss0, r->rss_max, hwm);

    assert_int_equal(lost, 0);
    /* The bad tokens ended invalidated, nothing else failed. */
    {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM installations WHERE valid = false "
                 "AND id IN (%lld, %lld)",
                 inst_bad, inst_gone);
        v = tu_svc_query(&r->s, sql);
        assert_string_equal(v, "2");
        free(v);
        snprintf(sql, sizeof(sql),
                 "SELECT count(DISTINCT installation_id) FROM push_failures "
                 "WHERE outcome = 'invalidated' AND installation_id IN "
                 "(%lld, %lld)",
                 inst_bad, inst_gone);
        v = tu_svc_query(&r->s, sql);
        assert_string_equal(v, "2");
        free(v);
        v = tu_svc_query(&r->s, "SELECT count(*) FROM push_failures WHERE "
                                "outcome <> 'invalidated'");
        assert_string_equal(v, "0");
        free(v);
    }
    /* FCM not slowed by the APNs trouble (generous for a loaded 2-core
     * machine and ASan). */
    assert_true(n_lat > 0);
    if (lat[n_lat * 99 / 100] > 2000)
        fail_msg("FCM p99 latency %lld ms while APNs failed",
                 lat[n_lat * 99 / 100]);
    /* Memory bounded: retries are rows, not memory. */
    tu_check_memory(r->s.gw.pid, rss0, 64 * 1024, "faults memory");
    free(lat);
    tu_tally_free(&t);
    tu_svc_stop(&r->s);
    free(r->posted_ms);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
