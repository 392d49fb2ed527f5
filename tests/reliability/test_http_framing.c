/*
 * How the gateway's listeners frame HTTP/1.1 requests (docs/RELIABILITY.md,
 * issue 20 point 6, issue 19 point 8), against the real `pushgw serve`:
 * a request that two parsers could read differently (two Content-Length
 * headers, Content-Length with Transfer-Encoding) is refused with 400 and
 * the connection closed, so nothing can be smuggled behind it; every
 * refusal, whatever the size of the body or the headers, is a JSON error
 * with "error" and "field", and is counted.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "testutil.h"

#define PATH "/v1/apps/demo/receivers-offline"
#define HEAD                                                                   \
    "POST " PATH                                                               \
    " HTTP/1.1\r\nHost: x\r\nX-LC-Hook-Key: demo-hook-key-0001\r\n"            \
    "Content-Type: application/json\r\n"
#define EVENT                                                                  \
    "{\"fromPeer\":\"Tom\",\"convId\":\"c1\",\"offlinePeers\":[\"Jerry\"],"    \
    "\"timestamp\":1700000000000,\"content\":\"hi\"}"
#define MAX_BODY 65536 /* the harness's max_body_bytes */

static struct tu_svc S;

static int setup(void **state)
{
    (void)state;
    tu_svc_start(&S, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_svc_stop(&S);
    return 0;
}

/* What a raw connection got back: everything until the server closed. */
struct answer {
    char text[8192];
    int status; /* of the first answer; 0: none */
    bool closed;
};

/* Sends |len| bytes of |req| (as much as the server takes) on a new
 * connection and reads until it closes or |timeout_ms| passed. */
static void exchange(const char *req, size_t len, int timeout_ms,
                     struct answer *a)
{
    int fd = tu_tcp_connect(S.gw.port);
    size_t off = 0, got = 0;
    long long end = tu_mono_ms() + timeout_ms;

    memset(a, 0, sizeof(*a));
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* closed early: read its answer */
        off += (size_t)w;
    }
    while (tu_mono_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - tu_mono_ms())) != 1)
            break;
        ssize_t r = recv(fd, a->text + got, sizeof(a->text) - 1 - got, 0);
        if (r <= 0) {
            a->closed = true;
            break;
        }
        got += (size_t)r;
        if (got == sizeof(a->text) - 1)
            break;
    }
    a->text[got] = '\0';
    if (strncmp(a->text, "HTTP/1.1 ", 9) == 0)
        a->status = atoi(a->text + 9);
    close(fd);
}

/* The first answer is |status|, a JSON error naming |field|, and the
 * server closed the connection. */
static void expect_refused(const struct answer *a, int status,
                           const char *field, const char *what)
{
    char want[128];

    if (a->status != status)
        fail_msg("%s: status %d, want %d: %s", what, a->status, status,
                 a->text);
    if (strstr(a->text, "Content-Type: application/json") == NULL ||
        strstr(a->text, "\r\n\r\n{\"error\":\"") == NULL)
        fail_msg("%s: not a JSON error: %s", what, a->text);
    snprintf(want, sizeof(want), "\"field\":\"%s\"}", field);
    if (strstr(a->text, want) == NULL)
        fail_msg("%s: want %s in %s", what, want, a->text);
    if (!a->closed)
        fail_msg("%s: the connection stayed open: %s", what, a->text);
}

static long long count_of(const char *series)
{
    char *m = NULL;
    const char *p;
    long long n = 0;

    assert_int_equal(tu_svc_admin_get(&S, "/metrics", &m), 200);
    p = strstr(m, series);
    if (p != NULL)
        n = atoll(p + strlen(series));
    free(m);
    return n;
}

static void expect_nothing_stored(void)
{
    char *v = tu_svc_query(&S, "SELECT count(*) FROM events");
    assert_string_equal(v, "0");
    free(v);
}

static void test_repeated_content_length_is_400(void **state)
{
    static const char *const reqs[] = {
        /* different values: which one a proxy used is anyone's guess */
        HEAD "Content-Length: 5\r\nContent-Length: 11\r\n\r\nhello world",
        /* the same value twice */
        HEAD "Content-Length: 11\r\ncontent-length: 11\r\n\r\nhello world",
    };
    struct answer a;
    (void)state;

    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        exchange(reqs[i], strlen(reqs[i]), 5000, &a);
        expect_refused(&a, 400, "Content-Length", reqs[i]);
        assert_non_null(strstr(a.text, "repeated Content-Length"));
    }
    expect_nothing_stored();
}

static void test_content_length_with_transfer_encoding_is_400(void **state)
{
    /* The classic smuggling pair, both orders: the body framed by one
     * header hides a second request from a reader of the other. */
    static const char *const reqs[] = {
        HEAD "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
             "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        HEAD "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
             "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
             "\r\n0\r\n\r\n",
    };
    struct answer a;
    (void)state;

    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        exchange(reqs[i], strlen(reqs[i]), 5000, &a);
        expect_refused(&a, 400, i < 2 ? "Content-Length" : "Transfer-Encoding",
                       reqs[i]);
        /* one answer, nothing for the request behind it */
        assert_null(strstr(a.text + 9, "HTTP/1.1 "));
    }
    expect_nothing_stored();
}

static void test_request_before_a_refused_one_is_served(void **state)
{
    char req[2048];
    struct answer a;
    (void)state;

    /* Pipelined: a good event, then a request with two lengths. */
    snprintf(req, sizeof(req),
             HEAD "Content-Length: %zu\r\n\r\n%s" HEAD
                  "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
             strlen(EVENT), EVENT);
    exchange(req, strlen(req), 5000, &a);
    if (a.status != 202)
        fail_msg("the first request: %s", a.text);
    const char *second = strstr(a.text + 9, "HTTP/1.1 ");
    assert_non_null(second);
    assert_int_equal(atoi(second + 9), 400);
    assert_true(a.closed);
    assert_true(
        tu_svc_wait_query(&S, "SELECT count(*) FROM events", "1", 5000));
}

static void test_body_over_limit_is_json_at_any_size(void **state)
{
    char req[1024];
    struct answer a;
    long long before =
        count_of("pushgw_events_total{app=\"demo\",result=\"too_large\"} ");
    (void)state;

    /* Declared far over the limit (libevent answered its HTML page from
     * max_body_bytes + 64 KiB on): refused before the body is read. */
    snprintf(req, sizeof(req), HEAD "Content-Length: %d\r\n\r\n{", 1 << 30);
    exchange(req, strlen(req), 5000, &a);
    expect_refused(&a, 413, "", "declared 1 GiB");

    /* Chunked, adding up to far over the limit. */
    {
        size_t chunk = 32768, n = 8, len = 0;
        size_t cap = strlen(HEAD) + 64 + n * (chunk + 16);
        char *big = malloc(cap);
        assert_non_null(big);
        len += (size_t)snprintf(big, cap,
                                HEAD "Transfer-Encoding: chunked\r\n\r\n");
        for (size_t i = 0; i < n; i++) {
            len += (size_t)snprintf(big + len, cap - len, "%zx\r\n", chunk);
            memset(big + len, ' ', chunk);
            len += chunk;
            memcpy(big + len, "\r\n", 2);
            len += 2;
        }
        len += (size_t)snprintf(big + len, cap - len, "0\r\n\r\n");
        exchange(big, len, 5000, &a);
        expect_refused(&a, 413, "", "chunked 256 KiB");
        free(big);
    }
    assert_int_equal(
        count_of("pushgw_events_total{app=\"demo\",result=\"too_large\"} "),
        before + 2);
    expect_nothing_stored();
}

static void test_headers_over_limit_are_json(void **state)
{
    size_t hl = 64 * 1024;
    char *req = malloc(hl + 512);
    struct answer a;
    (void)state;

    assert_non_null(req);
    int n = snprintf(req, 512, HEAD "X-Big: ");
    memset(req + n, 'a', hl);
    snprintf(req + n + hl, 64, "\r\nContent-Length: 2\r\n\r\n{}");
    exchange(req, strlen(req), 5000, &a);
    expect_refused(&a, 431, "", "a 64 KiB header");
    free(req);
    expect_nothing_stored();
}

static void test_admin_errors_are_json(void **state)
{
    char *body = NULL;
    (void)state;

    assert_int_equal(tu_svc_admin_get(&S, "/nope", &body), 404);
    assert_non_null(strstr(body, "{\"error\":\"not found\",\"field\":\"\"}"));
    free(body);
}

int main(void)
{
    /* One service for all: each test leaves it as it found it, and the
     * one that stores an event runs last. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeated_content_length_is_400),
        cmocka_unit_test(test_content_length_with_transfer_encoding_is_400),
        cmocka_unit_test(test_body_over_limit_is_json_at_any_size),
        cmocka_unit_test(test_headers_over_limit_are_json),
        cmocka_unit_test(test_admin_errors_are_json),
        cmocka_unit_test(test_request_before_a_refused_one_is_served),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
