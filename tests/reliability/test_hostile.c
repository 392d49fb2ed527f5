/*
 * Hostile input against the real `pushgw serve` (DESIGN §6, §11): every
 * refusal answers the documented status with a JSON error and stores
 * nothing; slowloris connections, huge headers and oversized bodies do not
 * stop other clients; SQL metacharacters in every string field are stored
 * and pushed verbatim; the key check takes the same time whichever byte
 * of the key is wrong.
 *
 * The gateway runs with [server] max_body_bytes = 4 MiB (environment
 * override) so that a 10^6-element array fits under the body limit and is
 * refused by validation, not by size. PUSHGW_RELIABILITY_LONG=1 raises the
 * number of timing samples and slowloris connections.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODY (4 * 1024 * 1024)
#define PATH "/v1/apps/demo/receivers-offline"
#define TOK_IOS                                                                \
    "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee01"

static struct tu_svc S;
static struct tu_http *H;

static int setup(void **state)
{
    (void)state;
    setenv("PUSHGW_SERVER_MAX_BODY_BYTES", "4194304", 1);
    tu_svc_start(&S, NULL);
    unsetenv("PUSHGW_SERVER_MAX_BODY_BYTES");
    tu_svc_add_device(&S, "demo", "ios", TOK_IOS, "{Jerry}", NULL);
    H = tu_http_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_http_free(H);
    tu_svc_stop(&S);
    return 0;
}

static long events_stored(void)
{
    char *v = tu_svc_query(&S, "SELECT count(*) FROM events");
    long n;

    assert_non_null(v);
    n = atol(v);
    free(v);
    return n;
}

static char *valid_event(int i)
{
    char *b = NULL;

    assert_int_equal(
        asprintf(&b,
                 "{\"fromPeer\":\"Spike\",\"convId\":\"h%d\",\"offlinePeers\":"
                 "[\"Jerry\"],\"timestamp\":%lld,\"pushData\":{\"alert\":"
                 "\"hostile %d\"}}",
                 i, tu_wall_ms(), i) > 0,
        1);
    return b;
}

/* A valid event is accepted promptly (while something hostile runs). */
static void expect_served(struct tu_http *h, int i, int max_ms)
{
    char *b = valid_event(i);
    long long t0 = tu_mono_ms();
    int st = tu_http_post(h, S.gw.port, PATH, "demo-hook-key-0001", NULL, b,
                          strlen(b), 10000, NULL, NULL);
    long long dt = tu_mono_ms() - t0;

    free(b);
    if (st != 202 || dt > max_ms)
        fail_msg("a valid event got %d after %lld ms", st, dt);
}

/* Checks one refusal: status, JSON error (with |field| unless NULL), and
 * nothing stored. */
static void refuse(const char *what, const char *path, const char *key,
                   const char *ctype, const char *body, size_t len, int want,
                   const char *field)
{
    long before = events_stored();
    char *resp = NULL;
    int ra = -1;
    long long t0 = tu_mono_ms();
    int st = tu_http_post(H, S.gw.port, path, key, ctype, body, len, 30000,
                          &resp, &ra);
    long long dt = tu_mono_ms() - t0;
    cJSON *j = resp ? cJSON_Parse(resp) : NULL;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "field");

    printf("# %-34s -> %d in %lld ms %s\n", what, st, dt,
           resp ? resp : "(no body)");
    if (st != want)
        fail_msg("%s: want %d, got %d: %s", what, want, st, resp ? resp : "");
    if (!cJSON_IsString(err) || !cJSON_IsString(f))
        fail_msg("%s: not a JSON error: %s", what, resp ? resp : "");
    if (field && strcmp(f->valuestring, field) != 0)
        fail_msg("%s: want field '%s', got '%s'", what, field, f->valuestring);
    /* Inserts commit before the answer: the count is final now. */
    if (events_stored() != before)
        fail_msg("%s: something was stored", what);
    cJSON_Delete(j);
    free(resp);
}

/* |n| copies of |item| joined by commas inside |pre| ... |post|. */
static char *repeat(const char *pre, const char *item, size_t n,
                    const char *post, size_t *ret_len)
{
    size_t il = strlen(item), pl = strlen(pre), ql = strlen(post);
    size_t len = pl + n * (il + 1) + ql;
    char *b = malloc(len + 1);
    char *p = b;

    assert_non_null(b);
    memcpy(p, pre, pl);
    p += pl;
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, item, il);
        p += il;
    }
    memcpy(p, post, ql);
    p += ql;
    *p = '\0';
    *ret_len = (size_t)(p - b);
    return b;
}

/* Missing, wrong and longer hook keys; an unknown app. */
static void test_refuses_bad_keys_and_apps(void **state)
{
    char *b = valid_event(0);
    (void)state;

    refuse("missing key", PATH, NULL, NULL, b, strlen(b), 401, NULL);
    refuse("wrong key", PATH, "demo-kez", NULL, b, strlen(b), 401, NULL);
    refuse("wrong key (longer)", PATH, "demo-hook-key-0001-and-more", NULL, b,
           strlen(b), 401, NULL);
    refuse("unknown app", "/v1/apps/nope/receivers-offline",
           "demo-hook-key-0001", NULL, b, strlen(b), 404, "appId");
    free(b);
    expect_served(H, 1, 5000);
}

/* Anything but application/json. */
static void test_refuses_content_types(void **state)
{
    char *b = valid_event(0);
    (void)state;

    refuse("text/plain", PATH, "demo-hook-key-0001", "text/plain", b, strlen(b),
           415, NULL);
    refuse("form content type", PATH, "demo-hook-key-0001",
           "application/x-www-form-urlencoded", b, strlen(b), 415, NULL);
    refuse("json-ish content type", PATH, "demo-hook-key-0001",
           "application/jsonx", b, strlen(b), 415, NULL);
    free(b);
    expect_served(H, 1, 5000);
}

/* Empty, truncated, not an object, a field of the wrong type. */
static void test_refuses_malformed_json(void **state)
{
    (void)state;

    refuse("empty body", PATH, "demo-hook-key-0001", NULL, "", 0, 400, NULL);
    refuse("not JSON", PATH, "demo-hook-key-0001", NULL, "{\"fromPeer\":", 12,
           400, NULL);
    refuse("array body", PATH, "demo-hook-key-0001", NULL, "[1,2]", 5, 400,
           NULL);
    {
        static const char wt[] = "{\"fromPeer\":1,\"convId\":\"c\","
                                 "\"offlinePeers\":[\"J\"],\"timestamp\":1}";
        refuse("wrong type", PATH, "demo-hook-key-0001", NULL, wt,
               sizeof(wt) - 1, 400, "fromPeer");
    }

    expect_served(H, 1, 5000);
}

/* Invalid UTF-8 and NUL bytes, raw and escaped. */
static void test_refuses_bad_utf8_and_nul(void **state)
{
    (void)state;

    {
        static const char bad_utf8[] =
            "{\"fromPeer\":\"Sp\xc3\x28ke\",\"convId\":\"c\",\"offlinePeers\":"
            "[\"Jerry\"],\"timestamp\":1700000000000}";
        static const char overlong[] =
            "{\"fromPeer\":\"Spike\",\"convId\":\"c\xc0\xaf\",\"offlinePeers\":"
            "[\"Jerry\"],\"timestamp\":1700000000000}";
        static const char nul_raw[] =
            "{\"fromPeer\":\"Spike\",\"convId\":\"c\",\"offlinePeers\":"
            "[\"Jer\0ry\"],\"timestamp\":1700000000000}";
        static const char nul_esc[] =
            "{\"fromPeer\":\"Spike\",\"convId\":\"c\",\"content\":"
            "\"a\\u0000b\","
            "\"offlinePeers\":[\"Jerry\"],\"timestamp\":1700000000000}";
        static const char surrogate[] =
            "{\"fromPeer\":\"Spike\",\"convId\":\"c\",\"content\":\"\\ud800\","
            "\"offlinePeers\":[\"Jerry\"],\"timestamp\":1700000000000}";
        refuse("invalid UTF-8", PATH, "demo-hook-key-0001", NULL, bad_utf8,
               sizeof(bad_utf8) - 1, 400, NULL);
        refuse("overlong UTF-8", PATH, "demo-hook-key-0001", NULL, overlong,
               sizeof(overlong) - 1, 400, NULL);
        refuse("raw NUL byte", PATH, "demo-hook-key-0001", NULL, nul_raw,
               sizeof(nul_raw) - 1, 400, NULL);
        refuse("escaped NUL", PATH, "demo-hook-key-0001", NULL, nul_esc,
               sizeof(nul_esc) - 1, 400, NULL);
        refuse("lone surrogate", PATH, "demo-hook-key-0001", NULL, surrogate,
               sizeof(surrogate) - 1, 400, NULL);
    }

    expect_served(H, 1, 5000);
}

/* Deep nesting: 100,000 levels in pushData. */
static void test_refuses_deep_nesting(void **state)
{
    char *big;
    (void)state;

    {
        size_t depth = 100000;
        const char *pre = "{\"fromPeer\":\"Spike\",\"convId\":\"c\","
                          "\"offlinePeers\":[\"Jerry\"],\"timestamp\":"
                          "1700000000000,\"pushData\":{\"a\":";
        size_t pl = strlen(pre);
        big = malloc(pl + 2 * depth + 3);
        assert_non_null(big);
        memcpy(big, pre, pl);
        memset(big + pl, '[', depth);
        memset(big + pl + depth, ']', depth);
        memcpy(big + pl + 2 * depth, "}}", 3);
        refuse("nesting 100000 deep", PATH, "demo-hook-key-0001", NULL, big,
               pl + 2 * depth + 2, 400, NULL);
        free(big);
    }

    expect_served(H, 1, 5000);
}

/* 10^6-element arrays (within the 4 MiB body limit) and a batch of 1001. */
static void test_refuses_huge_arrays(void **state)
{
    char *big;
    size_t len;
    (void)state;

    big = repeat("{\"fromPeer\":\"Spike\",\"convId\":\"c\",\"timestamp\":"
                 "1700000000000,\"offlinePeers\":[",
                 "\"J\"", 1000000, "]}", &len);
    /* Refused by the JSON pre-scan's element cap, before any field is
     * known: field "". */
    refuse("offlinePeers of 10^6", PATH, "demo-hook-key-0001", NULL, big, len,
           400, NULL);
    free(big);
    big = repeat("{\"fromPeer\":\"Spike\",\"convId\":\"c\",\"timestamp\":"
                 "1700000000000,\"offlinePeers\":[\"Jerry\"],\"mutedPeers\":[",
                 "1", 1000000, "]}", &len);
    refuse("mutedPeers of 10^6 numbers", PATH, "demo-hook-key-0001", NULL, big,
           len, 400, NULL);
    free(big);
    big = repeat("{\"events\":[", "{}", 1001, "]}", &len);
    refuse("batch of 1001", PATH "/batch", "demo-hook-key-0001", NULL, big, len,
           400, NULL);
    free(big);

    expect_served(H, 1, 5000);
}

/* Over the body limit, within libevent's slack: our JSON 413. */
static void test_refuses_body_over_limit(void **state)
{
    char *big;
    size_t len;
    (void)state;

    len = MAX_BODY + 100;
    big = malloc(len);
    assert_non_null(big);
    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    refuse("body over the limit", PATH, "demo-hook-key-0001", NULL, big, len,
           413, NULL);
    free(big);

    expect_served(H, 1, 5000);
}

/* A raw connection: send |req|, read the status line (0: none). */
static int raw_status(const char *req, size_t len, int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)S.gw.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char buf[256] = {0};
    size_t off = 0;
    int st = 0;

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may close early: read its answer */
        off += (size_t)w;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) == 1) {
        ssize_t r = recv(fd, buf, sizeof(buf) - 1, 0);
        if (r > 12 && strncmp(buf, "HTTP/1.", 7) == 0)
            st = atoi(buf + 9);
    }
    close(fd);
    return st;
}

static void test_headers_and_declared_length(void **state)
{
    char *req;
    size_t hl = 64 * 1024;
    (void)state;

    /* A 64 KiB header: refused by libevent's header limit (16 KiB); it
     * answers 400 (libevent 2.1), and closes. */
    req = malloc(hl + 256);
    assert_non_null(req);
    int n = snprintf(req, 256, "POST %s HTTP/1.1\r\nHost: x\r\nX-Big: ", PATH);
    memset(req + n, 'a', hl);
    memcpy(req + n + hl, "\r\n\r\n", 5);
    int st = raw_status(req, (size_t)n + hl + 4, 10000);
    printf("# 64 KiB header -> %d\n", st);
    assert_true(st == 413 || st == 431 || st == 400);
    free(req);

    /* 2000 small headers. */
    {
        size_t cap = 2000 * 16 + 256, off;
        req = malloc(cap);
        assert_non_null(req);
        off =
            (size_t)snprintf(req, cap, "POST %s HTTP/1.1\r\nHost: x\r\n", PATH);
        for (int i = 0; i < 2000; i++)
            off += (size_t)snprintf(req + off, cap - off, "X-%d: v\r\n", i);
        off += (size_t)snprintf(req + off, cap - off, "\r\n");
        st = raw_status(req, off, 10000);
        printf("# 2000 headers -> %d\n", st);
        assert_true(st == 413 || st == 431 || st == 400);
        free(req);
    }

    /* A declared 1 GiB body: refused before it is read. */
    {
        char r2[512];
        long long t0 = tu_mono_ms();
        int l =
            snprintf(r2, sizeof(r2),
                     "POST %s HTTP/1.1\r\nHost: x\r\nX-LC-Hook-Key: "
                     "demo-hook-key-0001\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1073741824\r\n\r\n{",
                     PATH);
        st = raw_status(r2, (size_t)l, 10000);
        printf("# Content-Length 1 GiB -> %d in %lld ms\n", st,
               tu_mono_ms() - t0);
        assert_int_equal(st, 413);
    }
    expect_served(H, 2, 5000);
}

/* Slowloris: many connections trickling header bytes; others are served. */
struct loris {
    int *fds;
    int n;
    atomic_int stop; /* set by the test's thread, read by the loris */
    int closed_by_server;
};

static void *loris_main(void *arg)
{
    struct loris *l = arg;
    static const char head[] = "POST " PATH " HTTP/1.1\r\nHost: x\r\nX-Slow: ";

    for (int i = 0; i < l->n; i++)
        if (l->fds[i] >= 0)
            send(l->fds[i], head, sizeof(head) - 1, MSG_NOSIGNAL);
    while (!l->stop) {
        for (int i = 0; i < l->n; i++) {
            if (l->fds[i] < 0)
                continue;
            if (send(l->fds[i], "a", 1, MSG_NOSIGNAL) != 1) {
                close(l->fds[i]);
                l->fds[i] = -1;
                l->closed_by_server++;
            }
        }
        usleep(200000); /* the trickle is the attack */
    }
    return NULL;
}

static void test_slowloris(void **state)
{
    struct loris l = {0};
    pthread_t th;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)S.gw.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct tu_http *h = tu_http_new();
    long long t0;
    int served = 0;
    (void)state;

    l.n = tu_long() ? 900 : 200;
    l.fds = calloc((size_t)l.n, sizeof(int));
    assert_non_null(l.fds);
    for (int i = 0; i < l.n; i++) {
        l.fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(l.fds[i] >= 0);
        assert_int_equal(connect(l.fds[i], (struct sockaddr *)&sa, sizeof(sa)),
                         0);
    }
    assert_int_equal(pthread_create(&th, NULL, loris_main, &l), 0);
    /* Other clients are served promptly meanwhile. */
    t0 = tu_mono_ms();
    while (tu_mono_ms() - t0 < (tu_long() ? 30000 : 3000)) {
        expect_served(h, 100 + served, 3000);
        served++;
        usleep(50000); /* a valid client's pace during the attack */
    }
    l.stop = 1;
    pthread_join(th, NULL);
    printf("# slowloris: %d connections trickling for %lld ms, %d valid "
           "events served meanwhile, %d slow connections closed by the "
           "server\n",
           l.n, tu_mono_ms() - t0, served, l.closed_by_server);
    for (int i = 0; i < l.n; i++)
        if (l.fds[i] >= 0)
            close(l.fds[i]);
    free(l.fds);
    tu_http_free(h);
}

/* SQL metacharacters in every string field: accepted, stored verbatim,
 * pushed verbatim. */
/* A collapse-id carrying CR LF and a header (any end user's pushData can):
 * the push fails as bad_collapse_id before anything is sent, and is not
 * retried. Before: the header reached the HTTP/2 stream, the mock reset
 * it, and the push was retried again and again. */
static void test_header_injection(void **state)
{
    static const char tok[] = "ffffffffffffffffffffffffffffffffffffffffffffffff"
                              "ffffffffffffff03";
    char *body = NULL, *resp = NULL, *v;
    int st;
    (void)state;

    tu_svc_add_device_on(&S, "demo", "ios", tok, "Injected");
    assert_int_equal(
        asprintf(&body,
                 "{\"fromPeer\":\"a\",\"convId\":\"inj\",\"offlinePeers\":"
                 "[\"Injected\"],\"timestamp\":%lld,\"pushData\":{\"alert\":"
                 "\"x\",\"collapse-id\":\"c\\r\\nx-evil: 1\"}}",
                 tu_wall_ms()) > 0,
        1);
    st = tu_http_post(H, S.gw.port, PATH, "demo-hook-key-0001", NULL, body,
                      strlen(body), 10000, &resp, NULL);
    assert_int_equal(st, 202);
    assert_true(tu_svc_wait_query(
        &S, "SELECT state FROM events WHERE conv_id = 'inj'", "done", 15000));
    v = tu_svc_query(&S, "SELECT f.reason FROM push_failures f JOIN events e "
                         "ON e.id = f.event_id WHERE e.conv_id = 'inj'");
    assert_non_null(v);
    assert_string_equal(v, "bad_collapse_id");
    free(v);
    v = tu_svc_query(&S, "SELECT count(*) FROM push_retries r JOIN events e "
                         "ON e.id = r.event_id WHERE e.conv_id = 'inj'");
    assert_string_equal(v, "0");
    free(v);
    {
        cJSON *recs = tu_records_read(S.apns.record), *r;

        cJSON_ArrayForEach(r, recs)
        {
            cJSON *t = cJSON_GetObjectItem(r, "token");
            assert_false(cJSON_IsString(t) && strcmp(t->valuestring, tok) == 0);
        }
        cJSON_Delete(recs);
    }
    free(body);
    free(resp);
}

static void test_sql_metacharacters(void **state)
{
    static const char meta[] = "x'); DROP TABLE events; -- \\\" $1 %s ; "
                               "\\\\ ' || pg_sleep(5) || ' */ /*";
    /* The same string as it is after JSON decoding. */
    static const char plain[] = "x'); DROP TABLE events; -- \" $1 %s ; \\ ' "
                                "|| pg_sleep(5) || ' */ /*";
    char *body = NULL, *resp = NULL, *v, sql[512];
    cJSON *j;
    (void)state;

    tu_svc_add_device_on(
        &S, "demo", "ios",
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
        "eeeee02",
        plain);
    assert_int_equal(
        asprintf(&body,
                 "{\"fromPeer\":\"%s\",\"convId\":\"%s\",\"offlinePeers\":"
                 "[\"%s\"],\"timestamp\":%lld,\"content\":\"%s\","
                 "\"mentionOfflinePeers\":[\"%s\"],\"mutedPeers\":[\"%s "
                 "muted\"],\"msgId\":\"%s\",\"pushData\":{\"alert\":\"%s\","
                 "\"%s\":\"%s\"}}",
                 meta, meta, meta, tu_wall_ms(), meta, meta, meta, meta, meta,
                 meta, meta) > 0,
        1);
    long long t0 = tu_mono_ms();
    int st = tu_http_post(H, S.gw.port, PATH, "demo-hook-key-0001", NULL, body,
                          strlen(body), 10000, &resp, NULL);
    printf("# SQL metacharacters -> %d in %lld ms %s\n", st, tu_mono_ms() - t0,
           resp);
    assert_int_equal(st, 202);
    j = cJSON_Parse(resp);
    assert_non_null(cJSON_GetObjectItem(j, "eventId"));
    snprintf(sql, sizeof(sql),
             "SELECT (body::json->>'fromPeer') || '|' || (body::json->>"
             "'convId') || '|' || (body::json->'offlinePeers'->>0) || '|' || "
             "(body::json->>'content') || '|' || conv_id || '|' || msg_id "
             "FROM events WHERE id = %s",
             cJSON_GetObjectItem(j, "eventId")->valuestring);
    cJSON_Delete(j);
    v = tu_svc_query(&S, sql);
    assert_non_null(v);
    {
        char *want = NULL;
        assert_int_equal(asprintf(&want, "%s|%s|%s|%s|%s|%s", plain, plain,
                                  plain, plain, plain, plain) > 0,
                         1);
        assert_string_equal(v, want);
        free(want);
    }
    free(v);
    /* The tables are still there and the push went out verbatim. */
    v = tu_svc_query(&S, "SELECT count(*) > 0 FROM events");
    assert_string_equal(v, "t");
    free(v);
    {
        int found = 0;
        TU_POLL_UNTIL(found, 10000)
        {
            cJSON *recs = tu_records_read(S.apns.record), *r;
            cJSON_ArrayForEach(r, recs)
            {
                cJSON *a = cJSON_GetObjectItem(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(r, "body"), "aps"),
                    "alert");
                cJSON *custom =
                    cJSON_GetObjectItem(cJSON_GetObjectItem(r, "body"), plain);
                if (cJSON_IsString(a) && strcmp(a->valuestring, plain) == 0 &&
                    cJSON_IsString(custom) &&
                    strcmp(custom->valuestring, plain) == 0)
                    found = 1;
            }
            cJSON_Delete(recs);
        }
        assert_true(found);
    }
    free(body);
    free(resp);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The key compare does not leak where the key differs. */
static void test_key_timing(void **state)
{
    static const char *const keys[] = {
        "zzzzzzzz", "Xemo-key", "demo-keX",
        "demo-hook-key-0001-longer-than-it-should-be"};
    static const char *const names[] = {"all bytes wrong", "first byte wrong",
                                        "last byte wrong", "longer"};
    enum { K = 4 };
    int m = tu_long() ? 5000 : 400;
    double *t[K], med[K];
    char *b = valid_event(9);
    (void)state;

    for (int k = 0; k < K; k++) {
        t[k] = calloc((size_t)m, sizeof(double));
        assert_non_null(t[k]);
    }
    /* Warm up, then interleave the variants so drift hits all alike. */
    for (int i = 0; i < 50; i++)
        tu_http_post(H, S.gw.port, PATH, keys[0], NULL, b, strlen(b), 10000,
                     NULL, NULL);
    for (int i = 0; i < m; i++)
        for (int k = 0; k < K; k++) {
            int kk = (i + k) % K;
            int st = tu_http_post(H, S.gw.port, PATH, keys[kk], NULL, b,
                                  strlen(b), 10000, NULL, NULL);
            assert_int_equal(st, 401);
            t[kk][i] = tu_http_last_us(H);
        }
    for (int k = 0; k < K; k++) {
        qsort(t[k], (size_t)m, sizeof(double), cmp_double);
        med[k] = t[k][m / 2];
        printf("# key timing: %-17s median %.1f us  p10 %.1f  p90 %.1f "
               "(n=%d)\n",
               names[k], med[k], t[k][m / 10], t[k][m * 9 / 10], m);
    }
    /* A byte-wise compare would differ by far less than loopback noise on
     * a slow machine, so this only catches gross leaks (e.g. an early
     * exit before a costly step); the figures are the report. */
    for (int k = 1; k < K; k++) {
        double d = med[k] > med[0] ? med[k] - med[0] : med[0] - med[k];
        double tol = med[0] * 0.5 > 200.0 ? med[0] * 0.5 : 200.0;
        if (d > tol)
            fail_msg("key timing: '%s' median %.1f us vs %.1f us", names[k],
                     med[k], med[0]);
    }
    for (int k = 0; k < K; k++)
        free(t[k]);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_bad_keys_and_apps),
        cmocka_unit_test(test_refuses_content_types),
        cmocka_unit_test(test_refuses_malformed_json),
        cmocka_unit_test(test_refuses_bad_utf8_and_nul),
        cmocka_unit_test(test_refuses_deep_nesting),
        cmocka_unit_test(test_refuses_huge_arrays),
        cmocka_unit_test(test_refuses_body_over_limit),
        cmocka_unit_test(test_headers_and_declared_length),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_sql_metacharacters),
        cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_key_timing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
