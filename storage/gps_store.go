package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// insertGPSSQL stores a batch, its audit rows and its devices' summaries in
// one statement (one transaction, one round trip). The input is
// de-duplicated and sorted by message id: a message twice in one batch
// counts once, and concurrent workers take the unique-index locks in the
// same order (no deadlocks). ON CONFLICT DO NOTHING skips messages stored
// before; RETURNING yields exactly the inserted rows, and only those get an
// audit row (action $8, ActionGPSStored) and are counted in device.
//
// The device upsert runs once inserted is complete (it aggregates it), so
// a statement holds its message-id locks before it takes any device row,
// and it takes the device rows in device_id order: two workers writing
// batches of overlapping devices (GPS and gyroscope included, see
// insertGyroscopeSQL) wait for each other instead of deadlocking. The last
// position is the batch's latest fix of the device, written only when it is
// at least as recent as the stored one: a fix that arrives late never moves
// the device back in time, and at equal timestamps the fix stored last wins
// (as in migration 0002's backfill and at the end of the device's track).
//
// The statement returns the inserted rows with the columns of
// readingTables[TypeGPS] (read_readings.go), so the worker announces each
// reading with exactly the item the read API serves for it.
const insertGPSSQL = `
WITH input AS (
	SELECT DISTINCT ON (message_id) *
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::timestamptz[], $7::timestamptz[])
		AS t(message_id, actor, device_id, latitude, longitude, recorded_at, received_at)
	ORDER BY message_id
), inserted AS (
	INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at)
	SELECT message_id, device_id, latitude, longitude, recorded_at, received_at FROM input
	ON CONFLICT (message_id) DO NOTHING
	RETURNING id, message_id, device_id, recorded_at, received_at, created_at, latitude, longitude
), audited AS (
	INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
	SELECT input.actor, $8::text, 'gps', inserted.id::text, inserted.message_id,
		jsonb_build_object('device_id', inserted.device_id)
	FROM inserted JOIN input USING (message_id)
), summarized AS (
	INSERT INTO device AS d (device_id, first_seen, last_seen, gps_count, last_latitude, last_longitude, last_position_at)
	SELECT device_id, min(recorded_at), max(recorded_at), count(*),
		(array_agg(latitude ORDER BY recorded_at DESC, id DESC))[1],
		(array_agg(longitude ORDER BY recorded_at DESC, id DESC))[1],
		max(recorded_at)
	FROM inserted
	GROUP BY device_id
	ORDER BY device_id
	ON CONFLICT (device_id) DO UPDATE SET
		first_seen = least(d.first_seen, EXCLUDED.first_seen),
		last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
		gps_count = d.gps_count + EXCLUDED.gps_count,
		last_latitude = CASE WHEN d.last_position_at IS NULL OR EXCLUDED.last_position_at >= d.last_position_at
			THEN EXCLUDED.last_latitude ELSE d.last_latitude END,
		last_longitude = CASE WHEN d.last_position_at IS NULL OR EXCLUDED.last_position_at >= d.last_position_at
			THEN EXCLUDED.last_longitude ELSE d.last_longitude END,
		last_position_at = greatest(d.last_position_at, EXCLUDED.last_position_at),
		updated_at = now()
)
SELECT id, message_id, device_id, recorded_at, received_at, created_at, latitude, longitude FROM inserted`

// InsertGPS stores a batch of GPS fixes with one audit row each, and counts
// them in their devices' summaries, all or nothing. It returns the fixes it
// inserted, as the read API serves them; the others were stored before
// (duplicates). A batch with a row the schema refuses fails as a whole with
// an Invalid error.
func (s *Store) InsertGPS(ctx context.Context, batch []models.GPS) ([]models.GPSItem, error) {
	n := len(batch)
	if n == 0 {
		return nil, nil
	}
	ids, actors, devices := make([]messageID, n), make([]string, n), make([]string, n)
	lats, lons := make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i, g := range batch {
		ids[i], actors[i], devices[i] = messageID(g.MessageID), g.Actor, g.DeviceID
		lats[i], lons[i] = g.Latitude, g.Longitude
		recorded[i], received[i] = g.RecordedAt, g.ReceivedAt
	}
	// The statement is the batch's transaction: its span is the batch's
	// database time.
	ctx, span := tracing.StartDB(ctx, "INSERT", "gps", n)
	items, err := insertBatch(ctx, s, "storage.InsertGPS", scanGPS, insertGPSSQL,
		ids, actors, devices, lats, lons, recorded, received, ActionGPSStored)
	tracing.End(span, err)
	return items, err
}

// insertBatch runs a batch statement and returns the rows it inserted,
// scanned into items.
func insertBatch[T any](ctx context.Context, s *Store, op string, scan itemScanner[T], sql string, args ...any) ([]T, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(op, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		item, _, err := scan(row)
		return item, err
	})
	return items, translate(op, err)
}

// messageID is a message id as pgx encodes it fastest: a [16]byte goes
// straight to PostgreSQL's binary uuid, whereas uuid.UUID is a
// driver.Valuer, which pgx turns into text, fails to encode as binary and
// parses again, building an error each time. For a 500-reading batch that
// detour cost more Go CPU than the rest of the statement's encoding.
type messageID = [16]byte
