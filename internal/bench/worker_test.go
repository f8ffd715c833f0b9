package bench

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestDrainAndPhotoRoundsCheckWhatTheyStored runs one small round of each
// variant of the worker and photos sections (real NATS, PostgreSQL and
// Rekognition test server), then removes an audit row and expects the
// section's check to refuse the database: a figure is only reported for a
// drain that stored every reading once with its audit row.
func TestDrainAndPhotoRoundsCheckWhatTheyStored(t *testing.T) {
	ctx := context.Background()
	env, err := NewEnv(Options{Rounds: 1, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)

	readings := drainFleet(3 * drainBatch)
	if m, err := copyRound(ctx, env, readings); err != nil || m.rate <= 0 {
		t.Fatalf("raw CopyFrom round: %+v, %v", m, err)
	}
	if m, err := drainRound(ctx, env, readings); err != nil || m.rate <= 0 {
		t.Fatalf("worker round: %+v, %v", m, err)
	}
	images, err := benchImages(6)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := photoRound(ctx, env, images, 2); err != nil || r <= 0 {
		t.Fatalf("photo round: %v photos/s, %v", r, err)
	}

	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	few := readings[:4]
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i, g := range few {
		if _, err := conn.Exec(ctx, `INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, g.MessageID, g.DeviceID, g.Latitude, g.Longitude, g.RecordedAt, g.ReceivedAt); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue // the first fix has no audit row
		}
		if _, err := conn.Exec(ctx, `INSERT INTO audit_log (actor, action, resource, resource_id, message_id)
			SELECT 'bench', 'gps.stored', 'gps', id::text, message_id FROM gps WHERE message_id = $1`, g.MessageID); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkDrained(ctx, dsn, len(few)); err == nil || !strings.Contains(err.Error(), "1 unpaired") {
		t.Fatalf("checkDrained with a fix missing its audit row = %v, want an error naming 1 unpaired", err)
	}
	if err := checkPhotos(ctx, dsn, 1); err == nil {
		t.Fatal("checkPhotos with no photo stored = nil, want an error")
	}
}
