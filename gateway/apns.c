/* APNs sender over h2client pools; see apns.h. */
#include "apns.h"
#include "tls_identity.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jwt.h"
#include "proxy.h"
#include "pushgw.h"
#include "util/clock.h"
#include "util/list.h"
#include "util/retry_after.h"

#define TOKEN_MAX 200
#define CTX_FREELIST_MAX 65536
#define CTX_KEEP_BUF 16384

/* A signing identity: a token key (|jwt|) or certificates (|identity|,
 * one per environment; the development one may be NULL: the production
 * certificate then serves both, as Apple's universal certificates do). */
struct team {
    char id[PGW_APNS_ID_MAX + 1];
    struct pgw_jwt *jwt;
    struct pgw_tls_identity *identity[2];
    struct pgw_h2_pool *pool[2];
};

/* One push in flight; pooled. */
struct apns_ctx {
    struct pgw_list node; /* on pgw_apns.free_ctx while free */
    struct pgw_apns *apns;
    struct team *team;
    enum pgw_apns_env env;
    pgw_apns_cb cb;
    void *arg;
    bool retried;
    uint64_t signed_count; /* of the token used for the last attempt */
    char *buf;
    size_t cap;
    /* offsets into |buf|, (size_t)-1 when absent */
    size_t o_path, o_topic, o_type, o_prio, o_exp, o_collapse, o_id, o_body;
    size_t body_len;
};

struct pgw_apns {
    struct event_base *base;
    struct evdns_base *dns;
    struct pgw_apns_options o;
    char *url[2];
    char *ca_file;
    char *proxy, *proxy_password; /* secrets */
    struct team teams[PGW_APNS_MAX_TEAMS];
    size_t n_teams;
    struct pgw_list free_ctx;
    size_t n_free;
    bool freeing;
};

#define NONE ((size_t)-1)

int pgw_apns_new(struct event_base *base, struct evdns_base *dns,
                 const struct pgw_apns_options *opts,
                 struct pgw_apns **ret_apns)
{
    struct pgw_apns *self;

    if (!base || !dns || !opts || !ret_apns)
        return PGW_ERR_INVAL;
    self = calloc(1, sizeof(*self));
    if (!self)
        return PGW_ERR_NOMEM;
    pgw_list_init(&self->free_ctx);
    self->base = base;
    self->dns = dns;
    self->o = *opts;
    self->url[PGW_APNS_PRODUCTION] = strdup(
        opts->production_url ? opts->production_url : PGW_APNS_PRODUCTION_URL);
    self->url[PGW_APNS_DEVELOPMENT] =
        strdup(opts->development_url ? opts->development_url
                                     : PGW_APNS_DEVELOPMENT_URL);
    self->ca_file = pgw_strdup0(opts->ca_file);
    self->proxy = pgw_strdup0(opts->pool.proxy);
    self->proxy_password = pgw_strdup0(opts->pool.proxy_password);
    if (!self->url[0] || !self->url[1] || (opts->ca_file && !self->ca_file) ||
        (opts->pool.proxy && !self->proxy) ||
        (opts->pool.proxy_password && !self->proxy_password)) {
        pgw_apns_free(self);
        return PGW_ERR_NOMEM;
    }
    self->o.production_url = self->url[0];
    self->o.development_url = self->url[1];
    self->o.ca_file = self->ca_file;
    self->o.pool.proxy = self->proxy;
    self->o.pool.proxy_password = self->proxy_password;
    *ret_apns = self;
    return 0;
}

static struct team *find_team(struct pgw_apns *self, const char *id)
{
    size_t i;

    if (!id)
        return NULL;
    for (i = 0; i < self->n_teams; i++)
        if (strcmp(self->teams[i].id, id) == 0)
            return &self->teams[i];
    return NULL;
}

int pgw_apns_add_team_jwt(struct pgw_apns *self, struct pgw_jwt *jwt)
{
    struct team *t;

    if (!jwt)
        return PGW_ERR_INVAL;
    if (find_team(self, pgw_jwt_team_id(jwt))) {
        pgw_jwt_free(jwt);
        return PGW_ERR_CONFLICT;
    }
    if (self->n_teams >= PGW_APNS_MAX_TEAMS) {
        pgw_jwt_free(jwt);
        return PGW_ERR_BUSY;
    }
    t = &self->teams[self->n_teams++];
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", pgw_jwt_team_id(jwt));
    t->jwt = jwt;
    return 0;
}

int pgw_apns_add_cert(struct pgw_apns *self, const char *id,
                      struct pgw_tls_identity *production,
                      struct pgw_tls_identity *development)
{
    struct team *t;
    int ret = 0;

    if (!id || !id[0] || strlen(id) > PGW_APNS_ID_MAX || !production)
        ret = PGW_ERR_INVAL;
    else if (find_team(self, id))
        ret = PGW_ERR_CONFLICT;
    else if (self->n_teams >= PGW_APNS_MAX_TEAMS)
        ret = PGW_ERR_BUSY;
    if (ret < 0) {
        pgw_tls_identity_free(production);
        pgw_tls_identity_free(development);
        return ret;
    }
    t = &self->teams[self->n_teams++];
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->identity[PGW_APNS_PRODUCTION] = production;
    t->identity[PGW_APNS_DEVELOPMENT] = development;
    return 0;
}

int pgw_apns_add_team(struct pgw_apns *self, const char *team_id,
                      const char *key_id, const char *key_file)
{
    struct pgw_jwt *jwt = NULL;
    int ret;

    if (find_team(self, team_id))
        return PGW_ERR_CONFLICT;
    ret = pgw_jwt_new_from_file(team_id, key_id, key_file, &jwt);
    if (ret != 0)
        return ret;
    return pgw_apns_add_team_jwt(self, jwt);
}

struct pgw_jwt *pgw_apns_team_jwt(struct pgw_apns *self, const char *team_id)
{
    struct team *t = find_team(self, team_id);

    return t ? t->jwt : NULL;
}

static int team_pool(struct pgw_apns *self, struct team *t,
                     enum pgw_apns_env env, struct pgw_h2_pool **ret_pool)
{
    struct pgw_h2_pool_options po;
    char name[128];
    int ret;

    if (t->pool[env]) {
        *ret_pool = t->pool[env];
        return 0;
    }
    snprintf(name, sizeof(name), "apns/%s/%s",
             env == PGW_APNS_PRODUCTION ? "production" : "development", t->id);
    po = self->o.pool;
    po.origin = self->url[env];
    po.ca_file = self->ca_file;
    po.name = name;
    po.identity =
        t->identity[env] ? t->identity[env] : t->identity[PGW_APNS_PRODUCTION];
    ret = pgw_h2_pool_new(self->base, self->dns, &po, &t->pool[env]);
    if (ret != 0)
        return ret;
    *ret_pool = t->pool[env];
    return 0;
}

static struct apns_ctx *ctx_of(struct pgw_list *node)
{
    return node ? pgw_list_entry(node, struct apns_ctx, node) : NULL;
}

static void ctx_release(struct pgw_apns *self, struct apns_ctx *c)
{
    if (self->freeing || self->n_free >= CTX_FREELIST_MAX) {
        free(c->buf);
        free(c);
        return;
    }
    if (c->cap > CTX_KEEP_BUF) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
    c->cb = NULL;
    c->arg = NULL;
    pgw_list_push_front(&self->free_ctx, &c->node);
    self->n_free++;
}

static void on_h2(void *arg, const struct pgw_h2_result *res);

/* Submits the push held by |c| with the team's current token. */
static int ctx_submit(struct apns_ctx *c)
{
    struct pgw_h2_header h[7];
    struct pgw_h2_request req;
    struct pgw_h2_pool *pool = NULL;
    const char *auth;
    size_t n = 0;
    int ret;

    ret = team_pool(c->apns, c->team, c->env, &pool);
    if (ret != 0)
        return ret;
    memset(h, 0, sizeof(h));
    if (c->team->jwt) { /* certificate identities send no token */
        ret = pgw_jwt_authorization(c->team->jwt, &auth);
        if (ret != 0)
            return ret;
        c->signed_count = pgw_jwt_signed_count(c->team->jwt);
        h[n].name = "authorization";
        h[n].value = auth;
        h[n].no_index = 1;
        n++;
    }
#define HDR(nm, off, once)                                                     \
    do {                                                                       \
        h[n].name = (nm);                                                      \
        h[n].value = c->buf + (off);                                           \
        h[n].index_once = (once);                                              \
        n++;                                                                   \
    } while (0)
    /* HPACK as Apple asks: :path and authorization never indexed (h2client),
     * apns-id, apns-expiration and apns-collapse-id indexed once per
     * connection (their values change from push to push), the rest
     * indexed. */
    HDR("apns-topic", c->o_topic, 0);
    if (c->o_type != NONE)
        HDR("apns-push-type", c->o_type, 0);
    if (c->o_prio != NONE)
        HDR("apns-priority", c->o_prio, 0);
    if (c->o_exp != NONE)
        HDR("apns-expiration", c->o_exp, 1);
    if (c->o_collapse != NONE)
        HDR("apns-collapse-id", c->o_collapse, 1);
    if (c->o_id != NONE)
        HDR("apns-id", c->o_id, 1);
#undef HDR
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path = c->buf + c->o_path;
    req.headers = h;
    req.n_headers = n;
    req.body = c->buf + c->o_body;
    req.body_len = c->body_len;
    return pgw_h2_pool_submit(pool, &req, on_h2, c);
}

static void set_reason(struct pgw_outcome *o, const char *r)
{
    snprintf(o->reason, sizeof(o->reason), "%s", r);
}

const char *pgw_apns_topic_suffix(const char *push_type)
{
    static const struct {
        const char *type, *suffix;
    } map[] = {
        {"voip", ".voip"},
        {"complication", ".complication"},
        {"fileprovider", ".pushkit.fileprovider"},
        {"location", ".location-query"},
        {"liveactivity", ".push-type.liveactivity"},
        {"pushtotalk", ".voip-ptt"},
    };

    if (!push_type)
        return NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(push_type, map[i].type) == 0)
            return map[i].suffix;
    return NULL;
}

bool pgw_apns_topic_has_suffix(const char *topic, const char *suffix)
{
    size_t t = strlen(topic), n = strlen(suffix);

    return t >= n && memcmp(topic + t - n, suffix, n) == 0;
}

void pgw_apns_classify(int status, const char *body, size_t body_len,
                       const char *apns_id, int64_t retry_after_ms,
                       struct pgw_outcome *ret_outcome)
{
    struct pgw_outcome o;
    cJSON *json = NULL;

    memset(&o, 0, sizeof(o));
    o.status = status;
    if (apns_id)
        pgw_copy_str(o.provider_id, sizeof(o.provider_id), apns_id);
    if (status == 200) {
        o.kind = PGW_OUTCOME_DELIVERED;
        *ret_outcome = o;
        return;
    }
    if (body && body_len > 0)
        json = cJSON_ParseWithLength(body, body_len);
    if (json) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(json, "reason");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(json, "timestamp");

        if (cJSON_IsString(r) && r->valuestring)
            set_reason(&o, r->valuestring);
        if (cJSON_IsNumber(ts) && ts->valuedouble > 0 && ts->valuedouble < 1e16)
            o.invalid_since_ms = (int64_t)ts->valuedouble;
        cJSON_Delete(json);
    }
    if (o.reason[0] == '\0')
        snprintf(o.reason, sizeof(o.reason), "http_%d", status);
    if (retry_after_ms > 0)
        o.retry_after_ms = retry_after_ms;
    if (status == 410) {
        o.kind = PGW_OUTCOME_INVALIDATE;
    } else if (status == 400 &&
               (strcmp(o.reason, "BadDeviceToken") == 0 ||
                strcmp(o.reason, "DeviceTokenNotForTopic") == 0)) {
        o.kind = PGW_OUTCOME_INVALIDATE;
    } else if (status == 429 || status >= 500 ||
               (status == 403 &&
                strcmp(o.reason, "ExpiredProviderToken") == 0)) {
        o.kind = PGW_OUTCOME_RETRY;
    } else {
        o.kind = PGW_OUTCOME_FINAL;
    }
    if (o.kind != PGW_OUTCOME_INVALIDATE)
        o.invalid_since_ms = 0;
    *ret_outcome = o;
}

/* Fires once per h2 attempt; may resubmit (ExpiredProviderToken). */
static void on_h2(void *arg, const struct pgw_h2_result *res)
{
    struct apns_ctx *c = arg;
    struct pgw_apns *self = c->apns;
    struct pgw_outcome o;

    if (res->kind == PGW_H2_RESPONSE) {
        const char *id = pgw_h2_result_header(res, "apns-id");
        const char *ra = pgw_h2_result_header(res, "retry-after");

        if (!id && c->o_id != NONE)
            id = c->buf + c->o_id;
        pgw_apns_classify(
            res->status, res->body, res->body_len, id,
            ra ? pgw_retry_after_parse(ra, pgw_clock_wall_ms()) : -1, &o);
        if (res->status == 403 &&
            strcmp(o.reason, "ExpiredProviderToken") == 0 && !c->retried &&
            !self->freeing && c->team->jwt) {
            struct pgw_jwt *jwt = c->team->jwt;
            const char *auth;
            int changed = 0;
            bool resend = false;

            if (pgw_jwt_signed_count(jwt) != c->signed_count) {
                resend = true; /* already refreshed by another push */
            } else if (pgw_jwt_refresh(jwt, NULL, &auth, &changed) == 0 &&
                       changed) {
                resend = true;
            } else {
                /* the key's token is under 20 minutes old: wait */
                int64_t wait = pgw_jwt_issued_at(jwt) + PGW_JWT_MIN_REFRESH_S -
                               pgw_clock_wall_ms() / 1000;

                if (wait > 0 && wait <= PGW_JWT_MIN_REFRESH_S)
                    o.retry_after_ms = wait * 1000;
            }
            if (resend) {
                c->retried = true;
                if (ctx_submit(c) == 0)
                    return;
            }
        } else if (res->status == 503 && strcmp(o.reason, "Shutdown") == 0 &&
                   !c->retried && !self->freeing) {
            /* That server is going away, not APNs: send again at once (the
             * pool moves on when the connection closes). Other 5xx answers
             * wait for the dispatcher's backoff. */
            c->retried = true;
            if (ctx_submit(c) == 0)
                return;
        }
    } else {
        memset(&o, 0, sizeof(o));
        o.kind = PGW_OUTCOME_RETRY;
        set_reason(&o, pgw_h2_result_kind_name(res->kind));
    }
    if (c->cb)
        c->cb(c->arg, &o);
    ctx_release(self, c);
}

static bool is_hex_token(const char *s)
{
    size_t n;

    for (n = 0; s[n]; n++) {
        char ch = s[n];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
              (ch >= 'A' && ch <= 'F')))
            return false;
    }
    return n > 0 && n <= TOKEN_MAX;
}

int pgw_apns_send(struct pgw_apns *self, const struct pgw_apns_push *push,
                  pgw_apns_cb cb, void *arg)
{
    struct apns_ctx *c;
    struct team *t;
    char prio[24], exp[24];
    size_t need, off = 0, l_tok, l_topic, l_type = 0, l_col = 0, l_id = 0;
    size_t l_prio = 0, l_exp = 0, l_suffix = 0;
    const char *suffix;
    int ret;

    if (!self || !push || !cb || self->freeing)
        return PGW_ERR_INVAL;
    if (push->env != PGW_APNS_PRODUCTION && push->env != PGW_APNS_DEVELOPMENT)
        return PGW_ERR_INVAL;
    if (!push->device_token || !is_hex_token(push->device_token) ||
        !push->topic || !push->topic[0] || (push->body_len && !push->body))
        return PGW_ERR_INVAL;
    t = find_team(self, push->team_id);
    if (!t)
        return PGW_ERR_NOTFOUND;
    l_tok = strlen(push->device_token);
    l_topic = strlen(push->topic);
    suffix = pgw_apns_topic_suffix(push->push_type);
    if (suffix && !pgw_apns_topic_has_suffix(push->topic, suffix))
        l_suffix = strlen(suffix);
    if (push->push_type && push->push_type[0])
        l_type = strlen(push->push_type);
    if (push->collapse_id && push->collapse_id[0])
        l_col = strlen(push->collapse_id);
    if (push->apns_id && push->apns_id[0])
        l_id = strlen(push->apns_id);
    if (push->priority)
        l_prio = pgw_fmt_i64(prio, push->priority);
    if (push->expiration >= 0)
        l_exp = pgw_fmt_i64(exp, push->expiration);
    need = 10 + l_tok + 1 + l_topic + l_suffix + 1 + l_type + 1 + l_prio + 1 +
           l_exp + 1 + l_col + 1 + l_id + 1 + push->body_len + 1;

    c = ctx_of(pgw_list_pop_front(&self->free_ctx));
    if (c) {
        self->n_free--;
        if (!pgw_list_empty(&self->free_ctx))
            __builtin_prefetch(ctx_of(self->free_ctx.next), 1);
    } else {
        c = calloc(1, sizeof(*c));
        if (!c)
            return PGW_ERR_NOMEM;
        pgw_list_init(&c->node);
    }
    if (need > c->cap) {
        char *p = realloc(c->buf, need);

        if (!p) {
            ctx_release(self, c);
            return PGW_ERR_NOMEM;
        }
        c->buf = p;
        c->cap = need;
    }
    c->apns = self;
    c->team = t;
    c->env = push->env;
    c->cb = cb;
    c->arg = arg;
    c->retried = false;
#define PUT(field, src, len)                                                   \
    do {                                                                       \
        (field) = off;                                                         \
        memcpy(c->buf + off, (src), (len));                                    \
        off += (len);                                                          \
        c->buf[off++] = '\0';                                                  \
    } while (0)
    c->o_path = off;
    memcpy(c->buf + off, "/3/device/", 10);
    off += 10;
    memcpy(c->buf + off, push->device_token, l_tok);
    off += l_tok;
    c->buf[off++] = '\0';
    c->o_topic = off;
    memcpy(c->buf + off, push->topic, l_topic);
    off += l_topic;
    if (l_suffix) { /* memcpy(NULL, 0) is undefined */
        memcpy(c->buf + off, suffix, l_suffix);
        off += l_suffix;
    }
    c->buf[off++] = '\0';
    c->o_type = c->o_prio = c->o_exp = c->o_collapse = c->o_id = NONE;
    if (l_type)
        PUT(c->o_type, push->push_type, l_type);
    if (l_prio)
        PUT(c->o_prio, prio, l_prio);
    if (l_exp)
        PUT(c->o_exp, exp, l_exp);
    if (l_col)
        PUT(c->o_collapse, push->collapse_id, l_col);
    if (l_id)
        PUT(c->o_id, push->apns_id, l_id);
    c->o_body = off;
    if (push->body_len)
        memcpy(c->buf + off, push->body, push->body_len);
    c->body_len = push->body_len;
#undef PUT
    ret = ctx_submit(c);
    if (ret != 0) {
        ctx_release(self, c);
        return ret;
    }
    return 0;
}

void pgw_apns_stats(const struct pgw_apns *self,
                    struct pgw_h2_pool_stats *ret_stats)
{
    struct pgw_h2_pool_stats sum, s;
    size_t i, e;

    memset(&sum, 0, sizeof(sum));
    for (i = 0; i < self->n_teams; i++) {
        for (e = 0; e < 2; e++) {
            if (!self->teams[i].pool[e])
                continue;
            pgw_h2_pool_stats(self->teams[i].pool[e], &s);
            sum.conns_connecting += s.conns_connecting;
            sum.conns_ready += s.conns_ready;
            sum.conns_draining += s.conns_draining;
            sum.slots_backoff += s.slots_backoff;
            sum.in_flight += s.in_flight;
            sum.pending += s.pending;
            sum.connects_ok += s.connects_ok;
            sum.connect_failures += s.connect_failures;
            sum.goaways += s.goaways;
            sum.dead_connections += s.dead_connections;
            sum.conns_lost += s.conns_lost;
            sum.requests_retried += s.requests_retried;
            sum.responses += s.responses;
            sum.timeouts += s.timeouts;
            sum.timeouts_unsent += s.timeouts_unsent;
            sum.capacity += s.capacity;
            sum.conns_added += s.conns_added;
            sum.conns_retired += s.conns_retired;
            if (s.min_rtt_us &&
                (!sum.min_rtt_us || s.min_rtt_us < sum.min_rtt_us))
                sum.min_rtt_us = s.min_rtt_us;
        }
    }
    *ret_stats = sum;
}

void pgw_apns_free(struct pgw_apns *self)
{
    struct apns_ctx *c;
    size_t i;

    if (!self)
        return;
    self->freeing = true;
    for (i = 0; i < self->n_teams; i++) {
        pgw_h2_pool_free(self->teams[i].pool[0]);
        pgw_h2_pool_free(self->teams[i].pool[1]);
        pgw_jwt_free(self->teams[i].jwt);
        pgw_tls_identity_free(self->teams[i].identity[0]);
        pgw_tls_identity_free(self->teams[i].identity[1]);
    }
    while ((c = ctx_of(pgw_list_pop_front(&self->free_ctx))) != NULL) {
        free(c->buf);
        free(c);
    }
    free(self->url[0]);
    free(self->url[1]);
    free(self->ca_file);
    pgw_proxy_free_secret(self->proxy);
    pgw_proxy_free_secret(self->proxy_password);
    free(self);
}
