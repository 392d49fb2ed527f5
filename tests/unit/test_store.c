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

#include "store.h"

struct fx {
    char *db;
    struct event_base *base;
    struct pgw_store *store;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void migrate(const char *db)
{
    struct pgw_diag diag;
    FILE *out = fopen("/dev/null", "w");
    int rc;

    assert_non_null(out);
    pgw_diag_init(&diag);
    rc = pgw_store_migrate(db, PUSHGW_SOURCE_DIR "/migrations", out, &diag);
    for (size_t i = 0; i < diag.n; i++)
        print_error("%s\n", diag.msgs[i]);
    pgw_diag_release(&diag);
    fclose(out);
    assert_int_equal(rc, 0);
}

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
    int64_t deadline = now_ms() + ms;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (*counter < target && now_ms() < deadline)
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
    int64_t deadline = now_ms() + ms;

    assert_non_null(tick);
    event_add(tick, &tv);
    while (!up_flag(store) && now_ms() < deadline)
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

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    f->db = tu_db_create("pgw_store");
    migrate(f->db);
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

static void __attribute__((unused)) exec_sql(const char *db, const char *sql)
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_insert_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
