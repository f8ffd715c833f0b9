package storage

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
)

// insertGPSSQL stores a batch and its audit rows in one statement (one
// transaction, one round trip). The input is de-duplicated and sorted by
// message id: a message twice in one batch counts once, and concurrent
// workers take the unique-index locks in the same order (no deadlocks).
// ON CONFLICT DO NOTHING skips messages stored before; RETURNING yields
// exactly the inserted rows, and only those get an audit row, whose action
// is $8 (ActionGPSStored).
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
	RETURNING id, message_id, device_id
), audited AS (
	INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
	SELECT input.actor, $8::text, 'gps', inserted.id::text, inserted.message_id,
		jsonb_build_object('device_id', inserted.device_id)
	FROM inserted JOIN input USING (message_id)
)
SELECT message_id FROM inserted`

// InsertGPS stores a batch of GPS fixes with one audit row each, all or
// nothing, and returns the ids of the messages it inserted; the others were
// stored before (duplicates). A batch with a row the schema refuses fails
// as a whole with an Invalid error.
func (s *Store) InsertGPS(ctx context.Context, batch []models.GPS) ([]uuid.UUID, error) {
	n := len(batch)
	if n == 0 {
		return nil, nil
	}
	ids, actors, devices := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	lats, lons := make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i, g := range batch {
		ids[i], actors[i], devices[i] = g.MessageID, g.Actor, g.DeviceID
		lats[i], lons[i] = g.Latitude, g.Longitude
		recorded[i], received[i] = g.RecordedAt, g.ReceivedAt
	}
	return s.insertBatch(ctx, "storage.InsertGPS", insertGPSSQL, ids, actors, devices, lats, lons, recorded, received, ActionGPSStored)
}

// insertBatch runs a batch statement that returns the inserted message ids.
func (s *Store) insertBatch(ctx context.Context, op, sql string, args ...any) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(op, err)
	}
	var inserted []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, translate(op, err)
		}
		inserted = append(inserted, id)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(op, err)
	}
	return inserted, nil
}
