/*
 * FCM sends. A send is a small state machine: waiting for an access token
 * (queued on the account's token source), on an h2 stream, or holding an
 * outcome to deliver from a zero-delay timer (when it fails before
 * anything asynchronous started, so the callback is never synchronous).
 * Every send is on one list so pgw_fcm_free() can complete them all.
 */
#include "fcm.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdbool.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "proxy.h"
#include "pushgw.h"
#include "util/clock.h"
#include "util/list.h"
#include "util/retry_after.h"

#define FCM_ERROR_TYPE "type.googleapis.com/google.firebase.fcm.v1.FcmError"

struct pgw_fcm_account {
    struct pgw_fcm *fcm;
    char *sa_path;
    struct pgw_oauth_sa *sa;
    struct pgw_oauth *oauth;
    char *path; /* ":path" of messages:send */
};

struct send {
    struct pgw_fcm *fcm;
    struct pgw_fcm_account *acc;
    char *body;
    size_t body_len;
    char masked[32];
    char *auth; /* "Bearer …" of the current attempt */
    int renewed;
    struct event *defer;
    struct pgw_outcome deferred;
    pgw_fcm_cb cb;
    void *arg;
    struct pgw_list node; /* on pgw_fcm.sends */
};

struct pgw_fcm {
    struct event_base *base;
    struct pgw_curlmulti *cm;
    struct pgw_h2_pool *pool;
    char *prefix; /* path prefix from [fcm] url, "" or "/x" */
    char *token_url;
    char *ca_file;
    char *proxy, *proxy_password; /* secrets */
    unsigned token_timeout_ms;
    pgw_oauth_clock_fn clock;
    void *clock_arg;
    struct pgw_fcm_account **accounts;
    size_t n_accounts;
    struct pgw_list sends; /* every send whose callback has not run */
    size_t n_sends;
    size_t max_sends;
    int closing;
};

/* ---- pure mapping ------------------------------------------------------ */

/* Google's error object: status, message, and the FcmError errorCode. */
struct gerror {
    char code[PGW_OUTCOME_REASON_MAX];   /* details[].errorCode */
    char status[PGW_OUTCOME_REASON_MAX]; /* error.status */
};

/* Reasons go into logs and metrics labels: keep [A-Za-z0-9_] only. */
static void copy_reason(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    for (; src && *src && n + 1 < size; src++) {
        unsigned char c = (unsigned char)*src;
        dst[n++] = (isalnum(c) || c == '_') ? (char)c : '_';
    }
    dst[n] = '\0';
}

static void parse_error(const char *body, size_t len, struct gerror *g,
                        char *msg, size_t msg_size)
{
    cJSON *root = NULL;
    const cJSON *err, *it, *d;

    memset(g, 0, sizeof(*g));
    if (msg && msg_size)
        msg[0] = '\0';
    if (!body || !len)
        return;
    root = cJSON_ParseWithLength(body, len);
    if (!root)
        return;
    err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!cJSON_IsObject(err))
        goto out;
    it = cJSON_GetObjectItemCaseSensitive(err, "status");
    if (cJSON_IsString(it))
        copy_reason(g->status, sizeof(g->status), it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(err, "message");
    if (cJSON_IsString(it) && msg)
        pgw_copy_str(msg, msg_size, it->valuestring);
    it = cJSON_GetObjectItemCaseSensitive(err, "details");
    if (!cJSON_IsArray(it))
        goto out;
    cJSON_ArrayForEach(d, it)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(d, "@type");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(d, "errorCode");
        if (cJSON_IsString(type) &&
            strcmp(type->valuestring, FCM_ERROR_TYPE) == 0 &&
            cJSON_IsString(code)) {
            copy_reason(g->code, sizeof(g->code), code->valuestring);
            break;
        }
    }
out:
    cJSON_Delete(root);
}

static int is_third_party_auth(const struct gerror *g)
{
    return strcmp(g->code, "THIRD_PARTY_AUTH_ERROR") == 0 ||
           strcmp(g->code, "APNS_AUTH_ERROR") == 0;
}

/* Whether an INVALID_ARGUMENT answer says the registration token is not a
 * valid FCM token ("The registration token is not a valid FCM
 * registration token"), as opposed to a bad message. */
static bool token_is_invalid(const char *body, size_t body_len)
{
    char msg[256];
    struct gerror g;

    parse_error(body, body_len, &g, msg, sizeof(msg));
    for (char *c = msg; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return strstr(msg, "registration token") != NULL &&
           strstr(msg, "not a valid") != NULL;
}

int pgw_fcm_is_token_rejected(int status, const char *body, size_t body_len)
{
    struct gerror g;

    if (status != 401)
        return 0;
    parse_error(body, body_len, &g, NULL, 0);
    return !is_third_party_auth(&g);
}

void pgw_fcm_classify(int status, const char *body, size_t body_len,
                      int64_t retry_after_ms, struct pgw_outcome *ret_outcome,
                      char *ret_message, size_t message_size)
{
    struct pgw_outcome o;
    struct gerror g;

    memset(&o, 0, sizeof(o));
    o.status = status;
    if (status == 200) {
        cJSON *root = body ? cJSON_ParseWithLength(body, body_len) : NULL;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");

        o.kind = PGW_OUTCOME_DELIVERED;
        if (cJSON_IsString(name))
            pgw_copy_str(o.provider_id, sizeof(o.provider_id),
                         name->valuestring);
        cJSON_Delete(root);
        if (ret_message && message_size)
            ret_message[0] = '\0';
        *ret_outcome = o;
        return;
    }
    parse_error(body, body_len, &g, ret_message, message_size);
    if (g.code[0])
        pgw_copy_str(o.reason, sizeof(o.reason), g.code);
    else if (g.status[0])
        pgw_copy_str(o.reason, sizeof(o.reason), g.status);
    else
        snprintf(o.reason, sizeof(o.reason), "HTTP_%d", status);

    if (strcmp(g.code, "UNREGISTERED") == 0 ||
        strcmp(g.code, "SENDER_ID_MISMATCH") == 0) {
        o.kind = PGW_OUTCOME_INVALIDATE;
    } else if (status == 400 && strcmp(g.code, "INVALID_ARGUMENT") == 0 &&
               token_is_invalid(body, body_len)) {
        /* Google's answer to a token that is no FCM token at all; any
         * other INVALID_ARGUMENT is about the message, not the device. */
        o.kind = PGW_OUTCOME_INVALIDATE;
        pgw_copy_str(o.reason, sizeof(o.reason), "INVALID_REGISTRATION");
    } else if (strcmp(g.code, "QUOTA_EXCEEDED") == 0 || status == 429) {
        o.kind = PGW_OUTCOME_RETRY;
        o.retry_after_ms = retry_after_ms > PGW_FCM_QUOTA_MIN_RETRY_MS
                               ? retry_after_ms
                               : PGW_FCM_QUOTA_MIN_RETRY_MS;
    } else if (strcmp(g.code, "UNAVAILABLE") == 0 ||
               strcmp(g.code, "INTERNAL") == 0 ||
               (status >= 500 && status <= 599)) {
        o.kind = PGW_OUTCOME_RETRY;
        o.retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
    } else if (status == 401 && !is_third_party_auth(&g)) {
        o.kind = PGW_OUTCOME_RETRY;
        o.retry_after_ms = retry_after_ms > 0 ? retry_after_ms : 0;
    } else {
        o.kind = PGW_OUTCOME_FINAL;
    }
    *ret_outcome = o;
}

void pgw_fcm_classify_transport(enum pgw_h2_result_kind kind,
                                struct pgw_outcome *ret_outcome)
{
    struct pgw_outcome o;
    const char *reason;

    memset(&o, 0, sizeof(o));
    o.kind = PGW_OUTCOME_RETRY;
    switch (kind) {
    case PGW_H2_REFUSED:
        reason = "refused";
        break;
    case PGW_H2_TIMEOUT:
        reason = "timeout";
        break;
    case PGW_H2_CONN_LOST:
        reason = "connection_lost";
        break;
    case PGW_H2_BUSY:
        reason = "busy";
        break;
    case PGW_H2_CONNECT_FAILED:
        reason = "connect_failed";
        break;
    case PGW_H2_CANCELLED:
        reason = "cancelled";
        break;
    default:
        reason = "connection_lost";
        break;
    }
    pgw_copy_str(o.reason, sizeof(o.reason), reason);
    *ret_outcome = o;
}

/* ---- sends ------------------------------------------------------------- */

static int64_t now_ms(const struct pgw_fcm *self)
{
    return self->clock ? self->clock(self->clock_arg) : pgw_clock_wall_ms();
}

static void send_free(struct send *s)
{
    if (!s)
        return;
    if (s->defer)
        event_free(s->defer);
    free(s->body);
    if (s->auth) {
        OPENSSL_cleanse(s->auth, strlen(s->auth));
        free(s->auth);
    }
    free(s);
}

static void unlink_send(struct pgw_fcm *self, struct send *s)
{
    pgw_list_remove(&s->node);
    self->n_sends--;
}

/* Google's message, at debug level: the dispatcher logs the one line per
 * final outcome (with app and installation), so this adds detail only. */
static void log_outcome(const struct send *s, const struct pgw_outcome *o,
                        const char *message)
{
    if (o->kind == PGW_OUTCOME_FINAL)
        pgw_log_debugf(PGW_FIELDS(PGW_LF_STR("provider", "fcm"),
                                  PGW_LF_STR("project", s->acc->sa->project_id),
                                  PGW_LF_STR("token", s->masked),
                                  PGW_LF_INT("status", o->status),
                                  PGW_LF_STR("reason", o->reason)),
                       "fcm refused a push for good: %s",
                       message[0] ? message : o->reason);
    else if (o->kind == PGW_OUTCOME_INVALIDATE)
        pgw_log_debugf(PGW_FIELDS(PGW_LF_STR("provider", "fcm"),
                                  PGW_LF_STR("project", s->acc->sa->project_id),
                                  PGW_LF_STR("token", s->masked),
                                  PGW_LF_STR("reason", o->reason)),
                       "fcm token is no longer valid");
}

/* Delivers |o| to the owner and frees |s|. Only from loop callbacks. */
static void finish(struct send *s, const struct pgw_outcome *o)
{
    struct pgw_fcm *self = s->fcm;

    unlink_send(self, s);
    s->cb(s->arg, o);
    send_free(s);
}

static void finish_reason(struct send *s, const char *reason)
{
    struct pgw_outcome o;

    memset(&o, 0, sizeof(o));
    o.kind = PGW_OUTCOME_RETRY;
    pgw_copy_str(o.reason, sizeof(o.reason), reason);
    finish(s, &o);
}

/* Fires (zero delay) to deliver an outcome decided inside pgw_fcm_send(). */
static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct send *s = arg;
    struct pgw_outcome o = s->deferred;

    (void)fd;
    (void)what;
    finish(s, &o);
}

static void on_h2(void *arg, const struct pgw_h2_result *res);
static void on_token(int err, const char *token, void *arg);

/* Puts |s| on a stream with |token|. Returns 0 or an h2 submit error. */
static int submit(struct send *s, const char *token)
{
    struct pgw_h2_header hdrs[2];
    struct pgw_h2_request req;
    size_t n = strlen(token) + 8;
    char *auth = malloc(n);

    if (!auth)
        return PGW_ERR_NOMEM;
    snprintf(auth, n, "Bearer %s", token);
    if (s->auth) {
        OPENSSL_cleanse(s->auth, strlen(s->auth));
        free(s->auth);
    }
    s->auth = auth;
    memset(hdrs, 0, sizeof(hdrs));
    hdrs[0].name = "authorization";
    hdrs[0].value = s->auth;
    hdrs[0].no_index = 1;
    hdrs[1].name = "content-type";
    hdrs[1].value = "application/json; charset=UTF-8";
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.path = s->acc->path;
    req.headers = hdrs;
    req.n_headers = PGW_ARRAY_SIZE(hdrs);
    req.body = s->body;
    req.body_len = s->body_len;
    return pgw_h2_pool_submit(s->fcm->pool, &req, on_h2, s);
}

/*
 * Gets |s| going from a loop callback: on a stream when a token is cached,
 * else queued for one. Finishes |s| itself when neither works.
 */
static void proceed(struct send *s)
{
    const char *tok;
    int ret;

    if (s->fcm->closing) {
        finish_reason(s, "cancelled");
        return;
    }
    tok = pgw_oauth_token(s->acc->oauth);
    if (tok) {
        ret = submit(s, tok);
        if (ret)
            finish_reason(s, ret == PGW_ERR_CLOSED ? "cancelled" : "busy");
        return;
    }
    ret = pgw_oauth_wait(s->acc->oauth, on_token, s);
    if (ret)
        finish_reason(s, "auth_unavailable");
}

/* Fires when the token request |s| waited for ends (or the source is
 * freed). May finish (and free) |s|. */
static void on_token(int err, const char *token, void *arg)
{
    struct send *s = arg;
    int ret;

    if (err || s->fcm->closing) {
        finish_reason(s, err == PGW_ERR_CLOSED || s->fcm->closing
                             ? "cancelled"
                             : "auth_unavailable");
        return;
    }
    ret = submit(s, token);
    if (ret)
        finish_reason(s, ret == PGW_ERR_CLOSED ? "cancelled" : "busy");
}

/* Fires once per stream attempt of |s|; finishes or retries it. */
static void on_h2(void *arg, const struct pgw_h2_result *res)
{
    struct send *s = arg;
    struct pgw_outcome o;
    char message[256];
    const char *ra;

    if (res->kind != PGW_H2_RESPONSE) {
        pgw_fcm_classify_transport(res->kind, &o);
        pgw_log_debugf(PGW_FIELDS(PGW_LF_STR("provider", "fcm"),
                                  PGW_LF_STR("token", s->masked),
                                  PGW_LF_STR("reason", o.reason)),
                       "fcm send failed: %s", res->error ? res->error : "");
        finish(s, &o);
        return;
    }
    if (!s->renewed && !s->fcm->closing &&
        pgw_fcm_is_token_rejected(res->status, res->body, res->body_len)) {
        /* The access token expired or was revoked: renew, retry once. */
        s->renewed = 1;
        pgw_oauth_invalidate(s->acc->oauth, s->auth + strlen("Bearer "));
        pgw_log_debugf(
            PGW_FIELDS(PGW_LF_STR("provider", "fcm"),
                       PGW_LF_STR("project", s->acc->sa->project_id)),
            "fcm rejected the access token, renewing it");
        proceed(s);
        return;
    }
    ra = pgw_h2_result_header(res, "retry-after");
    pgw_fcm_classify(res->status, res->body, res->body_len,
                     ra ? pgw_retry_after_parse(ra, now_ms(s->fcm)) : -1, &o,
                     message, sizeof(message));
    log_outcome(s, &o, message);
    finish(s, &o);
}

int pgw_fcm_send(struct pgw_fcm *self, const struct pgw_fcm_request *req,
                 pgw_fcm_cb cb, void *arg)
{
    struct send *s = NULL;
    const char *tok;
    int ret;

    if (!self || !req || !req->account || !req->body || !req->body_len || !cb)
        return PGW_ERR_INVAL;
    if (self->closing)
        return PGW_ERR_CLOSED;
    if (req->body_len > PGW_FCM_SEND_MAX_BODY)
        return PGW_ERR_TOO_LARGE;
    if (self->n_sends >= self->max_sends)
        return PGW_ERR_BUSY;
    ret = PGW_ERR_NOMEM;
    s = calloc(1, sizeof(*s));
    if (!s)
        goto out;
    pgw_list_init(&s->node);
    s->fcm = self;
    s->acc = req->account;
    s->cb = cb;
    s->arg = arg;
    s->body = malloc(req->body_len);
    if (!s->body)
        goto out;
    memcpy(s->body, req->body, req->body_len);
    s->body_len = req->body_len;
    pgw_log_mask_token(s->masked, sizeof(s->masked),
                       req->device_token ? req->device_token : "");

    tok = pgw_oauth_token(s->acc->oauth);
    if (tok) {
        ret = submit(s, tok);
        if (ret)
            goto out;
    } else if (pgw_oauth_wait(s->acc->oauth, on_token, s) != 0) {
        /* Token endpoint backing off: a RETRY outcome, from the loop. */
        struct timeval tv = {0, 0};

        ret = PGW_ERR_NOMEM;
        s->defer = evtimer_new(self->base, on_deferred, s);
        if (!s->defer || evtimer_add(s->defer, &tv) != 0)
            goto out;
        s->deferred.kind = PGW_OUTCOME_RETRY;
        pgw_copy_str(s->deferred.reason, sizeof(s->deferred.reason),
                     "auth_unavailable");
    }
    pgw_list_push_front(&self->sends, &s->node);
    self->n_sends++;
    s = NULL;
    ret = 0;
out:
    send_free(s);
    return ret;
}

void pgw_fcm_stats(const struct pgw_fcm *self,
                   struct pgw_h2_pool_stats *ret_stats)
{
    pgw_h2_pool_stats(self->pool, ret_stats);
}

size_t pgw_fcm_inflight(const struct pgw_fcm *self)
{
    return self ? self->n_sends : 0;
}

/* ---- setup ------------------------------------------------------------ */

/* Splits "https://host[:port][/prefix]" into the origin and the prefix. */
static int split_url(const char *url, char **ret_origin, char **ret_prefix)
{
    const char *host, *slash;
    char *origin, *prefix;
    size_t plen;

    if (strncmp(url, "https://", 8) != 0)
        return PGW_ERR_INVAL;
    host = url + 8;
    slash = strchr(host, '/');
    if (!slash)
        slash = host + strlen(host);
    if (slash == host)
        return PGW_ERR_INVAL;
    origin = strndup(url, (size_t)(slash - url));
    plen = strlen(slash);
    while (plen > 0 && slash[plen - 1] == '/')
        plen--;
    prefix = strndup(slash, plen);
    if (!origin || !prefix) {
        free(origin);
        free(prefix);
        return PGW_ERR_NOMEM;
    }
    *ret_origin = origin;
    *ret_prefix = prefix;
    return 0;
}

int pgw_fcm_new(struct event_base *base, struct evdns_base *dns,
                struct pgw_curlmulti *cm, const struct pgw_fcm_options *opts,
                struct pgw_fcm **ret_fcm)
{
    struct pgw_fcm *f = NULL;
    struct pgw_h2_pool_options po;
    char *origin = NULL;
    int ret;

    if (!base || !dns || !cm || !opts || !opts->url || !opts->token_url ||
        !opts->token_url[0] || !ret_fcm)
        return PGW_ERR_INVAL;
    ret = PGW_ERR_NOMEM;
    f = calloc(1, sizeof(*f));
    if (!f)
        goto out;
    pgw_list_init(&f->sends);
    f->base = base;
    f->cm = cm;
    f->clock = opts->clock;
    f->clock_arg = opts->clock_arg;
    f->token_timeout_ms = opts->token_timeout_ms;
    f->max_sends =
        opts->max_inflight ? opts->max_inflight : PGW_H2_DEFAULT_MAX_PENDING;
    f->token_url = strdup(opts->token_url);
    if (!f->token_url)
        goto out;
    if (opts->ca_file && opts->ca_file[0]) {
        f->ca_file = strdup(opts->ca_file);
        if (!f->ca_file)
            goto out;
    }
    f->proxy = pgw_strdup0(opts->pool.proxy);
    f->proxy_password = pgw_strdup0(opts->pool.proxy_password);
    if ((opts->pool.proxy && !f->proxy) ||
        (opts->pool.proxy_password && !f->proxy_password))
        goto out;
    ret = split_url(opts->url, &origin, &f->prefix);
    if (ret)
        goto out;
    po = opts->pool;
    po.origin = origin;
    po.ca_file = f->ca_file;
    po.name = "fcm";
    po.max_pending = f->max_sends;
    po.proxy = f->proxy;
    po.proxy_password = f->proxy_password;
    ret = pgw_h2_pool_new(base, dns, &po, &f->pool);
    if (ret)
        goto out;
    *ret_fcm = f;
    f = NULL;
    ret = 0;
out:
    free(origin);
    pgw_fcm_free(f);
    return ret;
}

static void account_free(struct pgw_fcm_account *a)
{
    if (!a)
        return;
    pgw_oauth_free(a->oauth);
    pgw_oauth_sa_free(a->sa);
    free(a->sa_path);
    free(a->path);
    free(a);
}

void pgw_fcm_free(struct pgw_fcm *self)
{
    struct pgw_list *node;

    if (!self)
        return;
    self->closing = 1;
    /* Waiting sends are woken with PGW_ERR_CLOSED and finish. */
    for (size_t i = 0; i < self->n_accounts; i++) {
        pgw_oauth_free(self->accounts[i]->oauth);
        self->accounts[i]->oauth = NULL;
    }
    /* Sends on streams get PGW_H2_CANCELLED and finish. */
    pgw_h2_pool_free(self->pool);
    self->pool = NULL;
    /* What is left holds a deferred outcome. */
    while ((node = pgw_list_first(&self->sends))) {
        struct send *s = pgw_list_entry(node, struct send, node);
        struct pgw_outcome o = s->deferred;
        if (!s->defer)
            pgw_fcm_classify_transport(PGW_H2_CANCELLED, &o);
        finish(s, &o);
    }
    for (size_t i = 0; i < self->n_accounts; i++)
        account_free(self->accounts[i]);
    free(self->accounts);
    free(self->prefix);
    free(self->token_url);
    free(self->ca_file);
    pgw_proxy_free_secret(self->proxy);
    pgw_proxy_free_secret(self->proxy_password);
    free(self);
}

int pgw_fcm_account(struct pgw_fcm *self, const char *sa_path,
                    struct pgw_diag *diag, struct pgw_fcm_account **ret_account)
{
    struct pgw_fcm_account *a = NULL, **grown;
    struct pgw_oauth_options oo;
    size_t n;
    int ret;

    if (!self || !sa_path || !ret_account)
        return PGW_ERR_INVAL;
    for (size_t i = 0; i < self->n_accounts; i++) {
        if (strcmp(self->accounts[i]->sa_path, sa_path) == 0) {
            *ret_account = self->accounts[i];
            return 0;
        }
    }
    if (self->n_accounts >= PGW_FCM_MAX_ACCOUNTS)
        return PGW_ERR_BUSY;
    ret = PGW_ERR_NOMEM;
    a = calloc(1, sizeof(*a));
    if (!a)
        goto out;
    a->fcm = self;
    a->sa_path = strdup(sa_path);
    if (!a->sa_path)
        goto out;
    ret = pgw_oauth_sa_load(sa_path, diag, &a->sa);
    if (ret)
        goto out;
    /* It goes into :path. */
    if (strspn(a->sa->project_id, "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:") !=
        strlen(a->sa->project_id)) {
        if (diag)
            pgw_diag_add(diag,
                         "service account '%s': field 'project_id' has "
                         "characters a project id cannot have",
                         sa_path);
        ret = PGW_ERR_INVAL;
        goto out;
    }
    ret = PGW_ERR_NOMEM;
    n = strlen(self->prefix) + strlen(a->sa->project_id) + 64;
    a->path = malloc(n);
    if (!a->path)
        goto out;
    snprintf(a->path, n, "%s/v1/projects/%s/messages:send", self->prefix,
             a->sa->project_id);
    memset(&oo, 0, sizeof(oo));
    oo.token_url = self->token_url;
    oo.ca_file = self->ca_file;
    oo.proxy = self->proxy;
    oo.proxy_password = self->proxy_password;
    oo.timeout_ms = self->token_timeout_ms;
    oo.clock = self->clock;
    oo.clock_arg = self->clock_arg;
    ret = pgw_oauth_new(self->cm, a->sa, &oo, &a->oauth);
    if (ret)
        goto out;
    ret = PGW_ERR_NOMEM;
    grown = realloc(self->accounts,
                    (self->n_accounts + 1) * sizeof(*self->accounts));
    if (!grown)
        goto out;
    self->accounts = grown;
    self->accounts[self->n_accounts++] = a;
    *ret_account = a;
    a = NULL;
    ret = 0;
out:
    account_free(a);
    return ret;
}

const char *pgw_fcm_account_project(const struct pgw_fcm_account *account)
{
    return account ? account->sa->project_id : NULL;
}

struct pgw_oauth *pgw_fcm_account_oauth(struct pgw_fcm_account *account)
{
    return account ? account->oauth : NULL;
}
