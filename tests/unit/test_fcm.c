/*
 * The pure part of fcm: FCM answers (status, Google error JSON,
 * Retry-After) mapped to outcomes per DESIGN §9, table-driven.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "fcm.h"

#define FCMERR(code, st, status, extra)                                        \
    "{\"error\":{\"code\":" #code ",\"message\":\"m-" status                   \
    "\",\"status\":\"" status "\",\"details\":[" extra "]}}"
#define DETAIL(ec)                                                             \
    "{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\","      \
    "\"errorCode\":\"" ec "\"}"
#define BADREQ                                                                 \
    "{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\","                \
    "\"fieldViolations\":[{\"field\":\"message.data[0].value\","               \
    "\"description\":\"Invalid value at 'message.data[0].value' "              \
    "(TYPE_STRING), 12\"}]}"

static void test_classify(void **state)
{
    static const struct {
        int status;
        const char *body;
        int64_t retry_after;
        enum pgw_outcome_kind kind;
        const char *reason;
        int64_t want_retry_ms;
        const char *provider_id;
    } cases[] = {
        {200, "{\"name\":\"projects/p/messages/0:123\"}", -1,
         PGW_OUTCOME_DELIVERED, "", 0, "projects/p/messages/0:123"},
        {200, "", -1, PGW_OUTCOME_DELIVERED, "", 0, ""},
        {404, FCMERR(404, x, "NOT_FOUND", DETAIL("UNREGISTERED")), -1,
         PGW_OUTCOME_INVALIDATE, "UNREGISTERED", 0, ""},
        {403, FCMERR(403, x, "PERMISSION_DENIED", DETAIL("SENDER_ID_MISMATCH")),
         -1, PGW_OUTCOME_INVALIDATE, "SENDER_ID_MISMATCH", 0, ""},
        /* Details of other types are skipped to find the FcmError. */
        {404,
         FCMERR(404, x, "NOT_FOUND",
                "{\"@type\":\"type.googleapis.com/"
                "x\",\"errorCode\":\"Z\"}," DETAIL("UNREGISTERED")),
         -1, PGW_OUTCOME_INVALIDATE, "UNREGISTERED", 0, ""},
        /* A token that is no FCM token: invalidated; any other
         * INVALID_ARGUMENT is the message's fault, the device stays. */
        {400,
         "{\"error\":{\"code\":400,\"message\":\"The registration token is "
         "not a valid FCM registration token\",\"status\":"
         "\"INVALID_ARGUMENT\",\"details\":[" DETAIL("INVALID_ARGUMENT") "]}}",
         -1, PGW_OUTCOME_INVALIDATE, "INVALID_REGISTRATION", 0, ""},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"Invalid value at "
         "'message.data[0].value'\",\"status\":\"INVALID_ARGUMENT\","
         "\"details\":[" DETAIL("INVALID_ARGUMENT") "]}}",
         -1, PGW_OUTCOME_FINAL, "INVALID_ARGUMENT", 0, ""},
        /* A 404 that is not about the token is not an invalidation. */
        {404, FCMERR(404, x, "NOT_FOUND", ""), -1, PGW_OUTCOME_FINAL,
         "NOT_FOUND", 0, ""},
        {429, FCMERR(429, x, "RESOURCE_EXHAUSTED", DETAIL("QUOTA_EXCEEDED")),
         -1, PGW_OUTCOME_RETRY, "QUOTA_EXCEEDED", 60000, ""},
        {429, FCMERR(429, x, "RESOURCE_EXHAUSTED", DETAIL("QUOTA_EXCEEDED")),
         5000, PGW_OUTCOME_RETRY, "QUOTA_EXCEEDED", 60000, ""},
        {429, FCMERR(429, x, "RESOURCE_EXHAUSTED", DETAIL("QUOTA_EXCEEDED")),
         120000, PGW_OUTCOME_RETRY, "QUOTA_EXCEEDED", 120000, ""},
        {429, "", -1, PGW_OUTCOME_RETRY, "HTTP_429", 60000, ""},
        {503, FCMERR(503, x, "UNAVAILABLE", DETAIL("UNAVAILABLE")), 7000,
         PGW_OUTCOME_RETRY, "UNAVAILABLE", 7000, ""},
        {503, FCMERR(503, x, "UNAVAILABLE", DETAIL("UNAVAILABLE")), -1,
         PGW_OUTCOME_RETRY, "UNAVAILABLE", 0, ""},
        {500, FCMERR(500, x, "INTERNAL", DETAIL("INTERNAL")), -1,
         PGW_OUTCOME_RETRY, "INTERNAL", 0, ""},
        {502, "<html>bad gateway</html>", -1, PGW_OUTCOME_RETRY, "HTTP_502", 0,
         ""},
        {400, FCMERR(400, x, "INVALID_ARGUMENT", DETAIL("INVALID_ARGUMENT")),
         -1, PGW_OUTCOME_FINAL, "INVALID_ARGUMENT", 0, ""},
        /* Schema errors carry a BadRequest detail only: error.status. */
        {400, FCMERR(400, x, "INVALID_ARGUMENT", BADREQ), -1, PGW_OUTCOME_FINAL,
         "INVALID_ARGUMENT", 0, ""},
        {401,
         FCMERR(401, x, "UNAUTHENTICATED", DETAIL("THIRD_PARTY_AUTH_ERROR")),
         -1, PGW_OUTCOME_FINAL, "THIRD_PARTY_AUTH_ERROR", 0, ""},
        {401, FCMERR(401, x, "UNAUTHENTICATED", DETAIL("APNS_AUTH_ERROR")), -1,
         PGW_OUTCOME_FINAL, "APNS_AUTH_ERROR", 0, ""},
        /* A plain 401 after the one renewal: retry later. */
        {401, FCMERR(401, x, "UNAUTHENTICATED", ""), -1, PGW_OUTCOME_RETRY,
         "UNAUTHENTICATED", 0, ""},
        {403, FCMERR(403, x, "PERMISSION_DENIED", ""), -1, PGW_OUTCOME_FINAL,
         "PERMISSION_DENIED", 0, ""},
        {413, "", -1, PGW_OUTCOME_FINAL, "HTTP_413", 0, ""},
        {400, "not json", -1, PGW_OUTCOME_FINAL, "HTTP_400", 0, ""},
        {400, "{\"error\":\"x\"}", -1, PGW_OUTCOME_FINAL, "HTTP_400", 0, ""},
        /* Odd characters from the peer never reach the reason. */
        {400, FCMERR(400, x, "BAD\\\"{} X", ""), -1, PGW_OUTCOME_FINAL,
         "BAD____X", 0, ""},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        struct pgw_outcome o;
        char msg[128];

        memset(&o, 0x55, sizeof(o));
        pgw_fcm_classify(cases[i].status, cases[i].body, strlen(cases[i].body),
                         cases[i].retry_after, &o, msg, sizeof(msg));
        assert_int_equal(o.kind, cases[i].kind);
        assert_int_equal(o.status, cases[i].status);
        assert_string_equal(o.reason, cases[i].reason);
        assert_int_equal(o.retry_after_ms, cases[i].want_retry_ms);
        assert_string_equal(o.provider_id, cases[i].provider_id);
        assert_int_equal(o.invalid_since_ms, 0);
    }
}

static void test_message(void **state)
{
    struct pgw_outcome o;
    char msg[16];
    const char *b = FCMERR(400, x, "INVALID_ARGUMENT", BADREQ);

    (void)state;
    pgw_fcm_classify(400, b, strlen(b), -1, &o, NULL, 0);
    assert_int_equal(o.kind, PGW_OUTCOME_FINAL);
    pgw_fcm_classify(400, b, strlen(b), -1, &o, msg, sizeof(msg));
    assert_string_equal(msg, "m-INVALID_ARGUM"); /* truncated, terminated */
    pgw_fcm_classify(400, NULL, 0, -1, &o, msg, sizeof(msg));
    assert_string_equal(msg, "");
    assert_string_equal(o.reason, "HTTP_400");
}

static void test_token_rejected(void **state)
{
    const char *plain = FCMERR(401, x, "UNAUTHENTICATED", "");
    const char *third =
        FCMERR(401, x, "UNAUTHENTICATED", DETAIL("THIRD_PARTY_AUTH_ERROR"));

    (void)state;
    assert_true(pgw_fcm_is_token_rejected(401, plain, strlen(plain)));
    assert_true(pgw_fcm_is_token_rejected(401, NULL, 0));
    assert_false(pgw_fcm_is_token_rejected(401, third, strlen(third)));
    assert_false(pgw_fcm_is_token_rejected(403, plain, strlen(plain)));
}

static void test_transport(void **state)
{
    static const struct {
        enum pgw_h2_result_kind kind;
        const char *reason;
    } cases[] = {
        {PGW_H2_REFUSED, "refused"},
        {PGW_H2_TIMEOUT, "timeout"},
        {PGW_H2_CONN_LOST, "connection_lost"},
        {PGW_H2_BUSY, "busy"},
        {PGW_H2_CONNECT_FAILED, "connect_failed"},
        {PGW_H2_CANCELLED, "cancelled"},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        struct pgw_outcome o;
        pgw_fcm_classify_transport(cases[i].kind, &o);
        assert_int_equal(o.kind, PGW_OUTCOME_RETRY);
        assert_int_equal(o.status, 0);
        assert_string_equal(o.reason, cases[i].reason);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_token_rejected),
        cmocka_unit_test(test_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
