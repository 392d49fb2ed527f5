/*
 * The webhook (DESIGN §6): the intake thread, its listener ([server]
 * listen, TLS when tls_cert_file/tls_key_file are set) and its routes:
 *   POST /v1/apps/{appId}/receivers-offline         one event
 *   POST /1.1/functions/_receiversOffline           one event, app in X-LC-Id
 *   POST /v1/apps/{appId}/receivers-offline/batch   {"events":[…]}, 1..1000
 * Checks, in this order: framing (repeated Content-Length and the like
 * 400, headers too large 431: listener.h); unknown path 404; method other
 * than POST 405; body over [server] max_body_bytes 413; unknown app 404
 * (field "appId", or "X-LC-Id" for the alias); missing or wrong
 * X-LC-Hook-Key 401 (constant time: HMAC-SHA256 digests of both under a
 * per-process random key, compared with CRYPTO_memcmp, so neither content
 * nor length leaks); Content-Type not application/json (parameters
 * allowed) 415; invalid body 400 with the field (batch:
 * "events[3].convId"; a batch is all or nothing). What passes goes to the
 * inbox (inbox.h), which admits, stores and answers. Every error body is
 * {"error":"…","field":"…"} (field "" when none), application/json.
 * Refused requests are not logged; the listener's start is.
 *
 * Threads: the listener runs on a thread and event_base of its own (the
 * intake thread: reading, parsing and validating requests, checking keys,
 * writing answers), started by pgw_webhook_new(); the inbox, the metrics
 * and the store stay on the loop thread, reached through the inbox's
 * mailbox. Every call of this interface is made on the loop thread.
 */
#ifndef PUSHGW_WEBHOOK_H
#define PUSHGW_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

struct pgw_config;
struct pgw_inbox;
struct pgw_webhook;

#define PGW_WEBHOOK_MAX_BATCH 1000

struct pgw_webhook_options {
    /* listen, TLS files, limits and apps; a reference is taken. */
    struct pgw_config *cfg;
    /* Not owned; must outlive the webhook's thread (pgw_webhook_join()). */
    struct pgw_inbox *inbox;
    unsigned timeout_ms;     /* per connection and request; 0: 15000 */
    size_t max_header_bytes; /* 0: 16384 */
};

/*
 * Binds the listener, registers the routes and starts the intake thread.
 * Errors: as pgw_listener_new(), PGW_ERR_CRYPTO (no random key or HMAC),
 * PGW_ERR_NOMEM.
 */
int pgw_webhook_new(const struct pgw_webhook_options *opts,
                    struct pgw_webhook **ret_w);

/* Whether the listener does not accept now (listener.h). */
bool pgw_webhook_saturated(const struct pgw_webhook *self);

/* The bound port, or -1 once stopped. */
int pgw_webhook_port(const struct pgw_webhook *self);

/*
 * SIGHUP reload: later requests use |cfg|'s apps, hook keys and body
 * limit (a reference is taken). The listen address and TLS files are read
 * only at creation.
 */
void pgw_webhook_set_config(struct pgw_webhook *self, struct pgw_config *cfg);

/*
 * Closes the listener and waits until it is closed: new connections are
 * refused; requests on open connections get 503 with Connection: close.
 * Idempotent.
 */
void pgw_webhook_stop(struct pgw_webhook *self);

/*
 * Stops the intake thread: from then on the calling thread owns the
 * listener (answers posted to it are sent by pgw_webhook_free()).
 * Idempotent.
 */
void pgw_webhook_join(struct pgw_webhook *self);

/* Joins, sends the answers still queued, closes every connection. NULL
 * is a no-op. */
void pgw_webhook_free(struct pgw_webhook *self);

#endif
