/*
 * The statements of the sender of API pushes (see store_broadcast.h).
 * Each is one statement in a transaction of its own (pgw_store_exec);
 * a page's statement is put together once per request around the
 * condition lc_where.c compiled (pgw_store_exec_text; one that changes
 * badges pgw_store_exec_text_pinned), and holds only placeholders for
 * values.
 */
#include "store_broadcast.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgarray.h"
#include "store_int.h"

#define MS(col) "(extract(epoch FROM " col ") * 1000)::int8"
#define LEASE_FOR(p) "now() + " p "::int4 * interval '1 millisecond'"

/* Due and not done, free or expired leases, earliest first: the partial
 * index api_pushes_due. 'scheduled' becomes 'sending' here. */
static const char sql_claim[] =
    "UPDATE api_pushes a SET state = 'sending', lease_owner = $1::text, "
    "lease_until = " LEASE_FOR(
        "$3") ", started_at = coalesce(a.started_at, "
              "now()) FROM (SELECT id FROM api_pushes "
              "WHERE state <> 'done' AND push_at <= "
              "now() AND lease_until < now() ORDER BY "
              "push_at, id LIMIT $2::int4 FOR UPDATE "
              "SKIP LOCKED) c WHERE a.id = c.id "
              "RETURNING a.id, a.app_id, a.object_id, "
              "a.data::text, a.query::text, a.profile, " MS(
                  "a.push_at") ", " MS("a.expires_at") ", "
                                                       "coalesce(a.flow_"
                                                       "control, 0), "
                                                       "a.cursor_id, "
                                                       "a.devices, "
                                                       "a.successes, "
                                                       "a.invalid_tokens, "
                                                       "a.errors, a.expired";

/* No row when nothing is scheduled: greatest() skips the NULL of min()
 * over no rows and gave 0, "due now", so each claim asked again at once,
 * two statements per round trip for as long as the process ran idle. */
static const char sql_next[] = "SELECT greatest(" MS("min(push_at)") " - " MS(
    "now()") ", 0) FROM api_pushes WHERE state <> 'done' AND push_at > "
             "now() HAVING min(push_at) IS NOT NULL";

static const char sql_renew[] =
    "UPDATE api_pushes SET lease_until = " LEASE_FOR(
        "$3") " WHERE id = ANY($2::int8[]) AND lease_owner = $1::text AND "
              "state <> 'done' RETURNING id";

static const char sql_release[] =
    "UPDATE api_pushes SET lease_owner = NULL, lease_until = '-infinity' "
    "WHERE id = $1::int8 AND lease_owner = $2::text";

/*
 * A page's outcomes. p: the counters and the cursor, only while this
 * process holds the lease; everything else joins p, so a lost lease
 * writes nothing. l: the devices to invalidate locked in id order, as the
 * lookups lock them (ST_INVALIDATE in store_sql.c). $23: the result when
 * the request ends.
 */
static const char sql_commit[] =
    "WITH p AS (UPDATE api_pushes SET cursor_id = greatest(cursor_id, "
    "$3::int8), devices = devices + $4::int4, successes = successes + "
    "$5::int4, invalid_tokens = invalid_tokens + $6::int4, errors = errors "
    "+ $7::int4, expired = expired + $8::int4, "
    "state = CASE WHEN $23::text IS NULL THEN state ELSE 'done' END, "
    "result = coalesce($23::text, result), "
    "finished_at = CASE WHEN $23::text IS NULL THEN NULL ELSE now() END, "
    "lease_owner = CASE WHEN $23::text IS NULL THEN lease_owner END, "
    "lease_until = CASE WHEN $23::text IS NULL THEN " LEASE_FOR(
        "$9") " ELSE '-infinity' END WHERE id = $1::int8 AND lease_owner = "
              "$2::text RETURNING id, app_id), "
              "f AS (INSERT INTO push_failures (api_push_id, installation_id, "
              "app_id, provider, outcome, status, reason) SELECT p.id, t.i, "
              "p.app_id, t.p, t.o, t.s, t.r FROM p, unnest($10::int8[], "
              "$11::text[], $12::text[], $13::int4[], $14::text[]) AS t(i, p, "
              "o, s, r)), "
              "v AS (SELECT DISTINCT ON (t.i) t.i AS id, t.r, t.since FROM p, "
              "unnest($10::int8[], $12::text[], $14::text[], $15::int8[]) AS "
              "t(i, o, r, since) WHERE t.o = 'invalidated' ORDER BY t.i), "
              "l AS (SELECT i.id FROM installations i JOIN v ON v.id = i.id "
              "ORDER BY i.id FOR UPDATE OF i), "
              "inv AS (UPDATE installations i SET valid = false, "
              "invalid_reason = v.r, invalidated_at = now() FROM v WHERE i.id "
              "= v.id AND i.id IN (SELECT id FROM l) AND i.valid AND (v.since "
              "IS NULL OR i.updated_at <= to_timestamp(v.since / 1000.0))), "
              "r AS (INSERT INTO push_retries (api_push_id, installation_id, "
              "app_id, provider, request, attempts, not_before, expires_at, "
              "last_reason) SELECT p.id, t.i, p.app_id, t.p, t.q, t.a, "
              "to_timestamp(t.nb / 1000.0), to_timestamp(t.x / 1000.0), t.l "
              "FROM p, unnest($16::int8[], $17::text[], $18::text[], "
              "$19::int4[], $20::int8[], $21::int8[], $22::text[]) AS t(i, p, "
              "q, a, nb, x, l)) "
              "SELECT count(*) FROM p";

/* The columns of a page's rows. */
#define PAGE_COLS                                                              \
    "i.id, i.installation_id, i.device_type, i.device_token, i.badge, "        \
    "i.apns_topic, i.apns_team_id"
/* $1 app, $2 cursor, $3 limit, $4 team (NULL: any), $5 minus the request's
 * id (badge_event_id), $6 the app's default team, $7 the badge to set
 * (NULL: none); the audience's condition from $8. The range on (app_id,
 * id) of the valid rows is migration 0010's index; the team rule is the
 * lookups' (STORE_SQL_TEAM_MATCH). */
#define PAGE_MATCH                                                             \
    "FROM installations i WHERE i.app_id = $1::text AND i.valid AND i.id > "   \
    "$2::int8 AND " STORE_SQL_TEAM_MATCH("i", "$4::text", "$6::text") " AND ("
#define PAGE_ORDER ") ORDER BY i.id LIMIT $3::int4"

struct call {
    union {
        pgw_store_api_pushes_cb pushes;
        pgw_store_next_due_cb next;
        pgw_store_held_cb held;
        pgw_store_done_cb done;
        pgw_store_installations_cb inst;
        pgw_store_page_cb page;
    } cb;
    void *arg;
};

static struct call *call_new(void *arg)
{
    struct call *c = calloc(1, sizeof(*c));

    if (c)
        c->arg = arg;
    return c;
}

static int64_t get_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *str_or_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static void on_claimed(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    struct pgw_store_api_push *p = NULL;
    size_t n = err ? 0 : (size_t)PQntuples(r);

    if (n && !(p = calloc(n, sizeof(*p)))) {
        err = PGW_ERR_NOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        int row = (int)i;

        p[i].id = get_i64(r, row, 0);
        p[i].app_id = PQgetvalue(r, row, 1);
        p[i].object_id = PQgetvalue(r, row, 2);
        p[i].data = PQgetvalue(r, row, 3);
        p[i].query = PQgetvalue(r, row, 4);
        p[i].profile = str_or_null(r, row, 5);
        p[i].push_at_ms = get_i64(r, row, 6);
        p[i].expires_at_ms = get_i64(r, row, 7);
        p[i].flow_control = (int)get_i64(r, row, 8);
        p[i].cursor_id = get_i64(r, row, 9);
        p[i].devices = (int)get_i64(r, row, 10);
        p[i].successes = (int)get_i64(r, row, 11);
        p[i].invalid_tokens = (int)get_i64(r, row, 12);
        p[i].errors = (int)get_i64(r, row, 13);
        p[i].expired = (int)get_i64(r, row, 14);
    }
    c->cb.pushes(c->arg, err, p, n);
    free(p);
    free(c);
}

int pgw_store_claim_api_pushes(struct pgw_store *self, unsigned max,
                               unsigned lease_ms, pgw_store_api_pushes_cb cb,
                               void *arg)
{
    char max_s[16], lease_s[16];
    const char *params[3];
    struct call *c;
    int rc;

    if (!self || !cb || max == 0 || lease_ms == 0)
        return PGW_ERR_INVAL;
    if (!(c = call_new(arg)))
        return PGW_ERR_NOMEM;
    c->cb.pushes = cb;
    snprintf(max_s, sizeof(max_s), "%u", max);
    snprintf(lease_s, sizeof(lease_s), "%u", lease_ms);
    params[0] = pgw_store_owner(self);
    params[1] = max_s;
    params[2] = lease_s;
    rc = pgw_store_exec(self, sql_claim, params, 3, on_claimed, c);
    if (rc < 0)
        free(c);
    return rc;
}

static void on_next(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    int64_t ms = -1;

    if (!err && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        ms = get_i64(r, 0, 0);
    c->cb.next(c->arg, err, ms);
    free(c);
}

int pgw_store_next_api_push(struct pgw_store *self, pgw_store_next_due_cb cb,
                            void *arg)
{
    struct call *c;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    if (!(c = call_new(arg)))
        return PGW_ERR_NOMEM;
    c->cb.next = cb;
    rc = pgw_store_exec(self, sql_next, NULL, 0, on_next, c);
    if (rc < 0)
        free(c);
    return rc;
}

static void on_renewed(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    size_t n = err ? 0 : (size_t)PQntuples(r);
    int64_t *ids = n ? calloc(n, sizeof(*ids)) : NULL;

    if (n && !ids) {
        err = PGW_ERR_NOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = get_i64(r, (int)i, 0);
    c->cb.held(c->arg, err, ids, n);
    free(ids);
    free(c);
}

int pgw_store_renew_api_pushes(struct pgw_store *self, const int64_t *ids,
                               size_t n, unsigned lease_ms,
                               pgw_store_held_cb cb, void *arg)
{
    struct pgw_buf b = {0};
    char lease_s[16];
    const char *params[3];
    struct call *c;
    int rc;

    if (!self || !cb || (n && !ids))
        return PGW_ERR_INVAL;
    pgw_buf_add(&b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        pgw_pgarray_put_sep(&b, 1);
        pgw_pgarray_put_int(&b, (long long)ids[i]);
    }
    pgw_buf_add(&b, "}", 1);
    if (b.oom || !(c = call_new(arg))) {
        pgw_buf_release(&b);
        return PGW_ERR_NOMEM;
    }
    c->cb.held = cb;
    snprintf(lease_s, sizeof(lease_s), "%u", lease_ms);
    params[0] = pgw_store_owner(self);
    params[1] = b.p;
    params[2] = lease_s;
    rc = pgw_store_exec(self, sql_renew, params, 3, on_renewed, c);
    pgw_buf_release(&b);
    if (rc < 0)
        free(c);
    return rc;
}

static void on_done(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    (void)r;

    c->cb.done(c->arg, err);
    free(c);
}

int pgw_store_release_api_push(struct pgw_store *self, int64_t id,
                               pgw_store_done_cb cb, void *arg)
{
    char id_s[24];
    const char *params[2];
    struct call *c;
    int rc;

    if (!self || !cb)
        return PGW_ERR_INVAL;
    if (!(c = call_new(arg)))
        return PGW_ERR_NOMEM;
    c->cb.done = cb;
    snprintf(id_s, sizeof(id_s), "%lld", (long long)id);
    params[0] = id_s;
    params[1] = pgw_store_owner(self);
    rc = pgw_store_exec(self, sql_release, params, 2, on_done, c);
    if (rc < 0)
        free(c);
    return rc;
}

/* ---- pages --------------------------------------------------------------- */

/* The row of installation |id| among the page's |n| rows (in id order),
 * or NULL. */
static struct pgw_installation *page_row(struct pgw_installation *inst,
                                         size_t n, int64_t id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (inst[mid].id == id)
            return &inst[mid];
        if (inst[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void on_page(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    size_t rows = err ? 0 : (size_t)PQntuples(r), n = 0;
    struct pgw_installation *inst = rows ? calloc(rows, sizeof(*inst)) : NULL;

    if (rows && !inst) {
        err = PGW_ERR_NOMEM;
        rows = 0;
    }
    /* the page's rows first (column 0: 0), in id order */
    for (; n < rows && !err && get_i64(r, (int)n, 0) == 0; n++) {
        int row = (int)n;

        inst[n].id = get_i64(r, row, 1);
        if (n && inst[n].id <= inst[n - 1].id)
            err = PGW_ERR_DB;
        inst[n].installation_id = str_or_null(r, row, 2);
        if (pgw_platform_parse(PQgetvalue(r, row, 3), &inst[n].platform) < 0)
            err = PGW_ERR_DB;
        inst[n].device_token = PQgetvalue(r, row, 4);
        inst[n].badge = (int32_t)get_i64(r, row, 5);
        inst[n].apns_topic = str_or_null(r, row, 6);
        inst[n].apns_team_id = str_or_null(r, row, 7);
    }
    /* then the new badges of its iOS rows (1) */
    for (size_t i = n; i < rows && !err; i++) {
        struct pgw_installation *in = page_row(inst, n, get_i64(r, (int)i, 1));

        if (get_i64(r, (int)i, 0) != 1 || !in)
            err = PGW_ERR_DB;
        else
            in->badge = (int32_t)get_i64(r, (int)i, 5);
    }
    c->cb.inst(c->arg, err, err ? NULL : inst, err ? 0 : n);
    free(inst);
    free(c);
}

int pgw_store_api_push_page(struct pgw_store *self,
                            const struct pgw_store_page_query *q,
                            pgw_store_installations_cb cb, void *arg)
{
    /*
     * The rows (column 0: 0), then the new badges of the iOS rows among
     * them (1, id, badge). Rows locked by the update alone, each as it
     * is incremented: in id order (the sorted row source under the
     * pinned plan, pgw_store_exec_text_pinned), as the lookups lock
     * them; the other rows are read as the plain read reads them. No
     * join of the update's rows back to the page's: with hash and merge
     * joins ruled out it would be a nested loop over both. The commit
     * does not wait for a WAL flush, as the lookups' do not
     * (ST_BADGE_TXN): the page's durable commit comes after it and its
     * flush covers this WAL; a crash before reads the page again, its
     * increments lost with it. A flush per page would bound the rate of
     * a broadcast.
     */
    static const char inc_head[] =
        "WITH m AS MATERIALIZED (SELECT " PAGE_COLS " " PAGE_MATCH;
    static const char inc_tail[] =
        PAGE_ORDER "), u AS (UPDATE installations i SET badge = CASE WHEN "
                   "$7::int4 IS NOT NULL THEN $7::int4 WHEN "
                   "i.badge_event_id = $5::int8 THEN i.badge ELSE i.badge + 1 "
                   "END, badge_event_id = $5::int8 FROM (SELECT id FROM m "
                   "WHERE device_type = 'ios' ORDER BY id) l WHERE i.id = "
                   "l.id RETURNING i.id, i.badge) "
                   "SELECT 0, m.* FROM m UNION ALL SELECT 1, u.id, NULL, "
                   "NULL, NULL, u.badge, NULL, NULL FROM u";
    /* $5 and $7 named once, so that their types are known. */
    static const char plain_head[] = "SELECT 0, " PAGE_COLS " " PAGE_MATCH
                                     "$5::int8 < 0 AND $7::int4 IS NULL AND (";
    static const char plain_tail[] = ")" PAGE_ORDER;
    bool write = q->increment || (q->match && q->match->set_badge);
    const char *head = write ? inc_head : plain_head;
    const char *tail = write ? inc_tail : plain_tail;
    const char **params = NULL;
    char after[24], limit[16], neg_id[24], badge[16];
    char *sql = NULL;
    size_t len;
    struct call *c = NULL;
    int rc = PGW_ERR_NOMEM;

    if (!self || !q || !cb || !q->app_id || !q->where_sql || q->limit == 0 ||
        q->n_where_params + PGW_STORE_PAGE_FIRST_PARAM - 1 >
            PGW_STORE_MAX_EXEC_PARAMS)
        return PGW_ERR_INVAL;
    len = strlen(head) + strlen(q->where_sql) + strlen(tail) + 1;
    sql = malloc(len);
    params =
        calloc(q->n_where_params + PGW_STORE_PAGE_FIRST_PARAM, sizeof(*params));
    if (!sql || !params || !(c = call_new(arg)))
        goto out;
    snprintf(sql, len, "%s%s%s", head, q->where_sql, tail);
    snprintf(after, sizeof(after), "%lld", (long long)q->after_id);
    snprintf(limit, sizeof(limit), "%u", q->limit);
    snprintf(neg_id, sizeof(neg_id), "%lld", -(long long)q->api_push_id);
    params[0] = q->app_id;
    params[1] = after;
    params[2] = limit;
    params[3] = q->match ? q->match->apns_team_id : NULL;
    params[4] = neg_id;
    params[5] = q->match ? q->match->default_team : NULL;
    params[6] = NULL;
    if (q->match && q->match->set_badge) {
        snprintf(badge, sizeof(badge), "%d", (int)q->match->badge);
        params[6] = badge;
    }
    for (size_t i = 0; i < q->n_where_params; i++)
        params[PGW_STORE_PAGE_FIRST_PARAM - 1 + i] = q->where_params[i];
    c->cb.inst = cb;
    rc = (write ? pgw_store_exec_text_pinned : pgw_store_exec_text)(
        self, sql, params,
        (unsigned)(q->n_where_params + PGW_STORE_PAGE_FIRST_PARAM - 1), on_page,
        c);
out:
    if (rc < 0)
        free(c);
    free(sql);
    free(params);
    return rc;
}

/* ---- a page's outcomes ----------------------------------------------- */

static void on_committed(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    bool held = !err && PQntuples(r) == 1 && get_i64(r, 0, 0) == 1;

    c->cb.page(c->arg, err, held);
    free(c);
}

static const char *const outcome_names[] = {"invalidated", "failed", "expired"};

int pgw_store_commit_api_page(struct pgw_store *self,
                              const struct pgw_store_api_page *pg,
                              pgw_store_page_cb cb, void *arg)
{
    /* $10..$15 failures, $16..$22 retries */
    struct pgw_buf a[13];
    char num[9][24];
    const char *params[23];
    struct call *c = NULL;
    int rc = PGW_ERR_NOMEM;

    if (!self || !pg || !cb || (pg->n_failures && !pg->failures) ||
        (pg->n_retries && !pg->retries))
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < pg->n_failures; i++)
        if ((unsigned)pg->failures[i].kind >= 3)
            return PGW_ERR_INVAL;
    memset(a, 0, sizeof(a));
    for (size_t k = 0; k < 13; k++)
        pgw_buf_add(&a[k], "{", 1);
    for (size_t i = 0; i < pg->n_failures; i++) {
        const struct pgw_store_failure *f = &pg->failures[i];

        for (size_t k = 0; k < 6; k++)
            pgw_pgarray_put_sep(&a[k], 1);
        pgw_pgarray_put_int(&a[0], (long long)f->installation_id);
        pgw_pgarray_put_str(&a[1], f->provider);
        pgw_pgarray_put_str(&a[2], outcome_names[f->kind]);
        pgw_pgarray_put_int(&a[3], f->status);
        pgw_pgarray_put_str(&a[4], f->reason);
        if (f->kind == PGW_STORE_FAIL_INVALIDATED && f->invalid_since_ms)
            pgw_pgarray_put_int(&a[5], (long long)f->invalid_since_ms);
        else
            pgw_pgarray_put_str(&a[5], NULL);
    }
    for (size_t i = 0; i < pg->n_retries; i++) {
        const struct pgw_store_retry_new *t = &pg->retries[i];

        for (size_t k = 6; k < 13; k++)
            pgw_pgarray_put_sep(&a[k], 1);
        pgw_pgarray_put_int(&a[6], (long long)t->installation_id);
        pgw_pgarray_put_str(&a[7], t->provider);
        pgw_pgarray_put_str(&a[8], t->request);
        pgw_pgarray_put_int(&a[9], t->attempts);
        pgw_pgarray_put_int(&a[10], (long long)t->not_before_ms);
        pgw_pgarray_put_int(&a[11], (long long)t->expires_at_ms);
        pgw_pgarray_put_str(&a[12], t->last_reason);
    }
    for (size_t k = 0; k < 13; k++) {
        pgw_buf_add(&a[k], "}", 1);
        if (a[k].oom)
            goto out;
        params[9 + k] = a[k].p;
    }
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)pg->api_push_id);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)pg->cursor_id);
    snprintf(num[2], sizeof(num[2]), "%d", pg->devices);
    snprintf(num[3], sizeof(num[3]), "%d", pg->successes);
    snprintf(num[4], sizeof(num[4]), "%d", pg->invalid_tokens);
    snprintf(num[5], sizeof(num[5]), "%d", pg->errors);
    snprintf(num[6], sizeof(num[6]), "%d", pg->expired);
    snprintf(num[7], sizeof(num[7]), "%u",
             pg->lease_ms ? pg->lease_ms : 30000u);
    params[0] = num[0];
    params[1] = pgw_store_owner(self);
    params[2] = num[1];
    for (size_t k = 3; k < 9; k++)
        params[k] = num[k - 1];
    params[22] = pg->result;
    if (!(c = call_new(arg)))
        goto out;
    c->cb.page = cb;
    rc = pgw_store_exec_text(self, sql_commit, params, 23, on_committed, c);
out:
    if (rc < 0)
        free(c);
    for (size_t k = 0; k < 13; k++)
        pgw_buf_release(&a[k]);
    return rc;
}
