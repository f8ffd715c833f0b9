package storage

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
)

// insertGyroscopeSQL: see insertGPSSQL. $9 is ActionGyroscopeStored.
const insertGyroscopeSQL = `
WITH input AS (
	SELECT DISTINCT ON (message_id) *
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::timestamptz[], $8::timestamptz[])
		AS t(message_id, actor, device_id, x, y, z, recorded_at, received_at)
	ORDER BY message_id
), inserted AS (
	INSERT INTO gyroscope (message_id, device_id, x, y, z, recorded_at, received_at)
	SELECT message_id, device_id, x, y, z, recorded_at, received_at FROM input
	ON CONFLICT (message_id) DO NOTHING
	RETURNING id, message_id, device_id
), audited AS (
	INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
	SELECT input.actor, $9::text, 'gyroscope', inserted.id::text, inserted.message_id,
		jsonb_build_object('device_id', inserted.device_id)
	FROM inserted JOIN input USING (message_id)
)
SELECT message_id FROM inserted`

// InsertGyroscope stores a batch of gyroscope readings; see InsertGPS.
func (s *Store) InsertGyroscope(ctx context.Context, batch []models.Gyroscope) ([]uuid.UUID, error) {
	n := len(batch)
	if n == 0 {
		return nil, nil
	}
	ids, actors, devices := make([]uuid.UUID, n), make([]string, n), make([]string, n)
	xs, ys, zs := make([]float64, n), make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i, g := range batch {
		ids[i], actors[i], devices[i] = g.MessageID, g.Actor, g.DeviceID
		xs[i], ys[i], zs[i] = g.X, g.Y, g.Z
		recorded[i], received[i] = g.RecordedAt, g.ReceivedAt
	}
	return s.insertBatch(ctx, "storage.InsertGyroscope", insertGyroscopeSQL, ids, actors, devices, xs, ys, zs, recorded, received, ActionGyroscopeStored)
}
