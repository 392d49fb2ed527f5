/*
 * The webhook's intake thread and routes; see webhook.h.
 *
 * The intake thread has an event_base of its own: reading and parsing
 * requests, checking keys, parsing and validating events and writing the
 * answers (evhttp, cJSON, HMAC, the sockets) was two fifths of the loop
 * thread's time per chat event, and the loop thread was the critical path
 * (docs/BENCHMARKS.md). It hands parsed events to the inbox
 * (pgw_inbox_submit()), which answers through the listener's mailbox;
 * results it counts go to the inbox too (pgw_inbox_count()). The loop
 * thread asks things of the intake thread with control bits on |ctl|
 * (limits, stop, quit). The config and the hook-key digests are swapped
 * under cfg_mu, which the intake thread holds while it works on a
 * request.
 */
#include "webhook.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "config.h"
#include "event.h"
#include "inbox.h"
#include "listener.h"
#include "log.h"
#include "pushgw.h"
#include "util/clock.h"
#include "util/json.h"
#include "xqueue.h"

enum kind {
    K_SINGLE, /* app in the path */
    K_ALIAS,  /* app in X-LC-Id */
    K_BATCH,
    K_COUNT,
};

/* Control bits from the loop thread. */
enum {
    CTL_LIMITS = 1, /* apply the config's limits */
    CTL_STOP = 2,   /* close the listener, then set stop_acked */
    CTL_QUIT = 4,   /* leave the loop */
};

struct route_ctx {
    struct pgw_webhook *w;
    enum kind kind;
};

struct pgw_webhook {
    struct pgw_inbox *inbox;
    struct event_base *ibase; /* the intake thread's */
    struct pgw_listener *listener;
    struct pgw_xqueue *ctl;
    struct route_ctx routes[K_COUNT];
    pthread_t thread;
    bool threaded;
    bool stopping;
    pthread_mutex_t mu;  /* stop_acked */
    pthread_cond_t cond; /* stop_acked set */
    bool stop_acked;
    pthread_mutex_t cfg_mu; /* cfg, key digests: held per request */
    bool sync_init;
    struct pgw_config *cfg;

    unsigned char hmac_key[32];
    /* HMAC-SHA256 under hmac_key, ready to be copied per digest: the
     * one-shot HMAC() fetched the algorithm and took OpenSSL's locks for
     * every call, two calls per request. */
    EVP_MAC_CTX *mac;
    /* The digests of cfg's apps' hook keys, index as in cfg->apps. */
    unsigned char (*key_digests)[32];
    size_t n_key_digests;
};

/* ---- keys --------------------------------------------------------------- */

/* HMAC-SHA256 of |s| under the process key; false if it failed. */
static bool digest(const struct pgw_webhook *w, const char *s,
                   unsigned char out[32])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(w->mac);
    size_t len = 0;
    bool ok = c != NULL &&
              EVP_MAC_update(c, (const unsigned char *)s, strlen(s)) == 1 &&
              EVP_MAC_final(c, out, &len, 32) == 1 && len == 32;

    EVP_MAC_CTX_free(c);
    return ok;
}

/* The digests of the hook keys of |w|'s config, once per config. */
static int digest_keys(struct pgw_webhook *w)
{
    const struct pgw_config *cfg = w->cfg;
    unsigned char(*d)[32] = calloc(cfg->n_apps ? cfg->n_apps : 1, 32);

    if (d == NULL)
        return PGW_ERR_NOMEM;
    for (size_t i = 0; i < cfg->n_apps; i++) {
        const char *k = cfg->apps[i].hook_key;
        /* A missing key or a failed digest stays all zero: refused. */
        if (k != NULL && k[0] != '\0' && !digest(w, k, d[i]))
            memset(d[i], 0, 32);
    }
    if (w->key_digests != NULL)
        OPENSSL_cleanse(w->key_digests, w->n_key_digests * 32);
    free(w->key_digests);
    w->key_digests = d;
    w->n_key_digests = cfg->n_apps;
    return 0;
}

/* Constant-time: the digests have the same length whatever the inputs. */
static bool key_matches(const struct pgw_webhook *w, const struct pgw_app *app,
                        const char *given)
{
    static const unsigned char zero[32];
    const unsigned char *want = w->key_digests[app - w->cfg->apps];
    unsigned char got[32];

    if (given == NULL || CRYPTO_memcmp(want, zero, 32) == 0 ||
        !digest(w, given, got))
        return false;
    return CRYPTO_memcmp(want, got, sizeof(got)) == 0;
}

static int init_mac(struct pgw_webhook *w)
{
    EVP_MAC *hmac;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};

    if (RAND_bytes(w->hmac_key, sizeof(w->hmac_key)) != 1) {
        pgw_log_error("could not draw a random key: openssl rand failed");
        return PGW_ERR_CRYPTO;
    }
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    w->mac = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    EVP_MAC_free(hmac); /* the context holds its own reference */
    if (w->mac == NULL ||
        EVP_MAC_init(w->mac, w->hmac_key, sizeof(w->hmac_key), params) != 1) {
        pgw_log_error("could not set up HMAC-SHA256: openssl failed");
        return PGW_ERR_CRYPTO;
    }
    return 0;
}

/* ---- requests (intake thread) ------------------------------------------- */

/* application/json, case-insensitive, parameters after ';' allowed. */
static bool is_json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    ct += sizeof(want) - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static void answer_nomem(struct pgw_webhook *w, struct evhttp_request *req,
                         const char *app_id)
{
    pgw_inbox_count(w->inbox, app_id, PGW_INBOX_UNAVAILABLE, 1);
    pgw_listener_send_error(req, 503, "out of memory", "",
                            PGW_INBOX_RETRY_AFTER_BUSY);
}

static void answer_invalid(struct pgw_webhook *w, struct evhttp_request *req,
                           const char *app_id, int err,
                           const struct pgw_json_error *e)
{
    if (err == PGW_ERR_TOO_LARGE) {
        pgw_inbox_count(w->inbox, app_id, PGW_INBOX_TOO_LARGE, 1);
        pgw_listener_send_error(req, 413, e->reason, e->field, NULL);
    } else if (err == PGW_ERR_NOMEM) {
        answer_nomem(w, req, app_id);
    } else {
        pgw_inbox_count(w->inbox, app_id, PGW_INBOX_INVALID, 1);
        pgw_listener_send_error(req, 400, e->reason, e->field, NULL);
    }
}

static void handle_single(struct pgw_webhook *w, struct evhttp_request *req,
                          const char *app_id, const char *body, size_t len,
                          const struct pgw_event_limits *lim)
{
    struct pgw_event *ev = NULL;
    struct pgw_json_error e = {{0}, {0}};
    int err = pgw_event_parse(body, len, lim, &ev, &e);
    if (err < 0) {
        answer_invalid(w, req, app_id, err, &e);
        return;
    }
    struct pgw_inbox_req *in = pgw_inbox_req_new(app_id, 1, false);
    if (in == NULL) {
        pgw_event_free(ev);
        answer_nomem(w, req, app_id);
        return;
    }
    pgw_inbox_req_set(in, 0, ev, (char *)body, len, false);
    pgw_inbox_submit(w->inbox, in, w->listener, req);
}

/* The "events" array of a batch body, or NULL with |e| filled. */
static const cJSON *batch_events(const cJSON *root, size_t *ret_n,
                                 struct pgw_json_error *e)
{
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "events");
    size_t n = 0;

    snprintf(e->field, sizeof(e->field), "events");
    if (!cJSON_IsObject(root)) {
        snprintf(e->reason, sizeof(e->reason), "body must be a JSON object");
        e->field[0] = '\0';
    } else if (events == NULL) {
        snprintf(e->reason, sizeof(e->reason), "required");
    } else if (!cJSON_IsArray(events)) {
        snprintf(e->reason, sizeof(e->reason), "must be an array");
    } else if ((n = (size_t)cJSON_GetArraySize(events)) == 0) {
        snprintf(e->reason, sizeof(e->reason), "must not be empty");
    } else if (n > PGW_WEBHOOK_MAX_BATCH) {
        snprintf(e->reason, sizeof(e->reason), "more than %d events",
                 PGW_WEBHOOK_MAX_BATCH);
    } else {
        *ret_n = n;
        return events;
    }
    return NULL;
}

/* "events[3].convId" into |e->field|, cut to its size. */
static void element_error(struct pgw_json_error *e, size_t i,
                          const struct pgw_json_error *ee)
{
    int k = snprintf(e->field, sizeof(e->field), "events[%zu]", i);
    size_t at = k > 0 ? (size_t)k : 0;
    if (ee->field[0] != '\0' && at + 2 < sizeof(e->field)) {
        size_t m = strnlen(ee->field, sizeof(e->field) - at - 2);
        e->field[at] = '.';
        memcpy(e->field + at + 1, ee->field, m);
        e->field[at + 1 + m] = '\0';
    }
    memcpy(e->reason, ee->reason, sizeof(e->reason));
}

static void handle_batch(struct pgw_webhook *w, struct evhttp_request *req,
                         const char *app_id, const char *body, size_t len,
                         const struct pgw_event_limits *lim)
{
    cJSON *root = NULL;
    struct pgw_inbox_req *in = NULL;
    struct pgw_json_error e = {{0}, {0}};
    const cJSON *events, *elem;
    size_t off = 0, n = 0, i = 0;
    const char *why = NULL;
    int err;

    err = pgw_json_parse(body, len, NULL, &root, &off, &why);
    if (err < 0) {
        if (err != PGW_ERR_NOMEM)
            snprintf(e.reason, sizeof(e.reason), "invalid JSON at byte %zu: %s",
                     off, why != NULL ? why : "malformed");
        answer_invalid(w, req, app_id, err, &e);
        goto out;
    }
    events = batch_events(root, &n, &e);
    if (events == NULL) {
        answer_invalid(w, req, app_id, PGW_ERR_INVAL, &e);
        goto out;
    }
    in = pgw_inbox_req_new(app_id, n, true);
    if (in == NULL) {
        answer_nomem(w, req, app_id);
        goto out;
    }
    cJSON_ArrayForEach(elem, events)
    {
        struct pgw_json_error ee = {{0}, {0}};
        struct pgw_event *ev = NULL;
        char *text;

        err = pgw_event_from_json(elem, lim, &ev, &ee);
        if (err < 0) {
            element_error(&e, i, &ee);
            answer_invalid(w, req, app_id, err, &e);
            goto out;
        }
        /* The body stored for each event is its own JSON text. */
        text = cJSON_PrintUnformatted(elem);
        pgw_inbox_req_set(in, i, ev, text, text ? strlen(text) : 0, true);
        if (text == NULL) {
            answer_nomem(w, req, app_id);
            goto out;
        }
        i++;
    }
    pgw_inbox_submit(w->inbox, in, w->listener, req);
    in = NULL;
out:
    pgw_inbox_req_free(in);
    cJSON_Delete(root);
}

/* The configured app a request names, or NULL; |*ret_field| names where. */
static const struct pgw_app *find_app(const struct pgw_webhook *w,
                                      struct evhttp_request *req,
                                      const struct pgw_route_match *m,
                                      enum kind kind, const char **ret_field)
{
    const char *id;

    if (kind == K_ALIAS) {
        id = evhttp_find_header(evhttp_request_get_input_headers(req),
                                "X-LC-Id");
        *ret_field = "X-LC-Id";
        if (id != NULL && strlen(id) > PGW_LISTENER_MAX_ID_BYTES)
            id = NULL;
    } else {
        id = m->n_ids > 0 ? m->ids[0] : NULL;
        *ret_field = "appId";
    }
    return id != NULL ? pgw_config_find_app(w->cfg, id) : NULL;
}

/* A request on one of the routes, with cfg_mu held: answered now, or
 * submitted to the inbox. */
static void webhook(struct pgw_webhook *w, struct evhttp_request *req,
                    const struct pgw_route_match *m, enum kind kind)
{
    struct evkeyvalq *hdr = evhttp_request_get_input_headers(req);
    const char *field = NULL;
    const struct pgw_app *app = find_app(w, req, m, kind, &field);
    struct pgw_event_limits lim;
    const char *body;
    size_t len;

    if (app == NULL) {
        /* The id is the client's: never a label value. */
        pgw_inbox_count(w->inbox, "", PGW_INBOX_UNKNOWN_APP, 1);
        pgw_listener_send_error(req, 404, "unknown app", field, NULL);
        return;
    }
    if (!key_matches(w, app, evhttp_find_header(hdr, "X-LC-Hook-Key"))) {
        pgw_inbox_count(w->inbox, app->id, PGW_INBOX_UNAUTHORIZED, 1);
        pgw_listener_send_error(req, 401, "invalid or missing hook key",
                                "X-LC-Hook-Key", NULL);
        return;
    }
    if (!is_json_type(evhttp_find_header(hdr, "Content-Type"))) {
        pgw_inbox_count(w->inbox, app->id, PGW_INBOX_UNSUPPORTED_MEDIA, 1);
        pgw_listener_send_error(req, 415,
                                "content type must be application/json",
                                "Content-Type", NULL);
        return;
    }
    pgw_event_limits_from_config(w->cfg, &lim);
    lim.now_ms = pgw_clock_wall_ms();
    body = pgw_listener_body(req, &len);
    if (body == NULL) {
        answer_nomem(w, req, app->id);
        return;
    }
    if (kind == K_BATCH)
        handle_batch(w, req, app->id, body, len, &lim);
    else
        handle_single(w, req, app->id, body, len, &lim);
}

/* The listener's handler for the three routes (intake thread). */
static void on_route(struct evhttp_request *req,
                     const struct pgw_route_match *m, void *ctx)
{
    struct route_ctx *rc = ctx;
    struct pgw_webhook *w = rc->w;

    pthread_mutex_lock(&w->cfg_mu);
    webhook(w, req, m, rc->kind);
    pthread_mutex_unlock(&w->cfg_mu);
}

/* The listener refuses a request itself (too large): counted under the
 * app it names when that app is configured. */
static void on_refused(void *arg, struct evhttp_request *req,
                       const struct pgw_route_match *m, void *ctx, int code)
{
    struct pgw_webhook *w = arg;
    struct route_ctx *rc = ctx;
    const char *field = NULL;
    const struct pgw_app *app;

    pthread_mutex_lock(&w->cfg_mu);
    app = find_app(w, req, m, rc->kind, &field);
    pgw_inbox_count(w->inbox, app != NULL ? app->id : "",
                    code == 413 ? PGW_INBOX_TOO_LARGE : PGW_INBOX_INVALID, 1);
    pthread_mutex_unlock(&w->cfg_mu);
}

/* ---- the intake thread -------------------------------------------------- */

/* The loop thread's requests, after the answers queued before them. */
static void on_ctl(void *arg, unsigned bits)
{
    struct pgw_webhook *w = arg;

    if (bits & CTL_LIMITS) {
        pthread_mutex_lock(&w->cfg_mu);
        pgw_listener_set_max_body(w->listener,
                                  (size_t)w->cfg->server.max_body_bytes);
        pthread_mutex_unlock(&w->cfg_mu);
    }
    if (bits & CTL_STOP) {
        pgw_listener_close(w->listener);
        pthread_mutex_lock(&w->mu);
        w->stop_acked = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mu);
    }
    if (bits & CTL_QUIT)
        event_base_loopbreak(w->ibase);
}

static void *intake_main(void *arg)
{
    struct pgw_webhook *w = arg;

    event_base_dispatch(w->ibase);
    return NULL;
}

/* Starts the intake thread, signals blocked in it (the loop thread takes
 * them). */
static int start_thread(struct pgw_webhook *w)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&w->thread, NULL, intake_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pgw_log_error("could not start the intake thread: %s", strerror(rc));
        return PGW_ERR_NOMEM;
    }
    w->threaded = true;
    return 0;
}

void pgw_webhook_join(struct pgw_webhook *self)
{
    if (!self->threaded)
        return;
    pgw_xqueue_signal(self->ctl, CTL_QUIT);
    pthread_join(self->thread, NULL);
    self->threaded = false;
}

/* ---- set-up ------------------------------------------------------------- */

static int add_routes(struct pgw_webhook *w)
{
    static const struct {
        const char *pattern;
        enum kind kind;
    } table[] = {
        {"/v1/apps/{appId}/receivers-offline", K_SINGLE},
        {"/1.1/functions/_receiversOffline", K_ALIAS},
        {"/v1/apps/{appId}/receivers-offline/batch", K_BATCH},
    };

    for (size_t i = 0; i < PGW_ARRAY_SIZE(table); i++) {
        struct route_ctx *rc = &w->routes[table[i].kind];
        int err;

        rc->w = w;
        rc->kind = table[i].kind;
        err = pgw_listener_route(w->listener, EVHTTP_REQ_POST, table[i].pattern,
                                 on_route, rc);
        if (err < 0)
            return err;
    }
    return 0;
}

int pgw_webhook_new(const struct pgw_webhook_options *opts,
                    struct pgw_webhook **ret_w)
{
    struct pgw_webhook *w = NULL;
    const struct pgw_config *cfg = opts->cfg;
    struct event_config *ec = NULL;
    int err = PGW_ERR_INVAL;

    if (cfg == NULL || opts->inbox == NULL || cfg->server.listen == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto out;
    if (pthread_mutex_init(&w->mu, NULL) != 0 ||
        pthread_mutex_init(&w->cfg_mu, NULL) != 0 ||
        pthread_cond_init(&w->cond, NULL) != 0) {
        free(w);
        w = NULL;
        goto out;
    }
    w->sync_init = true;
    w->inbox = opts->inbox;
    w->cfg = pgw_config_ref(opts->cfg);
    err = init_mac(w);
    if (err < 0)
        goto out;
    err = digest_keys(w);
    if (err < 0)
        goto out;
    err = PGW_ERR_NOMEM;
    ec = event_config_new();
    if (ec == NULL)
        goto out;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->ibase = event_base_new_with_config(ec);
    if (w->ibase == NULL)
        goto out;
    err = pgw_xqueue_new(w->ibase, on_ctl, w, &w->ctl);
    if (err < 0)
        goto out;
    {
        struct pgw_listener_options lo = {
            .base = w->ibase,
            .name = "webhook",
            .address = cfg->server.listen,
            .tls_cert_file = cfg->server.tls_cert_file,
            .tls_key_file = cfg->server.tls_key_file,
            .timeout_ms = opts->timeout_ms,
            .max_header_bytes = opts->max_header_bytes,
            .max_body_bytes = cfg->server.max_body_bytes > 0
                                  ? (size_t)cfg->server.max_body_bytes
                                  : 0,
            .max_connections = (size_t)cfg->server.max_connections,
            .refused = on_refused,
            .refused_arg = w,
        };
        err = pgw_listener_new(&lo, &w->listener);
        if (err < 0)
            goto out;
    }
    err = add_routes(w);
    if (err < 0)
        goto out;
    err = start_thread(w);
    if (err < 0)
        goto out;
    *ret_w = w;
    w = NULL;
    err = 0;
out:
    if (ec != NULL)
        event_config_free(ec);
    pgw_webhook_free(w);
    return err;
}

bool pgw_webhook_saturated(const struct pgw_webhook *self)
{
    return pgw_listener_saturated(self->listener);
}

int pgw_webhook_port(const struct pgw_webhook *self)
{
    return pgw_listener_port(self->listener);
}

void pgw_webhook_set_config(struct pgw_webhook *self, struct pgw_config *cfg)
{
    struct pgw_config *old;

    pthread_mutex_lock(&self->cfg_mu);
    old = self->cfg;
    self->cfg = pgw_config_ref(cfg);
    if (digest_keys(self) < 0) {
        /* Keep serving with the old config rather than without keys. */
        pgw_log_error("out of memory: the new config's hook keys are not "
                      "taken; the old config stays");
        pgw_config_free(self->cfg);
        self->cfg = old;
        pthread_mutex_unlock(&self->cfg_mu);
        return;
    }
    pthread_mutex_unlock(&self->cfg_mu);
    /* The intake thread sees the new config from its next request on, and
     * applies its limits to the listener, which it owns. */
    pgw_config_free(old);
    pgw_xqueue_signal(self->ctl, CTL_LIMITS);
}

void pgw_webhook_stop(struct pgw_webhook *self)
{
    if (self->stopping)
        return;
    self->stopping = true;
    if (!self->threaded) {
        pgw_listener_close(self->listener);
        return;
    }
    pgw_xqueue_signal(self->ctl, CTL_STOP);
    /* Synchronous: the listener is closed when this returns. */
    pthread_mutex_lock(&self->mu);
    while (!self->stop_acked)
        pthread_cond_wait(&self->cond, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

void pgw_webhook_free(struct pgw_webhook *self)
{
    if (self == NULL)
        return;
    pgw_webhook_join(self);
    /* The control bits left need no answer. */
    pgw_xqueue_free(self->ctl);
    pgw_listener_free(self->listener);
    if (self->ibase != NULL)
        event_base_free(self->ibase);
    if (self->sync_init) {
        pthread_mutex_destroy(&self->mu);
        pthread_mutex_destroy(&self->cfg_mu);
        pthread_cond_destroy(&self->cond);
    }
    pgw_config_free(self->cfg);
    EVP_MAC_CTX_free(self->mac);
    if (self->key_digests != NULL)
        OPENSSL_cleanse(self->key_digests, self->n_key_digests * 32);
    free(self->key_digests);
    OPENSSL_cleanse(self->hmac_key, sizeof(self->hmac_key));
    free(self);
}
