package worker_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// stoppablePostgres is a PostgreSQL cluster of the test's own, which it can
// stop and start again on the same port with the same data.
type stoppablePostgres struct {
	t    *testing.T
	dir  string
	port int
	pg   *localpg.Cluster
}

func newStoppablePostgres(t *testing.T) (*stoppablePostgres, string) {
	t.Helper()
	// Not t.TempDir: as root, the server runs as "postgres", which must be
	// able to enter the directory.
	dir, err := os.MkdirTemp("", "worker-outage-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &stoppablePostgres{t: t, dir: dir}
	p.start()
	p.port = p.pg.Port()
	ctx := context.Background()
	if err := p.pg.CreateDatabase(ctx, "telemetry"); err != nil {
		t.Fatal(err)
	}
	return p, p.pg.DSN("telemetry")
}

func (p *stoppablePostgres) start() {
	p.t.Helper()
	pg, err := localpg.Start(context.Background(), localpg.Options{Dir: p.dir, Persistent: true, Port: p.port})
	if err != nil {
		p.t.Fatal(err)
	}
	p.pg = pg
	p.t.Cleanup(func() { _ = pg.Stop(context.Background()) })
}

func (p *stoppablePostgres) stop() {
	p.t.Helper()
	if err := p.pg.Stop(context.Background()); err != nil {
		p.t.Fatal(err)
	}
}

// A database outage longer than the whole retry schedule (every delivery a
// message has, AckWait apart) dead-letters nothing: the worker pauses,
// keeps what it holds alive without spending deliveries, and stores
// everything once when the database is back. Stopping it during an outage
// is prompt and leaves the messages for redelivery.
func TestDatabaseOutagePausesInsteadOfDeadLettering(t *testing.T) {
	t.Parallel()
	pg, dsn := newStoppablePostgres(t)
	e := newTestEnv(t, func(c *config.Worker) {
		c.DatabaseURL = dsn
		c.Topology.AckWait = 2 * time.Second
		c.Topology.MaxDeliver = 3
		c.RecognitionTimeout = 900 * time.Millisecond
		c.RetryBackoff = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
	})
	// Every delivery a message may have, the longest way: MaxDeliver ack waits.
	schedule := time.Duration(e.cfg.Topology.MaxDeliver) * e.cfg.Topology.AckWait
	outage := schedule + 2*time.Second
	stop := e.start(worker.Options{})
	img := readFixture(t, "grace_hopper.jpg")

	publish := func(n int) int {
		for i := range n {
			e.publish(models.TypeGPS, gpsReading(float64(i%90), 1))
			e.publish(models.TypeGyroscope, gyroReading(float64(i), 2, 3))
		}
		e.publish(models.TypePhoto, photoReading(img))
		e.publish(models.TypePhoto, photoReading(img))
		return 2*n + 2
	}
	stored := func() int {
		var n int
		// The test's own pool meets the connections the restart ended.
		if err := e.db.QueryRow(context.Background(),
			`SELECT (SELECT count(*) FROM gps) + (SELECT count(*) FROM gyroscope) + (SELECT count(*) FROM photo)`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	total := publish(5)
	e.waitFor(10*time.Second, "readings before the outage", func() bool { return stored() == total })

	pg.stop()
	began := time.Now()
	total += publish(50)
	for _, typ := range models.Types {
		e.waitFor(10*time.Second, string(typ)+" paused", func() bool {
			return e.metric(`worker_paused{reason="database",type="`+string(typ)+`"}`) == 1
		})
	}
	time.Sleep(outage - time.Since(began))
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters during the outage", n)
	}
	for _, typ := range models.Types {
		if info := e.consumerInfo(typ); info.NumRedelivered != 0 {
			t.Errorf("%s: %d messages redelivered during the outage: held past AckWait", typ, info.NumRedelivered)
		}
	}
	pg.start()
	e.waitFor(20*time.Second, "every reading after the outage", func() bool { return stored() == total })
	t.Logf("database down %s (retry schedule %s: %d deliveries, AckWait %s, back-off %v)",
		time.Since(began).Round(100*time.Millisecond), schedule, e.cfg.Topology.MaxDeliver, e.cfg.Topology.AckWait, e.cfg.RetryBackoff)
	for _, typ := range models.Types {
		e.waitFor(5*time.Second, string(typ)+" drained", func() bool { return e.drained(typ) })
		if g := e.metric(`worker_paused{reason="database",type="` + string(typ) + `"}`); g != 0 {
			t.Errorf("%s paused gauge %v after the outage", typ, g)
		}
		info := e.consumerInfo(typ)
		if info.NumRedelivered != 0 {
			t.Errorf("%s: %d redeliveries", typ, info.NumRedelivered)
		}
	}
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	if got := e.count(`SELECT count(DISTINCT message_id) FROM audit_log WHERE action LIKE '%.stored'`); got != total {
		t.Fatalf("%d audit rows, want %d", got, total)
	}
	if o := e.orphans(); o != 0 {
		t.Fatalf("%d orphan rows", o)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "processing paused: the database is unreachable") || !strings.Contains(logs, "processing resumed: the database is reachable again") {
		t.Fatal("the pause and the resumption were not logged")
	}

	// Stopping during an outage ends at once and answers nothing: the
	// messages stay in TELEMETRY for the next worker.
	pg.stop()
	before := e.streamMsgs()
	more := publish(5)
	e.waitFor(10*time.Second, "paused again", func() bool {
		return e.metric(`worker_paused{reason="database",type="gps"}`) == 1
	})
	e.waitFor(5*time.Second, "messages delivered to the paused worker", func() bool {
		return e.consumerInfo(models.TypeGPS).NumAckPending == 5
	})
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	t.Logf("stopped during an outage in %s", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("stopping during an outage took %s", took)
	}
	if got := e.streamMsgs(); got != before+uint64(more) {
		t.Fatalf("TELEMETRY holds %d messages after the stop, want %d", got, before+uint64(more))
	}
	pg.start()
	e.start(worker.Options{})
	e.waitFor(20*time.Second, "the rest after a restart", func() bool { return stored() == total+more })
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}
