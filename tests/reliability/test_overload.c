/*
 * Overload: a load generator far above capacity against a gateway with a
 * tiny [server] max_backlog_events and a slow APNs (200 ms per answer,
 * 2 streams per connection: about 20 pushes/s). The API answers 429 with
 * Retry-After and a JSON error, never anything else; the gateway's memory
 * stays bounded (VmHWM grows by less than 64 MiB; not checked under
 * ASan); once the load stops the service accepts again as soon as
 * the backlog has drained below the bound; every accepted event is pushed.
 *
 * Short form: 16 clients for 4 s. Long form (PUSHGW_RELIABILITY_LONG=1):
 * 32 clients for 60 s.
 */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKLOG 20
#define MAX_EVENTS 200000
#define TOK "abababababababababababababababababababababababababababababab01"

struct load {
    struct tu_svc *s;
    volatile int stop;
    pthread_mutex_t mu;
    int next;
    long st_202, st_429, st_other, bad_429;
    int last_other;
    unsigned char *acked;
};

static void *client_main(void *arg)
{
    struct load *l = arg;
    struct tu_http *h = tu_http_new();
    char body[512];

    while (!l->stop) {
        int i, len, st, ra = -1;
        char *resp = NULL;

        pthread_mutex_lock(&l->mu);
        i = l->next < MAX_EVENTS ? l->next++ : -1;
        pthread_mutex_unlock(&l->mu);
        if (i < 0)
            break;
        len = snprintf(body, sizeof(body),
                       "{\"fromPeer\":\"Spike\",\"convId\":\"o%d\","
                       "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
                       "\"pushData\":{\"alert\":\"message %d\"}}",
                       i, tu_wall_ms(), i);
        st = tu_http_post(h, l->s->gw.port, "/v1/apps/demo/receivers-offline",
                          "demo-hook-key-0001", NULL, body, (size_t)len, 20000,
                          &resp, &ra);
        pthread_mutex_lock(&l->mu);
        if (st == 202) {
            l->st_202++;
            l->acked[i] = 1;
        } else if (st == 429) {
            cJSON *j = resp ? cJSON_Parse(resp) : NULL;
            l->st_429++;
            if (ra < 1 || !cJSON_IsString(cJSON_GetObjectItem(j, "error")))
                l->bad_429++;
            cJSON_Delete(j);
        } else {
            l->st_other++;
            l->last_other = st;
        }
        pthread_mutex_unlock(&l->mu);
        free(resp);
    }
    tu_http_free(h);
    return NULL;
}

static void test_overload(void **state)
{
    static const char *const slow[] = {"--delay-ms", "200", "--max-streams",
                                       "2", NULL};
    struct tu_svc_options o = {.apns_args = slow};
    struct tu_svc s;
    struct load l;
    int n_clients = tu_long() ? 32 : 16;
    int secs = tu_long() ? 60 : 4;
    pthread_t th[32];
    long rss0, rss_max = 0, hwm;
    long long t0, t_stop, t_ok = 0;
    int probe = MAX_EVENTS;
    struct tu_http *h;
    (void)state;

    memset(&l, 0, sizeof(l));
    pthread_mutex_init(&l.mu, NULL);
    l.acked = calloc(MAX_EVENTS + 1000, 1);
    assert_non_null(l.acked);
    setenv("PUSHGW_SERVER_MAX_BACKLOG_EVENTS", "20", 1);
    tu_svc_start(&s, &o);
    unsetenv("PUSHGW_SERVER_MAX_BACKLOG_EVENTS");
    l.s = &s;
    tu_svc_add_device(&s, "demo", "ios", TOK, "{Jerry}", NULL);
    rss0 = tu_rss_kib(s.gw.pid);

    t0 = tu_mono_ms();
    for (int c = 0; c < n_clients; c++)
        assert_int_equal(pthread_create(&th[c], NULL, client_main, &l), 0);
    while (tu_mono_ms() - t0 < secs * 1000LL) {
        long r = tu_rss_kib(s.gw.pid);
        if (r > rss_max)
            rss_max = r;
        usleep(100000); /* the load runs for |secs|: the scenario */
    }
    l.stop = 1;
    for (int c = 0; c < n_clients; c++)
        pthread_join(th[c], NULL);
    t_stop = tu_mono_ms();
    hwm = tu_hwm_kib(s.gw.pid);

    /* Load gone: one client, one event every 50 ms, until accepted. */
    h = tu_http_new();
    while (tu_mono_ms() - t_stop < 60000) {
        char body[512];
        int len = snprintf(body, sizeof(body),
                           "{\"fromPeer\":\"Spike\",\"convId\":\"p%d\","
                           "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
                           "\"pushData\":{\"alert\":\"message %d\"}}",
                           probe, tu_wall_ms(), probe);
        int st = tu_http_post(h, s.gw.port, "/v1/apps/demo/receivers-offline",
                              "demo-hook-key-0001", NULL, body, (size_t)len,
                              20000, NULL, NULL);
        if (st == 202) {
            l.acked[probe] = 1;
            t_ok = tu_mono_ms();
            break;
        }
        assert_int_equal(st, 429);
        probe++;
        usleep(50000); /* a probe every 50 ms: the recovery is timed */
    }
    tu_http_free(h);
    printf(
        "# overload: %d clients for %d s: %ld requests/s offered, "
        "202=%ld 429=%ld (bad 429 %ld) other=%ld; gateway RSS %ld KiB "
        "before, max %ld KiB, VmHWM %ld KiB; accepted again %lld ms after "
        "the load stopped (%d probes refused)\n",
        n_clients, secs,
        (long)((l.st_202 + l.st_429 + l.st_other) * 1000 / (t_stop - t0 + 1)),
        l.st_202, l.st_429, l.bad_429, l.st_other, rss0, rss_max, hwm,
        t_ok ? t_ok - t_stop : -1LL, probe - MAX_EVENTS);
    assert_true(t_ok > 0);
    assert_true(l.st_429 > 0);
    assert_int_equal(l.bad_429, 0);
    if (l.st_other)
        fail_msg("%ld answers neither 202 nor 429 (last %d)", l.st_other,
                 l.last_other);
    /* Bounded: what is accepted is capped by the backlog bound, so the
     * gateway must not grow with the offered load. */
    tu_check_memory(s.gw.pid, rss0, 64 * 1024, "overload memory");

    /* Every accepted event is pushed. */
    {
        char want[32];
        const char *files[] = {s.apns.record, NULL};
        const char *toks[] = {TOK};
        struct tu_tally t;
        long missing = 0, n_acked = 0;

        snprintf(want, sizeof(want), "%ld", l.st_202 + 1);
        assert_true(tu_svc_wait_query(
            &s, "SELECT count(*) FROM events WHERE state = 'done'", want,
            120000));
        tu_tally(&t, files, MAX_EVENTS + 1000, toks, 1);
        for (int i = 0; i < MAX_EVENTS + 1000; i++)
            if (l.acked[i]) {
                n_acked++;
                missing += t.counts[i] < 1;
            }
        printf("# overload: %ld accepted events, %ld not pushed\n", n_acked,
               missing);
        assert_int_equal(missing, 0);
        tu_tally_free(&t);
    }
    tu_svc_stop(&s);
    free(l.acked);
    pthread_mutex_destroy(&l.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
