/*
 * The LeanCloud-compatible /1.1/ API (DESIGN §15.2, §15.3) on [server]
 * client_listen: a listener of its own (listener.h: the webhook's TLS
 * files and slow-client guards), on the main loop, so its handlers call
 * the store directly. Phones reach it over the internet; the broker's
 * webhook stays private.
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

struct event_base;
struct pgw_config;
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

#endif
