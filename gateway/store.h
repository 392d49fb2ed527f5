/*
 * All SQL of pushgw: the schema migrator used by `pushgw migrate` (blocking
 * libpq, before any loop exists), and the asynchronous store of `serve`:
 * a pool of non-blocking libpq connections on the event loop (PQsocket
 * registered with libevent, pipeline mode), with the statements of
 * docs/SERVICE.md. Every SQL statement takes parameters; none is built by
 * pasting values.
 *
 * Asynchronous calls: each takes a callback that runs exactly once, never
 * inside the call itself, with 0 or a negative enum pgw_err
 * (PGW_ERR_DB: the database failed or is unreachable; the operation did
 * not take effect unless stated). Data passed to a callback is valid only
 * during the call. A call returns 0 when queued, or PGW_ERR_BUSY (queue
 * full), PGW_ERR_CLOSED (store shutting down), PGW_ERR_NOMEM: then the
 * callback never runs.
 *
 * Strings passed in must be valid UTF-8 without NUL (PGW_ERR_INVAL
 * otherwise: one bad value would fail a whole merged statement). Until
 * the first connection attempt has ended, operations wait for it; after
 * that, while no connection is up, they fail with PGW_ERR_DB on the next
 * loop iteration. A connection failure is logged once (warn) and the
 * recovery once (info); nothing is logged per operation.
 */
#ifndef PUSHGW_STORE_H
#define PUSHGW_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "installation.h"
#include "pushgw.h"

struct event_base;
struct pgw_store;

/* The advisory lock key `migrate` holds: ASCII "pushgwmg". */
#define PGW_STORE_MIGRATE_LOCK 0x7075736867776d67LL

#define PGW_STORE_MAX_MIGRATIONS 10000
#define PGW_STORE_MAX_MIGRATION_BYTES (16 * 1024 * 1024)

/*
 * Applies the pending NNNN_name.sql files of |dir| to the database at
 * |conninfo| in order, each in its own transaction, under an advisory lock.
 * Prints one line per applied file and a summary to |out|; adds problems
 * to |diag|. Returns 0; PGW_ERR_DB (connection or SQL failure);
 * PGW_ERR_CONFLICT (an applied file changed or is missing, or the folder
 * holds a badly named or duplicate file); PGW_ERR_IO (folder unreadable);
 * PGW_ERR_NOMEM.
 */
int pgw_store_migrate(const char *conninfo, const char *dir, FILE *out,
                      struct pgw_diag *diag);

/* SHA-256 of |len| bytes as 64 lowercase hex characters plus NUL. */
void pgw_store_sha256_hex(const void *data, size_t len, char ret_hex[65]);

/* ---- the asynchronous store of `serve` ---------------------------------- */

/* The bound of [database] pool_size. */
#define PGW_STORE_MAX_POOL 256

struct pgw_store_options {
    const char *conninfo;
    unsigned pool_size; /* connections; 0: 4; at most PGW_STORE_MAX_POOL */
    /* Who holds leases: unique per process ("host:pid:random"). */
    const char *owner;
    size_t max_queued; /* operations waiting for a connection; 0: 100000 */
    /* Reconnect backoff after a failure: 100 ms doubling to 5 s. */
    /* The installation cache (see pgw_store_find_installations): at most
     * this many bytes; 0: no cache. Its entries live |cache_ttl_ms| (0:
     * 60 s). */
    size_t cache_bytes;
    unsigned cache_ttl_ms;
};

/*
 * Creates the store on |base| and starts connecting (non-blocking).
 * Free with pgw_store_free(). Errors: PGW_ERR_INVAL, PGW_ERR_NOMEM.
 */
int pgw_store_new(struct event_base *base, const struct pgw_store_options *opts,
                  struct pgw_store **ret_store);

/* Closes every connection; queued operations complete with PGW_ERR_CLOSED
 * (their callbacks run inside this call). NULL is a no-op. Must not be
 * called from inside one of the store's callbacks. */
void pgw_store_free(struct pgw_store *self);

/* True while at least one connection is up (for /readyz and 503s). */
bool pgw_store_is_up(const struct pgw_store *self);
/* The connections of the pool that are up, 0 .. pool_size. */
unsigned pgw_store_conns_up(const struct pgw_store *self);
/* The last connection error, one line ("" when none). */
const char *pgw_store_last_error(const struct pgw_store *self);

/* -- intake -- */

struct pgw_store_new_event {
    const char *app_id;
    const char *conv_id;
    const char *msg_id; /* NULL: no idempotency key */
    const char *body;   /* the event JSON as received (valid UTF-8) */
    size_t body_len;
    int64_t event_ts_ms;
    /* Take the lease for this process (it works the event from memory);
     * false leaves it for any process to claim. */
    bool lease;
    unsigned lease_ms;
};

/*
 * |event_id| is the new row's id, or the existing one when |duplicate|
 * (same app, conv_id and msg_id already stored: nothing was inserted).
 */
typedef void (*pgw_store_insert_cb)(void *arg, int err, int64_t event_id,
                                    bool duplicate);

/*
 * Inserts |ev| (copied). Inserts queued during one loop iteration (up to
 * 1000) are committed together in one statement; the callback runs once
 * that transaction committed (err 0) or failed (PGW_ERR_DB: nothing of
 * this event is stored). Fails fast with PGW_ERR_DB in the callback when
 * no connection is up.
 */
int pgw_store_insert_event(struct pgw_store *self,
                           const struct pgw_store_new_event *ev,
                           pgw_store_insert_cb cb, void *arg);

/* Events not yet done (pending or retrying), for the backlog bound. */
typedef void (*pgw_store_count_cb)(void *arg, int err, int64_t count);
int pgw_store_count_backlog(struct pgw_store *self, pgw_store_count_cb cb,
                            void *arg);

/* -- claiming -- */

struct pgw_store_event {
    int64_t id;
    const char *app_id;
    const char *body; /* as inserted */
    size_t body_len;
    int attempts; /* first-pass claims so far, this one included */
    /* The lease that expired was this process's own (its renewals came
     * late): the event may still be worked here. */
    bool was_ours;
};

typedef void (*pgw_store_events_cb)(void *arg, int err,
                                    const struct pgw_store_event *events,
                                    size_t n);

/*
 * Claims up to |max| pending events whose lease is free or expired
 * (FOR UPDATE SKIP LOCKED), oldest first, leasing them to this process
 * for |lease_ms|, and increments their attempts. Events never leased or
 * released come first (by id), then expired leases by expiry; the
 * callback gets them sorted by id. |max| 1..100000 and |lease_ms| > 0,
 * else PGW_ERR_INVAL. An event inserted with a lease has attempts 1.
 */
int pgw_store_claim_events(struct pgw_store *self, unsigned max,
                           unsigned lease_ms, pgw_store_events_cb cb,
                           void *arg);

typedef void (*pgw_store_done_cb)(void *arg, int err);

/* Extends this process's leases on the events |ids| (and on retries it
 * holds) to now + |lease_ms|. */
int pgw_store_renew_leases(struct pgw_store *self, const int64_t *ids, size_t n,
                           unsigned lease_ms, pgw_store_done_cb cb, void *arg);

/* Gives back every lease this process holds (shutdown), so others can
 * take the work at once. */
int pgw_store_release_leases(struct pgw_store *self, pgw_store_done_cb cb,
                             void *arg);

/* -- installations -- */

/* |inst|: |n| rows, valid during the call (badge: see installation.h). */
typedef void (*pgw_store_installations_cb)(void *arg, int err,
                                           const struct pgw_installation *inst,
                                           size_t n);

/* pgw_store_find_installations() flags. */
enum {
    /* The badge of every matched iOS row is incremented atomically in the
     * same statement (UPDATE … RETURNING) and the new value returned;
     * Android rows are not written. */
    PGW_STORE_FIND_INCREMENT = 1,
    /* One part of a larger lookup (a share of one event's recipients):
     * never merged into one statement with other lookups, so the parts go
     * on as many connections as are free and their rows arrive as each
     * part ends. An installation matched through names in two parts is
     * returned by both; incremented once when both name the same event,
     * so both give the same badge; a different badge means another
     * increment came in between and this part's was made too: the caller
     * keeps one row and takes that increment back with
     * pgw_store_undo_badges(). */
    PGW_STORE_FIND_ALONE = 2,
};

/*
 * The valid installations of |app_id| whose channels overlap
 * |recipients| (|n| names), in id order, one row per installation.
 * |match| (copied; NULL: every device, no badge set) is the push's rule
 * (installation.h, from pgw_push_event_match()): with a team, only the
 * iOS rows of that team are kept, a row with no team being of the app's
 * default team; with |set_badge|, the badge of every matched iOS row is
 * set to |badge| (never below 0) in the same statement and returned, as
 * an increment is (not with PGW_STORE_FIND_INCREMENT: PGW_ERR_INVAL);
 * such a lookup is never merged with others nor answered by the cache.
 * |flags|: PGW_STORE_FIND_*. The rows are locked in id order, so
 * concurrent calls on the same devices do not deadlock. |event_id| (> 0;
 * 0: none) is the event the badge writes are for: a device already
 * incremented for it (by another part of the same lookup, or an earlier
 * attempt) and by nothing since keeps its badge, and is returned with it
 * (migration 0006); a set records it the same way.
 */
int pgw_store_find_installations(struct pgw_store *self, const char *app_id,
                                 const char *const *recipients, size_t n,
                                 const struct pgw_installation_match *match,
                                 int64_t event_id, unsigned flags,
                                 pgw_store_installations_cb cb, void *arg);

/*
 * With a cache (pgw_store_options.cache_bytes), a lookup without a team
 * filter or a badge to set whose every name is cached is answered from
 * memory, and only
 * its iOS rows' increments go to Postgres (one UPDATE of those ids,
 * locked in id order; a row no longer valid there is left out). Other
 * lookups go to Postgres and their rows fill the cache, one entry per
 * name. The cache holds only while a connection of its own LISTENs to
 * migration 0007's notifications, which evict the names of every
 * installation an INSERT, UPDATE (of more than badge columns), DELETE or
 * TRUNCATE changed; when that connection is down, every lookup goes to
 * Postgres and the cache starts empty when it is back.
 */
struct pgw_store_cache_stats {
    bool live;       /* listening: the cache is used */
    uint64_t hits;   /* names of lookups answered from the cache */
    uint64_t misses; /* names of lookups sent to Postgres while live */
    uint64_t notifications;
    size_t entries, bytes;
};
void pgw_store_get_cache_stats(const struct pgw_store *self,
                               struct pgw_store_cache_stats *ret_stats);

/*
 * Takes back one badge increment per element of |ids| (an id may repeat),
 * never below 0, locking in id order like the lookups, and forgets the
 * event that made the increment (a later lookup for it increments again).
 */
int pgw_store_undo_badges(struct pgw_store *self, const int64_t *ids, size_t n,
                          pgw_store_done_cb cb, void *arg);

/* -- outcomes -- */

enum pgw_store_failure_kind {
    PGW_STORE_FAIL_INVALIDATED, /* token dead: installation invalidated */
    PGW_STORE_FAIL_FAILED,      /* final failure, token kept */
    PGW_STORE_FAIL_EXPIRED,     /* validity passed: dropped */
};

struct pgw_store_failure {
    int64_t installation_id;
    const char *provider; /* "apns" or "fcm" */
    enum pgw_store_failure_kind kind;
    int status;         /* HTTP status or 0 */
    const char *reason; /* provider's or ours */
    /* INVALIDATED only: invalidate unless the row's updated_at is newer
     * than this (ms since the epoch; 0: unconditionally). */
    int64_t invalid_since_ms;
};

struct pgw_store_retry_new {
    int64_t installation_id;
    const char *provider;
    const char *request; /* serialised prepared request (JSON text) */
    int attempts;        /* made so far */
    int64_t not_before_ms;
    int64_t expires_at_ms;
    const char *last_reason;
};

struct pgw_store_event_result {
    int64_t event_id;
    const char *result; /* "sent", "skipped", "no_recipients", … */
    int pushes_total;
    int pushes_delivered;
    const struct pgw_store_failure *failures;
    size_t n_failures;
    const struct pgw_store_retry_new *retries;
    size_t n_retries;
};

/*
 * Ends the first pass of an event, in one transaction: records
 * |failures| (and invalidates those installations, honouring
 * invalid_since_ms against updated_at), inserts |retries|, sets the
 * counters and the state (retrying when |n_retries| > 0, else done) and
 * releases the lease. Results queued in one loop iteration share one
 * transaction. All data is copied.
 */
int pgw_store_finish_event(struct pgw_store *self,
                           const struct pgw_store_event_result *res,
                           pgw_store_done_cb cb, void *arg);

/* -- retries -- */

struct pgw_store_retry {
    int64_t id;
    int64_t event_id;    /* 0: the retry of an API push */
    int64_t api_push_id; /* 0: the retry of an event */
    int64_t installation_id;
    const char *app_id;
    const char *provider;
    const char *request;
    int attempts;
    int64_t expires_at_ms;
};

typedef void (*pgw_store_retries_cb)(void *arg, int err,
                                     const struct pgw_store_retry *retries,
                                     size_t n);

/* Claims up to |max| retries due now (not_before <= now) whose lease is
 * free or expired, leasing them for |lease_ms|, earliest not_before
 * first. Limits as for pgw_store_claim_events(). Expired retries
 * (expires_at passed) are returned too: the caller ends them as
 * PGW_STORE_FAIL_EXPIRED. */
int pgw_store_claim_retries(struct pgw_store *self, unsigned max,
                            unsigned lease_ms, pgw_store_retries_cb cb,
                            void *arg);

/*
 * The result of one retry: |delivered|; or |failure| (final: recorded as
 * in finish_event); or neither: try again at |not_before_ms| with
 * |attempts| and |last_reason|. When the event has no retry left
 * afterwards it becomes done (delivered/failed counters updated).
 * One transaction; |event_id| must be the retry's event (0 for the
 * retry of an API push, whose counters in api_pushes are updated
 * instead). A retry row already gone (ended by another process) changes
 * nothing.
 */
struct pgw_store_retry_result {
    int64_t retry_id;
    int64_t event_id;
    bool delivered;
    const struct pgw_store_failure *failure; /* NULL unless final */
    int attempts;
    int64_t not_before_ms;
    const char *last_reason;
};

int pgw_store_finish_retry(struct pgw_store *self,
                           const struct pgw_store_retry_result *res,
                           pgw_store_done_cb cb, void *arg);

/* -- for the other store_*.c files ------------------------------------- */

#include <libpq-fe.h>

/* |r| is the statement's result (NULL when |err|), valid during the call. */
typedef void (*pgw_store_result_cb)(void *arg, int err, const PGresult *r);

/*
 * Runs the statement |sql| (a static string: kept by pointer) with the
 * |n| (<= 10) text parameters |params| (copied; NULL: SQL NULL) on a
 * pooled connection, in a transaction of its own. |cb| as for every
 * call (see the top). PGW_ERR_INVAL also for a parameter that is not
 * valid UTF-8 or holds a NUL.
 */
int pgw_store_exec(struct pgw_store *self, const char *sql,
                   const char *const *params, unsigned n,
                   pgw_store_result_cb cb, void *arg);

/* Parameters of one pgw_store_exec_text() statement at most. */
#define PGW_STORE_MAX_EXEC_PARAMS 512

/*
 * As pgw_store_exec(), for a statement put together at run time (the
 * audience of an API push, lc_where.h): |sql| is copied, and up to
 * PGW_STORE_MAX_EXEC_PARAMS parameters are taken. The text still holds
 * only placeholders for values.
 */
int pgw_store_exec_text(struct pgw_store *self, const char *sql,
                        const char *const *params, unsigned n,
                        pgw_store_result_cb cb, void *arg);

/*
 * As pgw_store_exec_text(), after a statement in the same transaction
 * that rules out sequential scans, hash and merge joins (ST_FIN_TXN's
 * settings) and lets the commit go without waiting for its WAL flush.
 * Settings made inside |sql| would come after its planning. An update
 * whose row source is sorted by id and joined to installations by id is
 * then a nested loop in that order: it locks its rows in id order, as
 * the lookups do, whatever the table's statistics. |cb| gets |sql|'s
 * result.
 */
int pgw_store_exec_text_pinned(struct pgw_store *self, const char *sql,
                               const char *const *params, unsigned n,
                               pgw_store_result_cb cb, void *arg);

/* Who holds this store's leases (pgw_store_options.owner). */
const char *pgw_store_owner(const struct pgw_store *self);

/*
 * Forgets the cached names of |payload| (a JSON text of migration 0007's
 * form: {"app":A,"channels":[…]}, {"app":A} or {}) now, for a write this
 * process just committed, ahead of the notification it will also get.
 */
void pgw_store_forget_installations(struct pgw_store *self,
                                    const char *payload);

#endif
