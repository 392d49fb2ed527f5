/*
 * The schema migrator of `pushgw migrate` (store.h): blocking libpq, run
 * before any event loop exists. It reads the NNNN_name.sql files of one
 * folder (load_files: names checked, sorted, numbers unique, each with
 * its SHA-256), takes the advisory lock PGW_STORE_MIGRATE_LOCK, checks
 * that every migration recorded in schema_migrations is still there and
 * unchanged, then applies the others in order, each in its own
 * transaction together with its schema_migrations row (apply_one).
 */
#include "store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pgconn.h"

struct mfile {
    char *name;    /* 0001_init.sql */
    char *version; /* 0001_init */
    char *sql;
    size_t len;
    char sum[65];
    int applied; /* recorded in schema_migrations */
};

void pgw_store_sha256_hex(const void *data, size_t len, char ret_hex[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    unsigned int mdlen = 0;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) {
        ret_hex[2 * i] = hex[md[i] >> 4];
        ret_hex[2 * i + 1] = hex[md[i] & 0xf];
    }
    ret_hex[64] = '\0';
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);

    if (n < 10 || strcmp(name + n - 4, ".sql") != 0)
        return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)name[i]))
            return 0;
    if (name[4] != '_')
        return 0;
    for (size_t i = 5; i < n - 4; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_' &&
            name[i] != '-')
            return 0;
    return 1;
}

static int cmp_mfile(const void *a, const void *b)
{
    return strcmp(((const struct mfile *)a)->name,
                  ((const struct mfile *)b)->name);
}

static void free_files(struct mfile *files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(files[i].name);
        free(files[i].version);
        free(files[i].sql);
    }
    free(files);
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    char *buf;

    if (!fp)
        return PGW_ERR_IO;
    if (fstat(fileno(fp), &st) < 0 || st.st_size < 0 ||
        st.st_size > PGW_STORE_MAX_MIGRATION_BYTES) {
        fclose(fp);
        return PGW_ERR_TOO_LARGE;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(fp);
        return PGW_ERR_NOMEM;
    }
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        free(buf);
        fclose(fp);
        return PGW_ERR_IO;
    }
    fclose(fp);
    buf[st.st_size] = '\0';
    *ret = buf;
    *ret_len = (size_t)st.st_size;
    return 0;
}

static int load_files(const char *dir, struct pgw_diag *diag,
                      struct mfile **ret_files, size_t *ret_n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct mfile *files = NULL;
    size_t n = 0;
    int rc = 0;

    if (!d) {
        pgw_diag_add(diag, "cannot read migrations dir '%s': %s", dir,
                     strerror(errno));
        return PGW_ERR_IO;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        char *path = NULL;
        struct mfile *f;

        if (len < 4 || strcmp(de->d_name + len - 4, ".sql") != 0)
            continue;
        if (!valid_name(de->d_name)) {
            pgw_diag_add(diag,
                         "migration file '%s' in '%s': name must be "
                         "NNNN_name.sql",
                         de->d_name, dir);
            rc = PGW_ERR_CONFLICT;
            continue;
        }
        if (n >= PGW_STORE_MAX_MIGRATIONS) {
            pgw_diag_add(diag, "too many migration files in '%s'", dir);
            rc = PGW_ERR_CONFLICT;
            break;
        }
        f = realloc(files, (n + 1) * sizeof(*f));
        if (!f) {
            rc = PGW_ERR_NOMEM;
            break;
        }
        files = f;
        f = &files[n];
        memset(f, 0, sizeof(*f));
        n++;
        f->name = strdup(de->d_name);
        f->version = strndup(de->d_name, len - 4);
        if (!f->name || !f->version ||
            asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
            rc = PGW_ERR_NOMEM;
            break;
        }
        int frc = read_file(path, &f->sql, &f->len);
        if (frc < 0) {
            pgw_diag_add(diag, "cannot read migration '%s': %s", path,
                         frc == PGW_ERR_IO ? strerror(errno)
                                           : pgw_strerror(frc));
            rc = frc == PGW_ERR_NOMEM ? frc : PGW_ERR_IO;
            free(path);
            break;
        }
        free(path);
        pgw_store_sha256_hex(f->sql, f->len, f->sum);
    }
    closedir(d);
    if (rc == 0) {
        if (n > 1)
            qsort(files, n, sizeof(*files), cmp_mfile);
        for (size_t i = 1; i < n; i++) {
            if (strncmp(files[i].name, files[i - 1].name, 4) == 0) {
                pgw_diag_add(diag,
                             "migrations '%s' and '%s' share the "
                             "number '%.4s'",
                             files[i - 1].name, files[i].name, files[i].name);
                rc = PGW_ERR_CONFLICT;
            }
        }
    }
    if (rc < 0) {
        free_files(files, n);
        return rc;
    }
    *ret_files = files;
    *ret_n = n;
    return 0;
}

/* Runs |sql| and reports a failure as "what: why". */
static int exec_ok(PGconn *conn, const char *sql, ExecStatusType want,
                   struct pgw_diag *diag, const char *what, PGresult **ret)
{
    PGresult *res = PQexec(conn, sql);
    char buf[1024];

    if (PQresultStatus(res) != want) {
        pgw_diag_add(
            diag, "%s: %s", what,
            pgw_pgconn_one_line(buf, sizeof(buf), PQerrorMessage(conn)));
        PQclear(res);
        return PGW_ERR_DB;
    }
    if (ret)
        *ret = res;
    else
        PQclear(res);
    return 0;
}

/* A migration's statement failed: "|what|: |how|libpq's error" goes to
 * |diag|, |res| is cleared, the transaction rolled back. PGW_ERR_DB. */
static int roll_back(PGconn *conn, PGresult *res, struct pgw_diag *diag,
                     const char *what, const char *how)
{
    char buf[1024];

    pgw_diag_add(diag, "%s: %s%s", what, how,
                 pgw_pgconn_one_line(buf, sizeof(buf), PQerrorMessage(conn)));
    PQclear(res);
    PQclear(PQexec(conn, "ROLLBACK"));
    return PGW_ERR_DB;
}

static int apply_one(PGconn *conn, const struct mfile *f, FILE *out,
                     struct pgw_diag *diag)
{
    const char *params[2] = {f->version, f->sum};
    char what[512];
    PGresult *res;
    int rc;

    snprintf(what, sizeof(what), "migration '%s' failed", f->name);
    rc = exec_ok(conn, "BEGIN", PGRES_COMMAND_OK, diag, what, NULL);
    if (rc < 0)
        return rc;
    /* A simple-query exec runs every statement of the file. */
    res = PQexec(conn, f->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK &&
        PQresultStatus(res) != PGRES_TUPLES_OK &&
        PQresultStatus(res) != PGRES_EMPTY_QUERY) {
        return roll_back(conn, res, diag, what, "");
    }
    PQclear(res);
    res = PQexecParams(conn,
                       "INSERT INTO schema_migrations (version, checksum, "
                       "applied_at) VALUES ($1, $2, now())",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        return roll_back(conn, res, diag, what, "cannot record it: ");
    }
    PQclear(res);
    rc = exec_ok(conn, "COMMIT", PGRES_COMMAND_OK, diag, what, NULL);
    if (rc < 0)
        return rc;
    fprintf(out, "applied %s (sha256 %.12s)\n", f->name, f->sum);
    return 0;
}

int pgw_store_migrate(const char *conninfo, const char *dir, FILE *out,
                      struct pgw_diag *diag)
{
    struct mfile *files = NULL;
    size_t n_files = 0;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char buf[1024];
    char lock_sql[128];
    int applied = 0, already = 0;
    int rc;

    rc = load_files(dir, diag, &files, &n_files);
    if (rc < 0)
        return rc;

    conn = PQconnectdb(conninfo);
    if (!conn) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        pgw_diag_add(
            diag, "could not connect to the database: %s",
            pgw_pgconn_one_line(buf, sizeof(buf), PQerrorMessage(conn)));
        rc = PGW_ERR_DB;
        goto out;
    }
    PQsetNoticeProcessor(conn, pgw_pgconn_log_notice, NULL);

    /* Several instances may start at once: one migrates, the others wait
     * and then find nothing left to do. */
    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_lock(%lld)",
             (long long)PGW_STORE_MIGRATE_LOCK);
    rc = exec_ok(conn, lock_sql, PGRES_TUPLES_OK, diag,
                 "could not take the migration lock", NULL);
    if (rc < 0)
        goto out;
    rc = exec_ok(conn,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "version text PRIMARY KEY, checksum text NOT NULL, "
                 "applied_at timestamptz DEFAULT now())",
                 PGRES_COMMAND_OK, diag,
                 "could not create table 'schema_migrations'", NULL);
    if (rc < 0)
        goto out;
    rc = exec_ok(conn,
                 "SELECT version, checksum FROM schema_migrations "
                 "ORDER BY version",
                 PGRES_TUPLES_OK, diag, "could not read 'schema_migrations'",
                 &res);
    if (rc < 0)
        goto out;

    /* Every applied migration must still be there, unchanged. */
    for (int r = 0; r < PQntuples(res); r++) {
        const char *version = PQgetvalue(res, r, 0);
        const char *sum = PQgetvalue(res, r, 1);
        struct mfile *f = NULL;

        for (size_t i = 0; i < n_files; i++)
            if (strcmp(files[i].version, version) == 0)
                f = &files[i];
        if (!f) {
            pgw_diag_add(diag,
                         "applied migration '%s.sql' is missing from "
                         "'%s'",
                         version, dir);
            rc = PGW_ERR_CONFLICT;
        } else if (strcmp(f->sum, sum) != 0) {
            pgw_diag_add(diag,
                         "applied migration '%s' has changed since it "
                         "was applied (sha256 '%.12s' now, '%.12s' "
                         "then): add a new migration instead",
                         f->name, f->sum, sum);
            rc = PGW_ERR_CONFLICT;
        } else {
            f->applied = 1;
            already++;
        }
    }
    if (rc < 0)
        goto out;

    for (size_t i = 0; i < n_files; i++) {
        if (files[i].applied)
            continue;
        rc = apply_one(conn, &files[i], out, diag);
        if (rc < 0)
            goto out;
        applied++;
    }
    fprintf(out, "migrations: %d applied, %d already applied\n", applied,
            already);
    rc = 0;
out:
    PQclear(res);
    /* Closing the session releases the advisory lock. */
    PQfinish(conn);
    free_files(files, n_files);
    return rc;
}
