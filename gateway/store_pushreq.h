/*
 * The push API's requests in Postgres (api_pushes, migrations 0009,
 * 0010 and 0011): the insert of a checked request, with its req_id dedup and
 * the backlog bound, and the read of one request's status. Asynchronous, with
 * the contract of store.h (callbacks run once, later, from the loop;
 * PGW_ERR_BUSY, PGW_ERR_CLOSED, PGW_ERR_NOMEM from the call itself).
 *
 * The insert is one call of pushgw_api_push_insert() (migration 0011),
 * in a transaction of its own: its callback runs after the commit, so a
 * 200 answered from it is durable.
 */
#ifndef PUSHGW_STORE_PUSHREQ_H
#define PUSHGW_STORE_PUSHREQ_H

#include <stdbool.h>
#include <stdint.h>

#include "lc_pushreq.h"
#include "store.h"

/*
 * |err|: 0, PGW_ERR_BUSY (|max_pending| requests are not done: nothing
 * stored), PGW_ERR_DB, PGW_ERR_CLOSED. On 0: the request's api_pushes id,
 * objectId (valid during the call) and createdAt (ms); |duplicate|: a
 * request with the same req_id was stored within 5 minutes, and these are
 * its values (nothing new was stored).
 */
typedef void (*pgw_store_pushreq_saved_cb)(void *arg, int err, int64_t id,
                                           const char *object_id,
                                           int64_t created_at_ms,
                                           bool duplicate);

/* Stores |req| for |app_id| unless a duplicate or over |max_pending| (0:
 * no bound). */
int pgw_store_pushreq_insert(struct pgw_store *self, const char *app_id,
                             const struct pgw_lc_pushreq *req,
                             long long max_pending,
                             pgw_store_pushreq_saved_cb cb, void *arg);

/* One request as GET /1.1/push/{objectId} answers it. Strings are NULL
 * when the column is. */
struct pgw_store_pushreq_status {
    const char *object_id;
    const char *status; /* scheduled | in-queue | sending | done */
    int64_t created_at_ms, push_at_ms, expires_at_ms;
    int64_t started_at_ms, finished_at_ms; /* 0: not yet */
    long long devices, successes, invalid_tokens, errors;
    long long expired; /* pushes dropped at expires_at (migration 0010) */
    const char *data, *query; /* JSON text */
    const char *profile, *req_id, *notification_id, *result;
    long long flow_control; /* 0: none */
};

/* |st| NULL with err 0: no such request of the app. Valid during the
 * call. */
typedef void (*pgw_store_pushreq_status_cb)(
    void *arg, int err, const struct pgw_store_pushreq_status *st);

/* The request of |app_id| whose objectId is |object_id|. */
int pgw_store_pushreq_status(struct pgw_store *self, const char *app_id,
                             const char *object_id,
                             pgw_store_pushreq_status_cb cb, void *arg);

#endif
