/*
 * The push API's two routes. A request is checked in full on arrival
 * (lc_pushreq), then one store call stores it or reads it; the answer is
 * sent from the store's callback.
 */
#include "lc_push.h"

#include <cjson/cJSON.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lc_api.h"
#include "lc_installation.h"
#include "lc_pushreq.h"
#include "listener.h"
#include "metrics.h"
#include "store_pushreq.h"
#include "util/clock.h"
#include "util/utf8.h"

enum push_result {
    R_ACCEPTED,
    R_DUPLICATE,
    R_INVALID,
    R_UNAUTHORIZED,
    R_BACKLOG_FULL,
    R_UNAVAILABLE,
    R_COUNT,
};

static const char *const result_names[R_COUNT] = {
    "accepted",     "duplicate",    "invalid",
    "unauthorized", "backlog_full", "unavailable",
};

struct pgw_lc_push {
    struct pgw_lc_api *api;
    struct pgw_store *store;
    struct pgw_metric_family *m_requests; /* NULL: no counting */
    int64_t (*backlog)(void *arg);
    void (*stored)(void *arg, int64_t api_push_id);
    void *arg;
};

/* One request in the store. */
struct push_req {
    struct pgw_lc_push *push;
    struct evhttp_request *req;
    char app_id[128]; /* for counting */
};

static void count(struct pgw_lc_push *p, const char *app, enum push_result r)
{
    if (p->m_requests)
        pgw_metric_add(pgw_metrics_series2(p->m_requests, app, result_names[r]),
                       1);
}

static void send_busy(struct evhttp_request *req, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                      PGW_LC_PUSH_RETRY_AFTER_BUSY);
    pgw_lc_api_send_error(req, 429, PGW_LC_INTERNAL, msg);
}

static void send_needs_master(struct evhttp_request *req)
{
    pgw_lc_api_send_error(req, 401, PGW_LC_FORBIDDEN,
                          "The operation isn't allowed for clients: it needs "
                          "the master key (or allow_client_push).");
}

/* The single place a stored request wakes the sender. */
static void wake_sender(struct pgw_lc_push *p, int64_t id)
{
    if (p->stored)
        p->stored(p->arg, id);
}

/* ---- POST /1.1/push ---- */

static void on_saved(void *arg, int err, int64_t id, const char *object_id,
                     int64_t created_at_ms, bool duplicate)
{
    struct push_req *r = arg;
    cJSON *o = NULL;
    char date[40];

    if (err == PGW_ERR_BUSY) {
        count(r->push, r->app_id, R_BACKLOG_FULL);
        send_busy(r->req, "Too many push requests are waiting to be sent, try "
                          "again later.");
        goto out;
    }
    if (err) {
        count(r->push, r->app_id, R_UNAVAILABLE);
        pgw_lc_api_send_store_error(r->req, err);
        goto out;
    }
    count(r->push, r->app_id, duplicate ? R_DUPLICATE : R_ACCEPTED);
    if (!duplicate)
        wake_sender(r->push, id);
    pgw_lc_format_date(created_at_ms, date, sizeof(date));
    o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "objectId", object_id) ||
              !cJSON_AddStringToObject(o, "createdAt", date))) {
        cJSON_Delete(o);
        o = NULL;
    }
    pgw_lc_api_send_obj(r->req, 200, o);
out:
    cJSON_Delete(o);
    free(r);
}

static void handle_post(struct pgw_lc_push *p, struct evhttp_request *req,
                        const struct pgw_app *app, enum pgw_lc_auth_level level)
{
    const struct pgw_config *cfg = pgw_lc_api_config(p->api);
    cJSON *body = NULL;
    struct pgw_lc_pushreq pr;
    struct pgw_lc_error err;
    struct push_req *r = NULL;
    int rc;

    memset(&pr, 0, sizeof(pr));
    if (level != PGW_LC_AUTH_MASTER && !app->allow_client_push) {
        count(p, app->id, R_UNAUTHORIZED);
        send_needs_master(req);
        return;
    }
    body = pgw_lc_api_parse_body(req);
    if (!body) {
        count(p, app->id, R_INVALID);
        return;
    }
    rc = pgw_lc_pushreq_parse(
        body,
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-LC-Prod"),
        pgw_clock_wall_ms(), cfg->delivery.validity_s, &pr, &err);
    if (rc == PGW_ERR_NOMEM) {
        count(p, app->id, R_UNAVAILABLE);
        pgw_lc_api_send_store_error(req, rc);
        goto out;
    }
    if (rc < 0) {
        count(p, app->id, R_INVALID);
        pgw_lc_api_send_lc_error(req, &err);
        goto out;
    }
    if (p->backlog && cfg->server.max_backlog_events > 0 &&
        p->backlog(p->arg) >= cfg->server.max_backlog_events) {
        count(p, app->id, R_BACKLOG_FULL);
        send_busy(req, "The push backlog is full, try again later.");
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        count(p, app->id, R_UNAVAILABLE);
        pgw_lc_api_send_store_error(req, PGW_ERR_NOMEM);
        goto out;
    }
    r->push = p;
    r->req = req;
    pgw_copy_str(r->app_id, sizeof(r->app_id), app->id);
    rc = pgw_store_pushreq_insert(p->store, app->id, &pr,
                                  PGW_LC_PUSH_MAX_PENDING, on_saved, r);
    if (rc == PGW_ERR_BUSY) {
        count(p, app->id, R_BACKLOG_FULL);
        send_busy(req, "Too many requests are waiting for the database, try "
                       "again later.");
        free(r);
    } else if (rc < 0) {
        count(p, app->id, R_UNAVAILABLE);
        pgw_lc_api_send_store_error(req, rc);
        free(r);
    }
out:
    pgw_lc_pushreq_release(&pr);
    cJSON_Delete(body);
}

/* ---- GET /1.1/push/{objectId} ---- */

static bool add_date(cJSON *o, const char *key, int64_t ms)
{
    char date[40];

    pgw_lc_format_date(ms, date, sizeof(date));
    return cJSON_AddStringToObject(o, key, date) != NULL;
}

static bool add_json(cJSON *o, const char *key, const char *text)
{
    cJSON *v = text ? cJSON_Parse(text) : NULL;

    if (!v)
        return false;
    if (!cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

static bool add_opt_str(cJSON *o, const char *key, const char *v)
{
    return !v || cJSON_AddStringToObject(o, key, v);
}

/* The status as LeanCloud's console and REST showed a _Notification:
 * status, devices, successes, invalidTokens, errors, and the request. */
static cJSON *status_json(const struct pgw_store_pushreq_status *st)
{
    cJSON *o = cJSON_CreateObject();

    if (!o || !cJSON_AddStringToObject(o, "objectId", st->object_id) ||
        !add_date(o, "createdAt", st->created_at_ms) ||
        !add_date(o, "updatedAt",
                  st->finished_at_ms  ? st->finished_at_ms
                  : st->started_at_ms ? st->started_at_ms
                                      : st->created_at_ms) ||
        !cJSON_AddStringToObject(o, "status", st->status) ||
        !cJSON_AddNumberToObject(o, "devices", (double)st->devices) ||
        !cJSON_AddNumberToObject(o, "successes", (double)st->successes) ||
        !cJSON_AddNumberToObject(o, "invalidTokens",
                                 (double)st->invalid_tokens) ||
        !cJSON_AddNumberToObject(o, "errors", (double)st->errors) ||
        !cJSON_AddNumberToObject(o, "expired", (double)st->expired) ||
        !add_json(o, "data", st->data) || !add_json(o, "where", st->query) ||
        !add_date(o, "push_time", st->push_at_ms) ||
        !add_date(o, "expiration_time", st->expires_at_ms) ||
        !add_opt_str(o, "prod", st->profile) ||
        !add_opt_str(o, "req_id", st->req_id) ||
        !add_opt_str(o, "notification_id", st->notification_id) ||
        !add_opt_str(o, "result", st->result) ||
        (st->flow_control &&
         !cJSON_AddNumberToObject(o, "flow_control",
                                  (double)st->flow_control)) ||
        !cJSON_AddStringToObject(o, "from-service", "push")) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void on_status(void *arg, int err,
                      const struct pgw_store_pushreq_status *st)
{
    struct push_req *r = arg;
    cJSON *o;

    if (err) {
        pgw_lc_api_send_store_error(r->req, err);
    } else if (!st) {
        pgw_lc_api_send_error(r->req, 404, PGW_LC_NOT_FOUND,
                              "Object not found.");
    } else {
        o = status_json(st);
        pgw_lc_api_send_obj(r->req, 200, o);
        cJSON_Delete(o);
    }
    free(r);
}

static void handle_get(struct pgw_lc_push *p, struct evhttp_request *req,
                       const struct pgw_route_match *m,
                       const struct pgw_app *app, enum pgw_lc_auth_level level)
{
    struct push_req *r;
    int rc;

    if (level != PGW_LC_AUTH_MASTER) {
        send_needs_master(req);
        return;
    }
    if (m->n_ids < 1 || !m->ids[0] ||
        strlen(m->ids[0]) > PGW_LC_MAX_OBJECT_ID_BYTES ||
        !pgw_utf8_valid(m->ids[0], strlen(m->ids[0]))) {
        pgw_lc_api_send_error(req, 404, PGW_LC_NOT_FOUND, "Object not found.");
        return;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        pgw_lc_api_send_store_error(req, PGW_ERR_NOMEM);
        return;
    }
    r->push = p;
    r->req = req;
    rc = pgw_store_pushreq_status(p->store, app->id, m->ids[0], on_status, r);
    if (rc < 0) {
        pgw_lc_api_send_store_error(req, rc);
        free(r);
    }
}

static void handle(struct evhttp_request *req, const struct pgw_route_match *m,
                   void *ctx)
{
    struct pgw_lc_push *p = ctx;
    enum pgw_lc_auth_level level = PGW_LC_AUTH_NONE;
    const struct pgw_app *app = pgw_lc_api_authenticate(p->api, req, &level);

    if (!app) {
        if (evhttp_request_get_command(req) == EVHTTP_REQ_POST)
            count(p, "", R_UNAUTHORIZED);
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST)
        handle_post(p, req, app, level);
    else
        handle_get(p, req, m, app, level);
}

int pgw_lc_push_new(const struct pgw_lc_push_options *opts,
                    struct pgw_lc_push **ret_push)
{
    struct pgw_lc_push *p;
    struct pgw_listener *l;
    int rc;

    if (!opts || !opts->api || !opts->store)
        return PGW_ERR_INVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return PGW_ERR_NOMEM;
    p->api = opts->api;
    p->store = opts->store;
    p->backlog = opts->backlog;
    p->stored = opts->stored;
    p->arg = opts->arg;
    if (opts->metrics) {
        static const char *const labels[] = {"app", "result"};
        rc = pgw_metrics_register(
            opts->metrics, PGW_METRIC_COUNTER, "pushgw_push_requests_total",
            "Push API requests (POST /1.1/push) by what was answered: "
            "accepted, duplicate, invalid, unauthorized, backlog_full, "
            "unavailable.",
            labels, 2, 0, NULL, 0, &p->m_requests);
        if (rc < 0) {
            free(p);
            return rc;
        }
    }
    l = pgw_lc_api_listener(opts->api);
    rc = pgw_listener_route(l, EVHTTP_REQ_POST, "/1.1/push", handle, p);
    if (rc == 0)
        rc = pgw_listener_route(l, EVHTTP_REQ_GET, "/1.1/push/{id}", handle, p);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *ret_push = p;
    return 0;
}

void pgw_lc_push_free(struct pgw_lc_push *self)
{
    free(self);
}
