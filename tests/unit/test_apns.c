/* Unit tests for apns: the answer → outcome mapping of DESIGN §9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "apns.h"
#include "outcome.h"
#include "pushgw.h"
#include "util/retry_after.h"

/* 2023-11-14T22:13:20Z */
#define NOW 1700000000000LL

/* Apple's topic per push type (PROTOCOLS.md, apns-topic). */
static void test_topic_suffix(void **state)
{
    (void)state;
    assert_string_equal(pgw_apns_topic_suffix("voip"), ".voip");
    assert_string_equal(pgw_apns_topic_suffix("complication"), ".complication");
    assert_string_equal(pgw_apns_topic_suffix("fileprovider"),
                        ".pushkit.fileprovider");
    assert_string_equal(pgw_apns_topic_suffix("location"), ".location-query");
    assert_string_equal(pgw_apns_topic_suffix("liveactivity"),
                        ".push-type.liveactivity");
    assert_null(pgw_apns_topic_suffix("alert"));
    assert_null(pgw_apns_topic_suffix("background"));
    assert_null(pgw_apns_topic_suffix("widgets"));
    assert_null(pgw_apns_topic_suffix(NULL));
    assert_true(pgw_apns_topic_has_suffix("com.a.voip", ".voip"));
    assert_false(pgw_apns_topic_has_suffix("com.a", ".voip"));
    assert_false(pgw_apns_topic_has_suffix("voip", ".voip"));
}

static void test_classify_table(void **state)
{
    static const struct {
        int status;
        const char *body;
        const char *retry_after;
        enum pgw_outcome_kind kind;
        const char *reason;
        int64_t since_ms;
        int64_t retry_ms;
    } cases[] = {
        {200, NULL, NULL, PGW_OUTCOME_DELIVERED, "", 0, 0},
        {410, "{\"reason\":\"Unregistered\",\"timestamp\":1700000000123}", NULL,
         PGW_OUTCOME_INVALIDATE, "Unregistered", 1700000000123LL, 0},
        {410, "{\"reason\":\"ExpiredToken\"}", NULL, PGW_OUTCOME_INVALIDATE,
         "ExpiredToken", 0, 0},
        {400, "{\"reason\":\"BadDeviceToken\"}", NULL, PGW_OUTCOME_INVALIDATE,
         "BadDeviceToken", 0, 0},
        {400, "{\"reason\":\"DeviceTokenNotForTopic\"}", NULL,
         PGW_OUTCOME_INVALIDATE, "DeviceTokenNotForTopic", 0, 0},
        {400, "{\"reason\":\"BadTopic\"}", NULL, PGW_OUTCOME_FINAL, "BadTopic",
         0, 0},
        {413, "{\"reason\":\"PayloadTooLarge\"}", NULL, PGW_OUTCOME_FINAL,
         "PayloadTooLarge", 0, 0},
        {403, "{\"reason\":\"ExpiredProviderToken\"}", NULL, PGW_OUTCOME_RETRY,
         "ExpiredProviderToken", 0, 0},
        {403, "{\"reason\":\"InvalidProviderToken\"}", NULL, PGW_OUTCOME_FINAL,
         "InvalidProviderToken", 0, 0},
        {429, "{\"reason\":\"TooManyRequests\"}", "30", PGW_OUTCOME_RETRY,
         "TooManyRequests", 0, 30000},
        {503, "{\"reason\":\"ServiceUnavailable\"}", "5", PGW_OUTCOME_RETRY,
         "ServiceUnavailable", 0, 5000},
        {500, NULL, "junk", PGW_OUTCOME_RETRY, "http_500", 0, 0},
        {502, "not json", NULL, PGW_OUTCOME_RETRY, "http_502", 0, 0},
        {503, "{}", "999999999", PGW_OUTCOME_RETRY, "http_503", 0, 86400000},
        /* the date form, as FCM reads it */
        {503, "{}", "Tue, 14 Nov 2023 22:14:20 GMT", PGW_OUTCOME_RETRY,
         "http_503", 0, 60000},
        /* a timestamp on a non-410 answer is not an invalidation time */
        {400, "{\"reason\":\"BadPriority\",\"timestamp\":5}", NULL,
         PGW_OUTCOME_FINAL, "BadPriority", 0, 0},
    };
    struct pgw_outcome o;
    size_t i;

    (void)state;
    for (i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        pgw_apns_classify(cases[i].status, cases[i].body,
                          cases[i].body ? strlen(cases[i].body) : 0,
                          "11111111-2222-3333-4444-555555555555",
                          pgw_retry_after_parse(cases[i].retry_after, NOW), &o);
        assert_int_equal(o.kind, cases[i].kind);
        assert_int_equal(o.status, cases[i].status);
        assert_string_equal(o.reason, cases[i].reason);
        assert_int_equal(o.invalid_since_ms, cases[i].since_ms);
        assert_int_equal(o.retry_after_ms, cases[i].retry_ms);
        assert_string_equal(o.provider_id,
                            "11111111-2222-3333-4444-555555555555");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_topic_suffix),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
