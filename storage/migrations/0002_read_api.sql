-- 0002_read_api: what the read API (SPEC §8) needs.
--
-- Keyset pagination orders readings by (recorded_at, id): the reading's
-- timestamp, then the row id to break ties. A page is then a range scan of
-- one of these indexes in either direction, whatever the table's size, and
-- a reading inserted while a client pages can neither repeat nor hide one
-- it has not seen yet. The (device_id, recorded_at, id) indexes replace the
-- (device_id, recorded_at DESC) ones of 0001: a B-tree serves both orders.

DROP INDEX gyroscope_device_recorded_idx;
CREATE INDEX gyroscope_device_recorded_id_idx ON gyroscope (device_id, recorded_at, id);
CREATE INDEX gyroscope_recorded_id_idx ON gyroscope (recorded_at, id);

DROP INDEX gps_device_recorded_idx;
CREATE INDEX gps_device_recorded_id_idx ON gps (device_id, recorded_at, id);
CREATE INDEX gps_recorded_id_idx ON gps (recorded_at, id);

DROP INDEX photo_device_recorded_idx;
CREATE INDEX photo_device_recorded_id_idx ON photo (device_id, recorded_at, id);
CREATE INDEX photo_recorded_id_idx ON photo (recorded_at, id);
CREATE INDEX photo_face_recorded_id_idx ON photo (face_id, recorded_at, id) WHERE face_id IS NOT NULL;
CREATE INDEX photo_status_recorded_id_idx ON photo (recognition_status, recorded_at, id);

-- The live stream's Last-Event-ID replay reads what was stored after a
-- moment. created_at grows with the insert order, so a BRIN index (a few
-- pages, almost free to maintain) narrows that read to the recent blocks.
CREATE INDEX gyroscope_created_brin ON gyroscope USING brin (created_at);
CREATE INDEX gps_created_brin ON gps USING brin (created_at);
CREATE INDEX photo_created_brin ON photo USING brin (created_at);

-- device: one row per device, kept up to date by the worker's insert
-- statements in the same transaction as the readings (so the counts are
-- exact: a duplicate delivery inserts nothing and counts nothing). Counting
-- per device on every GET /devices would read every row of three tables.
CREATE TABLE device (
    device_id        text PRIMARY KEY,
    first_seen       timestamptz NOT NULL, -- earliest reading timestamp
    last_seen        timestamptz NOT NULL, -- latest reading timestamp
    gyroscope_count  bigint NOT NULL DEFAULT 0,
    gps_count        bigint NOT NULL DEFAULT 0,
    photo_count      bigint NOT NULL DEFAULT 0,
    last_latitude    double precision,
    last_longitude   double precision,
    last_position_at timestamptz,          -- timestamp of the latest GPS fix
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT device_device_id_check CHECK (char_length(device_id) BETWEEN 1 AND 64),
    CONSTRAINT device_counts_check CHECK (gyroscope_count >= 0 AND gps_count >= 0 AND photo_count >= 0),
    CONSTRAINT device_position_check CHECK (
        (last_latitude IS NULL) = (last_position_at IS NULL) AND
        (last_longitude IS NULL) = (last_position_at IS NULL))
);

INSERT INTO device (device_id, first_seen, last_seen, gyroscope_count, gps_count, photo_count)
SELECT device_id, min(first_seen), max(last_seen),
       sum(n) FILTER (WHERE t = 'gyroscope'), sum(n) FILTER (WHERE t = 'gps'), sum(n) FILTER (WHERE t = 'photo')
FROM (
    SELECT 'gyroscope' AS t, device_id, min(recorded_at) AS first_seen, max(recorded_at) AS last_seen, count(*) AS n FROM gyroscope GROUP BY device_id
    UNION ALL
    SELECT 'gps', device_id, min(recorded_at), max(recorded_at), count(*) FROM gps GROUP BY device_id
    UNION ALL
    SELECT 'photo', device_id, min(recorded_at), max(recorded_at), count(*) FROM photo GROUP BY device_id
) per_type
GROUP BY device_id;
UPDATE device SET
    gyroscope_count = coalesce(gyroscope_count, 0),
    gps_count = coalesce(gps_count, 0),
    photo_count = coalesce(photo_count, 0);
UPDATE device d SET last_latitude = g.latitude, last_longitude = g.longitude, last_position_at = g.recorded_at
FROM (
    SELECT DISTINCT ON (device_id) device_id, latitude, longitude, recorded_at
    FROM gps ORDER BY device_id, recorded_at DESC, id DESC
) g
WHERE d.device_id = g.device_id;

-- A photo may be viewed many times, each view audited (photo.viewed): the
-- one-row-per-message-and-action rule of 0001 holds for every other action.
DROP INDEX audit_log_message_action_key;
CREATE UNIQUE INDEX audit_log_message_action_key ON audit_log (message_id, action)
    WHERE action <> 'photo.viewed';

-- challenge_reader: the least privilege the read API needs. SELECT on the
-- data tables, INSERT on audit_log (photo.viewed) and nothing else: the API
-- can neither change a reading nor rewrite the audit trail. The INSERT is
-- granted on the columns the API writes only, so id and occurred_at always
-- take their defaults: the API can neither backdate an entry nor choose its
-- id (OVERRIDING SYSTEM VALUE needs only INSERT on the column). No sequence
-- privilege is needed: an identity column's sequence is advanced without a
-- permission check (TestReaderNeedsOnlyChallengeReader inserts without
-- one). Roles belong to the cluster, not the database, so it is created
-- only if missing. A
-- migrating user without CREATEROLE skips it with a notice; the operator
-- then creates the role and runs its grants by hand (docs/operations.md
-- gives the SQL): this migration is recorded as applied and never re-runs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'challenge_reader') THEN
        BEGIN
            CREATE ROLE challenge_reader NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'role challenge_reader not created (no CREATEROLE); the read API needs a role with SELECT on gyroscope, gps, photo, device and INSERT on audit_log (actor, action, resource, resource_id, message_id, details)';
            RETURN;
        WHEN duplicate_object OR unique_violation THEN
            -- Created meanwhile by a migration of another database of the
            -- cluster (the advisory lock is per database): it exists now.
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO challenge_reader', current_schema());
    GRANT SELECT ON gyroscope, gps, photo, device TO challenge_reader;
    GRANT INSERT (actor, action, resource, resource_id, message_id, details) ON audit_log TO challenge_reader;
END
$$;
