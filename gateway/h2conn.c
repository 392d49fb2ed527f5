/*
 * h2conn: one connection of the HTTP/2 client pool, from DNS to close.
 * See h2client.h for the contract and h2client.c for the pool.
 *
 * Structure: a pool owns |connections| slots; a slot holds at most one
 * connection that accepts new streams, plus its reconnect backoff. A
 * connection that got GOAWAY leaves its slot (so a fresh one can take it)
 * and lives on the pool's list until its last stream ends. Closed
 * connections are never freed in the callback that closed them: they move
 * to the dead list and the pool's work event frees them on the next loop
 * iteration. This file is that life cycle; it is apart from the pool
 * because it is driven by the network (libevent and nghttp2 callbacks),
 * the pool by its callers and its timers.
 */
#include "h2client_int.h"
#include "h2out.h"

#include <netinet/in.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "pushgw.h"
#include "util/clock.h"
#include "util/list.h"

#define OUT_HIGH_WATER (1024 * 1024)
#define OUT_LOW_WATER (256 * 1024)
#define LOCAL_WINDOW (16 * 1024 * 1024)
#define STREAM_WINDOW (1024 * 1024)

/* ------------------------------------------------------------------ */
/* small helpers */

static uint64_t rng_next(struct pgw_h2_pool *pool)
{
    /* xorshift64: jitter only, not security */
    uint64_t x = pool->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pool->rng = x;
    return x;
}

static void conn_init_lists(struct h2conn *c)
{
    pgw_list_init(&c->node);
    pgw_list_init(&c->streams);
}

/* ------------------------------------------------------------------ */
/* connections */

static void conn_try_next_addr(struct h2conn *c);

void h2conn_detach_slot(struct h2conn *c)
{
    if (c->slot >= 0) {
        struct h2slot *s = &c->pool->slots[c->slot];

        if (s->conn == c)
            s->conn = NULL;
        c->slot = -1;
    }
}

/* Moves |c| from the live list to the dead list (freed later). */
static void conn_to_dead(struct h2conn *c)
{
    pgw_list_remove(&c->node);
    pgw_list_push_front(&c->pool->dead, &c->node);
}

void h2conn_free(struct h2conn *c)
{
    if (c->dns_req) {
        struct evdns_getaddrinfo_request *q = c->dns_req;

        c->dns_req = NULL;
        /* Runs the callback with EVUTIL_EAI_CANCEL; it only clears. */
        evdns_getaddrinfo_cancel(q);
    }
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->tunnel)
        bufferevent_free(c->tunnel);
    if (c->session)
        nghttp2_session_del(c->session);
    while (c->orphans) {
        void *next;

        memcpy(&next, c->orphans, sizeof(next));
        free(c->orphans);
        c->orphans = next;
    }
    if (c->addrs)
        evutil_freeaddrinfo(c->addrs);
    free(c);
}

void h2conn_fail(struct h2conn *c, const char *msg)
{
    struct pgw_h2_pool *pool = c->pool;
    char buf[ERR_MAX];

    if (pool->proxy)
        snprintf(buf, sizeof(buf),
                 "could not connect to '%s' through proxy "
                 "'%s': %s",
                 pool->authority, pool->proxy->hostport, msg);
    else
        snprintf(buf, sizeof(buf), "could not connect to '%s': %s",
                 pool->authority, msg);
    snprintf(pool->last_error, sizeof(pool->last_error), "%s", buf);
    pgw_log_errorf(PGW_FIELDS(PGW_LF_STR("pool", conn_label(pool))), "%s", buf);
    pool->st.connect_failures++;
    if (c->slot >= 0) {
        struct h2slot *s = &pool->slots[c->slot];
        uint64_t d = pool->o.backoff_initial_ms;
        unsigned i;
        uint64_t jitter;

        for (i = 0; i < s->failures && d < pool->o.backoff_max_ms; i++)
            d *= 2;
        if (d > pool->o.backoff_max_ms)
            d = pool->o.backoff_max_ms;
        /* +-20 % so many gateways do not reconnect in lockstep */
        jitter = d / 5;
        if (jitter > 0)
            d = d - jitter + rng_next(pool) % (2 * jitter + 1);
        s->failures++;
        s->next_attempt_ms = pgw_clock_mono_ms() + (int64_t)d;
    }
    h2conn_close(c, PGW_H2_CONNECT_FAILED, buf);
}

void h2conn_close(struct h2conn *c, enum pgw_h2_result_kind lost_kind,
                  const char *why)
{
    struct pgw_h2_pool *pool = c->pool;
    struct h2req *r;

    if (c->state == C_CLOSED)
        return;
    c->state = C_CLOSED;
    h2conn_detach_slot(c);
    if (c->bev) {
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    }
    if (c->tunnel) {
        bufferevent_setcb(c->tunnel, NULL, NULL, NULL, NULL);
        bufferevent_disable(c->tunnel, EV_READ | EV_WRITE);
    }
    conn_to_dead(c);
    while ((r = req_of(pgw_list_first(&c->streams))) != NULL) {
        stream_unlink(c, r);
        if (c->session)
            nghttp2_session_set_stream_user_data(c->session, r->stream_id,
                                                 NULL);
        if (!r->headers_sent && r->retries < pool->o.max_refused_retries) {
            r->retries++;
            pool->st.requests_retried++;
            pend_push(pool, r, true);
        } else {
            done_push(pool, r,
                      lost_kind == PGW_H2_CONNECT_FAILED ? PGW_H2_CONN_LOST
                                                         : lost_kind,
                      why);
        }
    }
    kick(pool);
}

void h2conn_retire(struct h2conn *c)
{
    pgw_log_infof(PGW_FIELDS(PGW_LF_STR("pool", conn_label(c->pool)),
                             PGW_LF_INT("conn", c->id),
                             PGW_LF_INT("streams", c->n_streams)),
                  "closing a connection to '%s' the pool no longer needs",
                  c->pool->authority);
    h2conn_detach_slot(c);
    c->state = C_DRAINING;
    c->retiring = true;
    (void)nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, 0,
                                NGHTTP2_NO_ERROR, NULL, 0);
    c->want_flush = true;
    kick(c->pool);
}

void h2conn_lost(struct h2conn *c, const char *why)
{
    struct pgw_h2_pool *pool = c->pool;
    char buf[ERR_MAX];

    if (c->retiring && c->n_streams == 0) {
        /* The peer closed after our GOAWAY: the end we asked for. */
        h2conn_close(c, PGW_H2_CONN_LOST, "connection closed after GOAWAY");
        return;
    }
    if (!c->was_ready) {
        h2conn_fail(c, why);
        return;
    }
    snprintf(buf, sizeof(buf), "connection to '%s' lost: %s", pool->authority,
             why);
    if (c->n_streams > 0 || c->state == C_READY)
        pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("pool", conn_label(pool)),
                                 PGW_LF_INT("conn", c->id),
                                 PGW_LF_INT("streams", c->n_streams)),
                      "%s", buf);
    pool->st.conns_lost++;
    h2conn_close(c, PGW_H2_CONN_LOST, buf);
}

/* ---- nghttp2 callbacks: never free anything here ---- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
    struct h2req *r;
    size_t need, i;

    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!r)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;

        for (i = 0; i < valuelen && i < 3; i++) {
            if (value[i] < '0' || value[i] > '9')
                return 0;
            st = st * 10 + (value[i] - '0');
        }
        if (valuelen == 3)
            r->status = st;
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0;
    if (r->n_hdr >= PGW_H2_MAX_RESPONSE_HEADERS ||
        r->hbuf_len + namelen + valuelen + 2 > PGW_H2_MAX_HEADER_BYTES)
        return 0; /* capped: the rest is dropped */
    need = r->hbuf_len + namelen + valuelen + 2;
    if (need > r->hbuf_cap) {
        size_t cap = r->hbuf_cap ? r->hbuf_cap : 512;
        char *p;

        while (cap < need)
            cap *= 2;
        p = realloc(r->hbuf, cap);
        if (!p)
            return 0; /* the header is dropped; the status still counts */
        r->hbuf = p;
        r->hbuf_cap = cap;
    }
    r->hdr[r->n_hdr].off[0] = (uint32_t)r->hbuf_len;
    r->hdr[r->n_hdr].len[0] = (uint32_t)namelen;
    memcpy(r->hbuf + r->hbuf_len, name, namelen);
    r->hbuf_len += namelen;
    r->hbuf[r->hbuf_len++] = '\0';
    r->hdr[r->n_hdr].off[1] = (uint32_t)r->hbuf_len;
    r->hdr[r->n_hdr].len[1] = (uint32_t)valuelen;
    memcpy(r->hbuf + r->hbuf_len, value, valuelen);
    r->hbuf_len += valuelen;
    r->hbuf[r->hbuf_len++] = '\0';
    r->n_hdr++;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data)
{
    struct h2conn *c = user_data;
    struct h2req *r;
    size_t room, take;

    (void)flags;
    r = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!r)
        return 0;
    room = c->pool->o.max_response_body - r->rbody_len;
    take = len < room ? len : room;
    if (take < len)
        r->truncated = true;
    if (take == 0)
        return 0;
    if (r->rbody_len + take + 1 > r->rbody_cap) {
        size_t cap = r->rbody_cap ? r->rbody_cap : 256;
        char *p;

        while (cap < r->rbody_len + take + 1)
            cap *= 2;
        p = realloc(r->rbody, cap);
        if (!p) {
            r->truncated = true;
            return 0;
        }
        r->rbody = p;
        r->rbody_cap = cap;
    }
    memcpy(r->rbody + r->rbody_len, data, take);
    r->rbody_len += take;
    r->rbody[r->rbody_len] = '\0';
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
    struct h2conn *c = user_data;
    struct pgw_h2_pool *pool = c->pool;
    struct h2req *r;
    char buf[ERR_MAX];

    kick(pool); /* a stream slot may be free */
    r = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!r || r->where != R_STREAM || r->conn != c)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_unlink(c, r);
    if (error_code == NGHTTP2_NO_ERROR && r->status > 0) {
        done_push(pool, r, PGW_H2_RESPONSE, NULL);
        return 0;
    }
    if (error_code == NGHTTP2_REFUSED_STREAM || !r->headers_sent) {
        /* Never processed by the peer: try again elsewhere. */
        if (r->retries < pool->o.max_refused_retries) {
            r->retries++;
            pool->st.requests_retried++;
            pend_push(pool, r, true);
            return 0;
        }
        snprintf(buf, sizeof(buf), "refused by '%s' (%s)", pool->authority,
                 nghttp2_http2_strerror(error_code));
        done_push(pool, r, PGW_H2_REFUSED, buf);
        return 0;
    }
    snprintf(buf, sizeof(buf), "stream reset by '%s': %s", pool->authority,
             nghttp2_http2_strerror(error_code));
    done_push(pool, r, PGW_H2_CONN_LOST, buf);
    return 0;
}

static void log_goaway(struct h2conn *c, const nghttp2_goaway *g)
{
    char dbg[200];
    size_t n = g->opaque_data_len < sizeof(dbg) - 1 ? g->opaque_data_len
                                                    : sizeof(dbg) - 1;
    size_t i;

    /* The debug data is peer-controlled: keep printable ASCII only. */
    for (i = 0; i < n; i++) {
        uint8_t ch = g->opaque_data[i];

        dbg[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dbg[n] = '\0';
    pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("pool", conn_label(c->pool)),
                             PGW_LF_INT("conn", c->id),
                             PGW_LF_INT("last_stream_id", g->last_stream_id),
                             PGW_LF_STR("debug", dbg)),
                  "'%s' sent GOAWAY: %s", c->pool->authority,
                  nghttp2_http2_strerror(g->error_code));
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct h2conn *c = user_data;
    struct pgw_h2_pool *pool = c->pool;

    (void)session;
    switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            break;
        if (c->state == C_CONNECTING) {
            c->state = C_READY;
            c->was_ready = true;
            pool->st.connects_ok++;
            if (c->slot >= 0)
                pool->slots[c->slot].failures = 0;
            pool->last_error[0] = '\0';
        }
        kick(pool); /* the stream limit may have grown */
        break;
    case NGHTTP2_GOAWAY:
        pool->st.goaways++;
        log_goaway(c, &frame->goaway);
        if (c->state == C_READY || c->state == C_CONNECTING)
            c->state = C_DRAINING;
        h2conn_detach_slot(c);
        kick(pool);
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->ping_outstanding = false;
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct h2req *r;

    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (r)
        r->headers_sent = true;
    return 0;
}

ssize_t h2conn_body_read(nghttp2_session *session, int32_t stream_id,
                         uint8_t *buf, size_t length, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user_data)
{
    struct h2req *r;
    size_t left, n;

    (void)source;
    (void)user_data;
    r = nghttp2_session_get_stream_user_data(session, stream_id);
    if (!r)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* timed out */
    left = r->body_len - r->body_sent;
    n = left < length ? left : length;
    memcpy(buf, r->buf + r->body_off + r->body_sent, n);
    r->body_sent += n;
    if (r->body_sent == r->body_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- bufferevent side ---- */

void h2conn_flush(struct h2conn *c)
{
    struct evbuffer *out;
    int rc;

    c->want_flush = false;
    if (c->state == C_CLOSED || !c->session)
        return;
    out = bufferevent_get_output(c->bev);
    rc = pgw_h2out_send(c->session, out, OUT_HIGH_WATER);
    if (rc < 0) {
        h2conn_lost(c, rc == NGHTTP2_ERR_NOMEM ? "out of memory"
                                               : nghttp2_strerror(rc));
        return;
    }
    if (c->state == C_DRAINING && pgw_list_empty(&c->streams) &&
        evbuffer_get_length(out) == 0) {
        /* GOAWAY and nothing left: a quiet close, not a loss. */
        h2conn_close(c, PGW_H2_CONN_LOST, "connection closed after GOAWAY");
        return;
    }
    if (!nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session) &&
        evbuffer_get_length(out) == 0)
        h2conn_lost(c, "session ended");
}

/* Fires when data arrived; may close |c| (freed later, not here). */
static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct h2conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    int nv, i;
    size_t total;

    c->last_read_ms = pgw_clock_mono_ms();
    while (evbuffer_get_length(in) > 0) {
        nv = evbuffer_peek(in, -1, NULL, v, 16);
        if (nv > 16)
            nv = 16;
        total = 0;
        for (i = 0; i < nv; i++) {
            ssize_t n = nghttp2_session_mem_recv(
                c->session, (const uint8_t *)v[i].iov_base, v[i].iov_len);

            if (n < 0) {
                char buf[ERR_MAX];

                snprintf(buf, sizeof(buf), "protocol error: %s",
                         nghttp2_strerror((int)n));
                evbuffer_drain(in, evbuffer_get_length(in));
                h2conn_lost(c, buf);
                return;
            }
            total += v[i].iov_len;
        }
        evbuffer_drain(in, total);
        if (c->state == C_CLOSED)
            return;
    }
    h2conn_flush(c);
}

/* Fires when the output drained below the low-water mark. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct h2conn *c = arg;

    (void)bev;
    h2conn_flush(c);
}

static void describe_tls_error(struct h2conn *c, char *buf, size_t size)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    unsigned long e, last = 0;
    long vr;

    while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
        last = e;
    vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK) {
        snprintf(buf, size, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        return;
    }
    if (last) {
        char eb[160];

        ERR_error_string_n(last, eb, sizeof(eb));
        snprintf(buf, size, "TLS handshake failed: %s", eb);
        return;
    }
    buf[0] = '\0';
}

/* The address after |c|'s current one, round the list from where the
 * attempts started; NULL once every one was tried. */
static struct evutil_addrinfo *next_addr(const struct h2conn *c)
{
    struct evutil_addrinfo *n;

    if (!c->cur_addr)
        return NULL;
    n = c->cur_addr->ai_next ? c->cur_addr->ai_next : c->addrs;
    return n == c->first_addr ? NULL : n;
}

/*
 * TCP to the current address failed: hand the remaining addresses to a
 * fresh connection in the same slot and retire |c| (freed later).
 */
static void conn_retry_next_addr(struct h2conn *c)
{
    struct pgw_h2_pool *pool = c->pool;
    struct h2conn *n = calloc(1, sizeof(*n));
    int slot = c->slot;

    if (!n) {
        h2conn_fail(c, "out of memory");
        return;
    }
    conn_init_lists(n);
    n->pool = pool;
    n->slot = slot;
    n->id = c->id;
    n->state = C_CONNECTING;
    n->started_ms = c->started_ms;
    n->addrs = c->addrs;
    n->first_addr = c->first_addr;
    n->cur_addr = next_addr(c);
    c->addrs = NULL;
    c->first_addr = NULL;
    c->cur_addr = NULL;
    c->slot = -1;
    h2conn_close(c, PGW_H2_CONN_LOST, "next address");
    pgw_list_push_front(&pool->conns, &n->node);
    if (slot >= 0)
        pool->slots[slot].conn = n;
    conn_try_next_addr(n);
}

static int conn_start_h2(struct h2conn *c);

/* Fires on connect/handshake completion, EOF or errors. May close |c|. */
static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct h2conn *c = arg;
    char buf[ERR_MAX];

    if (what & BEV_EVENT_CONNECTED) {
        const unsigned char *alpn = NULL;
        unsigned alpn_len = 0;
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        evutil_socket_t fd = bufferevent_getfd(bev);
        int one = 1;

        if (c->tunnel) {
            /* Its socket is |bev|'s now: the shell goes (not our callback). */
            bufferevent_free(c->tunnel);
            c->tunnel = NULL;
        }
        if (fd >= 0)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            h2conn_fail(c, "server did not negotiate 'h2' with ALPN");
            return;
        }
        if (conn_start_h2(c) != 0) {
            h2conn_fail(c, "could not start the HTTP/2 session");
            return;
        }
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (c->state == C_RESOLVING || c->state == C_CONNECTING) {
        int err = EVUTIL_SOCKET_ERROR();

        describe_tls_error(c, buf, sizeof(buf));
        if (buf[0] == '\0') {
            /* Not a TLS failure: the next address may work. */
            if (!c->session && next_addr(c)) {
                conn_retry_next_addr(c);
                return;
            }
            if (what & BEV_EVENT_EOF)
                snprintf(buf, sizeof(buf), "connection closed by peer");
            else
                snprintf(buf, sizeof(buf), "%s",
                         err ? evutil_socket_error_to_string(err)
                             : "connection failed");
        }
        h2conn_fail(c, buf);
        return;
    }
    if (what & BEV_EVENT_EOF)
        h2conn_lost(c, "closed by peer");
    else {
        int err = EVUTIL_SOCKET_ERROR();

        describe_tls_error(c, buf, sizeof(buf));
        if (buf[0] == '\0')
            snprintf(buf, sizeof(buf), "%s",
                     err ? evutil_socket_error_to_string(err) : "I/O error");
        h2conn_lost(c, buf);
    }
}

static int conn_start_h2(struct h2conn *c)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[3] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 65536},
    };
    int ret = -1;

    if (nghttp2_session_callbacks_new(&cbs) != 0)
        goto out;
    if (nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_option_set_max_send_header_block_length(opt, 131072);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    if (nghttp2_session_client_new2(&c->session, cbs, c, opt) != 0) {
        c->session = NULL;
        goto out;
    }
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv,
                                PGW_ARRAY_SIZE(iv)) != 0)
        goto out;
    if (nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              LOCAL_WINDOW) != 0)
        goto out;
    c->last_read_ms = pgw_clock_mono_ms();
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW_WATER, 0);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0)
        goto out;
    c->want_flush = true;
    kick(c->pool);
    ret = 0;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return ret;
}

/* A TLS session for the origin: SNI and the name (or address) the
 * certificate must match. NULL when out of memory. */
static SSL *conn_new_ssl(struct pgw_h2_pool *pool)
{
    SSL *ssl = SSL_new(pool->ssl_ctx);

    if (!ssl)
        return NULL;
    if (pool->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), pool->host) != 1)
            goto fail;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl, pool->host) != 1 ||
            SSL_set_tlsext_host_name(ssl, pool->host) != 1)
            goto fail;
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}

/* Starts TLS on |fd| (connected to the origin, or a tunnel to it). */
static void conn_start_tls(struct h2conn *c, evutil_socket_t fd)
{
    struct pgw_h2_pool *pool = c->pool;
    SSL *ssl = conn_new_ssl(pool);

    if (!ssl) {
        if (fd >= 0)
            evutil_closesocket(fd);
        h2conn_fail(c, "could not set up TLS");
        return;
    }
    c->bev = bufferevent_openssl_socket_new(
        pool->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        /* On failure libevent frees neither. */
        SSL_free(ssl);
        if (fd >= 0)
            evutil_closesocket(fd);
        h2conn_fail(c, "could not set up TLS");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, NULL, NULL, conn_event_cb, c);
    c->state = C_CONNECTING;
    if (fd >= 0 && bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0)
        h2conn_fail(c, "could not start TLS");
}

/* Fires when the proxy's answer to CONNECT arrives (in pieces, maybe).
 * May close |c| (freed later). */
static void tunnel_read_cb(struct bufferevent *bev, void *arg)
{
    struct h2conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    size_t take = len < PGW_PROXY_MAX_ANSWER ? len : PGW_PROXY_MAX_ANSWER;
    const char *head = (const char *)evbuffer_pullup(in, (ssize_t)take);
    char reason[64], buf[ERR_MAX];
    int status = 0, n;
    evutil_socket_t fd;

    if (!head && take > 0) {
        h2conn_fail(c, "out of memory");
        return;
    }
    n = pgw_proxy_parse_answer(head, take, &status, reason, sizeof(reason));
    if (n == 0)
        return; /* more to come; the connect timeout bounds the wait */
    if (n == PGW_ERR_TOO_LARGE) {
        snprintf(buf, sizeof(buf),
                 "the proxy's answer to CONNECT is over %d bytes",
                 PGW_PROXY_MAX_ANSWER);
        h2conn_fail(c, buf);
        return;
    }
    if (n < 0) {
        h2conn_fail(c, "the proxy's answer to CONNECT is not HTTP/1.x");
        return;
    }
    if (status < 200 || status > 299) {
        snprintf(buf, sizeof(buf), "proxy answered %d%s%s", status,
                 reason[0] ? " " : "", reason);
        h2conn_fail(c, buf);
        return;
    }
    if ((size_t)n != len) {
        /* The origin speaks after our ClientHello, never before. */
        h2conn_fail(c, "the proxy sent data after its answer to CONNECT");
        return;
    }
    evbuffer_drain(in, len);
    /* The socket moves to a TLS bufferevent; this one keeps none. */
    fd = bufferevent_getfd(bev);
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    if (fd < 0 || bufferevent_setfd(bev, -1) != 0) {
        h2conn_fail(c, "could not take over the tunnel");
        return;
    }
    conn_start_tls(c, fd);
}

/* Fires when the TCP connection to the proxy is up, or fails. May close
 * |c| (freed later). */
static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct h2conn *c = arg;
    struct pgw_h2_pool *pool = c->pool;
    char buf[ERR_MAX];
    int err;

    if (what & BEV_EVENT_CONNECTED) {
        evutil_socket_t fd = bufferevent_getfd(bev);
        int one = 1;

        if (fd >= 0)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        bufferevent_setcb(bev, tunnel_read_cb, NULL, tunnel_event_cb, c);
        if (bufferevent_write(bev, pool->proxy_request,
                              strlen(pool->proxy_request)) != 0 ||
            bufferevent_enable(bev, EV_READ | EV_WRITE) != 0)
            h2conn_fail(c, "out of memory");
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    err = EVUTIL_SOCKET_ERROR();
    if (!(what & BEV_EVENT_READING) && next_addr(c)) {
        /* The TCP connect failed: the proxy's next address may work. */
        conn_retry_next_addr(c);
        return;
    }
    if (what & BEV_EVENT_EOF)
        snprintf(buf, sizeof(buf),
                 "the proxy closed the connection before "
                 "answering CONNECT");
    else
        snprintf(buf, sizeof(buf), "proxy: %s",
                 err ? evutil_socket_error_to_string(err)
                     : "connection failed");
    h2conn_fail(c, buf);
}

/* TCP to the proxy, then CONNECT (tunnel_event_cb, tunnel_read_cb). */
static void conn_dial_proxy(struct h2conn *c)
{
    struct pgw_h2_pool *pool = c->pool;
    struct evutil_addrinfo *ai = c->cur_addr;

    c->tunnel = bufferevent_socket_new(pool->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->tunnel) {
        h2conn_fail(c, "out of memory");
        return;
    }
    bufferevent_setcb(c->tunnel, NULL, NULL, tunnel_event_cb, c);
    c->state = C_CONNECTING;
    if (bufferevent_socket_connect(c->tunnel, ai->ai_addr,
                                   (int)ai->ai_addrlen) != 0) {
        char buf[ERR_MAX];

        snprintf(buf, sizeof(buf), "proxy: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        h2conn_fail(c, buf);
    }
}

static void conn_try_next_addr(struct h2conn *c)
{
    struct pgw_h2_pool *pool = c->pool;
    struct evutil_addrinfo *ai = c->cur_addr;

    if (pool->proxy) {
        conn_dial_proxy(c);
        return;
    }
    conn_start_tls(c, -1);
    if (c->state == C_CLOSED)
        return;
    if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) !=
        0) {
        char buf[ERR_MAX];

        snprintf(buf, sizeof(buf), "%s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        h2conn_fail(c, buf);
    }
}

/* The first of |res| that the fewest of |pool|'s live connections use:
 * new connections spread over the provider's addresses. */
static struct evutil_addrinfo *least_used_addr(const struct pgw_h2_pool *pool,
                                               struct evutil_addrinfo *res)
{
    struct evutil_addrinfo *a, *best = res;
    unsigned best_n = UINT_MAX;

    for (a = res; a; a = a->ai_next) {
        const struct pgw_list *pos;
        unsigned n = 0;

        pgw_list_for_each(pos, &pool->conns)
        {
            const struct h2conn *o =
                pgw_list_entry(pos, const struct h2conn, node);
            const struct evutil_addrinfo *u = o->cur_addr;

            if (u && u->ai_addrlen == a->ai_addrlen &&
                memcmp(u->ai_addr, a->ai_addr, a->ai_addrlen) == 0)
                n++;
        }
        if (n < best_n) {
            best = a;
            best_n = n;
        }
    }
    return best;
}

/* Fires when the name is resolved (possibly inside evdns_getaddrinfo). */
static void conn_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct h2conn *c = arg;
    char buf[ERR_MAX];

    c->dns_req = NULL;
    c->dns_pending = false;
    if (result == EVUTIL_EAI_CANCEL) {
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    if (c->state != C_RESOLVING) {
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    if (result != 0 || !res) {
        snprintf(buf, sizeof(buf), "could not resolve '%s': %s",
                 c->pool->proxy ? c->pool->proxy->host : c->pool->host,
                 evutil_gai_strerror(result));
        if (res)
            evutil_freeaddrinfo(res);
        h2conn_fail(c, buf);
        return;
    }
    c->addrs = res;
    c->first_addr = c->cur_addr = least_used_addr(c->pool, res);
    conn_try_next_addr(c);
}

void h2conn_open(struct pgw_h2_pool *pool, unsigned i)
{
    struct h2conn *c = calloc(1, sizeof(*c));
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *q;

    if (!c) {
        snprintf(pool->last_error, sizeof(pool->last_error),
                 "could not connect to '%s': out of memory", pool->authority);
        return;
    }
    conn_init_lists(c);
    c->pool = pool;
    c->slot = (int)i;
    c->id = ++pool->next_conn_id;
    c->state = C_RESOLVING;
    c->started_ms = pgw_clock_mono_ms();
    pgw_list_push_front(&pool->conns, &c->node);
    pool->slots[i].conn = c;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    c->dns_pending = true;
    /* Through a proxy only its name is resolved: the origin's is the
     * proxy's business. */
    q = evdns_getaddrinfo(
        pool->dns, pool->proxy ? pool->proxy->host : pool->host,
        pool->proxy ? pool->proxy->port : pool->port, &hints, conn_dns_cb, c);
    if (c->dns_pending)
        c->dns_req = q;
}
