package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// PostgreSQL goes down under a running system: the API keeps accepting
// (it never touches the database), the worker retries with back-off, and
// when the database is back every reading is stored once.
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
	s := newStack(t, map[string]string{"DATABASE_URL": pg.DSN("telemetry"), "RETRY_BACKOFF": "200ms,400ms,800ms",
		// A slow restart on a busy machine must not exhaust the deliveries.
		"CONSUMER_MAX_DELIVER": "100"})
	s.startWorker()

	post := func(from, to int) {
		for i := from; i < to; i++ {
			s.accept("/telemetry/gps", map[string]any{"device_id": "truck-3", "timestamp": 1764324000 + i,
				"latitude": 1, "longitude": 2})
		}
	}
	post(0, 50)
	s.waitCount(50, `SELECT count(*) FROM gps`)

	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	post(50, 100) // accepted while the database is down
	time.Sleep(time.Second)

	if pg, err = localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true, Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	s.waitCount(100, `SELECT count(*) FROM gps`)
	s.waitCount(100, `SELECT count(*) FROM audit_log WHERE action = 'gps.stored'`)
	if n := s.dlqCount(); n != 0 {
		t.Errorf("%d readings were dead-lettered during a short outage", n)
	}
}
