/*
 * The load generator of tests/bench/run.sh: drives `pushgw serve` through
 * its real webhook API over keep-alive HTTP/1.1 connections, with many
 * requests in flight, and measures what happened.
 *
 *   loadgen send    --port P [options]      POST events, report acceptance
 *   loadgen wait    --db CONNINFO --events N wait until N events are done,
 *                                           report the rates from the DB
 *   loadgen latency --accept-log F RECORD…  accept → provider request
 *
 * send options:
 *   --scenario fanout|chat   fanout: --group-size peers per event, taken
 *                            from --groups groups (f<g>_<i>); chat: one
 *                            peer per event among --chat-peers (c<i>)
 *   --events N               events to have accepted (default 100)
 *   --conns C                connections (default 32)
 *   --depth D                requests in flight per connection (default 1;
 *                            more is HTTP/1.1 pipelining)
 *   --rate R                 events/s, 0 = as fast as accepted (default 0)
 *   --app A --key K          app id and X-LC-Hook-Key (demo,
 * demo-hook-key-0001)
 *   --run-id S               prefix of msgId (idempotency keys)
 *   --no-seq                 no "seq" in pushData: events that `latency`
 *                            must not match (the benchmark's warm-up)
 *   --no-badge               no "badge":"Increment" in pushData: no write
 *                            to installations per push (a comparison)
 *   --accept-log FILE        one line per accepted event:
 *                            "seq send_us accept_us event_id"
 *   --timeout-s S            give up after S seconds (default 600)
 * A 429 or 503 answer is counted and the same event is sent again after
 * 20 ms; any other answer than 202 is an error (exit status 1).
 *
 * Every event carries pushData {"alert", "badge":"Increment", "seq"}: the
 * seq reaches the device payload (an APNs custom key, an FCM data value),
 * which is how `latency` matches the mock's record lines (ts_ms) to the
 * time the event was accepted (the 202 received here).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define MAX_DEPTH 64
#define IN_CAP (256 * 1024)

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
                                                                ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- send ---------------------------------------------------------------- */

struct opts {
    int port;
    const char *scenario;
    long events;
    int conns;
    int depth;
    double rate;
    const char *app;
    const char *key;
    const char *run_id;
    const char *accept_log;
    int groups;
    int group_size;
    int chat_peers;
    int timeout_s;
    int no_seq;
    int no_badge;
};

struct conn {
    int fd;
    bool want_out; /* EPOLLOUT armed: output left after a short send */
    char *out;
    size_t out_len, out_off, out_cap;
    char *in;
    size_t in_len;
    long inflight[MAX_DEPTH]; /* seqs, in order */
    int n_inflight;
};

struct state {
    struct opts o;
    int ep; /* epoll: EPOLLIN on every connection, EPOLLOUT when blocked */
    struct sockaddr_in addr;
    struct conn *c;
    int64_t *send_us;   /* per seq: last send */
    int64_t *accept_us; /* per seq: 202 received */
    int64_t *event_id;
    long next_seq;     /* next new event */
    long *retry;       /* seqs to send again */
    int64_t *retry_at; /* not before */
    long n_retry, retry_head;
    long accepted, rejected, errors;
    int64_t first_accept, last_accept, start;
    char *body;
    size_t body_cap;
};

static void conn_open(struct state *s, struct conn *c)
{
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&s->addr, sizeof(s->addr)) < 0 &&
        errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
    c->out_len = c->out_off = 0;
    c->in_len = 0;
    c->n_inflight = 0;
    c->want_out = true; /* the first send waits for the connection */
    {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                 .data.u32 = (uint32_t)(c - s->c)};

        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
}

/* Sends what |c| has queued, at once; arms EPOLLOUT only while the socket
 * takes no more (a closed loop of small requests almost never blocks).
 * Returns -1 when the connection broke. */
static int conn_flush(struct state *s, struct conn *c)
{
    bool blocked = false;

    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == ENOTCONN)) {
            blocked = true;
            break;
        }
        return -1;
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (blocked != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (blocked ? EPOLLOUT : 0),
                                 .data.u32 = (uint32_t)(c - s->c)};

        if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            return -1;
        c->want_out = blocked;
    }
    return 0;
}

static void out_put(struct conn *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < c->out_len + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out)
            die("%s", "out of memory");
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

/* The JSON of event |seq| into s->body; returns its length. */
static size_t make_body(struct state *s, long seq, char *conv, size_t conv_sz)
{
    size_t need = 512 + (size_t)s->o.group_size * 24;
    size_t n;
    int64_t ts = now_us() / 1000;

    if (need > s->body_cap) {
        s->body = realloc(s->body, need);
        if (!s->body)
            die("%s", "out of memory");
        s->body_cap = need;
    }
    if (strcmp(s->o.scenario, "chat") == 0) {
        long peer = seq % s->o.chat_peers;
        snprintf(conv, conv_sz, "chat-%ld", peer);
        n = (size_t)snprintf(
            s->body, s->body_cap,
            "{\"fromPeer\":\"bench\",\"convId\":\"%s\",\"offlinePeers\":"
            "[\"c%ld\"],\"timestamp\":%lld,\"content\":\"hello\","
            "\"msgId\":\"%s-%ld\",\"pushData\":{\"alert\":\"hello from the "
            "benchmark\"%s%s%ld\"}}",
            conv, peer, (long long)ts, s->o.run_id, seq,
            s->o.no_badge ? "" : ",\"badge\":\"Increment\"",
            s->o.no_seq ? ",\"n\":\"" : ",\"seq\":\"", seq);
        return n;
    }
    {
        long g = seq % s->o.groups;
        snprintf(conv, conv_sz, "group-%ld", g);
        n = (size_t)snprintf(s->body, s->body_cap,
                             "{\"fromPeer\":\"bench\",\"convId\":\"%s\","
                             "\"offlinePeers\":[",
                             conv);
        for (int i = 0; i < s->o.group_size; i++)
            n += (size_t)snprintf(s->body + n, s->body_cap - n, "%s\"f%ld_%d\"",
                                  i ? "," : "", g, i);
        n += (size_t)snprintf(
            s->body + n, s->body_cap - n,
            "],\"timestamp\":%lld,\"content\":\"hello\",\"msgId\":"
            "\"%s-%ld\",\"pushData\":{\"alert\":\"hello from the "
            "benchmark\"%s%s%ld\"}}",
            (long long)ts, s->o.run_id, seq,
            s->o.no_badge ? "" : ",\"badge\":\"Increment\"",
            s->o.no_seq ? ",\"n\":\"" : ",\"seq\":\"", seq);
    }
    return n;
}

static void send_event(struct state *s, struct conn *c, long seq)
{
    char head[512], conv[64];
    size_t blen = make_body(s, seq, conv, sizeof(conv));
    int hn = snprintf(head, sizeof(head),
                      "POST /v1/apps/%s/receivers-offline HTTP/1.1\r\n"
                      "Host: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\n"
                      "X-LC-Hook-Key: %s\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      s->o.app, s->o.port, s->o.key, blen);

    out_put(c, head, (size_t)hn);
    out_put(c, s->body, blen);
    c->inflight[c->n_inflight++] = seq;
    s->send_us[seq] = now_us();
}

/* Handles one complete answer for the oldest request of |c|. */
static void on_answer(struct state *s, struct conn *c, int status,
                      const char *body, size_t blen)
{
    long seq = c->inflight[0];

    memmove(c->inflight, c->inflight + 1,
            (size_t)(c->n_inflight - 1) * sizeof(long));
    c->n_inflight--;
    if (status == 202) {
        const char *p = memmem(body, blen, "\"eventId\":\"", 11);
        int64_t t = now_us();
        s->accept_us[seq] = t;
        s->event_id[seq] = p ? strtoll(p + 11, NULL, 10) : 0;
        if (!s->first_accept)
            s->first_accept = t;
        s->last_accept = t;
        s->accepted++;
        return;
    }
    if (status == 429 || status == 503) {
        s->rejected++;
        s->retry[s->n_retry % s->o.events] = seq;
        s->retry_at[s->n_retry % s->o.events] = now_us() + 20000;
        s->n_retry++;
        return;
    }
    s->errors++;
    if (s->errors <= 5)
        fprintf(stderr, "loadgen: answer %d: %.*s\n", status,
                (int)(blen > 300 ? 300 : blen), body);
}

/* Parses every complete answer in |c|'s input; -1 on a protocol error. */
static int parse_answers(struct state *s, struct conn *c)
{
    for (;;) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        size_t hlen, clen = 0;
        int status = 0;
        char *cl;

        if (!end)
            return 0;
        hlen = (size_t)(end - c->in) + 4;
        *end = '\0';
        if (sscanf(c->in, "HTTP/1.%*d %d", &status) != 1)
            return -1;
        cl = strcasestr(c->in, "\r\ncontent-length:");
        if (cl)
            clen = strtoul(cl + 17, NULL, 10);
        if (c->in_len < hlen + clen) {
            *end = '\r';
            return 0;
        }
        if (c->n_inflight == 0)
            return -1;
        on_answer(s, c, status, c->in + hlen, clen);
        memmove(c->in, c->in + hlen + clen, c->in_len - hlen - clen);
        c->in_len -= hlen + clen;
    }
}

/* The next seq to send now, or -1. */
static long next_to_send(struct state *s, int64_t t)
{
    if (s->retry_head < s->n_retry &&
        s->retry_at[s->retry_head % s->o.events] <= t)
        return s->retry[(s->retry_head++) % s->o.events];
    if (s->next_seq < s->o.events)
        return s->next_seq++;
    return -1;
}

/* Requests without an answer are sent again (msgId makes a repeat of a
 * stored one a duplicate, not a second event) on a new connection. */
static void conn_broken(struct state *s, struct conn *c)
{
    close(c->fd);
    for (int k = 0; k < c->n_inflight; k++) {
        s->retry[s->n_retry % s->o.events] = c->inflight[k];
        s->retry_at[s->n_retry % s->o.events] = now_us() + 20000;
        s->n_retry++;
    }
    s->rejected += c->n_inflight;
    conn_open(s, c);
}

static int cmd_send(struct opts *o)
{
    struct state s;
    struct epoll_event *evs;
    double tokens = 0;
    int64_t last_tok;
    FILE *log = NULL;

    memset(&s, 0, sizeof(s));
    s.o = *o;
    if (o->port <= 0 || o->events <= 0 || o->conns <= 0 ||
        o->conns > MAX_CONNS || o->depth <= 0 || o->depth > MAX_DEPTH)
        die("%s", "bad options (see the header of loadgen.c)");
    s.addr.sin_family = AF_INET;
    s.addr.sin_port = htons((uint16_t)o->port);
    s.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    if (s.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    s.c = calloc((size_t)o->conns, sizeof(*s.c));
    s.send_us = calloc((size_t)o->events, sizeof(int64_t));
    s.accept_us = calloc((size_t)o->events, sizeof(int64_t));
    s.event_id = calloc((size_t)o->events, sizeof(int64_t));
    s.retry = calloc((size_t)o->events, sizeof(long));
    s.retry_at = calloc((size_t)o->events, sizeof(int64_t));
    evs = calloc((size_t)o->conns, sizeof(*evs));
    if (!s.c || !s.send_us || !s.accept_us || !s.event_id || !s.retry ||
        !s.retry_at || !evs)
        die("%s", "out of memory");
    for (int i = 0; i < o->conns; i++) {
        s.c[i].in = malloc(IN_CAP);
        if (!s.c[i].in)
            die("%s", "out of memory");
        conn_open(&s, &s.c[i]);
    }
    s.start = last_tok = now_us();
    while (s.accepted + s.errors < o->events) {
        int64_t t = now_us();
        int timeout = 50, n;

        if (t - s.start > (int64_t)o->timeout_s * 1000000) {
            fprintf(stderr, "loadgen: timed out\n");
            break;
        }
        if (o->rate > 0) {
            tokens += (double)(t - last_tok) * o->rate / 1e6;
            if (tokens > 64)
                tokens = 64;
            last_tok = t;
        }
        for (int i = 0; i < o->conns; i++) {
            struct conn *c = &s.c[i];
            bool queued = false;

            while (c->n_inflight < o->depth && (o->rate <= 0 || tokens >= 1)) {
                long seq = next_to_send(&s, t);
                if (seq < 0)
                    break;
                send_event(&s, c, seq);
                tokens -= 1;
                queued = true;
            }
            if (queued && !c->want_out && conn_flush(&s, c) < 0)
                conn_broken(&s, c);
        }
        if (o->rate > 0 && tokens < 1)
            timeout = 1;
        if (s.retry_head < s.n_retry)
            timeout = 5;
        n = epoll_wait(s.ep, evs, o->conns, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            struct conn *c = &s.c[evs[k].data.u32];
            bool broken = false;

            if ((evs[k].events & EPOLLOUT) && conn_flush(&s, c) < 0)
                broken = true;
            if (!broken && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t r =
                    recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
                if (r > 0) {
                    c->in_len += (size_t)r;
                    if (parse_answers(&s, c) < 0 || c->in_len == IN_CAP)
                        broken = true;
                } else if (r == 0 || errno != EAGAIN) {
                    broken = true;
                }
            }
            if (broken)
                conn_broken(&s, c);
        }
    }
    {
        double secs = (double)(s.last_accept - s.first_accept) / 1e6;
        printf("loadgen scenario=%s events=%ld accepted=%ld rejected=%ld "
               "errors=%ld accept_secs=%.3f accepted_per_s=%.0f "
               "first_accept_us=%lld last_accept_us=%lld\n",
               o->scenario, o->events, s.accepted, s.rejected, s.errors, secs,
               secs > 0 ? (double)s.accepted / secs : 0,
               (long long)s.first_accept, (long long)s.last_accept);
    }
    if (o->accept_log) {
        log = fopen(o->accept_log, "w");
        if (!log)
            die("cannot write '%s'", o->accept_log);
        for (long i = 0; i < o->events; i++)
            if (s.accept_us[i])
                fprintf(log, "%ld %lld %lld %lld\n", i, (long long)s.send_us[i],
                        (long long)s.accept_us[i], (long long)s.event_id[i]);
        fclose(log);
    }
    for (int i = 0; i < o->conns; i++) {
        close(s.c[i].fd);
        free(s.c[i].in);
        free(s.c[i].out);
    }
    free(s.c);
    free(evs);
    close(s.ep);
    free(s.send_us);
    free(s.accept_us);
    free(s.event_id);
    free(s.retry);
    free(s.retry_at);
    free(s.body);
    return s.errors || s.accepted < o->events ? 1 : 0;
}

/* ---- wait ---------------------------------------------------------------- */

/*
 * Waits until at least |events| events exist and none is unfinished, then
 * prints the rates over [first received_at, last finished_at]: received_at
 * is the insert transaction's time (acceptance), finished_at the time the
 * last event's outcome was recorded, after its last provider answer.
 */
static int cmd_wait(const char *db, long events, int timeout_s)
{
    PGconn *pg = PQconnectdb(db);
    int64_t start = now_us();
    PGresult *r;

    if (PQstatus(pg) != CONNECTION_OK)
        die("cannot connect: %s", PQerrorMessage(pg));
    /* The poll reads only the unfinished events (the partial indexes
     * events_claimable and events_retrying): counting the whole table
     * every 20 ms cost the database several ms per poll, taken from the
     * run it measures. The table is counted once all are done. */
    for (;;) {
        long n = 0, open;
        r = PQexec(pg, "SELECT (SELECT count(*) FROM events WHERE state = "
                       "'pending') + (SELECT count(*) FROM events WHERE "
                       "state = 'retrying')");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            die("query failed: %s", PQerrorMessage(pg));
        open = atol(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (open == 0) {
            r = PQexec(pg, "SELECT count(*) FROM events");
            if (PQresultStatus(r) != PGRES_TUPLES_OK)
                die("query failed: %s", PQerrorMessage(pg));
            n = atol(PQgetvalue(r, 0, 0));
            PQclear(r);
            if (n >= events)
                break;
        }
        if (now_us() - start > (int64_t)timeout_s * 1000000) {
            fprintf(stderr, "loadgen: %ld events, %ld not done after %d s\n", n,
                    open, timeout_s);
            PQfinish(pg);
            return 1;
        }
        usleep(20000);
    }
    r = PQexec(pg, "SELECT count(*), coalesce(sum(pushes_total), 0), "
                   "coalesce(sum(pushes_delivered), 0), "
                   "extract(epoch FROM max(finished_at) - min(received_at)) "
                   "FROM events");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("query failed: %s", PQerrorMessage(pg));
    {
        long n = atol(PQgetvalue(r, 0, 0));
        long total = atol(PQgetvalue(r, 0, 1));
        long delivered = atol(PQgetvalue(r, 0, 2));
        double secs = atof(PQgetvalue(r, 0, 3));
        printf("wait events=%ld pushes_total=%ld pushes_delivered=%ld "
               "secs=%.3f events_per_s=%.0f pushes_per_s=%.0f\n",
               n, total, delivered, secs, secs > 0 ? (double)n / secs : 0,
               secs > 0 ? (double)delivered / secs : 0);
    }
    PQclear(r);
    PQfinish(pg);
    return 0;
}

/* ---- latency ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*
 * Reads the accept log, then every record line of the mocks: the seq in
 * the pushed payload names the event, ts_ms (the mock's receive time,
 * milliseconds) the provider request. Prints percentiles of
 * ts_ms - accept time (202 received) and of ts_ms - send time.
 */
static int cmd_latency(const char *accept_log, char **records, int n_records)
{
    FILE *fp = fopen(accept_log, "r");
    long cap = 1 << 16, max_seq = -1;
    int64_t *acc = calloc((size_t)cap, sizeof(int64_t));
    int64_t *snd = calloc((size_t)cap, sizeof(int64_t));
    double *lat = NULL, *lat_send = NULL;
    size_t n = 0, lcap = 0;
    char line[65536];
    long seq;
    long long su, au, eid;

    if (!fp || !acc || !snd)
        die("cannot read '%s'", accept_log);
    while (fscanf(fp, "%ld %lld %lld %lld", &seq, &su, &au, &eid) == 4) {
        if (seq < 0)
            continue;
        while (seq >= cap) {
            acc = realloc(acc, (size_t)cap * 2 * sizeof(int64_t));
            snd = realloc(snd, (size_t)cap * 2 * sizeof(int64_t));
            if (!acc || !snd)
                die("%s", "out of memory");
            memset(acc + cap, 0, (size_t)cap * sizeof(int64_t));
            memset(snd + cap, 0, (size_t)cap * sizeof(int64_t));
            cap *= 2;
        }
        acc[seq] = au;
        snd[seq] = su;
        if (seq > max_seq)
            max_seq = seq;
    }
    fclose(fp);
    for (int f = 0; f < n_records; f++) {
        FILE *rp = fopen(records[f], "r");
        if (!rp)
            die("cannot read '%s'", records[f]);
        while (fgets(line, sizeof(line), rp)) {
            char *ts = strstr(line, "\"ts_ms\":");
            char *sq = strstr(line, "\"seq\":\"");
            double t;
            if (!ts || !sq)
                continue;
            t = strtod(ts + 8, NULL);
            seq = strtol(sq + 7, NULL, 10);
            if (seq < 0 || seq > max_seq || !acc[seq])
                continue;
            if (n == lcap) {
                lcap = lcap ? lcap * 2 : 65536;
                lat = realloc(lat, lcap * sizeof(double));
                lat_send = realloc(lat_send, lcap * sizeof(double));
                if (!lat || !lat_send)
                    die("%s", "out of memory");
            }
            lat[n] = t - (double)acc[seq] / 1000.0;
            lat_send[n] = t - (double)snd[seq] / 1000.0;
            n++;
        }
        fclose(rp);
    }
    if (n == 0) {
        printf("latency samples=0\n");
        return 1;
    }
    qsort(lat, n, sizeof(double), cmp_double);
    qsort(lat_send, n, sizeof(double), cmp_double);
    /* The mock's clock has millisecond steps and the 202 may arrive after
     * the push went out: a negative difference counts as 0. */
    printf("latency samples=%zu p50_ms=%.1f p99_ms=%.1f max_ms=%.1f "
           "from_send_p50_ms=%.1f from_send_p99_ms=%.1f\n",
           n, lat[n / 2] < 0 ? 0 : lat[n / 2],
           lat[(n * 99) / 100] < 0 ? 0 : lat[(n * 99) / 100], lat[n - 1],
           lat_send[n / 2], lat_send[(n * 99) / 100]);
    free(acc);
    free(snd);
    free(lat);
    free(lat_send);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.scenario = "fanout",
                     .events = 100,
                     .conns = 32,
                     .depth = 1,
                     .app = "demo",
                     .key = "demo-hook-key-0001",
                     .run_id = "bench",
                     .groups = 4,
                     .group_size = 1000,
                     .chat_peers = 10000,
                     .timeout_s = 600};
    const char *db = NULL;
    char *records[16];
    int n_records = 0;

    if (argc < 2)
        die("%s", "usage: loadgen send|wait|latency [options]");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool used = true;

        if (!strcmp(a, "--no-seq")) { /* the options without a value */
            o.no_seq = 1;
            continue;
        }
        if (!strcmp(a, "--no-badge")) {
            o.no_badge = 1;
            continue;
        }
        if (!strcmp(a, "--port") && v)
            o.port = atoi(v);
        else if (!strcmp(a, "--scenario") && v)
            o.scenario = v;
        else if (!strcmp(a, "--events") && v)
            o.events = atol(v);
        else if (!strcmp(a, "--conns") && v)
            o.conns = atoi(v);
        else if (!strcmp(a, "--depth") && v)
            o.depth = atoi(v);
        else if (!strcmp(a, "--rate") && v)
            o.rate = atof(v);
        else if (!strcmp(a, "--app") && v)
            o.app = v;
        else if (!strcmp(a, "--key") && v)
            o.key = v;
        else if (!strcmp(a, "--run-id") && v)
            o.run_id = v;
        else if (!strcmp(a, "--accept-log") && v)
            o.accept_log = v;
        else if (!strcmp(a, "--groups") && v)
            o.groups = atoi(v);
        else if (!strcmp(a, "--group-size") && v)
            o.group_size = atoi(v);
        else if (!strcmp(a, "--chat-peers") && v)
            o.chat_peers = atoi(v);
        else if (!strcmp(a, "--timeout-s") && v)
            o.timeout_s = atoi(v);
        else if (!strcmp(a, "--db") && v)
            db = v;
        else
            used = false;
        if (used) {
            i++;
            continue;
        }
        if (a[0] == '-')
            die("unknown option '%s'", a);
        if (n_records < 16)
            records[n_records++] = argv[i];
    }
    if (o.groups <= 0 || o.group_size <= 0 || o.chat_peers <= 0)
        die("%s", "bad --groups, --group-size or --chat-peers");
    if (!strcmp(argv[1], "send"))
        return cmd_send(&o);
    if (!strcmp(argv[1], "wait")) {
        if (!db)
            die("%s", "wait needs --db");
        return cmd_wait(db, o.events, o.timeout_s);
    }
    if (!strcmp(argv[1], "latency")) {
        if (!o.accept_log)
            die("%s", "latency needs --accept-log");
        return cmd_latency(o.accept_log, records, n_records);
    }
    die("unknown command '%s'", argv[1]);
    return 2;
}
