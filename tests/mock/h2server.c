/*
 * HTTP/2 over TLS server for the mocks; see h2server.h.
 *
 * One event_base, one connection object per accepted socket, one stream
 * object per request stream. Stream objects are recycled through a free
 * list so a steady benchmark load allocates nothing per request. Objects
 * are never freed inside an nghttp2 callback: callbacks set flags and the
 * read/timer callbacks act on them once nghttp2 has returned.
 */
#include "h2server.h"
#include "h2out.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define HDR_ARENA 6144
#define BODY_INLINE 1024
#define RESP_HDRS 8
#define RESP_ARENA 512
#define RESP_BODY_INLINE 512
#define FREELIST_MAX 8192
/* Stop serialising frames while this much output waits for the socket. */
#define OUTPUT_HIGH (1024 * 1024)

struct conn;

struct stream {
    struct mock_req req; /* first: the application sees only this */
    struct conn *conn;
    struct stream *prev, *next;
    struct event timer;
    bool timer_armed;
    bool complete;
    bool body_on_heap;
    size_t hlen;
    char *body;
    size_t body_cap;
    int nrhdrs;
    size_t rhlen;
    const char *rhdr[RESP_HDRS][2];
    char *rbody;
    size_t rbody_len, rbody_off;
    bool rbody_on_heap;
    /* Large buffers last: a recycled stream resets only what is above. */
    char rharena[RESP_ARENA];
    char rbody_inline[RESP_BODY_INLINE];
    char harena[HDR_ARENA];
    char body_inline[BODY_INLINE];
};

struct conn {
    struct mock_server *srv;
    uint64_t id;
    evutil_socket_t fd;
    struct bufferevent *bev;
    struct event *tls_timer;
    struct event *stall_timer; /* --stall-read-ms */
    /* --delay-ms: the answers due in one loop turn go out in one send */
    struct event *flush_ev;
    bool flush_pending;
    nghttp2_session *session;
    struct conn *prev, *next;
    struct stream *streams;
    uint64_t streams_received;
    uint64_t requests;
    int32_t goaway_last; /* >0 once our GOAWAY is submitted */
    bool lowered;
    bool aborting;    /* --close-after: close without GOAWAY */
    bool drain_close; /* close once the output is written */
    char tag[MOCK_CONN_TAG];
    char client_uid[128];
};

struct mock_server {
    const struct mock_opts *o;
    const struct mock_app *app;
    struct event_base *base;
    struct evconnlistener *listener;
    SSL_CTX *ssl;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *ngopt;
    FILE *record;
    uint16_t port;
    struct conn *conns;
    struct closing_sock *lingers; /* closed sockets waiting for the client */
    struct stream *freelist;
    size_t nfree;
    uint64_t rng;
    /* stats */
    uint64_t conn_seq, conns_open, requests, ok, errors, streams_open,
        fault_seq, goaways, resets, stats_requests;
};

const char mock_opts_usage[] =
    "  --listen HOST:PORT          address (default 127.0.0.1:0)\n"
    "  --port-file FILE            write the bound port there\n"
    "  --cert FILE --key FILE      server certificate and key (PEM)\n"
    "  --record FILE               append one JSON line per request\n"
    "  --max-streams N             SETTINGS_MAX_CONCURRENT_STREAMS (1000)\n"
    "  --lower-streams-after N:M   after N requests on a connection, "
    "announce M\n"
    "  --goaway-after N            GOAWAY after the N-th stream of a "
    "connection\n"
    "  --fail-every N:STATUS:REASON  every N-th request fails\n"
    "  --retry-after S             Retry-After on 429/503 answers\n"
    "  --delay-ms N                delay every answer\n"
    "  --stall-read-ms N           read nothing for N ms after a "
    "connection's\n"
    "                              first request\n"
    "  --close-after N             drop the TCP connection at its N-th "
    "request\n"
    "  --no-ping-ack               never answer PING\n"
    "  --client-ca FILE            ask clients for a certificate issued by\n"
    "                              FILE (optional, as Apple's servers do)\n"
    "  --garbage                   after the TLS handshake, send bytes that\n"
    "                              are not HTTP/2 instead of SETTINGS\n"
    "  --tls-delay-ms N            wait before the TLS handshake\n"
    "  --quiet                     no start-up line\n"
    "  --verbose                   one stderr line per request\n";

static int parse_u64(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *ret = v;
    return 0;
}

static int parse_long(const char *s, long *ret)
{
    uint64_t v;

    if (parse_u64(s, &v) < 0 || v > 1000000000u)
        return -1;
    *ret = (long)v;
    return 0;
}

void mock_opts_init(struct mock_opts *o, const char *prog)
{
    memset(o, 0, sizeof(*o));
    o->prog = prog;
    o->listen = "127.0.0.1:0";
    o->max_streams = 1000;
    o->retry_after = -1;
}

int mock_opts_parse(struct mock_opts *o, const char *name, const char *value)
{
    uint64_t v;
    char buf[256], *colon, *colon2;

    if (!strcmp(name, "--no-ping-ack")) {
        o->no_ping_ack = true;
        return 1;
    }
    if (!strcmp(name, "--garbage")) {
        o->garbage = true;
        return 1;
    }
    if (!strcmp(name, "--quiet")) {
        o->quiet = true;
        return 1;
    }
    if (!strcmp(name, "--verbose")) {
        o->verbose = true;
        return 1;
    }
    if (!value)
        return strncmp(name, "--", 2) ? 0 : 0;
    if (!strcmp(name, "--listen"))
        o->listen = value;
    else if (!strcmp(name, "--port-file"))
        o->port_file = value;
    else if (!strcmp(name, "--cert"))
        o->cert = value;
    else if (!strcmp(name, "--key"))
        o->key = value;
    else if (!strcmp(name, "--client-ca"))
        o->client_ca = value;
    else if (!strcmp(name, "--record"))
        o->record = value;
    else if (!strcmp(name, "--max-streams")) {
        if (parse_u64(value, &v) < 0 || v == 0 || v > INT32_MAX)
            return -1;
        o->max_streams = (uint32_t)v;
    } else if (!strcmp(name, "--lower-streams-after")) {
        snprintf(buf, sizeof(buf), "%s", value);
        colon = strchr(buf, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        if (parse_u64(buf, &o->lower_after) < 0 || o->lower_after == 0 ||
            parse_u64(colon + 1, &v) < 0 || v > INT32_MAX)
            return -1;
        o->lower_to = (uint32_t)v;
    } else if (!strcmp(name, "--goaway-after")) {
        if (parse_u64(value, &o->goaway_after) < 0 || o->goaway_after == 0)
            return -1;
    } else if (!strcmp(name, "--fail-every")) {
        /* N:STATUS:REASON; the reason is kept from |value| itself. */
        colon = strchr(value, ':');
        colon2 = colon ? strchr(colon + 1, ':') : NULL;
        if (!colon || !colon2 || (size_t)(colon2 - value) >= sizeof(buf))
            return -1;
        memcpy(buf, value, (size_t)(colon2 - value));
        buf[colon2 - value] = '\0';
        buf[colon - value] = '\0';
        if (parse_u64(buf, &o->fail_every) < 0 || o->fail_every == 0 ||
            parse_u64(buf + (colon - value) + 1, &v) < 0 || v < 100 ||
            v > 599 || !colon2[1])
            return -1;
        o->fail_status = (int)v;
        o->fail_reason = colon2 + 1;
    } else if (!strcmp(name, "--retry-after")) {
        if (parse_long(value, &o->retry_after) < 0)
            return -1;
    } else if (!strcmp(name, "--delay-ms")) {
        if (parse_long(value, &o->delay_ms) < 0)
            return -1;
    } else if (!strcmp(name, "--stall-read-ms")) {
        if (parse_long(value, &o->stall_read_ms) < 0)
            return -1;
    } else if (!strcmp(name, "--close-after")) {
        if (parse_u64(value, &o->close_after) < 0 || o->close_after == 0)
            return -1;
    } else if (!strcmp(name, "--tls-delay-ms")) {
        if (parse_long(value, &o->tls_delay_ms) < 0)
            return -1;
    } else
        return 0;
    return 2;
}

/* ---- small helpers ---------------------------------------------------- */

static uint64_t rng_next(struct mock_server *srv)
{
    /* xorshift64*: ids only need to be unique-looking, not secret. */
    uint64_t x = srv->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    srv->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void mock_uuid(struct mock_server *srv, char out[37])
{
    uint64_t a = rng_next(srv), b = rng_next(srv);
    snprintf(out, 37,
             "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-%04" PRIx64
             "-%012" PRIx64,
             a >> 32, (a >> 16) & 0xffff, a & 0xfff,
             (uint64_t)(0x8000 | ((b >> 48) & 0x3fff)),
             (uint64_t)(b & 0xffffffffffffULL));
}

int64_t mock_server_now_us(struct mock_server *srv)
{
    struct timeval tv;

    if (event_base_gettimeofday_cached(srv->base, &tv) < 0)
        gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

uint16_t mock_server_port(const struct mock_server *srv)
{
    return srv->port;
}

bool mock_server_recording(const struct mock_server *srv)
{
    return srv->record != NULL;
}

void mock_server_record(struct mock_server *srv, const char *line)
{
    if (!srv->record)
        return;
    fputs(line, srv->record);
    fputc('\n', srv->record);
    /* Flushed by conn_after_io(), once per batch of requests and before
     * their answers go out: a write per request made the latency runs'
     * mock (the benchmark's) slower than the one it measures against. */
}

void mock_req_record_json(struct mock_req *req, cJSON *o, const cJSON *body)
{
    /* The benchmark's latency runs record every request on the cores
     * they measure: the body by reference, not copied, and printed into
     * one buffer that lives as long as the process. */
    static char buf[16384];
    char *line = NULL;

    if (body)
        cJSON_AddItemReferenceToObject(o, "body", (cJSON *)body);
    else if (req->body_len)
        cJSON_AddStringToObject(o, "body", req->body);
    else
        cJSON_AddNullToObject(o, "body");
    if (cJSON_PrintPreallocated(o, buf, (int)sizeof(buf), 0))
        mock_server_record(req->server, buf);
    else if ((line = cJSON_PrintUnformatted(o)) != NULL)
        mock_server_record(req->server, line);
    free(line);
    cJSON_Delete(o);
}

int mock_server_fault(struct mock_server *srv, const char **ret_reason)
{
    if (!srv->o->fail_every)
        return 0;
    srv->fault_seq++;
    if (srv->fault_seq % srv->o->fail_every)
        return 0;
    *ret_reason = srv->o->fail_reason;
    return srv->o->fail_status;
}

const char *mock_req_header(const struct mock_req *req, const char *name,
                            int *ret_count)
{
    const char *first = NULL;
    int n = 0;

    for (int i = 0; i < req->nhdrs; i++) {
        if (!strcmp(req->hdrs[i].name, name)) {
            if (!first)
                first = req->hdrs[i].value;
            n++;
        }
    }
    if (ret_count)
        *ret_count = n;
    return first;
}

int mock_req_add_header(struct mock_req *req, const char *name,
                        const char *value)
{
    struct stream *st = (struct stream *)req;
    size_t nl = strlen(name) + 1, vl = strlen(value) + 1;

    if (st->nrhdrs >= RESP_HDRS || st->rhlen + nl + vl > RESP_ARENA)
        return -1;
    memcpy(st->rharena + st->rhlen, name, nl);
    st->rhdr[st->nrhdrs][0] = st->rharena + st->rhlen;
    st->rhlen += nl;
    memcpy(st->rharena + st->rhlen, value, vl);
    st->rhdr[st->nrhdrs][1] = st->rharena + st->rhlen;
    st->rhlen += vl;
    st->nrhdrs++;
    return 0;
}

int mock_req_respond(struct mock_req *req, int status, const char *body,
                     size_t len)
{
    struct stream *st = (struct stream *)req;

    req->status = status;
    if (st->rbody_on_heap) {
        free(st->rbody);
        st->rbody_on_heap = false;
    }
    st->rbody = NULL;
    st->rbody_len = st->rbody_off = 0;
    if (!body)
        return 0;
    if (len <= RESP_BODY_INLINE) {
        st->rbody = st->rbody_inline;
    } else {
        st->rbody = malloc(len);
        if (!st->rbody)
            return -1;
        st->rbody_on_heap = true;
    }
    memcpy(st->rbody, body, len);
    st->rbody_len = len;
    return 0;
}

/* ---- streams ---------------------------------------------------------- */

static struct stream *stream_new(struct conn *c, int32_t id)
{
    struct mock_server *srv = c->srv;
    struct stream *st = srv->freelist;

    if (st) {
        srv->freelist = st->next;
        srv->nfree--;
        memset(st, 0, offsetof(struct stream, rharena));
    } else {
        st = calloc(1, sizeof(*st));
        if (!st)
            return NULL;
    }
    st->conn = c;
    st->req.server = srv;
    st->req.conn_id = c->id;
    st->req.stream_id = id;
    st->req.method = st->req.path = st->req.authority = "";
    st->req.conn_tag = c->tag;
    st->req.client_uid = c->client_uid;
    st->body = st->body_inline;
    st->body_cap = BODY_INLINE;
    st->body_inline[0] = '\0';
    st->req.body = st->body;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    srv->streams_open++;
    return st;
}

static void stream_release(struct stream *st)
{
    struct conn *c = st->conn;
    struct mock_server *srv = c->srv;

    if (st->timer_armed)
        event_del(&st->timer);
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->body_on_heap)
        free(st->body);
    if (st->rbody_on_heap)
        free(st->rbody);
    srv->streams_open--;
    if (srv->nfree < FREELIST_MAX) {
        st->next = srv->freelist;
        srv->freelist = st;
        srv->nfree++;
    } else {
        free(st);
    }
}

/* ---- connections ------------------------------------------------------ */

/* A closed connection's socket, kept until the client closes its side. */
struct closing_sock {
    struct mock_server *srv;
    evutil_socket_t fd;
    struct event *ev;
    struct closing_sock *prev, *next;
};

static void linger_free(struct closing_sock *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        l->srv->lingers = l->next;
    if (l->next)
        l->next->prev = l->prev;
    event_free(l->ev);
    evutil_closesocket(l->fd);
    free(l);
}

/* Fires when the client sent more, closed, or the linger timed out. */
static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct closing_sock *l = arg;
    char buf[4096];
    ssize_t n = 0;

    if (what & EV_READ) {
        n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0)
            return; /* discard, wait for EOF */
    }
    linger_free(l);
}

/*
 * Ends a connection gracefully at the TCP level: our side is shut down
 * (FIN after everything written), and the socket is kept, reading and
 * discarding, until the client closes or 2 s pass. Closing at once with
 * client bytes unread would make the kernel send RST, and the client
 * could then lose answers it had not read yet.
 */
static void linger_close(struct mock_server *srv, evutil_socket_t fd)
{
    struct closing_sock *l = calloc(1, sizeof(*l));
    struct timeval tv = {2, 0};

    shutdown(fd, SHUT_WR);
    if (!l)
        goto fail;
    l->srv = srv;
    l->fd = fd;
    l->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, linger_cb, l);
    if (!l->ev || event_add(l->ev, &tv) < 0)
        goto fail;
    l->next = srv->lingers;
    if (srv->lingers)
        srv->lingers->prev = l;
    srv->lingers = l;
    return;
fail:
    if (l && l->ev)
        event_free(l->ev);
    free(l);
    evutil_closesocket(fd);
}

static void conn_free(struct conn *c)
{
    struct mock_server *srv = c->srv;

    while (c->streams)
        stream_release(c->streams);
    if (c->session)
        nghttp2_session_del(c->session);
    if (c->tls_timer)
        event_free(c->tls_timer);
    if (c->stall_timer)
        event_free(c->stall_timer);
    if (c->flush_ev)
        event_free(c->flush_ev);
    if (c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        evutil_socket_t keep = -1;
        /* A graceful end says close_notify and lingers; an abort just
         * drops TCP. */
        if (ssl && !c->aborting) {
            SSL_shutdown(ssl);
            keep = dup(bufferevent_getfd(c->bev));
        }
        bufferevent_free(c->bev);
        if (keep >= 0)
            linger_close(srv, keep);
    } else if (c->fd >= 0) {
        evutil_closesocket(c->fd);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->conns_open--;
    free(c);
}

/* Serialises pending frames into the output buffer. -1: fatal. */
static int conn_send(struct conn *c)
{
    /* In full TLS records, as a production server writes them. */
    return pgw_h2out_send(c->session, bufferevent_get_output(c->bev),
                          OUTPUT_HIGH) < 0
               ? -1
               : 0;
}

/*
 * After any activity: sends what nghttp2 has, then decides whether the
 * connection is over. Returns true when |c| was freed.
 */
static bool conn_after_io(struct conn *c)
{
    if (c->srv->record)
        fflush(c->srv->record);
    if (!c->session)
        return false;
    if (c->aborting && !c->drain_close) {
        /* Answers submitted before the N-th request still go out. */
        conn_send(c);
        bufferevent_disable(c->bev, EV_READ);
        c->drain_close = true;
    }
    if (!c->aborting && conn_send(c) < 0) {
        conn_free(c);
        return true;
    }
    if (!c->aborting && !nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session))
        c->drain_close = true;
    if (c->drain_close &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return true;
    }
    return false;
}

static void submit_response(struct conn *c, struct stream *st);

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    /* Sends the delayed answers submitted in this loop turn; may free the
     * connection. */
    struct conn *c = arg;

    (void)fd;
    (void)what;
    c->flush_pending = false;
    conn_after_io(c);
}

static void delay_cb(evutil_socket_t fd, short what, void *arg)
{
    /* Fires when a delayed answer is due. The answers due at once go out
     * together, as a server answering many streams writes them: the
     * flush event, made active here, runs after the timers that expired
     * with this one. Sent one by one, in a small TLS record each, they
     * cost the mock, and the gateway reading them, a third more CPU per
     * push than answers at once (docs/BENCHMARKS.md, Distance), on the
     * cores they share. */
    struct stream *st = arg;
    struct conn *c = st->conn;

    (void)fd;
    (void)what;
    st->timer_armed = false;
    submit_response(c, st);
    if (c->flush_pending)
        return;
    if (!c->flush_ev)
        c->flush_ev = event_new(c->srv->base, -1, 0, flush_cb, c);
    if (!c->flush_ev) {
        conn_after_io(c);
        return;
    }
    c->flush_pending = true;
    event_active(c->flush_ev, EV_TIMEOUT, 1);
}

static ssize_t body_read_cb(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data)
{
    struct stream *st = source->ptr;
    size_t n = st->rbody_len - st->rbody_off;

    (void)session;
    (void)stream_id;
    (void)user_data;
    if (n > length)
        n = length;
    memcpy(buf, st->rbody + st->rbody_off, n);
    st->rbody_off += n;
    if (st->rbody_off == st->rbody_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void submit_response(struct conn *c, struct stream *st)
{
    nghttp2_nv nv[RESP_HDRS + 3];
    char status[8], ra[24];
    size_t n = 0;
    nghttp2_data_provider prd;
    int code = st->req.status ? st->req.status : 500;

#define NV(N, V)                                                               \
    do {                                                                       \
        nv[n].name = (uint8_t *)(N);                                           \
        nv[n].namelen = strlen(N);                                             \
        nv[n].value = (uint8_t *)(V);                                          \
        nv[n].valuelen = strlen(V);                                            \
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;                                    \
        n++;                                                                   \
    } while (0)

    snprintf(status, sizeof(status), "%d", code);
    NV(":status", status);
    for (int i = 0; i < st->nrhdrs; i++)
        NV(st->rhdr[i][0], st->rhdr[i][1]);
    if ((code == 429 || code == 503) && c->srv->o->retry_after >= 0) {
        snprintf(ra, sizeof(ra), "%ld", c->srv->o->retry_after);
        NV("retry-after", ra);
    }
#undef NV
    prd.source.ptr = st;
    prd.read_callback = body_read_cb;
    nghttp2_submit_response(c->session, st->req.stream_id, nv, n,
                            st->rbody_len ? &prd : NULL);
}

/* Answers GET /_mock/stats on |st|, or prints the line when |st| is NULL. */
static void answer_stats(struct mock_server *srv, struct conn *c,
                         struct stream *st)
{
    char buf[1024];
    int n;

    n = snprintf(buf, sizeof(buf),
                 "{\"requests\":%" PRIu64 ",\"ok\":%" PRIu64
                 ",\"errors\":%" PRIu64 ",\"connections\":%" PRIu64
                 ",\"connections_open\":%" PRIu64 ",\"streams_open\":%" PRIu64
                 ",\"goaways\":%" PRIu64 ",\"resets\":%" PRIu64,
                 srv->requests, srv->ok, srv->errors, srv->conn_seq,
                 srv->conns_open, srv->streams_open, srv->goaways, srv->resets);
    if (srv->app->stats && n > 0 && (size_t)n < sizeof(buf))
        n += srv->app->stats(srv->app->ctx, buf + n, sizeof(buf) - (size_t)n);
    if (n > 0 && (size_t)n < sizeof(buf) - 2) {
        buf[n++] = '}';
        buf[n] = '\0';
    }
    if (st) {
        mock_req_respond(&st->req, 200, buf, strlen(buf));
        mock_req_add_header(&st->req, "content-type", "application/json");
        submit_response(c, st);
    } else {
        printf("%s\n", buf);
        fflush(stdout);
    }
}

static void stall_end_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    bufferevent_enable(c->bev, EV_READ);
}

static void request_complete(struct conn *c, struct stream *st)
{
    struct mock_server *srv = c->srv;
    const struct mock_opts *o = srv->o;

    if (st->complete)
        return;
    st->complete = true;
    c->requests++;
    if (o->stall_read_ms > 0 && c->requests == 1 && !c->stall_timer) {
        struct timeval tv = {o->stall_read_ms / 1000,
                             (o->stall_read_ms % 1000) * 1000};

        c->stall_timer = evtimer_new(srv->base, stall_end_cb, c);
        if (c->stall_timer) {
            bufferevent_disable(c->bev, EV_READ);
            evtimer_add(c->stall_timer, &tv);
        }
    }
    if (o->close_after && c->requests >= o->close_after) {
        c->aborting = true;
        return;
    }
    if (!strcmp(st->req.path, "/_mock/stats")) {
        srv->stats_requests++;
        answer_stats(srv, c, st);
        return;
    }
    st->req.conn_seq = c->requests;
    st->req.ts_us = mock_server_now_us(srv);
    st->req.body = st->body;
    srv->requests++;
    srv->app->handle(srv->app->ctx, &st->req);
    if (st->req.status >= 200 && st->req.status < 300)
        srv->ok++;
    else
        srv->errors++;
    if (o->verbose)
        fprintf(stderr, "%s: conn %" PRIu64 " stream %d %s %s -> %d\n", o->prog,
                c->id, st->req.stream_id, st->req.method, st->req.path,
                st->req.status);
    if (o->delay_ms > 0) {
        struct timeval tv = {o->delay_ms / 1000, (o->delay_ms % 1000) * 1000};
        evtimer_assign(&st->timer, srv->base, delay_cb, st);
        evtimer_add(&st->timer, &tv);
        st->timer_armed = true;
        return;
    }
    submit_response(c, st);
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
    struct conn *c = user_data;
    const struct mock_opts *o = c->srv->o;
    int32_t id = frame->hd.stream_id;
    struct stream *st;

    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (c->goaway_last > 0 && id > c->goaway_last) {
        /* Arrived in the same read as the GOAWAY trigger: refuse it. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    st = stream_new(c, id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, id, st);
    c->streams_received++;
    if (o->lower_after && !c->lowered &&
        c->streams_received >= o->lower_after) {
        nghttp2_settings_entry e = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                    o->lower_to};
        c->lowered = true;
        nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, &e, 1);
    }
    if (o->goaway_after && c->goaway_last == 0 &&
        c->streams_received >= o->goaway_after) {
        static const char dbg[] = "{\"reason\":\"Shutdown\"}";
        c->goaway_last = id;
        c->srv->goaways++;
        nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR,
                              (const uint8_t *)dbg, sizeof(dbg) - 1);
    }
    return 0;
}

static const char *arena_put(struct stream *st, const uint8_t *s, size_t len)
{
    char *p;

    if (st->hlen + len + 1 > HDR_ARENA)
        return NULL;
    p = st->harena + st->hlen;
    memcpy(p, s, len);
    p[len] = '\0';
    st->hlen += len + 1;
    return p;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user_data)
{
    struct stream *st;
    const char *n, *v;

    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st)
        return 0;
    if (namelen > 0 && name[0] == ':') {
        v = arena_put(st, value, valuelen);
        if (!v) {
            st->req.hdr_overflow = true;
            return 0;
        }
        if (namelen == 7 && !memcmp(name, ":method", 7))
            st->req.method = v;
        else if (namelen == 5 && !memcmp(name, ":path", 5))
            st->req.path = v;
        else if (namelen == 10 && !memcmp(name, ":authority", 10))
            st->req.authority = v;
        return 0;
    }
    if (st->req.nhdrs >= MOCK_MAX_HEADERS) {
        st->req.hdr_overflow = true;
        return 0;
    }
    n = arena_put(st, name, namelen);
    v = n ? arena_put(st, value, valuelen) : NULL;
    if (!v) {
        st->req.hdr_overflow = true;
        return 0;
    }
    st->req.hdrs[st->req.nhdrs].name = n;
    st->req.hdrs[st->req.nhdrs].value = v;
    st->req.hdrs[st->req.nhdrs].valuelen = valuelen;
    st->req.hdrs[st->req.nhdrs].never_indexed =
        (flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0;
    st->req.nhdrs++;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
                         int32_t stream_id, const uint8_t *data, size_t len,
                         void *user_data)
{
    struct stream *st =
        nghttp2_session_get_stream_user_data(session, stream_id);
    size_t have;

    (void)flags;
    (void)user_data;
    if (!st)
        return 0;
    have = st->req.body_len;
    st->req.body_len += len;
    if (st->req.body_overflow)
        return 0;
    if (have + len > MOCK_BODY_CAP) {
        st->req.body_overflow = true;
        return 0;
    }
    if (have + len + 1 > st->body_cap) {
        size_t cap = st->body_cap * 2;
        char *nb;
        while (cap < have + len + 1)
            cap *= 2;
        nb = st->body_on_heap ? realloc(st->body, cap) : malloc(cap);
        if (!nb)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        if (!st->body_on_heap)
            memcpy(nb, st->body, have);
        st->body = nb;
        st->body_cap = cap;
        st->body_on_heap = true;
    }
    memcpy(st->body + have, data, len);
    st->body[have + len] = '\0';
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data)
{
    struct conn *c = user_data;
    struct stream *st;

    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st && !c->aborting)
        request_complete(c, st);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data)
{
    struct conn *c = user_data;
    struct stream *st =
        nghttp2_session_get_stream_user_data(session, stream_id);

    if (error_code != NGHTTP2_NO_ERROR)
        c->srv->resets++;
    if (st) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_release(st);
    }
    return 0;
}

/* ---- libevent callbacks ----------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    /* Fires when TLS plaintext arrived; may free the connection. */
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    if (!c->session) { /* --garbage: what the client says is ignored */
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    while (evbuffer_get_length(in) > 0 && !c->aborting) {
        struct evbuffer_iovec v;
        ssize_t n;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        n = nghttp2_session_mem_recv(c->session, v.iov_base, v.iov_len);
        if (n < 0) {
            conn_free(c);
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
    if (c->aborting)
        evbuffer_drain(in, evbuffer_get_length(in));
    conn_after_io(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    /* Fires when the output buffer drained; may free the connection. */
    (void)bev;
    conn_after_io(arg);
}

static void tls_up(struct conn *c)
{
    struct mock_server *srv = c->srv;
    const uint8_t *alpn = NULL;
    unsigned alpnlen = 0;
    nghttp2_settings_entry iv[2] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->o->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};

    SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(c->bev), &alpn,
                           &alpnlen);
    if (alpnlen != 2 || memcmp(alpn, "h2", 2)) {
        conn_free(c);
        return;
    }
    {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        X509 *peer = SSL_get1_peer_certificate(ssl);

        if (peer && SSL_get_verify_result(ssl) == X509_V_OK)
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_userId,
                                      c->client_uid, sizeof(c->client_uid));
        X509_free(peer);
    }
    if (srv->o->garbage) {
        static const char junk[] = "HTTP/1.1 400 Bad Request\r\n"
                                   "Content-Length: 0\r\n\r\n";

        bufferevent_write(c->bev, junk, sizeof(junk) - 1);
        return;
    }
    if (nghttp2_session_server_new2(&c->session, srv->cbs, c, srv->ngopt)) {
        conn_free(c);
        return;
    }
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                          1 << 24);
    conn_after_io(c);
}

static void event_cb(struct bufferevent *bev, short events, void *arg)
{
    /* Fires on handshake completion, EOF or error; may free |arg|. */
    struct conn *c = arg;

    (void)bev;
    if (events & BEV_EVENT_CONNECTED) {
        tls_up(c);
        return;
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(c);
}

static void start_tls(struct conn *c)
{
    struct mock_server *srv = c->srv;
    SSL *ssl = SSL_new(srv->ssl);

    if (!ssl) {
        conn_free(c);
        return;
    }
    c->bev = bufferevent_openssl_socket_new(
        srv->base, c->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!c->bev) {
        SSL_free(ssl);
        conn_free(c);
        return;
    }
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void tls_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    /* Fires --tls-delay-ms after accept. */
    (void)fd;
    (void)what;
    start_tls(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct mock_server *srv = arg;
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;

    (void)l;
    (void)sa;
    (void)salen;
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = srv;
    c->fd = fd;
    c->id = ++srv->conn_seq;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->conns_open++;
    if (srv->o->tls_delay_ms > 0) {
        struct timeval tv = {srv->o->tls_delay_ms / 1000,
                             (srv->o->tls_delay_ms % 1000) * 1000};
        c->tls_timer = evtimer_new(srv->base, tls_delay_cb, c);
        if (!c->tls_timer) {
            conn_free(c);
            return;
        }
        evtimer_add(c->tls_timer, &tv);
        return;
    }
    start_tls(c);
}

static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i + 1 < inlen + 0u; i += 1u + in[i]) {
        if (in[i] == 2 && i + 3 <= inlen && !memcmp(in + i + 1, "h2", 2)) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    /* Like APNs: HTTP/2 or nothing. */
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct mock_server *srv = arg;

    (void)what;
    if (sig == SIGUSR1) {
        answer_stats(srv, NULL, NULL);
        return;
    }
    event_base_loopbreak(srv->base);
}

static int write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* evutil_parse_sockaddr_port() refuses port 0, which we want. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, int *len)
{
    char buf[300];
    const char *colon = strrchr(s, ':');
    bool zero = colon && !strcmp(colon, ":0");

    if (strlen(s) + 2 > sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%.*s%s",
             (int)(zero ? colon - s : (long)strlen(s)), s, zero ? ":1" : "");
    if (evutil_parse_sockaddr_port(buf, (struct sockaddr *)ss, len) < 0)
        return -1;
    if (zero) {
        if (ss->ss_family == AF_INET6)
            ((struct sockaddr_in6 *)ss)->sin6_port = 0;
        else
            ((struct sockaddr_in *)ss)->sin_port = 0;
    }
    return 0;
}

static SSL_CTX *make_ssl(const struct mock_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
                                 SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (o->client_ca) {
        if (SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL) != 1) {
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}

int mock_server_run(const struct mock_opts *o, const struct mock_app *app)
{
    struct mock_server srv = {0};
    struct sockaddr_storage ss;
    int sslen = sizeof(ss), rc = 1;
    socklen_t blen = sizeof(ss);
    struct event *sigs[3] = {NULL, NULL, NULL};
    static const int signos[3] = {SIGTERM, SIGINT, SIGUSR1};
    struct timespec ts;

    srv.o = o;
    srv.app = app;
    clock_gettime(CLOCK_REALTIME, &ts);
    srv.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
              ((uint64_t)getpid() << 40) ^ 0x9E3779B97F4A7C15ULL;
    if (!srv.rng)
        srv.rng = 1;
    signal(SIGPIPE, SIG_IGN);
    if (!o->cert || !o->key) {
        fprintf(stderr, "%s: --cert and --key are required\n", o->prog);
        return 1;
    }
    srv.ssl = make_ssl(o);
    if (!srv.ssl) {
        fprintf(stderr, "%s: cannot load '%s' / '%s': %s\n", o->prog, o->cert,
                o->key, ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    if (o->record) {
        srv.record = fopen(o->record, "a");
        if (!srv.record) {
            fprintf(stderr, "%s: cannot open '%s': %s\n", o->prog, o->record,
                    strerror(errno));
            goto out;
        }
    }
    if (nghttp2_session_callbacks_new(&srv.cbs) ||
        nghttp2_option_new(&srv.ngopt)) {
        fprintf(stderr, "%s: out of memory\n", o->prog);
        goto out;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(srv.cbs,
                                                            on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(srv.cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(srv.cbs,
                                                              on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(srv.cbs,
                                                         on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(srv.cbs,
                                                           on_stream_close);
    if (o->no_ping_ack)
        nghttp2_option_set_no_auto_ping_ack(srv.ngopt, 1);
    srv.base = event_base_new();
    if (!srv.base)
        goto out;
    memset(&ss, 0, sizeof(ss));
    if (parse_listen(o->listen, &ss, &sslen) < 0) {
        fprintf(stderr, "%s: bad --listen '%s'\n", o->prog, o->listen);
        goto out;
    }
    srv.listener = evconnlistener_new_bind(
        srv.base, accept_cb, &srv, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
        1024, (struct sockaddr *)&ss, sslen);
    if (!srv.listener) {
        fprintf(stderr, "%s: cannot listen on '%s': %s\n", o->prog, o->listen,
                strerror(errno));
        goto out;
    }
    if (getsockname(evconnlistener_get_fd(srv.listener), (struct sockaddr *)&ss,
                    &blen) == 0)
        srv.port = ntohs(ss.ss_family == AF_INET6
                             ? ((struct sockaddr_in6 *)&ss)->sin6_port
                             : ((struct sockaddr_in *)&ss)->sin_port);
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(srv.base, signos[i], signal_cb, &srv);
        if (!sigs[i] || event_add(sigs[i], NULL) < 0)
            goto out;
    }
    if (o->port_file && write_port_file(o->port_file, srv.port) < 0) {
        fprintf(stderr, "%s: cannot write '%s': %s\n", o->prog, o->port_file,
                strerror(errno));
        goto out;
    }
    if (!o->quiet)
        fprintf(stderr, "%s: listening on port %u\n", o->prog, srv.port);
    event_base_dispatch(srv.base);
    rc = 0;
out:
    while (srv.conns)
        conn_free(srv.conns);
    while (srv.lingers)
        linger_free(srv.lingers);
    while (srv.freelist) {
        struct stream *st = srv.freelist;
        srv.freelist = st->next;
        free(st);
    }
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (srv.listener)
        evconnlistener_free(srv.listener);
    if (srv.base)
        event_base_free(srv.base);
    nghttp2_session_callbacks_del(srv.cbs);
    nghttp2_option_del(srv.ngopt);
    SSL_CTX_free(srv.ssl);
    if (srv.record)
        fclose(srv.record);
    libevent_global_shutdown();
    return rc;
}
