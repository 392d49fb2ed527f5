/*
 * The sender of API pushes (DESIGN §15.5), inside the dispatcher on the
 * loop thread: requests stored in api_pushes by the push API (lc_push.c)
 * are claimed with leases when due, their audience is walked a page at a
 * time in installations.id order, and each device's push goes through
 * the engine of events: push.c's payloads, the dispatcher's pacing and
 * outcomes (delivered, retry rows, failures, invalidations, owned by the
 * request: api_push_id). After every push of a page has an outcome, the
 * cursor and the counters are committed in one transaction, so a sender
 * that dies is taken over after its lease and at most one page is sent
 * twice. Memory is one page per request being sent, whatever the
 * audience.
 */
#ifndef PUSHGW_BROADCAST_H
#define PUSHGW_BROADCAST_H

#include <stdbool.h>

struct pgw_dispatch;

/*
 * A request was just committed (the push API calls it after its insert's
 * commit): one due now is claimed at once instead of at the next tick of
 * the claim timer, and a scheduled one's timer is set. Loop thread only;
 * a no-op while draining or stopped.
 */
void pgw_broadcast_kick(struct pgw_dispatch *d);

#endif
