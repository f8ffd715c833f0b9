package e2e

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// PostgreSQL goes down under a running system, for longer than the whole
// retry schedule (every delivery a message has, AckWait apart): the API
// keeps accepting (it never touches the database), the worker pauses
// instead of spending deliveries, and when the database is back every
// reading is stored once and nothing is dead-lettered.
func TestDatabaseOutageLosesNothing(t *testing.T) {
	ctx := context.Background()
	// Not t.TempDir: as root, the server runs as "postgres", which must be
	// able to enter the directory.
	dir, err := os.MkdirTemp("", "e2e-outage-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg, err := localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	port := pg.Port()
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	if err := pg.CreateDatabase(ctx, "telemetry"); err != nil {
		t.Fatal(err)
	}
	const ackWait, maxDeliver = 2 * time.Second, 3
	s := newStack(t, map[string]string{"DATABASE_URL": pg.DSN("telemetry"), "RETRY_BACKOFF": "200ms,400ms",
		"CONSUMER_ACK_WAIT": ackWait.String(), "CONSUMER_MAX_DELIVER": strconv.Itoa(maxDeliver),
		"RECOGNITION_TIMEOUT": "900ms"})
	s.startWorker()

	post := func(from, to int) {
		for i := from; i < to; i++ {
			s.accept("/telemetry/gps", map[string]any{"device_id": "truck-3", "timestamp": 1764324000 + i,
				"latitude": 1, "longitude": 2})
			s.accept("/telemetry/gyroscope", map[string]any{"device_id": "truck-3", "timestamp": 1764324000 + i,
				"x": 0.1, "y": 0.2, "z": 0.3})
		}
	}
	post(0, 50)
	s.waitCount(50, `SELECT count(*) FROM gps`)

	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	post(50, 100) // accepted while the database is down
	// Longer than the slowest way through every delivery.
	time.Sleep(maxDeliver*ackWait + time.Second - time.Since(began))
	if n := s.dlqCount(); n != 0 {
		t.Fatalf("%d readings dead-lettered while the database was down", n)
	}

	if pg, err = localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true, Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	s.waitCount(100, `SELECT count(*) FROM gps`)
	s.waitCount(100, `SELECT count(*) FROM gyroscope`)
	s.waitCount(200, `SELECT count(DISTINCT message_id) FROM audit_log WHERE action IN ('gps.stored', 'gyroscope.stored')`)
	s.waitCount(200, `SELECT count(*) FROM audit_log`)
	t.Logf("database down %s, retry schedule %s (%d deliveries, AckWait %s)",
		time.Since(began).Round(100*time.Millisecond), maxDeliver*ackWait, maxDeliver, ackWait)
	if n := s.dlqCount(); n != 0 {
		t.Errorf("%d readings were dead-lettered during the outage", n)
	}
}
