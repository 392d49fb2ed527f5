/*
 * curlmulti against a real HTTP server (libevent's evhttp) on loopback,
 * both on the same event loop: answers, headers, caps, timeouts, refused
 * connections, cancel, shutdown, and the exactly-once/never-synchronous
 * completion contract.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "curlmulti.h"

struct srv {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int hits;
    int delayed;     /* /delay requests not answered yet */
    int max_delayed; /* at most at once */
};

/* An answer to /delay, sent 150 ms after the request came. */
struct later {
    struct srv *s;
    struct evhttp_request *req;
    struct event *ev;
};

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct later *l = arg;
    struct evbuffer *out = evbuffer_new();

    (void)fd;
    (void)what;
    evbuffer_add_printf(out, "late");
    evhttp_send_reply(l->req, 200, "OK", out);
    evbuffer_free(out);
    l->s->delayed--;
    event_free(l->ev);
    free(l);
}

struct result {
    int calls;
    int err;
    long status;
    char body[4096];
    size_t body_len;
    char header[64];
    char error[256];
};

static void handle(struct evhttp_request *req, void *arg)
{
    struct srv *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    s->hits++;
    if (strcmp(uri, "/echo") == 0) {
        const char *m = "OTHER";
        switch (evhttp_request_get_command(req)) {
        case EVHTTP_REQ_GET:
            m = "GET";
            break;
        case EVHTTP_REQ_POST:
            m = "POST";
            break;
        case EVHTTP_REQ_PUT:
            m = "PUT";
            break;
        default:
            break;
        }
        const char *xh =
            evhttp_find_header(evhttp_request_get_input_headers(req), "X-In");
        evbuffer_add_printf(out, "%s %s ", m, xh ? xh : "-");
        evbuffer_add_buffer(out, in);
        evhttp_add_header(evhttp_request_get_output_headers(req), "X-Test",
                          "yes");
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/big") == 0) {
        for (int i = 0; i < 1000; i++)
            evbuffer_add(out, "0123456789", 10);
        evhttp_send_reply(req, 200, "OK", out);
    } else if (strcmp(uri, "/delay") == 0) {
        struct later *l = calloc(1, sizeof(*l));
        struct timeval tv = {0, 150000};
        l->s = s;
        l->req = req;
        l->ev = evtimer_new(s->base, on_later, l);
        evtimer_add(l->ev, &tv);
        if (++s->delayed > s->max_delayed)
            s->max_delayed = s->delayed;
    } else if (strcmp(uri, "/slow") == 0) {
        /* Never answered: evhttp_free() releases it at the end. */
    } else {
        evbuffer_add_printf(out, "teapot");
        evhttp_send_reply(req, 418, "Teapot", out);
    }
    evbuffer_free(out);
}

static void srv_start(struct srv *s, struct event_base *base)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(s, 0, sizeof(*s));
    s->base = base;
    s->http = evhttp_new(base);
    assert_non_null(s->http);
    bs = evhttp_bind_socket_with_handle(s->http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs),
                                 (struct sockaddr *)&sin, &len),
                     0);
    s->port = ntohs(sin.sin_port);
    evhttp_set_gencb(s->http, handle, s);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop until |*count| reaches |want| or |ms| pass. */
static void run_until(struct event_base *base, const int *count, int want,
                      int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_deadline, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    assert_non_null(t);
    evtimer_add(t, &tv);
    while (!expired && (!count || *count < want))
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

static void on_done(const struct pgw_curl_response *resp, void *arg)
{
    struct result *r = arg;
    const char *h = pgw_curlmulti_header(resp, "x-test");

    r->calls++;
    r->err = resp->err;
    r->status = resp->status;
    assert_non_null(resp->body);
    r->body_len = resp->body_len < sizeof(r->body) - 1 ? resp->body_len
                                                       : sizeof(r->body) - 1;
    memcpy(r->body, resp->body, r->body_len);
    r->body[r->body_len] = '\0';
    snprintf(r->header, sizeof(r->header), "%s", h ? h : "");
    snprintf(r->error, sizeof(r->error), "%s", resp->error);
}

static char *url(const struct srv *s, const char *path)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "http://127.0.0.1:%d%s", s->port, path);
    return buf;
}

static void test_get_post_put(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct result g = {0}, p = {0}, u = {0};
    const char *const hdrs[] = {"X-In: hello", NULL};
    struct pgw_curl_request req = {0};
    int total = 0;

    (void)state;
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);

    req.url = url(&s, "/echo");
    req.headers = hdrs;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &g, NULL), 0);
    req.body = "a=1&b=2";
    req.body_len = 7;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &p, NULL), 0);
    req.method = "PUT";
    req.body = "put-body";
    req.body_len = 8;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &u, NULL), 0);
    /* Never synchronous. */
    assert_int_equal(g.calls + p.calls + u.calls, 0);
    assert_int_equal(pgw_curlmulti_pending(cm), 3);

    while (total < 3) {
        run_until(base, NULL, 0, 50);
        total = g.calls + p.calls + u.calls;
        if (s.hits > 10)
            break;
    }
    run_until(base, NULL, 0, 100); /* a second call would show here */
    assert_int_equal(g.calls, 1);
    assert_int_equal(p.calls, 1);
    assert_int_equal(u.calls, 1);
    assert_int_equal(g.err, 0);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, "GET hello ");
    assert_string_equal(g.header, "yes");
    assert_string_equal(p.body, "POST hello a=1&b=2");
    assert_string_equal(u.body, "PUT hello put-body");
    assert_int_equal(pgw_curlmulti_pending(cm), 0);

    pgw_curlmulti_free(cm);
    evhttp_free(s.http);
    event_base_free(base);
}

static void test_status_and_cap(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct result t = {0}, big = {0}, capped = {0};
    struct pgw_curl_request req = {0};

    (void)state;
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);
    req.url = url(&s, "/teapot");
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &t, NULL), 0);
    req.url = url(&s, "/big");
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &big, NULL), 0);
    req.max_response_bytes = 1000;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &capped, NULL), 0);
    req.max_response_bytes = PGW_CURLMULTI_MAX_RESPONSE + 1;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &capped, NULL),
                     PGW_ERR_INVAL);
    for (int i = 0; i < 100 && t.calls + big.calls + capped.calls < 3; i++)
        run_until(base, NULL, 0, 50);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.status, 418);
    assert_string_equal(t.body, "teapot");
    assert_int_equal(big.err, 0);
    assert_int_equal(big.body_len, sizeof(big.body) - 1); /* copy capped */
    assert_int_equal(capped.calls, 1);
    assert_int_equal(capped.err, PGW_ERR_TOO_LARGE);
    assert_int_equal(capped.status, 0);
    pgw_curlmulti_free(cm);
    evhttp_free(s.http);
    event_base_free(base);
}

static void test_timeout_refused_cancel(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct result slow = {0}, refused = {0}, cancelled = {0};
    struct pgw_curl_request req = {0};
    struct pgw_curl_req *h = NULL;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    char rurl[64];
    int fd;

    (void)state;
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);

    /* A port nobody listens on: bind, read the port, close. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(rurl, sizeof(rurl), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));
    close(fd);

    req.url = url(&s, "/slow");
    req.timeout_ms = 300;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &slow, NULL), 0);
    req.timeout_ms = 5000;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &cancelled, &h),
                     0);
    req.url = rurl;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &refused, NULL),
                     0);
    run_until(base, NULL, 0, 50);
    pgw_curlmulti_cancel(cm, h);
    for (int i = 0; i < 60 && slow.calls + refused.calls < 2; i++)
        run_until(base, NULL, 0, 50);
    run_until(base, NULL, 0, 100);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(slow.err, PGW_ERR_TIMEOUT);
    assert_int_equal(refused.calls, 1);
    assert_int_equal(refused.err, PGW_ERR_IO);
    assert_int_equal(refused.status, 0);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(pgw_curlmulti_pending(cm), 0);
    pgw_curlmulti_free(cm);
    evhttp_free(s.http);
    event_base_free(base);
}

static void test_invalid_busy_and_free(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct result a = {0}, b = {0};
    struct pgw_curl_request req = {0};

    (void)state;
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 1, &cm), 0);
    req.url = "file:///etc/passwd";
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &a, NULL),
                     PGW_ERR_INVAL);
    req.url = url(&s, "/slow");
    req.method = "get me";
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &a, NULL),
                     PGW_ERR_INVAL);
    req.method = NULL;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, NULL, &a, NULL),
                     PGW_ERR_INVAL);
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &a, NULL), 0);
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &b, NULL),
                     PGW_ERR_BUSY);
    run_until(base, NULL, 0, 100);
    assert_int_equal(a.calls, 0);
    /* Freeing with a request pending completes it exactly once. */
    pgw_curlmulti_free(cm);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, PGW_ERR_CLOSED);
    assert_int_equal(b.calls, 0);
    evhttp_free(s.http);
    event_base_free(base);
}

/*
 * Requests limited to 2 per host over HTTP/1.1: never more than 2 at the
 * server at once, the rest wait in order and all succeed although 7
 * answers of 150 ms take longer than one request's 400 ms timeout (it
 * counts from the send); past the queue, PGW_ERR_BUSY; a waiting request
 * can be cancelled; freeing completes the waiting ones too.
 */
static void test_host_pool(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct result r[9];
    struct pgw_curl_req *handle = NULL;
    struct pgw_curl_request req = {0};
    int n = 0;

    (void)state;
    memset(r, 0, sizeof(r));
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);
    req.url = url(&s, "/delay");
    req.timeout_ms = 400;
    req.max_host_connections = 2;
    req.max_host_queue = 6;
    for (int i = 0; i < 7; i++)
        assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &r[i], NULL),
                         0);
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &r[7], &handle),
                     0);
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &r[8], NULL),
                     PGW_ERR_BUSY);
    pgw_curlmulti_cancel(cm, handle); /* it was waiting */
    assert_int_equal(pgw_curlmulti_pending(cm), 7);
    for (int i = 0; i < 60 && n < 7; i++) {
        run_until(base, NULL, 0, 50);
        n = 0;
        for (int j = 0; j < 7; j++)
            n += r[j].calls;
    }
    for (int j = 0; j < 7; j++) {
        assert_int_equal(r[j].calls, 1);
        assert_int_equal(r[j].err, 0);
        assert_int_equal(r[j].status, 200);
    }
    assert_int_equal(r[7].calls, 0);
    assert_int_equal(s.hits, 7);
    assert_int_equal(s.max_delayed, 2);

    /* Without the limit the same requests all run at once. */
    memset(r, 0, sizeof(r));
    req.max_host_connections = 0;
    req.timeout_ms = 2000;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &r[i], NULL),
                         0);
    for (int i = 0; i < 40 && r[3].calls == 0; i++)
        run_until(base, NULL, 0, 50);
    assert_int_equal(s.max_delayed, 4);

    /* Freed with some waiting: each completes once, closed. */
    memset(r, 0, sizeof(r));
    req.url = url(&s, "/slow");
    req.max_host_connections = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &r[i], NULL),
                         0);
    run_until(base, NULL, 0, 50);
    pgw_curlmulti_free(cm);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, PGW_ERR_CLOSED);
    }
    evhttp_free(s.http);
    event_base_free(base);
}

struct chain {
    struct pgw_curlmulti *cm;
    struct srv *s;
    int done;
};

/* A callback that submits the next request: allowed by the contract. */
static void on_chain(const struct pgw_curl_response *resp, void *arg)
{
    struct chain *c = arg;
    struct pgw_curl_request req = {0};

    assert_int_equal(resp->err, 0);
    assert_int_equal(resp->status, 200);
    c->done++;
    if (c->done < 5) {
        req.url = url(c->s, "/echo");
        assert_int_equal(pgw_curlmulti_submit(c->cm, &req, on_chain, c, NULL),
                         0);
    }
}

static void on_count(const struct pgw_curl_response *resp, void *arg)
{
    assert_int_equal(resp->err, 0);
    (*(int *)arg)++;
}

static void test_many_and_chained(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct srv s;
    struct pgw_curl_request req = {0};
    struct chain c;
    int n = 0;

    (void)state;
    srv_start(&s, base);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);
    req.url = url(&s, "/echo");
    for (int i = 0; i < 50; i++)
        assert_int_equal(pgw_curlmulti_submit(cm, &req, on_count, &n, NULL), 0);
    memset(&c, 0, sizeof(c));
    c.cm = cm;
    c.s = &s;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_chain, &c, NULL), 0);
    for (int i = 0; i < 200 && (n < 50 || c.done < 5); i++)
        run_until(base, NULL, 0, 50);
    assert_int_equal(n, 50);
    assert_int_equal(c.done, 5);
    assert_int_equal(s.hits, 55);
    pgw_curlmulti_free(cm);
    evhttp_free(s.http);
    event_base_free(base);
}

/* Through a CONNECT proxy (tests/mock/connect_proxy.c) that wants
 * credentials: a tunnel to the server with them, percent-decoded; the
 * password may come apart from the URL; a wrong one is the proxy's 407,
 * never an answer of the server, and never shown. */
static void test_through_proxy(void **state)
{
    const char *args[] = {"--auth", "carol:pa:ss", NULL};
    struct tu_mock_options mo = {.args = args};
    struct event_base *base = event_base_new();
    struct pgw_curlmulti *cm = NULL;
    struct tu_mock px;
    struct srv s;
    struct result a = {0}, b = {0}, bad = {0};
    const char *const hdrs[] = {"X-In: tunnelled", NULL};
    struct pgw_curl_request req = {0};
    char proxy[128], target[64];
    cJSON *recs;
    int total = 0;

    (void)state;
    srv_start(&s, base);
    tu_mock_start(&px, TU_MOCK_PROXY, &mo);
    assert_int_equal(pgw_curlmulti_new(base, 0, &cm), 0);
    req.url = url(&s, "/echo");
    req.headers = hdrs;
    snprintf(proxy, sizeof(proxy), "http://carol:pa%%3Ass@127.0.0.1:%d",
             px.port);
    req.proxy = proxy;
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &a, NULL), 0);
    snprintf(proxy, sizeof(proxy), "http://carol@127.0.0.1:%d", px.port);
    req.proxy_password = "pa:ss";
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &b, NULL), 0);
    req.proxy_password = "s3cret";
    assert_int_equal(pgw_curlmulti_submit(cm, &req, on_done, &bad, NULL), 0);
    while (total < 3 && s.hits < 10) {
        run_until(base, NULL, 0, 50);
        total = a.calls + b.calls + bad.calls;
    }
    assert_int_equal(a.err, 0);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "GET tunnelled ");
    assert_int_equal(b.err, 0);
    assert_string_equal(b.body, "GET tunnelled ");
    assert_int_not_equal(bad.err, 0);
    if (!strstr(bad.error, "407"))
        fail_msg("error '%s' lacks the proxy's 407", bad.error);
    assert_null(strstr(bad.error, "s3cret"));
    assert_int_equal(s.hits, 2);

    tu_mock_signal(&px, SIGTERM);
    recs = tu_records_read(px.record);
    /* curl may carry both good requests in one tunnel */
    assert_true(cJSON_GetArraySize(recs) >= 2);
    snprintf(target, sizeof(target), "127.0.0.1:%d", s.port);
    assert_string_equal(tu_json_str(cJSON_GetArrayItem(recs, 0), "target"),
                        target);
    assert_string_equal(tu_json_str(cJSON_GetArrayItem(recs, 0), "method"),
                        "CONNECT");
    int ok = 0, refused = 0;
    cJSON *r;
    cJSON_ArrayForEach(r, recs)
    {
        ok += strcmp(tu_json_str(r, "status"), "200") == 0 &&
              strcmp(tu_json_str(r, "auth"), "carol:pa:ss") == 0;
        refused += strcmp(tu_json_str(r, "status"), "407") == 0;
    }
    assert_true(ok >= 1);
    assert_int_equal(ok + refused, cJSON_GetArraySize(recs));
    assert_int_equal(refused, 1);
    cJSON_Delete(recs);
    tu_mock_stop(&px);
    pgw_curlmulti_free(cm);
    evhttp_free(s.http);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_post_put),
        cmocka_unit_test(test_status_and_cap),
        cmocka_unit_test(test_timeout_refused_cancel),
        cmocka_unit_test(test_invalid_busy_and_free),
        cmocka_unit_test(test_many_and_chained),
        cmocka_unit_test(test_host_pool),
        cmocka_unit_test(test_through_proxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
