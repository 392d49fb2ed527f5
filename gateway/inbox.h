/*
 * The inbox: where parsed webhook events become stored events, on the
 * loop thread (DESIGN §6). For each request the intake thread parsed
 * (webhook.c), the inbox admits it or refuses it, queues the inserts,
 * hands each new event to the dispatcher with its lease, and answers
 * once every insert finished (through the webhook's listener):
 *   backlog estimate over [server] max_backlog_events, or too many
 *   events waiting for the store: 429, Retry-After 1;
 *   store down, or an insert failed: 503, Retry-After 5;
 *   after pgw_inbox_stop(): 503 "shutting down", Connection: close;
 *   otherwise 202 {"eventId":"<id>","duplicate":false|true} (a batch:
 *   {"events":[{…},…]} in request order), sent only after the commit.
 * A batch is inserted as separate events queued in one loop iteration,
 * so the store usually commits them together; if some commit and others
 * fail the answer is 503 and the committed ones stay (the broker's retry
 * of the whole batch is then deduplicated by msgId).
 *
 * Backlog: estimate = the last pgw_store_count_backlog() result
 * (refreshed every |backlog_refresh_ms|) + new events accepted since
 * that query was sent. It is also the pushgw_backlog_events gauge.
 *
 * It also owns pushgw_events_total{app,result}: the results counted on
 * the intake thread reach it with pgw_inbox_count().
 *
 * Threads: pgw_inbox_req_*(), pgw_inbox_submit() and pgw_inbox_count()
 * may be called from any thread; everything else on the loop thread of
 * |base|, where the inbox does all its work.
 */
#ifndef PUSHGW_INBOX_H
#define PUSHGW_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp_request;
struct pgw_config;
struct pgw_event;
struct pgw_listener;
struct pgw_metrics;
struct pgw_store;
struct pgw_inbox;
struct pgw_inbox_req;

#define PGW_INBOX_RETRY_AFTER_BUSY "1"
#define PGW_INBOX_RETRY_AFTER_DOWN "5"

/* Results of pushgw_events_total{result}. */
enum pgw_inbox_result {
    PGW_INBOX_ACCEPTED,
    PGW_INBOX_DUPLICATE,
    PGW_INBOX_INVALID,
    PGW_INBOX_UNAUTHORIZED,
    PGW_INBOX_UNKNOWN_APP,
    PGW_INBOX_TOO_LARGE,
    PGW_INBOX_UNSUPPORTED_MEDIA,
    PGW_INBOX_BACKLOG_FULL,
    PGW_INBOX_UNAVAILABLE,
    PGW_INBOX_RESULT_COUNT,
};

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
 * given to |reserve|. Never called after pgw_inbox_free(): events
 * committed later keep their lease until it expires. NULL |accepted|:
 * every insert is made without a lease.
 */
struct pgw_inbox_dispatch {
    bool (*reserve)(void *arg, size_t recipients);
    void (*accepted)(void *arg, int64_t event_id, const char *app_id,
                     struct pgw_event *ev, size_t recipients);
    /* once per request whose new events include one stored without a
     * reservation (may be NULL) */
    void (*stored)(void *arg);
    void *arg;
};

struct pgw_inbox_options {
    struct event_base *base;
    /* [server] max_backlog_events; a reference is taken. */
    struct pgw_config *cfg;
    struct pgw_store *store;     /* not owned; must outlive the inbox */
    struct pgw_metrics *metrics; /* not owned; NULL: no counting */
    struct pgw_inbox_dispatch dispatch;
    unsigned lease_ms;           /* 0: 60000 */
    size_t max_inflight_events;  /* waiting for the store; 0: 10000 */
    unsigned backlog_refresh_ms; /* 0: 1000 */
};

/*
 * Starts the backlog timer (and a first count). Errors: PGW_ERR_INVAL,
 * PGW_ERR_IO, PGW_ERR_NOMEM. Free with pgw_inbox_free().
 */
int pgw_inbox_new(const struct pgw_inbox_options *opts,
                  struct pgw_inbox **ret_inbox);

/* SIGHUP reload: later admissions use |cfg| (a reference is taken). */
void pgw_inbox_set_config(struct pgw_inbox *self, struct pgw_config *cfg);

/* ---- requests (any thread) ---------------------------------------------- */

/*
 * One request's |n| events for |app_id| (copied); |batch| shapes the
 * answer. NULL when out of memory. Free with pgw_inbox_req_free() unless
 * submitted.
 */
struct pgw_inbox_req *pgw_inbox_req_new(const char *app_id, size_t n,
                                        bool batch);

/*
 * Event |i|: |ev| (taken) and the JSON text stored for it, |len| bytes:
 * owned and freed with cJSON_free() when |own|, else borrowed (the
 * request's body, valid until the request is answered).
 */
void pgw_inbox_req_set(struct pgw_inbox_req *r, size_t i, struct pgw_event *ev,
                       char *text, size_t len, bool own);

void pgw_inbox_req_free(struct pgw_inbox_req *r);

/*
 * Hands |r| (taken) over to the loop thread, which admits it and answers
 * |req| through |l| (pgw_listener_reply_*()), exactly once. Cannot fail.
 */
void pgw_inbox_submit(struct pgw_inbox *self, struct pgw_inbox_req *r,
                      struct pgw_listener *l, struct evhttp_request *req);

/* Counts |n| results |result| for |app| ("" for none), on the loop
 * thread later. A count is lost without memory. */
void pgw_inbox_count(struct pgw_inbox *self, const char *app,
                     enum pgw_inbox_result result, double n);

/* ---- loop thread --------------------------------------------------------- */

/*
 * Shutdown, first step: requests submitted from now on are answered 503
 * "shutting down" with Connection: close; those admitted still get their
 * answer. Idempotent.
 */
void pgw_inbox_stop(struct pgw_inbox *self);

/* Events waiting for the store (wait for 0 before freeing, to drain). */
size_t pgw_inbox_pending(const struct pgw_inbox *self);

/* The current backlog estimate (see above). */
int64_t pgw_inbox_backlog(const struct pgw_inbox *self);

/*
 * How many backlog counts the store has answered since start: an estimate
 * taken after it moved past a value is based on a count sent after that
 * moment (a test waits on it instead of guessing the refresh time).
 */
uint64_t pgw_inbox_backlog_counted(const struct pgw_inbox *self);

/* Sets the pushgw_backlog_events gauge from the estimate. */
void pgw_inbox_update_gauge(struct pgw_inbox *self);

/*
 * Once nothing submits any more (the intake thread stopped): requests
 * still submitted are answered 503, those waiting for the store too (best
 * effort: their connections close), through their listeners, which must
 * still exist. Store callbacks arriving later are absorbed (the events
 * they commit keep their lease until it expires). Before
 * pgw_store_free(). NULL is a no-op.
 */
void pgw_inbox_free(struct pgw_inbox *self);

#endif
