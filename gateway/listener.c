/*
 * One HTTP listener and its route table; see listener.h.
 *
 * Structure: set-up (address, TLS, evhttp), the route table and the one
 * evhttp callback that dispatches on it, the answers (now, or posted from
 * another thread through the listener's mailbox), and the slow-client
 * guards ("request deadline"), which wrap every connection's
 * bufferevent.
 */
#include "listener.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "httpframe.h"
#include "log.h"
#include "pushgw.h"
#include "util/clock.h"
#include "xqueue.h"

#define DEFAULT_TIMEOUT_MS 15000
#define DEFAULT_MAX_HEADER 16384
#define DEFAULT_MAX_BODY 1048576
/* libevent listens with a backlog of 128: a broker opening more
 * connections at once while the loop is busy had the SYNs beyond it
 * dropped and retried a second later. listen() again sets the backlog of
 * the bound socket; the kernel caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 4096
#define MAX_SEGMENTS 16

struct route {
    unsigned methods;
    char *pattern;
    /* segments of |pattern| (pointers into |buf|); NULL for "{…}" */
    const char *seg[MAX_SEGMENTS];
    size_t n_seg;
    char *buf;
    pgw_route_fn fn;
    void *ctx;
};

/* One connection: see "request deadline" and "framing". */
struct conn_guard {
    struct pgw_listener *l;
    struct bufferevent *bev;
    int64_t started_ms; /* pgw_clock_mono_ms() */
    bool in_request;
    unsigned answering; /* requests handed to a route, not yet answered */
    /* When it last had nothing to do, as an order (l->idle_ticks): the
     * clock's milliseconds tie when a burst is accepted at once, and
     * "the oldest idle" must be exact. */
    uint64_t idle_since;
    struct pgw_httpframe fr;
};

struct pgw_listener {
    uint64_t idle_ticks; /* conn_guard.idle_since */
    struct event_base *base;
    char *name;
    char *address;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ssl_ctx;
    struct pgw_xqueue *replies; /* answers posted from other threads */
    pgw_listener_refused_fn refused;
    void *refused_arg;
    struct pgw_httpframe_limits frame_limits; /* max_header, max_body */
    bool closed;

    /* Accepting (see "connections"): paused at |max_conns| or when
     * accept() ran out of descriptors; |saturated| is read by any
     * thread. */
    size_t max_conns;
    bool paused_full;     /* at the cap */
    bool paused_fds;      /* after EMFILE/ENFILE, until the timer */
    struct event *resume; /* the accept-error pause */
    atomic_bool saturated;
    int64_t last_fd_warn_ms;

    struct route *routes;
    size_t n_routes;

    /* Per-connection request deadline (slowloris): see guard_in(). */
    unsigned deadline_ms;
    struct conn_guard **guards; /* open addressing, keyed by bufferevent */
    size_t guards_cap;
    size_t guards_n;
    struct event *guard_timer;
};

struct conn_guard;
static struct conn_guard *guard_request_done(struct pgw_listener *l,
                                             struct evhttp_request *req);
static void on_answered(struct evhttp_request *req, void *arg);

/* ---- answers ------------------------------------------------------------ */

/* Our reason phrases (libevent's for the rest). */
static const char *reason_of(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return NULL;
    }
}

int pgw_listener_json_string(struct evbuffer *buf, const char *s)
{
    char small[512];
    size_t need = pgw_log_json_string(small, sizeof(small), s);
    if (need < sizeof(small))
        return evbuffer_add(buf, small, need);
    char *big = malloc(need + 1);
    if (big == NULL)
        return -1;
    pgw_log_json_string(big, need + 1, s);
    int r = evbuffer_add(buf, big, need);
    free(big);
    return r;
}

void pgw_listener_send_json(struct evhttp_request *req, int code,
                            struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason_of(code), body);
}

void pgw_listener_send_error(struct evhttp_request *req, int code,
                             const char *error, const char *field,
                             const char *retry_after)
{
    struct evbuffer *body = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (retry_after != NULL)
        evhttp_add_header(h, "Retry-After", retry_after);
    if (body == NULL || evbuffer_add_printf(body, "{\"error\":") < 0 ||
        pgw_listener_json_string(body, error) < 0 ||
        evbuffer_add_printf(body, ",\"field\":") < 0 ||
        pgw_listener_json_string(body, field != NULL ? field : "") < 0 ||
        evbuffer_add(body, "}", 1) < 0) {
        /* Out of memory: the status alone still tells the client. */
        if (body != NULL)
            evbuffer_drain(body, evbuffer_get_length(body));
    }
    pgw_listener_send_json(req, code, body);
    if (body != NULL)
        evbuffer_free(body);
}

const char *pgw_listener_body(struct evhttp_request *req, size_t *ret_len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    *ret_len = len;
    if (len == 0)
        return "";
    return (const char *)evbuffer_pullup(in, -1);
}

/* An answer posted from another thread. */
struct reply {
    struct pgw_xmsg msg; /* first */
    struct evhttp_request *req;
    int code;
    struct evbuffer *json; /* the body, or NULL for an error body */
    char *error;
    char *field;
    const char *retry_after;
    bool close;
};

static void reply_free(struct reply *r)
{
    if (r->json != NULL)
        evbuffer_free(r->json);
    free(r->error);
    free(r->field);
    free(r);
}

/* Runs on the listener's thread: sends the answer. */
static void reply_run(struct pgw_xmsg *m)
{
    struct reply *r = (struct reply *)m;

    if (r->close)
        evhttp_add_header(evhttp_request_get_output_headers(r->req),
                          "Connection", "close");
    if (r->json != NULL)
        pgw_listener_send_json(r->req, r->code, r->json);
    else
        pgw_listener_send_error(r->req, r->code, r->error, r->field,
                                r->retry_after);
    reply_free(r);
}

static void post_reply(struct pgw_listener *l, struct evhttp_request *req,
                       int code, struct evbuffer *json, const char *error,
                       const char *field, const char *retry_after, bool close)
{
    struct reply *r = calloc(1, sizeof(*r));

    if (r != NULL && json == NULL) {
        r->error = strdup(error != NULL ? error : "");
        r->field = strdup(field != NULL ? field : "");
    }
    if (r == NULL || (json == NULL && (r->error == NULL || r->field == NULL))) {
        /* Nothing reaches the listener's thread without memory: the
         * request is left to its connection's deadline. */
        pgw_log_error("out of memory answering a request");
        if (r != NULL)
            reply_free(r);
        if (json != NULL)
            evbuffer_free(json);
        return;
    }
    r->msg.run = reply_run;
    r->req = req;
    r->code = code;
    r->json = json;
    r->retry_after = retry_after;
    r->close = close;
    pgw_xqueue_post(l->replies, &r->msg);
}

void pgw_listener_reply_json(struct pgw_listener *self,
                             struct evhttp_request *req, int code,
                             struct evbuffer *json, bool close)
{
    post_reply(self, req, code, json, NULL, NULL, NULL, close);
}

void pgw_listener_reply_error(struct pgw_listener *self,
                              struct evhttp_request *req, int code,
                              const char *error, const char *field,
                              const char *retry_after, bool close)
{
    post_reply(self, req, code, NULL, error, field, retry_after, close);
}

/* ---- routes ------------------------------------------------------------- */

int pgw_listener_route(struct pgw_listener *self, unsigned methods,
                       const char *pattern, pgw_route_fn fn, void *ctx)
{
    struct route r = {.methods = methods, .fn = fn, .ctx = ctx};
    struct route *grown;
    size_t n_ids = 0;
    char *save = NULL;

    if (methods == 0 || fn == NULL || pattern == NULL || pattern[0] != '/')
        return PGW_ERR_INVAL;
    r.pattern = strdup(pattern);
    r.buf = strdup(pattern);
    if (r.pattern == NULL || r.buf == NULL)
        goto nomem;
    for (char *s = strtok_r(r.buf, "/", &save); s != NULL;
         s = strtok_r(NULL, "/", &save)) {
        size_t len = strlen(s);
        bool id = s[0] == '{' && len >= 3 && s[len - 1] == '}';

        if (r.n_seg == MAX_SEGMENTS || (id && ++n_ids > PGW_LISTENER_MAX_IDS) ||
            (!id && (strchr(s, '{') != NULL || strchr(s, '}') != NULL)))
            goto inval;
        r.seg[r.n_seg++] = id ? NULL : s;
    }
    grown = realloc(self->routes, (self->n_routes + 1) * sizeof(*grown));
    if (grown == NULL)
        goto nomem;
    self->routes = grown;
    self->routes[self->n_routes++] = r;
    return 0;
inval:
    free(r.pattern);
    free(r.buf);
    return PGW_ERR_INVAL;
nomem:
    free(r.pattern);
    free(r.buf);
    return PGW_ERR_NOMEM;
}

/* A {…} segment, decoded: NULL when unusable (see listener.h). */
static char *decode_id(const char *seg, size_t seg_len)
{
    char raw[PGW_LISTENER_MAX_ID_BYTES * 3 + 1];
    size_t len = 0;
    char *dec;

    if (seg_len > PGW_LISTENER_MAX_ID_BYTES * 3)
        return NULL;
    memcpy(raw, seg, seg_len);
    raw[seg_len] = '\0';
    dec = evhttp_uridecode(raw, 0, &len);
    if (dec != NULL &&
        (len == 0 || len > PGW_LISTENER_MAX_ID_BYTES || strlen(dec) != len)) {
        free(dec);
        dec = NULL;
    }
    return dec;
}

/*
 * Whether |path| matches |r|; on a match, |m| gets its ids (malloc'd,
 * freed by the caller with match_release()). Empty segments ("//", a
 * trailing '/') never match.
 */
static bool match(const struct route *r, const char *path,
                  struct pgw_route_match *m, char **ids)
{
    const char *p = path;
    size_t n_ids = 0;

    for (size_t i = 0; i < r->n_seg; i++) {
        const char *end;
        size_t len;

        if (*p != '/')
            goto no;
        p++;
        end = strchr(p, '/');
        len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            goto no;
        if (r->seg[i] != NULL) {
            if (strlen(r->seg[i]) != len || memcmp(r->seg[i], p, len) != 0)
                goto no;
        } else {
            ids[n_ids++] = decode_id(p, len);
        }
        p += len;
    }
    if (*p != '\0')
        goto no;
    m->path = path;
    m->n_ids = n_ids;
    for (size_t i = 0; i < n_ids; i++)
        m->ids[i] = ids[i];
    return true;
no:
    for (size_t i = 0; i < n_ids; i++) {
        free(ids[i]);
        ids[i] = NULL;
    }
    return false;
}

/* "GET, HEAD, POST" from EVHTTP_REQ_* bits. */
static void allow_header(unsigned methods, char *buf, size_t size)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {EVHTTP_REQ_GET, "GET"},         {EVHTTP_REQ_HEAD, "HEAD"},
        {EVHTTP_REQ_POST, "POST"},       {EVHTTP_REQ_PUT, "PUT"},
        {EVHTTP_REQ_DELETE, "DELETE"},   {EVHTTP_REQ_PATCH, "PATCH"},
        {EVHTTP_REQ_OPTIONS, "OPTIONS"},
    };
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < PGW_ARRAY_SIZE(names); i++) {
        if (!(methods & names[i].bit))
            continue;
        int n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "",
                         names[i].name);
        if (n < 0 || (size_t)n >= size - off)
            break;
        off += (size_t)n;
    }
}

/* Fires for every request read whole (the listener's thread); routes it.
 * Frees nothing the caller uses. */
static void on_request(struct evhttp_request *req, void *arg)
{
    struct pgw_listener *l = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    unsigned cmd = (unsigned)evhttp_request_get_command(req);
    struct pgw_route_match m = {0};
    char *ids[PGW_LISTENER_MAX_IDS] = {0};
    const struct route *hit = NULL;
    unsigned allowed = 0;

    const struct conn_guard *g = guard_request_done(l, req);
    const struct pgw_httpframe *fr = g != NULL ? &g->fr : NULL;
    if (l->closed) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                          "close");
        pgw_listener_send_error(req, 503, "shutting down", "",
                                PGW_LISTENER_RETRY_AFTER_DOWN);
        return;
    }
    for (size_t i = 0; path != NULL && i < l->n_routes; i++) {
        const struct route *r = &l->routes[i];

        if (!match(r, path, &m, ids))
            continue;
        if (r->methods & cmd) {
            hit = r;
            break;
        }
        allowed |= r->methods;
        for (size_t j = 0; j < m.n_ids; j++) {
            free(ids[j]);
            ids[j] = NULL;
        }
        m.n_ids = 0;
    }
    if (fr != NULL && fr->refuse_at != 0 && fr->refuse_at == fr->delivered) {
        /* Refused while it was read (see "framing"); its connection
         * cannot carry another request. */
        if (hit != NULL && l->refused != NULL)
            l->refused(l->refused_arg, req, &m, hit->ctx, fr->refuse_code);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
                          "close");
        if (fr->refuse_code == 413) {
            char why[96];

            snprintf(why, sizeof(why), "body over %zu bytes",
                     l->frame_limits.max_body);
            pgw_listener_send_error(req, 413, why, "", NULL);
        } else {
            pgw_listener_send_error(req, fr->refuse_code, fr->refuse_why,
                                    fr->refuse_field, NULL);
        }
        goto out;
    }
    if (hit == NULL && allowed == 0) {
        pgw_listener_send_error(req, 404, "not found", "", NULL);
        goto out;
    }
    if (hit == NULL) {
        char allow[64];

        allow_header(allowed, allow, sizeof(allow));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          allow);
        pgw_listener_send_error(req, 405, "method not allowed", "", NULL);
        goto out;
    }
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) >
        l->frame_limits.max_body) {
        char why[96];

        if (l->refused != NULL)
            l->refused(l->refused_arg, req, &m, hit->ctx, 413);
        snprintf(why, sizeof(why), "body over %zu bytes",
                 l->frame_limits.max_body);
        pgw_listener_send_error(req, 413, why, "", NULL);
    } else {
        hit->fn(req, &m, hit->ctx);
    }
out:
    for (size_t j = 0; j < m.n_ids; j++)
        free(ids[j]);
}

/* ---- request deadline ---------------------------------------------------
 *
 * libevent 2.1 restarts a connection's read timeout at every byte, so a
 * client trickling its headers one byte at a time is never timed out and
 * holds its socket forever (slowloris). Each connection gets a guard: a
 * callback on its input buffer notes when a request's first byte
 * arrives, on_request() marks the request complete, and a sweep every
 * |deadline_ms| / 4 hands a request still incomplete after |deadline_ms|
 * to evhttp's own timeout path, which closes it. A client that stops
 * sending altogether meets the read timeout instead.
 *
 * The guard holds a reference on the bufferevent (bufferevent_incref), so
 * it stays valid after evhttp frees it; the sweep sees the callbacks
 * cleared by bufferevent_free() and drops the reference (the socket then
 * closes). Guards are found by bufferevent in a small hash.
 */

static size_t guard_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static bool guard_grow(struct pgw_listener *l)
{
    size_t cap = l->guards_cap ? l->guards_cap * 2 : 64;
    struct conn_guard **slots = calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return false;
    for (size_t i = 0; i < l->guards_cap; i++) {
        struct conn_guard *g = l->guards[i];
        if (g == NULL)
            continue;
        size_t j = guard_hash(g->bev, cap);
        while (slots[j] != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = g;
    }
    free(l->guards);
    l->guards = slots;
    l->guards_cap = cap;
    return true;
}

static bool guard_add(struct pgw_listener *l, struct conn_guard *g)
{
    size_t j;

    if ((l->guards_n + 1) * 2 > l->guards_cap && !guard_grow(l))
        return false;
    j = guard_hash(g->bev, l->guards_cap);
    while (l->guards[j] != NULL)
        j = (j + 1) & (l->guards_cap - 1);
    l->guards[j] = g;
    l->guards_n++;
    return true;
}

static size_t guard_slot(const struct pgw_listener *l,
                         const struct bufferevent *bev)
{
    size_t j;

    if (l->guards_cap == 0 || bev == NULL)
        return SIZE_MAX;
    j = guard_hash(bev, l->guards_cap);
    while (l->guards[j] != NULL) {
        if (l->guards[j]->bev == bev)
            return j;
        j = (j + 1) & (l->guards_cap - 1);
    }
    return SIZE_MAX;
}

/* Empties slot |j|, moving back the entries that probed past it. */
static void guard_remove_slot(struct pgw_listener *l, size_t j)
{
    size_t mask = l->guards_cap - 1;

    l->guards[j] = NULL;
    l->guards_n--;
    for (size_t i = (j + 1) & mask; l->guards[i] != NULL; i = (i + 1) & mask) {
        struct conn_guard *g = l->guards[i];
        size_t home = guard_hash(g->bev, l->guards_cap);
        /* |g| may fill the hole unless its home lies cyclically in
         * (j, i]. */
        bool stays = j < i ? (home > j && home <= i) : (home > j || home <= i);
        if (!stays) {
            l->guards[j] = g;
            l->guards[i] = NULL;
            j = i;
        }
    }
}

/* The request on |req|'s connection was read whole: stops its clock,
 * counts it as being answered; returns its connection's guard (NULL when
 * unguarded). */
static struct conn_guard *guard_request_done(struct pgw_listener *l,
                                             struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    size_t j = guard_slot(
        l, evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL);
    struct conn_guard *g;

    if (j == SIZE_MAX)
        return NULL;
    g = l->guards[j];
    g->in_request = false;
    g->fr.delivered++;
    g->answering++;
    evhttp_request_set_on_complete_cb(req, on_answered, g);
    return g;
}

/* Fires when the answer to a request was written; the guard is alive
 * (its connection still is). */
static void on_answered(struct evhttp_request *req, void *arg)
{
    struct conn_guard *g = arg;
    (void)req;

    if (g->answering > 0)
        g->answering--;
    g->idle_since = ++g->l->idle_ticks;
}

/* Fires when bytes are added to or drained from a connection's input. */
static void guard_input_cb(struct evbuffer *buf,
                           const struct evbuffer_cb_info *info, void *arg)
{
    struct conn_guard *g = arg;

    /* evhttp drains from the front only */
    g->fr.scanned -=
        info->n_deleted < g->fr.scanned ? info->n_deleted : g->fr.scanned;
    if (info->n_added == 0)
        return;
    if (!g->in_request) {
        g->in_request = true;
        g->started_ms = pgw_clock_mono_ms();
    }
    if (g->fr.st != PGW_FS_OFF || g->fr.pending_crlf > 0)
        pgw_httpframe_scan(&g->l->frame_limits, &g->fr, buf);
}

/* Drops the guards of connections evhttp has freed (their callbacks are
 * cleared), except |keep|: a connection still being set up. */
static void guard_reap(struct pgw_listener *l, const struct conn_guard *keep)
{
    for (size_t j = 0; j < l->guards_cap; j++) {
        struct conn_guard *g = l->guards[j];
        bufferevent_event_cb ecb = NULL;

        if (g == NULL || g == keep)
            continue;
        bufferevent_getcb(g->bev, NULL, NULL, &ecb, NULL);
        if (ecb == NULL) {
            /* Freed by evhttp: drop our reference (closes the socket). */
            guard_remove_slot(l, j);
            bufferevent_decref(g->bev);
            free(g);
            j--; /* the slot may have been refilled by the shift */
        }
    }
}

/* ---- connections --------------------------------------------------------
 *
 * At most |max_conns| connections per listener: a new connection over the
 * cap closes the connection idle the longest (no request being read or
 * answered); when none is idle, the listener stops accepting (new clients
 * wait in the kernel's backlog) until one closes or goes idle. accept()
 * failing for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) closes
 * the oldest idle connection instead (the next accept takes its
 * descriptor), or, with none idle, pauses accepting for ACCEPT_PAUSE_MS;
 * one log line per ACCEPT_WARN_MS: libevent would retry at once, forever,
 * at full CPU, logging each failure. Paused, the listener is saturated
 * (pgw_listener_saturated(), /readyz).
 */

#define ACCEPT_PAUSE_MS 250
#define ACCEPT_WARN_MS 10000

static bool guard_idle(const struct conn_guard *g)
{
    bufferevent_event_cb ecb = NULL;

    bufferevent_getcb(g->bev, NULL, NULL, &ecb, NULL);
    return ecb != NULL && !g->in_request && g->answering == 0;
}

/* Closes the connection idle the longest, other than |keep|; false when
 * none is idle. */
static bool close_oldest_idle(struct pgw_listener *l,
                              const struct conn_guard *keep)
{
    struct conn_guard *oldest = NULL;
    bufferevent_event_cb ecb = NULL;
    void *cbarg = NULL;

    for (size_t j = 0; j < l->guards_cap; j++) {
        struct conn_guard *g = l->guards[j];

        if (g == NULL || g == keep || !guard_idle(g))
            continue;
        if (oldest == NULL || g->idle_since < oldest->idle_since)
            oldest = g;
    }
    if (oldest == NULL)
        return false;
    bufferevent_getcb(oldest->bev, NULL, NULL, &ecb, &cbarg);
    /* evhttp's read-timeout path: it frees the connection. */
    ecb(oldest->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, cbarg);
    guard_reap(l, keep);
    return true;
}

static bool any_idle(const struct pgw_listener *l,
                     const struct conn_guard *keep)
{
    for (size_t j = 0; j < l->guards_cap; j++) {
        const struct conn_guard *g = l->guards[j];
        if (g != NULL && g != keep && guard_idle(g))
            return true;
    }
    return false;
}

/* Accepts or not, as the pauses say. */
static void set_accepting(struct pgw_listener *l)
{
    struct evconnlistener *lev =
        l->bound != NULL ? evhttp_bound_socket_get_listener(l->bound) : NULL;
    bool paused = l->paused_full || l->paused_fds;

    if (lev != NULL) {
        if (paused)
            evconnlistener_disable(lev);
        else
            evconnlistener_enable(lev);
    }
    atomic_store(&l->saturated, paused);
}

/* A new connection |g| was accepted: keep to the cap. */
static void admit_connection(struct pgw_listener *l, struct conn_guard *g)
{
    if (l->max_conns == 0)
        return;
    guard_reap(l, g);
    while (l->guards_n > l->max_conns && close_oldest_idle(l, g))
        ;
    if (l->guards_n >= l->max_conns && !any_idle(l, g) && !l->paused_full) {
        pgw_log_warnf(
            PGW_FIELDS(PGW_LF_STR("listener", l->name),
                       PGW_LF_INT("connections", (long long)l->guards_n)),
            "%s listener at max_connections: not accepting until "
            "a connection closes",
            l->name);
        l->paused_full = true;
        set_accepting(l);
    }
}

/* Fires ACCEPT_PAUSE_MS after accept() ran out of descriptors. */
static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_listener *l = arg;
    (void)fd;
    (void)what;

    l->paused_fds = false;
    set_accepting(l);
}

/* The listeners by evhttp, for the accept-error callback (it gets the
 * evhttp, not the listener). */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pgw_listener *registry[32];

static void registry_set(struct pgw_listener *l, bool add)
{
    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < PGW_ARRAY_SIZE(registry); i++) {
        if (add ? registry[i] == NULL : registry[i] == l) {
            registry[i] = add ? l : NULL;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
}

static struct pgw_listener *registry_find(const struct evhttp *http)
{
    struct pgw_listener *found = NULL;

    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < PGW_ARRAY_SIZE(registry); i++) {
        if (registry[i] != NULL && registry[i]->http == http) {
            found = registry[i];
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return found;
}

/* Fires when accept() failed with an error libevent does not retry;
 * |arg| is the evhttp. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct pgw_listener *l = registry_find(arg);
    bool out_of_fds =
        err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
    int64_t now = pgw_clock_mono_ms();
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};

    if (l == NULL) {
        evconnlistener_disable(lev);
        return;
    }
    if (now - l->last_fd_warn_ms >= ACCEPT_WARN_MS || l->last_fd_warn_ms == 0) {
        l->last_fd_warn_ms = now;
        pgw_log_warnf(
            PGW_FIELDS(PGW_LF_STR("listener", l->name),
                       PGW_LF_INT("connections", (long long)l->guards_n)),
            "could not accept on '%s': %s; pausing for %d ms", l->address,
            strerror(err), ACCEPT_PAUSE_MS);
    }
    /* A descriptor freed: accept again at the next loop iteration, once
     * the socket is closed. Nothing to free: pause. */
    if (out_of_fds && close_oldest_idle(l, NULL))
        return;
    l->paused_fds = true;
    set_accepting(l);
    evtimer_add(l->resume, &tv);
}

bool pgw_listener_saturated(const struct pgw_listener *self)
{
    return atomic_load(&((struct pgw_listener *)self)->saturated);
}

/* Fires every quarter deadline: closes overdue requests, forgets
 * connections evhttp has freed, accepts again below the cap. */
static void guard_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_listener *l = arg;
    (void)fd;
    (void)what;

    guard_reap(l, NULL);
    for (size_t j = 0; j < l->guards_cap; j++) {
        struct conn_guard *g = l->guards[j];
        bufferevent_event_cb ecb = NULL;
        void *cbarg = NULL;

        if (g == NULL || !g->in_request ||
            pgw_clock_mono_ms() - g->started_ms <= (int64_t)l->deadline_ms)
            continue;
        bufferevent_getcb(g->bev, NULL, NULL, &ecb, &cbarg);
        if (ecb == NULL)
            continue;
        g->in_request = false;
        /* evhttp's own read-timeout path: it frees the connection. */
        ecb(g->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, cbarg);
    }
    if (l->paused_full && (l->guards_n < l->max_conns || any_idle(l, NULL))) {
        l->paused_full = false;
        set_accepting(l);
    } else if (!l->paused_full && l->max_conns > 0 &&
               l->guards_n >= l->max_conns && !any_idle(l, NULL)) {
        /* at the cap since requests began on idle connections */
        l->paused_full = true;
        set_accepting(l);
    }
}

/* Guards the new connection bufferevent |bev|. On failure the connection
 * simply goes unguarded. */
static struct bufferevent *guard_wrap(struct pgw_listener *l,
                                      struct bufferevent *bev)
{
    struct conn_guard *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return bev;
    g->l = l;
    g->bev = bev;
    if (!guard_add(l, g)) {
        free(g);
        return bev;
    }
    if (evbuffer_add_cb(bufferevent_get_input(bev), guard_input_cb, g) ==
        NULL) {
        guard_remove_slot(l, guard_slot(l, bev));
        free(g);
        return bev;
    }
    bufferevent_incref(bev);
    g->idle_since = ++l->idle_ticks;
    admit_connection(l, g);
    return bev;
}

/* Drops every guard (after evhttp_free(): their connections are gone). */
static void guard_free_all(struct pgw_listener *l)
{
    for (size_t j = 0; j < l->guards_cap; j++) {
        struct conn_guard *g = l->guards[j];
        if (g == NULL)
            continue;
        l->guards[j] = NULL;
        bufferevent_decref(g->bev);
        free(g);
    }
    free(l->guards);
    l->guards = NULL;
    l->guards_cap = l->guards_n = 0;
}

/* Creates each plain connection's bufferevent, guarded. */
static struct bufferevent *plain_bevcb(struct event_base *base, void *arg)
{
    struct bufferevent *bev =
        bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    return bev ? guard_wrap(arg, bev) : NULL;
}

/* Creates each TLS connection's bufferevent. A NULL return makes evhttp
 * fall back to plain TCP, which a TLS client fails on at once. */
static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    struct pgw_listener *l = arg;
    SSL *ssl = SSL_new(l->ssl_ctx);
    if (ssl == NULL)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return guard_wrap(l, bev);
}

/* ---- set-up ------------------------------------------------------------- */

static int load_tls(struct pgw_listener *l, const char *cert, const char *key)
{
    l->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (l->ssl_ctx == NULL)
        return PGW_ERR_NOMEM;
    SSL_CTX_set_min_proto_version(l->ssl_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(l->ssl_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(l->ssl_ctx, key != NULL ? key : "",
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(l->ssl_ctx) != 1) {
        char buf[256];

        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        ERR_clear_error();
        pgw_log_error("could not load the TLS certificate '%s' or key '%s': %s",
                      cert, key != NULL ? key : "", buf);
        return PGW_ERR_TLS;
    }
    return 0;
}

/* Splits "host:port" or "[v6]:port" into |host| and |*ret_port|. */
static int parse_listen(const char *addr, char *host, size_t host_size,
                        unsigned short *ret_port)
{
    const char *colon = strrchr(addr, ':');
    const char *h = addr;
    size_t hl;
    if (colon == NULL || colon[1] == '\0')
        return PGW_ERR_CONFIG;
    hl = (size_t)(colon - addr);
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return PGW_ERR_CONFIG;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        return PGW_ERR_CONFIG;
    *ret_port = (unsigned short)port;
    return 0;
}

static int bind_listener(struct pgw_listener *l)
{
    char host[256];
    unsigned short port = 0;
    if (parse_listen(l->address, host, sizeof(host), &port) < 0) {
        pgw_log_error("invalid %s address '%s': expected host:port", l->name,
                      l->address);
        return PGW_ERR_CONFIG;
    }
    struct evhttp_bound_socket *b =
        evhttp_bind_socket_with_handle(l->http, host, port);
    if (b == NULL) {
        pgw_log_error("could not listen on '%s': %s", l->address,
                      strerror(errno));
        return PGW_ERR_IO;
    }
    if (listen(evhttp_bound_socket_get_fd(b), LISTEN_BACKLOG) < 0)
        pgw_log_warn("could not raise the listen backlog of '%s': %s",
                     l->address, strerror(errno));
    l->bound = b;
    return 0;
}

int pgw_listener_port(const struct pgw_listener *self)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (self == NULL || self->bound == NULL)
        return -1;
    evutil_socket_t fd =
        evhttp_bound_socket_get_fd((struct evhttp_bound_socket *)self->bound);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

void pgw_listener_set_max_body(struct pgw_listener *self, size_t max_body_bytes)
{
    self->frame_limits.max_body =
        max_body_bytes ? max_body_bytes : DEFAULT_MAX_BODY;
    evhttp_set_max_body_size(
        self->http,
        (ev_ssize_t)(self->frame_limits.max_body + PGW_LISTENER_BODY_SLACK));
}

void pgw_listener_close(struct pgw_listener *self)
{
    self->closed = true;
    if (self->bound != NULL) {
        evhttp_del_accept_socket(self->http, self->bound);
        self->bound = NULL;
    }
}

int pgw_listener_new(const struct pgw_listener_options *opts,
                     struct pgw_listener **ret_l)
{
    struct pgw_listener *l = NULL;
    int err = PGW_ERR_INVAL;
    unsigned timeout_ms;

    if (opts->base == NULL || opts->address == NULL || opts->name == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto out;
    l->base = opts->base;
    l->refused = opts->refused;
    l->refused_arg = opts->refused_arg;
    l->name = strdup(opts->name);
    l->address = strdup(opts->address);
    if (l->name == NULL || l->address == NULL)
        goto out;
    timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    l->deadline_ms = timeout_ms;
    l->max_conns = opts->max_connections;
    err = pgw_xqueue_new(l->base, NULL, NULL, &l->replies);
    if (err < 0)
        goto out;
    err = PGW_ERR_NOMEM;
    l->http = evhttp_new(l->base);
    if (l->http == NULL)
        goto out;
    {
        struct timeval tv = {timeout_ms / 1000, timeout_ms % 1000 * 1000};
        evhttp_set_timeout_tv(l->http, &tv);
    }
    l->frame_limits.max_header =
        opts->max_header_bytes ? opts->max_header_bytes : DEFAULT_MAX_HEADER;
    evhttp_set_max_headers_size(
        l->http,
        (ev_ssize_t)(l->frame_limits.max_header + PGW_HTTPFRAME_HEADER_SLACK));
    evhttp_set_allowed_methods(
        l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                     EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(l->http, on_request, l);
    pgw_listener_set_max_body(l, opts->max_body_bytes);
    if (opts->tls_cert_file != NULL && opts->tls_cert_file[0] != '\0') {
        err = load_tls(l, opts->tls_cert_file, opts->tls_key_file);
        if (err < 0)
            goto out;
        evhttp_set_bevcb(l->http, tls_bevcb, l);
    } else {
        evhttp_set_bevcb(l->http, plain_bevcb, l);
    }
    err = PGW_ERR_NOMEM;
    l->guard_timer = event_new(l->base, -1, EV_PERSIST, guard_sweep, l);
    if (l->guard_timer == NULL)
        goto out;
    {
        unsigned every = l->deadline_ms / 4;
        every = every < 50 ? 50 : every > 1000 ? 1000 : every;
        struct timeval gtv = {every / 1000, (every % 1000) * 1000};
        event_add(l->guard_timer, &gtv);
    }
    l->resume = evtimer_new(l->base, on_resume, l);
    if (l->resume == NULL)
        goto out;
    err = bind_listener(l);
    if (err < 0)
        goto out;
    registry_set(l, true);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->bound),
                                on_accept_error);
    pgw_log_infof(PGW_FIELDS(PGW_LF_STR("address", l->address),
                             PGW_LF_INT("port", pgw_listener_port(l)),
                             PGW_LF_STR("tls", l->ssl_ctx ? "on" : "off")),
                  "%s listener started", l->name);
    *ret_l = l;
    l = NULL;
    err = 0;
out:
    pgw_listener_free(l);
    return err;
}

void pgw_listener_free(struct pgw_listener *self)
{
    if (self == NULL)
        return;
    /* The answers still queued, before evhttp frees their requests. */
    pgw_xqueue_free(self->replies);
    if (self->http != NULL)
        evhttp_free(self->http);
    if (self->ssl_ctx != NULL)
        SSL_CTX_free(self->ssl_ctx);
    if (self->guard_timer != NULL)
        event_free(self->guard_timer);
    if (self->resume != NULL)
        event_free(self->resume);
    registry_set(self, false);
    guard_free_all(self);
    for (size_t i = 0; i < self->n_routes; i++) {
        free(self->routes[i].pattern);
        free(self->routes[i].buf);
    }
    free(self->routes);
    free(self->name);
    free(self->address);
    free(self);
}
