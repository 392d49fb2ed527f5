/*
 * Hook burst: 1000 events at once (five batches of 200, as the test
 * harness caps bodies at 64 KiB) for an app whose server hook
 * answers every call after 300 ms with a pushMessage. Every event gets
 * the hook's answer (none times out while waiting for a connection, so
 * none falls back to its own content), and the gateway never holds more
 * than [app:*] server_hook_connections (default 64) connections to the
 * hook at once, counted by the hook server itself; idle ones stay open
 * for reuse, no more than that either.
 * The hook's timeout is 1.5 s (the harness's 500 ms leaves too little
 * room on a loaded test machine): still far below the burst's 5 s, so a
 * timeout that counted the wait for a connection would fail most calls.
 */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_EVENTS 1000
#define PER_BATCH 200
#define HOOK_CONNECTIONS 64
#define TOK "abababababababababababababababababababababababababababababab77"

static const char *hook_answers =
    "{\"*\": {\"status\": 200, \"delay_ms\": 300, \"body\": {\"result\":"
    " {\"pushMessage\": \"{\\\"alert\\\":\\\"from hook\\\"}\"}}}}";

/* The hook server's connection figures (GET /stats). */
static void hook_stats(struct tu_svc *s, long *open, long *max_open,
                       long *total)
{
    char *body = NULL;
    cJSON *j;

    assert_int_equal(
        tu_http_once(s->hook.port, "/stats", NULL, NULL, NULL, &body), 200);
    j = cJSON_Parse(body);
    assert_non_null(j);
    *open = (long)cJSON_GetObjectItem(j, "open")->valuedouble;
    *max_open = (long)cJSON_GetObjectItem(j, "max_open")->valuedouble;
    *total = (long)cJSON_GetObjectItem(j, "total")->valuedouble;
    cJSON_Delete(j);
    free(body);
}

static char *batch_json(int first)
{
    size_t cap = (size_t)PER_BATCH * 256 + 64, len = 0;
    char *b = malloc(cap);

    assert_non_null(b);
    len += (size_t)snprintf(b + len, cap - len, "{\"events\":[");
    for (int i = first; i < first + PER_BATCH; i++)
        len += (size_t)snprintf(
            b + len, cap - len,
            "%s{\"fromPeer\":\"Spike\",\"convId\":\"burst-%d\","
            "\"offlinePeers\":[\"Jerry\"],\"timestamp\":%lld,"
            "\"pushData\":{\"alert\":\"own %d\"}}",
            i > first ? "," : "", i, tu_wall_ms(), i);
    snprintf(b + len, cap - len, "]}");
    return b;
}

static void test_hook_burst(void **state)
{
    struct tu_svc s;
    struct tu_svc_options o = {.hook_answers = hook_answers};
    char *batch, *resp = NULL, *metrics = NULL;
    long open, max_open, total;
    long long t0, dt;
    size_t from_hook = 0;
    cJSON *recs, *r;

    (void)state;
    memset(&s, 0, sizeof(s));
    /* Five times the hook's 300 ms: a call that times out on a loaded
     * machine would push without the hook's answer. */
    setenv("PUSHGW_APP_HOOKED_SERVER_HOOK_TIMEOUT_MS", "5000", 1);
    tu_svc_start(&s, &o);
    tu_svc_add_device(&s, "hooked", "ios", TOK, "{Jerry}", NULL);
    t0 = tu_mono_ms();
    for (int i = 0; i < N_EVENTS; i += PER_BATCH) {
        batch = batch_json(i);
        assert_int_equal(tu_svc_post(&s,
                                     "/v1/apps/hooked/receivers-offline/batch",
                                     "hooked-hook-key-01", NULL, batch, &resp),
                         202);
        free(resp);
        free(batch);
    }
    /* 1000 calls of 300 ms over 64 connections: about 5 s. */
    assert_int_equal(tu_records_wait(s.apns.record, N_EVENTS, 120000),
                     N_EVENTS);
    dt = tu_mono_ms() - t0;
    hook_stats(&s, &open, &max_open, &total);
    recs = tu_records_read(s.apns.record);
    cJSON_ArrayForEach(r, recs)
    {
        const cJSON *body = cJSON_GetObjectItem(r, "body");
        const cJSON *aps = cJSON_GetObjectItem(body, "aps");
        const cJSON *alert = cJSON_GetObjectItem(aps, "alert");
        if (cJSON_IsString(alert) &&
            strcmp(alert->valuestring, "from hook") == 0)
            from_hook++;
    }
    cJSON_Delete(recs);
    printf("# %d events, hook answering in 300 ms: pushed in %lld ms, %zu "
           "with the hook's answer; connections to the hook: %ld at most at "
           "once, %ld in all, %ld still open\n",
           N_EVENTS, dt, from_hook, max_open, total, open);
    assert_int_equal(tu_records_count(s.hook.record), N_EVENTS);
    assert_int_equal(from_hook, N_EVENTS);
    assert_in_range(max_open, 1, HOOK_CONNECTIONS);
    assert_in_range(open, 0, HOOK_CONNECTIONS);

    assert_int_equal(tu_svc_admin_get(&s, "/metrics", &metrics), 200);
    assert_non_null(strstr(metrics, "pushgw_hook_requests_total{app=\"hooked\","
                                    "result=\"ok\"} 1000"));
    free(metrics);
    tu_svc_stop(&s);
    unsetenv("PUSHGW_APP_HOOKED_SERVER_HOOK_TIMEOUT_MS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
