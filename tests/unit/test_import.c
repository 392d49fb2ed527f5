/* `pushgw import` against a real Postgres: LeanCloud's JSON Lines and
 * Parse's JSON, the rows it skips and why, idempotence, timestamps and
 * objectIds kept, tokens moving, the installation cache told, exit codes,
 * and an imported device updated through the /1.1/ API by its objectId. */
#include "testutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>

struct fx {
    char *dir; /* temp folder: pushgw.ini and the exports */
    char *ini;
    char *db;
};

#define IOS_TOKEN_A                                                            \
    "0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9"
#define IOS_TOKEN_B                                                            \
    "1111111111111111111111111111111111111111111111111111111111111111"
#define FCM_TOKEN "fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"

/* LeanCloud's console export: one object per line. */
static const char *const lc_export =
    /* 1: iOS, upper-case token, extra fields */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e1\",\"deviceType\":\"ios\","
    "\"deviceToken\":\"" IOS_TOKEN_A "\",\"channels\":[\"Tom\",\"news\"],"
    "\"badge\":3,\"timeZone\":\"Asia/Shanghai\",\"apnsTopic\":"
    "\"com.example.app\",\"deviceProfile\":\"prod_cert\","
    "\"localeIdentifier\":\"zh-Hans-CN\","
    "\"createdAt\":\"2024-01-02T03:04:05.678Z\","
    "\"updatedAt\":\"2024-02-03T04:05:06.789Z\"}\n"
    /* 2: Android through LeanCloud's FCM module */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e2\",\"deviceType\":\"android\","
    "\"vendor\":\"fcm\",\"registrationId\":\"" FCM_TOKEN "\","
    "\"installationId\":\"B7C5E1E0-1111-4222-8333-944455556666\","
    "\"channels\":[\"Jerry\"],\"appVersion\":\"1.2\","
    "\"createdAt\":{\"__type\":\"Date\",\"iso\":\"2024-01-05T00:00:00.000Z\"},"
    "\"updatedAt\":\"2024-01-06T08:00:00.000+08:00\"}\n"
    /* 3, 4: mixpush vendors */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e3\",\"deviceType\":\"android\","
    "\"vendor\":\"hms\",\"registrationId\":\"hms-token-0123456789\","
    "\"updatedAt\":\"2024-01-06T00:00:00.000Z\"}\n"
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e4\",\"deviceType\":\"android\","
    "\"vendor\":\"mi\",\"registrationId\":\"mi-token-0123456789\","
    "\"updatedAt\":\"2024-01-06T00:00:00.000Z\"}\n"
    /* 5: LeanCloud's own socket channel: no token */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e5\",\"deviceType\":\"android\","
    "\"installationId\":\"c5\",\"channels\":[\"Spike\"],"
    "\"updatedAt\":\"2024-01-06T00:00:00.000Z\"}\n"
    /* 6: iOS that never got a token */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e6\",\"deviceType\":\"ios\","
    "\"channels\":[\"Tyke\"],\"updatedAt\":\"2024-01-06T00:00:00.000Z\"}\n"
    /* 7: malformed, then a blank line */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e7\",\"deviceType\":\n"
    "\n"
    /* 9: another platform */
    "{\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e9\",\"deviceType\":\"winphone\","
    "\"deviceToken\":\"abc\",\"updatedAt\":\"2024-01-06T00:00:00.000Z\"}\n";

/* Parse's export: {"results": [...]}, pretty-printed. */
static const char *const parse_export =
    "{\"results\": [\n"
    "  {\"objectId\": \"pA1\", \"deviceType\": \"android\",\n"
    "   \"pushType\": \"gcm\", \"deviceToken\": \"parse-fcm-token-1\",\n"
    "   \"installationId\": \"i1\", \"channels\": [\"Ann\"],\n"
    "   \"createdAt\": \"2020-05-06T07:08:09.000Z\",\n"
    "   \"updatedAt\": {\"__type\": \"Date\", \"iso\": "
    "\"2020-05-07T07:08:09.123Z\"}},\n"
    "  {\"objectId\": \"pA2\", \"deviceType\": \"ios\",\n"
    "   \"deviceToken\": \"" IOS_TOKEN_B "\",\n"
    "   \"channels\": [], \"appIdentifier\": \"com.example.app\",\n"
    "   \"createdAt\": \"2020-05-06T07:08:09.000Z\",\n"
    "   \"updatedAt\": \"2020-05-06T07:08:09.000Z\"},\n"
    "  {\"objectId\": \"pA3\", \"deviceType\": \"ios\"}\n"
    "]}\n";

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *ini_text = NULL;

    f->db = tu_db_create_migrated("pgw_import");
    f->dir = tu_mkdtemp();
    assert_int_equal(asprintf(&ini_text,
                              "[database]\nurl = %s\n"
                              "migrations_dir = " PUSHGW_SOURCE_DIR
                              "/migrations\n"
                              "[app:demo]\nhook_key = k-0123456789abcdef\n"
                              "[app:other]\nhook_key = k-0123456789abcdef\n",
                              f->db) > 0,
                     1);
    f->ini = tu_write_file(f->dir, "pushgw.ini", ini_text, 0644);
    free(ini_text);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    tu_db_drop(f->db);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->ini);
    free(f->db);
    free(f);
    return 0;
}

/* Runs `pushgw import -c INI --app APP [extra] FILES...`. */
static int import(struct fx *f, const char *app, const char *extra,
                  const char *file1, const char *file2, char **out, char **err)
{
    const char *argv[8];
    int n = 0;

    argv[n++] = "import";
    argv[n++] = "-c";
    argv[n++] = f->ini;
    if (app) {
        argv[n++] = "--app";
        argv[n++] = app;
    }
    if (extra)
        argv[n++] = extra;
    if (file1)
        argv[n++] = file1;
    if (file2)
        argv[n++] = file2;
    argv[n] = NULL;
    return tu_run_pushgw(argv, NULL, out, err);
}

static void assert_query(const char *db, const char *sql, const char *want)
{
    char *got = tu_db_query(db, sql);

    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' gave '%s', want '%s'", sql, got, want);
    free(got);
}

static void assert_has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' not in:\n%s", needle, hay);
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_leancloud_export_twice(void **state)
{
    struct fx *f = *state;
    char *path = tu_write_file(f->dir, "export.jsonl", lc_export, 0644);
    char *out, *err, *rows_before;

    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "export.jsonl:3: skipped (unsupported_vendor): vendor "
                    "'hms'");
    assert_has(out, "export.jsonl:4: skipped (unsupported_vendor): vendor "
                    "'mi'");
    assert_has(out, "export.jsonl:5: skipped (missing_token): ");
    assert_has(out, "export.jsonl:6: skipped (missing_token): ");
    assert_has(out, "export.jsonl:7: skipped (malformed): invalid JSON");
    assert_has(out, "export.jsonl:9: skipped (unsupported_device_type): "
                    "deviceType 'winphone'");
    assert_has(out, "import 'demo': 8 rows in 1 file: 2 created, 0 "
                    "updated, 0 unchanged, 6 skipped (2 unsupported_vendor, "
                    "2 missing_token, 1 malformed, 1 "
                    "unsupported_device_type)\n");
    /* One line per skipped row, in the file's order, then the summary. */
    assert_int_equal(count_lines(out), 7);
    assert_true(strstr(out, ":3:") < strstr(out, ":4:"));
    assert_true(strstr(out, ":7:") < strstr(out, ":9:"));
    /* Not a terminal: no progress line. */
    assert_string_equal(err, "");
    free(out);
    free(err);

    assert_query(f->db, "SELECT count(*) FROM installations", "2");
    assert_query(f->db,
                 "SELECT concat_ws('|', app_id, device_type, device_token, "
                 "channels, badge, time_zone, apns_topic, device_profile, "
                 "valid, extra, created_at AT TIME ZONE 'UTC', "
                 "updated_at AT TIME ZONE 'UTC') FROM installations "
                 "WHERE object_id = '65a1b2c3d4e5f6a7b8c9d0e1'",
                 "demo|ios|0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607182"
                 "93a4b5c6d7e8f9|{Tom,news}|3|Asia/Shanghai|com.example.app|"
                 "prod_cert|t|{\"localeIdentifier\": \"zh-Hans-CN\"}|"
                 "2024-01-02 03:04:05.678|2024-02-03 04:05:06.789");
    assert_query(f->db,
                 "SELECT concat_ws('|', device_type, device_token, vendor, "
                 "installation_id, channels, extra, created_at AT TIME ZONE "
                 "'UTC', updated_at AT TIME ZONE 'UTC') FROM installations "
                 "WHERE object_id = '65a1b2c3d4e5f6a7b8c9d0e2'",
                 "android|" FCM_TOKEN "|fcm|b7c5e1e0-1111-4222-8333-"
                 "944455556666|{Jerry}|{\"appVersion\": \"1.2\"}|"
                 "2024-01-05 00:00:00|2024-01-06 00:00:00");

    /* The second run changes nothing and says so. */
    rows_before = tu_db_query(f->db, "SELECT string_agg(concat_ws('|', id, "
                                     "object_id, updated_at, xmin), ',' "
                                     "ORDER BY id) FROM installations");
    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "import 'demo': 8 rows in 1 file: 0 created, 0 "
                    "updated, 2 unchanged, 6 skipped");
    assert_has(out, "export.jsonl:7: skipped (malformed)");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT string_agg(concat_ws('|', id, object_id, "
                 "updated_at, xmin), ',' ORDER BY id) FROM installations",
                 rows_before);
    free(rows_before);

    /* Another app's rows are its own. */
    assert_int_equal(import(f, "other", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "import 'other': 8 rows in 1 file: 2 created");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT count(*) FROM installations WHERE app_id = 'other'",
                 "2");
    free(path);
}

static void test_parse_exports(void **state)
{
    struct fx *f = *state;
    char *results = tu_write_file(f->dir, "results.json", parse_export, 0644);
    char *array = tu_write_file(
        f->dir, "array.json",
        "[{\"objectId\":\"pB1\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"parse-fcm-token-2\",\"updatedAt\":\"2021-01-01T00:00:00Z\"},\n"
        " 42,\n"
        " {\"objectId\":\"pB2\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"parse-fcm-token-3\",\"updatedAt\":\"2021-01-01T00:00:00Z\"}]",
        0644);
    char *out, *err;

    assert_int_equal(import(f, "demo", NULL, results, array, &out, &err), 0);
    assert_has(out, "results.json:12: skipped (missing_token): ");
    assert_has(out, "array.json:2: skipped (malformed): not a JSON object");
    assert_has(out, "import 'demo': 6 rows in 2 files: 4 created, 0 "
                    "updated, 0 unchanged, 2 skipped");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT string_agg(object_id, ',' ORDER BY object_id) "
                 "FROM installations",
                 "pA1,pA2,pB1,pB2");
    assert_query(f->db,
                 "SELECT concat_ws('|', device_type, device_token, "
                 "installation_id, channels, extra->>'pushType', created_at "
                 "AT TIME ZONE 'UTC', updated_at AT TIME ZONE 'UTC') FROM "
                 "installations WHERE object_id = 'pA1'",
                 "android|parse-fcm-token-1|i1|{Ann}|gcm|"
                 "2020-05-06 07:08:09|2020-05-07 07:08:09.123");
    assert_query(f->db,
                 "SELECT extra->>'appIdentifier' FROM installations WHERE "
                 "object_id = 'pA2'",
                 "com.example.app");

    assert_int_equal(import(f, "demo", NULL, results, array, &out, &err), 0);
    assert_has(out, "import 'demo': 6 rows in 2 files: 0 created, 0 "
                    "updated, 4 unchanged, 2 skipped");
    free(out);
    free(err);
    free(results);
    free(array);
}

/* A newer export updates the row and keeps its own updatedAt (not the
 * time of the import, which migration 0007's trigger would set); an older
 * one changes nothing. */
static void test_newer_and_older_exports(void **state)
{
    struct fx *f = *state;
    char *v1 = tu_write_file(
        f->dir, "v1.jsonl",
        "{\"objectId\":\"o1\",\"deviceType\":\"ios\",\"deviceToken\":"
        "\"" IOS_TOKEN_B "\",\"channels\":[\"a\"],"
        "\"createdAt\":\"2024-01-01T00:00:00Z\","
        "\"updatedAt\":\"2024-01-02T00:00:00Z\"}\n",
        0644);
    char *v2 = tu_write_file(
        f->dir, "v2.jsonl",
        "{\"objectId\":\"o1\",\"deviceType\":\"ios\",\"deviceToken\":"
        "\"" IOS_TOKEN_B "\",\"channels\":[\"a\",\"b\"],"
        "\"createdAt\":\"2024-01-01T00:00:00Z\","
        "\"updatedAt\":\"2024-03-01T00:00:00Z\"}\n",
        0644);
    char *out, *err;

    assert_int_equal(import(f, "demo", NULL, v1, NULL, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(import(f, "demo", NULL, v2, NULL, &out, &err), 0);
    assert_has(out, "0 created, 1 updated, 0 unchanged, 0 skipped");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT concat_ws('|', channels, created_at AT TIME ZONE "
                 "'UTC', updated_at AT TIME ZONE 'UTC') FROM installations",
                 "{a,b}|2024-01-01 00:00:00|2024-03-01 00:00:00");

    assert_int_equal(import(f, "demo", NULL, v1, NULL, &out, &err), 0);
    assert_has(out, "v1.jsonl:1: skipped (stored_is_newer): ");
    assert_has(out, "0 created, 0 updated, 0 unchanged, 1 skipped");
    free(out);
    free(err);
    assert_query(f->db, "SELECT channels FROM installations", "{a,b}");

    /* A row changed by SQL after the import is newer than the export. */
    assert_query(f->db, "UPDATE installations SET channels = '{c}' RETURNING 1",
                 "1");
    assert_int_equal(import(f, "demo", NULL, v2, NULL, &out, &err), 0);
    assert_has(out, "v2.jsonl:1: skipped (stored_is_newer): ");
    free(out);
    free(err);
    assert_query(f->db, "SELECT channels FROM installations", "{c}");
    free(v1);
    free(v2);
}

/* The same token twice: the newer registration has it, the other line is
 * reported. An objectId with a new token: the old token's row goes. A
 * token stored for another installation: the newer one takes the row. */
static void test_tokens_move(void **state)
{
    struct fx *f = *state;
    char *v1 = tu_write_file(
        f->dir, "v1.jsonl",
        "{\"objectId\":\"o1\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"token-one-123\",\"updatedAt\":\"2024-01-02T00:00:00Z\"}\n"
        "{\"objectId\":\"o2\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"token-one-123\",\"updatedAt\":\"2024-01-03T00:00:00Z\"}\n"
        "{\"objectId\":\"o3\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"token-three-3\",\"updatedAt\":\"2024-01-02T00:00:00Z\"}\n",
        0644);
    char *v2 = tu_write_file(
        f->dir, "v2.jsonl",
        "{\"objectId\":\"o3\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"token-new-3333\",\"updatedAt\":\"2024-02-01T00:00:00Z\"}\n"
        "{\"objectId\":\"o4\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"token-one-123\",\"updatedAt\":\"2024-02-01T00:00:00Z\"}\n",
        0644);
    char *out, *err;

    assert_int_equal(import(f, "demo", NULL, v1, NULL, &out, &err), 0);
    assert_has(out, "v1.jsonl:1: skipped (duplicate_token): ");
    assert_has(out, "v1.jsonl:2 has the same deviceToken and a registration "
                    "as new or newer\n");
    assert_has(out, "2 created, 0 updated, 0 unchanged, 1 skipped");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT string_agg(object_id || '=' || device_token, ',' "
                 "ORDER BY object_id) FROM installations",
                 "o2=token-one-123,o3=token-three-3");

    assert_int_equal(import(f, "demo", NULL, v2, NULL, &out, &err), 0);
    assert_has(out, "0 created, 2 updated, 0 unchanged, 0 skipped");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT string_agg(object_id || '=' || device_token, ',' "
                 "ORDER BY object_id) FROM installations",
                 "o3=token-new-3333,o4=token-one-123");

    /* The older file again: o1 and o2 lost their token to o4, o3 moved. */
    assert_int_equal(import(f, "demo", NULL, v1, NULL, &out, &err), 0);
    assert_has(out, "v1.jsonl:2: skipped (duplicate_token): a newer "
                    "installation");
    assert_has(out, "v1.jsonl:3: skipped (duplicate_token): ");
    assert_has(out, "0 created, 0 updated, 0 unchanged, 3 skipped");
    free(out);
    free(err);
    free(v1);
    free(v2);
}

/* Rows written in batches of 5000: a file of 12,000 with a token shared
 * across batches, read twice. With |created| every row has its objectId
 * and both dates: the first two batches are COPYed straight into
 * installations, the third conflicts there (row 11000 has row 7's token)
 * and goes the staged way, with the same outcome. */
static void many_rows(struct fx *f, bool created)
{
    size_t cap = 12000 * 240, len = 0;
    char *text = malloc(cap), *path, *out, *err;

    assert_non_null(text);
    for (int i = 0; i < 12000; i++) {
        int tok = i == 11000 ? 7 : i;

        len += (size_t)snprintf(
            text + len, cap - len,
            "{\"objectId\":\"obj%05d\",\"deviceType\":\"android\","
            "\"deviceToken\":\"token-%05d\",\"channels\":[\"u%d\"],%s"
            "\"updatedAt\":\"2024-01-01T00:00:%02dZ\"}\n",
            i, tok, i, created ? "\"createdAt\":\"2023-12-31T00:00:00Z\"," : "",
            i == 11000 ? 30 : 0);
    }
    path = tu_write_file(f->dir, "many.jsonl", text, 0644);
    free(text);
    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "import 'demo': 12000 rows in 1 file: 11999 created, 1 "
                    "updated, 0 unchanged, 0 skipped\n");
    free(out);
    free(err);
    assert_query(f->db, "SELECT count(*) FROM installations", "11999");
    assert_query(f->db,
                 "SELECT object_id FROM installations WHERE device_token = "
                 "'token-00007'",
                 "obj11000");
    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "many.jsonl:8: skipped (duplicate_token): ");
    assert_has(out, "import 'demo': 12000 rows in 1 file: 0 created, 0 "
                    "updated, 11999 unchanged, 1 skipped");
    free(out);
    free(err);
    free(path);
    if (created)
        assert_query(f->db,
                     "SELECT count(*) FROM installations WHERE created_at = "
                     "'2023-12-31T00:00:00Z' AND updated_at = "
                     "'2024-01-01T00:00:00Z' AND object_id = 'obj' || "
                     "substr(device_token, 7)",
                     "11998");
}

static void test_many_rows(void **state)
{
    many_rows(*state, false);
}

static void test_many_rows_direct(void **state)
{
    many_rows(*state, true);
}

/* Imported rows reach the installation caches of running gateways as
 * any SQL change does: through migration 0007's notifications. */
static void test_cache_told(void **state)
{
    struct fx *f = *state;
    char *path = tu_write_file(f->dir, "export.jsonl", lc_export, 0644);
    PGconn *conn = PQconnectdb(f->db);
    PGresult *res;
    PGnotify *n;
    char *out, *err;
    bool tom = false, jerry = false;
    time_t until;

    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    res = PQexec(conn, "LISTEN pushgw_installations");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    free(out);
    free(err);
    until = time(NULL) + 10;
    while (!(tom && jerry) && time(NULL) < until) {
        fd_set fds;
        struct timeval tv = {0, 100000};

        FD_ZERO(&fds);
        FD_SET(PQsocket(conn), &fds);
        select(PQsocket(conn) + 1, &fds, NULL, NULL, &tv);
        assert_int_equal(PQconsumeInput(conn), 1);
        while ((n = PQnotifies(conn)) != NULL) {
            if (strstr(n->extra, "\"demo\"") && strstr(n->extra, "\"Tom\""))
                tom = true;
            if (strstr(n->extra, "\"demo\"") && strstr(n->extra, "\"Jerry\""))
                jerry = true;
            PQfreemem(n);
        }
    }
    assert_true(tom);
    assert_true(jerry);
    PQfinish(conn);
    free(path);
}

static void test_dry_run(void **state)
{
    struct fx *f = *state;
    char *path = tu_write_file(f->dir, "export.jsonl", lc_export, 0644);
    char *ini = tu_write_file(
        f->dir, "nodb.ini",
        "[database]\nurl = host=/nonexistent "
        "dbname=none\n[app:demo]\nhook_key = k-0123456789abcdef\n",
        0644);
    const char *argv[] = {"import", "-c",   ini,  "--dry-run",
                          "--app",  "demo", path, NULL};
    char *out, *err;

    /* No database needed, none touched. */
    assert_int_equal(tu_run_pushgw(argv, NULL, &out, &err), 0);
    assert_has(out, "export.jsonl:3: skipped (unsupported_vendor)");
    assert_has(out, "import 'demo' (dry run, nothing written): 8 rows in 1 "
                    "file: 2 to import, 6 skipped");
    free(out);
    free(err);
    assert_int_equal(import(f, "demo", "--dry-run", path, NULL, &out, &err), 0);
    free(out);
    free(err);
    assert_query(f->db, "SELECT count(*) FROM installations", "0");
    free(path);
    free(ini);
}

static void test_exit_codes(void **state)
{
    struct fx *f = *state;
    char *path = tu_write_file(f->dir, "export.jsonl", lc_export, 0644);
    char *cut = tu_write_file(
        f->dir, "cut.json",
        "[{\"objectId\":\"c1\",\"deviceType\":\"android\",\"deviceToken\":"
        "\"cut-token-111\"},\n{\"objectId\":\"c2\",\"deviceType\":",
        0644);
    char *nodb = tu_write_file(
        f->dir, "nodb.ini",
        "[database]\nurl = host=/nonexistent "
        "dbname=none\n[app:demo]\nhook_key = k-0123456789abcdef\n",
        0644);
    const char *nodb_argv[] = {"import", "-c", nodb, "--app",
                               "demo",   path, NULL};
    char *out, *err;

    /* Usage: 2, before anything is read. */
    assert_int_equal(import(f, NULL, NULL, path, NULL, &out, &err), 2);
    assert_has(err, "import needs --app APP");
    free(out);
    free(err);
    assert_int_equal(import(f, "demo", NULL, NULL, NULL, &out, &err), 2);
    free(out);
    free(err);
    assert_int_equal(import(f, "nope", NULL, path, NULL, &out, &err), 2);
    assert_has(err, "unknown app 'nope'");
    free(out);
    free(err);
    assert_int_equal(import(f, "demo", "--bogus", path, NULL, &out, &err), 2);
    free(out);
    free(err);

    /* I/O: 1, and nothing written when a file cannot be opened. */
    assert_int_equal(
        import(f, "demo", NULL, path, "/nonexistent/x.jsonl", &out, &err), 1);
    assert_has(err, "pushgw: could not open '/nonexistent/x.jsonl': ");
    free(out);
    free(err);
    assert_query(f->db, "SELECT count(*) FROM installations", "0");

    /* Database: 1. */
    assert_int_equal(tu_run_pushgw(nodb_argv, NULL, &out, &err), 1);
    assert_has(err, "could not connect to the database");
    assert_int_equal(count_lines(err), 1);
    free(out);
    free(err);

    /* A Parse file cut short: what came before is imported, then 1. */
    assert_int_equal(import(f, "demo", NULL, cut, NULL, &out, &err), 1);
    assert_has(out, "import 'demo': 1 rows in 1 file: 1 created");
    assert_has(err, "could not read '");
    assert_has(err, "cut.json' past line 2: the file ends inside the JSON "
                    "array");
    free(out);
    free(err);
    assert_query(f->db, "SELECT object_id FROM installations", "c1");
    free(path);
    free(cut);
    free(nodb);
}

#define LC_ID "lcImportAppId"
#define LC_KEY "lc-import-app-key"

struct answer {
    char buf[4096];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t k = size * n;

    if (k > sizeof(a->buf) - 1 - a->len)
        k = sizeof(a->buf) - 1 - a->len;
    memcpy(a->buf + a->len, p, k);
    a->len += k;
    a->buf[a->len] = '\0';
    return size * n;
}

/* |method| |path| on the /1.1/ API at |port|, as a native LeanCloud SDK
 * sends it (X-LC-Id, X-LC-Key); the status, the body in |a|. */
static long lc_request(int port, const char *method, const char *path,
                       const char *body, struct answer *a)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[256];
    long status = 0;

    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    h = curl_slist_append(h, "X-LC-Id: " LC_ID);
    h = curl_slist_append(h, "X-LC-Key: " LC_KEY);
    h = curl_slist_append(h, "Content-Type: application/json");
    a->len = 0;
    a->buf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* A device imported from LeanCloud keeps the objectId its SDK cached:
 * the SDK's later updates through the /1.1/ API find it by that id
 * (DESIGN §15.3), and what the import kept is answered back. */
static void test_imported_object_id_takes_updates(void **state)
{
    struct fx *f = *state;
    char *path = tu_write_file(f->dir, "export.jsonl", lc_export, 0644);
    int client_port = tu_free_port(), admin_port = tu_free_port();
    char *ini_text = NULL, *ini, *log = tu_path(f->dir, "serve.log");
    const char *argv[5] = {NULL, "serve", "-c", NULL, NULL};
    struct answer a;
    char *out, *err;
    long st = 0;
    int pid;

    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(
        asprintf(&ini_text,
                 "[server]\nlisten = 127.0.0.1:%d\n"
                 "admin_listen = 127.0.0.1:%d\n"
                 "client_listen = 127.0.0.1:%d\nlog_level = warn\n"
                 "[database]\nurl = %s\n"
                 "migrations_dir = " PUSHGW_SOURCE_DIR "/migrations\n"
                 "[templates]\ndir = " PUSHGW_SOURCE_DIR "/templates\n"
                 "[app:demo]\nhook_key = k-0123456789abcdef\nleancloud_app_id "
                 "= " LC_ID "\n"
                 "app_key = " LC_KEY "\nmaster_key = lc-import-master\n",
                 tu_free_port(), admin_port, client_port, f->db) > 0,
        1);
    ini = tu_write_file(f->dir, "serve.ini", ini_text, 0644);
    free(ini_text);
    argv[0] = getenv("PUSHGW_BIN");
    argv[3] = ini;
    pid = tu_spawn(argv, log);
    assert_true(pid > 0);
    TU_POLL_UNTIL(st == 200, TU_START_MS)
    {
        st =
            lc_request(client_port, "GET",
                       "/1.1/installations/65a1b2c3d4e5f6a7b8c9d0e1", NULL, &a);
    }
    if (st != 200)
        fail_msg("GET of the imported installation: %ld %s (log: %s)", st,
                 a.buf, log);
    assert_has(a.buf, "\"objectId\":\"65a1b2c3d4e5f6a7b8c9d0e1\"");
    assert_has(a.buf, "\"createdAt\":\"2024-01-02T03:04:05.678Z\"");
    assert_has(a.buf, "\"localeIdentifier\":\"zh-Hans-CN\"");

    /* What the iOS SDK sends when the app subscribes and clears its
     * badge, to the objectId it cached at LeanCloud. */
    st = lc_request(client_port, "PUT",
                    "/1.1/installations/65a1b2c3d4e5f6a7b8c9d0e1",
                    "{\"channels\":{\"__op\":\"AddUnique\",\"objects\":"
                    "[\"Tyke\"]},\"badge\":0}",
                    &a);
    if (st != 200)
        fail_msg("PUT: %ld %s", st, a.buf);
    assert_has(a.buf, "\"updatedAt\"");
    /* The JS SDK's path, for the Android device. */
    st = lc_request(client_port, "PUT",
                    "/1.1/classes/_Installation/65a1b2c3d4e5f6a7b8c9d0e2",
                    "{\"channels\":{\"__op\":\"Remove\",\"objects\":"
                    "[\"Jerry\"]}}",
                    &a);
    if (st != 200)
        fail_msg("PUT: %ld %s", st, a.buf);
    assert_int_equal(tu_stop(pid, SIGTERM), 0);

    assert_query(f->db,
                 "SELECT concat_ws('|', channels, badge, created_at AT TIME "
                 "ZONE 'UTC', updated_at > '2024-02-03T04:05:06.789Z') FROM "
                 "installations WHERE object_id = '65a1b2c3d4e5f6a7b8c9d0e1'",
                 "{Tom,news,Tyke}|0|2024-01-02 03:04:05.678|t");
    assert_query(f->db,
                 "SELECT concat_ws('|', channels, device_token) FROM "
                 "installations WHERE object_id = '65a1b2c3d4e5f6a7b8c9d0e2'",
                 "{}|" FCM_TOKEN);
    assert_query(f->db, "SELECT count(*) FROM installations", "2");

    /* A later import of the old export leaves the newer registrations. */
    assert_int_equal(import(f, "demo", NULL, path, NULL, &out, &err), 0);
    assert_has(out, "export.jsonl:1: skipped (stored_is_newer): ");
    assert_has(out, "export.jsonl:2: skipped (stored_is_newer): ");
    free(out);
    free(err);
    assert_query(f->db,
                 "SELECT channels FROM installations WHERE object_id = "
                 "'65a1b2c3d4e5f6a7b8c9d0e1'",
                 "{Tom,news,Tyke}");
    free(path);
    free(ini);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_leancloud_export_twice, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_parse_exports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_and_older_exports, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tokens_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_rows_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_imported_object_id_takes_updates,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
