-- pushgw schema, version 8: what a LeanCloud/Parse _Installation carries
-- beyond the columns pushgw delivers with (DESIGN §15.3, §15.4).
--
-- object_id: the installation's LeanCloud objectId. The SDKs cache it and
-- address their installation by it (PUT /1.1/installations/{objectId}),
-- so an imported row keeps the id it had at LeanCloud, and a row created
-- here or by plain SQL gets one that looks the same: 24 lowercase hex
-- digits, the first 8 the creation time in seconds (as in LeanCloud's
-- MongoDB ObjectIds), the other 16 random. Unique per app.
--
-- device_profile: LeanCloud's deviceProfile (a certificate or mixpush
-- profile name), kept and returned; pushgw does not choose credentials by
-- it.
--
-- vendor: NULL, or 'fcm' for an Android device registered by LeanCloud's
-- FCM module, which sends its token as registrationId: device_token holds
-- that token, and the API answers with registrationId again. Other
-- vendors (HMS, mi, oppo…) cannot be delivered to and are refused.
--
-- extra: every other field of the object (appVersion, localeIdentifier,
-- custom fields…), kept as it came and returned as it is.
--
-- The installation cache does not hold these columns, so migration
-- 0007's trigger announces no change to them alone; updated_at is set by
-- the statements that change them (the /1.1/ API, import).
CREATE FUNCTION pushgw_lc_object_id() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT lpad(to_hex(floor(extract(epoch FROM clock_timestamp()))::bigint),
                8, '0')
           || substr(md5(gen_random_uuid()::text), 1, 16)
$$;

-- A volatile default is evaluated for every existing row: each gets its
-- own id (with the migration's time in its first digits).
ALTER TABLE installations
    ADD COLUMN object_id text DEFAULT pushgw_lc_object_id(),
    ADD COLUMN device_profile text,
    ADD COLUMN vendor text CHECK (vendor IN ('fcm')),
    ADD COLUMN extra jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(extra) = 'object');

CREATE UNIQUE INDEX installations_app_object_id
    ON installations (app_id, object_id) WHERE object_id IS NOT NULL;

-- Registrations of Android devices are matched by installationId.
CREATE INDEX installations_app_installation_id
    ON installations (app_id, installation_id)
    WHERE installation_id IS NOT NULL;
