/*
 * The statements of the sender of API pushes (broadcast.c, DESIGN §15.5)
 * over api_pushes (migrations 0009 and 0010): claims with leases, the
 * pages of a push's audience, and the commit of a page's outcomes.
 * Asynchronous, with the contract of store.h (callbacks run once, later,
 * from the loop; PGW_ERR_BUSY, PGW_ERR_CLOSED, PGW_ERR_NOMEM,
 * PGW_ERR_INVAL from the call itself).
 */
#ifndef PUSHGW_STORE_BROADCAST_H
#define PUSHGW_STORE_BROADCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "installation.h"
#include "store.h"

/* One claimed request; strings valid during the callback. */
struct pgw_store_api_push {
    int64_t id;
    const char *app_id;
    const char *object_id;
    const char *data;    /* JSON object */
    const char *query;   /* JSON object: the audience (lc_where.h) */
    const char *profile; /* "dev", "prod" or NULL */
    int64_t push_at_ms, expires_at_ms;
    int flow_control; /* devices per second; 0: no limit */
    int64_t cursor_id;
    int devices, successes, invalid_tokens, errors, expired;
};

typedef void (*pgw_store_api_pushes_cb)(void *arg, int err,
                                        const struct pgw_store_api_push *p,
                                        size_t n);

/*
 * Claims up to |max| requests due now (push_at <= now, not done) whose
 * lease is free or expired (FOR UPDATE SKIP LOCKED), earliest push_at
 * first, leasing them for |lease_ms| and setting them 'sending'.
 */
int pgw_store_claim_api_pushes(struct pgw_store *self, unsigned max,
                               unsigned lease_ms, pgw_store_api_pushes_cb cb,
                               void *arg);

/* |ms|: until the next scheduled request not done is due (>= 0), or -1
 * when there is none. */
typedef void (*pgw_store_next_due_cb)(void *arg, int err, int64_t ms);
int pgw_store_next_api_push(struct pgw_store *self, pgw_store_next_due_cb cb,
                            void *arg);

/* |held|: the ids among those asked whose lease this process still
 * holds (renewed), |n_held| of them. */
typedef void (*pgw_store_held_cb)(void *arg, int err, const int64_t *held,
                                  size_t n_held);
int pgw_store_renew_api_pushes(struct pgw_store *self, const int64_t *ids,
                               size_t n, unsigned lease_ms,
                               pgw_store_held_cb cb, void *arg);

/* Gives back the lease of request |id| (drain): another process may take
 * it at once. */
int pgw_store_release_api_push(struct pgw_store *self, int64_t id,
                               pgw_store_done_cb cb, void *arg);

/* One page of a request's audience. */
struct pgw_store_page_query {
    int64_t api_push_id;
    const char *app_id;
    int64_t after_id; /* the cursor: ids greater than it */
    unsigned limit;
    /* The team and badge rules (pgw_push_event_match(), push.h): iOS rows
     * of that team only, a numeric badge set on them. */
    const struct pgw_installation_match *match;
    bool increment; /* badge + 1 on the iOS rows (§8) */
    /* The audience's condition (lc_where.h) over alias i, its
     * placeholders numbered from PGW_STORE_PAGE_FIRST_PARAM. */
    const char *where_sql;
    const char *const *where_params;
    size_t n_where_params;
};

#define PGW_STORE_PAGE_FIRST_PARAM 8

/*
 * The next |limit| valid installations of the app matching the query,
 * in id order (rows without channels: the audience is the query). With
 * |increment| the iOS rows' badges are incremented in the same statement,
 * locked in id order, and a row already incremented by this request (a
 * page sent again after a crash) keeps its badge (migration 0010); with
 * the match's set_badge they are set to its badge.
 */
int pgw_store_api_push_page(struct pgw_store *self,
                            const struct pgw_store_page_query *q,
                            pgw_store_installations_cb cb, void *arg);

/* A page's outcomes, committed at once. */
struct pgw_store_api_page {
    int64_t api_push_id;
    unsigned lease_ms; /* renewed with the commit */
    int64_t cursor_id; /* the last id of the page */
    int devices, successes, invalid_tokens, errors, expired; /* added */
    const struct pgw_store_failure *failures;
    size_t n_failures;
    const struct pgw_store_retry_new *retries;
    size_t n_retries;
    /* NULL: more pages follow; else the request ends with this result
     * (state 'done', finished_at, lease given back). */
    const char *result;
};

/* |held| false: the lease was no longer this process's, nothing was
 * written (another process took the request over). */
typedef void (*pgw_store_page_cb)(void *arg, int err, bool held);

/*
 * In one transaction, if this process still holds the lease: the cursor
 * and the counters, the failures (push_failures, api_push_id) with the
 * invalidations they imply (honouring invalid_since_ms), the retries
 * (push_retries, api_push_id), and the end when |result| is set.
 */
int pgw_store_commit_api_page(struct pgw_store *self,
                              const struct pgw_store_api_page *pg,
                              pgw_store_page_cb cb, void *arg);

#endif
