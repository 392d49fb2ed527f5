/* LeanCloud _Installation objects: fields, __ops, checks, output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "lc_installation.h"

#define IOS_TOKEN                                                              \
    "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
#define IOS_TOKEN_LOWER                                                        \
    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
#define FCM_TOKEN "fcm-token:APA91bH_x-1"

/* Applies |json| to |row| (flags 0) and checks the record. */
static int apply_check(struct pgw_lc_installation *row, const char *json,
                       struct pgw_lc_error *err)
{
    cJSON *obj = cJSON_Parse(json);
    int rc;

    assert_non_null(obj);
    rc = pgw_lc_installation_apply(row, obj, 0, err);
    if (rc == 0)
        rc = pgw_lc_installation_check(row, err);
    cJSON_Delete(obj);
    return rc;
}

static void test_ios_create(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;

    (void)state;
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(
        apply_check(&row,
                    "{\"deviceType\":\"ios\",\"deviceToken\":\"" IOS_TOKEN
                    "\",\"channels\":[\"Tom\",\"Jerry\"],\"badge\":3,"
                    "\"timeZone\":\"Asia/Shanghai\",\"apnsTopic\":\"com.x\","
                    "\"apnsTeamId\":\"TEAM\",\"deviceProfile\":\"prof_1\","
                    "\"appVersion\":\"1.2\",\"ACL\":{\"*\":{\"read\":true}},"
                    "\"objectId\":\"ignored\",\"createdAt\":\"ignored\"}",
                    &err),
        0);
    assert_string_equal(row.device_type, "ios");
    assert_string_equal(row.device_token, IOS_TOKEN_LOWER);
    assert_int_equal(row.n_channels, 2);
    assert_string_equal(row.channels[1], "Jerry");
    assert_int_equal(row.badge, 3);
    assert_string_equal(row.time_zone, "Asia/Shanghai");
    assert_string_equal(row.apns_topic, "com.x");
    assert_string_equal(row.apns_team_id, "TEAM");
    assert_string_equal(row.device_profile, "prof_1");
    assert_null(row.object_id); /* read-only without the import flag */
    assert_int_equal(row.created_at_ms, 0);
    assert_true(row.valid);
    assert_string_equal(
        cJSON_GetObjectItem(row.extra, "appVersion")->valuestring, "1.2");
    assert_non_null(cJSON_GetObjectItem(row.extra, "ACL"));
    assert_int_equal(cJSON_GetArraySize(row.extra), 2);
    pgw_lc_installation_release(&row);
}

static void test_android_fcm(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;
    cJSON *out;

    (void)state;
    /* LeanCloud's FCM module: vendor fcm, the token in registrationId */
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(
        apply_check(&row,
                    "{\"deviceType\":\"android\",\"vendor\":\"FCM\","
                    "\"registrationId\":\"" FCM_TOKEN "\",\"installationId\":"
                    "\"AbC-1\",\"deviceToken\":\"other\"}",
                    &err),
        0);
    assert_string_equal(row.device_token, FCM_TOKEN);
    assert_string_equal(row.vendor, "fcm");
    assert_string_equal(row.installation_id, "abc-1");
    out = pgw_lc_installation_to_json(&row);
    assert_non_null(out);
    assert_string_equal(cJSON_GetObjectItem(out, "registrationId")->valuestring,
                        FCM_TOKEN);
    assert_null(cJSON_GetObjectItem(out, "deviceToken"));
    cJSON_Delete(out);
    pgw_lc_installation_release(&row);

    /* Parse's form: the FCM token in deviceToken, no vendor */
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"android\",\"deviceToken\":"
                                 "\"" FCM_TOKEN "\",\"pushType\":\"gcm\"}",
                                 &err),
                     0);
    assert_string_equal(row.device_token, FCM_TOKEN);
    assert_null(row.vendor);
    out = pgw_lc_installation_to_json(&row);
    assert_string_equal(cJSON_GetObjectItem(out, "deviceToken")->valuestring,
                        FCM_TOKEN);
    assert_string_equal(cJSON_GetObjectItem(out, "pushType")->valuestring,
                        "gcm");
    cJSON_Delete(out);
    pgw_lc_installation_release(&row);

    /* registrationId on iOS means nothing: kept, not the token */
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"ios\",\"registrationId\":"
                                 "\"x\",\"deviceToken\":\"" IOS_TOKEN "\"}",
                                 &err),
                     0);
    assert_string_equal(row.device_token, IOS_TOKEN_LOWER);
    assert_non_null(cJSON_GetObjectItem(row.extra, "registrationId"));
    pgw_lc_installation_release(&row);
}

static const struct {
    const char *json;
    int code;
    const char *field;
    const char *reason;
} bad[] = {
    {"[]", PGW_LC_INVALID_JSON, "", "bad_json"},
    {"{\"deviceType\":\"winphone\",\"deviceToken\":\"" IOS_TOKEN "\"}",
     PGW_LC_MISSING_FIELD, "deviceType", "unsupported_device_type"},
    {"{\"deviceType\":7}", PGW_LC_INCORRECT_TYPE, "deviceType", "bad_type"},
    {"{\"deviceToken\":\"" IOS_TOKEN "\"}", PGW_LC_MISSING_FIELD, "deviceType",
     "missing_device_type"},
    {"{\"deviceType\":\"android\",\"vendor\":\"HMS\",\"registrationId\":"
     "\"abcdefghij\"}",
     PGW_LC_MISSING_FIELD, "vendor", "unsupported_vendor"},
    {"{\"deviceType\":\"ios\",\"vendor\":\"fcm\",\"deviceToken\":"
     "\"" IOS_TOKEN "\"}",
     PGW_LC_MISSING_FIELD, "vendor", "unsupported_vendor"},
    {"{\"deviceType\":\"ios\"}", PGW_LC_MISSING_FIELD, "deviceToken",
     "missing_token"},
    {"{\"deviceType\":\"android\",\"installationId\":\"i1\"}",
     PGW_LC_MISSING_FIELD, "registrationId", "missing_token"},
    {"{\"deviceType\":\"ios\",\"deviceToken\":\"abc\"}", PGW_LC_INVALID_TOKEN,
     "deviceToken", "bad_token"},
    {"{\"deviceType\":\"ios\",\"deviceToken\":\"" IOS_TOKEN "zz\"}",
     PGW_LC_INVALID_TOKEN, "deviceToken", "bad_token"},
    {"{\"deviceType\":\"android\",\"vendor\":\"fcm\",\"registrationId\":"
     "\"has space in it\"}",
     PGW_LC_INVALID_TOKEN, "registrationId", "bad_token"},
    {"{\"deviceType\":\"ios\",\"deviceToken\":1}", PGW_LC_INCORRECT_TYPE,
     "deviceToken", "bad_type"},
    {"{\"channels\":\"Tom\"}", PGW_LC_INCORRECT_TYPE, "channels", "bad_type"},
    {"{\"channels\":[\"Tom\",3]}", PGW_LC_INCORRECT_TYPE, "channels",
     "bad_type"},
    {"{\"channels\":[\"\"]}", PGW_LC_INVALID_CHANNEL, "channels",
     "bad_channel"},
    {"{\"channels\":{\"__op\":\"AddUnique\"}}", PGW_LC_INCORRECT_TYPE,
     "channels", "bad_type"},
    {"{\"channels\":{\"__op\":\"Frobnicate\",\"objects\":[\"a\"]}}",
     PGW_LC_INVALID_JSON, "channels", "bad_op"},
    {"{\"channels\":{\"__op\":\"Increment\",\"amount\":1}}",
     PGW_LC_INCORRECT_TYPE, "channels", "bad_op"},
    {"{\"channels\":{\"__op\":3}}", PGW_LC_INVALID_JSON, "channels", "bad_op"},
    {"{\"badge\":1.5}", PGW_LC_INCORRECT_TYPE, "badge", "bad_type"},
    {"{\"badge\":\"Increment\"}", PGW_LC_INCORRECT_TYPE, "badge", "bad_type"},
    {"{\"badge\":{\"__op\":\"AddUnique\",\"objects\":[1]}}",
     PGW_LC_INCORRECT_TYPE, "badge", "bad_op"},
    {"{\"badge\":{\"__op\":\"Increment\",\"amount\":\"1\"}}",
     PGW_LC_INCORRECT_TYPE, "badge", "bad_type"},
    {"{\"badge\":4294967296}", PGW_LC_INCORRECT_TYPE, "badge", "bad_type"},
    {"{\"valid\":\"yes\"}", PGW_LC_INCORRECT_TYPE, "valid", "bad_type"},
    {"{\"timeZone\":[]}", PGW_LC_INCORRECT_TYPE, "timeZone", "bad_type"},
    {"{\"__op\":\"Delete\"}", PGW_LC_INVALID_JSON, "__op", "bad_json"},
    {"{\"a.b\":1}", PGW_LC_INVALID_JSON, "a.b", "bad_json"},
    {"{\"appVersion\":{\"__op\":\"Batch\",\"ops\":[]}}", PGW_LC_INVALID_JSON,
     "appVersion", "bad_op"},
    {"{\"appVersion\":\"1\",\"x\":{\"__op\":\"Increment\",\"amount\":[]}}",
     PGW_LC_INCORRECT_TYPE, "x", "bad_type"},
};

static void test_bad_objects(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pgw_lc_installation row;
        struct pgw_lc_error err;
        int rc;

        memset(&err, 0, sizeof(err));
        assert_int_equal(pgw_lc_installation_init(&row), 0);
        rc = apply_check(&row, bad[i].json, &err);
        if (rc != PGW_ERR_INVAL || err.code != bad[i].code ||
            strcmp(err.field, bad[i].field) != 0 ||
            strcmp(err.reason, bad[i].reason) != 0)
            fail_msg("case %zu '%s': rc %d code %d field '%s' reason '%s' "
                     "error '%s'",
                     i, bad[i].json, rc, err.code, err.field, err.reason,
                     err.error);
        assert_int_equal(err.status, 400);
        /* the field is named in the message */
        assert_non_null(strstr(err.error, bad[i].field));
        pgw_lc_installation_release(&row);
    }
}

static void test_ops(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;

    (void)state;
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"ios\",\"deviceToken\":"
                                 "\"" IOS_TOKEN "\",\"channels\":[\"a\"],"
                                 "\"badge\":5,\"n\":1,\"tags\":[1]}",
                                 &err),
                     0);
    row.id = 7; /* stored from now on */
    assert_int_equal(
        apply_check(&row,
                    "{\"channels\":{\"__op\":\"AddUnique\",\"objects\":"
                    "[\"a\",\"b\",\"b\",\"c\"]}}",
                    &err),
        0);
    assert_int_equal(row.n_channels, 3);
    assert_string_equal(row.channels[0], "a");
    assert_string_equal(row.channels[1], "b");
    assert_string_equal(row.channels[2], "c");
    assert_int_equal(apply_check(&row,
                                 "{\"channels\":{\"__op\":\"Add\",\"objects\":"
                                 "[\"a\"]}}",
                                 &err),
                     0);
    assert_int_equal(row.n_channels, 4);
    assert_int_equal(apply_check(&row,
                                 "{\"channels\":{\"__op\":\"Remove\","
                                 "\"objects\":[\"a\",\"zz\"]}}",
                                 &err),
                     0);
    assert_int_equal(row.n_channels, 2);
    assert_string_equal(row.channels[0], "b");
    assert_string_equal(row.channels[1], "c");

    assert_int_equal(
        apply_check(&row, "{\"badge\":{\"__op\":\"Increment\",\"amount\":-2}}",
                    &err),
        0);
    assert_int_equal(row.badge, 3);
    assert_int_equal(
        apply_check(&row, "{\"badge\":{\"__op\":\"Increment\"}}", &err), 0);
    assert_int_equal(row.badge, 4);
    assert_int_equal(apply_check(&row, "{\"badge\":0}", &err), 0);
    assert_int_equal(row.badge, 0);

    /* ops on extra fields */
    assert_int_equal(apply_check(&row,
                                 "{\"n\":{\"__op\":\"Increment\",\"amount\":2},"
                                 "\"tags\":{\"__op\":\"AddUnique\",\"objects\":"
                                 "[1,2]},\"m\":{\"__op\":\"Increment\"}}",
                                 &err),
                     0);
    assert_int_equal(cJSON_GetObjectItem(row.extra, "n")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(row.extra, "m")->valueint, 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(row.extra, "tags")),
                     2);
    assert_int_equal(apply_check(&row,
                                 "{\"tags\":{\"__op\":\"Remove\",\"objects\":"
                                 "[1]},\"n\":{\"__op\":\"Delete\"}}",
                                 &err),
                     0);
    assert_null(cJSON_GetObjectItem(row.extra, "n"));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(row.extra, "tags")),
                     1);

    /* Delete on any field; a required one then fails the check */
    assert_int_equal(apply_check(&row,
                                 "{\"timeZone\":\"UTC\",\"channels\":{\"__op\":"
                                 "\"Delete\"},\"valid\":false}",
                                 &err),
                     0);
    assert_int_equal(row.n_channels, 0);
    assert_false(row.valid);
    assert_int_equal(
        apply_check(&row, "{\"timeZone\":{\"__op\":\"Delete\"}}", &err), 0);
    assert_null(row.time_zone);
    assert_int_equal(
        apply_check(&row, "{\"deviceToken\":{\"__op\":\"Delete\"}}", &err),
        PGW_ERR_INVAL);
    assert_string_equal(err.reason, "missing_token");
    pgw_lc_installation_release(&row);
}

static void test_immutable(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;

    (void)state;
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"android\",\"deviceToken\":"
                                 "\"" FCM_TOKEN "\",\"installationId\":\"i1\"}",
                                 &err),
                     0);
    row.id = 1;
    assert_int_equal(apply_check(&row, "{\"deviceType\":\"android\"}", &err),
                     0);
    assert_int_equal(apply_check(&row, "{\"installationId\":\"I1\"}", &err), 0);
    assert_int_equal(apply_check(&row, "{\"deviceType\":\"ios\"}", &err),
                     PGW_ERR_INVAL);
    assert_int_equal(err.code, PGW_LC_IMMUTABLE);
    assert_string_equal(err.field, "deviceType");
    pgw_lc_installation_release(&row);

    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"android\",\"deviceToken\":"
                                 "\"" FCM_TOKEN "\",\"installationId\":\"i1\"}",
                                 &err),
                     0);
    row.id = 1;
    assert_int_equal(apply_check(&row, "{\"installationId\":\"i2\"}", &err),
                     PGW_ERR_INVAL);
    assert_int_equal(err.code, PGW_LC_IMMUTABLE);
    assert_string_equal(err.field, "installationId");
    pgw_lc_installation_release(&row);
}

static void test_channel_caps(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;
    size_t cap = 64 + PGW_LC_MAX_CHANNELS * 8;
    char *json = malloc(cap);
    size_t len = 0;

    (void)state;
    assert_non_null(json);
    len += (size_t)snprintf(json + len, cap - len, "{\"channels\":[");
    for (int i = 0; i <= PGW_LC_MAX_CHANNELS; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"c%d\"",
                                i ? "," : "", i);
    snprintf(json + len, cap - len, "]}");
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row, json, &err), PGW_ERR_INVAL);
    assert_int_equal(err.code, PGW_LC_TOO_LARGE);
    assert_string_equal(err.field, "channels");
    pgw_lc_installation_release(&row);
    free(json);
}

static void test_export(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;
    cJSON *obj, *out;
    char date[40];

    (void)state;
    obj = cJSON_Parse(
        "{\"objectId\":\"5f1e2d3c4b5a697887766554\",\"deviceType\":\"ios\","
        "\"deviceToken\":\"" IOS_TOKEN "\",\"channels\":[\"Tom\"],"
        "\"createdAt\":\"2020-07-27T03:04:05.678Z\",\"updatedAt\":{\"__type\":"
        "\"Date\",\"iso\":\"2021-01-01T08:00:00.000+08:00\"},\"badge\":2}");
    assert_non_null(obj);
    assert_int_equal(pgw_lc_installation_from_export(obj, &row, &err), 0);
    assert_string_equal(row.object_id, "5f1e2d3c4b5a697887766554");
    assert_int_equal(row.created_at_ms, 1595819045678LL);
    assert_int_equal(row.updated_at_ms, 1609459200000LL);
    assert_int_equal(cJSON_GetArraySize(row.extra), 0);
    out = pgw_lc_installation_to_json(&row);
    assert_string_equal(cJSON_GetObjectItem(out, "createdAt")->valuestring,
                        "2020-07-27T03:04:05.678Z");
    assert_string_equal(cJSON_GetObjectItem(out, "objectId")->valuestring,
                        "5f1e2d3c4b5a697887766554");
    cJSON_Delete(out);
    pgw_lc_installation_release(&row);
    cJSON_Delete(obj);

    obj = cJSON_Parse("{\"deviceType\":\"android\",\"vendor\":\"mi\","
                      "\"registrationId\":\"abcdefghijk\"}");
    assert_int_equal(pgw_lc_installation_from_export(obj, &row, &err),
                     PGW_ERR_INVAL);
    assert_string_equal(err.reason, "unsupported_vendor");
    cJSON_Delete(obj);
    obj = cJSON_Parse("{\"deviceType\":\"ios\",\"deviceToken\":"
                      "\"" IOS_TOKEN "\",\"createdAt\":\"yesterday\"}");
    assert_int_equal(pgw_lc_installation_from_export(obj, &row, &err),
                     PGW_ERR_INVAL);
    assert_string_equal(err.reason, "bad_date");
    assert_string_equal(err.field, "createdAt");
    cJSON_Delete(obj);

    pgw_lc_format_date(0, date, sizeof(date));
    assert_string_equal(date, "1970-01-01T00:00:00.000Z");
}

static void test_error_json(void **state)
{
    struct pgw_lc_error err;
    char *s;

    (void)state;
    pgw_lc_error_set(&err, 401, PGW_LC_UNAUTHORIZED, "", "unauthorized",
                     "Unauthorized.");
    s = pgw_lc_error_json(&err);
    assert_string_equal(s, "{\"code\":401,\"error\":\"Unauthorized.\"}");
    free(s);
}

static void test_copy(void **state)
{
    struct pgw_lc_installation row, copy;
    struct pgw_lc_error err;

    (void)state;
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    assert_int_equal(apply_check(&row,
                                 "{\"deviceType\":\"ios\",\"deviceToken\":"
                                 "\"" IOS_TOKEN "\",\"channels\":[\"a\",\"b\"],"
                                 "\"x\":{\"y\":1}}",
                                 &err),
                     0);
    assert_int_equal(pgw_lc_installation_copy(&copy, &row), 0);
    pgw_lc_installation_release(&row);
    assert_string_equal(copy.channels[1], "b");
    assert_string_equal(copy.device_token, IOS_TOKEN_LOWER);
    assert_non_null(cJSON_GetObjectItem(copy.extra, "x"));
    pgw_lc_installation_release(&copy);
}

/* Ops on other fields add up over many requests: bounded. */
static void test_extra_cap(void **state)
{
    struct pgw_lc_installation row;
    struct pgw_lc_error err;
    char *json = malloc(40000);
    int rc = 0;

    (void)state;
    assert_non_null(json);
    memset(json, 'x', 39999);
    json[39999] = '\0';
    memcpy(json,
           "{\"deviceType\":\"ios\",\"deviceToken\":\"" IOS_TOKEN
           "\",\"t\":{\"__op\":\"Add\",\"objects\":[\"",
           strlen("{\"deviceType\":\"ios\",\"deviceToken\":\"" IOS_TOKEN
                  "\",\"t\":{\"__op\":\"Add\",\"objects\":[\""));
    memcpy(json + 39999 - 6, "\"]}}", 5);
    assert_int_equal(pgw_lc_installation_init(&row), 0);
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = apply_check(&row, json, &err);
    assert_int_equal(rc, PGW_ERR_INVAL);
    assert_int_equal(err.code, PGW_LC_TOO_LARGE);
    pgw_lc_installation_release(&row);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ios_create),  cmocka_unit_test(test_android_fcm),
        cmocka_unit_test(test_bad_objects), cmocka_unit_test(test_ops),
        cmocka_unit_test(test_immutable),   cmocka_unit_test(test_channel_caps),
        cmocka_unit_test(test_export),      cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_copy),        cmocka_unit_test(test_extra_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
