/* The server hook call over real HTTP to tests/service/hook_server:
 * request body and key, each kind of answer, fail-open results. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hook.h"

static const char *answers =
    "{\"c-ok\": {\"status\": 200, \"body\": {\"result\": {\"skip\": false,"
    " \"offlinePeers\": [\"Jerry\", \"Mallory\"], \"force\": true,"
    " \"pushMessage\": \"{\\\"alert\\\":\\\"from hook\\\"}\"}}},"
    " \"c-plain\": {\"status\": 200, \"body\": {\"pushMessage\": \"hi\"}},"
    " \"c-500\": {\"status\": 500, \"body\": {\"error\": \"boom\"}},"
    " \"c-slow\": {\"status\": 200, \"body\": {}, \"delay_ms\": 1500},"
    " \"c-bad\": {\"status\": 200, \"raw\": \"not json\"},"
    " \"c-badtype\": {\"status\": 200, \"body\": [1, 2]},"
    " \"c-401\": {\"status\": 401, \"body\": {\"code\": 401,"
    " \"error\": \"Unauthorized.\"}}}";

struct fx {
    char *dir;
    struct tu_mock hook;
    const char *record; /* the hook's */
    int port;
    struct event_base *base;
    struct pgw_curlmulti *cm;
};

struct got {
    int done;
    enum pgw_hook_result result;
    struct pgw_hook_answer *answer;
    char detail[256];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *ans;

    f->dir = tu_mkdtemp();
    ans = tu_write_file(f->dir, "answers.json", answers, 0644);
    {
        const char *args[] = {"--answers", ans, NULL};
        struct tu_mock_options o = {.dir = f->dir, .args = args};
        tu_mock_start(&f->hook, TU_MOCK_HOOK, &o);
    }
    f->port = f->hook.port;
    f->record = f->hook.record;
    f->base = event_base_new();
    assert_int_equal(pgw_curlmulti_new(f->base, 0, &f->cm), 0);
    free(ans);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    pgw_curlmulti_free(f->cm);
    event_base_free(f->base);
    assert_int_equal(tu_mock_stop(&f->hook), 0);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void on_hook(void *arg, enum pgw_hook_result result,
                    struct pgw_hook_answer *answer, const char *detail)
{
    struct got *g = arg;

    g->done++;
    g->result = result;
    g->answer = answer;
    snprintf(g->detail, sizeof(g->detail), "%s", detail);
}

static struct pgw_event *make_event(const char *conv)
{
    char text[512];
    struct pgw_event *ev = NULL;
    struct pgw_event_limits lim;
    struct pgw_json_error err;

    snprintf(text, sizeof(text),
             "{\"fromPeer\":\"Tom\",\"convId\":\"%s\","
             "\"offlinePeers\":[\"Jerry\",\"Spike\"],"
             "\"timestamp\":1795740307123,\"content\":\"hello \\\"you\\\"\","
             "\"mentionAll\":false,\"mentionOfflinePeers\":[\"Spike\"],"
             "\"pushData\":{\"alert\":\"x\"},\"msgId\":\"m1\"}",
             conv);
    pgw_event_limits_from_config(NULL, &lim);
    assert_int_equal(pgw_event_parse(text, strlen(text), &lim, &ev, &err), 0);
    return ev;
}

static void call(struct fx *f, const char *conv, int port, int timeout_ms,
                 struct got *g)
{
    struct pgw_app app;
    char url[128];
    struct pgw_event *ev = make_event(conv);
    struct pgw_event_limits lim;

    memset(&app, 0, sizeof(app));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/1.1/functions/hook", port);
    app.id = (char *)"demo";
    app.server_hook_url = url;
    app.server_hook_key = (char *)"hook-secret";
    app.server_hook_timeout_ms = timeout_ms;
    pgw_event_limits_from_config(NULL, &lim);
    memset(g, 0, sizeof(*g));
    assert_int_equal(pgw_hook_call(f->cm, &app, ev, &lim, NULL, on_hook, g), 0);
    /* Never called synchronously. */
    assert_int_equal(g->done, 0);
    pgw_event_free(ev);
    while (!g->done)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(g->done, 1);
}

static void test_ok_answer_and_request(void **state)
{
    struct fx *f = *state;
    struct got g;
    char *rec;
    cJSON *line, *body;

    call(f, "c-ok", f->port, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_OK);
    assert_non_null(g.answer);
    assert_false(g.answer->skip);
    assert_true(g.answer->force);
    assert_true(g.answer->has_offline_peers);
    assert_int_equal(g.answer->n_offline_peers, 2);
    assert_string_equal(g.answer->offline_peers[0], "Jerry");
    assert_string_equal(
        cJSON_GetObjectItem(g.answer->push_message, "alert")->valuestring,
        "from hook");
    pgw_resolve_hook_answer_free(g.answer);

    /* What the hook received: the LeanCloud parameters and the key. */
    rec = tu_read_file(f->record);
    assert_non_null(rec);
    line = cJSON_Parse(rec);
    assert_non_null(line);
    assert_string_equal(cJSON_GetObjectItem(line, "key")->valuestring,
                        "hook-secret");
    body = cJSON_GetObjectItem(line, "body");
    assert_string_equal(cJSON_GetObjectItem(body, "fromPeer")->valuestring,
                        "Tom");
    assert_string_equal(cJSON_GetObjectItem(body, "convId")->valuestring,
                        "c-ok");
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(body, "offlinePeers")), 2);
    assert_string_equal(cJSON_GetObjectItem(body, "content")->valuestring,
                        "hello \"you\"");
    assert_true(cJSON_GetObjectItem(body, "timestamp")->valuedouble ==
                1795740307123.0);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(body, "mentionAll")));
    assert_string_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItem(body, "mentionOfflinePeers"), 0)
            ->valuestring,
        "Spike");
    /* Only the documented parameters go to the hook. */
    assert_null(cJSON_GetObjectItem(body, "pushData"));
    assert_null(cJSON_GetObjectItem(body, "msgId"));
    cJSON_Delete(line);
    free(rec);
}

static void test_plain_string_push_message(void **state)
{
    struct fx *f = *state;
    struct got g;

    call(f, "c-plain", f->port, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_OK);
    assert_false(g.answer->has_offline_peers);
    assert_string_equal(
        cJSON_GetObjectItem(g.answer->push_message, "alert")->valuestring,
        "hi");
    pgw_resolve_hook_answer_free(g.answer);
}

static void test_fail_open_results(void **state)
{
    struct fx *f = *state;
    struct got g;

    call(f, "c-500", f->port, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_HTTP_ERROR);
    assert_null(g.answer);
    assert_string_equal(g.detail, "status 500");

    call(f, "c-slow", f->port, 200, &g);
    assert_int_equal(g.result, PGW_HOOK_TIMEOUT);
    assert_null(g.answer);

    call(f, "c-bad", f->port, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_BAD_ANSWER);
    assert_null(g.answer);

    call(f, "c-badtype", f->port, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_BAD_ANSWER);
    assert_null(g.answer);

    /* Nothing listens on port 1. */
    call(f, "c-ok", 1, 3000, &g);
    assert_int_equal(g.result, PGW_HOOK_UNREACHABLE);
    assert_null(g.answer);
    assert_true(strlen(g.detail) > 0);
    assert_string_equal(pgw_hook_result_name(PGW_HOOK_UNREACHABLE),
                        "unreachable");
}

/* A hook that refuses pushgw's LeanCloud identity: its own result, and
 * /readyz's reason after a few in a row, until it answers otherwise. */
static void test_unauthorized(void **state)
{
    struct fx *f = *state;
    struct got g;
    const char *why = NULL;

    call(f, "c-ok", f->port, 3000, &g);
    pgw_resolve_hook_answer_free(g.answer);
    assert_true(pgw_hook_authorized(&why));
    for (int i = 0; i < PGW_HOOK_UNAUTHORIZED_NOT_READY; i++) {
        assert_true(pgw_hook_authorized(&why));
        call(f, "c-401", f->port, 3000, &g);
        assert_int_equal(g.result, PGW_HOOK_UNAUTHORIZED);
        assert_null(g.answer);
        assert_non_null(strstr(g.detail, "401"));
    }
    assert_false(pgw_hook_authorized(&why));
    assert_non_null(strstr(why, "'demo'"));
    assert_string_equal(pgw_hook_result_name(PGW_HOOK_UNAUTHORIZED),
                        "unauthorized");
    /* unreachable says nothing about the keys */
    call(f, "c-ok", 1, 3000, &g);
    assert_false(pgw_hook_authorized(&why));
    call(f, "c-500", f->port, 3000, &g);
    assert_true(pgw_hook_authorized(&why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok_answer_and_request, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unauthorized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_string_push_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fail_open_results, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
