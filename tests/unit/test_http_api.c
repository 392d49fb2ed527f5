/*
 * Tests of the webhook and admin listeners: a real event loop (in a
 * thread), a real store on a fresh Postgres database, libcurl and raw
 * sockets as clients over loopback.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "testutil.h"

#include "config.h"
#include "event.h"
#include "http_api.h"
#include "listener.h"
#include "metrics.h"
#include "store.h"
#include "xqueue.h"

#define KEY "s3cret-hook-key-1"
#define EV_OK                                                                  \
    "{\"fromPeer\":\"Tom\",\"convId\":\"c1\",\"offlinePeers\":[\"Jerry\"],"    \
    "\"timestamp\":1700000000000,\"content\":\"hi\""

struct fx {
    char *conninfo; /* the test database; NULL when the store is unreachable */
    char *dir;
    struct pgw_config *cfg;
    struct event_base *base;
    struct pgw_store *store;
    struct pgw_metrics *metrics;
    struct pgw_http_api *api;
    pthread_t thread;
    bool running;
    int port;
    int admin_port;
    atomic_bool ready;
    atomic_bool full; /* the dispatcher refuses reservations */
    atomic_int reserved;
    atomic_int accepted; /* events handed over */
    atomic_int released; /* reservations given back */
    atomic_int stored;   /* requests with events stored unleased */
    atomic_llong last_id;
};

/* ---- the server side (runs on the loop thread) --------------------------- */

static bool fx_reserve(void *arg, size_t recipients)
{
    struct fx *fx = arg;
    (void)recipients;
    if (atomic_load(&fx->full))
        return false;
    atomic_fetch_add(&fx->reserved, 1);
    return true;
}

static void fx_accepted(void *arg, int64_t event_id, const char *app_id,
                        struct pgw_event *ev, size_t recipients)
{
    struct fx *fx = arg;
    (void)app_id;
    (void)recipients;
    if (ev == NULL) {
        atomic_fetch_add(&fx->released, 1);
        return;
    }
    atomic_store(&fx->last_id, event_id);
    atomic_fetch_add(&fx->accepted, 1);
    pgw_event_free(ev);
}

static void fx_stored(void *arg)
{
    struct fx *fx = arg;
    atomic_fetch_add(&fx->stored, 1);
}

static bool fx_ready(void *arg, const char **ret_reason)
{
    struct fx *fx = arg;
    if (!atomic_load(&fx->ready)) {
        *ret_reason = "templates not loaded";
        return false;
    }
    return true;
}

static void *loop_main(void *arg)
{
    struct fx *fx = arg;
    event_base_loop(fx->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- the client side ------------------------------------------------------
 */

struct reply {
    long status;
    char body[65536];
    size_t len;
    char retry_after[256];
    char content_type[256];
    char allow[256];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->len, p, take);
    r->len += take;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    char line[256];
    size_t l = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
    memcpy(line, p, l);
    line[l] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof(r->retry_after), "%s", line + 13);
    if (strncasecmp(line, "Allow: ", 7) == 0)
        snprintf(r->allow, sizeof(r->allow), "%s", line + 7);
    if (strncasecmp(line, "Content-Type: ", 14) == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%s", line + 14);
    return len;
}

/*
 * |method| |path| on |port| with |body| (NULL: none) and extra headers
 * (NULL-terminated). Fails the test when the request cannot be made.
 */
/* When set, requests go over TLS to "localhost", trusting this CA. */
static const char *tls_ca;

static void http(int port, const char *method, const char *path,
                 const char *const *headers, const char *body, size_t body_len,
                 struct reply *r)
{
    char url[512];
    struct curl_slist *hl = NULL;
    CURL *c = curl_easy_init();
    assert_non_null(c);
    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "%s://%s:%d%s", tls_ca ? "https" : "http",
             tls_ca ? "localhost" : "127.0.0.1", port, path);
    if (tls_ca != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, tls_ca);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static const char *const json_hdrs[] = {
    "Content-Type: application/json; charset=utf-8",
    "X-LC-Hook-Key: " KEY,
    NULL,
};

static void post(struct fx *fx, const char *path, const char *body,
                 struct reply *r)
{
    http(fx->port, "POST", path, json_hdrs, body, strlen(body), r);
}

#define SINGLE "/v1/apps/demo/receivers-offline"
#define BATCH "/v1/apps/demo/receivers-offline/batch"

static void expect_error(const struct reply *r, long status, const char *field,
                         const char *reason_part)
{
    char want_field[128];
    if (r->status != status)
        fail_msg("status %ld, want %ld; body %s", r->status, status, r->body);
    assert_non_null(strstr(r->content_type, "application/json"));
    snprintf(want_field, sizeof(want_field), "\"field\":\"%s\"", field);
    if (strstr(r->body, want_field) == NULL ||
        strstr(r->body, "{\"error\":\"") != r->body)
        fail_msg("body %s, want field '%s'", r->body, field);
    if (reason_part != NULL && strstr(r->body, reason_part) == NULL)
        fail_msg("body %s, want '%s' in the reason", r->body, reason_part);
}

static long long event_id_of(const char *body)
{
    const char *p = strstr(body, "\"eventId\":\"");
    assert_non_null(p);
    return atoll(p + 11);
}

static char *db(struct fx *fx, const char *sql)
{
    char *v = tu_db_query(fx->conninfo, sql);
    if (v == NULL)
        fail_msg("query failed: %s", sql);
    return v;
}

static long long db_count(struct fx *fx, const char *sql)
{
    char *v = db(fx, sql);
    long long n = atoll(v);
    free(v);
    return n;
}

/* ---- the loop thread's state, read on the loop thread --------------------
 */

struct loop_view {
    struct fx *fx;
    uint64_t backlog_counted;
    size_t pending;
    atomic_bool done;
};

static void read_view(evutil_socket_t fd, short what, void *arg)
{
    struct loop_view *v = arg;
    (void)fd;
    (void)what;
    v->backlog_counted = pgw_http_api_backlog_counted(v->fx->api);
    v->pending = pgw_http_api_pending(v->fx->api);
    atomic_store(&v->done, true);
}

/* What the api's loop-thread-only accessors say now. */
static struct loop_view view(struct fx *fx)
{
    struct loop_view v = {.fx = fx};
    struct timeval now = {0, 0};

    assert_int_equal(
        event_base_once(fx->base, -1, EV_TIMEOUT, read_view, &v, &now), 0);
    TU_POLL_UNTIL(atomic_load(&v.done), 10000);
    if (!atomic_load(&v.done))
        fail_msg("the loop thread did not run a callback within 10 s");
    return v;
}

/* Waits until the store has answered a backlog count sent after this call
 * (the one in flight, if any, may have been sent before). */
static void wait_backlog_count(struct fx *fx)
{
    uint64_t want = view(fx).backlog_counted + 2;

    TU_POLL_UNTIL(view(fx).backlog_counted >= want, 10000);
    assert_true(view(fx).backlog_counted >= want);
}

/* ---- fixture ----------------------------------------------------------------
 */

struct fx_opts {
    long long max_backlog;
    bool dead_store;
    unsigned timeout_ms;
    size_t max_inflight;
    bool tls;
};

#define CERTS PUSHGW_BINARY_DIR "/tests/certs/out/"

static struct fx *fx_start(const struct fx_opts *o)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct pgw_diag diag;
    char ini[4096];
    const char *url;
    assert_non_null(fx);

    if (o->dead_store) {
        /* Nothing listens on port 1. */
        url = "postgresql://pushgw@127.0.0.1:1/none?connect_timeout=1";
    } else {
        fx->conninfo = tu_db_create_migrated("http");
        url = fx->conninfo;
    }
    fx->dir = tu_mkdtemp();
    snprintf(ini, sizeof(ini),
             "[server]\nlisten = 127.0.0.1:1\nadmin_listen = 127.0.0.1:1\n"
             "max_body_bytes = 4096\nmax_peers_per_event = 3\n"
             "max_backlog_events = %lld\n"
             "[database]\nurl = %s\n"
             "[app:demo]\nhook_key = " KEY "\n"
             "[app:other]\nhook_key = other-hook-key-001\n",
             o->max_backlog ? o->max_backlog : 1000000, url);
    char *path = tu_write_file(fx->dir, "pushgw.ini", ini, 0600);
    /* No overrides: the test's own PUSHGW_* variables are not config. */
    char *const no_env[] = {NULL};
    pgw_diag_init(&diag);
    if (pgw_config_load(path, no_env, &diag, &fx->cfg) < 0)
        fail_msg("config: %s", diag.n ? diag.msgs[0] : "?");
    pgw_diag_release(&diag);
    free(path);
    /* Any free port. */
    free(fx->cfg->server.listen);
    free(fx->cfg->server.admin_listen);
    fx->cfg->server.listen = strdup("127.0.0.1:0");
    if (o->tls) {
        fx->cfg->server.tls_cert_file = strdup(CERTS "server.pem");
        fx->cfg->server.tls_key_file = strdup(CERTS "server.key");
    }
    fx->cfg->server.admin_listen = strdup("127.0.0.1:0");
    assert_non_null(fx->cfg->server.listen);
    assert_non_null(fx->cfg->server.admin_listen);

    fx->base = event_base_new();
    assert_non_null(fx->base);
    struct pgw_store_options so = {
        .conninfo = url,
        .pool_size = 2,
        .owner = "test:http_api",
    };
    assert_int_equal(pgw_store_new(fx->base, &so, &fx->store), 0);
    assert_int_equal(pgw_metrics_new(&fx->metrics), 0);
    struct pgw_http_api_options ao = {
        .base = fx->base,
        .cfg = fx->cfg,
        .store = fx->store,
        .metrics = fx->metrics,
        .dispatch = {fx_reserve, fx_accepted, fx_stored, fx},
        .ready = fx_ready,
        .ready_arg = fx,
        .lease_ms = 30000,
        .timeout_ms = o->timeout_ms,
        .max_inflight_events = o->max_inflight,
        .backlog_refresh_ms = 100,
    };
    assert_int_equal(pgw_http_api_new(&ao, &fx->api), 0);
    fx->port = pgw_http_api_port(fx->api, false);
    fx->admin_port = pgw_http_api_port(fx->api, true);
    assert_true(fx->port > 0);
    assert_true(fx->admin_port > 0);
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
    fx->running = true;

    if (!o->dead_store) {
        const char *saved_ca = tls_ca;
        tls_ca = NULL; /* the admin listener is plain */
        /* Wait until the store is connected (readyz says only that then,
         * with the ready flag set) and the first backlog count is in. */
        atomic_store(&fx->ready, true);
        struct reply r;
        http(fx->admin_port, "GET", "/readyz", NULL, NULL, 0, &r);
        TU_POLL_UNTIL(r.status == 200, 10000)
        http(fx->admin_port, "GET", "/readyz", NULL, NULL, 0, &r);
        assert_int_equal(r.status, 200);
        atomic_store(&fx->ready, false);
        tls_ca = saved_ca;
        TU_POLL_UNTIL(view(fx).backlog_counted > 0, 10000);
        assert_true(view(fx).backlog_counted > 0);
    }
    return fx;
}

static void fx_stop(struct fx *fx)
{
    if (fx->running) {
        event_base_loopbreak(fx->base);
        pthread_join(fx->thread, NULL);
    }
    pgw_http_api_free(fx->api);
    pgw_store_free(fx->store);
    pgw_metrics_free(fx->metrics);
    pgw_config_free(fx->cfg);
    event_base_free(fx->base);
    if (fx->conninfo != NULL) {
        tu_db_drop(fx->conninfo);
        free(fx->conninfo);
    }
    tu_rm_rf(fx->dir);
    free(fx->dir);
    free(fx);
}

static int setup(void **state)
{
    static const struct fx_opts o = {0};
    *state = fx_start(&o);
    return 0;
}

static int teardown(void **state)
{
    if (*state != NULL)
        fx_stop(*state);
    return 0;
}

/* ---- tests ----------------------------------------------------------------
 */

static void test_accept_and_duplicate(void **state)
{
    struct fx *fx = *state;
    struct reply r;

    post(fx, SINGLE, EV_OK ",\"msgId\":\"m-1\"}", &r);
    if (r.status != 202)
        fail_msg("status %ld: %s", r.status, r.body);
    assert_non_null(strstr(r.body, "\"duplicate\":false}"));
    long long id = event_id_of(r.body);
    assert_true(id > 0);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT app_id || '/' || conv_id || '/' || msg_id || '/' || "
             "event_ts_ms || '/' || (lease_owner IS NOT NULL) FROM events "
             "WHERE id = %lld",
             id);
    char *row = db(fx, sql);
    assert_string_equal(row, "demo/c1/m-1/1700000000000/true");
    free(row);
    snprintf(sql, sizeof(sql),
             "SELECT body::jsonb->>'content' FROM events "
             "WHERE id = %lld",
             id);
    row = db(fx, sql);
    assert_string_equal(row, "hi");
    free(row);
    assert_int_equal(atomic_load(&fx->accepted), 1);
    assert_int_equal(atomic_load(&fx->last_id), id);

    /* The same msgId again: 202 duplicate, the same id, one row. */
    post(fx, SINGLE, EV_OK ",\"msgId\":\"m-1\"}", &r);
    assert_int_equal(r.status, 202);
    assert_non_null(strstr(r.body, "\"duplicate\":true}"));
    assert_int_equal(event_id_of(r.body), id);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 1);
    /* The reservation came back, nothing more to work. */
    assert_int_equal(atomic_load(&fx->accepted), 1);
    assert_int_equal(atomic_load(&fx->released), 1);
    assert_int_equal(atomic_load(&fx->reserved), 2);

    /* The alias with the app in X-LC-Id. */
    const char *alias_hdrs[] = {"Content-Type: application/json",
                                "X-LC-Hook-Key: " KEY, "X-LC-Id: demo", NULL};
    const char *ev2 = EV_OK "}";
    http(fx->port, "POST", "/1.1/functions/_receiversOffline", alias_hdrs, ev2,
         strlen(ev2), &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);

    /* Metrics saw both kinds. */
    http(fx->admin_port, "GET", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.content_type, "text/plain; version=0.0.4"));
    assert_non_null(strstr(
        r.body, "pushgw_events_total{app=\"demo\",result=\"accepted\"} 2\n"));
    assert_non_null(strstr(
        r.body, "pushgw_events_total{app=\"demo\",result=\"duplicate\"} 1\n"));
}

static void test_batch(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    char body[2048];

    snprintf(body, sizeof(body),
             "{\"events\":[%s,\"msgId\":\"b1\"},%s,\"msgId\":\"b2\"},"
             "%s,\"msgId\":\"b1\"}]}",
             EV_OK, EV_OK, EV_OK);
    post(fx, BATCH, body, &r);
    if (r.status != 202)
        fail_msg("status %ld: %s", r.status, r.body);
    assert_non_null(strstr(r.body, "{\"events\":[{\"eventId\":\""));
    /* b1 twice in one batch: the second one is the duplicate. */
    const char *p = r.body;
    int dups = 0, fresh = 0;
    while ((p = strstr(p, "\"duplicate\":")) != NULL) {
        p += 12;
        if (strncmp(p, "true", 4) == 0)
            dups++;
        else
            fresh++;
    }
    assert_int_equal(fresh, 2);
    assert_int_equal(dups, 1);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);

    /* One invalid element refuses the whole batch and names it. */
    snprintf(body, sizeof(body),
             "{\"events\":[%s,\"msgId\":\"b3\"},{\"fromPeer\":\"a\","
             "\"convId\":7,\"offlinePeers\":[\"x\"],\"timestamp\":1}]}",
             EV_OK);
    post(fx, BATCH, body, &r);
    expect_error(&r, 400, "events[1].convId", NULL);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);

    post(fx, BATCH, "{\"events\":[]}", &r);
    expect_error(&r, 400, "events", "empty");
    post(fx, BATCH, "{\"evts\":[]}", &r);
    expect_error(&r, 400, "events", "required");
    post(fx, BATCH, "[1]", &r);
    expect_error(&r, 400, "", "object");
    post(fx, BATCH, "{\"events\":[1]}", &r);
    expect_error(&r, 400, "events[0]", NULL);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);
}

static void test_refusals(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    const char *ev = EV_OK "}";
    size_t evl = strlen(ev);

    /* Unknown path and method. */
    http(fx->port, "POST", "/v1/apps/demo/nothing", json_hdrs, ev, evl, &r);
    expect_error(&r, 404, "", "not found");
    http(fx->port, "GET", SINGLE, json_hdrs, NULL, 0, &r);
    expect_error(&r, 405, "", NULL);

    /* Unknown app, before the key is even looked at. */
    http(fx->port, "POST", "/v1/apps/nope/receivers-offline", json_hdrs, ev,
         evl, &r);
    expect_error(&r, 404, "appId", "unknown app");
    const char *alias_nohdr[] = {"Content-Type: application/json",
                                 "X-LC-Hook-Key: " KEY, NULL};
    http(fx->port, "POST", "/1.1/functions/_receiversOffline", alias_nohdr, ev,
         evl, &r);
    expect_error(&r, 404, "X-LC-Id", "unknown app");

    /* Keys: wrong, missing, another app's, a prefix of the right one. */
    const char *bad_keys[][3] = {
        {"Content-Type: application/json", "X-LC-Hook-Key: wrong", NULL},
        {"Content-Type: application/json", NULL, NULL},
        {"Content-Type: application/json", "X-LC-Hook-Key: other-hook-key-001",
         NULL},
        {"Content-Type: application/json", "X-LC-Hook-Key: s3cret", NULL},
        {"Content-Type: application/json", "X-LC-Hook-Key: " KEY "x", NULL},
    };
    for (size_t i = 0; i < PGW_ARRAY_SIZE(bad_keys); i++) {
        http(fx->port, "POST", SINGLE, bad_keys[i], ev, evl, &r);
        expect_error(&r, 401, "X-LC-Hook-Key", NULL);
    }

    /* Content types. */
    const char *text_hdrs[] = {"Content-Type: text/plain",
                               "X-LC-Hook-Key: " KEY, NULL};
    http(fx->port, "POST", SINGLE, text_hdrs, ev, evl, &r);
    expect_error(&r, 415, "Content-Type", NULL);
    const char *jsonx_hdrs[] = {"Content-Type: application/jsonx",
                                "X-LC-Hook-Key: " KEY, NULL};
    http(fx->port, "POST", SINGLE, jsonx_hdrs, ev, evl, &r);
    expect_error(&r, 415, "Content-Type", NULL);
    const char *upper_hdrs[] = {"Content-Type: Application/JSON ; charset=x",
                                "X-LC-Hook-Key: " KEY, NULL};
    http(fx->port, "POST", SINGLE, upper_hdrs, ev, evl, &r);
    assert_int_equal(r.status, 202);

    /* Over max_body_bytes (4096), within libevent's slack: our JSON 413. */
    char *big = malloc(6000);
    assert_non_null(big);
    memset(big, ' ', 5999);
    memcpy(big, ev, evl);
    big[5999] = '\0';
    post(fx, SINGLE, big, &r);
    expect_error(&r, 413, "", "4096");
    free(big);

    /* Nothing of that was stored but the one 202. */
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 1);

    http(fx->admin_port, "GET", "/metrics", NULL, NULL, 0, &r);
    static const char *const want[] = {
        "pushgw_events_total{app=\"\",result=\"unknown_app\"} 2\n",
        "pushgw_events_total{app=\"demo\",result=\"unauthorized\"} 5\n",
        "pushgw_events_total{app=\"demo\",result=\"unsupported_media\"} 2\n",
        "pushgw_events_total{app=\"demo\",result=\"too_large\"} 1\n",
        "pushgw_events_total{app=\"demo\",result=\"accepted\"} 1\n",
    };
    for (size_t i = 0; i < PGW_ARRAY_SIZE(want); i++) {
        if (strstr(r.body, want[i]) == NULL)
            fail_msg("missing '%s' in\n%s", want[i], r.body);
    }
}

struct bad_body {
    const char *body;
    const char *field;
    const char *reason;
};

static void test_bad_bodies(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    char deep[256];
    size_t d = 0;
    for (int i = 0; i < 40; i++)
        deep[d++] = '[';
    for (int i = 0; i < 40; i++)
        deep[d++] = ']';
    deep[d] = '\0';
    char deep_body[512];
    snprintf(deep_body, sizeof(deep_body), "%s,\"pushData\":{\"x\":%s}}", EV_OK,
             deep);

    const struct bad_body cases[] = {
        {"{", "", "JSON"},
        {"", "", NULL},
        {"{\"fromPeer\":1,\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
         "\"timestamp\":1}",
         "fromPeer", "string"},
        {"{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
         "\"timestamp\":\"1\"}",
         "timestamp", "integer"},
        {"{\"fromPeer\":\"a\",\"convId\":\"c\",\"timestamp\":1}",
         "offlinePeers", "required"},
        {"{\"fromPeer\":\"a\",\"convId\":\"c\",\"offlinePeers\":[\"a\",\"b\","
         "\"c\",\"d\"],\"timestamp\":1}",
         "offlinePeers", NULL},
        {"{\"fromPeer\":\"a\xff\",\"convId\":\"c\",\"offlinePeers\":[\"a\"],"
         "\"timestamp\":1}",
         "", "UTF-8"},
        {deep_body, "", NULL},
    };
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++) {
        post(fx, SINGLE, cases[i].body, &r);
        expect_error(&r, 400, cases[i].field, cases[i].reason);
    }
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 0);
    assert_int_equal(atomic_load(&fx->reserved), 0);
}

static void test_admin(void **state)
{
    struct fx *fx = *state;
    struct reply r;

    http(fx->admin_port, "GET", "/healthz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    /* Store up, templates not loaded. */
    http(fx->admin_port, "GET", "/readyz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(
        r.body, "{\"status\":\"unavailable\",\"reason\":\"templates not "
                "loaded\"}");
    atomic_store(&fx->ready, true);
    http(fx->admin_port, "GET", "/readyz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    http(fx->admin_port, "GET", "/nope", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 404);
    http(fx->admin_port, "POST", "/metrics", NULL, "x", 1, &r);
    assert_int_equal(r.status, 405);
    http(fx->admin_port, "GET", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "# TYPE pushgw_backlog_events gauge\n"
                                   "pushgw_backlog_events 0\n"));
}

/* Reads until EOF or |ms|; returns what came (static buffer). */
static const char *raw_read_all(int fd, int ms, bool *ret_eof)
{
    static char buf[8192];
    size_t n = 0;
    *ret_eof = false;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, ms);
        if (pr <= 0)
            break;
        ssize_t got = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (got <= 0) {
            *ret_eof = true;
            break;
        }
        n += (size_t)got;
        if (n == sizeof(buf) - 1)
            break;
    }
    buf[n] = '\0';
    return buf;
}

static void test_hostile_clients(void **state)
{
    struct fx *fx = *state;
    bool eof = false;

    /* A Content-Length far over the limit: refused before the body. */
    int fd = tu_tcp_connect(fx->port);
    const char *req = "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n"
                      "Content-Type: application/json\r\n"
                      "X-LC-Hook-Key: " KEY "\r\n"
                      "Content-Length: 1000000000\r\n\r\n{";
    assert_true(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    const char *got = raw_read_all(fd, 5000, &eof);
    if (strncmp(got, "HTTP/1.1 413", 12) != 0)
        fail_msg("got '%s'", got);
    close(fd);

    /* Headers over 16 KiB. */
    fd = tu_tcp_connect(fx->port);
    char *huge = malloc(40000);
    assert_non_null(huge);
    int l = snprintf(huge, 40000, "POST " SINGLE " HTTP/1.1\r\nX-Pad: ");
    memset(huge + l, 'a', 30000);
    memcpy(huge + l + 30000, "\r\n\r\n", 5);
    (void)!write(fd, huge, strlen(huge));
    free(huge);
    got = raw_read_all(fd, 5000, &eof);
    assert_true(eof || strncmp(got, "HTTP/1.1 4", 10) == 0);
    close(fd);

    /* The service still answers, with keep-alive: two requests on one
     * connection. */
    fd = tu_tcp_connect(fx->port);
    const char *two = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /y HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(write(fd, two, strlen(two)) == (ssize_t)strlen(two));
    got = raw_read_all(fd, 1000, &eof);
    const char *second = strstr(got + 1, "HTTP/1.1 404");
    assert_true(strncmp(got, "HTTP/1.1 404", 12) == 0);
    assert_non_null(second);
    assert_false(eof);
    close(fd);
}

struct stall {
    int ms;
    atomic_bool entered;
};

static void stall_loop(evutil_socket_t fd, short what, void *arg)
{
    struct stall *st = arg;
    (void)fd;
    (void)what;
    atomic_store(&st->entered, true);
    /* The stall is the scenario: the loop is busy for st->ms. */
    usleep((useconds_t)st->ms * 1000);
}

/* A broker opening many connections at once while the loop is busy: the
 * kernel completes their handshakes without the loop, up to the listen
 * backlog, and drops the SYNs beyond it, which the clients retry only a
 * second later. 300 connections made while the loop stalls are all
 * established within 300 ms (with libevent's backlog of 128, 172 were
 * not, and chat runs of the benchmark had a second with no intake). */
static void test_listen_backlog(void **state)
{
    struct fx *fx = *state;
    enum { N = 300 };
    static struct stall stall = {.ms = 800};
    struct timeval now = {0, 0};
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((unsigned short)fx->port)};
    struct pollfd p[N];
    int connected = 0;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(
        event_base_once(fx->base, -1, EV_TIMEOUT, stall_loop, &stall, &now), 0);
    TU_POLL_UNTIL(atomic_load(&stall.entered), 10000);
    assert_true(atomic_load(&stall.entered));
    for (int i = 0; i < N; i++) {
        p[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(p[i].fd >= 0);
        p[i].events = POLLOUT;
        if (connect(p[i].fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            assert_int_equal(errno, EINPROGRESS);
    }
    for (int waited = 0; waited < 300 && connected < N; waited += 10) {
        connected = 0;
        assert_true(poll(p, N, 10) >= 0);
        for (int i = 0; i < N; i++) {
            int err = -1;
            socklen_t len = sizeof(err);

            if ((p[i].revents & POLLOUT) &&
                getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
                err == 0)
                connected++;
        }
    }
    for (int i = 0; i < N; i++)
        close(p[i].fd);
    assert_int_equal(connected, N);
}

static void test_slow_client(void **state)
{
    (void)state;
    /* A client that stops half-way through its headers is closed after
     * the read timeout, without an answer. */
    static const struct fx_opts o = {.dead_store = true, .timeout_ms = 500};
    struct fx *fx = fx_start(&o);
    int fd = tu_tcp_connect(fx->port);
    const char *part = "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n";
    assert_true(write(fd, part, strlen(part)) == (ssize_t)strlen(part));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool eof = false;
    raw_read_all(fd, 5000, &eof);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(eof);
    double s = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 4.0);
    close(fd);
    fx_stop(fx);
}

static void test_trickling_client(void **state)
{
    (void)state;
    /* A client trickling header bytes (each byte restarts libevent's read
     * timeout) is closed once its request is older than the deadline. */
    static const struct fx_opts o = {.dead_store = true, .timeout_ms = 500};
    struct fx *fx = fx_start(&o);
    int fd = tu_tcp_connect(fx->port);
    const char *part = "POST " SINGLE " HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    struct timespec t0, t1;
    bool closed = false;

    assert_true(write(fd, part, strlen(part)) == (ssize_t)strlen(part));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 80 && !closed; i++) {
        char c;
        usleep(100000); /* the trickle is the scenario: a byte per 100 ms */
        if (send(fd, "a", 1, MSG_NOSIGNAL) != 1 ||
            recv(fd, &c, 1, MSG_DONTWAIT) == 0)
            closed = true;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(closed);
    double s = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 4.0);
    close(fd);
    /* Other clients are still served. */
    struct reply r;
    post(fx, SINGLE, "{", &r);
    expect_error(&r, 400, "", NULL);
    fx_stop(fx);
}

static void test_store_down(void **state)
{
    (void)state;
    static const struct fx_opts o = {.dead_store = true};
    struct fx *fx = fx_start(&o);
    struct reply r;

    post(fx, SINGLE, EV_OK "}", &r);
    expect_error(&r, 503, "", "database");
    assert_string_equal(r.retry_after, "5");
    /* Validation still comes first. */
    post(fx, SINGLE, "{", &r);
    expect_error(&r, 400, "", NULL);

    atomic_store(&fx->ready, true);
    http(fx->admin_port, "GET", "/readyz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"status\":\"unavailable\""));
    http(fx->admin_port, "GET", "/healthz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    http(fx->admin_port, "GET", "/metrics", NULL, NULL, 0, &r);
    assert_non_null(
        strstr(r.body,
               "pushgw_events_total{app=\"demo\",result=\"unavailable\"} 1\n"));
    assert_int_equal(atomic_load(&fx->reserved), 0);
    fx_stop(fx);
}

static bool backlog_gauge_is_zero(int admin_port, struct reply *r)
{
    http(admin_port, "GET", "/metrics", NULL, NULL, 0, r);
    return strstr(r->body, "\npushgw_backlog_events 0\n") != NULL;
}

static void test_backlog_full(void **state)
{
    (void)state;
    static const struct fx_opts o = {.max_backlog = 2};
    struct fx *fx = fx_start(&o);
    struct reply r;
    char body[512];

    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof(body), "%s,\"msgId\":\"q%d\"}", EV_OK, i);
        post(fx, SINGLE, body, &r);
        assert_int_equal(r.status, 202);
    }
    post(fx, SINGLE, EV_OK ",\"msgId\":\"q9\"}", &r);
    expect_error(&r, 429, "", "backlog");
    assert_string_equal(r.retry_after, "1");
    /* The estimate agrees with the store after a refresh. */
    wait_backlog_count(fx);
    post(fx, SINGLE, EV_OK ",\"msgId\":\"q9\"}", &r);
    expect_error(&r, 429, "", "backlog");
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);

    /* Done events leave the backlog: accepted again after a refresh,
     * which the gauge shows (polled: a sanitizer build refreshes late). */
    free(db(fx, "UPDATE events SET state = 'done', lease_owner = NULL"));
    TU_POLL_UNTIL(backlog_gauge_is_zero(fx->admin_port, &r), 10000);
    assert_true(backlog_gauge_is_zero(fx->admin_port, &r));
    post(fx, SINGLE, EV_OK ",\"msgId\":\"q9\"}", &r);
    assert_int_equal(r.status, 202);
    http(fx->admin_port, "GET", "/metrics", NULL, NULL, 0, &r);
    assert_non_null(strstr(
        r.body,
        "pushgw_events_total{app=\"demo\",result=\"backlog_full\"} 2\n"));
    fx_stop(fx);
}

static void test_stop_intake(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    post(fx, SINGLE, EV_OK "}", &r);
    assert_int_equal(r.status, 202);
    /* stop_intake belongs to the loop thread: stop the loop first. */
    event_base_loopbreak(fx->base);
    pthread_join(fx->thread, NULL);
    fx->running = false;
    pgw_http_api_stop_intake(fx->api);
    assert_int_equal(pgw_http_api_port(fx->api, false), -1);
    assert_true(pgw_http_api_port(fx->api, true) > 0);
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
    fx->running = true;
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d" SINGLE, fx->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(c), CURLE_COULDNT_CONNECT);
    curl_easy_cleanup(c);
    http(fx->admin_port, "GET", "/healthz", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
}

/* Runs |fn| on a stopped loop (loop-thread-only calls), then restarts it. */
static void with_loop_stopped(struct fx *fx, void (*fn)(struct fx *, void *),
                              void *arg)
{
    event_base_loopbreak(fx->base);
    pthread_join(fx->thread, NULL);
    fn(fx, arg);
    assert_int_equal(pthread_create(&fx->thread, NULL, loop_main, fx), 0);
}

static void swap_config(struct fx *fx, void *arg)
{
    pgw_http_api_set_config(fx->api, arg);
}

static void test_reload(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    char ini[512];
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;

    /* The new config: demo's key changed, app "other" gone, "third" new. */
    snprintf(ini, sizeof(ini),
             "[database]\nurl = postgresql:///x\n"
             "[app:demo]\nhook_key = rotated-hook-key-1\n"
             "[app:third]\nhook_key = third-hook-key-001\n");
    char *path = tu_write_file(fx->dir, "reload.ini", ini, 0600);
    char *const no_env[] = {NULL};
    pgw_diag_init(&diag);
    assert_int_equal(pgw_config_load(path, no_env, &diag, &cfg), 0);
    pgw_diag_release(&diag);
    free(path);
    /* 100 KB: over the old config's body limit (4096), refused before
     * it is read; under the new one (1 MiB), read and answered. The
     * intake thread takes the new limits from the reload. */
    char *big = malloc(100 * 1024 + 1);
    assert_non_null(big);
    big[0] = '{';
    memset(big + 1, ' ', 100 * 1024 - 1);
    big[100 * 1024] = '\0';
    post(fx, SINGLE, big, &r);
    expect_error(&r, 413, "", "4096");
    with_loop_stopped(fx, swap_config, cfg);
    /* The api holds its own reference. */
    pgw_config_free(cfg);
    const char *rotated_big[] = {"Content-Type: application/json",
                                 "X-LC-Hook-Key: rotated-hook-key-1", NULL};
    /* The limits reach the intake thread by message. */
    http(fx->port, "POST", SINGLE, rotated_big, big, strlen(big), &r);
    TU_POLL_UNTIL(r.status != 413, 10000)
    http(fx->port, "POST", SINGLE, rotated_big, big, strlen(big), &r);
    expect_error(&r, 400, "", "invalid JSON");
    free(big);

    post(fx, SINGLE, EV_OK "}", &r);
    expect_error(&r, 401, "X-LC-Hook-Key", NULL);
    const char *rotated[] = {"Content-Type: application/json",
                             "X-LC-Hook-Key: rotated-hook-key-1", NULL};
    const char *ev = EV_OK "}";
    http(fx->port, "POST", SINGLE, rotated, ev, strlen(ev), &r);
    assert_int_equal(r.status, 202);
    const char *third[] = {"Content-Type: application/json",
                           "X-LC-Hook-Key: third-hook-key-001", NULL};
    http(fx->port, "POST", "/v1/apps/third/receivers-offline", third, ev,
         strlen(ev), &r);
    assert_int_equal(r.status, 202);
    const char *other[] = {"Content-Type: application/json",
                           "X-LC-Hook-Key: other-hook-key-001", NULL};
    http(fx->port, "POST", "/v1/apps/other/receivers-offline", other, ev,
         strlen(ev), &r);
    expect_error(&r, 404, "appId", "unknown app");
    assert_int_equal(
        db_count(fx, "SELECT count(*) FROM events WHERE app_id = 'third'"), 1);
}

static void test_dispatcher_full(void **state)
{
    struct fx *fx = *state;
    struct reply r;

    /* A full dispatcher: stored without a lease, not handed over. */
    atomic_store(&fx->full, true);
    post(fx, SINGLE, EV_OK ",\"msgId\":\"nolease\"}", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(
        db_count(fx, "SELECT count(*) FROM events WHERE lease_owner IS NULL"),
        1);
    assert_int_equal(atomic_load(&fx->accepted), 0);
    assert_int_equal(atomic_load(&fx->reserved), 0);
    /* the dispatcher is told once it is stored, to claim it */
    assert_int_equal(atomic_load(&fx->stored), 1);
    /* a duplicate of it stores nothing */
    post(fx, SINGLE, EV_OK ",\"msgId\":\"nolease\"}", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(atomic_load(&fx->stored), 1);
}

static void test_inflight_cap(void **state)
{
    (void)state;
    static const struct fx_opts o = {.max_inflight = 2};
    struct fx *fx = fx_start(&o);
    struct reply r;
    char body[2048];

    snprintf(body, sizeof(body), "{\"events\":[%s},%s},%s}]}", EV_OK, EV_OK,
             EV_OK);
    post(fx, BATCH, body, &r);
    expect_error(&r, 429, "", "waiting");
    assert_string_equal(r.retry_after, "1");
    snprintf(body, sizeof(body), "{\"events\":[%s},%s}]}", EV_OK, EV_OK);
    post(fx, BATCH, body, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 2);
    fx_stop(fx);
}

static void test_tls(void **state)
{
    (void)state;
    FILE *f = fopen(CERTS "server.pem", "r");
    if (f == NULL)
        skip(); /* the test PKI is built by the test_certs target */
    fclose(f);
    static const struct fx_opts o = {.tls = true};
    tls_ca = CERTS "ca.pem";
    struct fx *fx = fx_start(&o);
    struct reply r;
    post(fx, SINGLE, EV_OK "}", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 1);
    tls_ca = NULL;

    /* Plain HTTP on the TLS port gets no HTTP answer. */
    int fd = tu_tcp_connect(fx->port);
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_true(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    bool eof = false;
    const char *got = raw_read_all(fd, 3000, &eof);
    assert_null(strstr(got, "HTTP/1.1"));
    close(fd);
    fx_stop(fx);
}

/* All five requests of test_client_gone answered: each counted once. */
static bool client_gone_settled(struct fx *fx)
{
    return atomic_load(&fx->accepted) == 1 && atomic_load(&fx->released) == 4 &&
           view(fx).pending == 0;
}

static void test_client_gone(void **state)
{
    struct fx *fx = *state;
    struct reply r;
    char req[1024];
    const char *ev = EV_OK ",\"msgId\":\"gone\"}";

    /* The client hangs up while its event waits for the commit: the event
     * is still stored and handed over, and nothing breaks (ASan). */
    snprintf(req, sizeof(req),
             "POST " SINGLE " HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/json\r\nX-LC-Hook-Key: " KEY "\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(ev), ev);
    for (int i = 0; i < 5; i++) {
        int fd = tu_tcp_connect(fx->port);
        assert_true(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
        close(fd);
    }
    TU_POLL_UNTIL(client_gone_settled(fx), 10000);
    assert_true(client_gone_settled(fx));
    assert_int_equal(db_count(fx, "SELECT count(*) FROM events"), 1);
    post(fx, SINGLE, ev, &r);
    assert_int_equal(r.status, 202);
    assert_non_null(strstr(r.body, "\"duplicate\":true"));
    assert_int_equal(atomic_load(&fx->accepted), 1);
    assert_int_equal(atomic_load(&fx->reserved),
                     atomic_load(&fx->accepted) + atomic_load(&fx->released));
}

/* ---- the route registry ----------------------------------------------------
 *
 * A second listener, as an API module would add one: its routes registered,
 * a handler answering at once on the listener's thread, and one handing its
 * work to another loop (the "main" loop) through a mailbox and answering
 * from there.
 */

struct reg {
    struct event_base *lbase; /* the listener's loop */
    struct event_base *mbase; /* the "main" loop */
    pthread_t lthread, mthread;
    struct pgw_listener *l;
    struct pgw_xqueue *to_main;
    atomic_int on_main; /* work run on the main loop */
};

struct reg_work {
    struct pgw_xmsg msg; /* first */
    struct reg *reg;
    struct evhttp_request *req;
    char id[64];
};

static void *reg_loop(void *arg)
{
    event_base_loop(arg, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* POST /1.1/installations: answered now. */
static void reg_create(struct evhttp_request *req,
                       const struct pgw_route_match *m, void *ctx)
{
    struct evbuffer *b = evbuffer_new();
    size_t len = 0;
    const char *body = pgw_listener_body(req, &len);
    (void)ctx;

    assert_int_equal(m->n_ids, 0);
    evbuffer_add_printf(b, "{\"created\":%zu}", len);
    (void)body;
    pgw_listener_send_json(req, 201, b);
    evbuffer_free(b);
}

/* Runs on the main loop: the work, then the answer, posted back. */
static void reg_work_run(struct pgw_xmsg *msg)
{
    struct reg_work *w = (struct reg_work *)msg;
    struct evbuffer *b = evbuffer_new();

    atomic_fetch_add(&w->reg->on_main, 1);
    evbuffer_add_printf(b, "{\"objectId\":");
    pgw_listener_json_string(b, w->id);
    evbuffer_add(b, "}", 1);
    pgw_listener_reply_json(w->reg->l, w->req, 200, b, false);
    free(w);
}

/* GET /1.1/installations/{id}: handed to the main loop. */
static void reg_get(struct evhttp_request *req, const struct pgw_route_match *m,
                    void *ctx)
{
    struct reg *reg = ctx;
    struct reg_work *w;

    assert_int_equal(m->n_ids, 1);
    if (m->ids[0] == NULL) {
        pgw_listener_send_error(req, 400, "invalid id", "id", NULL);
        return;
    }
    w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->msg.run = reg_work_run;
    w->reg = reg;
    w->req = req;
    snprintf(w->id, sizeof(w->id), "%s", m->ids[0]);
    pgw_xqueue_post(reg->to_main, &w->msg);
}

static void test_route_registry(void **state)
{
    struct reg reg = {0};
    struct reply r;
    (void)state;

    reg.lbase = event_base_new();
    reg.mbase = event_base_new();
    assert_non_null(reg.lbase);
    assert_non_null(reg.mbase);
    struct pgw_listener_options lo = {
        .base = reg.lbase,
        .name = "client",
        .address = "127.0.0.1:0",
        .max_body_bytes = 1024,
    };
    assert_int_equal(pgw_listener_new(&lo, &reg.l), 0);
    assert_int_equal(pgw_xqueue_new(reg.mbase, NULL, NULL, &reg.to_main), 0);
    assert_int_equal(pgw_listener_route(reg.l, EVHTTP_REQ_POST,
                                        "/1.1/installations", reg_create, &reg),
                     0);
    assert_int_equal(pgw_listener_route(reg.l, EVHTTP_REQ_GET,
                                        "/1.1/installations/{id}", reg_get,
                                        &reg),
                     0);
    /* Malformed patterns are refused. */
    assert_int_equal(
        pgw_listener_route(reg.l, EVHTTP_REQ_GET, "no-slash", reg_get, &reg),
        PGW_ERR_INVAL);
    assert_int_equal(
        pgw_listener_route(reg.l, EVHTTP_REQ_GET, "/a{b}", reg_get, &reg),
        PGW_ERR_INVAL);
    assert_int_equal(pgw_listener_route(reg.l, 0, "/x", reg_get, &reg),
                     PGW_ERR_INVAL);
    int port = pgw_listener_port(reg.l);
    assert_true(port > 0);
    assert_int_equal(pthread_create(&reg.lthread, NULL, reg_loop, reg.lbase),
                     0);
    assert_int_equal(pthread_create(&reg.mthread, NULL, reg_loop, reg.mbase),
                     0);

    /* A route answered on the listener's thread. */
    http(port, "POST", "/1.1/installations", NULL, "{\"a\":1}", 7, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"created\":7}");
    assert_non_null(strstr(r.content_type, "application/json"));

    /* A route answered from the main loop; the id percent-decoded. */
    http(port, "GET", "/1.1/installations/ab%20c?x=1", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"objectId\":\"ab c\"}");
    assert_int_equal(atomic_load(&reg.on_main), 1);

    /* An unusable id reaches the handler as NULL. */
    http(port, "GET", "/1.1/installations/a%00b", NULL, NULL, 0, &r);
    expect_error(&r, 400, "id", "invalid id");

    /* Unknown paths, an empty id, a longer path: 404 JSON. */
    static const char *const unknown[] = {
        "/",
        "/1.1/installation",
        "/1.1/installations/",
        "/1.1/installations/a/b",
        "/1.1//installations",
    };
    for (size_t i = 0; i < PGW_ARRAY_SIZE(unknown); i++) {
        http(port, "GET", unknown[i], NULL, NULL, 0, &r);
        expect_error(&r, 404, "", "not found");
    }

    /* A known path with another method: 405 with Allow, JSON. */
    http(port, "DELETE", "/1.1/installations", NULL, NULL, 0, &r);
    expect_error(&r, 405, "", "method not allowed");
    assert_string_equal(r.allow, "POST");

    /* A body over the listener's limit: 413 JSON before the handler. */
    char big[2048];
    memset(big, 'x', sizeof(big));
    http(port, "POST", "/1.1/installations", NULL, big, sizeof(big), &r);
    expect_error(&r, 413, "", "1024");

    event_base_loopbreak(reg.lbase);
    event_base_loopbreak(reg.mbase);
    pthread_join(reg.lthread, NULL);
    pthread_join(reg.mthread, NULL);
    pgw_xqueue_free(reg.to_main);
    pgw_listener_free(reg.l);
    event_base_free(reg.lbase);
    event_base_free(reg.mbase);
}

int main(void)
{
    evthread_use_pthreads();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_and_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_intake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatcher_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone, setup, teardown),
        cmocka_unit_test(test_route_registry),
        cmocka_unit_test(test_inflight_cap),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_slow_client),
        cmocka_unit_test(test_trickling_client),
        cmocka_unit_test(test_store_down),
        cmocka_unit_test(test_backlog_full),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
