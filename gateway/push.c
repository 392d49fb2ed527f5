/*
 * One device's push (see push.h). In the order of the header: the event's
 * payloads, the per-device step, the retry row codec, retry planning.
 * The per-device step runs once per push on the dispatcher's loop: it
 * makes one allocation (the push's buffer) and copies each string once.
 */
#include "push.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

const char *const pgw_provider_names[PGW_PROVIDER_COUNT] = {"apns", "fcm"};

void pgw_push_release(struct pgw_push *p)
{
    free(p->buf);
    p->buf = NULL;
}

/* ---- the event's payloads ------------------------------------------------ */

void pgw_push_event_init(struct pgw_push_event *e,
                         const struct pgw_resolved *res, const char *event_id,
                         int64_t now_s, int64_t validity_s)
{
    memset(e, 0, sizeof(*e));
    e->res = res;
    e->event_id = event_id;
    e->now_s = now_s;
    e->validity_s = validity_s;
}

void pgw_push_event_release(struct pgw_push_event *e)
{
    for (int v = 0; v < 4; v++) {
        pgw_payload_apns_free(e->apns[v]);
        pgw_payload_fcm_free(e->fcm[v]);
        e->apns[v] = NULL;
        e->fcm[v] = NULL;
    }
}

/* The bodies with nothing for their platform (see pgw_push_event_build). */
static bool apns_empty(const struct pgw_apns_payload *pl)
{
    static const char empty[] = "{\"aps\":{}}";

    return !pl->badge_increment && pl->body_len == sizeof(empty) - 1 &&
           memcmp(pl->body, empty, sizeof(empty) - 1) == 0;
}

static bool has(const char *text, size_t len, const char *key)
{
    return memmem(text, len, key, strlen(key)) != NULL;
}

/* cJSON escapes every quote inside a string: an unescaped "key": is a key. */
static bool fcm_empty(const struct pgw_fcm_payload *pl)
{
    static const char *const keys[] = {"\"notification\":", "\"data\":"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (has(pl->head, pl->head_len, keys[i]) ||
            has(pl->tail, pl->tail_len, keys[i]))
            return false;
    return true;
}

void pgw_push_event_build(struct pgw_push_event *e, enum pgw_platform platform)
{
    const struct pgw_resolved *res = e->res;

    if (e->built[platform])
        return;
    e->built[platform] = true;
    for (int v = 2 * (int)platform; v < 2 * (int)platform + 2; v++) {
        const cJSON *content = pgw_resolve_variant(res, v);

        /* Variants folded onto the unmentioned one share its payload. */
        if (!content || ((v & 1) && !res->has_mentioned))
            continue;
        if (platform == PGW_PLATFORM_IOS) {
            if (pgw_payload_apns_build(content, res->expires_at_s, e->now_s,
                                       &e->apns[v], &e->apns_err[v]) < 0) {
                e->apns[v] = NULL;
            } else if (apns_empty(e->apns[v])) {
                pgw_payload_apns_free(e->apns[v]);
                e->apns[v] = NULL;
                e->apns_err[v] = PGW_PUSH_REASON_NO_CONTENT;
            }
        } else if (pgw_payload_fcm_build(content, res->expires_at_s, e->now_s,
                                         e->validity_s, &e->fcm[v],
                                         &e->fcm_err[v]) < 0) {
            e->fcm[v] = NULL;
        } else if (fcm_empty(e->fcm[v])) {
            pgw_payload_fcm_free(e->fcm[v]);
            e->fcm[v] = NULL;
            e->fcm_err[v] = PGW_PUSH_REASON_NO_CONTENT;
        }
    }
}

bool pgw_push_event_increments(const struct pgw_push_event *e)
{
    if (e->res->profile == PGW_PROFILE_BAD)
        return false;
    for (int v = 0; v < 2; v++)
        if (e->apns[v] && e->apns[v]->badge_increment)
            return true;
    return false;
}

/* The team of an app's iOS devices that name none. */
static const char *default_team(const struct pgw_app *app)
{
    return app ? app->apns_team_id : NULL;
}

void pgw_push_match_init(const struct pgw_resolved *res,
                         const struct pgw_app *app,
                         struct pgw_installation_match *ret_m)
{
    memset(ret_m, 0, sizeof(*ret_m));
    ret_m->apns_team_id = res->apns_team_id;
    ret_m->default_team = default_team(app);
}

void pgw_push_event_match(struct pgw_push_event *e, const struct pgw_app *app,
                          struct pgw_installation_match *ret_m)
{
    const struct pgw_apns_payload *pl;
    int sent = 0;

    pgw_push_match_init(e->res, app, ret_m);
    pgw_push_event_build(e, PGW_PLATFORM_IOS);
    if (e->res->profile == PGW_PROFILE_BAD || pgw_push_event_increments(e))
        return;
    for (int v = 0; v < (e->res->has_mentioned ? 2 : 1); v++) {
        pl = e->apns[v];
        if (!pl || !pl->badge_number ||
            (sent && ret_m->badge != (pl->badge < 0 ? 0 : pl->badge))) {
            ret_m->set_badge = false;
            return;
        }
        ret_m->set_badge = true;
        ret_m->badge = pl->badge < 0 ? 0 : pl->badge;
        sent++;
    }
}

/* ---- the per-device step ------------------------------------------------- */

static enum pgw_push_result fail(struct pgw_push_failure *f,
                                 enum pgw_provider provider, const char *reason)
{
    f->provider = provider;
    f->expired = strcmp(reason, PGW_PAYLOAD_REASON_EXPIRED) == 0;
    f->reason = reason;
    return PGW_PUSH_FAIL;
}

/* True when the APNs sender of a runtime built from |a->cfg| has an
 * identity for |team|: the app's own, or a key of any app's teams. The
 * app's own identity, the common case, is a pointer comparison. */
static bool team_known(const struct pgw_push_app *a, const char *team)
{
    const struct pgw_config *cfg = a->cfg;

    if (team == a->apns_identity ||
        (a->apns_identity && strcmp(team, a->apns_identity) == 0))
        return true;
    for (size_t i = 0; cfg && i < cfg->n_apps; i++)
        for (size_t t = 0; t < cfg->apps[i].n_apns_teams; t++)
            if (strcmp(cfg->apps[i].apns_teams[t].team_id, team) == 0)
                return true;
    return false;
}

static enum pgw_push_result
make_apns(struct pgw_push_event *e, const struct pgw_push_app *a,
          const struct pgw_installation *inst, int32_t badge, int variant,
          struct pgw_push *p, struct pgw_push_failure *f)
{
    const struct pgw_resolved *res = e->res;
    const struct pgw_apns_payload *pl;
    const char *team, *topic;
    size_t tok_len, team_len, topic_len, cid_len, body_max;
    char *w;

    p->provider = PGW_PROVIDER_APNS;
    if (!e->built[PGW_PLATFORM_IOS])
        pgw_push_event_build(e, PGW_PLATFORM_IOS);
    pl = e->apns[variant];
    if (!pl)
        return fail(f, p->provider,
                    e->apns_err[variant] ? e->apns_err[variant]
                                         : "payload_error");
    team = res->apns_team_id    ? res->apns_team_id
           : inst->apns_team_id ? inst->apns_team_id
                                : a->apns_identity;
    topic = inst->apns_topic ? inst->apns_topic : a->apns_topic;
    if (!team || !topic)
        return fail(f, p->provider, !team ? "no_apns_team" : "no_apns_topic");
    if (!team_known(a, team))
        return fail(f, p->provider, "unknown_team");

    tok_len = strlen(inst->device_token);
    team_len = strlen(team);
    topic_len = strlen(topic);
    cid_len = pl->collapse_id ? strlen(pl->collapse_id) : 0;
    body_max = pgw_payload_apns_body_max(pl);
    p->buf = malloc(tok_len + 1 + team_len + 1 + topic_len + 1 + cid_len + 1 +
                    body_max);
    if (!p->buf)
        return fail(f, p->provider, "out_of_memory");
    w = p->buf;
    p->token = memcpy(w, inst->device_token, tok_len + 1);
    w += tok_len + 1;
    p->team = memcpy(w, team, team_len + 1);
    w += team_len + 1;
    p->topic = memcpy(w, topic, topic_len + 1);
    w += topic_len + 1;
    if (pl->collapse_id) {
        p->collapse_id = memcpy(w, pl->collapse_id, cid_len + 1);
        w += cid_len + 1;
    }
    p->body = w;
    if (pgw_payload_apns_body(pl, badge, p->body, body_max, &p->body_len) < 0) {
        pgw_push_release(p);
        return fail(f, p->provider, PGW_PAYLOAD_REASON_TOO_LARGE);
    }
    p->env = res->profile == PGW_PROFILE_DEV ? PGW_APNS_DEVELOPMENT
                                             : PGW_APNS_PRODUCTION;
    pgw_copy_str(p->push_type, sizeof(p->push_type), pl->push_type);
    p->priority = pl->priority;
    p->expiration = pl->expiration;
    if (!e->apns_id_key_set) {
        pgw_payload_apns_id_key(e->event_id, e->apns_id_key);
        e->apns_id_key_set = true;
    }
    pgw_payload_apns_id_from_key(e->apns_id_key, inst->id, p->apns_id);
    return PGW_PUSH_SEND;
}

static enum pgw_push_result make_fcm(struct pgw_push_event *e,
                                     const struct pgw_push_app *a,
                                     const struct pgw_installation *inst,
                                     int variant, struct pgw_push *p,
                                     struct pgw_push_failure *f)
{
    const struct pgw_fcm_payload *pl;
    size_t tok_len, cap;

    p->provider = PGW_PROVIDER_FCM;
    if (!e->built[PGW_PLATFORM_ANDROID])
        pgw_push_event_build(e, PGW_PLATFORM_ANDROID);
    pl = e->fcm[variant];
    if (!pl)
        return fail(f, p->provider,
                    e->fcm_err[variant] ? e->fcm_err[variant]
                                        : "payload_error");
    if (!a->has_fcm_account)
        return fail(f, p->provider, "no_fcm_account");
    tok_len = strlen(inst->device_token);
    cap = tok_len + 1 + pgw_payload_fcm_body_len(pl, inst->device_token);
    p->buf = malloc(cap);
    if (!p->buf)
        return fail(f, p->provider, "out_of_memory");
    p->token = memcpy(p->buf, inst->device_token, tok_len + 1);
    p->body = p->buf + tok_len + 1;
    if (pgw_payload_fcm_body(pl, inst->device_token, p->body, cap - tok_len - 1,
                             &p->body_len) < 0) {
        pgw_push_release(p);
        return fail(f, p->provider, PGW_PAYLOAD_REASON_TOO_LARGE);
    }
    return PGW_PUSH_SEND;
}

enum pgw_push_result pgw_push_make(struct pgw_push_event *e,
                                   const struct pgw_push_app *app,
                                   const struct pgw_installation *inst,
                                   int32_t badge, struct pgw_push *ret_p,
                                   struct pgw_push_failure *ret_fail)
{
    int variant = 0;

    memset(ret_p, 0, sizeof(*ret_p));
    switch (pgw_resolve_for_installation(e->res, inst, default_team(app->app),
                                         &variant, NULL)) {
    case PGW_RESOLVE_SEND:
        break;
    case PGW_RESOLVE_BAD_PROFILE:
        return fail(ret_fail, PGW_PROVIDER_APNS, "bad_profile");
    case PGW_RESOLVE_NOT_RECIPIENT:
    case PGW_RESOLVE_OTHER_TEAM:
    case PGW_RESOLVE_SKIPPED:
        return PGW_PUSH_NONE;
    }
    if ((variant & 1) && !e->res->has_mentioned)
        variant &= ~1;
    ret_p->installation_id = inst->id;
    ret_p->expires_at_ms = e->res->expires_at_s * 1000;
    if (inst->platform == PGW_PLATFORM_IOS)
        return make_apns(e, app, inst, badge, variant, ret_p, ret_fail);
    return make_fcm(e, app, inst, variant, ret_p, ret_fail);
}

bool pgw_push_answer_is_evidence(const struct pgw_push *p,
                                 const struct pgw_outcome *o)
{
    if (p->provider != PGW_PROVIDER_APNS || o->status != 400)
        return true;
    return p->env == PGW_APNS_PRODUCTION &&
           pgw_apns_topic_suffix(p->push_type) == NULL;
}

/* ---- the retry row codec ------------------------------------------------- */

/* The strings of a stored request, in the order they are copied. */
enum { F_TOKEN, F_TEAM, F_TOPIC, F_CID, F_BODY, F_COUNT };
static const char *const field_keys[F_COUNT] = {"token", "team", "topic", "cid",
                                                "body"};

char *pgw_push_encode(const struct pgw_push *p, const char *app_id)
{
    cJSON *o = cJSON_CreateObject();
    char *body = NULL, *out = NULL;

    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "p", pgw_provider_names[p->provider]) ||
        !cJSON_AddStringToObject(o, "token", p->token) ||
        !cJSON_AddStringToObject(o, "app", app_id))
        goto out;
    if (p->provider == PGW_PROVIDER_APNS) {
        if (!cJSON_AddNumberToObject(o, "env", p->env) ||
            !cJSON_AddStringToObject(o, "team", p->team) ||
            !cJSON_AddStringToObject(o, "topic", p->topic) ||
            !cJSON_AddStringToObject(o, "type", p->push_type) ||
            !cJSON_AddNumberToObject(o, "prio", p->priority) ||
            !cJSON_AddNumberToObject(o, "exp", (double)p->expiration) ||
            (p->collapse_id &&
             !cJSON_AddStringToObject(o, "cid", p->collapse_id)) ||
            !cJSON_AddStringToObject(o, "id", p->apns_id))
            goto out;
    }
    /* Bodies are UTF-8 JSON text: kept as a string. */
    body = strndup(p->body, p->body_len);
    if (!body || !cJSON_AddStringToObject(o, "body", body))
        goto out;
    out = cJSON_PrintUnformatted(o);
out:
    free(body);
    cJSON_Delete(o);
    return out;
}

static int decode_apns(const cJSON *o, struct pgw_push *p)
{
    const cJSON *env = cJSON_GetObjectItem(o, "env");
    const cJSON *type = cJSON_GetObjectItem(o, "type");
    const cJSON *prio = cJSON_GetObjectItem(o, "prio");
    const cJSON *exp = cJSON_GetObjectItem(o, "exp");
    const cJSON *id = cJSON_GetObjectItem(o, "id");

    if (!p->team || !p->topic || !cJSON_IsString(type) || !cJSON_IsString(id))
        return PGW_ERR_INVAL;
    p->env = cJSON_IsNumber(env) && env->valueint == 1 ? PGW_APNS_DEVELOPMENT
                                                       : PGW_APNS_PRODUCTION;
    pgw_copy_str(p->push_type, sizeof(p->push_type), type->valuestring);
    pgw_copy_str(p->apns_id, sizeof(p->apns_id), id->valuestring);
    p->priority = cJSON_IsNumber(prio) ? prio->valueint : 0;
    p->expiration = cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble : -1;
    return 0;
}

int pgw_push_decode(const char *request, const char *provider,
                    struct pgw_push *ret_p)
{
    cJSON *o = cJSON_Parse(request);
    const char *fields[F_COUNT];
    size_t lens[F_COUNT], total = 0;
    char **dst[F_COUNT] = {&ret_p->token, &ret_p->team, &ret_p->topic,
                           &ret_p->collapse_id, &ret_p->body};
    char *w;
    int rc = PGW_ERR_INVAL;

    memset(ret_p, 0, sizeof(*ret_p));
    if (!o)
        return PGW_ERR_INVAL;
    for (int i = 0; i < F_COUNT; i++) {
        const cJSON *it = cJSON_GetObjectItem(o, field_keys[i]);

        fields[i] = cJSON_IsString(it) ? it->valuestring : NULL;
        lens[i] = fields[i] ? strlen(fields[i]) : 0;
        total += lens[i] + 1;
    }
    if (!fields[F_TOKEN] || !fields[F_BODY])
        goto out;
    ret_p->provider =
        strcmp(provider, "apns") == 0 ? PGW_PROVIDER_APNS : PGW_PROVIDER_FCM;
    ret_p->buf = malloc(total);
    if (!ret_p->buf) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    w = ret_p->buf;
    for (int i = 0; i < F_COUNT; i++) {
        if (!fields[i])
            continue;
        *dst[i] = memcpy(w, fields[i], lens[i] + 1);
        w += lens[i] + 1;
    }
    ret_p->body_len = lens[F_BODY];
    rc = ret_p->provider == PGW_PROVIDER_APNS ? decode_apns(o, ret_p) : 0;
out:
    if (rc < 0 && ret_p->buf) {
        pgw_push_release(ret_p);
        ret_p->token = ret_p->team = ret_p->topic = NULL;
        ret_p->collapse_id = ret_p->body = NULL;
    }
    cJSON_Delete(o);
    return rc;
}

/* ---- retry planning ------------------------------------------------------ */

void pgw_retry_policy_from_config(const struct pgw_config *cfg,
                                  struct pgw_retry_policy *ret_pol)
{
    ret_pol->max_attempts = cfg->delivery.max_attempts;
    ret_pol->base_ms = cfg->delivery.retry_base_ms;
    ret_pol->max_ms = cfg->delivery.retry_max_ms;
}

int64_t pgw_retry_backoff_ms(const struct pgw_retry_policy *pol, int attempts,
                             double jitter)
{
    int64_t delay = pol->base_ms;

    for (int i = 1; i < attempts && delay < pol->max_ms; i++)
        delay *= 2;
    if (delay > pol->max_ms)
        delay = pol->max_ms;
    if (jitter < 0 || jitter >= 1)
        jitter = 0;
    return delay / 2 + (int64_t)((double)(delay - delay / 2) * jitter);
}

enum pgw_retry_plan pgw_retry_plan(const struct pgw_retry_policy *pol,
                                   int attempts, const struct pgw_outcome *o,
                                   int64_t expires_at_ms, int64_t now_ms,
                                   double jitter, int64_t *ret_at_ms)
{
    int64_t at = now_ms + pgw_retry_backoff_ms(pol, attempts, jitter);

    if (o->retry_after_ms > 0 && now_ms + o->retry_after_ms > at)
        at = now_ms + o->retry_after_ms;
    if (attempts >= pol->max_attempts)
        return PGW_RETRY_FAILED;
    if (at >= expires_at_ms)
        return PGW_RETRY_EXPIRED;
    *ret_at_ms = at;
    return PGW_RETRY_AT;
}
