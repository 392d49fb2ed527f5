/*
 * `pushgw import`'s SQL. A batch is COPYed into a temporary table, then
 * applied by statements that each touch every row of the batch at once:
 *   1. installations whose objectId is stored with another deviceToken:
 *      the stored row goes when the export is newer, else the export's
 *      row is dropped from the batch;
 *   2. UPDATE of the rows whose deviceToken is stored, when the export is
 *      not older and something differs;
 *   3. INSERT of the others (ON CONFLICT DO NOTHING: a row another client
 *      wrote meanwhile is left to it);
 *   4. updated_at put back to the export's on the rows of 2: migration
 *      0007's trigger sets it to now() when the registration changed;
 *   5. only when rows are left unaccounted for: which of them the stored
 *      row is newer than (the rest are unchanged).
 * A batch of rows that all carry their objectId and dates (an export's
 * rows do) is first COPYed straight into installations under a savepoint:
 * COPY writes rows in bulk, the staged statements one at a time, and a
 * first import's rows are all new. A row already stored (or written
 * meanwhile) fails that COPY on a unique index: the batch is rolled back
 * to the savepoint and applied as above, and so is every later batch of
 * the import (a second import would otherwise pay for a failed COPY per
 * batch).
 * The statements join the batch to installations through its unique
 * indexes, a lookup per row. The planner is told to (no hash or merge
 * joins, no sequential or bitmap scans, no materialised inner side, for
 * this session only): the table grows under the import faster than its
 * statistics, and a plan chosen for a small table made each batch read
 * all the rows imported before it.
 */
#include "store_import.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgarray.h"
#include "pushgw.h"

struct pgw_store_import {
    PGconn *conn;
    char *app_id;
    struct pgw_buf copy; /* the COPY text of a batch */
    struct pgw_buf arr;  /* one array literal */
    size_t *by_token;    /* row indexes sorted by deviceToken */
    bool *replaced;      /* per row: its installation's old row was deleted */
    bool *done;          /* per row: outcome known */
    size_t cap_rows;
    bool staged_only; /* a direct COPY failed: no more of them */
};

static const char *const setup_sql[] = {
    /* A lost batch is found again by running the import again. */
    "SET synchronous_commit = off",
    "SET enable_hashjoin = off",
    "SET enable_mergejoin = off",
    "SET enable_material = off",
    "SET enable_bitmapscan = off",
    "SET enable_seqscan = off",
    /* The settings above price the plans out of JIT's reach, wrongly. */
    "SET jit = off",
    "CREATE TEMP TABLE pgw_import_stage ("
    "n integer NOT NULL, object_id text, device_type text NOT NULL, "
    "device_token text NOT NULL, installation_id text, "
    "channels text[] NOT NULL, badge integer NOT NULL, time_zone text, "
    "apns_topic text, apns_team_id text, device_profile text, vendor text, "
    "valid boolean NOT NULL, extra jsonb NOT NULL, created_at timestamptz, "
    "updated_at timestamptz) ON COMMIT DELETE ROWS",
};

static const char copy_sql[] =
    "COPY pgw_import_stage (n, object_id, device_type, device_token, "
    "installation_id, channels, badge, time_zone, apns_topic, apns_team_id, "
    "device_profile, vendor, valid, extra, created_at, updated_at) "
    "FROM STDIN";

static const char direct_sql[] =
    "COPY installations (app_id, object_id, device_type, device_token, "
    "installation_id, channels, badge, time_zone, apns_topic, apns_team_id, "
    "device_profile, vendor, valid, extra, created_at, updated_at) "
    "FROM STDIN";

static const char moved_sql[] =
    "WITH c AS ("
    " SELECT s.n, t.id,"
    "  s.updated_at IS NULL OR t.updated_at <= s.updated_at AS wins"
    " FROM pgw_import_stage s JOIN installations t"
    "  ON t.app_id = $1 AND t.object_id = s.object_id"
    " WHERE t.device_token <> s.device_token),"
    " d AS (DELETE FROM installations i USING c"
    "  WHERE i.id = c.id AND c.wins)"
    " SELECT n, wins FROM c";

static const char drop_sql[] =
    "DELETE FROM pgw_import_stage WHERE n = ANY($1::integer[])";

#define NEW_INVALID_REASON                                                     \
    "CASE WHEN s.valid THEN NULL ELSE i.invalid_reason END"
#define NEW_INVALIDATED_AT                                                     \
    "CASE WHEN s.valid THEN NULL ELSE i.invalidated_at END"

static const char update_sql[] =
    "UPDATE installations i SET"
    " object_id = COALESCE(s.object_id, i.object_id),"
    " device_type = s.device_type, installation_id = s.installation_id,"
    " channels = s.channels, badge = s.badge, time_zone = s.time_zone,"
    " apns_topic = s.apns_topic, apns_team_id = s.apns_team_id,"
    " device_profile = s.device_profile, vendor = s.vendor, valid = s.valid,"
    " invalid_reason = " NEW_INVALID_REASON ","
    " invalidated_at = " NEW_INVALIDATED_AT ", extra = s.extra,"
    " created_at = COALESCE(s.created_at, i.created_at),"
    " updated_at = COALESCE(s.updated_at, i.updated_at)"
    " FROM pgw_import_stage s"
    " WHERE i.app_id = $1 AND i.device_token = s.device_token"
    " AND (s.updated_at IS NULL OR i.updated_at <= s.updated_at)"
    " AND (i.object_id, i.device_type, i.installation_id, i.channels,"
    "  i.badge, i.time_zone, i.apns_topic, i.apns_team_id,"
    "  i.device_profile, i.vendor, i.valid, i.invalid_reason,"
    "  i.invalidated_at, i.extra, i.created_at, i.updated_at)"
    " IS DISTINCT FROM"
    " (COALESCE(s.object_id, i.object_id), s.device_type,"
    "  s.installation_id, s.channels, s.badge, s.time_zone, s.apns_topic,"
    "  s.apns_team_id, s.device_profile, s.vendor, s.valid,"
    "  " NEW_INVALID_REASON ", " NEW_INVALIDATED_AT ", s.extra,"
    "  COALESCE(s.created_at, i.created_at),"
    "  COALESCE(s.updated_at, i.updated_at))"
    " RETURNING s.n";

static const char insert_sql[] =
    "INSERT INTO installations (app_id, object_id, device_type,"
    " device_token, installation_id, channels, badge, time_zone,"
    " apns_topic, apns_team_id, device_profile, vendor, valid, extra,"
    " created_at, updated_at)"
    " SELECT $1, COALESCE(s.object_id, pushgw_lc_object_id()),"
    " s.device_type, s.device_token, s.installation_id, s.channels,"
    " s.badge, s.time_zone, s.apns_topic, s.apns_team_id,"
    " s.device_profile, s.vendor, s.valid, s.extra,"
    " COALESCE(s.created_at, s.updated_at, now()),"
    " COALESCE(s.updated_at, s.created_at, now())"
    " FROM pgw_import_stage s"
    " ON CONFLICT DO NOTHING RETURNING device_token";

static const char stamp_sql[] =
    "UPDATE installations i SET updated_at = s.updated_at"
    " FROM pgw_import_stage s"
    " WHERE i.app_id = $1 AND i.device_token = s.device_token"
    " AND s.n = ANY($2::integer[]) AND s.updated_at IS NOT NULL"
    " AND i.updated_at <> s.updated_at";

static const char newer_sql[] =
    "SELECT s.n,"
    " s.object_id IS NULL OR i.object_id IS NOT DISTINCT FROM s.object_id"
    " FROM pgw_import_stage s JOIN installations i"
    " ON i.app_id = $1 AND i.device_token = s.device_token"
    " WHERE s.updated_at IS NOT NULL AND i.updated_at > s.updated_at";

static void put_char(struct pgw_buf *b, char c)
{
    pgw_buf_add(b, &c, 1);
}

/* |s| as a field of COPY's text format: backslash escapes; NULL is \N. */
static void copy_field(struct pgw_buf *b, const char *s, size_t n)
{
    size_t from = 0;

    if (!s) {
        pgw_buf_add(b, "\\N", 2);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;

        switch (s[i]) {
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            continue;
        }
        pgw_buf_add(b, s + from, i - from);
        pgw_buf_add(b, esc, 2);
        from = i + 1;
    }
    pgw_buf_add(b, s + from, n - from);
}

static void copy_str(struct pgw_buf *b, const char *s)
{
    copy_field(b, s, s ? strlen(s) : 0);
}

/* A text[] literal of |n| strings, then as a COPY field. */
static void copy_array(struct pgw_store_import *self, char *const *v, size_t n)
{
    struct pgw_buf *a = &self->arr;

    a->len = 0;
    put_char(a, '{');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            put_char(a, ',');
        put_char(a, '"');
        for (const char *p = v[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                put_char(a, '\\');
            put_char(a, *p);
        }
        put_char(a, '"');
    }
    put_char(a, '}');
    if (a->oom) {
        self->copy.oom = true;
        return;
    }
    copy_field(&self->copy, a->p, a->len);
}

static void copy_date(struct pgw_buf *b, int64_t ms)
{
    char date[40];

    if (ms == 0) {
        copy_field(b, NULL, 0);
        return;
    }
    pgw_lc_format_date(ms, date, sizeof(date));
    copy_str(b, date);
}

/* One line of COPY text: |first| (the row's number for the staged table,
 * the app for installations), then the row's columns. */
static int copy_row(struct pgw_store_import *self, const char *first,
                    const struct pgw_lc_installation *r)
{
    struct pgw_buf *b = &self->copy;
    char num[24];
    char *extra = cJSON_PrintUnformatted(r->extra);

    if (!extra)
        return PGW_ERR_NOMEM;
    copy_str(b, first);
    put_char(b, '\t');
    copy_str(b, r->object_id);
    put_char(b, '\t');
    copy_str(b, r->device_type);
    put_char(b, '\t');
    copy_str(b, r->device_token);
    put_char(b, '\t');
    copy_str(b, r->installation_id);
    put_char(b, '\t');
    copy_array(self, r->channels, r->n_channels);
    snprintf(num, sizeof(num), "\t%d\t", r->badge);
    pgw_buf_add(b, num, strlen(num));
    copy_str(b, r->time_zone);
    put_char(b, '\t');
    copy_str(b, r->apns_topic);
    put_char(b, '\t');
    copy_str(b, r->apns_team_id);
    put_char(b, '\t');
    copy_str(b, r->device_profile);
    put_char(b, '\t');
    copy_str(b, r->vendor);
    pgw_buf_add(b, r->valid ? "\tt\t" : "\tf\t", 3);
    copy_str(b, extra);
    put_char(b, '\t');
    copy_date(b, r->created_at_ms);
    put_char(b, '\t');
    copy_date(b, r->updated_at_ms);
    put_char(b, '\n');
    free(extra);
    return b->oom ? PGW_ERR_NOMEM : 0;
}

/* Postgres's message on one line into |err|. */
static int db_error(char *err, size_t err_size, const char *what,
                    const char *msg)
{
    size_t j;

    j = (size_t)snprintf(err, err_size, "%s: ", what);
    for (size_t i = 0; msg && msg[i] && j + 1 < err_size; i++) {
        char c = msg[i] == '\n' || msg[i] == '\t' ? ' ' : msg[i];

        if (c == ' ' && j > 0 && err[j - 1] == ' ')
            continue;
        err[j++] = c;
    }
    while (j > 0 && err[j - 1] == ' ')
        j--;
    if (j < err_size)
        err[j] = '\0';
    return PGW_ERR_DB;
}

static int exec_ok(struct pgw_store_import *self, const char *sql, int n_params,
                   const char *const *params, ExecStatusType want,
                   PGresult **ret_res, char *err, size_t err_size,
                   const char *what)
{
    PGresult *res =
        PQexecParams(self->conn, sql, n_params, NULL, params, NULL, NULL, 0);
    int rc;

    if (!res)
        return db_error(err, err_size, what, PQerrorMessage(self->conn));
    if (PQresultStatus(res) != want) {
        rc = db_error(err, err_size, what, PQresultErrorMessage(res));
        PQclear(res);
        return rc;
    }
    if (ret_res)
        *ret_res = res;
    else
        PQclear(res);
    return 0;
}

int pgw_store_import_open(const char *conninfo, const char *app_id,
                          struct pgw_store_import **ret_self, char *err,
                          size_t err_size)
{
    struct pgw_store_import *self = calloc(1, sizeof(*self));
    int rc;

    if (!self || !(self->app_id = strdup(app_id))) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    self->conn = PQconnectdb(conninfo);
    if (!self->conn) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    if (PQstatus(self->conn) != CONNECTION_OK) {
        rc = db_error(err, err_size, "could not connect to the database",
                      PQerrorMessage(self->conn));
        goto out;
    }
    for (size_t i = 0; i < PGW_ARRAY_SIZE(setup_sql); i++) {
        rc = exec_ok(self, setup_sql[i], 0, NULL, PGRES_COMMAND_OK, NULL, err,
                     err_size, "could not prepare the import");
        if (rc < 0)
            goto out;
    }
    *ret_self = self;
    self = NULL;
    rc = 0;
out:
    pgw_store_import_close(self);
    return rc;
}

void pgw_store_import_close(struct pgw_store_import *self)
{
    if (!self)
        return;
    if (self->conn)
        PQfinish(self->conn);
    free(self->app_id);
    free(self->copy.p);
    free(self->arr.p);
    free(self->by_token);
    free(self->replaced);
    free(self->done);
    free(self);
}

/* qsort_r is not C11: the rows being sorted are passed through this. */
static const struct pgw_lc_installation *const *sort_rows;

static int cmp_token(const void *a, const void *b)
{
    return strcmp(sort_rows[*(const size_t *)a]->device_token,
                  sort_rows[*(const size_t *)b]->device_token);
}

/* The row with |token|, or n. */
static size_t find_token(const struct pgw_store_import *self,
                         const struct pgw_lc_installation *const *rows,
                         size_t n, const char *token)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(rows[self->by_token[mid]]->device_token, token);

        if (c == 0)
            return self->by_token[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return n;
}

/* "{1,2,3}" of the rows whose |flags| say |want|, into |b|. */
static void int_array(struct pgw_buf *b, const size_t *idx, size_t n)
{
    char num[24];

    b->len = 0;
    put_char(b, '{');
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof(num), i ? ",%zu" : "%zu", idx[i]);
        pgw_buf_add(b, num, strlen(num));
    }
    put_char(b, '}');
}

static int grow_rows(struct pgw_store_import *self, size_t n)
{
    size_t *bt;
    bool *rp, *dn;

    if (n <= self->cap_rows)
        return 0;
    bt = realloc(self->by_token, n * sizeof(*bt));
    if (!bt)
        return PGW_ERR_NOMEM;
    self->by_token = bt;
    rp = realloc(self->replaced, n * sizeof(*rp));
    if (!rp)
        return PGW_ERR_NOMEM;
    self->replaced = rp;
    dn = realloc(self->done, n * sizeof(*dn));
    if (!dn)
        return PGW_ERR_NOMEM;
    self->done = dn;
    self->cap_rows = n;
    return 0;
}

/* The rows as COPY text, into the staged table (|direct| false) or
 * straight into installations. */
static int copy_batch(struct pgw_store_import *self,
                      const struct pgw_lc_installation *const *rows, size_t n,
                      bool direct, char *err, size_t err_size)
{
    PGresult *res = NULL;
    char num[24];
    int rc;

    self->copy.len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!direct)
            snprintf(num, sizeof(num), "%zu", i);
        rc = copy_row(self, direct ? self->app_id : num, rows[i]);
        if (rc < 0)
            return rc;
    }
    rc = exec_ok(self, direct ? direct_sql : copy_sql, 0, NULL, PGRES_COPY_IN,
                 NULL, err, err_size, "could not copy the rows");
    if (rc < 0)
        return rc;
    if (PQputCopyData(self->conn, self->copy.p, (int)self->copy.len) != 1 ||
        PQputCopyEnd(self->conn, NULL) != 1)
        return db_error(err, err_size, "could not copy the rows",
                        PQerrorMessage(self->conn));
    res = PQgetResult(self->conn);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = db_error(err, err_size, "could not copy the rows",
                      res ? PQresultErrorMessage(res)
                          : PQerrorMessage(self->conn));
    PQclear(res);
    while ((res = PQgetResult(self->conn)) != NULL)
        PQclear(res);
    return rc;
}

/*
 * The batch COPYed straight into installations, when every row has its
 * objectId and both dates (the staged INSERT fills those in otherwise).
 * Returns 0 when it was (every row created), 1 when the batch must go the
 * staged way (rolled back to the savepoint, |self->staged_only| set), or
 * an error.
 */
static int try_direct(struct pgw_store_import *self,
                      const struct pgw_lc_installation *const *rows, size_t n,
                      char *err, size_t err_size)
{
    char ignored[256];
    int rc;

    if (self->staged_only)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (!rows[i]->object_id || rows[i]->created_at_ms == 0 ||
            rows[i]->updated_at_ms == 0)
            return 1;
    rc = exec_ok(self, "SAVEPOINT pgw_direct", 0, NULL, PGRES_COMMAND_OK, NULL,
                 err, err_size, "could not start a savepoint");
    if (rc < 0)
        return rc;
    /* Its error is the staged statements' to report, if it is one. */
    rc = copy_batch(self, rows, n, true, ignored, sizeof(ignored));
    if (rc == 0)
        return 0;
    if (rc == PGW_ERR_NOMEM)
        return rc;
    self->staged_only = true;
    rc = exec_ok(self, "ROLLBACK TO SAVEPOINT pgw_direct", 0, NULL,
                 PGRES_COMMAND_OK, NULL, err, err_size,
                 "could not roll back to a savepoint");
    return rc < 0 ? rc : 1;
}

/* Statement 1: installations moved to another deviceToken. */
static int apply_moved(struct pgw_store_import *self, size_t n,
                       enum pgw_store_import_outcome *out, char *err,
                       size_t err_size)
{
    const char *params[1] = {self->app_id};
    const char *dparams[1];
    PGresult *res = NULL;
    size_t *lost = NULL, n_lost = 0;
    struct pgw_buf ids = {0};
    int rc;

    rc = exec_ok(self, moved_sql, 1, params, PGRES_TUPLES_OK, &res, err,
                 err_size, "could not match the objectIds");
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        goto out;
    lost = malloc((size_t)PQntuples(res) * sizeof(*lost));
    if (!lost) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        size_t k = strtoul(PQgetvalue(res, i, 0), NULL, 10);

        if (k >= n)
            continue;
        if (PQgetvalue(res, i, 1)[0] == 't') {
            self->replaced[k] = true;
        } else {
            out[k] = PGW_STORE_IMPORT_DUPLICATE;
            self->done[k] = true;
            lost[n_lost++] = k;
        }
    }
    if (n_lost == 0)
        goto out;
    int_array(&ids, lost, n_lost);
    if (ids.oom) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    dparams[0] = ids.p;
    rc = exec_ok(self, drop_sql, 1, dparams, PGRES_COMMAND_OK, NULL, err,
                 err_size, "could not match the objectIds");
out:
    PQclear(res);
    free(lost);
    free(ids.p);
    return rc;
}

/* Statements 2 and 4: updates, and their updated_at put back. */
static int apply_updates(struct pgw_store_import *self, size_t n,
                         enum pgw_store_import_outcome *out, char *err,
                         size_t err_size)
{
    const char *params[2] = {self->app_id, NULL};
    PGresult *res = NULL;
    size_t *upd = NULL, n_upd = 0;
    struct pgw_buf ids = {0};
    int rc;

    rc = exec_ok(self, update_sql, 1, params, PGRES_TUPLES_OK, &res, err,
                 err_size, "could not update the stored installations");
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        goto out;
    upd = malloc((size_t)PQntuples(res) * sizeof(*upd));
    if (!upd) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        size_t k = strtoul(PQgetvalue(res, i, 0), NULL, 10);

        if (k >= n || self->done[k])
            continue;
        out[k] = PGW_STORE_IMPORT_UPDATED;
        self->done[k] = true;
        upd[n_upd++] = k;
    }
    int_array(&ids, upd, n_upd);
    if (ids.oom) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    params[1] = ids.p;
    rc = exec_ok(self, stamp_sql, 2, params, PGRES_COMMAND_OK, NULL, err,
                 err_size, "could not keep the export's updatedAt");
out:
    PQclear(res);
    free(upd);
    free(ids.p);
    return rc;
}

static int apply_inserts(struct pgw_store_import *self,
                         const struct pgw_lc_installation *const *rows,
                         size_t n, enum pgw_store_import_outcome *out,
                         char *err, size_t err_size)
{
    const char *params[1] = {self->app_id};
    PGresult *res = NULL;
    int rc;

    rc = exec_ok(self, insert_sql, 1, params, PGRES_TUPLES_OK, &res, err,
                 err_size, "could not insert the new installations");
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        size_t k = find_token(self, rows, n, PQgetvalue(res, i, 0));

        if (k >= n || self->done[k])
            continue;
        out[k] = self->replaced[k] ? PGW_STORE_IMPORT_UPDATED
                                   : PGW_STORE_IMPORT_CREATED;
        self->done[k] = true;
    }
    PQclear(res);
    return 0;
}

/* Statement 5: of the rows left, those the stored row is newer than. */
static int classify_rest(struct pgw_store_import *self, size_t n,
                         enum pgw_store_import_outcome *out, char *err,
                         size_t err_size)
{
    const char *params[1] = {self->app_id};
    PGresult *res = NULL;
    size_t left = 0;
    int rc;

    for (size_t i = 0; i < n; i++)
        left += !self->done[i];
    if (left == 0)
        return 0;
    rc = exec_ok(self, newer_sql, 1, params, PGRES_TUPLES_OK, &res, err,
                 err_size, "could not compare with the stored installations");
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        size_t k = strtoul(PQgetvalue(res, i, 0), NULL, 10);

        if (k >= n || self->done[k])
            continue;
        out[k] = PQgetvalue(res, i, 1)[0] == 't' ? PGW_STORE_IMPORT_STORED_NEWER
                                                 : PGW_STORE_IMPORT_DUPLICATE;
        self->done[k] = true;
    }
    PQclear(res);
    for (size_t i = 0; i < n; i++)
        if (!self->done[i])
            out[i] = PGW_STORE_IMPORT_UNCHANGED;
    return 0;
}

int pgw_store_import_write(struct pgw_store_import *self,
                           const struct pgw_lc_installation *const *rows,
                           size_t n,
                           enum pgw_store_import_outcome *ret_outcomes,
                           char *err, size_t err_size)
{
    int rc;

    if (n == 0)
        return 0;
    rc = grow_rows(self, n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        self->by_token[i] = i;
        self->replaced[i] = self->done[i] = false;
    }
    sort_rows = rows;
    qsort(self->by_token, n, sizeof(*self->by_token), cmp_token);
    sort_rows = NULL;

    rc = exec_ok(self, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, err, err_size,
                 "could not start a transaction");
    if (rc < 0)
        return rc;
    rc = try_direct(self, rows, n, err, err_size);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            ret_outcomes[i] = PGW_STORE_IMPORT_CREATED;
        goto commit;
    }
    if (rc == 1)
        rc = copy_batch(self, rows, n, false, err, err_size);
    if (rc == 0)
        rc = apply_moved(self, n, ret_outcomes, err, err_size);
    if (rc == 0)
        rc = apply_updates(self, n, ret_outcomes, err, err_size);
    if (rc == 0)
        rc = apply_inserts(self, rows, n, ret_outcomes, err, err_size);
    if (rc == 0)
        rc = classify_rest(self, n, ret_outcomes, err, err_size);
commit:
    if (rc == 0)
        rc = exec_ok(self, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, err,
                     err_size, "could not commit the batch");
    if (rc < 0) {
        PGresult *res = PQexec(self->conn, "ROLLBACK");

        PQclear(res);
    }
    return rc;
}
