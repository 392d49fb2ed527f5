/*
 * The dispatcher's pure policies (no state, no I/O, never log): how many
 * pushes may be in flight, the in-flight bound from the answers' rate and
 * round trip, and how many events to claim. dispatch.c feeds them what it
 * measures; test_dispatch checks them with exact inputs.
 */
#ifndef PUSHGW_DISPATCH_POLICY_H
#define PUSHGW_DISPATCH_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The in-flight cap never goes under this (pgw_dispatch_pacing_cap()). */
#define PGW_DISPATCH_CAP_MIN 256
/* Events claimed at most per statement. */
#define PGW_DISPATCH_CLAIM_MAX 200

/*
 * The pacing policy: how many pushes may be in flight. Enough to keep
 * every stream of the busiest provider full, and no more: a provider
 * holds its share of what is in flight (|recent|[p] of the recent sends,
 * index 0 APNs, 1 FCM), so a total of |capacity|[p] (its streams) /
 * share fills them; past the smallest such total, pushes only wait in a
 * pool's queue, built, their memory going cold. With 1/CAP_SLACK_DIV
 * (an eighth) of room over it, at least PGW_DISPATCH_CAP_MIN; |max_inflight|
 * until a provider's streams are known, and never more. Pure.
 */
size_t pgw_dispatch_pacing_cap(const uint32_t recent[2],
                               const size_t capacity[2], size_t max_inflight);

/*
 * The in-flight bound: what keeps the answers coming at the rate they
 * come over the path's round trip (bandwidth × delay), four times over,
 * so that a rate held back by the bound can grow per round trip and the
 * answers come back in large pieces:
 * INFLIGHT_GAIN (4) × the sum over providers of |rate|[p] (answers per
 * second) × |rtt_us|[p] (its round trip; 0 unknown), never under
 * |floor| (a provider near, slow or not answering holds no more than
 * that) nor over |ceiling|. Pure.
 */
size_t pgw_dispatch_inflight_bound(const double rate[2],
                                   const uint32_t rtt_us[2], size_t floor,
                                   size_t ceiling);

/*
 * The answer rate's filter: the new estimate from the last one, |est|,
 * and the rate over the |windows| windows since, |sample| (answers per
 * second): the sample when it is higher, else the estimate less an
 * eighth per window, so a lull of a window or two does not shrink the
 * bound and a provider that stops answering gives it back within about
 * two seconds. Pure.
 */
double pgw_dispatch_rate_filter(double est, double sample, unsigned windows);

/*
 * The claim policy: how many events to claim from the database now (0:
 * none). |job_room| more jobs fit in memory, and a claim waits until at
 * least |min_room| do; |used| of |max_pending| pushes are pending
 * (built and not answered, or recipients of lookups out) and events have
 * had |avg_recipients| each. At most PGW_DISPATCH_CLAIM_MAX (one statement), no
 * more than the pending bound has room for (at least one while it has any).
 * While the in-flight cap is reached (|inflight_room| false), events are still
 * claimed ahead, once 1/CLAIM_AHEAD_DIV (a quarter) of the pending bound
 * is free: a far
 * provider keeps the cap reached for its whole round trip, and the next
 * events' lookups must be done before the pushes built run out. Pure.
 */
size_t pgw_dispatch_claim_room(size_t job_room, size_t min_room, size_t used,
                               size_t max_pending, double avg_recipients,
                               bool inflight_room);

#endif
