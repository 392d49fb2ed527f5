/* A push-API request's body, checked and made into its stored row. */
#include "lc_pushreq.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "installation.h"
#include "lc_where.h"
#include "payload_apns.h"
#include "payload_fcm.h"
#include "push.h"
#include "resolve.h"
#include "util/json.h"

static const char *const known_keys[] = {
    "data",
    "channels",
    "where",
    "prod",
    "expiration_time",
    "expiration_interval",
    "push_time",
    "flow_control",
    "req_id",
    "notification_id",
    "apns_team_id",
    "_notificationChannel",
};

/* LeanCloud's parameters pushgw does not serve, and why. */
static const struct {
    const char *key, *why;
} unsupported_keys[] = {
    {"cql", "cql is not supported: use where"},
    {"topic", "topic is not supported: set the installation's apnsTopic or "
              "the app's apns_topic"},
};

static int fail(struct pgw_lc_error *err, int code, const char *field,
                const char *reason, const char *msg)
{
    pgw_lc_error_set(err, 400, code, field, reason, "%s", msg);
    return PGW_ERR_INVAL;
}

static bool known(const char *k)
{
    for (size_t i = 0; i < PGW_ARRAY_SIZE(known_keys); i++)
        if (strcmp(k, known_keys[i]) == 0)
            return true;
    return false;
}

static int check_keys(const cJSON *body, struct pgw_lc_error *err)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, body)
    {
        for (size_t i = 0; i < PGW_ARRAY_SIZE(unsupported_keys); i++)
            if (strcmp(it->string, unsupported_keys[i].key) == 0)
                return fail(err, PGW_LC_INVALID_JSON, it->string, "unsupported",
                            unsupported_keys[i].why);
        if (!known(it->string)) {
            pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, it->string,
                             "unsupported",
                             "Unknown push parameter '%.64s': pushgw refuses "
                             "what it does not know rather than push to a "
                             "wider audience.",
                             it->string);
            return PGW_ERR_INVAL;
        }
    }
    return 0;
}

/* A date: an ISO string or {"__type":"Date","iso":…}. 1 with |*ret_ms|,
 * 0 absent, PGW_ERR_INVAL. */
static int get_date(const cJSON *body, const char *key, int64_t *ret_ms,
                    struct pgw_lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsObject(v)) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "__type");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "Date") == 0)
            v = cJSON_GetObjectItemCaseSensitive(v, "iso");
    }
    if (!cJSON_IsString(v) || pgw_lc_parse_date(v->valuestring, ret_ms) < 0) {
        pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, key, "bad_date",
                         "%s must be an ISO 8601 date such as "
                         "2027-01-12T08:00:00.000Z",
                         key);
        return PGW_ERR_INVAL;
    }
    return 1;
}

/* An optional string of 1..PGW_LC_PUSH_MAX_ID_BYTES bytes, copied. */
static int get_id(const cJSON *body, const char *key, char **ret,
                  struct pgw_lc_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);

    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring[0] ||
        strlen(v->valuestring) > PGW_LC_PUSH_MAX_ID_BYTES) {
        pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, key, "bad_type",
                         "%s must be a string of 1 to %d bytes", key,
                         PGW_LC_PUSH_MAX_ID_BYTES);
        return PGW_ERR_INVAL;
    }
    *ret = strdup(v->valuestring);
    return *ret ? 0 : PGW_ERR_NOMEM;
}

/* expiration_interval: whole seconds, a number or a string of digits. */
static int get_interval(const cJSON *v, int64_t *ret_s,
                        struct pgw_lc_error *err)
{
    int64_t s = -1;

    if (cJSON_IsNumber(v)) {
        if (!pgw_json_int_value(v, 1, PGW_LC_PUSH_MAX_TTL_S * 100, &s))
            s = -1;
    } else if (cJSON_IsString(v) && v->valuestring[0] &&
               strlen(v->valuestring) <= 12) {
        s = 0;
        for (const char *p = v->valuestring; *p && s >= 0; p++)
            s = isdigit((unsigned char)*p) ? s * 10 + (*p - '0') : -1;
    }
    if (s <= 0)
        return fail(err, PGW_LC_INCORRECT_TYPE, "expiration_interval",
                    "bad_type",
                    "expiration_interval must be a positive whole number of "
                    "seconds");
    *ret_s = s;
    return 0;
}

/* ---- content --------------------------------------------------------------
 */

static int check_badge(const cJSON *obj, const char *field,
                       struct pgw_lc_error *err)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, "badge");
    int64_t n;

    if (!b || cJSON_IsNull(b) ||
        (cJSON_IsString(b) && strcmp(b->valuestring, "Increment") == 0) ||
        pgw_json_int_value(b, INT32_MIN, INT32_MAX, &n))
        return 0;
    return fail(err, PGW_LC_INCORRECT_TYPE, field, "bad_type",
                "badge must be a whole number or \"Increment\"");
}

/* What the sender will make of |data| (resolve.c's content rules, then
 * push.c's payloads for each platform): what a provider would refuse (too
 * large even shortened, a bad collapse-id) is refused now, with the
 * request, rather than failed on every device later; a content with
 * nothing for either platform is refused too. */
static int check_payloads(const cJSON *data, const char *profile, int64_t now_s,
                          int64_t expires_at_s, struct pgw_lc_error *err)
{
    static const char *const provider[PGW_PLATFORM_COUNT] = {"APNs", "FCM"};
    static const int limit[PGW_PLATFORM_COUNT] = {PGW_APNS_MAX_BODY,
                                                  PGW_PAYLOAD_FCM_MAX_BODY};
    struct pgw_resolved *res = NULL;
    struct pgw_json_error jerr;
    struct pgw_push_event e;
    const char *reason[PGW_PLATFORM_COUNT];
    bool built[PGW_PLATFORM_COUNT];
    int rc;

    rc = pgw_resolve_api_push(data, profile, now_s, expires_at_s, &res, &jerr);
    if (rc == PGW_ERR_NOMEM)
        return rc;
    if (rc < 0) {
        pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, "data", "bad_data",
                         "data: %s", jerr.reason);
        return PGW_ERR_INVAL;
    }
    pgw_push_event_init(&e, res, "lc_pushreq", now_s, expires_at_s - now_s);
    pgw_push_event_build(&e, PGW_PLATFORM_IOS);
    pgw_push_event_build(&e, PGW_PLATFORM_ANDROID);
    built[PGW_PLATFORM_IOS] = e.apns[0] != NULL;
    reason[PGW_PLATFORM_IOS] = e.apns_err[0];
    built[PGW_PLATFORM_ANDROID] = e.fcm[2 * PGW_PLATFORM_ANDROID] != NULL;
    reason[PGW_PLATFORM_ANDROID] = e.fcm_err[2 * PGW_PLATFORM_ANDROID];
    pgw_push_event_release(&e);
    pgw_resolve_free(res);

    rc = 0;
    for (int p = 0; p < PGW_PLATFORM_COUNT && rc == 0; p++) {
        if (built[p])
            continue;
        if (!reason[p])
            return PGW_ERR_NOMEM;
        if (strcmp(reason[p], PGW_PUSH_REASON_NO_CONTENT) == 0)
            continue;
        if (strcmp(reason[p], PGW_PAYLOAD_REASON_TOO_LARGE) == 0)
            pgw_lc_error_set(err, 400, PGW_LC_TOO_LARGE, "data",
                             "payload_too_large",
                             "data is too large for %s even with its alert "
                             "shortened (at most %d bytes)",
                             provider[p], limit[p]);
        else
            pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, "data", reason[p],
                             "data cannot be sent to %s: %s", provider[p],
                             reason[p]);
        rc = PGW_ERR_INVAL;
    }
    if (rc == 0 && !built[PGW_PLATFORM_IOS] && !built[PGW_PLATFORM_ANDROID])
        rc = fail(err, PGW_LC_INVALID_JSON, "data", "no_content",
                  "data has nothing to show on iOS or Android devices");
    return rc;
}

/* |data| checked and completed with the request's apns_team_id and
 * _notificationChannel; a new tree in |*ret|. */
static int make_data(const cJSON *body, const char *profile, int64_t now_s,
                     int64_t expires_at_s, cJSON **ret,
                     struct pgw_lc_error *err)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "data");
    const cJSON *it;
    cJSON *data = NULL;
    int rc = PGW_ERR_INVAL;

    if (!d || cJSON_IsNull(d))
        return fail(err, PGW_LC_MISSING_FIELD, "data", "missing_data",
                    "data is required: the content of the push");
    if (!cJSON_IsObject(d))
        return fail(err, PGW_LC_INCORRECT_TYPE, "data", "bad_type",
                    "data must be an object");
    if (!d->child)
        return fail(err, PGW_LC_INVALID_JSON, "data", "no_content",
                    "data is empty: nothing to push");
    data = cJSON_Duplicate(d, true);
    if (!data)
        return PGW_ERR_NOMEM;
    /* the request's own keys for what the content may also say */
    static const struct {
        const char *param, *key;
    } folded[] = {{"apns_team_id", "_apns_team_id"},
                  {"_notificationChannel", "_notificationChannel"}};
    for (size_t i = 0; i < PGW_ARRAY_SIZE(folded); i++) {
        const cJSON *v =
            cJSON_GetObjectItemCaseSensitive(body, folded[i].param);
        const cJSON *have =
            cJSON_GetObjectItemCaseSensitive(data, folded[i].key);
        if (!v || cJSON_IsNull(v))
            continue;
        if (!cJSON_IsString(v) || !v->valuestring[0]) {
            pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, folded[i].param,
                             "bad_type", "%s must be a non-empty string",
                             folded[i].param);
            goto out;
        }
        if (have) {
            if (!cJSON_IsString(have) ||
                strcmp(have->valuestring, v->valuestring) != 0) {
                pgw_lc_error_set(err, 400, PGW_LC_INVALID_JSON, folded[i].param,
                                 "conflict", "%s and data.%s differ",
                                 folded[i].param, folded[i].key);
                goto out;
            }
            continue;
        }
        if (!cJSON_AddStringToObject(data, folded[i].key, v->valuestring)) {
            rc = PGW_ERR_NOMEM;
            goto out;
        }
    }
    it = cJSON_GetObjectItemCaseSensitive(data, "_profile");
    if (it && !(cJSON_IsString(it) && (strcmp(it->valuestring, "dev") == 0 ||
                                       strcmp(it->valuestring, "prod") == 0))) {
        fail(err, PGW_LC_INVALID_JSON, "data._profile", "bad_profile",
             "data._profile must be \"dev\" or \"prod\"");
        goto out;
    }
    it = cJSON_GetObjectItemCaseSensitive(data, "_apns_team_id");
    if (it && !(cJSON_IsString(it) && it->valuestring[0])) {
        fail(err, PGW_LC_INCORRECT_TYPE, "data._apns_team_id", "bad_type",
             "data._apns_team_id must be a non-empty string");
        goto out;
    }
    for (int p = 0; p < PGW_PLATFORM_COUNT; p++) {
        const char *name = pgw_platform_name((enum pgw_platform)p);
        it = cJSON_GetObjectItemCaseSensitive(data, name);
        if (it && !cJSON_IsObject(it)) {
            pgw_lc_error_set(err, 400, PGW_LC_INCORRECT_TYPE, name, "bad_type",
                             "data.%s must be an object: the content of %s "
                             "devices",
                             name, name);
            goto out;
        }
    }
    if (check_badge(data, "data.badge", err) < 0 ||
        check_badge(cJSON_GetObjectItemCaseSensitive(data, "ios"),
                    "data.ios.badge", err) < 0)
        goto out;
    rc = check_payloads(data, profile, now_s, expires_at_s, err);
    if (rc < 0)
        goto out;
    *ret = data;
    return 0;
out:
    cJSON_Delete(data);
    return rc;
}

/* ---- audience --------------------------------------------------------------
 */

/* The stored query: |where| with |channels| folded in. */
static int make_query(const cJSON *body, char **ret, struct pgw_lc_error *err)
{
    const cJSON *where = cJSON_GetObjectItemCaseSensitive(body, "where");
    const cJSON *channels = cJSON_GetObjectItemCaseSensitive(body, "channels");
    cJSON *q = NULL, *in = NULL, *and = NULL;
    struct pgw_where w = {0};
    int rc = PGW_ERR_NOMEM;

    if (where && !cJSON_IsObject(where))
        return fail(err, PGW_LC_INCORRECT_TYPE, "where", "bad_type",
                    "where must be an object: a query over installations");
    if (channels) {
        const cJSON *it;
        if (!cJSON_IsArray(channels))
            return fail(err, PGW_LC_INCORRECT_TYPE, "channels", "bad_type",
                        "channels must be an array of strings");
        cJSON_ArrayForEach(it, channels)
        {
            if (!cJSON_IsString(it))
                return fail(err, PGW_LC_INCORRECT_TYPE, "channels", "bad_type",
                            "channels must be an array of strings");
        }
        in = cJSON_CreateObject();
        if (!in ||
            !cJSON_AddItemToObject(in, "$in", cJSON_Duplicate(channels, true)))
            goto out;
        if (!cJSON_GetObjectItemCaseSensitive(in, "$in"))
            goto out;
    }
    if (where && in) {
        cJSON *c = cJSON_CreateObject();
        q = cJSON_CreateObject();
        and = cJSON_AddArrayToObject(q, "$and");
        if (!c || !and ||
            !cJSON_AddItemToArray(and, cJSON_Duplicate(where, true))) {
            cJSON_Delete(c);
            goto out;
        }
        cJSON_AddItemToObject(c, "channels", in);
        in = NULL;
        cJSON_AddItemToArray(and, c);
        if (cJSON_GetArraySize(and) != 2)
            goto out;
    } else if (where) {
        q = cJSON_Duplicate(where, true);
    } else {
        q = cJSON_CreateObject();
        if (q && in) {
            cJSON_AddItemToObject(q, "channels", in);
            in = NULL;
        }
    }
    if (!q || in)
        goto out;
    /* compiled as the sender will: what does not compile is refused */
    rc = pgw_where_compile(q, NULL, 1, &w, err);
    if (rc < 0) {
        if (rc != PGW_ERR_NOMEM) {
            if (!err->status)
                err->status = 400;
            rc = PGW_ERR_INVAL;
        }
        goto out;
    }
    pgw_where_release(&w);
    *ret = cJSON_PrintUnformatted(q);
    rc = *ret ? 0 : PGW_ERR_NOMEM;
out:
    cJSON_Delete(q);
    cJSON_Delete(in);
    return rc;
}

/* ---- times -----------------------------------------------------------------
 */

static int make_times(const cJSON *body, int64_t now_ms, int64_t validity_s,
                      int64_t *ret_push_at, int64_t *ret_expires_at,
                      struct pgw_lc_error *err)
{
    const cJSON *iv =
        cJSON_GetObjectItemCaseSensitive(body, "expiration_interval");
    int64_t push_at = 0, exp_at = 0, interval_s = 0, base;
    int rc, has_exp;

    rc = get_date(body, "push_time", &push_at, err);
    if (rc < 0)
        return rc;
    if (push_at > now_ms + PGW_LC_PUSH_MAX_SCHEDULE_S * 1000)
        return fail(err, PGW_LC_INVALID_JSON, "push_time", "too_late",
                    "push_time is more than 30 days ahead");
    if (push_at <= now_ms)
        push_at = 0; /* in the past or now: now */
    base = push_at ? push_at : now_ms;
    has_exp = get_date(body, "expiration_time", &exp_at, err);
    if (has_exp < 0)
        return has_exp;
    if (iv && !cJSON_IsNull(iv)) {
        if (has_exp)
            return fail(err, PGW_LC_INVALID_JSON, "expiration_interval",
                        "conflict",
                        "expiration_time and expiration_interval cannot both "
                        "be set");
        rc = get_interval(iv, &interval_s, err);
        if (rc < 0)
            return rc;
        if (interval_s > PGW_LC_PUSH_MAX_TTL_S)
            return fail(err, PGW_LC_INVALID_JSON, "expiration_interval",
                        "too_long",
                        "expiration_interval is over 28 days (2419200 s), "
                        "longer than FCM keeps a push");
        exp_at = base + interval_s * 1000;
    } else if (has_exp) {
        if (exp_at <= now_ms)
            return fail(err, PGW_LC_INVALID_JSON, "expiration_time", "past",
                        "expiration_time is in the past");
        if (exp_at <= base)
            return fail(err, PGW_LC_INVALID_JSON, "expiration_time",
                        "before_push_time",
                        "expiration_time must come after push_time");
        if (exp_at - base > PGW_LC_PUSH_MAX_TTL_S * 1000)
            return fail(err, PGW_LC_INVALID_JSON, "expiration_time", "too_long",
                        "expiration_time is more than 28 days after the "
                        "push is sent, longer than FCM keeps a push");
    } else {
        if (validity_s > PGW_LC_PUSH_MAX_TTL_S)
            validity_s = PGW_LC_PUSH_MAX_TTL_S;
        exp_at = base + validity_s * 1000;
    }
    *ret_push_at = push_at;
    *ret_expires_at = exp_at;
    return 0;
}

/* ---- the request -----------------------------------------------------------
 */

int pgw_lc_pushreq_parse(const cJSON *body, const char *prod_header,
                         int64_t now_ms, int64_t validity_s,
                         struct pgw_lc_pushreq *ret, struct pgw_lc_error *err)
{
    struct pgw_lc_pushreq r;
    const cJSON *v;
    cJSON *data = NULL;
    int64_t n;
    int rc;

    memset(&r, 0, sizeof(r));
    memset(err, 0, sizeof(*err));
    if (!cJSON_IsObject(body))
        return fail(err, PGW_LC_INVALID_JSON, "", "bad_json",
                    "Malformed json object. A json dictionary is expected.");
    rc = check_keys(body, err);
    if (rc < 0)
        return rc;

    v = cJSON_GetObjectItemCaseSensitive(body, "prod");
    if (v && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, "dev") == 0)
            r.profile = "dev";
        else if (cJSON_IsString(v) && strcmp(v->valuestring, "prod") == 0)
            r.profile = "prod";
        else
            return fail(err, PGW_LC_INVALID_JSON, "prod", "bad_profile",
                        "prod must be \"dev\" or \"prod\"");
    } else if (prod_header && strcmp(prod_header, "1") != 0) {
        /* LeanCloud: an X-LC-Prod header other than 1 means dev */
        r.profile = "dev";
    }

    v = cJSON_GetObjectItemCaseSensitive(body, "flow_control");
    if (v && !cJSON_IsNull(v)) {
        if (!pgw_json_int_value(v, PGW_LC_PUSH_MIN_FLOW_CONTROL, INT32_MAX, &n))
            return fail(err, PGW_LC_INVALID_JSON, "flow_control",
                        "bad_flow_control",
                        "flow_control must be a whole number of devices per "
                        "second, at least 1000");
        r.flow_control = (int)n;
    }

    rc = make_times(body, now_ms, validity_s, &r.push_at_ms, &r.expires_at_ms,
                    err);
    if (rc < 0)
        return rc;
    rc = make_data(body, r.profile,
                   (r.push_at_ms ? r.push_at_ms : now_ms) / 1000,
                   r.expires_at_ms / 1000, &data, err);
    if (rc < 0)
        goto fail;
    r.data = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (!r.data) {
        rc = PGW_ERR_NOMEM;
        goto fail;
    }
    rc = make_query(body, &r.query, err);
    if (rc < 0)
        goto fail;
    rc = get_id(body, "req_id", &r.req_id, err);
    if (rc == 0)
        rc = get_id(body, "notification_id", &r.notification_id, err);
    if (rc < 0)
        goto fail;
    *ret = r;
    return 0;
fail:
    pgw_lc_pushreq_release(&r);
    return rc;
}

void pgw_lc_pushreq_release(struct pgw_lc_pushreq *self)
{
    if (!self)
        return;
    free(self->data);
    free(self->query);
    free(self->req_id);
    free(self->notification_id);
    memset(self, 0, sizeof(*self));
}
