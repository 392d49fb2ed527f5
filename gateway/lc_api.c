/*
 * The /1.1/ installation API. Each request is a small state machine on the
 * main loop: authenticate, parse, read the rows it could touch, decide
 * (lc_installation), write in one statement, answer; a write that raced
 * another goes back to the read.
 */
#include "lc_api.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/utf8.h"
#include "lc_auth.h"
#include "lc_installation.h"
#include "listener.h"
#include "log.h"
#include "store_installation.h"

struct pgw_lc_api {
    struct pgw_listener *listener;
    struct pgw_store *store;
    struct pgw_config *cfg;
};

enum lc_op { LC_CREATE, LC_UPDATE, LC_GET, LC_DELETE };

/* One request in the store. */
struct lc_req {
    struct pgw_lc_api *api;
    struct evhttp_request *req;
    enum lc_op op;
    char *app_id;     /* the pushgw app */
    char *object_id;  /* PUT, GET, DELETE */
    cJSON *body;      /* CREATE, UPDATE */
    bool want_object; /* ?new=true: answer with the whole object */
    int tries;
    /* the record being written (between decide and the answer) */
    struct pgw_lc_installation row;
    bool have_row;
};

void pgw_lc_api_send_obj(struct evhttp_request *req, int code, const cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    struct evbuffer *b = evbuffer_new();

    if (!s || !b || evbuffer_add(b, s, strlen(s)) < 0) {
        evbuffer_free(b);
        free(s);
        evhttp_send_reply(req, 500, "Internal Server Error", NULL);
        return;
    }
    pgw_listener_send_json(req, code, b);
    evbuffer_free(b);
    free(s);
}

void pgw_lc_api_send_lc_error(struct evhttp_request *req,
                              const struct pgw_lc_error *err)
{
    char *s = pgw_lc_error_json(err);
    struct evbuffer *b = evbuffer_new();

    if (!s || !b || evbuffer_add(b, s, strlen(s)) < 0) {
        evbuffer_free(b);
        free(s);
        evhttp_send_reply(req, err->status, NULL, NULL);
        return;
    }
    pgw_listener_send_json(req, err->status, b);
    evbuffer_free(b);
    free(s);
}

void pgw_lc_api_send_error(struct evhttp_request *req, int status, int code,
                           const char *msg)
{
    struct pgw_lc_error err;

    pgw_lc_error_set(&err, status, code, "", "", "%s", msg);
    pgw_lc_api_send_lc_error(req, &err);
}

void pgw_lc_api_send_store_error(struct evhttp_request *req, int err)
{
    if (err == PGW_ERR_BUSY || err == PGW_ERR_DB || err == PGW_ERR_CLOSED ||
        err == PGW_ERR_CONFLICT)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                          "5");
    pgw_lc_api_send_error(
        req, err == PGW_ERR_NOMEM ? 500 : 503, PGW_LC_INTERNAL,
        err == PGW_ERR_NOMEM ? "Internal server error."
                             : "The database is unavailable, try "
                               "again later.");
}

static void req_free(struct lc_req *r)
{
    if (!r)
        return;
    free(r->app_id);
    free(r->object_id);
    cJSON_Delete(r->body);
    if (r->have_row)
        pgw_lc_installation_release(&r->row);
    free(r);
}

static const char *header(struct evhttp_request *req, const char *name,
                          const char *legacy)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *v = evhttp_find_header(h, name);

    return v ? v : legacy ? evhttp_find_header(h, legacy) : NULL;
}

/*
 * The app the request proves a key of, and the level proved; NULL after
 * answering 401.
 */
const struct pgw_app *pgw_lc_api_authenticate(struct pgw_lc_api *api,
                                              struct evhttp_request *req,
                                              enum pgw_lc_auth_level *ret_level)
{
    const char *id = header(req, "X-LC-Id", "X-AVOSCloud-Application-Id");
    const char *key = header(req, "X-LC-Key", "X-AVOSCloud-Application-Key");
    const char *sign = header(req, "X-LC-Sign", "X-AVOSCloud-Request-Sign");
    const struct pgw_app *app =
        id ? pgw_config_find_leancloud_app(api->cfg, id) : NULL;
    struct pgw_lc_keys keys;

    if (app) {
        keys.app_id = app->leancloud_app_id;
        keys.app_key = app->app_key;
        keys.master_key = app->master_key;
        if (pgw_lc_auth_check(&keys, id, key, sign, pgw_clock_wall_ms(),
                              ret_level) == 0)
            return app;
    }
    pgw_lc_api_send_error(req, 401, PGW_LC_UNAUTHORIZED, "Unauthorized.");
    return NULL;
}

/* The body as a JSON object; NULL after answering 400. */
cJSON *pgw_lc_api_parse_body(struct evhttp_request *req)
{
    size_t len;
    const char *buf = pgw_listener_body(req, &len);
    cJSON *j = NULL;
    size_t off = 0;
    const char *why = NULL;
    struct pgw_lc_error err;
    int rc;

    if (len > PGW_LC_API_MAX_BODY_BYTES) {
        pgw_lc_error_set(&err, 413, PGW_LC_TOO_LARGE, "", "too_large",
                         "The object is too large: the body is over %d "
                         "bytes.",
                         PGW_LC_API_MAX_BODY_BYTES);
        pgw_lc_api_send_lc_error(req, &err);
        return NULL;
    }
    rc = pgw_json_parse(buf, len, NULL, &j, &off, &why);
    if (rc == PGW_ERR_NOMEM) {
        pgw_lc_api_send_store_error(req, rc);
        return NULL;
    }
    if (rc < 0 || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        pgw_lc_error_set(&err, 400, PGW_LC_INVALID_JSON, "", "bad_json",
                         "Malformed json object. A json dictionary is "
                         "expected%s%s.",
                         why ? ": " : "", why ? why : "");
        pgw_lc_api_send_lc_error(req, &err);
        return NULL;
    }
    return j;
}

static bool query_new(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq kv;
    const char *v;
    bool yes;

    if (!q || evhttp_parse_query_str(q, &kv) < 0)
        return false;
    v = evhttp_find_header(&kv, "new");
    yes = v && strcmp(v, "true") == 0;
    evhttp_clear_headers(&kv);
    return yes;
}

static void start_read(struct lc_req *r);

/* ---- answers ------------------------------------------------------------ */

static void on_saved(void *arg, int err, const char *object_id,
                     int64_t created_at_ms, int64_t updated_at_ms, bool created)
{
    struct lc_req *r = arg;
    cJSON *o = NULL;
    char date[40];

    if (err == PGW_ERR_CONFLICT && ++r->tries < PGW_LC_API_MAX_TRIES) {
        pgw_lc_installation_release(&r->row);
        r->have_row = false;
        start_read(r);
        return;
    }
    if (err) {
        pgw_lc_api_send_store_error(r->req, err);
        goto out;
    }
    if (r->want_object) {
        free(r->row.object_id);
        r->row.object_id = strdup(object_id);
        r->row.created_at_ms = created_at_ms;
        r->row.updated_at_ms = updated_at_ms;
        o = r->row.object_id ? pgw_lc_installation_to_json(&r->row) : NULL;
    } else {
        o = cJSON_CreateObject();
        if (o && cJSON_AddStringToObject(o, "objectId", object_id)) {
            pgw_lc_format_date(created ? created_at_ms : updated_at_ms, date,
                               sizeof(date));
            cJSON_AddStringToObject(o, created ? "createdAt" : "updatedAt",
                                    date);
        }
    }
    pgw_lc_api_send_obj(r->req, created ? 201 : 200, o);
out:
    cJSON_Delete(o);
    req_free(r);
}

/* ---- deciding ------------------------------------------------------------ */

/* The row a create updates: the one with the installationId, else the
 * one with the token unless it belongs to another installationId. */
static const struct pgw_store_lc_row *
create_target(const struct pgw_store_lc_row *rows, size_t n,
              const struct pgw_lc_installation *want)
{
    const struct pgw_store_lc_row *by_tok = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct pgw_lc_installation *in = &rows[i].inst;
        if (want->installation_id && in->installation_id &&
            strcmp(in->installation_id, want->installation_id) == 0)
            return &rows[i];
        if (!by_tok && want->device_token && in->device_token &&
            strcmp(in->device_token, want->device_token) == 0)
            by_tok = &rows[i];
    }
    if (by_tok && want->installation_id && by_tok->inst.installation_id)
        return NULL; /* the token moves to a new installation */
    return by_tok;
}

/* Applies the body to |base| (a stored row, or NULL: a new one) into
 * r->row; false after answering 400. */
static bool decide(struct lc_req *r, const struct pgw_store_lc_row *base,
                   bool *ret_revive)
{
    struct pgw_lc_error err;
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(r->body, "valid");
    bool token_given =
        cJSON_GetObjectItemCaseSensitive(r->body, "deviceToken") ||
        cJSON_GetObjectItemCaseSensitive(r->body, "registrationId");
    int rc;

    rc = base ? pgw_lc_installation_copy(&r->row, &base->inst)
              : pgw_lc_installation_init(&r->row);
    if (rc < 0) {
        pgw_lc_api_send_store_error(r->req, rc);
        return false;
    }
    r->have_row = true;
    rc = pgw_lc_installation_apply(&r->row, r->body, 0, &err);
    if (rc == 0)
        rc = pgw_lc_installation_check(&r->row, &err);
    if (rc == PGW_ERR_NOMEM) {
        pgw_lc_api_send_store_error(r->req, rc);
        return false;
    }
    if (rc < 0) {
        pgw_lc_api_send_lc_error(r->req, &err);
        return false;
    }
    /* A device registering its token again is alive: pushgw's own
     * invalidation (an APNs 410, FCM UNREGISTERED) no longer holds, unless
     * the device says valid: false itself. */
    *ret_revive = false;
    if (base && base->invalidated && r->row.valid &&
        (token_given || cJSON_IsTrue(valid)))
        *ret_revive = true;
    if (base && base->invalidated && !base->inst.valid && token_given &&
        !valid) {
        r->row.valid = true;
        *ret_revive = true;
    }
    return true;
}

static void on_rows(void *arg, int err, const struct pgw_store_lc_row *rows,
                    size_t n)
{
    struct lc_req *r = arg;
    const struct pgw_store_lc_row *base = NULL;
    bool revive = false;
    int rc;

    if (err) {
        pgw_lc_api_send_store_error(r->req, err);
        goto done;
    }
    if (r->op == LC_CREATE) {
        struct pgw_lc_installation want;
        struct pgw_lc_error e;
        /* the identity the body asks for, to pick the row */
        if (pgw_lc_installation_init(&want) < 0) {
            pgw_lc_api_send_store_error(r->req, PGW_ERR_NOMEM);
            goto done;
        }
        rc = pgw_lc_installation_apply(&want, r->body, 0, &e);
        if (rc == 0)
            rc = pgw_lc_installation_check(&want, &e);
        if (rc == 0)
            base = create_target(rows, n, &want);
        pgw_lc_installation_release(&want);
    } else {
        for (size_t i = 0; i < n && !base; i++)
            if (rows[i].inst.object_id &&
                strcmp(rows[i].inst.object_id, r->object_id) == 0)
                base = &rows[i];
        if (!base) {
            pgw_lc_api_send_error(r->req, 404, PGW_LC_NOT_FOUND,
                                  "Object not found.");
            goto done;
        }
    }
    if (r->op == LC_GET) {
        cJSON *o = pgw_lc_installation_to_json(&base->inst);
        pgw_lc_api_send_obj(r->req, 200, o);
        cJSON_Delete(o);
        goto done;
    }
    if (!decide(r, base, &revive))
        goto done;
    rc = pgw_store_lc_save(r->api->store, r->app_id, &r->row,
                           base ? base->version : NULL, revive, on_saved, r);
    if (rc < 0) {
        pgw_lc_api_send_store_error(r->req, rc);
        goto done;
    }
    return;
done:
    req_free(r);
}

static void start_read(struct lc_req *r)
{
    int rc;

    if (r->op == LC_CREATE) {
        /* the body was checked once already: this cannot fail but for
         * memory */
        struct pgw_lc_installation want;
        struct pgw_lc_error e;
        rc = pgw_lc_installation_init(&want);
        if (rc == 0)
            rc = pgw_lc_installation_apply(&want, r->body, 0, &e);
        if (rc == 0)
            rc = pgw_lc_installation_check(&want, &e);
        if (rc == 0)
            rc = pgw_store_lc_find(r->api->store, r->app_id, NULL,
                                   want.installation_id, want.device_token,
                                   on_rows, r);
        pgw_lc_installation_release(&want);
    } else {
        rc = pgw_store_lc_find(r->api->store, r->app_id, r->object_id, NULL,
                               NULL, on_rows, r);
    }
    if (rc < 0) {
        pgw_lc_api_send_store_error(r->req, rc);
        req_free(r);
    }
}

/* ---- routes -------------------------------------------------------------- */

static void on_deleted(void *arg, int err, bool found)
{
    struct lc_req *r = arg;
    cJSON *o;

    if (err) {
        pgw_lc_api_send_store_error(r->req, err);
    } else if (!found) {
        pgw_lc_api_send_error(r->req, 404, PGW_LC_NOT_FOUND,
                              "Object not found.");
    } else {
        o = cJSON_CreateObject();
        pgw_lc_api_send_obj(r->req, 200, o);
        cJSON_Delete(o);
    }
    req_free(r);
}

static void handle(struct evhttp_request *req, const struct pgw_route_match *m,
                   void *ctx)
{
    struct pgw_lc_api *api = ctx;
    enum pgw_lc_auth_level level = PGW_LC_AUTH_NONE;
    const struct pgw_app *app = pgw_lc_api_authenticate(api, req, &level);
    struct lc_req *r = NULL;
    struct pgw_lc_error err;
    int rc;

    if (!app)
        return;
    r = calloc(1, sizeof(*r));
    if (!r || !(r->app_id = strdup(app->id)))
        goto nomem;
    r->api = api;
    r->req = req;
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_POST:
        r->op = LC_CREATE;
        break;
    case EVHTTP_REQ_PUT:
        r->op = LC_UPDATE;
        break;
    case EVHTTP_REQ_DELETE:
        r->op = LC_DELETE;
        break;
    default:
        r->op = LC_GET;
        break;
    }
    if (r->op != LC_CREATE) {
        if (m->n_ids < 1 || !m->ids[0] ||
            strlen(m->ids[0]) > PGW_LC_MAX_OBJECT_ID_BYTES ||
            !pgw_utf8_valid(m->ids[0], strlen(m->ids[0]))) {
            pgw_lc_api_send_error(req, 404, PGW_LC_NOT_FOUND,
                                  "Object not found.");
            goto out;
        }
        if (!(r->object_id = strdup(m->ids[0])))
            goto nomem;
    }
    if (r->op == LC_DELETE) {
        if (level != PGW_LC_AUTH_MASTER) {
            pgw_lc_api_send_error(
                req, 403, PGW_LC_FORBIDDEN,
                "The operation isn't allowed for clients: it needs "
                "the master key.");
            goto out;
        }
        rc = pgw_store_lc_delete(api->store, r->app_id, r->object_id,
                                 on_deleted, r);
        if (rc < 0) {
            pgw_lc_api_send_store_error(req, rc);
            goto out;
        }
        return;
    }
    if (r->op == LC_CREATE || r->op == LC_UPDATE) {
        r->body = pgw_lc_api_parse_body(req);
        if (!r->body)
            goto out;
        r->want_object = query_new(req);
    }
    if (r->op == LC_CREATE) {
        /* refuse a bad body before reading anything */
        struct pgw_lc_installation want;
        if (pgw_lc_installation_init(&want) < 0)
            goto nomem;
        rc = pgw_lc_installation_apply(&want, r->body, 0, &err);
        if (rc == 0)
            rc = pgw_lc_installation_check(&want, &err);
        pgw_lc_installation_release(&want);
        if (rc == PGW_ERR_NOMEM)
            goto nomem;
        if (rc < 0) {
            pgw_lc_api_send_lc_error(req, &err);
            goto out;
        }
    }
    start_read(r);
    return;
nomem:
    pgw_lc_api_send_store_error(req, PGW_ERR_NOMEM);
out:
    req_free(r);
}

static const char *const prefixes[] = {"/1.1/installations",
                                       "/1.1/classes/_Installation"};

int pgw_lc_api_new(const struct pgw_lc_api_options *opts,
                   struct pgw_lc_api **ret_api)
{
    struct pgw_lc_api *api;
    struct pgw_listener_options lo;
    char pattern[64];
    int rc;

    if (!opts || !opts->base || !opts->store || !opts->cfg ||
        !opts->cfg->server.client_listen)
        return PGW_ERR_INVAL;
    api = calloc(1, sizeof(*api));
    if (!api)
        return PGW_ERR_NOMEM;
    api->store = opts->store;
    api->cfg = pgw_config_ref(opts->cfg);
    memset(&lo, 0, sizeof(lo));
    lo.base = opts->base;
    lo.name = "client";
    lo.address = opts->cfg->server.client_listen;
    lo.tls_cert_file = opts->cfg->server.tls_cert_file;
    lo.tls_key_file = opts->cfg->server.tls_key_file;
    lo.timeout_ms = opts->timeout_ms;
    /* bodies up to twice the bound are read, so that those over it are
     * refused in LeanCloud's shape (413, code 116); larger ones the
     * listener refuses before reading them */
    lo.max_body_bytes = 2 * PGW_LC_API_MAX_BODY_BYTES;
    /* phones reach it over the internet: the same cap as the webhook */
    lo.max_connections = (size_t)opts->cfg->server.max_connections;
    rc = pgw_listener_new(&lo, &api->listener);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < PGW_ARRAY_SIZE(prefixes); i++) {
        rc = pgw_listener_route(api->listener, EVHTTP_REQ_POST, prefixes[i],
                                handle, api);
        snprintf(pattern, sizeof(pattern), "%s/{id}", prefixes[i]);
        if (rc == 0)
            rc = pgw_listener_route(api->listener,
                                    EVHTTP_REQ_PUT | EVHTTP_REQ_GET |
                                        EVHTTP_REQ_DELETE,
                                    pattern, handle, api);
        if (rc < 0)
            goto fail;
    }
    *ret_api = api;
    return 0;
fail:
    pgw_lc_api_free(api);
    return rc;
}

int pgw_lc_api_port(const struct pgw_lc_api *self)
{
    return pgw_listener_port(self->listener);
}

void pgw_lc_api_set_config(struct pgw_lc_api *self, struct pgw_config *cfg)
{
    struct pgw_config *old = self->cfg;

    self->cfg = pgw_config_ref(cfg);
    pgw_config_free(old);
}

struct pgw_listener *pgw_lc_api_listener(struct pgw_lc_api *self)
{
    return self->listener;
}

const struct pgw_config *pgw_lc_api_config(const struct pgw_lc_api *self)
{
    return self->cfg;
}

void pgw_lc_api_close(struct pgw_lc_api *self)
{
    if (self && self->listener)
        pgw_listener_close(self->listener);
}

void pgw_lc_api_free(struct pgw_lc_api *self)
{
    if (!self)
        return;
    pgw_listener_free(self->listener);
    pgw_config_free(self->cfg);
    free(self);
}
