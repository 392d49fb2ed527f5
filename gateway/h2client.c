/*
 * h2client: HTTP/2 over TLS client pool on libevent. See h2client.h for the
 * contract.
 *
 * Structure: requests live on two lists: |all| in submit order (their
 * deadlines are in the same order, so the tick timer only looks at the
 * head) and either the pool's pending FIFO or their connection's stream
 * list. The work event assigns pending requests to connections and flushes
 * nghttp2 output once per loop iteration, so many frames go out in one
 * write. This file is the pool: its slots, requests, timers and public
 * calls; one connection's state machine is h2conn.c, so each can be read
 * without the other's callbacks in the way.
 */
#include "h2client_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <linux/tcp.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "pushgw.h"
#include "tls_identity.h"
#include "util/clock.h"
#include "util/list.h"

/* nghttp2 keeps pointers to a request's header strings (in its |buf|)
 * instead of copying them; see h2conn.orphans for the one case where the
 * request ends before nghttp2 is done with them. */
#define NV_NO_COPY                                                             \
    (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)
/* A connection whose requests keep timing out before they are even sent
 * is stuck: past this many such requests it is closed. */
#define MAX_ORPHANS 1024
#define MAX_REQ_HEADERS 64
#define MAX_REQ_HEADER_BYTES 65536
#define FREELIST_MAX 65536
#define KEEP_BUF_MAX 16384
/* A saturated pool grows to at most this many times its ready
 * connections per wave (open_connections). Each wave costs about four
 * round trips to the provider (its streams turning over, then TCP, TLS
 * and SETTINGS): from the minimum of 2 to 16, doubling takes three
 * waves, quadrupling two. */
#define GROW_FACTOR 4

/* ------------------------------------------------------------------ */
/* request lists */

static struct h2conn *conn_of(struct pgw_list *node)
{
    return node ? pgw_list_entry(node, struct h2conn, node) : NULL;
}

static void pend_unlink(struct pgw_h2_pool *pool, struct h2req *r)
{
    pgw_list_remove(&r->node);
    pool->n_pending--;
}

static void stream_link(struct h2conn *c, struct h2req *r)
{
    r->where = R_STREAM;
    r->conn = c;
    pgw_list_push_front(&c->streams, &r->node);
    c->n_streams++;
    c->pool->n_in_flight++;
}

static struct h2req *req_alloc(struct pgw_h2_pool *pool)
{
    struct h2req *r = req_of(pgw_list_pop_front(&pool->free_reqs));

    if (r) {
        pool->n_free--;
        /* The next one is likely cold by the time it is taken. */
        if (!pgw_list_empty(&pool->free_reqs))
            __builtin_prefetch(req_of(pool->free_reqs.next), 1);
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            return NULL;
        pgw_list_init(&r->all);
        pgw_list_init(&r->node);
    }
    r->conn = NULL;
    r->where = R_FREE;
    r->stream_id = 0;
    r->headers_sent = false;
    r->probe = false;
    r->retries = 0;
    r->status = 0;
    r->n_hdr = 0;
    r->hbuf_len = 0;
    r->rbody_len = 0;
    r->truncated = false;
    r->body_sent = 0;
    return r;
}

static void req_release(struct pgw_h2_pool *pool, struct h2req *r)
{
    r->where = R_FREE;
    r->cb = NULL;
    r->arg = NULL;
    if (pool->n_free >= FREELIST_MAX || pool->freeing) {
        free(r->buf);
        free(r->hbuf);
        free(r->rbody);
        free(r);
        return;
    }
    if (r->buf_cap > KEEP_BUF_MAX) {
        free(r->buf);
        r->buf = NULL;
        r->buf_cap = 0;
    }
    if (r->hbuf_cap > KEEP_BUF_MAX) {
        free(r->hbuf);
        r->hbuf = NULL;
        r->hbuf_cap = 0;
    }
    if (r->rbody_cap > KEEP_BUF_MAX) {
        free(r->rbody);
        r->rbody = NULL;
        r->rbody_cap = 0;
    }
    pgw_list_push_front(&pool->free_reqs, &r->node);
    pool->n_free++;
}

/* The time in µs the loop thread has wanted a CPU: run, or waited for one
 * while other processes held the cores (the scheduler's statistics), so a
 * busy machine does not pass for a thread waiting on answers. Its CPU time
 * alone when those statistics are not there. */
static int64_t thread_busy_us(void)
{
    /* Opened once per thread (a pool lives on one loop thread), read
     * again from its start: one system call per sample, not three. */
    static __thread int fd = -2;
    char buf[96];
    unsigned long long run_ns, wait_ns;
    struct timespec ts;

    if (fd == -2)
        fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

        if (n > 0) {
            buf[n] = '\0';
            if (sscanf(buf, "%llu %llu", &run_ns, &wait_ns) == 2)
                return (int64_t)((run_ns + wait_ns) / 1000);
        }
    }
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool pgw_h2_pool_should_grow(uint64_t answer_us, uint64_t busy_us)
{
    return answer_us > 0 && answer_us / 2 >= busy_us;
}

/* |r|, just sent, is timed until its answer when no other request is. */
static void probe_start(struct pgw_h2_pool *pool, struct h2req *r)
{
    r->probe = true;
    pool->probe_out = true;
    pool->probe_us = pgw_clock_mono_us();
    pool->probe_busy_us = thread_busy_us();
}

/* The timed request ended: an answer is the pool's new sample. */
static void probe_end(struct pgw_h2_pool *pool, bool answered)
{
    int64_t now = pgw_clock_mono_us(), busy = thread_busy_us();

    pool->probe_out = false;
    if (!answered || now <= pool->probe_us)
        return;
    pool->answer_us = (uint64_t)(now - pool->probe_us);
    pool->answer_busy_us =
        busy > pool->probe_busy_us ? (uint64_t)(busy - pool->probe_busy_us) : 0;
}

/*
 * Runs the callback of |r| (already unlinked from pending/stream/done
 * lists) with |kind| and returns |r| to the free list.
 */
static void req_finish(struct pgw_h2_pool *pool, struct h2req *r,
                       enum pgw_h2_result_kind kind, const char *error)
{
    struct pgw_h2_header hdrs[PGW_H2_MAX_RESPONSE_HEADERS];
    struct pgw_h2_result res;
    pgw_h2_cb cb = r->cb;
    void *arg = r->arg;
    size_t i;

    pgw_list_remove(&r->all);
    if (r->probe)
        probe_end(pool, kind == PGW_H2_RESPONSE);
    memset(&res, 0, sizeof(res));
    res.kind = kind;
    res.error = "";
    if (kind == PGW_H2_RESPONSE) {
        for (i = 0; i < r->n_hdr; i++) {
            hdrs[i].name = r->hbuf + r->hdr[i].off[0];
            hdrs[i].name_len = r->hdr[i].len[0];
            hdrs[i].value = r->hbuf + r->hdr[i].off[1];
            hdrs[i].value_len = r->hdr[i].len[1];
            hdrs[i].no_index = 0;
        }
        res.status = r->status;
        res.headers = hdrs;
        res.n_headers = r->n_hdr;
        res.body = r->rbody ? r->rbody : "";
        res.body_len = r->rbody_len;
        res.body_truncated = r->truncated;
        pool->st.responses++;
    } else {
        res.error = error ? error : "";
        if (kind == PGW_H2_TIMEOUT)
            pool->st.timeouts++;
    }
    /* Released before the callback would be nicer, but |res| points into
     * it; the callback cannot reach |r| any more (unlinked). */
    if (cb)
        cb(arg, &res);
    req_release(pool, r);
}

static unsigned stream_limit(const struct h2conn *c)
{
    uint32_t peer = nghttp2_session_get_remote_settings(
        c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    unsigned cap = c->pool->o.max_streams_per_conn;

    return peer < cap ? (unsigned)peer : cap;
}

/* ------------------------------------------------------------------ */
/* the work event and the tick */

/* Sets the flags of |r|'s index-once headers for connection |c|: indexed
 * on the first such request |c| carries, literals without indexing after.
 * A request moved to another connection (GOAWAY) is decided again. */
static void apply_index_once(struct h2conn *c, struct h2req *r)
{
    if (!r->index_once)
        return;
    for (size_t i = 0; i < r->nva_len - 4; i++)
        if (r->index_once & ((uint64_t)1 << i))
            r->nva[4 + i].flags =
                NV_NO_COPY | (c->once_sent ? NGHTTP2_NV_FLAG_NO_INDEX
                                           : NGHTTP2_NV_FLAG_NONE);
    c->once_sent = true;
}

static struct h2conn *pick_conn(struct pgw_h2_pool *pool)
{
    struct h2conn *best = NULL;
    struct pgw_list *pos;

    pgw_list_for_each(pos, &pool->conns)
    {
        struct h2conn *c = conn_of(pos);

        if (c->state != C_READY)
            continue;
        if (c->n_streams >= stream_limit(c))
            continue;
        if (!best || c->n_streams < best->n_streams)
            best = c;
    }
    return best;
}

static void assign_pending(struct pgw_h2_pool *pool)
{
    struct h2req *r;
    struct h2conn *c;

    while ((r = req_of(pgw_list_first(&pool->pend))) != NULL) {
        nghttp2_data_provider prd;
        int32_t id;

        c = pick_conn(pool);
        if (!c)
            break;
        pend_unlink(pool, r);
        prd.source.ptr = NULL;
        prd.read_callback = h2conn_body_read;
        r->body_sent = 0;
        r->headers_sent = false;
        r->status = 0;
        r->n_hdr = 0;
        r->hbuf_len = 0;
        r->rbody_len = 0;
        r->truncated = false;
        apply_index_once(c, r);
        id = nghttp2_submit_request(c->session, NULL, r->nva, r->nva_len,
                                    r->body_len > 0 ? &prd : NULL, r);
        if (id < 0) {
            /* The session takes no new streams (ids exhausted, GOAWAY):
             * drain it and try the request elsewhere. */
            pend_push(pool, r, true);
            c->state = C_DRAINING;
            h2conn_detach_slot(c);
            continue;
        }
        r->stream_id = id;
        stream_link(c, r);
        if (!pool->probe_out)
            probe_start(pool, r);
        c->want_flush = true;
    }
}

static void fail_all_pending(struct pgw_h2_pool *pool,
                             enum pgw_h2_result_kind kind, const char *why)
{
    struct h2req *r;

    while ((r = req_of(pgw_list_first(&pool->pend))) != NULL) {
        pend_unlink(pool, r);
        done_push(pool, r, kind, why);
    }
}

/*
 * Requests wait: opens the minimum's empty slots, and, while every stream
 * of the ready connections is busy (assign_pending() left requests) and no
 * connection is being set up, GROW_FACTOR - 1 times as many more as are
 * ready (the pool at most quadruples per wave of handshakes), up to
 * max_connections. Only while the streams turn over: since the last
 * growth, as many answers as the ready connections take at once. A provider
 * that answers late (tens of seconds) or not at all is slow, not far: more
 * connections would only hold more requests in memory waiting on it. And
 * only while answers are slow against sends (pgw_h2_pool_should_grow): a
 * near provider answering as fast as the thread sends gains nothing.
 */
static void open_connections(struct pgw_h2_pool *pool, int64_t now)
{
    unsigned i, ready = 0, setting_up = 0, grow;
    size_t streams = 0;

    for (i = 0; i < pool->o.connections; i++)
        if (!pool->slots[i].conn && pool->slots[i].next_attempt_ms <= now)
            h2conn_open(pool, i);
    for (i = 0; i < pool->n_slots; i++) {
        const struct h2conn *c = pool->slots[i].conn;

        if (c && c->state == C_READY) {
            ready++;
            streams += stream_limit(c);
        } else if (c) {
            setting_up++;
        }
    }
    if (ready == 0)
        return;
    pool->window_saturated = true;
    if (setting_up > 0 || pool->st.responses - pool->grown_at < streams)
        return;
    if (!pgw_h2_pool_should_grow(pool->answer_us, pool->answer_busy_us))
        return;
    grow = ready * (GROW_FACTOR - 1);
    for (i = pool->o.connections; i < pool->n_slots && grow > 0; i++) {
        if (pool->slots[i].conn || pool->slots[i].next_attempt_ms > now)
            continue;
        h2conn_open(pool, i);
        pool->st.conns_added++;
        pool->grown_at = pool->st.responses;
        pool->answer_us = 0; /* the next wave waits for a new sample */
        grow--;
    }
}

/* Fires once per loop iteration when kicked, and from the tick. */
static void work_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_h2_pool *pool = arg;
    struct pgw_list *pos, *next;
    struct h2conn *c;
    struct h2req *r;
    unsigned live = 0;
    int64_t now = pgw_clock_mono_ms();

    (void)fd;
    (void)what;
    assign_pending(pool);
    if (pool->n_in_flight > pool->window_peak)
        pool->window_peak = pool->n_in_flight;
    if (!pgw_list_empty(&pool->pend))
        open_connections(pool, now);
    pgw_list_for_each(pos, &pool->conns)
    {
        c = conn_of(pos);
        if (c->state == C_RESOLVING || c->state == C_CONNECTING ||
            c->state == C_READY)
            live++;
    }
    if (!pgw_list_empty(&pool->pend) && live == 0)
        fail_all_pending(pool, PGW_H2_CONNECT_FAILED,
                         pool->last_error[0]
                             ? pool->last_error
                             : "no connection could be established");
    pgw_list_for_each_safe(pos, next, &pool->conns)
    {
        c = conn_of(pos);
        if (c->want_flush)
            h2conn_flush(c);
    }
    /* Results decided inside callbacks are delivered here, outside. */
    while ((r = req_of(pgw_list_pop_front(&pool->done))) != NULL) {
        struct pgw_list *n = r->node.next;

        /* Each result touches memory last used many pushes ago: the next
         * one's callback argument, and the one after. */
        if (n != &pool->done) {
            __builtin_prefetch(req_of(n)->arg);
            if (n->next != &pool->done)
                __builtin_prefetch(req_of(n->next));
        }
        req_finish(pool, r, r->done_kind, r->error);
    }
    /* Callbacks may have submitted more: those kicked the event again. */
    while ((c = conn_of(pgw_list_pop_front(&pool->dead))) != NULL)
        h2conn_free(c);
}

static void timeout_request(struct pgw_h2_pool *pool, struct h2req *r)
{
    char buf[ERR_MAX];

    snprintf(buf, sizeof(buf), "no answer from '%s' within %u ms",
             pool->authority, pool->o.request_timeout_ms);
    if (r->where == R_PENDING) {
        pend_unlink(pool, r);
    } else if (r->where == R_STREAM) {
        struct h2conn *c = r->conn;

        stream_unlink(c, r);
        nghttp2_session_set_stream_user_data(c->session, r->stream_id, NULL);
        (void)nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE,
                                        r->stream_id, NGHTTP2_CANCEL);
        c->want_flush = true;
        if (!r->headers_sent && r->buf) {
            /* The session may still hold its HEADERS, pointing into buf.
             * Nothing reads r->nva (nghttp2 copied the array) any more. */
            memcpy(r->buf, &c->orphans, sizeof(c->orphans));
            c->orphans = r->buf;
            r->buf = NULL;
            r->buf_cap = 0;
            r->nva = NULL;
            pool->st.timeouts_unsent++;
            if (++c->n_orphans > MAX_ORPHANS)
                h2conn_lost(c, "requests time out before they are sent");
        }
    } else {
        return; /* already decided */
    }
    done_push(pool, r, PGW_H2_TIMEOUT, buf);
}

/*
 * At the end of each idle_close_ms window: retires ready connections above
 * the minimum, the least busy first, while the others' streams could have
 * carried the window's busiest moment with a quarter to spare, and no
 * request waited for a stream in it.
 */
static void retire_unneeded(struct pgw_h2_pool *pool, int64_t now)
{
    size_t capacity = 0, peak = pool->window_peak;
    bool saturated = pool->window_saturated;
    struct pgw_list *pos;

    if (now - pool->window_start_ms < (int64_t)pool->o.idle_close_ms)
        return;
    pool->window_start_ms = now;
    pool->window_peak = pool->n_in_flight;
    pool->window_saturated = false;
    if (saturated || pool->n_slots <= pool->o.connections)
        return;
    pgw_list_for_each(pos, &pool->conns)
    {
        const struct h2conn *c = conn_of(pos);

        if (c->state == C_READY)
            capacity += stream_limit(c);
    }
    for (;;) {
        struct h2conn *best = NULL;
        unsigned i, open = 0;

        for (i = 0; i < pool->n_slots; i++)
            if (pool->slots[i].conn)
                open++;
        if (open <= pool->o.connections)
            return;
        for (i = pool->o.connections; i < pool->n_slots; i++) {
            struct h2conn *c = pool->slots[i].conn;

            if (c && c->state == C_READY &&
                (!best || c->n_streams < best->n_streams))
                best = c;
        }
        if (!best || (capacity - stream_limit(best)) * 3 / 4 < peak)
            return;
        capacity -= stream_limit(best);
        pool->st.conns_retired++;
        h2conn_retire(best);
    }
}

/* The kernel's minimum RTT of |c|'s TCP connection in µs; 0 unknown. */
static uint32_t conn_min_rtt_us(const struct h2conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    evutil_socket_t fd = c->bev ? bufferevent_getfd(c->bev) : -1;

    memset(&ti, 0, sizeof(ti));
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt))
        return 0;
    return ti.tcpi_min_rtt == UINT32_MAX ? 0 : ti.tcpi_min_rtt;
}

/* Fires every tick: deadlines, connect timeouts, PINGs, the round trip. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_h2_pool *pool = arg;
    struct pgw_list *pos, *next;
    int64_t now = pgw_clock_mono_ms();
    bool any = false;
    uint32_t min_rtt = 0;

    (void)fd;
    (void)what;
    /* Deadlines grow in submit order: stop at the first in the future.
     * A timed-out request stays on |all| until its callback runs. */
    pgw_list_for_each_safe(pos, next, &pool->all)
    {
        struct h2req *r = pgw_list_entry(pos, struct h2req, all);

        if (r->deadline_ms > now)
            break;
        if (r->where == R_PENDING || r->where == R_STREAM) {
            timeout_request(pool, r);
            any = true;
        }
    }
    pgw_list_for_each_safe(pos, next, &pool->conns)
    {
        struct h2conn *c = conn_of(pos);

        switch (c->state) {
        case C_RESOLVING:
        case C_CONNECTING:
            if (now - c->started_ms >= pool->o.connect_timeout_ms) {
                char buf[64];

                snprintf(buf, sizeof(buf), "timed out after %u ms",
                         pool->o.connect_timeout_ms);
                h2conn_fail(c, buf);
                any = true;
            }
            break;
        case C_READY:
        case C_DRAINING:
            if (c->state == C_READY) {
                uint32_t rtt = conn_min_rtt_us(c);

                if (rtt && (!min_rtt || rtt < min_rtt))
                    min_rtt = rtt;
            }
            if (c->ping_outstanding) {
                if (now - c->ping_sent_ms >= pool->o.ping_timeout_ms) {
                    pgw_log_warnf(
                        PGW_FIELDS(PGW_LF_STR("pool", conn_label(pool)),
                                   PGW_LF_INT("conn", c->id)),
                        "connection to '%s' is dead: no PING answer within "
                        "%u ms",
                        pool->authority, pool->o.ping_timeout_ms);
                    pool->st.dead_connections++;
                    h2conn_close(c, PGW_H2_CONN_LOST,
                                 "connection dead: PING not answered");
                    any = true;
                }
            } else if (now - c->last_read_ms >= pool->o.ping_idle_ms) {
                if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) ==
                    0) {
                    c->ping_outstanding = true;
                    c->ping_sent_ms = now;
                    c->want_flush = true;
                    any = true;
                }
            }
            break;
        default:
            break;
        }
    }
    pool->st.min_rtt_us = min_rtt;
    retire_unneeded(pool, now);
    if (any || !pgw_list_empty(&pool->pend) || !pgw_list_empty(&pool->done))
        kick(pool);
}

/* ------------------------------------------------------------------ */
/* public API */

struct evdns_base *pgw_h2_dns_new(struct event_base *base)
{
    struct evdns_base *dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);

    if (dns)
        return dns;
    /* no resolv.conf: the hosts file is read with it, so read it alone */
    dns = evdns_base_new(base, 0);
    if (dns)
        (void)evdns_base_load_hosts(dns, NULL);
    return dns;
}

static int parse_origin(struct pgw_h2_pool *pool, const char *origin)
{
    const char *p, *hs, *he;
    unsigned long port = 443;
    unsigned char tmp[16];

    if (strncmp(origin, "https://", 8) != 0)
        return PGW_ERR_INVAL;
    p = origin + 8;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return PGW_ERR_INVAL;
        p = he + 1;
    } else {
        hs = p;
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs || he - hs > 253)
        return PGW_ERR_INVAL;
    if (*p == ':') {
        char *end;

        errno = 0;
        port = strtoul(p + 1, &end, 10);
        if (end == p + 1 || errno || port == 0 || port > 65535)
            return PGW_ERR_INVAL;
        p = end;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        return PGW_ERR_INVAL;
    pool->host = strndup(hs, (size_t)(he - hs));
    if (!pool->host)
        return PGW_ERR_NOMEM;
    snprintf(pool->port, sizeof(pool->port), "%lu", port);
    pool->host_is_ip = inet_pton(AF_INET, pool->host, tmp) == 1 ||
                       inet_pton(AF_INET6, pool->host, tmp) == 1;
    {
        size_t n = strlen(pool->host) + 16;

        pool->authority = malloc(n);
        if (!pool->authority)
            return PGW_ERR_NOMEM;
        if (strchr(pool->host, ':'))
            snprintf(pool->authority, n, "[%s]:%lu", pool->host, port);
        else
            snprintf(pool->authority, n, "%s:%lu", pool->host, port);
    }
    return 0;
}

static SSL_CTX *make_ssl_ctx(const char *ca_file,
                             const struct pgw_tls_identity *identity)
{
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* The system store may be missing in minimal containers; ca_file then
     * is the only anchor, and verification still applies. */
    (void)SSL_CTX_set_default_verify_paths(ctx);
    if (ca_file && ca_file[0] &&
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0)
        goto fail;
    if (identity && pgw_tls_identity_apply(identity, ctx) < 0)
        goto fail;
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

int pgw_h2_pool_new(struct event_base *base, struct evdns_base *dns,
                    const struct pgw_h2_pool_options *opts,
                    struct pgw_h2_pool **ret_pool)
{
    struct pgw_h2_pool *pool = NULL;
    unsigned tick;
    struct timeval tv;
    int ret;

    if (!base || !dns || !opts || !opts->origin || !ret_pool)
        return PGW_ERR_INVAL;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return PGW_ERR_NOMEM;
    pgw_list_init(&pool->conns);
    pgw_list_init(&pool->dead);
    pgw_list_init(&pool->all);
    pgw_list_init(&pool->pend);
    pgw_list_init(&pool->done);
    pgw_list_init(&pool->free_reqs);
    pool->base = base;
    pool->dns = dns;
    pool->o = *opts;
#define DFLT(f, v)                                                             \
    if (pool->o.f == 0)                                                        \
    pool->o.f = (v)
    DFLT(connections, PGW_H2_DEFAULT_CONNECTIONS);
    DFLT(connect_timeout_ms, PGW_H2_DEFAULT_CONNECT_TIMEOUT_MS);
    DFLT(request_timeout_ms, PGW_H2_DEFAULT_REQUEST_TIMEOUT_MS);
    DFLT(ping_idle_ms, PGW_H2_DEFAULT_PING_IDLE_MS);
    DFLT(ping_timeout_ms, PGW_H2_DEFAULT_PING_TIMEOUT_MS);
    DFLT(max_pending, PGW_H2_DEFAULT_MAX_PENDING);
    DFLT(max_streams_per_conn, PGW_H2_DEFAULT_MAX_STREAMS);
    DFLT(max_response_body, PGW_H2_DEFAULT_MAX_RESPONSE_BODY);
    DFLT(max_refused_retries, PGW_H2_DEFAULT_MAX_REFUSED_RETRIES);
    DFLT(backoff_initial_ms, 1000);
    DFLT(backoff_max_ms, 60000);
    DFLT(idle_close_ms, PGW_H2_DEFAULT_IDLE_CLOSE_MS);
#undef DFLT
    if (pool->o.max_connections < pool->o.connections)
        pool->o.max_connections = pool->o.connections;
    if (pool->o.max_connections > PGW_H2_MAX_CONNECTIONS) {
        ret = PGW_ERR_INVAL;
        goto fail;
    }
    pool->n_slots = pool->o.max_connections;
    pool->window_start_ms = pgw_clock_mono_ms();
    pool->origin = strdup(opts->origin);
    pool->ca_file = pgw_strdup0(opts->ca_file);
    pool->name =
        strdup(opts->name && opts->name[0] ? opts->name : opts->origin);
    if (!pool->origin || !pool->name || (opts->ca_file && !pool->ca_file)) {
        ret = PGW_ERR_NOMEM;
        goto fail;
    }
    pool->o.origin = pool->origin;
    pool->o.ca_file = pool->ca_file;
    pool->o.name = pool->name;
    ret = parse_origin(pool, opts->origin);
    if (ret != 0)
        goto fail;
    if (opts->proxy && opts->proxy[0]) {
        ret = pgw_proxy_parse(opts->proxy, opts->proxy_password, &pool->proxy,
                              NULL, 0);
        if (ret == 0)
            ret = pgw_proxy_connect_request(pool->proxy, pool->authority,
                                            &pool->proxy_request);
        if (ret != 0)
            goto fail;
    }
    /* The pool keeps its parsed copy, not the caller's strings. */
    pool->o.proxy = NULL;
    pool->o.proxy_password = NULL;
    pool->ssl_ctx = make_ssl_ctx(pool->ca_file, opts->identity);
    if (!pool->ssl_ctx) {
        ret = PGW_ERR_TLS;
        goto fail;
    }
    pool->slots = calloc(pool->n_slots, sizeof(*pool->slots));
    pool->ev_work = event_new(base, -1, 0, work_cb, pool);
    pool->ev_tick = event_new(base, -1, EV_PERSIST, tick_cb, pool);
    if (!pool->slots || !pool->ev_work || !pool->ev_tick) {
        ret = PGW_ERR_NOMEM;
        goto fail;
    }
    tick = pool->o.request_timeout_ms;
    if (pool->o.connect_timeout_ms < tick)
        tick = pool->o.connect_timeout_ms;
    if (pool->o.ping_timeout_ms < tick)
        tick = pool->o.ping_timeout_ms;
    if (pool->o.ping_idle_ms < tick)
        tick = pool->o.ping_idle_ms;
    tick /= 8;
    if (tick < 5)
        tick = 5;
    if (tick > 250)
        tick = 250;
    tv.tv_sec = tick / 1000;
    tv.tv_usec = (tick % 1000) * 1000;
    if (event_add(pool->ev_tick, &tv) != 0) {
        ret = PGW_ERR_NOMEM;
        goto fail;
    }
    pool->rng = ((uint64_t)(uintptr_t)pool << 16) ^
                (uint64_t)pgw_clock_mono_ms() ^ 0x9e3779b97f4a7c15ULL;
    if (pool->rng == 0)
        pool->rng = 1;
    *ret_pool = pool;
    return 0;
fail:
    pgw_h2_pool_free(pool);
    return ret;
}

int pgw_h2_pool_submit(struct pgw_h2_pool *self,
                       const struct pgw_h2_request *req, pgw_h2_cb cb,
                       void *arg)
{
    struct h2req *r;
    size_t need, i, off, nlen[MAX_REQ_HEADERS], vlen[MAX_REQ_HEADERS];
    size_t mlen, plen, alen, hdr_total = 0, nv_bytes;
    nghttp2_nv *nv;

    if (!self || !req || !req->method || !req->path || !cb)
        return PGW_ERR_INVAL;
    if (self->freeing)
        return PGW_ERR_CLOSED;
    if (req->n_headers > MAX_REQ_HEADERS || (req->body_len && !req->body))
        return PGW_ERR_INVAL;
    mlen = strlen(req->method);
    plen = strlen(req->path);
    alen = strlen(self->authority);
    nv_bytes = (4 + req->n_headers) * sizeof(*nv);
    need = nv_bytes + mlen + plen + alen + 2;
    for (i = 0; i < req->n_headers; i++) {
        const struct pgw_h2_header *h = &req->headers[i];

        if (!h->name || !h->value)
            return PGW_ERR_INVAL;
        nlen[i] = h->name_len ? h->name_len : strlen(h->name);
        vlen[i] = h->value_len ? h->value_len : strlen(h->value);
        hdr_total += nlen[i] + vlen[i];
        need += nlen[i] + vlen[i];
    }
    if (hdr_total + plen > MAX_REQ_HEADER_BYTES)
        return PGW_ERR_INVAL;
    need += req->body_len;

    r = req_alloc(self);
    if (!r)
        return PGW_ERR_NOMEM;
    r->cb = cb;
    r->arg = arg;
    r->deadline_ms = pgw_clock_mono_ms() + self->o.request_timeout_ms;
    pgw_list_push_back(&self->all, &r->all);
    if (self->n_pending >= self->o.max_pending) {
        done_push(self, r, PGW_H2_BUSY, "pending queue full");
        kick(self);
        return 0;
    }
    if (need > r->buf_cap) {
        char *p = realloc(r->buf, need);

        if (!p) {
            pgw_list_remove(&r->all);
            req_release(self, r);
            return PGW_ERR_NOMEM;
        }
        r->buf = p;
        r->buf_cap = need;
    }
    /* malloc's alignment suits the array at the start */
    r->nva = nv = (nghttp2_nv *)(void *)r->buf;
    off = nv_bytes;
    r->index_once = 0;
#define PUT(dst, src, n)                                                       \
    do {                                                                       \
        memcpy(r->buf + off, (src), (n));                                      \
        (dst) = (uint8_t *)r->buf + off;                                       \
        off += (n);                                                            \
    } while (0)
    nv[0].name = (uint8_t *)":method";
    nv[0].namelen = 7;
    PUT(nv[0].value, req->method, mlen);
    nv[0].valuelen = mlen;
    nv[0].flags = NV_NO_COPY;
    nv[1].name = (uint8_t *)":scheme";
    nv[1].namelen = 7;
    nv[1].value = (uint8_t *)"https";
    nv[1].valuelen = 5;
    nv[1].flags = NV_NO_COPY;
    nv[2].name = (uint8_t *)":authority";
    nv[2].namelen = 10;
    PUT(nv[2].value, self->authority, alen);
    nv[2].valuelen = alen;
    nv[2].flags = NV_NO_COPY;
    nv[3].name = (uint8_t *)":path";
    nv[3].namelen = 5;
    PUT(nv[3].value, req->path, plen);
    nv[3].valuelen = plen;
    nv[3].flags = NV_NO_COPY | NGHTTP2_NV_FLAG_NO_INDEX;
    for (i = 0; i < req->n_headers; i++) {
        const struct pgw_h2_header *h = &req->headers[i];
        nghttp2_nv *x = &nv[4 + i];

        PUT(x->name, h->name, nlen[i]);
        x->namelen = nlen[i];
        PUT(x->value, h->value, vlen[i]);
        x->valuelen = vlen[i];
        if (h->no_index ||
            (nlen[i] == 13 && strncasecmp(h->name, "authorization", 13) == 0)) {
            x->flags = NV_NO_COPY | NGHTTP2_NV_FLAG_NO_INDEX;
        } else if (h->index_once) {
            x->flags = NV_NO_COPY | NGHTTP2_NV_FLAG_NO_INDEX; /* see below */
            r->index_once |= (uint64_t)1 << i;
        } else {
            x->flags = NV_NO_COPY;
        }
    }
#undef PUT
    r->nva_len = 4 + req->n_headers;
    r->body_off = off;
    r->body_len = req->body_len;
    if (req->body_len)
        memcpy(r->buf + off, req->body, req->body_len);
    pend_push(self, r, false);
    kick(self);
    return 0;
}

void pgw_h2_pool_stats(const struct pgw_h2_pool *self,
                       struct pgw_h2_pool_stats *ret_stats)
{
    const struct pgw_list *pos;
    unsigned i;
    int64_t now;

    *ret_stats = self->st;
    ret_stats->conns_connecting = 0;
    ret_stats->conns_ready = 0;
    ret_stats->conns_draining = 0;
    ret_stats->slots_backoff = 0;
    ret_stats->capacity = 0;
    pgw_list_for_each(pos, &self->conns)
    {
        const struct h2conn *c = pgw_list_entry(pos, const struct h2conn, node);

        if (c->state == C_RESOLVING || c->state == C_CONNECTING) {
            ret_stats->conns_connecting++;
        } else if (c->state == C_READY) {
            ret_stats->conns_ready++;
            ret_stats->capacity += stream_limit(c);
        } else if (c->state == C_DRAINING) {
            ret_stats->conns_draining++;
        }
    }
    now = pgw_clock_mono_ms();
    for (i = 0; i < self->n_slots; i++)
        if (!self->slots[i].conn && self->slots[i].next_attempt_ms > now)
            ret_stats->slots_backoff++;
    ret_stats->in_flight = self->n_in_flight;
    ret_stats->pending = self->n_pending;
}

const char *pgw_h2_pool_last_error(const struct pgw_h2_pool *self)
{
    return self->last_error;
}

void pgw_h2_pool_free(struct pgw_h2_pool *self)
{
    struct h2conn *c;
    struct h2req *r;

    if (!self)
        return;
    self->freeing = true;
    while ((c = conn_of(pgw_list_first(&self->conns))) != NULL) {
        /* requeues unsent ones, decides the rest */
        h2conn_close(c, PGW_H2_CANCELLED, "pool freed");
    }
    while ((r = req_of(pgw_list_first(&self->pend))) != NULL) {
        pend_unlink(self, r);
        done_push(self, r, PGW_H2_CANCELLED, "pool freed");
    }
    while ((r = req_of(pgw_list_pop_front(&self->done))) != NULL) {
        /* Everything outstanding ends cancelled, whatever was decided,
         * except results that were already complete answers. */
        req_finish(self, r,
                   r->done_kind == PGW_H2_RESPONSE ? PGW_H2_RESPONSE
                                                   : PGW_H2_CANCELLED,
                   "pool freed");
    }
    while ((c = conn_of(pgw_list_pop_front(&self->dead))) != NULL)
        h2conn_free(c);
    while ((r = req_of(pgw_list_pop_front(&self->free_reqs))) != NULL) {
        free(r->buf);
        free(r->hbuf);
        free(r->rbody);
        free(r);
    }
    if (self->ev_work)
        event_free(self->ev_work);
    if (self->ev_tick)
        event_free(self->ev_tick);
    SSL_CTX_free(self->ssl_ctx);
    free(self->slots);
    free(self->origin);
    free(self->ca_file);
    free(self->name);
    free(self->host);
    free(self->authority);
    pgw_proxy_free(self->proxy);
    pgw_proxy_free_secret(self->proxy_request);
    free(self);
}

const char *pgw_h2_result_header(const struct pgw_h2_result *result,
                                 const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < result->n_headers; i++) {
        const struct pgw_h2_header *h = &result->headers[i];

        if (h->name_len == n && strncasecmp(h->name, name, n) == 0)
            return h->value;
    }
    return NULL;
}

const char *pgw_h2_result_kind_name(enum pgw_h2_result_kind kind)
{
    switch (kind) {
    case PGW_H2_RESPONSE:
        return "response";
    case PGW_H2_REFUSED:
        return "refused";
    case PGW_H2_TIMEOUT:
        return "timeout";
    case PGW_H2_CONN_LOST:
        return "connection_lost";
    case PGW_H2_BUSY:
        return "busy";
    case PGW_H2_CONNECT_FAILED:
        return "connect_failed";
    case PGW_H2_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}
