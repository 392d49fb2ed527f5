/* The admin listener: /metrics, /healthz, /readyz; see admin.h. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "pushgw.h"
#include "store.h"

/* The admin listener reads no bodies. */
#define ADMIN_MAX_BODY 4096
#define GET_OR_HEAD (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD)

struct pgw_admin {
    struct pgw_listener *listener;
    struct pgw_store *store;
    struct pgw_metrics *metrics;
    pgw_admin_ready_fn ready;
    void *ready_arg;
    void (*refresh)(void *arg);
    void *refresh_arg;
};

/* {"status":"ok"}, or {"status":"unavailable","reason":|why|}. */
static void send_status(struct evhttp_request *req, int code, const char *why)
{
    struct evbuffer *body = evbuffer_new();

    if (body != NULL) {
        if (why == NULL) {
            evbuffer_add_printf(body, "{\"status\":\"ok\"}");
        } else {
            evbuffer_add_printf(body,
                                "{\"status\":\"unavailable\",\"reason\":");
            pgw_listener_json_string(body, why);
            evbuffer_add(body, "}", 1);
        }
    }
    pgw_listener_send_json(req, code, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* GET /healthz: the process answers. */
static void on_healthz(struct evhttp_request *req,
                       const struct pgw_route_match *m, void *ctx)
{
    (void)m;
    (void)ctx;
    send_status(req, 200, NULL);
}

/* GET /readyz: the store is up and the owner says ready. */
static void on_readyz(struct evhttp_request *req,
                      const struct pgw_route_match *m, void *ctx)
{
    struct pgw_admin *a = ctx;
    const char *why = NULL;
    (void)m;

    if (!pgw_store_is_up(a->store)) {
        why = pgw_store_last_error(a->store);
        if (why == NULL || why[0] == '\0')
            why = "database unavailable";
    } else if (a->ready != NULL && !a->ready(a->ready_arg, &why)) {
        if (why == NULL)
            why = "not ready";
    }
    send_status(req, why != NULL ? 503 : 200, why);
}

/* GET /metrics: the text format. */
static void on_metrics(struct evhttp_request *req,
                       const struct pgw_route_match *m, void *ctx)
{
    struct pgw_admin *a = ctx;
    struct evbuffer *body = evbuffer_new();
    char *text = NULL;
    size_t len = 0;
    (void)m;

    if (a->refresh != NULL)
        a->refresh(a->refresh_arg);
    if (body == NULL || pgw_metrics_render(a->metrics, &text, &len) < 0 ||
        evbuffer_add(body, text, len) < 0) {
        pgw_listener_send_error(req, 503, "out of memory", "", NULL);
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", body);
    }
    free(text);
    if (body != NULL)
        evbuffer_free(body);
}

int pgw_admin_new(const struct pgw_admin_options *opts,
                  struct pgw_admin **ret_admin)
{
    struct pgw_listener_options lo = {
        .base = opts->base,
        .name = "admin",
        .address = opts->address,
        .timeout_ms = opts->timeout_ms,
        .max_header_bytes = opts->max_header_bytes,
        .max_body_bytes = ADMIN_MAX_BODY,
        .max_connections = opts->max_connections,
    };
    struct pgw_admin *a = NULL;
    int err = PGW_ERR_INVAL;

    if (opts->store == NULL)
        goto out;
    err = PGW_ERR_NOMEM;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        goto out;
    a->store = opts->store;
    a->metrics = opts->metrics;
    a->ready = opts->ready;
    a->ready_arg = opts->ready_arg;
    a->refresh = opts->refresh;
    a->refresh_arg = opts->refresh_arg;
    err = pgw_listener_new(&lo, &a->listener);
    if (err < 0)
        goto out;
    err =
        pgw_listener_route(a->listener, GET_OR_HEAD, "/healthz", on_healthz, a);
    if (err == 0)
        err = pgw_listener_route(a->listener, GET_OR_HEAD, "/readyz", on_readyz,
                                 a);
    if (err == 0 && a->metrics != NULL)
        err = pgw_listener_route(a->listener, GET_OR_HEAD, "/metrics",
                                 on_metrics, a);
    if (err < 0)
        goto out;
    *ret_admin = a;
    a = NULL;
out:
    pgw_admin_free(a);
    return err;
}

int pgw_admin_port(const struct pgw_admin *self)
{
    return pgw_listener_port(self->listener);
}

void pgw_admin_free(struct pgw_admin *self)
{
    if (self == NULL)
        return;
    pgw_listener_free(self->listener);
    free(self);
}
