/* The Postgres text-array codec: element writers, the parser of the
 * server's output, and the round trip between them. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"
#include "pushgw.h"

/* Parses |in| into at most |max| items; returns what pgw_pgarray_parse()
 * returns, the items joined with '|' in |joined|. */
static int parse_joined(const char *in, size_t max, char *joined, size_t size)
{
    char *out = malloc(strlen(in) + 1);
    const char *items[16];
    size_t n = 99, len = 0;
    int rc;

    assert_non_null(out);
    assert_true(max <= 16);
    rc = pgw_pgarray_parse(in, out, items, max, &n);
    joined[0] = '\0';
    if (rc == 0) {
        assert_true(n <= max);
        for (size_t i = 0; i < n; i++)
            len += (size_t)snprintf(joined + len, size - len, "%s%s",
                                    i ? "|" : "", items[i]);
    } else {
        assert_int_equal(n, 99); /* written only on success */
    }
    free(out);
    return rc;
}

static void test_parse(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *items;
    } cases[] = {
        {"{}", 0, ""},
        {"{a}", 0, "a"},
        {"{a,b,c}", 0, "a|b|c"},
        {"{\"a b\",\"c,d\"}", 0, "a b|c,d"},
        {"{\"say \\\"hi\\\"\",\"back\\\\slash\"}", 0, "say \"hi\"|back\\slash"},
        {"{NULL,a,null}", 0, "a"}, /* NULL elements left out */
        {"{\"NULL\"}", 0, "NULL"}, /* a quoted NULL is text */
        {"{\"\"}", 0, ""},         /* one empty string */
        {"[0:1]={x,y}", 0, "x|y"}, /* dimension decoration */
        {"{\"Jérôme\",\"名字\"}", 0, "Jérôme|名字"},
        {"", PGW_ERR_INVAL, ""},
        {"a,b", PGW_ERR_INVAL, ""},
        {"{a,b", PGW_ERR_INVAL, ""},     /* no closing brace */
        {"{\"a}", PGW_ERR_INVAL, ""},    /* unterminated quote */
        {"{\"a\"b}", PGW_ERR_INVAL, ""}, /* text after a quote */
        {"[0:1]{x}", PGW_ERR_INVAL, ""}, /* decoration without '=' */
        {"{", PGW_ERR_INVAL, ""},
    };
    char joined[256];

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        int rc = parse_joined(cases[i].in, 16, joined, sizeof(joined));

        if (rc != cases[i].rc || strcmp(joined, cases[i].items) != 0)
            fail_msg("case %zu '%s': rc %d items '%s'", i, cases[i].in, rc,
                     joined);
    }
}

static void test_parse_item_bound(void **state)
{
    char joined[64];

    (void)state;
    assert_int_equal(parse_joined("{a,b,c}", 3, joined, sizeof(joined)), 0);
    assert_int_equal(parse_joined("{a,b,c}", 2, joined, sizeof(joined)),
                     PGW_ERR_INVAL);
    /* NULL elements take no item */
    assert_int_equal(parse_joined("{a,NULL,b}", 2, joined, sizeof(joined)), 0);
    assert_string_equal(joined, "a|b");
}

static void test_write(void **state)
{
    struct pgw_buf b = {0};

    (void)state;
    pgw_buf_add(&b, "{", 1);
    pgw_pgarray_put_sep(&b, 1);
    pgw_pgarray_put_str(&b, "plain");
    pgw_pgarray_put_sep(&b, 1);
    pgw_pgarray_put_str(&b, "q\"uo\\te");
    pgw_pgarray_put_sep(&b, 1);
    pgw_pgarray_put_str(&b, NULL);
    pgw_pgarray_put_sep(&b, 1);
    pgw_pgarray_put_text(&b, "NULL,}{", 7);
    pgw_pgarray_put_sep(&b, 1);
    pgw_pgarray_put_int(&b, -9223372036854775807LL - 1);
    pgw_buf_add(&b, "}", 1);
    assert_false(b.oom);
    assert_string_equal(b.p, "{\"plain\",\"q\\\"uo\\\\te\",NULL,\"NULL,}{\","
                             "-9223372036854775808}");
    assert_int_equal(b.len, strlen(b.p));
    /* reset keeps the memory; the separator is per fragment */
    pgw_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    pgw_pgarray_put_sep(&b, 0);
    assert_int_equal(b.len, 0);
    pgw_pgarray_put_int(&b, 7);
    pgw_pgarray_put_sep(&b, 0);
    pgw_pgarray_put_int(&b, 8);
    assert_string_equal(b.p, "7,8");
    /* every digit count and sign agrees with printf's */
    {
        const long long vs[] = {0,
                                -1,
                                9,
                                10,
                                -10,
                                99,
                                100,
                                1234567890,
                                -1001,
                                9223372036854775807LL,
                                1000000000000000000LL};
        char want[32];

        for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
            pgw_buf_reset(&b);
            pgw_pgarray_put_int(&b, vs[i]);
            snprintf(want, sizeof(want), "%lld", vs[i]);
            assert_string_equal(b.p, want);
            assert_int_equal(b.len, strlen(want));
        }
    }
    pgw_buf_release(&b);
    assert_null(b.p);
    pgw_buf_release(&b); /* twice: nothing to free */
}

/* What the writer writes, the parser reads back, whatever the content. */
static void test_round_trip(void **state)
{
    static const char *const values[] = {
        "",     " ",      "a b",       ",",      "{",
        "}",    "\"",     "\\",        "\\\"",   "NULL",
        "null", "x,y}{z", "tab\there", "Jérôme", "\"\"\\\\",
    };
    struct pgw_buf b = {0};
    const char *items[16];
    char *out;
    size_t n = 0;

    (void)state;
    pgw_buf_add(&b, "{", 1);
    for (size_t i = 0; i < PGW_ARRAY_SIZE(values); i++) {
        pgw_pgarray_put_sep(&b, 1);
        pgw_pgarray_put_str(&b, values[i]);
    }
    pgw_buf_add(&b, "}", 1);
    assert_false(b.oom);
    out = malloc(b.len + 1);
    assert_non_null(out);
    assert_int_equal(
        pgw_pgarray_parse(b.p, out, items, PGW_ARRAY_SIZE(items), &n), 0);
    assert_int_equal(n, PGW_ARRAY_SIZE(values));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(items[i], values[i]);
    free(out);
    pgw_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_item_bound),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
