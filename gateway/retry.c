/*
 * Claimed retries (DESIGN §9): pushes whose provider asked to try again
 * are stored as rows holding their request (push.c's codec); when due,
 * the claim timer claims them here, each is decoded and sent again as it
 * was, and its answer is written back: delivered, failed for good, or a
 * new row further on (push.c plans it). A retry is alone: its event
 * already ended, so it has no job. A retry row owned by an API push
 * (api_push_id, broadcast.c) goes the same way; its end counts on the
 * push's counters instead of an event's (store_sql.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "log.h"
#include "push.h"
#include "runtime.h"
#include "store.h"
#include "util/clock.h"

/* Claimed retries in memory at most. */
#define RETRY_CLAIM_MAX 500

/* A retry claimed from the store, with its single push. */
struct retry_ctx {
    struct pgw_dispatch *d;
    struct pgw_list node; /* on d->retries */
    struct pgw_runtime *rt;
    int64_t retry_id;
    int64_t event_id;    /* 0: the retry of an API push */
    int64_t api_push_id; /* 0: the retry of an event */
    char *app_id;
    struct pgw_push push;
    struct pgw_store_failure failure;
    char reason[PGW_OUTCOME_REASON_MAX];
};

static void on_retries_claimed(void *arg, int err,
                               const struct pgw_store_retry *rs, size_t n);
static int parse_retry(struct retry_ctx *rc, const struct pgw_store_retry *r);
static void on_retry_answer(void *arg, const struct pgw_outcome *o);
static void retry_done(struct retry_ctx *rc, const struct pgw_outcome *o);
static void retry_expired(struct retry_ctx *rc);
static void on_retry_finished(void *arg, int err);
static void retry_ctx_free(struct retry_ctx *rc);

void dispatch_claim_retries(struct pgw_dispatch *d)
{
    if (d->claiming_retries || d->retries_inflight >= RETRY_CLAIM_MAX ||
        !dispatch_inflight_room(d))
        return;
    if (pgw_store_claim_retries(
            d->o.store, (unsigned)(RETRY_CLAIM_MAX - d->retries_inflight),
            d->o.lease_ms, on_retries_claimed, d) == 0)
        d->claiming_retries = true;
}

/* True when a retry of this process works the row |retry_id|. */
static bool retry_held(struct pgw_dispatch *d, int64_t retry_id)
{
    struct pgw_list *pos;

    pgw_list_for_each(pos, &d->retries)
    {
        if (pgw_list_entry(pos, struct retry_ctx, node)->retry_id == retry_id)
            return true;
    }
    return false;
}

static void on_retries_claimed(void *arg, int err,
                               const struct pgw_store_retry *rs, size_t n)
{
    struct pgw_dispatch *d = arg;

    d->claiming_retries = false;
    if (err < 0 || !d->rt)
        return;
    for (size_t i = 0; i < n; i++) {
        struct retry_ctx *rc;
        struct pgw_outcome o;

        /* Our own lease on the row ran out while its push is still out
         * (see on_claimed in dispatch.c): sending it again would be a
         * duplicate without a crash. */
        if (retry_held(d, rs[i].id))
            continue;
        rc = calloc(1, sizeof(*rc));
        if (!rc)
            return;
        rc->d = d;
        pgw_list_push_back(&d->retries, &rc->node);
        rc->rt = pgw_runtime_ref(d->rt);
        d->retries_inflight++;
        rc->retry_id = rs[i].id;
        rc->event_id = rs[i].event_id;
        rc->api_push_id = rs[i].api_push_id;
        rc->app_id = strdup(rs[i].app_id);
        memset(&o, 0, sizeof(o));
        if (!rc->app_id || parse_retry(rc, &rs[i]) < 0) {
            o.kind = PGW_OUTCOME_FINAL;
            snprintf(o.reason, sizeof(o.reason), "bad_retry_record");
            if (!rc->push.token)
                rc->push.token = (char *)"";
            retry_done(rc, &o);
            continue;
        }
        if (pgw_clock_wall_ms() >= rc->push.expires_at_ms) {
            retry_expired(rc);
            continue;
        }
        /* FCM's ttl counts from the send: what is left of the validity,
         * as apns-expiration (absolute) says for APNs. */
        if (rc->push.provider == PGW_PROVIDER_FCM)
            (void)pgw_payload_fcm_set_ttl(
                rc->push.body, &rc->push.body_len,
                (rc->push.expires_at_ms - pgw_clock_wall_ms()) / 1000);
        dispatch_count_send(d, rc->push.provider);
        if (pgw_runtime_send(rc->rt, pgw_runtime_find_app(rc->rt, rc->app_id),
                             &rc->push, on_retry_answer, rc, &o) < 0) {
            d->inflight[rc->push.provider]--;
            retry_done(rc, &o);
        }
    }
}

/* Rebuilds the push of a stored retry request; 0 or -1. */
static int parse_retry(struct retry_ctx *rc, const struct pgw_store_retry *r)
{
    struct pgw_push *p = &rc->push;
    int rc_ = pgw_push_decode(r->request, r->provider, p);

    /* Set also when the request cannot be read: the failure names them. */
    p->provider =
        strcmp(r->provider, "apns") == 0 ? PGW_PROVIDER_APNS : PGW_PROVIDER_FCM;
    p->installation_id = r->installation_id;
    p->attempts = r->attempts;
    p->expires_at_ms = r->expires_at_ms;
    return rc_ < 0 ? -1 : 0;
}

/* Runs once per retry handed to a sender, from the loop, with its
 * answer. */
static void on_retry_answer(void *arg, const struct pgw_outcome *o)
{
    struct retry_ctx *rc = arg;

    rc->d->inflight[rc->push.provider]--;
    retry_done(rc, o);
}

/* The answer |o| to a retry: written back, the push delivered, failed for
 * good, or a new attempt planned (dispatch_answer()). */
static void retry_done(struct retry_ctx *rc, const struct pgw_outcome *o)
{
    struct pgw_dispatch *d = rc->d;
    struct pgw_store_retry_result res;
    enum pgw_store_failure_kind kind;
    int64_t at = 0;

    memset(&res, 0, sizeof(res));
    res.retry_id = rc->retry_id;
    res.event_id = rc->event_id;
    rc->failure.installation_id = rc->push.installation_id;
    rc->failure.provider = pgw_provider_names[rc->push.provider];
    rc->failure.status = o->status;
    pgw_copy_str(rc->reason, sizeof(rc->reason), o->reason);
    rc->failure.reason = rc->reason;
    switch (dispatch_answer(d, rc->rt, rc->app_id, rc->event_id, &rc->push, o,
                            &kind, &at)) {
    case DISPATCH_DELIVERED:
        res.delivered = true;
        break;
    case DISPATCH_FAILED:
        rc->failure.kind = kind;
        if (kind == PGW_STORE_FAIL_INVALIDATED)
            rc->failure.invalid_since_ms = o->invalid_since_ms;
        res.failure = &rc->failure;
        break;
    case DISPATCH_RETRY:
        break;
    }
    res.attempts = rc->push.attempts;
    res.not_before_ms = at;
    res.last_reason = rc->reason;
    if (pgw_store_finish_retry(d->o.store, &res, on_retry_finished, rc) < 0)
        retry_ctx_free(rc);
}

/* A retry whose validity passed before it could be sent: dropped. */
static void retry_expired(struct retry_ctx *rc)
{
    struct pgw_store_retry_result res;

    memset(&res, 0, sizeof(res));
    res.retry_id = rc->retry_id;
    res.event_id = rc->event_id;
    rc->failure.installation_id = rc->push.installation_id;
    rc->failure.provider = pgw_provider_names[rc->push.provider];
    rc->failure.kind = PGW_STORE_FAIL_EXPIRED;
    rc->failure.reason = PGW_PAYLOAD_REASON_EXPIRED;
    res.failure = &rc->failure;
    res.attempts = rc->push.attempts;
    res.last_reason = PGW_PAYLOAD_REASON_EXPIRED;
    dispatch_count_push(rc->d, rc->push.provider, "expired",
                        PGW_PAYLOAD_REASON_EXPIRED);
    if (pgw_store_finish_retry(rc->d->o.store, &res, on_retry_finished, rc) < 0)
        retry_ctx_free(rc);
}

static void on_retry_finished(void *arg, int err)
{
    struct retry_ctx *rc = arg;

    if (err < 0)
        pgw_log_warn("could not record a retry of %s '%" PRId64
                     "': %s: it will be tried again after its lease",
                     rc->event_id ? "event" : "push request",
                     rc->event_id ? rc->event_id : rc->api_push_id,
                     pgw_strerror(err));
    retry_ctx_free(rc);
}

static void retry_ctx_free(struct retry_ctx *rc)
{
    rc->d->retries_inflight--;
    pgw_list_remove(&rc->node);
    pgw_push_release(&rc->push);
    free(rc->app_id);
    pgw_runtime_unref(rc->rt);
    free(rc);
}
