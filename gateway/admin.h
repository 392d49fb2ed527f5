/*
 * The admin listener ([server] admin_listen; none when empty), on the loop
 * thread, with the same slow-client guards as the webhook (listener.h):
 *   GET /metrics  the text format 0.0.4 (404 without metrics)
 *   GET /healthz  200 {"status":"ok"}
 *   GET /readyz   200 {"status":"ok"} when the store is up and |ready|
 *                 says so; else 503 {"status":"unavailable","reason":"…"}
 * HEAD too; other paths 404, other methods 405 (JSON error bodies).
 */
#ifndef PUSHGW_ADMIN_H
#define PUSHGW_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct pgw_metrics;
struct pgw_store;
struct pgw_admin;

/*
 * Readiness besides the store: true when ready; otherwise false with a
 * static or long-lived one-line |*ret_reason|.
 */
typedef bool (*pgw_admin_ready_fn)(void *arg, const char **ret_reason);

struct pgw_admin_options {
    struct event_base *base;     /* the loop thread's */
    const char *address;         /* host:port */
    struct pgw_store *store;     /* not owned; must outlive the admin */
    struct pgw_metrics *metrics; /* not owned; NULL: /metrics 404 */
    pgw_admin_ready_fn ready;    /* NULL: ready when the store is up */
    void *ready_arg;
    /* Called before /metrics is rendered, to set gauges (may be NULL). */
    void (*refresh)(void *arg);
    void *refresh_arg;
    unsigned timeout_ms;     /* per connection and request; 0: 15000 */
    size_t max_header_bytes; /* 0: 16384 */
    size_t max_connections;  /* 0: no cap (listener.h) */
};

/* Binds and logs one line. Errors: as pgw_listener_new(). */
int pgw_admin_new(const struct pgw_admin_options *opts,
                  struct pgw_admin **ret_admin);

/* The bound port. */
int pgw_admin_port(const struct pgw_admin *self);

/* Closes the listener and its connections. NULL is a no-op. */
void pgw_admin_free(struct pgw_admin *self);

#endif
