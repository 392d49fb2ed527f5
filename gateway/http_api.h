/*
 * The inbound side of `pushgw serve`, wired together: the webhook and its
 * intake thread (webhook.h), the inbox that admits and stores its events
 * on the loop thread (inbox.h), and the admin listener (admin.h). Each
 * listener is a listener.h object with its routes. Every call of this
 * interface is made on the loop thread of |base|.
 */
#ifndef PUSHGW_HTTP_API_H
#define PUSHGW_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin.h"
#include "inbox.h"
#include "pushgw.h"

struct event_base;
struct pgw_config;
struct pgw_metrics;
struct pgw_store;
struct pgw_http_api;

struct pgw_http_api_options {
    struct event_base *base;
    /* listen, admin_listen, TLS files, limits and apps; a reference is
     * taken (pgw_config_ref()), dropped when replaced or freed. */
    struct pgw_config *cfg;
    /* Not owned; must outlive the api (free the api first). */
    struct pgw_store *store;
    /* Not owned; must outlive the api. NULL: no counting, /metrics 404. */
    struct pgw_metrics *metrics;
    struct pgw_inbox_dispatch dispatch; /* inbox.h */
    pgw_admin_ready_fn ready;           /* admin.h; NULL: ready */
    void *ready_arg;
    unsigned lease_ms;           /* 0: 60000 */
    size_t max_inflight_events;  /* waiting for the store; 0: 10000 */
    unsigned timeout_ms;         /* per-connection and request; 0: 15000 */
    size_t max_header_bytes;     /* 0: 16384 */
    unsigned backlog_refresh_ms; /* 0: 1000 */
};

/*
 * Starts the inbox, the webhook (unless |cfg| has no listen address: then
 * PGW_ERR_INVAL) and the admin listener (unless admin_listen is empty).
 * Errors: as pgw_listener_new() and pgw_webhook_new(). Free with
 * pgw_http_api_free().
 */
int pgw_http_api_new(const struct pgw_http_api_options *opts,
                     struct pgw_http_api **ret_api);

/* The bound port of the webhook (|admin| false) or admin listener, or -1
 * when it is not listening. */
int pgw_http_api_port(const struct pgw_http_api *self, bool admin);

/* SIGHUP reload: see pgw_webhook_set_config(), pgw_inbox_set_config(). */
void pgw_http_api_set_config(struct pgw_http_api *self, struct pgw_config *cfg);

/*
 * Shutdown, first step: the webhook listener closes (new connections are
 * refused; requests on open connections get 503 with Connection: close);
 * requests waiting for the store still get their answer. The admin
 * listener stays. Idempotent.
 */
void pgw_http_api_stop_intake(struct pgw_http_api *self);

/* Events waiting for the store (wait for 0 before freeing, to drain). */
size_t pgw_http_api_pending(const struct pgw_http_api *self);

/* The current backlog estimate (inbox.h). */
int64_t pgw_http_api_backlog(const struct pgw_http_api *self);

/* Backlog counts answered by the store since start (inbox.h). */
uint64_t pgw_http_api_backlog_counted(const struct pgw_http_api *self);

/*
 * Stops the intake thread; requests still waiting are answered 503 (best
 * effort: their connections close at once, so drain with
 * pgw_http_api_pending() first); the listeners close. Before
 * pgw_store_free(). NULL is a no-op.
 */
void pgw_http_api_free(struct pgw_http_api *self);

#endif
