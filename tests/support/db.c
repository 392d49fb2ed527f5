/* The test database and private Postgres clusters (see testutil.h). */
#include "testutil.h"

#include "store.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIGRATIONS_DIR PUSHGW_SOURCE_DIR "/migrations"

static const char *base_url(void)
{
    const char *url = getenv("PUSHGW_TEST_DATABASE_URL");
    const char *req = getenv("PUSHGW_TEST_REQUIRE_DB");

    if (url && *url)
        return url;
    if (req && strcmp(req, "1") == 0)
        fail_msg("PUSHGW_TEST_DATABASE_URL is not set but "
                 "PUSHGW_TEST_REQUIRE_DB=1: run the tests with "
                 "./tests/run.sh");
    skip();
    return NULL;
}

static int exec_sql(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r;
    int ok;

    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect to test database: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
         PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        print_error("sql '%s' failed: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* A database name of |prefix| not used before: the pid and the clock. */
static void unique_name(const char *prefix, char *name, size_t size)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, size, "%s_%d_%ld", prefix, (int)getpid(),
             (long)(ts.tv_nsec / 1000));
}

/* |base| (a key=value conninfo) naming database |name| instead. */
static char *conninfo_of(const char *base, const char *name)
{
    char *conninfo = NULL;

    /* In key=value conninfo strings the last dbname wins. */
    if (asprintf(&conninfo, "%s dbname=%s", base, name) < 0)
        fail_msg("out of memory");
    return conninfo;
}

char *tu_db_create(const char *prefix)
{
    const char *base = base_url();
    char name[128];
    char sql[256];

    unique_name(prefix, name, sizeof(name));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (exec_sql(base, sql) < 0)
        fail_msg("cannot create test database '%s'", name);
    return conninfo_of(base, name);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_sql(const struct dirent *e)
{
    size_t n = strlen(e->d_name);

    return n > 4 && strcmp(e->d_name + n - 4, ".sql") == 0;
}

/* The name of the template for the migrations as they are now: their
 * names and contents hashed, so a changed migration gets a new one. */
static void template_name(char *name, size_t size)
{
    struct dirent **files = NULL;
    char *all = NULL;
    size_t len = 0;
    char hex[65];
    int n = scandir(MIGRATIONS_DIR, &files, is_sql, by_name);

    if (n < 0)
        fail_msg("cannot read %s", MIGRATIONS_DIR);
    for (int i = 0; i < n; i++) {
        char *path = tu_path(MIGRATIONS_DIR, files[i]->d_name);
        char *text = tu_read_file(path);
        size_t more;

        if (!text)
            fail_msg("cannot read %s", path);
        more = strlen(files[i]->d_name) + 1 + strlen(text) + 1;
        all = realloc(all, len + more + 1);
        assert_non_null(all);
        len += (size_t)sprintf(all + len, "%s%c%s%c", files[i]->d_name, 0, text,
                               0);
        free(text);
        free(path);
        free(files[i]);
    }
    free(files);
    pgw_store_sha256_hex(all ? all : "", len, hex);
    free(all);
    snprintf(name, size, "pgw_tmpl_%.16s", hex);
}

/* Applies migrations/ to |conninfo|; NULL, or what went wrong. */
static char *migrate(const char *conninfo)
{
    struct pgw_diag diag;
    FILE *devnull = fopen("/dev/null", "w");
    char *why = NULL;

    assert_non_null(devnull);
    pgw_diag_init(&diag);
    if (pgw_store_migrate(conninfo, MIGRATIONS_DIR, devnull, &diag) < 0)
        why = strdup(diag.n ? diag.msgs[0] : "migrate failed");
    pgw_diag_release(&diag);
    fclose(devnull);
    return why;
}

void tu_db_migrate(const char *conninfo)
{
    char *why = migrate(conninfo);

    if (why)
        fail_msg("migrate: %s", why);
}

/* Makes template |tmpl| unless it exists; NULL, or what went wrong. Under
 * an advisory lock on |c|: one process builds it, the others wait. */
static char *build_template(PGconn *c, const char *base, const char *tmpl)
{
    const char *params[1] = {tmpl};
    char building[128], sql[512];
    char *conninfo, *why;
    PGresult *r;
    bool exists;

    r = PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL,
                     params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return strdup(PQerrorMessage(c));
    }
    exists = PQntuples(r) > 0;
    PQclear(r);
    if (exists)
        return NULL;
    /* Built under another name and renamed when complete: a run killed
     * half-way leaves no template that looks finished. */
    snprintf(building, sizeof(building), "%s_building", tmpl);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             building);
    exec_sql(base, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", building);
    if (exec_sql(base, sql) < 0)
        return strdup("cannot create the template database");
    conninfo = conninfo_of(base, building);
    why = migrate(conninfo);
    free(conninfo);
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", building,
             tmpl);
    if (!why && exec_sql(base, sql) < 0)
        why = strdup("cannot rename the template database");
    return why;
}

char *tu_db_create_migrated(const char *prefix)
{
    const char *base = base_url();
    char tmpl[64], name[128], sql[512];
    char *why;
    PGconn *c;

    template_name(tmpl, sizeof(tmpl));
    c = PQconnectdb(base);
    if (PQstatus(c) != CONNECTION_OK) {
        why = strdup(PQerrorMessage(c));
    } else {
        /* A session lock: let go when |c| closes, even after a failure. */
        PQclear(PQexec(c, "SELECT pg_advisory_lock(7011726)"));
        why = build_template(c, base, tmpl);
    }
    PQfinish(c);
    if (why)
        fail_msg("test database template %s: %s", tmpl, why);
    unique_name(prefix, name, sizeof(name));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE %s", name, tmpl);
    if (exec_sql(base, sql) < 0)
        fail_msg("cannot create test database '%s'", name);
    return conninfo_of(base, name);
}

void tu_db_drop(const char *conninfo)
{
    const char *base = getenv("PUSHGW_TEST_DATABASE_URL");
    const char *db;
    char sql[256];

    if (!conninfo || !base)
        return;
    db = strrchr(conninfo, '=');
    if (!db)
        return;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
             db + 1);
    exec_sql(base, sql);
}

/* The first value of |sql|'s first row on |c| (malloc'd, "" when none),
 * or NULL on error. */
static char *query_on(PGconn *c, const char *sql)
{
    PGresult *r;
    char *out = NULL;

    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect: %s", PQerrorMessage(c));
        return NULL;
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        out = strdup(PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0)
                                                          : "");
    } else if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        out = strdup("");
    } else {
        print_error("sql '%s' failed: %s", sql, PQerrorMessage(c));
    }
    PQclear(r);
    return out;
}

char *tu_db_query(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    char *out = query_on(c, sql);

    PQfinish(c);
    return out;
}

bool tu_db_wait(const char *conninfo, const char *sql, const char *want,
                int timeout_ms)
{
    PGconn *c = NULL;
    bool ok = false;

    /* One connection for the whole wait (a new one after it broke): a
     * connection per look costs the server a process start each time. */
    TU_POLL_UNTIL(ok, timeout_ms)
    {
        char *r;

        if (!c || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = PQconnectdb(conninfo);
        }
        r = query_on(c, sql);
        ok = r && strcmp(r, want) == 0;
        free(r);
    }
    PQfinish(c);
    return ok;
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

char *tu_pg_create(const char *dir)
{
    char cmd[2048];
    char *conninfo = NULL;
    int port = tu_free_port();
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
    tu_pg_ctl(dir, "start");
    assert_int_equal(asprintf(&conninfo,
                              "host=127.0.0.1 port=%d user=postgres "
                              "dbname=postgres connect_timeout=2",
                              port) > 0,
                     1);
    return conninfo;
}

void tu_pg_ctl(const char *dir, const char *action)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd),
             "%s/pg_ctl -D '%s/data' -l '%s/postgres.log' -w -m fast %s "
             ">/dev/null",
             pg_bin(), dir, dir, action);
    run_as_pg(cmd);
}
