/*
 * The dispatcher of `serve` (docs/SERVICE.md): works accepted events —
 * server hook, resolution, installations with the atomic badge increment,
 * payloads, sends through apns/fcm — and writes each event's outcomes back
 * in one transaction; claims events left by others (expired leases) and
 * due retries; renews the leases of the events it holds.
 *
 * The runtime (config, templates, APNs keys, FCM accounts) is replaced as
 * a whole on reload; events already being worked finish with the runtime
 * they started with.
 */
#ifndef PUSHGW_DISPATCH_H
#define PUSHGW_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dispatch_policy.h"
#include "event.h"
#include "pushgw.h"

struct event_base;
struct evdns_base;
struct pgw_store;
struct pgw_curlmulti;
struct pgw_metrics;
struct pgw_template_set;
struct pgw_dispatch;

struct pgw_dispatch_options {
    struct event_base *base;
    struct evdns_base *dns;
    struct pgw_store *store;
    struct pgw_curlmulti *cm;
    struct pgw_metrics *metrics; /* may be NULL */
    unsigned lease_ms;           /* 0: 30000 */
    unsigned claim_interval_ms;  /* 0: 1000 */
    size_t max_events;           /* events in memory; 0: 2000 */
    /* Pushes awaiting an answer, 0: 10000; twice that while far
     * providers' answers need it (pgw_dispatch_inflight_bound(),
     * dispatch_policy.h). */
    size_t max_inflight;
    /* Tests shorten the provider reconnect backoff (0: defaults). */
    unsigned backoff_initial_ms;
    unsigned backoff_max_ms;
};

/* Creates the dispatcher; it claims nothing before a runtime is set.
 * Errors: PGW_ERR_INVAL, PGW_ERR_NOMEM. */
int pgw_dispatch_new(const struct pgw_dispatch_options *opts,
                     struct pgw_dispatch **ret_d);

/*
 * Builds a runtime from |cfg| (a reference is taken: pgw_config_ref())
 * and |templates| (a reference is taken): an APNs sender with every
 * team's key, an FCM sender with every service account. On success it
 * replaces the current runtime; on failure the current one stays and
 * every problem is added to |diag|. Errors: PGW_ERR_CONFIG,
 * PGW_ERR_NOMEM.
 */
int pgw_dispatch_set_runtime(struct pgw_dispatch *self, struct pgw_config *cfg,
                             struct pgw_template_set *templates,
                             struct pgw_diag *diag);

/* The current runtime (NULL before the first pgw_dispatch_set_runtime());
 * valid until the next one. */
const struct pgw_runtime *pgw_dispatch_runtime(const struct pgw_dispatch *self);

/* True while another event can be taken into memory now. */
bool pgw_dispatch_can_accept(const struct pgw_dispatch *self);

/*
 * Reserves room for one event of |recipients| offline peers about to be
 * inserted with this process's lease (http_api asks before each insert);
 * false when full. Every reservation is ended by one pgw_dispatch_accept()
 * call with the same |recipients|.
 */
bool pgw_dispatch_reserve(struct pgw_dispatch *self, size_t recipients);

/*
 * Events were just stored without this process's lease (no room when they
 * came, see pgw_dispatch_reserve()): they are claimed as soon as there is
 * room. Called once their insert committed: a claim sent before that
 * would not see them, and they would wait for the claim timer.
 */
void pgw_dispatch_backlog_stored(struct pgw_dispatch *self);

/*
 * Works the event |event_id| of |app_id| that this process inserted with
 * its lease, ending one reservation. Takes ownership of |ev| (freed with
 * pgw_event_free()), also on failure; |ev| NULL only ends the reservation
 * (the insert failed or was a duplicate). Returns 0 or PGW_ERR_NOMEM /
 * PGW_ERR_CLOSED (the lease then expires and the event is claimed again).
 */
int pgw_dispatch_accept(struct pgw_dispatch *self, int64_t event_id,
                        const char *app_id, struct pgw_event *ev,
                        size_t recipients);

/* Sets the gauges the dispatcher owns (in-flight requests, provider
 * connections by state): a metrics collector. */
void pgw_dispatch_collect(void *self, struct pgw_metrics *metrics);

/*
 * Stops claiming; when every event in memory is finished, or after
 * |timeout_ms|, gives back the leases still held and calls |done|(|arg|)
 * from the loop.
 */
void pgw_dispatch_drain(struct pgw_dispatch *self, unsigned timeout_ms,
                        void (*done)(void *arg), void *arg);

/*
 * Stops for good: no more claims, the senders are cancelled, events in
 * memory are dropped unrecorded (their leases expire, so another process
 * or the next start works them again). Events waiting on a store or hook
 * callback are freed when it comes: free the store and the curlmulti
 * after this call and before pgw_dispatch_free(). NULL is a no-op.
 */
void pgw_dispatch_stop(struct pgw_dispatch *self);

/* Frees everything (after pgw_dispatch_stop() if it was not called).
 * NULL is a no-op. */
void pgw_dispatch_free(struct pgw_dispatch *self);

#endif
