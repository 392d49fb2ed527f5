/*
 * dispatch.c's pacing policy (pgw_dispatch_pacing_cap()): the in-flight
 * cap that keeps the busiest provider's streams full and no more. The
 * retry policies are in test_push.c (push.c plans retries).
 */
#include <stdint.h>

#include "testutil.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_streams),
        cmocka_unit_test(test_one_provider),
        cmocka_unit_test(test_shares),
        cmocka_unit_test(test_floor),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
