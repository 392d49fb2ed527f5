/*
 * The push API's answers (DESIGN §15.5, gateway/lc_push.h): `pushgw
 * serve` with a client listener, against a fresh database. Every
 * validation refuses in LeanCloud's shape and stores nothing; accepted
 * requests are rows of api_pushes as migration 0009 describes them;
 * req_id deduplicates; GET answers the status; the backlog bound answers
 * 429 and a database that is gone 503, each counted in
 * pushgw_push_requests_total. Delivery is the sender's, tested
 * with the real SDK in tests/leancloud.
 */
#include "testutil.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "tu_records.h"
#include "tu_svc.h"

#define LC_ID "pushApiAppId-0123"
#define LC_KEY "push-app-key-0123"
#define LC_MASTER "push-master-key-4567"
#define LC_OPEN_ID "pushApiOpenId-0123"
#define LC_OPEN_KEY "push-open-key-0123"
#define LC_OTHER_ID "pushApiOtherId-0123"
#define MASTER LC_MASTER ",master"

struct fx {
    struct tu_svc svc;
    int client_port;
};

static struct fx *fx;

struct answer {
    long status;
    char *body;
    cJSON *json;
    char retry_after[16];
};

static void answer_free(struct answer *a)
{
    free(a->body);
    cJSON_Delete(a->json);
    memset(a, 0, sizeof(*a));
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = a->body ? strlen(a->body) : 0;
    char *b = realloc(a->body, len + size * n + 1);

    if (!b)
        return 0;
    memcpy(b + len, p, size * n);
    b[len + size * n] = '\0';
    a->body = b;
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;

    if (len > 13 && strncasecmp(p, "Retry-After: ", 13) == 0) {
        size_t v = len - 13;
        while (v > 0 && (p[13 + v - 1] == '\r' || p[13 + v - 1] == '\n'))
            v--;
        if (v >= sizeof(a->retry_after))
            v = sizeof(a->retry_after) - 1;
        memcpy(a->retry_after, p + 13, v);
        a->retry_after[v] = '\0';
    }
    return len;
}

/*
 * |method| |path| on the client listener as app |id| with X-LC-Key |key|
 * (NULL: no key), one more header |extra| (NULL: none), and |body|.
 */
static void lc(const char *method, const char *path, const char *id,
               const char *key, const char *extra, const char *body,
               struct answer *a)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], hdr[512];

    memset(a, 0, sizeof(*a));
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fx->client_port, path);
    snprintf(hdr, sizeof(hdr), "X-LC-Id: %s", id);
    h = curl_slist_append(h, hdr);
    if (key) {
        snprintf(hdr, sizeof(hdr), "X-LC-Key: %s", key);
        h = curl_slist_append(h, hdr);
    }
    if (extra)
        h = curl_slist_append(h, extra);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    a->json = a->body ? cJSON_Parse(a->body) : NULL;
}

static void post(const char *key, const char *extra, const char *body,
                 struct answer *a)
{
    lc("POST", "/1.1/push", LC_ID, key, extra, body, a);
}

static const char *jstr(const struct answer *a, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a->json, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jint(const struct answer *a, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(a->json, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static char *q(const char *sql)
{
    char *v = tu_svc_query(&fx->svc, sql);
    assert_non_null(v);
    return v;
}

static long long count_pushes(void)
{
    char *v = q("SELECT count(*) FROM api_pushes");
    long long n = atoll(v);

    free(v);
    return n;
}

/* A column of the request |object_id| as text ("" for NULL). */
static char *col(const char *object_id, const char *expr)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce((%s)::text, '') FROM api_pushes WHERE "
             "object_id = '%s'",
             expr, object_id);
    return q(sql);
}

static void assert_col(const char *object_id, const char *expr,
                       const char *want)
{
    char *v = col(object_id, expr);

    if (strcmp(v, want) != 0)
        fail_msg("%s of %s: '%s', want '%s'", expr, object_id, v, want);
    free(v);
}

static int setup(void **state)
{
    struct tu_svc_options o;
    char *extra = NULL;

    fx = calloc(1, sizeof(*fx));
    fx->client_port = tu_free_port();
    assert_int_equal(
        asprintf(&extra,
                 "[server]\nclient_listen = 127.0.0.1:%d\n"
                 "[app:lcpush]\nhook_key = lcpush-hook-key-0001\n"
                 "leancloud_app_id = " LC_ID "\napp_key = " LC_KEY "\n"
                 "master_key = " LC_MASTER "\n"
                 "[app:lcopen]\nhook_key = lcopen-hook-key-0001\n"
                 "leancloud_app_id = " LC_OPEN_ID "\napp_key = " LC_OPEN_KEY
                 "\nmaster_key = open-master-key-01\n"
                 "allow_client_push = true\n"
                 "[app:lcother]\nhook_key = lcother-hook-key-001\n"
                 "leancloud_app_id = " LC_OTHER_ID "\n"
                 "app_key = other-app-key-0123\n"
                 "master_key = other-master-key-01\n",
                 fx->client_port) > 0,
        1);
    memset(&o, 0, sizeof(o));
    o.extra_ini = extra;
    tu_svc_start(&fx->svc, &o);
    free(extra);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!fx)
        return 0;
    tu_svc_stop(&fx->svc);
    free(fx);
    fx = NULL;
    return 0;
}

/* A push to channels, with the master key: 200 with objectId and
 * createdAt once stored; the row holds the content, the channels folded
 * into the query, and the default validity of 7 days. */
static void test_channels_push_is_stored(void **state)
{
    struct answer a;
    char sql[256], *v;
    (void)state;

    post(MASTER, NULL,
         "{\"channels\":[\"Jerry\",\"Tyke\"],\"data\":{\"alert\":\"hi\","
         "\"badge\":\"Increment\"}}",
         &a);
    if (a.status != 200)
        fail_msg("POST: %ld %s", a.status, a.body);
    assert_non_null(jstr(&a, "objectId"));
    assert_int_equal(strlen(jstr(&a, "objectId")), 24);
    assert_non_null(jstr(&a, "createdAt"));
    assert_int_equal(cJSON_GetArraySize(a.json), 2);
    assert_col(jstr(&a, "objectId"), "app_id", "lcpush");
    assert_col(jstr(&a, "objectId"), "query",
               "{\"channels\": {\"$in\": [\"Jerry\", \"Tyke\"]}}");
    assert_col(jstr(&a, "objectId"), "data->>'alert'", "hi");
    assert_col(jstr(&a, "objectId"), "profile", "");
    assert_col(jstr(&a, "objectId"), "push_at <= now()", "true");
    snprintf(sql, sizeof(sql),
             "abs(extract(epoch FROM expires_at - created_at) - 604800) < 60");
    assert_col(jstr(&a, "objectId"), sql, "true");
    /* createdAt is the row's */
    v = col(jstr(&a, "objectId"), "to_char(created_at AT TIME ZONE 'UTC', "
                                  "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')");
    assert_string_equal(v, jstr(&a, "createdAt"));
    free(v);
    answer_free(&a);
}

/* where and channels together: the stored query is their conjunction;
 * where alone is kept as sent; neither is every device ({}). */
static void test_where_is_stored_with_channels_folded_in(void **state)
{
    struct answer a;
    (void)state;

    post(MASTER, NULL,
         "{\"where\":{\"deviceType\":\"ios\"},\"channels\":[\"a\"],"
         "\"data\":{\"alert\":\"x\"}}",
         &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "query",
               "{\"$and\": [{\"deviceType\": \"ios\"}, {\"channels\": "
               "{\"$in\": [\"a\"]}}]}");
    answer_free(&a);
    post(MASTER, NULL,
         "{\"where\":{\"installationId\":{\"$in\":[\"i1\",\"i2\"]}},"
         "\"data\":{\"alert\":\"x\"}}",
         &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "query",
               "{\"installationId\": {\"$in\": [\"i1\", \"i2\"]}}");
    answer_free(&a);
    post(MASTER, NULL, "{\"data\":{\"alert\":\"everyone\"}}", &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "query", "{}");
    answer_free(&a);
}

/* The app key is a client's: refused unless the app allows client push;
 * no key or a wrong one is 401 Unauthorized. */
static void test_keys(void **state)
{
    struct answer a;
    long long before = count_pushes();
    (void)state;

    post(LC_KEY, NULL, "{\"data\":{\"alert\":\"x\"}}", &a);
    assert_int_equal(a.status, 401);
    assert_int_equal(jint(&a, "code"), 119);
    answer_free(&a);
    post(NULL, NULL, "{\"data\":{\"alert\":\"x\"}}", &a);
    assert_int_equal(a.status, 401);
    assert_int_equal(jint(&a, "code"), 401);
    assert_string_equal(jstr(&a, "error"), "Unauthorized.");
    answer_free(&a);
    post("not-the-master,master", NULL, "{\"data\":{\"alert\":\"x\"}}", &a);
    assert_int_equal(a.status, 401);
    answer_free(&a);
    assert_int_equal(count_pushes(), before);

    lc("POST", "/1.1/push", LC_OPEN_ID, LC_OPEN_KEY, NULL,
       "{\"data\":{\"alert\":\"from a phone\"}}", &a);
    if (a.status != 200)
        fail_msg("client push: %ld %s", a.status, a.body);
    assert_col(jstr(&a, "objectId"), "app_id", "lcopen");
    answer_free(&a);
}

struct bad {
    const char *body;
    int status, code;
    const char *in_error; /* a part of the message */
};

/* Each refused request answers LeanCloud's {"code","error"} naming what
 * is wrong, and stores nothing. */
static void test_refusals(void **state)
{
    static const struct bad bad[] = {
        {"{\"channels\":[\"a\"]}", 400, 135, "data is required"},
        {"{\"data\":\"hello\"}", 400, 111, "data must be an object"},
        {"{\"data\":{}}", 400, 107, "data is empty"},
        {"{\"data\":{\"alert\":\"x\"},\"chanels\":[\"a\"]}", 400, 107,
         "'chanels'"},
        {"{\"data\":{\"alert\":\"x\"},\"cql\":\"select * from _Installation\"}",
         400, 107, "cql"},
        {"{\"data\":{\"alert\":\"x\"},\"topic\":\"com.x\"}", 400, 107, "topic"},
        {"{\"data\":{\"alert\":\"x\"},\"channels\":\"a\"}", 400, 111,
         "channels"},
        {"{\"data\":{\"alert\":\"x\"},\"channels\":[1]}", 400, 111, "channels"},
        {"{\"data\":{\"alert\":\"x\"},\"where\":\"deviceType=ios\"}", 400, 111,
         "where"},
        {"{\"data\":{\"alert\":\"x\"},\"where\":{\"deviceType\":{\"$regex\":"
         "\"i.*\"}}}",
         400, 107, "$regex"},
        {"{\"data\":{\"alert\":\"x\"},\"where\":{\"badge\":3}}", 400, 107,
         "badge"},
        {"{\"data\":{\"alert\":\"x\"},\"prod\":\"production\"}", 400, 107,
         "prod"},
        {"{\"data\":{\"alert\":\"x\",\"_profile\":\"staging\"}}", 400, 107,
         "_profile"},
        {"{\"data\":{\"alert\":\"x\",\"_apns_team_id\":7}}", 400, 111,
         "_apns_team_id"},
        {"{\"data\":{\"alert\":\"x\",\"_apns_team_id\":\"T1\"},"
         "\"apns_team_id\":\"T2\"}",
         400, 107, "differ"},
        {"{\"data\":{\"ios\":\"x\"}}", 400, 111, "data.ios"},
        {"{\"data\":{\"android\":[1]}}", 400, 111, "data.android"},
        {"{\"data\":{\"alert\":\"x\",\"badge\":\"increment\"}}", 400, 111,
         "badge"},
        {"{\"data\":{\"ios\":{\"alert\":\"x\",\"badge\":1.5}}}", 400, 111,
         "badge"},
        {"{\"data\":{\"alert\":\"x\",\"collapse-id\":"
         "\"0123456789012345678901234567890123456789012345678901234567890123"
         "4\"}}",
         400, 107, "bad_collapse_id"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_time\":"
         "\"2020-01-01T00:00:00.000Z\"}",
         400, 107, "in the past"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_time\":\"tomorrow\"}", 400,
         111, "ISO 8601"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_interval\":0}", 400, 111,
         "expiration_interval"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_interval\":-5}", 400, 111,
         "expiration_interval"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_interval\":2419201}", 400,
         107, "28 days"},
        {"{\"data\":{\"alert\":\"x\"},\"expiration_interval\":60,"
         "\"expiration_time\":\"2099-01-01T00:00:00.000Z\"}",
         400, 107, "both"},
        {"{\"data\":{\"alert\":\"x\"},\"push_time\":"
         "\"2099-01-01T00:00:00.000Z\"}",
         400, 107, "30 days"},
        {"{\"data\":{\"alert\":\"x\"},\"flow_control\":999}", 400, 107,
         "at least 1000"},
        {"{\"data\":{\"alert\":\"x\"},\"flow_control\":\"fast\"}", 400, 107,
         "flow_control"},
        {"{\"data\":{\"alert\":\"x\"},\"req_id\":\"01234567890123456789012345"
         "678901234567890123456789012345678901234567\"}",
         400, 111, "req_id"},
        {"{\"data\":{\"alert\":\"x\"},\"notification_id\":5}", 400, 111,
         "notification_id"},
        {"{\"data\":{\"alert\":\"x\"", 400, 107, "Malformed json"},
        {"[1,2]", 400, 107, "Malformed json"},
    };
    long long before = count_pushes();
    struct answer a;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        post(MASTER, NULL, bad[i].body, &a);
        if (a.status != bad[i].status || jint(&a, "code") != bad[i].code ||
            !jstr(&a, "error") || !strstr(jstr(&a, "error"), bad[i].in_error))
            fail_msg("%s: %ld %s, want %d code %d with '%s'", bad[i].body,
                     a.status, a.body ? a.body : "", bad[i].status, bad[i].code,
                     bad[i].in_error);
        answer_free(&a);
    }
    assert_int_equal(count_pushes(), before);
}

/* Payloads neither provider can take are refused with the request, not
 * failed on every device later; bodies over the API's bound are 413. */
static void test_sizes(void **state)
{
    size_t n = 6000;
    char *body = malloc(n + 128), *big = malloc(80 * 1024);
    struct answer a;
    long long before = count_pushes();
    (void)state;

    /* a custom key cannot be shortened: too large for APNs */
    strcpy(body, "{\"data\":{\"alert\":\"x\",\"blob\":\"");
    memset(body + strlen(body), 'b', n);
    strcpy(body + strlen("{\"data\":{\"alert\":\"x\",\"blob\":\"") + n, "\"}}");
    post(MASTER, NULL, body, &a);
    assert_int_equal(a.status, 400);
    assert_int_equal(jint(&a, "code"), 116);
    answer_free(&a);
    /* a long alert is shortened, as for events: accepted */
    strcpy(body, "{\"data\":{\"alert\":\"");
    memset(body + strlen(body), 'a', n);
    strcpy(body + strlen("{\"data\":{\"alert\":\"") + n, "\"}}");
    post(MASTER, NULL, body, &a);
    assert_int_equal(a.status, 200);
    answer_free(&a);
    /* over the body bound */
    strcpy(big, "{\"data\":{\"alert\":\"");
    memset(big + strlen(big), 'z', 70 * 1024);
    strcpy(big + strlen("{\"data\":{\"alert\":\"") + 70 * 1024, "\"}}");
    post(MASTER, NULL, big, &a);
    assert_int_equal(a.status, 413);
    assert_int_equal(jint(&a, "code"), 116);
    answer_free(&a);
    assert_int_equal(count_pushes(), before + 1);
    free(body);
    free(big);
}

/* prod chooses the APNs environment; without it, LeanCloud's X-LC-Prod
 * header other than 1 means dev; with neither the content decides. */
static void test_prod(void **state)
{
    struct answer a;
    (void)state;

    post(MASTER, NULL, "{\"data\":{\"alert\":\"x\"},\"prod\":\"dev\"}", &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "profile", "dev");
    answer_free(&a);
    post(MASTER, "X-LC-Prod: 0", "{\"data\":{\"alert\":\"x\"}}", &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "profile", "dev");
    answer_free(&a);
    post(MASTER, "X-LC-Prod: 0",
         "{\"data\":{\"alert\":\"x\"},\"prod\":\"prod\"}", &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "profile", "prod");
    answer_free(&a);
    post(MASTER, "X-LC-Prod: 1",
         "{\"data\":{\"alert\":\"x\",\"_profile\":\"dev\"}}", &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "profile", "");
    assert_col(jstr(&a, "objectId"), "data->>'_profile'", "dev");
    answer_free(&a);
}

/* push_time ahead is kept; in the past it means now; the validity counts
 * from it; flow_control, notification_id and apns_team_id are kept. */
static void test_times_and_options(void **state)
{
    struct answer a;
    char body[512], iso[40];
    long long at = tu_wall_ms() + 3600 * 1000LL;
    time_t t = (time_t)(at / 1000);
    struct tm tm;
    (void)state;

    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    snprintf(body, sizeof(body),
             "{\"data\":{\"alert\":\"later\"},\"push_time\":\"%s\","
             "\"expiration_interval\":\"600\",\"flow_control\":2000,"
             "\"notification_id\":\"n1\",\"apns_team_id\":\"TEAM000002\"}",
             iso);
    post(MASTER, NULL, body, &a);
    if (a.status != 200)
        fail_msg("POST: %ld %s", a.status, a.body);
    assert_col(jstr(&a, "objectId"),
               "abs(extract(epoch FROM push_at) - " /* whole seconds */
               "floor(extract(epoch FROM now()) + 3600)) < 30",
               "true");
    assert_col(jstr(&a, "objectId"),
               "extract(epoch FROM expires_at - push_at)::int", "600");
    assert_col(jstr(&a, "objectId"), "flow_control", "2000");
    assert_col(jstr(&a, "objectId"), "notification_id", "n1");
    assert_col(jstr(&a, "objectId"), "data->>'_apns_team_id'", "TEAM000002");
    answer_free(&a);

    post(MASTER, NULL,
         "{\"data\":{\"alert\":\"now\"},\"push_time\":"
         "\"2020-01-01T00:00:00.000Z\",\"expiration_time\":"
         "{\"__type\":\"Date\",\"iso\":\"2099-01-01T00:00:00.000Z\"}}",
         &a);
    /* 2099 is more than 28 days after now */
    assert_int_equal(a.status, 400);
    assert_int_equal(jint(&a, "code"), 107);
    answer_free(&a);
    t = (time_t)(tu_wall_ms() / 1000 + 2 * 86400);
    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    snprintf(body, sizeof(body),
             "{\"data\":{\"alert\":\"now\"},\"push_time\":"
             "\"2020-01-01T00:00:00.000Z\",\"expiration_time\":\"%s\"}",
             iso);
    post(MASTER, NULL, body, &a);
    assert_int_equal(a.status, 200);
    assert_col(jstr(&a, "objectId"), "push_at <= now()", "true");
    assert_col(jstr(&a, "objectId"),
               "to_char(expires_at AT TIME ZONE 'UTC', "
               "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
               iso);
    answer_free(&a);
}

/* A repeated req_id within 5 minutes is the first request: same
 * objectId, nothing stored; another app's req_id is its own. */
static void test_req_id_dedup(void **state)
{
    struct answer a, b, c;
    long long before;
    (void)state;

    post(MASTER, NULL, "{\"data\":{\"alert\":\"once\"},\"req_id\":\"r-1\"}",
         &a);
    assert_int_equal(a.status, 200);
    before = count_pushes();
    post(MASTER, NULL, "{\"data\":{\"alert\":\"twice\"},\"req_id\":\"r-1\"}",
         &b);
    assert_int_equal(b.status, 200);
    assert_string_equal(jstr(&a, "objectId"), jstr(&b, "objectId"));
    assert_string_equal(jstr(&a, "createdAt"), jstr(&b, "createdAt"));
    assert_int_equal(count_pushes(), before);
    assert_col(jstr(&a, "objectId"), "data->>'alert'", "once");
    lc("POST", "/1.1/push", LC_OPEN_ID, "open-master-key-01,master", NULL,
       "{\"data\":{\"alert\":\"other app\"},\"req_id\":\"r-1\"}", &c);
    assert_int_equal(c.status, 200);
    assert_string_not_equal(jstr(&a, "objectId"), jstr(&c, "objectId"));
    answer_free(&c);
    /* after 5 minutes the id is free again */
    {
        char sql[256], *v;
        snprintf(sql, sizeof(sql),
                 "UPDATE api_pushes SET created_at = created_at - interval "
                 "'6 minutes' WHERE object_id = '%s' RETURNING 1",
                 jstr(&a, "objectId"));
        v = q(sql);
        free(v);
    }
    post(MASTER, NULL, "{\"data\":{\"alert\":\"again\"},\"req_id\":\"r-1\"}",
         &c);
    assert_int_equal(c.status, 200);
    assert_string_not_equal(jstr(&a, "objectId"), jstr(&c, "objectId"));
    answer_free(&a);
    answer_free(&b);
    answer_free(&c);
}

/* The same req_id sent many times at once to two gateways on one
 * database: every answer is the one request's objectId, and one row is
 * stored (the advisory lock of migration 0011 orders them). */
static void test_req_id_dedup_across_instances(void **state)
{
    enum { N = 16 };
    struct tu_svc second;
    struct tu_svc_options o;
    struct answer a[N];
    CURL *e[N];
    struct curl_slist *h = NULL;
    CURLM *m = curl_multi_init();
    char *extra = NULL, url[2][128], *v;
    int port2 = tu_free_port(), running = 1;
    (void)state;

    assert_int_equal(asprintf(&extra,
                              "[server]\nclient_listen = 127.0.0.1:%d\n"
                              "[app:lcpush]\nhook_key = lcpush-hook-key-0001\n"
                              "leancloud_app_id = " LC_ID "\napp_key = " LC_KEY
                              "\nmaster_key = " LC_MASTER "\n",
                              port2) > 0,
                     1);
    memset(&o, 0, sizeof(o));
    o.reuse_db = fx->svc.db;
    o.extra_ini = extra;
    tu_svc_start(&second, &o);
    free(extra);
    snprintf(url[0], sizeof(url[0]), "http://127.0.0.1:%d/1.1/push",
             fx->client_port);
    snprintf(url[1], sizeof(url[1]), "http://127.0.0.1:%d/1.1/push", port2);
    h = curl_slist_append(h, "X-LC-Id: " LC_ID);
    h = curl_slist_append(h, "X-LC-Key: " MASTER);
    h = curl_slist_append(h, "Content-Type: application/json");
    assert_non_null(m);
    for (int i = 0; i < N; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        e[i] = curl_easy_init();
        assert_non_null(e[i]);
        curl_easy_setopt(e[i], CURLOPT_URL, url[i % 2]);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS,
                         "{\"data\":{\"alert\":\"at once\"},"
                         "\"req_id\":\"concurrent-1\"}");
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &a[i]);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 20000L);
        curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < N; i++) {
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &a[i].status);
        a[i].json = a[i].body ? cJSON_Parse(a[i].body) : NULL;
        if (a[i].status != 200)
            fail_msg("request %d: %ld %s", i, a[i].status,
                     a[i].body ? a[i].body : "");
        assert_non_null(jstr(&a[i], "objectId"));
        assert_string_equal(jstr(&a[i], "objectId"), jstr(&a[0], "objectId"));
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    v = q("SELECT count(*) FROM api_pushes WHERE req_id = 'concurrent-1'");
    assert_string_equal(v, "1");
    free(v);
    for (int i = 0; i < N; i++)
        answer_free(&a[i]);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
    tu_svc_stop(&second);
}

/* GET answers the status from the row: scheduled while push_at is ahead,
 * in-queue once due and not taken, then the sender's state and counts. */
static void test_status(void **state)
{
    struct answer a, g;
    char path[128], sql[512], body[256], iso[40], *v;
    /* an hour ahead: the sender (broadcast.c) leaves it alone until the
     * test holds it with a lease of its own */
    time_t t = (time_t)(tu_wall_ms() / 1000 + 3600);
    struct tm tm;
    (void)state;

    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    snprintf(body, sizeof(body),
             "{\"data\":{\"alert\":\"s\"},\"channels\":[\"nobody-here\"],"
             "\"notification_id\":\"nid\",\"push_time\":\"%s\"}",
             iso);
    post(MASTER, NULL, body, &a);
    assert_int_equal(a.status, 200);
    /* hold it away from any sender: a lease of someone else's */
    snprintf(sql, sizeof(sql),
             "UPDATE api_pushes SET push_at = now() + interval '1 day', "
             "lease_owner = 'test', lease_until = now() + interval '1 day' "
             "WHERE object_id = '%s' RETURNING 1",
             jstr(&a, "objectId"));
    free(q(sql));
    snprintf(path, sizeof(path), "/1.1/push/%s", jstr(&a, "objectId"));
    lc("GET", path, LC_ID, MASTER, NULL, NULL, &g);
    if (g.status != 200)
        fail_msg("GET: %ld %s", g.status, g.body);
    assert_string_equal(jstr(&g, "objectId"), jstr(&a, "objectId"));
    assert_string_equal(jstr(&g, "createdAt"), jstr(&a, "createdAt"));
    assert_string_equal(jstr(&g, "status"), "scheduled");
    assert_int_equal(jint(&g, "devices"), 0);
    assert_int_equal(jint(&g, "successes"), 0);
    assert_int_equal(jint(&g, "invalidTokens"), 0);
    assert_int_equal(jint(&g, "errors"), 0);
    assert_string_equal(jstr(&g, "notification_id"), "nid");
    assert_non_null(jstr(&g, "push_time"));
    assert_non_null(jstr(&g, "expiration_time"));
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(g.json, "data")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(g.json, "where")));
    answer_free(&g);

    snprintf(sql, sizeof(sql),
             "UPDATE api_pushes SET push_at = now() - interval '1 second' "
             "WHERE object_id = '%s' RETURNING 1",
             jstr(&a, "objectId"));
    free(q(sql));
    lc("GET", path, LC_ID, MASTER, NULL, NULL, &g);
    assert_string_equal(jstr(&g, "status"), "in-queue");
    answer_free(&g);

    snprintf(sql, sizeof(sql),
             "UPDATE api_pushes SET state = 'sending', devices = 10, "
             "successes = 4, invalid_tokens = 1, errors = 2, expired = 3 "
             "WHERE object_id = '%s' RETURNING 1",
             jstr(&a, "objectId"));
    free(q(sql));
    lc("GET", path, LC_ID, MASTER, NULL, NULL, &g);
    assert_string_equal(jstr(&g, "status"), "sending");
    assert_int_equal(jint(&g, "devices"), 10);
    assert_int_equal(jint(&g, "successes"), 4);
    assert_int_equal(jint(&g, "invalidTokens"), 1);
    assert_int_equal(jint(&g, "errors"), 2);
    assert_int_equal(jint(&g, "expired"), 3);
    answer_free(&g);

    snprintf(sql, sizeof(sql),
             "UPDATE api_pushes SET state = 'done', lease_owner = NULL, "
             "lease_until = '-infinity', finished_at = now(), result = 'sent' "
             "WHERE object_id = '%s' RETURNING 1",
             jstr(&a, "objectId"));
    v = q(sql);
    free(v);
    lc("GET", path, LC_ID, MASTER, NULL, NULL, &g);
    assert_string_equal(jstr(&g, "status"), "done");
    assert_string_equal(jstr(&g, "result"), "sent");
    answer_free(&g);

    /* the app key may not read it; another app cannot see it */
    lc("GET", path, LC_ID, LC_KEY, NULL, NULL, &g);
    assert_int_equal(g.status, 401);
    assert_int_equal(jint(&g, "code"), 119);
    answer_free(&g);
    lc("GET", path, LC_OTHER_ID, "other-master-key-01,master", NULL, NULL, &g);
    assert_int_equal(g.status, 404);
    assert_int_equal(jint(&g, "code"), 101);
    answer_free(&g);
    lc("GET", "/1.1/push/000000000000000000000000", LC_ID, MASTER, NULL, NULL,
       &g);
    assert_int_equal(g.status, 404);
    assert_int_equal(jint(&g, "code"), 101);
    answer_free(&g);
    answer_free(&a);
}

/* OPERATIONS.md's cancel of a push no sender has taken: done, result
 * cancelled, and no sender takes it afterwards. */
#define CANCEL_TOKEN                                                           \
    "cace11edcace11edcace11edcace11edcace11edcace11edcace11edcace11ed"

static void test_cancel_scheduled(void **state)
{
    struct answer a, g;
    cJSON *rec;
    char path[128], sql[512], *v;
    long long at = tu_wall_ms() / 1000 + 2;
    struct tm tm;
    time_t t = (time_t)at;
    char iso[40], body[256];
    (void)state;

    tu_svc_add_device_on(&fx->svc, "lcpush", "ios", CANCEL_TOKEN, "cancel-me");
    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    snprintf(body, sizeof(body),
             "{\"data\":{\"alert\":\"never\"},\"channels\":[\"cancel-me\"],"
             "\"push_time\":\"%s\"}",
             iso);
    post(MASTER, NULL, body, &a);
    assert_int_equal(a.status, 200);
    snprintf(sql, sizeof(sql),
             "UPDATE api_pushes SET state = 'done', result = 'cancelled', "
             "finished_at = now(), lease_owner = NULL, lease_until = "
             "'-infinity' WHERE app_id = 'lcpush' AND object_id = '%s' AND "
             "state = 'scheduled' RETURNING object_id",
             jstr(&a, "objectId"));
    v = q(sql);
    assert_string_equal(v, jstr(&a, "objectId"));
    free(v);
    snprintf(path, sizeof(path), "/1.1/push/%s", jstr(&a, "objectId"));
    /* past its push_time, still cancelled and never sent */
    while (tu_wall_ms() / 1000 < at + 2)
        tu_sleep_ms(100);
    lc("GET", path, LC_ID, MASTER, NULL, NULL, &g);
    assert_string_equal(jstr(&g, "status"), "done");
    assert_string_equal(jstr(&g, "result"), "cancelled");
    assert_int_equal(jint(&g, "devices"), 0);
    answer_free(&g);
    v = q("SELECT count(*) FROM api_pushes WHERE result = 'cancelled' AND "
          "started_at IS NOT NULL");
    assert_string_equal(v, "0");
    free(v);
    rec = tu_records_last_for(fx->svc.apns.record, CANCEL_TOKEN);
    assert_null(rec);
    answer_free(&a);
}

/* Over PGW_LC_PUSH_MAX_PENDING requests not done: 429 with Retry-After,
 * nothing stored; below it again: accepted. */
static void test_backlog_full(void **state)
{
    struct answer a;
    long long before;
    (void)state;

    free(q("WITH i AS (INSERT INTO api_pushes (app_id, data, push_at, "
           "expires_at) SELECT 'filler', '{\"alert\":\"f\"}', now() + "
           "interval '1 day', now() + interval '2 days' FROM "
           "generate_series(1, 10000) RETURNING 1) SELECT count(*) FROM i"));
    before = count_pushes();
    post(MASTER, NULL, "{\"data\":{\"alert\":\"too many\"}}", &a);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.retry_after, "10");
    assert_int_equal(jint(&a, "code"), 1);
    answer_free(&a);
    assert_int_equal(count_pushes(), before);
    free(q("WITH d AS (DELETE FROM api_pushes WHERE app_id = 'filler' "
           "RETURNING 1) SELECT count(*) FROM d"));
    post(MASTER, NULL, "{\"data\":{\"alert\":\"room again\"}}", &a);
    assert_int_equal(a.status, 200);
    answer_free(&a);
}

static bool answers_503(void *arg)
{
    struct answer a;
    bool ok;

    (void)arg;
    post(MASTER, NULL, "{\"data\":{\"alert\":\"db down\"}}", &a);
    ok = a.status == 503 && jint(&a, "code") == 1 && a.retry_after[0];
    answer_free(&a);
    return ok;
}

static bool answers_200(void *arg)
{
    struct answer a;
    bool ok;

    (void)arg;
    post(MASTER, NULL, "{\"data\":{\"alert\":\"db back\"}}", &a);
    ok = a.status == 200;
    answer_free(&a);
    return ok;
}

/* Postgres unreachable (the database refuses connections and the
 * gateway's are ended): 503 in LeanCloud's shape, with Retry-After; once
 * it is back, pushes are stored again. Last: it breaks the connections. */
static void test_database_down(void **state)
{
    char *dbname = q("SELECT current_database()"), sql[512];
    char *admin = getenv("PUSHGW_TEST_DATABASE_URL");
    (void)state;

    assert_non_null(admin);
    snprintf(sql, sizeof(sql),
             "ALTER DATABASE \"%s\" WITH ALLOW_CONNECTIONS false", dbname);
    free(tu_db_query(admin, sql));
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = '%s'",
             dbname);
    free(tu_db_query(admin, sql));
    assert_true(tu_wait_until(answers_503, NULL, 20000));
    snprintf(sql, sizeof(sql),
             "ALTER DATABASE \"%s\" WITH ALLOW_CONNECTIONS true", dbname);
    free(tu_db_query(admin, sql));
    assert_true(tu_wait_until(answers_200, NULL, 30000));
    free(dbname);
}

/* pushgw_push_requests_total counts what POST /1.1/push answered, by
 * app and result (the earlier tests made each result at least once). */
static void test_metrics(void **state)
{
    static const char *const want[] = {
        "pushgw_push_requests_total{app=\"lcpush\",result=\"accepted\"}",
        "pushgw_push_requests_total{app=\"lcpush\",result=\"duplicate\"}",
        "pushgw_push_requests_total{app=\"lcpush\",result=\"invalid\"}",
        "pushgw_push_requests_total{app=\"lcpush\",result=\"unauthorized\"}",
        "pushgw_push_requests_total{app=\"\",result=\"unauthorized\"}",
        "pushgw_push_requests_total{app=\"lcpush\",result=\"backlog_full\"}",
        "pushgw_push_requests_total{app=\"lcpush\",result=\"unavailable\"}",
        "pushgw_push_requests_total{app=\"lcopen\",result=\"accepted\"}",
    };
    char *body = NULL;
    (void)state;

    assert_int_equal(tu_svc_admin_get(&fx->svc, "/metrics", &body), 200);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *at = strstr(body, want[i]);
        if (!at || atof(at + strlen(want[i])) < 1)
            fail_msg("no '%s' in /metrics", want[i]);
    }
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channels_push_is_stored),
        cmocka_unit_test(test_where_is_stored_with_channels_folded_in),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_prod),
        cmocka_unit_test(test_times_and_options),
        cmocka_unit_test(test_req_id_dedup),
        cmocka_unit_test(test_req_id_dedup_across_instances),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_cancel_scheduled),
        cmocka_unit_test(test_backlog_full),
        cmocka_unit_test(test_database_down),
        cmocka_unit_test(test_metrics),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
