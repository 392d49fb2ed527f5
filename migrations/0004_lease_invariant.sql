-- pushgw schema, version 4: a leased event is always a pending one.
--
-- Every statement that finishes, renews or records pushes of an event
-- selects it by its primary key and its lease owner only. Adding
-- "state = 'pending'" there let the planner pick the partial index
-- events_claimable and walk every pending event for each row whenever its
-- statistics were older than the table (a fresh deployment, a truncated
-- table): 46 us per finished event with 20,000 events in flight, growing
-- with the backlog (docs/BENCHMARKS.md). The constraint states what the
-- store relies on instead: a lease is taken only on a pending event and
-- dropped when the event leaves that state.
ALTER TABLE events ADD CONSTRAINT events_lease_only_pending
    CHECK (lease_owner IS NULL OR state = 'pending');
