/* Tests of util/json: the checked reader, the typed getters and the
 * escaped length and shortening of strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pushgw.h"
#include "util/json.h"
#include "util/utf8.h"

static void test_parse_limits(void **state)
{
    struct pgw_json_limits lim = {4, 3, 5};
    cJSON *j = NULL;
    size_t off = 0;
    const char *why = NULL;

    (void)state;
    assert_int_equal(pgw_json_parse("[1,2,3]", 7, &lim, &j, NULL, NULL), 0);
    cJSON_Delete(j);
    j = NULL;
    assert_int_equal(pgw_json_parse("[1,2,3,4]", 9, &lim, &j, &off, &why),
                     PGW_ERR_INVAL);
    assert_string_equal(why, "array too large");
    assert_int_equal(off, 6);
    assert_int_equal(pgw_json_parse("[[],[],[]]", 10, &lim, &j, NULL, NULL), 0);
    cJSON_Delete(j);
    j = NULL;
    assert_int_equal(pgw_json_parse("[\"abcdef\"]", 10, &lim, &j, &off, &why),
                     PGW_ERR_INVAL);
    assert_string_equal(why, "string too long");
    assert_int_equal(pgw_json_parse("[[[[[1]]]]]", 11, &lim, &j, &off, &why),
                     PGW_ERR_INVAL);
    assert_string_equal(why, "nested too deeply");
    assert_int_equal(off, 4);
    /* Brackets inside strings are not nesting. */
    assert_int_equal(pgw_json_parse("[\"[[[[[\"]", 9, &lim, &j, NULL, NULL), 0);
    cJSON_Delete(j);
    j = NULL;
    /* Not NUL-terminated input is read only to |len|. */
    assert_int_equal(pgw_json_parse("[1]]]]", 3, &lim, &j, NULL, NULL), 0);
    cJSON_Delete(j);
    j = NULL;
    assert_int_equal(pgw_json_parse("", 0, &lim, &j, NULL, NULL),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_json_parse("{\"a\":1} {}", 10, &lim, &j, &off, &why),
                     PGW_ERR_INVAL);
    assert_int_equal(off, 8);
}

static void test_parse_text_checks(void **state)
{
    static const struct {
        const char *text;
        size_t len;
        const char *why;
    } cases[] = {
        {"\"\xc3\x28\"", 4, "invalid UTF-8"},
        {"\"a\\u0000\"", 9, "\\u0000 is not allowed"},
        {"\"a\\u00zz\"", 9, "invalid \\u escape"},
        {"\"a\tb\"", 5, "control character in string"},
        {"\"abc", 4, "unterminated string"},
        {"[1]\0", 4, "NUL byte"},
        {"{\"a\":1,}", 8, "invalid JSON"},
    };
    cJSON *j = NULL;

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        const char *why = NULL;
        size_t off = 0;
        int rc =
            pgw_json_parse(cases[i].text, cases[i].len, NULL, &j, &off, &why);
        if (rc != PGW_ERR_INVAL || !why || strcmp(why, cases[i].why) != 0)
            fail_msg("case %zu: rc %d why '%s'", i, rc, why ? why : "");
    }
    assert_int_equal(
        pgw_json_parse("\"\xe4\xb8\xad\"", 5, NULL, &j, NULL, NULL), 0);
    assert_string_equal(j->valuestring, "\xe4\xb8\xad");
    cJSON_Delete(j);
}

static cJSON *parse(const char *text)
{
    cJSON *j = NULL;

    assert_int_equal(pgw_json_parse(text, strlen(text), NULL, &j, NULL, NULL),
                     0);
    return j;
}

static void assert_error(int rc, const struct pgw_json_error *err,
                         const char *field, const char *reason)
{
    assert_int_equal(rc, PGW_ERR_INVAL);
    assert_string_equal(err->field, field);
    assert_string_equal(err->reason, reason);
}

static void test_get_string(void **state)
{
    cJSON *o = parse("{\"s\":\"abc\",\"e\":\"\",\"n\":null,\"i\":1}");
    struct pgw_json_error err;
    const char *s = "untouched";

    (void)state;
    assert_int_equal(
        pgw_json_get_string(o, "s", PGW_JSON_REQUIRED, 3, &s, &err), 1);
    assert_string_equal(s, "abc");
    s = "untouched";
    /* absent and null are the same: 0 unless required */
    assert_int_equal(pgw_json_get_string(o, "x", 0, 10, &s, &err), 0);
    assert_int_equal(pgw_json_get_string(o, "n", 0, 10, &s, &err), 0);
    assert_string_equal(s, "untouched");
    assert_error(pgw_json_get_string(o, "n", PGW_JSON_REQUIRED, 10, &s, &err),
                 &err, "n", "is required");
    assert_error(pgw_json_get_string(o, "i", 0, 10, &s, &err), &err, "i",
                 "must be a string");
    assert_error(pgw_json_get_string(o, "s", 0, 2, &s, &err), &err, "s",
                 "longer than 2 bytes");
    assert_int_equal(pgw_json_get_string(o, "e", 0, 2, &s, &err), 1);
    assert_string_equal(s, "");
    assert_error(pgw_json_get_string(o, "e", PGW_JSON_NONEMPTY, 2, &s, &err),
                 &err, "e", "must not be empty");
    /* |err| may be NULL */
    assert_int_equal(pgw_json_get_string(o, "i", 0, 10, &s, NULL),
                     PGW_ERR_INVAL);
    cJSON_Delete(o);
}

static void test_get_int(void **state)
{
    cJSON *o = parse("{\"a\":42,\"b\":1.5,\"c\":\"7\",\"d\":-1,"
                     "\"e\":9007199254740992,\"f\":1e400}");
    struct pgw_json_error err;
    int64_t v = -7;

    (void)state;
    assert_int_equal(pgw_json_get_int(o, "a", 0, 0, 100, &v, &err), 1);
    assert_int_equal(v, 42);
    v = -7;
    assert_int_equal(pgw_json_get_int(o, "x", 0, 0, 100, &v, &err), 0);
    assert_int_equal(v, -7);
    assert_error(pgw_json_get_int(o, "b", 0, 0, 100, &v, &err), &err, "b",
                 "must be an integer from 0 to 100");
    assert_error(pgw_json_get_int(o, "c", 0, 0, 100, &v, &err), &err, "c",
                 "must be an integer from 0 to 100");
    assert_error(pgw_json_get_int(o, "d", 0, 0, 100, &v, &err), &err, "d",
                 "must be an integer from 0 to 100");
    assert_error(pgw_json_get_int(o, "a", 0, 0, 41, &v, &err), &err, "a",
                 "must be an integer from 0 to 41");
    assert_int_equal(
        pgw_json_get_int(o, "e", 0, 0, 9007199254740992LL, &v, &err), 1);
    assert_int_equal(v, 9007199254740992LL);
    assert_int_equal(pgw_json_get_int(o, "f", 0, 0, 100, &v, &err),
                     PGW_ERR_INVAL);
    assert_int_equal(v, 9007199254740992LL);
    cJSON_Delete(o);
}

static void test_get_bool_object_array(void **state)
{
    cJSON *o = parse("{\"t\":true,\"f\":false,\"o\":{},\"a\":[1,2,3],"
                     "\"s\":\"x\"}");
    struct pgw_json_error err;
    const cJSON *it = NULL;
    bool b = false;

    (void)state;
    assert_int_equal(pgw_json_get_bool(o, "t", 0, &b, &err), 1);
    assert_true(b);
    assert_int_equal(pgw_json_get_bool(o, "f", 0, &b, &err), 1);
    assert_false(b);
    assert_error(pgw_json_get_bool(o, "s", 0, &b, &err), &err, "s",
                 "must be a boolean");
    assert_int_equal(pgw_json_get_object(o, "o", 0, &it, &err), 1);
    assert_true(cJSON_IsObject(it));
    assert_error(pgw_json_get_object(o, "a", 0, &it, &err), &err, "a",
                 "must be an object");
    assert_error(pgw_json_get_object(o, "x", PGW_JSON_REQUIRED, &it, &err),
                 &err, "x", "is required");
    assert_int_equal(pgw_json_get_array(o, "a", 0, 3, &it, &err), 1);
    assert_int_equal(cJSON_GetArraySize(it), 3);
    assert_error(pgw_json_get_array(o, "a", 0, 2, &it, &err), &err, "a",
                 "more than 2 items");
    assert_error(pgw_json_get_array(o, "o", 0, 2, &it, &err), &err, "o",
                 "must be an array");
    /* not an object: every member is absent */
    assert_null(pgw_json_member(it, "a"));
    cJSON_Delete(o);
}

static void test_fail(void **state)
{
    struct pgw_json_error err;
    char longname[100];

    (void)state;
    assert_int_equal(
        pgw_json_fail(&err, PGW_ERR_TOO_LARGE, "", "body %s", "too large"),
        PGW_ERR_TOO_LARGE);
    assert_string_equal(err.field, "");
    assert_string_equal(err.reason, "body too large");
    memset(longname, 'f', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    pgw_json_fail(&err, PGW_ERR_INVAL, longname, "x");
    assert_int_equal(strlen(err.field), sizeof(err.field) - 1);
    assert_int_equal(pgw_json_fail(NULL, PGW_ERR_INVAL, "a", "b"),
                     PGW_ERR_INVAL);
}

static void test_escaped_len(void **state)
{
    (void)state;
    assert_int_equal(pgw_json_escaped_len("ab", 2), 2);
    assert_int_equal(pgw_json_escaped_len("\"\\\n\t", 4), 8);
    assert_int_equal(pgw_json_escaped_len("\x01", 1), 6);
    assert_int_equal(pgw_json_escaped_len("\xe4\xb8\xad", 3), 3);
}

/* The escape writes what cJSON prints between the quotes, and as many
 * bytes as pgw_json_escaped_len() counts. */
static void test_escape_as_cjson_prints(void **state)
{
    static const char *const cases[] = {
        "plain",        "\"quoted\\",    "\b\f\n\r\t",
        "\x01\x1f\x7f", "\xe4\xb8\xad/", "",
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        const char *s = cases[i];
        size_t len = strlen(s);
        char out[64];
        cJSON *item = cJSON_CreateString(s);
        char *printed = cJSON_PrintUnformatted(item);
        size_t n = pgw_json_escape(out, s, len);

        assert_non_null(printed);
        assert_int_equal(n, pgw_json_escaped_len(s, len));
        assert_int_equal(n, strlen(printed) - 2);
        assert_memory_equal(out, printed + 1, n);
        free(printed);
        cJSON_Delete(item);
    }
}

/* Shortens |text| by |excess| and checks the printed result. */
static void check_shorten(const char *text, size_t excess, int want_rc,
                          const char *want)
{
    cJSON *s = cJSON_CreateString(text);
    size_t before;
    int rc;

    assert_non_null(s);
    before = pgw_json_escaped_len(text, strlen(text));
    rc = pgw_json_shorten(s, excess);
    assert_int_equal(rc, want_rc);
    assert_string_equal(s->valuestring, want);
    if (rc == 0) {
        size_t after =
            pgw_json_escaped_len(s->valuestring, strlen(s->valuestring));
        assert_true(after + excess <= before);
        assert_true(pgw_utf8_valid(s->valuestring, strlen(s->valuestring)));
    }
    cJSON_Delete(s);
}

static void test_shorten(void **state)
{
    (void)state;
    check_shorten("abcdefghij", 4, 0, "abc\xe2\x80\xa6");
    check_shorten("abcdefghij", 1, 0, "abcdef\xe2\x80\xa6");
    /* never inside a character: 中 is 3 bytes */
    check_shorten("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", 2, 0,
                  "\xe4\xb8\xad\xe2\x80\xa6");
    check_shorten("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", 3, 0,
                  "\xe4\xb8\xad\xe2\x80\xa6");
    check_shorten("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad", 4, 0, "\xe2\x80\xa6");
    /* escapes count as printed: "\n" is 2 bytes */
    check_shorten("a\n\n\nb", 4, 0, "a\xe2\x80\xa6");
    check_shorten("a\n\n\nb", 2, 0, "a\n\xe2\x80\xa6");
    check_shorten("abcd", 1, 0, "\xe2\x80\xa6");
    check_shorten("abc", 1, PGW_ERR_TOO_LARGE, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_parse_text_checks),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool_object_array),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_escaped_len),
        cmocka_unit_test(test_escape_as_cjson_prints),
        cmocka_unit_test(test_shorten),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
