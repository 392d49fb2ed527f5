-- pushgw schema, version 10: what the sender of API pushes needs
-- (gateway/broadcast.c, DESIGN §15.5).
--
-- The sender walks the devices of one app in id order, a page at a time
-- (i.app_id = $1 AND i.valid AND i.id > cursor ORDER BY i.id LIMIT n):
-- this index makes each page a range read of the app's valid devices,
-- whatever other apps the table holds and wherever the cursor is.
CREATE INDEX installations_app_id_valid ON installations (app_id, id)
    WHERE valid;

-- Pushes of the request dropped because its expires_at passed before they
-- were sent or retried (DESIGN §9: "counted"), apart from errors. A
-- request still unsent at expires_at ends with result 'expired' and its
-- devices not walked are not counted anywhere.
ALTER TABLE api_pushes ADD COLUMN expired integer NOT NULL DEFAULT 0;

-- Badge "Increment" of an API push: a page's statement sets
-- installations.badge_event_id (migration 0006) to minus the api_pushes
-- id, so event ids (positive) and API pushes never collide, and a page
-- sent again after a crash gives its devices the badge they already got
-- instead of a second increment.
