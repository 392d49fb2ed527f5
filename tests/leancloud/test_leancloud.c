/*
 * pushgw as a LeanCloud drop-in, against the real npm packages pinned in
 * package-lock.json (DESIGN §15): a stock LeanEngine app (leanengine) is
 * the app's server hook and its pushMessage reaches the devices; devices
 * registered through the JS SDK (leancloud-storage) and the native SDKs'
 * requests subscribe, unsubscribe, reset their badge, and receive the
 * next event through the mock APNs and FCM.
 *
 * An app server's pushes go through the push API as the SDK sends them
 * (AV.Push.send, push.js): each reaches exactly the devices its channels
 * or AV.Query name, in the environment and at the time asked for, and
 * GET /1.1/push/{objectId} follows it to done with the right counts.
 *
 * The node modules are installed from the lockfile into the build tree
 * (npm ci, from the npm cache when it has them). Without node and npm the
 * test is skipped, except under CI (CI set), where it fails.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "tu_http.h"
#include "tu_records.h"
#include "tu_svc.h"

#define LC_ID "lcTestAppId-gzGzoHsz"
#define LC_KEY "lc-app-key-0123"
#define LC_MASTER "lc-master-key-4567"
#define LC_HOOK_KEY "lc-hook-key-89ab"
#define IOS_TOKEN                                                              \
    "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define NATIVE_TOKEN                                                           \
    "f9e8d7c6b5a4930281706f5e4d3c2b1af9e8d7c6b5a4930281706f5e4d3c2b1a"
#define BAD_TOKEN                                                              \
    "abababababababababababababababababababababababababababababababab"
#define FCM_TOKEN "fcm-token:APA91bHleancloudJerry_1"
#define WAIT_MS 20000

struct fx {
    struct tu_svc svc;
    char *node_dir; /* node_modules are here */
    int engine_port;
    int engine_pid;
    char *engine_log;
    char *hook_record;
    int client_port;
};

/* The absolute path of |cmd| on PATH (free()), or NULL. */
static char *which(const char *cmd)
{
    const char *path = getenv("PATH");
    char *copy = strdup(path ? path : "/usr/bin:/bin"), *save = NULL;
    char *found = NULL;

    for (char *d = strtok_r(copy, ":", &save); d && !found;
         d = strtok_r(NULL, ":", &save)) {
        char *p = tu_path(d, cmd);
        if (access(p, X_OK) == 0)
            found = p;
        else
            free(p);
    }
    free(copy);
    return found;
}

static bool have(const char *cmd)
{
    char *p = which(cmd);

    free(p);
    return p != NULL;
}

/* npm ci into the build tree, unless its lockfile is the source's. The
 * parts of this program run side by side: one installs, the others wait
 * for it (a lock on the folder's .lock file). */
static void install_modules(const char *dir)
{
    char *cmd = NULL, *want, *got, *lock;
    char *lock_path = tu_path(dir, ".lock");
    int rc, fd;

    mkdir(dir, 0755);
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    free(lock_path);
    want = tu_read_file(PUSHGW_LEANCLOUD_DIR "/package-lock.json");
    assert_non_null(want);
    lock = tu_path(dir, "node_modules/.pushgw-lock");
    got = tu_read_file(lock);
    if (got && strcmp(got, want) == 0)
        goto out;
    assert_int_equal(
        asprintf(&cmd,
                 "cp '%s/package.json' '%s/package-lock.json' '%s/' && "
                 "cd '%s' && timeout 300 npm ci --prefer-offline --no-audit "
                 "--no-fund --loglevel=error >npm.log 2>&1",
                 PUSHGW_LEANCLOUD_DIR, PUSHGW_LEANCLOUD_DIR, dir, dir) > 0,
        1);
    rc = system(cmd);
    if (rc != 0) {
        char *log = tu_path(dir, "npm.log");
        char *text = tu_read_file(log);
        fail_msg("npm ci failed (%d): %s", rc, text ? text : "");
    }
    free(tu_write_file(dir, "node_modules/.pushgw-lock", want, 0644));
out:
    close(fd);
    free(cmd);
    free(want);
    free(got);
    free(lock);
}

static bool engine_up(void *arg)
{
    struct fx *f = arg;
    char *body = NULL;
    int st = tu_http_once(f->engine_port, "/", NULL, NULL, NULL, &body);

    free(body);
    return st == 200;
}

/* The LeanEngine app on f->engine_port (the port the config names). */
static void start_engine(struct fx *f)
{
    char port[16], node_path[512];
    char *node = which("node");
    const char *argv[] = {node, PUSHGW_LEANCLOUD_DIR "/hook_app.js", NULL};

    snprintf(port, sizeof(port), "%d", f->engine_port);
    snprintf(node_path, sizeof(node_path), "%s/node_modules", f->node_dir);
    setenv("LEANCLOUD_APP_ID", LC_ID, 1);
    setenv("LEANCLOUD_APP_KEY", LC_KEY, 1);
    setenv("LEANCLOUD_APP_MASTER_KEY", LC_MASTER, 1);
    setenv("LEANCLOUD_APP_HOOK_KEY", LC_HOOK_KEY, 1);
    setenv("LEANCLOUD_APP_PORT", port, 1);
    setenv("HOOK_RECORD", f->hook_record, 1);
    setenv("NODE_PATH", node_path, 1);
    assert_non_null(node);
    f->engine_pid = tu_spawn(argv, f->engine_log);
    free(node);
    if (!tu_wait_until(engine_up, f, 20000)) {
        char *log = tu_read_file(f->engine_log);
        fail_msg("the LeanEngine app did not start: %s", log ? log : "");
    }
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct tu_svc_options o;
    char *extra = NULL;

    f->node_dir = strdup(PUSHGW_LEANCLOUD_WORK);
    install_modules(f->node_dir);
    f->client_port = tu_free_port();
    f->engine_port = tu_free_port();
    assert_int_equal(
        asprintf(
            &extra,
            "[server]\nclient_listen = 127.0.0.1:%d\n"
            "[app:lc]\nhook_key = lc-broker-hook-key-01\n"
            "leancloud_app_id = " LC_ID "\napp_key = " LC_KEY "\n"
            "master_key = " LC_MASTER "\n"
            "server_hook_url = http://127.0.0.1:%d/1.1/functions/"
            "_receiversOffline\n"
            "server_hook_key = " LC_HOOK_KEY "\nserver_hook_timeout_ms = 5000\n"
            "apns_topic = com.example.lc\n"
            "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
            "apns_key_file = %s/AuthKey_KEY0000001.p8\n"
            "fcm_service_account_file = %s/fcm-sa.json\n"
            /* the same hook with a wrong master key: LeanEngine says 401 */
            "[app:lcbad]\nhook_key = lcbad-broker-hook-key-01\n"
            "leancloud_app_id = " LC_ID "-bad\nmaster_key = not-the-key\n"
            "server_hook_url = http://127.0.0.1:%d/1.1/functions/"
            "_receiversOffline\n"
            "server_hook_key = " LC_HOOK_KEY "\nserver_hook_timeout_ms = 5000\n"
            "apns_topic = com.example.lc\n"
            "apns_team_id = TEAM000001\napns_key_id = KEY0000001\n"
            "apns_key_file = %s/AuthKey_KEY0000001.p8\n",
            f->client_port, f->engine_port, tu_certs_dir, tu_certs_dir,
            f->engine_port, tu_certs_dir) > 0,
        1);
    memset(&o, 0, sizeof(o));
    o.extra_ini = extra;
    tu_svc_start(&f->svc, &o);
    free(extra);
    f->engine_log = tu_path(f->svc.dir, "leanengine.log");
    f->hook_record = tu_path(f->svc.dir, "leanengine.jsonl");
    start_engine(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (!f)
        return 0;
    if (f->engine_pid > 0)
        tu_stop(f->engine_pid, SIGTERM);
    tu_svc_stop(&f->svc);
    free(f->engine_log);
    free(f->hook_record);
    free(f->node_dir);
    free(f);
    return 0;
}

/* Runs register.js; returns its JSON output (the objectIds). */
static cJSON *run_register(struct fx *f)
{
    char *cmd = NULL, *out_path = tu_path(f->svc.dir, "register.out");
    char *err_path = tu_path(f->svc.dir, "register.err");
    char *out, *err;
    cJSON *j;
    int rc;

    assert_int_equal(
        asprintf(&cmd,
                 "NODE_PATH='%s/node_modules' LC_APP_ID='" LC_ID "' "
                 "LC_APP_KEY='" LC_KEY "' LC_MASTER_KEY='" LC_MASTER "' "
                 "LC_SERVER='http://127.0.0.1:%d' IOS_TOKEN='" IOS_TOKEN "' "
                 "FCM_TOKEN='" FCM_TOKEN "' NATIVE_TOKEN='" NATIVE_TOKEN "' "
                 "timeout 120 node '" PUSHGW_LEANCLOUD_DIR "/register.js' "
                 ">'%s' 2>'%s'",
                 f->node_dir, f->client_port, out_path, err_path) > 0,
        1);
    rc = system(cmd);
    out = tu_read_file(out_path);
    err = tu_read_file(err_path);
    if (rc != 0) {
        char *log = tu_read_file(f->svc.gw.log);
        fail_msg("register.js failed (%d): %s\n%s\npushgw: %s", rc,
                 err ? err : "", out ? out : "", log ? log : "");
    }
    j = cJSON_Parse(out);
    assert_non_null(j);
    free(cmd);
    free(out);
    free(err);
    free(out_path);
    free(err_path);
    return j;
}

struct wait_rec {
    const char *file, *token, *alert_path, *want;
};

static bool has_push(void *arg)
{
    struct wait_rec *w = arg;
    cJSON *r = tu_records_last_for(w->file, w->token);
    bool ok = r && strcmp(tu_json_str(r, w->alert_path), w->want) == 0;

    cJSON_Delete(r);
    return ok;
}

static void expect_push(const char *file, const char *token,
                        const char *alert_path, const char *want)
{
    struct wait_rec w = {file, token, alert_path, want};
    cJSON *r;

    if (tu_wait_until(has_push, &w, WAIT_MS))
        return;
    r = tu_records_last_for(file, token);
    fail_msg("no push '%s' to '%.12s…' in '%s'; last: %s", want, token, file,
             r ? tu_json_str(r, alert_path) : "(none)");
}

static void post_event(struct fx *f, const char *app, const char *key,
                       const char *content)
{
    char path[128], *body = NULL, *resp = NULL;
    int st;

    assert_int_equal(
        asprintf(&body,
                 "{\"fromPeer\":\"Tom\",\"convId\":\"conv-lc\","
                 "\"offlinePeers\":[\"Jerry\",\"Tyke\"],\"timestamp\":%lld,"
                 "\"content\":\"%s\",\"mentionAll\":false,"
                 "\"mentionOfflinePeers\":[]}",
                 (long long)time(NULL) * 1000, content) > 0,
        1);
    snprintf(path, sizeof(path), "/v1/apps/%s/receivers-offline", app);
    st = tu_svc_post(&f->svc, path, key, NULL, body, &resp);
    if (st != 202)
        fail_msg("POST %s: %d %s", path, st, resp ? resp : "");
    free(resp);
    free(body);
}

/* The whole drop-in: SDK registrations, then the LeanEngine hook's
 * pushMessage on the devices just registered. */
static void test_sdk_registration_and_leanengine_hook(void **state)
{
    struct fx *f = *state;
    cJSON *ids = run_register(f), *r;
    char *v;

    /* the rows as the SDKs left them */
    v = tu_svc_query(&f->svc, "SELECT array_to_string(channels, ',') || '/' "
                              "|| badge FROM installations WHERE "
                              "device_token = '" IOS_TOKEN "'");
    assert_string_equal(v, "Jerry/0");
    free(v);
    v = tu_svc_query(&f->svc, "SELECT count(*) FROM installations WHERE "
                              "app_id = 'lc'");
    assert_string_equal(v, "3"); /* ios, android, native; 'gone' deleted */
    free(v);

    post_event(f, "lc", "lc-broker-hook-key-01", "hello lc");
    expect_push(f->svc.apns.record, IOS_TOKEN, "body.aps.alert",
                "LeanEngine: hello lc");
    expect_push(f->svc.apns.record, NATIVE_TOKEN, "body.aps.alert",
                "LeanEngine: hello lc");
    expect_push(f->svc.fcm.record, FCM_TOKEN, "body.message.notification.body",
                "LeanEngine: hello lc");
    /* badges: reset to 0 through the SDK, 5 through the native API */
    r = tu_records_last_for(f->svc.apns.record, IOS_TOKEN);
    assert_string_equal(tu_json_str(r, "body.aps.badge"), "1");
    assert_string_equal(tu_json_str(r, "topic"), "com.example.lc");
    cJSON_Delete(r);
    r = tu_records_last_for(f->svc.apns.record, NATIVE_TOKEN);
    assert_string_equal(tu_json_str(r, "body.aps.badge"), "6");
    cJSON_Delete(r);
    /* the deleted device got nothing */
    r = tu_records_last_for(f->svc.fcm.record, "fcm-token-gone-1");
    assert_null(r);
    /* the hook got the LeanCloud parameters */
    assert_true(tu_records_wait(f->hook_record, 1, WAIT_MS) >= 1);
    r = tu_records_read(f->hook_record);
    assert_string_equal(tu_json_str(cJSON_GetArrayItem(r, 0), "fromPeer"),
                        "Tom");
    assert_string_equal(tu_json_str(cJSON_GetArrayItem(r, 0), "content"),
                        "hello lc");
    cJSON_Delete(r);
    cJSON_Delete(ids);
}

static bool hook_unauthorized_counted(void *arg)
{
    struct fx *f = arg;
    char *body = NULL;
    bool ok;

    tu_svc_admin_get(&f->svc, "/metrics", &body);
    ok = body && strstr(body, "pushgw_hook_requests_total{app=\"lcbad\","
                              "result=\"unauthorized\"} 1");
    free(body);
    return ok;
}

/* A hook that refuses pushgw's identity: counted, logged at error level,
 * and the push still goes out (fail open) with the static template. */
static void test_hook_unauthorized_fails_open(void **state)
{
    struct fx *f = *state;
    char *log;

    (void)tu_svc_add_device_on(&f->svc, "lcbad", "ios", BAD_TOKEN, "Jerry");
    post_event(f, "lcbad", "lcbad-broker-hook-key-01", "hello bad");
    expect_push(f->svc.apns.record, BAD_TOKEN, "body.aps.alert",
                "New message received");
    assert_true(tu_wait_until(hook_unauthorized_counted, f, WAIT_MS));
    log = tu_read_file(f->svc.gw.log);
    assert_non_null(strstr(log, "\"level\":\"error\""));
    assert_non_null(strstr(log, "server hook refused pushgw"));
    assert_null(strstr(log, LC_MASTER));
    assert_null(strstr(log, "not-the-key"));
    free(log);
}

/* ---- the push API ------------------------------------------------------ */

/* A device of app 'lc' (SQL, as an operator or an import leaves it). */
static void add_dev(struct fx *f, const char *type, const char *token,
                    const char *channels, const char *installation_id,
                    bool valid)
{
    char sql[1024], *v;

    snprintf(sql, sizeof(sql),
             "INSERT INTO installations (app_id, device_type, device_token, "
             "channels, installation_id, valid) VALUES ('lc', '%s', '%s', "
             "'%s', %s%s%s, %s) RETURNING id",
             type, token, channels, installation_id ? "'" : "",
             installation_id ? installation_id : "NULL",
             installation_id ? "'" : "", valid ? "true" : "false");
    v = tu_svc_query(&f->svc, sql);
    assert_non_null(v);
    assert_true(atoll(v) > 0);
    free(v);
}

/* A distinct 64-hex iOS token per |n|. */
static const char *ios_token(int n)
{
    static char buf[16][65];
    char *t = buf[n % 16];

    snprintf(t, 65, "%032x%032x", 0xc0de0000u + (unsigned)n,
             0x5eed0000u + (unsigned)n);
    return t;
}

/* Runs push.js |scenario|; returns its JSON output. */
static cJSON *run_push(struct fx *f, const char *scenario)
{
    char *cmd = NULL, *out_path = tu_path(f->svc.dir, "push.out");
    char *err_path = tu_path(f->svc.dir, "push.err");
    char *out, *err;
    cJSON *j;
    int rc;

    assert_int_equal(
        asprintf(&cmd,
                 "NODE_PATH='%s/node_modules' LC_APP_ID='" LC_ID "' "
                 "LC_APP_KEY='" LC_KEY "' LC_MASTER_KEY='" LC_MASTER "' "
                 "LC_SERVER='http://127.0.0.1:%d' "
                 "timeout 120 node '" PUSHGW_LEANCLOUD_DIR "/push.js' '%s' "
                 ">'%s' 2>'%s'",
                 f->node_dir, f->client_port, scenario, out_path, err_path) > 0,
        1);
    rc = system(cmd);
    out = tu_read_file(out_path);
    err = tu_read_file(err_path);
    if (rc != 0) {
        char *log = tu_read_file(f->svc.gw.log);
        fail_msg("push.js %s failed (%d): %s\n%s\npushgw: %s", scenario, rc,
                 err ? err : "", out ? out : "", log ? log : "");
    }
    j = cJSON_Parse(out);
    if (!j)
        fail_msg("push.js %s printed '%s'", scenario, out ? out : "");
    free(cmd);
    free(out);
    free(err);
    free(out_path);
    free(err_path);
    return j;
}

struct body {
    char *buf;
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    char *nb = realloc(b->buf, b->len + size * n + 1);

    if (!nb)
        return 0;
    memcpy(nb + b->len, p, size * n);
    b->len += size * n;
    nb[b->len] = '\0';
    b->buf = nb;
    return size * n;
}

/* GET /1.1/push/|id| with the master key; the answer's JSON or NULL. */
static cJSON *push_status(struct fx *f, const char *id)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct body b = {NULL, 0};
    char url[256];
    long st = 0;
    cJSON *j = NULL;

    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/1.1/push/%s",
             f->client_port, id);
    h = curl_slist_append(h, "X-LC-Id: " LC_ID);
    h = curl_slist_append(h, "X-LC-Key: " LC_MASTER ",master");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    if (st == 200 && b.buf)
        j = cJSON_Parse(b.buf);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(b.buf);
    return j;
}

struct status_wait {
    struct fx *f;
    const char *id;
    cJSON *last;
};

static bool push_done(void *arg)
{
    struct status_wait *w = arg;

    cJSON_Delete(w->last);
    w->last = push_status(w->f, w->id);
    return w->last && strcmp(tu_json_str(w->last, "status"), "done") == 0;
}

/* Waits until the push |answer| (push.js's output) is done, then checks
 * its counts: |devices| matched, all delivered. */
static void expect_done(struct fx *f, const cJSON *answer, int devices)
{
    struct status_wait w = {f, tu_json_str(answer, "objectId"), NULL};
    char want[16];

    if (!tu_wait_until(push_done, &w, WAIT_MS)) {
        char *log = tu_read_file(f->svc.gw.log);
        char *last = w.last ? cJSON_PrintUnformatted(w.last) : NULL;
        fail_msg("push %s not done: %s\npushgw: %s", w.id,
                 last ? last : "(no answer)", log ? log : "");
    }
    snprintf(want, sizeof(want), "%d", devices);
    assert_string_equal(tu_json_str(w.last, "devices"), want);
    assert_string_equal(tu_json_str(w.last, "successes"), want);
    assert_string_equal(tu_json_str(w.last, "invalidTokens"), "0");
    assert_string_equal(tu_json_str(w.last, "errors"), "0");
    assert_string_equal(tu_json_str(w.last, "objectId"), w.id);
    assert_string_equal(tu_json_str(w.last, "createdAt"),
                        tu_json_str(answer, "createdAt"));
    cJSON_Delete(w.last);
}

/* How many requests in |record| went to |token| with the text |want| at
 * |path|. */
static int pushes_to(const char *record, const char *token, const char *path,
                     const char *want)
{
    cJSON *all = tu_records_read(record);
    const cJSON *r;
    int n = 0;

    cJSON_ArrayForEach(r, all)
    {
        if (strcmp(tu_json_str(r, "token"), token) == 0 &&
            strcmp(tu_json_str(r, path), want) == 0)
            n++;
    }
    cJSON_Delete(all);
    return n;
}

#define APNS_ALERT "body.aps.alert"
#define FCM_ALERT "body.message.notification.body"

static void expect_pushes(const char *record, const char *token,
                          const char *path, const char *want, int n)
{
    int got = pushes_to(record, token, path, want);

    if (got != n)
        fail_msg("'%s' reached '%.12s…' %d times in '%s', want %d", want, token,
                 got, record, n);
}

/* AV.Push.send({channels}): every valid device on either channel, once;
 * nobody else. */
static void test_sdk_push_channels(void **state)
{
    struct fx *f = *state;
    const char *a = ios_token(1), *b = ios_token(2), *d = ios_token(3),
               *inv = ios_token(4);
    const char *want = "news for the channels";
    cJSON *r;

    add_dev(f, "ios", a, "{lc-news}", NULL, true);
    add_dev(f, "ios", b, "{lc-weather,lc-sport}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-news-c", "{lc-news}", NULL, true);
    add_dev(f, "ios", d, "{lc-weather}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-other-e", "{lc-other}", NULL, true);
    add_dev(f, "ios", inv, "{lc-news}", NULL, false);
    r = run_push(f, "channels");
    expect_done(f, r, 3);
    expect_pushes(f->svc.apns.record, a, APNS_ALERT, want, 1);
    expect_pushes(f->svc.apns.record, b, APNS_ALERT, want, 1);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-news-c", FCM_ALERT, want, 1);
    expect_pushes(f->svc.apns.record, d, APNS_ALERT, want, 0);
    expect_pushes(f->svc.apns.record, inv, APNS_ALERT, want, 0);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-other-e", FCM_ALERT, want,
                  0);
    /* badge "Increment" from 0 */
    {
        cJSON *rec = tu_records_last_for(f->svc.apns.record, a);
        assert_string_equal(tu_json_str(rec, "body.aps.badge"), "1");
        cJSON_Delete(rec);
    }
    cJSON_Delete(r);
}

/* AV.Push.send({where: AV.Query}): equalTo and containedIn, on channels
 * and on installationId; exactly the devices the query names. */
static void test_sdk_push_where(void **state)
{
    struct fx *f = *state;
    const char *want = "android on a or b", *want2 = "ios w1 or w3";
    const char *w1 = ios_token(11), *w2 = ios_token(12), *w3 = ios_token(13),
               *ja = ios_token(14);
    cJSON *r;

    add_dev(f, "android", "fcm-token:lc-where-g", "{lc-where-a}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-where-h", "{x,lc-where-b}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-where-i", "{lc-where-c}", NULL, true);
    add_dev(f, "ios", ja, "{lc-where-a}", NULL, true);
    r = run_push(f, "where");
    expect_done(f, r, 2);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-where-g", FCM_ALERT, want,
                  1);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-where-h", FCM_ALERT, want,
                  1);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-where-i", FCM_ALERT, want,
                  0);
    expect_pushes(f->svc.apns.record, ja, APNS_ALERT, want, 0);
    cJSON_Delete(r);

    add_dev(f, "ios", w1, "{}", "lc-ios-w1", true);
    add_dev(f, "ios", w2, "{}", "lc-ios-w2", true);
    add_dev(f, "ios", w3, "{}", "lc-ios-w3", true);
    add_dev(f, "android", "fcm-token:lc-where-w3", "{}", "lc-ios-w3x", true);
    r = run_push(f, "where_ids");
    expect_done(f, r, 2);
    expect_pushes(f->svc.apns.record, w1, APNS_ALERT, want2, 1);
    expect_pushes(f->svc.apns.record, w2, APNS_ALERT, want2, 0);
    expect_pushes(f->svc.apns.record, w3, APNS_ALERT, want2, 1);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-where-w3", FCM_ALERT, want2,
                  0);
    cJSON_Delete(r);
}

/* prod: 'dev': iOS devices are pushed through the APNs sandbox only. */
static void test_sdk_push_prod_dev(void **state)
{
    struct fx *f = *state;
    const char *k = ios_token(21), *want = "to the sandbox";
    cJSON *r;

    add_dev(f, "ios", k, "{lc-dev}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-dev-l", "{lc-dev}", NULL, true);
    r = run_push(f, "prod_dev");
    expect_done(f, r, 2);
    expect_pushes(f->svc.apns_dev.record, k, APNS_ALERT, want, 1);
    expect_pushes(f->svc.apns.record, k, APNS_ALERT, want, 0);
    expect_pushes(f->svc.fcm.record, "fcm-token:lc-dev-l", FCM_ALERT, want, 1);
    cJSON_Delete(r);
}

/* push_time a few seconds ahead: scheduled until then, sent then and not
 * before. */
static void test_sdk_push_time(void **state)
{
    struct fx *f = *state;
    const char *m = ios_token(31), *want = "a little later";
    cJSON *r, *st, *all;
    const cJSON *rec;
    double at;
    int seen = 0;

    add_dev(f, "ios", m, "{lc-later}", NULL, true);
    r = run_push(f, "push_time");
    at = cJSON_GetObjectItem(r, "push_time_ms")->valuedouble;
    st = push_status(f, tu_json_str(r, "objectId"));
    assert_non_null(st);
    if (tu_wall_ms() < (long long)at)
        assert_string_equal(tu_json_str(st, "status"), "scheduled");
    cJSON_Delete(st);
    expect_done(f, r, 1);
    all = tu_records_read(f->svc.apns.record);
    cJSON_ArrayForEach(rec, all)
    {
        if (strcmp(tu_json_str(rec, "token"), m) != 0 ||
            strcmp(tu_json_str(rec, APNS_ALERT), want) != 0)
            continue;
        seen++;
        if (cJSON_GetObjectItem(rec, "ts_ms")->valuedouble < at)
            fail_msg("sent at %.0f, before push_time %.0f",
                     cJSON_GetObjectItem(rec, "ts_ms")->valuedouble, at);
    }
    assert_int_equal(seen, 1);
    cJSON_Delete(all);
    cJSON_Delete(r);
}

/* expiration_interval: APNs gets apns-expiration and FCM its ttl from it
 * (an hour), not the default seven days. */
static void test_sdk_push_expiration(void **state)
{
    struct fx *f = *state;
    const char *n = ios_token(41);
    long long now_s = tu_wall_ms() / 1000, exp;
    cJSON *r, *rec;
    int ttl;

    add_dev(f, "ios", n, "{lc-exp}", NULL, true);
    add_dev(f, "android", "fcm-token:lc-exp-o", "{lc-exp}", NULL, true);
    r = run_push(f, "expiration");
    expect_done(f, r, 2);
    rec = tu_records_last_for(f->svc.apns.record, n);
    assert_non_null(rec);
    assert_string_equal(tu_json_str(rec, APNS_ALERT), "for one hour");
    exp = atoll(tu_json_str(rec, "expiration"));
    if (exp < now_s + 3600 - 120 || exp > now_s + 3600 + 120)
        fail_msg("apns-expiration %lld, want about %lld", exp, now_s + 3600);
    cJSON_Delete(rec);
    rec = tu_records_last_for(f->svc.fcm.record, "fcm-token:lc-exp-o");
    assert_non_null(rec);
    assert_string_equal(tu_json_str(rec, FCM_ALERT), "for one hour");
    ttl = atoi(tu_json_str(rec, "body.message.android.ttl"));
    if (ttl < 3600 - 120 || ttl > 3600)
        fail_msg("FCM ttl %ds, want about 3600s", ttl);
    cJSON_Delete(rec);
    cJSON_Delete(r);
}

/* What the SDK may not do is refused in LeanCloud's shape, and stores
 * nothing: the app key without allow_client_push, a query pushgw cannot
 * serve. */
static void test_sdk_push_refused(void **state)
{
    struct fx *f = *state;
    char *before = tu_svc_query(&f->svc, "SELECT count(*) FROM api_pushes");
    char *after;
    cJSON *r = run_push(f, "refused");

    after = tu_svc_query(&f->svc, "SELECT count(*) FROM api_pushes");
    assert_string_equal(before, after);
    free(before);
    free(after);
    cJSON_Delete(r);
}

int main(int argc, char **argv)
{
    if (!have("node") || !have("npm")) {
        if (getenv("CI")) {
            fprintf(stderr, "test_leancloud: node and npm are needed "
                            "(deploy/packages.sh installs them)\n");
            return 1;
        }
        printf("test_leancloud: skipped: node and npm are not installed\n");
        return 77; /* ctest: skipped */
    }
    const struct CMUnitTest sdk[] = {
        cmocka_unit_test(test_sdk_registration_and_leanengine_hook),
        cmocka_unit_test(test_hook_unauthorized_fails_open),
        cmocka_unit_test(test_sdk_push_refused),
        cmocka_unit_test(test_sdk_push_channels),
    };
    const struct CMUnitTest push[] = {
        cmocka_unit_test(test_sdk_push_where),
        cmocka_unit_test(test_sdk_push_prod_dev),
        cmocka_unit_test(test_sdk_push_time),
        cmocka_unit_test(test_sdk_push_expiration),
    };
    const struct tu_part parts[] = {
        TU_PART("sdk", sdk, setup, teardown),
        TU_PART("push", push, setup, teardown),
    };
    return tu_run_parts(argc, argv, parts, sizeof(parts) / sizeof(parts[0]));
}
