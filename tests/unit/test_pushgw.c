/* Tests of the small shared helpers in gateway/pushgw.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pushgw.h"

static void expect_i64(int64_t v)
{
    char got[24], want[24];
    size_t n = pgw_fmt_i64(got, v);

    snprintf(want, sizeof(want), "%lld", (long long)v);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
}

static void test_fmt_i64(void **state)
{
    (void)state;
    expect_i64(0);
    expect_i64(7);
    expect_i64(10);
    expect_i64(-1);
    expect_i64(1790000000);
    expect_i64(INT32_MAX);
    expect_i64(INT32_MIN);
    expect_i64(INT64_MAX);
    expect_i64(INT64_MIN);
}

static void test_copy_str(void **state)
{
    char buf[8];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    pgw_copy_str(buf, sizeof(buf), "abc");
    assert_string_equal(buf, "abc");
    /* cut to fit, terminated */
    pgw_copy_str(buf, sizeof(buf), "0123456789");
    assert_string_equal(buf, "0123456");
    pgw_copy_str(buf, sizeof(buf), "0123456");
    assert_string_equal(buf, "0123456");
    pgw_copy_str(buf, sizeof(buf), NULL);
    assert_string_equal(buf, "");
    pgw_copy_str(buf, 1, "abc");
    assert_string_equal(buf, "");
    pgw_copy_str(buf, 1, NULL);
    assert_string_equal(buf, "");
    buf[0] = 'z';
    pgw_copy_str(buf, 0, "abc"); /* nothing written */
    assert_int_equal(buf[0], 'z');
    /* never cut inside a character: U+4E2D is 3 bytes */
    pgw_copy_str(buf, sizeof(buf), "abcde\xe4\xb8\xad");
    assert_string_equal(buf, "abcde");
    pgw_copy_str(buf, sizeof(buf), "abcd\xe4\xb8\xadz");
    assert_string_equal(buf, "abcd\xe4\xb8\xad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_i64),
        cmocka_unit_test(test_copy_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
