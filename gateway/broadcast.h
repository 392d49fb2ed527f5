/*
 * The sender of API pushes (DESIGN §15.5), inside the dispatcher on the
 * loop thread: requests stored in api_pushes by the push API (lc_push.c)
 * are claimed with leases when due, their audience is walked a page at a
 * time in installations.id order, and each device's push goes through
 * the engine of events: push.c's payloads, the dispatcher's pacing and
 * outcomes (delivered, retry rows, failures, invalidations, owned by the
 * request: api_push_id). After every push of a page has an outcome, the
 * cursor and the counters are committed in one transaction, so a sender
 * that dies is taken over after its lease and at most the window of pages
 * sent and not committed (12 pages of 500) is sent twice. Memory is at
 * most 24 pages per request being sent, whatever the audience.
 */
#ifndef PUSHGW_BROADCAST_H
#define PUSHGW_BROADCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pgw_dispatch;

/*
 * A request was just committed (the push API calls it after its insert's
 * commit): one due now is claimed at once instead of at the next tick of
 * the claim timer, and a scheduled one's timer is set. Loop thread only;
 * a no-op while draining or stopped.
 */
void pgw_broadcast_kick(struct pgw_dispatch *d);

/*
 * The broadcasts' own bound on their pushes in flight, so that a chat
 * push does not wait behind them on the providers' connections (why:
 * broadcast.c, room()). A pure policy, fed every broadcast push's answer
 * time: each round (half the limit's worth of answers, plus 64) compares
 * the round's mean answer time with the fastest answer of the last
 * PGW_BROADCAST_PACE_BASES rounds (the time without a queue); a queueing
 * delay over PGW_BROADCAST_PACE_TARGET_US shrinks the limit by a
 * quarter, a round under it in which the limit held a send back
 * (|limited|, set by the caller) grows it by an eighth. The limit stays
 * within PGW_BROADCAST_PACE_MIN and |max| (the dispatcher's cap; ignored
 * when below the minimum). Once the limit is reached, sends resume only
 * when a batch of it is free: a 1/PGW_BROADCAST_PACE_BATCH_DIV of the
 * limit, at least PGW_BROADCAST_PACE_BATCH (pgw_broadcast_pace_may_send();
 * why: broadcast.c).
 */
#define PGW_BROADCAST_PACE_TARGET_US 5000
#define PGW_BROADCAST_PACE_MIN 128
#define PGW_BROADCAST_PACE_START 512
#define PGW_BROADCAST_PACE_BASES 16
#define PGW_BROADCAST_PACE_BATCH 32
#define PGW_BROADCAST_PACE_BATCH_DIV 4

struct pgw_broadcast_pace {
    size_t limit;
    bool limited;   /* the limit held back a send this round */
    bool batching;  /* the limit was reached: a batch's room first */
    size_t round_n; /* answers timed this round */
    int64_t round_sum_us, round_min_us;
    int64_t base_us[PGW_BROADCAST_PACE_BASES]; /* rounds' fastest answers */
    unsigned n_bases, next_base;
};

/* A bound at PGW_BROADCAST_PACE_START, no round begun. */
void pgw_broadcast_pace_init(struct pgw_broadcast_pace *pc);

/* Whether one more broadcast push may go with |inflight| of them in
 * flight (else |limited| is set). */
bool pgw_broadcast_pace_may_send(struct pgw_broadcast_pace *pc,
                                 size_t inflight);

/* The room sends wait for once the limit was reached. */
size_t pgw_broadcast_pace_batch(const struct pgw_broadcast_pace *pc);

/* One broadcast push answered |rtt_us| after it was handed over. */
void pgw_broadcast_pace_answer(struct pgw_broadcast_pace *pc, int64_t rtt_us,
                               size_t max);

#endif
