/*
 * Internal to the store's files (store.c, store_sql.c, store_cache.c):
 * the operation, the store object and the functions they share. Nothing
 * else includes it; the store's contract is store.h.
 *
 * An operation (struct op) is queued on one of the store's lists, merged
 * with others of its kind into a batch when sent (store.c), turned into
 * statements (store_sql.c), carried by one pool connection as a pgconn
 * unit, and completed from its results (store.c). Lookups may instead be
 * answered by the installation cache (store_cache.c). Functions shared
 * between these files carry the store_ prefix.
 */
#ifndef PUSHGW_STORE_INT_H
#define PUSHGW_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "pgarray.h"
#include "pgconn.h"
#include "store.h"

struct pgw_icache;

#define STORE_DEFAULT_POOL 4
#define STORE_DEFAULT_MAX_QUEUED 100000
/* Operations pipelined on one connection before others must wait. */
#define STORE_MAX_INFLIGHT 64
/* Group commit: at most this many inserts (or finishes) per statement. */
#define STORE_MAX_BATCH 1000
/* Encoded parameters per batch (at least one member): a batch's arrays are
 * built in scratch buffers that keep their size, and libpq's output
 * buffer keeps its size too: a burst of large fan-out lookups would
 * otherwise leave several MiB in each. Batches of small events reach
 * STORE_MAX_BATCH first. */
#define STORE_MAX_BATCH_BYTES (512 * 1024)
/* Lookups: at most this many recipient names per merged statement (one
 * lookup alone may have more). */
#define STORE_MAX_FIND_NAMES 1000
#define STORE_MAX_INC_IDS 4096
/*
 * Batches of one kind in flight at once. An insert batch is a commit that
 * waits for a WAL flush; while it waits, the next inserts gather into the
 * next batch, so the batch size follows the flush time instead of the
 * loop's pace (small commits each waiting for its own flush would bound
 * the intake). Two insert batches: the intake's 202s wait on them, and
 * with one, a batch's round trip would set the intake's pace. A finish
 * batch does not wait for the flush (ST_FIN_TXN); one at a time, the
 * finishes queued during its round trip go together in the next.
 */
#define STORE_MAX_INSERT_BATCHES 2
#define STORE_MAX_FINISH_BATCHES 1
/* Increment batches of cached lookups: one at a time, so the lookups
 * queued meanwhile are merged into the next one, and a device many of
 * them match is updated once, by their number, instead of once each
 * (rows of one fan-out group: each event's parts waiting on the last
 * one's row locks). */
#define STORE_MAX_INC_BATCHES 1
/* Insert batches sent with ON CONFLICT after one failed on a duplicate. */
#define STORE_CONFLICT_BATCHES 16
/* Array parameters of the largest statement group (finish_event). */
#define STORE_MAX_FRAGS 25
#define STORE_MAX_RESULTS 2
#define STORE_MAX_PARAMS 10
/* store_cache_find(): a name of the lookup is not in the cache (no error). */
#define STORE_NOT_CACHED 1

/*
 * The team rule in SQL, for the lookups of store_sql.c and a broadcast's
 * pages (pgw_installation_team_matches() says it in C; the two must
 * agree, see installation.h): row |i| matches when the push names no
 * team (|team| NULL), or |i| is not iOS, or |i|'s team, else the app's
 * default team |dflt| (the team of devices that name none), is |team|.
 */
#define STORE_SQL_TEAM_MATCH(i, team, dflt)                                    \
    "(" team " IS NULL OR " i ".device_type <> 'ios' OR coalesce(" i           \
    ".apns_team_id, " dflt ") = " team ")"

enum op_kind {
    OP_INSERT,
    OP_FINISH,
    OP_BATCH_INSERT,
    OP_BATCH_DUPS,
    OP_BATCH_FINISH,
    OP_BATCH_FIND,
    OP_COUNT,
    OP_CLAIM_EVENTS,
    OP_RENEW,
    OP_RELEASE,
    OP_FIND,
    OP_CACHED, /* a lookup answered by the cache (OP_BATCH_INC: its badges) */
    OP_BATCH_INC,
    OP_CLAIM_RETRIES,
    OP_FINISH_RETRY,
    OP_UNDO_BADGES,
    OP_EXEC, /* one statement of another store_*.c file */
};

/*
 * One queued or in-flight operation. Its copied parameters live in the same
 * allocation (|data|): either plain text parameters (|param|), or, for the
 * operations merged into one statement per loop iteration (insert, finish),
 * pre-encoded array-literal fragments, one per array parameter, that the
 * batch concatenates.
 */
struct op {
    struct pgw_pgconn_unit unit; /* while in flight */
    struct op *next;
    enum op_kind kind;
    union op_cb {
        pgw_store_insert_cb insert;
        pgw_store_count_cb count;
        pgw_store_events_cb events;
        pgw_store_done_cb done;
        pgw_store_installations_cb inst;
        pgw_store_retries_cb retries;
        pgw_store_result_cb exec;
    } cb;
    const char *sql; /* exec: the statement (static) */
    void *arg;
    int err;
    unsigned n_results;
    PGresult *res[STORE_MAX_RESULTS];
    /* batches: the merged operations, linked by |next| */
    struct op *members;
    unsigned *batches; /* the store's count of such batches in flight */
    size_t n_members;
    /* plain parameters, pointing into |data| (or NULL) */
    unsigned n_params;
    const char *param[STORE_MAX_PARAMS];
    /* exec_text: its |n_params| parameters, in |data| (else NULL) */
    const char **xparam;
    /* insert batch: sent with ON CONFLICT (again after |unique|, or while
     * the store's |conflict_batches| last) */
    bool conflict;
    bool unique;    /* a statement failed on a unique index (23505) */
    bool flag;      /* find: increment (a batch: or set badges); exec: pinned */
    bool set_badge; /* find: set the iOS rows' badge to |badge| */
    int32_t badge;
    bool solo;        /* find: never merged with other lookups */
    int64_t event_id; /* find: the increments' event (0: none) */
    /* fragments: |n_frags| (offset, length) pairs into |data|, |data_len|
     * bytes in all (a batch: of all its members) */
    unsigned n_frags;
    size_t data_len;
    uint32_t frag[2 * STORE_MAX_FRAGS];
    /* finish: elements in the failure, invalidation and retry arrays */
    unsigned n_fail, n_inv, n_retry;
    /* find: recipient names (in a batch: of all members); cached: the
     * iOS rows to increment */
    size_t n_names;
    /* find: fill the cache with the rows unless it changed since
     * |fill_gen|; the app and the names, NUL-terminated, at |names_off| */
    bool fill;
    uint64_t fill_gen;
    size_t names_off;
    /* cached: the rows, in |data| */
    struct pgw_installation *inst;
    size_t n_inst;
    /* a batch of increments: its members' iOS rows by id (allocated) */
    struct inc_ent *ents;
    size_t n_ents;
    /* find that fills the cache: on its store's |filling| list */
    struct pgw_store *filling;
    struct op *fill_prev, *fill_next;
    char data[];
};

/* The |i|-th row of the |k|-th member of an increment batch; the rows of
 * one id make |n| increments, and this one's is the |r|-th (0-based):
 * members for the same event share one. */
struct inc_ent {
    int64_t id;
    uint32_t k, i;
    uint32_t n, r;
};

/* A cached lookup's rows live in |data|. */
_Static_assert(offsetof(struct op, data) % _Alignof(struct pgw_installation) ==
                   0,
               "op data alignment");

struct op_list {
    struct op *head, *tail;
    size_t n;
};

struct pgw_store {
    struct event_base *base;
    char *owner;
    size_t max_queued;
    struct pgw_pgconn **conns; /* the pool */
    unsigned n_conns;
    unsigned n_up;
    unsigned next_conn;
    /* no connection up and the last attempt failed: fail fast */
    bool failing;
    bool closing;
    struct event *kick;     /* zero timer: the next loop iteration */
    struct op_list queue;   /* operations other than insert and finish */
    struct op_list inserts; /* merged per loop iteration */
    struct op_list finishes;
    struct op_list finds;
    struct op_list ready; /* cached lookups: answered next iteration */
    struct op_list incs;  /* cached lookups waiting for their increments */
    /* lookups whose names another lookup, queued or in flight, is about
     * to cache (|filling|): looked at again when one of those ends */
    struct op_list parked;
    /* insert batches that failed on a unique index, to send again with ON
     * CONFLICT before anything else */
    struct op_list redo;
    /* insert batches still to be sent with ON CONFLICT at once: a
     * duplicate seen is likely followed by more (a broker retrying) */
    unsigned conflict_batches;
    struct op *filling;
    bool recheck_parked;
    size_t n_queued;
    unsigned insert_batches; /* in flight (STORE_MAX_INSERT_BATCHES) */
    unsigned finish_batches;
    unsigned inc_batches;
    char last_error[256];
    unsigned sent_in_op; /* statements store_sql_send() queued for the op */
    struct pgw_buf enc;  /* scratch: one op's fragments */
    struct pgw_buf arr[STORE_MAX_FRAGS]; /* scratch: a batch's arrays */
    struct pgw_store_event *ev_scratch;  /* scratch for claim results */
    size_t ev_scratch_cap;
    /* the installation cache: used while |cache_live| (|listen| up);
     * |cache_gen| counts its invalidations */
    struct pgw_icache *cache;
    struct pgw_pgconn *listen; /* not in the pool */
    bool cache_live;
    bool cache_warned;
    uint64_t cache_gen;
    uint64_t notifications;
    /* names of lookups answered from the cache, and of lookups that went
     * to Postgres while it was live (a parked lookup counts once, when
     * it is decided) */
    uint64_t cache_hits, cache_misses;
};

/* -- store.c -- */

void store_list_push(struct op_list *l, struct op *op);
/* The first operation of |l| (unlinked), or NULL. */
struct op *store_list_pop(struct op_list *l);
/* Frees |op| (a batch: not its members), off the filling list. */
void store_op_free(struct op *op);
/* Runs |op|'s callback with |err| (< 0) and frees it; a batch fails each
 * member. */
void store_op_fail(struct op *op, int err);
/* Queues |op| on |l| and counts it; the kick sends it. */
void store_enqueue(struct pgw_store *self, struct op_list *l, struct op *op);
/* The kick runs at the next loop iteration (not while closing). */
void store_schedule_kick(struct pgw_store *self);
/* Column |col| of row |row| of |r| as an integer (NULL: 0). */
int64_t store_get_i64(const PGresult *r, int row, int col);

/* -- store_sql.c -- */

/* A pool connection's setup (pgw_pgconn_callbacks.setup): its session
 * settings, then every statement prepared. */
const char *store_sql_setup(void *arg, PGconn *pg);

/* Queues |op|'s statements on |c| (the caller adds the sync). Returns 0,
 * PGW_ERR_NOMEM or PGW_ERR_INVAL (|op| not sent: the caller fails it),
 * PGW_ERR_DB (the connection broke, or a statement went without the
 * rest: the caller fails it and the connection). */
int store_sql_send(struct pgw_store *self, struct pgw_pgconn *c, struct op *op);

/* -- store_cache.c -- */

/* The cache of |opts| and its listening connection (not started).
 * Errors: PGW_ERR_NOMEM. */
int store_cache_new(struct pgw_store *self,
                    const struct pgw_store_options *opts);

/* Closes the listening connection (its operations fail) and frees the
 * cache; either may be NULL. */
void store_cache_free(struct pgw_store *self);

/* Every pool connection is down: the listener may not have noticed yet,
 * and notifications may be lost in between, so it goes too. */
void store_cache_pool_lost(struct pgw_store *self);

/* |op| is a lookup whose rows will fill the cache / it ended (filled or
 * not): the lookups parked for it look at the cache again. */
void store_cache_filling_add(struct pgw_store *self, struct op *op);
void store_cache_filling_remove(struct op *op);

/* Caches the rows |inst| (|n|) of lookup |m| as one entry per name. */
void store_cache_fill(struct pgw_store *self, const struct op *m,
                      const struct pgw_installation *inst, size_t n);

/* Completes a batch of cached lookups' increments (OP_BATCH_INC). */
void store_cache_complete_incs(struct op *op);

/* A lookup answered from the cache: STORE_NOT_CACHED when a name is not
 * cached; else 0, queued as an OP_CACHED operation; or PGW_ERR_NOMEM. */
int store_cache_find(struct pgw_store *self, const char *app_id,
                     const char *const *recipients, size_t n, int64_t event_id,
                     unsigned flags, pgw_store_installations_cb cb, void *arg);

/* True when a lookup queued or in flight will cache the names of |op|. */
bool store_cache_fill_pending(const struct pgw_store *self,
                              const struct op *op);

/* Looks at the parked lookups again (a fill ended, or the cache went
 * off). */
void store_cache_recheck_parked(struct pgw_store *self);

#endif
