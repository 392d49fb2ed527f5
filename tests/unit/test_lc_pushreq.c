/* A push-API request's body checked and made into its stored row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "lc_pushreq.h"

#define NOW 1800000000000LL /* 2027-01-15T08:00:00Z, in ms */
#define DAY_MS (86400LL * 1000)
#define WEEK_S 604800

static int parse(const char *json, const char *prod_header,
                 struct pgw_lc_pushreq *r, struct pgw_lc_error *err)
{
    cJSON *body = cJSON_Parse(json);
    int rc;

    assert_non_null(body);
    rc = pgw_lc_pushreq_parse(body, prod_header, NOW, WEEK_S, r, err);
    cJSON_Delete(body);
    return rc;
}

static void ok(const char *json, const char *prod_header,
               struct pgw_lc_pushreq *r)
{
    struct pgw_lc_error err;

    if (parse(json, prod_header, r, &err) != 0)
        fail_msg("%s: refused: %d %s", json, err.code, err.error);
}

/* The stored query: channels folded into where (migration 0009). */
static void test_query_folding(void **state)
{
    static const struct {
        const char *body, *query;
    } cases[] = {
        {"{\"data\":{\"alert\":\"x\"}}", "{}"},
        {"{\"data\":{\"alert\":\"x\"},\"channels\":[\"a\",\"b\"]}",
         "{\"channels\":{\"$in\":[\"a\",\"b\"]}}"},
        {"{\"data\":{\"alert\":\"x\"},\"channels\":[]}",
         "{\"channels\":{\"$in\":[]}}"},
        {"{\"data\":{\"alert\":\"x\"},\"where\":{\"deviceType\":\"ios\"}}",
         "{\"deviceType\":\"ios\"}"},
        {"{\"data\":{\"alert\":\"x\"},\"where\":{\"channels\":\"a\"},"
         "\"channels\":[\"b\"]}",
         "{\"$and\":[{\"channels\":\"a\"},{\"channels\":{\"$in\":[\"b\"]}}]}"},
    };
    struct pgw_lc_pushreq r;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ok(cases[i].body, NULL, &r);
        assert_string_equal(r.query, cases[i].query);
        pgw_lc_pushreq_release(&r);
    }
}

/* prod wins; else X-LC-Prod other than "1" is dev; else none. */
static void test_profile(void **state)
{
    static const struct {
        const char *body, *header, *want;
    } cases[] = {
        {"{\"data\":{\"a\":1}}", NULL, NULL},
        {"{\"data\":{\"a\":1}}", "1", NULL},
        {"{\"data\":{\"a\":1}}", "0", "dev"},
        {"{\"data\":{\"a\":1},\"prod\":\"dev\"}", NULL, "dev"},
        {"{\"data\":{\"a\":1},\"prod\":\"prod\"}", "0", "prod"},
        {"{\"data\":{\"a\":1},\"prod\":null}", "0", "dev"},
    };
    struct pgw_lc_pushreq r;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ok(cases[i].body, cases[i].header, &r);
        if (cases[i].want)
            assert_string_equal(r.profile, cases[i].want);
        else
            assert_null(r.profile);
        pgw_lc_pushreq_release(&r);
    }
}

/* push_time, expiration_time and expiration_interval into push_at and
 * expires_at. */
static void test_times(void **state)
{
    struct pgw_lc_pushreq r;
    (void)state;

    ok("{\"data\":{\"a\":1}}", NULL, &r);
    assert_int_equal(r.push_at_ms, 0);
    assert_int_equal(r.expires_at_ms, NOW + 7 * DAY_MS);
    pgw_lc_pushreq_release(&r);
    /* an hour ahead, valid ten minutes from then */
    ok("{\"data\":{\"a\":1},\"push_time\":\"2027-01-15T09:00:00.000Z\","
       "\"expiration_interval\":600}",
       NULL, &r);
    assert_int_equal(r.push_at_ms, NOW + 3600 * 1000);
    assert_int_equal(r.expires_at_ms, NOW + 4200 * 1000);
    pgw_lc_pushreq_release(&r);
    /* in the past: now; an offset is honoured */
    ok("{\"data\":{\"a\":1},\"push_time\":\"2020-01-01T00:00:00Z\","
       "\"expiration_time\":\"2027-01-15T10:00:00+01:00\"}",
       NULL, &r);
    assert_int_equal(r.push_at_ms, 0);
    assert_int_equal(r.expires_at_ms, NOW + 3600 * 1000);
    pgw_lc_pushreq_release(&r);
}

/* Validities the providers cannot honour, or that end before they
 * begin, are refused. */
static void test_time_refusals(void **state)
{
    static const char *const bad[] = {
        /* expires now: in the past */
        "{\"data\":{\"a\":1},\"expiration_time\":\"2027-01-15T10:00:00+02:"
        "00\"}",
        /* before push_time */
        "{\"data\":{\"a\":1},\"push_time\":\"2027-01-16T00:00:00Z\","
        "\"expiration_time\":\"2027-01-15T12:00:00Z\"}",
        /* 28 days and a second */
        "{\"data\":{\"a\":1},\"expiration_interval\":2419201}",
        /* 28 days after push_time and a second */
        "{\"data\":{\"a\":1},\"push_time\":\"2027-01-16T08:00:00Z\","
        "\"expiration_time\":\"2027-02-13T08:00:01Z\"}",
        /* 31 days ahead */
        "{\"data\":{\"a\":1},\"push_time\":\"2027-02-15T08:00:00Z\"}",
        "{\"data\":{\"a\":1},\"expiration_interval\":\"12a\"}",
        "{\"data\":{\"a\":1},\"expiration_interval\":1.5}",
    };
    struct pgw_lc_pushreq r;
    struct pgw_lc_error err;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], NULL, &r, &err) != PGW_ERR_INVAL)
            fail_msg("%s: accepted", bad[i]);
        assert_int_equal(err.status, 400);
    }
    /* exactly 28 days from push_time is allowed */
    ok("{\"data\":{\"a\":1},\"push_time\":\"2027-01-16T08:00:00Z\","
       "\"expiration_time\":\"2027-02-13T08:00:00Z\"}",
       NULL, &r);
    pgw_lc_pushreq_release(&r);
}

/* Content for one platform only is enough: the other's devices get
 * nothing (the sender's no_content). */
static void test_one_platform(void **state)
{
    struct pgw_lc_pushreq r;
    (void)state;

    ok("{\"data\":{\"android\":{\"alert\":\"x\"}}}", NULL, &r);
    pgw_lc_pushreq_release(&r);
    ok("{\"data\":{\"ios\":{\"badge\":\"Increment\"}}}", NULL, &r);
    pgw_lc_pushreq_release(&r);
}

/* The request's apns_team_id and _notificationChannel join the content;
 * req_id, notification_id and flow_control are kept. */
static void test_options(void **state)
{
    struct pgw_lc_pushreq r;
    cJSON *d;
    (void)state;

    ok("{\"data\":{\"alert\":\"x\"},\"apns_team_id\":\"TEAM2\","
       "\"_notificationChannel\":\"news\",\"req_id\":\"r1\","
       "\"notification_id\":\"n1\",\"flow_control\":1000}",
       NULL, &r);
    d = cJSON_Parse(r.data);
    assert_string_equal(cJSON_GetObjectItem(d, "_apns_team_id")->valuestring,
                        "TEAM2");
    assert_string_equal(
        cJSON_GetObjectItem(d, "_notificationChannel")->valuestring, "news");
    cJSON_Delete(d);
    assert_string_equal(r.req_id, "r1");
    assert_string_equal(r.notification_id, "n1");
    assert_int_equal(r.flow_control, 1000);
    pgw_lc_pushreq_release(&r);
}

/* What is refused names the field, with LeanCloud's code. */
static void test_refusals(void **state)
{
    static const struct {
        const char *body;
        int code;
        const char *field;
    } bad[] = {
        {"{}", 135, "data"},
        {"{\"data\":null}", 135, "data"},
        {"{\"data\":[]}", 111, "data"},
        {"{\"data\":{}}", 107, "data"},
        {"{\"data\":{\"a\":1},\"Channels\":[\"x\"]}", 107, "Channels"},
        {"{\"data\":{\"a\":1},\"cql\":\"x\"}", 107, "cql"},
        {"{\"data\":{\"a\":1},\"where\":{\"$nor\":[]}}", 107, "$nor"},
        {"{\"data\":{\"a\":1},\"where\":{\"deviceType\":1}}", 111,
         "deviceType"},
        {"{\"data\":{\"a\":1},\"flow_control\":999}", 107, "flow_control"},
        {"{\"data\":{\"a\":1},\"flow_control\":1000.5}", 107, "flow_control"},
        {"{\"data\":{\"a\":1},\"req_id\":\"\"}", 111, "req_id"},
        {"{\"data\":{\"_profile\":\"Dev\"}}", 107, "data._profile"},
        {"{\"data\":{\"ios\":{\"badge\":\"+1\"}}}", 111, "data.ios.badge"},
        {"{\"data\":{\"a\":1,\"_notificationChannel\":\"a\"},"
         "\"_notificationChannel\":\"b\"}",
         107, "_notificationChannel"},
        /* nothing left for a device once pushgw's own keys are gone */
        {"{\"data\":{\"_profile\":\"dev\",\"_apns_team_id\":\"T\"}}", 107,
         "data"},
        {"{\"data\":{\"ios\":{},\"android\":{}}}", 107, "data"},
    };
    struct pgw_lc_pushreq r;
    struct pgw_lc_error err;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i].body, NULL, &r, &err) != PGW_ERR_INVAL)
            fail_msg("%s: accepted", bad[i].body);
        if (err.status != 400 || err.code != bad[i].code ||
            strcmp(err.field, bad[i].field) != 0)
            fail_msg("%s: %d %d '%s' (%s), want 400 %d '%s'", bad[i].body,
                     err.status, err.code, err.field, err.error, bad[i].code,
                     bad[i].field);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_folding),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_time_refusals),
        cmocka_unit_test(test_one_platform),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_refusals),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
