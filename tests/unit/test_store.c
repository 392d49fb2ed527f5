/* The asynchronous store against a real Postgres: intake with group
 * commit and idempotency, claims and leases, installations and badges,
 * outcomes, retries, and an unavailable or restarted database. */
#include "testutil.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store.h"
#include "store_broadcast.h"

struct fx {
    char *db;
    struct event_base *base;
    struct pgw_store *store;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *|counter| reaches |target| (or |pred| holds);
 * fails after |ms|. */
static void run_until(struct event_base *base, const int *counter, int target,
                      int ms)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + ms;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (*counter < target && tu_wall_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    assert_int_equal(*counter, target);
}

static int up_flag(struct pgw_store *store)
{
    return pgw_store_is_up(store) ? 1 : 0;
}

static void wait_up(struct event_base *base, struct pgw_store *store, int ms)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + ms;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (!up_flag(store) && tu_wall_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    if (!up_flag(store))
        print_error("store not up: %s\n", pgw_store_last_error(store));
    assert_true(pgw_store_is_up(store));
}

static struct pgw_store *open_store(struct event_base *base, const char *db,
                                    const char *owner, unsigned pool)
{
    struct pgw_store_options o = {
        .conninfo = db, .pool_size = pool, .owner = owner};
    struct pgw_store *s = NULL;

    assert_int_equal(pgw_store_new(base, &o, &s), 0);
    return s;
}

/* A store with an installation cache, once its LISTEN connection is up. */
static struct pgw_store *open_cached_store(struct event_base *base,
                                           const char *db)
{
    struct pgw_store_options o = {.conninfo = db,
                                  .pool_size = 2,
                                  .owner = "test-owner-c",
                                  .cache_bytes = 1 << 20};
    struct pgw_store *s = NULL;
    struct pgw_store_cache_stats st = {0};
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + 10000;

    assert_int_equal(pgw_store_new(base, &o, &s), 0);
    event_add(tick, &tv);
    while (!(st.live && pgw_store_is_up(s)) && tu_wall_ms() < deadline) {
        event_base_loop(base, EVLOOP_ONCE);
        pgw_store_get_cache_stats(s, &st);
    }
    event_free(tick);
    assert_true(st.live);
    assert_true(pgw_store_is_up(s));
    return s;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    f->db = tu_db_create_migrated("pgw_store");
    f->base = event_base_new();
    assert_non_null(f->base);
    f->store = open_store(f->base, f->db, "test-owner-a", 4);
    wait_up(f->base, f->store, 10000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    pgw_store_free(f->store);
    event_base_free(f->base);
    tu_db_drop(f->db);
    free(f->db);
    free(f);
    return 0;
}

/* Asserts that |sql| yields |want| as its first value. */
static void expect_sql(const char *db, const char *sql, const char *want)
{
    char *got = tu_db_query(db, sql);

    assert_non_null(got);
    if (strcmp(got, want) != 0)
        print_error("'%s' gave '%s', want '%s'\n", sql, got, want);
    assert_string_equal(got, want);
    free(got);
}

static void exec_sql(const char *db, const char *sql)
{
    char *got = tu_db_query(db, sql);

    assert_non_null(got);
    free(got);
}

/* -- intake -- */

struct ins_res {
    int *done;
    bool *in_call;
    int err;
    int64_t id;
    bool duplicate;
    int calls;
};

static void on_insert(void *arg, int err, int64_t id, bool duplicate)
{
    struct ins_res *r = arg;

    assert_false(*r->in_call);
    r->err = err;
    r->id = id;
    r->duplicate = duplicate;
    r->calls++;
    (*r->done)++;
}

static void insert(struct fx *f, struct ins_res *r, const char *conv,
                   const char *msg, bool lease)
{
    struct pgw_store_new_event ev = {
        .app_id = "demo",
        .conv_id = conv,
        .msg_id = msg,
        .body = "{\"convId\":\"c\",\"x\":\"a\\\"b\\\\c,{}\"}",
        .event_ts_ms = 1700000000000LL,
        .lease = lease,
        .lease_ms = 60000,
    };
    ev.body_len = strlen(ev.body);
    *r->in_call = true;
    assert_int_equal(pgw_store_insert_event(f->store, &ev, on_insert, r), 0);
    *r->in_call = false;
}

static void test_insert_duplicates(void **state)
{
    struct fx *f = *state;
    int done = 0;
    bool in_call = false;
    struct ins_res r[6];
    char sql[256];

    for (size_t i = 0; i < PGW_ARRAY_SIZE(r); i++)
        r[i] = (struct ins_res){.done = &done, .in_call = &in_call};
    /* one loop iteration: m1 twice (the second is a duplicate of the
     * first), and two events without a key (never duplicates) */
    insert(f, &r[0], "c1", "m1", true);
    insert(f, &r[1], "c1", "m1", true);
    insert(f, &r[2], "c1", NULL, false);
    insert(f, &r[3], "c1", NULL, false);
    run_until(f->base, &done, 4, 10000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].calls, 1);
        assert_true(r[i].id > 0);
    }
    assert_false(r[0].duplicate);
    assert_true(r[1].duplicate);
    assert_int_equal(r[1].id, r[0].id);
    assert_false(r[2].duplicate);
    assert_false(r[3].duplicate);
    assert_true(r[2].id != r[3].id && r[2].id != r[0].id);

    /* a later batch: m1 again is a duplicate; the same msgId in another
     * conversation is not */
    insert(f, &r[4], "c1", "m1", true);
    insert(f, &r[5], "c2", "m1", true);
    run_until(f->base, &done, 6, 10000);
    assert_int_equal(r[4].err, 0);
    assert_true(r[4].duplicate);
    assert_int_equal(r[4].id, r[0].id);
    assert_false(r[5].duplicate);

    expect_sql(f->db, "SELECT count(*) FROM events", "4");
    snprintf(sql, sizeof(sql),
             "SELECT format('%%s|%%s|%%s|%%s|%%s|%%s|%%s', app_id, conv_id, "
             "msg_id, body, event_ts_ms, state, attempts) FROM events "
             "WHERE id = %lld",
             (long long)r[0].id);
    expect_sql(f->db, sql,
               "demo|c1|m1|{\"convId\":\"c\",\"x\":\"a\\\"b\\\\c,{}\"}|"
               "1700000000000|pending|1");
    snprintf(sql, sizeof(sql),
             "SELECT lease_owner = 'test-owner-a' AND lease_until > now() + "
             "interval '50 seconds' FROM events WHERE id = %lld",
             (long long)r[0].id);
    expect_sql(f->db, sql, "t");
    snprintf(sql, sizeof(sql),
             "SELECT format('%%s|%%s|%%s', lease_owner IS NULL, "
             "lease_until = '-infinity', attempts) FROM events WHERE id = "
             "%lld",
             (long long)r[2].id);
    expect_sql(f->db, sql, "t|t|0");
}

/* A batch holding the key of an event stored before it: the batch is
 * sent again with ON CONFLICT (store.c, redo_insert); its new events are
 * stored once, the repeat is answered as a duplicate. */
static void test_insert_duplicate_of_stored(void **state)
{
    struct fx *f = *state;
    int done = 0;
    bool in_call = false;
    struct ins_res r[4];

    for (size_t i = 0; i < PGW_ARRAY_SIZE(r); i++)
        r[i] = (struct ins_res){.done = &done, .in_call = &in_call};
    insert(f, &r[0], "c1", "k1", true);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r[0].err, 0);
    insert(f, &r[1], "c1", "k0", true);
    insert(f, &r[2], "c1", "k1", true);
    insert(f, &r[3], "c1", "k2", false);
    run_until(f->base, &done, 4, 10000);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].calls, 1);
    }
    assert_false(r[1].duplicate);
    assert_true(r[2].duplicate);
    assert_int_equal(r[2].id, r[0].id);
    assert_false(r[3].duplicate);
    assert_true(r[1].id != r[0].id && r[3].id != r[0].id && r[1].id != r[3].id);
    expect_sql(f->db,
               "SELECT string_agg(msg_id || ':' || attempts, ',' ORDER BY "
               "msg_id) FROM events",
               "k0:1,k1:1,k2:0");
}

static void test_insert_invalid(void **state)
{
    struct fx *f = *state;
    struct pgw_store_new_event ev = {
        .app_id = "demo", .conv_id = "c", .body = "{\"a\":\"\xff\"}"};
    int dummy = 0;

    ev.body_len = strlen(ev.body);
    assert_int_equal(pgw_store_insert_event(f->store, &ev, on_insert, &dummy),
                     PGW_ERR_INVAL);
    ev.body = "{}\0{}";
    ev.body_len = 5;
    assert_int_equal(pgw_store_insert_event(f->store, &ev, on_insert, &dummy),
                     PGW_ERR_INVAL);
}

#define GROUP_N 500

static void test_group_commit(void **state)
{
    struct fx *f = *state;
    static struct ins_res r[GROUP_N];
    char msg[32];
    int done = 0;
    bool in_call = false;

    for (int i = 0; i < GROUP_N; i++) {
        r[i] = (struct ins_res){.done = &done, .in_call = &in_call};
        snprintf(msg, sizeof(msg), "g%d", i % 400); /* 100 duplicates */
        insert(f, &r[i], "group", msg, false);
    }
    run_until(f->base, &done, GROUP_N, 20000);
    for (int i = 0; i < GROUP_N; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].duplicate, i >= 400);
        if (i >= 400)
            assert_int_equal(r[i].id, r[i - 400].id);
    }
    /* one transaction wrote every row */
    expect_sql(f->db,
               "SELECT count(*) || '|' || count(DISTINCT xmin::text) "
               "FROM events",
               "400|1");
}

/* -- claims and leases -- */

struct claim_res {
    int *done;
    int err;
    int64_t ids[64];
    int attempts[64];
    bool ours[64];
    size_t n;
};

static void on_claim(void *arg, int err, const struct pgw_store_event *ev,
                     size_t n)
{
    struct claim_res *r = arg;

    r->err = err;
    r->n = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        r->ids[i] = ev[i].id;
        r->attempts[i] = ev[i].attempts;
        r->ours[i] = ev[i].was_ours;
        assert_string_equal(ev[i].app_id, "demo");
        assert_int_equal(ev[i].body_len, strlen(ev[i].body));
        if (i > 0)
            assert_true(ev[i].id > ev[i - 1].id);
    }
    (*r->done)++;
}

struct done_res {
    int *done;
    int err;
};

static void on_done(void *arg, int err)
{
    struct done_res *r = arg;

    r->err = err;
    (*r->done)++;
}

/* Claims up to |max| events for |store|'s owner, waiting for the answer. */
static void claim(struct fx *f, struct pgw_store *store, unsigned max,
                  struct claim_res *r)
{
    int done = 0;

    *r = (struct claim_res){.done = &done};
    assert_int_equal(pgw_store_claim_events(store, max, 60000, on_claim, r), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r->err, 0);
}

/* Inserts |n| events without a lease, waiting for the commits. */
static void insert_unleased(struct fx *f, int n)
{
    struct ins_res ins[32];
    bool in_call = false;
    int done = 0;

    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        ins[i] = (struct ins_res){.done = &done, .in_call = &in_call};
        insert(f, &ins[i], "claims", NULL, false);
    }
    run_until(f->base, &done, n, 10000);
}

/* A second store on the fixture's database, owner test-owner-b. */
static struct pgw_store *open_store_b(struct fx *f)
{
    struct pgw_store *b = open_store(f->base, f->db, "test-owner-b", 2);

    wait_up(f->base, b, 10000);
    return b;
}

/* Waits for the operation answering into |dr|; asserts it succeeded. */
static void wait_done(struct fx *f, struct done_res *dr, int *done)
{
    run_until(f->base, done, 1, 10000);
    assert_int_equal(dr->err, 0);
}

static void test_claim_of_nothing_is_empty(void **state)
{
    struct fx *f = *state;
    struct claim_res ca;

    /* once crashed under UBSan: qsort on a NULL array */
    claim(f, f->store, 10, &ca);
    assert_int_equal(ca.n, 0);
}

static void test_two_owners_claim_each_event_once(void **state)
{
    struct fx *f = *state;
    struct pgw_store *b = open_store_b(f);
    struct claim_res ca = {0}, cb = {0}, cc;
    int done = 0;
    char sql[256];

    insert_unleased(f, 20);
    /* both stores claim at once: together all 20, none twice (SKIP
     * LOCKED may give one more than the other) */
    ca.done = cb.done = &done;
    assert_int_equal(pgw_store_claim_events(f->store, 10, 60000, on_claim, &ca),
                     0);
    assert_int_equal(pgw_store_claim_events(b, 15, 60000, on_claim, &cb), 0);
    run_until(f->base, &done, 2, 10000);
    assert_int_equal(ca.err, 0);
    assert_int_equal(cb.err, 0);
    if (ca.n + cb.n < 20) { /* both skipped rows the other held */
        struct claim_res more;
        claim(f, b, 20, &more);
        for (size_t i = 0; i < more.n; i++)
            cb.ids[cb.n++] = more.ids[i];
    }
    assert_int_equal(ca.n + cb.n, 20);
    assert_true(ca.n > 0 && ca.n <= 10);
    for (size_t i = 0; i < ca.n; i++) {
        assert_int_equal(ca.attempts[i], 1);
        for (size_t j = 0; j < cb.n; j++)
            assert_true(ca.ids[i] != cb.ids[j]);
    }
    snprintf(sql, sizeof(sql), "%zu|%zu|20", ca.n, cb.n);
    expect_sql(f->db,
               "SELECT count(*) FILTER (WHERE lease_owner = 'test-owner-a') "
               "|| '|' || count(*) FILTER (WHERE lease_owner = "
               "'test-owner-b') || '|' || count(*) FILTER (WHERE "
               "lease_until > now()) FROM events",
               sql);
    /* nothing left to claim */
    claim(f, b, 10, &cc);
    assert_int_equal(cc.n, 0);
    pgw_store_free(b);
}

static void test_expired_lease_is_taken_over(void **state)
{
    struct fx *f = *state;
    struct pgw_store *b = open_store_b(f);
    struct ins_res ins;
    struct claim_res cc;
    bool in_call = false;
    int done = 0;
    char sql[256];

    /* an expired lease is taken over, and counted as an attempt */
    ins = (struct ins_res){.done = &done, .in_call = &in_call};
    insert(f, &ins, "claims", "expiring", true);
    run_until(f->base, &done, 1, 10000);
    snprintf(sql, sizeof(sql),
             "UPDATE events SET lease_until = now() - interval '1 second' "
             "WHERE id = %lld",
             (long long)ins.id);
    exec_sql(f->db, sql);
    claim(f, b, 10, &cc);
    assert_int_equal(cc.n, 1);
    assert_int_equal(cc.ids[0], ins.id);
    assert_int_equal(cc.attempts[0], 2);
    assert_false(cc.ours[0]); /* the lease was the other store's */
    /* b's own lease lapses and b claims the event again: the claim says
     * so, for the dispatcher to look for the job still working it */
    exec_sql(f->db, sql);
    claim(f, b, 10, &cc);
    assert_int_equal(cc.n, 1);
    assert_int_equal(cc.ids[0], ins.id);
    assert_true(cc.ours[0]);
    pgw_store_free(b);
}

static void test_renewal_moves_own_leases_only(void **state)
{
    struct fx *f = *state;
    struct pgw_store *b = open_store_b(f);
    struct claim_res ca, cb;
    struct done_res dr;
    int64_t ids[64];
    size_t n = 0;
    int done = 0;
    char sql[64];

    insert_unleased(f, 6);
    claim(f, f->store, 3, &ca);
    claim(f, b, 3, &cb);
    assert_int_equal(ca.n, 3);
    assert_int_equal(cb.n, 3);
    /* A renews every id: only its own move */
    for (size_t i = 0; i < ca.n; i++)
        ids[n++] = ca.ids[i];
    for (size_t i = 0; i < cb.n; i++)
        ids[n++] = cb.ids[i];
    dr = (struct done_res){.done = &done};
    assert_int_equal(
        pgw_store_renew_leases(f->store, ids, n, 600000, on_done, &dr), 0);
    wait_done(f, &dr, &done);
    snprintf(sql, sizeof(sql), "%zu", ca.n);
    expect_sql(f->db,
               "SELECT count(*) FROM events WHERE lease_until > now() + "
               "interval '500 seconds' AND lease_owner = 'test-owner-a'",
               sql);
    expect_sql(f->db,
               "SELECT count(*) FROM events WHERE lease_until > now() + "
               "interval '500 seconds'",
               sql);
    pgw_store_free(b);
}

static void test_released_events_are_claimable_at_once(void **state)
{
    struct fx *f = *state;
    struct pgw_store *b = open_store_b(f);
    struct claim_res ca, cc;
    struct done_res dr;
    int done = 0;

    insert_unleased(f, 5);
    claim(f, f->store, 10, &ca);
    assert_int_equal(ca.n, 5);
    /* release: A's events are claimable by B at once */
    dr = (struct done_res){.done = &done};
    assert_int_equal(pgw_store_release_leases(f->store, on_done, &dr), 0);
    wait_done(f, &dr, &done);
    expect_sql(f->db,
               "SELECT count(*) FROM events WHERE lease_owner = "
               "'test-owner-a'",
               "0");
    claim(f, b, 50, &cc);
    assert_int_equal(cc.n, ca.n);
    for (size_t i = 0; i < cc.n; i++)
        assert_int_equal(cc.ids[i], ca.ids[i]);
    pgw_store_free(b);
}

/* -- installations -- */

struct inst_row {
    int64_t id;
    char type[16];
    char token[64];
    char team[32];
    int badge;
    size_t n_channels;
    char channels[8][64];
};

struct find_res {
    int *done;
    int err;
    size_t n;
    struct inst_row rows[64];
};

static void on_find(void *arg, int err, const struct pgw_installation *in,
                    size_t n)
{
    struct find_res *r = arg;

    r->err = err;
    r->n = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        struct inst_row *row = &r->rows[i];
        row->id = in[i].id;
        snprintf(row->type, sizeof(row->type), "%s",
                 pgw_platform_name(in[i].platform));
        snprintf(row->token, sizeof(row->token), "%s", in[i].device_token);
        snprintf(row->team, sizeof(row->team), "%s",
                 in[i].apns_team_id ? in[i].apns_team_id : "-");
        row->badge = in[i].badge;
        row->n_channels = in[i].n_channels;
        for (size_t j = 0; j < in[i].n_channels && j < 8; j++)
            snprintf(row->channels[j], sizeof(row->channels[j]), "%s",
                     in[i].channels[j]);
        if (i > 0)
            assert_true(in[i].id > in[i - 1].id);
    }
    (*r->done)++;
}

/* Two incrementing lookups of |names| (one name) queued in one loop
 * iteration: merged into one statement. */
static int find_cached_pair(struct fx *f, const char *const *names,
                            struct find_res *a, struct find_res *b)
{
    int rc = pgw_store_find_installations(f->store, "demo", names, 1, NULL, 0,
                                          PGW_STORE_FIND_INCREMENT, on_find, a);

    if (rc == 0)
        rc = pgw_store_find_installations(f->store, "demo", names, 1, NULL, 0,
                                          PGW_STORE_FIND_INCREMENT, on_find, b);
    return rc;
}

/* Pushes of TEAMA in an app whose default team is TEAMA (team-less iOS
 * devices are TEAMA's), and in one whose default team is TEAMB. */
static const struct pgw_installation_match team_a_default = {.apns_team_id =
                                                                 "TEAMA",
                                                             .default_team =
                                                                 "TEAMA"},
                                           team_a = {.apns_team_id = "TEAMA",
                                                     .default_team = "TEAMB"};

static void find(struct fx *f, struct find_res *r, const char *const *names,
                 size_t n, const struct pgw_installation_match *m, bool inc)
{
    int done = 0;

    *r = (struct find_res){.done = &done};
    assert_int_equal(pgw_store_find_installations(
                         f->store, "demo", names, n, m, 0,
                         inc ? PGW_STORE_FIND_INCREMENT : 0, on_find, r),
                     0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r->err, 0);
}

static const char *hostile[] = {
    "a,b", "{x}", "\"q\"", "back\\slash", "NULL", " sp ace ", "é∑", "",
};

static void seed_installations(const char *db)
{
    exec_sql(db, "INSERT INTO installations (id, app_id, device_type, "
                 "device_token, channels, apns_team_id, valid) VALUES "
                 "(1, 'demo', 'ios', 'tok1', '{Tom,Jerry}', NULL, true), "
                 "(2, 'demo', 'android', 'tok2', '{Jerry}', NULL, true), "
                 "(3, 'demo', 'ios', 'tok3', '{Jerry}', 'TEAMA', true), "
                 "(4, 'demo', 'ios', 'tok4', '{Jerry}', 'TEAMB', true), "
                 "(5, 'demo', 'ios', 'tok5', '{Jerry}', NULL, false), "
                 "(6, 'other', 'ios', 'tok6', '{Jerry}', NULL, true), "
                 "(7, 'demo', 'ios', 'tok7', '{Spike}', NULL, true)");
    /* every hostile name is a channel of its own installation */
    exec_sql(db, "INSERT INTO installations (id, app_id, device_type, "
                 "device_token, channels) VALUES "
                 "(11, 'demo', 'ios', 'h1', ARRAY['a,b']), "
                 "(12, 'demo', 'ios', 'h2', ARRAY['{x}']), "
                 "(13, 'demo', 'ios', 'h3', ARRAY['\"q\"']), "
                 "(14, 'demo', 'ios', 'h4', ARRAY[E'back\\\\slash']), "
                 "(15, 'demo', 'ios', 'h5', ARRAY['NULL', 'z']), "
                 "(16, 'demo', 'ios', 'h6', ARRAY[' sp ace ']), "
                 "(17, 'demo', 'ios', 'h7', ARRAY['é∑']), "
                 "(18, 'demo', 'ios', 'h8', ARRAY['']), "
                 "(19, 'demo', 'ios', 'h9', ARRAY['a', 'b', 'x', 'q'])");
}

static void test_find_installations(void **state)
{
    struct fx *f = *state;
    const char *jt[] = {"Jerry", "Tom", "Nobody"};
    struct find_res r;

    seed_installations(f->db);
    /* overlap, valid only, this app only, one row per installation */
    find(f, &r, jt, 3, NULL, false);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.rows[0].id, 1);
    assert_int_equal(r.rows[0].n_channels, 2);
    assert_string_equal(r.rows[0].channels[0], "Tom");
    assert_string_equal(r.rows[0].channels[1], "Jerry");
    assert_int_equal(r.rows[1].id, 2);
    assert_string_equal(r.rows[1].type, "android");
    assert_int_equal(r.rows[2].id, 3);
    assert_int_equal(r.rows[3].id, 4);
    assert_string_equal(r.rows[3].team, "TEAMB");
    assert_int_equal(r.rows[0].badge, 0);

    /* team filter of another team than the app's default: iOS rows of
     * that team only; Android kept; nothing incremented */
    find(f, &r, jt, 2, &team_a, false);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.rows[0].id, 2);
    assert_int_equal(r.rows[1].id, 3);

    /* team filter of the default team: iOS rows of that team or none */
    find(f, &r, jt, 2, &team_a_default, true);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.rows[0].id, 1);
    assert_int_equal(r.rows[0].badge, 1);
    assert_int_equal(r.rows[1].id, 2);
    assert_int_equal(r.rows[1].badge, 0);
    assert_int_equal(r.rows[2].id, 3);
    assert_int_equal(r.rows[2].badge, 1);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 7",
               "1:1,2:0,3:1,4:0,5:0,6:0,7:0");
    /* without increment nothing changes */
    find(f, &r, jt, 1, NULL, false);
    expect_sql(f->db, "SELECT sum(badge) FROM installations", "2");

    /* hostile names match exactly their own row, and come back intact */
    for (size_t i = 0; i < PGW_ARRAY_SIZE(hostile); i++) {
        find(f, &r, &hostile[i], 1, NULL, false);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.rows[0].id, 11 + (int64_t)i);
        assert_string_equal(r.rows[0].channels[0], hostile[i]);
    }
    find(f, &r, hostile, PGW_ARRAY_SIZE(hostile), NULL, false);
    assert_int_equal(r.n, 8);
    assert_int_equal(r.rows[4].n_channels, 2);
    assert_string_equal(r.rows[4].channels[1], "z");
    /* an empty list matches nothing */
    find(f, &r, NULL, 0, NULL, true);
    assert_int_equal(r.n, 0);
}

#define BADGE_N 50

static void test_badge_concurrent(void **state)
{
    struct fx *f = *state;
    static struct find_res r[BADGE_N];
    const char *jerry[] = {"Jerry"};
    bool seen[BADGE_N + 1] = {false};
    int done = 0;

    seed_installations(f->db);
    /* 50 increments in flight at once over 4 connections */
    for (int i = 0; i < BADGE_N; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", jerry, 1, NULL, 0,
                             PGW_STORE_FIND_INCREMENT, on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, BADGE_N, 20000);
    for (int i = 0; i < BADGE_N; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].n, 4);
        assert_int_equal(r[i].rows[0].id, 1);
        assert_true(r[i].rows[0].badge >= 1 && r[i].rows[0].badge <= BADGE_N);
        assert_false(seen[r[i].rows[0].badge]);
        seen[r[i].rows[0].badge] = true;
        assert_int_equal(r[i].rows[1].badge, 0); /* android */
    }
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 5",
               "1:50,2:0,3:50,4:50,5:0");
}

#define ORDER_N 60
static struct pgw_store_cache_stats cache_stats(struct fx *f)
{
    struct pgw_store_cache_stats st;

    pgw_store_get_cache_stats(f->store, &st);
    return st;
}

/* Runs the loop until the cache has heard of every change committed so
 * far: no notification for 300 ms. */
static void cache_settle(struct fx *f)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    uint64_t seen = cache_stats(f).notifications;
    int64_t quiet_since = tu_wall_ms(), deadline = tu_wall_ms() + 10000;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (tu_wall_ms() - quiet_since < 300 && tu_wall_ms() < deadline) {
        event_base_loop(f->base, EVLOOP_ONCE);
        if (cache_stats(f).notifications != seen) {
            seen = cache_stats(f).notifications;
            quiet_since = tu_wall_ms();
        }
    }
    event_free(tick);
}

/* Runs the loop until |done|(|f|, |arg|) holds; fails after 10 s. */
static void loop_until(struct fx *f, bool (*done)(struct fx *, uint64_t),
                       uint64_t arg)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + 10000;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (!done(f, arg) && tu_wall_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(tick);
    assert_true(done(f, arg));
}

static bool notified_at_least(struct fx *f, uint64_t n)
{
    return cache_stats(f).notifications >= n;
}

/* Runs the loop until |n| more notifications than |before| came. */
static void wait_notified(struct fx *f, uint64_t before, uint64_t n)
{
    loop_until(f, notified_at_least, before + n);
}

/* Asserts the ids of |r|, as text: "1,2,4". */
static void expect_id_list(const struct find_res *r, const char *want)
{
    char got[256] = "";
    size_t len = 0;

    assert_int_equal(r->err, 0);
    for (size_t i = 0; i < r->n && len < sizeof(got) - 24; i++)
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%lld",
                                i ? "," : "", (long long)r->rows[i].id);
    if (strcmp(got, want) != 0)
        print_error("rows '%s', want '%s'\n", got, want);
    assert_string_equal(got, want);
}

/* Runs |sql| and waits for the notification of its change. */
static void change(struct fx *f, const char *sql)
{
    uint64_t before = cache_stats(f).notifications;

    exec_sql(f->db, sql);
    wait_notified(f, before, 1);
}

/* seed_installations() and a store with a cache in place of the
 * fixture's, once it has heard of the seed's notifications. */
static void use_cached_store(struct fx *f)
{
    seed_installations(f->db);
    pgw_store_free(f->store);
    f->store = open_cached_store(f->base, f->db);
    cache_settle(f);
}

/* The fixture with use_cached_store(). */
static int setup_cached(void **state)
{
    setup(state);
    use_cached_store(*state);
    return 0;
}

/*
 * The cache answers what Postgres would, as operators change the table
 * (the tests below, each on a fresh seeded database): a lookup fills it,
 * the next one is answered from it (its increments still made in
 * Postgres), and every kind of change is heard of before the next lookup.
 * A change the cache did not hear of (no trigger fired) still never
 * increments a row that is no longer a valid iOS device.
 */
static void test_cache_fills_then_answers(void **state)
{
    struct fx *f = *state;
    const char *jt[] = {"Jerry", "Tom"};
    struct find_res r;
    struct pgw_store_cache_stats st;

    find(f, &r, jt, 2, NULL, false);
    expect_id_list(&r, "1,2,3,4");
    st = cache_stats(f);
    /* the first name missing is enough: both names go to Postgres */
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.entries, 2);
    find(f, &r, jt, 2, NULL, false);
    expect_id_list(&r, "1,2,3,4");
    assert_int_equal(r.rows[0].n_channels, 2);
    assert_string_equal(r.rows[0].channels[1], "Jerry");
    assert_string_equal(r.rows[1].type, "android");
    assert_string_equal(r.rows[3].team, "TEAMB");
    assert_string_equal(r.rows[2].token, "tok3");
    assert_int_equal(cache_stats(f).hits, 2);
    /* a team filter goes to Postgres */
    find(f, &r, jt, 2, &team_a_default, false);
    expect_id_list(&r, "1,2,3");
    assert_int_equal(cache_stats(f).hits, 2);
    find(f, &r, jt, 2, &team_a, false);
    expect_id_list(&r, "2,3");
    assert_int_equal(cache_stats(f).hits, 2);
}

static void test_cache_increments_in_postgres(void **state)
{
    struct fx *f = *state;
    const char *jt[] = {"Jerry", "Tom"};
    struct find_res r;

    find(f, &r, jt, 2, NULL, false);
    /* increments from the cache: iOS rows only, in Postgres */
    find(f, &r, jt, 2, NULL, true);
    expect_id_list(&r, "1,2,3,4");
    assert_int_equal(cache_stats(f).hits, 2);
    assert_int_equal(r.rows[0].badge, 1);
    assert_int_equal(r.rows[2].badge, 1);
    assert_int_equal(r.rows[3].badge, 1);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 7",
               "1:1,2:0,3:1,4:1,5:0,6:0,7:0");
    /* no notification for badges: the increments evicted nothing */
    cache_settle(f);
    assert_int_equal(cache_stats(f).notifications, 0);
    assert_int_equal(cache_stats(f).entries, 2);
}

static void test_cache_merged_lookups_get_distinct_badges(void **state)
{
    struct fx *f = *state;
    const char *spike[] = {"Spike"};
    struct find_res r, r2;
    int done = 0;

    /* two lookups merged into one statement: distinct badges */
    r = (struct find_res){.done = &done};
    r2 = (struct find_res){.done = &done};
    assert_int_equal(find_cached_pair(f, spike, &r, &r2), 0);
    run_until(f->base, &done, 2, 10000);
    /* the first went to Postgres and filled the cache; the second, the
     * same name, waited for that and was answered from it: counted once,
     * as a hit, not also as the miss it was when it was parked */
    assert_int_equal(cache_stats(f).hits, 1);
    assert_int_equal(cache_stats(f).misses, 1);
    assert_int_equal(cache_stats(f).entries, 1);
    assert_int_equal(r.n, 1);
    assert_int_equal(r2.n, 1);
    assert_true(r.rows[0].badge != r2.rows[0].badge);
    /* and again, both from the cache */
    r = (struct find_res){.done = &done};
    r2 = (struct find_res){.done = &done};
    done = 0;
    assert_int_equal(find_cached_pair(f, spike, &r, &r2), 0);
    run_until(f->base, &done, 2, 10000);
    assert_int_equal(cache_stats(f).hits, 3);
    assert_int_equal(r.n, 1);
    assert_int_equal(r2.n, 1);
    assert_true(r.rows[0].badge != r2.rows[0].badge);
    expect_sql(f->db, "SELECT badge FROM installations WHERE id = 7", "4");
}

/* Increments |spike| for |event_id| from the cache, |parts| lookups in
 * one statement; returns the badges they saw in |ret_badges|. */
static void increment_event(struct fx *f, int64_t event_id, int parts,
                            int64_t *ret_badges)
{
    const char *spike[] = {"Spike"};
    struct find_res r[2];
    int done = 0;

    assert_true(parts <= 2);
    for (int i = 0; i < parts; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", spike, 1, NULL, event_id,
                             PGW_STORE_FIND_INCREMENT | PGW_STORE_FIND_ALONE,
                             on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, parts, 10000);
    for (int i = 0; i < parts; i++) {
        assert_int_equal(r[i].n, 1);
        ret_badges[i] = r[i].rows[0].badge;
    }
}

static void test_cache_same_event_increments_once(void **state)
{
    struct fx *f = *state;
    const char *spike[] = {"Spike"};
    struct find_res r;
    int64_t badge[2];

    find(f, &r, spike, 1, NULL, false); /* cached */
    /* the same event twice: one increment, both see its badge */
    for (int i = 0; i < 2; i++) {
        increment_event(f, 99, 1, badge);
        assert_int_equal(badge[0], 1);
    }
    expect_sql(f->db, "SELECT badge FROM installations WHERE id = 7", "1");
}

static void test_cache_parts_of_an_event_increment_once(void **state)
{
    struct fx *f = *state;
    const char *spike[] = {"Spike"};
    struct find_res r;
    int64_t badge[2];

    find(f, &r, spike, 1, NULL, false); /* cached */
    /* two parts of one event in one statement: one increment, one badge */
    increment_event(f, 100, 2, badge);
    assert_int_equal(badge[0], 1);
    assert_int_equal(badge[1], 1);
    expect_sql(f->db,
               "SELECT badge || ':' || badge_event_id FROM installations "
               "WHERE id = 7",
               "1:100");
}

static void test_cache_hears_every_row_change(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"};
    struct find_res r;

    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,3,4");
    change(f, "UPDATE installations SET channels = '{Tom}' WHERE id = 3");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,4");
    change(f, "INSERT INTO installations (id, app_id, device_type, "
              "device_token, channels) VALUES (20, 'demo', 'ios', 'tok20', "
              "'{Jerry}')");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,4,20");
    change(f, "DELETE FROM installations WHERE id = 2");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,4,20");
    change(f, "UPDATE installations SET valid = false WHERE id = 4");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,20");
    change(f, "UPDATE installations SET device_token = 'new1' WHERE id = 1");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,20");
    assert_string_equal(r.rows[0].token, "new1");
    find(f, &r, jerry, 1, NULL, false); /* from the cache again */
    assert_string_equal(r.rows[0].token, "new1");
}

static void test_cache_forgets_the_app_on_a_long_change(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"}, *spike[] = {"Spike"};
    struct find_res r;

    find(f, &r, jerry, 1, NULL, false);
    find(f, &r, spike, 1, NULL, false);
    assert_int_equal(cache_stats(f).entries, 2);
    /* channels too long for a notification: the whole app is forgotten */
    change(f, "UPDATE installations SET channels = channels || ARRAY(SELECT "
              "repeat('c', 100) || g FROM generate_series(1, 80) g) WHERE "
              "id = 7");
    assert_int_equal(cache_stats(f).entries, 0);
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,3,4");
}

static void test_cache_unheard_change_skips_invalid_rows(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"};
    struct find_res r;
    struct pgw_store_cache_stats st;

    find(f, &r, jerry, 1, NULL, false);
    /* a change not heard of (replica mode: no trigger fires): the
     * increment leaves out the device Postgres no longer has valid */
    exec_sql(f->db, "SET session_replication_role = replica; UPDATE "
                    "installations SET valid = false WHERE id = 4; "
                    "RESET session_replication_role");
    st = cache_stats(f);
    find(f, &r, jerry, 1, NULL, true);
    assert_int_equal(cache_stats(f).hits, st.hits + 1);
    expect_id_list(&r, "1,2,3");
    expect_sql(f->db, "SELECT badge FROM installations WHERE id = 4", "0");
}

static void test_cache_truncate_empties_it(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"};
    struct find_res r;

    find(f, &r, jerry, 1, NULL, false);
    change(f, "TRUNCATE installations");
    assert_int_equal(cache_stats(f).entries, 0);
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "");
}

static void test_cache_waiting_lookup_survives_a_notification(void **state)
{
    struct fx *f = *state;
    const char *tyke[] = {"Tyke"};
    struct find_res r, r2;
    int done = 0;

    /* a lookup waiting for another's fill gets its rows whether that
     * fill happened or a notification overtook it */
    change(f, "INSERT INTO installations (id, app_id, device_type, "
              "device_token, channels) VALUES (30, 'demo', 'android', "
              "'tok30', '{Tyke}'), (31, 'demo', 'ios', 'tok31', '{Spike}')");
    r = (struct find_res){.done = &done};
    r2 = (struct find_res){.done = &done};
    assert_int_equal(pgw_store_find_installations(f->store, "demo", tyke, 1,
                                                  NULL, 0, 0, on_find, &r),
                     0);
    assert_int_equal(pgw_store_find_installations(f->store, "demo", tyke, 1,
                                                  NULL, 0, 0, on_find, &r2),
                     0);
    exec_sql(f->db, "UPDATE installations SET channels = '{Spike,Tom}' "
                    "WHERE id = 31");
    run_until(f->base, &done, 2, 10000);
    expect_id_list(&r, "30");
    expect_id_list(&r2, "30");
}

static bool live_is(struct fx *f, uint64_t live)
{
    return cache_stats(f).live == (live != 0);
}

/* Runs the loop until the cache is |live| or not. */
static void wait_cache_live(struct fx *f, bool live)
{
    loop_until(f, live_is, live);
}

/* The LISTEN connection lost: changes made meanwhile are not heard of, so
 * the cache is not used until it is back, and starts empty then. */
static void test_cache_listener_lost(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"};
    struct find_res r;
    uint64_t hits;

    use_cached_store(f);
    find(f, &r, jerry, 1, NULL, false);
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,3,4");
    hits = cache_stats(f).hits;
    assert_int_equal(hits, 1);

    expect_sql(f->db,
               "SELECT count(pg_terminate_backend(pid)) FROM "
               "pg_stat_activity WHERE datname = current_database() AND "
               "pid <> pg_backend_pid() AND query LIKE "
               "'SELECT 1 / (count(*) = 3)::int FROM pg_trigger%'",
               "1");
    wait_cache_live(f, false);
    assert_int_equal(cache_stats(f).entries, 0);
    exec_sql(f->db, "UPDATE installations SET channels = '{Tom}' WHERE id = 3");
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,4");
    assert_int_equal(cache_stats(f).hits, hits);
    assert_true(pgw_store_is_up(f->store));

    wait_cache_live(f, true);
    find(f, &r, jerry, 1, NULL, false);
    find(f, &r, jerry, 1, NULL, true);
    expect_id_list(&r, "1,2,4");
    assert_int_equal(cache_stats(f).hits, hits + 1);
}

static void run_until_sql(struct fx *f, const char *sql, const char *want,
                          int ms);
static void pq_ok(PGconn *c, const char *sql);

/* A row lock held elsewhere fails the increments waiting for it after
 * the lock timeout (5 s), and the lookups queued behind them go on. */
static void test_cache_lock_timeout(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"}, *spike[] = {"Spike"};
    struct find_res r, r2;
    PGconn *holder;
    int done = 0;
    int64_t t0;

    use_cached_store(f);
    find(f, &r, spike, 1, NULL, false);
    find(f, &r, jerry, 1, NULL, false);
    holder = PQconnectdb(f->db);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    pq_ok(holder, "BEGIN");
    pq_ok(holder, "SELECT 1 FROM installations WHERE id = 7 FOR UPDATE");

    t0 = tu_wall_ms();
    r = (struct find_res){.done = &done};
    assert_int_equal(
        pgw_store_find_installations(f->store, "demo", spike, 1, NULL, 0,
                                     PGW_STORE_FIND_INCREMENT, on_find, &r),
        0);
    run_until_sql(f,
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND wait_event_type = 'Lock'",
                  "1", 10000);
    r2 = (struct find_res){.done = &done};
    assert_int_equal(
        pgw_store_find_installations(f->store, "demo", jerry, 1, NULL, 0,
                                     PGW_STORE_FIND_INCREMENT, on_find, &r2),
        0);
    run_until(f->base, &done, 2, 15000);
    assert_int_equal(r.err, PGW_ERR_DB);
    assert_true(tu_wall_ms() - t0 >= 4500);
    assert_int_equal(r2.err, 0);
    expect_id_list(&r2, "1,2,3,4");
    pq_ok(holder, "ROLLBACK");
    PQfinish(holder);
    expect_sql(f->db, "SELECT badge FROM installations WHERE id = 7", "0");
}

/* Without migration 0007's triggers (or with one disabled) nothing would
 * tell the cache of a change: it is not used until they are back. */
static void test_cache_needs_triggers(void **state)
{
    struct fx *f = *state;
    const char *jerry[] = {"Jerry"};
    struct pgw_store_options o = {.conninfo = f->db,
                                  .pool_size = 2,
                                  .owner = "test-owner-c",
                                  .cache_bytes = 1 << 20};
    struct find_res r;
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t until;

    seed_installations(f->db);
    exec_sql(f->db, "ALTER TABLE installations DISABLE TRIGGER "
                    "installations_changed_update");
    pgw_store_free(f->store);
    assert_int_equal(pgw_store_new(f->base, &o, &f->store), 0);
    wait_up(f->base, f->store, 10000);
    event_add(tick, &tv);
    until = tu_wall_ms() + 1000;
    while (tu_wall_ms() < until)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(tick);
    assert_false(cache_stats(f).live);
    find(f, &r, jerry, 1, NULL, false);
    find(f, &r, jerry, 1, NULL, false);
    expect_id_list(&r, "1,2,3,4");
    assert_int_equal(cache_stats(f).hits + cache_stats(f).misses, 0);

    exec_sql(f->db, "ALTER TABLE installations ENABLE TRIGGER "
                    "installations_changed_update");
    wait_cache_live(f, true);
}

/* updated_at (migration 0007): set by a registration change, not by a
 * badge change, and seen once the statement ends. */
static void test_updated_at(void **state)
{
    struct fx *f = *state;

    exec_sql(f->db, "INSERT INTO installations (id, app_id, device_type, "
                    "device_token, channels, updated_at) VALUES (1, 'demo', "
                    "'ios', 'tok1', '{Jerry}', now() - interval '1 hour')");
    exec_sql(f->db, "UPDATE installations SET badge = badge + 1, "
                    "badge_event_id = 5");
    expect_sql(f->db,
               "SELECT badge || ',' || (updated_at < now() - interval "
               "'30 min') FROM installations",
               "1,true");
    exec_sql(f->db, "UPDATE installations SET time_zone = 'UTC'");
    expect_sql(f->db,
               "SELECT updated_at > now() - interval '1 min' FROM "
               "installations",
               "t");
}

#define ORDER_DEVICES 50

/* A small table of |n| iOS devices, ids 1 to |n|, each with the channel
 * |prefix| followed by its id and the badge |badge|. */
static void seed_small(struct fx *f, const char *prefix, int n, int badge)
{
    char sql[320];

    exec_sql(f->db, "DELETE FROM installations");
    snprintf(sql, sizeof(sql),
             "INSERT INTO installations (id, app_id, device_type, "
             "device_token, channels, badge) SELECT i, 'demo', 'ios', "
             "'tok-%s' || i, ARRAY['%s' || i], %d FROM generate_series(1, "
             "%d) i",
             prefix, prefix, badge, n);
    exec_sql(f->db, sql);
}

/* Concurrent lookups that increment the same devices, on a small table
 * (where the planner's own choice for the update is a hash join over a
 * sequential scan, in physical order), each its own transaction: none
 * fails, and every device ends up incremented exactly once per lookup.
 * The rows are updated first so their versions are scattered over the
 * page, and the names go in a different order for every lookup. Locking
 * in any order but the ids', two of them could deadlock; that race is not
 * reproducible on demand, so this checks the outcome, and
 * test_badge_lock_order_plan the order itself. */
static void test_badge_lock_order(void **state)
{
    struct fx *f = *state;
    static struct find_res r[ORDER_N];
    static char name_buf[ORDER_DEVICES][16];
    const char *names[ORDER_N][ORDER_DEVICES];
    char want[32];
    int done = 0;

    seed_small(f, "d", ORDER_DEVICES, 0);
    exec_sql(f->db, "UPDATE installations SET badge = 0 WHERE id % 3 = 0");
    exec_sql(f->db, "UPDATE installations SET badge = 0 WHERE id % 2 = 0");
    exec_sql(f->db, "ANALYZE installations");
    for (int d = 0; d < ORDER_DEVICES; d++)
        snprintf(name_buf[d], sizeof(name_buf[d]), "d%d", d + 1);
    for (int i = 0; i < ORDER_N; i++) {
        for (int d = 0; d < ORDER_DEVICES; d++)
            names[i][d] = name_buf[(d * 7 + i * 11) % ORDER_DEVICES];
        r[i] = (struct find_res){.done = &done};
        /* parts: each its own statement and transaction, never merged */
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", names[i], ORDER_DEVICES, NULL, 0,
                             PGW_STORE_FIND_INCREMENT | PGW_STORE_FIND_ALONE,
                             on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, ORDER_N, 60000);
    for (int i = 0; i < ORDER_N; i++) {
        if (r[i].err != 0)
            fail_msg("lookup %d failed: %s", i, pgw_strerror(r[i].err));
        assert_int_equal(r[i].n, ORDER_DEVICES);
    }
    snprintf(want, sizeof(want), "%d:%d", ORDER_DEVICES, ORDER_N);
    expect_sql(f->db,
               "SELECT count(*) || ':' || min(badge) FROM installations "
               "WHERE badge = (SELECT max(badge) FROM installations)",
               want);
}

/* Runs the loop until |sql| (on its own connection) gives |want|; fails
 * after |ms|. */
static void run_until_sql(struct fx *f, const char *sql, const char *want,
                          int ms)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + ms;
    bool ok = false;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (!ok && tu_wall_ms() < deadline) {
        char *got;

        event_base_loop(f->base, EVLOOP_ONCE);
        got = tu_db_query(f->db, sql);
        ok = got && strcmp(got, want) == 0;
        free(got);
    }
    event_free(tick);
    if (!ok)
        print_error("'%s' never gave '%s'\n", sql, want);
    assert_true(ok);
}

static void pq_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        print_error("'%s' failed: %s", sql, PQerrorMessage(c));
    assert_true(PQresultStatus(r) == PGRES_TUPLES_OK ||
                PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
}

/* A statement of the store waits for row 1 (held by another session)
 * and holds nothing after it: row 2 can still be taken. */
static void expect_waiting_on_row_1(struct fx *f)
{
    run_until_sql(f,
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND wait_event_type = 'Lock'",
                  "1", 10000);
    expect_sql(f->db,
               "SELECT id FROM installations WHERE id = 2 FOR UPDATE NOWAIT",
               "2");
}

/* The order in which the statements that change badges lock their rows,
 * seen directly: on a table of 30 rows the planner's own choice for an
 * update is a hash join over a sequential scan, in physical order, and row
 * 1 is rewritten so that its live version lies after row 2's. Another
 * session holds row 1. A statement on both rows locking in id order then
 * waits for row 1 holding nothing, and row 2 can still be taken (NOWAIT);
 * one locking in physical order would hold row 2 while it waits. Each of
 * them: a lookup alone (ST_FIND_ONE_INC, |callers| 1), two merged
 * (ST_FIND, |callers| 2) and a take-back (ST_UNDO_BADGES, |callers| 0). */
static void check_lock_order(struct fx *f, int callers, unsigned flags,
                             bool cached)
{
    static const char *names[] = {"l1", "l2"};
    static const int64_t both[] = {1, 2};
    struct find_res r[2];
    struct done_res dr = {0};
    int done = 0;
    uint64_t hits = 0;
    PGconn *holder;

    /* A new, empty file: the rows go in at offsets 1 to 30 and row 1's new
     * version after them. After a DELETE, pruning could hand it a freed
     * offset before row 2's. */
    exec_sql(f->db, "TRUNCATE installations");
    seed_small(f, "l", 30, 5);
    exec_sql(f->db, "UPDATE installations SET time_zone = 'UTC' WHERE id = 1");
    exec_sql(f->db, "ANALYZE installations");
    expect_sql(f->db,
               "SELECT string_agg(id::text, ',' ORDER BY ctid) FROM "
               "installations WHERE id <= 2",
               "2,1");
    if (cached) {
        /* the increments below then go as ST_INC_IDS */
        struct find_res fill;

        cache_settle(f);
        find(f, &fill, names, 2, NULL, false);
        assert_int_equal(fill.n, 2);
        hits = cache_stats(f).hits;
    }
    holder = PQconnectdb(f->db);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    pq_ok(holder, "BEGIN");
    pq_ok(holder, "SELECT 1 FROM installations WHERE id = 1 FOR UPDATE");
    for (int i = 0; i < callers; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", names, 2, NULL, 0,
                             PGW_STORE_FIND_INCREMENT | flags, on_find, &r[i]),
                         0);
    }
    if (callers == 0) {
        dr.done = &done;
        assert_int_equal(pgw_store_undo_badges(f->store, both, 2, on_done, &dr),
                         0);
    }
    expect_waiting_on_row_1(f);
    pq_ok(holder, "COMMIT");
    PQfinish(holder);
    run_until(f->base, &done, callers ? callers : 1, 10000);
    assert_int_equal(dr.err, 0);
    if (cached)
        assert_int_equal(cache_stats(f).hits, hits + 2 * (uint64_t)callers);
    for (int i = 0; i < callers; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].n, 2);
    }
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 3",
               callers == 0   ? "1:4,2:4,3:5"
               : callers == 1 ? "1:6,2:6,3:5"
                              : "1:7,2:7,3:5");
}

static void test_badge_lock_order_plan(void **state)
{
    struct fx *f = *state;

    check_lock_order(f, 1, PGW_STORE_FIND_ALONE, false);
    check_lock_order(f, 2, 0, false);
    check_lock_order(f, 0, 0, false);
    /* the increments of lookups answered by the cache (ST_INC_IDS) */
    pgw_store_free(f->store);
    f->store = open_cached_store(f->base, f->db);
    check_lock_order(f, 1, PGW_STORE_FIND_ALONE, true);
    check_lock_order(f, 2, 0, true);
}

/* A page of an API push (pgw_store_api_push_page) of installations 1 to
 * 3 with increments, for request |req|, into |r|. */
static void read_page(struct fx *f, int64_t req, struct find_res *r, int *done)
{
    struct pgw_store_page_query q = {.api_push_id = req,
                                     .app_id = "demo",
                                     .limit = 10,
                                     .increment = true,
                                     .where_sql = "i.id <= 3"};

    *r = (struct find_res){.done = done};
    assert_int_equal(pgw_store_api_push_page(f->store, &q, on_find, r), 0);
}

/* The locks of a page's increments, seen as test_badge_lock_order_plan
 * sees the lookups': on the same table, with row 1's live version after
 * row 2's and row 1 held elsewhere, the page waits for row 1 holding
 * nothing, in id order; the Android row 3 is not locked at all; each
 * page gets the rows with their new badges, and a page read again for
 * the same request keeps them. */
static void test_page_lock_order(void **state)
{
    struct fx *f = *state;
    struct find_res r;
    int done = 0;
    PGconn *holder;

    exec_sql(f->db, "TRUNCATE installations");
    seed_small(f, "l", 30, 5);
    exec_sql(f->db, "UPDATE installations SET time_zone = 'UTC' WHERE id = 1");
    exec_sql(f->db, "UPDATE installations SET device_type = 'android', "
                    "device_token = 'fcm-3' WHERE id = 3");
    exec_sql(f->db, "ANALYZE installations");
    expect_sql(f->db,
               "SELECT string_agg(id::text, ',' ORDER BY ctid) FROM "
               "installations WHERE id <= 2",
               "2,1");
    holder = PQconnectdb(f->db);
    assert_int_equal(PQstatus(holder), CONNECTION_OK);
    pq_ok(holder, "BEGIN");
    pq_ok(holder, "SELECT 1 FROM installations WHERE id = 1 FOR UPDATE");
    read_page(f, 7, &r, &done);
    expect_waiting_on_row_1(f);
    pq_ok(holder, "COMMIT");
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.rows[0].badge, 6);
    assert_int_equal(r.rows[1].badge, 6);
    assert_int_equal(r.rows[2].badge, 5);
    assert_string_equal(r.rows[2].type, "android");
    /* the Android row held: the page does not wait for it; the same
     * request again: no second increment */
    pq_ok(holder, "BEGIN");
    pq_ok(holder, "SELECT 1 FROM installations WHERE id = 3 FOR UPDATE");
    done = 0;
    read_page(f, 7, &r, &done);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.rows[0].badge, 6);
    assert_int_equal(r.rows[1].badge, 6);
    pq_ok(holder, "COMMIT");
    PQfinish(holder);
    done = 0;
    read_page(f, 8, &r, &done);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.rows[0].badge, 7);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 4",
               "1:7,2:7,3:5,4:5");
}

/* Asserts that |r| has the installations |ids| (|n|, in order). */
static void expect_ids(const struct find_res *r, const int64_t *ids, size_t n)
{
    assert_int_equal(r->err, 0);
    assert_int_equal(r->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r->rows[i].id, ids[i]);
}

/* The badge of installation |id| in |r|, or -1 when |r| lacks it. */
static int badge_of(const struct find_res *r, int64_t id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->rows[i].id == id)
            return r->rows[i].badge;
    return -1;
}

/* The badges |callers| got for installation |id| are exactly
 * |from| .. |from| + |n| - 1, each once. */
static void expect_badges(struct find_res *const *callers, size_t n, int64_t id,
                          int from)
{
    bool seen[16] = {false};

    assert_true(n < PGW_ARRAY_SIZE(seen));
    for (size_t i = 0; i < n; i++) {
        int b = badge_of(callers[i], id);

        if (b < from || b >= from + (int)n || seen[b - from])
            print_error("installation %lld: unexpected badge %d\n",
                        (long long)id, b);
        assert_true(b >= from && b < from + (int)n);
        assert_false(seen[b - from]);
        seen[b - from] = true;
    }
}

/* Parts of one lookup are never merged into one statement (each is its
 * own transaction with its own increment), and increments are taken back
 * once per listed id, never below 0. */
static void test_parts_and_undo(void **state)
{
    struct fx *f = *state;
    static struct find_res r[2];
    const char *jerry[] = {"Jerry"};
    const int64_t undo[] = {1, 3, 3, 4, 4, 4};
    struct done_res dr = {0};
    int done = 0;

    seed_installations(f->db);
    for (int i = 0; i < 2; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", jerry, 1, NULL, 0,
                             PGW_STORE_FIND_INCREMENT | PGW_STORE_FIND_ALONE,
                             on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, 2, 20000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].n, 4);
    }
    /* Two statements: one device, two increments, values 1 and 2. */
    assert_int_equal(badge_of(&r[0], 1) + badge_of(&r[1], 1), 3);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 5",
               "1:2,2:0,3:2,4:2,5:0");
    done = 0;
    dr.done = &done;
    assert_int_equal(pgw_store_undo_badges(f->store, undo, PGW_ARRAY_SIZE(undo),
                                           on_done, &dr),
                     0);
    run_until(f->base, &done, 1, 20000);
    assert_int_equal(dr.err, 0);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 5",
               "1:1,2:0,3:0,4:0,5:0");
    assert_int_equal(pgw_store_undo_badges(f->store, undo, 0, on_done, &dr),
                     PGW_ERR_INVAL);
}

/* Runs the lookups of |jerry| for |event| with |flags| as |n| parts at
 * once and returns the badges of installation 1 they got, summed. */
static int jerry_parts(struct fx *f, int64_t event, unsigned flags, int n)
{
    static const char *jerry[] = {"Jerry"};
    static struct find_res r[2];
    int done = 0, sum = 0;

    for (int i = 0; i < n; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(
                             f->store, "demo", jerry, 1, NULL, event,
                             PGW_STORE_FIND_INCREMENT | flags, on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, n, 20000);
    for (int i = 0; i < n; i++) {
        assert_int_equal(r[i].err, 0);
        assert_int_equal(r[i].n, 4);
        sum += badge_of(&r[i], 1);
    }
    return sum;
}

/* The parts of one event's lookup increment a device once, and both
 * return its value; so does the event worked again. Another event, a
 * merged lookup or a take-back in between makes the next increment count
 * again. */
static void test_parts_one_event(void **state)
{
    struct fx *f = *state;
    const int64_t one[] = {1};
    struct done_res dr = {0};
    int done = 0;

    seed_installations(f->db);
    assert_int_equal(jerry_parts(f, 77, PGW_STORE_FIND_ALONE, 2), 2);
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge || ':' || "
               "coalesce(badge_event_id, 0), ',' ORDER BY id) FROM "
               "installations WHERE id <= 4",
               "1:1:77,2:0:0,3:1:77,4:1:77");
    /* worked again: no new increment */
    assert_int_equal(jerry_parts(f, 77, PGW_STORE_FIND_ALONE, 1), 1);
    /* another event, then the first again: both count */
    assert_int_equal(jerry_parts(f, 78, PGW_STORE_FIND_ALONE, 1), 2);
    assert_int_equal(jerry_parts(f, 77, PGW_STORE_FIND_ALONE, 1), 3);
    /* two merged lookups (several events): +2, the event forgotten */
    assert_int_equal(jerry_parts(f, 77, 0, 2), 4 + 5);
    assert_int_equal(jerry_parts(f, 77, PGW_STORE_FIND_ALONE, 1), 6);
    /* a take-back forgets the event too */
    dr.done = &done;
    assert_int_equal(pgw_store_undo_badges(f->store, one, 1, on_done, &dr), 0);
    run_until(f->base, &done, 1, 20000);
    assert_int_equal(dr.err, 0);
    expect_sql(f->db,
               "SELECT badge || ':' || coalesce(badge_event_id, 0) FROM "
               "installations WHERE id = 1",
               "5:0");
    assert_int_equal(jerry_parts(f, 77, PGW_STORE_FIND_ALONE, 1), 6);
}

/* Lookups of |names| with |m| for |event|, |n_calls| of them queued at
 * once (each in |r|[i]), run to their end. */
static void find_set(struct fx *f, struct find_res *r, int n_calls,
                     const char *const *names, size_t n,
                     const struct pgw_installation_match *m, int64_t event,
                     unsigned flags)
{
    int done = 0;

    for (int i = 0; i < n_calls; i++) {
        r[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(f->store, "demo", names,
                                                      n, m, event, flags,
                                                      on_find, &r[i]),
                         0);
    }
    run_until(f->base, &done, n_calls, 10000);
    for (int i = 0; i < n_calls; i++)
        assert_int_equal(r[i].err, 0);
}

#define BADGES_SQL                                                             \
    "SELECT string_agg(id || ':' || badge || ':' || "                          \
    "coalesce(badge_event_id, 0), ',' ORDER BY id) FROM installations "        \
    "WHERE id <= 7"

/*
 * A numeric badge sets the badge of the lookup's iOS rows (as Parse
 * does), in the lookup's statement, and records its event; the next
 * increment continues from it. A team filter and the cache apply as to
 * an increment.
 */
static void test_badge_set(void **state)
{
    struct fx *f = *state;
    const char *jt[] = {"Jerry", "Tom"};
    const struct pgw_installation_match set5 = {.set_badge = true, .badge = 5},
                                        set0 = {.set_badge = true, .badge = -4},
                                        set9a = {.apns_team_id = "TEAMA",
                                                 .default_team = "TEAMB",
                                                 .set_badge = true,
                                                 .badge = 9};
    struct find_res r[2];

    seed_installations(f->db);
    exec_sql(f->db, "UPDATE installations SET badge = 3, badge_event_id = 7 "
                    "WHERE id IN (1, 2, 5)");
    find_set(f, r, 1, jt, 2, &set5, 42, 0);
    expect_id_list(&r[0], "1,2,3,4");
    assert_int_equal(badge_of(&r[0], 1), 5);
    assert_int_equal(badge_of(&r[0], 3), 5);
    assert_int_equal(badge_of(&r[0], 4), 5);
    /* Android rows and invalid ones are not written */
    expect_sql(f->db, BADGES_SQL,
               "1:5:42,2:3:7,3:5:42,4:5:42,5:3:7,6:0:0,7:0:0");

    /* the next increment continues from it */
    find(f, &r[0], jt, 2, NULL, true);
    assert_int_equal(badge_of(&r[0], 1), 6);
    assert_int_equal(badge_of(&r[0], 4), 6);

    /* a team filter: only the rows of that team are set */
    find_set(f, r, 1, jt, 2, &set9a, 43, 0);
    expect_id_list(&r[0], "2,3");
    assert_int_equal(badge_of(&r[0], 3), 9);
    expect_sql(f->db, BADGES_SQL, "1:6:0,2:3:7,3:9:43,4:6:0,5:3:7,6:0:0,7:0:0");

    /* two parts of one event (or the event worked again): the same
     * value; a negative number sets 0 */
    find_set(f, r, 2, jt, 2, &set0, 44, PGW_STORE_FIND_ALONE);
    assert_int_equal(badge_of(&r[0], 1), 0);
    assert_int_equal(badge_of(&r[1], 1), 0);
    expect_sql(f->db, BADGES_SQL,
               "1:0:44,2:3:7,3:0:44,4:0:44,5:3:7,6:0:0,7:0:0");

    /* a set with an increment is refused */
    assert_int_equal(
        pgw_store_find_installations(f->store, "demo", jt, 2, &set5, 0,
                                     PGW_STORE_FIND_INCREMENT, on_find, &r[0]),
        PGW_ERR_INVAL);

    /* With the cache: a set goes to Postgres, and the cached increments
     * that follow continue from it. */
    pgw_store_free(f->store);
    f->store = open_cached_store(f->base, f->db);
    cache_settle(f);
    find(f, &r[0], jt, 2, NULL, false); /* fills the cache */
    find_set(f, r, 1, jt, 2, &set5, 45, 0);
    assert_int_equal(cache_stats(f).hits, 0);
    assert_int_equal(badge_of(&r[0], 1), 5);
    find(f, &r[0], jt, 2, NULL, true);
    assert_int_equal(cache_stats(f).hits, 2);
    assert_int_equal(badge_of(&r[0], 1), 6);
    assert_int_equal(badge_of(&r[0], 4), 6);
}

/* Lookups queued in one loop iteration go as one statement: each caller
 * still gets its own rows, and a device several callers increment is
 * incremented once per caller, each getting its own value. */
static void test_find_batch(void **state)
{
    struct fx *f = *state;
    static struct find_res a, b, c, d, e, g, h, i2;
    const char *jt[] = {"Jerry", "Tom"};
    const char *tom[] = {"Tom"};
    const char *jerry[] = {"Jerry"};
    const char *js[] = {"Jerry", "Spike"};
    const char *dup[] = {"Jerry", "Jerry", "Tom"};
    int done = 0;
    struct {
        struct find_res *r;
        const char *app;
        const char *const *names;
        size_t n;
        const struct pgw_installation_match *team;
        bool inc;
    } q[] = {
        {&a, "demo", jt, 2, NULL, true},
        {&b, "demo", tom, 1, NULL, true},
        {&c, "other", jerry, 1, NULL, true},
        {&d, "demo", jerry, 1, &team_a_default, true},
        {&e, "demo", js, 2, NULL, false},
        {&g, "demo", NULL, 0, NULL, true},
        {&h, "demo", dup, 3, NULL, true},
        {&i2, "demo", jerry, 1, &team_a, false},
    };

    seed_installations(f->db);
    for (int round = 0; round < 2; round++) {
        done = 0;
        for (size_t i = 0; i < PGW_ARRAY_SIZE(q); i++) {
            *q[i].r = (struct find_res){.done = &done};
            assert_int_equal(
                pgw_store_find_installations(
                    f->store, q[i].app, q[i].names, q[i].n, q[i].team, 0,
                    q[i].inc ? PGW_STORE_FIND_INCREMENT : 0, on_find, q[i].r),
                0);
        }
        run_until(f->base, &done, (int)PGW_ARRAY_SIZE(q), 10000);
        expect_ids(&a, (const int64_t[]){1, 2, 3, 4}, 4);
        expect_ids(&b, (const int64_t[]){1}, 1);
        expect_ids(&c, (const int64_t[]){6}, 1);
        expect_ids(&d, (const int64_t[]){1, 2, 3}, 3);
        expect_ids(&e, (const int64_t[]){1, 2, 3, 4, 7}, 5);
        expect_ids(&g, NULL, 0);
        expect_ids(&h, (const int64_t[]){1, 2, 3, 4}, 4);
        expect_ids(&i2, (const int64_t[]){2, 3}, 2);
        /* increments: 1 by a, b, d, h; 3 by a, d, h; 4 by a, h (d's team
         * filter drops it); 6 by c; Android and e's rows untouched */
        expect_badges((struct find_res *const[]){&a, &b, &d, &h}, 4, 1,
                      1 + 4 * round);
        expect_badges((struct find_res *const[]){&a, &d, &h}, 3, 3,
                      1 + 3 * round);
        expect_badges((struct find_res *const[]){&a, &h}, 2, 4, 1 + 2 * round);
        assert_int_equal(c.rows[0].badge, 1 + round);
        assert_int_equal(badge_of(&a, 2), 0);
        assert_int_equal(badge_of(&d, 2), 0);
        assert_int_equal(badge_of(&e, 7), 0);
        assert_string_equal(d.rows[2].team, "TEAMA");
        assert_int_equal(e.rows[0].n_channels, 2);
        assert_string_equal(e.rows[4].channels[0], "Spike");
    }
    expect_sql(f->db,
               "SELECT string_agg(id || ':' || badge, ',' ORDER BY id) FROM "
               "installations WHERE id <= 7",
               "1:8,2:0,3:6,4:4,5:0,6:2,7:0");
}

/* -- outcomes -- */

static int64_t insert_one(struct fx *f, const char *msg, bool lease)
{
    struct ins_res r;
    bool in_call = false;
    int done = 0;

    r = (struct ins_res){.done = &done, .in_call = &in_call};
    insert(f, &r, "conv", msg, lease);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r.err, 0);
    return r.id;
}

static void test_finish_event(void **state)
{
    struct fx *f = *state;
    int64_t e1, e2, t = tu_wall_ms();
    struct done_res d1 = {0}, d2 = {0};
    int done = 0;
    char sql[512];
    struct pgw_store_failure fl[] = {
        /* 410 older than the re-registration: not invalidated */
        {3, "apns", PGW_STORE_FAIL_INVALIDATED, 410, "Unregistered",
         t - 3600 * 1000},
        /* 410 newer than the registration: invalidated */
        {4, "apns", PGW_STORE_FAIL_INVALIDATED, 410, "ExpiredToken", t + 5000},
        /* no timestamp: unconditional */
        {2, "fcm", PGW_STORE_FAIL_INVALIDATED, 404, "UNREGISTERED", 0},
        {1, "apns", PGW_STORE_FAIL_FAILED, 400, "BadTopic", 0},
        {7, "apns", PGW_STORE_FAIL_EXPIRED, 0, "expired", 0},
    };
    struct pgw_store_retry_new rt[] = {
        {11, "apns", "{\"apns-id\":\"x\",\"b\":\"\\\\,{}\"}", 1, t + 60000,
         t + 7 * 86400000LL, "TooManyRequests"},
        {12, "fcm", "{}", 2, t - 1000, t + 86400000LL, NULL},
    };
    struct pgw_store_event_result res1 = {
        .result = "sent",
        .pushes_total = 9,
        .pushes_delivered = 2,
        .failures = fl,
        .n_failures = PGW_ARRAY_SIZE(fl),
        .retries = rt,
        .n_retries = PGW_ARRAY_SIZE(rt),
    };
    struct pgw_store_event_result res2 = {.result = "no_devices"};

    seed_installations(f->db);
    exec_sql(f->db, "UPDATE installations SET updated_at = now() - "
                    "interval '1 hour' WHERE id IN (2, 4)");
    e1 = insert_one(f, "fin1", true);
    e2 = insert_one(f, "fin2", true);
    res1.event_id = e1;
    res2.event_id = e2;
    d1.done = d2.done = &done;
    /* both in one iteration: one transaction */
    assert_int_equal(pgw_store_finish_event(f->store, &res1, on_done, &d1), 0);
    assert_int_equal(pgw_store_finish_event(f->store, &res2, on_done, &d2), 0);
    run_until(f->base, &done, 2, 10000);
    assert_int_equal(d1.err, 0);
    assert_int_equal(d2.err, 0);

    snprintf(sql, sizeof(sql),
             "SELECT format('%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s', state, "
             "result, pushes_total, pushes_delivered, pushes_invalidated, "
             "pushes_failed, pushes_dropped, finished_at IS NULL, "
             "lease_owner IS NULL, lease_until = '-infinity') FROM events "
             "WHERE id = %lld",
             (long long)e1);
    expect_sql(f->db, sql, "retrying|sent|9|2|3|1|1|t|t|t");
    snprintf(sql, sizeof(sql),
             "SELECT format('%%s|%%s|%%s|%%s', state, result, finished_at IS "
             "NOT NULL, lease_owner IS NULL) FROM events WHERE id = %lld",
             (long long)e2);
    expect_sql(f->db, sql, "done|no_devices|t|t");
    expect_sql(f->db,
               "SELECT string_agg(format('%s:%s:%s:%s:%s:%s:%s', event_id = "
               "(SELECT min(id) FROM events), installation_id, app_id, "
               "provider, outcome, status, reason), ',' ORDER BY "
               "installation_id) FROM push_failures",
               "t:1:demo:apns:failed:400:BadTopic,"
               "t:2:demo:fcm:invalidated:404:UNREGISTERED,"
               "t:3:demo:apns:invalidated:410:Unregistered,"
               "t:4:demo:apns:invalidated:410:ExpiredToken,"
               "t:7:demo:apns:expired:0:expired");
    expect_sql(f->db,
               "SELECT string_agg(format('%s:%s:%s:%s', id, valid, "
               "coalesce(invalid_reason, '-'), invalidated_at IS NOT NULL), "
               "',' ORDER BY id) FROM installations WHERE id <= 4",
               "1:t:-:f,2:f:UNREGISTERED:t,3:t:-:f,4:f:ExpiredToken:t");
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(format('%%s:%%s:%%s:%%s:%%s:%%s:%%s:%%s:%%s', "
             "event_id = %lld, installation_id, app_id, provider, request, "
             "attempts, (extract(epoch FROM not_before) * 1000)::int8 - %lld, "
             "(extract(epoch FROM expires_at) * 1000)::int8 - %lld, "
             "coalesce(last_reason, '-')), ',' ORDER BY installation_id) "
             "FROM push_retries",
             (long long)e1, (long long)t, (long long)t);
    expect_sql(f->db, sql,
               "t:11:demo:apns:{\"apns-id\":\"x\",\"b\":\"\\\\,{}\"}:1:60000:"
               "604800000:TooManyRequests,"
               "t:12:demo:fcm:{}:2:-1000:86400000:-");
    /* the two finishes committed together */
    expect_sql(f->db,
               "SELECT count(DISTINCT xmin::text) FROM events WHERE "
               "state <> 'pending'",
               "1");
}

/* -- retries -- */

struct rclaim_res {
    int *done;
    int err;
    size_t n;
    int64_t ids[16], inst[16], event[16];
    int attempts[16];
};

static void on_rclaim(void *arg, int err, const struct pgw_store_retry *rt,
                      size_t n)
{
    struct rclaim_res *r = arg;

    r->err = err;
    r->n = n;
    for (size_t i = 0; i < n && i < 16; i++) {
        r->ids[i] = rt[i].id;
        r->inst[i] = rt[i].installation_id;
        r->event[i] = rt[i].event_id;
        r->attempts[i] = rt[i].attempts;
        assert_string_equal(rt[i].app_id, "demo");
        assert_non_null(rt[i].request);
        assert_true(rt[i].expires_at_ms > tu_wall_ms());
    }
    (*r->done)++;
}

static void claim_retries(struct fx *f, struct rclaim_res *r)
{
    int done = 0;

    *r = (struct rclaim_res){.done = &done};
    assert_int_equal(pgw_store_claim_retries(f->store, 16, 60000, on_rclaim, r),
                     0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r->err, 0);
}

static void finish_retry(struct fx *f, const struct pgw_store_retry_result *rr)
{
    struct done_res d = {0};
    int done = 0;

    d.done = &done;
    assert_int_equal(pgw_store_finish_retry(f->store, rr, on_done, &d), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(d.err, 0);
}

static int64_t retry_of(struct rclaim_res *r, int64_t inst)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->inst[i] == inst)
            return r->ids[i];
    fail_msg("no retry for installation %lld", (long long)inst);
    return 0;
}

/* After a takeover the old holder's end of the event is not written: no
 * failure or retry rows twice, and the new holder's outcome stands. */
static void test_finish_after_takeover(void **state)
{
    struct fx *f = *state;
    struct pgw_store *b = open_store(f->base, f->db, "test-owner-b", 1);
    struct claim_res cb = {0};
    struct done_res da = {0}, db = {0};
    struct pgw_store_failure fl[] = {
        {1, "apns", PGW_STORE_FAIL_FAILED, 400, "BadTopic", 0}};
    struct pgw_store_retry_new rt[] = {{2, "apns", "{}", 1,
                                        tu_wall_ms() + 60000,
                                        tu_wall_ms() + 86400000LL, NULL}};
    struct pgw_store_event_result res = {.result = "sent",
                                         .pushes_total = 2,
                                         .failures = fl,
                                         .n_failures = 1,
                                         .retries = rt,
                                         .n_retries = 1};
    int done = 0;
    char sql[256];
    int64_t e;

    wait_up(f->base, b, 10000);
    e = insert_one(f, "takeover", true);
    /* This process's lease runs out; b claims the event. */
    snprintf(sql, sizeof(sql),
             "UPDATE events SET lease_until = now() - interval '1 s' "
             "WHERE id = %lld",
             (long long)e);
    exec_sql(f->db, sql);
    cb.done = &done;
    assert_int_equal(pgw_store_claim_events(b, 10, 60000, on_claim, &cb), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(cb.n, 1);
    /* The old holder finishes late: nothing of it is written. */
    done = 0;
    res.event_id = e;
    da.done = &done;
    assert_int_equal(pgw_store_finish_event(f->store, &res, on_done, &da), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(da.err, 0);
    snprintf(sql, sizeof(sql),
             "SELECT state || ':' || lease_owner || ':' || (SELECT count(*) "
             "FROM push_failures) || ':' || (SELECT count(*) FROM "
             "push_retries) FROM events WHERE id = %lld",
             (long long)e);
    expect_sql(f->db, sql, "pending:test-owner-b:0:0");
    /* The new holder's end is. */
    done = 0;
    db.done = &done;
    res.n_retries = 0;
    assert_int_equal(pgw_store_finish_event(b, &res, on_done, &db), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(db.err, 0);
    snprintf(sql, sizeof(sql),
             "SELECT state || ':' || (SELECT count(*) FROM push_failures) "
             "FROM events WHERE id = %lld",
             (long long)e);
    expect_sql(f->db, sql, "done:1");
    /* The finishing statements find an event by id and lease owner only:
     * the schema keeps a lease off any event that is not pending. */
    snprintf(sql, sizeof(sql),
             "UPDATE events SET lease_owner = 'test-owner-b' WHERE id = %lld",
             (long long)e);
    assert_null(tu_db_query(f->db, sql));
    pgw_store_free(b);
}

/* An event whose first pass left four retries (installations 1 to 4;
 * 4 not due for an hour), its due ones claimed by the fixture's store. */
struct retry_fx {
    int64_t t, e;
    struct rclaim_res r;
};

static void start_retries(struct fx *f, struct retry_fx *x)
{
    struct done_res d = {0};
    int done = 0;
    int64_t t = tu_wall_ms();
    struct pgw_store_retry_new rt[] = {
        {1, "apns", "{\"r\":1}", 1, t - 1000, t + 86400000LL, "503"},
        {2, "fcm", "{\"r\":2}", 1, t - 1000, t + 86400000LL, "503"},
        {3, "apns", "{\"r\":3}", 1, t - 1000, t + 86400000LL, "503"},
        {4, "apns", "{\"r\":4}", 1, t + 3600000, t + 86400000LL, "429"},
    };
    struct pgw_store_event_result res = {
        .result = "sent", .pushes_total = 4, .retries = rt, .n_retries = 4};

    x->t = t;
    seed_installations(f->db);
    x->e = insert_one(f, "retry", true);
    res.event_id = x->e;
    d.done = &done;
    assert_int_equal(pgw_store_finish_event(f->store, &res, on_done, &d), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(d.err, 0);
    claim_retries(f, &x->r);
    assert_int_equal(x->r.n, 3);
}

/* The event's "state|delivered|invalidated|dropped|unfinished". */
static void expect_retry_event(struct fx *f, int64_t e, const char *want)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT format('%%s|%%s|%%s|%%s|%%s', state, pushes_delivered, "
             "pushes_invalidated, pushes_dropped, finished_at IS NULL) FROM "
             "events WHERE id = %lld",
             (long long)e);
    expect_sql(f->db, sql, want);
}

static void retry_delivered(struct fx *f, struct retry_fx *x, int64_t inst)
{
    struct pgw_store_retry_result rr = {
        .retry_id = retry_of(&x->r, inst), .event_id = x->e, .delivered = true};

    finish_retry(f, &rr);
}

/* Installation |inst|'s retry ends with |failure|. */
static void retry_failed(struct fx *f, struct retry_fx *x, int64_t inst,
                         const struct pgw_store_failure *failure)
{
    struct pgw_store_retry_result rr = {.retry_id = retry_of(&x->r, inst),
                                        .event_id = x->e,
                                        .failure = failure};

    finish_retry(f, &rr);
}

/* Installation 2's retry is to be tried again in 30 minutes. */
static void retry_2_again(struct fx *f, struct retry_fx *x)
{
    struct pgw_store_retry_result rr = {.retry_id = retry_of(&x->r, 2),
                                        .event_id = x->e,
                                        .attempts = 2,
                                        .not_before_ms = x->t + 1800000,
                                        .last_reason = "500"};

    finish_retry(f, &rr);
}

static const struct pgw_store_failure retry_gone = {
    3, "apns", PGW_STORE_FAIL_INVALIDATED, 410, "Unregistered", 0};

static void test_retries_claimed_when_due_and_once(void **state)
{
    struct fx *f = *state;
    struct retry_fx x;
    struct rclaim_res again;

    start_retries(f, &x);
    /* only the due ones; claimed ones are not claimed again */
    for (size_t i = 0; i < x.r.n; i++) {
        assert_int_equal(x.r.event[i], x.e);
        assert_true(x.r.inst[i] != 4);
        assert_int_equal(x.r.attempts[i], 1);
    }
    claim_retries(f, &again);
    assert_int_equal(again.n, 0);
    expect_sql(f->db,
               "SELECT count(*) FROM push_retries WHERE lease_owner = "
               "'test-owner-a' AND lease_until > now()",
               "3");
}

static void test_retry_delivered_goes_and_counts(void **state)
{
    struct fx *f = *state;
    struct retry_fx x;

    start_retries(f, &x);
    retry_delivered(f, &x, 1);
    expect_sql(f->db,
               "SELECT string_agg(installation_id::text, ',' ORDER BY "
               "installation_id) FROM push_retries",
               "2,3,4");
    expect_retry_event(f, x.e, "retrying|1|0|0|t");
}

static void test_retry_final_failure_invalidates(void **state)
{
    struct fx *f = *state;
    struct retry_fx x;

    start_retries(f, &x);
    retry_failed(f, &x, 3, &retry_gone);
    expect_retry_event(f, x.e, "retrying|0|1|0|t");
    expect_sql(f->db,
               "SELECT format('%s|%s', valid, invalid_reason) FROM "
               "installations WHERE id = 3",
               "f|Unregistered");
    expect_sql(f->db,
               "SELECT string_agg(format('%s:%s:%s:%s', installation_id, "
               "provider, outcome, reason), ',') FROM push_failures",
               "3:apns:invalidated:Unregistered");
    expect_sql(f->db,
               "SELECT count(*) FROM push_retries WHERE "
               "installation_id = 3",
               "0");
}

static void test_retry_again_waits_unleased(void **state)
{
    struct fx *f = *state;
    struct retry_fx x;

    start_retries(f, &x);
    /* again: later, lease released */
    retry_2_again(f, &x);
    expect_sql(f->db,
               "SELECT string_agg(format('%s:%s:%s:%s', installation_id, "
               "attempts, last_reason, lease_owner IS NULL AND lease_until = "
               "'-infinity'), ',' ORDER BY installation_id) FROM "
               "push_retries WHERE installation_id IN (2, 4)",
               "2:2:500:t,4:1:429:t");
    expect_retry_event(f, x.e, "retrying|0|0|0|t");
    claim_retries(f, &x.r);
    assert_int_equal(x.r.n, 0); /* 2 is not due yet, 4 neither */
}

static void test_event_done_when_its_last_retry_ends(void **state)
{
    struct fx *f = *state;
    struct retry_fx x;
    struct pgw_store_failure expired = {4, "apns",    PGW_STORE_FAIL_EXPIRED,
                                        0, "expired", 0};

    start_retries(f, &x);
    retry_delivered(f, &x, 1);
    retry_failed(f, &x, 3, &retry_gone);
    retry_2_again(f, &x);
    /* the last two end: the event is done */
    exec_sql(f->db, "UPDATE push_retries SET not_before = now() - interval "
                    "'1 second'");
    claim_retries(f, &x.r);
    assert_int_equal(x.r.n, 2);
    retry_delivered(f, &x, 2);
    expect_retry_event(f, x.e, "retrying|2|1|0|t");
    retry_failed(f, &x, 4, &expired);
    expect_retry_event(f, x.e, "done|2|1|1|f");
    expect_sql(f->db, "SELECT count(*) FROM push_retries", "0");
    expect_sql(f->db, "SELECT count(*) FROM push_failures", "2");
}

/* -- backlog -- */

struct count_res {
    int *done;
    int err;
    int64_t n;
};

static void on_count(void *arg, int err, int64_t n)
{
    struct count_res *r = arg;

    r->err = err;
    r->n = n;
    (*r->done)++;
}

/*
 * Every connection of a pool of up to PGW_STORE_MAX_POOL is used, and the
 * output queued on it in one loop iteration is written. The lookups of
 * one iteration go one per connection, in order, when all are idle; the
 * 65th carries more than a socket buffer takes at once, so what libpq
 * could not write must be flushed later, or its answer never comes.
 */
static void test_pool_beyond_64(void **state)
{
    enum { POOL = 70, SMALL = 64, NAMES = 50000 };
    struct fx *f = *state;
    struct pgw_store *s = open_store(f->base, f->db, "test-owner-p", POOL);
    struct find_res *small = calloc(SMALL, sizeof(*small));
    const char **names = calloc(NAMES, sizeof(*names));
    char *text = malloc((size_t)NAMES * 80);
    const char *one[] = {"Tom"};
    struct find_res big;
    int done = 0;
    int64_t deadline = tu_wall_ms() + 30000;

    assert_non_null(small);
    assert_non_null(names);
    assert_non_null(text);
    exec_sql(f->db, "INSERT INTO installations (id, app_id, device_type, "
                    "device_token, channels) VALUES "
                    "(1, 'demo', 'android', 'tok1', '{last-of-many}')");
    for (int i = 0; i < NAMES; i++) {
        names[i] = text + (size_t)i * 80;
        snprintf(text + (size_t)i * 80, 80, "a-name-long-enough-to-fill-%050d",
                 i);
    }
    names[NAMES - 1] = "last-of-many";
    /* every connection up, none used yet */
    {
        struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
        struct timeval tv = {0, 20000};

        event_add(tick, &tv);
        while (pgw_store_conns_up(s) < POOL && tu_wall_ms() < deadline)
            event_base_loop(f->base, EVLOOP_ONCE);
        event_free(tick);
    }
    assert_int_equal(pgw_store_conns_up(s), POOL);
    for (int i = 0; i < SMALL; i++) {
        small[i] = (struct find_res){.done = &done};
        assert_int_equal(pgw_store_find_installations(s, "demo", one, 1, NULL,
                                                      0, PGW_STORE_FIND_ALONE,
                                                      on_find, &small[i]),
                         0);
    }
    big = (struct find_res){.done = &done};
    assert_int_equal(pgw_store_find_installations(s, "demo", names, NAMES, NULL,
                                                  0, PGW_STORE_FIND_ALONE,
                                                  on_find, &big),
                     0);
    run_until(f->base, &done, SMALL + 1, 20000);
    for (int i = 0; i < SMALL; i++) {
        assert_int_equal(small[i].err, 0);
        assert_int_equal(small[i].n, 0);
    }
    assert_int_equal(big.err, 0);
    assert_int_equal(big.n, 1);
    assert_int_equal(big.rows[0].id, 1);
    pgw_store_free(s);
    free(text);
    free(names);
    free(small);
}

static void test_count_backlog(void **state)
{
    struct fx *f = *state;
    struct count_res c = {0};
    int done = 0;

    insert_one(f, "b1", false);
    insert_one(f, "b2", false);
    insert_one(f, "b3", false);
    exec_sql(f->db, "UPDATE events SET state = 'done' WHERE msg_id = 'b1'");
    exec_sql(f->db, "UPDATE events SET state = 'retrying' WHERE msg_id = 'b2'");
    c.done = &done;
    assert_int_equal(pgw_store_count_backlog(f->store, on_count, &c), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.n, 2);
}

struct next_res {
    int *done;
    int err;
    int64_t ms;
};

static void on_next_due(void *arg, int err, int64_t ms)
{
    struct next_res *r = arg;

    r->err = err;
    r->ms = ms;
    (*r->done)++;
}

static int64_t next_due(struct fx *f)
{
    int done = 0;
    struct next_res r = {.done = &done, .ms = -2};

    assert_int_equal(pgw_store_next_api_push(f->store, on_next_due, &r), 0);
    run_until(f->base, &done, 1, 10000);
    assert_int_equal(r.err, 0);
    return r.ms;
}

/* Nothing scheduled is -1, not "due now": the sender asks again after
 * each claim when it is told 0 (broadcast.c, on_next_due). */
static void test_next_api_push_due(void **state)
{
    struct fx *f = *state;
    int64_t ms;

#define API_PUSH(at, st)                                                       \
    "INSERT INTO api_pushes (app_id, data, push_at, expires_at, state) "       \
    "VALUES ('demo', '{}', now() + interval '" at "', now() + interval "       \
    "'2 days', '" st "') RETURNING id"
    assert_int_equal(next_due(f), -1);
    exec_sql(f->db, API_PUSH("-1 minute", "scheduled"));
    exec_sql(f->db, API_PUSH("1 hour", "done"));
    assert_int_equal(next_due(f), -1);
    exec_sql(f->db, API_PUSH("1 hour", "scheduled"));
#undef API_PUSH
    ms = next_due(f);
    assert_true(ms > 3590000 && ms <= 3600000);
}

/* -- an unavailable database -- */

static int closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd); /* nobody listens there now */
    return port;
}

static void test_unavailable(void **state)
{
    struct event_base *base = event_base_new();
    struct pgw_store *s;
    struct ins_res r[3];
    struct count_res c = {0};
    bool in_call = false;
    int done = 0;
    char conninfo[128];
    int64_t t0;
    struct pgw_store_new_event ev = {
        .app_id = "demo", .conv_id = "c", .body = "{}", .body_len = 2};

    (void)state;
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d user=nobody dbname=none "
             "connect_timeout=2",
             closed_port());
    s = open_store(base, conninfo, "test-owner-x", 2);
    /* let the first attempts fail */
    {
        struct event *tick = event_new(base, -1, 0, on_tick, NULL);
        struct timeval tv = {0, 50000};
        event_add(tick, &tv);
        event_base_loop(base, EVLOOP_ONCE);
        event_free(tick);
    }
    assert_false(pgw_store_is_up(s));
    assert_true(strlen(pgw_store_last_error(s)) > 0);
    t0 = tu_wall_ms();
    for (int i = 0; i < 3; i++) {
        r[i] = (struct ins_res){.done = &done, .in_call = &in_call};
        in_call = true;
        assert_int_equal(pgw_store_insert_event(s, &ev, on_insert, &r[i]), 0);
        in_call = false;
    }
    c.done = &done;
    assert_int_equal(pgw_store_count_backlog(s, on_count, &c), 0);
    run_until(base, &done, 4, 2000);
    assert_true(tu_wall_ms() - t0 < 1000); /* fail fast, no waiting */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].err, PGW_ERR_DB);
        assert_int_equal(r[i].calls, 1);
    }
    assert_int_equal(c.err, PGW_ERR_DB);
    /* queued at free: closed, inside the call */
    done = 0;
    c = (struct count_res){.done = &done};
    assert_int_equal(pgw_store_count_backlog(s, on_count, &c), 0);
    pgw_store_free(s);
    assert_int_equal(done, 1);
    assert_int_equal(c.err, PGW_ERR_CLOSED);
    event_base_free(base);
}

/* -- a database restarted under a running store -- */

static void test_restart_recovers(void **state)
{
    const char *bin = getenv("PUSHGW_TEST_PGBIN");
    struct event_base *base = NULL;
    struct pgw_store *s = NULL;
    struct ins_res r[3];
    bool in_call = false;
    int done = 0;
    char *pg_dir, *conninfo, path[600];
    struct pgw_store_new_event ev = {
        .app_id = "demo", .conv_id = "c", .body = "{}", .body_len = 2};

    (void)state;
    if (!getenv("PUSHGW_TEST_DATABASE_URL"))
        skip();
    snprintf(path, sizeof(path), "%s/initdb",
             bin ? bin : "/usr/lib/postgresql/15/bin");
    if (access(path, X_OK) != 0) {
        print_message("no PostgreSQL server binaries for '%s': skipped\n",
                      path);
        skip();
    }
    pg_dir = tu_mkdtemp();
    conninfo = tu_pg_create(pg_dir);
    tu_db_migrate(conninfo);

    base = event_base_new();
    s = open_store(base, conninfo, "test-owner-r", 2);
    wait_up(base, s, 10000);
    for (int i = 0; i < 3; i++)
        r[i] = (struct ins_res){.done = &done, .in_call = &in_call};
    assert_int_equal(pgw_store_insert_event(s, &ev, on_insert, &r[0]), 0);
    run_until(base, &done, 1, 10000);
    assert_int_equal(r[0].err, 0);

    /* the server goes away: the store notices, operations fail fast */
    tu_pg_ctl(pg_dir, "stop");
    {
        struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
        struct timeval tv = {0, 20000};
        int64_t deadline = tu_wall_ms() + 10000;
        event_add(tick, &tv);
        while (pgw_store_is_up(s) && tu_wall_ms() < deadline)
            event_base_loop(base, EVLOOP_ONCE);
        event_free(tick);
    }
    assert_false(pgw_store_is_up(s));
    assert_true(strlen(pgw_store_last_error(s)) > 0);
    assert_int_equal(pgw_store_insert_event(s, &ev, on_insert, &r[1]), 0);
    run_until(base, &done, 2, 2000);
    assert_int_equal(r[1].err, PGW_ERR_DB);

    /* back again: recovered without a restart of the store */
    tu_pg_ctl(pg_dir, "start");
    wait_up(base, s, 15000);
    assert_int_equal(strlen(pgw_store_last_error(s)), 0);
    assert_int_equal(pgw_store_insert_event(s, &ev, on_insert, &r[2]), 0);
    run_until(base, &done, 3, 10000);
    assert_int_equal(r[2].err, 0);
    assert_true(r[2].id > r[0].id);
    expect_sql(conninfo, "SELECT count(*) FROM events", "2");

    pgw_store_free(s);
    event_base_free(base);
    tu_pg_ctl(pg_dir, "stop");
    tu_rm_rf(pg_dir);
    free(pg_dir);
    free(conninfo);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest queue[] = {
        cmocka_unit_test_setup_teardown(test_insert_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_insert_duplicate_of_stored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_insert_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_of_nothing_is_empty, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_owners_claim_each_event_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_lease_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_renewal_moves_own_leases_only,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_released_events_are_claimable_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_after_takeover, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_count_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_api_push_due, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pool_beyond_64, setup, teardown),
    };
    const struct CMUnitTest retry[] = {
        cmocka_unit_test_setup_teardown(test_retries_claimed_when_due_and_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_delivered_goes_and_counts,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_final_failure_invalidates,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_again_waits_unleased, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_event_done_when_its_last_retry_ends, setup, teardown),
        cmocka_unit_test(test_unavailable),
    };
    const struct CMUnitTest cache[] = {
        cmocka_unit_test_setup_teardown(test_find_installations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cache_fills_then_answers,
                                        setup_cached, teardown),
        cmocka_unit_test_setup_teardown(test_cache_increments_in_postgres,
                                        setup_cached, teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_merged_lookups_get_distinct_badges, setup_cached,
            teardown),
        cmocka_unit_test_setup_teardown(test_cache_same_event_increments_once,
                                        setup_cached, teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_parts_of_an_event_increment_once, setup_cached,
            teardown),
        cmocka_unit_test_setup_teardown(test_cache_hears_every_row_change,
                                        setup_cached, teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_forgets_the_app_on_a_long_change, setup_cached,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_unheard_change_skips_invalid_rows, setup_cached,
            teardown),
        cmocka_unit_test_setup_teardown(test_cache_truncate_empties_it,
                                        setup_cached, teardown),
        cmocka_unit_test_setup_teardown(
            test_cache_waiting_lookup_survives_a_notification, setup_cached,
            teardown),
        cmocka_unit_test_setup_teardown(test_cache_listener_lost, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cache_lock_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cache_needs_triggers, setup,
                                        teardown),
    };
    const struct CMUnitTest badge[] = {
        cmocka_unit_test_setup_teardown(test_updated_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_badge_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_badge_lock_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_badge_lock_order_plan, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_page_lock_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parts_and_undo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parts_one_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_badge_set, setup, teardown),
    };
    const struct CMUnitTest restart[] = {
        cmocka_unit_test(test_restart_recovers),
    };
    const struct tu_part parts[] = {
        TU_PART("queue", queue, NULL, NULL),
        TU_PART("retry", retry, NULL, NULL),
        TU_PART("cache", cache, NULL, NULL),
        TU_PART("badge", badge, NULL, NULL),
        TU_PART("restart", restart, NULL, NULL),
    };
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
