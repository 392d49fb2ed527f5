/*
 * Draining (pgw_dispatch_drain, DESIGN §11): on SIGTERM no new work is
 * taken; the jobs, claimed retries and API pushes in memory finish until
 * the deadline, then every lease this process still holds is handed back
 * in one statement so another instance takes the rest at once, not when
 * the leases expire.
 */
#include <event2/event.h>

#include "dispatch_int.h"
#include "log.h"
#include "store.h"

static void on_drain_check(evutil_socket_t fd, short what, void *arg);
static void on_drain_deadline(evutil_socket_t fd, short what, void *arg);
static void drain_finish(struct pgw_dispatch *d);
static void on_released(void *arg, int err);

void pgw_dispatch_drain(struct pgw_dispatch *self, unsigned timeout_ms,
                        void (*done)(void *arg), void *arg)
{
    struct timeval check = {0, 20000};
    struct timeval deadline = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    self->draining = true;
    self->drain_done = done;
    self->drain_arg = arg;
    event_del(self->claim_timer);
    self->drain_timer =
        event_new(self->o.base, -1, EV_PERSIST, on_drain_check, self);
    self->drain_deadline = evtimer_new(self->o.base, on_drain_deadline, self);
    if (!self->drain_timer || !self->drain_deadline) {
        drain_finish(self);
        return;
    }
    event_add(self->drain_timer, &check);
    evtimer_add(self->drain_deadline, &deadline);
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_dispatch *d = arg;
    (void)fd;
    (void)what;

    if (d->n_jobs == 0 && d->retries_inflight == 0 && broadcast_idle(d))
        drain_finish(d);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct pgw_dispatch *d = arg;
    (void)fd;
    (void)what;

    pgw_log_warn("shutdown timeout: %zu event(s) not finished are handed "
                 "back",
                 d->n_jobs);
    drain_finish(d);
}

static void drain_finish(struct pgw_dispatch *d)
{
    if (d->drain_timer)
        event_del(d->drain_timer);
    if (d->drain_deadline)
        event_del(d->drain_deadline);
    if (pgw_store_release_leases(d->o.store, on_released, d) < 0)
        on_released(d, PGW_ERR_DB);
}

static void on_released(void *arg, int err)
{
    struct pgw_dispatch *d = arg;

    if (err < 0)
        pgw_log_warn("could not release leases: %s: other instances take "
                     "the events after the lease expires",
                     pgw_strerror(err));
    if (d->drain_done) {
        void (*done)(void *) = d->drain_done;
        d->drain_done = NULL;
        done(d->drain_arg);
    }
}
