/* The `where` compiler of the push API: the SQL and parameters of every
 * operator on every field, the errors, the bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "lc_where.h"
#include "util/json.h"

static cJSON *parse(const char *json)
{
    cJSON *v = NULL;

    if (!json)
        return NULL;
    assert_int_equal(pgw_json_parse(json, strlen(json), NULL, &v, NULL, NULL),
                     0);
    return v;
}

/* Compiles |where| and |channels| (JSON texts, NULL: absent). */
static int compile(const char *where, const char *channels, int first,
                   struct pgw_where *w, struct pgw_lc_error *err)
{
    cJSON *wj = parse(where), *cj = parse(channels);
    int rc;

    memset(err, 0, sizeof(*err));
    rc = pgw_where_compile(wj, cj, first, w, err);
    cJSON_Delete(wj);
    cJSON_Delete(cj);
    return rc;
}

/* One compiled query: its SQL and up to 4 parameters. */
struct ok_case {
    const char *where, *channels;
    const char *sql;
    const char *params[4];
};

static void check_ok(const struct ok_case *cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct pgw_where w;
        struct pgw_lc_error err;
        size_t np = 0;

        if (compile(cs[i].where, cs[i].channels, 1, &w, &err) != 0)
            fail_msg("%s: %s", cs[i].where ? cs[i].where : cs[i].channels,
                     err.error);
        assert_string_equal(w.sql, cs[i].sql);
        while (np < 4 && cs[i].params[np])
            np++;
        assert_int_equal(w.n_params, np);
        for (size_t k = 0; k < np; k++)
            assert_string_equal(w.params[k], cs[i].params[k]);
        pgw_where_release(&w);
    }
}

static void test_absent_and_empty(void **state)
{
    static const struct ok_case cs[] = {
        {NULL, NULL, "true", {NULL}},
        {"{}", NULL, "true", {NULL}},
        {"{\"$and\":[{}]}", NULL, "((true))", {NULL}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

static void test_channels_operators(void **state)
{
    static const struct ok_case cs[] = {
        {"{\"channels\":\"a\"}",
         NULL,
         "((i.channels @> $1::text[]))",
         {"{\"a\"}"}},
        {"{\"channels\":{\"$in\":[\"a\",\"b\"]}}",
         NULL,
         "(((i.channels && $1::text[])))",
         {"{\"a\",\"b\"}"}},
        {"{\"channels\":{\"$nin\":[\"a\"]}}",
         NULL,
         "(((NOT (i.channels && $1::text[]))))",
         {"{\"a\"}"}},
        {"{\"channels\":{\"$all\":[\"a\",\"b\"]}}",
         NULL,
         "(((i.channels @> $1::text[])))",
         {"{\"a\",\"b\"}"}},
        {"{\"channels\":{\"$ne\":\"a\"}}",
         NULL,
         "(((NOT (i.channels @> $1::text[]))))",
         {"{\"a\"}"}},
        {"{\"channels\":{\"$exists\":true}}",
         NULL,
         "(((cardinality(i.channels) > 0)))",
         {NULL}},
        {"{\"channels\":{\"$exists\":false}}",
         NULL,
         "(((cardinality(i.channels) = 0)))",
         {NULL}},
        /* empty lists: $in nothing (by SQL), $nin everything, $all nothing */
        {"{\"channels\":{\"$in\":[]}}",
         NULL,
         "(((i.channels && $1::text[])))",
         {"{}"}},
        {"{\"channels\":{\"$nin\":[]}}",
         NULL,
         "(((NOT (i.channels && $1::text[]))))",
         {"{}"}},
        {"{\"channels\":{\"$all\":[]}}", NULL, "((false))", {NULL}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

static void test_scalar_operators(void **state)
{
    static const struct ok_case cs[] = {
        {"{\"deviceType\":\"ios\"}",
         NULL,
         "((i.device_type = $1::text))",
         {"ios"}},
        {"{\"deviceType\":{\"$in\":[\"ios\",\"android\"]}}",
         NULL,
         "(((i.device_type = ANY($1::text[]))))",
         {"{\"ios\",\"android\"}"}},
        {"{\"timeZone\":{\"$nin\":[\"UTC\"]}}",
         NULL,
         "(((i.time_zone IS NULL OR i.time_zone <> ALL($1::text[]))))",
         {"{\"UTC\"}"}},
        {"{\"deviceProfile\":{\"$all\":[\"p\"]}}",
         NULL,
         "(((i.device_profile = ALL($1::text[]))))",
         {"{\"p\"}"}},
        {"{\"deviceProfile\":{\"$all\":[]}}", NULL, "((false))", {NULL}},
        {"{\"apnsTeamId\":{\"$ne\":\"T1\"}}",
         NULL,
         "(((i.apns_team_id IS DISTINCT FROM $1::text)))",
         {"T1"}},
        {"{\"installationId\":{\"$exists\":true}}",
         NULL,
         "(((i.installation_id IS NOT NULL)))",
         {NULL}},
        {"{\"objectId\":{\"$exists\":false}}",
         NULL,
         "(((i.object_id IS NULL)))",
         {NULL}},
        {"{\"deviceToken\":\"abc\"}",
         NULL,
         "((i.device_token = $1::text))",
         {"abc"}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

static void test_every_field_has_its_column(void **state)
{
    static const struct {
        const char *field, *column;
    } fs[] = {
        {"channels", "i.channels @>"},
        {"deviceType", "i.device_type ="},
        {"installationId", "i.installation_id ="},
        {"objectId", "i.object_id ="},
        {"deviceToken", "i.device_token ="},
        {"deviceProfile", "i.device_profile ="},
        {"apnsTeamId", "i.apns_team_id ="},
        {"timeZone", "i.time_zone ="},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(fs); i++) {
        char json[128];
        struct pgw_where w;
        struct pgw_lc_error err;

        snprintf(json, sizeof(json), "{\"%s\":\"v\"}", fs[i].field);
        assert_int_equal(compile(json, NULL, 1, &w, &err), 0);
        assert_non_null(strstr(w.sql, fs[i].column));
        assert_int_equal(w.n_params, 1);
        pgw_where_release(&w);
    }
}

static void test_and_or_and_several_operators(void **state)
{
    static const struct ok_case cs[] = {
        /* members of a query, operators of a field: ANDed */
        {"{\"deviceType\":\"ios\",\"channels\":\"a\"}",
         NULL,
         "((i.device_type = $1::text) AND (i.channels @> $2::text[]))",
         {"ios", "{\"a\"}"}},
        {"{\"timeZone\":{\"$exists\":true,\"$ne\":\"UTC\"}}",
         NULL,
         "(((i.time_zone IS NOT NULL) AND "
         "(i.time_zone IS DISTINCT FROM $1::text)))",
         {"UTC"}},
        {"{\"$or\":[{\"deviceType\":\"ios\"},{\"channels\":\"a\"}]}",
         NULL,
         "((((i.device_type = $1::text)) OR ((i.channels @> $2::text[]))))",
         {"ios", "{\"a\"}"}},
        {"{\"$and\":[{\"deviceType\":\"ios\"},{\"$or\":[{\"channels\":\"a\"},"
         "{\"timeZone\":\"UTC\"}]}]}",
         NULL,
         "((((i.device_type = $1::text)) AND "
         "((((i.channels @> $2::text[])) OR ((i.time_zone = $3::text))))))",
         {"ios", "{\"a\"}", "UTC"}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

static void test_request_channels(void **state)
{
    static const struct ok_case cs[] = {
        {NULL,
         "[\"a\",\"b\"]",
         "(i.channels && $1::text[])",
         {"{\"a\",\"b\"}"}},
        /* an empty list names nobody */
        {NULL, "[]", "(i.channels && $1::text[])", {"{}"}},
        {"{\"deviceType\":\"ios\"}",
         "[\"a\"]",
         "(((i.device_type = $1::text)) AND (i.channels && $2::text[]))",
         {"ios", "{\"a\"}"}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

/* Quotes, backslashes, commas, braces, the word NULL, SQL: all in the
 * parameters, none in the text. */
static void test_values_are_parameters(void **state)
{
    static const struct ok_case cs[] = {
        {"{\"deviceType\":\"x'; DROP TABLE installations; --\"}",
         NULL,
         "((i.device_type = $1::text))",
         {"x'; DROP TABLE installations; --"}},
        {"{\"channels\":{\"$in\":[\"a,b\",\"{c}\",\"NULL\",\"q\\\"\\\\\",\"\"]}"
         "}",
         NULL,
         "(((i.channels && $1::text[])))",
         {"{\"a,b\",\"{c}\",\"NULL\",\"q\\\"\\\\\",\"\"}"}},
        {"{\"channels\":\"$1\"}",
         NULL,
         "((i.channels @> $1::text[]))",
         {"{\"$1\"}"}},
    };

    (void)state;
    check_ok(cs, PGW_ARRAY_SIZE(cs));
}

static void test_placeholders_from_first(void **state)
{
    struct pgw_where w;
    struct pgw_lc_error err;

    (void)state;
    assert_int_equal(compile("{\"deviceType\":\"ios\",\"timeZone\":\"UTC\"}",
                             "[\"a\"]", 3, &w, &err),
                     0);
    assert_string_equal(w.sql, "(((i.device_type = $3::text) AND "
                               "(i.time_zone = $4::text)) AND "
                               "(i.channels && $5::text[]))");
    assert_int_equal(w.n_params, 3);
    pgw_where_release(&w);
    assert_int_equal(compile("{}", NULL, 0, &w, &err), PGW_ERR_INVAL);
    assert_null(w.sql);
    pgw_where_release(&w); /* empty: nothing to free */
}

/* One refused query: its code and the name it gives. */
struct err_case {
    const char *where, *channels;
    int code;
    const char *field;
};

static void check_errors(const struct err_case *cs, size_t n, int want_rc)
{
    for (size_t i = 0; i < n; i++) {
        struct pgw_where w;
        struct pgw_lc_error err;
        int rc = compile(cs[i].where, cs[i].channels, 1, &w, &err);

        if (rc != want_rc)
            fail_msg("%s: rc %d", cs[i].where ? cs[i].where : cs[i].channels,
                     rc);
        assert_null(w.sql);
        assert_null(w.params);
        assert_int_equal(w.n_params, 0);
        assert_int_equal(err.status, 400);
        if (err.code != cs[i].code || strcmp(err.field, cs[i].field) != 0)
            fail_msg("%s: code %d field '%s' (%s)",
                     cs[i].where ? cs[i].where : cs[i].channels, err.code,
                     err.field, err.error);
        assert_non_null(strstr(err.error, cs[i].field));
    }
}

static void test_unsupported_fields(void **state)
{
    static const struct err_case cs[] = {
        {"{\"badge\":1}", NULL, 107, "badge"},
        {"{\"badge\":{\"$gt\":1}}", NULL, 107, "badge"},
        {"{\"createdAt\":{\"$gte\":{\"__type\":\"Date\",\"iso\":\"x\"}}}", NULL,
         107, "createdAt"},
        {"{\"appVersion\":\"1.0\"}", NULL, 107, "appVersion"},
        {"{\"owner.name\":\"x\"}", NULL, 107, "owner.name"},
        {"{\"user\":{\"__type\":\"Pointer\",\"className\":\"_User\","
         "\"objectId\":\"x\"}}",
         NULL, 107, "user"},
        {"{\"deviceType\":\"ios\",\"valid\":true}", NULL, 107, "valid"},
        {"{\"$or\":[{\"deviceType\":\"ios\"},{\"vendor\":\"fcm\"}]}", NULL, 107,
         "vendor"},
        {"{\"\":\"x\"}", NULL, 107, ""},
    };

    (void)state;
    check_errors(cs, PGW_ARRAY_SIZE(cs), PGW_ERR_INVAL);
}

static void test_unsupported_operators(void **state)
{
    static const struct err_case cs[] = {
        {"{\"deviceType\":{\"$regex\":\"^i\"}}", NULL, 107, "$regex"},
        {"{\"timeZone\":{\"$gt\":\"A\"}}", NULL, 107, "$gt"},
        {"{\"channels\":{\"$size\":1}}", NULL, 107, "$size"},
        {"{\"deviceType\":{\"$eq\":\"ios\"}}", NULL, 107, "$eq"},
        {"{\"objectId\":{\"$select\":{\"query\":{},\"key\":\"x\"}}}", NULL, 107,
         "$select"},
        {"{\"objectId\":{\"$inQuery\":{\"where\":{}}}}", NULL, 107, "$inQuery"},
        {"{\"$relatedTo\":{\"object\":{},\"key\":\"x\"}}", NULL, 107,
         "$relatedTo"},
        {"{\"$nor\":[{\"deviceType\":\"ios\"}]}", NULL, 107, "$nor"},
        {"{\"$where\":\"true\"}", NULL, 107, "$where"},
        {"{\"deviceType\":{\"$in\":[\"ios\"],\"$options\":\"i\"}}", NULL, 107,
         "$options"},
    };

    (void)state;
    check_errors(cs, PGW_ARRAY_SIZE(cs), PGW_ERR_INVAL);
}

static void test_wrong_types(void **state)
{
    static const struct err_case cs[] = {
        {"[]", NULL, 111, "where"},
        {"\"deviceType\"", NULL, 111, "where"},
        {"null", NULL, 111, "where"},
        {"{\"deviceType\":1}", NULL, 111, "deviceType"},
        {"{\"deviceType\":true}", NULL, 111, "deviceType"},
        {"{\"deviceType\":null}", NULL, 111, "deviceType"},
        {"{\"channels\":[\"a\"]}", NULL, 111, "channels"},
        {"{\"deviceType\":{}}", NULL, 111, "deviceType"},
        {"{\"deviceType\":{\"$in\":\"ios\"}}", NULL, 111, "deviceType"},
        {"{\"deviceType\":{\"$in\":[\"ios\",1]}}", NULL, 111, "deviceType"},
        {"{\"deviceType\":{\"$in\":[null]}}", NULL, 111, "deviceType"},
        {"{\"channels\":{\"$nin\":{\"a\":1}}}", NULL, 111, "channels"},
        {"{\"channels\":{\"$all\":[[\"a\"]]}}", NULL, 111, "channels"},
        {"{\"timeZone\":{\"$ne\":null}}", NULL, 111, "timeZone"},
        {"{\"timeZone\":{\"$ne\":[\"a\"]}}", NULL, 111, "timeZone"},
        {"{\"timeZone\":{\"$exists\":1}}", NULL, 111, "timeZone"},
        {"{\"timeZone\":{\"$exists\":\"true\"}}", NULL, 111, "timeZone"},
        {"{\"$or\":[]}", NULL, 111, "$or"},
        {"{\"$and\":{\"deviceType\":\"ios\"}}", NULL, 111, "$and"},
        {"{\"$or\":[\"deviceType\"]}", NULL, 111, "$and/$or item"},
        {"{\"$or\":[{\"deviceType\":\"ios\"},null]}", NULL, 111,
         "$and/$or item"},
        {NULL, "\"a\"", 111, "channels"},
        {NULL, "[\"a\",2]", 111, "channels"},
        {NULL, "null", 111, "channels"},
        {"{}", "{\"$in\":[\"a\"]}", 111, "channels"},
    };

    (void)state;
    check_errors(cs, PGW_ARRAY_SIZE(cs), PGW_ERR_INVAL);
}

/* A string that is not UTF-8 (cJSON alone takes it) is refused, not sent
 * to a server that would answer a SQL error. */
static void test_invalid_utf8(void **state)
{
    struct pgw_where w;
    struct pgw_lc_error err;
    cJSON *q = cJSON_CreateObject();

    (void)state;
    cJSON_AddStringToObject(q, "deviceType", "\xff\xfe");
    assert_int_equal(pgw_where_compile(q, NULL, 1, &w, &err), PGW_ERR_INVAL);
    assert_int_equal(err.code, 111);
    assert_null(w.sql);
    cJSON_Delete(q);
    /* an unknown field's name is shown only when it is UTF-8 */
    q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "\xc3(", "x");
    assert_int_equal(pgw_where_compile(q, NULL, 1, &w, &err), PGW_ERR_INVAL);
    assert_int_equal(err.code, 107);
    assert_string_equal(err.field, "?");
    cJSON_Delete(q);
}

/* {"$or":[{"$or":[…{"deviceType":"ios"}…]}]} nested |depth| deep. */
static char *nested(int depth)
{
    size_t cap = (size_t)depth * 16 + 64;
    char *s = malloc(cap);
    size_t n = 0;

    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "{\"$or\":[");
    n += (size_t)snprintf(s + n, cap - n, "{\"deviceType\":\"ios\"}");
    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "]}");
    return s;
}

static void test_bounds(void **state)
{
    struct pgw_where w;
    struct pgw_lc_error err;
    char *s;
    size_t cap = 64 * 1024 * 8, n = 0;

    (void)state;
    s = nested(PGW_WHERE_MAX_DEPTH);
    assert_int_equal(compile(s, NULL, 1, &w, &err), 0);
    pgw_where_release(&w);
    free(s);
    s = nested(PGW_WHERE_MAX_DEPTH + 1);
    assert_int_equal(compile(s, NULL, 1, &w, &err), PGW_ERR_TOO_LARGE);
    assert_int_equal(err.code, 116);
    assert_null(w.sql);
    free(s);

    /* PGW_WHERE_MAX_PARAMS values, then one more */
    s = malloc(cap);
    for (int extra = 0; extra < 2; extra++) {
        n = (size_t)snprintf(s, cap, "{\"$and\":[");
        for (int i = 0; i < PGW_WHERE_MAX_PARAMS + extra; i++)
            n += (size_t)snprintf(s + n, cap - n, "%s{\"timeZone\":\"z%d\"}",
                                  i ? "," : "", i);
        snprintf(s + n, cap - n, "]}");
        assert_int_equal(compile(s, NULL, 1, &w, &err),
                         extra ? PGW_ERR_TOO_LARGE : 0);
        if (!extra)
            assert_int_equal(w.n_params, PGW_WHERE_MAX_PARAMS);
        pgw_where_release(&w);
    }
    /* conditions without values still count: the SQL text is bounded */
    n = (size_t)snprintf(s, cap, "{\"$and\":[");
    for (int i = 0; i < 4000; i++)
        n += (size_t)snprintf(s + n, cap - n,
                              "%s{\"timeZone\":{\"$exists\":%s}}", i ? "," : "",
                              i % 2 ? "true" : "false");
    snprintf(s + n, cap - n, "]}");
    assert_int_equal(compile(s, NULL, 1, &w, &err), PGW_ERR_TOO_LARGE);
    assert_int_equal(err.code, 116);
    assert_null(w.sql);
    free(s);
}

static void test_error_json(void **state)
{
    struct pgw_where w;
    struct pgw_lc_error err;
    char *json;

    (void)state;
    assert_int_equal(
        compile("{\"deviceType\":{\"$regex\":\"^i\"}}", NULL, 1, &w, &err),
        PGW_ERR_INVAL);
    json = pgw_lc_error_json(&err);
    assert_string_equal(json, "{\"code\":107,\"error\":\"where: unsupported "
                              "operator '$regex'\"}");
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent_and_empty),
        cmocka_unit_test(test_channels_operators),
        cmocka_unit_test(test_scalar_operators),
        cmocka_unit_test(test_every_field_has_its_column),
        cmocka_unit_test(test_and_or_and_several_operators),
        cmocka_unit_test(test_request_channels),
        cmocka_unit_test(test_values_are_parameters),
        cmocka_unit_test(test_placeholders_from_first),
        cmocka_unit_test(test_unsupported_fields),
        cmocka_unit_test(test_unsupported_operators),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_error_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
