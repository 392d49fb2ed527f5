/* `pushgw migrate` against a real Postgres: apply, re-run, refusals,
 * transactional failure, concurrency, and the schema's own rules. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

struct fx {
    char *dir;  /* temp folder: pushgw.ini + migrations/ */
    char *mdir; /* migrations folder */
    char *ini;  /* config path */
    char *db;   /* conninfo of a fresh database */
};

static const char *extra_sql =
    "CREATE TABLE migrate_probe (id int PRIMARY KEY);\n"
    "INSERT INTO migrate_probe VALUES (1), (2);\n";

static char *copy_init_sql(void)
{
    char *src = tu_read_file(PUSHGW_SOURCE_DIR "/migrations/0001_init.sql");
    assert_non_null(src);
    return src;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *ini_text = NULL;
    char *init;

    f->db = tu_db_create("pgw_migrate");
    f->dir = tu_mkdtemp();
    assert_int_equal(asprintf(&f->mdir, "%s/migrations", f->dir) > 0, 1);
    assert_int_equal(mkdir(f->mdir, 0755), 0);
    init = copy_init_sql();
    free(tu_write_file(f->mdir, "0001_init.sql", init, 0644));
    free(init);
    free(tu_write_file(f->mdir, "0002_probe.sql", extra_sql, 0644));
    free(tu_write_file(f->mdir, "README.txt", "not a migration", 0644));
    assert_int_equal(asprintf(&ini_text,
                              "[database]\nurl = %s\n"
                              "[app:demo]\nhook_key = k-0123456789abcdef\n",
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
    free(f->mdir);
    free(f->ini);
    free(f->db);
    free(f);
    return 0;
}

static int migrate(struct fx *f, char **out, char **err)
{
    const char *argv[] = {"migrate", "-c", f->ini, NULL};
    return tu_run_pushgw(argv, NULL, out, err);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void assert_query(const char *db, const char *sql, const char *want)
{
    char *got = tu_db_query(db, sql);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' gave '%s', want '%s'", sql, got, want);
    free(got);
}

static void test_fresh_then_noop(void **state)
{
    struct fx *f = *state;
    char *out, *err;
    char sum[65];
    char sql[256];

    assert_int_equal(migrate(f, &out, &err), 0);
    assert_non_null(strstr(out, "applied 0001_init.sql"));
    assert_non_null(strstr(out, "applied 0002_probe.sql"));
    assert_true(strstr(out, "0001_init") < strstr(out, "0002_probe"));
    assert_non_null(strstr(out, "migrations: 2 applied, 0 already applied"));
    assert_string_equal(err, "");
    free(out);
    free(err);

    assert_query(f->db, "SELECT count(*) FROM schema_migrations", "2");
    assert_query(f->db, "SELECT count(*) FROM migrate_probe", "2");
    pgw_store_sha256_hex(extra_sql, strlen(extra_sql), sum);
    snprintf(sql, sizeof(sql),
             "SELECT checksum = '%s' FROM schema_migrations "
             "WHERE version = '0002_probe'",
             sum);
    assert_query(f->db, sql, "t");

    assert_int_equal(migrate(f, &out, &err), 0);
    assert_non_null(strstr(out, "migrations: 0 applied, 2 already applied"));
    assert_null(strstr(out, "applied 0001"));
    free(out);
    free(err);
    assert_query(f->db, "SELECT count(*) FROM migrate_probe", "2");
}

static void test_changed_file_refused(void **state)
{
    struct fx *f = *state;
    char *out, *err;

    assert_int_equal(migrate(f, &out, &err), 0);
    free(out);
    free(err);
    free(tu_write_file(f->mdir, "0002_probe.sql", "SELECT 1; -- edited\n",
                       0644));
    free(tu_write_file(f->mdir, "0003_next.sql", "CREATE TABLE t3 (x int);\n",
                       0644));
    assert_int_equal(migrate(f, &out, &err), 2);
    assert_non_null(strstr(err, "applied migration '0002_probe.sql' has "
                                "changed since it was applied"));
    free(out);
    free(err);
    /* Nothing else was applied while refusing. */
    assert_query(f->db, "SELECT count(*) FROM schema_migrations", "2");
    assert_query(f->db, "SELECT to_regclass('t3') IS NULL", "t");
}

static void test_missing_file_refused(void **state)
{
    struct fx *f = *state;
    char *out, *err;
    char *p = NULL;

    assert_int_equal(migrate(f, &out, &err), 0);
    free(out);
    free(err);
    assert_int_equal(asprintf(&p, "%s/0002_probe.sql", f->mdir) > 0, 1);
    assert_int_equal(unlink(p), 0);
    free(p);
    assert_int_equal(migrate(f, &out, &err), 2);
    assert_non_null(strstr(err, "applied migration '0002_probe.sql' is "
                                "missing from"));
    free(out);
    free(err);
}

static void test_bad_names_refused(void **state)
{
    struct fx *f = *state;
    char *out, *err;

    free(tu_write_file(f->mdir, "2_short.sql", "SELECT 1;", 0644));
    assert_int_equal(migrate(f, &out, &err), 2);
    assert_non_null(strstr(err, "'2_short.sql'"));
    assert_non_null(strstr(err, "name must be NNNN_name.sql"));
    free(out);
    free(err);
    assert_query(f->db, "SELECT to_regclass('schema_migrations') IS NULL", "t");
}

static void test_failing_migration_rolls_back(void **state)
{
    struct fx *f = *state;
    char *out, *err;

    free(tu_write_file(f->mdir, "0003_broken.sql",
                       "CREATE TABLE half (x int);\nSELECT no_such_func();\n",
                       0644));
    assert_int_equal(migrate(f, &out, &err), 1);
    assert_non_null(strstr(out, "applied 0002_probe.sql"));
    assert_non_null(strstr(err, "migration '0003_broken.sql' failed:"));
    assert_non_null(strstr(err, "no_such_func"));
    /* One line per problem. */
    assert_int_equal(count_of(err, "\n"), 1);
    free(out);
    free(err);
    assert_query(f->db, "SELECT count(*) FROM schema_migrations", "2");
    assert_query(f->db, "SELECT to_regclass('half') IS NULL", "t");
}

static void test_concurrent_runs(void **state)
{
    struct fx *f = *state;
    enum { N = 3 };
    pid_t pids[N];
    char *outs[N];
    int applied0001 = 0, applied0002 = 0;

    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof(name), "out%d.txt", i);
        assert_int_equal(asprintf(&outs[i], "%s/%s", f->dir, name) > 0, 1);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char *out = NULL, *err = NULL;
            int rc = migrate(f, &out, &err);
            FILE *fp = fopen(outs[i], "w");
            if (fp) {
                fprintf(fp, "%s%s", out ? out : "", err ? err : "");
                fclose(fp);
            }
            _exit(rc);
        }
    }
    for (int i = 0; i < N; i++) {
        int status;
        char *text;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        text = tu_read_file(outs[i]);
        assert_non_null(text);
        if (WEXITSTATUS(status) != 0)
            fail_msg("concurrent migrate %d failed: %s", i, text);
        applied0001 += count_of(text, "applied 0001_init.sql");
        applied0002 += count_of(text, "applied 0002_probe.sql");
        free(text);
        free(outs[i]);
    }
    assert_int_equal(applied0001, 1);
    assert_int_equal(applied0002, 1);
    assert_query(f->db, "SELECT count(*) FROM schema_migrations", "2");
}

static void test_unreachable_database(void **state)
{
    struct fx *f = *state;
    char *out, *err;
    const char *env[] = {"PUSHGW_DATABASE_URL=host=127.0.0.1 port=1 "
                         "connect_timeout=2",
                         NULL};
    const char *argv[] = {"migrate", "-c", f->ini, NULL};

    assert_int_equal(tu_run_pushgw(argv, env, &out, &err), 1);
    assert_true(
        strncmp(err, "pushgw: could not connect to the database: ", 43) == 0);
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(count_of(err, "\n"), 1);
    free(out);
    free(err);
}

/* The installations table as DESIGN §10, with its trigger. */
static void test_schema_rules(void **state)
{
    struct fx *f = *state;
    char *out, *err;
    char *r;

    assert_int_equal(migrate(f, &out, &err), 0);
    free(out);
    free(err);
    assert_query(f->db,
                 "INSERT INTO installations (app_id, device_type, "
                 "device_token, channels, updated_at) VALUES ('demo', 'ios', "
                 "'tok1', '{Jerry}', now() - interval '1 hour') "
                 "RETURNING badge || ',' || valid",
                 "0,true");
    /* A badge change alone is not a re-registration. */
    assert_query(f->db,
                 "UPDATE installations SET badge = badge + 1 RETURNING "
                 "badge || ',' || (updated_at < now() - interval '30 min')",
                 "1,true");
    /* A registration change is. */
    assert_query(f->db,
                 "UPDATE installations SET channels = '{Jerry,Tom}' "
                 "RETURNING updated_at > now() - interval '1 min'",
                 "t");
    /* One row per (app, token); device types are checked. */
    r = tu_db_query(f->db, "INSERT INTO installations (app_id, device_type, "
                           "device_token) VALUES ('demo', 'ios', 'tok1')");
    assert_null(r);
    r = tu_db_query(f->db, "INSERT INTO installations (app_id, device_type, "
                           "device_token) VALUES ('demo', 'winphone', 't2')");
    assert_null(r);
    assert_query(f->db,
                 "SELECT count(*) FROM pg_indexes WHERE tablename = "
                 "'installations' AND indexdef LIKE '%gin (channels)%'",
                 "1");
    assert_query(f->db,
                 "SELECT count(*) FROM installations WHERE channels && "
                 "ARRAY['Tom','Nobody']",
                 "1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_then_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_file_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_names_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failing_migration_rolls_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_database, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_schema_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
