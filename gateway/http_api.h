/*
 * The inbound side of `pushgw serve` (DESIGN §6), on the shared event_base
 * with libevent's evhttp:
 *
 * Webhook listener ([server] listen, TLS when tls_cert_file/tls_key_file
 * are set):
 *   POST /v1/apps/{appId}/receivers-offline         one event
 *   POST /1.1/functions/_receiversOffline           one event, app in X-LC-Id
 *   POST /v1/apps/{appId}/receivers-offline/batch   {"events":[…]}, 1..1000
 * Checks, in this order: unknown path 404; method other than POST 405;
 * unknown app 404 (field "appId", or "X-LC-Id" for the alias); missing or
 * wrong X-LC-Hook-Key 401 (constant time: HMAC-SHA256 digests of both
 * under a per-process random key, compared with CRYPTO_memcmp, so neither
 * content nor length leaks); Content-Type not application/json (parameters
 * allowed) 415; body over [server] max_body_bytes 413; invalid body 400
 * with the field (batch: "events[3].convId"; a batch is all or nothing);
 * backlog estimate over [server] max_backlog_events, or too many events
 * waiting for the store, 429 with Retry-After; store down or insert
 * failed 503 with Retry-After. Success: 202 {"eventId":"<id>",
 * "duplicate":false|true} (batch: {"events":[{…},…]} in request order),
 * sent only from the store's insert callback, after the commit.
 * Every error body is {"error":"…","field":"…"} (field "" when none),
 * Content-Type application/json.
 *
 * Two limits are enforced by libevent itself, with its own (HTML) body:
 * request headers over |max_header_bytes|, and bodies whose Content-Length
 * exceeds max_body_bytes + PGW_HTTP_API_BODY_SLACK (refused before being
 * read). libevent 2.1.12 answers 400 to the first and 413 to the second,
 * and closes (tests/reliability/test_hostile.c). Bodies between the two
 * get the JSON 413.
 * Slow clients: each connection has a read/write timeout (|timeout_ms|),
 * so an idle client is closed; and since that timeout restarts at every
 * byte read, each request also has a deadline of |timeout_ms| from its
 * first byte to its last: a client trickling its request slower than
 * that is closed too (slowloris; checked every quarter deadline). libevent 2.1
 * has no connection cap (evhttp_set_max_connections is 2.2); memory per
 * connection is bounded by the header and body limits and the timeouts reap
 * idle ones. Keep-alive is kept (HTTP/1.1 default).
 *
 * A batch is inserted as separate events queued in one loop iteration, so
 * the store usually commits them together; if some commit and others fail
 * the answer is 503 and the committed ones stay (the broker's retry of the
 * whole batch is then deduplicated by msgId).
 *
 * Backlog: estimate = the last pgw_store_count_backlog() result (refreshed
 * every |backlog_refresh_ms|) + new events accepted since that query was
 * sent. It is also the pushgw_backlog_events gauge.
 *
 * Admin listener ([server] admin_listen; none when empty): GET /metrics
 * (text format 0.0.4), GET /healthz (200 {"status":"ok"}), GET /readyz
 * (200 {"status":"ok"} when the store is up and |ready| says so; else 503
 * {"status":"unavailable","reason":"…"}). Other paths 404, other methods
 * 405.
 *
 * Metrics: pushgw_events_total{app,result} with result accepted, duplicate
 * (per event), and invalid, unauthorized, unknown_app (app=""),
 * too_large, unsupported_media, backlog_full, unavailable (per request;
 * for a batch whose inserts failed, per event). Refused requests are not
 * logged; each listener start is (info, with the address).
 *
 * Threads: the webhook listener runs on a thread and event_base of its
 * own (the intake thread: reading, parsing and validating requests,
 * checking keys, writing answers), started by pgw_http_api_new() and
 * joined by pgw_http_api_free(); everything else, the dispatch callbacks,
 * the store calls and the metrics included, runs on the loop thread of
 * |base|, and so must every call of this interface.
 */
#ifndef PUSHGW_HTTP_API_H
#define PUSHGW_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pushgw.h"

struct event_base;
struct pgw_config;
struct pgw_event;
struct pgw_metrics;
struct pgw_store;
struct pgw_http_api;

#define PGW_HTTP_API_MAX_BATCH 1000
#define PGW_HTTP_API_BODY_SLACK (64 * 1024)

/*
 * How accepted events reach the dispatcher, so this process works them
 * from memory (DESIGN §3, docs/SERVICE.md "the inserting process takes the
 * lease").
 *
 * |reserve| is asked right before each insert, with the event's number of
 * offline peers. true reserves one slot in the dispatcher: the event is
 * inserted with its lease taken by this process for |lease_ms|. false (the
 * dispatcher is full) inserts it with no lease: another process, or the
 * claimer, takes it later. NULL: always true.
 *
 * |accepted| is called exactly once for every reservation, on the loop
 * thread, after the insert finished: with the committed new event's id,
 * its app id (valid during the call) and the parsed event |ev|, whose
 * ownership passes to the callee (free with pgw_event_free()); or with
 * |ev| NULL and |event_id| 0 when the insert failed or was a duplicate
 * (the slot is free again, nothing to work); |recipients| is the number
 * given to |reserve|. Never called after
 * pgw_http_api_free(): events committed later keep their lease until it
 * expires. NULL |accepted|: every insert is made without a lease.
 */
struct pgw_http_api_dispatch {
    bool (*reserve)(void *arg, size_t recipients);
    void (*accepted)(void *arg, int64_t event_id, const char *app_id,
                     struct pgw_event *ev, size_t recipients);
    /* once per request whose new events include one stored without a
     * reservation (may be NULL) */
    void (*stored)(void *arg);
    void *arg;
};

/*
 * Readiness for /readyz besides the store: true when templates and
 * credentials are loaded; otherwise false with a static or long-lived
 * one-line |*ret_reason|. NULL: ready.
 */
typedef bool (*pgw_http_api_ready_fn)(void *arg, const char **ret_reason);

struct pgw_http_api_options {
    struct event_base *base;
    /* listen, admin_listen, TLS files, limits and apps; a reference is
     * taken (pgw_config_ref()), dropped when replaced or freed. */
    struct pgw_config *cfg;
    /* Not owned; must outlive the api (free the api first). */
    struct pgw_store *store;
    /* Not owned; must outlive the api. NULL: no counting, /metrics 404. */
    struct pgw_metrics *metrics;
    struct pgw_http_api_dispatch dispatch;
    pgw_http_api_ready_fn ready;
    void *ready_arg;
    unsigned lease_ms;           /* 0: 60000 */
    size_t max_inflight_events;  /* waiting for the store; 0: 10000 */
    unsigned timeout_ms;         /* per-connection read/write; 0: 15000 */
    size_t max_header_bytes;     /* 0: 16384 */
    unsigned backlog_refresh_ms; /* 0: 1000 */
};

/*
 * Binds the webhook listener (and the admin listener unless admin_listen
 * is empty) on |opts->base|, loads the TLS certificate when configured,
 * starts the backlog timer and logs one line per listener. Ports may be 0
 * (see pgw_http_api_port()). Free with pgw_http_api_free().
 * Errors: PGW_ERR_CONFIG (bad address), PGW_ERR_TLS (certificate or key
 * unusable), PGW_ERR_IO (bind failed), PGW_ERR_INVAL (missing options),
 * PGW_ERR_NOMEM. Each failure is logged once with the reason.
 */
int pgw_http_api_new(const struct pgw_http_api_options *opts,
                     struct pgw_http_api **ret_api);

/*
 * The bound port of the webhook (|admin| false) or admin listener, or -1
 * when it is not listening.
 */
int pgw_http_api_port(const struct pgw_http_api *self, bool admin);

/*
 * SIGHUP reload: later requests use |cfg|'s apps, hook keys and limits
 * (a reference is taken; the previous config's reference is dropped).
 * Requests already past their checks finish with what they validated.
 * Listen addresses and TLS files are read only at creation.
 */
void pgw_http_api_set_config(struct pgw_http_api *self, struct pgw_config *cfg);

/*
 * Shutdown, first step: closes the webhook listener (new connections are
 * refused); requests on open connections get 503 with Connection: close;
 * requests waiting for the store still get their answer. The admin
 * listener stays. Idempotent.
 */
void pgw_http_api_stop_intake(struct pgw_http_api *self);

/* Events waiting for the store (wait for 0 before freeing, to drain). */
size_t pgw_http_api_pending(const struct pgw_http_api *self);

/* The current backlog estimate (see above). */
int64_t pgw_http_api_backlog(const struct pgw_http_api *self);

/*
 * Requests still waiting are answered 503 (best effort: their connections
 * close at once, so drain with pgw_http_api_pending() first); the
 * listeners and connections close. Store callbacks arriving later are
 * absorbed (the events they commit keep their lease until it expires).
 * Call on the loop thread, before pgw_store_free(). NULL is a no-op.
 */
void pgw_http_api_free(struct pgw_http_api *self);

#endif
