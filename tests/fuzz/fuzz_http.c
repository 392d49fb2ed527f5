/*
 * libFuzzer target: the HTTP request path of `pushgw serve` — libevent's
 * evhttp parser plus gateway/http_api.c (routing, app, key, content type,
 * size limits, event and batch validation, error answers).
 *
 * How: the real pgw_http_api listens on a free loopback port in this
 * process, on
 * its own event_base, with a store whose database is unreachable (so a
 * valid event ends in the 503 path instead of an insert). Each input is
 * written as raw bytes to a new loopback TCP connection, the write side
 * is shut down, and the loop runs until the server closes the connection
 * (or 2 s pass, which is reported as a hang). The answers are read and
 * checked to be HTTP. This is slower than calling a parser (a connection
 * per input) but it exercises exactly the code a network peer reaches,
 * with nothing changed in gateway/ for the fuzzer.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "http_api.h"
#include "log.h"
#include "pushgw.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static struct pgw_store *store;
static struct pgw_http_api *api;
static int port;

/* A free loopback port (the config does not take port 0). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int p;

    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        abort();
    p = ntohs(sa.sin_port);
    close(fd);
    return p;
}

static void init(void)
{
    char ini[512];
    int ini_len =
        snprintf(ini, sizeof(ini),
                 "[server]\nlisten = 127.0.0.1:%d\nadmin_listen =\n"
                 "max_body_bytes = 4096\nmax_peers_per_event = 16\n"
                 "[database]\nurl = host=127.0.0.1 port=1 connect_timeout=1\n"
                 "[app:demo]\nhook_key = demo-hook-key-0001\n"
                 "[app:other]\nhook_key = other-hook-key-001\n",
                 free_port());
    char path[] = "/tmp/fuzz_http.XXXXXX";
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    struct pgw_store_options so;
    struct pgw_http_api_options ho;
    static char *const no_env[] = {NULL};
    int fd = mkstemp(path);

    if (fd < 0 || write(fd, ini, (size_t)ini_len) != (ssize_t)ini_len)
        abort();
    close(fd);
    pgw_diag_init(&diag);
    if (pgw_config_load(path, no_env, &diag, &cfg) != 0) {
        fprintf(stderr, "fuzz_http: config: %s\n", diag.n ? diag.msgs[0] : "?");
        abort();
    }
    pgw_diag_release(&diag);
    unlink(path);
    pgw_log_set_level(PGW_LOG_ERROR);
    base = event_base_new();
    memset(&so, 0, sizeof(so));
    so.conninfo = cfg->database.url;
    so.pool_size = 1;
    so.owner = "fuzz";
    if (!base || pgw_store_new(base, &so, &store) != 0)
        abort();
    memset(&ho, 0, sizeof(ho));
    ho.base = base;
    ho.cfg = cfg;
    ho.store = store;
    ho.timeout_ms = 1000;
    if (pgw_http_api_new(&ho, &api) != 0)
        abort();
    pgw_config_free(cfg); /* the api holds its reference */
    port = pgw_http_api_port(api, false);
    if (port <= 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[4096];
    size_t off = 0, got = 0;
    int fd, closed = 0, shut = 0;

    if (!base)
        init();
    if (size > 65536)
        return 0;
    sa.sin_port = htons((uint16_t)port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        abort();
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 &&
        errno != EINPROGRESS)
        abort();
    for (int i = 0; i < 4000 && !closed; i++) {
        struct pollfd p = {fd, POLLIN, 0};

        while (!shut && off < size) { /* what fits; the loop reads it */
            ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        if (!shut && off == size) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (poll(&p, 1, 0) == 1) {
            /* Keep the first bytes (the status line), count the rest. */
            size_t at = got < 16 ? got : 16;
            ssize_t r = recv(fd, buf + at, sizeof(buf) - at, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                closed = 1;
            else if (r > 0)
                got += (size_t)r;
        } else {
            usleep(500);
        }
    }
    if (!closed) {
        fprintf(stderr, "fuzz_http: the server kept the connection\n");
        abort();
    }
    /* An answer, if any, is HTTP (libevent echoes the request's version:
     * "HTTP/0.1" is possible). */
    if (got >= 8 && memcmp(buf, "HTTP/", 5) != 0)
        abort();
    close(fd);
    event_base_loop(base, EVLOOP_NONBLOCK);
    return 0;
}
