/* The end-to-end harness (see svc.h). */
#include "svc.h"

#include "testutil.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOCK_APNS PUSHGW_BINARY_DIR "/tests/mock/mock_apns"
#define MOCK_FCM PUSHGW_BINARY_DIR "/tests/mock/mock_fcm"
#define HOOK_SERVER PUSHGW_BINARY_DIR "/tests/service/hook_server"
#define CERTS PUSHGW_TEST_CERTS_DIR

static char *path_in(const char *dir, const char *name)
{
    char *p = NULL;
    assert_int_equal(asprintf(&p, "%s/%s", dir, name) > 0, 1);
    return p;
}

/* A free loopback port (bound then released: good enough for tests). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void start_proc(struct svc *s, struct svc_proc *p, const char *name,
                       const char *const *base_args, const char *const *listen,
                       const char *const *extra)
{
    const char *argv[64];
    size_t n = 0;
    char *pf = NULL;
    char buf[64];

    snprintf(buf, sizeof(buf), "%s.port", name);
    pf = path_in(s->dir, buf);
    unlink(pf);
    snprintf(buf, sizeof(buf), "%s.log", name);
    if (!p->log)
        p->log = path_in(s->dir, buf);
    if (!p->record) {
        snprintf(buf, sizeof(buf), "%s.jsonl", name);
        p->record = path_in(s->dir, buf);
    }
    for (size_t i = 0; base_args[i]; i++)
        argv[n++] = base_args[i];
    for (size_t i = 0; listen && listen[i]; i++)
        argv[n++] = listen[i];
    argv[n++] = "--port-file";
    argv[n++] = pf;
    argv[n++] = "--record";
    argv[n++] = p->record;
    for (size_t i = 0; extra && extra[i] && n < 60; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p->pid = tu_spawn(argv, p->log);
    p->port = tu_wait_port_file(pf, 10000);
    if (p->port <= 0) {
        char *log = tu_read_file(p->log);
        fail_msg("%s did not start: %s", name, log ? log : "(no log)");
    }
    free(pf);
}

/* The mocks' arguments but for --listen, --port-file and --record. */
const char *const svc_mock_apns_args[] = {
    MOCK_APNS,
    "--cert",
    CERTS "/server.pem",
    "--key",
    CERTS "/server.key",
    "--team",
    "TEAM000001:KEY0000001:" CERTS "/AuthKey_KEY0000001.pub.pem",
    "--team",
    "TEAM000002:KEY0000002:" CERTS "/AuthKey_KEY0000002.pub.pem",
    "--quiet",
    NULL};
const char *const svc_mock_fcm_args[] = {
    MOCK_FCM,
    "--cert",
    CERTS "/server.pem",
    "--key",
    CERTS "/server.key",
    "--service-account-pub",
    CERTS "/fcm-sa.pub.pem",
    "--client-email",
    "pushgw@pushgw-test.iam.gserviceaccount.com",
    "--project",
    "pushgw-test",
    "--quiet",
    NULL};

static void start_mocks(struct svc *s, const struct svc_options *o)
{
    static const char *const any_port[] = {"--listen", "127.0.0.1:0", NULL};
    const char *hook[] = {HOOK_SERVER, "--answers", NULL, NULL};
    char *answers =
        tu_write_file(s->dir, "hook-answers.json",
                      o->hook_answers ? o->hook_answers : "{}", 0644);

    hook[2] = answers;
    start_proc(s, &s->apns, "apns", svc_mock_apns_args, any_port, o->apns_args);
    start_proc(s, &s->apns_dev, "apns-dev", svc_mock_apns_args, any_port,
               o->apns_args);
    start_proc(s, &s->fcm, "fcm", svc_mock_fcm_args, any_port, o->fcm_args);
    start_proc(s, &s->hook, "hook", hook, NULL, NULL);
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

static void write_config(struct svc *s, const struct svc_options *o)
{
    char *ini = NULL;
    char *tdir = path_in(s->dir, "templates");
    char *dflt = tu_read_file(PUSHGW_SOURCE_DIR "/templates/default.json");

    mkdir(tdir, 0755);
    assert_non_null(dflt);
    free(tu_write_file(tdir, "default.json", dflt, 0644));
    free(dflt);
    s->gw.port = free_port();
    s->admin_port = free_port();
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
            "ca_file = %s/ca.pem\nrequest_timeout_ms = 3000\n"
            "[fcm]\nurl = https://127.0.0.1:%d\n"
            "token_url = https://127.0.0.1:%d/token\n"
            "ca_file = %s/ca.pem\nrequest_timeout_ms = 3000\n"
            "[delivery]\n%s%s%s"
            "[app:demo]\nhook_key = demo-key\n"
            "apns_topic = com.example.demo\n"
            "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
            "apns_key_file = %s/AuthKey_KEY0000001.p8\n"
            "apns_team.TEAM000002.key_id = KEY0000002\n"
            "apns_team.TEAM000002.key_file = %s/AuthKey_KEY0000002.p8\n"
            "fcm_service_account_file = %s/fcm-sa.json\n"
            "[app:hooked]\nhook_key = hooked-key\n"
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
    s->ini = tu_write_file(s->dir, "pushgw.ini", ini, 0644);
    free(ini);
    free(tdir);
}

static void migrate(struct svc *s)
{
    const char *argv[] = {"migrate", "-c", s->ini, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run_pushgw(argv, NULL, &out, &err);

    if (rc != 0)
        fail_msg("pushgw migrate failed (%d): %s", rc, err);
    free(out);
    free(err);
}

void svc_start_gateway(struct svc *s)
{
    const char *bin = getenv("PUSHGW_BIN");
    const char *argv[] = {bin ? bin : PUSHGW_BINARY_DIR "/pushgw", "serve",
                          "-c", s->ini, NULL};
    char *body = NULL;

    if (!s->gw.log)
        s->gw.log = path_in(s->dir, "pushgw.log");
    s->gw.pid = tu_spawn(argv, s->gw.log);
    /* Ready when /readyz answers 200 (database, templates, keys). */
    for (int i = 0; i < 1000; i++) {
        int st = svc_admin_get(s, "/readyz", &body);
        free(body);
        body = NULL;
        if (st == 200)
            return;
        usleep(10000);
    }
    char *log = tu_read_file(s->gw.log);
    fail_msg("pushgw serve did not become ready: %s", log ? log : "");
}

int svc_kill_gateway(struct svc *s, int sig)
{
    int rc = tu_stop(s->gw.pid, sig);
    s->gw.pid = 0;
    return rc;
}

void svc_start(struct svc *s, const struct svc_options *opts)
{
    static const struct svc_options none;

    if (!opts)
        opts = &none;
    memset(s, 0, sizeof(*s));
    s->dir = tu_mkdtemp();
    assert_non_null(s->dir);
    if (opts->reuse_db || opts->db) {
        s->db = strdup(opts->reuse_db ? opts->reuse_db : opts->db);
    } else {
        s->db = tu_db_create("pgw_svc");
        s->own_db = 1;
    }
    start_mocks(s, opts);
    write_config(s, opts);
    if (!opts->reuse_db)
        migrate(s);
    svc_start_gateway(s);
}

static void stop_proc(struct svc_proc *p)
{
    if (p->pid > 0)
        tu_stop(p->pid, SIGTERM);
    p->pid = 0;
    free(p->record);
    free(p->log);
}

void svc_stop(struct svc *s)
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
    stop_proc(&s->gw);
    stop_proc(&s->apns);
    stop_proc(&s->apns_dev);
    stop_proc(&s->fcm);
    stop_proc(&s->hook);
    if (s->own_db)
        tu_db_drop(s->db);
    if (getenv("PUSHGW_TEST_KEEP") == NULL)
        tu_rm_rf(s->dir);
    free(s->dir);
    free(s->db);
    free(s->ini);
}

struct membuf {
    char *p;
    size_t n;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct membuf *b = arg;
    size_t len = size * nmemb;
    char *np = realloc(b->p, b->n + len + 1);

    if (!np)
        return 0;
    memcpy(np + b->n, data, len);
    b->n += len;
    np[b->n] = '\0';
    b->p = np;
    return len;
}

static int http(const char *url, const char *key, const char *ctype,
                const char *body, char **ret_body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct membuf b = {calloc(1, 1), 0};
    char line[512];
    long status = 0;

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        snprintf(line, sizeof(line), "Content-Type: %s",
                 ctype ? ctype : "application/json");
        h = curl_slist_append(h, line);
    }
    if (key) {
        snprintf(line, sizeof(line), "X-LC-Hook-Key: %s", key);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (ret_body)
        *ret_body = b.p;
    else
        free(b.p);
    return (int)status;
}

int svc_post(struct svc *s, const char *path, const char *key,
             const char *ctype, const char *body, char **ret_body)
{
    char url[512];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->gw.port, path);
    return http(url, key, ctype, body, ret_body);
}

int svc_admin_get(struct svc *s, const char *path, char **ret_body)
{
    char url[512];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->admin_port, path);
    return http(url, NULL, NULL, NULL, ret_body);
}

static size_t count_lines(const char *path)
{
    char *text = tu_read_file(path);
    size_t n = 0;

    for (const char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

size_t svc_wait_lines(const char *record, size_t n, int timeout_ms)
{
    size_t got = 0;

    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        got = count_lines(record);
        if (got >= n)
            return got;
        usleep(20000);
    }
    return got;
}

cJSON *svc_read_records(const char *record)
{
    char *text = tu_read_file(record);
    cJSON *arr = cJSON_CreateArray();
    char *save = NULL;

    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (j)
            cJSON_AddItemToArray(arr, j);
    }
    free(text);
    return arr;
}

long long svc_add_device(struct svc *s, const char *app, const char *type,
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

char *svc_query(struct svc *s, const char *sql)
{
    return tu_db_query(s->db, sql);
}

int svc_wait_query(struct svc *s, const char *sql, const char *want,
                   int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        char *r = tu_db_query(s->db, sql);
        int ok = r && strcmp(r, want) == 0;
        free(r);
        if (ok)
            return 1;
        usleep(20000);
    }
    return 0;
}

static const char *pg_bin(void)
{
    const char *b = getenv("PUSHGW_TEST_PGBIN");
    return b && *b ? b : "/usr/lib/postgresql/15/bin";
}

static void run_as_pg(const char *cmd)
{
    char *full = NULL;

    if (geteuid() == 0)
        assert_int_equal(asprintf(&full, "runuser -u postgres -- %s", cmd) > 0,
                         1);
    else
        full = strdup(cmd);
    if (system(full) != 0)
        fail_msg("command failed: %s", full);
    free(full);
}

char *svc_pg_create(const char *dir)
{
    char cmd[2048];
    char *conninfo = NULL;
    int port = free_port();
    FILE *fp;

    if (geteuid() == 0) {
        snprintf(cmd, sizeof(cmd), "chown postgres: '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(cmd, sizeof(cmd),
             "%s/initdb -D '%s/data' -U postgres --auth=trust -E UTF8 "
             "--locale=C >'%s/initdb.log' 2>&1",
             pg_bin(), dir, dir);
    run_as_pg(cmd);
    snprintf(cmd, sizeof(cmd), "%s/data/postgresql.auto.conf", dir);
    fp = fopen(cmd, "a");
    assert_non_null(fp);
    fprintf(fp,
            "port = %d\nlisten_addresses = '127.0.0.1'\n"
            "unix_socket_directories = '%s'\nfsync = off\n",
            port, dir);
    fclose(fp);
    svc_pg_ctl(dir, "start");
    assert_int_equal(asprintf(&conninfo,
                              "host=127.0.0.1 port=%d user=postgres "
                              "dbname=postgres connect_timeout=2",
                              port) > 0,
                     1);
    return conninfo;
}

void svc_pg_ctl(const char *dir, const char *action)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd),
             "%s/pg_ctl -D '%s/data' -l '%s/postgres.log' -w -m fast %s "
             ">/dev/null",
             pg_bin(), dir, dir, action);
    run_as_pg(cmd);
}
