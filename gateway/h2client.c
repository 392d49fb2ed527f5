/*
 * h2client: HTTP/2 over TLS client pool on libevent. See h2client.h for the
 * contract.
 *
 * Structure: a pool owns |connections| slots; a slot holds at most one
 * connection that accepts new streams, plus its reconnect backoff. A
 * connection that got GOAWAY leaves its slot (so a fresh one can take it)
 * and lives on the pool's list until its last stream ends. Closed
 * connections are never freed in the callback that closed them: they move
 * to the dead list and the pool's work event frees them on the next loop
 * iteration.
 *
 * Requests live on two lists: |all| in submit order (their deadlines are
 * in the same order, so the tick timer only looks at the head) and either
 * the pool's pending FIFO or their connection's stream list. The work
 * event assigns pending requests to connections and flushes nghttp2 output
 * once per loop iteration, so many frames go out in one write.
 */
#include "h2client.h"
#include "h2out.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
#include "tls_identity.h"
#include "util/clock.h"
#include "util/list.h"

#define OUT_HIGH_WATER (1024 * 1024)
#define OUT_LOW_WATER (256 * 1024)
/* nghttp2 keeps pointers to a request's header strings (in its |buf|)
 * instead of copying them; see h2conn.orphans for the one case where the
 * request ends before nghttp2 is done with them. */
#define NV_NO_COPY                                                             \
    (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)
/* A connection whose requests keep timing out before they are even sent
 * is stuck: past this many such requests it is closed. */
#define MAX_ORPHANS 1024
#define LOCAL_WINDOW (16 * 1024 * 1024)
#define STREAM_WINDOW (1024 * 1024)
#define MAX_REQ_HEADERS 64
#define MAX_REQ_HEADER_BYTES 65536
#define FREELIST_MAX 65536
#define KEEP_BUF_MAX 16384
#define ERR_MAX 256

enum conn_state {
    C_RESOLVING = 0,
    C_CONNECTING, /* TCP + TLS, then waiting for the server's SETTINGS */
    C_READY,
    C_DRAINING, /* GOAWAY received: no new streams */
    C_CLOSED,   /* on the dead list, freed by the work event */
};

enum req_where {
    R_FREE = 0,
    R_PENDING,
    R_STREAM,
    R_DONE, /* on the done list, result decided, callback not yet run */
};

struct h2conn;

struct h2req {
    struct pgw_list all;  /* on the pool's |all|, in submit order */
    struct pgw_list node; /* on the pending, a stream, done or free list */
    struct h2conn *conn;
    enum req_where where;
    int32_t stream_id;
    bool headers_sent;
    unsigned retries;
    int64_t deadline_ms;
    pgw_h2_cb cb;
    void *arg;

    /* Request copy in |buf|: the header array |nva|, then the strings it
     * points to, then the body. Sized to the request, not to
     * MAX_REQ_HEADERS: a request lives in memory for every push in
     * flight (10,000 by default), and a free list keeps more. */
    nghttp2_nv *nva;
    size_t nva_len;
    uint64_t index_once; /* bit i: nva[4 + i] is indexed once per conn */
    char *buf;
    size_t buf_cap;
    size_t body_off, body_len, body_sent;

    /* Response. Headers are kept as offsets into |hbuf| (it may grow). */
    int status;
    /* below PGW_H2_MAX_HEADER_BYTES */
    uint32_t hdr_off[PGW_H2_MAX_RESPONSE_HEADERS][2];
    uint32_t hdr_len[PGW_H2_MAX_RESPONSE_HEADERS][2];
    size_t n_hdr;
    char *hbuf;
    size_t hbuf_len, hbuf_cap;
    char *rbody;
    size_t rbody_len, rbody_cap;
    bool truncated;

    /* Result decided before the callback runs (done list). */
    enum pgw_h2_result_kind done_kind;
    char error[ERR_MAX];
};

struct h2slot {
    struct h2conn *conn; /* the connection taking new streams, or NULL */
    unsigned failures;
    int64_t next_attempt_ms;
};

struct h2conn {
    struct pgw_h2_pool *pool;
    struct pgw_list node; /* on the pool's |conns| or |dead| */
    int slot;             /* index, -1 once detached */
    unsigned id;
    enum conn_state state;
    struct evdns_getaddrinfo_request *dns_req;
    bool dns_pending;
    struct evutil_addrinfo *addrs, *cur_addr;
    struct bufferevent *bev;
    nghttp2_session *session;
    struct pgw_list streams; /* requests on a stream */
    size_t n_streams;        /* requests linked on |streams| */
    int64_t started_ms, last_read_ms, ping_sent_ms;
    bool ping_outstanding;
    bool want_flush;
    bool was_ready;
    bool once_sent; /* a request with index-once headers went on it */
    /* Buffers of requests that timed out before their HEADERS went out:
     * nghttp2 was given their header strings without a copy, so they are
     * freed with the session (linked through their first bytes). */
    void *orphans;
    size_t n_orphans;
};

struct pgw_h2_pool {
    struct event_base *base;
    struct evdns_base *dns;
    SSL_CTX *ssl_ctx;
    struct pgw_h2_pool_options o;
    char *origin, *ca_file, *name;
    char *host;      /* without brackets */
    char *authority; /* host[:port] as sent in :authority */
    char port[8];
    bool host_is_ip;

    struct h2slot *slots;
    struct pgw_list conns; /* live (slot or draining) */
    struct pgw_list dead;  /* closed, to free */
    unsigned next_conn_id;

    struct pgw_list all;  /* every request not yet finished, submit order */
    struct pgw_list pend; /* waiting for a stream */
    size_t n_pending, n_in_flight;
    struct pgw_list done;      /* result decided, callback not yet run */
    struct pgw_list free_reqs; /* for reuse */
    size_t n_free;

    struct event *ev_work;
    struct event *ev_tick;
    bool freeing;
    uint64_t rng;
    char last_error[ERR_MAX];
    struct pgw_h2_pool_stats st;
};

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

static void kick(struct pgw_h2_pool *pool)
{
    event_active(pool->ev_work, EV_TIMEOUT, 0);
}

static const char *conn_label(const struct pgw_h2_pool *pool)
{
    return pool->name;
}

/* ------------------------------------------------------------------ */
/* request lists */

static struct h2req *req_of(struct pgw_list *node)
{
    return node ? pgw_list_entry(node, struct h2req, node) : NULL;
}

static struct h2conn *conn_of(struct pgw_list *node)
{
    return node ? pgw_list_entry(node, struct h2conn, node) : NULL;
}

static void conn_init_lists(struct h2conn *c)
{
    pgw_list_init(&c->node);
    pgw_list_init(&c->streams);
}

static void pend_unlink(struct pgw_h2_pool *pool, struct h2req *r)
{
    pgw_list_remove(&r->node);
    pool->n_pending--;
}

static void pend_push(struct pgw_h2_pool *pool, struct h2req *r, bool front)
{
    r->where = R_PENDING;
    r->conn = NULL;
    r->stream_id = 0;
    if (front)
        pgw_list_push_front(&pool->pend, &r->node);
    else
        pgw_list_push_back(&pool->pend, &r->node);
    pool->n_pending++;
}

static void stream_unlink(struct h2conn *c, struct h2req *r)
{
    pgw_list_remove(&r->node);
    r->conn = NULL;
    c->n_streams--;
    c->pool->n_in_flight--;
}

static void stream_link(struct h2conn *c, struct h2req *r)
{
    r->where = R_STREAM;
    r->conn = c;
    pgw_list_push_front(&c->streams, &r->node);
    c->n_streams++;
    c->pool->n_in_flight++;
}

static void done_push(struct pgw_h2_pool *pool, struct h2req *r,
                      enum pgw_h2_result_kind kind, const char *error)
{
    r->where = R_DONE;
    r->done_kind = kind;
    snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
    pgw_list_push_back(&pool->done, &r->node);
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
    r->retries = 0;
    r->status = 0;
    r->n_hdr = 0;
    r->hbuf_len = 0;
    r->rbody_len = 0;
    r->truncated = false;
    r->error[0] = '\0';
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
    memset(&res, 0, sizeof(res));
    res.kind = kind;
    res.error = "";
    if (kind == PGW_H2_RESPONSE) {
        for (i = 0; i < r->n_hdr; i++) {
            hdrs[i].name = r->hbuf + r->hdr_off[i][0];
            hdrs[i].name_len = r->hdr_len[i][0];
            hdrs[i].value = r->hbuf + r->hdr_off[i][1];
            hdrs[i].value_len = r->hdr_len[i][1];
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

/* ------------------------------------------------------------------ */
/* connections */

static void conn_close(struct h2conn *c, enum pgw_h2_result_kind lost_kind,
                       const char *why);
static void conn_flush(struct h2conn *c);
static void conn_try_next_addr(struct h2conn *c);

static unsigned stream_limit(const struct h2conn *c)
{
    uint32_t peer = nghttp2_session_get_remote_settings(
        c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    unsigned cap = c->pool->o.max_streams_per_conn;

    return peer < cap ? (unsigned)peer : cap;
}

static void conn_detach_slot(struct h2conn *c)
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

static void conn_free(struct h2conn *c)
{
    if (c->dns_req) {
        struct evdns_getaddrinfo_request *q = c->dns_req;

        c->dns_req = NULL;
        /* Runs the callback with EVUTIL_EAI_CANCEL; it only clears. */
        evdns_getaddrinfo_cancel(q);
    }
    if (c->bev)
        bufferevent_free(c->bev);
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

/*
 * A connection attempt failed: remember and log why once, back the slot
 * off, close. |msg| is the reason without the "could not connect" part.
 */
static void conn_fail(struct h2conn *c, const char *msg)
{
    struct pgw_h2_pool *pool = c->pool;
    char buf[ERR_MAX];

    snprintf(buf, sizeof(buf), "could not connect to '%s': %s", pool->authority,
             msg);
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
    conn_close(c, PGW_H2_CONNECT_FAILED, buf);
}

/*
 * Closes |c| now (it stops reading and writing) and frees it later.
 * Requests on it whose HEADERS never left are requeued; the others end
 * with |lost_kind| and |why|. Never called from inside an nghttp2 callback.
 */
static void conn_close(struct h2conn *c, enum pgw_h2_result_kind lost_kind,
                       const char *why)
{
    struct pgw_h2_pool *pool = c->pool;
    struct h2req *r;

    if (c->state == C_CLOSED)
        return;
    c->state = C_CLOSED;
    conn_detach_slot(c);
    if (c->bev) {
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
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

/*
 * A connection ended for |why|; logged once. One that never became ready
 * (the server's SETTINGS never came) is a failed connection attempt, with
 * its backoff: a server that completes TLS and then speaks something else
 * must not be reconnected to at once, again and again.
 */
static void conn_lost(struct h2conn *c, const char *why)
{
    struct pgw_h2_pool *pool = c->pool;
    char buf[ERR_MAX];

    if (!c->was_ready) {
        conn_fail(c, why);
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
    conn_close(c, PGW_H2_CONN_LOST, buf);
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
    r->hdr_off[r->n_hdr][0] = (uint32_t)r->hbuf_len;
    r->hdr_len[r->n_hdr][0] = (uint32_t)namelen;
    memcpy(r->hbuf + r->hbuf_len, name, namelen);
    r->hbuf_len += namelen;
    r->hbuf[r->hbuf_len++] = '\0';
    r->hdr_off[r->n_hdr][1] = (uint32_t)r->hbuf_len;
    r->hdr_len[r->n_hdr][1] = (uint32_t)valuelen;
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
        conn_detach_slot(c);
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

static ssize_t body_read(nghttp2_session *session, int32_t stream_id,
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

/* Writes as much nghttp2 output as the high-water mark allows. */
static void conn_flush(struct h2conn *c)
{
    struct evbuffer *out;
    int rc;

    c->want_flush = false;
    if (c->state == C_CLOSED || !c->session)
        return;
    out = bufferevent_get_output(c->bev);
    rc = pgw_h2out_send(c->session, out, OUT_HIGH_WATER);
    if (rc < 0) {
        conn_lost(c, rc == NGHTTP2_ERR_NOMEM ? "out of memory"
                                             : nghttp2_strerror(rc));
        return;
    }
    if (c->state == C_DRAINING && pgw_list_empty(&c->streams) &&
        evbuffer_get_length(out) == 0) {
        /* GOAWAY and nothing left: a quiet close, not a loss. */
        conn_close(c, PGW_H2_CONN_LOST, "connection closed after GOAWAY");
        return;
    }
    if (!nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session) &&
        evbuffer_get_length(out) == 0)
        conn_lost(c, "session ended");
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
                conn_lost(c, buf);
                return;
            }
            total += v[i].iov_len;
        }
        evbuffer_drain(in, total);
        if (c->state == C_CLOSED)
            return;
    }
    conn_flush(c);
}

/* Fires when the output drained below the low-water mark. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct h2conn *c = arg;

    (void)bev;
    conn_flush(c);
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
        conn_fail(c, "out of memory");
        return;
    }
    conn_init_lists(n);
    n->pool = pool;
    n->slot = slot;
    n->id = c->id;
    n->state = C_CONNECTING;
    n->started_ms = c->started_ms;
    n->addrs = c->addrs;
    n->cur_addr = c->cur_addr->ai_next;
    c->addrs = NULL;
    c->cur_addr = NULL;
    c->slot = -1;
    conn_close(c, PGW_H2_CONN_LOST, "next address");
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

        if (fd >= 0)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
        if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
            conn_fail(c, "server did not negotiate 'h2' with ALPN");
            return;
        }
        if (conn_start_h2(c) != 0) {
            conn_fail(c, "could not start the HTTP/2 session");
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
            if (!c->session && c->cur_addr && c->cur_addr->ai_next) {
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
        conn_fail(c, buf);
        return;
    }
    if (what & BEV_EVENT_EOF)
        conn_lost(c, "closed by peer");
    else {
        int err = EVUTIL_SOCKET_ERROR();

        describe_tls_error(c, buf, sizeof(buf));
        if (buf[0] == '\0')
            snprintf(buf, sizeof(buf), "%s",
                     err ? evutil_socket_error_to_string(err) : "I/O error");
        conn_lost(c, buf);
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

static void conn_try_next_addr(struct h2conn *c)
{
    struct pgw_h2_pool *pool = c->pool;
    SSL *ssl = NULL;
    struct evutil_addrinfo *ai = c->cur_addr;

    ssl = SSL_new(pool->ssl_ctx);
    if (!ssl) {
        conn_fail(c, "could not create a TLS session");
        return;
    }
    if (pool->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), pool->host) != 1)
            goto fail_ssl;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl, pool->host) != 1 ||
            SSL_set_tlsext_host_name(ssl, pool->host) != 1)
            goto fail_ssl;
    }
    c->bev = bufferevent_openssl_socket_new(
        pool->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        goto fail_ssl;
    ssl = NULL; /* owned by the bufferevent */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, NULL, NULL, conn_event_cb, c);
    c->state = C_CONNECTING;
    if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) !=
        0) {
        char buf[ERR_MAX];

        snprintf(buf, sizeof(buf), "%s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_fail(c, buf);
    }
    return;
fail_ssl:
    SSL_free(ssl);
    conn_fail(c, "could not set up TLS");
}

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
        snprintf(buf, sizeof(buf), "could not resolve '%s': %s", c->pool->host,
                 evutil_gai_strerror(result));
        if (res)
            evutil_freeaddrinfo(res);
        conn_fail(c, buf);
        return;
    }
    c->addrs = res;
    c->cur_addr = res;
    conn_try_next_addr(c);
}

/* Opens a new connection in slot |i|. */
static void slot_connect(struct pgw_h2_pool *pool, unsigned i)
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
    q = evdns_getaddrinfo(pool->dns, pool->host, pool->port, &hints,
                          conn_dns_cb, c);
    if (c->dns_pending)
        c->dns_req = q;
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
        prd.read_callback = body_read;
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
            conn_detach_slot(c);
            continue;
        }
        r->stream_id = id;
        stream_link(c, r);
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

/* Fires once per loop iteration when kicked, and from the tick. */
static void work_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_h2_pool *pool = arg;
    struct pgw_list *pos, *next;
    struct h2conn *c;
    struct h2req *r;
    unsigned i, live = 0;
    int64_t now = pgw_clock_mono_ms();

    (void)fd;
    (void)what;
    assign_pending(pool);
    if (!pgw_list_empty(&pool->pend)) {
        for (i = 0; i < pool->o.connections; i++) {
            if (pool->slots[i].conn)
                continue;
            if (pool->slots[i].next_attempt_ms > now)
                continue;
            slot_connect(pool, i);
        }
    }
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
            conn_flush(c);
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
        conn_free(c);
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
                conn_lost(c, "requests time out before they are sent");
        }
    } else {
        return; /* already decided */
    }
    done_push(pool, r, PGW_H2_TIMEOUT, buf);
}

/* Fires every tick: deadlines, connect timeouts, PINGs. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_h2_pool *pool = arg;
    struct pgw_list *pos, *next;
    int64_t now = pgw_clock_mono_ms();
    bool any = false;

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
                conn_fail(c, buf);
                any = true;
            }
            break;
        case C_READY:
        case C_DRAINING:
            if (c->ping_outstanding) {
                if (now - c->ping_sent_ms >= pool->o.ping_timeout_ms) {
                    pgw_log_warnf(
                        PGW_FIELDS(PGW_LF_STR("pool", conn_label(pool)),
                                   PGW_LF_INT("conn", c->id)),
                        "connection to '%s' is dead: no PING answer within "
                        "%u ms",
                        pool->authority, pool->o.ping_timeout_ms);
                    pool->st.dead_connections++;
                    conn_close(c, PGW_H2_CONN_LOST,
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
    if (any || !pgw_list_empty(&pool->pend) || !pgw_list_empty(&pool->done))
        kick(pool);
}

/* ------------------------------------------------------------------ */
/* public API */

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
#undef DFLT
    if (pool->o.connections > 64) {
        ret = PGW_ERR_INVAL;
        goto fail;
    }
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
    pool->ssl_ctx = make_ssl_ctx(pool->ca_file, opts->identity);
    if (!pool->ssl_ctx) {
        ret = PGW_ERR_TLS;
        goto fail;
    }
    pool->slots = calloc(pool->o.connections, sizeof(*pool->slots));
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
    for (i = 0; i < self->o.connections; i++)
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
        conn_close(c, PGW_H2_CANCELLED, "pool freed");
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
        conn_free(c);
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
