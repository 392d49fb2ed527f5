/*
 * Tests of mock_fcm over real TLS/HTTP/2 connections on loopback: the
 * OAuth2 token endpoint, messages:send with its schema checks and
 * Google's error JSON, injected faults and token expiry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rsa.h>

#include "mockjwt.h"
#include "testutil.h"

#define CERTS PUSHGW_TEST_CERTS_DIR
#define EMAIL "pushgw@pushgw-test.iam.gserviceaccount.com"
#define SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define SEND "/v1/projects/pushgw-test/messages:send"
#define GRANT "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"

static char ca[512], sapub[512];
static EVP_PKEY *sa_key, *other_key;

static void start(struct tu_mock *m, const char *const *extra)
{
    struct tu_mock_options o = {.accounts = true, .args = extra};

    tu_mock_start(m, TU_MOCK_FCM, &o);
}

static char *assertion(EVP_PKEY *key, const char *alg, const char *iss,
                       const char *aud, const char *scope, long long iat,
                       long long exp)
{
    char hdr[128], claims[1024];
    char *jwt;

    snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"%s\",\"scope\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,"
             "\"exp\":%lld}",
             iss, scope, aud, iat, exp);
    jwt = mock_jwt_sign(key, 0, hdr, claims);
    assert_non_null(jwt);
    return jwt;
}

static struct tu_h2_resp *token_req(struct tu_h2_conn *c, const char *grant,
                                    const char *jwt)
{
    static char form[8192];
    const char *h[] = {"content-type", "application/x-www-form-urlencoded",
                       NULL};
    int idx;

    snprintf(form, sizeof(form), "grant_type=%s&assertion=%s", grant, jwt);
    idx = tu_h2_request(c, "POST", "/token", h, form, strlen(form));
    assert_true(idx >= 0);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    return &c->resp[idx];
}

/* Gets an access token into |out| (64 bytes). */
static void get_token(struct tu_h2_conn *c, int port, char *out)
{
    char aud[128];
    long long now = time(NULL);
    char *jwt;
    struct tu_h2_resp *r;
    const char *p;

    snprintf(aud, sizeof(aud), "https://127.0.0.1:%d/token", port);
    jwt = assertion(sa_key, "RS256", EMAIL, aud, SCOPE, now, now + 3600);
    r = token_req(c, GRANT, jwt);
    free(jwt);
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "\"expires_in\":"));
    assert_non_null(strstr(r->body, "\"token_type\":\"Bearer\""));
    p = strstr(r->body, "\"access_token\":\"");
    assert_non_null(p);
    p += 16;
    snprintf(out, 64, "%.*s", (int)(strchr(p, '"') - p), p);
}

static struct tu_h2_resp *send_msg(struct tu_h2_conn *c, const char *path,
                                   const char *token, const char *body)
{
    char auth[128];
    const char *h[5] = {"content-type", "application/json", NULL, NULL, NULL};
    int idx;

    if (token) {
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        h[2] = "authorization";
        h[3] = auth;
    }
    idx = tu_h2_request(c, "POST", path, h, body, strlen(body));
    assert_true(idx >= 0);
    assert_int_equal(tu_h2_run(c, 5000), 0);
    return &c->resp[idx];
}

static void expect_err(struct tu_h2_resp *r, int status, const char *gstatus,
                       const char *code)
{
    char want[256];

    if (r->status != status)
        fail_msg("status %d, want %d: %s", r->status, status, r->body);
    snprintf(want, sizeof(want), "{\"error\":{\"code\":%d,", status);
    assert_non_null(strstr(r->body, want));
    snprintf(want, sizeof(want), "\"status\":\"%s\"", gstatus);
    assert_non_null(strstr(r->body, want));
    if (code) {
        snprintf(want, sizeof(want),
                 "{\"@type\":\"type.googleapis.com/"
                 "google.firebase.fcm.v1.FcmError\",\"errorCode\":\"%s\"}",
                 code);
        if (!strstr(r->body, want))
            fail_msg("body %s lacks %s", r->body, want);
    } else {
        assert_null(strstr(r->body, "errorCode"));
    }
}

static void test_grant_and_send(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char tok[64], *rec;

    (void)state;
    start(&m, NULL);
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    get_token(c, m.port, tok);
    r = send_msg(c, SEND, tok,
                 "{\"message\":{\"token\":\"dev1\",\"notification\":{"
                 "\"title\":\"t\",\"body\":\"b\"},\"data\":{\"k\":\"v\"},"
                 "\"android\":{\"ttl\":\"604800s\",\"priority\":\"HIGH\","
                 "\"collapse_key\":\"c\"}}}");
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "{\"name\":\"projects/pushgw-test/"
                                    "messages/"));
    /* Stats count both kinds. */
    {
        int idx = tu_h2_request(c, "GET", "/_mock/stats", NULL, NULL, 0);
        assert_int_equal(tu_h2_run(c, 5000), 0);
        assert_non_null(strstr(c->resp[idx].body, "\"token_requests\":1"));
        assert_non_null(strstr(c->resp[idx].body, "\"requests\":2,\"ok\":2"));
    }
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
    (void)rec;
}

static void test_grant_rejections(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char aud[128], bad_aud[128];
    long long now = time(NULL);
    struct {
        EVP_PKEY *key;
        const char *alg, *iss, *aud, *scope;
        long long iat, exp;
        const char *grant, *error;
    } cases[] = {
        {other_key, "RS256", EMAIL, aud, SCOPE, now, now + 3600, GRANT,
         "invalid_grant"},
        {sa_key, "HS256", EMAIL, aud, SCOPE, now, now + 3600, GRANT,
         "invalid_grant"},
        {sa_key, "RS256", "other@x.iam.gserviceaccount.com", aud, SCOPE, now,
         now + 3600, GRANT, "invalid_grant"},
        {sa_key, "RS256", EMAIL, bad_aud, SCOPE, now, now + 3600, GRANT,
         "invalid_grant"},
        {sa_key, "RS256", EMAIL, aud, "https://www.googleapis.com/auth/drive",
         now, now + 3600, GRANT, "invalid_grant"},
        {sa_key, "RS256", EMAIL, aud, SCOPE, now - 7200, now - 3600, GRANT,
         "invalid_grant"},
        {sa_key, "RS256", EMAIL, aud, SCOPE, now, now + 3601, GRANT,
         "invalid_grant"},
        {sa_key, "RS256", EMAIL, aud, SCOPE, now, now + 3600, "password",
         "unsupported_grant_type"},
    };
    char want[128];

    (void)state;
    start(&m, NULL);
    snprintf(aud, sizeof(aud), "https://localhost:%d/token", m.port);
    snprintf(bad_aud, sizeof(bad_aud), "https://oauth2.googleapis.com/token");
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *jwt =
            assertion(cases[i].key, cases[i].alg, cases[i].iss, cases[i].aud,
                      cases[i].scope, cases[i].iat, cases[i].exp);
        r = token_req(c, cases[i].grant, jwt);
        free(jwt);
        if (r->status != 400)
            fail_msg("case %zu: status %d", i, r->status);
        snprintf(want, sizeof(want), "{\"error\":\"%s\",\"error_description\"",
                 cases[i].error);
        assert_non_null(strstr(r->body, want));
    }
    r = token_req(c, GRANT, "not.a.jwt");
    assert_int_equal(r->status, 400);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

static void test_send_errors(void **state)
{
    static char big[5000];
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char tok[64], *rec;
    const char *extra[] = {"--unregistered", "gone", "--sender-mismatch",
                           "other", NULL};
    const char *bad[] = {
        "{\"message\":{}}",
        "{\"message\":{\"token\":\"a\",\"topic\":\"b\"}}",
        "{\"message\":{\"token\":\"a\",\"data\":{\"k\":1}}}",
        "{\"message\":{\"token\":\"a\",\"data\":{\"from\":\"x\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"10\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"1.5m\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"2419201s\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"1."
        "0000000001s\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"priority\":\"URGENT\"}}}",
        "{\"message\":{\"token\":\"a\"},\"extra\":1}",
        "{\"message\":{\"token\":\"\"}}",
        "[1]",
        "{bad json",
        big,
    };
    const char *good[] = {
        "{\"message\":{\"topic\":\"news\"}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"2419200s\","
        "\"priority\":\"normal\"}}}",
        "{\"message\":{\"token\":\"a\",\"android\":{\"ttl\":\"3.000000001s\"}}"
        "}",
        "{\"validate_only\":true,\"message\":{\"condition\":\"'a' in "
        "topics\"}}",
    };

    (void)state;
    snprintf(big, sizeof(big),
             "{\"message\":{\"token\":\"a\",\"data\":{\"k\":\"");
    memset(big + strlen(big), 'x', 4200);
    strcpy(big + strlen(big) - 0, "\"}}}");
    start(&m, extra);
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    get_token(c, m.port, tok);
    r = send_msg(c, SEND, NULL, "{\"message\":{\"token\":\"a\"}}");
    expect_err(r, 401, "UNAUTHENTICATED", NULL);
    r = send_msg(c, SEND, "ya29.unknown", "{\"message\":{\"token\":\"a\"}}");
    expect_err(r, 401, "UNAUTHENTICATED", NULL);
    r = send_msg(c, "/v1/projects/other-project/messages:send", tok,
                 "{\"message\":{\"token\":\"a\"}}");
    expect_err(r, 403, "PERMISSION_DENIED", NULL);
    r = send_msg(c, "/v1/projects/pushgw-test/messages:bogus", tok,
                 "{\"message\":{\"token\":\"a\"}}");
    expect_err(r, 404, "NOT_FOUND", NULL);
    r = send_msg(c, SEND, tok, "{\"message\":{\"token\":\"gone\"}}");
    expect_err(r, 404, "NOT_FOUND", "UNREGISTERED");
    r = send_msg(c, SEND, tok, "{\"message\":{\"token\":\"other\"}}");
    expect_err(r, 403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tu_h2_close(c);
        c = tu_h2_connect(m.port, ca, NULL);
        assert_non_null(c);
        r = send_msg(c, SEND, tok, bad[i]);
        if (r->status != 400)
            fail_msg("bad case %zu: status %d %s", i, r->status, r->body);
        expect_err(r, 400, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
    }
    r = send_msg(c, SEND, tok, bad[2]);
    assert_non_null(strstr(r->body, "\"field\":\"message.data[0].value\""));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        r = send_msg(c, SEND, tok, good[i]);
        if (r->status != 200)
            fail_msg("good case %zu: status %d %s", i, r->status, r->body);
    }
    tu_h2_close(c);
    assert_int_equal(tu_mock_signal(&m, SIGTERM), 0);
    rec = tu_read_file(m.record);
    assert_non_null(rec);
    assert_non_null(strstr(rec, "\"path\":\"/token\""));
    assert_non_null(strstr(rec, "\"token\":\"gone\",\"status\":404,"
                                "\"error\":\"UNREGISTERED\",\"body\":{"
                                "\"message\":{\"token\":\"gone\"}}"));
    free(rec);
    tu_mock_stop(&m);
}

/* --fail-every answers every N-th send with the given error and
 * --retry-after's header; token requests do not count. */
static void test_fail_every_and_retry_after(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    struct tu_h2_resp *r;
    char tok[64];
    const char *msg = "{\"message\":{\"token\":\"a\"}}";
    const char *extra[] = {"--fail-every", "2:429:QUOTA_EXCEEDED",
                           "--retry-after", "60", NULL};

    (void)state;
    start(&m, extra);
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    get_token(c, m.port, tok);
    r = send_msg(c, SEND, tok, msg);
    assert_int_equal(r->status, 200);
    r = send_msg(c, SEND, tok, msg);
    expect_err(r, 429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED");
    assert_string_equal(r->retry_after, "60");
    r = send_msg(c, SEND, tok, msg);
    assert_int_equal(r->status, 200);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

/* --expire-tokens-after N: the N+1-th send with a token is refused with
 * 401; a new token works. */
static void test_expire_tokens_after(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    char tok[64], tok2[64];
    const char *msg = "{\"message\":{\"token\":\"a\"}}";
    const char *extra[] = {"--expire-tokens-after", "2", NULL};

    (void)state;
    start(&m, extra);
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    get_token(c, m.port, tok);
    assert_int_equal(send_msg(c, SEND, tok, msg)->status, 200);
    assert_int_equal(send_msg(c, SEND, tok, msg)->status, 200);
    expect_err(send_msg(c, SEND, tok, msg), 401, "UNAUTHENTICATED", NULL);
    get_token(c, m.port, tok2);
    assert_string_not_equal(tok, tok2);
    assert_int_equal(send_msg(c, SEND, tok2, msg)->status, 200);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

/* --token-ttl-s: a token is refused once its lifetime has passed (the
 * mock's clock: the test waits the second out). */
static void test_token_ttl(void **state)
{
    struct tu_mock m;
    struct tu_h2_conn *c;
    char tok[64];
    const char *msg = "{\"message\":{\"token\":\"a\"}}";
    const char *extra[] = {"--token-ttl-s", "1", "--fail-every",
                           "3:503:UNAVAILABLE", NULL};

    (void)state;
    start(&m, extra);
    c = tu_h2_connect(m.port, ca, NULL);
    assert_non_null(c);
    get_token(c, m.port, tok);
    assert_int_equal(send_msg(c, SEND, tok, msg)->status, 200);
    assert_int_equal(send_msg(c, SEND, tok, msg)->status, 200);
    expect_err(send_msg(c, SEND, tok, msg), 503, "UNAVAILABLE", "UNAVAILABLE");
    tu_sleep_ms(1100);
    expect_err(send_msg(c, SEND, tok, msg), 401, "UNAUTHENTICATED", NULL);
    tu_h2_close(c);
    assert_int_equal(tu_mock_stop(&m), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grant_and_send),
        cmocka_unit_test(test_grant_rejections),
        cmocka_unit_test(test_send_errors),
        cmocka_unit_test(test_fail_every_and_retry_after),
        cmocka_unit_test(test_expire_tokens_after),
        cmocka_unit_test(test_token_ttl),
    };
    char path[512];
    int rc;

    snprintf(ca, sizeof(ca), "%s/ca.pem", CERTS);
    snprintf(sapub, sizeof(sapub), "%s/fcm-sa.pub.pem", CERTS);
    snprintf(path, sizeof(path), "%s/fcm-sa.key", CERTS);
    sa_key = mock_pem_load_priv(path);
    other_key = EVP_RSA_gen(2048);
    if (!sa_key || !other_key) {
        fprintf(stderr, "cannot load or make the RSA keys\n");
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    EVP_PKEY_free(sa_key);
    EVP_PKEY_free(other_key);
    return rc;
}
