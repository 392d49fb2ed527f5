/* Tests of event parsing and validation (the reader: test_util_json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "event.h"

#define BASE                                                                   \
    "\"fromPeer\":\"Tom\",\"convId\":\"c1\",\"timestamp\":1700000000000"

struct bad_case {
    const char *name;
    const char *json;
    const char *field;  /* expected field */
    const char *reason; /* substring of the reason */
};

static const struct bad_case bad_cases[] = {
    {"not json", "{", "", "JSON"},
    {"not an object", "[1]", "", "object"},
    {"trailing garbage", "{" BASE ",\"offlinePeers\":[\"a\"]} x", "",
     "trailing"},
    {"fromPeer missing",
     "{\"convId\":\"c\",\"offlinePeers\":[\"a\"],\"timestamp\":1}", "fromPeer",
     "required"},
    {"fromPeer not string",
     "{\"fromPeer\":1,\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":1}",
     "fromPeer", "string"},
    {"fromPeer empty",
     "{\"fromPeer\":\"\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":1}",
     "fromPeer", "empty"},
    {"convId missing",
     "{\"fromPeer\":\"a\",\"offlinePeers\":[\"a\"],\"timestamp\":1}", "convId",
     "required"},
    {"offlinePeers missing", "{" BASE "}", "offlinePeers", "required"},
    {"offlinePeers empty", "{" BASE ",\"offlinePeers\":[]}", "offlinePeers",
     "empty"},
    {"offlinePeers not array", "{" BASE ",\"offlinePeers\":\"a\"}",
     "offlinePeers", "array"},
    {"offlinePeers number item", "{" BASE ",\"offlinePeers\":[\"a\",2]}",
     "offlinePeers", "array of strings"},
    {"offlinePeers empty name", "{" BASE ",\"offlinePeers\":[\"\"]}",
     "offlinePeers", "bytes"},
    {"offlinePeers too many",
     "{" BASE ",\"offlinePeers\":[\"a\",\"b\",\"c\","
     "\"d\"]}",
     "offlinePeers", "more than 3"},
    {"timestamp missing",
     "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"]}",
     "timestamp", "required"},
    {"timestamp string",
     "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":\"1\"}",
     "timestamp", "integer"},
    {"timestamp fraction",
     "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":1.5}",
     "timestamp", "integer"},
    {"timestamp negative",
     "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":-1}",
     "timestamp", "integer"},
    {"timestamp huge",
     "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
     "\"timestamp\":1e300}",
     "timestamp", "integer"},
    {"content not string", "{" BASE ",\"offlinePeers\":[\"a\"],\"content\":{}}",
     "content", "string"},
    {"mentionAll not bool",
     "{" BASE ",\"offlinePeers\":[\"a\"],\"mentionAll\":1}", "mentionAll",
     "boolean"},
    {"mentionOfflinePeers not array",
     "{" BASE ",\"offlinePeers\":[\"a\"],\"mentionOfflinePeers\":{}}",
     "mentionOfflinePeers", "array"},
    {"msgId number", "{" BASE ",\"offlinePeers\":[\"a\"],\"msgId\":5}", "msgId",
     "string"},
    {"mutedPeers item",
     "{" BASE ",\"offlinePeers\":[\"a\"],\"mutedPeers\":[1]}", "mutedPeers",
     "array"},
    {"invalid utf8", "{" BASE ",\"offlinePeers\":[\"\xff\"]}", "", "UTF-8"},
    {"overlong utf8", "{" BASE ",\"offlinePeers\":[\"\xc0\xaf\"]}", "",
     "UTF-8"},
    {"surrogate utf8", "{" BASE ",\"offlinePeers\":[\"\xed\xa0\x80\"]}", "",
     "UTF-8"},
    {"above 10ffff", "{" BASE ",\"offlinePeers\":[\"\xf4\x90\x80\x80\"]}", "",
     "UTF-8"},
    {"lone surrogate escape", "{" BASE ",\"offlinePeers\":[\"\\ud800\"]}", "",
     "JSON"},
    {"nul escape", "{" BASE ",\"offlinePeers\":[\"a\\u0000b\"]}", "", "u0000"},
    {"raw control char", "{" BASE ",\"offlinePeers\":[\"a\tb\"]}", "",
     "control"},
    {"too deep",
     "{" BASE ",\"offlinePeers\":[\"a\"],\"pushData\":"
     "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
     "]]"
     "}}",
     "", "deeply"},
};

static void test_bad_events(void **state)
{
    struct pgw_event_limits lim = {3, 1 << 20, 0};

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct pgw_event *ev = NULL;
        struct pgw_json_error err;
        int rc;

        memset(&err, 0, sizeof(err));
        rc = pgw_event_parse(c->json, strlen(c->json), &lim, &ev, &err);
        if (rc != PGW_ERR_INVAL || strcmp(err.field, c->field) != 0 ||
            !strstr(err.reason, c->reason))
            fail_msg("case '%s': rc %d field '%s' reason '%s'", c->name, rc,
                     err.field, err.reason);
        assert_null(ev);
    }
}

static void test_body_too_large(void **state)
{
    struct pgw_event_limits lim = {10, 20, 0};
    const char *json = "{" BASE ",\"offlinePeers\":[\"a\"]}";
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    (void)state;
    assert_int_equal(pgw_event_parse(json, strlen(json), &lim, &ev, &err),
                     PGW_ERR_TOO_LARGE);
}

static void test_full_event(void **state)
{
    const char *json =
        "{\"fromPeer\":\"Tom\",\"convId\":\"5e\",\"offlinePeers\":[\"Jerry\","
        "\"Bob\",\"Jerry\",\"Ann\",\"Bob\"],\"timestamp\":1700000000123,"
        "\"content\":\"{\\\"_lctext\\\":\\\"hi\\\",\\\"_lctype\\\":-1}\","
        "\"mentionAll\":false,\"mentionOfflinePeers\":[\"Bob\",\"Bob\"],"
        "\"pushData\":\"{\\\"alert\\\":\\\"x\\\"}\",\"msgId\":\"m1\","
        "\"mutedPeers\":[\"Ann\"],\"unknown\":{\"x\":1}}";
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    (void)state;
    assert_int_equal(pgw_event_parse(json, strlen(json), NULL, &ev, &err), 0);
    assert_string_equal(ev->from_peer, "Tom");
    assert_string_equal(ev->conv_id, "5e");
    assert_int_equal(ev->n_offline_peers, 3);
    assert_string_equal(ev->offline_peers[0], "Jerry");
    assert_string_equal(ev->offline_peers[1], "Bob");
    assert_string_equal(ev->offline_peers[2], "Ann");
    assert_true(ev->timestamp_ms == 1700000000123LL);
    assert_string_equal(ev->content, "{\"_lctext\":\"hi\",\"_lctype\":-1}");
    assert_false(ev->mention_all);
    assert_int_equal(ev->n_mention_offline_peers, 1);
    assert_non_null(ev->push_data);
    assert_string_equal(
        cJSON_GetObjectItemCaseSensitive(ev->push_data, "alert")->valuestring,
        "x");
    assert_string_equal(ev->msg_id, "m1");
    assert_int_equal(ev->n_muted_peers, 1);
    pgw_event_free(ev);
}

static void test_minimal_and_nulls(void **state)
{
    const char *json = "{" BASE ",\"offlinePeers\":[\"a\"],\"content\":null,"
                       "\"pushData\":null,\"mentionAll\":null,"
                       "\"pushData\":{\"alert\":\"obj\"}}";
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    (void)state;
    assert_int_equal(pgw_event_parse(json, strlen(json), NULL, &ev, &err), 0);
    assert_null(ev->content);
    /* The first of duplicate keys wins, and null means absent. */
    assert_null(ev->push_data);
    assert_null(ev->msg_id);
    assert_false(ev->mention_all);
    pgw_event_free(ev);
    /* An object first wins over what follows it, object or not. */
    {
        const char *twice[] = {
            "{" BASE ",\"offlinePeers\":[\"a\"],\"pushData\":{\"alert\":"
            "\"first\"},\"pushData\":{\"alert\":\"second\"}}",
            "{" BASE ",\"offlinePeers\":[\"a\"],\"pushData\":{\"alert\":"
            "\"first\"},\"pushData\":7}",
        };

        for (size_t i = 0; i < sizeof(twice) / sizeof(twice[0]); i++) {
            const cJSON *a;

            assert_int_equal(
                pgw_event_parse(twice[i], strlen(twice[i]), NULL, &ev, &err),
                0);
            a = cJSON_GetObjectItemCaseSensitive(ev->push_data, "alert");
            assert_true(cJSON_IsString(a));
            assert_string_equal(a->valuestring, "first");
            assert_null(ev->push_data_ignored);
            pgw_event_free(ev);
        }
    }
}

static void test_pushdata_object_and_unicode(void **state)
{
    const char *json = "{" BASE ",\"offlinePeers\":[\"\xe5\xbc\xa0\xe4\xb8\x89"
                       "\",\"\\u00e9\\ud83d\\ude00\"],"
                       "\"pushData\":{\"alert\":\"\xf0\x9f\x98\x80\"}}";
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    (void)state;
    assert_int_equal(pgw_event_parse(json, strlen(json), NULL, &ev, &err), 0);
    assert_string_equal(ev->offline_peers[0], "\xe5\xbc\xa0\xe4\xb8\x89");
    assert_string_equal(ev->offline_peers[1], "\xc3\xa9\xf0\x9f\x98\x80");
    assert_true(cJSON_IsObject(ev->push_data));
    pgw_event_free(ev);
}

/* pushData of every type: never a reason to refuse the event (DESIGN §6). */
static void test_pushdata_forms(void **state)
{
    static const struct {
        const char *push_data; /* JSON text of the member */
        const char *want;      /* the content, printed; NULL: none */
        const char *ignored;   /* push_data_ignored */
    } cases[] = {
        {"{\"alert\":\"o\"}", "{\"alert\":\"o\"}", NULL},
        {"\"{\\\"alert\\\":\\\"s\\\"}\"", "{\"alert\":\"s\"}", NULL},
        /* the guide's Java example: plain text */
        {"\"Custom message for push notification.\"",
         "{\"alert\":\"Custom message for push notification.\"}", NULL},
        {"\"[1]\"", "{\"alert\":\"[1]\"}", NULL},
        {"\"\"", "{\"alert\":\"\"}", NULL},
        {"3", NULL, "a number"},
        {"[1,2]", NULL, "an array"},
        {"true", NULL, "a boolean"},
        {"null", NULL, NULL},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        char json[512];
        struct pgw_event *ev = NULL;
        struct pgw_json_error err;
        char *got;

        snprintf(json, sizeof(json),
                 "{" BASE ",\"offlinePeers\":[\"a\"],\"pushData\":%s}",
                 cases[i].push_data);
        if (pgw_event_parse(json, strlen(json), NULL, &ev, &err) != 0)
            fail_msg("pushData %s refused: %s %s", cases[i].push_data,
                     err.field, err.reason);
        if (!cases[i].want) {
            assert_null(ev->push_data);
        } else {
            got = cJSON_PrintUnformatted(ev->push_data);
            assert_non_null(got);
            if (strcmp(got, cases[i].want) != 0)
                fail_msg("pushData %s: got %s", cases[i].push_data, got);
            free(got);
        }
        if (cases[i].ignored)
            assert_string_equal(ev->push_data_ignored, cases[i].ignored);
        else
            assert_null(ev->push_data_ignored);
        pgw_event_free(ev);
    }
}

/* A timestamp in seconds, or more than a day ahead of intake: 400 naming
 * the field (a push would expire at once, or live past its 7 days). */
static void test_timestamp_bounds(void **state)
{
    const int64_t now = 1700000000000LL;
    struct pgw_event_limits lim = {10, 1 << 20, now};
    static const struct {
        int64_t ts;
        int ok;
        const char *why;
    } cases[] = {
        {1700000000, 0, "looks like seconds"},
        {99999999999LL, 0, "looks like seconds"},
        {1000000000000LL, 1, NULL},
        {1700000000000LL + 24LL * 3600 * 1000, 1, NULL},
        {1700000000000LL + 24LL * 3600 * 1000 + 1, 0, "a day in the future"},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        char json[256];
        struct pgw_event *ev = NULL;
        struct pgw_json_error err;
        int rc;

        snprintf(json, sizeof(json),
                 "{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":"
                 "[\"b\"],\"timestamp\":%lld}",
                 (long long)cases[i].ts);
        rc = pgw_event_parse(json, strlen(json), &lim, &ev, &err);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            pgw_event_free(ev);
            continue;
        }
        assert_int_equal(rc, PGW_ERR_INVAL);
        assert_string_equal(err.field, "timestamp");
        assert_non_null(strstr(err.reason, cases[i].why));
    }
    /* events read back from the store (now_ms 0) are not judged again */
    lim.now_ms = 0;
    {
        const char *json = "{\"fromPeer\":\"a\",\"convId\":\"c\","
                           "\"offlinePeers\":[\"b\"],\"timestamp\":"
                           "4102444800000}";
        struct pgw_event *ev = NULL;
        struct pgw_json_error err;

        assert_int_equal(pgw_event_parse(json, strlen(json), &lim, &ev, &err),
                         0);
        pgw_event_free(ev);
    }
}

static void test_many_peers_dedup(void **state)
{
    struct pgw_event_limits lim = {10000, 1 << 20, 0};
    size_t cap = 200000, len = 0;
    char *buf = malloc(cap);
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;

    (void)state;
    assert_non_null(buf);
    len +=
        (size_t)snprintf(buf + len, cap - len, "{" BASE ",\"offlinePeers\":[");
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s\"p%d\"", i ? "," : "",
                                i % 5000);
    len += (size_t)snprintf(buf + len, cap - len, "]}");
    assert_int_equal(pgw_event_parse(buf, len, &lim, &ev, &err), 0);
    assert_int_equal(ev->n_offline_peers, 5000);
    assert_string_equal(ev->offline_peers[4999], "p4999");
    pgw_event_free(ev);
    free(buf);
}

static void test_peerset(void **state)
{
    struct pgw_event_peerset set;
    char names[1000][16];

    (void)state;
    pgw_event_peerset_init(&set);
    assert_false(pgw_event_peerset_has(&set, "x"));
    for (int i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof(names[i]), "n%d", i);
        assert_int_equal(pgw_event_peerset_add(&set, names[i]), 1);
    }
    assert_int_equal(pgw_event_peerset_add(&set, "n5"), 0);
    assert_true(pgw_event_peerset_has(&set, "n999"));
    assert_false(pgw_event_peerset_has(&set, "n1000"));
    assert_int_equal(set.n, 1000);
    pgw_event_peerset_release(&set);
}

static void test_hook_request(void **state)
{
    const char *json = "{" BASE ",\"offlinePeers\":[\"a\",\"b\"],"
                       "\"content\":\"q\\\"\",\"mentionAll\":true,"
                       "\"mutedPeers\":[\"a\"],\"msgId\":\"m\"}";
    struct pgw_event *ev = NULL;
    struct pgw_json_error err;
    char *body = NULL;

    (void)state;
    assert_int_equal(pgw_event_parse(json, strlen(json), NULL, &ev, &err), 0);
    assert_int_equal(pgw_event_hook_request(ev, &body), 0);
    assert_string_equal(
        body, "{\"fromPeer\":\"Tom\",\"convId\":\"c1\",\"offlinePeers\":"
              "[\"a\",\"b\"],\"content\":\"q\\\"\",\"timestamp\":"
              "1700000000000,\"mentionAll\":true,\"mentionOfflinePeers\":[]}");
    free(body);
    pgw_event_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_events),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_full_event),
        cmocka_unit_test(test_minimal_and_nulls),
        cmocka_unit_test(test_pushdata_object_and_unicode),
        cmocka_unit_test(test_pushdata_forms),
        cmocka_unit_test(test_timestamp_bounds),
        cmocka_unit_test(test_many_peers_dedup),
        cmocka_unit_test(test_peerset),
        cmocka_unit_test(test_hook_request),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
