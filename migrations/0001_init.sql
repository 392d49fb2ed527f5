-- pushgw schema, version 1: devices (installations) and the migration log.
-- Operators administer installations with plain SQL; see README.md.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz DEFAULT now()
);

CREATE TABLE installations (
    id              bigserial PRIMARY KEY,
    app_id          text NOT NULL,
    installation_id text,
    device_type     text NOT NULL CHECK (device_type IN ('ios', 'android')),
    device_token    text NOT NULL,
    channels        text[] NOT NULL DEFAULT '{}',
    badge           integer NOT NULL DEFAULT 0,
    apns_topic      text,
    apns_team_id    text,
    time_zone       text,
    valid           boolean NOT NULL DEFAULT true,
    invalid_reason  text,
    invalidated_at  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, device_token)
);

-- Recipients are matched with channels && $1: GIN makes that an index scan.
CREATE INDEX installations_channels_gin ON installations USING gin (channels);
-- Per-app listing of live devices (admin queries, metrics).
CREATE INDEX installations_app_valid ON installations (app_id) WHERE valid;

-- updated_at tracks changes to the registration (token, channels, topic,
-- team, validity) made by operators or by pushgw, so an APNs 410 older than
-- a re-registration does not invalidate the new token. A badge change alone
-- is not a registration change: otherwise every push would make the device
-- look re-registered and a 410 could never invalidate it. The WHEN clause
-- keeps the badge-only UPDATE of every push free of a trigger call.
CREATE FUNCTION pushgw_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TRIGGER installations_touch_updated_at
    BEFORE UPDATE ON installations
    FOR EACH ROW
    WHEN ((OLD.app_id, OLD.installation_id, OLD.device_type,
           OLD.device_token, OLD.channels, OLD.apns_topic, OLD.apns_team_id,
           OLD.time_zone, OLD.valid, OLD.invalid_reason, OLD.invalidated_at)
          IS DISTINCT FROM
          (NEW.app_id, NEW.installation_id, NEW.device_type,
           NEW.device_token, NEW.channels, NEW.apns_topic, NEW.apns_team_id,
           NEW.time_zone, NEW.valid, NEW.invalid_reason, NEW.invalidated_at))
    EXECUTE FUNCTION pushgw_touch_updated_at();
