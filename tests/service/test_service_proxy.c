/*
 * End to end through an HTTP CONNECT proxy ([apns] proxy, [fcm] proxy):
 * the real `pushgw serve` reaches the mock APNs, the mock FCM and its
 * OAuth token endpoint only through tests/mock/connect_proxy.c. A proxy
 * that refuses the credentials (407) is a connection failure whose pushes
 * are retried and delivered once it accepts them; a proxy that dies with
 * pushes in flight is a lost connection, and the gateway reconnects.
 */
#include "pushgw.h"
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOK_IOS                                                                \
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc01"
#define TOK_AND "fcm-token-proxied-1"
#define USER "pushgw"
#define PASS "pr0xy-pass"

#define WAIT_MS 30000

struct fixture {
    struct tu_mock proxy;
    struct tu_svc svc;
};

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A proxy started with |proxy_args|, then the service with both
 * providers behind it, the gateway's credentials being |password|. */
static void start(struct fixture *f, const char *const *proxy_args,
                  const char *password, const char *const *apns_args)
{
    struct tu_mock_options po = {.args = proxy_args};
    struct tu_svc_options so = {
        .apns_args = apns_args,
        /* a refused proxy must not use up an event's attempts */
        .delivery_ini = "max_attempts = 1000\n",
    };
    char *ini = NULL;

    memset(f, 0, sizeof(*f));
    tu_mock_start(&f->proxy, TU_MOCK_PROXY, &po);
    assert_true(asprintf(&ini,
                         "[apns]\nproxy = http://" USER ":%s@127.0.0.1:%d\n"
                         "[fcm]\nproxy = http://" USER ":%s@127.0.0.1:%d\n",
                         password, f->proxy.port, password, f->proxy.port) > 0);
    so.extra_ini = ini;
    tu_svc_start(&f->svc, &so);
    free(ini);
}

static void stop(struct fixture *f)
{
    tu_svc_stop(&f->svc);
    tu_mock_stop(&f->proxy);
}

static void post_event(struct fixture *f, const char *conv)
{
    char *ev = NULL, *resp = NULL;
    int st;

    assert_true(asprintf(&ev,
                         "{\"fromPeer\":\"Spike\",\"convId\":\"%s\","
                         "\"offlinePeers\":[\"Tom\"],\"timestamp\":%lld,"
                         "\"content\":\"hello\"}",
                         conv, now_ms()) > 0);
    st = tu_svc_post(&f->svc, "/v1/apps/demo/receivers-offline",
                     "demo-hook-key-0001", NULL, ev, &resp);
    if (st != 202)
        fail_msg("POST: %d %s", st, resp ? resp : "");
    free(resp);
    free(ev);
}

static void seed(struct fixture *f)
{
    tu_svc_add_device(&f->svc, "demo", "ios", TOK_IOS, "{Tom}", NULL);
    tu_svc_add_device(&f->svc, "demo", "android", TOK_AND, "{Tom}", NULL);
}

/* The proxy's CONNECTs to 127.0.0.1:|port| answered |status| (0: any)
 * with the gateway's credentials. */
static int connects_to(const struct tu_mock *proxy, int port, int status)
{
    cJSON *recs = tu_records_read(proxy->record);
    cJSON *r;
    char target[32], st[8];
    int n = 0;

    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    snprintf(st, sizeof(st), "%d", status);
    cJSON_ArrayForEach(r, recs)
    {
        if (strcmp(tu_json_str(r, "target"), target) == 0 &&
            strcmp(tu_json_str(r, "method"), "CONNECT") == 0 &&
            (status == 0 || strcmp(tu_json_str(r, "status"), st) == 0))
            n++;
    }
    cJSON_Delete(recs);
    return n;
}

/* The records of |file| for |token| with status 200. */
static int delivered(const char *file, const char *token)
{
    cJSON *recs = tu_records_read(file);
    cJSON *r;
    int n = 0;

    cJSON_ArrayForEach(r, recs)
    {
        n += strcmp(tu_json_str(r, "token"), token) == 0 &&
             strcmp(tu_json_str(r, "status"), "200") == 0;
    }
    cJSON_Delete(recs);
    return n;
}

static void wait_events_done(struct fixture *f, int n)
{
    char want[32];

    snprintf(want, sizeof(want), "%d/%d", n, 2 * n);
    if (!tu_svc_wait_query(&f->svc,
                           "SELECT count(*) FILTER (WHERE state = 'done') "
                           "|| '/' || coalesce(sum(pushes_delivered), 0) "
                           "FROM events",
                           want, WAIT_MS)) {
        char *got =
            tu_svc_query(&f->svc, "SELECT string_agg(id || ':' || state || ':' "
                                  "|| pushes_delivered, ' ') FROM events");
        char *log = tu_read_file(f->svc.gw.log);
        fail_msg("want %s (events done/pushes delivered), have: %s\n%s", want,
                 got ? got : "?", log ? log : "");
    }
}

struct log_wait {
    const char *path;
    const char *needle;
};

static bool log_has(void *arg)
{
    const struct log_wait *w = arg;
    char *log = tu_read_file(w->path);
    bool found = log && strstr(log, w->needle);

    free(log);
    return found;
}

/* The gateway's log never shows the proxy password. */
static void expect_no_password_in_log(struct fixture *f, const char *password)
{
    char *log = tu_read_file(f->svc.gw.log);

    assert_non_null(log);
    if (strstr(log, password))
        fail_msg("the proxy password is in the gateway's log:\n%s", log);
    free(log);
}

/* Both providers and the token endpoint are reached through the proxy
 * alone, with the credentials, and the log names the proxy without its
 * password. */
static void test_pushes_through_proxy(void **state)
{
    const char *args[] = {"--auth", USER ":" PASS, NULL};
    struct fixture f;
    char want[256];

    (void)state;
    start(&f, args, PASS, NULL);
    seed(&f);
    post_event(&f, "c1");
    wait_events_done(&f, 1);
    assert_int_equal(delivered(f.svc.apns.record, TOK_IOS), 1);
    assert_int_equal(delivered(f.svc.fcm.record, TOK_AND), 1);

    /* APNs: every connection the mock saw came through a tunnel */
    assert_true(connects_to(&f.proxy, f.svc.apns.port, 200) >= 1);
    assert_int_equal(connects_to(&f.proxy, f.svc.apns.port, 0),
                     connects_to(&f.proxy, f.svc.apns.port, 200));
    /* FCM: the HTTP/2 connection and the token request (curl) */
    assert_true(connects_to(&f.proxy, f.svc.fcm.port, 200) >= 2);
    assert_int_equal(connects_to(&f.proxy, f.svc.apns_dev.port, 0), 0);
    {
        cJSON *recs = tu_records_read(f.proxy.record);
        cJSON *r;

        cJSON_ArrayForEach(r, recs)
        {
            assert_string_equal(tu_json_str(r, "auth"), USER ":" PASS);
        }
        cJSON_Delete(recs);
    }
    snprintf(want, sizeof(want),
             "apns connections go through proxy 'http://" USER
             ":***@127.0.0.1:%d'",
             f.proxy.port);
    assert_true(log_has(&(struct log_wait){f.svc.gw.log, want}));
    expect_no_password_in_log(&f, PASS);
    stop(&f);
}

/* Wrong credentials: the proxy's 407 is a connection failure, logged with
 * the proxy's answer; the event waits in its retries, and once the proxy
 * takes the credentials every push is delivered. */
static void test_407_retried_until_accepted(void **state)
{
    const char *refuse[] = {"--auth", USER ":the-right-one", NULL};
    const char *accept[] = {"--auth", USER ":wr0ng-pass", NULL};
    struct fixture f;
    char want[256];
    char *v;

    (void)state;
    start(&f, refuse, "wr0ng-pass", NULL);
    seed(&f);
    post_event(&f, "c1");
    snprintf(want, sizeof(want),
             "could not connect to '127.0.0.1:%d' through proxy "
             "'127.0.0.1:%d': proxy answered 407 Proxy Authentication "
             "Required",
             f.svc.apns.port, f.proxy.port);
    if (!tu_wait_until(log_has, &(struct log_wait){f.svc.gw.log, want},
                       WAIT_MS)) {
        char *log = tu_read_file(f.svc.gw.log);
        fail_msg("no '%s' in the log:\n%s", want, log ? log : "");
    }
    assert_true(connects_to(&f.proxy, f.svc.apns.port, 407) >= 1);
    assert_int_equal(connects_to(&f.proxy, f.svc.apns.port, 200), 0);
    /* nothing reached the providers, nothing was given up */
    assert_int_equal(tu_records_count(f.svc.apns.record), 0);
    assert_int_equal(delivered(f.svc.fcm.record, TOK_AND), 0);
    v = tu_svc_query(&f.svc, "SELECT count(*) FROM push_failures");
    assert_string_equal(v, "0");
    free(v);
    v = tu_svc_query(&f.svc, "SELECT state FROM events");
    assert_string_not_equal(v, "done");
    free(v);

    /* The proxy now takes the gateway's credentials: same port. */
    tu_mock_restart(&f.proxy, f.proxy.port, accept);
    wait_events_done(&f, 1);
    assert_int_equal(delivered(f.svc.apns.record, TOK_IOS), 1);
    assert_int_equal(delivered(f.svc.fcm.record, TOK_AND), 1);
    assert_true(connects_to(&f.proxy, f.svc.apns.port, 200) >= 1);
    expect_no_password_in_log(&f, "wr0ng-pass");
    stop(&f);
}

/* The mock's counter |name| from its /_mock/stats (-1 when unreadable). */
static long mock_stat(const struct tu_mock *m, const char *name)
{
    struct tu_h2_conn *c = tu_h2_connect(m->port, tu_ca_file, NULL);
    long v = -1;
    int i;

    if (!c)
        return -1;
    i = tu_h2_request(c, "GET", "/_mock/stats", NULL, NULL, 0);
    if (i >= 0 && tu_h2_run(c, 5000) == 0 && c->resp[i].status == 200) {
        cJSON *j = cJSON_Parse(c->resp[i].body);
        cJSON *n = cJSON_GetObjectItem(j, name);

        if (cJSON_IsNumber(n))
            v = (long)n->valuedouble;
        cJSON_Delete(j);
    }
    tu_h2_close(c);
    return v;
}

struct stat_wait {
    const struct tu_mock *m;
    const char *name;
    long at_least;
};

static bool stat_reached(void *arg)
{
    const struct stat_wait *w = arg;

    return mock_stat(w->m, w->name) >= w->at_least;
}

/* The proxy dies while a push waits for APNs' answer inside the tunnel:
 * the connection is lost, the push is retried, and once the proxy is
 * back the gateway opens new tunnels and delivers it, and later pushes. */
static void test_proxy_dies_mid_stream(void **state)
{
    const char *apns_args[] = {"--delay-ms", "1500", NULL};
    struct fixture f;
    struct stat_wait w;
    int before;

    (void)state;
    start(&f, NULL, PASS, apns_args);
    tu_svc_add_device(&f.svc, "demo", "ios", TOK_IOS, "{Tom}", NULL);
    post_event(&f, "c1");
    /* The push is on a stream (the stats request is the other one). */
    w = (struct stat_wait){&f.svc.apns, "streams_open", 2};
    assert_true(tu_wait_until(stat_reached, &w, WAIT_MS));
    before = connects_to(&f.proxy, f.svc.apns.port, 200);
    assert_true(before >= 1);
    tu_mock_kill(&f.proxy);
    tu_mock_restart(&f.proxy, f.proxy.port, NULL);
    if (!tu_svc_wait_query(&f.svc,
                           "SELECT state || '/' || pushes_delivered FROM "
                           "events",
                           "done/1", WAIT_MS)) {
        char *log = tu_read_file(f.svc.gw.log);
        fail_msg("the push was not delivered after the proxy came back:\n%s",
                 log ? log : "");
    }
    /* a new tunnel carried it (the first may also have been answered,
     * into the dead one: APNs' answer was lost with the connection) */
    assert_true(connects_to(&f.proxy, f.svc.apns.port, 200) > before);
    assert_true(delivered(f.svc.apns.record, TOK_IOS) >= 1);

    post_event(&f, "c2");
    assert_true(tu_svc_wait_query(
        &f.svc, "SELECT count(*) FROM events WHERE state = 'done'", "2",
        WAIT_MS));
    stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pushes_through_proxy),
        cmocka_unit_test(test_407_retried_until_accepted),
        cmocka_unit_test(test_proxy_dies_mid_stream),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
