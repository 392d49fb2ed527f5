-- pushgw schema, version 7: installation changes are announced, and
-- updated_at is set after the row is written.
--
-- pushgw caches which devices each recipient name maps to (docs/SERVICE.md,
-- "Installation cache"). Every change to an installation that a lookup
-- could see is announced on channel 'pushgw_installations', at commit, to
-- the pushgw processes listening: the app and the channels of the row
-- before and after, whose cached names they then forget. Badge-only
-- updates are not announced: pushgw makes one on every iOS push, and the
-- cache does not hold badges.
--
-- Payloads are JSON: {"app": A, "channels": [...]}; {"app": A} when the
-- channels do not fit in a notification (all of A's names are forgotten);
-- {} for TRUNCATE or an app id too long (everything is forgotten).
--
-- updated_at: migration 0001 set it in a BEFORE UPDATE trigger. Any BEFORE
-- ROW UPDATE trigger makes Postgres lock each row it updates first, with a
-- WAL record of its own, whatever its WHEN clause says: the badge
-- increment of every push paid that lock and the trigger's test on top of
-- its update, 12 % of Postgres's time in the fan-out benchmark. Now a
-- badge-only update costs the AFTER trigger's WHEN test alone; a change of
-- the registration costs a second update of the row (of updated_at only,
-- which fires no trigger). That update runs with the rights of the
-- function's owner (who ran the migration) and the migration's
-- search_path, as the BEFORE trigger's assignment needed none: a role
-- allowed to update only some columns of installations can still change
-- a registration.
CREATE FUNCTION pushgw_installation_payload(app text, channels text[])
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    p text := json_build_object('app', app, 'channels', channels);
BEGIN
    IF octet_length(p) > 7000 THEN
        p := json_build_object('app', app);
    END IF;
    IF octet_length(p) > 7000 THEN
        p := '{}';
    END IF;
    RETURN p;
END
$$;

CREATE FUNCTION pushgw_installation_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('pushgw_installations', '{}');
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE installations SET updated_at = now() WHERE id = NEW.id;
    END IF;
    -- the same payload twice in one transaction is sent once
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('pushgw_installations',
            pushgw_installation_payload(OLD.app_id, OLD.channels));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('pushgw_installations',
            pushgw_installation_payload(NEW.app_id, NEW.channels));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER installations_touch_updated_at ON installations;
DROP FUNCTION pushgw_touch_updated_at();

-- Migration 0001's list of registration columns.
CREATE TRIGGER installations_changed_update
    AFTER UPDATE ON installations
    FOR EACH ROW
    WHEN ((OLD.app_id, OLD.installation_id, OLD.device_type,
           OLD.device_token, OLD.channels, OLD.apns_topic, OLD.apns_team_id,
           OLD.time_zone, OLD.valid, OLD.invalid_reason, OLD.invalidated_at)
          IS DISTINCT FROM
          (NEW.app_id, NEW.installation_id, NEW.device_type,
           NEW.device_token, NEW.channels, NEW.apns_topic, NEW.apns_team_id,
           NEW.time_zone, NEW.valid, NEW.invalid_reason, NEW.invalidated_at))
    EXECUTE FUNCTION pushgw_installation_changed();

CREATE TRIGGER installations_changed_insert_delete
    AFTER INSERT OR DELETE ON installations
    FOR EACH ROW EXECUTE FUNCTION pushgw_installation_changed();

CREATE TRIGGER installations_changed_truncate
    AFTER TRUNCATE ON installations
    FOR EACH STATEMENT EXECUTE FUNCTION pushgw_installation_changed();
