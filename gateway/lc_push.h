/*
 * The push API (DESIGN §15.5) on the /1.1/ listener of lc_api.h:
 *
 *   POST /1.1/push            a push request (lc_pushreq.h: what the body
 *                             may hold), stored in api_pushes; 200
 *                             {"objectId","createdAt"} once committed. A
 *                             repeated req_id within 5 minutes answers the
 *                             first request's objectId and stores nothing.
 *   GET  /1.1/push/{objectId} its status: {"objectId","createdAt",
 *                             "status": scheduled | in-queue | sending |
 *                             done, "devices","successes","invalidTokens",
 *                             "errors","expired" (pushes dropped at
 *                             the end of the validity), "result" once
 *                             done, and the request as stored}
 *
 * Keys: the master key; POST also takes the app key when the app has
 * allow_client_push = true. Otherwise 401 with code 119 (LeanCloud's "the
 * operation needs the master key"); no key at all: 401 Unauthorized.
 * Errors are LeanCloud's {"code","error"}: 400 (lc_pushreq.h), 413 (116)
 * and 400 (107) for bodies as the installation API, 404 (101) for an
 * unknown objectId or another app's, 429 (Retry-After) when the backlog
 * is over its bound: the events' (the engine is behind: [server]
 * max_backlog_events) or PGW_LC_PUSH_MAX_PENDING push requests not done,
 * 503 (code 1, Retry-After) when Postgres is unavailable.
 *
 * Once a new request is stored, |stored| is called with its api_pushes
 * id, so that the sender takes it without waiting for its next look.
 *
 * It owns pushgw_push_requests_total{app,result}: what POST /1.1/push
 * answered (the sibling of pushgw_events_total for the push API):
 * accepted, duplicate (a req_id seen within 5 minutes), invalid (400,
 * 413), unauthorized (401: no key, a wrong one, or the app key without
 * allow_client_push), backlog_full (429), unavailable (503). The app is
 * the pushgw app id ("" when none was proved).
 */
#ifndef PUSHGW_LC_PUSH_H
#define PUSHGW_LC_PUSH_H

#include <stdint.h>

struct pgw_lc_api;
struct pgw_metrics;
struct pgw_store;
struct pgw_lc_push;

/* Push requests stored and not done (scheduled or sending) at most: each
 * may reach every device of its app. LeanCloud let a business app queue
 * 1000 scheduled pushes. */
#define PGW_LC_PUSH_MAX_PENDING 10000
/* A full backlog drains in seconds to minutes, not in one. */
#define PGW_LC_PUSH_RETRY_AFTER_BUSY "10"

struct pgw_lc_push_options {
    struct pgw_lc_api *api;      /* its listener, config and helpers */
    struct pgw_store *store;     /* not owned; outlives the requests */
    struct pgw_metrics *metrics; /* not owned; NULL: no counting */
    /* The events' backlog estimate (NULL: not bounded by it). */
    int64_t (*backlog)(void *arg);
    /* A new request was stored (may be NULL). */
    void (*stored)(void *arg, int64_t api_push_id);
    void *arg;
};

/*
 * Registers the routes on the API's listener (before the loop runs) and
 * the metric family. Errors: PGW_ERR_INVAL, PGW_ERR_NOMEM, those of
 * pgw_metrics_register(). Free after the store (its last
 * callbacks answer the requests still in it) and before the API.
 */
int pgw_lc_push_new(const struct pgw_lc_push_options *opts,
                    struct pgw_lc_push **ret_push);

void pgw_lc_push_free(struct pgw_lc_push *self);

#endif
