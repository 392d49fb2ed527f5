/*
 * fcm + oauth + curlmulti + h2client against the mock FCM over real TLS
 * on loopback: delivery exactly once (record file), one token request for
 * many waiting sends (mock stats), 401 mid-run, and every fault mode
 * ending delivered or correctly classified.
 */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "curlmulti.h"
#include "fcm.h"

#define CERTS PUSHGW_TEST_CERTS_DIR
#define MAX_MSGS 400

struct mock {
    struct tu_mock t;
    char token_url[96];
};

/* Mocks still running: a failed assertion skips mock_stop(), and a
 * leftover child would keep ctest waiting on its output pipe. */
static struct mock *running[4];

static void track(struct mock *m, int on)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(running); i++) {
        if (on && !running[i]) {
            running[i] = m;
            return;
        }
        if (!on && running[i] == m)
            running[i] = NULL;
    }
}

static void mock_start(struct mock *m, const char *const *extra)
{
    struct tu_mock_options o = {.accounts = true, .args = extra};

    memset(m, 0, sizeof(*m));
    tu_mock_start(&m->t, TU_MOCK_FCM, &o);
    track(m, 1);
    snprintf(m->token_url, sizeof(m->token_url), "%s/token", m->t.url);
}

static void mock_stop(struct mock *m)
{
    track(m, 0);
    tu_mock_stop(&m->t);
}

/* ---- the client under test ------------------------------------------- */

struct client {
    struct event_base *base;
    struct evdns_base *dns;
    struct pgw_curlmulti *cm;
    struct pgw_fcm *fcm;
    struct pgw_fcm_account *acc;
};

/* The pool's bound and idle time for the next client_start() (0: fixed
 * at 2 connections, the default idle time). */
static unsigned g_max_connections, g_idle_close_ms;

static void client_start(struct client *c, const struct mock *m,
                         unsigned timeout_ms, const char *token_url)
{
    struct pgw_fcm_options o;
    struct pgw_diag d;

    memset(c, 0, sizeof(*c));
    c->base = event_base_new();
    assert_non_null(c->base);
    c->dns = evdns_base_new(c->base, 0);
    assert_non_null(c->dns);
    assert_int_equal(pgw_curlmulti_new(c->base, 0, &c->cm), 0);
    memset(&o, 0, sizeof(o));
    o.url = m->t.url;
    o.token_url = token_url ? token_url : m->token_url;
    o.ca_file = CERTS "/ca.pem";
    o.pool.connections = 2;
    o.pool.max_connections = g_max_connections;
    o.pool.idle_close_ms = g_idle_close_ms;
    o.pool.request_timeout_ms = timeout_ms ? timeout_ms : 10000;
    o.pool.backoff_initial_ms = 50;
    o.pool.backoff_max_ms = 200;
    assert_int_equal(pgw_fcm_new(c->base, c->dns, c->cm, &o, &c->fcm), 0);
    pgw_diag_init(&d);
    assert_int_equal(pgw_fcm_account(c->fcm, CERTS "/fcm-sa.json", &d, &c->acc),
                     0);
    pgw_diag_release(&d);
    assert_string_equal(pgw_fcm_account_project(c->acc), "pushgw-test");
}

static void client_stop(struct client *c)
{
    pgw_fcm_free(c->fcm);
    pgw_curlmulti_free(c->cm);
    evdns_base_free(c->dns, 0);
    event_base_free(c->base);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until |*count| >= |want| or |ms| pass. */
static void run_until(struct event_base *base, const int *count, int want,
                      int ms)
{
    struct timespec t0, t;
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};

    assert_non_null(tick);
    event_add(tick, &tv);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (count && *count >= want)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 +
                (t.tv_nsec - t0.tv_nsec) / 1000000 >=
            ms)
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
}

struct msg {
    char token[32];
    int calls;
    struct pgw_outcome o;
    int *done;
    /* Got an answer-less RETRY after which the push may still have been
     * processed (connection lost, timeout): a resend may duplicate it. */
    int ambiguous;
};

static void on_outcome(void *arg, const struct pgw_outcome *o)
{
    struct msg *m = arg;

    m->calls++;
    m->o = *o;
    if (o->kind == PGW_OUTCOME_RETRY &&
        (strcmp(o->reason, "connection_lost") == 0 ||
         strcmp(o->reason, "timeout") == 0))
        m->ambiguous = 1;
    (*m->done)++;
}

static void send_one(struct client *c, struct msg *m, const char *body)
{
    struct pgw_fcm_request r;
    char buf[512];

    if (!body) {
        snprintf(
            buf, sizeof(buf),
            "{\"message\":{\"token\":\"%.31s\",\"notification\":{\"title\":"
            "\"hi\",\"body\":\"there\"},\"data\":{\"k\":\"v\"},"
            "\"android\":{\"ttl\":\"3600s\",\"priority\":\"HIGH\"}}}",
            m->token);
        body = buf;
    }
    memset(&r, 0, sizeof(r));
    r.account = c->acc;
    r.device_token = m->token;
    r.body = body;
    r.body_len = strlen(body);
    m->calls = 0;
    assert_int_equal(pgw_fcm_send(c->fcm, &r, on_outcome, m), 0);
}

/* Sends |n| messages and waits for every outcome once. */
static void send_all(struct client *c, struct msg *msgs, int n, int *done,
                     const char *prefix)
{
    *done = 0;
    for (int i = 0; i < n; i++) {
        snprintf(msgs[i].token, sizeof(msgs[i].token), "%s-%04d", prefix, i);
        msgs[i].done = done;
        msgs[i].ambiguous = 0;
        send_one(c, &msgs[i], NULL);
    }
    /* Never synchronous. */
    assert_int_equal(*done, 0);
    run_until(c->base, done, n, 30000);
    assert_int_equal(*done, n);
}

/* Like a dispatcher: resend what came back RETRY (ignoring the delay to
 * keep the test short) until nothing is left to retry. */
static void resend_retries(struct client *c, struct msg *msgs, int n, int *done,
                           int rounds)
{
    for (int r = 0; r < rounds; r++) {
        int again = 0;
        *done = 0;
        for (int i = 0; i < n; i++) {
            if (msgs[i].o.kind == PGW_OUTCOME_RETRY) {
                send_one(c, &msgs[i], NULL);
                again++;
            }
        }
        if (!again)
            return;
        run_until(c->base, done, again, 30000);
        assert_int_equal(*done, again);
    }
}

/* GET /_mock/stats over curlmulti; returns the parsed object. */
struct stats_ctx {
    cJSON *json;
    int done;
};

static void on_stats(const struct pgw_curl_response *resp, void *arg)
{
    struct stats_ctx *s = arg;

    assert_int_equal(resp->err, 0);
    assert_int_equal(resp->status, 200);
    s->json = cJSON_ParseWithLength(resp->body, resp->body_len);
    s->done = 1;
}

static long stat_of(struct client *c, const struct mock *m, const char *key)
{
    struct stats_ctx s = {0};
    struct pgw_curl_request r = {0};
    char u[96];
    const cJSON *it;
    long v;

    snprintf(u, sizeof(u), "%s/_mock/stats", m->t.url);
    r.url = u;
    r.ca_file = CERTS "/ca.pem";
    r.timeout_ms = 5000;
    assert_int_equal(pgw_curlmulti_submit(c->cm, &r, on_stats, &s, NULL), 0);
    run_until(c->base, &s.done, 1, 6000);
    assert_non_null(s.json);
    it = cJSON_GetObjectItem(s.json, key);
    assert_true(cJSON_IsNumber(it));
    v = (long)it->valuedouble;
    cJSON_Delete(s.json);
    return v;
}

/* Per token in the record file: the number of 200 answers for sends;
 * also counts answers with |status_count_of| into |*ret_status_count|. */
static int record_delivered(const struct mock *m, const char *token,
                            int status_count_of, int *ret_status_count)
{
    char *all = tu_read_file(m->t.record);
    char *line, *save = NULL;
    int n = 0, sc = 0;

    assert_non_null(all);
    for (line = strtok_r(all, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *tok, *st, *path;
        assert_non_null(o);
        tok = cJSON_GetObjectItem(o, "token");
        st = cJSON_GetObjectItem(o, "status");
        path = cJSON_GetObjectItem(o, "path");
        if (cJSON_IsString(path) && strstr(path->valuestring, ":send")) {
            if (cJSON_IsNumber(st) && (int)st->valuedouble == status_count_of)
                sc++;
            if (token && cJSON_IsString(tok) &&
                strcmp(tok->valuestring, token) == 0 && cJSON_IsNumber(st) &&
                (int)st->valuedouble == 200)
                n++;
        }
        cJSON_Delete(o);
    }
    free(all);
    if (ret_status_count)
        *ret_status_count = sc;
    return n;
}

static void assert_all_delivered_once(const struct mock *m, struct msg *msgs,
                                      int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_DELIVERED);
        assert_int_equal(msgs[i].o.status, 200);
        assert_non_null(
            strstr(msgs[i].o.provider_id, "projects/pushgw-test/messages/"));
        int k = record_delivered(m, msgs[i].token, 0, NULL);
        if (k != 1)
            printf("token %s delivered %d times (ambiguous %d)\n",
                   msgs[i].token, k, msgs[i].ambiguous);
        if (msgs[i].ambiguous)
            assert_true(k >= 1);
        else
            assert_int_equal(k, 1);
    }
}

/* ---- tests ----------------------------------------------------------- */

static struct msg msgs[MAX_MSGS];

static void test_deliver_once_single_token_request(void **state)
{
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, NULL);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 300, &done, "dev");
    for (int i = 0; i < 300; i++)
        assert_int_equal(msgs[i].calls, 1);
    /* 300 sends waited for one token. */
    assert_int_equal(stat_of(&c, &m, "token_requests"), 1);
    assert_int_equal(pgw_oauth_requests(pgw_fcm_account_oauth(c.acc)), 1);
    assert_int_equal(stat_of(&c, &m, "sends"), 300);
    assert_int_equal(pgw_fcm_inflight(c.fcm), 0);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 300);
    mock_stop(&m);
}

static void test_expired_token_mid_run(void **state)
{
    const char *const extra[] = {"--expire-tokens-after", "60", NULL};
    struct mock m;
    struct client c;
    int done = 0, n401 = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    /* A first wave gets a token; the 60th send revokes it. */
    send_all(&c, msgs, 50, &done, "a");
    send_all(&c, msgs + 50, 150, &done, "b");
    for (int i = 0; i < 200; i++)
        assert_int_equal(msgs[i].calls, 1);
    assert_int_equal(stat_of(&c, &m, "token_expirations"), 1);
    /* One renewal however many 401s came back. */
    assert_int_equal(stat_of(&c, &m, "token_requests"), 2);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 200);
    record_delivered(&m, NULL, 401, &n401);
    assert_true(n401 > 0);
    mock_stop(&m);
}

static void test_invalid_tokens(void **state)
{
    const char *const extra[] = {
        "--unregistered",  "dev-0003",          "--unregistered",
        "dev-0007",        "--sender-mismatch", "dev-0005",
        "--invalid-token", "dev-0008",          NULL};
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 10, &done, "dev");
    for (int i = 0; i < 10; i++) {
        if (i == 3 || i == 7) {
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_INVALIDATE);
            assert_int_equal(msgs[i].o.status, 404);
            assert_string_equal(msgs[i].o.reason, "UNREGISTERED");
        } else if (i == 5) {
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_INVALIDATE);
            assert_int_equal(msgs[i].o.status, 403);
            assert_string_equal(msgs[i].o.reason, "SENDER_ID_MISMATCH");
        } else if (i == 8) {
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_INVALIDATE);
            assert_int_equal(msgs[i].o.status, 400);
            assert_string_equal(msgs[i].o.reason, "INVALID_REGISTRATION");
        } else {
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_DELIVERED);
        }
    }
    client_stop(&c);
    mock_stop(&m);
}

static void quota_case(const char *retry_after, int64_t want_ms)
{
    const char *const extra[] = {"--fail-every", "3:429:QUOTA_EXCEEDED",
                                 "--retry-after", retry_after, NULL};
    struct mock m;
    struct client c;
    int done = 0, retried = 0;

    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 30, &done, "q");
    for (int i = 0; i < 30; i++) {
        if (msgs[i].o.kind == PGW_OUTCOME_RETRY) {
            retried++;
            assert_int_equal(msgs[i].o.status, 429);
            assert_string_equal(msgs[i].o.reason, "QUOTA_EXCEEDED");
            assert_int_equal(msgs[i].o.retry_after_ms, want_ms);
        } else {
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_DELIVERED);
        }
    }
    assert_int_equal(retried, 10);
    resend_retries(&c, msgs, 30, &done, 10);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 30);
    mock_stop(&m);
}

static void test_quota_exceeded(void **state)
{
    (void)state;
    quota_case("5", 60000);    /* never sooner than 60 s */
    quota_case("120", 120000); /* a longer Retry-After wins */
}

static void test_unavailable_bursts(void **state)
{
    const char *const extra[] = {"--fail-every", "2:503:UNAVAILABLE",
                                 "--retry-after", "7", NULL};
    struct mock m;
    struct client c;
    int done = 0, retried = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 40, &done, "u");
    for (int i = 0; i < 40; i++) {
        if (msgs[i].o.kind == PGW_OUTCOME_RETRY) {
            retried++;
            assert_int_equal(msgs[i].o.status, 503);
            assert_string_equal(msgs[i].o.reason, "UNAVAILABLE");
            assert_int_equal(msgs[i].o.retry_after_ms, 7000);
        }
    }
    assert_int_equal(retried, 20);
    resend_retries(&c, msgs, 40, &done, 20);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 40);
    mock_stop(&m);
}

static void test_internal_errors(void **state)
{
    const char *const extra[] = {"--fail-every", "4:500:INTERNAL", NULL};
    struct mock m;
    struct client c;
    int done = 0, retried = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 20, &done, "i");
    for (int i = 0; i < 20; i++) {
        if (msgs[i].o.kind == PGW_OUTCOME_RETRY) {
            retried++;
            assert_string_equal(msgs[i].o.reason, "INTERNAL");
            assert_int_equal(msgs[i].o.retry_after_ms, 0);
        }
    }
    assert_int_equal(retried, 5);
    resend_retries(&c, msgs, 20, &done, 20);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 20);
    mock_stop(&m);
}

static void test_slow_answers(void **state)
{
    const char *const extra[] = {"--delay-ms", "400", NULL};
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    /* Slow but within the timeout: delivered. */
    client_start(&c, &m, 5000, NULL);
    send_all(&c, msgs, 50, &done, "s");
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 50);
    mock_stop(&m);
}

/* Saturated (10 streams a connection, answers 100 ms late), the FCM pool
 * grows from 2 connections to its 4, then, idle, closes the 2 extra ones;
 * every message is delivered once. */
static void test_pool_grows_and_shrinks(void **state)
{
    const char *const extra[] = {"--max-streams", "10", "--delay-ms", "100",
                                 NULL};
    struct pgw_h2_pool_stats st;
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    g_max_connections = 4;
    g_idle_close_ms = 300;
    client_start(&c, &m, 0, NULL);
    g_max_connections = 0;
    g_idle_close_ms = 0;
    send_all(&c, msgs, 300, &done, "g");
    pgw_fcm_stats(c.fcm, &st);
    assert_true(st.conns_added >= 2);
    assert_int_equal(st.connect_failures, 0);
    for (int waited = 0; waited < 20000; waited += 50) {
        pgw_fcm_stats(c.fcm, &st);
        if (st.conns_ready == 2 && st.conns_draining == 0 &&
            st.conns_connecting == 0)
            break;
        run_until(c.base, NULL, 0, 50);
    }
    pgw_fcm_stats(c.fcm, &st);
    assert_int_equal(st.conns_ready, 2);
    assert_int_equal(st.conns_draining, 0);
    assert_int_equal(st.conns_retired, st.conns_added);
    assert_int_equal(st.conns_lost, 0);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 300);
    mock_stop(&m);
}

static void test_timeout(void **state)
{
    const char *const extra[] = {"--delay-ms", "1500", NULL};
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    /* Sends get 1 s; the token request has its own 10 s budget. */
    client_start(&c, &m, 1000, NULL);
    send_all(&c, msgs, 5, &done, "t");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_RETRY);
        assert_int_equal(msgs[i].o.status, 0);
        assert_string_equal(msgs[i].o.reason, "timeout");
    }
    assert_int_equal(pgw_oauth_requests(pgw_fcm_account_oauth(c.acc)), 1);
    client_stop(&c);
    mock_stop(&m);
}

static void test_goaway(void **state)
{
    const char *const extra[] = {"--goaway-after", "25", NULL};
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    send_all(&c, msgs, 200, &done, "g");
    for (int i = 0; i < 200; i++) {
        if (msgs[i].o.kind == PGW_OUTCOME_RETRY)
            assert_true(strcmp(msgs[i].o.reason, "refused") == 0 ||
                        strcmp(msgs[i].o.reason, "connection_lost") == 0);
        else
            assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_DELIVERED);
    }
    resend_retries(&c, msgs, 200, &done, 20);
    assert_true(stat_of(&c, &m, "goaways") > 0);
    client_stop(&c);
    assert_all_delivered_once(&m, msgs, 200);
    mock_stop(&m);
}

static void test_bad_request_invalid_argument(void **state)
{
    struct mock m;
    struct client c;
    int done = 0;
    struct msg bad = {0};

    (void)state;
    mock_start(&m, NULL);
    client_start(&c, &m, 0, NULL);
    snprintf(bad.token, sizeof(bad.token), "bad-0001");
    bad.done = &done;
    /* A data value that is not a string. */
    send_one(&c, &bad,
             "{\"message\":{\"token\":\"bad-0001\",\"data\":{\"n\":12}}}");
    run_until(c.base, &done, 1, 10000);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.o.kind, PGW_OUTCOME_FINAL);
    assert_int_equal(bad.o.status, 400);
    assert_string_equal(bad.o.reason, "INVALID_ARGUMENT");
    client_stop(&c);
    mock_stop(&m);
}

static void test_token_endpoint_down(void **state)
{
    struct mock m;
    struct client c;
    int done = 0;
    char dead[96];

    (void)state;
    mock_start(&m, NULL);
    /* A token URL on the mock's port + path that does not exist. */
    snprintf(dead, sizeof(dead), "%s/nope", m.t.url);
    client_start(&c, &m, 0, dead);
    send_all(&c, msgs, 5, &done, "x");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_RETRY);
        assert_string_equal(msgs[i].o.reason, "auth_unavailable");
    }
    /* Within the backoff the next sends fail without a request, from the
     * loop. */
    send_all(&c, msgs, 3, &done, "y");
    for (int i = 0; i < 3; i++)
        assert_string_equal(msgs[i].o.reason, "auth_unavailable");
    assert_int_equal(pgw_oauth_requests(pgw_fcm_account_oauth(c.acc)), 1);
    assert_int_equal(stat_of(&c, &m, "sends"), 0);
    client_stop(&c);
    mock_stop(&m);
}

static void test_free_with_sends_in_flight(void **state)
{
    const char *const extra[] = {"--delay-ms", "2000", NULL};
    struct mock m;
    struct client c;
    int done = 0;

    (void)state;
    mock_start(&m, extra);
    client_start(&c, &m, 0, NULL);
    for (int i = 0; i < 10; i++) {
        snprintf(msgs[i].token, sizeof(msgs[i].token), "f-%d", i);
        msgs[i].done = &done;
        send_one(&c, &msgs[i], NULL);
    }
    run_until(c.base, NULL, 0, 300);
    assert_int_equal(done, 0);
    pgw_fcm_free(c.fcm);
    c.fcm = NULL;
    assert_int_equal(done, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(msgs[i].calls, 1);
        assert_int_equal(msgs[i].o.kind, PGW_OUTCOME_RETRY);
        assert_string_equal(msgs[i].o.reason, "cancelled");
    }
    client_stop(&c);
    mock_stop(&m);
}

static int stop_mocks(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(running); i++)
        if (running[i])
            mock_stop(running[i]);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest delivery[] = {
        cmocka_unit_test_teardown(test_deliver_once_single_token_request,
                                  stop_mocks),
        cmocka_unit_test_teardown(test_expired_token_mid_run, stop_mocks),
        cmocka_unit_test_teardown(test_invalid_tokens, stop_mocks),
        cmocka_unit_test_teardown(test_quota_exceeded, stop_mocks),
        cmocka_unit_test_teardown(test_unavailable_bursts, stop_mocks),
        cmocka_unit_test_teardown(test_internal_errors, stop_mocks),
        cmocka_unit_test_teardown(test_bad_request_invalid_argument,
                                  stop_mocks),
    };
    const struct CMUnitTest faults[] = {
        cmocka_unit_test_teardown(test_slow_answers, stop_mocks),
        cmocka_unit_test_teardown(test_timeout, stop_mocks),
        cmocka_unit_test_teardown(test_pool_grows_and_shrinks, stop_mocks),
        cmocka_unit_test_teardown(test_goaway, stop_mocks),
        cmocka_unit_test_teardown(test_token_endpoint_down, stop_mocks),
        cmocka_unit_test_teardown(test_free_with_sends_in_flight, stop_mocks),
    };
    const struct tu_part parts[] = {
        TU_PART("delivery", delivery, NULL, NULL),
        TU_PART("faults", faults, NULL, NULL),
    };

    signal(SIGPIPE, SIG_IGN);
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
