/*
 * The LeanCloud-compatible /1.1/ API (DESIGN §15.2, §15.3) on [server]
 * client_listen: a listener of its own (listener.h: the webhook's TLS
 * files and slow-client guards), on the main loop, so its handlers call
 * the store directly. Phones reach it over the internet; the broker's
 * webhook stays private. Other /1.1/ modules (lc_push.h: /1.1/push)
 * register their routes on the same listener and share its
 * authentication and answers (the end of this file).
 *
 *   POST   /1.1/installations, /1.1/classes/_Installation
 *          create, or update the row with the same installationId or
 *          deviceToken: 201 {"objectId","createdAt"} / 200
 *          {"objectId","updatedAt"} (the whole object with ?new=true)
 *   PUT    /1.1/installations/{objectId}, /1.1/classes/_Installation/{id}
 *          plain values and __ops: 200 {"objectId","updatedAt"}
 *   GET    the same paths: 200 the object
 *   DELETE the same paths, master key only: 200 {}
 *
 * Every request: X-LC-Id naming an app's leancloud_app_id and a key or
 * signature of it (lc_auth.h; the legacy X-AVOSCloud-Application-Id,
 * -Key and -Request-Sign headers count the same). Errors are LeanCloud's
 * {"code":N,"error":"…"} (lc_installation.h's codes): 401 Unauthorized.,
 * 400 naming the field, 404 101, 403 119 (needs the master key), 503 1
 * (database down). A body is at most PGW_LC_API_MAX_BODY_BYTES.
 *
 * Writes follow lc_installation's rules and store_installation's
 * one-statement writes; a write that raced another is read and decided
 * again, at most PGW_LC_API_MAX_TRIES times.
 */
#ifndef PUSHGW_LC_API_H
#define PUSHGW_LC_API_H

#include <cjson/cJSON.h>

#include "lc_auth.h"

struct event_base;
struct evhttp_request;
struct pgw_app;
struct pgw_config;
struct pgw_lc_error;
struct pgw_listener;
struct pgw_store;
struct pgw_lc_api;

/* An installation is a few hundred bytes; LeanCloud's SDKs send less. */
#define PGW_LC_API_MAX_BODY_BYTES (64 * 1024)
#define PGW_LC_API_MAX_TRIES 4

struct pgw_lc_api_options {
    struct event_base *base; /* the main loop: the store's */
    struct pgw_store *store; /* not owned; outlives the API's requests */
    struct pgw_config *cfg;  /* a reference is taken */
    unsigned timeout_ms;     /* per connection and request; 0: 15000 */
};

/*
 * Binds cfg->server.client_listen (with its TLS files) and registers the
 * routes. Errors: those of pgw_listener_new(), PGW_ERR_INVAL (no
 * client_listen), PGW_ERR_NOMEM.
 */
int pgw_lc_api_new(const struct pgw_lc_api_options *opts,
                   struct pgw_lc_api **ret_api);

/* The bound port. */
int pgw_lc_api_port(const struct pgw_lc_api *self);

/* A reloaded config (apps and their keys): a reference is taken. */
void pgw_lc_api_set_config(struct pgw_lc_api *self, struct pgw_config *cfg);

/*
 * Stops accepting; requests already in the store are answered when their
 * store calls end (a store being freed ends them with 503). Free the API
 * after the store. NULL is a no-op for both.
 */
void pgw_lc_api_close(struct pgw_lc_api *self);
void pgw_lc_api_free(struct pgw_lc_api *self);

/* ---- for the other /1.1/ modules (lc_push) ------------------------------ */

/* The client listener, to register more routes on before the loop runs. */
struct pgw_listener *pgw_lc_api_listener(struct pgw_lc_api *self);

/* The config in use (changes on reload: read it per request). */
const struct pgw_config *pgw_lc_api_config(const struct pgw_lc_api *self);

/*
 * The app whose key or signature |req| proves, and the level proved in
 * |*ret_level|; NULL after answering 401 Unauthorized. The app belongs to
 * the config in use: copy what outlives the call.
 */
const struct pgw_app *
pgw_lc_api_authenticate(struct pgw_lc_api *api, struct evhttp_request *req,
                        enum pgw_lc_auth_level *ret_level);

/* The body as a JSON object (cJSON_Delete()); NULL after answering 413
 * (over PGW_LC_API_MAX_BODY_BYTES, code 116) or 400 (107). */
cJSON *pgw_lc_api_parse_body(struct evhttp_request *req);

/* Answers |code| with |o| (NULL: 500). */
void pgw_lc_api_send_obj(struct evhttp_request *req, int code, const cJSON *o);
/* Answers LeanCloud's {"code","error"} of |err| with err->status. */
void pgw_lc_api_send_lc_error(struct evhttp_request *req,
                              const struct pgw_lc_error *err);
void pgw_lc_api_send_error(struct evhttp_request *req, int status, int code,
                           const char *msg);
/* A store error: 500 for PGW_ERR_NOMEM, else 503 code 1 (the database is
 * unavailable) with Retry-After. */
void pgw_lc_api_send_store_error(struct evhttp_request *req, int err);

#endif
