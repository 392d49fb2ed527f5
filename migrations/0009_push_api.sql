-- pushgw schema, version 9: pushes sent through the push API
-- (POST /1.1/push, DESIGN.md §15.5).
--
-- A push request is a row first, like an event: the API answers 200 only
-- after its insert commits. It names its audience with a query over
-- installations (query: the request's `where`, with `channels` folded in
-- as {"channels": {"$in": [...]}}), kept as the client sent it and
-- compiled again by whoever sends it, so the compiler is the one place
-- that decides what a query means. The sender walks the matching devices
-- in installations.id order; cursor_id is the last id whose push has an
-- outcome (delivered, failed, invalidated, or a retry row), committed
-- with the counters, so a sender that dies resumes after it and at most
-- one page is sent twice.
--
-- state: 'scheduled' until a sender takes it (the API reports
-- 'scheduled' while push_at is ahead and 'in-queue' once it is due),
-- 'sending' once a sender has taken it, 'done' at the end. A lease is
-- held while sending, as events hold theirs (lease_owner NULL and
-- lease_until '-infinity' when free).
CREATE TABLE api_pushes (
    id              bigserial PRIMARY KEY,
    object_id       text NOT NULL DEFAULT pushgw_lc_object_id(),
    app_id          text NOT NULL,
    data            jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    query           jsonb NOT NULL DEFAULT '{}'
                    CHECK (jsonb_typeof(query) = 'object'),
    -- 'dev' or 'prod' as the request chose (prod, X-LC-Prod); NULL: the
    -- content's _profile or the app's default decides
    profile         text CHECK (profile IN ('dev', 'prod')),
    push_at         timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    -- devices per second, at least 1000 (LeanCloud's rule); NULL: no limit
    flow_control    integer CHECK (flow_control IS NULL OR flow_control >= 1000),
    req_id          text,
    notification_id text,
    state           text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'sending', 'done')),
    lease_owner     text,
    lease_until     timestamptz NOT NULL DEFAULT '-infinity',
    cursor_id       bigint NOT NULL DEFAULT 0,
    devices         integer NOT NULL DEFAULT 0,
    successes       integer NOT NULL DEFAULT 0,
    invalid_tokens  integer NOT NULL DEFAULT 0,
    errors          integer NOT NULL DEFAULT 0,
    result          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);

CREATE UNIQUE INDEX api_pushes_object_id ON api_pushes (app_id, object_id);
-- req_id deduplicates for five minutes: the insert looks for a recent row
CREATE INDEX api_pushes_req_id ON api_pushes (app_id, req_id, created_at)
    WHERE req_id IS NOT NULL;
-- what a sender claims: due and not done, free leases first
CREATE INDEX api_pushes_due ON api_pushes (push_at, lease_until, id)
    WHERE state <> 'done';

-- A retry or a failure belongs to an event or to an API push, never both.
ALTER TABLE push_retries
    ALTER COLUMN event_id DROP NOT NULL,
    ADD COLUMN api_push_id bigint REFERENCES api_pushes (id) ON DELETE CASCADE,
    ADD CONSTRAINT push_retries_one_owner
        CHECK ((event_id IS NULL) <> (api_push_id IS NULL));
CREATE INDEX push_retries_api_push ON push_retries (api_push_id)
    WHERE api_push_id IS NOT NULL;

ALTER TABLE push_failures
    ALTER COLUMN event_id DROP NOT NULL,
    ADD COLUMN api_push_id bigint,
    ADD CONSTRAINT push_failures_one_owner
        CHECK ((event_id IS NULL) <> (api_push_id IS NULL));
CREATE INDEX push_failures_api_push ON push_failures (api_push_id)
    WHERE api_push_id IS NOT NULL;
