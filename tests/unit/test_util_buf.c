/* Tests of util/buf: the growable buffer with a sticky failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "util/buf.h"

static void test_appends_and_grows(void **state)
{
    struct pgw_buf b = PGW_BUF_INIT;
    char chunk[100];

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    pgw_buf_str(&b, "");
    assert_non_null(b.p); /* an empty string still gives "" */
    assert_string_equal(b.p, "");
    pgw_buf_str(&b, "ab");
    pgw_buf_add(&b, "cde", 2);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.p, "abcd");
    for (int i = 0; i < 100; i++)
        pgw_buf_add(&b, chunk, sizeof(chunk));
    assert_false(b.oom);
    assert_int_equal(b.len, 4 + 100 * sizeof(chunk));
    assert_int_equal(b.p[b.len], '\0');
    assert_true(b.cap > b.len);
    pgw_buf_release(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

static void test_failure_is_sticky(void **state)
{
    struct pgw_buf b = PGW_BUF_INIT;

    (void)state;
    pgw_buf_str(&b, "kept");
    /* more than can ever be had */
    assert_false(pgw_buf_reserve(&b, (size_t)-1 / 2));
    assert_true(b.oom);
    pgw_buf_str(&b, "dropped");
    assert_string_equal(b.p, "kept");
    assert_false(pgw_buf_reserve(&b, 1));
    pgw_buf_release(&b);
    assert_false(b.oom);
}

static void test_reset_keeps_the_memory(void **state)
{
    struct pgw_buf b = PGW_BUF_INIT;
    char *p;

    (void)state;
    pgw_buf_reset(&b); /* nothing allocated yet */
    assert_null(b.p);
    pgw_buf_str(&b, "kept");
    p = b.p;
    assert_false(pgw_buf_reserve(&b, (size_t)-1 / 2));
    pgw_buf_reset(&b);
    assert_false(b.oom);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.p, p);
    assert_string_equal(b.p, "");
    pgw_buf_str(&b, "again");
    assert_string_equal(b.p, "again");
    pgw_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_and_grows),
        cmocka_unit_test(test_failure_is_sticky),
        cmocka_unit_test(test_reset_keeps_the_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
