/*
 * A mailbox from any thread to the thread of one event_base: messages are
 * closures run on the reader's loop, oldest first, plus a word of control
 * bits that needs no allocation (so "stop" and "quit" cannot fail).
 *
 * A writer posts with pgw_xqueue_post() or pgw_xqueue_signal(); the
 * reader's loop runs the messages posted so far, then calls the control
 * callback with the bits set since the last call (so a bit asked for
 * after some messages is seen after them). Wake-ups go through an
 * eventfd written only when the queue turns non-empty: a burst costs one
 * wake-up.
 *
 * Threads: pgw_xqueue_new(), pgw_xqueue_drain() and pgw_xqueue_free() are
 * the reader's: call them on the reader's thread, or on another thread
 * once the reader's loop has stopped for good (the hand-over at shutdown:
 * drain, then the caller owns what the messages refer to).
 */
#ifndef PUSHGW_XQUEUE_H
#define PUSHGW_XQUEUE_H

#include "util/list.h"

struct event_base;
struct pgw_xqueue;

/*
 * A message. Embed it (usually first) in a struct of your own and set
 * |run|; the queue owns the message from the post until it calls |run|,
 * exactly once, on the reader's thread; |run| then owns it (and frees it).
 */
struct pgw_xmsg {
    struct pgw_list node; /* the queue's */
    void (*run)(struct pgw_xmsg *m);
};

/* Called on the reader's thread with the control bits posted (not 0). */
typedef void (*pgw_xqueue_ctl_fn)(void *arg, unsigned bits);

/*
 * A mailbox read by |base|'s loop; |ctl| (may be NULL) receives the
 * control bits. Errors: PGW_ERR_IO (no eventfd), PGW_ERR_NOMEM. Free
 * with pgw_xqueue_free().
 */
int pgw_xqueue_new(struct event_base *base, pgw_xqueue_ctl_fn ctl,
                   void *ctl_arg, struct pgw_xqueue **ret_q);

/* Any thread: queues |m| (owned by the queue from here). Cannot fail. */
void pgw_xqueue_post(struct pgw_xqueue *self, struct pgw_xmsg *m);

/* Any thread: sets the control bits |bits|. Cannot fail. */
void pgw_xqueue_signal(struct pgw_xqueue *self, unsigned bits);

/*
 * Runs the messages waiting, then the control callback, now, on the
 * calling thread (see "Threads" above). Messages the runs post to this
 * queue are run too, until it is empty.
 */
void pgw_xqueue_drain(struct pgw_xqueue *self);

/* Drains (see above), then frees. NULL is a no-op. */
void pgw_xqueue_free(struct pgw_xqueue *self);

#endif
