/* The push API's requests: the insert (with dedup) and the status read. */
#include "store_pushreq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char sql_insert[] =
    "SELECT o_id, o_object_id, "
    "floor(extract(epoch FROM o_created_at) * 1000)::int8, o_duplicate, "
    "o_full FROM pushgw_api_push_insert($1, $2::jsonb, $3::jsonb, $4, "
    "to_timestamp($5::int8 / 1000.0), to_timestamp($6::int8 / 1000.0), "
    "$7::int4, $8, $9, $10::int8)";

/* in-queue: waiting for a sender although due (LeanCloud's word) */
static const char sql_status[] =
    "SELECT object_id, "
    "CASE WHEN state = 'scheduled' AND push_at > now() THEN 'scheduled' "
    "WHEN state = 'scheduled' THEN 'in-queue' ELSE state END, "
    "floor(extract(epoch FROM created_at) * 1000)::int8, "
    "floor(extract(epoch FROM push_at) * 1000)::int8, "
    "floor(extract(epoch FROM expires_at) * 1000)::int8, "
    "coalesce(floor(extract(epoch FROM started_at) * 1000)::int8, 0), "
    "coalesce(floor(extract(epoch FROM finished_at) * 1000)::int8, 0), "
    "devices, successes, invalid_tokens, errors, data::text, query::text, "
    "profile, req_id, notification_id, result, coalesce(flow_control, 0), "
    "expired "
    "FROM api_pushes WHERE app_id = $1 AND object_id = $2";

struct call {
    union {
        pgw_store_pushreq_saved_cb saved;
        pgw_store_pushreq_status_cb status;
    } cb;
    void *arg;
};

static void on_inserted(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;

    if (err == 0 && (PQntuples(r) != 1 || PQnfields(r) != 5))
        err = PGW_ERR_DB;
    if (err == 0 && PQgetvalue(r, 0, 4)[0] == 't')
        err = PGW_ERR_BUSY;
    if (err)
        c->cb.saved(c->arg, err, 0, NULL, 0, false);
    else
        c->cb.saved(c->arg, 0, strtoll(PQgetvalue(r, 0, 0), NULL, 10),
                    PQgetvalue(r, 0, 1), strtoll(PQgetvalue(r, 0, 2), NULL, 10),
                    PQgetvalue(r, 0, 3)[0] == 't');
    free(c);
}

int pgw_store_pushreq_insert(struct pgw_store *self, const char *app_id,
                             const struct pgw_lc_pushreq *req,
                             long long max_pending,
                             pgw_store_pushreq_saved_cb cb, void *arg)
{
    char push_at[24], expires_at[24], flow[24], maxp[24];
    const char *p[10];
    struct call *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return PGW_ERR_NOMEM;
    c->cb.saved = cb;
    c->arg = arg;
    pgw_fmt_i64(push_at, req->push_at_ms);
    pgw_fmt_i64(expires_at, req->expires_at_ms);
    pgw_fmt_i64(flow, req->flow_control);
    pgw_fmt_i64(maxp, max_pending > 0 ? max_pending : 0);
    p[0] = app_id;
    p[1] = req->data;
    p[2] = req->query;
    p[3] = req->profile;
    p[4] = req->push_at_ms ? push_at : NULL;
    p[5] = expires_at;
    p[6] = req->flow_control ? flow : NULL;
    p[7] = req->req_id;
    p[8] = req->notification_id;
    p[9] = maxp;
    rc = pgw_store_exec(self, sql_insert, p, 10, on_inserted, c);
    if (rc < 0)
        free(c);
    return rc;
}

static const char *value(const PGresult *r, int col)
{
    return PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
}

static int64_t i64(const PGresult *r, int col)
{
    return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

static void on_status(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    struct pgw_store_pushreq_status st;

    if (err || PQntuples(r) != 1 || PQnfields(r) != 19) {
        c->cb.status(c->arg, err, NULL);
        free(c);
        return;
    }
    memset(&st, 0, sizeof(st));
    st.object_id = value(r, 0);
    st.status = value(r, 1);
    st.created_at_ms = i64(r, 2);
    st.push_at_ms = i64(r, 3);
    st.expires_at_ms = i64(r, 4);
    st.started_at_ms = i64(r, 5);
    st.finished_at_ms = i64(r, 6);
    st.devices = i64(r, 7);
    st.successes = i64(r, 8);
    st.invalid_tokens = i64(r, 9);
    st.errors = i64(r, 10);
    st.data = value(r, 11);
    st.query = value(r, 12);
    st.profile = value(r, 13);
    st.req_id = value(r, 14);
    st.notification_id = value(r, 15);
    st.result = value(r, 16);
    st.flow_control = i64(r, 17);
    st.expired = i64(r, 18);
    c->cb.status(c->arg, 0, &st);
    free(c);
}

int pgw_store_pushreq_status(struct pgw_store *self, const char *app_id,
                             const char *object_id,
                             pgw_store_pushreq_status_cb cb, void *arg)
{
    const char *p[2] = {app_id, object_id};
    struct call *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        return PGW_ERR_NOMEM;
    c->cb.status = cb;
    c->arg = arg;
    rc = pgw_store_exec(self, sql_status, p, 2, on_status, c);
    if (rc < 0)
        free(c);
    return rc;
}
