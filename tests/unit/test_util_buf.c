/* Tests of util/buf: the growable buffer with a sticky failure, the
 * array growth and the hex digit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

static void test_array_grows_by_doubling(void **state)
{
    int *a = NULL, *p;
    size_t cap = 0, n;

    (void)state;
    for (n = 0; n < 20; n++) {
        p = pgw_array_grow(a, &cap, n, sizeof(*a), 4);
        assert_non_null(p);
        a = p;
        a[n] = (int)n;
        assert_true(cap > n);
    }
    assert_int_equal(cap, 32); /* 4, 8, 16, 32 */
    for (n = 0; n < 20; n++)
        assert_int_equal(a[n], (int)n);
    /* room left: the same array, the same capacity */
    assert_ptr_equal(pgw_array_grow(a, &cap, 20, sizeof(*a), 4), a);
    assert_int_equal(cap, 32);
    free(a);
}

static void test_array_too_large_is_refused(void **state)
{
    char *a = malloc(8);
    size_t cap = SIZE_MAX / 4 + 1;

    (void)state;
    assert_non_null(a);
    /* twice the capacity times the size would overflow */
    assert_null(pgw_array_grow(a, &cap, cap, 4, 8));
    assert_int_equal(cap, SIZE_MAX / 4 + 1);
    free(a);
}

static void test_hex_value(void **state)
{
    (void)state;
    assert_int_equal(pgw_hex_value('0'), 0);
    assert_int_equal(pgw_hex_value('9'), 9);
    assert_int_equal(pgw_hex_value('a'), 10);
    assert_int_equal(pgw_hex_value('F'), 15);
    assert_int_equal(pgw_hex_value('g'), -1);
    assert_int_equal(pgw_hex_value('/'), -1);
    assert_int_equal(pgw_hex_value(0xc3), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_and_grows),
        cmocka_unit_test(test_failure_is_sticky),
        cmocka_unit_test(test_reset_keeps_the_memory),
        cmocka_unit_test(test_array_grows_by_doubling),
        cmocka_unit_test(test_array_too_large_is_refused),
        cmocka_unit_test(test_hex_value),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
