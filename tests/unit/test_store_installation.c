/* The LeanCloud API's installation statements against a real Postgres:
 * reads, inserts and updates in one statement, a token moving between
 * installations, raced writes, deletes, and the cache forgetting. */
#include "testutil.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_installation.h"

#define TOKEN_A                                                                \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOKEN_B                                                                \
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fx {
    char *db;
    struct event_base *base;
    struct pgw_store *store;
};

struct res {
    int done;
    int err;
    size_t n;
    struct pgw_lc_installation rows[PGW_STORE_LC_MAX_ROWS];
    char versions[PGW_STORE_LC_MAX_ROWS][24];
    bool invalidated[PGW_STORE_LC_MAX_ROWS];
    char object_id[80];
    int64_t created_at, updated_at;
    bool created, found;
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void wait_done(struct fx *f, const int *done)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 20000};
    int64_t deadline = tu_wall_ms() + 10000;

    event_add(tick, &tv);
    while (!*done && tu_wall_ms() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(tick);
    assert_int_equal(*done, 1);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct pgw_store_options o = {.conninfo = NULL,
                                  .pool_size = 2,
                                  .owner = "test-lc",
                                  .cache_bytes = 1 << 20};
    struct pgw_store_cache_stats st = {0};
    struct event *tick;
    struct timeval tv = {0, 20000};
    int64_t deadline;

    f->db = tu_db_create_migrated("pgw_store_lc");
    f->base = event_base_new();
    o.conninfo = f->db;
    assert_int_equal(pgw_store_new(f->base, &o, &f->store), 0);
    tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &tv);
    deadline = tu_wall_ms() + 10000;
    while (!(st.live && pgw_store_is_up(f->store)) && tu_wall_ms() < deadline) {
        event_base_loop(f->base, EVLOOP_ONCE);
        pgw_store_get_cache_stats(f->store, &st);
    }
    event_free(tick);
    assert_true(st.live);
    *state = f;
    return 0;
}

static void res_release(struct res *r)
{
    for (size_t i = 0; i < r->n; i++)
        pgw_lc_installation_release(&r->rows[i]);
    memset(r, 0, sizeof(*r));
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

static void on_rows(void *arg, int err, const struct pgw_store_lc_row *rows,
                    size_t n)
{
    struct res *r = arg;

    r->err = err;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pgw_lc_installation_copy(&r->rows[i], &rows[i].inst),
                         0);
        memcpy(r->versions[i], rows[i].version, sizeof(r->versions[i]));
        r->invalidated[i] = rows[i].invalidated;
    }
    r->n = n;
    r->done = 1;
}

static void find(struct fx *f, struct res *r, const char *oid, const char *iid,
                 const char *tok)
{
    res_release(r);
    assert_int_equal(
        pgw_store_lc_find(f->store, "demo", oid, iid, tok, on_rows, r), 0);
    wait_done(f, &r->done);
    assert_int_equal(r->err, 0);
}

static void on_saved(void *arg, int err, const char *object_id,
                     int64_t created_at_ms, int64_t updated_at_ms, bool created)
{
    struct res *r = arg;

    r->err = err;
    if (!err) {
        pgw_copy_str(r->object_id, sizeof(r->object_id), object_id);
        r->created_at = created_at_ms;
        r->updated_at = updated_at_ms;
        r->created = created;
    }
    r->done = 1;
}

static int save(struct fx *f, const struct pgw_lc_installation *row,
                const char *version, bool revive, struct res *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(
        pgw_store_lc_save(f->store, "demo", row, version, revive, on_saved, r),
        0);
    wait_done(f, &r->done);
    return r->err;
}

static void make(struct pgw_lc_installation *row, const char *json)
{
    struct pgw_lc_error err;
    cJSON *o = cJSON_Parse(json);

    assert_non_null(o);
    assert_int_equal(pgw_lc_installation_init(row), 0);
    assert_int_equal(pgw_lc_installation_apply(row, o, 0, &err), 0);
    assert_int_equal(pgw_lc_installation_check(row, &err), 0);
    cJSON_Delete(o);
}

static void apply(struct pgw_lc_installation *row, const char *json)
{
    struct pgw_lc_error err;
    cJSON *o = cJSON_Parse(json);

    assert_int_equal(pgw_lc_installation_apply(row, o, 0, &err), 0);
    assert_int_equal(pgw_lc_installation_check(row, &err), 0);
    cJSON_Delete(o);
}

static void test_insert_update_find(void **state)
{
    struct fx *f = *state;
    struct pgw_lc_installation row;
    struct res r = {0}, q = {0};
    char oid[80];

    make(&row, "{\"deviceType\":\"ios\",\"deviceToken\":\"" TOKEN_A "\","
               "\"channels\":[\"Tom\"],\"badge\":2,\"appVersion\":\"1.0\","
               "\"deviceProfile\":\"p1\",\"timeZone\":\"UTC\"}");
    assert_int_equal(save(f, &row, NULL, false, &r), 0);
    assert_true(r.created);
    assert_int_equal(strlen(r.object_id), 24);
    assert_true(r.created_at > tu_wall_ms() - 60000);
    pgw_copy_str(oid, sizeof(oid), r.object_id);
    pgw_lc_installation_release(&row);

    find(f, &q, NULL, NULL, TOKEN_A);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.rows[0].object_id, oid);
    assert_string_equal(q.rows[0].device_type, "ios");
    assert_string_equal(q.rows[0].channels[0], "Tom");
    assert_int_equal(q.rows[0].badge, 2);
    assert_string_equal(q.rows[0].device_profile, "p1");
    assert_string_equal(
        cJSON_GetObjectItem(q.rows[0].extra, "appVersion")->valuestring, "1.0");

    /* update with the version read */
    assert_int_equal(pgw_lc_installation_copy(&row, &q.rows[0]), 0);
    apply(&row, "{\"channels\":{\"__op\":\"AddUnique\",\"objects\":[\"J\"]},"
                "\"badge\":0,\"appVersion\":{\"__op\":\"Delete\"}}");
    assert_int_equal(save(f, &row, q.versions[0], false, &r), 0);
    assert_false(r.created);
    assert_string_equal(r.object_id, oid);
    /* the same version again: the row changed since */
    assert_int_equal(save(f, &row, q.versions[0], false, &r), PGW_ERR_CONFLICT);
    pgw_lc_installation_release(&row);

    find(f, &q, oid, NULL, NULL);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.rows[0].n_channels, 2);
    assert_int_equal(q.rows[0].badge, 0);
    assert_null(cJSON_GetObjectItem(q.rows[0].extra, "appVersion"));
    res_release(&q);
}

static void test_token_moves(void **state)
{
    struct fx *f = *state;
    struct pgw_lc_installation a, b;
    struct res r = {0}, q = {0};
    char oid_b[80];

    make(&a, "{\"deviceType\":\"android\",\"installationId\":\"ia\","
             "\"vendor\":\"fcm\",\"registrationId\":\"fcm-token-1\"}");
    make(&b, "{\"deviceType\":\"android\",\"installationId\":\"ib\","
             "\"vendor\":\"fcm\",\"registrationId\":\"fcm-token-2\"}");
    assert_int_equal(save(f, &a, NULL, false, &r), 0);
    assert_int_equal(save(f, &b, NULL, false, &r), 0);
    pgw_copy_str(oid_b, sizeof(oid_b), r.object_id);
    /* a second insert of the same token, without a read: the old holder
     * goes */
    assert_int_equal(save(f, &b, NULL, false, &r), 0);
    assert_true(r.created);
    find(f, &q, oid_b, NULL, NULL);
    assert_int_equal(q.n, 0);

    /* installation ia takes fcm-token-2: the holder of it goes */
    find(f, &q, NULL, "ia", NULL);
    assert_int_equal(q.n, 1);
    pgw_lc_installation_release(&a);
    assert_int_equal(pgw_lc_installation_copy(&a, &q.rows[0]), 0);
    apply(&a, "{\"registrationId\":\"fcm-token-2\"}");
    assert_int_equal(save(f, &a, q.versions[0], false, &r), 0);
    find(f, &q, NULL, NULL, "fcm-token-2");
    assert_int_equal(q.n, 1);
    assert_string_equal(q.rows[0].installation_id, "ia");
    find(f, &q, NULL, "ib", NULL);
    assert_int_equal(q.n, 0);
    pgw_lc_installation_release(&a);
    pgw_lc_installation_release(&b);
    res_release(&q);
}

static void on_deleted(void *arg, int err, bool found)
{
    struct res *r = arg;

    r->err = err;
    r->found = found;
    r->done = 1;
}

static void test_delete_and_revive(void **state)
{
    struct fx *f = *state;
    struct pgw_lc_installation row;
    struct res r = {0}, q = {0};
    char oid[80];
    char *v;

    make(&row, "{\"deviceType\":\"ios\",\"deviceToken\":\"" TOKEN_B "\"}");
    assert_int_equal(save(f, &row, NULL, false, &r), 0);
    pgw_copy_str(oid, sizeof(oid), r.object_id);
    pgw_lc_installation_release(&row);
    v = tu_db_query(f->db, "UPDATE installations SET valid = false, "
                           "invalid_reason = 'Unregistered', invalidated_at = "
                           "now() WHERE device_token LIKE 'bbbb%' RETURNING "
                           "id");
    free(v);
    find(f, &q, oid, NULL, NULL);
    assert_true(q.invalidated[0]);
    assert_false(q.rows[0].valid);
    assert_int_equal(pgw_lc_installation_copy(&row, &q.rows[0]), 0);
    row.valid = true;
    assert_int_equal(save(f, &row, q.versions[0], true, &r), 0);
    pgw_lc_installation_release(&row);
    find(f, &q, oid, NULL, NULL);
    assert_true(q.rows[0].valid);
    assert_false(q.invalidated[0]);

    memset(&r, 0, sizeof(r));
    assert_int_equal(pgw_store_lc_delete(f->store, "demo", oid, on_deleted, &r),
                     0);
    wait_done(f, &r.done);
    assert_int_equal(r.err, 0);
    assert_true(r.found);
    memset(&r, 0, sizeof(r));
    assert_int_equal(pgw_store_lc_delete(f->store, "demo", oid, on_deleted, &r),
                     0);
    wait_done(f, &r.done);
    assert_false(r.found);
    res_release(&q);
}

struct lookup {
    int done;
    int err;
    size_t n;
};

static void on_lookup(void *arg, int err, const struct pgw_installation *in,
                      size_t n)
{
    struct lookup *l = arg;

    (void)in;
    l->err = err;
    l->n = n;
    l->done = 1;
}

static size_t lookup(struct fx *f, const char *name)
{
    struct lookup l = {0};
    const char *names[1] = {name};

    assert_int_equal(pgw_store_find_installations(f->store, "demo", names, 1,
                                                  NULL, 0, 0, on_lookup, &l),
                     0);
    wait_done(f, &l.done);
    assert_int_equal(l.err, 0);
    return l.n;
}

/* A registration is seen by the very next lookup, cache or not. */
static void test_cache_forgets(void **state)
{
    struct fx *f = *state;
    struct pgw_lc_installation row;
    struct res r = {0};

    assert_int_equal(lookup(f, "Spike"), 0);
    assert_int_equal(lookup(f, "Spike"), 0); /* cached now */
    make(&row, "{\"deviceType\":\"ios\",\"deviceToken\":\"" TOKEN_A "\","
               "\"channels\":[\"Spike\"]}");
    assert_int_equal(save(f, &row, NULL, false, &r), 0);
    pgw_lc_installation_release(&row);
    assert_int_equal(lookup(f, "Spike"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_update_find, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_revive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cache_forgets, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
