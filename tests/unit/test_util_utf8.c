/* Tests of util/utf8: the strict validator and cutting on a boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pushgw.h"
#include "util/utf8.h"

static void test_valid(void **state)
{
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"abc", 3, true},
        {"a\0b", 3, true}, /* U+0000 is UTF-8; callers refuse it */
        {"\xc3\xa9", 2, true},
        {"\xe4\xb8\xad", 3, true},
        {"\xf0\x9f\x98\x80", 4, true},
        {"\xf4\x8f\xbf\xbf", 4, true},  /* U+10FFFF */
        {"\xef\xbf\xbf", 3, true},      /* U+FFFF */
        {"\xee\x80\x80", 3, true},      /* U+E000, after the surrogates */
        {"\xc0\x80", 2, false},         /* overlong NUL */
        {"\xc1\xbf", 2, false},         /* overlong */
        {"\xe0\x9f\xbf", 3, false},     /* overlong */
        {"\xf0\x8f\xbf\xbf", 4, false}, /* overlong */
        {"\xed\xa0\x80", 3, false},     /* U+D800 */
        {"\xed\xbf\xbf", 3, false},     /* U+DFFF */
        {"\xf4\x90\x80\x80", 4, false}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, false},
        {"\x80", 1, false},
        {"\xe4\xb8", 2, false}, /* truncated */
        {"ab\xe4", 3, false},   /* truncated at the end */
        {"\xc3\x28", 2, false}, /* bad continuation */
        {"\xff", 1, false},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++)
        if (pgw_utf8_valid(cases[i].s, cases[i].len) != cases[i].ok)
            fail_msg("utf8 case %zu", i);
}

static void test_seq_len(void **state)
{
    (void)state;
    assert_int_equal(pgw_utf8_seq_len("a", 1), 1);
    assert_int_equal(pgw_utf8_seq_len("\xc3\xa9x", 3), 2);
    assert_int_equal(pgw_utf8_seq_len("\xe4\xb8\xad", 3), 3);
    assert_int_equal(pgw_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
    /* |len| bounds the read: a sequence longer than what is left */
    assert_int_equal(pgw_utf8_seq_len("\xe4\xb8\xad", 2), 0);
    assert_int_equal(pgw_utf8_seq_len("\xbf", 1), 0);
}

static void test_truncate(void **state)
{
    /* "a" U+00E9 U+4E2D U+1F600 "z": bytes 0 | 1-2 | 3-5 | 6-9 | 10 */
    static const char s[] = "a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80z";
    static const struct {
        size_t max, want;
    } cases[] = {
        {100, 11}, {11, 11}, {10, 10}, {9, 6}, {8, 6}, {7, 6}, {6, 6},
        {5, 3},    {4, 3},   {3, 3},   {2, 1}, {1, 1}, {0, 0},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        size_t n = pgw_utf8_truncate(s, sizeof(s) - 1, cases[i].max);
        if (n != cases[i].want)
            fail_msg("max %zu: %zu, want %zu", cases[i].max, n, cases[i].want);
        assert_true(pgw_utf8_valid(s, n));
    }
    /* A run of continuation bytes is not valid UTF-8: cut where asked. */
    assert_int_equal(pgw_utf8_truncate("\x80\x80\x80\x80\x80", 5, 4), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_seq_len),
        cmocka_unit_test(test_truncate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
