-- pushgw schema, version 5: claims always walk events_claimable.
--
-- A claim reads "state = 'pending' AND lease_until < now() ORDER BY
-- lease_until, id": the range of events_claimable that holds only the
-- claimable events. events_backlog (state) WHERE state <> 'done' could
-- serve it too, and the planner took it whenever its statistics said
-- pending events were rare, as they are in a healthy queue: then every
-- claim read and sorted all pending events, leased ones included, 5 to
-- 300 ms per claim with a backlog (docs/BENCHMARKS.md). The backlog count
-- now adds the pending events (events_claimable) and the retrying ones
-- (events_retrying, small), so no index of "state <> 'done'" is needed.
DROP INDEX events_backlog;
CREATE INDEX events_retrying ON events (id) WHERE state = 'retrying';
