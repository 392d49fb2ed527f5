/*
 * Inside the dispatcher: what dispatch.c (events: jobs, pacing, claims),
 * retry.c (claimed retries), broadcast.c (API pushes) and drain.c
 * (shutdown) share. Not for other modules.
 */
#ifndef PUSHGW_DISPATCH_INT_H
#define PUSHGW_DISPATCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"
#include "outcome.h"
#include "push.h"
#include "runtime.h"
#include "store.h"
#include "util/list.h"

struct event;
struct job;
struct pgw_metric_family;
struct pgw_metrics;
struct timespec;
struct pgw_metric_series;

struct pgw_dispatch {
    struct pgw_dispatch_options o;
    struct pgw_runtime *rt;
    struct pgw_list jobs; /* struct job, oldest first */
    size_t n_jobs;
    size_t reserved;            /* pgw_dispatch_reserve() not yet accepted */
    size_t reserved_recipients; /* and their offline peers */
    struct pgw_list runtimes;   /* every live runtime (runtime.h) */
    struct event *pump_ev;      /* deferred dispatch_pump() */
    bool closing;               /* pgw_dispatch_stop() ran */
    size_t inflight[PGW_PROVIDER_COUNT];
    /* Recent sends per provider (halved as they grow) and the in-flight
     * cap they give (update_cap), with the sends since. */
    uint32_t recent[PGW_PROVIDER_COUNT];
    size_t cap;
    bool cap_known; /* the cap follows known streams (else max_inflight) */
    unsigned sends_since_cap;
    /* The in-flight bound the cap stays under: from max_inflight up to
     * INFLIGHT_CEIL_FACTOR times it while answers come back at a rate
     * that needs more over the path's round trip (update_bound). Sends
     * in all per provider, and at the start of the current window of
     * answers; answers per second, a decaying maximum; each provider's
     * round trip as its pools last measured it. */
    size_t bound;
    uint64_t sent_total[PGW_PROVIDER_COUNT];
    uint64_t window_answers[PGW_PROVIDER_COUNT];
    int64_t window_start_ms;
    double answer_rate[PGW_PROVIDER_COUNT];
    uint32_t rtt_us[PGW_PROVIDER_COUNT];
    size_t retries_inflight;  /* claimed retries not finished (retry.c) */
    struct pgw_list retries;  /* their struct retry_ctx (retry.c) */
    struct pgw_broadcast *bc; /* the sender of API pushes (broadcast.c) */
    /* Pushes built and not answered, plus the recipients of lookups out;
     * bounded by max_pending (see PENDING_PUSHES_FACTOR). */
    size_t pushes_pending;
    size_t max_pending;
    struct pgw_list lookup_wait; /* struct job, FIFO */
    /* Recipients of the jobs in lookup_wait: while it is over max_pending
     * no event is taken into memory (intake leaves them unleased in the
     * database, claims wait), so a backlog stays in the database. */
    size_t wait_recipients;
    bool claiming;
    /* pgw_dispatch_backlog_stored() calls, and their count when the claim
     * in flight was sent: one that came after may have committed after
     * the claim's snapshot, so the backlog is claimed again */
    uint64_t stored_gen, claim_stored_gen;
    bool claiming_retries;
    /* Unleased events may be waiting in the database: the intake stored
     * some (pgw_dispatch_backlog_stored) or the last claim came back
     * full. Claimed again as soon as there is room, not at the next tick
     * of claim_timer, which alone would pace a backlog at one claim a
     * tick. */
    bool backlog_hint;
    /* Recipients per event, a moving average: how many claimed events
     * the pending-pushes bound has room for. */
    double avg_recipients;
    size_t claim_asked; /* events asked for by the claim out */
    size_t claim_batch; /* room a backlog claim waits for */
    bool draining;
    struct event *claim_timer;
    struct event *lease_timer;
    struct event *drain_timer;
    struct event *drain_deadline;
    void (*drain_done)(void *arg);
    void *drain_arg;
    /* metrics */
    struct pgw_metric_family *m_pushes;
    /* of m_pushes, per provider */
    struct pgw_metric_series *s_delivered[PGW_PROVIDER_COUNT];
    struct pgw_metric_family *m_events;
    struct pgw_metric_family *m_hook;
    struct pgw_metric_family *m_invalidated;
    struct pgw_metric_series *m_latency[PGW_PROVIDER_COUNT];
};

/* ---- dispatch.c, for retry.c: pacing ---- */

/* Pacing: room for another push in flight; a push handed to a sender
 * (the caller decrements d->inflight when it is answered). */
bool dispatch_inflight_room(const struct pgw_dispatch *d);
void dispatch_count_send(struct pgw_dispatch *d, enum pgw_provider p);
/* The cap for work that can wait (broadcast.c): the in-flight cap once
 * the providers' streams are known; until then (start-up, before the
 * first SETTINGS) its floor, so that a whole page does not fill the
 * pools' queues ahead of the events to come. */
size_t dispatch_bulk_cap(const struct pgw_dispatch *d);

/* ---- outcome.c ---- */

/* Registers the metrics the dispatcher owns in |m|. */
void dispatch_metrics_init(struct pgw_dispatch *d, struct pgw_metrics *m);

enum dispatch_fate {
    DISPATCH_DELIVERED,
    DISPATCH_RETRY,  /* a retry row, due at *ret_at */
    DISPATCH_FAILED, /* a failure of *ret_kind to record, with |o|'s reason */
};

/*
 * What becomes of the answer |o| to |p| of app |app| worked with |rt|
 * (on RETRY its attempts are counted in |p| and the retry is planned):
 * counted, logged when final, and returned, with |*ret_kind| written on
 * DISPATCH_FAILED and |*ret_at| on DISPATCH_RETRY.
 */
enum dispatch_fate
dispatch_answer(struct pgw_dispatch *d, const struct pgw_runtime *rt,
                const char *app, int64_t event_id, struct pgw_push *p,
                const struct pgw_outcome *o,
                enum pgw_store_failure_kind *ret_kind, int64_t *ret_at);

/* pushgw_pushes_total: one push's outcome (reason may be NULL). */
void dispatch_count_push(struct pgw_dispatch *d, enum pgw_provider p,
                         const char *outcome, const char *reason);
void dispatch_count_delivered(struct pgw_dispatch *d, enum pgw_provider p);

/* pushgw_events_finished_total: how one event's work ended. */
void dispatch_count_event(struct pgw_dispatch *d, const char *app,
                          const char *result);

/* pushgw_push_latency_seconds (see outcome.c: observed only there). */
void dispatch_observe_latency(struct pgw_dispatch *d, enum pgw_provider p,
                              const struct timespec *accepted);

/* Logs the final failure of |p| of |app|: "push |what|". */
/*
 * The result of an event that had pushes to send: "sent" when each of
 * |pushes| was delivered, "partly_sent" when some were, "none_delivered"
 * when none was (they failed, or wait as retry rows: push_retries).
 */
const char *dispatch_sent_result(size_t pushes, size_t delivered);

/* What an ended event's info line says. */
struct dispatch_event_end {
    int64_t event_id;
    const char *app, *conv_id, *result;
    size_t pushes, delivered, retrying;
    size_t failed[3]; /* by enum pgw_store_failure_kind */
    const struct timespec *accepted;
};

/* One info line per event that ended: what it was and how it went. */
void dispatch_log_event_end(const struct dispatch_event_end *e);

void dispatch_log_final(const char *app, int64_t event_id,
                        const struct pgw_push *p, const struct pgw_outcome *o,
                        const char *what);

/* What to do with a RETRY outcome of |p| (its attempts counted), with
 * the settings of |rt|: PGW_RETRY_AT and the time in |*ret_at|, or the
 * failure kind to record in |*ret_kind|. */
enum pgw_retry_plan dispatch_plan_retry(const struct pgw_runtime *rt,
                                        const struct pgw_push *p,
                                        const struct pgw_outcome *o,
                                        int64_t *ret_at,
                                        enum pgw_store_failure_kind *ret_kind);

/* ---- broadcast.c, for dispatch.c ---- */

/* Creates d->bc. Errors: PGW_ERR_NOMEM. */
int broadcast_new(struct pgw_dispatch *d);
/* The claim timer (and the first runtime): claims due API pushes. */
void broadcast_tick(struct pgw_dispatch *d);
/* After the jobs had their turn: the broadcasts send what room is left
 * to them (their share: broadcast.c's room()). */
void broadcast_pump(struct pgw_dispatch *d);
/* No API push in memory (draining may end). */
bool broadcast_idle(const struct pgw_dispatch *d);
/* After the senders were cancelled (pgw_dispatch_stop). */
void broadcast_stop(struct pgw_dispatch *d);
void broadcast_free(struct pgw_dispatch *d);

/* ---- retry.c, for dispatch.c ---- */

/* Claims due retries when there is room (the claim timer). */
void dispatch_claim_retries(struct pgw_dispatch *d);

#endif
