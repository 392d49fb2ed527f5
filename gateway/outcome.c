/*
 * What becomes of the dispatcher's pushes and events, in one place for
 * the pushes of events (dispatch.c) and claimed retries (retry.c): each
 * answer counted (pushgw_pushes_total, pushgw_invalidated_total), a
 * final failure logged once, a retry planned (push.c's policy, with the
 * clock and the jitter), the latency observed, each event's end counted.
 * The metrics the dispatcher owns are registered here too, and its
 * gauges set (pgw_dispatch_collect(), dispatch.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch_int.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "util/clock.h"
#include "util/list.h"

static double jitter(void);
static double since_s(const struct timespec *t0);

void dispatch_metrics_init(struct pgw_dispatch *d, struct pgw_metrics *m)
{
    static const char *const labels[] = {"app", "result"};

    d->m_pushes = pgw_metrics_std(m, PGW_M_PUSHES_TOTAL);
    /* pushgw_events_total counts intake results (http_api); how events
     * end is a family of its own, so sums stay meaningful. */
    if (pgw_metrics_register(m, PGW_METRIC_COUNTER,
                             "pushgw_events_finished_total",
                             "Events whose work ended, by result (sent, "
                             "partly_sent, none_delivered, hook_skip, "
                             "no_recipients, no_content, no_devices, "
                             "invalid_content, unknown_app)",
                             labels, 2, 0, NULL, 0, &d->m_events) < 0)
        d->m_events = NULL;
    d->m_hook = pgw_metrics_std(m, PGW_M_HOOK_REQUESTS_TOTAL);
    d->m_invalidated = pgw_metrics_std(m, PGW_M_INVALIDATED_TOTAL);
    /* Observed in dispatch_observe_latency() only; both providers'
     * series exist from the start, so a dashboard sees them at zero. */
    for (size_t p = 0; p < PGW_PROVIDER_COUNT; p++)
        d->m_latency[p] = pgw_metrics_series1(
            pgw_metrics_std(m, PGW_M_PUSH_LATENCY), pgw_provider_names[p]);
}

void pgw_dispatch_collect(void *arg, struct pgw_metrics *metrics)
{
    struct pgw_dispatch *d = arg;
    struct pgw_metric_family *inflight =
        pgw_metrics_std(metrics, PGW_M_INFLIGHT_REQUESTS);
    struct pgw_metric_family *conns =
        pgw_metrics_std(metrics, PGW_M_PROVIDER_CONNECTIONS);
    struct pgw_h2_pool_stats st[PGW_PROVIDER_COUNT];
    struct pgw_list *pos;

    memset(st, 0, sizeof(st));
    pgw_list_for_each(pos, &d->runtimes)
    {
        pgw_runtime_add_stats(pgw_list_entry(pos, struct pgw_runtime, node),
                              st);
    }
    for (int p = 0; p < 2; p++) {
        pgw_metric_set(pgw_metrics_series1(inflight, pgw_provider_names[p]),
                       (double)d->inflight[p]);
        pgw_metric_set(
            pgw_metrics_series2(conns, pgw_provider_names[p], "connecting"),
            st[p].conns_connecting);
        pgw_metric_set(
            pgw_metrics_series2(conns, pgw_provider_names[p], "ready"),
            st[p].conns_ready);
        pgw_metric_set(
            pgw_metrics_series2(conns, pgw_provider_names[p], "draining"),
            st[p].conns_draining);
        pgw_metric_set(
            pgw_metrics_series2(conns, pgw_provider_names[p], "backoff"),
            st[p].slots_backoff);
    }
}

enum dispatch_fate
dispatch_answer(struct pgw_dispatch *d, const struct pgw_runtime *rt,
                const char *app, int64_t event_id, struct pgw_push *p,
                const struct pgw_outcome *o,
                enum pgw_store_failure_kind *ret_kind, int64_t *ret_at)
{
    enum pgw_store_failure_kind kind;

    switch (o->kind) {
    case PGW_OUTCOME_DELIVERED:
        dispatch_count_delivered(d, p->provider);
        return DISPATCH_DELIVERED;
    case PGW_OUTCOME_INVALIDATE:
        if (!pgw_push_answer_is_evidence(p, o)) {
            dispatch_count_push(d, p->provider, "failed", o->reason);
            dispatch_log_final(app, event_id, p, o,
                               "failed: the token may be of the other "
                               "environment or topic (the device stays "
                               "valid)");
            *ret_kind = PGW_STORE_FAIL_FAILED;
            return DISPATCH_FAILED;
        }
        dispatch_count_push(d, p->provider, "invalidated", o->reason);
        if (d->m_invalidated)
            pgw_metric_inc(pgw_metrics_series2(
                d->m_invalidated, pgw_provider_names[p->provider], o->reason));
        dispatch_log_final(app, event_id, p, o, "invalidated the installation");
        *ret_kind = PGW_STORE_FAIL_INVALIDATED;
        return DISPATCH_FAILED;
    case PGW_OUTCOME_FINAL:
        dispatch_count_push(d, p->provider, "failed", o->reason);
        dispatch_log_final(app, event_id, p, o, "failed");
        *ret_kind = PGW_STORE_FAIL_FAILED;
        return DISPATCH_FAILED;
    case PGW_OUTCOME_RETRY:
        break;
    }
    p->attempts++;
    if (dispatch_plan_retry(rt, p, o, ret_at, &kind) == PGW_RETRY_AT) {
        dispatch_count_push(d, p->provider, "retry", o->reason);
        return DISPATCH_RETRY;
    }
    dispatch_count_push(d, p->provider,
                        kind == PGW_STORE_FAIL_EXPIRED ? "expired" : "failed",
                        o->reason);
    dispatch_log_final(app, event_id, p, o,
                       kind == PGW_STORE_FAIL_EXPIRED
                           ? "expired before it could be retried"
                           : "failed after the last attempt");
    *ret_kind = kind;
    return DISPATCH_FAILED;
}

/* What to do with a RETRY outcome of |p| (its attempts counted):
 * PGW_RETRY_AT with the time in |*ret_at|, or the failure kind. */
enum pgw_retry_plan dispatch_plan_retry(const struct pgw_runtime *rt,
                                        const struct pgw_push *p,
                                        const struct pgw_outcome *o,
                                        int64_t *ret_at,
                                        enum pgw_store_failure_kind *ret_kind)
{
    struct pgw_retry_policy pol;
    enum pgw_retry_plan plan;

    pgw_retry_policy_from_config(rt->cfg, &pol);
    plan = pgw_retry_plan(&pol, p->attempts, o, p->expires_at_ms,
                          pgw_clock_wall_ms(), jitter(), ret_at);
    *ret_kind = plan == PGW_RETRY_EXPIRED ? PGW_STORE_FAIL_EXPIRED
                                          : PGW_STORE_FAIL_FAILED;
    return plan;
}

const char *dispatch_sent_result(size_t pushes, size_t delivered)
{
    if (pushes == 0 || delivered == pushes)
        return "sent";
    return delivered > 0 ? "partly_sent" : "none_delivered";
}

void dispatch_log_event_end(const struct dispatch_event_end *e)
{
    pgw_log_infof(
        PGW_FIELDS(
            PGW_LF_INT("event_id", e->event_id), PGW_LF_STR("app", e->app),
            PGW_LF_STR("conv_id", e->conv_id), PGW_LF_STR("result", e->result),
            PGW_LF_INT("pushes", (long long)e->pushes),
            PGW_LF_INT("delivered", (long long)e->delivered),
            PGW_LF_INT("retrying", (long long)e->retrying),
            PGW_LF_INT("failed", (long long)e->failed[PGW_STORE_FAIL_FAILED]),
            PGW_LF_INT("invalidated",
                       (long long)e->failed[PGW_STORE_FAIL_INVALIDATED]),
            PGW_LF_INT("expired", (long long)e->failed[PGW_STORE_FAIL_EXPIRED]),
            PGW_LF_INT("duration_ms",
                       (long long)(since_s(e->accepted) * 1000))),
        "event finished");
}

void dispatch_log_final(const char *app, int64_t event_id,
                        const struct pgw_push *p, const struct pgw_outcome *o,
                        const char *what)
{
    char masked[32];

    pgw_log_warnf(
        PGW_FIELDS(
            PGW_LF_INT("event_id", event_id), PGW_LF_STR("app", app),
            PGW_LF_STR("provider", pgw_provider_names[p->provider]),
            PGW_LF_INT("installation", p->installation_id),
            PGW_LF_STR("token",
                       pgw_log_mask_token(masked, sizeof(masked), p->token)),
            PGW_LF_INT("status", o->status), PGW_LF_STR("reason", o->reason)),
        "push %s", what);
}

void dispatch_count_push(struct pgw_dispatch *d, enum pgw_provider p,
                         const char *outcome, const char *reason)
{
    if (!d->m_pushes)
        return;
    pgw_metric_inc(pgw_metrics_series3(d->m_pushes, pgw_provider_names[p],
                                       outcome, reason ? reason : ""));
}

/* The common outcome, once per push: its series looked up once (a series
 * lives as long as its registry). */
void dispatch_count_delivered(struct pgw_dispatch *d, enum pgw_provider p)
{
    if (!d->m_pushes)
        return;
    if (!d->s_delivered[p])
        d->s_delivered[p] = pgw_metrics_series3(
            d->m_pushes, pgw_provider_names[p], "delivered", "");
    pgw_metric_inc(d->s_delivered[p]);
}

/*
 * pushgw_push_latency_seconds, the one place it is observed: from the
 * acceptance of an event (|accepted|, monotonic) to the answer to one of
 * its pushes (to provider |p|), once per answer. Claimed retries are not
 * observed.
 */
void dispatch_observe_latency(struct pgw_dispatch *d, enum pgw_provider p,
                              const struct timespec *accepted)
{
    pgw_metric_observe(d->m_latency[p], since_s(accepted));
}

void dispatch_count_event(struct pgw_dispatch *d, const char *app,
                          const char *result)
{
    if (d->m_events)
        pgw_metric_inc(pgw_metrics_series2(d->m_events, app, result));
}

/* Where a retry falls in its backoff window (push.h). */
static double jitter(void)
{
    return (double)random() / ((double)RAND_MAX + 1.0);
}

static double since_s(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}
