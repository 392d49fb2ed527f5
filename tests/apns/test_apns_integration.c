/*
 * apns + h2client against mock_apns over real TLS on loopback: delivery
 * across several connections, every fault mode of the mock, JWT reuse
 * and refresh, outcome classification, certificate failures.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "apns.h"
#include "h2client.h"
#include "jwt.h"
#include "log.h"
#include "pushgw.h"
#include "testutil.h"
#include "tls_identity.h"

#define CERTS PUSHGW_TEST_CERTS_DIR
#define TEAM "TEAM000001"
#define KID "KEY0000001"
#define TOPIC "com.example.app"
#define MAX_ITEMS 5000
#define MAX_ATTEMPTS 8

/* ---------------------------------------------------------------- mock */

/* The mock with this test's team and topic, and |extra| arguments. */
static void mock_start_cert(struct tu_mock *m, const char *certname,
                            const char *const *extra)
{
    const char *args[64] = {"--team",
                            TEAM ":" KID ":" CERTS "/AuthKey_" KID ".pub.pem",
                            "--topic", TOPIC};
    size_t n = 4;
    struct tu_mock_options o = {.cert = certname, .args = args};

    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(n + 1 < PGW_ARRAY_SIZE(args));
        args[n++] = extra[i];
    }
    args[n] = NULL;
    tu_mock_start(m, TU_MOCK_APNS, &o);
}

static void mock_start(struct tu_mock *m, const char *const *extra)
{
    mock_start_cert(m, "server", extra);
}

/* Stops the mock, keeping its record file. */
static void mock_stop(struct tu_mock *m)
{
    tu_mock_signal(m, SIGTERM);
}

static void mock_cleanup(struct tu_mock *m)
{
    tu_mock_stop(m);
}

/* One recorded request. */
struct rec {
    char token[80];
    int status;
    char reason[64];
    long conn;
    long stream;
    char team[16]; /* the token's team, "" when no token was sent */
    char topic[64];
    /* headers that arrived as HPACK literals never to be indexed */
    bool ni_auth, ni_topic, ni_id, ni_exp;
};

/* Reads the mock's record file (after mock_stop); caller frees. */
static struct rec *read_records(struct tu_mock *m, size_t *ret_n)
{
    char *data = tu_read_file(m->record);
    char *line, *save = NULL;
    struct rec *recs = NULL;
    size_t n = 0, cap = 0;

    if (!data) {
        *ret_n = 0;
        return NULL;
    }
    for (line = strtok_r(data, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *t, *s, *r, *c, *st, *ni, *e;

        assert_non_null(j);
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            recs = realloc(recs, cap * sizeof(*recs));
            assert_non_null(recs);
        }
        memset(&recs[n], 0, sizeof(recs[n]));
        t = cJSON_GetObjectItem(j, "token");
        s = cJSON_GetObjectItem(j, "status");
        r = cJSON_GetObjectItem(j, "reason");
        c = cJSON_GetObjectItem(j, "conn");
        if (cJSON_IsString(t))
            snprintf(recs[n].token, sizeof(recs[n].token), "%s",
                     t->valuestring);
        if (cJSON_IsNumber(s))
            recs[n].status = s->valueint;
        if (cJSON_IsString(r))
            snprintf(recs[n].reason, sizeof(recs[n].reason), "%s",
                     r->valuestring);
        if (cJSON_IsNumber(c))
            recs[n].conn = (long)c->valuedouble;
        if (cJSON_IsString(cJSON_GetObjectItem(j, "topic")))
            snprintf(recs[n].topic, sizeof(recs[n].topic), "%s",
                     cJSON_GetObjectItem(j, "topic")->valuestring);
        if (cJSON_IsString(cJSON_GetObjectItem(j, "team")))
            snprintf(recs[n].team, sizeof(recs[n].team), "%s",
                     cJSON_GetObjectItem(j, "team")->valuestring);
        st = cJSON_GetObjectItem(j, "stream");
        if (cJSON_IsNumber(st))
            recs[n].stream = (long)st->valuedouble;
        ni = cJSON_GetObjectItem(j, "never_indexed");
        cJSON_ArrayForEach(e, ni)
        {
            const char *h = cJSON_GetStringValue(e);

            if (!h)
                continue;
            recs[n].ni_auth |= strcmp(h, "authorization") == 0;
            recs[n].ni_topic |= strcmp(h, "apns-topic") == 0;
            recs[n].ni_id |= strcmp(h, "apns-id") == 0;
            recs[n].ni_exp |= strcmp(h, "apns-expiration") == 0;
        }
        n++;
        cJSON_Delete(j);
    }
    free(data);
    *ret_n = n;
    return recs;
}

static size_t count_token(const struct rec *recs, size_t n, const char *tok,
                          int status)
{
    size_t i, k = 0;

    for (i = 0; i < n; i++)
        if (strcmp(recs[i].token, tok) == 0 &&
            (status == 0 || recs[i].status == status))
            k++;
    return k;
}

static size_t distinct_conns(const struct rec *recs, size_t n)
{
    long seen[256];
    size_t ns = 0, i, j;

    for (i = 0; i < n; i++) {
        for (j = 0; j < ns; j++)
            if (seen[j] == recs[i].conn)
                break;
        if (j == ns && ns < 256)
            seen[ns++] = recs[i].conn;
    }
    return ns;
}

/* ---------------------------------------------------------------- runs */

struct run;

struct item {
    struct run *run;
    size_t idx;
    char token[65];
    char apns_id[37];
    bool finished;
    unsigned attempts;
    struct pgw_outcome last;
};

struct run {
    struct event_base *base;
    struct evdns_base *dns;
    struct pgw_apns *apns;
    struct item *items;
    size_t n, done;
    bool resend_retry; /* the test's own retry loop */
    size_t body_pad;   /* bytes of padding in each body */
    unsigned max_attempts;
    unsigned retries_seen;
    const char *team;      /* NULL: TEAM */
    const char *topic;     /* NULL: TOPIC */
    const char *push_type; /* NULL: alert */
    enum pgw_apns_env env;
    /* Keep sending, one new push per answer, until |n| were sent. */
    bool refill;
    size_t sent;
    /* The most connections set up or ready at once, seen at answers. */
    unsigned max_open;
};

static void run_init(struct run *r, const struct tu_mock *m,
                     struct pgw_apns_options *o)
{
    char key[512];

    memset(r, 0, sizeof(*r));
    r->base = event_base_new();
    assert_non_null(r->base);
    r->dns = evdns_base_new(r->base, 0);
    assert_non_null(r->dns);
    o->production_url = m->url;
    o->development_url = m->url;
    o->ca_file = CERTS "/ca.pem";
    assert_int_equal(pgw_apns_new(r->base, r->dns, o, &r->apns), 0);
    snprintf(key, sizeof(key), "%s/AuthKey_%s.p8", CERTS, KID);
    assert_int_equal(pgw_apns_add_team(r->apns, TEAM, KID, key), 0);
    r->items = calloc(MAX_ITEMS, sizeof(*r->items));
    assert_non_null(r->items);
}

static void run_free(struct run *r)
{
    pgw_apns_free(r->apns);
    evdns_base_free(r->dns, 0);
    event_base_free(r->base);
    free(r->items);
}

static int send_item(struct item *it);
static void item_setup(struct run *r, size_t i, const char *token);

static void on_outcome(void *arg, const struct pgw_outcome *o)
{
    struct item *it = arg;
    struct run *r = it->run;

    it->last = *o;
    it->attempts++;
    if (o->kind == PGW_OUTCOME_RETRY)
        r->retries_seen++;
    if (r->resend_retry && o->kind == PGW_OUTCOME_RETRY &&
        it->attempts < (r->max_attempts ? r->max_attempts : MAX_ATTEMPTS) &&
        send_item(it) == 0)
        return;
    it->finished = true;
    {
        struct pgw_h2_pool_stats st;

        pgw_apns_stats(r->apns, &st);
        if (st.conns_connecting + st.conns_ready > r->max_open)
            r->max_open = st.conns_connecting + st.conns_ready;
    }
    if (r->refill && r->sent < r->n) {
        item_setup(r, r->sent, NULL);
        assert_int_equal(send_item(&r->items[r->sent]), 0);
        r->sent++;
    }
    if (++r->done == r->n)
        event_base_loopexit(r->base, NULL);
}

static int send_item(struct item *it)
{
    struct pgw_apns_push p;
    static char body[4096];
    size_t pad = it->run->body_pad < 4000 ? it->run->body_pad : 4000;
    int len;

    memset(&p, 0, sizeof(p));
    len = snprintf(body, sizeof(body),
                   "{\"aps\":{\"alert\":\"push %zu\"},\"pad\":\"%*s\"}",
                   it->idx, (int)pad, "");
    p.env = it->run->env;
    p.team_id = it->run->team ? it->run->team : TEAM;
    p.device_token = it->token;
    p.topic = it->run->topic ? it->run->topic : TOPIC;
    p.push_type = it->run->push_type ? it->run->push_type : "alert";
    p.priority = 10;
    p.expiration = (int64_t)time(NULL) + 3600;
    p.apns_id = it->apns_id;
    p.body = body;
    p.body_len = (size_t)len;
    return pgw_apns_send(it->run->apns, &p, on_outcome, it);
}

static void item_setup(struct run *r, size_t i, const char *token)
{
    struct item *it = &r->items[i];

    it->run = r;
    it->idx = i;
    if (token)
        snprintf(it->token, sizeof(it->token), "%s", token);
    else
        snprintf(it->token, sizeof(it->token), "%056d%08x", 0,
                 (unsigned)(i + 1));
    snprintf(it->apns_id, sizeof(it->apns_id), "00000000-0000-4000-8000-%012x",
             (unsigned)(i + 1));
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

/* Runs the loop until every item finished or |limit_ms| passed. */
static void run_loop(struct run *r, unsigned limit_ms)
{
    struct timeval tv = {limit_ms / 1000, (limit_ms % 1000) * 1000};
    struct event *ev = evtimer_new(r->base, on_deadline, r->base);

    assert_non_null(ev);
    evtimer_add(ev, &tv);
    if (r->done < r->n)
        event_base_dispatch(r->base);
    event_free(ev);
}

/* Sends items [from, to) and runs until they finish. */
static void send_range(struct run *r, size_t from, size_t to, unsigned limit_ms)
{
    size_t i;

    for (i = from; i < to; i++) {
        if (!r->items[i].run)
            item_setup(r, i, NULL);
        assert_int_equal(send_item(&r->items[i]), 0);
    }
    r->n = to;
    run_loop(r, limit_ms);
    assert_int_equal(r->done, to);
}

/* Runs the loop for |ms| with nothing to do but timers. */
static void idle_for(struct run *r, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(r->base, &tv);
    event_base_dispatch(r->base);
}

static void assert_all_delivered_once(struct run *r, struct tu_mock *m,
                                      size_t *ret_conns)
{
    struct rec *recs;
    size_t n, i;

    for (i = 0; i < r->n; i++) {
        assert_true(r->items[i].finished);
        if (r->items[i].last.kind != PGW_OUTCOME_DELIVERED)
            fail_msg("push %zu: kind %d reason '%s'", i, r->items[i].last.kind,
                     r->items[i].last.reason);
        assert_string_equal(r->items[i].last.provider_id, r->items[i].apns_id);
    }
    mock_stop(m);
    recs = read_records(m, &n);
    for (i = 0; i < r->n; i++)
        assert_int_equal(count_token(recs, n, r->items[i].token, 200), 1);
    if (ret_conns)
        *ret_conns = distinct_conns(recs, n);
    free(recs);
}

/* ---------------------------------------------------------------- tests */

static void test_many_across_connections(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 4, .max_streams_per_conn = 100}};
    struct pgw_h2_pool_stats st;
    size_t conns = 0;

    (void)state;
    mock_start(&m, NULL);
    run_init(&r, &m, &o);
    send_range(&r, 0, 3000, 30000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.connects_ok, 4);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.pending, 0);
    /* one token for every request and every connection */
    assert_int_equal(pgw_jwt_signed_count(pgw_apns_team_jwt(r.apns, TEAM)), 1);
    assert_all_delivered_once(&r, &m, &conns);
    assert_int_equal(conns, 4);
    run_free(&r);
    mock_cleanup(&m);
}

/* HPACK as Apple asks: authorization never indexed; apns-id and
 * apns-expiration indexed on a connection's first request only (their
 * values change from push to push), literals without indexing after;
 * apns-topic always indexed. */
static void test_hpack_index_once(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .max_streams_per_conn = 50}};
    struct rec *recs;
    size_t n, firsts = 0;

    (void)state;
    mock_start(&m, NULL);
    run_init(&r, &m, &o);
    send_range(&r, 0, 400, 30000);
    mock_stop(&m);
    recs = read_records(&m, &n);
    assert_int_equal(n, 400);
    for (size_t i = 0; i < n; i++) {
        bool first = recs[i].stream == 1;

        firsts += first;
        assert_true(recs[i].ni_auth);
        assert_false(recs[i].ni_topic);
        if (recs[i].ni_id == first || recs[i].ni_exp == first)
            fail_msg("conn %ld stream %ld: apns-id %s, apns-expiration %s",
                     recs[i].conn, recs[i].stream,
                     recs[i].ni_id ? "never indexed" : "indexed",
                     recs[i].ni_exp ? "never indexed" : "indexed");
    }
    assert_int_equal(firsts, distinct_conns(recs, n));
    assert_int_equal(firsts, 2);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_goaway(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};
    struct pgw_h2_pool_stats st;
    const char *extra[] = {"--goaway-after", "50", NULL};
    size_t conns = 0;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    r.resend_retry = true; /* refused beyond the internal requeues */
    r.max_attempts = 100;
    send_range(&r, 0, 1000, 30000);
    pgw_apns_stats(r.apns, &st);
    if (st.goaways < 1000 / 50 - 2)
        fail_msg("goaways %llu conns_ok %llu retried %llu",
                 (unsigned long long)st.goaways,
                 (unsigned long long)st.connects_ok,
                 (unsigned long long)st.requests_retried);
    assert_true(st.requests_retried > 0); /* refused ones were requeued */
    assert_all_delivered_once(&r, &m, &conns);
    assert_true(conns >= 1000 / 50);
    run_free(&r);
    mock_cleanup(&m);
}

static void fail_every(const char *spec, int status, const char *reason)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};
    const char *extra[] = {"--fail-every", spec, "--retry-after", "7", NULL};
    struct rec *recs;
    size_t n, i, failed = 0;

    mock_start(&m, extra);
    run_init(&r, &m, &o);
    r.resend_retry = true;
    send_range(&r, 0, 500, 30000);
    assert_true(r.retries_seen > 0);
    for (i = 0; i < r.n; i++) {
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_DELIVERED);
        failed += r.items[i].attempts - 1;
    }
    assert_int_equal(failed, r.retries_seen);
    mock_stop(&m);
    recs = read_records(&m, &n);
    for (i = 0; i < r.n; i++) {
        assert_int_equal(count_token(recs, n, r.items[i].token, 200), 1);
        assert_int_equal(count_token(recs, n, r.items[i].token, status),
                         r.items[i].attempts - 1);
    }
    for (i = 0; i < n; i++)
        if (recs[i].status == status)
            assert_string_equal(recs[i].reason, reason);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

/* The outcome of a 503/429 says RETRY and carries Retry-After. */
static void test_fail_every_503(void **state)
{
    (void)state;
    fail_every("7:503:ServiceUnavailable", 503, "ServiceUnavailable");
}

/* 503 Shutdown: that server is going away; the push is sent again at
 * once, so the caller sees it delivered, not a retry to back off. */
static void test_shutdown_resent_at_once(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};
    const char *extra[] = {"--fail-every", "2:503:Shutdown", NULL};

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    /* one at a time: every second request is answered Shutdown, so each
     * push after the first meets one, and its resend does not */
    for (size_t i = 0; i < 10; i++)
        send_range(&r, i, i + 1, 10000);
    for (size_t i = 0; i < r.n; i++) {
        if (r.items[i].last.kind != PGW_OUTCOME_DELIVERED)
            fail_msg("push %zu: '%s'", i, r.items[i].last.reason);
        assert_int_equal(r.items[i].attempts, 1);
    }
    assert_int_equal(r.retries_seen, 0);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_fail_every_429(void **state)
{
    (void)state;
    fail_every("5:429:TooManyRequests", 429, "TooManyRequests");
}

static void test_retry_after_reported(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    const char *extra[] = {"--fail-every", "1:503:Shutdown", "--retry-after",
                           "7", NULL};

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 3, 10000);
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_RETRY);
    assert_int_equal(r.items[0].last.status, 503);
    assert_string_equal(r.items[0].last.reason, "Shutdown");
    assert_int_equal(r.items[0].last.retry_after_ms, 7000);
    run_free(&r);
    mock_cleanup(&m);
}

/* |n| pushes on two connections to a mock started with |extra|: every
 * one delivered exactly once. */
static void expect_all_delivered(const char *const *extra, size_t n)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};

    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, n, 60000);
    assert_all_delivered_once(&r, &m, NULL);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_lower_streams_to_1(void **state)
{
    const char *extra[] = {"--lower-streams-after", "20:1", NULL};

    (void)state;
    expect_all_delivered(extra, 400);
}

static void test_max_streams_1(void **state)
{
    const char *extra[] = {"--max-streams", "1", NULL};

    (void)state;
    expect_all_delivered(extra, 300);
}

static void test_delay_beyond_timeout(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .request_timeout_ms = 400}};
    /* The mock's answers come long after the timeout, so that a slow
     * machine cannot blur the two. */
    const char *extra[] = {"--delay-ms", "4000", NULL};
    struct pgw_h2_pool_stats st;
    struct timespec t0, t1;
    size_t i;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    send_range(&r, 0, 50, 5000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (i = 0; i < r.n; i++) {
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_RETRY);
        assert_string_equal(r.items[i].last.reason, "timeout");
    }
    /* bounded: well before the mock would have answered */
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 +
                    (t1.tv_nsec - t0.tv_nsec) / 1000000 <
                3500);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.timeouts, 50);
    run_free(&r);
    mock_cleanup(&m);
}

/* Requests that time out while their HEADERS are still queued in nghttp2
 * (the peer stopped reading and the output backed up): nghttp2 holds
 * pointers into their buffers, which must outlive them. Past MAX_ORPHANS
 * such requests the connection is given up and the rest go on a new one;
 * once the peer reads again, the pool delivers. */
static void test_timeout_before_sent(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 1, .request_timeout_ms = 600}};
    const char *extra[] = {"--stall-read-ms", "1500", "--max-streams", "5000",
                           NULL};
    struct pgw_h2_pool_stats st;
    size_t i, first = 1, wave = 800, waves = 5, n, timeouts = 0;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    r.body_pad = 4000;
    send_range(&r, 0, first, 5000); /* the mock stops reading after it */
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_DELIVERED);
    /* Waves of 3.2 MB, each its own loop turn, until the output backs up
     * past what the kernel takes: later HEADERS stay in nghttp2. */
    for (i = first; i < first + waves * wave; i++)
        item_setup(&r, i, NULL);
    for (size_t w = 0; w < waves; w++) {
        for (i = first + w * wave; i < first + (w + 1) * wave; i++)
            assert_int_equal(send_item(&r.items[i]), 0);
        r.n = first + (w + 1) * wave;
        idle_for(&r, 50);
    }
    run_loop(&r, 5000);
    assert_int_equal(r.done, r.n);
    for (i = first; i < r.n; i++) {
        if (r.items[i].last.kind == PGW_OUTCOME_DELIVERED)
            continue;
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_RETRY);
        assert_string_equal(r.items[i].last.reason, "timeout");
        timeouts++;
    }
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.timeouts, timeouts);
    assert_true(st.timeouts_unsent > 0);
    assert_true(st.timeouts_unsent <= st.timeouts);
    n = r.n;
    /* The stall ends; the pool delivers again. The mock first drains
     * what the kernel buffered during the stall, so on a loaded machine a
     * push may still outlast the 600 ms timeout: it is sent again, as the
     * dispatcher would, and every one must be delivered. */
    idle_for(&r, 1600);
    r.body_pad = 0;
    r.resend_retry = true;
    r.max_attempts = 5;
    send_range(&r, n, n + 50, 10000);
    for (i = n; i < n + 50; i++)
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_DELIVERED);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.pending, 0);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_close_after(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};
    const char *extra[] = {"--close-after", "30", NULL};
    struct pgw_h2_pool_stats st;
    struct rec *recs;
    size_t n, i;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    r.resend_retry = true;
    r.max_attempts = 100;
    send_range(&r, 0, 600, 60000);
    pgw_apns_stats(r.apns, &st);
    assert_true(st.conns_lost > 0);
    for (i = 0; i < r.n; i++) {
        if (r.items[i].last.kind != PGW_OUTCOME_DELIVERED)
            fail_msg("push %zu: '%s' after %u attempts", i,
                     r.items[i].last.reason, r.items[i].attempts);
        if (r.items[i].attempts > 1)
            assert_true(r.items[i].attempts <= 100);
    }
    mock_stop(&m);
    recs = read_records(&m, &n);
    /* delivered at least once; a push cut by the close may appear twice */
    for (i = 0; i < r.n; i++)
        assert_true(count_token(recs, n, r.items[i].token, 200) >= 1);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_no_ping_ack(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1,
                                          .ping_idle_ms = 200,
                                          .ping_timeout_ms = 300}};
    const char *extra[] = {"--no-ping-ack", NULL};
    struct pgw_h2_pool_stats st;
    struct rec *recs;
    size_t n, i;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 10, 10000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.conns_ready, 1);
    assert_int_equal(st.dead_connections, 0);
    idle_for(&r, 1200);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.dead_connections, 1);
    assert_int_equal(st.conns_ready, 0);
    send_range(&r, 10, 20, 10000);
    for (i = 0; i < r.n; i++)
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_DELIVERED);
    mock_stop(&m);
    recs = read_records(&m, &n);
    assert_int_equal(n, 20);
    /* the second batch went over a new connection */
    assert_true(recs[0].conn != recs[19].conn);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_tls_delay(void **state)
{
    struct tu_mock m;
    struct run r, r2;
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .connect_timeout_ms = 3000}};
    struct pgw_apns_options o2 = {.pool = {.connections = 1,
                                           .connect_timeout_ms = 150,
                                           .backoff_initial_ms = 100}};
    const char *extra[] = {"--tls-delay-ms", "400", NULL};

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 100, 10000);
    /* a connect timeout shorter than the handshake: connect_failed */
    run_init(&r2, &m, &o2);
    send_range(&r2, 0, 5, 5000);
    assert_int_equal(r2.items[0].last.kind, PGW_OUTCOME_RETRY);
    assert_string_equal(r2.items[0].last.reason, "connect_failed");
    assert_all_delivered_once(&r, &m, NULL);
    run_free(&r);
    run_free(&r2);
    mock_cleanup(&m);
}

/* A server that completes TLS and then answers with something that is not
 * HTTP/2: each attempt is a connect failure, logged, and the slot backs
 * off (200, 400, 800 ms here) instead of reconnecting again and again. */
static void test_garbage_server_backs_off(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1,
                                          .request_timeout_ms = 1500,
                                          .backoff_initial_ms = 200}};
    const char *extra[] = {"--garbage", NULL};
    struct pgw_h2_pool_stats st;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 1, 5000);
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_RETRY);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.connects_ok, 0);
    assert_int_equal(st.conns_lost, 0);
    assert_string_equal(r.items[0].last.reason, "connect_failed");
    /* before the fix: 376 reconnections in those 1.5 s, none counted */
    if (st.connect_failures < 1 || st.connect_failures > 4)
        fail_msg("%llu connect failures in 1.5 s; backoff allows 1 to 4",
                 (unsigned long long)st.connect_failures);
    idle_for(&r, 500);
    pgw_apns_stats(r.apns, &st);
    assert_true(st.connect_failures <= 4);
    run_free(&r);
    mock_cleanup(&m);
}

static struct pgw_tls_identity *load_identity(const char *name,
                                              const char *password)
{
    struct pgw_tls_identity *id = NULL;
    char path[512], err[PGW_TLS_IDENTITY_ERR_MAX];

    snprintf(path, sizeof(path), "%s/%s", CERTS, name);
    if (pgw_tls_identity_load(path, password, &id, err, sizeof(err)) != 0)
        fail_msg("loading '%s': %s", name, err);
    return id;
}

static void expect_identity_error(const char *name, const char *password,
                                  int code, const char *words)
{
    struct pgw_tls_identity *id = NULL;
    char path[512], err[PGW_TLS_IDENTITY_ERR_MAX] = "";

    snprintf(path, sizeof(path), "%s/%s", CERTS, name);
    assert_int_equal(
        pgw_tls_identity_load(path, password, &id, err, sizeof(err)), code);
    assert_null(id);
    if (!strstr(err, words))
        fail_msg("'%s': '%s' does not say '%s'", name, err, words);
}

/* APNs certificates in the forms Apple and Keychain hand them out. */
static void test_certificate_files(void **state)
{
    static const char *const ok[][2] = {
        {"apns-cert.pem", NULL},
        {"apns-cert.p12", "p12-secret"},
        {"apns-cert-legacy.p12", "p12-secret"}, /* RC2, Keychain's export */
    };

    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(ok); i++) {
        struct pgw_tls_identity *id = load_identity(ok[i][0], ok[i][1]);

        assert_string_equal(pgw_tls_identity_uid(id), TOPIC);
        assert_true(pgw_tls_identity_not_after(id) >
                    (int64_t)time(NULL) + 365 * 86400);
        assert_non_null(
            strstr(pgw_tls_identity_subject(id), "Apple Push Services"));
        pgw_tls_identity_free(id);
    }
    expect_identity_error("apns-cert.p12", "wrong", PGW_ERR_CRYPTO,
                          "wrong password");
    expect_identity_error("apns-mismatch.pem", NULL, PGW_ERR_CRYPTO,
                          "does not belong");
    expect_identity_error("ca.pem", NULL, PGW_ERR_CRYPTO, "no private key");
    expect_identity_error("AuthKey_KEY0000001.p8", NULL, PGW_ERR_CRYPTO,
                          "no certificate");
    expect_identity_error("no-such-file.p12", NULL, PGW_ERR_IO, "cannot open");
}

/* Certificate authentication: TLS client certificates, no token; the
 * topic must be the certificate's bundle id; a separate development
 * certificate is presented to the development endpoint. */
static void test_certificate_auth(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    const char *extra[] = {"--client-ca", CERTS "/ca.pem", NULL};
    struct rec *recs;
    size_t n, i;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    assert_int_equal(
        pgw_apns_add_cert(r.apns, "cert:app",
                          load_identity("apns-cert.pem", NULL),
                          load_identity("apns-cert-legacy.p12", "p12-secret")),
        0);
    assert_int_equal(pgw_apns_add_cert(r.apns, "cert:app",
                                       load_identity("apns-cert.pem", NULL),
                                       NULL),
                     PGW_ERR_CONFLICT);
    r.team = "cert:app";
    send_range(&r, 0, 4, 10000);
    r.env = PGW_APNS_DEVELOPMENT;
    send_range(&r, 4, 8, 10000);
    for (i = 0; i < 8; i++)
        assert_int_equal(r.items[i].last.kind, PGW_OUTCOME_DELIVERED);
    /* another app's topic through this certificate */
    r.topic = "com.example.other";
    send_range(&r, 8, 9, 10000);
    assert_int_equal(r.items[8].last.kind, PGW_OUTCOME_FINAL);
    assert_string_equal(r.items[8].last.reason, "TopicDisallowed");
    /* the token identity still works on the same server */
    r.team = NULL;
    r.topic = NULL;
    send_range(&r, 9, 10, 10000);
    assert_int_equal(r.items[9].last.kind, PGW_OUTCOME_DELIVERED);
    mock_stop(&m);
    recs = read_records(&m, &n);
    assert_int_equal(n, 10);
    for (i = 0; i < 9; i++)
        assert_string_equal(recs[i].team, ""); /* no authorization sent */
    assert_string_equal(recs[9].team, TEAM);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

/* A voip push goes to <bundle>.voip (the mock refuses the bare bundle id
 * for it); a topic that has the suffix already keeps it once. */
static void test_voip_topic_suffix(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    struct rec *recs;
    size_t n;

    (void)state;
    mock_start(&m, NULL);
    run_init(&r, &m, &o);
    r.push_type = "voip";
    send_range(&r, 0, 1, 10000);
    r.topic = TOPIC ".voip";
    send_range(&r, 1, 2, 10000);
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_DELIVERED);
    assert_int_equal(r.items[1].last.kind, PGW_OUTCOME_DELIVERED);
    mock_stop(&m);
    recs = read_records(&m, &n);
    assert_int_equal(n, 2);
    assert_string_equal(recs[0].topic, TOPIC ".voip");
    assert_string_equal(recs[1].topic, TOPIC ".voip");
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

static int64_t fake_now;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static void test_jwt_refreshed_at_50_min(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 2}};
    struct pgw_jwt *jwt;
    int64_t real = (int64_t)time(NULL);

    (void)state;
    mock_start(&m, NULL);
    run_init(&r, &m, &o);
    jwt = pgw_apns_team_jwt(r.apns, TEAM);
    pgw_jwt_set_clock(jwt, fake_clock, NULL);
    fake_now = real - 50 * 60 + 5; /* the mock still accepts it (< 1 h) */
    send_range(&r, 0, 200, 10000);
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    fake_now = real - 1; /* 49:59 later: reused */
    send_range(&r, 200, 300, 10000);
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    fake_now = real + 5; /* 50 min: a new one, used by every connection */
    send_range(&r, 300, 500, 10000);
    assert_int_equal(pgw_jwt_signed_count(jwt), 2);
    assert_int_equal(pgw_jwt_issued_at(jwt), real + 5);
    assert_all_delivered_once(&r, &m, NULL);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_expired_provider_token(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    const char *extra[] = {"--token-max-age-s", "120", NULL};
    struct pgw_jwt *jwt;
    struct rec *recs;
    size_t n;
    int64_t real = (int64_t)time(NULL);

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    jwt = pgw_apns_team_jwt(r.apns, TEAM);
    pgw_jwt_set_clock(jwt, fake_clock, NULL);
    /* token signed 30 min ago: the mock (max age 2 min) says expired */
    fake_now = real - 30 * 60;
    send_range(&r, 0, 1, 10000);
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_RETRY);
    assert_string_equal(r.items[0].last.reason, "ExpiredProviderToken");
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    /* 30 min later by the token's clock: refresh allowed, one retry */
    fake_now = real;
    send_range(&r, 1, 2, 10000);
    assert_int_equal(r.items[1].last.kind, PGW_OUTCOME_DELIVERED);
    assert_int_equal(r.items[1].attempts, 1); /* one callback */
    assert_int_equal(pgw_jwt_signed_count(jwt), 2);
    /* the new token serves the next pushes with no further signing */
    send_range(&r, 2, 20, 10000);
    assert_int_equal(pgw_jwt_signed_count(jwt), 2);
    mock_stop(&m);
    recs = read_records(&m, &n);
    assert_int_equal(count_token(recs, n, r.items[1].token, 403), 1);
    assert_int_equal(count_token(recs, n, r.items[1].token, 200), 1);
    assert_int_equal(count_token(recs, n, r.items[0].token, 403), 1);
    assert_int_equal(count_token(recs, n, r.items[0].token, 200), 0);
    free(recs);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_within_20_min_no_new_token(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    const char *extra[] = {"--token-max-age-s", "120", NULL};
    struct pgw_jwt *jwt;
    int64_t real = (int64_t)time(NULL);

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    jwt = pgw_apns_team_jwt(r.apns, TEAM);
    pgw_jwt_set_clock(jwt, fake_clock, NULL);
    fake_now = real - 10 * 60;
    send_range(&r, 0, 1, 10000);
    fake_now = real - 5 * 60; /* only 5 minutes later */
    send_range(&r, 1, 2, 10000);
    assert_int_equal(r.items[1].last.kind, PGW_OUTCOME_RETRY);
    assert_string_equal(r.items[1].last.reason, "ExpiredProviderToken");
    assert_int_equal(pgw_jwt_signed_count(jwt), 1);
    run_free(&r);
    mock_cleanup(&m);
}

static void test_invalidations(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1}};
    char unreg[128], bad[128];
    const char *t_unreg =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *t_bad =
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const char *extra[5];
    struct pgw_apns_push p;

    (void)state;
    snprintf(unreg, sizeof(unreg), "%s:1700000000123", t_unreg);
    snprintf(bad, sizeof(bad), "%s", t_bad);
    extra[0] = "--unregistered";
    extra[1] = unreg;
    extra[2] = "--bad-token";
    extra[3] = bad;
    extra[4] = NULL;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    item_setup(&r, 0, t_unreg);
    item_setup(&r, 1, t_bad);
    item_setup(&r, 2, NULL);
    send_range(&r, 0, 3, 10000);
    assert_int_equal(r.items[0].last.kind, PGW_OUTCOME_INVALIDATE);
    assert_int_equal(r.items[0].last.status, 410);
    assert_string_equal(r.items[0].last.reason, "Unregistered");
    assert_int_equal(r.items[0].last.invalid_since_ms, 1700000000123LL);
    assert_int_equal(r.items[1].last.kind, PGW_OUTCOME_INVALIDATE);
    assert_int_equal(r.items[1].last.status, 400);
    assert_string_equal(r.items[1].last.reason, "BadDeviceToken");
    assert_int_equal(r.items[1].last.invalid_since_ms, 0);
    assert_int_equal(r.items[2].last.kind, PGW_OUTCOME_DELIVERED);
    /* a topic the team may not use: final, the token stays valid */
    memset(&p, 0, sizeof(p));
    item_setup(&r, 3, NULL);
    p.env = PGW_APNS_PRODUCTION;
    p.team_id = TEAM;
    p.device_token = r.items[3].token;
    p.topic = "com.other.app";
    p.expiration = -1;
    p.body = "{\"aps\":{}}";
    p.body_len = 10;
    assert_int_equal(pgw_apns_send(r.apns, &p, on_outcome, &r.items[3]), 0);
    r.n = 4;
    run_loop(&r, 10000);
    assert_int_equal(r.done, 4);
    assert_int_equal(r.items[3].last.kind, PGW_OUTCOME_FINAL);
    assert_int_equal(r.items[3].last.status, 400);
    assert_true(r.items[3].last.reason[0] != '\0');
    /* unknown team and bad token are refused synchronously */
    p.team_id = "NOPE";
    assert_int_equal(pgw_apns_send(r.apns, &p, on_outcome, &r.items[3]),
                     PGW_ERR_NOTFOUND);
    p.team_id = TEAM;
    p.device_token = "not-hex";
    assert_int_equal(pgw_apns_send(r.apns, &p, on_outcome, &r.items[3]),
                     PGW_ERR_INVAL);
    run_free(&r);
    mock_cleanup(&m);
}

/* Direct h2client use: the connect failure carries a clear reason. */
struct h2_one {
    struct event_base *base;
    int done;
    enum pgw_h2_result_kind kind;
    char error[256];
};

static void on_h2_one(void *arg, const struct pgw_h2_result *res)
{
    struct h2_one *o = arg;

    o->done++;
    o->kind = res->kind;
    snprintf(o->error, sizeof(o->error), "%s", res->error);
    event_base_loopexit(o->base, NULL);
}

/* What one_request saw: the callback's result, the pool's stats and last
 * error, and the mock's records (read after it stopped; caller frees). */
struct one_result {
    struct h2_one one;
    struct pgw_h2_pool_stats st;
    char last_error[512];
    struct rec *recs;
    size_t n;
};

/* One request straight through an h2client pool to https://|host|:port of
 * mock |m|, with the resolver serve uses, through |proxy| (NULL: direct);
 * stops |m| after. */
static void one_request_via(struct tu_mock *m, const char *host,
                            const char *proxy, struct one_result *res)
{
    struct event_base *base = event_base_new();
    struct evdns_base *dns;
    struct pgw_h2_pool *pool = NULL;
    struct pgw_h2_pool_options po;
    struct pgw_h2_request req;
    struct timeval tv = {10, 0};
    char origin[128];

    memset(res, 0, sizeof(*res));
    assert_non_null(base);
    dns = pgw_h2_dns_new(base);
    assert_non_null(dns);
    snprintf(origin, sizeof(origin), "https://%s:%d", host, m->port);
    memset(&po, 0, sizeof(po));
    po.origin = origin;
    po.ca_file = CERTS "/ca.pem";
    po.connections = 1;
    po.proxy = proxy;
    /* through a proxy, attempts are bounded shorter than the loop here */
    po.connect_timeout_ms = proxy ? 2000 : 0;
    assert_int_equal(pgw_h2_pool_new(base, dns, &po, &pool), 0);
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path =
        "/3/device/"
        "0000000000000000000000000000000000000000000000000000000000000001";
    res->one.base = base;
    assert_int_equal(pgw_h2_pool_submit(pool, &req, on_h2_one, &res->one), 0);
    assert_int_equal(res->one.done, 0); /* never inside submit */
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    assert_int_equal(res->one.done, 1);
    pgw_h2_pool_stats(pool, &res->st);
    snprintf(res->last_error, sizeof(res->last_error), "%s",
             pgw_h2_pool_last_error(pool));
    pgw_h2_pool_free(pool);
    evdns_base_free(dns, 0);
    event_base_free(base);
    mock_stop(m);
    res->recs = read_records(m, &res->n);
}

static void one_request(struct tu_mock *m, const char *host,
                        struct one_result *res)
{
    one_request_via(m, host, NULL, res);
}

static void expect_cert_failure(const char *certname, const char *host,
                                const char *want)
{
    struct tu_mock m;
    struct one_result r;

    mock_start_cert(&m, certname, NULL);
    one_request(&m, host, &r);
    assert_int_equal(r.one.kind, PGW_H2_CONNECT_FAILED);
    if (!strstr(r.one.error, want))
        fail_msg("error '%s' lacks '%s'", r.one.error, want);
    assert_non_null(strstr(r.one.error, "could not connect to"));
    assert_non_null(strstr(r.last_error, want));
    assert_int_equal(r.st.connect_failures, 1);
    assert_int_equal(r.st.connects_ok, 0);
    assert_int_equal(r.n, 0); /* nothing reached the server */
    free(r.recs);
    mock_cleanup(&m);
}

/* A host name, as in production (api.push.apple.com): "localhost" goes
 * through the resolver serve uses (resolv.conf, /etc/hosts) and the
 * certificate is checked against the name. The mock listens on 127.0.0.1
 * only: when the name also maps to ::1, that address is refused first
 * and the next one tried. */
static void test_host_name(void **state)
{
    struct tu_mock m;
    struct one_result r;

    (void)state;
    mock_start(&m, NULL);
    one_request(&m, "localhost", &r);
    if (r.one.kind != PGW_H2_RESPONSE)
        fail_msg("no answer through 'localhost': %s: %s",
                 pgw_h2_result_kind_name(r.one.kind), r.one.error);
    assert_int_equal(r.st.connects_ok, 1);
    /* no JWT: Apple's answer to that */
    assert_int_equal(r.n, 1);
    assert_int_equal(r.recs[0].status, 403);
    assert_string_equal(r.recs[0].reason, "MissingProviderToken");
    free(r.recs);
    mock_cleanup(&m);
}

static void test_untrusted_certificate(void **state)
{
    (void)state;
    expect_cert_failure("untrusted", "127.0.0.1", "certificate verify failed");
}

static void test_wrong_hostname(void **state)
{
    (void)state;
    expect_cert_failure("wronghost", "127.0.0.1", "IP address mismatch");
}

/* ---------------------------------------------------------- proxies */

static void proxy_start(struct tu_mock *p, const char *const *args)
{
    struct tu_mock_options o = {.args = args};

    tu_mock_start(p, TU_MOCK_PROXY, &o);
}

/* The proxy's records (after it stopped), as a JSON array. */
static cJSON *proxy_records(struct tu_mock *p)
{
    cJSON *recs;

    tu_mock_signal(p, SIGTERM);
    recs = tu_records_read(p->record);
    assert_non_null(recs);
    return recs;
}

/* Through a proxy that wants credentials: one CONNECT to the origin's
 * host name and port with them (percent-decoded), then TLS with the
 * origin's name inside the tunnel, verified as without a proxy. */
static void test_proxy_tunnel(void **state)
{
    const char *args[] = {"--auth", "alice:p@ss:w", NULL};
    struct tu_mock m, p;
    struct one_result r;
    char url[128], target[64];
    cJSON *recs, *rec;

    (void)state;
    mock_start(&m, NULL);
    proxy_start(&p, args);
    snprintf(url, sizeof(url), "http://alice:p%%40ss%%3Aw@127.0.0.1:%d",
             p.port);
    one_request_via(&m, "localhost", url, &r);
    if (r.one.kind != PGW_H2_RESPONSE)
        fail_msg("no answer through the proxy: %s: %s",
                 pgw_h2_result_kind_name(r.one.kind), r.one.error);
    assert_int_equal(r.st.connects_ok, 1);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.recs[0].reason, "MissingProviderToken");
    recs = proxy_records(&p);
    assert_int_equal(cJSON_GetArraySize(recs), 1);
    rec = cJSON_GetArrayItem(recs, 0);
    snprintf(target, sizeof(target), "localhost:%d", m.port);
    assert_string_equal(tu_json_str(rec, "method"), "CONNECT");
    assert_string_equal(tu_json_str(rec, "target"), target);
    assert_string_equal(tu_json_str(rec, "host"), target);
    assert_string_equal(tu_json_str(rec, "auth"), "alice:p@ss:w");
    assert_string_equal(tu_json_str(rec, "status"), "200");
    cJSON_Delete(recs);
    free(r.recs);
    tu_mock_stop(&p);
    mock_cleanup(&m);
}

/* What a connection attempt through a proxy started with |args|, given
 * as http://|userinfo|127.0.0.1:port, fails with. */
static void expect_proxy_failure(const char *const *args, const char *userinfo,
                                 bool proxy_down, const char *want)
{
    struct tu_mock m, p;
    struct one_result r;
    char url[128], through[64];

    mock_start(&m, NULL);
    proxy_start(&p, args);
    snprintf(url, sizeof(url), "http://%s127.0.0.1:%d", userinfo, p.port);
    snprintf(through, sizeof(through), "through proxy '127.0.0.1:%d'", p.port);
    if (proxy_down)
        tu_mock_signal(&p, SIGTERM);
    one_request_via(&m, "127.0.0.1", url, &r);
    assert_int_equal(r.one.kind, PGW_H2_CONNECT_FAILED);
    if (!strstr(r.one.error, want) || !strstr(r.one.error, through))
        fail_msg("error '%s' lacks '%s' or '%s'", r.one.error, want, through);
    /* never the credentials */
    assert_null(strstr(r.one.error, "s3cret"));
    assert_null(strstr(r.last_error, "s3cret"));
    assert_int_equal(r.st.connect_failures, 1);
    assert_int_equal(r.st.connects_ok, 0);
    assert_int_equal(r.n, 0); /* nothing reached the server */
    free(r.recs);
    tu_mock_stop(&p);
    mock_cleanup(&m);
}

static void test_proxy_wrong_password_407(void **state)
{
    const char *args[] = {"--auth", "alice:right", NULL};

    (void)state;
    expect_proxy_failure(args, "alice:s3cret@", false,
                         "proxy answered 407 Proxy Authentication Required");
}

static void test_proxy_refuses_502(void **state)
{
    const char *args[] = {"--status", "502", NULL};

    (void)state;
    expect_proxy_failure(args, "alice:s3cret@", false,
                         "proxy answered 502 Bad Gateway");
}

static void test_proxy_down(void **state)
{
    (void)state;
    expect_proxy_failure(NULL, "alice:s3cret@", true,
                         "proxy: Connection refused");
}

/* A proxy that never answers CONNECT: the connect timeout ends it. */
static void test_proxy_hangs(void **state)
{
    const char *args[] = {"--hang", NULL};

    (void)state;
    expect_proxy_failure(args, "", false, "timed out after 2000 ms");
}

/* Something else than an HTTP proxy on the port. */
static void test_proxy_not_http(void **state)
{
    const char *args[] = {"--raw", "SSH-2.0-OpenSSH_9.2\r\n\r\n", NULL};

    (void)state;
    expect_proxy_failure(args, "alice:s3cret@", false,
                         "the proxy's answer to CONNECT is not HTTP/1.x");
}

/* Many pushes over several connections, each its own tunnel. */
static void test_many_through_proxy(void **state)
{
    struct tu_mock m, p;
    struct run r;
    char url[64];
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .max_streams_per_conn = 50}};
    struct pgw_h2_pool_stats st;
    cJSON *recs;

    (void)state;
    mock_start(&m, NULL);
    proxy_start(&p, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", p.port);
    o.pool.proxy = url;
    run_init(&r, &m, &o);
    send_range(&r, 0, 500, 30000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.connects_ok, 2);
    assert_all_delivered_once(&r, &m, NULL);
    recs = proxy_records(&p);
    assert_int_equal(cJSON_GetArraySize(recs), 2);
    assert_string_equal(tu_json_str(cJSON_GetArrayItem(recs, 0), "auth"),
                        "(non-string)");
    cJSON_Delete(recs);
    run_free(&r);
    tu_mock_stop(&p);
    mock_cleanup(&m);
}

static void test_busy_and_free_cancels(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {.pool = {.connections = 1,
                                          .max_pending = 10,
                                          .max_streams_per_conn = 5}};
    const char *extra[] = {"--delay-ms", "300", NULL};
    size_t i, busy = 0, delivered = 0;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 40, 10000);
    for (i = 0; i < r.n; i++) {
        if (r.items[i].last.kind == PGW_OUTCOME_RETRY &&
            strcmp(r.items[i].last.reason, "busy") == 0)
            busy++;
        else if (r.items[i].last.kind == PGW_OUTCOME_DELIVERED)
            delivered++;
    }
    assert_int_equal(busy, 30);
    assert_int_equal(delivered, 10);
    /* freeing with pushes outstanding completes them, once */
    for (i = 40; i < 45; i++) {
        item_setup(&r, i, NULL);
        assert_int_equal(send_item(&r.items[i]), 0);
    }
    r.n = 45;
    pgw_apns_free(r.apns);
    r.apns = NULL;
    assert_int_equal(r.done, 45);
    for (i = 40; i < 45; i++)
        assert_string_equal(r.items[i].last.reason, "cancelled");
    run_free(&r);
    mock_cleanup(&m);
}

/* Runs the loop until the pool has only its minimum of connections, none
 * draining, or |limit_ms| passed (polled, no timing asserted). */
static void wait_for_minimum(struct run *r, unsigned minimum, unsigned limit_ms)
{
    struct pgw_h2_pool_stats st;
    unsigned waited;

    for (waited = 0; waited < limit_ms; waited += 50) {
        pgw_apns_stats(r->apns, &st);
        if (st.conns_ready == minimum && st.conns_draining == 0 &&
            st.conns_connecting == 0)
            return;
        idle_for(r, 50);
    }
}

/* Saturated (10 streams a connection, answers 100 ms late), the pool grows
 * from its 2 connections to max_connections and no further; unneeded, it
 * closes the extra ones again, also while pushes are still on them; every
 * push is answered once throughout. */
static void test_pool_grows_and_shrinks(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .max_connections = 5, .idle_close_ms = 400}};
    const char *extra[] = {"--max-streams", "10", "--delay-ms", "100", NULL};
    struct pgw_h2_pool_stats st;
    size_t conns = 0, i;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 400, 30000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(r.max_open, 5);
    assert_true(st.conns_added >= 3);
    assert_int_equal(st.connect_failures, 0);

    wait_for_minimum(&r, 2, 20000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.conns_ready, 2);
    assert_int_equal(st.conns_draining, 0);
    /* The path's round trip as TCP measures it (loopback), not the
     * mock's 100 ms before each answer: what the dispatcher's in-flight
     * bound multiplies the answer rate by. */
    assert_true(st.min_rtt_us > 0);
    assert_true(st.min_rtt_us < 50000);
    assert_int_equal(st.conns_retired, st.conns_added);
    assert_int_equal(st.conns_lost, 0);

    /* Grows again, then four at a time (a fraction of the streams) for a
     * while: the extra connections close with pushes on them. */
    send_range(&r, 400, 800, 30000);
    pgw_apns_stats(r.apns, &st);
    assert_true(st.conns_added > st.conns_retired);
    r.refill = true;
    r.n = 920;
    r.sent = 800;
    for (i = 0; i < 4; i++) {
        item_setup(&r, r.sent, NULL);
        assert_int_equal(send_item(&r.items[r.sent]), 0);
        r.sent++;
    }
    run_loop(&r, 60000);
    assert_int_equal(r.done, 920);
    wait_for_minimum(&r, 2, 20000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.conns_ready, 2);
    assert_int_equal(st.conns_retired, st.conns_added);
    assert_int_equal(st.conns_lost, 0);
    assert_int_equal(st.requests_retried, 0);
    assert_true(r.max_open <= 5);
    assert_all_delivered_once(&r, &m, &conns);
    assert_true(conns > 5);
    run_free(&r);
    mock_cleanup(&m);
}

/* All streams busy but no answer back yet (answers 1.5 s late): the pool
 * does not grow, more connections would only hold more waiting pushes;
 * the ten that waited go out as the first answers free streams. */
static void test_pool_waits_for_answers_to_grow(void **state)
{
    struct tu_mock m;
    struct run r;
    struct pgw_apns_options o = {
        .pool = {.connections = 2, .max_connections = 5}};
    const char *extra[] = {"--max-streams", "10", "--delay-ms", "1500", NULL};
    struct pgw_h2_pool_stats st;

    (void)state;
    mock_start(&m, extra);
    run_init(&r, &m, &o);
    send_range(&r, 0, 30, 30000);
    pgw_apns_stats(r.apns, &st);
    assert_int_equal(st.conns_added, 0);
    assert_int_equal(st.connects_ok, 2);
    assert_all_delivered_once(&r, &m, NULL);
    run_free(&r);
    mock_cleanup(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest delivery[] = {
        cmocka_unit_test(test_many_across_connections),
        cmocka_unit_test(test_hpack_index_once),
        cmocka_unit_test(test_goaway),
        cmocka_unit_test(test_fail_every_503),
        cmocka_unit_test(test_fail_every_429),
        cmocka_unit_test(test_shutdown_resent_at_once),
        cmocka_unit_test(test_retry_after_reported),
        cmocka_unit_test(test_lower_streams_to_1),
        cmocka_unit_test(test_max_streams_1),
        cmocka_unit_test(test_voip_topic_suffix),
        cmocka_unit_test(test_invalidations),
    };
    const struct CMUnitTest faults[] = {
        cmocka_unit_test(test_delay_beyond_timeout),
        cmocka_unit_test(test_timeout_before_sent),
        cmocka_unit_test(test_close_after),
        cmocka_unit_test(test_no_ping_ack),
        cmocka_unit_test(test_tls_delay),
        cmocka_unit_test(test_garbage_server_backs_off),
    };
    const struct CMUnitTest auth[] = {
        cmocka_unit_test(test_certificate_files),
        cmocka_unit_test(test_certificate_auth),
        cmocka_unit_test(test_jwt_refreshed_at_50_min),
        cmocka_unit_test(test_expired_provider_token),
        cmocka_unit_test(test_within_20_min_no_new_token),
        cmocka_unit_test(test_host_name),
        cmocka_unit_test(test_untrusted_certificate),
        cmocka_unit_test(test_wrong_hostname),
    };
    const struct CMUnitTest pool[] = {
        cmocka_unit_test(test_busy_and_free_cancels),
        cmocka_unit_test(test_pool_grows_and_shrinks),
        cmocka_unit_test(test_pool_waits_for_answers_to_grow),
    };
    const struct CMUnitTest proxy[] = {
        cmocka_unit_test(test_proxy_tunnel),
        cmocka_unit_test(test_proxy_wrong_password_407),
        cmocka_unit_test(test_proxy_refuses_502),
        cmocka_unit_test(test_proxy_down),
        cmocka_unit_test(test_proxy_hangs),
        cmocka_unit_test(test_proxy_not_http),
        cmocka_unit_test(test_many_through_proxy),
    };
    const struct tu_part parts[] = {
        TU_PART("delivery", delivery, NULL, NULL),
        TU_PART("faults", faults, NULL, NULL),
        TU_PART("auth", auth, NULL, NULL),
        TU_PART("pool", pool, NULL, NULL),
        TU_PART("proxy", proxy, NULL, NULL),
    };

    signal(SIGPIPE, SIG_IGN);
    pgw_log_set_level(PGW_LOG_ERROR);
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
