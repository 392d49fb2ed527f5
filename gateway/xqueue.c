/* The cross-thread mailbox; see xqueue.h. */
#include "xqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "pushgw.h"

struct pgw_xqueue {
    pthread_mutex_t mu;   /* msgs, bits */
    struct pgw_list msgs; /* struct pgw_xmsg, FIFO */
    unsigned bits;
    int efd; /* written when a message or a bit arrives in an empty queue */
    struct event *ev;
    pgw_xqueue_ctl_fn ctl;
    void *ctl_arg;
};

/* The reader reads the eventfd before taking the queue, so what is posted
 * meanwhile is either taken or wakes it again. */
static void wake(struct pgw_xqueue *q)
{
    uint64_t one = 1;

    if (write(q->efd, &one, sizeof(one)) < 0)
        pgw_log_error("could not wake a thread: %s", strerror(errno));
}

void pgw_xqueue_post(struct pgw_xqueue *self, struct pgw_xmsg *m)
{
    bool was_empty;

    pthread_mutex_lock(&self->mu);
    was_empty = pgw_list_empty(&self->msgs) && self->bits == 0;
    pgw_list_push_back(&self->msgs, &m->node);
    pthread_mutex_unlock(&self->mu);
    if (was_empty)
        wake(self);
}

void pgw_xqueue_signal(struct pgw_xqueue *self, unsigned bits)
{
    bool was_empty;

    pthread_mutex_lock(&self->mu);
    was_empty = pgw_list_empty(&self->msgs) && self->bits == 0;
    self->bits |= bits;
    pthread_mutex_unlock(&self->mu);
    if (was_empty)
        wake(self);
}

/* Runs what is queued; returns false when there was nothing. */
static bool run_once(struct pgw_xqueue *q)
{
    struct pgw_list taken = PGW_LIST_HEAD_INIT(taken);
    struct pgw_list *node;
    unsigned bits;
    uint64_t v;

    if (read(q->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        pgw_log_error("could not read a wake-up: %s", strerror(errno));
    pthread_mutex_lock(&q->mu);
    pgw_list_append_all(&taken, &q->msgs);
    bits = q->bits;
    q->bits = 0;
    pthread_mutex_unlock(&q->mu);
    if (pgw_list_empty(&taken) && bits == 0)
        return false;
    /* off the list before it runs: |run| may free the message */
    while ((node = pgw_list_pop_front(&taken)) != NULL) {
        struct pgw_xmsg *m = pgw_list_entry(node, struct pgw_xmsg, node);

        m->run(m);
    }
    if (bits != 0 && q->ctl != NULL)
        q->ctl(q->ctl_arg, bits);
    return true;
}

/* Fires when the eventfd is readable: something was posted. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_once(arg);
}

int pgw_xqueue_new(struct event_base *base, pgw_xqueue_ctl_fn ctl,
                   void *ctl_arg, struct pgw_xqueue **ret_q)
{
    struct pgw_xqueue *q = calloc(1, sizeof(*q));
    int err = PGW_ERR_NOMEM;

    if (q == NULL)
        return PGW_ERR_NOMEM;
    pgw_list_init(&q->msgs);
    q->efd = -1;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        return PGW_ERR_NOMEM;
    }
    q->ctl = ctl;
    q->ctl_arg = ctl_arg;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        pgw_log_error("eventfd: %s", strerror(errno));
        err = PGW_ERR_IO;
        goto fail;
    }
    q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, on_wake, q);
    if (q->ev == NULL || event_add(q->ev, NULL) < 0)
        goto fail;
    *ret_q = q;
    return 0;
fail:
    pgw_xqueue_free(q);
    return err;
}

void pgw_xqueue_drain(struct pgw_xqueue *self)
{
    while (run_once(self))
        ;
}

void pgw_xqueue_free(struct pgw_xqueue *self)
{
    if (self == NULL)
        return;
    if (self->efd >= 0)
        pgw_xqueue_drain(self);
    if (self->ev != NULL)
        event_free(self->ev);
    if (self->efd >= 0)
        close(self->efd);
    pthread_mutex_destroy(&self->mu);
    free(self);
}
