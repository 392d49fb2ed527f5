/* Tests of the APNs payload mapping (DESIGN §8). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "event.h"
#include "payload_apns.h"
#include "util/utf8.h"

#define TS 1700000000
#define EXP (TS + 604800)

struct acase {
    const char *name;
    const char *content;
    const char *body; /* with badge 7 for Increment */
    const char *push_type;
    int priority;
    const char *collapse; /* NULL: none */
};

static const struct acase acases[] = {
    {"guide template",
     "{\"alert\":\"New message received\",\"badge\":"
     "\"Increment\"}",
     "{\"aps\":{\"alert\":\"New message received\",\"badge\":7}}", "alert", 10,
     NULL},
    {"guide pushData",
     "{\"alert\":\"您有一条未读的消息\",\"category\":\"消息\",\"badge\":1,"
     "\"sound\":\"声音文件名\",\"custom-key\":\"自定义\"}",
     "{\"aps\":{\"alert\":\"您有一条未读的消息\",\"category\":\"消息\","
     "\"badge\":1,\"sound\":\"声音文件名\"},\"custom-key\":\"自定义\"}",
     "alert", 10, NULL},
    {"every aps key",
     "{\"alert\":\"a\",\"badge\":3,\"sound\":\"s\",\"category\":\"c\","
     "\"thread-id\":\"t\",\"content-available\":1,\"mutable-content\":1,"
     "\"interruption-level\":\"time-sensitive\",\"relevance-score\":0.5,"
     "\"target-content-id\":\"w\"}",
     "{\"aps\":{\"alert\":\"a\",\"badge\":3,\"sound\":\"s\",\"category\":"
     "\"c\",\"thread-id\":\"t\",\"content-available\":1,\"mutable-content\":"
     "1,\"interruption-level\":\"time-sensitive\",\"relevance-score\":0.5,"
     "\"target-content-id\":\"w\"}}",
     "alert", 10, NULL},
    {"sound dictionary",
     "{\"sound\":{\"name\":\"x\",\"critical\":1,\"volume\":0.5}}",
     "{\"aps\":{\"sound\":{\"name\":\"x\",\"critical\":1,\"volume\":0.5}}}",
     "alert", 10, NULL},
    {"title merges into alert", "{\"alert\":\"body\",\"title\":\"T\"}",
     "{\"aps\":{\"alert\":{\"body\":\"body\",\"title\":\"T\"}}}", "alert", 10,
     NULL},
    {"title and subtitle",
     "{\"title\":\"T\",\"subtitle\":\"S\",\"alert\":\"b\"}",
     "{\"aps\":{\"alert\":{\"body\":\"b\",\"title\":\"T\",\"subtitle\":"
     "\"S\"}}}",
     "alert", 10, NULL},
    {"title without alert", "{\"title\":\"T\"}",
     "{\"aps\":{\"alert\":{\"title\":\"T\"}}}", "alert", 10, NULL},
    {"title into alert dictionary",
     "{\"alert\":{\"body\":\"b\",\"loc-key\":\"k\"},\"title\":\"T\"}",
     "{\"aps\":{\"alert\":{\"body\":\"b\",\"loc-key\":\"k\",\"title\":"
     "\"T\"}}}",
     "alert", 10, NULL},
    {"raw aps is the base",
     "{\"aps\":{\"alert\":\"raw\",\"sound\":\"x\"},\"badge\":2,\"k\":1}",
     "{\"aps\":{\"alert\":\"raw\",\"sound\":\"x\",\"badge\":2},\"k\":1}",
     "alert", 10, NULL},
    {"flat key overrides raw aps",
     "{\"aps\":{\"alert\":\"raw\"},\"alert\":"
     "\"flat\"}",
     "{\"aps\":{\"alert\":\"flat\"}}", "alert", 10, NULL},
    {"raw aps Increment", "{\"aps\":{\"badge\":\"Increment\"}}",
     "{\"aps\":{\"badge\":7}}", "alert", 10, NULL},
    {"custom keys keep their JSON",
     "{\"alert\":\"a\",\"url\":\"u\",\"n\":1.5,\"o\":{\"x\":[1,null]},"
     "\"silent\":true}",
     "{\"aps\":{\"alert\":\"a\"},\"url\":\"u\",\"n\":1.5,\"o\":{\"x\":[1,"
     "null]},\"silent\":true}",
     "alert", 10, NULL},
    {"Increment is case-sensitive", "{\"alert\":\"a\",\"badge\":\"increment\"}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 10, NULL},
    {"fractional badge truncated", "{\"badge\":2.7}", "{\"aps\":{\"badge\":2}}",
     "alert", 10, NULL},
    {"background inferred", "{\"content-available\":1,\"k\":\"v\"}",
     "{\"aps\":{\"content-available\":1},\"k\":\"v\"}", "background", 5, NULL},
    {"background inferred with category",
     "{\"content-available\":1,\"thread-id\":\"t\"}",
     "{\"aps\":{\"content-available\":1,\"thread-id\":\"t\"}}", "background", 5,
     NULL},
    {"content-available with alert is alert",
     "{\"content-available\":1,\"alert\":\"a\"}",
     "{\"aps\":{\"content-available\":1,\"alert\":\"a\"}}", "alert", 10, NULL},
    {"content-available with badge is alert",
     "{\"content-available\":1,\"badge\":\"Increment\"}",
     "{\"aps\":{\"content-available\":1,\"badge\":7}}", "alert", 10, NULL},
    {"explicit push type and priority are headers",
     "{\"alert\":\"a\",\"apns-push-type\":\"background\",\"apns-priority\":5}",
     "{\"aps\":{\"alert\":\"a\"}}", "background", 5, NULL},
    {"priority as string", "{\"alert\":\"a\",\"apns-priority\":\"5\"}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 5, NULL},
    {"invalid priority ignored", "{\"alert\":\"a\",\"apns-priority\":7}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 10, NULL},
    {"invalid push type ignored", "{\"alert\":\"a\",\"apns-push-type\":\"x\"}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 10, NULL},
    {"voip push type", "{\"apns-push-type\":\"voip\",\"call\":1}",
     "{\"aps\":{},\"call\":1}", "voip", 10, NULL},
    {"collapse-id header", "{\"alert\":\"a\",\"collapse-id\":\"c1\"}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 10, "c1"},
    {"collapse-id of 64 bytes",
     "{\"collapse-id\":"
     "\"0123456789012345678901234567890123456789012345678901234567890123\"}",
     "{\"aps\":{}}", "alert", 10,
     "0123456789012345678901234567890123456789012345678901234567890123"},
    {"keys are case-sensitive", "{\"Alert\":\"x\",\"alert\":\"a\",\"Badge\":1}",
     "{\"aps\":{\"alert\":\"a\"},\"Alert\":\"x\",\"Badge\":1}", "alert", 10,
     NULL},
    {"empty content", "{}", "{\"aps\":{}}", "alert", 10, NULL},
    /* Apple's rules (PROTOCOLS.md): flags are the number 1, a background
     * push has priority 5, no "alert": null. */
    {"content-available true is 1", "{\"content-available\":true,\"k\":\"v\"}",
     "{\"aps\":{\"content-available\":1},\"k\":\"v\"}", "background", 5, NULL},
    {"content-available as a string is 1",
     "{\"content-available\":\"1\",\"mutable-content\":\"true\","
     "\"alert\":\"a\"}",
     "{\"aps\":{\"content-available\":1,\"mutable-content\":1,"
     "\"alert\":\"a\"}}",
     "alert", 10, NULL},
    {"content-available 0 is dropped",
     "{\"alert\":\"a\",\"content-available\":0,\"mutable-content\":false}",
     "{\"aps\":{\"alert\":\"a\"}}", "alert", 10, NULL},
    {"background keeps priority 5 whatever is asked",
     "{\"content-available\":1,\"apns-priority\":10}",
     "{\"aps\":{\"content-available\":1}}", "background", 5, NULL},
    {"explicit background push type with priority 10",
     "{\"alert\":\"a\",\"apns-push-type\":\"background\","
     "\"apns-priority\":10}",
     "{\"aps\":{\"alert\":\"a\"}}", "background", 5, NULL},
    {"alert null is no alert", "{\"alert\":null,\"sound\":\"s\"}",
     "{\"aps\":{\"sound\":\"s\"}}", "alert", 10, NULL},
    {"filter-criteria and url-args go into aps",
     "{\"alert\":\"a\",\"filter-criteria\":\"work\",\"url-args\":[\"x\"]}",
     "{\"aps\":{\"alert\":\"a\",\"filter-criteria\":\"work\","
     "\"url-args\":[\"x\"]}}",
     "alert", 10, NULL},
    {"widgets push type", "{\"apns-push-type\":\"widgets\",\"k\":1}",
     "{\"aps\":{},\"k\":1}", "widgets", 10, NULL},
    {"controls push type", "{\"apns-push-type\":\"controls\",\"k\":1}",
     "{\"aps\":{},\"k\":1}", "controls", 10, NULL},
};

static void test_apns_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(acases); i++) {
        const struct acase *c = &acases[i];
        cJSON *content = cJSON_Parse(c->content);
        struct pgw_apns_payload *p = NULL;
        const char *reason = NULL;
        char buf[8192];
        size_t len = 0;

        assert_non_null(content);
        if (pgw_payload_apns_build(content, EXP, TS, &p, &reason) != 0)
            fail_msg("case '%s': build failed: %s", c->name,
                     reason ? reason : "?");
        assert_int_equal(pgw_payload_apns_body(p, 7, buf, sizeof(buf), &len),
                         0);
        buf[len] = '\0';
        if (strcmp(buf, c->body) != 0)
            fail_msg("case '%s': body %s", c->name, buf);
        if (strcmp(p->push_type, c->push_type) != 0 ||
            p->priority != c->priority)
            fail_msg("case '%s': type %s priority %d", c->name, p->push_type,
                     p->priority);
        if ((c->collapse == NULL) != (p->collapse_id == NULL) ||
            (c->collapse && strcmp(c->collapse, p->collapse_id) != 0))
            fail_msg("case '%s': collapse-id", c->name);
        assert_true(p->expiration == EXP);
        assert_false(p->shortened);
        pgw_payload_apns_free(p);
        cJSON_Delete(content);
    }
}

static void test_badge_per_device(void **state)
{
    cJSON *content = cJSON_Parse("{\"alert\":\"a\",\"badge\":\"Increment\","
                                 "\"x\":\"\\u0001\"}");
    struct pgw_apns_payload *p = NULL;
    char buf[256];
    size_t len;

    (void)state;
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, NULL), 0);
    assert_true(p->badge_increment);
    assert_int_equal(pgw_payload_apns_body_max(p), p->body_len + 11);
    assert_int_equal(pgw_payload_apns_body(p, 1, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, strlen("{\"aps\":{\"alert\":\"a\",\"badge\":1},"
                                 "\"x\":\"\\u0001\"}"));
    assert_memory_equal(buf,
                        "{\"aps\":{\"alert\":\"a\",\"badge\":1},\"x\":"
                        "\"\\u0001\"}",
                        len);
    assert_int_equal(
        pgw_payload_apns_body(p, -2147483647 - 1, buf, sizeof(buf), &len), 0);
    assert_memory_equal(buf, "{\"aps\":{\"alert\":\"a\",\"badge\":-2147483648}",
                        39);
    assert_int_equal(pgw_payload_apns_body(p, 12345, buf, 10, &len),
                     PGW_ERR_TOO_LARGE);
    pgw_payload_apns_free(p);
    cJSON_Delete(content);
}

static void test_collapse_id_too_long(void **state)
{
    cJSON *content = cJSON_Parse("{\"alert\":\"a\",\"collapse-id\":"
                                 "\"0123456789012345678901234567890123456789012"
                                 "3456789012345678901234\"}");
    struct pgw_apns_payload *p = NULL;
    const char *reason = NULL;

    (void)state;
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, &reason),
                     PGW_ERR_INVAL);
    assert_string_equal(reason, "bad_collapse_id");
    assert_null(p);
    cJSON_Delete(content);
}

/* collapse-id becomes a header: CR LF, control bytes, non-ASCII and
 * surrounding spaces are refused before anything is sent. */
static void test_collapse_id_not_a_header_value(void **state)
{
    static const char *const bad[] = {
        "{\"alert\":\"a\",\"collapse-id\":\"a\\r\\nx-evil: 1\"}",
        "{\"alert\":\"a\",\"collapse-id\":\"a\\u0001b\"}",
        "{\"alert\":\"a\",\"collapse-id\":\"tab\\there\"}",
        "{\"alert\":\"a\",\"collapse-id\":\"caf\u00e9\"}",
        "{\"alert\":\"a\",\"collapse-id\":\" lead\"}",
        "{\"alert\":\"a\",\"collapse-id\":\"trail \"}",
        "{\"alert\":\"a\",\"collapse-id\":\"del\\u007f\"}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *content = cJSON_Parse(bad[i]);
        struct pgw_apns_payload *p = NULL;
        const char *reason = NULL;

        assert_non_null(content);
        if (pgw_payload_apns_build(content, EXP, TS, &p, &reason) !=
            PGW_ERR_INVAL)
            fail_msg("accepted as a collapse-id: %s", bad[i]);
        assert_string_equal(reason, "bad_collapse_id");
        assert_null(p);
        cJSON_Delete(content);
    }
}

static void test_expiration(void **state)
{
    cJSON *content = cJSON_Parse("{\"alert\":\"a\"}");
    struct pgw_apns_payload *p = NULL;
    const char *reason = NULL;

    (void)state;
    /* Last second of validity: still built, expiration unchanged. */
    assert_int_equal(pgw_payload_apns_build(content, EXP, EXP - 1, &p, NULL),
                     0);
    assert_true(p->expiration == (int64_t)TS + 604800);
    pgw_payload_apns_free(p);
    p = NULL;
    assert_int_equal(pgw_payload_apns_build(content, EXP, EXP, &p, &reason),
                     PGW_PAYLOAD_ERR_EXPIRED);
    assert_string_equal(reason, "expired");
    assert_null(p);
    cJSON_Delete(content);
}

/* A long CJK + emoji alert is cut to fit, valid UTF-8, ending in "…". */
static void test_long_multibyte_alert(void **state)
{
    size_t n = 3000;
    char *alert = malloc(n * 7 + 1), *json = malloc(n * 7 + 128);
    cJSON *content;
    struct pgw_apns_payload *p = NULL;
    char buf[8192];
    size_t len, o = 0;
    cJSON *parsed;
    const char *body;

    (void)state;
    for (size_t i = 0; i < n; i++) {
        memcpy(alert + o, "\xe4\xb8\xad\xf0\x9f\x98\x80", 7); /* 中😀 */
        o += 7;
    }
    alert[o] = '\0';
    sprintf(json, "{\"alert\":\"%s\",\"title\":\"T\",\"badge\":\"Increment\"}",
            alert);
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, NULL), 0);
    assert_true(p->shortened);
    assert_true(pgw_payload_apns_body_max(p) <= PGW_APNS_MAX_BODY);
    assert_true(pgw_payload_apns_body_max(p) > PGW_APNS_MAX_BODY - 8);
    assert_int_equal(
        pgw_payload_apns_body(p, 2147483647, buf, sizeof(buf), &len), 0);
    assert_true(len <= PGW_APNS_MAX_BODY);
    assert_true(pgw_utf8_valid(buf, len));
    parsed = cJSON_ParseWithLength(buf, len);
    assert_non_null(parsed);
    body = cJSON_GetObjectItem(
               cJSON_GetObjectItem(cJSON_GetObjectItem(parsed, "aps"), "alert"),
               "body")
               ->valuestring;
    assert_true(strlen(body) > 3);
    assert_string_equal(body + strlen(body) - 3, "\xe2\x80\xa6");
    assert_memory_equal(body, alert, strlen(body) - 3);
    cJSON_Delete(parsed);
    pgw_payload_apns_free(p);
    cJSON_Delete(content);
    free(alert);
    free(json);
}

/* Escapes count: a body of quotes is cut by its printed size. */
static void test_long_escaped_alert(void **state)
{
    size_t n = 5000;
    char *json = malloc(n * 2 + 64);
    cJSON *content;
    struct pgw_apns_payload *p = NULL;
    size_t o;

    (void)state;
    o = (size_t)sprintf(json, "{\"alert\":\"");
    for (size_t i = 0; i < n; i++) {
        json[o++] = '\\';
        json[o++] = 'n';
    }
    sprintf(json + o, "\"}");
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, NULL), 0);
    assert_true(p->body_len <= PGW_APNS_MAX_BODY);
    assert_true(p->body_len >= PGW_APNS_MAX_BODY - 2);
    pgw_payload_apns_free(p);
    cJSON_Delete(content);
    free(json);
}

static void test_voip_budget(void **state)
{
    char json[8000];
    cJSON *content;
    struct pgw_apns_payload *p = NULL;

    (void)state;
    snprintf(json, sizeof(json),
             "{\"apns-push-type\":\"voip\",\"alert\":\"%04500d\"}", 1);
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, NULL), 0);
    assert_false(p->shortened); /* 4500 fits 5120 */
    pgw_payload_apns_free(p);
    p = NULL;
    cJSON_Delete(content);
    snprintf(json, sizeof(json), "{\"alert\":\"%04500d\"}", 1);
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, NULL), 0);
    assert_true(p->shortened);
    assert_true(p->body_len <= PGW_APNS_MAX_BODY);
    pgw_payload_apns_free(p);
    cJSON_Delete(content);
}

static void test_custom_data_too_large(void **state)
{
    char json[8000];
    cJSON *content;
    struct pgw_apns_payload *p = NULL;
    const char *reason = NULL;

    (void)state;
    /* The alert is short; the custom key alone is over the budget. */
    snprintf(json, sizeof(json), "{\"alert\":\"hello\",\"blob\":\"%05000d\"}",
             1);
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, &reason),
                     PGW_ERR_TOO_LARGE);
    assert_string_equal(reason, "payload_too_large");
    assert_null(p);
    cJSON_Delete(content);
    /* No alert at all. */
    snprintf(json, sizeof(json), "{\"blob\":\"%05000d\"}", 1);
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_apns_build(content, EXP, TS, &p, &reason),
                     PGW_ERR_TOO_LARGE);
    cJSON_Delete(content);
}

static void test_apns_id(void **state)
{
    char a[37], b[37], c[37], d[37];

    (void)state;
    pgw_payload_apns_id("event-1", 42, a);
    pgw_payload_apns_id("event-1", 42, b);
    pgw_payload_apns_id("event-1", 43, c);
    pgw_payload_apns_id("event-2", 42, d);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
    assert_int_equal(strlen(a), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    /* The two-step form (the event's key once, then per device) agrees. */
    {
        unsigned char key[PGW_APNS_ID_KEY_LEN];
        char e[37];

        pgw_payload_apns_id_key("event-1", key);
        pgw_payload_apns_id_from_key(key, 43, e);
        assert_string_equal(e, c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apns_table),
        cmocka_unit_test(test_badge_per_device),
        cmocka_unit_test(test_collapse_id_too_long),
        cmocka_unit_test(test_collapse_id_not_a_header_value),
        cmocka_unit_test(test_expiration),
        cmocka_unit_test(test_long_multibyte_alert),
        cmocka_unit_test(test_long_escaped_alert),
        cmocka_unit_test(test_voip_budget),
        cmocka_unit_test(test_custom_data_too_large),
        cmocka_unit_test(test_apns_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
