/*
 * The dispatcher: its pacing policy (pgw_dispatch_pacing_cap(), the
 * in-flight cap that keeps the busiest provider's streams full and no
 * more), the in-flight bound under it (pgw_dispatch_inflight_bound(),
 * bandwidth × delay between max_inflight and its ceiling, and the answer
 * rate's filter), its claim policy (pgw_dispatch_claim_room(), claims ahead
 * while that cap is reached), and, end to end against the mock APNs with
 * per-environment token rules, invalidation only on evidence. The retry
 * policies are in test_push.c (push.c plans retries).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "tu_svc.h"

#include "dispatch.h"

static void test_unknown_streams(void **state)
{
    const uint32_t none[2] = {0, 0}, apns[2] = {100, 0};
    const size_t no_cap[2] = {0, 0};
    (void)state;

    /* Nothing sent yet, or the streams not known: the configured bound. */
    assert_int_equal(pgw_dispatch_pacing_cap(none, no_cap, 10000), 10000);
    assert_int_equal(pgw_dispatch_pacing_cap(apns, no_cap, 10000), 10000);
}

static void test_one_provider(void **state)
{
    const uint32_t apns[2] = {4096, 0};
    const size_t cap[2] = {3000, 0};
    (void)state;

    /* All sends to APNs: its streams, and an eighth more. */
    assert_int_equal(pgw_dispatch_pacing_cap(apns, cap, 10000), 3375);
    /* Never over the configured bound. */
    assert_int_equal(pgw_dispatch_pacing_cap(apns, cap, 3200), 3200);
    assert_int_equal(pgw_dispatch_pacing_cap(apns, cap, 2000), 2000);
}

static void test_shares(void **state)
{
    /* A quarter of the sends go to FCM, whose 200 streams fill at 800 in
     * flight; APNs' 3000 would need 4000: the smaller total wins. */
    const uint32_t recent[2] = {3000, 1000};
    const size_t cap[2] = {3000, 200};
    (void)state;

    assert_int_equal(pgw_dispatch_pacing_cap(recent, cap, 10000), 900);
}

static void test_floor(void **state)
{
    const uint32_t recent[2] = {10, 10};
    const size_t cap[2] = {20, 20};
    (void)state;

    /* Few streams: at least 256 in flight. */
    assert_int_equal(pgw_dispatch_pacing_cap(recent, cap, 10000), 256);
}

#define TOK_PROD                                                               \
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc01"
#define TOK_DEV                                                                \
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc02"

static void test_inflight_bound(void **state)
{
    const double none[2] = {0, 0}, far[2] = {70000, 30000};
    const uint32_t no_rtt[2] = {0, 0}, rtt50[2] = {50000, 50000},
                   rtt150[2] = {150000, 150000}, mixed[2] = {150000, 20000};
    (void)state;

    /* No answers, or no round trip known: the floor. */
    assert_int_equal(pgw_dispatch_inflight_bound(none, rtt150, 10000, 30000),
                     10000);
    assert_int_equal(pgw_dispatch_inflight_bound(far, no_rtt, 10000, 30000),
                     10000);
    /* Four times what fills the path: 4 × 100,000/s × 50 ms is 20,000;
     * 4 × 40,000/s × 50 ms is 8,000, under the floor. */
    assert_int_equal(pgw_dispatch_inflight_bound(far, rtt50, 10000, 30000),
                     20000);
    {
        const double slower[2] = {20000, 10000}, near[2] = {30000, 10000};

        assert_int_equal(pgw_dispatch_inflight_bound(near, rtt50, 10000, 30000),
                         10000);
        /* 4 × 30,000/s × 150 ms = 18,000 */
        assert_int_equal(
            pgw_dispatch_inflight_bound(slower, rtt150, 10000, 30000), 18000);
        /* each provider over its own round trip:
         * 4 × (20,000 × 0.15 + 10,000 × 0.02) = 12,800 */
        assert_int_equal(
            pgw_dispatch_inflight_bound(slower, mixed, 10000, 30000), 12800);
    }
    /* Never over the ceiling, and a ceiling under the floor is the floor. */
    assert_int_equal(pgw_dispatch_inflight_bound(far, rtt150, 10000, 30000),
                     30000);
    assert_int_equal(pgw_dispatch_inflight_bound(far, rtt150, 10000, 5000),
                     10000);
}

static void test_rate_filter(void **state)
{
    (void)state;

    /* A higher window is taken at once. */
    assert_true(pgw_dispatch_rate_filter(1000, 8000, 1) == 8000);
    /* A lower one: an eighth less per window, down to the sample. */
    assert_true(pgw_dispatch_rate_filter(8000, 0, 1) == 7000);
    assert_true(pgw_dispatch_rate_filter(8000, 6500, 2) == 6500);
    assert_true(pgw_dispatch_rate_filter(8000, 0, 0) == 8000);
    /* Ten idle windows (a second): about a quarter is left. */
    assert_true(pgw_dispatch_rate_filter(8000, 0, 10) < 2200);
    assert_true(pgw_dispatch_rate_filter(8000, 0, 1000) < 1);
}

static void test_claim_room(void **state)
{
    (void)state;

    /* Room in memory and in flight: up to the pending bound's room at
     * the recipients events have had, at most 200, at least one. */
    assert_int_equal(pgw_dispatch_claim_room(2000, 1, 0, 40000, 1000, true),
                     40);
    assert_int_equal(pgw_dispatch_claim_room(2000, 1, 0, 40000, 1, true), 200);
    assert_int_equal(pgw_dispatch_claim_room(2000, 1, 39900, 40000, 1000, true),
                     1);
    assert_int_equal(pgw_dispatch_claim_room(30, 1, 0, 40000, 1, true), 30);
    /* No room: in memory, in the pending bound, or under min_room. */
    assert_int_equal(pgw_dispatch_claim_room(0, 1, 0, 40000, 1, true), 0);
    assert_int_equal(pgw_dispatch_claim_room(2000, 1, 40000, 40000, 1, true),
                     0);
    assert_int_equal(pgw_dispatch_claim_room(150, 200, 0, 40000, 1, true), 0);
}

static void test_claim_ahead(void **state)
{
    (void)state;

    /* The in-flight cap reached (a far provider): events are claimed
     * ahead once a quarter of the pending bound is free, not before. */
    assert_int_equal(
        pgw_dispatch_claim_room(2000, 1, 30000, 40000, 1000, false), 10);
    assert_int_equal(
        pgw_dispatch_claim_room(2000, 1, 12000, 40000, 1000, false), 28);
    assert_int_equal(
        pgw_dispatch_claim_room(2000, 1, 30001, 40000, 1000, false), 0);
    assert_int_equal(pgw_dispatch_claim_room(2000, 1, 39000, 40000, 1, false),
                     0);
}

static void post(struct tu_svc *s, const char *msg_id, const char *push_data)
{
    struct timespec ts;
    char body[512], *resp = NULL;
    int st;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(body, sizeof(body),
             "{\"fromPeer\":\"Spike\",\"convId\":\"env\",\"offlinePeers\":"
             "[\"Jerry\",\"Tom\"],\"timestamp\":%lld,\"msgId\":\"%s\","
             "\"pushData\":%s}",
             (long long)ts.tv_sec * 1000, msg_id, push_data);
    st = tu_svc_post(s, "/v1/apps/demo/receivers-offline", "demo-hook-key-0001",
                     NULL, body, &resp);
    if (st != 202)
        fail_msg("POST: %d %s", st, resp ? resp : "");
    free(resp);
}

static void expect(struct tu_svc *s, const char *sql, const char *want)
{
    if (!tu_svc_wait_query(s, sql, want, 15000)) {
        char *got = tu_svc_query(s, sql);
        fail_msg("%s: '%s', wanted '%s'", sql, got ? got : "?", want);
    }
}

/*
 * A token answered BadDeviceToken by the environment the push chose is
 * invalidated only when that is production, the environment pushgw
 * assumes (push.h): a _profile "dev" push to a production token fails and
 * the device keeps getting production pushes.
 */
static void test_invalidation_on_evidence(void **state)
{
    static const char *const prod_args[] = {
        "--token-env", TOK_PROD ":production", "--token-env",
        TOK_DEV ":development", NULL};
    static const char *const dev_args[] = {"--environment",
                                           "development",
                                           "--token-env",
                                           TOK_PROD ":production",
                                           "--token-env",
                                           TOK_DEV ":development",
                                           NULL};
    struct tu_svc_options o = {.apns_args = prod_args};
    struct tu_svc s;
    (void)state;

    memset(&s, 0, sizeof(s));
    tu_svc_start(&s, &o);
    tu_mock_restart(&s.apns_dev, s.apns_dev.port, dev_args);
    tu_svc_add_device(&s, "demo", "ios", TOK_PROD, "{Jerry}", NULL);
    tu_svc_add_device(&s, "demo", "ios", TOK_DEV, "{Tom}", NULL);

    /* The guide's development push: the production token fails. */
    post(&s, "m1", "{\"_profile\":\"dev\",\"alert\":\"dev build\"}");
    expect(&s, "SELECT count(*) FROM events WHERE state = 'done'", "1");
    expect(&s,
           "SELECT string_agg(outcome || ':' || reason, ',') FROM "
           "push_failures",
           "failed:BadDeviceToken");
    expect(&s,
           "SELECT string_agg(valid::text, ',' ORDER BY device_token) FROM "
           "installations",
           "true,true");

    /* Production: the production token is delivered; the development one
     * is the evidence pushgw acts on. */
    post(&s, "m2", "{\"alert\":\"store build\"}");
    expect(&s, "SELECT count(*) FROM events WHERE state = 'done'", "2");
    expect(&s,
           "SELECT string_agg(valid || ':' || coalesce(invalid_reason, '-'), "
           "',' ORDER BY device_token) FROM installations",
           "true:-,false:BadDeviceToken");
    expect(&s, "SELECT pushes_delivered FROM events ORDER BY id DESC LIMIT 1",
           "1");
    tu_svc_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_streams),
        cmocka_unit_test(test_one_provider),
        cmocka_unit_test(test_shares),
        cmocka_unit_test(test_floor),
        cmocka_unit_test(test_inflight_bound),
        cmocka_unit_test(test_rate_filter),
        cmocka_unit_test(test_claim_room),
        cmocka_unit_test(test_claim_ahead),
        cmocka_unit_test(test_invalidation_on_evidence),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
