/*
 * Service account loading, the RS256 assertion (verified with the test
 * service account's public key), token response parsing, and the token
 * source's caching, renewal, single flight and failure handling with an
 * injected clock against a real HTTP token endpoint (evhttp on loopback).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "curlmulti.h"
#include "oauth.h"

#define CERTS PUSHGW_BINARY_DIR "/tests/certs/out"
#define SA_FILE CERTS "/fcm-sa.json"
#define SA_PUB CERTS "/fcm-sa.pub.pem"
#define EMAIL "pushgw@pushgw-test.iam.gserviceaccount.com"

/* ---- helpers --------------------------------------------------------- */

static unsigned char *b64url_decode(const char *in, size_t len, size_t *ret_len)
{
    size_t n = len + 4;
    char *buf = calloc(1, n + 1);
    unsigned char *out = calloc(1, n);
    int w;

    assert_non_null(buf);
    assert_non_null(out);
    memcpy(buf, in, len);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '-')
            buf[i] = '+';
        else if (buf[i] == '_')
            buf[i] = '/';
    }
    while (len % 4)
        buf[len++] = '=';
    w = EVP_DecodeBlock(out, (unsigned char *)buf, (int)len);
    assert_true(w >= 0);
    while (len > 0 && buf[len - 1] == '=') {
        len--;
        w--;
    }
    free(buf);
    *ret_len = (size_t)w;
    return out;
}

static cJSON *decode_part(const char *p, size_t len)
{
    size_t n;
    unsigned char *raw = b64url_decode(p, len, &n);
    cJSON *j = cJSON_ParseWithLength((const char *)raw, n);

    free(raw);
    assert_non_null(j);
    return j;
}

/* Verifies |jwt| with the test public key; returns its claims. */
static cJSON *verify_jwt(const char *jwt, cJSON **ret_hdr)
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    FILE *f = fopen(SA_PUB, "r");
    EVP_PKEY *pub;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *sig;
    size_t sig_len;
    cJSON *hdr, *claims;

    assert_non_null(d2);
    assert_non_null(f);
    pub = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pub);
    sig = b64url_decode(d2 + 1, strlen(d2 + 1), &sig_len);
    assert_int_equal(sig_len, 256);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub),
                     1);
    assert_int_equal(EVP_DigestVerify(md, sig, sig_len,
                                      (const unsigned char *)jwt,
                                      (size_t)(d2 - jwt)),
                     1);
    /* A flipped byte in the signed part must fail. */
    {
        char *bad = strdup(jwt);
        assert_non_null(bad);
        bad[d1 - jwt + 3] ^= 1;
        assert_int_equal(
            EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
        assert_int_not_equal(EVP_DigestVerify(md, sig, sig_len,
                                              (const unsigned char *)bad,
                                              (size_t)(d2 - jwt)),
                             1);
        free(bad);
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pub);
    free(sig);
    hdr = decode_part(jwt, (size_t)(d1 - jwt));
    claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (ret_hdr)
        *ret_hdr = hdr;
    else
        cJSON_Delete(hdr);
    return claims;
}

static int diag_has(const struct pgw_diag *d, const char *needle)
{
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->msgs[i], needle))
            return 1;
    return 0;
}

static void diag_no_secret(const struct pgw_diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        assert_null(strstr(d->msgs[i], "PRIVATE KEY"));
        assert_null(strstr(d->msgs[i], "MII"));
    }
}

/* ---- service account ------------------------------------------------- */

static int load_json(const char *json, struct pgw_diag *d,
                     struct pgw_oauth_sa **ret)
{
    return pgw_oauth_sa_parse(json, strlen(json), "test.json", d, ret);
}

static char *sa_json_with_key(const char *pem)
{
    cJSON *o = cJSON_CreateObject();
    char *s;

    cJSON_AddStringToObject(o, "type", "service_account");
    cJSON_AddStringToObject(o, "project_id", "p");
    cJSON_AddStringToObject(o, "client_email", "a@b");
    cJSON_AddStringToObject(o, "private_key", pem);
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    assert_non_null(s);
    return s;
}

static void test_sa_valid(void **state)
{
    struct pgw_oauth_sa *sa = NULL;
    struct pgw_diag d;

    (void)state;
    pgw_diag_init(&d);
    assert_int_equal(pgw_oauth_sa_load(SA_FILE, &d, &sa), 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(sa->project_id, "pushgw-test");
    assert_string_equal(sa->client_email, EMAIL);
    assert_string_equal(sa->private_key_id, "0123456789abcdef");
    assert_string_equal(sa->token_uri, "https://127.0.0.1/token");
    assert_string_equal(sa->path, SA_FILE);
    assert_non_null(sa->key);
    pgw_oauth_sa_free(sa);
    pgw_oauth_sa_free(NULL);
    pgw_diag_release(&d);
}

static void test_sa_errors(void **state)
{
    struct pgw_oauth_sa *sa = NULL;
    struct pgw_diag d;
    char *json, *pem;

    (void)state;
    pgw_diag_init(&d);
    assert_int_equal(pgw_oauth_sa_load("/nonexistent/sa.json", &d, &sa),
                     PGW_ERR_IO);
    assert_true(diag_has(&d, "service account '/nonexistent/sa.json': "
                             "cannot open: No such file"));
    pgw_diag_release(&d);

    pgw_diag_init(&d);
    assert_int_equal(load_json("{\"project_id\": ", &d, &sa), PGW_ERR_INVAL);
    assert_true(diag_has(&d, "'test.json': not a JSON object"));
    pgw_diag_release(&d);

    pgw_diag_init(&d);
    assert_int_equal(load_json("[1,2]", &d, &sa), PGW_ERR_INVAL);
    assert_true(diag_has(&d, "not a JSON object"));
    pgw_diag_release(&d);

    /* Every missing field is reported in one go. */
    pgw_diag_init(&d);
    assert_int_equal(load_json("{}", &d, &sa), PGW_ERR_INVAL);
    assert_int_equal(d.n, 3);
    assert_true(diag_has(&d, "field 'client_email' is missing"));
    assert_true(diag_has(&d, "field 'project_id' is missing"));
    assert_true(diag_has(&d, "field 'private_key' is missing"));
    pgw_diag_release(&d);

    pgw_diag_init(&d);
    assert_int_equal(load_json("{\"type\":\"authorized_user\","
                               "\"client_email\":5,\"project_id\":\"\","
                               "\"private_key\":\"x\"}",
                               &d, &sa),
                     PGW_ERR_INVAL);
    assert_true(diag_has(&d, "field 'type' is not 'service_account'"));
    assert_true(diag_has(&d, "field 'client_email' must be a non-empty"));
    assert_true(diag_has(&d, "field 'project_id' must be a non-empty"));
    assert_true(diag_has(&d, "field 'private_key' is not a PEM private key"));
    pgw_diag_release(&d);

    /* A PEM frame with garbage inside. */
    pgw_diag_init(&d);
    json = sa_json_with_key("-----BEGIN PRIVATE KEY-----\nMIIBAAAA\n"
                            "-----END PRIVATE KEY-----\n");
    assert_int_equal(load_json(json, &d, &sa), PGW_ERR_CRYPTO);
    assert_true(diag_has(&d, "field 'private_key' is not a PEM private key"));
    diag_no_secret(&d);
    cJSON_free(json);
    pgw_diag_release(&d);

    /* An EC key (the APNs .p8) is not RSA. */
    pem = tu_read_file(CERTS "/AuthKey_KEY0000001.p8");
    assert_non_null(pem);
    pgw_diag_init(&d);
    json = sa_json_with_key(pem);
    assert_int_equal(load_json(json, &d, &sa), PGW_ERR_CRYPTO);
    assert_true(diag_has(&d, "field 'private_key' is not an RSA key"));
    diag_no_secret(&d);
    cJSON_free(json);
    free(pem);
    pgw_diag_release(&d);

    /* Too large a file. */
    {
        char *dir = tu_mkdtemp();
        char *big = malloc(PGW_OAUTH_SA_MAX_BYTES + 10);
        char *p;
        assert_non_null(big);
        memset(big, ' ', PGW_OAUTH_SA_MAX_BYTES + 9);
        big[PGW_OAUTH_SA_MAX_BYTES + 9] = '\0';
        p = tu_write_file(dir, "big.json", big, 0600);
        pgw_diag_init(&d);
        assert_int_equal(pgw_oauth_sa_load(p, &d, &sa), PGW_ERR_TOO_LARGE);
        assert_true(diag_has(&d, "larger than"));
        pgw_diag_release(&d);
        free(p);
        free(big);
        tu_rm_rf(dir);
        free(dir);
    }
    /* NULL diag is allowed. */
    assert_int_equal(load_json("{}", NULL, &sa), PGW_ERR_INVAL);
}

/* ---- assertion ------------------------------------------------------- */

static void test_assertion(void **state)
{
    struct pgw_oauth_sa *sa = NULL;
    char *jwt = NULL;
    cJSON *hdr = NULL, *c;

    (void)state;
    assert_int_equal(pgw_oauth_sa_load(SA_FILE, NULL, &sa), 0);
    assert_int_equal(pgw_oauth_make_assertion(sa, "https://127.0.0.1:1/token",
                                              PGW_OAUTH_FCM_SCOPE, 1700000000,
                                              3600, &jwt),
                     0);
    c = verify_jwt(jwt, &hdr);
    assert_string_equal(cJSON_GetObjectItem(hdr, "alg")->valuestring, "RS256");
    assert_string_equal(cJSON_GetObjectItem(hdr, "typ")->valuestring, "JWT");
    assert_string_equal(cJSON_GetObjectItem(hdr, "kid")->valuestring,
                        "0123456789abcdef");
    assert_string_equal(cJSON_GetObjectItem(c, "iss")->valuestring, EMAIL);
    assert_string_equal(cJSON_GetObjectItem(c, "scope")->valuestring,
                        "https://www.googleapis.com/auth/firebase.messaging");
    assert_string_equal(cJSON_GetObjectItem(c, "aud")->valuestring,
                        "https://127.0.0.1:1/token");
    assert_true(cJSON_GetObjectItem(c, "iat")->valuedouble == 1700000000.0);
    assert_true(cJSON_GetObjectItem(c, "exp")->valuedouble == 1700003600.0);
    assert_int_equal(cJSON_GetArraySize(c), 5);
    cJSON_Delete(c);
    cJSON_Delete(hdr);
    free(jwt);

    jwt = NULL;
    assert_int_equal(pgw_oauth_make_assertion(sa, "https://x/token",
                                              PGW_OAUTH_FCM_SCOPE, 1700000000,
                                              3601, &jwt),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_oauth_make_assertion(sa, "", PGW_OAUTH_FCM_SCOPE,
                                              1700000000, 60, &jwt),
                     PGW_ERR_INVAL);
    assert_null(jwt);
    pgw_oauth_sa_free(sa);
}

static void test_parse_token_response(void **state)
{
    static const struct {
        const char *body;
        int ret;
        const char *token;
        int64_t expires;
    } cases[] = {
        {"{\"access_token\":\"ya29.abc\",\"expires_in\":3599,"
         "\"token_type\":\"Bearer\"}",
         0, "ya29.abc", 3599},
        {"{\"access_token\":\"t\"}", 0, "t", 3600},
        {"{\"access_token\":\"t\",\"token_type\":\"bearer\"}", 0, "t", 3600},
        {"{\"access_token\":\"t\",\"token_type\":\"MAC\"}", PGW_ERR_PROTO, NULL,
         0},
        {"{\"access_token\":\"\"}", PGW_ERR_PROTO, NULL, 0},
        {"{\"access_token\":\"a b\"}", PGW_ERR_PROTO, NULL, 0},
        {"{\"access_token\":\"a\\r\\nX: y\"}", PGW_ERR_PROTO, NULL, 0},
        {"{\"access_token\":5}", PGW_ERR_PROTO, NULL, 0},
        {"{\"access_token\":\"t\",\"expires_in\":0}", PGW_ERR_PROTO, NULL, 0},
        {"{\"access_token\":\"t\",\"expires_in\":\"60\"}", PGW_ERR_PROTO, NULL,
         0},
        {"{\"access_token\":\"t\",\"expires_in\":1e9}", PGW_ERR_PROTO, NULL, 0},
        {"not json", PGW_ERR_PROTO, NULL, 0},
        {"{}", PGW_ERR_PROTO, NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        char *tok = NULL;
        int64_t exp = -1;
        int ret = pgw_oauth_parse_token_response(
            cases[i].body, strlen(cases[i].body), &tok, &exp);
        assert_int_equal(ret, cases[i].ret);
        if (cases[i].token) {
            assert_string_equal(tok, cases[i].token);
            assert_int_equal(exp, cases[i].expires);
        } else {
            assert_null(tok);
            assert_int_equal(exp, -1);
        }
        free(tok);
    }
}

/* ---- token source against a real HTTP endpoint ------------------------ */

struct tsrv {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int hits;
    int status;     /* answer status */
    int expires_in; /* in the answer */
    int hold;       /* do not answer */
    char last_body[4096];
    char url[96];
};

static void tsrv_handle(struct evhttp_request *req, void *arg)
{
    struct tsrv *s = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evbuffer *out;
    size_t n = evbuffer_get_length(in);

    s->hits++;
    if (n >= sizeof(s->last_body))
        n = sizeof(s->last_body) - 1;
    evbuffer_copyout(in, s->last_body, n);
    s->last_body[n] = '\0';
    if (s->hold)
        return; /* released by evhttp_free() */
    out = evbuffer_new();
    if (s->status == 200)
        evbuffer_add_printf(out,
                            "{\"access_token\":\"tok-%d\",\"expires_in\":%d,"
                            "\"token_type\":\"Bearer\"}",
                            s->hits, s->expires_in);
    else
        evbuffer_add_printf(out, "{\"error\":\"invalid_grant\","
                                 "\"error_description\":\"Invalid JWT\"}");
    evhttp_send_reply(req, s->status, "X", out);
    evbuffer_free(out);
}

static void tsrv_start(struct tsrv *s, struct event_base *base)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(s, 0, sizeof(*s));
    s->base = base;
    s->status = 200;
    s->expires_in = 3600;
    s->http = evhttp_new(base);
    assert_non_null(s->http);
    bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs),
                                 (struct sockaddr *)&sin, &len),
                     0);
    s->port = ntohs(sin.sin_port);
    snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/token", s->port);
    evhttp_set_gencb(s->http, tsrv_handle, s);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

static void run_for(struct event_base *base, int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    assert_non_null(t);
    evtimer_add(t, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

static void run_until(struct event_base *base, const int *count, int want,
                      int ms)
{
    for (int i = 0; i < ms / 10 && *count < want; i++)
        run_for(base, 10);
}

struct fixture {
    struct event_base *base;
    struct pgw_curlmulti *cm;
    struct pgw_oauth_sa *sa;
    struct pgw_oauth *oauth;
    struct tsrv srv;
    int64_t now_ms;
};

static int64_t test_clock(void *arg)
{
    return ((struct fixture *)arg)->now_ms;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct pgw_oauth_options o = {0};

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    tsrv_start(&f->srv, f->base);
    assert_int_equal(pgw_curlmulti_new(f->base, 0, &f->cm), 0);
    assert_int_equal(pgw_oauth_sa_load(SA_FILE, NULL, &f->sa), 0);
    f->now_ms = 1700000000000LL;
    o.token_url = f->srv.url;
    o.timeout_ms = 5000;
    o.clock = test_clock;
    o.clock_arg = f;
    assert_int_equal(pgw_oauth_new(f->cm, f->sa, &o, &f->oauth), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pgw_oauth_free(f->oauth);
    pgw_curlmulti_free(f->cm);
    pgw_oauth_sa_free(f->sa);
    evhttp_free(f->srv.http);
    event_base_free(f->base);
    free(f);
    return 0;
}

struct waited {
    int calls;
    int err;
    char token[64];
};

static void on_token(int err, const char *token, void *arg)
{
    struct waited *w = arg;

    w->calls++;
    w->err = err;
    snprintf(w->token, sizeof(w->token), "%s", token ? token : "");
    if (err)
        assert_null(token);
}

static int sum_calls(const struct waited *w, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += w[i].calls;
    return s;
}

/* Checks the form the endpoint got: grant type and a valid assertion. */
static void check_form(const struct fixture *f, int64_t iat_s)
{
    const char *prefix = "grant_type=urn:ietf:params:oauth:grant-type:"
                         "jwt-bearer&assertion=";
    cJSON *c;

    assert_memory_equal(f->srv.last_body, prefix, strlen(prefix));
    c = verify_jwt(f->srv.last_body + strlen(prefix), NULL);
    assert_string_equal(cJSON_GetObjectItem(c, "aud")->valuestring, f->srv.url);
    assert_string_equal(cJSON_GetObjectItem(c, "iss")->valuestring, EMAIL);
    assert_true(cJSON_GetObjectItem(c, "iat")->valuedouble == (double)iat_s);
    assert_true(cJSON_GetObjectItem(c, "exp")->valuedouble ==
                (double)(iat_s + 3600));
    cJSON_Delete(c);
}

static void test_single_flight_cache_renewal(void **state)
{
    struct fixture *f = *state;
    struct waited w[100];
    struct waited again = {0};
    int64_t t0 = f->now_ms;
    int total = 0;

    memset(w, 0, sizeof(w));
    assert_null(pgw_oauth_token(f->oauth));
    for (int i = 0; i < 100; i++)
        assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[i]), 0);
    /* Never synchronous; one request however many wait. */
    assert_int_equal(sum_calls(w, 100), 0);
    assert_int_equal(pgw_oauth_requests(f->oauth), 1);
    for (int i = 0; i < 300 && total < 100; i++) {
        run_for(f->base, 10);
        total = sum_calls(w, 100);
    }
    assert_int_equal(total, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].err, 0);
        assert_string_equal(w[i].token, "tok-1");
    }
    assert_int_equal(f->srv.hits, 1);
    check_form(f, t0 / 1000);

    /* Cached until 5 minutes before expiry. */
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    f->now_ms = t0 + (3600 - 300 - 1) * 1000LL;
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    run_for(f->base, 50);
    assert_int_equal(f->srv.hits, 1);
    assert_int_equal(pgw_oauth_requests(f->oauth), 1);

    /* Past the renewal point: still served, renewed in the background,
     * once. */
    f->now_ms = t0 + (3600 - 300 + 1) * 1000LL;
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    assert_int_equal(pgw_oauth_requests(f->oauth), 1 + 1);
    run_until(f->base, &f->srv.hits, 2, 3000);
    run_for(f->base, 20);
    assert_int_equal(f->srv.hits, 2);
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-2");
    check_form(f, f->now_ms / 1000);

    /* A 401 with an old token changes nothing; with the current one it
     * drops it, and the next wait fetches a new one. */
    pgw_oauth_invalidate(f->oauth, "tok-1");
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-2");
    pgw_oauth_invalidate(f->oauth, "tok-2");
    assert_null(pgw_oauth_token(f->oauth));
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &again), 0);
    run_until(f->base, &again.calls, 1, 3000);
    assert_int_equal(again.err, 0);
    assert_string_equal(again.token, "tok-3");
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-3");

    /* Past expiry without renewal: not handed out. */
    f->srv.hold = 1;
    f->now_ms += 3600 * 1000LL;
    assert_null(pgw_oauth_token(f->oauth));
}

static void test_short_lived_tokens(void **state)
{
    struct fixture *f = *state;
    struct waited w = {0};
    int64_t t0 = f->now_ms;

    /* A 60 s token renews at half its life, not 5 min before. */
    f->srv.expires_in = 60;
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w), 0);
    run_until(f->base, &w.calls, 1, 3000);
    assert_string_equal(w.token, "tok-1");
    f->now_ms = t0 + 29 * 1000;
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    assert_int_equal(pgw_oauth_requests(f->oauth), 1);
    f->now_ms = t0 + 31 * 1000;
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-1");
    assert_int_equal(pgw_oauth_requests(f->oauth), 2);
    run_until(f->base, &f->srv.hits, 2, 3000);
    run_for(f->base, 20);
    assert_string_equal(pgw_oauth_token(f->oauth), "tok-2");
}

static void test_failure_and_backoff(void **state)
{
    struct fixture *f = *state;
    struct waited w[3];

    memset(w, 0, sizeof(w));
    f->srv.status = 400;
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[0]), 0);
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[1]), 0);
    for (int i = 0; i < 300 && sum_calls(w, 2) < 2; i++)
        run_for(f->base, 10);
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[0].err, PGW_ERR_AUTH);
    assert_int_equal(w[1].err, PGW_ERR_AUTH);
    assert_null(pgw_oauth_token(f->oauth));
    /* Within the backoff: refused at once, no new request. */
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[2]), PGW_ERR_AUTH);
    assert_int_equal(f->srv.hits, 1);
    /* After it: tried again. */
    f->srv.status = 200;
    f->now_ms += 1001;
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[2]), 0);
    run_until(f->base, &w[2].calls, 1, 3000);
    assert_int_equal(w[2].err, 0);
    assert_string_equal(w[2].token, "tok-2");
}

static void test_free_wakes_waiters(void **state)
{
    struct fixture *f = *state;
    struct waited w[2];

    memset(w, 0, sizeof(w));
    f->srv.hold = 1;
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[0]), 0);
    assert_int_equal(pgw_oauth_wait(f->oauth, on_token, &w[1]), 0);
    run_until(f->base, &f->srv.hits, 1, 3000);
    assert_int_equal(sum_calls(w, 2), 0);
    pgw_oauth_free(f->oauth);
    f->oauth = NULL;
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[0].err, PGW_ERR_CLOSED);
    assert_int_equal(w[1].calls, 1);
    assert_int_equal(pgw_curlmulti_pending(f->cm), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sa_valid),
        cmocka_unit_test(test_sa_errors),
        cmocka_unit_test(test_assertion),
        cmocka_unit_test(test_parse_token_response),
        cmocka_unit_test_setup_teardown(test_single_flight_cache_renewal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_short_lived_tokens, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failure_and_backoff, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_wakes_waiters, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
