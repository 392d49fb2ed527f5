/*
 * One non-blocking libpq connection on a libevent loop, in pipeline mode:
 * the state machine of the store's connections (docs/SERVICE.md).
 *
 *   down --start/backoff--> connecting --PQconnectPoll ok--> setting up
 *        --setup's sync ok--> up --failure--> down (backoff, then again)
 *
 * Connecting is PQconnectStart/PQconnectPoll driven by socket readiness,
 * with a timeout. Setting up: the owner's setup callback sends the
 * session's statements (prepares, LISTEN), pgconn adds one sync; any of
 * them failing fails the connection with the message of the options.
 * Up: the owner sends units of work — its statements, then
 * pgw_pgconn_sync() — and gets each unit's results, in pipeline order,
 * through the callbacks. On any failure the connection closes, every
 * unit in flight fails with PGW_ERR_DB, and it reconnects after a
 * backoff of 100 ms doubling to 5 s (reset once up).
 *
 * Every callback runs from the event loop (or from the pgconn call named
 * with it), never after pgw_pgconn_free(). A callback may call
 * pgw_pgconn_fail() on another connection, but must not free one.
 * Also libpq helpers used by the store's other files.
 */
#ifndef PUSHGW_PGCONN_H
#define PUSHGW_PGCONN_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

struct event_base;
struct pgw_pgconn;

/* A unit of work in flight: embedded in the owner's object, which gets
 * it back in the callbacks. */
struct pgw_pgconn_unit {
    struct pgw_pgconn_unit *next;
};

struct pgw_pgconn_callbacks {
    /* Connected and in pipeline mode: send the session's statements on
     * |pg| (no sync). Returns NULL, or when libpq refused one the start
     * of the failure's message ("could not listen: "), to which its
     * PQerrorMessage() is added. */
    const char *(*setup)(void *arg, PGconn *pg);
    /* The setup succeeded: units may be sent from now on. */
    void (*up)(void *arg, struct pgw_pgconn *c);
    /* The connection failed: "|what||msg|" says why (|msg| is valid
     * during the call only); |was_up| when it had been up. Runs before
     * the units in flight fail. */
    void (*down)(void *arg, struct pgw_pgconn *c, bool was_up, const char *what,
                 const char *msg);
    /* The next result |r| of unit |u| (the oldest in flight); the callee
     * owns |r| and frees it with PQclear(). */
    void (*result)(void *arg, struct pgw_pgconn_unit *u, PGresult *r);
    /* Unit |u| reached its sync: it is out of the connection. */
    void (*done)(void *arg, struct pgw_pgconn_unit *u);
    /* Unit |u| ends without its sync: |err| PGW_ERR_DB (the connection
     * failed) or PGW_ERR_CLOSED (pgw_pgconn_free()). */
    void (*fail)(void *arg, struct pgw_pgconn_unit *u, int err);
    /* result, done and fail run only for units: NULL on a connection
     * that is never sent any. */
    /* A notification's payload (NULL: none are expected). */
    void (*notify)(void *arg, const char *payload);
};

struct pgw_pgconn_options {
    const char *conninfo; /* copied */
    /* TCP keepalives (30 s idle, then 10 s apart, 3 lost): how a
     * connection that only ever reads learns the server went away
     * without a word. They override the connection string. */
    bool keepalives;
    /* The failure when a setup statement fails: "|what||why|" (not
     * copied: static strings). */
    const char *setup_what, *setup_why;
};

/*
 * A connection on |base| (not started; down) whose callbacks |cb| get
 * |arg|. Free with pgw_pgconn_free(). Errors: PGW_ERR_NOMEM.
 */
int pgw_pgconn_new(struct event_base *base,
                   const struct pgw_pgconn_options *opts,
                   const struct pgw_pgconn_callbacks *cb, void *arg,
                   struct pgw_pgconn **ret_conn);

/* Closes |c|; units in flight fail with PGW_ERR_CLOSED, inside this call.
 * NULL is a no-op. Must not be called from one of |c|'s callbacks. */
void pgw_pgconn_free(struct pgw_pgconn *c);

/* Starts connecting (a failure here goes the usual way: down callback,
 * backoff). Only on a connection that is down and not waiting for its
 * backoff, i.e. once after pgw_pgconn_new(). */
void pgw_pgconn_start(struct pgw_pgconn *c);

/* Fails |c| now as if libpq had: down callback, units in flight fail,
 * reconnect after the backoff. No-op while down. */
void pgw_pgconn_fail(struct pgw_pgconn *c, const char *what, const char *msg);

bool pgw_pgconn_is_up(const struct pgw_pgconn *c);
bool pgw_pgconn_is_down(const struct pgw_pgconn *c);
/* Units sent and not yet done. */
size_t pgw_pgconn_inflight(const struct pgw_pgconn *c);

/* The libpq connection of |c| while up, to send a unit's statements on
 * (PQsendQueryParams, PQsendQueryPrepared: never a sync). */
PGconn *pgw_pgconn_pg(struct pgw_pgconn *c);

/*
 * Ends unit |u| whose statements were just sent on |c| (up): adds its
 * sync and takes |u| in flight. When |broken| (sending a statement
 * failed) or the sync cannot be added, |c| fails instead, |u| with it
 * (down, then fail callbacks, inside this call). The output waits in
 * libpq until pgw_pgconn_flush().
 */
void pgw_pgconn_sync(struct pgw_pgconn *c, struct pgw_pgconn_unit *u,
                     bool broken);

/* Writes the output of the units synced since the last flush, as far as
 * the socket takes it; the rest goes when it is writable. No-op when
 * there is none or |c| is not up. May fail |c|. */
void pgw_pgconn_flush(struct pgw_pgconn *c);

/* -- libpq helpers -- */

/*
 * libpq's messages end in newlines and may span lines: copies |msg|
 * (NULL: "") into |buf| of |size| (> 0) bytes as one line, whitespace
 * runs folded to one space, cut to fit. Returns |buf|.
 */
const char *pgw_pgconn_one_line(char *buf, size_t size, const char *msg);

/* A PQsetNoticeProcessor() callback: server notices are logged at debug
 * level only (a migration's "already exists, skipping" is no news). */
void pgw_pgconn_log_notice(void *arg, const char *message);

#endif
