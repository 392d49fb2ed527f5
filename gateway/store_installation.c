/* The LeanCloud API's installations: reads, one-statement writes. */
#include "store_installation.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::int8"

static const char sql_find[] =
    "SELECT id, xmin::text, object_id, installation_id, device_type, "
    "device_token, to_json(channels)::text, badge, time_zone, apns_topic, "
    "apns_team_id, device_profile, vendor, valid, invalid_reason IS NOT NULL, "
    "extra::text, " MS("created_at") ", " MS(
        "updated_at") " "
                      "FROM installations WHERE app_id = $1 AND (object_id = "
                      "$2 OR "
                      "installation_id = $3 OR device_token = $4) ORDER BY id "
                      "LIMIT 16";

/* The values of a row from the JSON parameter r.j (see row_json()). */
#define J_STR(k) "r.j->>'" k "'"
#define J_CHANNELS "ARRAY(SELECT jsonb_array_elements_text(r.j->'channels'))"
/* The channels of the deleted rows, for the cache. */
#define D_CHANNELS                                                             \
    "coalesce((SELECT array_agg(c) FROM d, unnest(d.channels) c), '{}')"

/*
 * The deletion runs first (the update's and the insert's WHERE read its
 * count), so the token is free when the row that takes it is written:
 * the unique index does not see rows this statement deleted.
 */
static const char
    sql_update
        [] =
            "WITH r AS (SELECT $4::jsonb AS j), "
            "t AS (SELECT i.id, i.channels, i.badge FROM installations i "
            "WHERE i.id = $2::int8 AND i.app_id = $1 AND i.xmin::text = $3 "
            "FOR UPDATE), "
            "d AS (DELETE FROM installations x USING t, r WHERE x.app_id = $1 "
            "AND "
            "x.device_token = " J_STR(
                "device_token") " AND x.id <> t.id "
                                "RETURNING x.channels), "
                                "u AS (UPDATE installations i SET "
                                "installation_id = " J_STR(
                                    "installation_id") ", "
                                                       "device_type = " J_STR("device_type") ", "
                                                                                             "device_token = " J_STR(
                                                                                                 "device_token") ", "
                                                                                                                 "channels = " J_CHANNELS
                                                                                                                 ", "
                                                                                                                 "badge = (" J_STR("badge") ")::int4, "
                                                                                                                                            "badge_event_id = CASE WHEN t.badge = (" J_STR("badge") ")::int4 "
                                                                                                                                                                                                    "THEN i.badge_event_id END, "
                                                                                                                                                                                                    "time_zone = " J_STR("time_zone") ", "
                                                                                                                                                                                                                                      "apns_topic = " J_STR("apns_topic") ", "
                                                                                                                                                                                                                                                                          "apns_team_id = " J_STR("apns_team_id") ", "
                                                                                                                                                                                                                                                                                                                  "device_profile = " J_STR("device_profile") ", "
                                                                                                                                                                                                                                                                                                                                                              "vendor = " J_STR(
                                                                                                                                                                                                                                                                                                                                                                  "vendor") ", "
                                                                                                                                                                                                                                                                                                                                                                            "valid = (" J_STR(
                                                                                                                                                                                                                                                                                                                                                                                "valid") ")::bool, "
                                                                                                                                                                                                                                                                                                                                                                                         "invalid_reason = CASE WHEN (" J_STR("revive") ")::bool THEN NULL "
                                                                                                                                                                                                                                                                                                                                                                                                                                        "ELSE i.invalid_reason END, "
                                                                                                                                                                                                                                                                                                                                                                                                                                        "invalidated_at = CASE WHEN (" J_STR(
                                                                                                                                                                                                                                                                                                                                                                                                                                            "revive") ")::bool THEN NULL "
                                                                                                                                                                                                                                                                                                                                                                                                                                                      "ELSE i.invalidated_at END, "
                                                                                                                                                                                                                                                                                                                                                                                                                                                      "extra = r.j->'extra', updated_at = now() "
                                                                                                                                                                                                                                                                                                                                                                                                                                                      "FROM t, r WHERE i.id = t.id AND (SELECT count(*) FROM d) >= 0 "
                                                                                                                                                                                                                                                                                                                                                                                                                                                      "RETURNING i.object_id, i.created_at, i.updated_at, i.channels) "
                                                                                                                                                                                                                                                                                                                                                                                                                                                      "SELECT u.object_id, " MS("u.created_at") ", " MS("u.updated_at") ", "
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                        "pushgw_installation_payload($1, u.channels || t.channels || " D_CHANNELS
                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                        ") FROM u, t";

static const char
    sql_insert[] = "WITH r AS (SELECT $4::jsonb AS j), "
                   "d AS (DELETE FROM installations x USING r WHERE x.app_id = "
                   "$1 AND "
                   "x.device_token = " J_STR(
                       "device_token") " RETURNING x.channels), "
                                       "n AS (INSERT INTO installations "
                                       "(app_id, object_id, installation_id, "
                                       "device_type, device_token, channels, "
                                       "badge, time_zone, apns_topic, "
                                       "apns_team_id, device_profile, vendor, "
                                       "valid, extra) "
                                       "SELECT $1, coalesce(" J_STR("object_id") ", pushgw_lc_object_id()), " J_STR("installation_id") ", " J_STR("device_type") ", " J_STR(
                                           "device_token") ", " J_CHANNELS
                                                           ", (" J_STR("badge") ")::int4, " J_STR("time_zone") ", " J_STR("apns_topic") ", " J_STR("apns_team_id") ", " J_STR("device_profile") ", " J_STR("vendor") ", (" J_STR(
                                                               "valid") ")::"
                                                                        "bool, "
                                                                        "r.j->'"
                                                                        "extra'"
                                                                        " FROM "
                                                                        "r "
                                                                        "WHERE "
                                                                        "(SELEC"
                                                                        "T "
                                                                        "count("
                                                                        "*) "
                                                                        "FROM "
                                                                        "d) >= "
                                                                        "0 "
                                                                        "AND "
                                                                        "$2::"
                                                                        "int8 "
                                                                        "IS "
                                                                        "NULL "
                                                                        "AND "
                                                                        "$3::"
                                                                        "text "
                                                                        "IS "
                                                                        "NULL "
                                                                        "ON "
                                                                        "CONFLI"
                                                                        "CT DO "
                                                                        "NOTHIN"
                                                                        "G "
                                                                        "RETURN"
                                                                        "ING "
                                                                        "object"
                                                                        "_id, "
                                                                        "create"
                                                                        "d_at, "
                                                                        "update"
                                                                        "d_at, "
                                                                        "channe"
                                                                        "ls) "
                                                                        "SELECT"
                                                                        " n."
                                                                        "object"
                                                                        "_id,"
                                                                        " " MS("n.created_at") ", " MS(
                                                                            "n."
                                                                            "up"
                                                                            "da"
                                                                            "te"
                                                                            "d_"
                                                                            "a"
                                                                            "t") ", "
                                                                                 "pushgw_installation_payload($1, n.channels || " D_CHANNELS
                                                                                 ") FROM n";

static const char sql_delete[] =
    "DELETE FROM installations WHERE app_id = $1 AND object_id = $2 "
    "RETURNING pushgw_installation_payload(app_id, channels)";

struct call {
    struct pgw_store *store;
    union {
        pgw_store_lc_rows_cb rows;
        pgw_store_lc_saved_cb saved;
        pgw_store_lc_deleted_cb deleted;
    } cb;
    void *arg;
    bool insert;
};

static struct call *call_new(struct pgw_store *store, void *arg)
{
    struct call *c = calloc(1, sizeof(*c));

    if (c) {
        c->store = store;
        c->arg = arg;
    }
    return c;
}

static const char *value(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int dup_value(char **dst, const PGresult *r, int row, int col)
{
    const char *v = value(r, row, col);

    *dst = NULL;
    if (!v)
        return 0;
    *dst = strdup(v);
    return *dst ? 0 : PGW_ERR_NOMEM;
}

static int read_row(const PGresult *r, int i, struct pgw_store_lc_row *row)
{
    struct pgw_lc_installation *in = &row->inst;
    cJSON *ch = NULL;
    const cJSON *it;
    int rc;

    if ((rc = pgw_lc_installation_init(in)) < 0)
        return rc;
    in->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    pgw_copy_str(row->version, sizeof(row->version), PQgetvalue(r, i, 1));
    if (dup_value(&in->object_id, r, i, 2) < 0 ||
        dup_value(&in->installation_id, r, i, 3) < 0 ||
        dup_value(&in->device_type, r, i, 4) < 0 ||
        dup_value(&in->device_token, r, i, 5) < 0 ||
        dup_value(&in->time_zone, r, i, 8) < 0 ||
        dup_value(&in->apns_topic, r, i, 9) < 0 ||
        dup_value(&in->apns_team_id, r, i, 10) < 0 ||
        dup_value(&in->device_profile, r, i, 11) < 0 ||
        dup_value(&in->vendor, r, i, 12) < 0)
        goto nomem;
    ch = cJSON_Parse(PQgetvalue(r, i, 6));
    if (cJSON_GetArraySize(ch) > 0) {
        in->channels = calloc((size_t)cJSON_GetArraySize(ch), sizeof(char *));
        if (!in->channels)
            goto nomem;
        cJSON_ArrayForEach(it, ch)
        {
            if (!cJSON_IsString(it))
                continue;
            in->channels[in->n_channels] = strdup(it->valuestring);
            if (!in->channels[in->n_channels])
                goto nomem;
            in->n_channels++;
        }
    }
    cJSON_Delete(ch);
    ch = NULL;
    in->badge = atoi(PQgetvalue(r, i, 7));
    in->valid = PQgetvalue(r, i, 13)[0] == 't';
    row->invalidated = PQgetvalue(r, i, 14)[0] == 't';
    cJSON_Delete(in->extra);
    in->extra = cJSON_Parse(PQgetvalue(r, i, 15));
    if (!cJSON_IsObject(in->extra)) {
        cJSON_Delete(in->extra);
        in->extra = cJSON_CreateObject();
        if (!in->extra)
            goto nomem;
    }
    in->created_at_ms = strtoll(PQgetvalue(r, i, 16), NULL, 10);
    in->updated_at_ms = strtoll(PQgetvalue(r, i, 17), NULL, 10);
    return 0;
nomem:
    cJSON_Delete(ch);
    pgw_lc_installation_release(in);
    return PGW_ERR_NOMEM;
}

static void on_found(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    struct pgw_store_lc_row rows[PGW_STORE_LC_MAX_ROWS];
    size_t n = 0;

    if (err == 0) {
        int nt = PQntuples(r);
        for (int i = 0; i < nt && n < PGW_STORE_LC_MAX_ROWS; i++) {
            if ((err = read_row(r, i, &rows[n])) < 0)
                break;
            n++;
        }
    }
    c->cb.rows(c->arg, err, err ? NULL : rows, err ? 0 : n);
    for (size_t i = 0; i < n; i++)
        pgw_lc_installation_release(&rows[i].inst);
    free(c);
}

int pgw_store_lc_find(struct pgw_store *self, const char *app_id,
                      const char *object_id, const char *installation_id,
                      const char *device_token, pgw_store_lc_rows_cb cb,
                      void *arg)
{
    const char *p[4] = {app_id, object_id, installation_id, device_token};
    struct call *c = call_new(self, arg);
    int rc;

    if (!c)
        return PGW_ERR_NOMEM;
    c->cb.rows = cb;
    rc = pgw_store_exec(self, sql_find, p, 4, on_found, c);
    if (rc < 0)
        free(c);
    return rc;
}

static bool add_str(cJSON *o, const char *k, const char *v)
{
    return cJSON_AddItemToObject(
        o, k, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

/* |row| as the JSON parameter of the write statements. */
static char *row_json(const struct pgw_lc_installation *row, bool revive)
{
    cJSON *o = cJSON_CreateObject(), *ch;
    char *s = NULL;

    if (!o || !add_str(o, "object_id", row->object_id) ||
        !add_str(o, "installation_id", row->installation_id) ||
        !add_str(o, "device_type", row->device_type) ||
        !add_str(o, "device_token", row->device_token) ||
        !add_str(o, "time_zone", row->time_zone) ||
        !add_str(o, "apns_topic", row->apns_topic) ||
        !add_str(o, "apns_team_id", row->apns_team_id) ||
        !add_str(o, "device_profile", row->device_profile) ||
        !add_str(o, "vendor", row->vendor) ||
        !cJSON_AddNumberToObject(o, "badge", row->badge) ||
        !cJSON_AddBoolToObject(o, "valid", row->valid) ||
        !cJSON_AddBoolToObject(o, "revive", revive))
        goto out;
    ch = cJSON_AddArrayToObject(o, "channels");
    if (!ch)
        goto out;
    for (size_t i = 0; i < row->n_channels; i++) {
        cJSON *str = cJSON_CreateString(row->channels[i]);
        if (!str || !cJSON_AddItemToArray(ch, str)) {
            cJSON_Delete(str);
            goto out;
        }
    }
    if (!cJSON_AddItemReferenceToObject(o, "extra", row->extra))
        goto out;
    s = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return s;
}

static void on_saved(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;

    if (err == 0 && PQntuples(r) != 1)
        err = PGW_ERR_CONFLICT;
    if (err) {
        c->cb.saved(c->arg, err, NULL, 0, 0, false);
    } else {
        pgw_store_forget_installations(c->store, PQgetvalue(r, 0, 3));
        c->cb.saved(c->arg, 0, PQgetvalue(r, 0, 0),
                    strtoll(PQgetvalue(r, 0, 1), NULL, 10),
                    strtoll(PQgetvalue(r, 0, 2), NULL, 10), c->insert);
    }
    free(c);
}

int pgw_store_lc_save(struct pgw_store *self, const char *app_id,
                      const struct pgw_lc_installation *row,
                      const char *version, bool revive,
                      pgw_store_lc_saved_cb cb, void *arg)
{
    struct call *c = call_new(self, arg);
    char id[24];
    const char *p[4];
    char *j = row_json(row, revive);
    int rc = PGW_ERR_NOMEM;

    if (!c || !j)
        goto out;
    c->cb.saved = cb;
    c->insert = row->id == 0;
    pgw_fmt_i64(id, row->id);
    p[0] = app_id;
    p[1] = row->id ? id : NULL;
    p[2] = row->id ? version : NULL;
    p[3] = j;
    rc = pgw_store_exec(self, c->insert ? sql_insert : sql_update, p, 4,
                        on_saved, c);
    if (rc == 0)
        c = NULL;
out:
    free(j);
    free(c);
    return rc;
}

static void on_deleted(void *arg, int err, const PGresult *r)
{
    struct call *c = arg;
    bool found = err == 0 && PQntuples(r) > 0;

    if (found)
        pgw_store_forget_installations(c->store, PQgetvalue(r, 0, 0));
    c->cb.deleted(c->arg, err, found);
    free(c);
}

int pgw_store_lc_delete(struct pgw_store *self, const char *app_id,
                        const char *object_id, pgw_store_lc_deleted_cb cb,
                        void *arg)
{
    const char *p[2] = {app_id, object_id};
    struct call *c = call_new(self, arg);
    int rc;

    if (!c)
        return PGW_ERR_NOMEM;
    c->cb.deleted = cb;
    rc = pgw_store_exec(self, sql_delete, p, 2, on_deleted, c);
    if (rc < 0)
        free(c);
    return rc;
}
