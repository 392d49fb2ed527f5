/*
 * The SQL of the asynchronous store: every statement's text (stmts[], in
 * the order of enum stmt_id, each with why it is written so), the setup
 * that prepares them on each pool connection, and the encoding of an
 * operation or a batch into those statements' parameters (store_sql_send
 * and its send_* helpers). Parameters are text: array literals built by
 * pgarray.h from the fragments each operation encoded when queued.
 */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum stmt_id {
    ST_INSERT,
    ST_INSERT_NEW,
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
    ST_FIND_ONE_SET,
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
    ST_FIN_TXN,
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
 * setup, and GIN merges the streams of one probe's keys one item at a
 * time: a few names per probe beat both one per name and all in one
 * (docs/BENCHMARKS.md). The rows keep their columns, so the ones not
 * updated are returned from here, not read again by primary key.
 * OFFSET 0: see ST_FIND. $3 is {team, default team}. */
#define ONE_APP "(($1::text[])[1])"
#define ONE_TEAM "(($3::text[])[1])"
#define ONE_DFLT "(($3::text[])[2])"
#define INST_MATCH_ONE                                                         \
    "c AS (SELECT array_agg(name) AS names FROM unnest($2::text[]) WITH "      \
    "ORDINALITY AS r(name, n) GROUP BY (n - 1) / 8), "                         \
    "m AS MATERIALIZED (SELECT DISTINCT ON (i.id) i.id, i.installation_id, "   \
    "i.device_type, i.device_token, i.channels, i.badge, i.apns_topic, "       \
    "i.apns_team_id FROM c CROSS JOIN LATERAL (SELECT " INST_COLS ", app_id, " \
    "valid FROM installations WHERE channels && c.names OFFSET 0) i WHERE "    \
    "i.app_id = " ONE_APP " AND i.valid AND " STORE_SQL_TEAM_MATCH(            \
        "i", ONE_TEAM, ONE_DFLT) " ORDER BY i.id)"
/* ST_FIND's team rule: its callers' teams and default teams. */
#define FIND_TEAM STORE_SQL_TEAM_MATCH("i", "r.team", "r.dflt")
/* A lookup of one caller that writes the badges of its iOS rows (|set|:
 * the SET clause), and returns them with the others: see
 * ST_FIND_ONE_INC. */
#define FIND_ONE_WRITE(set)                                                    \
    "WITH " INST_MATCH_ONE ", u AS (UPDATE installations i SET " set           \
    " FROM (SELECT id FROM m WHERE device_type = 'ios' ORDER BY id) l "        \
    "WHERE i.id = l.id AND i.valid RETURNING i.id, i.installation_id, "        \
    "i.device_type, i.device_token, i.channels, i.badge, i.apns_topic, "       \
    "i.apns_team_id) SELECT 1::int8, x.* FROM (SELECT * FROM u UNION ALL "     \
    "SELECT " INST_COLS " FROM m WHERE device_type <> 'ios') x ORDER BY 2"

/* The intake's insert of a batch, |conflict| its ON CONFLICT clause (or
 * ""), |result| what follows the insert (see INSERT_RETURNING): rows
 * (ord, id) for the rows stored. */
#define INSERT_EVENTS(conflict, result)                                        \
    "WITH input AS (SELECT nextval('events_id_seq') AS id, t.* "               \
    "FROM unnest($1::text[], $2::text[], $3::text[], "                         \
    "$4::text[], $5::int8[], $6::int4[]) WITH ORDINALITY "                     \
    "AS t(app_id, conv_id, msg_id, body, ts, lease_ms, ord)), "                \
    "ins AS (INSERT INTO events (id, app_id, conv_id, msg_id, "                \
    "body, event_ts_ms, lease_owner, lease_until, attempts) "                  \
    "SELECT id, app_id, conv_id, msg_id, body, ts, "                           \
    "CASE WHEN lease_ms >= 0 THEN $7::text END, "                              \
    "CASE WHEN lease_ms >= 0 THEN " LEASE_FOR(                                 \
        "lease_ms") " ELSE '-infinity' END, "                                  \
                    "CASE WHEN lease_ms >= 0 THEN 1 ELSE 0 END "               \
                    "FROM input ORDER BY app_id, conv_id, msg_id, "            \
                    "ord " conflict result
/* With ON CONFLICT some rows may not be stored: the ids the insert
 * returns say which. */
#define INSERT_RETURNING                                                       \
    "RETURNING id) SELECT input.ord, input.id FROM input "                     \
    "JOIN ins ON ins.id = input.id"
/* Without it the statement stores every row or fails: each input row is
 * a stored one, and the insert, run to completion whether or not its
 * rows are read, returns none to be matched. */
#define INSERT_ALL ") SELECT ord, id FROM input"

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
    [ST_INSERT] = {"pgw_insert",
                   INSERT_EVENTS("ON CONFLICT (app_id, conv_id, msg_id) "
                                 "WHERE msg_id IS NOT NULL DO NOTHING ",
                                 INSERT_RETURNING)},
    /* The same without ON CONFLICT, sent first (store.c, redo_insert):
     * a repeated msgId fails the batch on events_idempotency, and it goes
     * again as ST_INSERT. ON CONFLICT's speculative insertion (an arbiter
     * probe, then the insertion and its confirmation, per row) made the
     * insert about half again as costly for the duplicates a broker
     * rarely sends (docs/BENCHMARKS.md). Each such batch leaves one
     * "duplicate key" error in Postgres's log. */
    [ST_INSERT_NEW] = {"pgw_insert_new", INSERT_EVENTS("", INSERT_ALL)},
    /* Runs only for the rows an insert batch skipped (an event with a
     * msgId seen before), after that batch's commit: the conflicting rows
     * were committed then (ON CONFLICT waits for their transactions), so
     * this later statement sees them. Not run for every batch, in its
     * transaction: that is an index probe per row to find duplicates
     * that are rare. */
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
                               "FROM (SELECT id, lease_owner FROM events "
                               "WHERE state = 'pending' AND lease_until < "
                               "now() ORDER BY lease_until, id LIMIT "
                               "$2::int4 FOR UPDATE SKIP LOCKED) c WHERE "
                               "e.id = c.id RETURNING e.id, e.app_id, "
                               "e.body, e.attempts, c.lease_owner IS NOT "
                               "DISTINCT FROM $1::text"},
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
     * (NULL: none), increment flag $5 and the app's default team $6 (the
     * team of iOS rows that name none). The rows come back ordered by
     * caller, then id, with the caller first. A lookup that sets badges
     * is never merged (ST_FIND_ONE_SET).
     * - m: the matches, one row per (caller, installation): one GIN
     *   lookup per recipient (channels @> ARRAY[name]; OFFSET 0 keeps
     *   the planner from joining the apps first: with many callers it
     *   chose a hash join on app_id, a scan of the table compared with
     *   every name). "channels && $2" with a long list made the planner
     *   scan the table and compare every row's channels with every
     *   recipient.
     * - Their increments are for several events: badge_event_id (see
     *   ST_FIND_ONE_INC) is cleared.
     * - Only iOS rows are updated: an Android row would get a new tuple
     *   version for nothing on every push. A device matched by several
     *   incrementing callers is incremented once per caller, in one
     *   update (by the number of callers in n.ks), and the r-th of them
     *   (in caller order) gets old badge + r: distinct consecutive
     *   values. No join between the CTEs' results: the planner, which
     *   cannot estimate their sizes, joined them in nested loops.
     * - The update's row source is sorted by id and ST_BADGE_TXN runs
     *   first, so the rows are locked in id order whatever the table's
     *   size. "valid" is checked again on the locked row version. */
    [ST_FIND] =
        {"pgw_find",
         "WITH m AS MATERIALIZED (SELECT DISTINCT r.k, r.inc, i.id, "
         "i.device_type FROM unnest($1::int8[], $2::text[], $3::text[], "
         "$4::text[], $5::bool[], $6::text[]) AS r(k, name, app, team, inc, "
         "dflt) CROSS JOIN LATERAL (SELECT id, app_id, device_type, "
         "apns_team_id FROM installations WHERE channels @> ARRAY[r.name] "
         "AND valid OFFSET 0) i WHERE i.app_id = r.app AND " FIND_TEAM "), "
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
    /* A batch of one lookup (a fan-out event: many names) costs less as
     * the plain statements below than unpacked from ST_FIND's five
     * arrays. Same rows, same column 0 (the
     * caller, always 1), same lock order. $1 and $3 are one-element array
     * literals (the member's app and team fragments), $2 the names; for
     * ST_FIND_ONE_INC $4 the event (NULL: none): a device whose last
     * increment was for that event (another part of its lookup, or an
     * earlier attempt) keeps its badge, which both parts then return. */
    [ST_FIND_ONE] = {"pgw_find_one",
                     "WITH " INST_MATCH_ONE " SELECT 1::int8, " INST_COLS
                     " FROM m ORDER BY id"},
    [ST_FIND_ONE_INC] = {"pgw_find_one_inc",
                         FIND_ONE_WRITE(
                             "badge = i.badge + CASE WHEN i.badge_event_id = "
                             "$4::int8 THEN 0 ELSE 1 END, badge_event_id = "
                             "$4::int8")},
    /* A numeric badge $5 (never below 0) sets the badge of the lookup's
     * iOS rows, as Parse does, so a later increment continues from it.
     * Setting twice gives the same value: another part of the lookup, or
     * the event worked again, needs no "kept" case. The event $4 is
     * recorded (0006): an incrementing event worked again after it has
     * not made the last change and increments again, as it would after
     * any other event's increment. */
    [ST_FIND_ONE_SET] = {"pgw_find_one_set",
                         FIND_ONE_WRITE("badge = $5::int4, badge_event_id = "
                                        "$4::int8")},
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
                               "::int8, r.api_push_id"},
    /* $2 is 'delivered', 'failure' or 'again'. The events UPDATE locks the
     * event row, so two retries of one event ending at once serialise and
     * the second sees the first's deletion in ST_RETRY_DONE. */
    [ST_RETRY_FIN] =
        {"pgw_retry_fin",
         "WITH d AS (DELETE FROM push_retries WHERE id = $1::int8 AND "
         "$2::text <> 'again' RETURNING event_id, api_push_id, "
         "installation_id, app_id, provider), "
         "f AS (INSERT INTO push_failures (event_id, api_push_id, "
         "installation_id, app_id, provider, outcome, status, reason) SELECT "
         "event_id, api_push_id, installation_id, app_id, provider, $3::text, "
         "$4::int4, $5::text FROM d WHERE $2::text = 'failure'), "
         "inv AS (UPDATE installations SET valid = false, invalid_reason = "
         "$5::text, invalidated_at = now() WHERE $2::text = 'failure' AND "
         "$3::text = 'invalidated' AND id IN (SELECT installation_id FROM d) "
         "AND valid AND ($6::int8 IS NULL OR updated_at <= "
         "to_timestamp($6::int8 / 1000.0))), "
         "a AS (UPDATE push_retries SET not_before = to_timestamp($7::int8 / "
         "1000.0), attempts = $8::int4, last_reason = $9::text, lease_owner "
         "= NULL, lease_until = '-infinity' WHERE id = $1::int8 AND "
         "$2::text = 'again'), "
         /* The retry of an API push counts on the push (migration 0009). */
         "ap AS (UPDATE api_pushes SET successes = successes + ($2::text = "
         "'delivered')::int, errors = errors + ($2::text = 'failure' AND "
         "$3::text = 'failed')::int, invalid_tokens = invalid_tokens + "
         "($2::text = 'failure' AND $3::text = 'invalidated')::int, expired "
         "= expired + ($2::text = 'failure' AND $3::text = 'expired')::int "
         "WHERE id IN (SELECT api_push_id FROM d)) "
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
     *   over the sorted ids, cheaper than an explicit FOR UPDATE pass in
     *   id order (test_badge_lock_order_plan sees the order). Set before
     *   every execution of those statements,
     *   so their cached plans are always made under them.
     * - The commit does not wait for the WAL flush. Nothing is lost by
     *   that: the event's first pass ends later in a durable commit, whose
     *   flush covers this earlier WAL; a crash before it works the event
     *   again anyway, and a flush per event would bound the event rate.
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
    /* Sent first in a finish batch's transaction: its commit does not
     * wait for the WAL flush. The events were stored durably before
     * their 202; the finish records what became of them. Lost in a crash
     * of Postgres (at most wal_writer_delay's worth, usually less: the
     * next durable commit, an intake batch, flushes it too), the events
     * go back to pending under this process's lease and are worked again
     * after it: duplicates of pushes whose outcome was not yet recorded,
     * what DESIGN §11 allows for pushes in flight at a crash; no event is
     * lost. Without it, each finish batch held its pool connection for a
     * flush, and the intake batches queued behind it on that connection
     * waited for it too. Sequential scans, hash and merge joins are
     * ruled out as in ST_BADGE_TXN: the finish's statements join their
     * arrays to events by primary key, so each plan, the cached generic
     * one included, is a nested loop of index probes whatever the
     * table's statistics say, and they keep their prepared plans
     * (stmt_replan). Also the first statement of
     * pgw_store_exec_text_pinned()'s transactions. */
    [ST_FIN_TXN] = {"pgw_fin_txn",
                    "SELECT set_config('synchronous_commit', 'off', true), "
                    "set_config('enable_seqscan', 'off', true), "
                    "set_config('enable_hashjoin', 'off', true), "
                    "set_config('enable_mergejoin', 'off', true)"},
};

/* A pool connection's session: its settings, then every statement
 * prepared. */
const char *store_sql_setup(void *arg, PGconn *pg)
{
    (void)arg;
    /* Random reads cost what sequential ones do when the queue's pages
     * are cached, which they are: at the default 4.0 the planner chose a
     * sequential scan of events over a batch's primary-key probes. Only
     * lowered, only in this session. */
    if (!PQsendQueryParams(pg,
                           "SELECT set_config('random_page_cost', '1.1', "
                           "false) WHERE current_setting('random_page_cost')"
                           "::float8 > 1.1",
                           0, NULL, NULL, NULL, NULL, 0)) {
        return "could not set up the session: ";
    }
    /* No JIT: with a large installations table (a million devices of one
     * app) the generic plan of a lookup is priced over jit_above_cost,
     * and compiling it took 10 – 40 ms of every 1 ms lookup. None of
     * these statements runs long enough to gain from it. */
    if (!PQsendQueryParams(pg, "SELECT set_config('jit', 'off', false)", 0,
                           NULL, NULL, NULL, NULL, 0)) {
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

/* -- sending -- */

/*
 * The statements that read the queue tables are planned at every
 * execution, as unnamed statements; the others use their prepared, cached
 * plans. The queue tables grow from empty within seconds: a generic plan
 * made while events held a few rows (a fresh deployment, a truncated
 * table) scanned the whole table, or a whole index, per call and stayed
 * cached for the connection's life. A custom plan sees the table's
 * current size. The intake's inserts read no table (their rows come from
 * the arrays, the conflicts from the unique index), so they keep one
 * plan: parsed and planned again, they spent about a tenth of their time
 * there, once per batch of a few dozen events. The finish's statements
 * keep theirs too: their transaction rules out every plan but index
 * probes (ST_FIN_TXN).
 */
static const bool stmt_replan[ST__COUNT] = {
    [ST_DUPS] = true,
    [ST_CLAIM_EV] = true,
    [ST_RENEW_EV] = true,
    [ST_CLAIM_RT] = true,
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
    struct pgw_buf *b = &self->arr[f];

    pgw_buf_reset(b);
    pgw_buf_add(b, "{", 1);
    for (const struct op *m = batch->members; m; m = m->next) {
        uint32_t off = m->frag[2 * f], len = m->frag[2 * f + 1];

        if (len == 0)
            continue;
        if (b->len > 1)
            pgw_buf_add(b, ",", 1);
        pgw_buf_add(b, m->data + off, len);
    }
    pgw_buf_add(b, "}", 1);
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
    if (id == ST_INSERT || id == ST_INSERT_NEW || id == ST_FAIL_INS ||
        id == ST_RETRY_INS || id == ST_EVENT_FIN)
        params[n++] = self->owner;
    return send_stmt(self, c, id, n, params) < 0 ? PGW_ERR_DB : 0;
}

/* Appends fragment |f| of |m| |n| times as elements of |b|. */
static void sb_repeat_frag(struct pgw_buf *b, const struct op *m, unsigned f,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(b, 1);
        pgw_buf_add(b, m->data + m->frag[2 * f], m->frag[2 * f + 1]);
    }
}

/* A batch holding one lookup, as ST_FIND_ONE(_INC): the member's names,
 * its app and team fragments as one-element array literals, and (_INC)
 * its event (NULL: none; "= NULL" holds for no row). */
static int send_find_one(struct pgw_store *self, struct pgw_pgconn *c,
                         const struct op *op)
{
    const struct op *m = op->members;
    struct pgw_buf *app = &self->arr[2], *team = &self->arr[3];
    const char *params[5];
    char event[24], badge[16];
    enum stmt_id id = m->set_badge ? ST_FIND_ONE_SET
                      : m->flag    ? ST_FIND_ONE_INC
                                   : ST_FIND_ONE;

    pgw_buf_reset(app);
    pgw_buf_reset(team);
    pgw_buf_add(app, "{", 1);
    pgw_buf_add(app, m->data + m->frag[2], m->frag[3]);
    pgw_buf_add(app, "}", 1);
    pgw_buf_add(team, "{", 1);
    pgw_buf_add(team, m->data + m->frag[4], m->frag[5]);
    pgw_buf_add(team, ",", 1);
    pgw_buf_add(team, m->data + m->frag[6], m->frag[7]);
    pgw_buf_add(team, "}", 1);
    params[0] = app->p;
    params[1] = batch_array(self, op, 0); /* uses arr[0] */
    params[2] = team->p;
    snprintf(event, sizeof(event), "%lld", (long long)m->event_id);
    params[3] = m->event_id > 0 ? event : NULL;
    snprintf(badge, sizeof(badge), "%ld", (long)(m->badge < 0 ? 0 : m->badge));
    params[4] = badge;
    if (app->oom || team->oom || !params[1])
        return PGW_ERR_NOMEM;
    return send_stmt(self, c, id,
                     id == ST_FIND_ONE_SET ? 5
                     : m->flag             ? 4
                                           : 3,
                     params) < 0
               ? PGW_ERR_DB
               : 0;
}

/*
 * The lookups merged in |op| as ST_FIND's parameters, one element per
 * recipient name: each member's fragments are its names, its app, its
 * team and its app's default team; its number and increment flag are
 * written here. None sets badges (those are never merged).
 */
static int send_find_batch(struct pgw_store *self, struct pgw_pgconn *c,
                           const struct op *op)
{
    struct pgw_buf *k = &self->arr[1], *app = &self->arr[2],
                   *team = &self->arr[3], *inc = &self->arr[4],
                   *dflt = &self->arr[5];
    const char *params[6];
    long long idx = 0;

    pgw_buf_reset(k);
    pgw_buf_reset(app);
    pgw_buf_reset(team);
    pgw_buf_reset(inc);
    pgw_buf_reset(dflt);
    pgw_buf_add(k, "{", 1);
    pgw_buf_add(app, "{", 1);
    pgw_buf_add(team, "{", 1);
    pgw_buf_add(inc, "{", 1);
    pgw_buf_add(dflt, "{", 1);
    for (const struct op *m = op->members; m; m = m->next) {
        idx++;
        for (size_t i = 0; i < m->n_names; i++) {
            pgw_pgarray_put_sep(k, 1);
            pgw_pgarray_put_int(k, idx);
            pgw_pgarray_put_sep(inc, 1);
            pgw_buf_add(inc, m->flag ? "t" : "f", 1);
        }
        sb_repeat_frag(app, m, 1, m->n_names);
        sb_repeat_frag(team, m, 2, m->n_names);
        sb_repeat_frag(dflt, m, 3, m->n_names);
    }
    pgw_buf_add(k, "}", 1);
    pgw_buf_add(app, "}", 1);
    pgw_buf_add(team, "}", 1);
    pgw_buf_add(inc, "}", 1);
    pgw_buf_add(dflt, "}", 1);
    params[0] = k->p;
    params[1] = batch_array(self, op, 0); /* uses arr[0] */
    params[2] = app->p;
    params[3] = team->p;
    params[4] = inc->p;
    params[5] = dflt->p;
    if (k->oom || app->oom || team->oom || inc->oom || dflt->oom || !params[1])
        return PGW_ERR_NOMEM;
    return send_stmt(self, c, ST_FIND, 6, params) < 0 ? PGW_ERR_DB : 0;
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
    struct pgw_buf *id = &self->arr[0], *cnt = &self->arr[1],
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
    pgw_buf_reset(id);
    pgw_buf_reset(cnt);
    pgw_buf_reset(ev);
    pgw_buf_add(id, "{", 1);
    pgw_buf_add(cnt, "{", 1);
    pgw_buf_add(ev, "{", 1);
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
            pgw_buf_add(ev, "NULL", 4);
    }
    free(mem);
    pgw_buf_add(id, "}", 1);
    pgw_buf_add(cnt, "}", 1);
    pgw_buf_add(ev, "}", 1);
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
int store_sql_send(struct pgw_store *self, struct pgw_pgconn *c, struct op *op)
{
    int rc = 0;

    self->sent_in_op = 0;
    switch (op->kind) {
    case OP_BATCH_INSERT:
        rc = send_batch(self, c, op, 0, 6,
                        op->conflict ? ST_INSERT : ST_INSERT_NEW);
        break;
    case OP_BATCH_DUPS:
        rc = send_batch(self, c, op, 0, 3, ST_DUPS);
        break;
    case OP_BATCH_FINISH:
        rc = send_stmt(self, c, ST_FIN_TXN, 0, NULL);
        if (rc == 0 && op->n_fail)
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
        if (op->flag && send_stmt(self, c, ST_FIN_TXN, 0, NULL) < 0) {
            rc = -1;
            break;
        }
        self->sent_in_op++;
        rc = PQsendQueryParams(pgw_pgconn_pg(c), op->sql, (int)op->n_params,
                               NULL, op->xparam ? op->xparam : op->param, NULL,
                               NULL, 0)
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
