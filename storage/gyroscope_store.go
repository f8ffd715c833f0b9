package storage

import (
	"context"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// insertGyroscopeSQL: see insertGPSSQL, whose lock order (message ids, then
// device rows by device_id) this statement shares. $9 is
// ActionGyroscopeStored.
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
	RETURNING id, message_id, device_id, recorded_at, received_at, created_at, x, y, z
), audited AS (
	INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
	SELECT input.actor, $9::text, 'gyroscope', inserted.id::text, inserted.message_id,
		jsonb_build_object('device_id', inserted.device_id)
	FROM inserted JOIN input USING (message_id)
), summarized AS (
	INSERT INTO device AS d (device_id, first_seen, last_seen, gyroscope_count)
	SELECT device_id, min(recorded_at), max(recorded_at), count(*)
	FROM inserted
	GROUP BY device_id
	ORDER BY device_id
	ON CONFLICT (device_id) DO UPDATE SET
		first_seen = least(d.first_seen, EXCLUDED.first_seen),
		last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
		gyroscope_count = d.gyroscope_count + EXCLUDED.gyroscope_count,
		updated_at = now()
)
SELECT id, message_id, device_id, recorded_at, received_at, created_at, x, y, z FROM inserted`

// InsertGyroscope stores a batch of gyroscope readings; see InsertGPS.
func (s *Store) InsertGyroscope(ctx context.Context, batch []models.Gyroscope) ([]models.GyroscopeItem, error) {
	n := len(batch)
	if n == 0 {
		return nil, nil
	}
	ids, actors, devices := make([]messageID, n), make([]string, n), make([]string, n)
	xs, ys, zs := make([]float64, n), make([]float64, n), make([]float64, n)
	recorded, received := make([]time.Time, n), make([]time.Time, n)
	for i, g := range batch {
		ids[i], actors[i], devices[i] = messageID(g.MessageID), g.Actor, g.DeviceID
		xs[i], ys[i], zs[i] = g.X, g.Y, g.Z
		recorded[i], received[i] = g.RecordedAt, g.ReceivedAt
	}
	ctx, span := tracing.StartDB(ctx, "INSERT", "gyroscope", n)
	items, err := insertBatch(ctx, s, "storage.InsertGyroscope", scanGyroscope, insertGyroscopeSQL,
		ids, actors, devices, xs, ys, zs, recorded, received, ActionGyroscopeStored)
	tracing.End(span, err)
	return items, err
}
