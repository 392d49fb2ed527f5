/* Config loading: table-driven over valid files and every kind of error. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define APP_OK "[app:demo]\nhook_key = k-0123456789abcdef\n"

struct tcase {
    const char *name;
    const char *ini;
    const char *env[6];  /* "K=V" */
    int rc;              /* expected return */
    const char *errs[4]; /* substrings expected among the messages */
    void (*check)(const struct pgw_config *cfg, const char *dir);
};

static void check_defaults(const struct pgw_config *c, const char *dir)
{
    char want[1024];

    assert_string_equal(c->server.listen, "127.0.0.1:8080");
    assert_string_equal(c->server.admin_listen, "127.0.0.1:9090");
    assert_int_equal(c->server.max_body_bytes, 1048576);
    assert_int_equal(c->server.max_peers_per_event, 10000);
    assert_int_equal(c->server.shutdown_timeout_ms, 10000);
    assert_int_equal(c->server.log_level, PGW_LOG_INFO);
    assert_int_equal(c->server.max_backlog_events, 1000000);
    assert_null(c->server.tls_cert_file);
    assert_string_equal(c->database.url, "postgresql:///pushgw");
    assert_int_equal(c->database.pool_size, 4);
    snprintf(want, sizeof(want), "%s/migrations", dir);
    assert_string_equal(c->database.migrations_dir, want);
    snprintf(want, sizeof(want), "%s/templates", dir);
    assert_string_equal(c->templates.dir, want);
    assert_string_equal(c->apns.production_url, "https://api.push.apple.com");
    assert_string_equal(c->apns.development_url,
                        "https://api.sandbox.push.apple.com");
    assert_null(c->apns.ca_file);
    assert_int_equal(c->apns.connections, 2);
    assert_int_equal(c->apns.request_timeout_ms, 10000);
    assert_string_equal(c->fcm.url, "https://fcm.googleapis.com");
    assert_string_equal(c->fcm.token_url,
                        "https://oauth2.googleapis.com/token");
    assert_int_equal(c->delivery.max_attempts, 8);
    assert_int_equal(c->delivery.retry_base_ms, 1000);
    assert_int_equal(c->delivery.retry_max_ms, 300000);
    assert_int_equal(c->delivery.validity_s, 604800);
    assert_int_equal(c->delivery.lease_ms, 30000);
    assert_int_equal(c->n_apps, 1);
    assert_string_equal(c->apps[0].id, "demo");
    assert_string_equal(c->apps[0].hook_key, "k-0123456789abcdef");
    assert_int_equal(c->apps[0].server_hook_timeout_ms, 3000);
    assert_null(c->apps[0].server_hook_url);
    assert_int_equal(c->apps[0].n_apns_teams, 0);
}

static void check_full(const struct pgw_config *c, const char *dir)
{
    char want[1024];
    const struct pgw_app *a;

    assert_string_equal(c->server.listen, "0.0.0.0:18080");
    assert_string_equal(c->server.admin_listen, "[::1]:19090");
    assert_int_equal(c->server.max_body_bytes, 2048);
    assert_int_equal(c->server.log_level, PGW_LOG_DEBUG);
    assert_int_equal(c->server.max_backlog_events, 5000000000LL);
    assert_string_equal(c->database.url, "host=/tmp dbname=x");
    assert_string_equal(c->database.migrations_dir, "/abs/migrations");
    snprintf(want, sizeof(want), "%s/keys/ca.pem", dir);
    assert_string_equal(c->apns.ca_file, want);
    assert_int_equal(c->apns.connections, 8);
    assert_int_equal(c->delivery.validity_s, 3600);
    assert_int_equal(c->delivery.lease_ms, 2000);
    assert_int_equal(c->n_apps, 2);
    a = pgw_config_find_app(c, "demo");
    assert_non_null(a);
    assert_string_equal(a->server_hook_url, "http://127.0.0.1:9999/hook");
    assert_string_equal(a->server_hook_key, "hk-0123456789abcdef");
    assert_int_equal(a->server_hook_timeout_ms, 500);
    assert_string_equal(a->apns_topic, "com.example.demo");
    assert_int_equal(a->n_apns_teams, 2);
    /* The default team comes first, whatever the file order. */
    assert_string_equal(a->apns_teams[0].team_id, "TEAM000001");
    assert_string_equal(a->apns_teams[0].key_id, "KEY0000001");
    snprintf(want, sizeof(want), "%s/keys/AuthKey_KEY0000001.p8", dir);
    assert_string_equal(a->apns_teams[0].key_file, want);
    assert_string_equal(a->apns_teams[1].team_id, "TEAM000002");
    assert_string_equal(a->apns_teams[1].key_id, "KEY0000002");
    snprintf(want, sizeof(want), "%s/fcm.json", dir);
    assert_string_equal(a->fcm_service_account_file, want);
    assert_non_null(pgw_config_find_app(c, "other-app.2"));
    assert_null(pgw_config_find_app(c, "nope"));
}

static void check_env(const struct pgw_config *c, const char *dir)
{
    (void)dir;
    assert_string_equal(c->database.url, "host=/from/env");
    assert_int_equal(c->server.max_peers_per_event, 7);
    assert_int_equal(c->server.log_level, PGW_LOG_ERROR);
    /* Section names with '.', '-' and ':' map to '_'. */
    assert_string_equal(c->apps[0].hook_key, "envkey-0123456789abcdef");
    assert_string_equal(c->apps[0].apns_teams[0].key_id, "ENVKEY");
}

static void check_empty_is_default(const struct pgw_config *c, const char *d)
{
    (void)d;
    assert_null(c->apps[0].server_hook_url);
    assert_int_equal(c->apns.connections, 2);
}

static void check_hook_key_file(const struct pgw_config *c, const char *d)
{
    (void)d;
    assert_string_equal(c->apps[0].hook_key, "from-file-0123456789");
}

static void check_leancloud_defaults(const struct pgw_config *c, const char *d)
{
    (void)d;
    assert_string_equal(c->apps[0].leancloud_app_id, "demo");
    assert_null(c->apps[0].app_key);
    assert_null(c->apps[0].master_key);
    assert_false(c->apps[0].allow_client_push);
    assert_null(c->server.client_listen);
}

static void check_leancloud(const struct pgw_config *c, const char *d)
{
    (void)d;
    assert_string_equal(c->server.client_listen, "127.0.0.1:8081");
    assert_string_equal(c->apps[0].leancloud_app_id, "lcid-1");
    assert_string_equal(c->apps[0].app_key, "from-file-0123456789");
    assert_string_equal(c->apps[0].master_key, "m4ster");
    assert_true(c->apps[0].allow_client_push);
    assert_ptr_equal(pgw_config_find_leancloud_app(c, "lcid-1"), &c->apps[0]);
    assert_null(pgw_config_find_leancloud_app(c, "demo"));
}

static void check_cert_password_file(const struct pgw_config *c, const char *d)
{
    char want[1024];

    snprintf(want, sizeof(want), "%s/apns.p12", d);
    assert_string_equal(c->apps[0].apns_cert_file, want);
    assert_string_equal(c->apps[0].apns_cert_password, "from-file-0123456789");
    assert_null(c->apps[0].apns_dev_cert_file);
}

static void check_proxy(const struct pgw_config *c, const char *d)
{
    char want[1024];

    assert_string_equal(c->apns.proxy,
                        "http://alice:s3cr3t@proxy.example:3128");
    assert_null(c->apns.proxy_password_file);
    assert_null(c->apns.proxy_password);
    assert_string_equal(c->fcm.proxy, "http://bob@[::1]:8080");
    snprintf(want, sizeof(want), "%s/hook.key", d);
    assert_string_equal(c->fcm.proxy_password_file, want);
    assert_string_equal(c->fcm.proxy_password, "from-file-0123456789");
}

static void check_proxy_env(const struct pgw_config *c, const char *d)
{
    (void)d;
    assert_null(c->apns.proxy);
    assert_string_equal(c->fcm.proxy, "http://127.0.0.1:3128");
}

static const struct tcase cases[] = {
    {"proxy",
     "[apns]\nproxy = http://alice:s3cr3t@proxy.example:3128\n"
     "[fcm]\nproxy = http://bob@[::1]:8080\nproxy_password_file = "
     "hook.key\n" APP_OK,
     {NULL},
     0,
     {NULL},
     check_proxy},
    {"proxy from the environment",
     APP_OK,
     {"PUSHGW_FCM_PROXY=http://127.0.0.1:3128", NULL},
     0,
     {NULL},
     check_proxy_env},
    {"https proxy",
     "[apns]\nproxy = https://alice:s3cr3t@p:1\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"[apns] proxy: invalid value 'https://alice:***@p:1': https:// "
      "proxies are not supported"},
     NULL},
    {"proxy without port",
     APP_OK,
     {"PUSHGW_APNS_PROXY=http://u:s3cr3t@proxy", NULL},
     PGW_ERR_CONFIG,
     {"environment 'PUSHGW_APNS_PROXY': [apns] proxy: invalid value "
      "'http://u:***@proxy': no port"},
     NULL},
    {"proxy password file alone",
     "[fcm]\nproxy_password_file = hook.key\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"[fcm] proxy_password_file: set only with proxy"},
     NULL},
    {"proxy password twice",
     "[fcm]\nproxy = http://u:s3cr3t@p:1\nproxy_password_file = "
     "hook.key\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"needs a URL with a user name and no password"},
     NULL},
    {"proxy password file missing",
     "[apns]\nproxy = http://u@p:1\nproxy_password_file = nothere\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"[apns] proxy_password_file: cannot read"},
     NULL},
    {"leancloud defaults", APP_OK, {NULL}, 0, {NULL}, check_leancloud_defaults},
    {"leancloud keys",
     "[server]\nclient_listen = 127.0.0.1:8081\n" APP_OK
     "leancloud_app_id = lcid-1\napp_key_file = hook.key\n"
     "master_key = m4ster\nallow_client_push = yes\n",
     {NULL},
     0,
     {NULL},
     check_leancloud},
    {"both app keys",
     APP_OK "app_key = s3cr3t\napp_key_file = hook.key\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"set either app_key or app_key_file, not both"},
     NULL},
    {"master key file missing",
     APP_OK "master_key_file = nothere.key\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"master_key_file: cannot read"},
     NULL},
    {"bad bool",
     APP_OK "allow_client_push = maybe\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"allow_client_push: invalid value 'maybe': expected true or false"},
     NULL},
    {"same leancloud id",
     APP_OK "leancloud_app_id = x\nmaster_key = s3cr3t\n"
            "[app:two]\nhook_key = k-0123456789abcdef\nleancloud_app_id = x\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"[app:demo] and [app:two] have the same leancloud_app_id 'x'"},
     NULL},
    {"defaults", APP_OK, {NULL}, 0, {NULL}, check_defaults},
    {"full",
     "; a comment\n"
     "[server]\nlisten = 0.0.0.0:18080 ; inline comment\n"
     "admin_listen = [::1]:19090\nmax_body_bytes = 2048\n"
     "log_level = debug\nmax_backlog_events = 5000000000\n"
     "[database]\nurl = host=/tmp dbname=x\nmigrations_dir = /abs/migrations\n"
     "[apns]\nca_file = keys/ca.pem\nconnections = 8\n"
     "[delivery]\nvalidity_s = 3600\nlease_ms = 2000\n"
     "[app:demo]\nhook_key = k-0123456789abcdef\nserver_hook_url = "
     "http://127.0.0.1:9999/hook\n"
     "server_hook_key = hk-0123456789abcdef\nserver_hook_timeout_ms = 500\n"
     "apns_topic = com.example.demo\n"
     "apns_team.TEAM000002.key_id = KEY0000002\n"
     "apns_team.TEAM000002.key_file = keys/AuthKey_KEY0000002.p8\n"
     "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
     "apns_key_file = keys/AuthKey_KEY0000001.p8\n"
     "fcm_service_account_file = fcm.json\n"
     "[app:other-app.2]\nhook_key = k2-0123456789abcdef\n",
     {NULL},
     0,
     {NULL},
     check_full},
    {"env overrides",
     "[database]\nurl = host=/from/file\n"
     "[app:my-app.x]\nhook_key = filekey-0123456789abcdef\napns_topic = t\n"
     "apns_team_id = T\napns_key_id = FILEKEY\napns_key_file = k.p8\n",
     {"PUSHGW_DATABASE_URL=host=/from/env",
      "PUSHGW_SERVER_MAX_PEERS_PER_EVENT=7", "PUSHGW_SERVER_LOG_LEVEL=error",
      "PUSHGW_APP_MY_APP_X_HOOK_KEY=envkey-0123456789abcdef",
      "PUSHGW_APP_MY_APP_X_APNS_KEY_ID=ENVKEY", NULL},
     0,
     {NULL},
     check_env},
    {"empty value means default",
     APP_OK "server_hook_url =\n[apns]\nconnections =\n",
     {NULL},
     0,
     {NULL},
     check_empty_is_default},
    {"unknown section",
     APP_OK "[bogus]\nx = 1\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"line 4: key 'x' is in unknown section '[bogus]'"},
     NULL},
    {"unknown key",
     "[server]\nlisten = 127.0.0.1:1\nlisen = x\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"line 3: [server] lisen: unknown key 'lisen'"},
     NULL},
    {"unknown app key",
     APP_OK "hookkey = x\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"line 3: [app:demo] hookkey: unknown key"},
     NULL},
    {"not an integer",
     "[server]\nmax_body_bytes = 12k\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"line 2: [server] max_body_bytes: invalid value '12k': not an integer"},
     NULL},
    {"out of range",
     "[apns]\nconnections = 0\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"line 2: [apns] connections: value '0' out of range 1..1000"},
     NULL},
    {"bad level",
     "[server]\nlog_level = loud\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"log_level: invalid value 'loud'"},
     NULL},
    {"bad listen",
     "[server]\nlisten = 8080\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"listen: invalid value '8080': expected host:port"},
     NULL},
    {"bad port",
     "[server]\nadmin_listen = 127.0.0.1:70000\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"expected host:port"},
     NULL},
    {"bad url",
     "[apns]\nproduction_url = api.push.apple.com\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"production_url: invalid value 'api.push.apple.com'"},
     NULL},
    {"env bad value",
     APP_OK,
     {"PUSHGW_APNS_CONNECTIONS=many", NULL},
     PGW_ERR_CONFIG,
     {"environment 'PUSHGW_APNS_CONNECTIONS': [apns] connections: invalid "
      "value 'many'"},
     NULL},
    {"duplicate key",
     "[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"line 3: [server] listen: duplicate key (first set on line 2)"},
     NULL},
    {"short hook key",
     "[app:demo]\nhook_key = a\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"[app:demo]: hook_key is too short (1 bytes): use at least 16"},
     NULL},
    {"hook key of 15 bytes",
     "[app:demo]\nhook_key = 0123456789abcde\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"hook_key is too short (15 bytes)"},
     NULL},
    {"the example's placeholder",
     "[app:demo]\nhook_key = change-me-to-a-long-random-secret\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"hook_key is the example's placeholder"},
     NULL},
    {"a URL's password is never echoed",
     APP_OK "server_hook_url = htp://user:s3cr3t@10.0.0.1/hook\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"invalid value 'htp://user:***@10.0.0.1/hook'"},
     NULL},
    {"missing hook key",
     "[app:demo]\napns_topic = x\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"[app:demo]: missing required key 'hook_key'"},
     NULL},
    {"both hook keys",
     APP_OK "hook_key_file = hk.txt\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"set either hook_key or hook_key_file, not both"},
     NULL},
    {"hook key file missing",
     "[app:demo]\nhook_key_file = nothere.txt\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"hook_key_file: cannot read", "No such file or directory"},
     NULL},
    {"hook key file",
     "[app:demo]\nhook_key_file = hook.key\n",
     {NULL},
     0,
     {NULL},
     check_hook_key_file},
    {"certificate password from a file",
     APP_OK "apns_cert_file = apns.p12\napns_cert_password_file = hook.key\n",
     {NULL},
     0,
     {NULL},
     check_cert_password_file},
    {"certificate password twice",
     APP_OK "apns_cert_file = a.p12\napns_cert_password = s3cr3t\n"
            "apns_cert_password_file = hook.key\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"set either apns_cert_password or apns_cert_password_file"},
     NULL},
    {"development certificate alone",
     APP_OK "apns_dev_cert_file = dev.pem\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"apns_dev_cert_file needs apns_cert_file"},
     NULL},
    {"certificate password without certificate",
     APP_OK "apns_cert_password = s3cr3t\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"a certificate password is set without its certificate file"},
     NULL},
    {"partial apns team",
     APP_OK "apns_topic = t\napns_team_id = T\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"apns_team_id, apns_key_id and apns_key_file must be set together"},
     NULL},
    {"team without topic",
     APP_OK "apns_team.T2.key_id = K\napns_team.T2.key_file = k.p8\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"missing required key 'apns_topic'"},
     NULL},
    {"team missing file",
     APP_OK "apns_topic = t\napns_team.T2.key_id = K\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"team 'T2' needs both apns_team.T2.key_id and apns_team.T2.key_file"},
     NULL},
    {"bad team key",
     APP_OK "apns_team.T2.secret = K\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"expected apns_team.<TEAMID>.key_id"},
     NULL},
    {"bad app id",
     "[app:bad id!]\nhook_key = k-0123456789abcdef\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"invalid app id 'bad id!'"},
     NULL},
    {"syntax error",
     "[server\nlisten = x\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"line 1: syntax error"},
     NULL},
    {"hook key without url",
     APP_OK "server_hook_key = x-0123456789abcdef\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"server_hook_key is set but server_hook_url is not"},
     NULL},
    {"retry base above max",
     "[delivery]\nretry_base_ms = 5000\nretry_max_ms = 1000\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"retry_base_ms (5000) is larger than retry_max_ms"},
     NULL},
    {"tls half set",
     "[server]\ntls_cert_file = c.pem\n" APP_OK,
     {NULL},
     PGW_ERR_CONFIG,
     {"tls_cert_file and tls_key_file must be set together"},
     NULL},
    {"several errors at once",
     "[server]\nlisten = nope\nmax_peers_per_event = -1\n[x]\ny = 1\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"listen: invalid value 'nope'", "max_peers_per_event: value '-1'",
      "unknown section '[x]'"},
     NULL},
    {"secret not echoed",
     "[app:demo]\nhook_key = s3cr3t-0123456789abcdef\nbogus = 1\n",
     {NULL},
     PGW_ERR_CONFIG,
     {"unknown key 'bogus'"},
     NULL},
};

static void run_case(const struct tcase *tc)
{
    char *dir = tu_mkdtemp();
    char *path;
    char *hk;
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    char *envp[8] = {NULL};
    int rc;

    assert_non_null(dir);
    path = tu_write_file(dir, "pushgw.ini", tc->ini, 0644);
    hk = tu_write_file(dir, "hook.key", "from-file-0123456789\n", 0600);
    for (size_t i = 0; tc->env[i]; i++)
        envp[i] = (char *)tc->env[i];
    pgw_diag_init(&diag);
    rc = pgw_config_load(path, envp, &diag, &cfg);
    if (rc != tc->rc) {
        for (size_t i = 0; i < diag.n; i++)
            print_error("%s: %s\n", tc->name, diag.msgs[i]);
        fail_msg("case '%s': rc %d, want %d", tc->name, rc, tc->rc);
    }
    for (size_t e = 0; tc->errs[e]; e++) {
        int found = 0;
        for (size_t i = 0; i < diag.n; i++)
            found |= strstr(diag.msgs[i], tc->errs[e]) != NULL;
        if (!found) {
            for (size_t i = 0; i < diag.n; i++)
                print_error("%s: %s\n", tc->name, diag.msgs[i]);
            fail_msg("case '%s': no error containing \"%s\"", tc->name,
                     tc->errs[e]);
        }
    }
    /* Every error names the file or the variable it came from. */
    for (size_t i = 0; i < diag.n; i++) {
        assert_true(strstr(diag.msgs[i], path) ||
                    strstr(diag.msgs[i], "environment '"));
        assert_null(strstr(diag.msgs[i], "s3cr3t"));
    }
    if (tc->rc == 0) {
        assert_int_equal(diag.n, 0);
        assert_non_null(cfg);
        char *real = realpath(dir, NULL);
        assert_string_equal(cfg->dir, real);
        if (tc->check)
            tc->check(cfg, real);
        free(real);
    } else {
        assert_null(cfg);
        assert_true(diag.n > 0);
    }
    pgw_config_free(cfg);
    pgw_diag_release(&diag);
    tu_rm_rf(dir);
    free(path);
    free(hk);
    free(dir);
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(cases); i++)
        run_case(&cases[i]);
}

static void test_missing_file(void **state)
{
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    char *envp[] = {NULL};
    (void)state;

    pgw_diag_init(&diag);
    assert_int_equal(
        pgw_config_load("/nonexistent/pushgw.ini", envp, &diag, &cfg),
        PGW_ERR_IO);
    assert_int_equal(diag.n, 1);
    assert_string_equal(diag.msgs[0], "cannot read config "
                                      "'/nonexistent/pushgw.ini': No such "
                                      "file or directory");
    pgw_diag_release(&diag);
}

/* Relative paths resolve against the config file's folder, not the cwd. */
static void test_relative_to_config_dir(void **state)
{
    char *dir = tu_mkdtemp();
    char *sub = NULL;
    char *path;
    char *real;
    char want[1024];
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    char *envp[] = {NULL};
    (void)state;

    assert_int_equal(asprintf(&sub, "%s/etc", dir) > 0, 1);
    assert_int_equal(mkdir(sub, 0755), 0);
    path = tu_write_file(sub, "pushgw.ini",
                         "[templates]\ndir = ../tpl\n" APP_OK, 0644);
    assert_int_equal(chdir("/"), 0);
    pgw_diag_init(&diag);
    assert_int_equal(pgw_config_load(path, envp, &diag, &cfg), 0);
    real = realpath(sub, NULL);
    snprintf(want, sizeof(want), "%s/../tpl", real);
    assert_string_equal(cfg->templates.dir, want);
    pgw_config_free(cfg);
    pgw_diag_release(&diag);
    tu_rm_rf(dir);
    free(real);
    free(path);
    free(sub);
    free(dir);
}

static void test_check_files(void **state)
{
    char *dir = tu_mkdtemp();
    char *ini = NULL;
    char *path, *k1, *k2;
    struct pgw_diag diag;
    struct pgw_config *cfg = NULL;
    char *envp[] = {NULL};
    char sub[1024];
    (void)state;

    k1 = tu_write_file(dir, "good.p8", "x", 0600);
    k2 = tu_write_file(dir, "open.p8", "x", 0644);
    assert_int_equal(
        asprintf(&ini,
                 "[app:demo]\nhook_key = k-0123456789abcdef\napns_topic = t\n"
                 "apns_team_id = T1\napns_key_id = K1\n"
                 "apns_key_file = good.p8\n"
                 "apns_team.T2.key_id = K2\n"
                 "apns_team.T2.key_file = open.p8\n"
                 "apns_team.T3.key_id = K3\n"
                 "apns_team.T3.key_file = missing.p8\n") > 0,
        1);
    path = tu_write_file(dir, "pushgw.ini", ini, 0644);
    pgw_diag_init(&diag);
    assert_int_equal(pgw_config_load(path, envp, &diag, &cfg), 0);
    /* No templates or migrations dir yet, one open key, one missing. */
    assert_int_equal(pgw_config_check_files(cfg, &diag), 4);
    assert_int_equal(diag.n, 4);
    assert_non_null(strstr(diag.msgs[0], "templates dir"));
    assert_non_null(strstr(diag.msgs[1], "migrations dir"));
    assert_non_null(strstr(diag.msgs[2], "team 'T2'"));
    assert_non_null(strstr(diag.msgs[2], "the group or other users can use "
                                         "it (mode 0644)"));
    assert_non_null(strstr(diag.msgs[3], "missing.p8': No such file"));
    pgw_diag_release(&diag);

    snprintf(sub, sizeof(sub), "%s/templates", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    /* readable by the group: refused too (issue 20) */
    assert_int_equal(chmod(k2, 0640), 0);
    pgw_diag_init(&diag);
    assert_int_equal(pgw_config_check_files(cfg, &diag), 2);
    assert_non_null(strstr(diag.msgs[0], "(mode 0640)"));
    pgw_diag_release(&diag);
    assert_int_equal(chmod(k2, 0600), 0);
    pgw_diag_init(&diag);
    assert_int_equal(pgw_config_check_files(cfg, &diag), 1);
    assert_non_null(strstr(diag.msgs[0], "missing.p8"));
    pgw_diag_release(&diag);

    pgw_config_free(cfg);
    tu_rm_rf(dir);
    free(ini);
    free(path);
    free(k1);
    free(k2);
    free(dir);
}

/* The binary: check-config prints each problem and exits 1. */
static void test_check_config_command(void **state)
{
    char *dir = tu_mkdtemp();
    char *path =
        tu_write_file(dir, "pushgw.ini",
                      "[app:demo]\nhook_key = topsecret-0123456789abcdef\n"
                      "server_hook_key = alsosecret-0123456789abcdef\n"
                      "server_hook_url = http://127.0.0.1:1/\n",
                      0644);
    char *out = NULL, *err = NULL;
    const char *argv[] = {"check-config", "-c", path, NULL};
    char sub[1024];
    (void)state;

    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "templates dir"));
    assert_null(strstr(err, "topsecret"));
    assert_null(strstr(out, "topsecret"));
    free(out);
    free(err);

    snprintf(sub, sizeof(sub), "%s/templates", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    mkdir(sub, 0755);
    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 0);
    assert_non_null(strstr(out, "is valid: 1 app(s)"));
    assert_null(strstr(out, "secret"));
    /* a config others can read that holds the hook key: a warning, not a
     * failure, and the key itself is never printed */
    assert_non_null(strstr(err, "pushgw: warning: config '"));
    assert_non_null(strstr(err, "holds hook_key and the group or other users "
                                "can read it (mode 0644)"));
    assert_null(strstr(err, "topsecret"));
    free(out);
    free(err);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

/* check-config names the proxies with their passwords hidden, and warns
 * when a config others can read holds one. */
static void test_check_config_proxy(void **state)
{
    char *dir = tu_mkdtemp();
    char *path = tu_write_file(
        dir, "pushgw.ini",
        "[apns]\nproxy = http://alice:topsecret@proxy.example:3128\n"
        "[fcm]\nproxy = http://bob@proxy.example:3128\n"
        "[app:demo]\nhook_key_file = hook.key\n",
        0644);
    char *key = tu_write_file(dir, "hook.key", "from-file-0123456789\n", 0600);
    char *out = NULL, *err = NULL;
    const char *argv[] = {"check-config", "-c", path, NULL};
    char sub[1024];
    (void)state;

    snprintf(sub, sizeof(sub), "%s/templates", dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    mkdir(sub, 0755);
    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 0);
    assert_non_null(strstr(out, "is valid: 1 app(s)"));
    assert_non_null(strstr(
        out, "apns: through proxy 'http://alice:***@proxy.example:3128'"));
    assert_non_null(
        strstr(out, "fcm: through proxy 'http://bob@proxy.example:3128'"));
    assert_non_null(strstr(err, "holds a proxy password and the group or "
                                "other users can read it"));
    assert_null(strstr(out, "topsecret"));
    assert_null(strstr(err, "topsecret"));
    free(out);
    free(err);
    tu_rm_rf(dir);
    free(key);
    free(path);
    free(dir);
}

/* check-config loads what serve loads: templates, APNs keys, FCM
 * service accounts; each problem is named. */
static void test_check_config_loads_keys(void **state)
{
    char *dir = tu_mkdtemp();
    char sub[1024];
    char *ini = NULL;
    char *path, *out = NULL, *err = NULL;
    const char *argv[] = {"check-config", "-c", NULL, NULL};
    (void)state;

    snprintf(sub, sizeof(sub), "%s/templates", dir);
    mkdir(sub, 0755);
    free(tu_write_file(sub, "demo.json", "{\"alert\": oops}", 0644));
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    mkdir(sub, 0755);
    free(tu_write_file(dir, "bad.p8", "not a key\n", 0600));
    free(tu_write_file(dir, "sa.json", "{\"type\": 1}", 0600));
    assert_int_equal(
        asprintf(&ini,
                 "[app:demo]\nhook_key = k-0123456789abcdef\napns_topic = t\n"
                 "apns_team_id = TEAM1\napns_key_id = KEY1\n"
                 "apns_key_file = bad.p8\n"
                 "fcm_service_account_file = sa.json\n") > 0,
        1);
    path = tu_write_file(dir, "pushgw.ini", ini, 0644);
    argv[2] = path;
    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "demo.json"));
    assert_non_null(strstr(err, "APNs key"));
    assert_non_null(strstr(err, "bad.p8"));
    assert_non_null(strstr(err, "sa.json"));
    assert_null(strstr(out, "is valid"));
    free(out);
    free(err);
    tu_rm_rf(dir);
    free(ini);
    free(path);
    free(dir);
}

/* An app that holds APNs certificates (PKCS#12 with a password from a
 * file, and a PEM development certificate): check-config loads them and
 * says when each expires; a wrong password is a problem that names the
 * file, never the password. */
static void test_check_config_certificates(void **state)
{
    char *dir = tu_mkdtemp();
    char sub[1024];
    char *ini = NULL;
    char *path, *out = NULL, *err = NULL;
    const char *argv[] = {"check-config", "-c", NULL, NULL};
    (void)state;

    snprintf(sub, sizeof(sub), "%s/templates", dir);
    mkdir(sub, 0755);
    free(tu_write_file(sub, "default.json", "{\"alert\": \"hi\"}", 0644));
    snprintf(sub, sizeof(sub), "%s/migrations", dir);
    mkdir(sub, 0755);
    free(tu_write_file(dir, "p12.pass", "p12-secret\n", 0600));
    free(tu_write_file(dir, "wrong.pass", "not-it\n", 0600));
    assert_int_equal(asprintf(&ini,
                              "[app:demo]\nhook_key = k-0123456789abcdef\n"
                              "apns_cert_file = %s/apns-cert.p12\n"
                              "apns_cert_password_file = p12.pass\n"
                              "apns_dev_cert_file = %s/apns-dev-cert.pem\n",
                              PUSHGW_TEST_CERTS_DIR, PUSHGW_TEST_CERTS_DIR) > 0,
                     1);
    path = tu_write_file(dir, "pushgw.ini", ini, 0600);
    argv[2] = path;
    if (tu_run_pushgw(argv, NULL, &out, &err) != 0)
        fail_msg("check-config: %s", err);
    assert_non_null(strstr(out, "is valid"));
    assert_non_null(strstr(out, "APNs certificate"));
    assert_non_null(strstr(out, "(topic 'com.example.app'): expires"));
    assert_non_null(strstr(out, "APNs development certificate"));
    free(out);
    free(err);
    free(path);
    free(ini);
    ini = NULL;
    assert_int_equal(asprintf(&ini,
                              "[app:demo]\nhook_key = k-0123456789abcdef\n"
                              "apns_cert_file = %s/apns-cert.p12\n"
                              "apns_cert_password_file = wrong.pass\n",
                              PUSHGW_TEST_CERTS_DIR) > 0,
                     1);
    path = tu_write_file(dir, "pushgw.ini", ini, 0600);
    argv[2] = path;
    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "APNs certificate cannot be used"));
    assert_non_null(strstr(err, "apns-cert.p12"));
    assert_null(strstr(err, "not-it"));
    assert_null(strstr(out, "is valid"));
    free(out);
    free(err);
    tu_rm_rf(dir);
    free(ini);
    free(path);
    free(dir);
}

/* serve refuses a key the group can read (exit 2, the path logged) and
 * warns about a plain-http hook on another host; check-config says both. */
static void test_serve_refuses_open_keys(void **state)
{
    char *dir = tu_mkdtemp();
    char *ini = NULL, *path, *key, *out = NULL, *err = NULL;
    const char *serve[] = {"serve", "-c", NULL, NULL};
    const char *check[] = {"check-config", "-c", NULL, NULL};

    (void)state;
    key = tu_write_file(dir, "hook.key", "0123456789abcdef-file\n", 0640);
    assert_int_equal(asprintf(&ini,
                              "[database]\nurl = host=/nonexistent "
                              "dbname=none\n"
                              "[app:demo]\nhook_key_file = %s\n"
                              "server_hook_url = http://u:pw@10.9.8.7/hook\n",
                              key) > 0,
                     1);
    path = tu_write_file(dir, "pushgw.ini", ini, 0600);
    serve[2] = check[2] = path;
    assert_int_equal(tu_run_pushgw(serve, NULL, &out, &err), 2);
    assert_non_null(strstr(err, "cannot start"));
    assert_non_null(strstr(err, "hook.key"));
    assert_non_null(strstr(err, "mode 0640"));
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(check, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "mode 0640"));
    assert_non_null(strstr(err, "warning: [app:demo] server_hook_url "
                                "'http://u:***@10.9.8.7/hook' is plain HTTP"));
    assert_null(strstr(err, ":pw@"));
    free(out);
    free(err);
    tu_rm_rf(dir);
    free(key);
    free(ini);
    free(path);
    free(dir);
}

/* How often |needle| occurs in |hay|. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Exit codes as the README says: check-config 1 = problems found, 2 =
 * the file cannot be read or usage; serve and migrate 2 for a config
 * they cannot use. Each problem is printed once. */
static void test_cli_exit_codes(void **state)
{
    char *dir = tu_mkdtemp();
    char *bad = tu_write_file(
        dir, "bad.ini",
        "[app:demo]\nhook_key = k-0123456789abcdef\nbogus = 1\n", 0644);
    char *missing = NULL;
    char *out = NULL, *err = NULL;
    const char *check_bad[] = {"check-config", "-c", bad, NULL};
    const char *check_missing[] = {"check-config", "-c", NULL, NULL};
    const char *check_usage[] = {"check-config", "extra", NULL};
    const char *serve_bad[] = {"serve", "-c", bad, NULL};
    const char *migrate_bad[] = {"migrate", "-c", bad, NULL};
    char *ok = tu_write_file(
        dir, "ok.ini", "[app:demo]\nhook_key = k-0123456789abcdef\n", 0644);
    const char *check_ok[] = {"check-config", "-c", ok, NULL};
    (void)state;

    assert_true(asprintf(&missing, "%s/nope.ini", dir) > 0);
    check_missing[2] = missing;

    assert_int_equal(tu_run_pushgw(check_bad, NULL, &out, &err), 1);
    assert_int_equal(count_of(err, "unknown key 'bogus'"), 1);
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(check_missing, NULL, &out, &err), 2);
    assert_non_null(strstr(err, "cannot read config"));
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(check_usage, NULL, &out, &err), 2);
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(serve_bad, NULL, &out, &err), 2);
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(migrate_bad, NULL, &out, &err), 2);
    free(out);
    free(err);

    /* No templates folder: one line about it, not two. */
    assert_int_equal(tu_run_pushgw(check_ok, NULL, &out, &err), 1);
    assert_int_equal(count_of(err, "templates dir"), 1);
    assert_int_equal(count_of(err, "migrations dir"), 1);
    free(out);
    free(err);

    tu_rm_rf(dir);
    free(bad);
    free(ok);
    free(missing);
    free(dir);
}

static void test_cli_usage(void **state)
{
    char *out = NULL, *err = NULL;
    const char *v[] = {"version", NULL};
    const char *bad[] = {"frobnicate", NULL};
    const char *badopt[] = {"migrate", "--nope", NULL};
    (void)state;

    assert_int_equal(tu_run_pushgw(v, NULL, &out, &err), 0);
    assert_true(strncmp(out, "pushgw ", 7) == 0);
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(bad, NULL, &out, &err), 2);
    assert_non_null(strstr(err, "unknown command 'frobnicate'"));
    free(out);
    free(err);
    assert_int_equal(tu_run_pushgw(badopt, NULL, &out, &err), 2);
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_relative_to_config_dir),
        cmocka_unit_test(test_check_files),
        cmocka_unit_test(test_check_config_command),
        cmocka_unit_test(test_check_config_proxy),
        cmocka_unit_test(test_check_config_loads_keys),
        cmocka_unit_test(test_check_config_certificates),
        cmocka_unit_test(test_serve_refuses_open_keys),
        cmocka_unit_test(test_cli_exit_codes),
        cmocka_unit_test(test_cli_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
