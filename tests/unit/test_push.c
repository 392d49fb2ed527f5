/*
 * push.c: the per-device step serve and render share (each outcome a
 * device can get), the retry row codec, and retry planning (backoff,
 * cap, jitter bounds, Retry-After, FCM's 429, the validity cut-off).
 */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "event.h"
#include "fcm.h"
#include "push.h"
#include "resolve.h"

#define TS_2100 4102444800000LL /* event timestamp: 2100-01-01 */
#define NOW_S (TS_2100 / 1000 + 60)

static char team1[] = "TEAM1", team2[] = "TEAM2", kid[] = "K", kf[] = "k.p8";
static struct pgw_apns_team teams[] = {{team1, kid, kf}, {team2, kid, kf}};
static char chat[] = "chat", nokeys[] = "nokeys", topic[] = "com.example";

struct fixture {
    struct pgw_app apps[2];
    struct pgw_config cfg;
    struct pgw_push_app keyed, bare;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    f->apps[0].id = chat;
    f->apps[0].apns_topic = topic;
    f->apps[0].apns_team_id = team1;
    f->apps[0].apns_teams = teams;
    f->apps[0].n_apns_teams = 2;
    f->apps[0].fcm_service_account_file = kf;
    f->apps[1].id = nokeys;
    f->cfg.apps = f->apps;
    f->cfg.n_apps = 2;
    f->keyed = (struct pgw_push_app){&f->cfg, &f->apps[0], team1, topic, true};
    f->bare = (struct pgw_push_app){&f->cfg, &f->apps[1], NULL, NULL, false};
}

static struct pgw_resolved *resolve(const char *json)
{
    struct pgw_event *ev = NULL;
    struct pgw_resolved *res = NULL;
    struct pgw_json_error err;

    assert_int_equal(pgw_event_parse(json, strlen(json), NULL, &ev, &err), 0);
    assert_int_equal(pgw_resolve_event(ev, NULL, NULL, 604800, &res, &err), 0);
    pgw_event_free(ev);
    return res;
}

static const char *const jerry[] = {"Jerry"};

static struct pgw_installation device(int64_t id, enum pgw_platform platform,
                                      const char *team)
{
    struct pgw_installation in = {
        .id = id,
        .platform = platform,
        .device_token = platform == PGW_PLATFORM_IOS ? "a1b2c3" : "fcm-tok",
        .channels = jerry,
        .n_channels = 1,
        .apns_team_id = team,
    };
    return in;
}

struct step_case {
    const char *name;
    const char *push_data; /* the event's pushData */
    int64_t now_s;
    bool keyed;
    enum pgw_platform platform;
    const char *team; /* the device's */
    enum pgw_push_result want;
    const char *reason; /* PGW_PUSH_FAIL */
    bool expired;
};

static const struct step_case step_cases[] = {
    {"ios sent", "{\"alert\":\"hi\"}", NOW_S, true, PGW_PLATFORM_IOS, NULL,
     PGW_PUSH_SEND, NULL, false},
    {"android sent", "{\"alert\":\"hi\"}", NOW_S, true, PGW_PLATFORM_ANDROID,
     NULL, PGW_PUSH_SEND, NULL, false},
    {"second team", "{\"alert\":\"hi\"}", NOW_S, true, PGW_PLATFORM_IOS,
     "TEAM2", PGW_PUSH_SEND, NULL, false},
    {"no apns key", "{\"alert\":\"hi\"}", NOW_S, false, PGW_PLATFORM_IOS, NULL,
     PGW_PUSH_FAIL, "no_apns_team", false},
    {"no fcm account", "{\"alert\":\"hi\"}", NOW_S, false, PGW_PLATFORM_ANDROID,
     NULL, PGW_PUSH_FAIL, "no_fcm_account", false},
    {"unknown team", "{\"alert\":\"hi\"}", NOW_S, true, PGW_PLATFORM_IOS,
     "TEAM9", PGW_PUSH_FAIL, "unknown_team", false},
    {"bad profile", "{\"alert\":\"hi\",\"_profile\":\"staging\"}", NOW_S, true,
     PGW_PLATFORM_IOS, NULL, PGW_PUSH_FAIL, "bad_profile", false},
    {"expired ios", "{\"alert\":\"hi\"}", NOW_S + 8 * 86400, true,
     PGW_PLATFORM_IOS, NULL, PGW_PUSH_FAIL, "expired", true},
    {"expired android", "{\"alert\":\"hi\"}", NOW_S + 8 * 86400, true,
     PGW_PLATFORM_ANDROID, NULL, PGW_PUSH_FAIL, "expired", true},
    {"nothing for ios", "{\"_profile\":\"dev\"}", NOW_S, true, PGW_PLATFORM_IOS,
     NULL, PGW_PUSH_FAIL, "no_content", false},
    {"nothing for android", "{\"ios\":{\"alert\":\"hi\"}}", NOW_S, true,
     PGW_PLATFORM_ANDROID, NULL, PGW_PUSH_FAIL, "no_content", false},
    {"loc-key only for android", "{\"alert\":{\"loc-key\":\"K\"}}", NOW_S, true,
     PGW_PLATFORM_ANDROID, NULL, PGW_PUSH_FAIL, "no_content", false},
    {"badge only", "{\"badge\":\"Increment\"}", NOW_S, true, PGW_PLATFORM_IOS,
     NULL, PGW_PUSH_SEND, NULL, false},
    {"data only", "{\"k\":\"v\"}", NOW_S, true, PGW_PLATFORM_ANDROID, NULL,
     PGW_PUSH_SEND, NULL, false},
    {"other team of the event",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM2\"}", NOW_S, true,
     PGW_PLATFORM_IOS, "TEAM1", PGW_PUSH_NONE, NULL, false},
    /* A device that names no team is of the app's default team (TEAM1). */
    {"team-less device, push to the default team",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM1\"}", NOW_S, true,
     PGW_PLATFORM_IOS, NULL, PGW_PUSH_SEND, NULL, false},
    {"team-less device, push to another team",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM2\"}", NOW_S, true,
     PGW_PLATFORM_IOS, NULL, PGW_PUSH_NONE, NULL, false},
    {"device of the push's team, not the default",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM2\"}", NOW_S, true,
     PGW_PLATFORM_IOS, "TEAM2", PGW_PUSH_SEND, NULL, false},
    {"android of another team",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM2\"}", NOW_S, true,
     PGW_PLATFORM_ANDROID, "TEAM1", PGW_PUSH_SEND, NULL, false},
    /* An app with no default team (no key): team-less devices are no
     * team's. */
    {"team-less device, app without a default team",
     "{\"alert\":\"hi\",\"_apns_team_id\":\"TEAM2\"}", NOW_S, false,
     PGW_PLATFORM_IOS, NULL, PGW_PUSH_NONE, NULL, false},
};

/* Each outcome of the per-device step, as render prints it and serve
 * records it. */
static void test_step_outcomes(void **state)
{
    struct fixture f;
    (void)state;

    fixture_init(&f);
    for (size_t i = 0; i < sizeof(step_cases) / sizeof(step_cases[0]); i++) {
        const struct step_case *c = &step_cases[i];
        char json[512];
        struct pgw_resolved *res;
        struct pgw_push_event e;
        struct pgw_installation in = device(7, c->platform, c->team);
        struct pgw_push p;
        struct pgw_push_failure fail = {0};
        enum pgw_push_result r;

        snprintf(json, sizeof(json),
                 "{\"fromPeer\":\"Tom\",\"convId\":\"c\",\"offlinePeers\":"
                 "[\"Jerry\"],\"timestamp\":%lld,\"pushData\":%s}",
                 (long long)TS_2100, c->push_data);
        res = resolve(json);
        pgw_push_event_init(&e, res, "ev-1", c->now_s, 604800);
        r = pgw_push_make(&e, c->keyed ? &f.keyed : &f.bare, &in, 1, &p, &fail);
        if (r != c->want)
            fail_msg("%s: result %d, wanted %d (%s)", c->name, r, c->want,
                     r == PGW_PUSH_FAIL ? fail.reason : "");
        if (r == PGW_PUSH_FAIL) {
            assert_string_equal(fail.reason, c->reason);
            assert_int_equal(fail.expired, c->expired);
            assert_int_equal(fail.provider, c->platform == PGW_PLATFORM_IOS
                                                ? PGW_PROVIDER_APNS
                                                : PGW_PROVIDER_FCM);
            assert_null(p.buf);
        }
        if (r == PGW_PUSH_SEND) {
            assert_int_equal(p.installation_id, 7);
            assert_int_equal(p.expires_at_ms, TS_2100 + 604800000LL);
            assert_non_null(p.token);
            assert_true(p.body_len > 0);
            if (c->platform == PGW_PLATFORM_IOS)
                assert_string_equal(p.team, c->team ? c->team : "TEAM1");
            pgw_push_release(&p);
        }
        pgw_push_event_release(&e);
        pgw_resolve_free(res);
    }
}

/* The lookup rule of a push: its team and the badge it sets. */
static void test_event_match(void **state)
{
    static const struct {
        const char *push_data;
        bool set;
        int32_t badge;
        bool increments;
    } cases[] = {
        {"{\"alert\":\"a\",\"badge\":5}", true, 5, false},
        {"{\"alert\":\"a\",\"badge\":0}", true, 0, false},
        {"{\"alert\":\"a\",\"badge\":-3}", true, 0, false},
        {"{\"alert\":\"a\",\"badge\":2.9}", true, 2, false},
        {"{\"ios\":{\"badge\":2},\"android\":{\"alert\":\"x\"}}", true, 2,
         false},
        {"{\"aps\":{\"alert\":\"a\",\"badge\":4}}", true, 4, false},
        {"{\"alert\":\"a\",\"badge\":\"Increment\"}", false, 0, true},
        /* case-sensitive, as the guide says: a string badge, dropped */
        {"{\"alert\":\"a\",\"badge\":\"increment\"}", false, 0, false},
        {"{\"alert\":\"a\",\"badge\":\"5\"}", false, 0, false},
        {"{\"alert\":\"a\"}", false, 0, false},
        /* mentioned devices get another number, or none: not known to
         * the lookup, nothing set */
        {"{\"badge\":5,\"_mentioned\":{\"alert\":\"m\",\"badge\":6}}", false, 0,
         false},
        {"{\"badge\":5,\"_mentioned\":{\"alert\":\"m\"}}", false, 0, false},
        {"{\"badge\":5,\"_mentioned\":{\"alert\":\"m\",\"badge\":5}}", true, 5,
         false},
        /* nothing goes to iOS */
        {"{\"alert\":\"a\",\"badge\":5,\"_profile\":\"x\"}", false, 0, false},
    };
    struct fixture f;
    (void)state;

    fixture_init(&f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512];
        struct pgw_resolved *res;
        struct pgw_push_event e;
        struct pgw_installation_match m;

        snprintf(json, sizeof(json),
                 "{\"fromPeer\":\"Tom\",\"convId\":\"c\",\"offlinePeers\":"
                 "[\"Jerry\"],\"timestamp\":%lld,\"pushData\":%s}",
                 (long long)TS_2100, cases[i].push_data);
        res = resolve(json);
        pgw_push_event_init(&e, res, "ev-1", NOW_S, 604800);
        pgw_push_event_match(&e, &f.apps[0], &m);
        if (m.set_badge != cases[i].set ||
            (m.set_badge && m.badge != cases[i].badge) ||
            pgw_push_event_increments(&e) != cases[i].increments)
            fail_msg("%s: set %d badge %d", cases[i].push_data, m.set_badge,
                     (int)m.badge);
        assert_null(m.apns_team_id);
        assert_string_equal(m.default_team, "TEAM1");
        pgw_push_event_release(&e);
        pgw_resolve_free(res);
    }

    /* the team: the push's, and the app's default (none without a key) */
    {
        struct pgw_resolved *res;
        struct pgw_push_event e;
        struct pgw_installation_match m;

        res =
            resolve("{\"fromPeer\":\"Tom\",\"convId\":\"c\","
                    "\"offlinePeers\":[\"Jerry\"],\"timestamp\":4102444800000,"
                    "\"pushData\":{\"alert\":\"a\",\"_apns_team_id\":"
                    "\"TEAM2\"}}");
        pgw_push_event_init(&e, res, "ev-1", NOW_S, 604800);
        pgw_push_event_match(&e, &f.apps[0], &m);
        assert_string_equal(m.apns_team_id, "TEAM2");
        assert_string_equal(m.default_team, "TEAM1");
        assert_false(m.set_badge);
        pgw_push_match_init(res, &f.apps[1], &m);
        assert_string_equal(m.apns_team_id, "TEAM2");
        assert_null(m.default_team);
        pgw_push_event_release(&e);
        pgw_resolve_free(res);
    }
}

/* A body over the provider's limit that shortening cannot save. */
static void test_step_too_large(void **state)
{
    struct fixture f;
    char *json = malloc(6000), big[4300];
    struct pgw_resolved *res;
    struct pgw_push_event e;
    struct pgw_push p;
    struct pgw_push_failure fail;
    (void)state;

    fixture_init(&f);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(json, 6000,
             "{\"fromPeer\":\"Tom\",\"convId\":\"c\",\"offlinePeers\":"
             "[\"Jerry\"],\"timestamp\":%lld,\"pushData\":{\"alert\":\"hi\","
             "\"blob\":\"%s\"}}",
             (long long)TS_2100, big);
    res = resolve(json);
    pgw_push_event_init(&e, res, "ev-1", NOW_S, 604800);
    for (int pl = 0; pl < PGW_PLATFORM_COUNT; pl++) {
        struct pgw_installation in = device(8, (enum pgw_platform)pl, NULL);

        assert_int_equal(pgw_push_make(&e, &f.keyed, &in, 1, &p, &fail),
                         PGW_PUSH_FAIL);
        assert_string_equal(fail.reason, "payload_too_large");
    }
    pgw_push_event_release(&e);
    pgw_resolve_free(res);
    free(json);
}

/* The stored request gives back the push that was sent, byte for byte. */
static void test_codec_round_trip(void **state)
{
    struct fixture f;
    struct pgw_resolved *res;
    struct pgw_push_event e;
    (void)state;

    fixture_init(&f);
    res = resolve("{\"fromPeer\":\"Tom\",\"convId\":\"c\",\"offlinePeers\":"
                  "[\"Jerry\"],\"timestamp\":4102444800000,\"pushData\":"
                  "{\"alert\":\"h\\u00e9 \\\"q\\\"\",\"_profile\":\"dev\","
                  "\"collapse-id\":\"cid-1\",\"badge\":\"Increment\"}}");
    pgw_push_event_init(&e, res, "ev-1", NOW_S, 604800);
    for (int pl = 0; pl < PGW_PLATFORM_COUNT; pl++) {
        struct pgw_installation in = device(9, (enum pgw_platform)pl, "TEAM2");
        struct pgw_push p, q;
        struct pgw_push_failure fail;
        char *text;

        assert_int_equal(pgw_push_make(&e, &f.keyed, &in, 42, &p, &fail),
                         PGW_PUSH_SEND);
        text = pgw_push_encode(&p, "chat");
        assert_non_null(text);
        assert_int_equal(
            pgw_push_decode(text, pgw_provider_names[p.provider], &q), 0);
        assert_int_equal(q.provider, p.provider);
        assert_string_equal(q.token, p.token);
        assert_int_equal(q.body_len, p.body_len);
        assert_memory_equal(q.body, p.body, p.body_len);
        if (p.provider == PGW_PROVIDER_APNS) {
            assert_non_null(strstr(p.body, "\"badge\":42"));
            assert_int_equal(q.env, PGW_APNS_DEVELOPMENT);
            assert_string_equal(q.team, "TEAM2");
            assert_string_equal(q.topic, p.topic);
            assert_string_equal(q.collapse_id, "cid-1");
            assert_string_equal(q.push_type, p.push_type);
            assert_string_equal(q.apns_id, p.apns_id);
            assert_int_equal(q.priority, p.priority);
            assert_int_equal(q.expiration, p.expiration);
        } else {
            assert_null(q.team);
        }
        free(text);
        pgw_push_release(&p);
        pgw_push_release(&q);
    }
    pgw_push_event_release(&e);
    pgw_resolve_free(res);
}

static void test_codec_refuses(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"body\":\"{}\"}",
        "{\"token\":\"t\"}",
        /* an APNs request without its headers */
        "{\"token\":\"t\",\"body\":\"{}\",\"team\":\"T\"}",
    };
    struct pgw_push q;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pgw_push_decode(bad[i], "apns", &q), PGW_ERR_INVAL);
        assert_null(q.buf);
    }
}

static const struct pgw_retry_policy pol = {
    .max_attempts = 10, .base_ms = 1000, .max_ms = 60000};

/* Doubling from base_ms per attempt, capped, jitter in [delay/2, delay). */
static void test_backoff(void **state)
{
    static const int64_t want[] = {1000,  2000,  4000,  8000,  16000,
                                   32000, 60000, 60000, 60000, 60000};
    (void)state;

    for (int a = 1; a <= 10; a++) {
        int64_t d = want[a - 1];

        assert_int_equal(pgw_retry_backoff_ms(&pol, a, 0.0), d / 2);
        assert_int_equal(pgw_retry_backoff_ms(&pol, a, 0.5), d / 2 + d / 4);
        assert_true(pgw_retry_backoff_ms(&pol, a, 0.999999) < d);
        assert_true(pgw_retry_backoff_ms(&pol, a, 0.999999) >= d - 1);
    }
    /* Out of range picks the low end. */
    assert_int_equal(pgw_retry_backoff_ms(&pol, 1, 1.0), 500);
    assert_int_equal(pgw_retry_backoff_ms(&pol, 1, -0.5), 500);
}

static void test_plan(void **state)
{
    const int64_t now = 1000000, week = 7LL * 86400 * 1000;
    struct pgw_outcome o = {.kind = PGW_OUTCOME_RETRY};
    int64_t at = -1;
    (void)state;

    /* Backoff alone. */
    assert_int_equal(pgw_retry_plan(&pol, 3, &o, now + week, now, 0.0, &at),
                     PGW_RETRY_AT);
    assert_int_equal(at, now + 2000);
    /* Retry-After longer than the backoff wins; shorter does not. */
    o.retry_after_ms = 30000;
    assert_int_equal(pgw_retry_plan(&pol, 1, &o, now + week, now, 0.0, &at),
                     PGW_RETRY_AT);
    assert_int_equal(at, now + 30000);
    o.retry_after_ms = 10;
    assert_int_equal(pgw_retry_plan(&pol, 5, &o, now + week, now, 0.0, &at),
                     PGW_RETRY_AT);
    assert_int_equal(at, now + 8000);
    /* The last attempt: no more retries. */
    at = -1;
    assert_int_equal(pgw_retry_plan(&pol, 10, &o, now + week, now, 0.0, &at),
                     PGW_RETRY_FAILED);
    assert_int_equal(at, -1);
    /* A retry due at or after the validity's end is not planned. */
    o.retry_after_ms = 0;
    assert_int_equal(pgw_retry_plan(&pol, 1, &o, now + 500, now, 0.0, &at),
                     PGW_RETRY_EXPIRED);
    assert_int_equal(pgw_retry_plan(&pol, 1, &o, now + 501, now, 0.0, &at),
                     PGW_RETRY_AT);
    o.retry_after_ms = week;
    assert_int_equal(pgw_retry_plan(&pol, 1, &o, now + week, now, 0.0, &at),
                     PGW_RETRY_EXPIRED);
}

/* FCM's 429 waits at least a minute, whatever Retry-After says. */
static void test_plan_fcm_quota(void **state)
{
    const int64_t now = 5000000, week = 7LL * 86400 * 1000;
    static const char quota[] =
        "{\"error\":{\"code\":429,\"status\":\"RESOURCE_EXHAUSTED\"}}";
    struct pgw_outcome o;
    int64_t at = 0;
    (void)state;

    for (int64_t ra = 0; ra <= 120000; ra += 30000) {
        pgw_fcm_classify(429, quota, sizeof(quota) - 1, ra, &o, NULL, 0);
        assert_int_equal(o.kind, PGW_OUTCOME_RETRY);
        assert_int_equal(pgw_retry_plan(&pol, 1, &o, now + week, now, 0.9, &at),
                         PGW_RETRY_AT);
        assert_true(at - now >= 60000);
        assert_true(at - now >= ra);
    }
}

/* An answer that could only say "other environment or topic" does not
 * invalidate (DESIGN §9, push.h). */
static void test_invalidation_evidence(void **state)
{
    static const struct {
        enum pgw_provider provider;
        enum pgw_apns_env env;
        const char *push_type;
        int status;
        bool evidence;
    } cases[] = {
        {PGW_PROVIDER_APNS, PGW_APNS_PRODUCTION, "alert", 400, true},
        {PGW_PROVIDER_APNS, PGW_APNS_PRODUCTION, "background", 400, true},
        {PGW_PROVIDER_APNS, PGW_APNS_DEVELOPMENT, "alert", 400, false},
        {PGW_PROVIDER_APNS, PGW_APNS_PRODUCTION, "voip", 400, false},
        {PGW_PROVIDER_APNS, PGW_APNS_PRODUCTION, "liveactivity", 400, false},
        {PGW_PROVIDER_APNS, PGW_APNS_DEVELOPMENT, "alert", 410, true},
        {PGW_PROVIDER_APNS, PGW_APNS_PRODUCTION, "voip", 410, true},
        {PGW_PROVIDER_FCM, PGW_APNS_PRODUCTION, "", 404, true},
        {PGW_PROVIDER_FCM, PGW_APNS_PRODUCTION, "", 400, true},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pgw_push p;
        struct pgw_outcome o;

        memset(&p, 0, sizeof(p));
        memset(&o, 0, sizeof(o));
        p.provider = cases[i].provider;
        p.env = cases[i].env;
        pgw_copy_str(p.push_type, sizeof(p.push_type), cases[i].push_type);
        o.kind = PGW_OUTCOME_INVALIDATE;
        o.status = cases[i].status;
        if (pgw_push_answer_is_evidence(&p, &o) != cases[i].evidence)
            fail_msg("case %zu: evidence %d", i, !cases[i].evidence);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_outcomes),
        cmocka_unit_test(test_event_match),
        cmocka_unit_test(test_step_too_large),
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_refuses),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_plan_fcm_quota),
        cmocka_unit_test(test_invalidation_evidence),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
