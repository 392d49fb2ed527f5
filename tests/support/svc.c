/* The whole service for end-to-end tests (see tu_svc.h). */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CERTS PUSHGW_TEST_CERTS_DIR

static void start_mocks(struct tu_svc *s, const struct tu_svc_options *o)
{
    char *answers =
        tu_write_file(s->dir, "hook-answers.json",
                      o->hook_answers ? o->hook_answers : "{}", 0644);
    const char *hook[] = {"--answers", answers, NULL};
    struct tu_mock_options mo = {.dir = s->dir, .accounts = true};

    mo.name = "apns";
    mo.args = o->apns_args;
    tu_mock_start(&s->apns, TU_MOCK_APNS, &mo);
    mo.name = "apns-dev";
    tu_mock_start(&s->apns_dev, TU_MOCK_APNS, &mo);
    mo.name = "fcm";
    mo.args = o->fcm_args;
    tu_mock_start(&s->fcm, TU_MOCK_FCM, &mo);
    mo.name = "hook";
    mo.args = hook;
    tu_mock_start(&s->hook, TU_MOCK_HOOK, &mo);
    free(answers);
}

/* True when the INI lines |ini| (may be NULL) set |key|. */
static int has_key(const char *ini, const char *key)
{
    size_t n = strlen(key);

    while (ini && *ini) {
        const char *nl = strchr(ini, '\n');
        if (strncmp(ini, key, n) == 0 && (ini[n] == ' ' || ini[n] == '='))
            return 1;
        ini = nl ? nl + 1 : NULL;
    }
    return 0;
}

static void write_config(struct tu_svc *s, const struct tu_svc_options *o)
{
    char *ini = NULL;
    char *tdir = tu_path(s->dir, "templates");
    char *dflt = tu_read_file(PUSHGW_SOURCE_DIR "/templates/default.json");

    mkdir(tdir, 0755);
    assert_non_null(dflt);
    free(tu_write_file(tdir, "default.json", dflt, 0644));
    free(dflt);
    s->gw.port = tu_free_port();
    s->admin_port = tu_free_port();
    /* The providers' request_timeout_ms is the default (10 s): no test
     * here waits for it (test_faults sets its own), and a short one
     * turns an answer slowed by a sanitizer on a loaded machine into a
     * retry, a second push where a test counts one. */
    assert_int_equal(
        asprintf(
            &ini,
            "[server]\nlisten = 127.0.0.1:%d\n"
            "admin_listen = 127.0.0.1:%d\n"
            "max_peers_per_event = 100\nmax_body_bytes = 65536\n"
            "shutdown_timeout_ms = 5000\nlog_level = info\n"
            "[database]\nurl = %s\nmigrations_dir = %s/migrations\n"
            "[templates]\ndir = %s\n"
            "[apns]\nproduction_url = https://127.0.0.1:%d\n"
            "development_url = https://127.0.0.1:%d\n"
            "ca_file = %s/ca.pem\n"
            "[fcm]\nurl = https://127.0.0.1:%d\n"
            "token_url = https://127.0.0.1:%d/token\n"
            "ca_file = %s/ca.pem\n"
            "[delivery]\n%s%s%s"
            "[app:demo]\nhook_key = demo-hook-key-0001\n"
            "apns_topic = com.example.demo\n"
            "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
            "apns_key_file = %s/AuthKey_KEY0000001.p8\n"
            "apns_team.TEAM000002.key_id = KEY0000002\n"
            "apns_team.TEAM000002.key_file = %s/AuthKey_KEY0000002.p8\n"
            "fcm_service_account_file = %s/fcm-sa.json\n"
            "[app:hooked]\nhook_key = hooked-hook-key-01\n"
            "server_hook_url = http://127.0.0.1:%d/hook\n"
            "server_hook_key = server-hook-secret\n"
            "server_hook_timeout_ms = 500\n"
            "apns_topic = com.example.hooked\n"
            "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
            "apns_key_file = %s/AuthKey_KEY0000001.p8\n"
            "fcm_service_account_file = %s/fcm-sa.json\n%s",
            s->gw.port, s->admin_port, s->db, PUSHGW_SOURCE_DIR, tdir,
            s->apns.port, s->apns_dev.port, CERTS, s->fcm.port, s->fcm.port,
            CERTS,
            /* Short retries unless the test sets its own. */
            has_key(o->delivery_ini, "retry_base_ms") ? ""
                                                      : "retry_base_ms = 100\n",
            has_key(o->delivery_ini, "retry_max_ms") ? ""
                                                     : "retry_max_ms = 1000\n",
            o->delivery_ini ? o->delivery_ini : "", CERTS, CERTS, CERTS,
            s->hook.port, CERTS, CERTS, o->extra_ini ? o->extra_ini : "") > 0,
        1);
    s->ini = tu_write_file(s->dir, "pushgw.ini", ini, 0600);
    free(ini);
    free(tdir);
}

static void migrate(struct tu_svc *s)
{
    const char *argv[] = {"migrate", "-c", s->ini, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run_pushgw(argv, NULL, &out, &err);

    if (rc != 0)
        fail_msg("pushgw migrate failed (%d): %s", rc, err);
    free(out);
    free(err);
}

/* The gateway's readiness: /readyz answers 200 once the database,
 * templates and keys are loaded. */
static bool gateway_ready(void *arg)
{
    struct tu_svc *s = arg;
    char *body = NULL;
    int st = tu_svc_admin_get(s, "/readyz", &body);

    free(body);
    return st == 200;
}

void tu_svc_start_gateway(struct tu_svc *s)
{
    const char *argv[] = {tu_pushgw_bin(), "serve", "-c", s->ini, NULL};
    char *log;

    if (!s->gw.log)
        s->gw.log = tu_path(s->dir, "pushgw.log");
    s->gw.pid = tu_spawn(argv, s->gw.log);
    if (tu_wait_until(gateway_ready, s, TU_START_MS))
        return;
    log = tu_read_file(s->gw.log);
    fail_msg("pushgw serve did not become ready: %s", log ? log : "");
}

int tu_svc_kill_gateway(struct tu_svc *s, int sig)
{
    int rc = tu_stop(s->gw.pid, sig);
    s->gw.pid = 0;
    return rc;
}

void tu_svc_start(struct tu_svc *s, const struct tu_svc_options *opts)
{
    static const struct tu_svc_options none;

    if (!opts)
        opts = &none;
    memset(s, 0, sizeof(*s));
    s->dir = tu_mkdtemp();
    assert_non_null(s->dir);
    if (opts->reuse_db || opts->db) {
        s->db = strdup(opts->reuse_db ? opts->reuse_db : opts->db);
    } else {
        s->db = tu_db_create_migrated("pgw_svc");
        s->own_db = 1;
    }
    start_mocks(s, opts);
    write_config(s, opts);
    /* A database of the test's own (opts->db) is migrated by the binary. */
    if (opts->db && !opts->reuse_db)
        migrate(s);
    tu_svc_start_gateway(s);
}

void tu_svc_stop(struct tu_svc *s)
{
    if (s->gw.pid > 0) {
        int rc = tu_stop(s->gw.pid, SIGTERM);
        s->gw.pid = 0;
        if (rc != 0) {
            char *log = tu_read_file(s->gw.log);
            print_error("pushgw exited with %d: %s\n", rc, log ? log : "");
            free(log);
        }
    }
    free(s->gw.log);
    tu_mock_stop(&s->apns);
    tu_mock_stop(&s->apns_dev);
    tu_mock_stop(&s->fcm);
    tu_mock_stop(&s->hook);
    if (s->own_db)
        tu_db_drop(s->db);
    if (getenv("PUSHGW_TEST_KEEP") == NULL)
        tu_rm_rf(s->dir);
    free(s->dir);
    free(s->db);
    free(s->ini);
}

long long tu_svc_add_device(struct tu_svc *s, const char *app, const char *type,
                            const char *token, const char *channels,
                            const char *team)
{
    char sql[1024];
    char *r;
    long long id;

    snprintf(sql, sizeof(sql),
             "INSERT INTO installations (app_id, device_type, device_token, "
             "channels, apns_team_id) VALUES ('%s', '%s', '%s', '%s', %s%s%s) "
             "RETURNING id",
             app, type, token, channels, team ? "'" : "", team ? team : "NULL",
             team ? "'" : "");
    r = tu_db_query(s->db, sql);
    assert_non_null(r);
    id = atoll(r);
    free(r);
    return id;
}

char *tu_svc_query(struct tu_svc *s, const char *sql)
{
    return tu_db_query(s->db, sql);
}

bool tu_svc_wait_query(struct tu_svc *s, const char *sql, const char *want,
                       int timeout_ms)
{
    return tu_db_wait(s->db, sql, want, timeout_ms);
}

void tu_svc_wait_events_done(struct tu_svc *s, int n, int timeout_ms)
{
    char want[32];
    char *got;

    snprintf(want, sizeof(want), "%d", n);
    if (tu_svc_wait_query(s, "SELECT count(*) FROM events WHERE state = 'done'",
                          want, timeout_ms))
        return;
    got = tu_svc_query(s, "SELECT string_agg(id || ':' || state || ':' || "
                          "coalesce(result, '-') || ':' || "
                          "coalesce(lease_owner, '-'), ' ' ORDER BY id) FROM "
                          "events");
    fail_msg("want %d events done, have: %s", n, got ? got : "?");
}

int tu_svc_post(struct tu_svc *s, const char *path, const char *key,
                const char *ctype, const char *body, char **ret_body)
{
    return tu_http_once(s->gw.port, path, key, ctype, body, ret_body);
}

int tu_svc_admin_get(struct tu_svc *s, const char *path, char **ret_body)
{
    return tu_http_once(s->admin_port, path, NULL, NULL, NULL, ret_body);
}

long long tu_svc_add_device_on(struct tu_svc *s, const char *app,
                               const char *type, const char *token,
                               const char *channel)
{
    char q[1024];
    size_t n = 0;
    char *sql = NULL, *r;
    long long id;

    /* The channel as an SQL literal: quotes doubled, in an E'' string
     * with backslashes doubled. */
    for (const char *c = channel; *c && n < sizeof(q) - 3; c++) {
        if (*c == '\'' || *c == '\\')
            q[n++] = *c;
        q[n++] = *c;
    }
    q[n] = '\0';
    assert_int_equal(
        asprintf(&sql,
                 "INSERT INTO installations (app_id, device_type, "
                 "device_token, channels) VALUES ('%s', '%s', '%s', "
                 "ARRAY[E'%s']) RETURNING id",
                 app, type, token, q) > 0,
        1);
    r = tu_svc_query(s, sql);
    free(sql);
    assert_non_null(r);
    id = atoll(r);
    free(r);
    return id;
}
