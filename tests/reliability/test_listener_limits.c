/*
 * The listeners' resources (docs/RELIABILITY.md, issue 20 points 1 and
 * 2), against the real `pushgw serve`: a connection cap that closes the
 * connection idle the longest, /readyz saying when the webhook cannot
 * accept, descriptor exhaustion that neither spins nor floods the log,
 * and the admin listener cutting a client that trickles its request.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "testutil.h"

#define PATH "/v1/apps/demo/receivers-offline"
#define EVENT                                                                  \
    "{\"fromPeer\":\"Tom\",\"convId\":\"c1\",\"offlinePeers\":[\"Jerry\"],"    \
    "\"timestamp\":1700000000000,\"content\":\"hi\"}"
#define CAP 16

static struct tu_svc S;

static int setup(void **state)
{
    (void)state;
    setenv("PUSHGW_SERVER_MAX_CONNECTIONS", "16", 1);
    tu_svc_start(&S, NULL);
    unsetenv("PUSHGW_SERVER_MAX_CONNECTIONS");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_svc_stop(&S);
    return 0;
}

/* Whether the server closed |fd| within |timeout_ms|. */
static bool closed_within(int fd, int timeout_ms)
{
    long long end = tu_mono_ms() + timeout_ms;
    char buf[512];

    while (tu_mono_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)(end - tu_mono_ms())) != 1)
            return false;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return true;
    }
    return false;
}

static int readyz(char **ret_body)
{
    return tu_svc_admin_get(&S, "/readyz", ret_body);
}

static void test_connection_cap_closes_the_oldest_idle(void **state)
{
    int fds[CAP];
    char *body = NULL;
    (void)state;

    /* CAP idle connections, the first one the oldest. */
    for (int i = 0; i < CAP; i++)
        fds[i] = tu_tcp_connect(S.gw.port);
    /* One more, with a request: served, and the oldest idle closed. */
    int st =
        tu_http_once(S.gw.port, PATH, "demo-hook-key-0001", NULL, EVENT, &body);
    assert_int_equal(st, 202);
    free(body);
    assert_true(closed_within(fds[0], 5000));
    /* the newest idle ones stay */
    assert_false(closed_within(fds[CAP - 1], 200));
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
}

static void test_saturated_webhook_is_not_ready(void **state)
{
    static const char partial[] = "POST " PATH " HTTP/1.1\r\nHost: x\r\n";
    int fds[CAP];
    char *body = NULL;
    bool saturated = false;
    (void)state;

    /* CAP connections in the middle of a request: none idle. */
    for (int i = 0; i < CAP; i++) {
        fds[i] = tu_tcp_connect(S.gw.port);
        assert_true(send(fds[i], partial, sizeof(partial) - 1, 0) > 0);
    }
    TU_POLL_UNTIL(saturated, 5000)
    {
        free(body);
        body = NULL;
        saturated = readyz(&body) == 503 && strstr(body, "saturated") != NULL;
    }
    if (!saturated)
        fail_msg("readyz: %s", body ? body : "");
    free(body);
    body = NULL;
    for (int i = 0; i < CAP; i++)
        close(fds[i]);
    /* Ready again once they are gone. */
    int st = 0;
    TU_POLL_UNTIL(st == 200, 5000)
    {
        free(body);
        body = NULL;
        st = readyz(&body);
    }
    assert_int_equal(st, 200);
    free(body);
    st =
        tu_http_once(S.gw.port, PATH, "demo-hook-key-0001", NULL, EVENT, &body);
    assert_int_equal(st, 202);
    free(body);
}

/* Lines of the gateway's log holding |text|. */
static int log_lines(const char *text)
{
    char *log = tu_read_file(S.gw.log);
    int n = 0;

    assert_non_null(log);
    for (const char *p = log; (p = strstr(p, text)) != NULL; p++)
        n++;
    free(log);
    return n;
}

static void test_descriptor_exhaustion(void **state)
{
    struct rlimit old, low;
    enum { IDLE = 300 };
    static int fds[IDLE];
    char *body = NULL;
    int served = 0;
    (void)state;

    /* The gateway restarted with 128 descriptors. */
    tu_svc_kill_gateway(&S, SIGTERM);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 128;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    setenv("PUSHGW_SERVER_MAX_CONNECTIONS", "100000", 1);
    tu_svc_start_gateway(&S);
    unsetenv("PUSHGW_SERVER_MAX_CONNECTIONS");
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

    /* More idle connections than it has descriptors. */
    for (int i = 0; i < IDLE; i++)
        fds[i] = tu_tcp_connect(S.gw.port);
    TU_POLL_UNTIL(log_lines("could not accept on") >= 1, 10000);
    /* New requests are still served: each accept that fails closes the
     * connection idle the longest. */
    for (int i = 0; i < 3; i++) {
        int st = tu_http_once(S.gw.port, PATH, "demo-hook-key-0001", NULL,
                              EVENT, &body);
        free(body);
        body = NULL;
        served += st == 202;
    }
    assert_int_equal(served, 3);
    /* A few JSON lines about it, no libevent flood. */
    int warned = log_lines("could not accept on");
    printf("# 'could not accept' lines: %d\n", warned);
    assert_true(warned >= 1 && warned <= 5);
    assert_int_equal(log_lines("Error from accept"), 0);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
}

static void test_admin_trickling_client_is_cut(void **state)
{
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: ";
    int fd = tu_tcp_connect(S.admin_port);
    long long t0 = tu_mono_ms();
    bool closed = false;
    (void)state;

    /* The request line, then a byte a second: every read restarts the
     * idle timeout, only the request deadline (15 s) stops it. */
    assert_true(send(fd, req, sizeof(req) - 1, 0) > 0);
    while (!closed && tu_mono_ms() - t0 < 25000) {
        if (send(fd, "a", 1, MSG_NOSIGNAL) != 1)
            break;
        closed = closed_within(fd, 1000);
    }
    long long took = tu_mono_ms() - t0;
    printf("# admin trickler cut after %lld ms\n", took);
    assert_true(closed || took < 25000);
    assert_true(took < 20000);
    close(fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest limits[] = {
        cmocka_unit_test_setup_teardown(
            test_connection_cap_closes_the_oldest_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_saturated_webhook_is_not_ready,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_exhaustion, setup,
                                        teardown),
    };
    const struct CMUnitTest trickle[] = {
        cmocka_unit_test_setup_teardown(test_admin_trickling_client_is_cut,
                                        setup, teardown),
    };
    const struct tu_part parts[] = {
        TU_PART("limits", limits, NULL, NULL),
        TU_PART("trickle", trickle, NULL, NULL),
    };
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
