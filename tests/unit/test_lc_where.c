/* The `where` compiler of the push API: the SQL and parameters of every
 * operator on every field, the errors, the bounds; then a property test
 * against a real Postgres (tu_db_create): thousands of random queries over
 * a fixture of installations, each answered by the database exactly as an
 * evaluator written here over the same rows says. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "testutil.h"

#include "lc_where.h"
#include "pgarray.h"
#include "store.h"
#include "util/buf.h"
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
        /* stored lowered: queried lowered, whatever the case sent */
        {"{\"installationId\":\"AB-Cd\"}",
         NULL,
         "((i.installation_id = $1::text))",
         {"ab-cd"}},
        {"{\"installationId\":{\"$in\":[\"X\\\"Y\",\"z\"]}}",
         NULL,
         "(((i.installation_id = ANY($1::text[]))))",
         {"{\"x\\\"y\",\"z\"}"}},
        /* a token is not folded: Android's are case-sensitive */
        {"{\"deviceToken\":\"AbC\"}",
         NULL,
         "((i.device_token = $1::text))",
         {"AbC"}},
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

/* ---- the property test -------------------------------------------------- */

/*
 * The fixture: rows whose fields are drawn from small pools (so random
 * queries hit some rows and miss others), NULLs included, with values
 * that are awkward in an array literal or in SQL. The evaluator below
 * reads these structs, never the database.
 */
#define FX_ROWS 400
#define FX_QUERIES 3000
#define FX_MAX_CH 5
#define FX_APP "app-where"

enum fx_field {
    FX_CHANNELS,
    FX_DEVICE_TYPE,
    FX_INSTALLATION_ID,
    FX_OBJECT_ID,
    FX_DEVICE_TOKEN,
    FX_DEVICE_PROFILE,
    FX_APNS_TEAM_ID,
    FX_TIME_ZONE,
    FX_N_FIELDS
};

static const char *const fx_names[FX_N_FIELDS] = {
    "channels",    "deviceType",    "installationId", "objectId",
    "deviceToken", "deviceProfile", "apnsTeamId",     "timeZone"};

static const char *const pool_channels[] = {
    "c0", "c1", "c2", "c3", "a,b", "NULL", "q\"\\", "{x}", "\xc3\xa9", " s "};
static const char *const pool_type[] = {"ios", "android"};
/* stored as the installation API stores them (lowered); queried as an
 * SDK may print them */
static const char *const pool_iid[] = {"i0", "i1", "i2"};
static const char *const pool_iid_query[] = {"i0", "i1", "i2", "I0", "I1"};
static const char *const pool_profile[] = {"p0", "p1", "p'2"};
static const char *const pool_team[] = {"TEAM1", "TEAM2"};
static const char *const pool_tz[] = {"UTC", "Asia/Shanghai", "Europe/Paris"};

struct fx_row {
    long long id;
    const char *ch[FX_MAX_CH]; /* NULL: a NULL element */
    int n_ch;
    char token[16], object_id[16];
    const char *f[FX_N_FIELDS]; /* scalar fields; NULL: SQL NULL */
};

struct prop {
    char *db;
    PGconn *pg;
    struct fx_row rows[FX_ROWS];
    uint64_t rng;
};

static uint64_t rnd(struct prop *p)
{
    /* xorshift64*: the same sequence on every libc */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 2685821657736338717ULL;
}

static int rn(struct prop *p, int n)
{
    return (int)(rnd(p) % (uint64_t)n);
}

#define PICK(p, pool) ((pool)[rn(p, (int)PGW_ARRAY_SIZE(pool))])

static void make_rows(struct prop *p)
{
    for (int r = 0; r < FX_ROWS; r++) {
        struct fx_row *row = &p->rows[r];

        memset(row, 0, sizeof(*row));
        /* a third without channels; a few with a NULL element (plain SQL
         * can store one) */
        row->n_ch = rn(p, 3) == 0 ? 0 : 1 + rn(p, FX_MAX_CH);
        for (int k = 0; k < row->n_ch; k++)
            row->ch[k] = rn(p, 40) == 0 ? NULL : PICK(p, pool_channels);
        snprintf(row->token, sizeof(row->token), "t%d", r);
        snprintf(row->object_id, sizeof(row->object_id), "o%d", r);
        row->f[FX_DEVICE_TYPE] = PICK(p, pool_type);
        row->f[FX_DEVICE_TOKEN] = row->token;
        row->f[FX_INSTALLATION_ID] = rn(p, 3) == 0 ? NULL : PICK(p, pool_iid);
        row->f[FX_OBJECT_ID] = rn(p, 5) == 0 ? NULL : row->object_id;
        row->f[FX_DEVICE_PROFILE] = rn(p, 5) < 2 ? NULL : PICK(p, pool_profile);
        row->f[FX_APNS_TEAM_ID] = rn(p, 2) ? NULL : PICK(p, pool_team);
        row->f[FX_TIME_ZONE] = rn(p, 3) == 0 ? NULL : PICK(p, pool_tz);
    }
}

static void insert_rows(struct prop *p)
{
    static const char sql[] =
        "INSERT INTO installations (app_id, device_type, device_token, "
        "channels, installation_id, object_id, device_profile, apns_team_id, "
        "time_zone) VALUES ($1, $2, $3, $4::text[], $5, $6, $7, $8, $9) "
        "RETURNING id";
    struct pgw_buf arr = {0};

    for (int r = 0; r < FX_ROWS + 20; r++) {
        /* the last 20 rows belong to another app: never in an answer */
        struct fx_row *row = &p->rows[r % FX_ROWS];
        char token[32];
        const char *v[9];
        PGresult *res;

        pgw_buf_reset(&arr);
        pgw_buf_add(&arr, "{", 1);
        for (int k = 0; k < row->n_ch; k++) {
            pgw_pgarray_put_sep(&arr, 1);
            pgw_pgarray_put_str(&arr, row->ch[k]);
        }
        pgw_buf_add(&arr, "}", 1);
        assert_false(arr.oom);
        snprintf(token, sizeof(token), "other-%d", r);
        v[0] = r < FX_ROWS ? FX_APP : "app-other";
        v[1] = row->f[FX_DEVICE_TYPE];
        v[2] = r < FX_ROWS ? row->token : token;
        v[3] = arr.p;
        v[4] = row->f[FX_INSTALLATION_ID];
        v[5] = row->f[FX_OBJECT_ID];
        v[6] = row->f[FX_DEVICE_PROFILE];
        v[7] = row->f[FX_APNS_TEAM_ID];
        v[8] = row->f[FX_TIME_ZONE];
        res = PQexecParams(p->pg, sql, 9, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            fail_msg("insert: %s", PQerrorMessage(p->pg));
        if (r < FX_ROWS)
            row->id = atoll(PQgetvalue(res, 0, 0));
        PQclear(res);
    }
    pgw_buf_release(&arr);
}

static int prop_setup(void **state)
{
    struct prop *p = calloc(1, sizeof(*p));
    struct pgw_diag diag;
    FILE *out = fopen("/dev/null", "w");
    const char *seed = getenv("PUSHGW_WHERE_SEED");

    assert_non_null(p);
    p->db = tu_db_create("pgw_where");
    pgw_diag_init(&diag);
    assert_int_equal(
        pgw_store_migrate(p->db, PUSHGW_SOURCE_DIR "/migrations", out, &diag),
        0);
    pgw_diag_release(&diag);
    fclose(out);
    p->pg = PQconnectdb(p->db);
    assert_int_equal(PQstatus(p->pg), CONNECTION_OK);
    p->rng = seed ? strtoull(seed, NULL, 0) : 0x5eed1e55ULL;
    if (!p->rng)
        p->rng = 1;
    printf("# PUSHGW_WHERE_SEED=%llu\n", (unsigned long long)p->rng);
    make_rows(p);
    insert_rows(p);
    *state = p;
    return 0;
}

static int prop_teardown(void **state)
{
    struct prop *p = *state;

    if (!p)
        return 0;
    PQfinish(p->pg);
    tu_db_drop(p->db);
    free(p->db);
    free(p);
    return 0;
}

/* ---- the evaluator: the semantics of lc_where.h, on the structs ---- */

static bool has_channel(const struct fx_row *row, const char *c)
{
    for (int k = 0; k < row->n_ch; k++)
        if (row->ch[k] && strcmp(row->ch[k], c) == 0)
            return true;
    return false;
}

/* Whether a row's |stored| value equals the query's |q|: installationId
 * is compared with the query's value in lower case. */
static bool same(enum fx_field f, const char *stored, const char *q)
{
    if (!stored)
        return false;
    if (f != FX_INSTALLATION_ID)
        return strcmp(stored, q) == 0;
    for (; *q; q++, stored++)
        if (*stored != (char)tolower((unsigned char)*q))
            return false;
    return *stored == '\0';
}

static bool in_list(enum fx_field f, const cJSON *list, const char *s)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, list)
    {
        if (same(f, s, it->valuestring))
            return true;
    }
    return false;
}

static bool eval_op(const struct fx_row *row, enum fx_field f, const char *op,
                    const cJSON *v)
{
    const cJSON *it;
    const char *val = row->f[f];

    if (f == FX_CHANNELS) {
        if (strcmp(op, "$exists") == 0)
            return (row->n_ch > 0) == cJSON_IsTrue(v);
        if (strcmp(op, "$ne") == 0)
            return !has_channel(row, v->valuestring);
        if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
            bool any = false;
            cJSON_ArrayForEach(it, v) any |= has_channel(row, it->valuestring);
            return op[1] == 'i' ? any : !any;
        }
        if (strcmp(op, "$all") == 0) {
            if (!v->child)
                return false;
            cJSON_ArrayForEach(it, v)
            {
                if (!has_channel(row, it->valuestring))
                    return false;
            }
            return true;
        }
        fail_msg("evaluator: operator %s", op);
    }
    if (strcmp(op, "$exists") == 0)
        return (val != NULL) == cJSON_IsTrue(v);
    if (strcmp(op, "$ne") == 0)
        return !same(f, val, v->valuestring);
    if (strcmp(op, "$in") == 0)
        return in_list(f, v, val);
    if (strcmp(op, "$nin") == 0)
        return !in_list(f, v, val);
    if (strcmp(op, "$all") == 0) {
        if (!v->child || !val)
            return false;
        cJSON_ArrayForEach(it, v)
        {
            if (!same(f, val, it->valuestring))
                return false;
        }
        return true;
    }
    fail_msg("evaluator: operator %s", op);
    return false;
}

static bool eval_query(const struct fx_row *row, const cJSON *q);

static bool eval_member(const struct fx_row *row, const cJSON *m)
{
    const cJSON *it;

    if (strcmp(m->string, "$and") == 0) {
        cJSON_ArrayForEach(it, m)
        {
            if (!eval_query(row, it))
                return false;
        }
        return true;
    }
    if (strcmp(m->string, "$or") == 0) {
        cJSON_ArrayForEach(it, m)
        {
            if (eval_query(row, it))
                return true;
        }
        return false;
    }
    for (int f = 0; f < FX_N_FIELDS; f++) {
        if (strcmp(m->string, fx_names[f]) != 0)
            continue;
        if (cJSON_IsString(m)) {
            if (f == FX_CHANNELS)
                return has_channel(row, m->valuestring);
            return same((enum fx_field)f, row->f[f], m->valuestring);
        }
        cJSON_ArrayForEach(it, m)
        {
            if (!eval_op(row, (enum fx_field)f, it->string, it))
                return false;
        }
        return true;
    }
    fail_msg("evaluator: field %s", m->string);
    return false;
}

static bool eval_query(const struct fx_row *row, const cJSON *q)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, q)
    {
        if (!eval_member(row, m))
            return false;
    }
    return true;
}

/* ---- random queries ---------------------------------------------------- */

/* A value of field |f|: mostly one the fixture holds, sometimes none. */
static const char *gen_value(struct prop *p, enum fx_field f, char *buf,
                             size_t size)
{
    if (rn(p, 10) == 0)
        return "zz";
    switch (f) {
    case FX_CHANNELS:
        return PICK(p, pool_channels);
    case FX_DEVICE_TYPE:
        return PICK(p, pool_type);
    case FX_INSTALLATION_ID:
        return PICK(p, pool_iid_query);
    case FX_OBJECT_ID:
        snprintf(buf, size, "o%d", rn(p, FX_ROWS));
        return buf;
    case FX_DEVICE_TOKEN:
        snprintf(buf, size, "t%d", rn(p, FX_ROWS));
        return buf;
    case FX_DEVICE_PROFILE:
        return PICK(p, pool_profile);
    case FX_APNS_TEAM_ID:
        return PICK(p, pool_team);
    default:
        return PICK(p, pool_tz);
    }
}

static cJSON *gen_list(struct prop *p, enum fx_field f)
{
    cJSON *a = cJSON_CreateArray();
    int n = rn(p, 6) == 0 ? 0 : 1 + rn(p, 3);
    char buf[16];

    /* $all on a scalar with one value twice can match: sometimes repeat */
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(
            a, cJSON_CreateString(i && rn(p, 4) == 0
                                      ? cJSON_GetArrayItem(a, 0)->valuestring
                                      : gen_value(p, f, buf, sizeof(buf))));
    return a;
}

static cJSON *gen_query(struct prop *p, int depth)
{
    static const char *const ops[] = {"$in", "$nin", "$all", "$ne", "$exists"};
    cJSON *q = cJSON_CreateObject();
    int members = rn(p, 8) == 0 ? 0 : 1 + rn(p, 2);

    for (int i = 0; i < members; i++) {
        if (depth < 3 && rn(p, 4) == 0) {
            cJSON *a = cJSON_CreateArray();
            int n = 1 + rn(p, 3);
            for (int k = 0; k < n; k++)
                cJSON_AddItemToArray(a, gen_query(p, depth + 1));
            cJSON_AddItemToObject(q, rn(p, 2) ? "$or" : "$and", a);
        } else {
            enum fx_field f = (enum fx_field)rn(p, FX_N_FIELDS);
            char buf[16];

            if (f != FX_CHANNELS && f != FX_DEVICE_TYPE && rn(p, 2))
                f = FX_CHANNELS; /* the field that matters most */
            if (rn(p, 3) == 0) {
                cJSON_AddItemToObject(
                    q, fx_names[f],
                    cJSON_CreateString(gen_value(p, f, buf, sizeof(buf))));
            } else {
                cJSON *o = cJSON_CreateObject();
                int n = 1 + rn(p, 2);
                for (int k = 0; k < n; k++) {
                    const char *op = PICK(p, ops);
                    cJSON *v;
                    if (strcmp(op, "$ne") == 0)
                        v = cJSON_CreateString(
                            gen_value(p, f, buf, sizeof(buf)));
                    else if (strcmp(op, "$exists") == 0)
                        v = cJSON_CreateBool(rn(p, 2));
                    else
                        v = gen_list(p, f);
                    cJSON_AddItemToObject(o, op, v);
                }
                cJSON_AddItemToObject(q, fx_names[f], o);
            }
        }
    }
    return q;
}

/* Runs one compiled query; |ret_match| gets one flag per fixture row. */
static void run_query(struct prop *p, const struct pgw_where *w,
                      bool *ret_match, const char *shown)
{
    struct pgw_buf sql = PGW_BUF_INIT;
    const char *v[1 + PGW_WHERE_MAX_PARAMS];
    PGresult *res;
    int r = 0;

    pgw_buf_str(&sql, "SELECT i.id FROM installations i WHERE i.app_id = $1 "
                      "AND (");
    pgw_buf_str(&sql, w->sql);
    pgw_buf_str(&sql, ") ORDER BY i.id");
    assert_false(sql.oom);
    v[0] = FX_APP;
    for (size_t k = 0; k < w->n_params; k++)
        v[1 + k] = w->params[k];
    res = PQexecParams(p->pg, sql.p, 1 + (int)w->n_params, NULL, v, NULL, NULL,
                       0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("SQL error for %s: %s\n%s", shown, PQerrorMessage(p->pg),
                 sql.p);
    memset(ret_match, 0, FX_ROWS * sizeof(*ret_match));
    for (int t = 0; t < PQntuples(res); t++) {
        long long id = atoll(PQgetvalue(res, t, 0));
        while (r < FX_ROWS && p->rows[r].id != id)
            r++; /* ids ascend with the rows, as inserted */
        if (r == FX_ROWS)
            fail_msg("%s: row %lld is not of the app", shown, id);
        ret_match[r] = true;
    }
    PQclear(res);
    pgw_buf_release(&sql);
}

static void test_random_queries_match_the_evaluator(void **state)
{
    struct prop *p = *state;
    static bool got[FX_ROWS];
    int some = 0, none = 0, all = 0;

    for (int n = 0; n < FX_QUERIES; n++) {
        cJSON *q = gen_query(p, 0), *channels = NULL;
        struct pgw_where w;
        struct pgw_lc_error err;
        char *shown;
        int matched = 0;

        if (rn(p, 5) == 0)
            channels = gen_list(p, FX_CHANNELS);
        shown = cJSON_PrintUnformatted(q);
        if (pgw_where_compile(q, channels, 2, &w, &err) != 0)
            fail_msg("query %d %s: %s", n, shown, err.error);
        run_query(p, &w, got, shown);
        for (int r = 0; r < FX_ROWS; r++) {
            bool want = eval_query(&p->rows[r], q);
            if (want && channels) {
                const cJSON *it;
                bool any = false;
                cJSON_ArrayForEach(it, channels) any |=
                    has_channel(&p->rows[r], it->valuestring);
                want = any;
            }
            if (got[r] != want) {
                char *ch = channels ? cJSON_PrintUnformatted(channels) : NULL;
                fail_msg("query %d %s channels %s: row %d (%s) %s\nSQL %s", n,
                         shown, ch ? ch : "-", r, p->rows[r].token,
                         got[r] ? "matched, the evaluator says no (WIDER)"
                                : "missed, the evaluator says yes",
                         w.sql);
            }
            matched += want;
        }
        if (matched == 0)
            none++;
        else if (matched == FX_ROWS)
            all++;
        else
            some++;
        pgw_where_release(&w);
        free(shown);
        cJSON_Delete(q);
        cJSON_Delete(channels);
    }
    printf("# %d queries: %d matched some rows, %d none, %d all\n", FX_QUERIES,
           some, none, all);
    /* the generator must exercise partial audiences, not only trivia */
    assert_true(some > FX_QUERIES / 3);
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
    const struct CMUnitTest db_tests[] = {
        cmocka_unit_test_setup_teardown(test_random_queries_match_the_evaluator,
                                        prop_setup, prop_teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    return failed + cmocka_run_group_tests(db_tests, NULL, NULL);
}
