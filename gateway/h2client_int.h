/*
 * Internal to the HTTP/2 client's two files: h2client.c (the pool: slots,
 * the request lists, submit, the work and tick events, the public calls)
 * and h2conn.c (one connection's state machine: DNS, TCP, TLS, the
 * nghttp2 session, GOAWAY, PING, close). Nothing else includes it; the
 * contract is h2client.h.
 *
 * The list helpers below run for every request several times: they are
 * inline here so neither file pays a call for them. Functions h2client.c
 * calls in h2conn.c carry the h2conn_ prefix.
 */
#ifndef PUSHGW_H2CLIENT_INT_H
#define PUSHGW_H2CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "h2client.h"
#include "proxy.h"
#include "util/list.h"

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

/* Fields in the order a push touches them, so that one takes four cache
 * lines of its request (the first, the response's scalars, its first
 * headers) and not one per array: a request is cold by the time its
 * answer comes. The error text, for failures only, comes last. */
struct h2req {
    struct pgw_list all;  /* on the pool's |all|, in submit order */
    struct pgw_list node; /* on the pending, a stream, done or free list */
    struct h2conn *conn;
    enum req_where where;
    int32_t stream_id;
    bool headers_sent;
    bool truncated; /* of the response body */
    bool probe;     /* its answer's latency is the pool's next sample */
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
    /* Result decided before the callback runs (done list). */
    enum pgw_h2_result_kind done_kind;
    size_t n_hdr;
    char *hbuf;
    size_t hbuf_len, hbuf_cap;
    char *rbody;
    size_t rbody_len, rbody_cap;
    /* below PGW_H2_MAX_HEADER_BYTES; [0] the name, [1] the value */
    struct {
        uint32_t off[2];
        uint32_t len[2];
    } hdr[PGW_H2_MAX_RESPONSE_HEADERS];

    char error[ERR_MAX]; /* set with |done_kind| unless a response */
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
    /* |first_addr|: where the attempts started (the address the pool's
     * connections used least); they go round the list from there. */
    struct evutil_addrinfo *addrs, *first_addr, *cur_addr;
    struct bufferevent *bev;
    /* Through a proxy: the plain TCP connection while CONNECT is
     * answered, then, its socket handed to |bev|, an empty shell freed
     * once TLS is up (never inside its own callback). */
    struct bufferevent *tunnel;
    nghttp2_session *session;
    struct pgw_list streams; /* requests on a stream */
    size_t n_streams;        /* requests linked on |streams| */
    int64_t started_ms, last_read_ms, ping_sent_ms;
    bool ping_outstanding;
    bool want_flush;
    bool was_ready;
    bool once_sent; /* a request with index-once headers went on it */
    bool retiring;  /* unneeded: GOAWAY sent, closes when its streams end */
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
    struct pgw_proxy *proxy; /* NULL: direct connections */
    char *proxy_request;     /* the CONNECT request; holds credentials */

    /* |n_slots| = max_connections; the first |o.connections| are the
     * minimum, kept open, the others are opened only when saturated. */
    struct h2slot *slots;
    unsigned n_slots;
    /* The current window of idle_close_ms: the most requests on a stream
     * at once, and whether any waited while every stream was busy. */
    int64_t window_start_ms;
    size_t window_peak;
    bool window_saturated;
    uint64_t grown_at; /* st.responses when it last opened more */
    /* One request at a time is timed from being sent to its answer, with
     * the time the loop thread ran or waited for a CPU over the same span: the
     * last such sample decides growth (pgw_h2_pool_should_grow). */
    bool probe_out;
    int64_t probe_us, probe_busy_us;
    uint64_t answer_us, answer_busy_us;
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
/* helpers both files use on the request path */

static inline void kick(struct pgw_h2_pool *pool)
{
    event_active(pool->ev_work, EV_TIMEOUT, 0);
}

static inline const char *conn_label(const struct pgw_h2_pool *pool)
{
    return pool->name;
}

static inline struct h2req *req_of(struct pgw_list *node)
{
    return node ? pgw_list_entry(node, struct h2req, node) : NULL;
}

static inline void pend_push(struct pgw_h2_pool *pool, struct h2req *r,
                             bool front)
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

static inline void stream_unlink(struct h2conn *c, struct h2req *r)
{
    pgw_list_remove(&r->node);
    r->conn = NULL;
    c->n_streams--;
    c->pool->n_in_flight--;
}

static inline void done_push(struct pgw_h2_pool *pool, struct h2req *r,
                             enum pgw_h2_result_kind kind, const char *error)
{
    r->where = R_DONE;
    r->done_kind = kind;
    if (kind != PGW_H2_RESPONSE) /* a response's result carries no error */
        snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
    pgw_list_push_back(&pool->done, &r->node);
}

/* ------------------------------------------------------------------ */
/* h2conn.c */

/* Opens a new connection in slot |i|. */
void h2conn_open(struct pgw_h2_pool *pool, unsigned i);

/* Takes |c| out of its slot, if it has one, so that a fresh connection can
 * take the slot; |c| stays on the pool's list until it is closed. */
void h2conn_detach_slot(struct h2conn *c);

/* The pool does not need |c| (ready, above the minimum): it leaves its
 * slot, takes no new streams, sends GOAWAY(NO_ERROR) and closes quietly
 * once its streams have ended. */
void h2conn_retire(struct h2conn *c);

/*
 * Closes |c| now (it stops reading and writing) and frees it later.
 * Requests on it whose HEADERS never left are requeued; the others end
 * with |lost_kind| and |why|. Never called from inside an nghttp2 callback.
 */
void h2conn_close(struct h2conn *c, enum pgw_h2_result_kind lost_kind,
                  const char *why);

/*
 * A connection attempt failed: remember and log why once, back the slot
 * off, close. |msg| is the reason without the "could not connect" part.
 */
void h2conn_fail(struct h2conn *c, const char *msg);

/*
 * A connection ended for |why|; logged once. One that never became ready
 * (the server's SETTINGS never came) is a failed connection attempt, with
 * its backoff: a server that completes TLS and then speaks something else
 * must not be reconnected to at once, again and again.
 */
void h2conn_lost(struct h2conn *c, const char *why);

/* Writes as much nghttp2 output as the high-water mark allows. */
void h2conn_flush(struct h2conn *c);

/* Frees a closed |c| and what its session still holds (from the dead list). */
void h2conn_free(struct h2conn *c);

/* nghttp2's data source for a request body (the request is the stream's
 * user data). */
ssize_t h2conn_body_read(nghttp2_session *session, int32_t stream_id,
                         uint8_t *buf, size_t length, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user_data);

#endif
