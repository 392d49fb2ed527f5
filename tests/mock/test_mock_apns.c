/*
 * Tests of mock_apns over real TLS/HTTP/2 connections on loopback:
 * validation like Apple's, provider-token checks, fault injection,
 * record file, stats and signals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mockjwt.h"
#include "testutil.h"

#define CERTS PUSHGW_TEST_CERTS_DIR
#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DEV(t) "/3/device/" t
#define BODY "{\"aps\":{\"alert\":\"hello\"},\"k\":1}"

static char ca[512];

static char *make_jwt(const char *keyname, const char *team, const char *kid,
                      long long iat)
{
    char path[512], hdr[128], claims[128];
    EVP_PKEY *k;
    char *jwt;

    snprintf(path, sizeof(path), "%s/AuthKey_%s.p8", CERTS, keyname);
    k = mock_pem_load_priv(path);
    assert_non_null(k);
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
    snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%lld}", team,
             iat);
    jwt = mock_jwt_sign(k, 1, hdr, claims);
    EVP_PKEY_free(k);
    assert_non_null(jwt);
    return jwt;
}

static char *bearer(const char *jwt)
{
    char *s = malloc(strlen(jwt) + 8);
    assert_non_null(s);
    sprintf(s, "bearer %s", jwt);
    return s;
}

static void start(struct tu_mock *m, const char *const *extra)
{
    struct tu_mock_options o = {.accounts = true, .args = extra};

    tu_mock_start(m, TU_MOCK_APNS, &o);
}

static struct tu_h2_conn *conn(struct tu_mock *m)
{
    struct tu_h2_conn *c = tu_h2_connect(m->port, ca, NULL);
    assert_non_null(c);
    return c;
}

/* One request with the default valid headers, |over| replacing/adding. */
static struct tu_h2_resp *push(struct tu_h2_conn *c, const char *auth,
                               const char *path, const char *const *over,
                               const char *body)
{
    const char *h[40];
    int n = 0, idx;

    if (auth) {
        h[n++] = "authorization";
        h[n++] = auth;
    }
    if (!over || !over[0] || strcmp(over[0], "-topic")) {
        h[n++] = "apns-topic";
        h[n++] = "com.example.app";
    }
    for (int i = 0; over && over[i]; i += 2) {
        if (over[i][0] == '-')
            continue;
        h[n++] = over[i];
        h[n++] = over[i + 1];
    }
    h[n] = NULL;
    idx = tu_h2_request(c, "POST", path, h, body, body ? strlen(body) : 0);
    assert_true(idx >= 0);
    return &c->resp[idx];
}

static void expect(struct tu_h2_resp *r, int status, const char *reason)
{
    char want[128];

    assert_true(r->closed);
    assert_int_equal(r->status, status);
    if (reason) {
        snprintf(want, sizeof(want), "\"reason\":\"%s\"", reason);
        if (!strstr(r->body, want))
            fail_msg("body '%s' lacks %s", r->body, want);
        assert_string_equal(r->content_type, "application/json");
    } else {
        assert_int_equal(r->body_len, 0);
    }
    assert_int_equal(strlen(r->apns_id), 36);
}

static void test_valid_push(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r1, *r2;
    char *jwt = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", time(NULL));
    char *auth = bearer(jwt), *rec;
    const char *const ov[] = {"apns-id",
                              "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                              "apns-push-type",
                              "alert",
                              "apns-priority",
                              "10",
                              "apns-expiration",
                              "0",
                              "apns-collapse-id",
                              "c1",
                              NULL};
    (void)state;
    start(&m, NULL);
    c = conn(&m);
    r1 = push(c, auth, DEV(TOKEN), ov, BODY);
    r2 = push(c, auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r1, 200, NULL);
    assert_string_equal(r1->apns_id, "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
    expect(r2, 200, NULL);
    assert_string_not_equal(r2->apns_id, r1->apns_id);
    tu_h2_close(c);
    assert_int_equal(tu_mock_signal(&m, SIGTERM), 0);
    rec = tu_read_file(m.record);
    assert_non_null(rec);
    assert_non_null(strstr(rec, "\"token\":\"" TOKEN "\""));
    assert_non_null(strstr(rec, "\"topic\":\"com.example.app\""));
    assert_non_null(
        strstr(rec, "\"team\":\"TEAM000001\",\"kid\":\"KEY0000001\""));
    assert_non_null(strstr(rec, "\"collapse_id\":\"c1\""));
    assert_non_null(
        strstr(rec, "\"apns_id\":\"1b4e28ba-2fa1-11d2-883f-0016d3cca427\""));
    assert_non_null(strstr(rec, "\"status\":200,\"reason\":null,\"body\":{"
                                "\"aps\":{\"alert\":\"hello\"},\"k\":1}"));
    assert_non_null(strstr(rec, "\"collapse_id\":null"));
    /* exactly two lines */
    assert_non_null(strchr(rec, '\n'));
    assert_non_null(strchr(strchr(rec, '\n') + 1, '\n'));
    assert_null(strchr(strchr(strchr(rec, '\n') + 1, '\n') + 1, '\n'));
    free(rec);
    tu_mock_stop(&m);
    free(auth);
    free(jwt);
}

struct vcase {
    const char *name;
    const char *method;
    const char *path;
    int auth; /* 0 none, 1 valid, 2 bad signature, 3 unknown kid, 4 expired,
                 5 future, 6 wrong iss, 7 "Basic", 8 not a JWT */
    const char *over[8];
    const char *body;
    int status;
    const char *reason;
};

static void test_validation(void **state)
{
    static char big[4200], voip_ok[5200], voip_big[5300];
    const struct vcase cases[] = {
        {"method", "GET", DEV(TOKEN), 1, {NULL}, NULL, 405, "MethodNotAllowed"},
        {"path", "POST", "/3/foo", 1, {NULL}, BODY, 404, "BadPath"},
        {"path2", "POST", "/2/device/" TOKEN, 1, {NULL}, BODY, 404, "BadPath"},
        {"no token",
         "POST",
         "/3/device/",
         1,
         {NULL},
         BODY,
         400,
         "MissingDeviceToken"},
        {"non-hex",
         "POST",
         DEV("zz23456789abcdef"),
         1,
         {NULL},
         BODY,
         400,
         "BadDeviceToken"},
        {"odd length",
         "POST",
         DEV("0123456789abcdef0"),
         1,
         {NULL},
         BODY,
         400,
         "BadDeviceToken"},
        {"no auth",
         "POST",
         DEV(TOKEN),
         0,
         {NULL},
         BODY,
         403,
         "MissingProviderToken"},
        {"basic auth",
         "POST",
         DEV(TOKEN),
         7,
         {NULL},
         BODY,
         403,
         "MissingProviderToken"},
        {"not a jwt",
         "POST",
         DEV(TOKEN),
         8,
         {NULL},
         BODY,
         403,
         "InvalidProviderToken"},
        {"bad signature",
         "POST",
         DEV(TOKEN),
         2,
         {NULL},
         BODY,
         403,
         "InvalidProviderToken"},
        {"unknown kid",
         "POST",
         DEV(TOKEN),
         3,
         {NULL},
         BODY,
         403,
         "InvalidProviderToken"},
        {"expired iat",
         "POST",
         DEV(TOKEN),
         4,
         {NULL},
         BODY,
         403,
         "ExpiredProviderToken"},
        {"future iat",
         "POST",
         DEV(TOKEN),
         5,
         {NULL},
         BODY,
         403,
         "InvalidProviderToken"},
        {"wrong iss",
         "POST",
         DEV(TOKEN),
         6,
         {NULL},
         BODY,
         403,
         "InvalidProviderToken"},
        {"missing topic",
         "POST",
         DEV(TOKEN),
         1,
         {"-topic", "", NULL},
         BODY,
         400,
         "MissingTopic"},
        {"topic disallowed",
         "POST",
         DEV(TOKEN),
         1,
         {"-topic", "", "apns-topic", "com.other", NULL},
         BODY,
         400,
         "TopicDisallowed"},
        {"push type",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-push-type", "bogus", NULL},
         BODY,
         400,
         "InvalidPushType"},
        {"priority",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-priority", "7", NULL},
         BODY,
         400,
         "BadPriority"},
        {"background 10",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-push-type", "background", "apns-priority", "10", NULL},
         BODY,
         400,
         "BadPriority"},
        {"background 5",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-push-type", "background", "apns-priority", "5", NULL},
         BODY,
         200,
         NULL},
        {"expiration",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-expiration", "12a", NULL},
         BODY,
         400,
         "BadExpirationDate"},
        {"collapse 64",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-collapse-id",
          "0123456789012345678901234567890123456789012345678901234567890123",
          NULL},
         BODY,
         200,
         NULL},
        {"collapse 65",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-collapse-id",
          "01234567890123456789012345678901234567890123456789012345678901234",
          NULL},
         BODY,
         400,
         "BadCollapseId"},
        {"apns-id",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-id", "not-a-uuid", NULL},
         BODY,
         400,
         "BadMessageId"},
        {"empty", "POST", DEV(TOKEN), 1, {NULL}, "", 400, "PayloadEmpty"},
        {"no body", "POST", DEV(TOKEN), 1, {NULL}, NULL, 400, "PayloadEmpty"},
        {"not json",
         "POST",
         DEV(TOKEN),
         1,
         {NULL},
         "{aps",
         400,
         "PayloadEmpty"},
        {"no aps",
         "POST",
         DEV(TOKEN),
         1,
         {NULL},
         "{\"a\":1}",
         400,
         "PayloadEmpty"},
        {"too large",
         "POST",
         DEV(TOKEN),
         1,
         {NULL},
         big,
         413,
         "PayloadTooLarge"},
        {"voip 5100",
         "POST",
         DEV(TOKEN),
         1,
         {"-topic", "", "apns-topic", "com.example.app.voip", "apns-push-type",
          "voip", NULL},
         voip_ok,
         200,
         NULL},
        {"voip to the bare bundle id",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-push-type", "voip", NULL},
         BODY,
         400,
         "TopicDisallowed"},
        {"voip 5200",
         "POST",
         DEV(TOKEN),
         1,
         {"-topic", "", "apns-topic", "com.example.app.voip", "apns-push-type",
          "voip", NULL},
         voip_big,
         413,
         "PayloadTooLarge"},
        {"duplicate",
         "POST",
         DEV(TOKEN),
         1,
         {"apns-topic", "com.example.app", NULL},
         BODY,
         400,
         "DuplicateHeaders"},
        {"bad token",
         "POST",
         DEV("00000000000000000000000000000bad"),
         1,
         {NULL},
         BODY,
         400,
         "BadDeviceToken"},
        {"unregistered",
         "POST",
         DEV("0000000000000000000000000000dead"),
         1,
         {NULL},
         BODY,
         410,
         "Unregistered"},
    };
    const size_t ncases = sizeof(cases) / sizeof(cases[0]);
    const char *extra[] = {"--topic",
                           "com.example.app",
                           "--bad-token",
                           "00000000000000000000000000000bad",
                           "--unregistered",
                           "0000000000000000000000000000dead:1700000000123",
                           NULL};
    char *jwts[9] = {0}, *auths[9] = {0};
    long long now = time(NULL);
    struct tu_mock m;

    (void)state;
    /* A JSON object padded with spaces to the wanted size. */
#define PAD(buf, size)                                                         \
    do {                                                                       \
        memset(buf, ' ', size);                                                \
        memcpy(buf, BODY, strlen(BODY));                                       \
        buf[size] = '\0';                                                      \
    } while (0)
    PAD(big, 4097);
    PAD(voip_ok, 5100);
    PAD(voip_big, 5121);
    jwts[1] = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", now);
    jwts[2] = strdup(jwts[1]);
    jwts[2][strlen(jwts[2]) - 3] ^= 1; /* flip a signature bit */
    jwts[3] = make_jwt("KEY0000003", "TEAM000001", "KEY0000003", now);
    jwts[4] = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", now - 3700);
    jwts[5] = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", now + 600);
    jwts[6] = make_jwt("KEY0000001", "TEAM000002", "KEY0000001", now);
    for (int i = 1; i <= 6; i++)
        auths[i] = bearer(jwts[i]);
    auths[7] = strdup("Basic dXNlcjpwYXNz");
    auths[8] = strdup("bearer abc.def");
    start(&m, extra);
    for (size_t i = 0; i < ncases; i++) {
        const struct vcase *v = &cases[i];
        struct tu_h2_conn *c = conn(&m);
        const char *h[24];
        int n = 0, idx;
        if (v->auth) {
            h[n++] = "authorization";
            h[n++] = auths[v->auth];
        }
        if (!v->over[0] || strcmp(v->over[0], "-topic")) {
            h[n++] = "apns-topic";
            h[n++] = "com.example.app";
        }
        for (int k = 0; v->over[k]; k += 2) {
            if (v->over[k][0] == '-')
                continue;
            h[n++] = v->over[k];
            h[n++] = v->over[k + 1];
        }
        h[n] = NULL;
        idx = tu_h2_request(c, v->method, v->path, h, v->body,
                            v->body ? strlen(v->body) : 0);
        assert_true(idx >= 0);
        assert_int_equal(tu_h2_run(c, 5000), 0);
        if (c->resp[idx].status != v->status)
            fail_msg("case '%s': status %d, want %d (%s)", v->name,
                     c->resp[idx].status, v->status, c->resp[idx].body);
        expect(&c->resp[idx], v->status, v->reason);
        if (v->status == 410)
            assert_non_null(
                strstr(c->resp[idx].body, "\"timestamp\":1700000000123"));
        tu_h2_close(c);
    }
    assert_int_equal(tu_mock_stop(&m), 0);
    for (int i = 0; i < 9; i++) {
        free(jwts[i]);
        free(auths[i]);
    }
}

static void test_team_binding_and_410_now(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    long long now = time(NULL);
    char *j1 = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", now);
    char *j2 = make_jwt("KEY0000002", "TEAM000002", "KEY0000002", now);
    char *a1 = bearer(j1), *a2 = bearer(j2);
    const char *extra[] = {"--unregistered", "00000000000000000000000000000410",
                           NULL};
    long long ts;

    (void)state;
    start(&m, extra);
    c = conn(&m);
    r = push(c, a1, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r, 200, NULL);
    r = push(c, a2, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r, 403, "InvalidProviderToken");
    /* The first team still works on that connection. */
    r = push(c, a1, DEV("00000000000000000000000000000410"), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r, 410, "Unregistered");
    ts = atoll(strstr(r->body, "\"timestamp\":") + 12);
    assert_true(ts / 1000 >= now - 5 && ts / 1000 <= now + 5);
    tu_h2_close(c);
    /* A new connection may carry the other team. */
    c = conn(&m);
    r = push(c, a2, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r, 200, NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
    free(j1);
    free(j2);
    free(a1);
    free(a2);
}

static char *g_auth;

static void test_goaway_after(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r[5];
    const char *extra[] = {"--goaway-after", "3", NULL};

    (void)state;
    start(&m, extra);
    c = conn(&m);
    for (int i = 0; i < 5; i++)
        r[i] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    tu_h2_run(c, 5000);
    for (int i = 0; i < 3; i++)
        expect(r[i], 200, NULL);
    for (int i = 3; i < 5; i++) {
        assert_true(r[i]->closed);
        assert_int_equal(r[i]->status, 0);
        assert_int_equal(r[i]->close_code, 7 /* REFUSED_STREAM */);
    }
    assert_true(c->goaway);
    assert_int_equal(c->goaway_last, r[2]->stream_id);
    assert_int_equal(c->goaway_code, 0);
    /* The server closes once the acknowledged streams are answered. */
    assert_int_equal(tu_h2_wait_eof(c, 5000), 1);
    tu_h2_close(c);
    /* The next connection works again, up to its own GOAWAY. */
    c = conn(&m);
    r[0] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r[0], 200, NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_fail_every(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    const char *extra[] = {"--fail-every", "3:503:ServiceUnavailable",
                           "--retry-after", "7", NULL};

    (void)state;
    start(&m, extra);
    c = conn(&m);
    for (int i = 1; i <= 7; i++) {
        r = push(c, g_auth, DEV(TOKEN), NULL, BODY);
        assert_int_equal(tu_h2_run(c, 5000), 0);
        if (i % 3 == 0) {
            expect(r, 503, "ServiceUnavailable");
            assert_string_equal(r->retry_after, "7");
        } else {
            expect(r, 200, NULL);
            assert_string_equal(r->retry_after, "");
        }
    }
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_lower_streams(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r[4];
    const char *extra[] = {"--max-streams", "50", "--lower-streams-after",
                           "2:1", NULL};

    (void)state;
    start(&m, extra);
    c = conn(&m);
    r[0] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    assert_int_equal(tu_h2_remote_max_streams(c), 50);
    r[1] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    assert_int_equal(tu_h2_remote_max_streams(c), 1);
    /* With a limit of 1, queued requests still all complete. */
    r[2] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    r[3] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    for (int i = 0; i < 4; i++)
        expect(r[i], 200, NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_close_after(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r1, *r2;
    const char *extra[] = {"--close-after", "2", NULL};

    (void)state;
    start(&m, extra);
    c = conn(&m);
    r1 = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r1, 200, NULL);
    r2 = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 1);
    assert_int_equal(r2->status, 0);
    assert_false(c->goaway);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_delays(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r[3];
    double t0, hs;
    const char *extra[] = {"--delay-ms", "300", "--tls-delay-ms", "250", NULL};

    (void)state;
    start(&m, extra);
    c = tu_h2_connect(m.port, ca, &hs);
    assert_non_null(c);
    assert_true(hs >= 240);
    t0 = mono_ms();
    for (int i = 0; i < 3; i++)
        r[i] = push(c, g_auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    /* Timers per stream: three answers in one delay, not three. */
    assert_true(mono_ms() - t0 >= 290);
    assert_true(mono_ms() - t0 < 850);
    for (int i = 0; i < 3; i++)
        expect(r[i], 200, NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_ping(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    const char *extra[] = {"--no-ping-ack", NULL};

    (void)state;
    start(&m, NULL);
    c = conn(&m);
    tu_h2_ping(c);
    tu_h2_run(c, 300);
    assert_int_equal(c->ping_acks, 1);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);

    start(&m, extra);
    c = conn(&m);
    tu_h2_ping(c);
    tu_h2_run(c, 500);
    assert_int_equal(c->ping_acks, 0);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_stats_and_usr1(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char *out;
    int idx;

    (void)state;
    start(&m, NULL);
    c = conn(&m);
    push(c, g_auth, DEV(TOKEN), NULL, BODY);
    push(c, g_auth, DEV(TOKEN), NULL, BODY);
    push(c, NULL, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    idx = tu_h2_request(c, "GET", "/_mock/stats", NULL, NULL, 0);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    r = &c->resp[idx];
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "\"requests\":3,\"ok\":2,\"errors\":1,"
                                    "\"connections\":1"));
    assert_non_null(strstr(r->body, "\"streams_open\":1"));
    tu_h2_close(c);
    /* SIGUSR1 prints the same JSON on stdout and keeps running. */
    kill(m.pid, SIGUSR1);
    out = NULL;
    TU_POLL_UNTIL(out && strchr(out, '\n'), 2000)
    {
        free(out);
        out = tu_read_file(m.log);
    }
    assert_non_null(out);
    assert_non_null(strstr(out, "{\"requests\":3,\"ok\":2,\"errors\":1,"));
    free(out);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_mkjwt(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char cmd[1024], jwt[1024], *auth;
    FILE *p;

    (void)state;
    snprintf(cmd, sizeof(cmd),
             "%s --key %s/AuthKey_KEY0000002.p8 --team TEAM000002 --kid "
             "KEY0000002",
             tu_mkjwt_bin, CERTS);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(jwt, sizeof(jwt), p));
    assert_int_equal(pclose(p), 0);
    jwt[strcspn(jwt, "\n")] = '\0';
    auth = bearer(jwt);
    start(&m, NULL);
    c = conn(&m);
    r = push(c, auth, DEV(TOKEN), NULL, BODY);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    expect(r, 200, NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
    free(auth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_push),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_team_binding_and_410_now),
        cmocka_unit_test(test_goaway_after),
        cmocka_unit_test(test_fail_every),
        cmocka_unit_test(test_lower_streams),
        cmocka_unit_test(test_close_after),
        cmocka_unit_test(test_delays),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_stats_and_usr1),
        cmocka_unit_test(test_mkjwt),
    };
    char *jwt;
    int rc;

    snprintf(ca, sizeof(ca), "%s/ca.pem", CERTS);
    jwt = make_jwt("KEY0000001", "TEAM000001", "KEY0000001", time(NULL));
    g_auth = bearer(jwt);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(jwt);
    free(g_auth);
    return rc;
}
