/* The asynchronous store of `serve` (see store.h). */
#include "store.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "icache.h"
#include "log.h"
#include "pgarray.h"
#include "pgconn.h"

/* ---- the asynchronous store of `serve` ---------------------------------- */

#define STORE_DEFAULT_POOL 4
#define STORE_DEFAULT_MAX_QUEUED 100000
/* Operations pipelined on one connection before others must wait. */
#define STORE_MAX_INFLIGHT 64
/* Group commit: at most this many inserts (or finishes) per statement. */
#define STORE_MAX_BATCH 1000
/* Encoded parameters per batch (at least one member): a batch's arrays are
 * built in scratch buffers that keep their size, and libpq's output
 * buffer keeps its size too. 256 fan-out events of 1000 names taken in at
 * once made them several MiB each; chat batches (300-byte bodies) reach
 * STORE_MAX_BATCH first. */
#define STORE_MAX_BATCH_BYTES (512 * 1024)
/* Lookups: at most this many recipient names per merged statement (one
 * lookup alone may have more). */
#define STORE_MAX_FIND_NAMES 1000
#define STORE_MAX_INC_IDS 4096
/*
 * Durable batches of one kind in flight at once. Each one is a commit that
 * waits for a WAL flush; while it waits, the next operations gather into
 * the next batch, so the batch size follows the flush time instead of the
 * loop's pace (many small commits each waiting for its own flush were the
 * intake limit). Two insert batches: the intake's 202s wait on them, and
 * with one, a batch's round trip (about 2 ms for 33 events on a busy
 * machine, mostly waiting for a core) set the intake's pace (chat with
 * 256 requests in flight: 17,100 -> 18,200 events/s).
 */
#define STORE_MAX_INSERT_BATCHES 2
#define STORE_MAX_FINISH_BATCHES 1
/* Increment batches of cached lookups: one at a time, so the lookups
 * queued meanwhile are merged into the next one, and a device many of
 * them match is updated once, by their number, instead of once each
 * (rows of one fan-out group: each event's parts waiting on the last
 * one's row locks). */
#define STORE_MAX_INC_BATCHES 1
/* Array parameters of the largest statement group (finish_event). */
#define STORE_MAX_FRAGS 25
#define STORE_MAX_RESULTS 2
#define STORE_MAX_PARAMS 10
/* find_cached(): a name of the lookup is not in the cache (no error). */
#define STORE_NOT_CACHED 1

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
    union {
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
    bool flag;        /* find: increment */
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
    struct op *filling;
    bool recheck_parked;
    size_t n_queued;
    unsigned insert_batches; /* in flight (STORE_MAX_INSERT_BATCHES) */
    unsigned finish_batches;
    unsigned inc_batches;
    char last_error[256];
    unsigned sent_in_op;        /* statements op_send() queued for the op */
    struct pgw_pgarray_buf enc; /* scratch: one op's fragments */
    struct pgw_pgarray_buf arr[STORE_MAX_FRAGS]; /* scratch: a batch's arrays */
    struct pgw_store_event *ev_scratch;          /* scratch for claim results */
    size_t ev_scratch_cap;
    /* the installation cache: used while |cache_live| (|listen| up);
     * |cache_gen| counts its invalidations */
    struct pgw_icache *cache;
    struct pgw_pgconn *listen; /* not in the pool */
    bool cache_live;
    bool cache_warned;
    uint64_t cache_gen;
    uint64_t notifications;
};

/* -- statements -- */

enum stmt_id {
    ST_INSERT,
    ST_DUPS,
    ST_COUNT,
    ST_CLAIM_EV,
    ST_RENEW_EV,
    ST_RENEW_RT,
    ST_RELEASE_EV,
    ST_RELEASE_RT,
    ST_FIND,
    ST_FIND_ONE,
    ST_FIND_ONE_INC,
    ST_INC_IDS,
    ST_FAIL_INS,
    ST_INVALIDATE,
    ST_RETRY_INS,
    ST_EVENT_FIN,
    ST_CLAIM_RT,
    ST_RETRY_FIN,
    ST_RETRY_DONE,
    ST_BADGE_TXN,
    ST_UNDO_BADGES,
    ST__COUNT,
};

/* The columns of a lookup's rows, after the caller's number. */
#define INST_COLS                                                              \
    "id, installation_id, device_type, device_token, channels, badge, "        \
    "apns_topic, apns_team_id"
#define LEASE_FOR(p) "now() + " p "::int4 * interval '1 millisecond'"

/* One lookup's matches, one row per installation with its columns, in
 * id order: one GIN probe per 8 recipients (c: the names in groups of 8,
 * channels && group). Every GIN probe is a bitmap scan with its own
 * setup; 8 names per probe cost 1.55 ms per 1000 names against 2.7 ms
 * with one per name, and 4.1 ms with all 1000 in one probe (GIN merges
 * its keys' streams one item at a time). The rows keep their columns, so
 * the ones not updated are returned from here, not read again by primary
 * key (a 250-name lookup with its increments: 1.30 → 1.21 ms). OFFSET 0:
 * see ST_FIND. */
#define ONE_APP "(($1::text[])[1])"
#define ONE_TEAM "(($3::text[])[1])"
#define INST_MATCH_ONE                                                         \
    "c AS (SELECT array_agg(name) AS names FROM unnest($2::text[]) WITH "      \
    "ORDINALITY AS r(name, n) GROUP BY (n - 1) / 8), "                         \
    "m AS MATERIALIZED (SELECT DISTINCT ON (i.id) i.id, i.installation_id, "   \
    "i.device_type, i.device_token, i.channels, i.badge, i.apns_topic, "       \
    "i.apns_team_id FROM c CROSS JOIN LATERAL (SELECT " INST_COLS ", app_id, " \
    "valid FROM installations WHERE channels && c.names OFFSET 0) i WHERE "    \
    "i.app_id = " ONE_APP " AND i.valid AND (" ONE_TEAM " IS NULL OR "         \
    "i.device_type <> 'ios' OR i.apns_team_id IS NULL OR i.apns_team_id "      \
    "= " ONE_TEAM ") ORDER BY i.id)"

static const struct {
    const char *name;
    const char *sql;
} stmts[ST__COUNT] = {
    /* Ids are drawn first so every input row knows its own: RETURNING
     * cannot say which input row a new row came from. Rows go in key
     * order: two batches in flight holding the same two keys would
     * otherwise each wait on the other's insert (a deadlock, one batch
     * failed); the same key twice in a batch: the first to arrive is the
     * new one. */
    [ST_INSERT] =
        {"pgw_insert",
         "WITH input AS (SELECT nextval('events_id_seq') AS id, t.* "
         "FROM unnest($1::text[], $2::text[], $3::text[], "
         "$4::text[], $5::int8[], $6::int4[]) WITH ORDINALITY "
         "AS t(app_id, conv_id, msg_id, body, ts, lease_ms, ord)), "
         "ins AS (INSERT INTO events (id, app_id, conv_id, msg_id, "
         "body, event_ts_ms, lease_owner, lease_until, attempts) "
         "SELECT id, app_id, conv_id, msg_id, body, ts, "
         "CASE WHEN lease_ms >= 0 THEN $7::text END, "
         "CASE WHEN lease_ms >= 0 THEN " LEASE_FOR(
             "lease_ms") " ELSE '-infinity' END, "
                         "CASE WHEN lease_ms >= 0 THEN 1 ELSE 0 END "
                         "FROM input ORDER BY app_id, conv_id, msg_id, ord "
                         "ON CONFLICT (app_id, conv_id, msg_id) "
                         "WHERE msg_id IS NOT NULL DO NOTHING "
                         "RETURNING id) "
                         "SELECT input.ord, input.id FROM input "
                         "JOIN ins ON ins.id = input.id"},
    /* Runs only for the rows an insert batch skipped (an event with a
     * msgId seen before), after that batch's commit: the conflicting rows
     * were committed then (ON CONFLICT waits for their transactions), so
     * this later statement sees them. Run for every batch, in its
     * transaction, it cost a tenth of the chat intake's database time
     * (an index probe per row) to find duplicates that are rare. */
    [ST_DUPS] = {"pgw_dups",
                 "SELECT t.ord, e.id FROM unnest($1::text[], $2::text[], "
                 "$3::text[]) WITH ORDINALITY AS t(app_id, conv_id, msg_id, "
                 "ord) JOIN events e ON e.app_id = t.app_id AND "
                 "e.conv_id = t.conv_id AND e.msg_id = t.msg_id "
                 "WHERE t.msg_id IS NOT NULL AND e.msg_id IS NOT NULL"},
    [ST_COUNT] = {"pgw_count",
                  "SELECT (SELECT count(*) FROM events WHERE state = "
                  "'pending') + (SELECT count(*) FROM events WHERE state = "
                  "'retrying')"},
    [ST_CLAIM_EV] = {"pgw_claim_ev",
                     "UPDATE events e SET lease_owner = $1::text, "
                     "lease_until = " LEASE_FOR(
                         "$3") ", attempts = e.attempts + 1 "
                               "FROM (SELECT id FROM events WHERE state = "
                               "'pending' AND lease_until < now() ORDER BY "
                               "lease_until, id LIMIT $2::int4 FOR UPDATE "
                               "SKIP LOCKED) c WHERE e.id = c.id "
                               "RETURNING e.id, e.app_id, e.body, e.attempts"},
    /* An event leased by this process is found by id and lease owner
     * alone: a lease implies state 'pending' (migration 0004's check).
     * Naming the state too let the planner walk the partial index
     * events_claimable for every row when its statistics were stale. */
    [ST_RENEW_EV] = {"pgw_renew_ev",
                     "UPDATE events SET lease_until = " LEASE_FOR(
                         "$3") " WHERE id = ANY($2::int8[]) AND lease_owner "
                               "= $1::text"},
    [ST_RENEW_RT] = {"pgw_renew_rt",
                     "UPDATE push_retries SET lease_until = " LEASE_FOR(
                         "$2") " WHERE lease_owner = $1::text"},
    [ST_RELEASE_EV] = {"pgw_release_ev",
                       "UPDATE events SET lease_owner = NULL, lease_until = "
                       "'-infinity' WHERE state = 'pending' AND "
                       "lease_owner = $1::text"},
    [ST_RELEASE_RT] = {"pgw_release_rt",
                       "UPDATE push_retries SET lease_owner = NULL, "
                       "lease_until = '-infinity' WHERE lease_owner = "
                       "$1::text"},
    /* The lookups of one loop iteration, in one statement: one element
     * per (caller, recipient name) in each array: the caller's number k
     * (1-based) $1, the name $2, the caller's app $3, team filter $4
     * (NULL: none) and increment flag $5. The rows come back ordered by
     * caller, then id, with the caller first.
     * - m: the matches, one row per (caller, installation): one GIN
     *   lookup per recipient (channels @> ARRAY[name]; OFFSET 0 keeps
     *   the planner from joining the apps first: with many callers it
     *   chose a hash join on app_id, a scan of the table compared with
     *   every name: 400 ms for 200 callers). "channels && $2"
     *   with a long list made the planner scan the table and compare
     *   every row's channels with every recipient (600 ms for 1000
     *   recipients on 14,000 rows; 7 ms this way).
     * - Their increments are for several events: badge_event_id (see
     *   ST_FIND_ONE_INC) is cleared.
     * - Only iOS rows are updated: an Android row would get a new tuple
     *   version for nothing on every push. A device matched by several
     *   incrementing callers is incremented once per caller, in one
     *   update (by the number of callers in n.ks), and the r-th of them
     *   (in caller order) gets old badge + r: distinct consecutive
     *   values. No join between the CTEs' results: the planner, which
     *   cannot estimate their sizes, joined them in nested loops
     *   (100 ms for 1000 rows).
     * - The update's row source is sorted by id and ST_BADGE_TXN runs
     *   first, so the rows are locked in id order whatever the table's
     *   size. "valid" is checked again on the locked row version. */
    [ST_FIND] =
        {"pgw_find",
         "WITH m AS MATERIALIZED (SELECT DISTINCT r.k, r.inc, i.id, "
         "i.device_type FROM unnest($1::int8[], $2::text[], $3::text[], "
         "$4::text[], $5::bool[]) AS r(k, name, app, team, inc) CROSS JOIN "
         "LATERAL (SELECT id, app_id, device_type, apns_team_id FROM "
         "installations WHERE channels @> ARRAY[r.name] AND valid OFFSET 0) "
         "i WHERE i.app_id = r.app AND (r.team IS NULL OR i.device_type <> "
         "'ios' OR i.apns_team_id IS NULL OR i.apns_team_id = r.team)), "
         "n AS (SELECT id, array_agg(k ORDER BY k) AS ks FROM m WHERE inc "
         "AND device_type = 'ios' GROUP BY id), "
         "u AS (UPDATE installations i SET badge = i.badge + "
         "cardinality(l.ks), badge_event_id = NULL FROM (SELECT id, ks "
         "FROM n ORDER BY id) l "
         "WHERE i.id = l.id AND i.valid RETURNING i.id, "
         "i.installation_id, i.device_type, i.device_token, i.channels, "
         "i.badge - cardinality(l.ks) AS base, l.ks, i.apns_topic, "
         "i.apns_team_id) "
         "SELECT x.k, u.id, u.installation_id, u.device_type, "
         "u.device_token, u.channels, (u.base + x.ord)::int4, u.apns_topic, "
         "u.apns_team_id FROM u CROSS JOIN LATERAL "
         "unnest(u.ks) WITH ORDINALITY AS x(k, ord) "
         "UNION ALL "
         "SELECT m.k, a.* FROM m JOIN (SELECT " INST_COLS " FROM "
         "installations WHERE valid) a ON a.id = m.id WHERE NOT (m.inc AND "
         "m.device_type = 'ios') "
         "ORDER BY 1, 2"},
    /* A batch of one lookup (a fan-out event: 1000 names) costs less as
     * the plain statements below than unpacked from ST_FIND's five arrays
     * (10 ms against 32 ms for 1000 names). Same rows, same column 0 (the
     * caller, always 1), same lock order. $1 and $3 are one-element array
     * literals (the member's app and team fragments), $2 the names; for
     * ST_FIND_ONE_INC $4 the event (NULL: none): a device whose last
     * increment was for that event (another part of its lookup, or an
     * earlier attempt) keeps its badge, which both parts then return. */
    [ST_FIND_ONE] = {"pgw_find_one",
                     "WITH " INST_MATCH_ONE " SELECT 1::int8, " INST_COLS
                     " FROM m ORDER BY id"},
    [ST_FIND_ONE_INC] = {"pgw_find_one_inc",
                         "WITH " INST_MATCH_ONE ", "
                         "u AS (UPDATE installations i SET badge = i.badge + "
                         "CASE WHEN i.badge_event_id = $4::int8 THEN 0 ELSE "
                         "1 END, badge_event_id = $4::int8 FROM (SELECT id "
                         "FROM m WHERE device_type = 'ios' ORDER BY id) l "
                         "WHERE i.id = l.id AND i.valid RETURNING i.id, "
                         "i.installation_id, i.device_type, i.device_token, "
                         "i.channels, i.badge, i.apns_topic, i.apns_team_id) "
                         "SELECT 1::int8, x.* FROM (SELECT * FROM u UNION ALL "
                         "SELECT " INST_COLS " FROM m WHERE device_type <> "
                         "'ios') x ORDER BY 2"},
    /* The increments of lookups the cache answered: each iOS installation
     * $1 once, with its number of increments $2 (one per caller that
     * matched it) and, for one, the caller's event $3 (NULL: none); rows
     * (id, new badge). The callers are told apart by pushgw (the new
     * badge minus n, plus 1 to n in caller order); no grouping here. One
     * increment is made as ST_FIND_ONE_INC does (once per event), several
     * as ST_FIND does (badge_event_id cleared). A row that is no longer a
     * valid iOS installation is not updated and not returned: the cache
     * had not heard of that change yet. Row source sorted by id after
     * ST_BADGE_TXN: the lookups' lock order. */
    [ST_INC_IDS] = {"pgw_inc_ids",
                    "UPDATE installations i SET badge = i.badge + CASE WHEN "
                    "l.n = 1 AND i.badge_event_id = l.ev THEN 0 ELSE l.n END, "
                    "badge_event_id = CASE WHEN l.n = 1 THEN l.ev END FROM "
                    "(SELECT * FROM unnest($1::int8[], $2::int4[], "
                    "$3::int8[]) AS t(id, n, ev) ORDER BY id) l WHERE i.id = "
                    "l.id AND i.valid AND i.device_type = 'ios' RETURNING "
                    "i.id, i.badge"},
    [ST_FAIL_INS] = {"pgw_fail_ins",
                     "INSERT INTO push_failures (event_id, installation_id, "
                     "app_id, provider, outcome, status, reason) "
                     "SELECT f.e, f.i, ev.app_id, f.p, f.o, f.s, f.r "
                     "FROM unnest($1::int8[], $2::int8[], $3::text[], "
                     "$4::text[], $5::int4[], $6::text[]) "
                     "AS f(e, i, p, o, s, r) JOIN events ev ON ev.id = f.e "
                     "AND ev.lease_owner = $7::text"},
    /* Rows locked in id order first (l), as the lookups lock them: the
     * update's own order is its plan's (physical order on a small
     * table), and a finish invalidating devices a lookup is incrementing
     * could otherwise deadlock with it. */
    [ST_INVALIDATE] = {"pgw_invalidate",
                       "WITH f AS (SELECT DISTINCT ON (id) id, r, since FROM "
                       "unnest($1::int8[], $2::text[], $3::int8[]) "
                       "AS t(id, r, since) ORDER BY id), "
                       "l AS (SELECT i.id FROM installations i JOIN f ON "
                       "f.id = i.id ORDER BY i.id FOR UPDATE OF i) "
                       "UPDATE installations i SET valid = false, "
                       "invalid_reason = f.r, invalidated_at = now() "
                       "FROM f WHERE i.id = f.id AND i.id IN (SELECT id "
                       "FROM l) AND i.valid AND (f.since IS NULL OR "
                       "i.updated_at <= to_timestamp(f.since / 1000.0))"},
    [ST_RETRY_INS] = {"pgw_retry_ins",
                      "INSERT INTO push_retries (event_id, installation_id, "
                      "app_id, provider, request, attempts, not_before, "
                      "expires_at, last_reason) "
                      "SELECT r.e, r.i, ev.app_id, r.p, r.q, r.a, "
                      "to_timestamp(r.nb / 1000.0), "
                      "to_timestamp(r.x / 1000.0), r.l "
                      "FROM unnest($1::int8[], $2::int8[], $3::text[], "
                      "$4::text[], $5::int4[], $6::int8[], $7::int8[], "
                      "$8::text[]) AS r(e, i, p, q, a, nb, x, l) "
                      "JOIN events ev ON ev.id = r.e AND ev.lease_owner = "
                      "$9::text"},
    [ST_EVENT_FIN] = {"pgw_event_fin",
                      "UPDATE events e SET state = CASE WHEN u.nr > 0 THEN "
                      "'retrying' ELSE 'done' END, result = u.res, "
                      "pushes_total = u.t, pushes_delivered = u.d, "
                      "pushes_invalidated = u.inv, pushes_failed = u.f, "
                      "pushes_dropped = u.dr, finished_at = CASE WHEN "
                      "u.nr > 0 THEN NULL ELSE now() END, lease_owner = "
                      "NULL, lease_until = '-infinity' "
                      "FROM unnest($1::int8[], $2::text[], $3::int4[], "
                      "$4::int4[], $5::int4[], $6::int4[], $7::int4[], "
                      "$8::int4[]) AS u(id, res, t, d, inv, f, dr, nr) "
                      "WHERE e.id = u.id AND e.lease_owner = $9::text"},
    [ST_CLAIM_RT] = {"pgw_claim_rt",
                     "UPDATE push_retries r SET lease_owner = $1::text, "
                     "lease_until = " LEASE_FOR(
                         "$3") " FROM (SELECT id FROM push_retries WHERE "
                               "not_before <= now() AND lease_until < now() "
                               "ORDER BY not_before LIMIT $2::int4 FOR UPDATE "
                               "SKIP LOCKED) c WHERE r.id = c.id "
                               "RETURNING r.id, r.event_id, "
                               "r.installation_id, r.app_id, r.provider, "
                               "r.request, r.attempts, "
                               "(extract(epoch FROM r.expires_at) * 1000)"
                               "::int8"},
    /* $2 is 'delivered', 'failure' or 'again'. The events UPDATE locks the
     * event row, so two retries of one event ending at once serialise and
     * the second sees the first's deletion in ST_RETRY_DONE. */
    [ST_RETRY_FIN] =
        {"pgw_retry_fin",
         "WITH d AS (DELETE FROM push_retries WHERE id = $1::int8 AND "
         "$2::text <> 'again' RETURNING event_id, installation_id, app_id, "
         "provider), "
         "f AS (INSERT INTO push_failures (event_id, installation_id, "
         "app_id, provider, outcome, status, reason) SELECT event_id, "
         "installation_id, app_id, provider, $3::text, $4::int4, $5::text "
         "FROM d WHERE $2::text = 'failure'), "
         "inv AS (UPDATE installations SET valid = false, invalid_reason = "
         "$5::text, invalidated_at = now() WHERE $2::text = 'failure' AND "
         "$3::text = 'invalidated' AND id IN (SELECT installation_id FROM d) "
         "AND valid AND ($6::int8 IS NULL OR updated_at <= "
         "to_timestamp($6::int8 / 1000.0))), "
         "a AS (UPDATE push_retries SET not_before = to_timestamp($7::int8 / "
         "1000.0), attempts = $8::int4, last_reason = $9::text, lease_owner "
         "= NULL, lease_until = '-infinity' WHERE id = $1::int8 AND "
         "$2::text = 'again') "
         "UPDATE events SET pushes_delivered = pushes_delivered + "
         "($2::text = 'delivered')::int, pushes_failed = pushes_failed + "
         "($2::text = 'failure' AND $3::text = 'failed')::int, "
         "pushes_invalidated = pushes_invalidated + ($2::text = 'failure' "
         "AND $3::text = 'invalidated')::int, pushes_dropped = "
         "pushes_dropped + ($2::text = 'failure' AND $3::text = "
         "'expired')::int WHERE id IN (SELECT event_id FROM d)"},
    [ST_RETRY_DONE] = {"pgw_retry_done",
                       "UPDATE events SET state = 'done', finished_at = now() "
                       "WHERE id = $1::int8 AND state = 'retrying' AND NOT "
                       "EXISTS (SELECT 1 FROM push_retries WHERE event_id = "
                       "$1::int8)"},
    /* Sent first in the transactions that change badges (ST_FIND,
     * ST_FIND_ONE_INC, ST_INC_IDS, ST_UNDO_BADGES).
     * - Lock order: an update takes its row locks in the order its plan
     *   visits the rows, and that order must be the ids': two of them
     *   locking the same devices in different orders deadlock (one fails
     *   after a second). Their row sources are sorted by id, so every plan
     *   visits the rows in id order but the ones the settings below rule
     *   out: on a small table the planner's own choice is a hash join over
     *   a sequential scan, in physical order. With them, a nested loop
     *   over the sorted ids; before, an explicit FOR UPDATE pass in id
     *   order cost 13 % of a fan-out lookup (test_badge_lock_order_plan
     *   sees the order). Set before every execution of those statements,
     *   so their cached plans are always made under them.
     * - The commit does not wait for the WAL flush. Nothing is lost by
     *   that: the event's first pass ends later in a durable commit, whose
     *   flush covers this earlier WAL; a crash before it works the event
     *   again anyway. One fsync per event was the chat limit.
     * - A row lock held elsewhere (an operator's open transaction) fails
     *   the statement after 5 s instead of holding its connection, and
     *   with ST_INC_IDS every cached lookup queued behind it: the lookups
     *   fail, and their events are worked again after their leases.
     * Transaction-local, like every set_config(…, true). */
    [ST_BADGE_TXN] = {"pgw_badge_txn",
                      "SELECT set_config('enable_seqscan', 'off', true), "
                      "set_config('enable_hashjoin', 'off', true), "
                      "set_config('synchronous_commit', 'off', true), "
                      "set_config('lock_timeout', '5s', true)"},
    /* $1: installation ids, an id once per increment to take back (the
     * parts of one lookup matched it more than once). Locked in id
     * order, as the lookups lock them (ST_BADGE_TXN). */
    [ST_UNDO_BADGES] = {"pgw_undo_badges",
                        "UPDATE installations i SET badge = greatest(i.badge "
                        "- u.n, 0), badge_event_id = NULL FROM (SELECT id, "
                        "count(*)::int4 AS n FROM unnest($1::int8[]) AS t(id) "
                        "GROUP BY id ORDER BY id) u WHERE i.id = u.id"},
};

/* -- checks -- */

/* Valid UTF-8 without NUL: anything else would fail a whole batch. */
static bool text_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned cp;

        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (k >= n - i)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

static bool str_ok(const char *s)
{
    return !s || text_ok(s, strlen(s));
}

/* -- operations -- */

static void list_push(struct op_list *l, struct op *op)
{
    op->next = NULL;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    l->n++;
}

static struct op *list_pop(struct op_list *l)
{
    struct op *op = l->head;

    if (!op)
        return NULL;
    l->head = op->next;
    if (!l->head)
        l->tail = NULL;
    l->n--;
    op->next = NULL;
    return op;
}

static void schedule_kick(struct pgw_store *self);

/* |op| is a lookup whose rows will fill the cache. */
static void filling_add(struct pgw_store *self, struct op *op)
{
    op->filling = self;
    op->fill_prev = NULL;
    op->fill_next = self->filling;
    if (self->filling)
        self->filling->fill_prev = op;
    self->filling = op;
}

/* |op| ended (its rows cached or not): the lookups parked for it look at
 * the cache again. */
static void filling_remove(struct op *op)
{
    struct pgw_store *self = op->filling;

    if (op->fill_prev)
        op->fill_prev->fill_next = op->fill_next;
    else
        self->filling = op->fill_next;
    if (op->fill_next)
        op->fill_next->fill_prev = op->fill_prev;
    op->filling = NULL;
    if (self->parked.head) {
        self->recheck_parked = true;
        schedule_kick(self);
    }
}

static void op_free(struct op *op)
{
    if (op->filling)
        filling_remove(op);
    if (op->batches)
        (*op->batches)--;
    free(op->ents);
    for (unsigned i = 0; i < STORE_MAX_RESULTS; i++)
        PQclear(op->res[i]);
    free(op);
}

/* Runs |op|'s callback with |err| (< 0) and frees it; a batch fails each
 * merged operation. */
static void op_fail(struct op *op, int err)
{
    struct op *m;

    switch (op->kind) {
    case OP_INSERT:
        op->cb.insert(op->arg, err, 0, false);
        break;
    case OP_BATCH_INSERT:
    case OP_BATCH_DUPS:
    case OP_BATCH_FINISH:
    case OP_BATCH_FIND:
    case OP_BATCH_INC:
        while ((m = op->members)) {
            op->members = m->next;
            op_fail(m, err);
        }
        break;
    case OP_COUNT:
        op->cb.count(op->arg, err, 0);
        break;
    case OP_CLAIM_EVENTS:
        op->cb.events(op->arg, err, NULL, 0);
        break;
    case OP_FIND:
    case OP_CACHED:
        op->cb.inst(op->arg, err, NULL, 0);
        break;
    case OP_CLAIM_RETRIES:
        op->cb.retries(op->arg, err, NULL, 0);
        break;
    case OP_EXEC:
        op->cb.exec(op->arg, err, NULL);
        break;
    case OP_FINISH:
    case OP_RENEW:
    case OP_RELEASE:
    case OP_FINISH_RETRY:
    case OP_UNDO_BADGES:
        op->cb.done(op->arg, err);
        break;
    }
    op_free(op);
}

static void fail_list(struct op_list *l, int err)
{
    struct op *op;

    while ((op = list_pop(l)))
        op_fail(op, err);
}

/* Copies the fragments encoded in |self->enc| (|n_frags| pairs in
 * |frag|) into a new operation. */
static struct op *op_from_enc(struct pgw_store *self, enum op_kind kind,
                              const uint32_t *frag, unsigned n_frags)
{
    struct op *op;

    if (self->enc.oom || self->enc.len > UINT32_MAX)
        return NULL;
    op = calloc(1, sizeof(*op) + self->enc.len + 1);
    if (!op)
        return NULL;
    op->kind = kind;
    op->n_frags = n_frags;
    op->data_len = self->enc.len;
    memcpy(op->frag, frag, 2 * n_frags * sizeof(*frag));
    if (self->enc.len)
        memcpy(op->data, self->enc.p, self->enc.len);
    return op;
}

/* A plain operation with |n| text parameters (NULL allowed), copied. */
static struct op *op_with_params(enum op_kind kind, const char *const *params,
                                 unsigned n)
{
    size_t size = 0;
    struct op *op;
    char *cur;

    for (unsigned i = 0; i < n; i++)
        if (params[i])
            size += strlen(params[i]) + 1;
    op = calloc(1, sizeof(*op) + size);
    if (!op)
        return NULL;
    op->kind = kind;
    op->n_params = n;
    cur = op->data;
    for (unsigned i = 0; i < n; i++) {
        size_t len;

        if (!params[i])
            continue;
        len = strlen(params[i]) + 1;
        memcpy(cur, params[i], len);
        op->param[i] = cur;
        cur += len;
    }
    return op;
}

/* -- connections (pgconn.h) -- */

static void op_complete(struct pgw_store *self, struct op *op);

static struct op *unit_op(struct pgw_pgconn_unit *u)
{
    return (struct op *)(void *)((char *)u - offsetof(struct op, unit));
}

static void set_last_error(struct pgw_store *self, const char *what,
                           const char *msg)
{
    char line[200];

    snprintf(self->last_error, sizeof(self->last_error), "%s%s", what,
             pgw_pgconn_one_line(line, sizeof(line), msg));
}

/* Stores the |op|'s next result, or notes its failure. */
static void op_take_result(struct op *op, PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (op->err == 0) {
            char line[300];
            op->err = PGW_ERR_DB;
            pgw_log_debug("statement failed: %s",
                          pgw_pgconn_one_line(line, sizeof(line),
                                              PQresultErrorMessage(r)));
        }
        PQclear(r);
    } else if (op->n_results < STORE_MAX_RESULTS) {
        op->res[op->n_results] = r;
    } else {
        PQclear(r);
    }
    op->n_results++;
}

static void on_result(void *arg, struct pgw_pgconn_unit *u, PGresult *r)
{
    (void)arg;
    op_take_result(unit_op(u), r);
}

/* |u| reached its sync: its callbacks run now. */
static void on_done(void *arg, struct pgw_pgconn_unit *u)
{
    struct pgw_store *self = arg;

    op_complete(self, unit_op(u));
    if (self->queue.n + self->inserts.n + self->finishes.n + self->finds.n +
            self->incs.n >
        0)
        schedule_kick(self);
}

static void on_unit_fail(void *arg, struct pgw_pgconn_unit *u, int err)
{
    (void)arg;
    op_fail(unit_op(u), err);
}

/* A pool connection's session: its settings, then every statement
 * prepared. */
static const char *pool_setup(void *arg, PGconn *pg)
{
    (void)arg;
    /* Random reads cost what sequential ones do when the queue's pages
     * are cached, which they are: at the default 4.0 the planner chose a
     * sequential scan of events over a thousand primary-key probes (a
     * finish batch of 1000: 16 ms instead of 2). Only lowered, only in
     * this session. */
    if (!PQsendQueryParams(pg,
                           "SELECT set_config('random_page_cost', '1.1', "
                           "false) WHERE current_setting('random_page_cost')"
                           "::float8 > 1.1",
                           0, NULL, NULL, NULL, NULL, 0)) {
        return "could not set up the session: ";
    }
    /* All of them, those sent unnamed (stmt_replan) too: a schema that
     * does not match fails here, at connect, not at the first event. */
    for (int i = 0; i < ST__COUNT; i++) {
        if (!PQsendPrepare(pg, stmts[i].name, stmts[i].sql, 0, NULL)) {
            return "could not prepare statements: ";
        }
    }
    return NULL;
}

static void pool_up(void *arg, struct pgw_pgconn *c)
{
    struct pgw_store *self = arg;

    (void)c;
    self->n_up++;
    if (self->failing) {
        self->failing = false;
        pgw_log_info("database connection recovered");
    }
    self->last_error[0] = '\0';
    schedule_kick(self);
}

/* A pool connection failed; with the last of them, the database is
 * unavailable: logged once per outage, queued operations fail fast. */
static void pool_down(void *arg, struct pgw_pgconn *c, bool was_up,
                      const char *what, const char *msg)
{
    struct pgw_store *self = arg;

    (void)c;
    if (was_up)
        self->n_up--;
    set_last_error(self, what, msg);
    if (self->n_up > 0)
        return;
    /* The server is gone for the pool: the listener may not have noticed
     * yet, and notifications may be lost in between. */
    if (self->listen && !pgw_pgconn_is_down(self->listen))
        pgw_pgconn_fail(self->listen, "", "the database connections are down");
    if (!self->failing) {
        self->failing = true;
        pgw_log_warn("database unavailable: %s", self->last_error);
        schedule_kick(self);
    }
}

static const struct pgw_pgconn_callbacks pool_callbacks = {
    .setup = pool_setup,
    .up = pool_up,
    .down = pool_down,
    .result = on_result,
    .done = on_done,
    .fail = on_unit_fail,
};

/* The cache's connection is down: notifications may be missed from now
 * on, so the cache is emptied and left unused until it is back. */
static void cache_off(struct pgw_store *self, const char *what, const char *msg)
{
    char line[200];

    self->cache_live = false;
    self->cache_gen++;
    pgw_icache_clear(self->cache);
    if (self->parked.head) {
        self->recheck_parked = true;
        schedule_kick(self);
    }
    if (!self->cache_warned && !self->closing) {
        self->cache_warned = true;
        pgw_log_warn("installation cache off until its connection is back: "
                     "%s%s",
                     what, pgw_pgconn_one_line(line, sizeof(line), msg));
    }
}

/* The cache's connection: LISTEN, and a check of the triggers. */
static const char *listen_setup(void *arg, PGconn *pg)
{
    (void)arg;
    /* Listening is not enough: the triggers must be there (and on) to
     * announce anything, else the cache would never be told of a
     * change. Division by zero when they are not. */
    if (!PQsendQueryParams(pg, "LISTEN pushgw_installations", 0, NULL, NULL,
                           NULL, NULL, 0) ||
        !PQsendQueryParams(
            pg,
            "SELECT 1 / (count(*) = 3)::int FROM pg_trigger WHERE "
            "tgrelid = 'installations'::regclass AND tgenabled <> 'D' "
            "AND tgname IN ('installations_changed_update', "
            "'installations_changed_insert_delete', "
            "'installations_changed_truncate')",
            0, NULL, NULL, NULL, NULL, 0)) {
        return "could not listen: ";
    }
    return NULL;
}

/* Changes made while nobody listened were not heard of: what was cached
 * before is forgotten, lookups in flight do not fill. */
static void listen_up(void *arg, struct pgw_pgconn *c)
{
    struct pgw_store *self = arg;

    (void)c;
    pgw_icache_clear(self->cache);
    self->cache_gen++;
    self->cache_live = true;
    if (self->cache_warned) {
        self->cache_warned = false;
        pgw_log_info("installation cache on again");
    }
}

static void listen_down(void *arg, struct pgw_pgconn *c, bool was_up,
                        const char *what, const char *msg)
{
    (void)c;
    (void)was_up;
    cache_off(arg, what, msg);
}

/*
 * One notification of migration 0007's trigger: {"app": A, "channels":
 * [...]} evicts those names of A, {"app": A} every name of A, anything
 * else (TRUNCATE's {}) everything. Lookups in flight do not fill the
 * cache with what they read (|cache_gen|): they may have read before the
 * change.
 */
static void forget(struct pgw_store *self, const char *payload)
{
    cJSON *j = cJSON_Parse(payload);
    const cJSON *app = cJSON_GetObjectItemCaseSensitive(j, "app");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "channels");
    const cJSON *name;

    self->cache_gen++;
    if (!cJSON_IsString(app)) {
        pgw_icache_clear(self->cache);
    } else if (!cJSON_IsArray(ch)) {
        pgw_icache_evict(self->cache, app->valuestring, NULL);
    } else {
        cJSON_ArrayForEach(name, ch)
        {
            if (cJSON_IsString(name))
                pgw_icache_evict(self->cache, app->valuestring,
                                 name->valuestring);
        }
    }
    cJSON_Delete(j);
}

static void on_notify(struct pgw_store *self, const char *payload)
{
    self->notifications++;
    forget(self, payload);
}

void pgw_store_forget_installations(struct pgw_store *self, const char *payload)
{
    if (self && self->cache && payload)
        forget(self, payload);
}

static void listen_notify(void *arg, const char *payload)
{
    on_notify(arg, payload);
}

static const struct pgw_pgconn_callbacks listen_callbacks = {
    .setup = listen_setup,
    .up = listen_up,
    .down = listen_down,
    .result = on_result,
    .done = on_done,
    .fail = on_unit_fail,
    .notify = listen_notify,
};

/* -- sending -- */

/*
 * The statements on the queue tables are planned at every execution, as
 * unnamed statements; the others use their prepared, cached plans. The
 * queue tables grow from empty within seconds: a generic plan made while
 * events held a few rows (a fresh deployment, a truncated table) scanned
 * the whole table, or a whole index, per call and stayed cached for the
 * connection's life: 5,000 chat events/s instead of 14,000 once 50,000
 * had gone through (docs/BENCHMARKS.md). A custom plan sees the table's
 * current size; planning costs about 80 us per statement, a batch's.
 */
static const bool stmt_replan[ST__COUNT] = {
    [ST_INSERT] = true,    [ST_DUPS] = true,     [ST_CLAIM_EV] = true,
    [ST_RENEW_EV] = true,  [ST_FAIL_INS] = true, [ST_RETRY_INS] = true,
    [ST_EVENT_FIN] = true, [ST_CLAIM_RT] = true,
};

static int send_stmt(struct pgw_store *self, struct pgw_pgconn *c,
                     enum stmt_id id, unsigned n, const char *const *params)
{
    PGconn *pg = pgw_pgconn_pg(c);

    self->sent_in_op++;
    if (stmt_replan[id])
        return PQsendQueryParams(pg, stmts[id].sql, (int)n, NULL, params, NULL,
                                 NULL, 0)
                   ? 0
                   : -1;
    return PQsendQueryPrepared(pg, stmts[id].name, (int)n, params, NULL, NULL,
                               0)
               ? 0
               : -1;
}

/* Joins fragment |f| of every member into the array literal arr[|f|]. */
static const char *batch_array(struct pgw_store *self, const struct op *batch,
                               unsigned f)
{
    struct pgw_pgarray_buf *b = &self->arr[f];

    pgw_pgarray_reset(b);
    pgw_pgarray_put_raw(b, "{", 1);
    for (const struct op *m = batch->members; m; m = m->next) {
        uint32_t off = m->frag[2 * f], len = m->frag[2 * f + 1];

        if (len == 0)
            continue;
        if (b->len > 1)
            pgw_pgarray_put_raw(b, ",", 1);
        pgw_pgarray_put_raw(b, m->data + off, len);
    }
    pgw_pgarray_put_raw(b, "}", 1);
    return b->oom ? NULL : b->p;
}

static int send_batch(struct pgw_store *self, struct pgw_pgconn *c,
                      struct op *op, unsigned first, unsigned n,
                      enum stmt_id id)
{
    const char *params[STORE_MAX_FRAGS + 1];

    for (unsigned i = 0; i < n; i++) {
        params[i] = batch_array(self, op, first + i);
        if (!params[i])
            return PGW_ERR_NOMEM;
    }
    /* The end of an event is written only while this process still
     * holds it: after a takeover (lease expired, another process claimed
     * it) the new holder's outcome is the one kept, and no failure or
     * retry row is written twice. */
    if (id == ST_INSERT || id == ST_FAIL_INS || id == ST_RETRY_INS ||
        id == ST_EVENT_FIN)
        params[n++] = self->owner;
    return send_stmt(self, c, id, n, params) < 0 ? PGW_ERR_DB : 0;
}

/* Appends fragment |f| of |m| |n| times as elements of |b|. */
static void sb_repeat_frag(struct pgw_pgarray_buf *b, const struct op *m,
                           unsigned f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 1);
        pgw_pgarray_put_raw(b, m->data + m->frag[2 * f], m->frag[2 * f + 1]);
    }
}

/* A batch holding one lookup, as ST_FIND_ONE(_INC): the member's names,
 * its app and team fragments as one-element array literals, and (_INC)
 * its event (NULL: none; "= NULL" holds for no row). */
static int send_find_one(struct pgw_store *self, struct pgw_pgconn *c,
                         const struct op *op)
{
    const struct op *m = op->members;
    struct pgw_pgarray_buf *app = &self->arr[2], *team = &self->arr[3];
    const char *params[4];
    char event[24];

    pgw_pgarray_reset(app);
    pgw_pgarray_reset(team);
    pgw_pgarray_put_raw(app, "{", 1);
    pgw_pgarray_put_raw(app, m->data + m->frag[2], m->frag[3]);
    pgw_pgarray_put_raw(app, "}", 1);
    pgw_pgarray_put_raw(team, "{", 1);
    pgw_pgarray_put_raw(team, m->data + m->frag[4], m->frag[5]);
    pgw_pgarray_put_raw(team, "}", 1);
    params[0] = app->p;
    params[1] = batch_array(self, op, 0); /* uses arr[0] */
    params[2] = team->p;
    snprintf(event, sizeof(event), "%lld", (long long)m->event_id);
    params[3] = m->event_id > 0 ? event : NULL;
    if (app->oom || team->oom || !params[1])
        return PGW_ERR_NOMEM;
    return send_stmt(self, c, m->flag ? ST_FIND_ONE_INC : ST_FIND_ONE,
                     m->flag ? 4 : 3, params) < 0
               ? PGW_ERR_DB
               : 0;
}

/*
 * The lookups merged in |op| as ST_FIND's parameters, one element per
 * recipient name: each member's fragments are its names, its app and its
 * team; its number and increment flag are written here.
 */
static int send_find_batch(struct pgw_store *self, struct pgw_pgconn *c,
                           const struct op *op)
{
    struct pgw_pgarray_buf *k = &self->arr[1], *app = &self->arr[2],
                           *team = &self->arr[3], *inc = &self->arr[4];
    const char *params[5];
    long long idx = 0;

    pgw_pgarray_reset(k);
    pgw_pgarray_reset(app);
    pgw_pgarray_reset(team);
    pgw_pgarray_reset(inc);
    pgw_pgarray_put_raw(k, "{", 1);
    pgw_pgarray_put_raw(app, "{", 1);
    pgw_pgarray_put_raw(team, "{", 1);
    pgw_pgarray_put_raw(inc, "{", 1);
    for (const struct op *m = op->members; m; m = m->next) {
        idx++;
        for (size_t i = 0; i < m->n_names; i++) {
            pgw_pgarray_put_sep(k, 1);
            pgw_pgarray_put_int(k, idx);
            pgw_pgarray_put_sep(inc, 1);
            pgw_pgarray_put_raw(inc, m->flag ? "t" : "f", 1);
        }
        sb_repeat_frag(app, m, 1, m->n_names);
        sb_repeat_frag(team, m, 2, m->n_names);
    }
    pgw_pgarray_put_raw(k, "}", 1);
    pgw_pgarray_put_raw(app, "}", 1);
    pgw_pgarray_put_raw(team, "}", 1);
    pgw_pgarray_put_raw(inc, "}", 1);
    params[0] = k->p;
    params[1] = batch_array(self, op, 0); /* uses arr[0] */
    params[2] = app->p;
    params[3] = team->p;
    params[4] = inc->p;
    if (k->oom || app->oom || team->oom || inc->oom || !params[1])
        return PGW_ERR_NOMEM;
    return send_stmt(self, c, ST_FIND, 5, params) < 0 ? PGW_ERR_DB : 0;
}

static int cmp_inc_ent(const void *a, const void *b)
{
    const struct inc_ent *x = a, *y = b;

    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/*
 * The cached lookups merged in |op| as ST_INC_IDS's parameters: their iOS
 * rows sorted by id, then caller (kept in |op->ents| for the results),
 * each id once with its number of increments: one per event among its
 * callers, one per caller without an event. Parts of one event, queued
 * together, thus increment a device they share once and get one badge
 * (store.h); that one increment keeps the once-per-event rule.
 */
static int send_inc_batch(struct pgw_store *self, struct pgw_pgconn *c,
                          struct op *op)
{
    struct pgw_pgarray_buf *id = &self->arr[0], *cnt = &self->arr[1],
                           *ev = &self->arr[2];
    const char *params[3];
    const struct op **mem, *m;
    size_t n = 0, j;
    uint32_t k = 0;

    mem = calloc(op->n_members ? op->n_members : 1, sizeof(*mem));
    op->ents = malloc((op->n_names ? op->n_names : 1) * sizeof(*op->ents));
    if (!mem || !op->ents) {
        free(mem);
        return PGW_ERR_NOMEM;
    }
    for (m = op->members; m && k < op->n_members; m = m->next, k++) {
        mem[k] = m;
        for (size_t i = 0; i < m->n_inst && n < op->n_names; i++)
            if (m->inst[i].platform == PGW_PLATFORM_IOS)
                op->ents[n++] =
                    (struct inc_ent){m->inst[i].id, k, (uint32_t)i, 0, 0};
    }
    op->n_ents = n;
    qsort(op->ents, n, sizeof(*op->ents), cmp_inc_ent);
    pgw_pgarray_reset(id);
    pgw_pgarray_reset(cnt);
    pgw_pgarray_reset(ev);
    pgw_pgarray_put_raw(id, "{", 1);
    pgw_pgarray_put_raw(cnt, "{", 1);
    pgw_pgarray_put_raw(ev, "{", 1);
    for (size_t i = 0; i < n; i = j) {
        uint32_t keys = 0;
        int64_t first_ev;

        for (j = i + 1; j < n && op->ents[j].id == op->ents[i].id; j++)
            ;
        /* a caller's increment is the one of the first caller before it
         * with the same event, else a new one */
        for (size_t x = i; x < j; x++) {
            int64_t e = mem[op->ents[x].k]->event_id;
            size_t y = i;

            while (e > 0 && y < x && mem[op->ents[y].k]->event_id != e)
                y++;
            op->ents[x].r = e > 0 && y < x ? op->ents[y].r : keys++;
        }
        for (size_t x = i; x < j; x++)
            op->ents[x].n = keys;
        first_ev = mem[op->ents[i].k]->event_id;
        pgw_pgarray_put_sep(id, 1);
        pgw_pgarray_put_int(id, op->ents[i].id);
        pgw_pgarray_put_sep(cnt, 1);
        pgw_pgarray_put_int(cnt, keys);
        pgw_pgarray_put_sep(ev, 1);
        if (keys == 1 && first_ev > 0)
            pgw_pgarray_put_int(ev, first_ev);
        else
            pgw_pgarray_put_raw(ev, "NULL", 4);
    }
    free(mem);
    pgw_pgarray_put_raw(id, "}", 1);
    pgw_pgarray_put_raw(cnt, "}", 1);
    pgw_pgarray_put_raw(ev, "}", 1);
    if (id->oom || cnt->oom || ev->oom)
        return PGW_ERR_NOMEM;
    params[0] = id->p;
    params[1] = cnt->p;
    params[2] = ev->p;
    return send_stmt(self, c, ST_INC_IDS, 3, params) < 0 ? PGW_ERR_DB : 0;
}

/* Queues |op|'s statements on |c| (the caller adds the sync). Returns 0,
 * PGW_ERR_NOMEM (|op| not sent: the caller fails it), PGW_ERR_DB (the
 * connection broke, or a statement went without the rest: the caller
 * fails it and the connection). */
static int op_send(struct pgw_store *self, struct pgw_pgconn *c, struct op *op)
{
    int rc = 0;

    self->sent_in_op = 0;
    switch (op->kind) {
    case OP_BATCH_INSERT:
        rc = send_batch(self, c, op, 0, 6, ST_INSERT);
        break;
    case OP_BATCH_DUPS:
        rc = send_batch(self, c, op, 0, 3, ST_DUPS);
        break;
    case OP_BATCH_FINISH:
        if (op->n_fail)
            rc = send_batch(self, c, op, 0, 6, ST_FAIL_INS);
        if (rc == 0 && op->n_inv)
            rc = send_batch(self, c, op, 6, 3, ST_INVALIDATE);
        if (rc == 0 && op->n_retry)
            rc = send_batch(self, c, op, 9, 8, ST_RETRY_INS);
        if (rc == 0)
            rc = send_batch(self, c, op, 17, 8, ST_EVENT_FIN);
        break;
    case OP_COUNT:
        rc = send_stmt(self, c, ST_COUNT, 0, NULL);
        break;
    case OP_CLAIM_EVENTS:
        rc = send_stmt(self, c, ST_CLAIM_EV, 3, op->param);
        break;
    case OP_RENEW:
        rc = send_stmt(self, c, ST_RENEW_EV, 3, op->param);
        if (rc == 0) {
            const char *p[2] = {op->param[0], op->param[2]};
            rc = send_stmt(self, c, ST_RENEW_RT, 2, p);
        }
        break;
    case OP_RELEASE:
        rc = send_stmt(self, c, ST_RELEASE_EV, 1, op->param);
        if (rc == 0)
            rc = send_stmt(self, c, ST_RELEASE_RT, 1, op->param);
        break;
    case OP_BATCH_FIND:
        if (op->n_members > 1 || op->flag)
            rc = send_stmt(self, c, ST_BADGE_TXN, 0, NULL);
        if (rc == 0)
            rc = op->n_members == 1 ? send_find_one(self, c, op)
                                    : send_find_batch(self, c, op);
        break;
    case OP_BATCH_INC:
        rc = send_stmt(self, c, ST_BADGE_TXN, 0, NULL);
        if (rc == 0)
            rc = send_inc_batch(self, c, op);
        break;
    case OP_CLAIM_RETRIES:
        rc = send_stmt(self, c, ST_CLAIM_RT, 3, op->param);
        break;
    case OP_FINISH_RETRY:
        rc = send_stmt(self, c, ST_RETRY_FIN, 9, op->param);
        if (rc == 0)
            rc = send_stmt(self, c, ST_RETRY_DONE, 1, &op->param[9]);
        break;
    case OP_UNDO_BADGES:
        rc = send_stmt(self, c, ST_BADGE_TXN, 0, NULL);
        if (rc == 0)
            rc = send_stmt(self, c, ST_UNDO_BADGES, 1, op->param);
        break;
    case OP_EXEC:
        self->sent_in_op++;
        rc = PQsendQueryParams(pgw_pgconn_pg(c), op->sql, (int)op->n_params,
                               NULL, op->param, NULL, NULL, 0)
                 ? 0
                 : -1;
        break;
    default:
        rc = PGW_ERR_INVAL;
        break;
    }
    /* Out of memory after a statement went into the pipeline: without
     * its sync it would join the next operation's transaction (its
     * results counted as that one's, ST_BADGE_TXN's settings applied to
     * it), so the connection goes as if it had broken. */
    if ((rc == PGW_ERR_NOMEM || rc == PGW_ERR_INVAL) && self->sent_in_op == 0)
        return rc;
    return rc < 0 ? PGW_ERR_DB : 0;
}

/* The up connection with the most room, or NULL when all are full. */
static struct pgw_pgconn *pick_conn(struct pgw_store *self)
{
    struct pgw_pgconn *best = NULL;

    for (unsigned i = 0; i < self->n_conns; i++) {
        struct pgw_pgconn *c =
            self->conns[(self->next_conn + i) % self->n_conns];
        size_t n = pgw_pgconn_inflight(c);

        if (!pgw_pgconn_is_up(c) || n >= STORE_MAX_INFLIGHT)
            continue;
        if (!best || n < pgw_pgconn_inflight(best))
            best = c;
    }
    self->next_conn++;
    return best;
}

/* Links |m| as the last member of batch |b| (|*tail|: its last so far). */
static void batch_add(struct op *b, struct op **tail, struct op *m)
{
    if (*tail)
        (*tail)->next = m;
    else
        b->members = m;
    *tail = m;
    b->n_members++;
}

/* Merges up to STORE_MAX_BATCH operations of |l| into one batch. */
static struct op *make_batch(struct pgw_store *self, struct op_list *l,
                             enum op_kind kind)
{
    struct op *b = calloc(1, sizeof(*b));
    struct op *tail = NULL;

    if (!b)
        return NULL;
    b->kind = kind;
    /* lookups are not held back: no count of those in flight */
    if (kind == OP_BATCH_INSERT)
        b->batches = &self->insert_batches;
    else if (kind == OP_BATCH_FINISH)
        b->batches = &self->finish_batches;
    else if (kind == OP_BATCH_INC)
        b->batches = &self->inc_batches;
    if (b->batches)
        (*b->batches)++;
    while (l->head && b->n_members < STORE_MAX_BATCH) {
        struct op *m;

        if (b->n_members && kind == OP_BATCH_INC &&
            b->n_names + l->head->n_names > STORE_MAX_INC_IDS)
            break;
        if (b->n_members && kind != OP_BATCH_INC &&
            (b->n_names + l->head->n_names > STORE_MAX_FIND_NAMES || b->solo ||
             l->head->solo ||
             b->data_len + l->head->data_len > STORE_MAX_BATCH_BYTES))
            break;
        m = list_pop(l);
        b->solo = m->solo;

        self->n_queued--;
        batch_add(b, &tail, m);
        b->flag |= m->flag;
        b->n_fail += m->n_fail;
        b->n_inv += m->n_inv;
        b->n_retry += m->n_retry;
        b->n_names += m->n_names;
        b->data_len += m->data_len;
    }
    return b;
}

/* Sends |op| on |c|; on failure fails |op| (and |c| when it broke). */
static void dispatch_op(struct pgw_store *self, struct pgw_pgconn *c,
                        struct op *op)
{
    int rc = op_send(self, c, op);

    if (rc == 0 || rc == PGW_ERR_DB)
        pgw_pgconn_sync(c, &op->unit, rc != 0);
    else
        op_fail(op, rc);
}

/*
 * Fires once per loop iteration in which operations were queued (a zero
 * timer runs at the start of the next iteration, so everything queued in
 * this one is merged). Sends what the connections can take; fails
 * everything at once while the database is unreachable.
 */
static void recheck_parked(struct pgw_store *self);

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_store *self = arg;
    struct op *op;

    (void)fd;
    (void)what;
    /* the callbacks may queue more: those wait for the next iteration */
    for (size_t n = self->ready.n; n > 0; n--) {
        op = list_pop(&self->ready);
        self->n_queued--;
        op->cb.inst(op->arg, 0, op->inst, op->n_inst);
        op_free(op);
    }
    if (self->recheck_parked)
        recheck_parked(self);
    if (self->n_up == 0) {
        if (self->failing) {
            self->n_queued = self->ready.n;
            fail_list(&self->parked, PGW_ERR_DB);
            fail_list(&self->inserts, PGW_ERR_DB);
            fail_list(&self->finishes, PGW_ERR_DB);
            fail_list(&self->finds, PGW_ERR_DB);
            fail_list(&self->incs, PGW_ERR_DB);
            fail_list(&self->queue, PGW_ERR_DB);
        }
        return;
    }
    for (;;) {
        struct pgw_pgconn *c;
        bool ins = self->inserts.head &&
                   self->insert_batches < STORE_MAX_INSERT_BATCHES;
        bool fin = self->finishes.head &&
                   self->finish_batches < STORE_MAX_FINISH_BATCHES;
        bool inc = self->incs.head && self->inc_batches < STORE_MAX_INC_BATCHES;

        /* Inserts and finishes held back here go once the batch in
         * flight completes (on_done kicks again). */
        if (!ins && !fin && !self->finds.head && !inc && !self->queue.head)
            break;
        c = pick_conn(self);
        if (!c)
            break; /* every pipeline is full: resumed as results arrive */
        if (ins) {
            op = make_batch(self, &self->inserts, OP_BATCH_INSERT);
        } else if (fin) {
            op = make_batch(self, &self->finishes, OP_BATCH_FINISH);
        } else if (self->finds.head) {
            op = make_batch(self, &self->finds, OP_BATCH_FIND);
        } else if (inc) {
            op = make_batch(self, &self->incs, OP_BATCH_INC);
        } else {
            op = list_pop(&self->queue);
            self->n_queued--;
        }
        if (!op) {
            /* no memory for a batch: retry on the next iteration */
            schedule_kick(self);
            break;
        }
        dispatch_op(self, c, op);
    }
    for (unsigned i = 0; i < self->n_conns; i++)
        pgw_pgconn_flush(self->conns[i]);
}

static void schedule_kick(struct pgw_store *self)
{
    struct timeval zero = {0, 0};

    if (!self->closing && !evtimer_pending(self->kick, NULL))
        evtimer_add(self->kick, &zero);
}

/* -- results -- */

static int64_t get_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *get_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static void enqueue(struct pgw_store *self, struct op_list *l, struct op *op);

/* Rows of (ord, id) from |r| (may be NULL): ids[ord - 1] and got[ord - 1]
 * set for each ord from 1 to |n|; got[] cleared first. */
static void read_ord_ids(const PGresult *r, size_t n, int64_t *ids, bool *got)
{
    memset(got, 0, n * sizeof(*got));
    for (int i = 0; r && i < PQntuples(r); i++) {
        int64_t ord = get_i64(r, i, 0);

        if (ord >= 1 && (size_t)ord <= n) {
            ids[ord - 1] = get_i64(r, i, 1);
            got[ord - 1] = true;
        }
    }
}

/* Answers the members of an insert batch that were stored; those skipped
 * as duplicates go on to one ST_DUPS batch (OP_BATCH_DUPS), which finds
 * the events they repeat. */
static void complete_inserts(struct pgw_store *self, struct op *op)
{
    int64_t ids[STORE_MAX_BATCH];
    bool stored[STORE_MAX_BATCH];
    const PGresult *ins = op->res[0];
    struct op *m, *dups = NULL, *tail = NULL;

    read_ord_ids(ins, op->n_members, ids, stored);
    for (size_t i = 0; (m = op->members) != NULL; i++) {
        op->members = m->next;
        m->next = NULL;
        if (stored[i]) {
            m->cb.insert(m->arg, 0, ids[i], false);
        } else {
            if (!dups && (dups = calloc(1, sizeof(*dups))) != NULL)
                dups->kind = OP_BATCH_DUPS;
            if (dups) {
                batch_add(dups, &tail, m);
                continue;
            }
            m->cb.insert(m->arg, PGW_ERR_NOMEM, 0, false);
        }
        op_free(m);
    }
    if (dups)
        enqueue(self, &self->queue, dups);
}

/* Answers the members of an OP_BATCH_DUPS: each is the duplicate of the
 * event found with its key, or was deleted meanwhile (nothing stored). */
static void complete_dups(struct op *op)
{
    int64_t ids[STORE_MAX_BATCH];
    bool found[STORE_MAX_BATCH];
    const PGresult *dups = op->res[0];
    size_t n = op->n_members, i = 0;
    struct op *m;

    read_ord_ids(dups, n, ids, found);
    while ((m = op->members)) {
        op->members = m->next;
        if (found[i])
            m->cb.insert(m->arg, 0, ids[i], true);
        else
            m->cb.insert(m->arg, PGW_ERR_DB, 0, false);
        op_free(m);
        i++;
    }
}

static int cmp_event(const void *a, const void *b)
{
    int64_t x = ((const struct pgw_store_event *)a)->id;
    int64_t y = ((const struct pgw_store_event *)b)->id;
    return (x > y) - (x < y);
}

static void complete_claim_events(struct pgw_store *self, struct op *op)
{
    const PGresult *r = op->res[0];
    size_t n = r ? (size_t)PQntuples(r) : 0;
    struct pgw_store_event *ev;

    if (n > self->ev_scratch_cap) {
        ev = realloc(self->ev_scratch, n * sizeof(*ev));
        if (!ev) {
            op->cb.events(op->arg, PGW_ERR_NOMEM, NULL, 0);
            return;
        }
        self->ev_scratch = ev;
        self->ev_scratch_cap = n;
    }
    ev = self->ev_scratch;
    for (size_t i = 0; i < n; i++) {
        ev[i].id = get_i64(r, (int)i, 0);
        ev[i].app_id = get_str(r, (int)i, 1);
        ev[i].body = get_str(r, (int)i, 2);
        ev[i].body_len = (size_t)PQgetlength(r, (int)i, 2);
        ev[i].attempts = (int)get_i64(r, (int)i, 3);
    }
    if (n > 1) /* qsort(NULL, 0, …) is undefined behaviour */
        qsort(ev, n, sizeof(*ev), cmp_event);
    op->cb.events(op->arg, 0, n ? ev : NULL, n);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct chan_ref {
    const char *name;
    size_t row;
};

static int cmp_chan_ref(const void *a, const void *b)
{
    const struct chan_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c)
        return c;
    return x->row < y->row ? -1 : x->row > y->row;
}

/*
 * Caches the rows of lookup |m| (|inst|, |n|, in id order: every valid
 * installation of its app whose channels hold one of its names) as one
 * entry per name: the rows whose channels hold that name. Runs only when
 * no notification came since the lookup was queued; one that comes later
 * evicts what this wrote, if the change was one it missed. Out of memory:
 * nothing more is cached.
 */
static void cache_fill(struct pgw_store *self, const struct op *m,
                       const struct pgw_installation *inst, size_t n)
{
    const char *app = m->data + m->names_off, *name;
    struct chan_ref *refs = NULL;
    const struct pgw_installation **devs = NULL;
    size_t n_refs = 0;
    int64_t now = mono_ms();

    for (size_t i = 0; i < n; i++)
        n_refs += inst[i].n_channels;
    refs = malloc((n_refs ? n_refs : 1) * sizeof(*refs));
    devs = malloc((n ? n : 1) * sizeof(*devs));
    if (!refs || !devs)
        goto out;
    n_refs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < inst[i].n_channels; k++)
            refs[n_refs++] = (struct chan_ref){inst[i].channels[k], i};
    qsort(refs, n_refs, sizeof(*refs), cmp_chan_ref);
    name = app + strlen(app) + 1;
    for (size_t j = 0; j < m->n_names; j++, name += strlen(name) + 1) {
        size_t lo = 0, hi = n_refs, k = 0;

        while (lo < hi) { /* the first reference >= name */
            size_t mid = lo + (hi - lo) / 2;

            if (strcmp(refs[mid].name, name) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < n_refs && strcmp(refs[lo].name, name) == 0; lo++)
            if (k == 0 || devs[k - 1] != &inst[refs[lo].row])
                devs[k++] = &inst[refs[lo].row];
        if (pgw_icache_put(self->cache, app, name, devs, k, now) < 0)
            break;
    }
out:
    free(refs);
    free(devs);
}

/* Rows |first| .. |first| + |n| - 1 of |r| (columns from 1: column 0
 * is the caller) as |m|'s installations, through its callback; they fill
 * the cache first when |m| may. */
static void deliver_find(struct pgw_store *self, const PGresult *r, int first,
                         size_t n, const struct op *m)
{
    size_t text = 0, items = 0;
    struct pgw_installation *inst = NULL;
    const char **chan = NULL;
    char *buf = NULL, *cur;
    int err = 0;

    for (size_t i = 0; i < n; i++) {
        size_t len = (size_t)PQgetlength(r, first + (int)i, 5);
        text += len + 1;
        items += len / 2 + 1; /* "{a,b}": at most half the characters */
    }
    if (n > 0) {
        inst = calloc(n, sizeof(*inst));
        chan = calloc(items, sizeof(*chan));
        buf = malloc(text);
        if (!inst || !chan || !buf) {
            err = PGW_ERR_NOMEM;
            goto out;
        }
    }
    cur = buf;
    items = 0;
    for (size_t i = 0; i < n; i++) {
        int row = first + (int)i;
        const char *arr = PQgetvalue(r, row, 5);
        size_t len = strlen(arr);
        size_t k = 0;

        /* device_type: the schema's CHECK allows nothing else */
        if (pgw_pgarray_parse(arr, cur, chan + items, len / 2 + 1, &k) < 0 ||
            pgw_platform_parse(get_str(r, row, 3), &inst[i].platform) < 0) {
            err = PGW_ERR_DB;
            goto out;
        }
        inst[i].id = get_i64(r, row, 1);
        inst[i].installation_id = get_str(r, row, 2);
        inst[i].device_token = get_str(r, row, 4);
        inst[i].channels = chan + items;
        inst[i].n_channels = k;
        inst[i].badge = (int32_t)get_i64(r, row, 6);
        inst[i].apns_topic = get_str(r, row, 7);
        inst[i].apns_team_id = get_str(r, row, 8);
        items += k;
        cur += len + 1;
    }
    if (m->fill && self->cache_live && m->fill_gen == self->cache_gen)
        cache_fill(self, m, inst, n);
out:
    if (err)
        m->cb.inst(m->arg, err, NULL, 0);
    else
        m->cb.inst(m->arg, 0, inst, n);
    free(inst);
    free(chan);
    free(buf);
}

/* Each merged lookup gets its own rows: those of its caller number (the
 * rows are ordered by it). The rows are the last result (ST_BADGE_TXN's
 * may come first). */
static void complete_finds(struct pgw_store *self, struct op *op)
{
    const PGresult *r = op->n_results ? op->res[op->n_results - 1] : NULL;
    int n = r ? PQntuples(r) : 0, row = 0;
    int64_t k = 0;
    struct op *m;

    while ((m = op->members)) {
        int first;

        op->members = m->next;
        k++;
        while (row < n && get_i64(r, row, 0) < k)
            row++; /* not expected: no such caller */
        first = row;
        while (row < n && get_i64(r, row, 0) == k)
            row++;
        deliver_find(self, r, first, (size_t)(row - first), m);
        op_free(m);
    }
}

struct inc_res {
    int64_t id;
    int badge;
};

static int cmp_inc_res(const void *a, const void *b)
{
    const struct inc_res *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * The increments of cached lookups: rows (id, new badge). The callers of
 * one id (|op->ents|, in caller order) get the new badge minus its number
 * of increments, plus the rank of theirs (1, 2, ...; callers of one event
 * share one); a row not returned (not a valid iOS installation any more)
 * is left out of every caller's rows.
 */
static void complete_incs(struct op *op)
{
    const PGresult *r = op->n_results ? op->res[op->n_results - 1] : NULL;
    size_t nr = r ? (size_t)PQntuples(r) : 0, row = 0, j;
    struct inc_res *res = malloc((nr ? nr : 1) * sizeof(*res));
    struct op **mem = calloc(op->n_members ? op->n_members : 1, sizeof(*mem));
    struct op *m;
    size_t k = 0;
    bool sorted = true;

    if (!res || !mem) {
        free(res);
        free(mem);
        while ((m = op->members)) {
            op->members = m->next;
            op_fail(m, PGW_ERR_NOMEM);
        }
        return;
    }
    for (m = op->members; m && k < op->n_members; m = m->next)
        mem[k++] = m;
    for (size_t i = 0; i < nr; i++) {
        res[i].id = get_i64(r, (int)i, 0);
        res[i].badge = (int)get_i64(r, (int)i, 1);
        if (i > 0 && res[i].id < res[i - 1].id)
            sorted = false;
    }
    if (!sorted)
        qsort(res, nr, sizeof(*res), cmp_inc_res);
    for (size_t i = 0; i < op->n_ents; i = j) {
        const struct inc_ent *e = &op->ents[i];

        for (j = i + 1; j < op->n_ents && op->ents[j].id == e->id; j++)
            ;
        while (row < nr && res[row].id < e->id)
            row++;
        for (size_t x = i; x < j; x++) {
            const struct inc_ent *ex = &op->ents[x];
            struct pgw_installation *d = &mem[ex->k]->inst[ex->i];

            if (row < nr && res[row].id == e->id)
                d->badge = res[row].badge - (int)ex->n + (int)ex->r + 1;
            else
                d->id = 0; /* left out below */
        }
    }
    while ((m = op->members)) {
        size_t kept = 0;

        op->members = m->next;
        for (size_t i = 0; i < m->n_inst; i++)
            if (m->inst[i].id != 0)
                m->inst[kept++] = m->inst[i];
        m->cb.inst(m->arg, 0, m->inst, kept);
        op_free(m);
    }
    free(res);
    free(mem);
}

static void complete_claim_retries(struct op *op)
{
    const PGresult *r = op->res[0];
    size_t n = r ? (size_t)PQntuples(r) : 0;
    struct pgw_store_retry *rt = NULL;

    if (n > 0) {
        rt = calloc(n, sizeof(*rt));
        if (!rt) {
            op->cb.retries(op->arg, PGW_ERR_NOMEM, NULL, 0);
            return;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rt[i].id = get_i64(r, (int)i, 0);
        rt[i].event_id = get_i64(r, (int)i, 1);
        rt[i].installation_id = get_i64(r, (int)i, 2);
        rt[i].app_id = get_str(r, (int)i, 3);
        rt[i].provider = get_str(r, (int)i, 4);
        rt[i].request = get_str(r, (int)i, 5);
        rt[i].attempts = (int)get_i64(r, (int)i, 6);
        rt[i].expires_at_ms = get_i64(r, (int)i, 7);
    }
    op->cb.retries(op->arg, 0, rt, n);
    free(rt);
}

/* |op| reached its sync: its callback (or its members') runs now. */
static void op_complete(struct pgw_store *self, struct op *op)
{
    struct op *m;

    if (op->err) {
        op_fail(op, op->err);
        return;
    }
    switch (op->kind) {
    case OP_BATCH_INSERT:
        complete_inserts(self, op);
        break;
    case OP_BATCH_DUPS:
        complete_dups(op);
        break;
    case OP_BATCH_FINISH:
        while ((m = op->members)) {
            op->members = m->next;
            m->cb.done(m->arg, 0);
            op_free(m);
        }
        break;
    case OP_COUNT:
        op->cb.count(op->arg, 0, op->res[0] ? get_i64(op->res[0], 0, 0) : 0);
        break;
    case OP_CLAIM_EVENTS:
        complete_claim_events(self, op);
        break;
    case OP_BATCH_FIND:
        complete_finds(self, op);
        break;
    case OP_BATCH_INC:
        complete_incs(op);
        break;
    case OP_CLAIM_RETRIES:
        complete_claim_retries(op);
        break;
    case OP_EXEC:
        op->cb.exec(op->arg, 0, op->res[0]);
        break;
    default:
        op->cb.done(op->arg, 0);
        break;
    }
    op_free(op);
}

/* -- public API -- */

int pgw_store_new(struct event_base *base, const struct pgw_store_options *opts,
                  struct pgw_store **ret_store)
{
    struct pgw_store *self = NULL;
    unsigned pool;
    int rc = PGW_ERR_NOMEM;
    const struct pgw_pgconn_options pool_opts = {
        .conninfo = opts ? opts->conninfo : NULL,
        .setup_what = "could not prepare statements: ",
        .setup_why = "schema missing or not migrated (run 'pushgw migrate')",
    };
    /* It only ever reads: keepalives tell it the server went away
     * without a word (a failover, a cut network) after about a minute
     * instead of two hours. */
    const struct pgw_pgconn_options listen_opts = {
        .conninfo = pool_opts.conninfo,
        .keepalives = true,
        .setup_what = "could not listen for installation changes: ",
        .setup_why = "migration 0007's triggers missing or disabled (run "
                     "'pushgw migrate')",
    };

    if (!base || !opts || !opts->conninfo || !opts->owner || !ret_store)
        return PGW_ERR_INVAL;
    pool = opts->pool_size ? opts->pool_size : STORE_DEFAULT_POOL;
    if (pool > PGW_STORE_MAX_POOL)
        return PGW_ERR_INVAL;
    self = calloc(1, sizeof(*self));
    if (!self)
        return PGW_ERR_NOMEM;
    self->base = base;
    self->max_queued =
        opts->max_queued ? opts->max_queued : STORE_DEFAULT_MAX_QUEUED;
    self->owner = strdup(opts->owner);
    self->conns = calloc(pool, sizeof(*self->conns));
    self->kick = evtimer_new(base, on_kick, self);
    if (!self->owner || !self->conns || !self->kick)
        goto out;
    self->n_conns = pool;
    for (unsigned i = 0; i < pool; i++) {
        rc = pgw_pgconn_new(base, &pool_opts, &pool_callbacks, self,
                            &self->conns[i]);
        if (rc < 0)
            goto out;
    }
    if (opts->cache_bytes) {
        rc = PGW_ERR_NOMEM;
        self->cache = pgw_icache_new(
            opts->cache_bytes, opts->cache_ttl_ms ? opts->cache_ttl_ms : 60000);
        if (!self->cache)
            goto out;
        rc = pgw_pgconn_new(base, &listen_opts, &listen_callbacks, self,
                            &self->listen);
        if (rc < 0)
            goto out;
    }
    for (unsigned i = 0; i < pool; i++)
        pgw_pgconn_start(self->conns[i]);
    if (self->listen)
        pgw_pgconn_start(self->listen);
    *ret_store = self;
    return 0;
out:
    pgw_store_free(self);
    return rc;
}

void pgw_store_free(struct pgw_store *self)
{
    if (!self)
        return;
    self->closing = true;
    self->n_queued = 0;
    fail_list(&self->inserts, PGW_ERR_CLOSED);
    fail_list(&self->finishes, PGW_ERR_CLOSED);
    fail_list(&self->finds, PGW_ERR_CLOSED);
    fail_list(&self->incs, PGW_ERR_CLOSED);
    fail_list(&self->ready, PGW_ERR_CLOSED);
    fail_list(&self->parked, PGW_ERR_CLOSED);
    fail_list(&self->queue, PGW_ERR_CLOSED);
    /* their operations in flight fail with PGW_ERR_CLOSED */
    for (unsigned i = 0; i < self->n_conns; i++)
        pgw_pgconn_free(self->conns[i]);
    pgw_pgconn_free(self->listen);
    if (self->kick)
        event_free(self->kick);
    pgw_pgarray_buf_release(&self->enc);
    for (unsigned i = 0; i < STORE_MAX_FRAGS; i++)
        pgw_pgarray_buf_release(&self->arr[i]);
    free(self->ev_scratch);
    pgw_icache_free(self->cache);
    free(self->conns);
    free(self->owner);
    free(self);
}

void pgw_store_get_cache_stats(const struct pgw_store *self,
                               struct pgw_store_cache_stats *ret_stats)
{
    struct pgw_icache_stats st;

    *ret_stats = (struct pgw_store_cache_stats){0};
    if (!self || !self->cache)
        return;
    pgw_icache_get_stats(self->cache, &st);
    ret_stats->live = self->cache_live;
    ret_stats->hits = st.hits;
    ret_stats->misses = st.misses;
    ret_stats->notifications = self->notifications;
    ret_stats->entries = st.entries;
    ret_stats->bytes = st.bytes;
}

bool pgw_store_is_up(const struct pgw_store *self)
{
    return self && self->n_up > 0;
}

unsigned pgw_store_conns_up(const struct pgw_store *self)
{
    return self ? self->n_up : 0;
}

const char *pgw_store_last_error(const struct pgw_store *self)
{
    return self ? self->last_error : "";
}

static int may_queue(struct pgw_store *self)
{
    if (self->closing)
        return PGW_ERR_CLOSED;
    if (self->n_queued >= self->max_queued)
        return PGW_ERR_BUSY;
    return 0;
}

static void enqueue(struct pgw_store *self, struct op_list *l, struct op *op)
{
    list_push(l, op);
    self->n_queued++;
    schedule_kick(self);
}

int pgw_store_insert_event(struct pgw_store *self,
                           const struct pgw_store_new_event *ev,
                           pgw_store_insert_cb cb, void *arg)
{
    struct pgw_pgarray_buf *b;
    uint32_t frag[12];
    struct op *op;
    int rc;

    if (!self || !ev || !cb || !ev->app_id || !ev->conv_id || !ev->body ||
        !str_ok(ev->app_id) || !str_ok(ev->conv_id) || !str_ok(ev->msg_id) ||
        !text_ok(ev->body, ev->body_len))
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    b = &self->enc;
    pgw_pgarray_reset(b);
#define FRAG(i, code)                                                          \
    do {                                                                       \
        frag[2 * (i)] = (uint32_t)b->len;                                      \
        code;                                                                  \
        frag[2 * (i) + 1] = (uint32_t)(b->len - frag[2 * (i)]);                \
    } while (0)
    FRAG(0, pgw_pgarray_put_text(b, ev->app_id, strlen(ev->app_id)));
    FRAG(1, pgw_pgarray_put_text(b, ev->conv_id, strlen(ev->conv_id)));
    FRAG(2, pgw_pgarray_put_text(b, ev->msg_id,
                                 ev->msg_id ? strlen(ev->msg_id) : 0));
    FRAG(3, pgw_pgarray_put_text(b, ev->body, ev->body_len));
    FRAG(4, pgw_pgarray_put_int(b, ev->event_ts_ms));
    FRAG(5,
         pgw_pgarray_put_int(b, ev->lease ? (long long)(ev->lease_ms > INT32_MAX
                                                            ? INT32_MAX
                                                            : ev->lease_ms)
                                          : -1));
    op = op_from_enc(self, OP_INSERT, frag, 6);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.insert = cb;
    op->arg = arg;
    enqueue(self, &self->inserts, op);
    return 0;
}

int pgw_store_count_backlog(struct pgw_store *self, pgw_store_count_cb cb,
                            void *arg)
{
    struct op *op;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    op = op_with_params(OP_COUNT, NULL, 0);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.count = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

/* Queues an operation taking (owner, |a|, |b|) as its parameters. */
static int queue_owner_op(struct pgw_store *self, enum op_kind kind,
                          const char *a, long long b, struct op **ret_op)
{
    char num[24];
    const char *params[3] = {self->owner, a, num};
    struct op *op;
    int rc = may_queue(self);

    if (rc < 0)
        return rc;
    snprintf(num, sizeof(num), "%lld", b);
    op = op_with_params(kind, params, 3);
    if (!op)
        return PGW_ERR_NOMEM;
    *ret_op = op;
    return 0;
}

static int claim(struct pgw_store *self, enum op_kind kind, unsigned max,
                 unsigned lease_ms, struct op **ret_op)
{
    char num[24];

    if (max == 0 || max > 100000 || lease_ms == 0 || lease_ms > INT32_MAX)
        return PGW_ERR_INVAL;
    snprintf(num, sizeof(num), "%u", max);
    return queue_owner_op(self, kind, num, lease_ms, ret_op);
}

int pgw_store_claim_events(struct pgw_store *self, unsigned max,
                           unsigned lease_ms, pgw_store_events_cb cb, void *arg)
{
    struct op *op = NULL;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    rc = claim(self, OP_CLAIM_EVENTS, max, lease_ms, &op);
    if (rc < 0)
        return rc;
    op->cb.events = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

int pgw_store_claim_retries(struct pgw_store *self, unsigned max,
                            unsigned lease_ms, pgw_store_retries_cb cb,
                            void *arg)
{
    struct op *op = NULL;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    rc = claim(self, OP_CLAIM_RETRIES, max, lease_ms, &op);
    if (rc < 0)
        return rc;
    op->cb.retries = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

/* |ids| as an int8[] literal in self->enc ("{1,2}"). */
static int enc_int8_array(struct pgw_store *self, const int64_t *ids, size_t n)
{
    struct pgw_pgarray_buf *b = &self->enc;

    pgw_pgarray_reset(b);
    pgw_pgarray_put_raw(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 1);
        pgw_pgarray_put_int(b, ids[i]);
    }
    pgw_pgarray_put_raw(b, "}", 1);
    return b->oom ? PGW_ERR_NOMEM : 0;
}

int pgw_store_renew_leases(struct pgw_store *self, const int64_t *ids, size_t n,
                           unsigned lease_ms, pgw_store_done_cb cb, void *arg)
{
    struct op *op = NULL;
    int rc;

    if (!self || !cb || (n && !ids) || lease_ms == 0 || lease_ms > INT32_MAX)
        return PGW_ERR_INVAL;
    rc = enc_int8_array(self, ids, n);
    if (rc < 0)
        return rc;
    rc = queue_owner_op(self, OP_RENEW, self->enc.p, lease_ms, &op);
    if (rc < 0)
        return rc;
    op->cb.done = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

int pgw_store_release_leases(struct pgw_store *self, pgw_store_done_cb cb,
                             void *arg)
{
    struct op *op;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    op = op_with_params(OP_RELEASE, (const char *const[]){self->owner}, 1);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.done = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

static int cmp_dev_ptr(const void *a, const void *b)
{
    const struct pgw_installation *x =
        *(const struct pgw_installation *const *)a;
    const struct pgw_installation *y =
        *(const struct pgw_installation *const *)b;

    return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * A lookup from the cache: STORE_NOT_CACHED when a name is not cached
 * (Postgres it is); else 0, queued as an OP_CACHED operation holding a
 * copy of its rows, on |incs| when iOS rows need their increments, else
 * on |ready|; or PGW_ERR_NOMEM.
 */
static int find_cached(struct pgw_store *self, const char *app_id,
                       const char *const *recipients, size_t n,
                       int64_t event_id, unsigned flags,
                       pgw_store_installations_cb cb, void *arg)
{
    const struct pgw_installation **all = NULL, *dev;
    size_t n_all = 0, cap = 0, n_u = 0, size, n_ios = 0, n_dev;
    int64_t now = mono_ms();
    struct op *op;
    const char **chan;
    char *cur;

    for (size_t i = 0; i < n; i++) {
        if (!pgw_icache_get(self->cache, app_id, recipients[i], now, &dev,
                            &n_dev)) {
            free(all);
            return STORE_NOT_CACHED;
        }
        if (n_all + n_dev > cap) {
            size_t nc = cap ? cap * 2 : 64;
            const struct pgw_installation **na;

            while (nc < n_all + n_dev)
                nc *= 2;
            na = realloc(all, nc * sizeof(*all));
            if (!na) {
                free(all);
                return PGW_ERR_NOMEM;
            }
            all = na;
            cap = nc;
        }
        for (size_t k = 0; k < n_dev; k++)
            all[n_all++] = &dev[k];
    }
    /* one row per installation, in id order, as from Postgres */
    qsort(all, n_all, sizeof(*all), cmp_dev_ptr);
    size = 0;
    for (size_t i = 0; i < n_all; i++) {
        if (n_u && all[n_u - 1]->id == all[i]->id)
            continue;
        all[n_u++] = all[i];
        size += sizeof(struct pgw_installation) + pgw_icache_dev_size(all[i]);
        n_ios += all[i]->platform == PGW_PLATFORM_IOS;
    }
    op = calloc(1, sizeof(*op) + size);
    if (!op) {
        free(all);
        return PGW_ERR_NOMEM;
    }
    op->kind = OP_CACHED;
    op->inst = (struct pgw_installation *)(void *)op->data;
    op->n_inst = n_u;
    chan = (const char **)(void *)(op->inst + n_u);
    for (size_t i = 0; i < n_u; i++)
        chan += all[i]->n_channels;
    cur = (char *)chan;
    chan = (const char **)(void *)(op->inst + n_u);
    for (size_t i = 0; i < n_u; i++)
        pgw_icache_dev_copy(&op->inst[i], all[i], &chan, &cur);
    free(all);
    op->flag = (flags & PGW_STORE_FIND_INCREMENT) && n_ios > 0;
    op->solo = (flags & PGW_STORE_FIND_ALONE) != 0;
    op->event_id = event_id;
    op->n_names = op->flag ? n_ios : 0;
    op->cb.inst = cb;
    op->arg = arg;
    enqueue(self, op->flag ? &self->incs : &self->ready, op);
    return 0;
}

/*
 * True when a lookup queued or in flight will cache the names of |op|
 * (same app, same number of names, same first name: the parts of a group's
 * events, the events of one chat peer). A fresh process sent the lookups
 * of a group's first events to Postgres until the first of them came
 * back: 57 of 800 lookup parts in a 200-event fan-out run.
 */
static bool fill_pending(const struct pgw_store *self, const struct op *op)
{
    const char *app = op->data + op->names_off;
    const char *first = app + strlen(app) + 1;

    for (const struct op *f = self->filling; f; f = f->fill_next) {
        const char *fa = f->data + f->names_off;

        if (f->n_names == op->n_names && strcmp(fa, app) == 0 &&
            strcmp(fa + strlen(fa) + 1, first) == 0)
            return true;
    }
    return false;
}

/* find_cached() for a parked lookup, with its app and names. */
static int find_cached_op(struct pgw_store *self, const struct op *op)
{
    const char *app = op->data + op->names_off, *cur;
    const char **names =
        malloc((op->n_names ? op->n_names : 1) * sizeof(*names));
    unsigned flags = (op->flag ? PGW_STORE_FIND_INCREMENT : 0) |
                     (op->solo ? PGW_STORE_FIND_ALONE : 0);
    int rc;

    if (!names)
        return PGW_ERR_NOMEM;
    cur = app + strlen(app) + 1;
    for (size_t i = 0; i < op->n_names; i++, cur += strlen(cur) + 1)
        names[i] = cur;
    rc = find_cached(self, app, names, op->n_names, op->event_id, flags,
                     op->cb.inst, op->arg);
    free(names);
    return rc;
}

/*
 * The parked lookups after a fill ended (or the cache went off): answered
 * from the cache now, parked again while another fill of their names is
 * on its way, else sent to Postgres (filling the cache themselves).
 */
static void recheck_parked(struct pgw_store *self)
{
    struct op_list l = self->parked;
    struct op *op;

    self->parked = (struct op_list){0};
    self->recheck_parked = false;
    while ((op = list_pop(&l))) {
        int rc = self->cache_live ? find_cached_op(self, op) : STORE_NOT_CACHED;

        if (rc != STORE_NOT_CACHED) {
            /* answered (a new operation is queued) or failed */
            self->n_queued--;
            if (rc < 0)
                op_fail(op, rc);
            else
                op_free(op);
            continue;
        }
        if (self->cache_live && fill_pending(self, op)) {
            list_push(&self->parked, op);
            continue;
        }
        op->fill = self->cache_live;
        op->fill_gen = self->cache_gen;
        if (op->fill)
            filling_add(self, op);
        list_push(&self->finds, op);
    }
}

int pgw_store_find_installations(struct pgw_store *self, const char *app_id,
                                 const char *const *recipients, size_t n,
                                 const char *apns_team_id, int64_t event_id,
                                 unsigned flags, pgw_store_installations_cb cb,
                                 void *arg)
{
    struct pgw_pgarray_buf *b;
    uint32_t frag[6];
    struct op *op;
    bool fill;
    size_t names_off = 0;
    int rc;

    if (!self || !cb || !app_id || (n && !recipients) || !str_ok(app_id) ||
        !str_ok(apns_team_id) || event_id < 0)
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!recipients[i] || !str_ok(recipients[i]))
            return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    /* With a team filter the rows are not all of the names' devices. */
    fill = self->cache_live && !apns_team_id && n > 0;
    if (fill) {
        rc = find_cached(self, app_id, recipients, n, event_id, flags, cb, arg);
        if (rc != STORE_NOT_CACHED)
            return rc;
    }
    /* fragments: the names (array elements), the app, the team */
    b = &self->enc;
    pgw_pgarray_reset(b);
    frag[0] = 0;
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 0);
        pgw_pgarray_put_text(b, recipients[i], strlen(recipients[i]));
    }
    frag[1] = (uint32_t)b->len;
    frag[2] = (uint32_t)b->len;
    pgw_pgarray_put_text(b, app_id, strlen(app_id));
    frag[3] = (uint32_t)(b->len - frag[2]);
    frag[4] = (uint32_t)b->len;
    pgw_pgarray_put_str(b, apns_team_id);
    frag[5] = (uint32_t)(b->len - frag[4]);
    if (fill) {
        /* after the fragments: the app and the names as they are */
        names_off = b->len;
        pgw_pgarray_put_raw(b, app_id, strlen(app_id) + 1);
        for (size_t i = 0; i < n; i++)
            pgw_pgarray_put_raw(b, recipients[i], strlen(recipients[i]) + 1);
    }
    op = op_from_enc(self, OP_FIND, frag, 3);
    if (!op)
        return PGW_ERR_NOMEM;
    op->fill = fill;
    op->fill_gen = self->cache_gen;
    op->names_off = names_off;
    op->n_names = n;
    op->flag = (flags & PGW_STORE_FIND_INCREMENT) != 0;
    op->solo = (flags & PGW_STORE_FIND_ALONE) != 0;
    op->event_id = event_id;
    op->cb.inst = cb;
    op->arg = arg;
    if (fill && fill_pending(self, op)) {
        enqueue(self, &self->parked, op);
        return 0;
    }
    if (fill)
        filling_add(self, op);
    enqueue(self, &self->finds, op);
    return 0;
}

int pgw_store_undo_badges(struct pgw_store *self, const int64_t *ids, size_t n,
                          pgw_store_done_cb cb, void *arg)
{
    struct op *op;
    int rc;

    if (!self || !cb || !n || !ids)
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    rc = enc_int8_array(self, ids, n);
    if (rc < 0)
        return rc;
    op = op_with_params(OP_UNDO_BADGES, (const char *const[]){self->enc.p}, 1);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.done = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

static const char *outcome_name(enum pgw_store_failure_kind kind)
{
    switch (kind) {
    case PGW_STORE_FAIL_INVALIDATED:
        return "invalidated";
    case PGW_STORE_FAIL_FAILED:
        return "failed";
    case PGW_STORE_FAIL_EXPIRED:
        return "expired";
    }
    return NULL;
}

int pgw_store_finish_event(struct pgw_store *self,
                           const struct pgw_store_event_result *res,
                           pgw_store_done_cb cb, void *arg)
{
    const struct pgw_store_failure *fl;
    const struct pgw_store_retry_new *rt;
    uint32_t frag[2 * STORE_MAX_FRAGS];
    unsigned counts[3] = {0, 0, 0}; /* invalidated, failed, expired */
    unsigned n_inv = 0, f = 0;
    struct pgw_pgarray_buf *b;
    struct op *op;
    int rc;

    if (!self || !res || !cb || (res->n_failures && !res->failures) ||
        (res->n_retries && !res->retries) || !str_ok(res->result))
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < res->n_failures; i++) {
        fl = &res->failures[i];
        if (!outcome_name(fl->kind) || !fl->provider || !str_ok(fl->provider) ||
            !str_ok(fl->reason))
            return PGW_ERR_INVAL;
        counts[fl->kind]++;
        n_inv += fl->kind == PGW_STORE_FAIL_INVALIDATED;
    }
    for (size_t i = 0; i < res->n_retries; i++) {
        rt = &res->retries[i];
        if (!rt->provider || !rt->request || !str_ok(rt->provider) ||
            !str_ok(rt->request) || !str_ok(rt->last_reason))
            return PGW_ERR_INVAL;
    }
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    b = &self->enc;
    pgw_pgarray_reset(b);
    /* Column by column: fragment |f| holds this event's elements of the
     * batch's array parameter |f|. */
#define COLUMN(n, elem)                                                        \
    do {                                                                       \
        size_t start_ = b->len;                                                \
        for (size_t i = 0; i < (n); i++) {                                     \
            pgw_pgarray_put_sep(b, start_);                                    \
            elem;                                                              \
        }                                                                      \
        frag[2 * f] = (uint32_t)start_;                                        \
        frag[2 * f + 1] = (uint32_t)(b->len - start_);                         \
        f++;                                                                   \
    } while (0)
    fl = res->failures;
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, fl[i].installation_id));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, fl[i].provider));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, outcome_name(fl[i].kind)));
    COLUMN(res->n_failures, pgw_pgarray_put_int(b, fl[i].status));
    COLUMN(res->n_failures, pgw_pgarray_put_str(b, fl[i].reason));
    /* invalidations: only the INVALIDATED failures */
    {
        size_t s0 = b->len, s1, s2;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s0);
                pgw_pgarray_put_int(b, fl[i].installation_id);
            }
        s1 = b->len;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s1);
                pgw_pgarray_put_str(b, fl[i].reason);
            }
        s2 = b->len;
        for (size_t i = 0; i < res->n_failures; i++)
            if (fl[i].kind == PGW_STORE_FAIL_INVALIDATED) {
                pgw_pgarray_put_sep(b, s2);
                if (fl[i].invalid_since_ms)
                    pgw_pgarray_put_int(b, fl[i].invalid_since_ms);
                else
                    pgw_pgarray_put_raw(b, "NULL", 4);
            }
        frag[2 * f] = (uint32_t)s0;
        frag[2 * f + 1] = (uint32_t)(s1 - s0);
        frag[2 * f + 2] = (uint32_t)s1;
        frag[2 * f + 3] = (uint32_t)(s2 - s1);
        frag[2 * f + 4] = (uint32_t)s2;
        frag[2 * f + 5] = (uint32_t)(b->len - s2);
        f += 3;
    }
    rt = res->retries;
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].installation_id));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].provider));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].request));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].attempts));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].not_before_ms));
    COLUMN(res->n_retries, pgw_pgarray_put_int(b, rt[i].expires_at_ms));
    COLUMN(res->n_retries, pgw_pgarray_put_str(b, rt[i].last_reason));
    COLUMN(1, pgw_pgarray_put_int(b, res->event_id));
    COLUMN(1, pgw_pgarray_put_str(b, res->result));
    COLUMN(1, pgw_pgarray_put_int(b, res->pushes_total));
    COLUMN(1, pgw_pgarray_put_int(b, res->pushes_delivered));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_INVALIDATED]));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_FAILED]));
    COLUMN(1, pgw_pgarray_put_int(b, counts[PGW_STORE_FAIL_EXPIRED]));
    COLUMN(1, pgw_pgarray_put_int(b, (long long)res->n_retries));
#undef COLUMN
    op = op_from_enc(self, OP_FINISH, frag, f);
    if (!op)
        return PGW_ERR_NOMEM;
    op->n_fail = (unsigned)res->n_failures;
    op->n_inv = n_inv;
    op->n_retry = (unsigned)res->n_retries;
    op->cb.done = cb;
    op->arg = arg;
    enqueue(self, &self->finishes, op);
    return 0;
}

int pgw_store_finish_retry(struct pgw_store *self,
                           const struct pgw_store_retry_result *res,
                           pgw_store_done_cb cb, void *arg)
{
    char id[24], status[24], since[24], nb[24], att[24], ev[24];
    const struct pgw_store_failure *fl;
    const char *params[10];
    struct op *op;
    int rc;

    if (!self || !res || !cb)
        return PGW_ERR_INVAL;
    fl = res->delivered ? NULL : res->failure;
    if (fl && (!outcome_name(fl->kind) || !str_ok(fl->reason)))
        return PGW_ERR_INVAL;
    if (!str_ok(res->last_reason))
        return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    snprintf(id, sizeof(id), "%lld", (long long)res->retry_id);
    snprintf(status, sizeof(status), "%d", fl ? fl->status : 0);
    snprintf(since, sizeof(since), "%lld",
             fl ? (long long)fl->invalid_since_ms : 0LL);
    snprintf(nb, sizeof(nb), "%lld", (long long)res->not_before_ms);
    snprintf(att, sizeof(att), "%d", res->attempts);
    snprintf(ev, sizeof(ev), "%lld", (long long)res->event_id);
    params[0] = id;
    params[1] = res->delivered ? "delivered" : fl ? "failure" : "again";
    params[2] = fl ? outcome_name(fl->kind) : "";
    params[3] = status;
    params[4] = fl ? fl->reason : NULL;
    params[5] = fl && fl->invalid_since_ms ? since : NULL;
    params[6] = nb;
    params[7] = att;
    params[8] = res->last_reason;
    params[9] = ev;
    op = op_with_params(OP_FINISH_RETRY, params, 10);
    if (!op)
        return PGW_ERR_NOMEM;
    op->cb.done = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}

int pgw_store_exec(struct pgw_store *self, const char *sql,
                   const char *const *params, unsigned n,
                   pgw_store_result_cb cb, void *arg)
{
    struct op *op;
    int rc;

    if (!self || !sql || !cb || n > STORE_MAX_PARAMS)
        return PGW_ERR_INVAL;
    for (unsigned i = 0; i < n; i++)
        if (params[i] && !str_ok(params[i]))
            return PGW_ERR_INVAL;
    rc = may_queue(self);
    if (rc < 0)
        return rc;
    op = op_with_params(OP_EXEC, params, n);
    if (!op)
        return PGW_ERR_NOMEM;
    op->sql = sql;
    op->cb.exec = cb;
    op->arg = arg;
    enqueue(self, &self->queue, op);
    return 0;
}
