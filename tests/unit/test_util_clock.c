/* Tests of util/clock: the monotonic and the wall clock in ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "util/clock.h"

static void test_mono_never_goes_back(void **state)
{
    int64_t prev = pgw_clock_mono_ms();

    (void)state;
    assert_true(prev > 0);
    for (int i = 0; i < 100000; i++) {
        int64_t now = pgw_clock_mono_ms();
        assert_true(now >= prev);
        prev = now;
    }
}

static void test_wall_is_the_epoch_time(void **state)
{
    int64_t before = (int64_t)time(NULL) * 1000;
    int64_t now = pgw_clock_wall_ms();
    int64_t after = (int64_t)time(NULL) * 1000 + 1000;

    (void)state;
    assert_true(now >= before);
    assert_true(now < after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mono_never_goes_back),
        cmocka_unit_test(test_wall_is_the_epoch_time),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
