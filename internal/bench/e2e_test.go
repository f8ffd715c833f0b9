package bench

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestE2ESectionMatchesEveryCommit runs the e2e section briefly (the real
// API and worker, embedded NATS, PostgreSQL) and checks its wiring, not its
// speed: it reports a sustained rate and latencies measured from matched
// commit announcements, and exactly the readings answered 202 are stored.
// Then checkStored must refuse a table with a reading too many or one
// missing: the section's pass rests on it.
func TestE2ESectionMatchesEveryCommit(t *testing.T) {
	ctx := context.Background()
	env, err := NewEnv(Options{Rounds: 1, Round: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Connections: 4, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	var rep Report
	if err := runE2E(ctx, env, &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]Row{}
	for _, r := range rep.Rows() {
		got[r.Name] = r
	}
	if r := got["sustained"]; r.Value <= 0 {
		t.Errorf("sustained = %+v", r)
	}
	p50, p99 := got["p50 POST→commit"], got["p99 POST→commit"]
	if p50.Value <= 0 || p99.Value < p50.Value || !strings.Contains(p50.Note, "events.stored.gps") || strings.Contains(p50.Note, "not announced") {
		t.Errorf("latency rows: %+v, %+v", p50, p99)
	}
	acc, st := got["readings accepted (202)"], got["readings stored"]
	if acc.Value <= 0 || st.Value != acc.Value {
		t.Errorf("accepted %v, stored %v", acc.Value, st.Value)
	}

	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ids := []string{uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()}
	for _, id := range ids {
		if _, err := db.Exec(ctx, `INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at)
			VALUES ($1, 'dev', 1, 2, now(), now())`, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkStored(ctx, db, ids); err != nil {
		t.Errorf("checkStored of exactly the stored ids: %v", err)
	}
	if err := checkStored(ctx, db, ids[:1]); err == nil {
		t.Error("checkStored accepted a row nobody was answered 202 for")
	}
	if err := checkStored(ctx, db, []string{ids[0], uuid.Must(uuid.NewV7()).String()}); err == nil {
		t.Error("checkStored accepted a table missing an accepted reading")
	}
}
