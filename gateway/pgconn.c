/*
 * The libpq connection state machine (see pgconn.h for the states). Each
 * connection has two events on its socket, one for reading (persistent
 * once connected) and one for writing (connect polls, and output libpq
 * could not write at once), and a timer for the reconnect backoff.
 * PQconnectPoll may change the socket: it is read again after every step.
 * Results are matched to units by order: the oldest unit in flight gets
 * every result until its sync. While setting up, the setup's statements
 * are that oldest unit, held here rather than by the owner.
 */
#include "pgconn.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pushgw.h"

#define PGCONN_BACKOFF_MIN_MS 100
#define PGCONN_BACKOFF_MAX_MS 5000
#define PGCONN_CONNECT_TIMEOUT_S 10

enum pgconn_state {
    PGCONN_DOWN,       /* closed; the backoff timer may be pending */
    PGCONN_CONNECTING, /* PQconnectPoll in progress */
    PGCONN_SETUP,      /* the setup's statements in flight */
    PGCONN_UP,
};

struct pgw_pgconn {
    struct event_base *base;
    char *conninfo;
    bool keepalives;
    const char *setup_what, *setup_why;
    struct pgw_pgconn_callbacks cb;
    void *arg;
    PGconn *pg;
    enum pgconn_state state;
    int fd;
    struct event *rev;   /* EV_READ (persistent once connected) */
    struct event *wev;   /* EV_WRITE: connect polls and output flushing */
    struct event *timer; /* reconnect backoff */
    unsigned backoff_ms;
    struct pgw_pgconn_unit *head, *tail; /* in flight, in pipeline order */
    size_t n_inflight;
    bool setup_failed; /* a setup statement failed */
    bool unflushed;    /* units synced since the last flush */
};

static void on_io(evutil_socket_t fd, short what, void *arg);

static void conn_close(struct pgw_pgconn *c)
{
    if (c->rev)
        event_del(c->rev);
    if (c->wev)
        event_del(c->wev);
    PQfinish(c->pg);
    c->pg = NULL;
    c->fd = -1;
}

/* Detaches the units in flight and fails each with |err|. */
static void fail_inflight(struct pgw_pgconn *c, int err)
{
    struct pgw_pgconn_unit *u = c->head;

    c->head = c->tail = NULL;
    c->n_inflight = 0;
    while (u) {
        struct pgw_pgconn_unit *next = u->next;

        u->next = NULL;
        c->cb.fail(c->arg, u, err);
        u = next;
    }
}

/* The connection failed: closed, every unit in flight fails with
 * PGW_ERR_DB, and it reconnects after its backoff. */
static void conn_fail(struct pgw_pgconn *c, const char *what, const char *msg)
{
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};

    /* |msg| may be libpq's, freed with the connection: told first */
    c->cb.down(c->arg, c, c->state == PGCONN_UP, what, msg);
    conn_close(c);
    c->state = PGCONN_DOWN;
    c->setup_failed = false;
    c->unflushed = false;
    evtimer_add(c->timer, &tv);
    c->backoff_ms = c->backoff_ms * 2 > PGCONN_BACKOFF_MAX_MS
                        ? PGCONN_BACKOFF_MAX_MS
                        : c->backoff_ms * 2;
    fail_inflight(c, PGW_ERR_DB);
}

/* Writes what libpq holds; the rest when the socket is writable. */
static int flush_now(struct pgw_pgconn *c)
{
    int rc = PQflush(c->pg);

    if (rc < 0) {
        conn_fail(c, "", PQerrorMessage(c->pg));
        return -1;
    }
    if (rc > 0)
        event_add(c->wev, NULL);
    return 0;
}

/* Registers |c|'s events on the socket libpq reports now. */
static int conn_watch(struct pgw_pgconn *c, short rflags, short wflags)
{
    c->fd = PQsocket(c->pg);
    if (c->fd < 0)
        return -1;
    event_del(c->rev);
    event_del(c->wev);
    if (event_assign(c->rev, c->base, c->fd, rflags, on_io, c) < 0 ||
        event_assign(c->wev, c->base, c->fd, wflags, on_io, c) < 0)
        return -1;
    return 0;
}

/* Connected: pipeline mode, then the owner's setup in one sync. */
static void conn_setup(struct pgw_pgconn *c)
{
    const char *what;

    PQsetNoticeProcessor(c->pg, pgw_pgconn_log_notice, NULL);
    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
        conn_fail(c, "could not enter pipeline mode: ", PQerrorMessage(c->pg));
        return;
    }
    if (conn_watch(c, EV_READ | EV_PERSIST, EV_WRITE) < 0) {
        conn_fail(c, "could not watch the connection: ", "bad socket");
        return;
    }
    event_add(c->rev, NULL);
    what = c->cb.setup(c->arg, c->pg);
    if (what) {
        conn_fail(c, what, PQerrorMessage(c->pg));
        return;
    }
    if (!PQpipelineSync(c->pg)) {
        conn_fail(c, "", PQerrorMessage(c->pg));
        return;
    }
    c->state = PGCONN_SETUP;
    flush_now(c);
}

/* One step of PQconnectPoll; the socket may change between steps. */
static void conn_poll(struct pgw_pgconn *c)
{
    struct timeval tv = {PGCONN_CONNECT_TIMEOUT_S, 0};
    PostgresPollingStatusType st = PQconnectPoll(c->pg);

    switch (st) {
    case PGRES_POLLING_OK:
        conn_setup(c);
        return;
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        if (conn_watch(c, EV_READ, EV_WRITE) < 0) {
            conn_fail(c, "could not connect: ", PQerrorMessage(c->pg));
            return;
        }
        event_add(st == PGRES_POLLING_READING ? c->rev : c->wev, &tv);
        return;
    default:
        conn_fail(c, "could not connect: ", PQerrorMessage(c->pg));
        return;
    }
}

void pgw_pgconn_start(struct pgw_pgconn *c)
{
    /* Later values override what the connection string says. */
    static const char *const keys[] = {
        "dbname",           "keepalives",
        "keepalives_idle",  "keepalives_interval",
        "keepalives_count", NULL};
    const char *values[] = {c->conninfo, "1", "30", "10", "3", NULL};
    struct timeval tv = {PGCONN_CONNECT_TIMEOUT_S, 0};

    c->pg = c->keepalives ? PQconnectStartParams(keys, values, 1)
                          : PQconnectStart(c->conninfo);
    if (!c->pg) {
        conn_fail(c, "could not connect: ", "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, "could not connect: ", PQerrorMessage(c->pg));
        return;
    }
    c->state = PGCONN_CONNECTING;
    /* libpq asks to start as if PQconnectPoll said POLLING_WRITING. */
    if (conn_watch(c, EV_READ, EV_WRITE) < 0) {
        conn_fail(c, "could not connect: ", PQerrorMessage(c->pg));
        return;
    }
    event_add(c->wev, &tv);
}

/* Fires when the reconnect backoff of a connection has passed. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pgw_pgconn_start(arg);
}

/* A result while setting up: a failure fails the setup at its sync. */
static void setup_result(struct pgw_pgconn *c, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !c->setup_failed) {
        char line[300];

        c->setup_failed = true;
        pgw_log_debug(
            "statement failed: %s",
            pgw_pgconn_one_line(line, sizeof(line), PQresultErrorMessage(r)));
    }
    PQclear(r);
}

/* Reads every result that arrived; a unit ends at its sync. */
static void conn_read(struct pgw_pgconn *c)
{
    bool got_null = false;
    PGnotify *nf;

    if (!PQconsumeInput(c->pg)) {
        conn_fail(c, "", PQerrorMessage(c->pg));
        return;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        struct pgw_pgconn_unit *u = c->head;
        bool setup = c->state == PGCONN_SETUP;

        if (!r) {
            /* the end of one statement's results; twice: nothing left */
            if (got_null || (!u && !setup))
                break;
            got_null = true;
            continue;
        }
        got_null = false;
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
            if (setup)
                setup_result(c, r);
            else if (u)
                c->cb.result(c->arg, u, r);
            else
                PQclear(r);
            continue;
        }
        PQclear(r);
        if (setup) {
            if (c->setup_failed) {
                conn_fail(c, c->setup_what, c->setup_why);
                return;
            }
            c->state = PGCONN_UP;
            c->backoff_ms = PGCONN_BACKOFF_MIN_MS;
            c->cb.up(c->arg, c);
            continue;
        }
        if (!u)
            continue;
        c->head = u->next;
        if (!c->head)
            c->tail = NULL;
        c->n_inflight--;
        u->next = NULL;
        c->cb.done(c->arg, u);
    }
    if (c->state == PGCONN_DOWN)
        return; /* a callback failed it: nothing left to read */
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_fail(c, "", PQerrorMessage(c->pg));
        return;
    }
    while ((nf = PQnotifies(c->pg))) {
        if (c->cb.notify)
            c->cb.notify(c->arg, nf->extra);
        PQfreemem(nf);
    }
}

/* Fires on socket readiness (or the connect timeout) of |arg|; may fail
 * the connection and every unit in flight on it. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_pgconn *c = arg;

    (void)fd;
    if (c->state == PGCONN_CONNECTING) {
        if (what & EV_TIMEOUT) {
            conn_fail(c, "could not connect: ", "timed out");
            return;
        }
        conn_poll(c);
        return;
    }
    if (what & EV_WRITE) {
        if (flush_now(c) < 0)
            return;
    }
    if (what & EV_READ) {
        conn_read(c);
        if (c->pg && c->state != PGCONN_DOWN)
            flush_now(c);
    }
}

int pgw_pgconn_new(struct event_base *base,
                   const struct pgw_pgconn_options *opts,
                   const struct pgw_pgconn_callbacks *cb, void *arg,
                   struct pgw_pgconn **ret_conn)
{
    struct pgw_pgconn *c = calloc(1, sizeof(*c));

    if (!c)
        return PGW_ERR_NOMEM;
    c->base = base;
    c->conninfo = strdup(opts->conninfo);
    c->keepalives = opts->keepalives;
    c->setup_what = opts->setup_what;
    c->setup_why = opts->setup_why;
    c->cb = *cb;
    c->arg = arg;
    c->fd = -1;
    c->backoff_ms = PGCONN_BACKOFF_MIN_MS;
    c->rev = event_new(base, -1, 0, on_io, c);
    c->wev = event_new(base, -1, 0, on_io, c);
    c->timer = evtimer_new(base, on_timer, c);
    if (!c->conninfo || !c->rev || !c->wev || !c->timer) {
        pgw_pgconn_free(c);
        return PGW_ERR_NOMEM;
    }
    *ret_conn = c;
    return 0;
}

void pgw_pgconn_free(struct pgw_pgconn *c)
{
    if (!c)
        return;
    conn_close(c);
    c->state = PGCONN_DOWN;
    fail_inflight(c, PGW_ERR_CLOSED);
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    free(c->conninfo);
    free(c);
}

void pgw_pgconn_fail(struct pgw_pgconn *c, const char *what, const char *msg)
{
    if (c->state != PGCONN_DOWN)
        conn_fail(c, what, msg);
}

bool pgw_pgconn_is_up(const struct pgw_pgconn *c)
{
    return c->state == PGCONN_UP;
}

bool pgw_pgconn_is_down(const struct pgw_pgconn *c)
{
    return c->state == PGCONN_DOWN;
}

size_t pgw_pgconn_inflight(const struct pgw_pgconn *c)
{
    return c->n_inflight;
}

PGconn *pgw_pgconn_pg(struct pgw_pgconn *c)
{
    return c->pg;
}

void pgw_pgconn_sync(struct pgw_pgconn *c, struct pgw_pgconn_unit *u,
                     bool broken)
{
    u->next = NULL;
    if (c->tail)
        c->tail->next = u;
    else
        c->head = u;
    c->tail = u;
    c->n_inflight++;
    /* A unit's statements without their sync would join the next
     * unit's transaction: the connection goes, as if it had broken. */
    if (broken || !PQpipelineSync(c->pg)) {
        conn_fail(c, "", PQerrorMessage(c->pg));
        return;
    }
    c->unflushed = true;
}

void pgw_pgconn_flush(struct pgw_pgconn *c)
{
    if (!c->unflushed || c->state != PGCONN_UP)
        return;
    c->unflushed = false;
    flush_now(c);
}

const char *pgw_pgconn_one_line(char *buf, size_t size, const char *msg)
{
    size_t j = 0;

    for (size_t i = 0; msg && msg[i] && j + 1 < size; i++) {
        char c = msg[i];
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c == ' ' && (j == 0 || buf[j - 1] == ' '))
            continue;
        buf[j++] = c;
    }
    while (j > 0 && buf[j - 1] == ' ')
        j--;
    buf[j] = '\0';
    return buf;
}

void pgw_pgconn_log_notice(void *arg, const char *message)
{
    (void)arg;
    pgw_log_debug("postgres: %s", message);
}
