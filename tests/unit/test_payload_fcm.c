/* Tests of the FCM HTTP v1 payload mapping (DESIGN §8). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "event.h"
#include "payload_fcm.h"
#include "util/utf8.h"

#define TS 1700000000
#define VALID 604800
#define EXP (TS + VALID)
#define AND(extra)                                                             \
    "\"android\":{\"ttl\":\"604800s\",\"priority\":\"HIGH\"" extra "}"

struct fcase {
    const char *name;
    const char *content;
    const char *body; /* with token "tok" */
    size_t n_dropped;
};

static const struct fcase fcases[] = {
    {"guide template",
     "{\"alert\":\"New message received\",\"badge\":\"Increment\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"New "
     "message received\"}," AND("") "}}",
     0},
    {"title and alert", "{\"title\":\"T\",\"alert\":\"B\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"title\":\"T\","
     "\"body\":\"B\"}," AND("") "}}",
     0},
    {"alert dictionary", "{\"alert\":{\"title\":\"T\",\"body\":\"B\"}}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"title\":\"T\","
     "\"body\":\"B\"}," AND("") "}}",
     0},
    {"sound action collapse",
     "{\"alert\":\"a\",\"sound\":\"s\",\"action\":\"com.x.OPEN\","
     "\"collapse-id\":\"c\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"a\"}," AND(
         ",\"collapse_key\":\"c\",\"notification\":{\"sound\":\"s\","
         "\"click_action\":\"com.x.OPEN\"}") "}}",
     0},
    {"data stringification",
     "{\"alert\":\"a\",\"s\":\"str\",\"n\":5,\"f\":1.5,\"b\":true,\"z\":null,"
     "\"o\":{\"k\":[1,\"x\"]},\"q\":\"\\\"q\\\"\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"a\"},"
     "\"data\":{\"s\":\"str\",\"n\":\"5\",\"f\":\"1.5\",\"b\":\"true\",\"z\":"
     "\"null\",\"o\":\"{\\\"k\\\":[1,\\\"x\\\"]}\",\"q\":\"\\\"q\\\"\"}," AND(
         "") "}}",
     0},
    /* FCM: "any word starting with google or gcm" is reserved. */
    {"reserved keys dropped",
     "{\"alert\":\"a\",\"from\":\"x\",\"message_type\":\"y\",\"google.c\":1,"
     "\"gcm.n\":2,\"googlex\":3,\"gcmx\":4,\"k\":\"v\",\"Google\":5}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"a\"},"
     "\"data\":{\"k\":\"v\",\"Google\":\"5\"}," AND("") "}}",
     6},
    {"LeanCloud's notification channel",
     "{\"alert\":\"a\",\"_notificationChannel\":\"chat\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"a\"}," AND(
         ",\"notification\":{\"channel_id\":\"chat\"}") "}}",
     0},
    {"silent is data only",
     "{\"silent\":true,\"alert\":\"a\",\"title\":\"T\",\"action\":\"A\","
     "\"sound\":\"s\",\"k\":1}",
     "{\"message\":{\"token\":\"tok\",\"data\":{\"k\":\"1\",\"alert\":\"a\","
     "\"title\":\"T\",\"action\":\"A\"}," AND("") "}}",
     0},
    {"silent false", "{\"silent\":false,\"alert\":\"a\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":\"a\"}," AND(
         "") "}}",
     0},
    {"badge dropped, data only", "{\"badge\":3,\"k\":\"v\"}",
     "{\"message\":{\"token\":\"tok\",\"data\":{\"k\":\"v\"}," AND("") "}}", 0},
    {"guide pushData",
     "{\"alert\":\"您有一条未读的消息\",\"category\":\"消息\",\"badge\":1,"
     "\"sound\":\"声音文件名\",\"custom-key\":\"自定义\"}",
     "{\"message\":{\"token\":\"tok\",\"notification\":{\"body\":"
     "\"您有一条未读的消息\"},\"data\":{\"category\":\"消息\",\"custom-key\":"
     "\"自定义\"}," AND(",\"notification\":{\"sound\":\"声音文件名\"}") "}}",
     0},
    {"data keys are case-sensitive", "{\"k\":\"1\",\"K\":\"2\"}",
     "{\"message\":{\"token\":\"tok\",\"data\":{\"k\":\"1\",\"K\":\"2\"}," AND(
         "") "}}",
     0},
    {"empty", "{}", "{\"message\":{\"token\":\"tok\"," AND("") "}}", 0},
};

static void test_fcm_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(fcases); i++) {
        const struct fcase *c = &fcases[i];
        cJSON *content = cJSON_Parse(c->content);
        struct pgw_fcm_payload *p = NULL;
        const char *reason = NULL;
        char buf[8192];
        size_t len = 0;

        assert_non_null(content);
        if (pgw_payload_fcm_build(content, EXP, TS, VALID, &p, &reason) != 0)
            fail_msg("case '%s': build failed", c->name);
        assert_int_equal(pgw_payload_fcm_body(p, "tok", buf, sizeof(buf), &len),
                         0);
        assert_int_equal(len, pgw_payload_fcm_body_len(p, "tok"));
        buf[len] = '\0';
        if (strcmp(buf, c->body) != 0)
            fail_msg("case '%s': body %s", c->name, buf);
        if (p->n_dropped != c->n_dropped)
            fail_msg("case '%s': dropped %zu", c->name, p->n_dropped);
        pgw_payload_fcm_free(p);
        cJSON_Delete(content);
    }
}

static void test_first_dropped(void **state)
{
    cJSON *content = cJSON_Parse("{\"gcm.x\":1,\"from\":2}");
    struct pgw_fcm_payload *p = NULL;

    (void)state;
    assert_int_equal(pgw_payload_fcm_build(content, EXP, TS, VALID, &p, NULL),
                     0);
    assert_int_equal(p->n_dropped, 2);
    assert_string_equal(p->first_dropped, "gcm.x");
    pgw_payload_fcm_free(p);
    cJSON_Delete(content);
}

struct ttl_case {
    int64_t expires, now;
    int rc;
    int64_t ttl;
};

static void test_ttl(void **state)
{
    static const struct ttl_case cases[] = {
        {EXP, TS, 0, VALID},               /* just accepted: 7 days */
        {EXP, TS + 3600, 0, VALID - 3600}, /* an hour later */
        {EXP, EXP - 1, 0, 1},              /* last second */
        {EXP, EXP, PGW_PAYLOAD_ERR_EXPIRED, 0},
        {EXP, EXP + 100, PGW_PAYLOAD_ERR_EXPIRED, 0},
        {EXP, TS - 1000, 0, VALID}, /* clock skew: capped */
    };
    cJSON *content = cJSON_Parse("{\"alert\":\"a\"}");

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        struct pgw_fcm_payload *p = NULL;
        const char *reason = NULL;
        char buf[512], want[32];
        size_t len;
        int rc = pgw_payload_fcm_build(content, cases[i].expires, cases[i].now,
                                       VALID, &p, &reason);

        if (rc != cases[i].rc)
            fail_msg("ttl case %zu: rc %d", i, rc);
        if (rc < 0) {
            assert_string_equal(reason, "expired");
            assert_null(p);
            continue;
        }
        assert_true(p->ttl_s == cases[i].ttl);
        assert_int_equal(pgw_payload_fcm_body(p, "t", buf, sizeof(buf), &len),
                         0);
        buf[len] = '\0';
        snprintf(want, sizeof(want), "\"ttl\":\"%llds\"",
                 (long long)cases[i].ttl);
        if (!strstr(buf, want))
            fail_msg("ttl case %zu: %s", i, buf);
        pgw_payload_fcm_free(p);
    }
    cJSON_Delete(content);
}

/* A retry's ttl is what is left: rewritten in place, only android.ttl
 * (a data key named ttl keeps its value). */
static void test_set_ttl_for_a_retry(void **state)
{
    cJSON *content = cJSON_Parse("{\"alert\":\"a\",\"ttl\":\"keep\"}");
    struct pgw_fcm_payload *p = NULL;
    char buf[1024];
    size_t len = 0, before;
    cJSON *j;

    (void)state;
    assert_int_equal(pgw_payload_fcm_build(content, EXP, TS, VALID, &p, NULL),
                     0);
    assert_int_equal(pgw_payload_fcm_body(p, "tok", buf, sizeof(buf), &len), 0);
    before = len;
    assert_int_equal(pgw_payload_fcm_set_ttl(buf, &len, 3600), 0);
    assert_int_equal(len, before - 2); /* 604800 -> 3600 */
    buf[len] = '\0';
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "android"),
            "ttl")
            ->valuestring,
        "3600s");
    assert_string_equal(
        cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "data"),
            "ttl")
            ->valuestring,
        "keep");
    cJSON_Delete(j);
    assert_int_equal(pgw_payload_fcm_set_ttl(buf, &len, 0), 0);
    assert_non_null(strstr(buf, "\"ttl\":\"0s\""));
    /* never longer than it was; never a body it did not write */
    assert_int_equal(pgw_payload_fcm_set_ttl(buf, &len, 99999), PGW_ERR_INVAL);
    assert_int_equal(pgw_payload_fcm_set_ttl(buf, &len, -1), PGW_ERR_INVAL);
    len = strlen("{\"message\":{}}");
    assert_int_equal(
        pgw_payload_fcm_set_ttl((char[]){"{\"message\":{}}"}, &len, 5),
        PGW_ERR_INVAL);
    pgw_payload_fcm_free(p);
    cJSON_Delete(content);
}

static void test_token_escaping(void **state)
{
    cJSON *content = cJSON_Parse("{\"alert\":\"a\"}");
    struct pgw_fcm_payload *p = NULL;
    char buf[512];
    size_t len;
    cJSON *parsed;

    (void)state;
    assert_int_equal(pgw_payload_fcm_build(content, EXP, TS, VALID, &p, NULL),
                     0);
    assert_int_equal(
        pgw_payload_fcm_body(p, "a\"b\\c\n\x01", buf, sizeof(buf), &len), 0);
    assert_int_equal(len, pgw_payload_fcm_body_len(p, "a\"b\\c\n\x01"));
    parsed = cJSON_ParseWithLength(buf, len);
    assert_non_null(parsed);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(parsed, "message"), "token")
            ->valuestring,
        "a\"b\\c\n\x01");
    cJSON_Delete(parsed);
    assert_int_equal(pgw_payload_fcm_body(p, "tok", buf, 20, &len),
                     PGW_ERR_TOO_LARGE);
    pgw_payload_fcm_free(p);
    cJSON_Delete(content);
}

static void test_long_alert_shortened(void **state)
{
    size_t n = 2000;
    char *json = malloc(n * 7 + 64);
    size_t o;
    cJSON *content, *parsed;
    struct pgw_fcm_payload *p = NULL;
    char buf[8192];
    size_t len;
    const char *body;

    (void)state;
    o = (size_t)sprintf(json, "{\"alert\":\"");
    for (size_t i = 0; i < n; i++) {
        memcpy(json + o, "\xe4\xb8\xad\xf0\x9f\x98\x80", 7);
        o += 7;
    }
    sprintf(json + o, "\",\"k\":\"v\"}");
    content = cJSON_Parse(json);
    assert_int_equal(pgw_payload_fcm_build(content, EXP, TS, VALID, &p, NULL),
                     0);
    assert_true(p->shortened);
    assert_true(p->head_len + p->tail_len <= PGW_PAYLOAD_FCM_MAX_BODY);
    assert_int_equal(pgw_payload_fcm_body(p, "tok", buf, sizeof(buf), &len), 0);
    assert_true(pgw_utf8_valid(buf, len));
    parsed = cJSON_ParseWithLength(buf, len);
    assert_non_null(parsed);
    body = cJSON_GetObjectItem(
               cJSON_GetObjectItem(cJSON_GetObjectItem(parsed, "message"),
                                   "notification"),
               "body")
               ->valuestring;
    assert_string_equal(body + strlen(body) - 3, "\xe2\x80\xa6");
    cJSON_Delete(parsed);
    pgw_payload_fcm_free(p);
    p = NULL;
    cJSON_Delete(content);

    /* Silent: the alert in data is what gets shortened. */
    memcpy(json, "{\"silent\":1,\"alert\":\"", 21);
    o = 21;
    for (size_t i = 0; i < n; i++) {
        memcpy(json + o, "\xe4\xb8\xad\xf0\x9f\x98\x80", 7);
        o += 7;
    }
    sprintf(json + o, "\"}");
    content = cJSON_Parse(json);
    assert_non_null(content);
    assert_int_equal(pgw_payload_fcm_build(content, EXP, TS, VALID, &p, NULL),
                     0);
    assert_true(p->silent);
    assert_true(p->shortened);
    pgw_payload_fcm_free(p);
    cJSON_Delete(content);
    free(json);
}

static void test_custom_data_too_large(void **state)
{
    char json[8000];
    cJSON *content;
    struct pgw_fcm_payload *p = NULL;
    const char *reason = NULL;

    (void)state;
    snprintf(json, sizeof(json), "{\"alert\":\"hi\",\"blob\":\"%05000d\"}", 1);
    content = cJSON_Parse(json);
    assert_int_equal(
        pgw_payload_fcm_build(content, EXP, TS, VALID, &p, &reason),
        PGW_ERR_TOO_LARGE);
    assert_string_equal(reason, "payload_too_large");
    assert_null(p);
    cJSON_Delete(content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fcm_table),
        cmocka_unit_test(test_first_dropped),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_token_escaping),
        cmocka_unit_test(test_set_ttl_for_a_retry),
        cmocka_unit_test(test_long_alert_shortened),
        cmocka_unit_test(test_custom_data_too_large),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
