/*
 * The sender of API pushes (gateway/broadcast.c) end to end: requests are
 * inserted into api_pushes in SQL, as the push API stores them, and the
 * real `pushgw serve` sends them to the mock APNs and FCM. Each test
 * asserts what the mocks received and what api_pushes, push_failures,
 * push_retries and installations hold afterwards.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000

#define TOK_I(n)                                                               \
    "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc0" n

static int setup(void **state)
{
    struct tu_svc *s = calloc(1, sizeof(*s));
    tu_svc_start(s, NULL);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct tu_svc *s = *state;
    tu_svc_stop(s);
    free(s);
    return 0;
}

/* Inserts a request as the push API does; |extra_cols| / |extra_vals|
 * add columns (both "" for none). Returns its id. */
static long long insert_push(struct tu_svc *s, const char *query,
                             const char *data, const char *extra_cols,
                             const char *extra_vals)
{
    char *sql = NULL, *v;
    long long id;

    assert_true(asprintf(&sql,
                         "INSERT INTO api_pushes (app_id, query, data, "
                         "expires_at%s) VALUES ('demo', '%s', '%s', now() + "
                         "interval '1 day'%s) RETURNING id",
                         extra_cols, query, data, extra_vals) > 0);
    v = tu_svc_query(s, sql);
    if (!v || !*v)
        fail_msg("insert failed: %s", sql);
    id = atoll(v);
    free(v);
    free(sql);
    return id;
}

static void wait_push_done(struct tu_svc *s, long long id)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT state FROM api_pushes WHERE id = %lld",
             id);
    if (!tu_svc_wait_query(s, sql, "done", WAIT_MS)) {
        char *v = tu_svc_query(s, sql);
        fail_msg("push request %lld not done: %s", id, v ? v : "?");
    }
}

/* Asserts the request's counters and result, as
 * "devices/successes/invalid_tokens/errors/expired result". */
static void expect_push(struct tu_svc *s, long long id, const char *want)
{
    char sql[512];
    char *v;

    snprintf(sql, sizeof(sql),
             "SELECT devices || '/' || successes || '/' || invalid_tokens || "
             "'/' || errors || '/' || expired || ' ' || coalesce(result, '-') "
             "FROM api_pushes WHERE id = %lld",
             id);
    v = tu_svc_query(s, sql);
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

static int count_token(const char *file, const char *token)
{
    cJSON *recs = tu_records_read(file);
    cJSON *r;
    int n = 0;

    cJSON_ArrayForEach(r, recs)
    {
        cJSON *t = cJSON_GetObjectItem(r, "token");
        if (cJSON_IsString(t) && strcmp(t->valuestring, token) == 0)
            n++;
    }
    cJSON_Delete(recs);
    return n;
}

/* When the mock received |r|, ms since the epoch (tu_json_str prints
 * numbers with %g: too few digits). */
static double ts_of(const cJSON *r)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "ts_ms");

    return cJSON_IsNumber(t) ? t->valuedouble : 0;
}

/* |n| Android devices "fcm-<prefix>-<i>" on channel |channel|, in SQL. */
static void add_many(struct tu_svc *s, const char *prefix, int n,
                     const char *channel)
{
    char sql[512];
    char *v;

    snprintf(sql, sizeof(sql),
             "INSERT INTO installations (app_id, device_type, device_token, "
             "channels) SELECT 'demo', 'android', 'fcm-%s-' || g, "
             "ARRAY['%s'] FROM generate_series(1, %d) g RETURNING 1",
             prefix, channel, n);
    v = tu_svc_query(s, sql);
    assert_non_null(v);
    free(v);
}

/* A channel reaches exactly its valid devices, once each, with the
 * content rules of events: platform objects, badge Increment (once per
 * device), the request's profile. */
static void test_channel_exact(void **state)
{
    struct tu_svc *s = *state;
    long long id;
    cJSON *r;

    tu_svc_add_device(s, "demo", "ios", TOK_I("1"), "{news}", NULL);
    tu_svc_add_device(s, "demo", "ios", TOK_I("2"), "{news,sport}", NULL);
    tu_svc_add_device(s, "demo", "ios", TOK_I("3"), "{sport}", NULL);
    tu_svc_add_device(s, "demo", "android", "fcm-news-1", "{news}", NULL);
    tu_svc_add_device(s, "demo", "android", "fcm-sport-1", "{sport}", NULL);
    tu_svc_add_device(s, "demo", "android", "fcm-news-gone", "{news}", NULL);
    tu_svc_add_device(s, "other", "android", "fcm-other-app", "{news}", NULL);
    free(tu_svc_query(s, "UPDATE installations SET valid = false WHERE "
                         "device_token = 'fcm-news-gone' RETURNING 1"));

    id = insert_push(s, "{\"channels\":{\"$in\":[\"news\"]}}",
                     "{\"alert\":\"breaking\",\"badge\":\"Increment\","
                     "\"android\":{\"alert\":\"breaking (android)\"}}",
                     "", "");
    wait_push_done(s, id);
    expect_push(s, id, "3/3/0/0/0 sent");
    assert_int_equal(count_token(s->apns.record, TOK_I("1")), 1);
    assert_int_equal(count_token(s->apns.record, TOK_I("2")), 1);
    assert_int_equal(count_token(s->apns.record, TOK_I("3")), 0);
    assert_int_equal(count_token(s->fcm.record, "fcm-news-1"), 1);
    assert_int_equal(count_token(s->fcm.record, "fcm-sport-1"), 0);
    assert_int_equal(count_token(s->fcm.record, "fcm-news-gone"), 0);
    assert_int_equal(count_token(s->fcm.record, "fcm-other-app"), 0);
    r = tu_records_last_for(s->apns.record, TOK_I("1"));
    assert_non_null(r);
    assert_string_equal(tu_json_str(r, "body.aps.alert"), "breaking");
    assert_string_equal(tu_json_str(r, "body.aps.badge"), "1");
    cJSON_Delete(r);
    r = tu_records_last_for(s->fcm.record, "fcm-news-1");
    assert_non_null(r);
    assert_string_equal(tu_json_str(r, "body.message.notification.body"),
                        "breaking (android)");
    cJSON_Delete(r);

    /* A where query (deviceType) and the request's profile "dev": the
     * development endpoint, whatever the content says. */
    id = insert_push(s, "{\"deviceType\":\"ios\",\"channels\":\"sport\"}",
                     "{\"alert\":\"dev only\",\"_profile\":\"prod\"}",
                     ", profile", ", 'dev'");
    wait_push_done(s, id);
    expect_push(s, id, "2/2/0/0/0 sent");
    assert_int_equal(count_token(s->apns_dev.record, TOK_I("2")), 1);
    assert_int_equal(count_token(s->apns_dev.record, TOK_I("3")), 1);
    assert_int_equal(count_token(s->apns_dev.record, TOK_I("1")), 0);
    assert_int_equal(count_token(s->fcm.record, "fcm-sport-1"), 0);

    {
        char *m = NULL;
        assert_int_equal(tu_svc_admin_get(s, "/metrics", &m), 200);
        assert_non_null(strstr(m, "pushgw_push_requests_finished_total{app="
                                  "\"demo\",result=\"sent\"} 2"));
        free(m);
    }
}

/* Requests that end without a push: no device, an expired request, a
 * query the compiler refuses (never a broader audience). */
static void test_ends_without_push(void **state)
{
    struct tu_svc *s = *state;
    long long a, b, c;

    tu_svc_add_device(s, "demo", "android", "fcm-x-1", "{x}", NULL);
    a = insert_push(s, "{\"channels\":{\"$in\":[\"nobody\"]}}",
                    "{\"alert\":\"a\"}", "", "");
    {
        char *v = tu_svc_query(s, "INSERT INTO api_pushes (app_id, data, "
                                  "push_at, expires_at) VALUES ('demo', "
                                  "'{\"alert\":\"b\"}', now() - interval "
                                  "'2 hours', now() - interval '1 hour') "
                                  "RETURNING id");
        assert_non_null(v);
        b = atoll(v);
        free(v);
    }
    c = insert_push(s, "{\"channels\":{\"$regex\":\"x\"}}", "{\"alert\":\"c\"}",
                    "", "");
    wait_push_done(s, a);
    wait_push_done(s, b);
    wait_push_done(s, c);
    expect_push(s, a, "0/0/0/0/0 no_devices");
    expect_push(s, b, "0/0/0/0/0 expired");
    expect_push(s, c, "0/0/0/0/0 invalid_query");
    assert_int_equal(tu_records_count(s->fcm.record), 0);
}

static int setup_faults(void **state)
{
    static const char *const apns_args[] = {"--unregistered", TOK_I("2"), NULL};
    static const char *const fcm_args[] = {"--fail-every", "2:500:INTERNAL",
                                           NULL};
    struct tu_svc_options o = {.apns_args = apns_args, .fcm_args = fcm_args};
    struct tu_svc *s = calloc(1, sizeof(*s));

    tu_svc_start(s, &o);
    *state = s;
    return 0;
}

/* Outcomes as events have them, owned by the request: an invalidated
 * device (push_failures with api_push_id, the installation invalid),
 * retries as push_retries rows of the request, sent again until
 * delivered, each counted on the request. */
static void test_outcomes_counted(void **state)
{
    struct tu_svc *s = *state;
    char sql[512];
    long long id;

    tu_svc_add_device(s, "demo", "ios", TOK_I("1"), "{all}", NULL);
    tu_svc_add_device(s, "demo", "ios", TOK_I("2"), "{all}", NULL);
    add_many(s, "r", 6, "all");
    id = insert_push(s, "{\"channels\":{\"$in\":[\"all\"]}}",
                     "{\"alert\":\"x\"}", "", "");
    wait_push_done(s, id);
    /* The retries end after the page: the counters reach their total. */
    snprintf(sql, sizeof(sql),
             "SELECT successes || '/' || invalid_tokens || '/' || "
             "(SELECT count(*) FROM push_retries) FROM api_pushes WHERE id = "
             "%lld",
             id);
    if (!tu_svc_wait_query(s, sql, "7/1/0", WAIT_MS)) {
        char *v = tu_svc_query(s, sql);
        fail_msg("counters: %s", v ? v : "?");
    }
    expect_push(s, id, "8/7/1/0/0 partly_sent");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) || ' ' || string_agg(outcome, ',') FROM "
             "push_failures WHERE api_push_id = %lld AND event_id IS NULL",
             id);
    {
        char *v = tu_svc_query(s, sql);
        assert_string_equal(v, "1 invalidated");
        free(v);
    }
    {
        char *v = tu_svc_query(s, "SELECT valid::text || ' ' || "
                                  "invalid_reason FROM installations WHERE "
                                  "device_token = '" TOK_I("2") "'");
        assert_string_equal(v, "false Unregistered");
        free(v);
    }
    /* Every Android device got it exactly once (a 500 was retried). */
    for (int i = 1; i <= 6; i++) {
        char tok[32];
        cJSON *recs = tu_records_read(s->fcm.record), *r;
        int ok = 0;

        snprintf(tok, sizeof(tok), "fcm-r-%d", i);
        cJSON_ArrayForEach(r, recs)
        {
            if (strcmp(tu_json_str(r, "token"), tok) == 0 &&
                strcmp(tu_json_str(r, "status"), "200") == 0)
                ok++;
        }
        cJSON_Delete(recs);
        assert_int_equal(ok, 1);
    }
}

/* push_time: nothing before push_at, then sent (by the timer the sender
 * sets for it, not found by polling alone). */
static void test_scheduled(void **state)
{
    struct tu_svc *s = *state;
    long long id;
    char *at_s;
    long long at_ms;
    cJSON *r;

    tu_svc_add_device(s, "demo", "android", "fcm-sched-1", "{later}", NULL);
    id = insert_push(s, "{\"channels\":{\"$in\":[\"later\"]}}",
                     "{\"alert\":\"on time\"}", ", push_at",
                     ", now() + interval '3 seconds'");
    at_s = tu_svc_query(s, "SELECT (extract(epoch FROM push_at) * 1000)::int8 "
                           "FROM api_pushes ORDER BY id DESC LIMIT 1");
    at_ms = atoll(at_s);
    free(at_s);
    {
        char *st = tu_svc_query(s, "SELECT state FROM api_pushes");
        assert_string_equal(st, "scheduled");
        free(st);
    }
    wait_push_done(s, id);
    expect_push(s, id, "1/1/0/0/0 sent");
    r = tu_records_last_for(s->fcm.record, "fcm-sched-1");
    assert_non_null(r);
    assert_true(ts_of(r) >= (double)at_ms);
    cJSON_Delete(r);
}

/* flow_control: devices per second. 2,500 devices at 1,000/s take at
 * least 1.5 s from the first push to the last (a lower bound: a slow
 * machine only makes it longer). */
static void test_flow_control(void **state)
{
    struct tu_svc *s = *state;
    cJSON *recs, *r;
    double first = 0, last = 0;
    long long id;
    int n = 0;

    add_many(s, "flow", 2500, "flow");
    id = insert_push(s, "{\"channels\":{\"$in\":[\"flow\"]}}",
                     "{\"alert\":\"paced\"}", ", flow_control", ", 1000");
    wait_push_done(s, id);
    expect_push(s, id, "2500/2500/0/0/0 sent");
    recs = tu_records_read(s->fcm.record);
    cJSON_ArrayForEach(r, recs)
    {
        double t = ts_of(r);

        /* the OAuth token's request is recorded too */
        if (strncmp(tu_json_str(r, "token"), "fcm-flow-", 9) != 0)
            continue;
        if (!n || t < first)
            first = t;
        if (t > last)
            last = t;
        n++;
    }
    cJSON_Delete(recs);
    assert_int_equal(n, 2500);
    printf("# flow_control 1000/s: 2500 pushes in %.0f ms\n", last - first);
    assert_true(last - first >= 1400);
}

/* A request another process was sending when it died: taken over after
 * its lease, resumed after its committed cursor, counters added. */
static void test_takeover(void **state)
{
    struct tu_svc *s = *state;
    char vals[512];
    long long first, id;
    char *v;

    first = tu_svc_add_device(s, "demo", "android", "fcm-t-1", "{t}", NULL);
    tu_svc_add_device(s, "demo", "android", "fcm-t-2", "{t}", NULL);
    tu_svc_add_device(s, "demo", "android", "fcm-t-3", "{t}", NULL);
    /* The dead sender had sent and committed the first device. */
    snprintf(vals, sizeof(vals),
             ", 'sending', 'dead-host:1:x', now() + interval '2 seconds', "
             "%lld, 1, 1",
             first);
    id = insert_push(s, "{\"channels\":{\"$in\":[\"t\"]}}",
                     "{\"alert\":\"resumed\"}",
                     ", state, lease_owner, lease_until, cursor_id, devices, "
                     "successes",
                     vals);
    /* Held by the dead one for a while: not sent meanwhile. */
    usleep(1000 * 1000);
    v = tu_svc_query(s, "SELECT lease_owner FROM api_pushes");
    assert_string_equal(v, "dead-host:1:x");
    free(v);
    wait_push_done(s, id);
    expect_push(s, id, "3/3/0/0/0 sent");
    assert_int_equal(count_token(s->fcm.record, "fcm-t-1"), 0);
    assert_int_equal(count_token(s->fcm.record, "fcm-t-2"), 1);
    assert_int_equal(count_token(s->fcm.record, "fcm-t-3"), 1);
    v = tu_svc_query(s, "SELECT coalesce(lease_owner, 'free') FROM "
                        "api_pushes");
    assert_string_equal(v, "free");
    free(v);
}

static int setup_slow(void **state)
{
    /* Few streams and slow answers: a broadcast fills what the providers
     * take for a while. */
    static const char *const fcm_args[] = {"--max-streams", "20", "--delay-ms",
                                           "20", NULL};
    static const char *const apns_args[] = {"--max-streams", "20", "--delay-ms",
                                            "20", NULL};
    struct tu_svc_options o = {.apns_args = apns_args, .fcm_args = fcm_args};
    struct tu_svc *s = calloc(1, sizeof(*s));

    tu_svc_start(s, &o);
    *state = s;
    return 0;
}

/*
 * Events keep their share while a broadcast runs: an event posted in the
 * middle of a broadcast of 4,000 devices reaches its device after at most
 * a few hundred of the broadcast's pushes (those in flight when it came),
 * not after the rest of the broadcast. Order, not timing.
 */
static void test_events_beside_broadcast(void **state)
{
    struct tu_svc *s = *state;
    char body[512];
    cJSON *recs, *r;
    long long id;
    int before = 0, after = 0, at_post;
    r = NULL;
    char *resp = NULL;

    /* On the broadcast's provider: it shares its connections' queue. */
    tu_svc_add_device(s, "demo", "android", "fcm-jerry", "{Jerry}", NULL);
    add_many(s, "b", 4000, "everyone");
    id = insert_push(s, "{\"channels\":{\"$in\":[\"everyone\"]}}",
                     "{\"alert\":\"to all\"}", "", "");
    /* Once the broadcast is well under way. */
    assert_true(tu_records_wait(s->fcm.record, 500, WAIT_MS) >= 500);
    snprintf(body, sizeof(body),
             "{\"fromPeer\":\"Spike\",\"convId\":\"c1\",\"offlinePeers\":"
             "[\"Jerry\"],\"timestamp\":%lld,\"pushData\":{\"alert\":"
             "\"chat\"}}",
             tu_wall_ms());
    at_post = (int)tu_records_count(s->fcm.record);
    assert_int_equal(tu_svc_post(s, "/v1/apps/demo/receivers-offline",
                                 "demo-hook-key-0001", NULL, body, &resp),
                     202);
    free(resp);
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if ((r = tu_records_last_for(s->fcm.record, "fcm-jerry")))
            break;
        usleep(10000);
    }
    assert_non_null(r);
    {
        double t_event = ts_of(r);
        cJSON *x;

        recs = tu_records_read(s->fcm.record);
        cJSON_ArrayForEach(x, recs)
        {
            if (strcmp(tu_json_str(x, "token"), "fcm-jerry") == 0)
                continue;
            if (ts_of(x) <= t_event)
                before++;
        }
        cJSON_Delete(recs);
    }
    cJSON_Delete(r);
    wait_push_done(s, id);
    recs = tu_records_read(s->fcm.record);
    after = cJSON_GetArraySize(recs) - 1 - before;
    cJSON_Delete(recs);
    printf("# broadcast pushes: %d before the post, %d between the post and "
           "the event's push, %d after\n",
           at_post, before - at_post, after);
    /* The event did not wait for the broadcast's remaining pushes. */
    assert_true(before - at_post <= 600);
    assert_true(after >= 1000);
    expect_push(s, id, "4000/4000/0/0/0 sent");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_channel_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ends_without_push, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_outcomes_counted, setup_faults,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_scheduled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_beside_broadcast,
                                        setup_slow, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
