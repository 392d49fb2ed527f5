/*
 * Durability and operations of the real `pushgw serve`: SIGKILL after
 * acknowledging, two gateways on one database (and one of them killed),
 * Postgres stopped and started under load, SIGHUP with a broken template,
 * SIGTERM draining.
 */
#include "pushgw.h"
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOK_1 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc01"
#define TOK_2 "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc02"
#define WAIT_MS 20000

static int post(struct tu_svc *s, int i)
{
    char body[512];
    char *resp = NULL;
    int st;

    snprintf(body, sizeof(body),
             "{\"fromPeer\":\"Spike\",\"convId\":\"c%d\",\"offlinePeers\":"
             "[\"Jerry\"],\"timestamp\":%lld,\"msgId\":\"m%d\","
             "\"pushData\":{\"alert\":\"message %d\"}}",
             i, tu_wall_ms(), i, i);
    st = tu_svc_post(s, "/v1/apps/demo/receivers-offline", "demo-hook-key-0001",
                     NULL, body, &resp);
    free(resp);
    return st;
}

/* How many pushes of |file| carry "message |i|" for |token|. */
static int count_msg(const char *file, const char *token, int i)
{
    cJSON *recs = tu_records_read(file);
    cJSON *r;
    char want[64];
    int n = 0;

    snprintf(want, sizeof(want), "message %d", i);
    cJSON_ArrayForEach(r, recs)
    {
        cJSON *t = cJSON_GetObjectItem(r, "token");
        cJSON *b = cJSON_GetObjectItem(r, "body");
        cJSON *aps = cJSON_GetObjectItem(b, "aps");
        cJSON *alert = cJSON_GetObjectItem(aps, "alert");
        cJSON *st = cJSON_GetObjectItem(r, "status");
        if (cJSON_IsString(t) && strcmp(t->valuestring, token) == 0 &&
            cJSON_IsString(alert) && strcmp(alert->valuestring, want) == 0 &&
            cJSON_IsNumber(st) && st->valueint == 200)
            n++;
    }
    cJSON_Delete(recs);
    return n;
}

static void wait_done(struct tu_svc *s, int n)
{
    tu_svc_wait_events_done(s, n, WAIT_MS);
}

/* Killed with SIGKILL after acknowledging, while the pushes were waiting
 * on a slow APNs: restarted, every acknowledged event is delivered. */
static void test_sigkill_after_ack(void **state)
{
    static const char *const slow[] = {"--delay-ms", "1500", NULL};
    struct tu_svc_options o = {.apns_args = slow,
                               .delivery_ini = "lease_ms = 1000\n"};
    struct tu_svc s;
    enum { N = 20 };
    (void)state;

    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "demo", "ios", TOK_1, "{Jerry}", NULL);
    tu_svc_add_device(&s, "demo", "ios", TOK_2, "{Jerry}", NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(post(&s, i), 202);
    assert_int_equal(tu_svc_kill_gateway(&s, SIGKILL), 128 + SIGKILL);
    tu_svc_start_gateway(&s);
    wait_done(&s, N);
    for (int i = 0; i < N; i++) {
        /* At least once; twice only for what was in flight at the kill. */
        if (count_msg(s.apns.record, TOK_1, i) < 1 ||
            count_msg(s.apns.record, TOK_2, i) < 1)
            fail_msg("event %d was acknowledged but not delivered", i);
    }
    char *v = tu_svc_query(&s, "SELECT count(*) FROM events WHERE state <> "
                               "'done' OR lease_owner IS NOT NULL");
    assert_string_equal(v, "0");
    free(v);
    tu_svc_stop(&s);
}

/* Two gateways on one database: each event is worked by one of them;
 * one killed, the other finishes its events after the lease expires.
 * The lease (renewed every third of it) outlasts a gateway stalled for a
 * second or two on a loaded machine: a lapsed one lets the other gateway
 * push the event again. */
static void test_two_gateways(void **state)
{
    static const char *const slow[] = {"--delay-ms", "2000", NULL};
    struct tu_svc_options oa = {.apns_args = slow,
                                .delivery_ini = "lease_ms = 3000\n"};
    struct tu_svc a, b;
    enum { N = 10 };
    (void)state;

    tu_svc_start(&a, &oa);
    struct tu_svc_options ob = {.reuse_db = a.db,
                                .delivery_ini = "lease_ms = 3000\n"};
    tu_svc_start(&b, &ob);
    tu_svc_add_device(&a, "demo", "ios", TOK_1, "{Jerry}", NULL);

    /* Alternate between the two: every event pushed exactly once. */
    for (int i = 0; i < N; i++)
        assert_int_equal(post(i % 2 ? &b : &a, i), 202);
    wait_done(&a, N);
    for (int i = 0; i < N; i++) {
        int n = count_msg(a.apns.record, TOK_1, i) +
                count_msg(b.apns.record, TOK_1, i);
        if (n != 1)
            fail_msg("event %d pushed %d times", i, n);
    }

    /* A takes events, then dies with them in flight: B finishes them. */
    for (int i = N; i < N + 4; i++)
        assert_int_equal(post(&a, i), 202);
    assert_true(tu_records_wait(a.apns.record, 1, WAIT_MS) >= 1);
    assert_int_equal(tu_svc_kill_gateway(&a, SIGKILL), 128 + SIGKILL);
    wait_done(&b, N + 4);
    for (int i = N; i < N + 4; i++)
        if (count_msg(b.apns.record, TOK_1, i) != 1)
            fail_msg("event %d was not taken over by the other gateway", i);
    tu_svc_stop(&b);
    tu_svc_stop(&a);
}

/* More events than the gateway works on at once: the rest wait in the
 * database and are taken as soon as room frees, not at the next claim
 * tick (10 minutes here): before, a backlog drained at 200 events a tick. */
static void test_backlog_taken_as_room_frees(void **state)
{
    struct tu_svc_options o = {.delivery_ini = "events_in_memory = 2\n"
                                               "claim_interval_ms = 600000\n"};
    struct tu_svc s;
    enum { N = 40 };
    (void)state;

    char body[N * 200 + 32];
    size_t len;
    char *resp = NULL;

    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "demo", "ios", TOK_1, "{Jerry}", NULL);
    /* One batch: two events are taken at intake, the others are not. */
    len = (size_t)snprintf(body, sizeof(body), "{\"events\":[");
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(
            body + len, sizeof(body) - len,
            "%s{\"fromPeer\":\"Spike\",\"convId\":\"c%d\","
            "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
            "\"msgId\":\"m%d\",\"pushData\":{\"alert\":\"message %d\"}}",
            i ? "," : "", i, tu_wall_ms(), i, i);
    snprintf(body + len, sizeof(body) - len, "]}");
    assert_int_equal(tu_svc_post(&s, "/v1/apps/demo/receivers-offline/batch",
                                 "demo-hook-key-0001", NULL, body, &resp),
                     202);
    free(resp);
    wait_done(&s, N);
    for (int i = 0; i < N; i++)
        if (count_msg(s.apns.record, TOK_1, i) != 1)
            fail_msg("event %d pushed %d times", i,
                     count_msg(s.apns.record, TOK_1, i));
    tu_svc_stop(&s);
}

/* Postgres stopped during a run: 503 while down, no acknowledged event
 * lost, recovery without a restart of pushgw. */
static void test_database_outage(void **state)
{
    char *pgdir = tu_mkdtemp();
    char *conninfo = tu_pg_create(pgdir);
    /* An event whose lookup failed in the outage is worked again once
     * its lease expires (dispatch.c, job_lookup_done): a lease shorter
     * than the waits below, so the scenario does not depend on whether
     * the first events went out before Postgres stopped. */
    struct tu_svc_options o = {.db = conninfo,
                               .delivery_ini = "lease_ms = 3000\n"};
    struct tu_svc s;
    int acked[64] = {0};
    int n_acked = 0, saw_503 = 0;
    (void)state;

    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "demo", "ios", TOK_1, "{Jerry}", NULL);
    for (int i = 0; i < 5; i++)
        if (post(&s, i) == 202)
            acked[n_acked++] = i;
    tu_pg_ctl(pgdir, "stop");
    for (int i = 5; i < 10; i++) {
        int st = post(&s, i);
        if (st == 202)
            acked[n_acked++] = i;
        else if (st == 503)
            saw_503++;
        else
            fail_msg("status %d while the database is down", st);
    }
    assert_true(saw_503 > 0);
    tu_pg_ctl(pgdir, "start");
    /* Recovery: accepted again within a few seconds. */
    int ok = 0, i = 10;
    TU_POLL_UNTIL(ok, 20000)
    {
        if (post(&s, i) == 202) {
            acked[n_acked++] = i;
            ok = 1;
        }
        i++;
    }
    assert_true(ok);
    for (int k = 0; k < n_acked; k++) {
        i = acked[k];
        TU_POLL_UNTIL(count_msg(s.apns.record, TOK_1, i) >= 1, 20000);
        if (count_msg(s.apns.record, TOK_1, i) < 1)
            fail_msg("acknowledged event %d lost after the outage", i);
    }
    tu_svc_stop(&s);
    tu_pg_ctl(pgdir, "stop");
    tu_rm_rf(pgdir);
    free(pgdir);
    free(conninfo);
}

static char *alert_of_last(const char *file)
{
    cJSON *recs = tu_records_read(file);
    cJSON *last = cJSON_GetArrayItem(recs, cJSON_GetArraySize(recs) - 1);
    cJSON *alert = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(last, "body"), "aps"), "alert");
    char *out = strdup(cJSON_IsString(alert) ? alert->valuestring : "");
    cJSON_Delete(recs);
    return out;
}

static void post_template_event(struct tu_svc *s, int i, size_t want_lines)
{
    char body[512];
    char *resp = NULL;

    snprintf(body, sizeof(body),
             "{\"fromPeer\":\"Spike\",\"convId\":\"t%d\",\"offlinePeers\":"
             "[\"Jerry\"],\"timestamp\":%lld}",
             i, tu_wall_ms());
    assert_int_equal(tu_svc_post(s, "/v1/apps/demo/receivers-offline",
                                 "demo-hook-key-0001", NULL, body, &resp),
                     202);
    free(resp);
    assert_int_equal(tu_records_wait(s->apns.record, want_lines, WAIT_MS),
                     want_lines);
}

/* Reloads the gateway has finished, applied or refused. */
static int reloads_done(struct tu_svc *s)
{
    char *log = tu_read_file(s->gw.log);
    int n = 0;

    for (const char *p = log;
         p && (p = strstr(p, "reloaded the configuration")); p++)
        n++;
    for (const char *p = log;
         p && (p = strstr(p, "keeping the running configuration")); p++)
        n++;
    free(log);
    return n;
}

/* Sends SIGHUP and waits until the gateway has dealt with it. */
static void reload(struct tu_svc *s)
{
    int before = reloads_done(s);

    kill(s->gw.pid, SIGHUP);
    TU_POLL_UNTIL(reloads_done(s) > before, WAIT_MS);
    assert_true(reloads_done(s) > before);
}

/* A service with one iOS device, and its templates folder. */
struct reload_fx {
    struct tu_svc s;
    char *tdir;
};

static int start_reload_fx(void **state, const struct tu_svc_options *o)
{
    struct reload_fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    tu_svc_start(&f->s, o);
    tu_svc_add_device(&f->s, "demo", "ios", TOK_1, "{Jerry}", NULL);
    f->tdir = tu_path(f->s.dir, "templates");
    *state = f;
    return 0;
}

static int setup_reload(void **state)
{
    return start_reload_fx(state, NULL);
}

static int setup_slow_apns(void **state)
{
    static const char *const slow[] = {"--delay-ms", "700", NULL};
    static const struct tu_svc_options o = {.apns_args = slow};

    return start_reload_fx(state, &o);
}

static int teardown_reload(void **state)
{
    struct reload_fx *f = *state;

    tu_svc_stop(&f->s);
    free(f->tdir);
    free(f);
    return 0;
}

static void write_template(struct reload_fx *f, const char *json)
{
    free(tu_write_file(f->tdir, "demo.json", json, 0644));
}

static void expect_alert(struct reload_fx *f, int i, size_t lines,
                         const char *want)
{
    char *a;

    post_template_event(&f->s, i, lines);
    a = alert_of_last(f->s.apns.record);
    assert_string_equal(a, want);
    free(a);
}

/* SIGHUP loads a new template. */
static void test_reload_applies_template(void **state)
{
    struct reload_fx *f = *state;

    write_template(f, "{\"alert\":\"v1 ${convId}\"}");
    reload(&f->s);
    expect_alert(f, 1, 1, "v1 t1");
}

/* SIGHUP with a broken template keeps the running set and says why. */
static void test_reload_broken_template_keeps_old_set(void **state)
{
    struct reload_fx *f = *state;
    char *log;

    write_template(f, "{\"alert\":\"v1 ${convId}\"}");
    reload(&f->s);
    write_template(f, "{\"alert\": broken");
    reload(&f->s);
    expect_alert(f, 2, 1, "v1 t2");
    log = tu_read_file(f->s.gw.log);
    assert_non_null(strstr(log, "reload failed"));
    assert_non_null(strstr(log, "demo.json"));
    free(log);
}

/* A good template after a refused reload is applied. */
static void test_reload_after_refused_one(void **state)
{
    struct reload_fx *f = *state;

    write_template(f, "{\"alert\": broken");
    reload(&f->s);
    write_template(f, "{\"alert\":\"v2\"}");
    reload(&f->s);
    expect_alert(f, 3, 1, "v2");
}

/* SIGTERM right after acknowledging: the slow pushes still finish, and
 * no event is left unfinished or leased. */
static void test_sigterm_drains_acknowledged(void **state)
{
    struct reload_fx *f = *state;
    char *v;

    for (int i = 100; i < 105; i++)
        assert_int_equal(post(&f->s, i), 202);
    assert_int_equal(tu_svc_kill_gateway(&f->s, SIGTERM), 0);
    for (int i = 100; i < 105; i++)
        assert_int_equal(count_msg(f->s.apns.record, TOK_1, i), 1);
    v = tu_svc_query(&f->s, "SELECT count(*) FROM events WHERE state <> "
                            "'done' OR lease_owner IS NOT NULL");
    assert_string_equal(v, "0");
    free(v);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest restarts[] = {
        cmocka_unit_test(test_sigkill_after_ack),
        cmocka_unit_test(test_two_gateways),
        cmocka_unit_test(test_database_outage),
    };
    const struct CMUnitTest reload[] = {
        cmocka_unit_test(test_backlog_taken_as_room_frees),
        cmocka_unit_test_setup_teardown(test_reload_applies_template,
                                        setup_reload, teardown_reload),
        cmocka_unit_test_setup_teardown(
            test_reload_broken_template_keeps_old_set, setup_reload,
            teardown_reload),
        cmocka_unit_test_setup_teardown(test_reload_after_refused_one,
                                        setup_reload, teardown_reload),
        cmocka_unit_test_setup_teardown(test_sigterm_drains_acknowledged,
                                        setup_slow_apns, teardown_reload),
    };
    const struct tu_part parts[] = {
        TU_PART("restarts", restarts, NULL, NULL),
        TU_PART("reload", reload, NULL, NULL),
    };
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
