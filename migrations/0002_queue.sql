-- pushgw schema, version 2: the durable queue of `serve` (docs/SERVICE.md).
-- events: one row per accepted event; push_retries: pushes to try again;
-- push_failures: every final outcome other than delivered.

CREATE TABLE events (
    id                 bigserial PRIMARY KEY,
    app_id             text NOT NULL,
    conv_id            text NOT NULL,
    msg_id             text,
    body               text NOT NULL,
    event_ts_ms        bigint NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    state              text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'retrying', 'done')),
    -- A free lease is lease_owner NULL and lease_until '-infinity' (not
    -- NULL): the claim index then orders free events first, oldest first.
    lease_owner        text,
    lease_until        timestamptz NOT NULL DEFAULT '-infinity',
    attempts           integer NOT NULL DEFAULT 0,
    pushes_total       integer NOT NULL DEFAULT 0,
    pushes_delivered   integer NOT NULL DEFAULT 0,
    pushes_invalidated integer NOT NULL DEFAULT 0,
    pushes_failed      integer NOT NULL DEFAULT 0,
    pushes_dropped     integer NOT NULL DEFAULT 0,
    result             text,
    finished_at        timestamptz
);

-- Idempotent intake: the same (app, convId, msgId) is accepted once.
CREATE UNIQUE INDEX events_idempotency ON events (app_id, conv_id, msg_id)
    WHERE msg_id IS NOT NULL;
-- Claims: pending events whose lease is free or expired, free ones first.
-- Events leased by a live process are skipped by the range on lease_until
-- instead of being walked one by one.
CREATE INDEX events_claimable ON events (lease_until, id)
    WHERE state = 'pending';
-- The backlog count (once a second) reads only the small live part.
CREATE INDEX events_backlog ON events (state) WHERE state <> 'done';

CREATE TABLE push_retries (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    installation_id bigint NOT NULL,
    app_id          text NOT NULL,
    provider        text NOT NULL CHECK (provider IN ('apns', 'fcm')),
    -- The prepared request as dispatch serialised it (JSON text), kept as
    -- is so a retry keeps its apns-id and badge.
    request         text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    last_reason     text,
    lease_owner     text,
    lease_until     timestamptz NOT NULL DEFAULT '-infinity',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Due retries, earliest first.
CREATE INDEX push_retries_due ON push_retries (not_before);
-- "Does this event still have retries?" when one ends.
CREATE INDEX push_retries_event ON push_retries (event_id);
-- Lease renewal and release by owner, without a scan of every retry.
CREATE INDEX push_retries_owner ON push_retries (lease_owner)
    WHERE lease_owner IS NOT NULL;

CREATE TABLE push_failures (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL,
    installation_id bigint NOT NULL,
    app_id          text NOT NULL,
    provider        text NOT NULL,
    outcome         text NOT NULL
                    CHECK (outcome IN ('invalidated', 'failed', 'expired')),
    status          integer NOT NULL DEFAULT 0,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX push_failures_event ON push_failures (event_id);
