/* Tests of h2client's pure growth rule: exact samples, grow or not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "h2client.h"

/* No answer timed yet: no growth. */
static void test_no_sample_does_not_grow(void **state)
{
    (void)state;
    assert_false(pgw_h2_pool_should_grow(0, 0));
    assert_false(pgw_h2_pool_should_grow(0, 1000));
}

/* 50 ms away, the thread sent the streams in 12 ms: grow. */
static void test_far_provider_grows(void **state)
{
    (void)state;
    assert_true(pgw_h2_pool_should_grow(50000, 12000));
    assert_true(pgw_h2_pool_should_grow(150000, 12000));
}

/* Near but answering 100 ms late, the thread idle: grow. */
static void test_slow_answers_grow(void **state)
{
    (void)state;
    assert_true(pgw_h2_pool_should_grow(100000, 300));
    assert_true(pgw_h2_pool_should_grow(100000, 0));
}

/* Near, the thread busy the whole answer (or most of it, shared with
 * other processes): no growth. */
static void test_near_busy_does_not_grow(void **state)
{
    (void)state;
    assert_false(pgw_h2_pool_should_grow(20000, 20000));
    assert_false(pgw_h2_pool_should_grow(20000, 14000));
    assert_false(pgw_h2_pool_should_grow(900, 1000));
}

/* The edge: idle exactly half the answer grows, a µs less does not. */
static void test_half_idle_is_the_edge(void **state)
{
    (void)state;
    assert_true(pgw_h2_pool_should_grow(20000, 10000));
    assert_false(pgw_h2_pool_should_grow(20000, 10001));
    assert_true(pgw_h2_pool_should_grow(1, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_sample_does_not_grow),
        cmocka_unit_test(test_far_provider_grows),
        cmocka_unit_test(test_slow_answers_grow),
        cmocka_unit_test(test_near_busy_does_not_grow),
        cmocka_unit_test(test_half_idle_is_the_edge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
