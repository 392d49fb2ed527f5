/*
 * Lease: a process whose lease on an event ran out while the event's job
 * still runs in it (it stalled longer than the lease, or its renewals
 * were late) must not take the event back as a second job: the claim
 * sees an expired lease, the process already works the event, and every
 * push would be sent twice without any crash (test_crash's "pushed twice
 * but was not in flight at a kill", seen when a loaded machine paused the
 * gateway past test_crash's 1 s lease).
 *
 * The same holds for a retry row whose push is out again.
 *
 * The leases are made to lapse by hand while the pushes wait at slow
 * mocks; renewals are 20 s apart and claims 50 ms apart, so the claim
 * comes first every time.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_EVENTS 20
#define N_EVENTS_TEXT "20"

static const char *const tokens[] = {
    "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee01",
    "fcm-token-lease-0001"};

/* Posts N_EVENTS events for Jerry, each accepted. */
static void post_events(struct tu_svc *s)
{
    char body[512];

    for (int i = 0; i < N_EVENTS; i++) {
        snprintf(body, sizeof(body),
                 "{\"fromPeer\":\"Spike\",\"convId\":\"c%d\","
                 "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
                 "\"msgId\":\"m%d\",\"pushData\":{\"alert\":"
                 "\"message %d\"}}",
                 i, tu_wall_ms(), i, i);
        assert_int_equal(tu_svc_post(s, "/v1/apps/demo/receivers-offline",
                                     "demo-hook-key-0001", NULL, body, NULL),
                         202);
    }
}

static void test_lapsed_lease_not_worked_twice(void **state)
{
    static const char *const slow[] = {"--delay-ms", "1500", NULL};
    struct tu_svc_options o = {.apns_args = slow,
                               .fcm_args = slow,
                               .delivery_ini = "lease_ms = 60000\n"
                                               "claim_interval_ms = 50\n"};
    struct tu_svc s;
    const char *files[3];
    struct tu_tally t;
    char *v;
    (void)state;

    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "demo", "ios", tokens[0], "{Jerry}", NULL);
    tu_svc_add_device(&s, "demo", "android", tokens[1], "{Jerry}", NULL);
    post_events(&s);
    /* The pushes are at the mocks (1.5 s to answer); the gateway's
     * leases lapse as a stalled process's would. */
    usleep(300 * 1000);
    v = tu_svc_query(&s, "WITH u AS (UPDATE events SET lease_until = now() - "
                         "interval '1 second' WHERE state = 'pending' "
                         "RETURNING 1) SELECT count(*) FROM u");
    assert_non_null(v);
    printf("# leases lapsed: %s of %d events\n", v, N_EVENTS);
    assert_true(atoi(v) > 0);
    free(v);

    assert_true(tu_svc_wait_query(&s,
                                  "SELECT count(*) FILTER (WHERE state <> "
                                  "'done' OR lease_owner IS NOT NULL) FROM "
                                  "events",
                                  "0", 60000));
    /* A second job would have sent within the claim interval; give its
     * answers time to be recorded. */
    usleep(2000 * 1000);
    files[0] = s.apns.record;
    files[1] = s.fcm.record;
    files[2] = NULL;
    tu_tally(&t, files, N_EVENTS, tokens, 2);
    for (int i = 0; i < N_EVENTS; i++)
        for (size_t d = 0; d < 2; d++)
            if (t.counts[(size_t)i * 2 + d] != 1)
                fail_msg("event %d device %zu: pushed %d times", i, d,
                         t.counts[(size_t)i * 2 + d]);
    assert_int_equal(t.non_200, 0);
    tu_tally_free(&t);
    tu_svc_stop(&s);
}

/* The same for a retry row: its push is out again, at a slow mock, when
 * the lease on the row lapses. */
static void test_lapsed_retry_lease_not_sent_twice(void **state)
{
    static const char *const failing[] = {"--fail-every",
                                          "1:503:ServiceUnavailable", NULL};
    static const char *const slow[] = {"--delay-ms", "1500", NULL};
    struct tu_svc_options o = {.apns_args = failing,
                               .delivery_ini = "lease_ms = 60000\n"
                                               "claim_interval_ms = 50\n"
                                               "retry_base_ms = 2000\n"
                                               "retry_max_ms = 4000\n"};
    struct tu_svc s;
    const char *files[2];
    struct tu_tally t;
    char *v;
    (void)state;

    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "demo", "ios", tokens[0], "{Jerry}", NULL);
    post_events(&s);
    /* Every first attempt is answered 503: one retry row per event. */
    assert_true(tu_svc_wait_query(&s, "SELECT count(*) FROM push_retries",
                                  N_EVENTS_TEXT, 20000));
    tu_mock_kill(&s.apns);
    tu_mock_restart(&s.apns, s.apns.port, slow);
    /* The retries are claimed and out at the slow mock; their leases
     * lapse as a stalled process's would. */
    assert_true(tu_svc_wait_query(&s,
                                  "SELECT count(*) FROM push_retries WHERE "
                                  "lease_owner IS NOT NULL",
                                  N_EVENTS_TEXT, 20000));
    usleep(300 * 1000);
    v = tu_svc_query(&s, "WITH u AS (UPDATE push_retries SET lease_until = "
                         "now() - interval '1 second' WHERE lease_owner IS "
                         "NOT NULL RETURNING 1) SELECT count(*) FROM u");
    assert_non_null(v);
    printf("# retry leases lapsed: %s of %d\n", v, N_EVENTS);
    assert_true(atoi(v) > 0);
    free(v);

    assert_true(tu_svc_wait_query(&s,
                                  "SELECT count(*) FILTER (WHERE state <> "
                                  "'done' OR lease_owner IS NOT NULL) + "
                                  "(SELECT count(*) FROM push_retries) FROM "
                                  "events",
                                  "0", 60000));
    usleep(2000 * 1000);
    files[0] = s.apns.record;
    files[1] = NULL;
    tu_tally(&t, files, N_EVENTS, tokens, 1);
    for (int i = 0; i < N_EVENTS; i++)
        if (t.counts[i] != 1)
            fail_msg("event %d: delivered %d times", i, t.counts[i]);
    assert_int_equal(t.non_200, N_EVENTS);
    tu_tally_free(&t);
    tu_svc_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lapsed_lease_not_worked_twice),
        cmocka_unit_test(test_lapsed_retry_lease_not_sent_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
