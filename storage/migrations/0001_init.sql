-- 0001_init: the telemetry tables and the audit log (SPEC §5).
--
-- Every data table has a unique message_id: a message delivered twice by
-- JetStream is inserted once (INSERT ... ON CONFLICT (message_id) DO NOTHING).
-- The (device_id, recorded_at DESC) indexes serve "readings of a device over a
-- time range, newest first".

CREATE TABLE gyroscope (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid NOT NULL,
    device_id   text NOT NULL,
    x           double precision NOT NULL,
    y           double precision NOT NULL,
    z           double precision NOT NULL,
    recorded_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gyroscope_message_id_key UNIQUE (message_id),
    CONSTRAINT gyroscope_device_id_check CHECK (char_length(device_id) BETWEEN 1 AND 64),
    -- PostgreSQL accepts NaN and ±Infinity in double precision; readings never are.
    CONSTRAINT gyroscope_finite_check CHECK (
        x NOT IN ('NaN', 'Infinity', '-Infinity') AND
        y NOT IN ('NaN', 'Infinity', '-Infinity') AND
        z NOT IN ('NaN', 'Infinity', '-Infinity'))
);
CREATE INDEX gyroscope_device_recorded_idx ON gyroscope (device_id, recorded_at DESC);

CREATE TABLE gps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid NOT NULL,
    device_id   text NOT NULL,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    recorded_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gps_message_id_key UNIQUE (message_id),
    CONSTRAINT gps_device_id_check CHECK (char_length(device_id) BETWEEN 1 AND 64),
    -- NaN sorts above every number in PostgreSQL, so BETWEEN rejects it too.
    CONSTRAINT gps_latitude_check CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT gps_longitude_check CHECK (longitude BETWEEN -180 AND 180)
);
CREATE INDEX gps_device_recorded_idx ON gps (device_id, recorded_at DESC);

-- photo.image_ciphertext is nonce || AES-256-GCM ciphertext || tag of the image,
-- sealed under encryption_key_id with the message id's 16 bytes as additional
-- authenticated data. No digest of the plaintext is stored.
CREATE TABLE photo (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id         uuid NOT NULL,
    device_id          text NOT NULL,
    recorded_at        timestamptz NOT NULL,
    received_at        timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    content_type       text NOT NULL,
    size_bytes         integer NOT NULL,
    image_ciphertext   bytea NOT NULL,
    encryption_key_id  text NOT NULL,
    recognition_status text NOT NULL,
    recognized         boolean NOT NULL DEFAULT false,
    face_id            text,
    similarity         double precision,
    CONSTRAINT photo_message_id_key UNIQUE (message_id),
    CONSTRAINT photo_device_id_check CHECK (char_length(device_id) BETWEEN 1 AND 64),
    CONSTRAINT photo_content_type_check CHECK (content_type IN ('image/jpeg', 'image/png')),
    CONSTRAINT photo_size_bytes_check CHECK (size_bytes > 0),
    -- 12-byte nonce + 16-byte tag around the size_bytes of ciphertext.
    CONSTRAINT photo_ciphertext_check CHECK (octet_length(image_ciphertext) = size_bytes + 28),
    CONSTRAINT photo_encryption_key_id_check CHECK (char_length(encryption_key_id) BETWEEN 1 AND 32),
    CONSTRAINT photo_recognition_status_check
        CHECK (recognition_status IN ('matched', 'new_face', 'no_face', 'disabled')),
    CONSTRAINT photo_recognized_check CHECK (recognized = (recognition_status = 'matched')),
    CONSTRAINT photo_face_id_check
        CHECK ((face_id IS NOT NULL) = (recognition_status IN ('matched', 'new_face'))),
    CONSTRAINT photo_similarity_check
        CHECK (similarity IS NULL OR (recognition_status = 'matched' AND similarity BETWEEN 0 AND 100))
);
CREATE INDEX photo_device_recorded_idx ON photo (device_id, recorded_at DESC);

-- audit_log: one row per stored message (written in the same transaction as
-- the data row) and one per dead-lettered message. resource_id is text so the
-- log can name resources that are not rows of a bigint-keyed table.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    resource_id text,
    message_id  uuid,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT audit_log_actor_check CHECK (actor <> ''),
    CONSTRAINT audit_log_action_check CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    CONSTRAINT audit_log_details_check CHECK (jsonb_typeof(details) = 'object')
);
CREATE INDEX audit_log_occurred_at_idx ON audit_log (occurred_at);
CREATE INDEX audit_log_resource_idx ON audit_log (resource, resource_id);
-- At most one row per message and action: a best-effort dead-letter entry
-- written twice (two workers, a retry) stays one row. Rows without a message
-- id (an undecodable message) are never in conflict.
CREATE UNIQUE INDEX audit_log_message_action_key ON audit_log (message_id, action);
