/*
 * Tests of sdnotify (systemd's notification protocol without libsystemd)
 * and of what `pushgw serve` tells the service manager: READY=1 once
 * serving, WATCHDOG=1 from the loop, RELOADING=1/READY=1 around a SIGHUP,
 * STOPPING=1 on SIGTERM.
 */
#include "testutil.h"

#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pushgw.h"
#include "sdnotify.h"

/* A datagram socket bound to |path| (or the abstract |path|+1 when it
 * starts with '@'). */
static int listen_at(const char *path)
{
    struct sockaddr_un sa;
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0';
        len--;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    return fd;
}

/* The next message on |fd| within |timeout_ms| into |buf|; false if none. */
static bool next_msg(int fd, int timeout_ms, char *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    n = recv(fd, buf, cap - 1, 0);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Reads messages until one starts with |prefix| (skipping WATCHDOG=1 and
 * the like), within |timeout_ms| in all. */
static bool wait_msg(int fd, const char *prefix, int timeout_ms, char *buf,
                     size_t cap)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (next_msg(fd, 100, buf, cap) &&
            strncmp(buf, prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

static void test_no_socket(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(pgw_sdnotify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(pgw_sdnotify_send("READY=1"), PGW_ERR_INVAL);
    unsetenv("NOTIFY_SOCKET");
}

static void test_path_and_abstract(void **state)
{
    char *dir = tu_mkdtemp();
    char path[512], abstract[64], buf[256];
    int fd, afd;
    (void)state;

    snprintf(path, sizeof(path), "%s/notify", dir);
    fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(pgw_sdnotify_send("READY=1\nSTATUS=serving"), 1);
    assert_true(next_msg(fd, 1000, buf, sizeof(buf)));
    assert_string_equal(buf, "READY=1\nSTATUS=serving");

    snprintf(abstract, sizeof(abstract), "@pushgw-test-%d", (int)getpid());
    afd = listen_at(abstract);
    setenv("NOTIFY_SOCKET", abstract, 1);
    assert_int_equal(pgw_sdnotify_send("WATCHDOG=1"), 1);
    assert_true(next_msg(afd, 1000, buf, sizeof(buf)));
    assert_string_equal(buf, "WATCHDOG=1");

    /* Nobody listening any more: an I/O error, not a crash. */
    close(fd);
    setenv("NOTIFY_SOCKET", path, 1);
    unlink(path);
    assert_int_equal(pgw_sdnotify_send("READY=1"), PGW_ERR_IO);
    unsetenv("NOTIFY_SOCKET");
    close(afd);
    tu_rm_rf(dir);
    free(dir);
}

static void test_watchdog_usec(void **state)
{
    char pid[32];
    (void)state;

    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(pgw_sdnotify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(pgw_sdnotify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(pgw_sdnotify_watchdog_usec(), 30000000);
    /* Meant for another process. */
    setenv("WATCHDOG_PID", "1", 1);
    assert_int_equal(pgw_sdnotify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "30s", 1);
    assert_int_equal(pgw_sdnotify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}

/* serve, with a database that is not there: it still serves (and says
 * so), feeds the watchdog, and reports reloads and the stop. */
static void test_serve_notifies(void **state)
{
    char *dir = tu_mkdtemp();
    char sock[512], sub[512], ini[512], buf[512], log[512];
    char *cfg = NULL, *ini_path;
    const char *argv[] = {tu_pushgw_bin(), "serve", "-c", NULL, NULL};
    int fd, pid, watchdogs = 0;
    (void)state;

    assert_non_null(argv[0]);
    snprintf(sub, sizeof(sub), "%s/templates", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_true(asprintf(&cfg,
                         "[server]\nlisten = 127.0.0.1:%d\n"
                         "admin_listen = 127.0.0.1:%d\n"
                         "[database]\nurl = host=127.0.0.1 port=1 "
                         "dbname=none connect_timeout=1\n"
                         "[app:demo]\nhook_key = k-0123456789abcdef\n",
                         tu_free_port(), tu_free_port()) > 0);
    ini_path = tu_write_file(dir, "pushgw.ini", cfg, 0600);
    snprintf(ini, sizeof(ini), "%s", ini_path);
    argv[3] = ini;
    snprintf(sock, sizeof(sock), "%s/notify", dir);
    snprintf(log, sizeof(log), "%s/serve.log", dir);
    fd = listen_at(sock);

    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    pid = tu_spawn(argv, log);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    assert_true(pid > 0);

    assert_true(wait_msg(fd, "READY=1", 10000, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "STATUS=serving 1 app(s)"));
    /* Every 100 ms: a few within a second. */
    for (int i = 0; i < 10 && watchdogs < 3; i++) {
        if (next_msg(fd, 1000, buf, sizeof(buf)) &&
            strcmp(buf, "WATCHDOG=1") == 0)
            watchdogs++;
    }
    assert_int_equal(watchdogs, 3);

    kill(pid, SIGHUP);
    assert_true(wait_msg(fd, "RELOADING=1", 5000, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "MONOTONIC_USEC="));
    assert_true(wait_msg(fd, "READY=1", 5000, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "reloaded"));

    /* A broken config: READY=1 again, saying the reload failed. */
    free(tu_write_file(dir, "pushgw.ini", "[nope]\nx = 1\n", 0600));
    kill(pid, SIGHUP);
    assert_true(wait_msg(fd, "READY=1", 5000, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "reload failed"));

    kill(pid, SIGTERM);
    assert_true(wait_msg(fd, "STOPPING=1", 5000, buf, sizeof(buf)));
    assert_int_equal(tu_stop(pid, 0), 0);

    close(fd);
    tu_rm_rf(dir);
    free(ini_path);
    free(cfg);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket),
        cmocka_unit_test(test_path_and_abstract),
        cmocka_unit_test(test_watchdog_usec),
        cmocka_unit_test(test_serve_notifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
