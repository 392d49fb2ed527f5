/* Tests of util/retry_after: the one Retry-After rule of APNs and FCM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pushgw.h"
#include "util/retry_after.h"

static void test_parse(void **state)
{
    /* 2023-11-14T22:13:20Z, a Tuesday */
    const int64_t now = 1700000000000LL;
    static const struct {
        const char *value;
        int64_t want;
    } cases[] = {
        {"", -1},
        {"   ", -1},
        {"120", 120000},
        {"0", 0},
        {" 0 ", 0},
        {"\t30\t", 30000},
        {"86400", PGW_RETRY_AFTER_MAX_MS},
        {"86401", PGW_RETRY_AFTER_MAX_MS},
        {"999999999", PGW_RETRY_AFTER_MAX_MS},
        {"99999999999999999999999999", PGW_RETRY_AFTER_MAX_MS},
        {"12a", -1},
        {"1.5", -1},
        {"-5", -1},
        {"+5", -1},
        {"junk", -1},
        {"tomorrow", -1},
        /* IMF-fixdate */
        {"Tue, 14 Nov 2023 22:14:20 GMT", 60000},
        {" Tue, 14 Nov 2023 22:14:20 GMT ", 60000},
        {"Tue, 14 Nov 2023 22:00:00 GMT", 0}, /* past */
        {"Wed, 15 Nov 2023 22:13:20 GMT", PGW_RETRY_AFTER_MAX_MS},
        {"Fri, 17 Nov 2023 22:13:20 GMT", PGW_RETRY_AFTER_MAX_MS},
        {"Tue, 14 Nov 2023 22:14:20 GMT junk", -1},
        {"Tue, 14 Nov 2023 22:14:20", -1},
        {"Tue, 14 Foo 2023 22:14:20 GMT", -1},
        /* the obsolete forms */
        {"Tuesday, 14-Nov-23 22:14:20 GMT", 60000},
        {"Tue Nov 14 22:14:20 2023", 60000},
        {"Sun Nov  6 08:49:37 1994", 0},
    };

    (void)state;
    assert_int_equal(pgw_retry_after_parse(NULL, now), -1);
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        int64_t got = pgw_retry_after_parse(cases[i].value, now);
        if (got != cases[i].want)
            fail_msg("'%s': %lld, want %lld", cases[i].value, (long long)got,
                     (long long)cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
