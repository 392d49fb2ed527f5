-- pushgw schema, version 11: the insert of a push-API request
-- (POST /1.1/push, DESIGN §15.5), with its req_id dedup and its backlog
-- bound, as one call (gateway/store_pushreq.c).
--
-- req_id: a second request of the same app with the same req_id within
-- five minutes gets the first one's row back and stores nothing (LeanCloud's
-- rule). Two pushgw processes may take the two requests at once: the
-- function holds a transaction advisory lock on the (app, req_id) hash
-- while it looks and inserts, and each statement of a volatile PL/pgSQL
-- function sees what committed before it started, so the second caller,
-- once the first commits and frees the lock, finds the first's row. A
-- hash collision between two req_ids only makes one wait for the other.
-- The lock's first key, 0x70757368 ("push"), keeps these locks apart
-- from every other advisory lock (the two-key form never meets the
-- one-key form `pushgw migrate` takes).
--
-- max_pending: when that many requests are not done, nothing is stored
-- and `full` is true (the API answers 429); 0: no bound. The count stops
-- at the bound, so it costs at most that many index entries.
--
-- Returns one row: the request's id, objectId and createdAt, whether it
-- was a duplicate, whether the backlog was full (then the rest is NULL).
CREATE FUNCTION pushgw_api_push_insert(
    p_app text, p_data jsonb, p_query jsonb, p_profile text,
    p_push_at timestamptz, p_expires_at timestamptz, p_flow_control integer,
    p_req_id text, p_notification_id text, p_max_pending bigint,
    OUT o_id bigint, OUT o_object_id text, OUT o_created_at timestamptz,
    OUT o_duplicate boolean, OUT o_full boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    o_duplicate := false;
    o_full := false;
    IF p_req_id IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            x'70757368'::int4,
            hashtext(length(p_app) || ':' || p_app || p_req_id));
        SELECT a.id, a.object_id, a.created_at
          INTO o_id, o_object_id, o_created_at
          FROM api_pushes a
         WHERE a.app_id = p_app AND a.req_id = p_req_id
           AND a.created_at > clock_timestamp() - interval '5 minutes'
         ORDER BY a.created_at DESC
         LIMIT 1;
        IF FOUND THEN
            o_duplicate := true;
            RETURN;
        END IF;
    END IF;
    IF p_max_pending > 0 AND (SELECT count(*) FROM (
            SELECT 1 FROM api_pushes WHERE state <> 'done'
             LIMIT p_max_pending) s) >= p_max_pending THEN
        o_full := true;
        RETURN;
    END IF;
    INSERT INTO api_pushes (app_id, data, query, profile, push_at,
                            expires_at, flow_control, req_id,
                            notification_id)
    VALUES (p_app, p_data, p_query, p_profile,
            coalesce(p_push_at, now()), p_expires_at, p_flow_control,
            p_req_id, p_notification_id)
    RETURNING id, object_id, created_at
         INTO o_id, o_object_id, o_created_at;
END
$$;
