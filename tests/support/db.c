/* The test database and private Postgres clusters (see testutil.h). */
#include "testutil.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

char *tu_db_create(const char *prefix)
{
    const char *base = base_url();
    char name[128];
    char sql[256];
    char *conninfo = NULL;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(name, sizeof(name), "%s_%d_%ld", prefix, (int)getpid(),
             (long)(ts.tv_nsec / 1000));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (exec_sql(base, sql) < 0)
        fail_msg("cannot create test database '%s'", name);
    /* In key=value conninfo strings the last dbname wins. */
    if (asprintf(&conninfo, "%s dbname=%s", base, name) < 0)
        fail_msg("out of memory");
    return conninfo;
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

char *tu_db_query(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r;
    char *out = NULL;

    if (PQstatus(c) != CONNECTION_OK) {
        print_error("cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
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
    PQfinish(c);
    return out;
}

bool tu_db_wait(const char *conninfo, const char *sql, const char *want,
                int timeout_ms)
{
    bool ok = false;

    TU_POLL_UNTIL(ok, timeout_ms)
    {
        char *r = tu_db_query(conninfo, sql);
        ok = r && strcmp(r, want) == 0;
        free(r);
    }
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
