package bench

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCPUMeterReadsThisProcessAndTheBackends: the meter sees the CPU this
// process used and that of a PostgreSQL backend made to work (a sort of a
// million numbers), and leaves out its own connection's.
func TestCPUMeterReadsThisProcessAndTheBackends(t *testing.T) {
	if d, ok := procCPU(os.Getpid()); !ok || d <= 0 {
		t.Fatalf("procCPU(self) = %v, %v; want a positive time", d, ok)
	}
	if _, ok := procCPU(-1); ok {
		t.Fatal("procCPU of no process reported a time")
	}
	ctx := context.Background()
	env, err := NewEnv(Options{Rounds: 1, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meterConn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer meterConn.Close(ctx)
	work, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close(ctx)
	meter, err := startCPU(ctx, meterConn)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := meter.pg0[int(work.PgConn().PID())]; !ok {
		t.Fatalf("the working backend %d is not metered: %v", work.PgConn().PID(), meter.pg0)
	}
	if _, ok := meter.pg0[int(meterConn.PgConn().PID())]; ok {
		t.Fatal("the meter's own backend is metered")
	}
	var n int64
	if err := work.QueryRow(ctx, `SELECT count(*) FROM (SELECT random() r FROM generate_series(1, 1000000) ORDER BY 1) s`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, pg, ok := meter.stop(ctx); !ok || pg <= 0 {
		t.Fatalf("backend CPU after sorting a million numbers = %v, %v; want a positive time", pg, ok)
	}
}
