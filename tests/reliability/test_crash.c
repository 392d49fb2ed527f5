/*
 * Crash: events are posted by several clients while `pushgw serve` is
 * killed with SIGKILL at random moments and restarted. Afterwards every
 * acknowledged event's pushes reached the mock providers at least once,
 * duplicates are only among events that were unfinished at a kill, and no
 * event is stuck (all 'done', no lease held, no retry row left).
 *
 * Short form (ctest): 2,000 events x 3 devices, 4 kills.
 * Long form (PUSHGW_RELIABILITY_LONG=1): 50,000 events x 4 devices,
 * 8 kills. PUSHGW_RELIABILITY_EVENTS / _KILLS override the numbers.
 */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const tokens[] = {
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd01",
    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd02",
    "fcm-token-crash-0001", "fcm-token-crash-0002"};

struct run {
    struct tu_svc s;
    int n_events;
    int n_kills;
    int n_posters;
    volatile int posting_done;
    unsigned char *acked;    /* per event: answered 202 */
    unsigned char *inflight; /* per event: not done at some kill */
    int kills_done;
    long n_acked;
    long posts_retried;
    long status_count[600];
    pthread_mutex_t mu;
};

struct poster {
    struct run *r;
    int first;
};

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    struct run *r = p->r;
    struct tu_http *h = tu_http_new();
    char body[512];

    for (int i = p->first; i < r->n_events; i += r->n_posters) {
        int len = snprintf(body, sizeof(body),
                           "{\"fromPeer\":\"Spike\",\"convId\":\"c%d\","
                           "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
                           "\"msgId\":\"m%d\",\"pushData\":{\"alert\":"
                           "\"message %d\"}}",
                           i, tu_wall_ms(), i, i);
        /* Like a broker: retry until acknowledged (the msgId makes a
         * repeat of a stored event a duplicate, not a second event). */
        for (;;) {
            int st =
                tu_http_post(h, r->s.gw.port, "/v1/apps/demo/receivers-offline",
                             "demo-hook-key-0001", NULL, body, (size_t)len,
                             20000, NULL, NULL);
            pthread_mutex_lock(&r->mu);
            r->status_count[st >= 0 && st < 600 ? st : 0]++;
            if (st == 202) {
                r->acked[i] = 1;
                r->n_acked++;
            } else
                r->posts_retried++;
            pthread_mutex_unlock(&r->mu);
            if (st == 202)
                break;
            usleep(20000); /* a client's pause before it retries */
        }
    }
    tu_http_free(h);
    return NULL;
}

static void mark_inflight(struct run *r)
{
    char *ids = tu_svc_query(&r->s, "SELECT coalesce(string_agg(msg_id, ','), "
                                    "'') FROM events WHERE state <> 'done'");
    char *save = NULL;
    int n = 0;

    assert_non_null(ids);
    for (char *t = strtok_r(ids, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (t[0] == 'm') {
            int i = atoi(t + 1);
            if (i >= 0 && i < r->n_events) {
                r->inflight[i] = 1;
                n++;
            }
        }
    printf("# kill %d: %d events unfinished\n", r->kills_done, n);
    free(ids);
}

static long acked_now(struct run *r)
{
    long n;

    pthread_mutex_lock(&r->mu);
    n = r->n_acked;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void *killer_main(void *arg)
{
    struct run *r = arg;
    unsigned seed = tu_seed();
    long at = 0;

    /* Kill k happens once a random number of events of the k-th slice of
     * the run have been acknowledged (the last one after the posting,
     * while the pushes drain), plus a random 0-50 ms. */
    for (int k = 0; k < r->n_kills; k++) {
        long slice = r->n_events / r->n_kills;
        at = (long)k * slice + (long)(rand_r(&seed) % (unsigned)slice);
        while (acked_now(r) < at && acked_now(r) < r->n_events)
            usleep(1000);
        usleep((useconds_t)(rand_r(&seed) % 50) * 1000); /* the kill's jitter */
        assert_int_equal(tu_svc_kill_gateway(&r->s, SIGKILL), 128 + SIGKILL);
        r->kills_done++;
        mark_inflight(r);
        tu_svc_start_gateway(&r->s);
    }
    return NULL;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static void test_crash(void **state)
{
    struct run *r = calloc(1, sizeof(*r));
    /* A little provider latency so that pushes are in flight at a kill. */
    static const char *const slow[] = {"--delay-ms", "10", NULL};
    struct tu_svc_options o = {.apns_args = slow,
                               .fcm_args = slow,
                               .delivery_ini = "lease_ms = 1000\n"};
    size_t n_tokens = tu_long() ? 4 : 3;
    const char *files[3];
    struct tu_tally t;
    pthread_t killer, posters[8];
    struct poster pa[8];
    long long t0, t_posted, t_done;
    long dups = 0, lost = 0, unexplained = 0, dup_events = 0;
    char *v;
    (void)state;

    assert_non_null(r);
    pthread_mutex_init(&r->mu, NULL);
    r->n_events =
        env_int("PUSHGW_RELIABILITY_EVENTS", tu_long() ? 50000 : 2000);
    r->n_kills = env_int("PUSHGW_RELIABILITY_KILLS", tu_long() ? 8 : 4);
    r->n_posters = 4;
    r->acked = calloc((size_t)r->n_events, 1);
    r->inflight = calloc((size_t)r->n_events, 1);
    assert_non_null(r->acked);
    assert_non_null(r->inflight);

    tu_svc_start(&r->s, &o);
    for (size_t d = 0; d < n_tokens; d++)
        tu_svc_add_device(&r->s, "demo", d < 2 ? "ios" : "android", tokens[d],
                          "{Jerry}", NULL);

    t0 = tu_mono_ms();
    assert_int_equal(pthread_create(&killer, NULL, killer_main, r), 0);
    for (int p = 0; p < r->n_posters; p++) {
        pa[p].r = r;
        pa[p].first = p;
        assert_int_equal(pthread_create(&posters[p], NULL, poster_main, &pa[p]),
                         0);
    }
    for (int p = 0; p < r->n_posters; p++)
        pthread_join(posters[p], NULL);
    t_posted = tu_mono_ms();
    pthread_join(killer, NULL);

    /* Every event stored ends done, with no lease and no retry row. */
    if (!tu_svc_wait_query(&r->s,
                           "SELECT count(*) FILTER (WHERE state <> 'done' OR "
                           "lease_owner IS NOT NULL) + (SELECT count(*) FROM "
                           "push_retries) FROM events",
                           "0", tu_long() ? 600000 : 120000)) {
        v = tu_svc_query(&r->s,
                         "SELECT string_agg(state || ':' || count, ' ') "
                         "FROM (SELECT state, count(*) FROM events GROUP "
                         "BY state) x");
        fail_msg("events stuck: %s", v ? v : "?");
    }
    t_done = tu_mono_ms();
    v = tu_svc_query(&r->s, "SELECT count(*) FROM events");
    assert_int_equal(atoi(v), r->n_events);
    free(v);

    files[0] = r->s.apns.record;
    files[1] = r->s.fcm.record;
    files[2] = NULL;
    tu_tally(&t, files, (size_t)r->n_events, tokens, n_tokens);
    for (int i = 0; i < r->n_events; i++) {
        int dup_here = 0;
        assert_true(r->acked[i]);
        for (size_t d = 0; d < n_tokens; d++) {
            int c = t.counts[(size_t)i * n_tokens + d];
            if (c < 1) {
                lost++;
                print_error("event %d device %zu: acknowledged, not pushed\n",
                            i, d);
            }
            if (c > 1) {
                dups += c - 1;
                dup_here = 1;
            }
        }
        dup_events += dup_here;
        if (dup_here && !r->inflight[i]) {
            unexplained++;
            print_error("event %d pushed twice but was not in flight at a "
                        "kill\n",
                        i);
        }
    }
    printf("# crash: events=%d devices=%zu pushes=%zu kills=%d "
           "post_retries=%ld (no answer %ld, 503 %ld) posting_s=%.1f "
           "drain_s=%.1f in_flight_at_kills=",
           r->n_events, n_tokens, (size_t)r->n_events * n_tokens, r->kills_done,
           r->posts_retried, r->status_count[0], r->status_count[503],
           (t_posted - t0) / 1000.0, (t_done - t_posted) / 1000.0);
    {
        long nin = 0;
        for (int i = 0; i < r->n_events; i++)
            nin += r->inflight[i];
        printf("%ld events", nin);
    }
    printf(" duplicates=%ld (in %ld events) unexplained=%ld lost=%ld "
           "records=%zu non_200=%zu\n",
           dups, dup_events, unexplained, lost, t.records, t.non_200);
    assert_int_equal(lost, 0);
    assert_int_equal(unexplained, 0);
    assert_int_equal(t.non_200, 0);
    tu_tally_free(&t);
    tu_svc_stop(&r->s);
    free(r->acked);
    free(r->inflight);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
