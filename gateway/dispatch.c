/*
 * The dispatcher (see dispatch.h): the events in memory, each a job that
 * goes through
 *   hook (optional) → resolve → lookup of its installations (+ badge
 *   increments, in parts for many recipients) → one push per device
 *   (push.c) → sends, paced → answers → finish (one store transaction),
 * and the timers that claim events left by others and renew leases.
 * Sends are paced by a global in-flight cap that follows the providers'
 * streams, and lookups wait while too many pushes are pending, so memory
 * follows those bounds and not the backlog. Claimed retries are retry.c,
 * draining drain.c.
 *
 * Read top-down: the public entry points, then the steps in the order an
 * event goes through them, then claims and leases.
 */
#include "dispatch.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apns.h"
#include "dispatch_int.h"
#include "fcm.h"
#include "hook.h"
#include "log.h"
#include "metrics.h"
#include "outcome.h"
#include "push.h"
#include "pushgw.h"
#include "resolve.h"
#include "runtime.h"
#include "store.h"
#include "template.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"

#define DEFAULT_LEASE_MS 30000
#define DEFAULT_CLAIM_INTERVAL_MS 1000
#define DEFAULT_MAX_EVENTS 2000
/* Pushes handed to the senders and not answered yet: at most this while
 * answers come back near, slowly or not at all; from far providers up to
 * INFLIGHT_CEIL_FACTOR times it, as bandwidth × delay needs (update_bound,
 * once a window of RATE_WINDOW_MS). Within that bound the cap follows the
 * providers' streams (update_cap). */
#define DEFAULT_MAX_INFLIGHT 10000
#define INFLIGHT_CEIL_FACTOR 2
#define RATE_WINDOW_MS 100
/* Pushes built (or about to be) and not answered yet, as a multiple of
 * max_inflight: beyond it, events wait before their installations are
 * looked up, so memory follows this bound and not the backlog. Pushes
 * waiting here, as rows, keep the streams fed while a batch of badge
 * increments is in Postgres, more cheaply than built requests queued in
 * the pools (docs/BENCHMARKS.md). */
#define PENDING_PUSHES_FACTOR 4
/* The in-flight cap follows the providers' streams (update_cap): worked
 * out again after this many sends and by the pump
 * (pgw_dispatch_pacing_cap()). */
#define CAP_EVERY 1024
/* An event with more recipients than this is looked up in parts of about
 * equal size, at most LOOKUP_PARTS_MAX, that go on as many database
 * connections at once, and its pushes leave as each part's rows arrive:
 * a large lookup with its badge increments would hold back its first
 * push for as long as it takes. */
#define LOOKUP_PART_NAMES 250
#define LOOKUP_PARTS_MAX 4
#define FINISH_RETRY_MS 1000

struct job;

/* One push of a job: its address is the senders' callback argument. */
struct job_push {
    struct job *job;
    struct pgw_push p;
};

/* A job's pushes come in blocks, one per lookup part; a push's address
 * is its senders' callback argument, so blocks never move. */
struct push_block {
    struct pgw_list node; /* on the job's |blocks| */
    size_t n;
    struct job_push p[];
};

/* A growable list of installation ids. */
struct id_list {
    int64_t *v;
    size_t n, cap;
};

/* One part of a job's lookup: its share of the recipients. */
struct lookup_part {
    struct job *job;
    size_t first, n_names;
};

struct failure {
    int64_t installation_id;
    enum pgw_provider provider;
    enum pgw_store_failure_kind kind;
    int status;
    char reason[PGW_OUTCOME_REASON_MAX];
    int64_t invalid_since_ms;
};

struct retry_row {
    int64_t installation_id;
    enum pgw_provider provider;
    char *request;
    int attempts;
    int64_t not_before_ms;
    int64_t expires_at_ms;
    char reason[PGW_OUTCOME_REASON_MAX];
};

struct job {
    struct pgw_dispatch *d;
    struct pgw_runtime *rt;
    struct pgw_list node; /* on d->jobs */
    int64_t event_id;
    char event_id_str[24];
    char *app_id;
    const struct pgw_runtime_app *app;
    struct pgw_event *ev;
    struct pgw_resolved *res;
    struct timespec accepted;
    /* The event's payloads, from the start of its lookup. */
    struct pgw_push_event pe;
    struct pgw_push_app papp;
    /* Pushes to send, in blocks; next_send of n_pushes sent so far, the
     * next one at send_block->p[send_idx]. */
    struct pgw_list blocks;
    struct push_block *send_block;
    size_t send_idx;
    size_t n_pushes;
    size_t next_send;
    /* The lookup's parts; parts_out of them not back yet. */
    struct lookup_part *parts;
    size_t n_parts, parts_out;
    size_t rows_seen;
    bool lookup_failed;
    /* Installations already given a push (several parts only), and the
     * increments to take back for the ones a later part matched again. */
    struct seen {
        int64_t id; /* 0: a free slot */
        int badge;  /* of the row kept */
    } * seen;
    size_t seen_cap, seen_n;
    unsigned seen_shift; /* 64 - log2(seen_cap) */
    struct id_list undo; /* increments of devices matched twice */
    bool undoing;        /* the take-back is out: the job waits for it */
    struct id_list inc;  /* every increment the parts made */
    size_t answered;
    int delivered;
    struct failure *failures;
    size_t n_failures, cap_failures;
    struct retry_row *retries;
    size_t n_retries, cap_retries;
    const char *result;
    size_t n_unsent; /* pushes that failed before they could be sent */
    bool finishing;
    bool waiting_store; /* an async store/hook call is outstanding */
    /* On d->lookup_wait while it waits for room before its lookup */
    struct pgw_list wait_node;
    /* What this job counts in d->pushes_pending: its recipients while its
     * lookup is out, then its pushes not answered yet or answered with a
     * retry row (held until the job is freed). */
    size_t pending;
    struct event *retry_finish_timer;
};

static struct job *job_of(struct pgw_list *node)
{
    return pgw_list_entry(node, struct job, node);
}

static struct job *job_new(struct pgw_dispatch *d, int64_t event_id,
                           const char *app_id, struct pgw_event *ev);
static void job_start(struct job *job);
static void on_hook(void *arg, enum pgw_hook_result result,
                    struct pgw_hook_answer *answer, const char *detail);
static void job_resolve(struct job *job, struct pgw_hook_answer *answer);
static void job_lookup(struct job *job);
static void job_lookup_start(struct job *job);
static void on_installations(void *arg, int err,
                             const struct pgw_installation *rows, size_t n);
static void add_pushes(struct job *job, const struct pgw_installation *rows,
                       size_t n);
static bool seen_add(struct job *job, int64_t id, int badge, int *ret_badge);
static void id_list_add(struct job *job, struct id_list *l, int64_t id);
static void fail_unsent(struct job *job, int64_t inst, enum pgw_provider p,
                        enum pgw_store_failure_kind kind, const char *reason);
static int add_failure(struct job *job, int64_t inst, enum pgw_provider p,
                       enum pgw_store_failure_kind kind, int status,
                       const char *reason, int64_t since);
static void job_drop_unsent(struct job *job);
static void job_send_some(struct job *job);
static void dispatch_pump(struct pgw_dispatch *d);
static void on_pump(evutil_socket_t fd, short what, void *arg);
static size_t inflight_total(const struct pgw_dispatch *d);
static void update_cap(struct pgw_dispatch *d);
static size_t provider_capacity(const struct pgw_runtime *rt,
                                enum pgw_provider p, uint32_t *ret_rtt_us);
static void update_bound(struct pgw_dispatch *d);
static void on_answer(void *arg, const struct pgw_outcome *o);
static void job_outcome(struct job_push *jp, const struct pgw_outcome *o);
static int add_retry_row(struct job *job, const struct pgw_push *p, int64_t at,
                         const char *reason);
static void job_lookup_done(struct job *job);
static void on_badges_undone(void *arg, int err);
static void job_end(struct job *job, const char *result);
static void job_finish(struct job *job);
static void on_finished(void *arg, int err);
static void finish_later(struct job *job, int err);
static void on_finish_retry_timer(evutil_socket_t fd, short what, void *arg);
static void job_free(struct job *job);
static void on_claim_timer(evutil_socket_t fd, short what, void *arg);
static void claim_events(struct pgw_dispatch *d, size_t min_room);
static void on_claimed(void *arg, int err, const struct pgw_store_event *evs,
                       size_t n);
static void on_lease_timer(evutil_socket_t fd, short what, void *arg);
static void on_renewed(void *arg, int err);

/* ---- public entry points ------------------------------------------------ */

int pgw_dispatch_new(const struct pgw_dispatch_options *opts,
                     struct pgw_dispatch **ret_d)
{
    struct pgw_dispatch *d;
    struct timeval claim_tv, lease_tv;

    if (!opts || !opts->base || !opts->store || !opts->cm)
        return PGW_ERR_INVAL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return PGW_ERR_NOMEM;
    pgw_list_init(&d->jobs);
    pgw_list_init(&d->retries);
    pgw_list_init(&d->runtimes);
    pgw_list_init(&d->lookup_wait);
    d->o = *opts;
    if (!d->o.lease_ms)
        d->o.lease_ms = DEFAULT_LEASE_MS;
    if (!d->o.claim_interval_ms)
        d->o.claim_interval_ms = DEFAULT_CLAIM_INTERVAL_MS;
    if (!d->o.max_events)
        d->o.max_events = DEFAULT_MAX_EVENTS;
    if (!d->o.max_inflight)
        d->o.max_inflight = DEFAULT_MAX_INFLIGHT;
    d->bound = d->o.max_inflight;
    d->max_pending = d->o.max_inflight * PENDING_PUSHES_FACTOR;
    d->cap = d->o.max_inflight;
    /* A quarter of the in-memory bound, at most a full claim. */
    d->claim_batch = d->o.max_events / 4 + 1;
    if (d->claim_batch > PGW_DISPATCH_CLAIM_MAX)
        d->claim_batch = PGW_DISPATCH_CLAIM_MAX;
    d->claim_timer = event_new(d->o.base, -1, EV_PERSIST, on_claim_timer, d);
    d->lease_timer = event_new(d->o.base, -1, EV_PERSIST, on_lease_timer, d);
    d->pump_ev = event_new(d->o.base, -1, 0, on_pump, d);
    if (opts->metrics)
        dispatch_metrics_init(d, opts->metrics);
    if (!d->claim_timer || !d->lease_timer || !d->pump_ev ||
        broadcast_new(d) < 0) {
        pgw_dispatch_free(d);
        return PGW_ERR_NOMEM;
    }
    claim_tv.tv_sec = d->o.claim_interval_ms / 1000;
    claim_tv.tv_usec = (d->o.claim_interval_ms % 1000) * 1000;
    lease_tv.tv_sec = d->o.lease_ms / 3000;
    lease_tv.tv_usec = ((d->o.lease_ms / 3) % 1000) * 1000;
    event_add(d->claim_timer, &claim_tv);
    event_add(d->lease_timer, &lease_tv);
    *ret_d = d;
    return 0;
}

const struct pgw_runtime *pgw_dispatch_runtime(const struct pgw_dispatch *self)
{
    return self->rt;
}

int pgw_dispatch_set_runtime(struct pgw_dispatch *self, struct pgw_config *cfg,
                             struct pgw_template_set *templates,
                             struct pgw_diag *diag)
{
    struct pgw_runtime_options ro = {
        .base = self->o.base,
        .dns = self->o.dns,
        .cm = self->o.cm,
        .backoff_initial_ms = self->o.backoff_initial_ms,
        .backoff_max_ms = self->o.backoff_max_ms,
        .list = &self->runtimes,
    };
    struct pgw_runtime *rt = NULL;
    int rc = pgw_runtime_new(&ro, cfg, templates, diag, &rt);

    if (rc < 0)
        return rc;
    pgw_runtime_unref(self->rt);
    /* The first runtime: API pushes due (left by a crash, scheduled
     * while stopped) are claimed now, not at the claim timer's tick. */
    if (!self->rt) {
        self->rt = rt;
        broadcast_tick(self);
        return 0;
    }
    self->rt = rt;
    return 0;
}

bool pgw_dispatch_can_accept(const struct pgw_dispatch *self)
{
    /* The recipients of reserved events count too: with many requests at
     * once, every one is reserved before the first waits for its lookup,
     * and the bound on waiting recipients would not hold. */
    return self->rt && !self->draining &&
           self->n_jobs + self->reserved < self->o.max_events &&
           self->wait_recipients + self->reserved_recipients <
               self->max_pending;
}

bool pgw_dispatch_reserve(struct pgw_dispatch *self, size_t recipients)
{
    /* Refused, the event is stored unleased; the intake says so once its
     * insert committed (pgw_dispatch_backlog_stored): a claim sent now
     * would not see it. */
    if (!pgw_dispatch_can_accept(self))
        return false;
    self->reserved++;
    self->reserved_recipients += recipients;
    return true;
}

void pgw_dispatch_backlog_stored(struct pgw_dispatch *self)
{
    self->stored_gen++;
    self->backlog_hint = true;
    if (!self->closing && self->pump_ev)
        event_active(self->pump_ev, EV_TIMEOUT, 0);
}

int pgw_dispatch_accept(struct pgw_dispatch *self, int64_t event_id,
                        const char *app_id, struct pgw_event *ev,
                        size_t recipients)
{
    struct job *job;

    if (self->reserved > 0)
        self->reserved--;
    self->reserved_recipients -= recipients < self->reserved_recipients
                                     ? recipients
                                     : self->reserved_recipients;
    if (!ev)
        return 0;
    if (!self->rt || self->draining) {
        pgw_event_free(ev);
        return PGW_ERR_CLOSED;
    }
    job = job_new(self, event_id, app_id, ev);
    if (!job)
        return PGW_ERR_NOMEM;
    job_start(job);
    return 0;
}

void pgw_dispatch_stop(struct pgw_dispatch *self)
{
    struct pgw_list *pos, *next;

    if (!self || self->closing)
        return;
    self->closing = true;
    self->draining = true;
    event_del(self->claim_timer);
    event_del(self->lease_timer);
    /* Cancelling the senders answers their pushes (RETRY "cancelled");
     * jobs whose pushes are all answered are freed by job_finish(). */
    pgw_list_for_each(pos, &self->runtimes)
    {
        pgw_runtime_cancel_senders(
            pgw_list_entry(pos, struct pgw_runtime, node));
    }
    broadcast_stop(self);
    /* The rest, unless a store or hook callback is still due: those are
     * freed when it comes (the caller frees the store and curlmulti). */
    pgw_list_for_each_safe(pos, next, &self->jobs)
    {
        struct job *j = job_of(pos);

        if (!j->waiting_store)
            job_free(j);
    }
}

void pgw_dispatch_free(struct pgw_dispatch *self)
{
    if (!self)
        return;
    pgw_dispatch_stop(self);
    while (!pgw_list_empty(&self->jobs))
        job_free(job_of(self->jobs.next));
    broadcast_free(self);
    /* The current runtime, and those whose free is still due. */
    while (!pgw_list_empty(&self->runtimes))
        pgw_runtime_free(
            pgw_list_entry(self->runtimes.next, struct pgw_runtime, node));
    self->rt = NULL;
    if (self->claim_timer)
        event_free(self->claim_timer);
    if (self->lease_timer)
        event_free(self->lease_timer);
    if (self->drain_timer)
        event_free(self->drain_timer);
    if (self->drain_deadline)
        event_free(self->drain_deadline);
    if (self->pump_ev)
        event_free(self->pump_ev);
    free(self);
}

/* ---- an event: hook, resolution, lookup --------------------------------- */

static struct job *job_new(struct pgw_dispatch *d, int64_t event_id,
                           const char *app_id, struct pgw_event *ev)
{
    struct job *job = calloc(1, sizeof(*job));

    if (!job || !(job->app_id = strdup(app_id))) {
        free(job);
        pgw_event_free(ev);
        return NULL;
    }
    pgw_list_init(&job->node);
    pgw_list_init(&job->wait_node);
    pgw_list_init(&job->blocks);
    job->d = d;
    job->rt = pgw_runtime_ref(d->rt);
    job->event_id = event_id;
    snprintf(job->event_id_str, sizeof(job->event_id_str), "%" PRId64,
             event_id);
    job->ev = ev;
    clock_gettime(CLOCK_MONOTONIC, &job->accepted);
    pgw_list_push_back(&d->jobs, &job->node);
    d->n_jobs++;
    return job;
}

static void job_start(struct job *job)
{
    struct pgw_dispatch *d = job->d;
    int rc;

    job->app = pgw_runtime_find_app(job->rt, job->app_id);
    if (!job->app) {
        pgw_log_warn("event '%s' is for app '%s', which is no longer "
                     "configured",
                     job->event_id_str, job->app_id);
        job_end(job, "unknown_app");
        return;
    }
    job->papp.cfg = job->rt->cfg;
    job->papp.app = job->app->app;
    job->papp.apns_identity = job->app->apns_identity;
    job->papp.apns_topic = job->app->apns_topic;
    job->papp.has_fcm_account = job->app->fcm_account != NULL;
    if (!job->app->app->server_hook_url) {
        job_resolve(job, NULL);
        return;
    }
    rc = pgw_hook_call(d->o.cm, job->app->app, job->ev, &job->rt->limits, NULL,
                       on_hook, job);
    if (rc < 0) {
        if (d->m_hook)
            pgw_metric_inc(pgw_metrics_series2(
                d->m_hook, job->app_id,
                pgw_hook_result_name(rc == PGW_ERR_BUSY
                                         ? PGW_HOOK_QUEUE_FULL
                                         : PGW_HOOK_UNREACHABLE)));
        pgw_log_warn("could not call the server hook of app '%s': %s: "
                     "going on without it",
                     job->app_id, pgw_strerror(rc));
        job_resolve(job, NULL);
        return;
    }
    job->waiting_store = true;
}

static void on_hook(void *arg, enum pgw_hook_result result,
                    struct pgw_hook_answer *answer, const char *detail)
{
    struct job *job = arg;
    struct pgw_dispatch *d = job->d;

    job->waiting_store = false;
    if (d->closing) {
        pgw_resolve_hook_answer_free(answer);
        job_free(job);
        return;
    }
    if (d->m_hook)
        pgw_metric_inc(pgw_metrics_series2(d->m_hook, job->app_id,
                                           pgw_hook_result_name(result)));
    /* a 401 is a configuration error (§15.1), not a passing failure */
    if (result == PGW_HOOK_UNAUTHORIZED)
        pgw_log_errorf(PGW_FIELDS(PGW_LF_STR("app", job->app_id),
                                  PGW_LF_INT("event", job->event_id)),
                       "server hook refused pushgw, going on without it: %s",
                       detail);
    else if (result != PGW_HOOK_OK)
        pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("app", job->app_id),
                                 PGW_LF_INT("event", job->event_id)),
                      "server hook failed, going on without it: %s: %s",
                      pgw_hook_result_name(result), detail);
    job_resolve(job, answer);
}

static void job_resolve(struct job *job, struct pgw_hook_answer *answer)
{
    const cJSON *tmpl = pgw_template_set_find(job->rt->templates, job->app_id);
    struct pgw_json_error err;
    int rc;

    rc = pgw_resolve_event(job->ev, answer, tmpl,
                           job->rt->cfg->delivery.validity_s, &job->res, &err);
    pgw_resolve_hook_answer_free(answer);
    if (rc < 0) {
        pgw_log_warnf(PGW_FIELDS(PGW_LF_STR("app", job->app_id),
                                 PGW_LF_INT("event", job->event_id)),
                      "cannot resolve the push: %s%s%s", err.field,
                      *err.field ? ": " : "", err.reason);
        job->res = NULL;
        job_end(job, "invalid_content");
        return;
    }
    if (job->res->skip_reason) {
        job_end(job, job->res->skip_reason);
        return;
    }
    job_lookup(job);
}

static void job_lookup(struct job *job)
{
    struct pgw_dispatch *d = job->d;
    const struct pgw_resolved *res = job->res;

    if (!pgw_list_empty(&d->lookup_wait) ||
        (d->pushes_pending > 0 &&
         d->pushes_pending + res->n_recipients > d->max_pending)) {
        if (!pgw_list_linked(&job->wait_node)) {
            d->wait_recipients += res->n_recipients;
            pgw_list_push_back(&d->lookup_wait, &job->wait_node);
        }
        return;
    }
    job_lookup_start(job);
}

/* Reserves room for the recipients of |job| and looks them up, in parts
 * when there are many (LOOKUP_PART_NAMES). */
static void job_lookup_start(struct job *job)
{
    struct pgw_dispatch *d = job->d;
    const struct pgw_resolved *res = job->res;
    size_t n = res->n_recipients, parts;
    struct pgw_installation_match match;
    unsigned flags;

    parts = (n + LOOKUP_PART_NAMES - 1) / LOOKUP_PART_NAMES;
    if (parts < 1)
        parts = 1;
    if (parts > LOOKUP_PARTS_MAX)
        parts = LOOKUP_PARTS_MAX;
    job->parts = calloc(parts, sizeof(*job->parts));
    if (!job->parts) {
        pgw_log_error("out of memory working event '%s'", job->event_id_str);
        job_free(job);
        return;
    }
    job->n_parts = parts;
    d->avg_recipients = d->avg_recipients
                            ? d->avg_recipients * 0.9 + 0.1 * (double)n
                            : (double)n;
    job->pending = n;
    d->pushes_pending += job->pending;
    pgw_push_event_init(&job->pe, job->res, job->event_id_str,
                        pgw_clock_wall_ms() / 1000,
                        job->rt->cfg->delivery.validity_s);
    pgw_push_event_build(&job->pe, PGW_PLATFORM_IOS);
    /* The team and badge rules of every part (push.h). */
    pgw_push_event_match(&job->pe, job->papp.app, &match);
    flags =
        (pgw_push_event_increments(&job->pe) ? PGW_STORE_FIND_INCREMENT : 0) |
        (parts > 1 ? PGW_STORE_FIND_ALONE : 0);
    for (size_t i = 0; i < parts; i++) {
        struct lookup_part *part = &job->parts[i];
        const char *const *names = (const char *const *)res->recipients;
        int rc;

        part->job = job;
        part->first = n * i / parts;
        part->n_names = n * (i + 1) / parts - part->first;
        rc = pgw_store_find_installations(
            d->o.store, job->app_id, names + part->first, part->n_names, &match,
            job->event_id, flags, on_installations, part);
        if (rc < 0) {
            pgw_log_warn("could not look up the installations of event "
                         "'%s': %s: it will be worked again",
                         job->event_id_str, pgw_strerror(rc));
            if (job->parts_out == 0) {
                job_free(job);
                return;
            }
            /* The parts out come back; the event is not finished. */
            job->lookup_failed = true;
            job->pending -= n - part->first;
            d->pushes_pending -= n - part->first;
            break;
        }
        job->parts_out++;
    }
    job->waiting_store = true;
}

/* One part of a job's lookup is back. */
static void on_installations(void *arg, int err,
                             const struct pgw_installation *rows, size_t n)
{
    struct lookup_part *part = arg;
    struct job *job = part->job;
    struct pgw_dispatch *d = job->d;

    job->parts_out--;
    if (job->parts_out == 0)
        job->waiting_store = false;
    if (d->closing) {
        if (job->parts_out == 0)
            job_free(job);
        return;
    }
    /* Its recipients leave pushes_pending; its pushes enter it. */
    job->pending -= part->n_names;
    d->pushes_pending -= part->n_names;
    if (err >= 0 && job->n_parts > 1 && pgw_push_event_increments(&job->pe)) {
        /* Committed by this part whatever happens to the others. */
        for (size_t i = 0; i < n; i++)
            if (rows[i].platform == PGW_PLATFORM_IOS)
                id_list_add(job, &job->inc, rows[i].id);
    }
    if (err < 0) {
        /* Not finished: the event is worked again after its lease. */
        if (!job->lookup_failed)
            pgw_log_warn("could not look up the installations of event "
                         "'%s': %s: it will be worked again",
                         job->event_id_str, pgw_strerror(err));
        job->lookup_failed = true;
        job_drop_unsent(job);
    } else if (!job->lookup_failed) {
        add_pushes(job, rows, n);
    }
    if (job->parts_out == 0) {
        /* Increments to take back: of devices matched by two parts; or,
         * when a part failed, all the others made (the event is worked
         * again, with its increments). */
        struct id_list *u = job->lookup_failed ? &job->inc : &job->undo;

        if (u->n) {
            int rc = pgw_store_undo_badges(d->o.store, u->v, u->n,
                                           on_badges_undone, job);
            if (rc == 0)
                job->undoing = job->waiting_store = true;
            else
                pgw_log_warn("could not take back the extra badge "
                             "increments of event '%s': %s",
                             job->event_id_str, pgw_strerror(rc));
        }
        if (!job->undoing && job->answered == job->n_pushes) {
            job_lookup_done(job);
            return;
        }
    }
    job_send_some(job);
}

/* Builds the pushes of one lookup part's rows into a new block. */
static void add_pushes(struct job *job, const struct pgw_installation *rows,
                       size_t n)
{
    struct pgw_dispatch *d = job->d;
    struct push_block *blk =
        malloc(sizeof(*blk) + (n ? n : 1) * sizeof(*blk->p));
    bool inc = job->n_parts > 1 && pgw_push_event_increments(&job->pe);

    if (!blk) {
        pgw_log_error("out of memory working event '%s'", job->event_id_str);
        job->lookup_failed = true;
        return;
    }
    pgw_list_init(&blk->node);
    blk->n = 0;
    job->rows_seen += n;
    for (size_t i = 0; i < n; i++) {
        const struct pgw_installation *row = &rows[i];
        struct job_push *jp = &blk->p[blk->n];
        struct pgw_push_failure f;
        int kept = 0;

        /* Matched again by another part: one push. The parts of one
         * event increment a device once and return the same badge; a
         * different one means another increment came in between and this
         * part made its own too, which is taken back (store.h). */
        if (job->n_parts > 1 && !seen_add(job, row->id, row->badge, &kept)) {
            if (inc && row->platform == PGW_PLATFORM_IOS && row->badge != kept)
                id_list_add(job, &job->undo, row->id);
            continue;
        }
        switch (
            pgw_push_make(&job->pe, &job->papp, row, row->badge, &jp->p, &f)) {
        case PGW_PUSH_SEND:
            jp->job = job;
            blk->n++;
            break;
        case PGW_PUSH_FAIL:
            fail_unsent(job, row->id, f.provider,
                        f.expired ? PGW_STORE_FAIL_EXPIRED
                                  : PGW_STORE_FAIL_FAILED,
                        f.reason);
            break;
        case PGW_PUSH_NONE:
            break;
        }
    }
    if (blk->n == 0) {
        free(blk);
        return;
    }
    pgw_list_push_back(&job->blocks, &blk->node);
    if (!job->send_block) {
        job->send_block = blk;
        job->send_idx = 0;
    }
    job->n_pushes += blk->n;
    /* Counted in pushes_pending until answered. */
    job->pending += blk->n;
    d->pushes_pending += blk->n;
}

/* Fibonacci hashing: the top bits of the product, which depend on every
 * bit of the id (the low bits depend only on the id's low bits). */
#define ID_HASH(id, shift)                                                     \
    ((size_t)(((uint64_t)(id)*0x9E3779B97F4A7C15ULL) >> (shift)))

/* Adds |id| (its row's |badge|) to the installations |job| gives a push;
 * false if it was there already, with the kept row's badge in
 * |*ret_badge|. Installation ids are positive: 0 marks a free slot. */
static bool seen_add(struct job *job, int64_t id, int badge, int *ret_badge)
{
    size_t mask, i;

    if ((job->seen_n + 1) * 2 > job->seen_cap) {
        size_t cap = job->seen_cap ? job->seen_cap * 2 : 1024;
        unsigned shift = job->seen_cap ? job->seen_shift - 1 : 64 - 10;
        struct seen *n = calloc(cap, sizeof(*n));

        if (!n)
            return true; /* at worst a device gets the push twice */
        for (i = 0; i < job->seen_cap; i++) {
            size_t j;
            if (!job->seen[i].id)
                continue;
            for (j = ID_HASH(job->seen[i].id, shift); n[j].id;
                 j = (j + 1) & (cap - 1))
                ;
            n[j] = job->seen[i];
        }
        free(job->seen);
        job->seen = n;
        job->seen_cap = cap;
        job->seen_shift = shift;
    }
    mask = job->seen_cap - 1;
    for (i = ID_HASH(id, job->seen_shift); job->seen[i].id; i = (i + 1) & mask)
        if (job->seen[i].id == id) {
            *ret_badge = job->seen[i].badge;
            return false;
        }
    job->seen[i] = (struct seen){id, badge};
    job->seen_n++;
    return true;
}

static void id_list_add(struct job *job, struct id_list *l, int64_t id)
{
    int64_t *v = pgw_array_grow(l->v, &l->cap, l->n, sizeof(*v), 16);

    if (!v) {
        pgw_log_error("out of memory: a badge of event '%s' stays one too "
                      "high",
                      job->event_id_str);
        return;
    }
    l->v = v;
    l->v[l->n++] = id;
}

/* The pushes of an event counted before they are sent: failures found
 * while building (bad profile, expired, too large). */
static void fail_unsent(struct job *job, int64_t inst, enum pgw_provider p,
                        enum pgw_store_failure_kind kind, const char *reason)
{
    job->n_unsent++;
    dispatch_count_push(job->d, p,
                        kind == PGW_STORE_FAIL_EXPIRED ? "expired" : "failed",
                        reason);
    if (add_failure(job, inst, p, kind, 0, reason, 0) < 0)
        pgw_log_error("out of memory recording a failure of event '%s'",
                      job->event_id_str);
}

static int add_failure(struct job *job, int64_t inst, enum pgw_provider p,
                       enum pgw_store_failure_kind kind, int status,
                       const char *reason, int64_t since)
{
    struct failure *f;

    f = pgw_array_grow(job->failures, &job->cap_failures, job->n_failures,
                       sizeof(*f), 8);
    if (!f)
        return PGW_ERR_NOMEM;
    job->failures = f;
    f = &job->failures[job->n_failures++];
    f->installation_id = inst;
    f->provider = p;
    f->kind = kind;
    f->status = status;
    snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
    f->invalid_since_ms = since;
    return 0;
}

/* A part failed: the event is worked again after its lease, so its
 * pushes not sent yet are not sent now (they would go twice): counted as
 * answered. */
static void job_drop_unsent(struct job *job)
{
    size_t n = job->n_pushes - job->next_send;

    job->next_send = job->n_pushes;
    job->answered += n;
    job->pending -= n;
    job->d->pushes_pending -= n;
}

/* ---- its pushes: sending, paced ----------------------------------------- */

/* Sends as many pushes of |job| as the in-flight cap allows. A push that
 * cannot even be handed to its sender is answered at once (job_outcome
 * never frees the job synchronously: finishing goes through the store). */
static void job_send_some(struct job *job)
{
    struct pgw_dispatch *d = job->d;

    while (!d->closing && !job->lookup_failed &&
           job->next_send < job->n_pushes && dispatch_inflight_room(d)) {
        struct job_push *jp;
        struct pgw_outcome err_o;

        while (job->send_idx == job->send_block->n) {
            job->send_block = pgw_list_entry(job->send_block->node.next,
                                             struct push_block, node);
            job->send_idx = 0;
        }
        jp = &job->send_block->p[job->send_idx++];
        job->next_send++;

        dispatch_count_send(d, jp->p.provider);
        if (pgw_runtime_send(job->rt, job->app, &jp->p, on_answer, jp, &err_o) <
            0) {
            /* The last push's outcome may end (and free) the job. */
            bool last = job->next_send == job->n_pushes;

            job_outcome(jp, &err_o);
            if (last)
                return;
        }
    }
}

/* Gives the room freed by answers to jobs with pushes left, oldest first. */
static void dispatch_pump(struct pgw_dispatch *d)
{
    struct pgw_list *pos, *next;

    /* After sends (fewer than CAP_EVERY since the last update: the first
     * pushes after start-up), while the cap holds sends back (no sends,
     * no update from count_send), and while no provider's streams are
     * known: a pump between the first send and its connection's SETTINGS
     * (the claim timer's, during a slow handshake) left max_inflight as
     * the cap, and the next event went out whole. */
    if (d->sends_since_cap || !d->cap_known || !dispatch_inflight_room(d))
        update_cap(d);
    /* Lookups waiting for room, oldest first. */
    while (!pgw_list_empty(&d->lookup_wait) && !d->closing) {
        struct job *j =
            pgw_list_entry(d->lookup_wait.next, struct job, wait_node);

        if (d->pushes_pending > 0 &&
            d->pushes_pending + j->res->n_recipients > d->max_pending)
            break;
        pgw_list_remove(&j->wait_node);
        d->wait_recipients -= j->res->n_recipients;
        job_lookup_start(j);
    }
    /* a push's outcome may end and free the job being visited */
    pgw_list_for_each_safe(pos, next, &d->jobs)
    {
        struct job *j = job_of(pos);

        if (d->closing || !dispatch_inflight_room(d))
            break;
        if (j->next_send < j->n_pushes)
            job_send_some(j);
    }
    /* What room is left: the broadcasts' share (broadcast.c). */
    broadcast_pump(d);
    /* A backlog left in the database: claim it once a batch fits. */
    if (d->backlog_hint && !d->closing)
        claim_events(d, d->claim_batch);
}

/* Fires once per loop iteration after answers or freed jobs. */
static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatch_pump(arg);
}

void dispatch_count_send(struct pgw_dispatch *d, enum pgw_provider p)
{
    d->inflight[p]++;
    d->sent_total[p]++;
    if (++d->recent[p] >= 4096) {
        d->recent[0] /= 2;
        d->recent[1] /= 2;
    }
    if (++d->sends_since_cap >= CAP_EVERY)
        update_cap(d);
}

size_t dispatch_bulk_cap(const struct pgw_dispatch *d)
{
    return d->cap_known || d->cap < PGW_DISPATCH_CAP_MIN ? d->cap
                                                         : PGW_DISPATCH_CAP_MIN;
}

bool dispatch_inflight_room(const struct pgw_dispatch *d)
{
    return inflight_total(d) < d->cap;
}

static size_t inflight_total(const struct pgw_dispatch *d)
{
    return d->inflight[0] + d->inflight[1];
}

/* Works out the in-flight cap again (pgw_dispatch_pacing_cap()): every
 * CAP_EVERY sends and by the pump (after sends, or while the cap is
 * reached), so the check before each send stays a compare. */
static void update_cap(struct pgw_dispatch *d)
{
    size_t capacity[2] = {0, 0};
    uint32_t share[2];
    bool measured = inflight_total(d) >= PGW_DISPATCH_CAP_MIN;

    d->sends_since_cap = 0;
    update_bound(d);
    /* What a provider's streams hold is its share of the pushes in
     * flight, not of the sends: one that answers sooner than the other
     * holds less than its share of the sends, and a cap from the sends
     * stopped below what fills the slower one's streams, so neither pool
     * was saturated, neither grew, and the cap stayed there. The sends
     * stand in while few pushes are in flight. */
    for (int p = 0; p < 2; p++)
        share[p] = !measured                     ? d->recent[p]
                   : d->inflight[p] > UINT32_MAX ? UINT32_MAX
                                                 : (uint32_t)d->inflight[p];
    for (int p = 0; p < 2 && d->rt; p++)
        if (share[p])
            capacity[p] =
                provider_capacity(d->rt, (enum pgw_provider)p, &d->rtt_us[p]);
    d->cap = pgw_dispatch_pacing_cap(share, capacity, d->bound);
    d->cap_known = capacity[0] || capacity[1];
}

/* Once a window: the answers' rate per provider (sends less what is
 * still in flight), and from it and the round trips the in-flight bound
 * (pgw_dispatch_inflight_bound()), with the pending-pushes bound over it
 * by as much as over max_inflight, so claims ahead keep their room. */
static void update_bound(struct pgw_dispatch *d)
{
    int64_t now = pgw_clock_mono_ms();
    int64_t elapsed = now - d->window_start_ms;

    if (elapsed < RATE_WINDOW_MS)
        return;
    for (int p = 0; p < 2; p++) {
        uint64_t answers = d->sent_total[p] - d->inflight[p];

        if (d->window_start_ms)
            d->answer_rate[p] = pgw_dispatch_rate_filter(
                d->answer_rate[p],
                (double)(answers - d->window_answers[p]) * 1000.0 /
                    (double)elapsed,
                elapsed / RATE_WINDOW_MS > 1000
                    ? 1000
                    : (unsigned)(elapsed / RATE_WINDOW_MS));
        d->window_answers[p] = answers;
    }
    d->window_start_ms = now;
    d->bound = pgw_dispatch_inflight_bound(
        d->answer_rate, d->rtt_us, d->o.max_inflight,
        d->o.max_inflight * INFLIGHT_CEIL_FACTOR);
    d->max_pending = d->bound + d->o.max_inflight * (PENDING_PUSHES_FACTOR - 1);
}

static size_t provider_capacity(const struct pgw_runtime *rt,
                                enum pgw_provider p, uint32_t *ret_rtt_us)
{
    struct pgw_h2_pool_stats st;

    if (p == PGW_PROVIDER_APNS) {
        if (!rt->apns)
            return 0;
        pgw_apns_stats(rt->apns, &st);
    } else {
        if (!rt->fcm)
            return 0;
        pgw_fcm_stats(rt->fcm, &st);
    }
    *ret_rtt_us = st.min_rtt_us;
    return st.capacity;
}

/* ---- their answers ------------------------------------------------------ */

/* Runs once per push handed to a sender, from the loop, with its
 * answer: may end the job (through the store, never synchronously). */
static void on_answer(void *arg, const struct pgw_outcome *o)
{
    job_outcome(arg, o);
}

/* An answer for a push of a job. */
static void job_outcome(struct job_push *jp, const struct pgw_outcome *o)
{
    struct job *job = jp->job;
    struct pgw_push *p = &jp->p;
    struct pgw_dispatch *d = job->d;
    enum pgw_store_failure_kind kind;
    int64_t at;
    bool retry_row = false;

    d->inflight[p->provider]--;
    dispatch_observe_latency(d, p->provider, &job->accepted);
    switch (dispatch_answer(d, job->rt, job->app_id, job->event_id, p, o, &kind,
                            &at)) {
    case DISPATCH_DELIVERED:
        job->delivered++;
        break;
    case DISPATCH_FAILED:
        add_failure(
            job, p->installation_id, p->provider, kind, o->status, o->reason,
            kind == PGW_STORE_FAIL_INVALIDATED ? o->invalid_since_ms : 0);
        break;
    case DISPATCH_RETRY:
        retry_row = add_retry_row(job, p, at, o->reason) == 0;
        break;
    }
    /* The body is not needed any more. */
    pgw_push_release(p);
    job->answered++;
    /* A retry row stays in memory until the job's end is written: it
     * stays counted until then (job_free), or a provider failing fast
     * turns the whole backlog into rows in memory. */
    if (!retry_row) {
        job->pending--;
        d->pushes_pending--;
    }
    if (job->answered == job->n_pushes && job->parts_out == 0 && !job->undoing)
        job_lookup_done(job);
    else if (!d->closing)
        event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* Keeps |p|'s request to be sent again at |at|, as a row written with
 * the event's end; 0, or -1 with the push recorded as failed. */
static int add_retry_row(struct job *job, const struct pgw_push *p, int64_t at,
                         const char *reason)
{
    struct retry_row *r;

    r = pgw_array_grow(job->retries, &job->cap_retries, job->n_retries,
                       sizeof(*r), 8);
    if (!r)
        goto fail;
    job->retries = r;
    r = &job->retries[job->n_retries];
    r->request = pgw_push_encode(p, job->app_id);
    if (!r->request)
        goto fail;
    r->installation_id = p->installation_id;
    r->provider = p->provider;
    r->attempts = p->attempts;
    r->not_before_ms = at;
    r->expires_at_ms = p->expires_at_ms;
    pgw_copy_str(r->reason, sizeof(r->reason), reason);
    job->n_retries++;
    return 0;
fail:
    add_failure(job, p->installation_id, p->provider, PGW_STORE_FAIL_FAILED, 0,
                "out_of_memory", 0);
    return -1;
}

/* ---- its end: one transaction ------------------------------------------- */

/* Every part of the lookup is back and every push answered: the event
 * ends, or, when a part failed, is left to be worked again once its lease
 * expires (its pushes sent so far go again then: at least once). */
static void job_lookup_done(struct job *job)
{
    if (job->lookup_failed) {
        job_free(job);
        return;
    }
    if (job->n_pushes == 0)
        job->result = job->rows_seen == 0 ? "no_devices" : "sent";
    job_finish(job);
}

/* The take-back of a job's extra increments committed (or failed): the
 * event ends only now, so a later event of the same devices counts from
 * the right badge. */
static void on_badges_undone(void *arg, int err)
{
    struct job *job = arg;
    struct pgw_dispatch *d = job->d;

    job->undoing = false;
    job->waiting_store = false;
    if (err < 0)
        pgw_log_warn("could not take back the extra badge increments of "
                     "event '%s': %s",
                     job->event_id_str, pgw_strerror(err));
    if (d->closing) {
        job_free(job);
        return;
    }
    if (job->answered == job->n_pushes)
        job_lookup_done(job);
}

/* Ends a job that sends nothing, with |result|. */
static void job_end(struct job *job, const char *result)
{
    job->result = result;
    job_finish(job);
}

/* The operator's line for an event that ended (outcome.c). */
static void log_event_end(const struct job *job)
{
    struct dispatch_event_end e = {
        .event_id = job->event_id,
        .app = job->app_id,
        .conv_id = job->ev ? job->ev->conv_id : "",
        .result = job->result,
        .pushes = job->n_pushes + job->n_unsent,
        .delivered = (size_t)job->delivered,
        .retrying = job->n_retries,
        .accepted = &job->accepted,
    };

    for (size_t i = 0; i < job->n_failures; i++)
        if ((unsigned)job->failures[i].kind < PGW_ARRAY_SIZE(e.failed))
            e.failed[job->failures[i].kind]++;
    dispatch_log_event_end(&e);
}

static void job_finish(struct job *job)
{
    struct pgw_dispatch *d = job->d;
    struct pgw_store_failure *fs = NULL;
    struct pgw_store_retry_new *rs = NULL;
    struct pgw_store_event_result res;
    int rc;

    if (job->finishing)
        return;
    if (d->closing) {
        /* Not recorded: the lease expires and the event is worked again. */
        job_free(job);
        return;
    }
    job->finishing = true;
    fs = calloc(job->n_failures + 1, sizeof(*fs));
    rs = calloc(job->n_retries + 1, sizeof(*rs));
    if (!fs || !rs) {
        rc = PGW_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < job->n_failures; i++) {
        fs[i].installation_id = job->failures[i].installation_id;
        fs[i].provider = pgw_provider_names[job->failures[i].provider];
        fs[i].kind = job->failures[i].kind;
        fs[i].status = job->failures[i].status;
        fs[i].reason = job->failures[i].reason;
        fs[i].invalid_since_ms = job->failures[i].invalid_since_ms;
    }
    for (size_t i = 0; i < job->n_retries; i++) {
        rs[i].installation_id = job->retries[i].installation_id;
        rs[i].provider = pgw_provider_names[job->retries[i].provider];
        rs[i].request = job->retries[i].request;
        rs[i].attempts = job->retries[i].attempts;
        rs[i].not_before_ms = job->retries[i].not_before_ms;
        rs[i].expires_at_ms = job->retries[i].expires_at_ms;
        rs[i].last_reason = job->retries[i].reason;
    }
    if (!job->result)
        job->result = dispatch_sent_result(job->n_pushes + job->n_unsent,
                                           (size_t)job->delivered);
    memset(&res, 0, sizeof(res));
    res.event_id = job->event_id;
    res.result = job->result;
    /* Every push once: those sent, and those that failed unsent. */
    res.pushes_total = (int)(job->n_pushes + job->n_unsent);
    res.pushes_delivered = job->delivered;
    res.failures = fs;
    res.n_failures = job->n_failures;
    res.retries = rs;
    res.n_retries = job->n_retries;
    rc = pgw_store_finish_event(d->o.store, &res, on_finished, job);
    if (rc == 0)
        job->waiting_store = true;
out:
    free(fs);
    free(rs);
    if (rc < 0)
        finish_later(job, rc);
}

/* Fires when the store committed (or failed) the end of an event. */
static void on_finished(void *arg, int err)
{
    struct job *job = arg;
    struct pgw_dispatch *d = job->d;

    job->waiting_store = false;
    if (d->closing) {
        job_free(job);
        return;
    }
    if (err < 0) {
        finish_later(job, err);
        return;
    }
    dispatch_count_event(d, job->app_id, job->result);
    log_event_end(job);
    job_free(job);
}

/* The outcome of |job| could not be recorded (|err|): try again in a
 * while, keeping the job (and its lease, renewed) until it is. */
static void finish_later(struct job *job, int err)
{
    struct timeval tv = {FINISH_RETRY_MS / 1000,
                         (FINISH_RETRY_MS % 1000) * 1000};

    pgw_log_warn("could not record the outcome of event '%s': %s: trying "
                 "again",
                 job->event_id_str, pgw_strerror(err));
    job->finishing = false;
    if (!job->retry_finish_timer)
        job->retry_finish_timer =
            evtimer_new(job->d->o.base, on_finish_retry_timer, job);
    if (job->retry_finish_timer)
        evtimer_add(job->retry_finish_timer, &tv);
}

static void on_finish_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    job_finish(arg);
}

static void job_free(struct job *job)
{
    struct pgw_dispatch *d = job->d;

    pgw_list_remove(&job->node);
    d->n_jobs--;
    d->pushes_pending -= job->pending;
    if (pgw_list_linked(&job->wait_node)) {
        d->wait_recipients -= job->res->n_recipients;
        pgw_list_remove(&job->wait_node);
    }
    pgw_push_event_release(&job->pe);
    while (!pgw_list_empty(&job->blocks)) {
        struct push_block *b = pgw_list_entry(pgw_list_pop_front(&job->blocks),
                                              struct push_block, node);

        for (size_t i = 0; i < b->n; i++)
            pgw_push_release(&b->p[i].p);
        free(b);
    }
    free(job->parts);
    free(job->seen);
    free(job->undo.v);
    free(job->inc.v);
    free(job->failures);
    for (size_t i = 0; i < job->n_retries; i++)
        free(job->retries[i].request);
    free(job->retries);
    if (job->retry_finish_timer)
        event_free(job->retry_finish_timer);
    pgw_resolve_free(job->res);
    pgw_event_free(job->ev);
    free(job->app_id);
    pgw_runtime_unref(job->rt);
    free(job);
    /* Room for a claim or for waiting pushes. */
    if (!d->closing)
        event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* ---- claims and leases -------------------------------------------------- */

static void on_claim_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_dispatch *d = arg;
    (void)fd;
    (void)what;

    if (!d->rt || d->draining)
        return;
    claim_events(d, 1);
    dispatch_claim_retries(d);
    broadcast_tick(d);
    dispatch_pump(d);
}

/* Claims pending events with a free or expired lease (left by the intake,
 * by another process, or by one that died) if at least |min_room| more
 * jobs fit and the other bounds leave room. */
static void claim_events(struct pgw_dispatch *d, size_t min_room)
{
    size_t room, jobs = d->n_jobs + d->reserved;

    if (d->claiming || !d->rt || d->draining || jobs >= d->o.max_events)
        return;
    room = pgw_dispatch_claim_room(d->o.max_events - jobs, min_room,
                                   d->pushes_pending + d->wait_recipients,
                                   d->max_pending, d->avg_recipients,
                                   dispatch_inflight_room(d));
    if (room == 0)
        return;
    if (pgw_store_claim_events(d->o.store, (unsigned)room, d->o.lease_ms,
                               on_claimed, d) == 0) {
        d->claiming = true;
        d->claim_asked = room;
        d->claim_stored_gen = d->stored_gen;
    }
}

/* True when a job of this process works |event_id|. */
static bool job_held(struct pgw_dispatch *d, int64_t event_id)
{
    struct pgw_list *pos;

    pgw_list_for_each(pos, &d->jobs)
    {
        if (job_of(pos)->event_id == event_id)
            return true;
    }
    return false;
}

static void on_claimed(void *arg, int err, const struct pgw_store_event *evs,
                       size_t n)
{
    struct pgw_dispatch *d = arg;

    d->claiming = false;
    if (err < 0 || !d->rt)
        return;
    /* A full batch: more may be waiting (see claim_events); so may events
     * stored while the claim was on its way. */
    d->backlog_hint =
        n >= d->claim_asked || d->stored_gen != d->claim_stored_gen;
    for (size_t i = 0; i < n; i++) {
        struct pgw_event *ev = NULL;
        struct pgw_json_error perr;
        struct job *job;

        /* Our own lease ran out (the process stalled longer than it, or
         * its renewals were late) and the claim took the event back while
         * its job still runs here: that job goes on under the renewed
         * lease; a second one would send every push again. */
        if (evs[i].was_ours && job_held(d, evs[i].id))
            continue;
        if (pgw_event_parse(evs[i].body, evs[i].body_len, &d->rt->limits, &ev,
                            &perr) < 0) {
            /* Stored events were valid when accepted; limits may have
             * shrunk since. Finish it with what is known. */
            ev = NULL;
        }
        job = ev ? job_new(d, evs[i].id, evs[i].app_id, ev) : NULL;
        if (!job && ev == NULL) {
            struct pgw_store_event_result res = {.event_id = evs[i].id,
                                                 .result = "invalid_event"};
            pgw_log_warn("stored event '%" PRId64 "' is no longer valid: "
                         "%s: %s",
                         evs[i].id, perr.field, perr.reason);
            pgw_store_finish_event(d->o.store, &res, on_renewed, NULL);
            continue;
        }
        if (!job)
            continue;
        if (ev->push_data_ignored)
            pgw_log_warn("event '%" PRId64 "': pushData ignored: it is %s "
                         "(an object or a string is expected); the template "
                         "applies",
                         evs[i].id, ev->push_data_ignored);
        job_start(job);
    }
    if (d->backlog_hint)
        event_active(d->pump_ev, EV_TIMEOUT, 0);
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_dispatch *d = arg;
    struct pgw_list *pos;
    int64_t *ids;
    size_t n = 0;
    (void)fd;
    (void)what;

    if (d->n_jobs == 0 && d->retries_inflight == 0)
        return;
    ids = calloc(d->n_jobs + 1, sizeof(*ids));
    if (!ids)
        return;
    pgw_list_for_each(pos, &d->jobs)
    {
        ids[n++] = job_of(pos)->event_id;
    }
    pgw_store_renew_leases(d->o.store, ids, n, d->o.lease_ms, on_renewed, NULL);
    free(ids);
}

static void on_renewed(void *arg, int err)
{
    (void)arg;
    if (err < 0)
        pgw_log_warn("could not renew leases: %s", pgw_strerror(err));
}

/* ---- clocks ------------------------------------------------------------- */
