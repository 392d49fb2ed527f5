/* The dispatcher's pure policies (see dispatch_policy.h). */
#include "dispatch_policy.h"

/* Bandwidth × delay, four times over: twice lets a rate held back by
 * the bound double per round trip; twice again keeps enough in flight
 * that answers come back in larger pieces per wake-up, which cost the
 * gateway (and the provider) less CPU per push than a trickle does
 * (docs/BENCHMARKS.md, Distance). */
#define INFLIGHT_GAIN 4
/* Room over what fills the providers' streams: an eighth. */
#define CAP_SLACK_DIV 8
/* While the in-flight cap is reached, events are claimed ahead once this
 * fraction of the pending-pushes bound is free. */
#define CLAIM_AHEAD_DIV 4

size_t pgw_dispatch_pacing_cap(const uint32_t recent[2],
                               const size_t capacity[2], size_t max_inflight)
{
    uint64_t sent = (uint64_t)recent[0] + recent[1];
    size_t best = SIZE_MAX;

    for (int p = 0; p < 2; p++) {
        if (recent[p] && capacity[p] && capacity[p] * sent / recent[p] < best)
            best = (size_t)(capacity[p] * sent / recent[p]);
    }
    if (best == SIZE_MAX || best >= max_inflight)
        return max_inflight;
    best += best / CAP_SLACK_DIV;
    return best < PGW_DISPATCH_CAP_MIN ? PGW_DISPATCH_CAP_MIN
           : best > max_inflight       ? max_inflight
                                       : best;
}

size_t pgw_dispatch_inflight_bound(const double rate[2],
                                   const uint32_t rtt_us[2], size_t floor,
                                   size_t ceiling)
{
    double bdp = 0;

    for (int p = 0; p < 2; p++)
        if (rate[p] > 0 && rtt_us[p])
            bdp += rate[p] * (double)rtt_us[p] / 1e6;
    bdp *= INFLIGHT_GAIN;
    if (bdp <= (double)floor)
        return floor;
    if (bdp >= (double)ceiling)
        return ceiling > floor ? ceiling : floor;
    return (size_t)bdp;
}

double pgw_dispatch_rate_filter(double est, double sample, unsigned windows)
{
    for (unsigned i = 0; i < windows && est > sample; i++)
        est -= est / 8;
    return sample > est ? sample : est;
}

size_t pgw_dispatch_claim_room(size_t job_room, size_t min_room, size_t used,
                               size_t max_pending, double avg_recipients,
                               bool inflight_room)
{
    size_t room = job_room, by_bound;

    if (used >= max_pending || room < min_room || room == 0)
        return 0;
    /* With every push slot taken (a far provider keeps them taken for its
     * round trip) the next events are claimed and looked up ahead, so
     * that their pushes are built when slots free: waiting for a free
     * slot to claim left the senders idle for a claim and a lookup each
     * time the built pushes ran out. In batches of a quarter of the
     * bound, not an event at a time. */
    if (!inflight_room && used > max_pending - max_pending / CLAIM_AHEAD_DIV)
        return 0;
    if (room > PGW_DISPATCH_CLAIM_MAX)
        room = PGW_DISPATCH_CLAIM_MAX;
    /* No more events than the bound on pending pushes has room for at
     * the recipients events have had: claimed events wait in memory for
     * their lookups. At least one. */
    by_bound = (size_t)((double)(max_pending - used) /
                        (avg_recipients > 1 ? avg_recipients : 1));
    if (by_bound < room)
        room = by_bound ? by_bound : 1;
    return room;
}
