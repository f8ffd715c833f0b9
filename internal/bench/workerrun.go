package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// What the worker and photos sections share: queueing readings as the API
// does, running the worker until a table holds them, and the CPU those
// rows cost.

// measured is one variant's figures over one round.
type measured struct {
	rate float64 // rows per second
	// proc and pg are the CPU time a row cost this process (the worker,
	// the embedded NATS server; or the CopyFrom client) and the
	// PostgreSQL backends of the round's database; zero when /proc
	// cannot be read.
	proc, pg time.Duration
}

// runWorkerUntilStored runs the worker with cfg until table holds n rows
// (bounded by drainTimeout), stops it, and returns rows/s and CPU a row
// from the first stored row on: start-up (connections, migrations,
// topology, a face collection) is not what is measured.
func runWorkerUntilStored(ctx context.Context, env *Env, cfg config.Worker, opts worker.Options, table string, n int) (measured, error) {
	poll, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return measured{}, err
	}
	defer poll.Close(context.WithoutCancel(ctx))
	rctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	wctx, stop := context.WithCancel(rctx)
	var runErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		runErr = worker.RunWith(wctx, cfg, benchLogger(env), opts)
	}()
	defer func() { stop(); <-finished }()

	// max(id) is a read of the primary key's last entry: polling it costs
	// the database next to nothing; count(*) confirms at the end (an id
	// may be skipped by a rolled-back insert).
	lastID := `SELECT coalesce(max(id), 0) FROM ` + table
	countRows := `SELECT count(*) FROM ` + table
	var (
		start time.Time
		first int
		meter *cpuMeter
	)
	for {
		var last int64
		if err := poll.QueryRow(rctx, lastID).Scan(&last); err != nil {
			return measured{}, fmt.Errorf("bench: waiting for %s rows: %w", table, err)
		}
		if last > 0 && start.IsZero() {
			start = time.Now()
			if meter, err = startCPU(rctx, poll); err != nil {
				return measured{}, err
			}
			if err := poll.QueryRow(rctx, countRows).Scan(&first); err != nil {
				return measured{}, err
			}
		}
		if last >= int64(n) {
			var stored int
			if err := poll.QueryRow(rctx, countRows).Scan(&stored); err != nil {
				return measured{}, err
			}
			if stored >= n {
				break
			}
		}
		select {
		case <-finished:
			return measured{}, fmt.Errorf("bench: the worker stopped before storing %d %s rows: %v", n, table, runErr)
		case <-rctx.Done():
			return measured{}, fmt.Errorf("bench: waiting for %d %s rows: %w", n, table, rctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	rows := n - first
	if rows <= 0 || elapsed <= 0 {
		return measured{}, fmt.Errorf("bench: all %d %s rows appeared at once: too few to measure a rate", n, table)
	}
	m := measured{rate: float64(rows) / elapsed.Seconds()}
	// Read before the worker stops: its connections, and their backends,
	// end with it.
	if proc, pg, ok := meter.stop(rctx); ok {
		m.proc, m.pg = proc/time.Duration(rows), pg/time.Duration(rows)
	}
	stop()
	<-finished
	if runErr != nil {
		return measured{}, fmt.Errorf("bench: worker: %w", runErr)
	}
	return m, nil
}

// cpuMeter adds up the CPU time this process and the PostgreSQL backends
// of one database use between startCPU and stop: on a shared machine a
// rate says how much of the CPU the round got, CPU a row what the work
// costs, which other processes disturb far less.
type cpuMeter struct {
	conn  *pgx.Conn // lists the backends; its own is left out
	proc0 time.Duration
	pg0   map[int]time.Duration // backends at the start; later ones count from 0
	ok    bool
}

func startCPU(ctx context.Context, conn *pgx.Conn) (*cpuMeter, error) {
	m := &cpuMeter{conn: conn, pg0: map[int]time.Duration{}}
	var ok bool
	if m.proc0, ok = procCPU(os.Getpid()); !ok {
		return m, nil
	}
	pids, err := m.backends(ctx)
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		if d, ok := procCPU(pid); ok {
			m.pg0[pid] = d
		}
	}
	m.ok = true
	return m, nil
}

// stop returns the CPU time used since startCPU; ok is false when it
// could not be read.
func (m *cpuMeter) stop(ctx context.Context) (proc, pg time.Duration, ok bool) {
	if m == nil || !m.ok {
		return 0, 0, false
	}
	p, ok := procCPU(os.Getpid())
	if !ok {
		return 0, 0, false
	}
	pids, err := m.backends(ctx)
	if err != nil {
		return 0, 0, false
	}
	for _, pid := range pids {
		if d, ok := procCPU(pid); ok {
			pg += d - m.pg0[pid]
		}
	}
	return p - m.proc0, pg, true
}

// backends lists the server processes connected to the meter's database,
// but for the meter's own.
func (m *cpuMeter) backends(ctx context.Context) ([]int, error) {
	rows, err := m.conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil, fmt.Errorf("bench: listing PostgreSQL backends: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// queueReadings publishes readings as the API does (the queue's JSON, the
// type's subject, the project's topology), asynchronously with every ack
// awaited, and checks the stream holds them all.
func queueReadings[T models.Reading](ctx context.Context, url string, topo messaging.TopologyConfig, readings []T) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		return err
	}
	for i := range readings {
		data, err := models.Marshal(readings[i])
		if err != nil {
			return err
		}
		// A loaded machine may take a while to drain 4,096 pending acks.
		if _, err := js.PublishAsync(readings[i].Type().Subject(), data, jetstream.WithStallWait(10*time.Second)); err != nil {
			return fmt.Errorf("bench: queueing readings: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return errors.New("bench: queueing readings: acks not received within a minute")
	}
	s, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		return err
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(len(readings)) {
		return fmt.Errorf("bench: queueing readings: the stream holds %d messages, want %d", got, len(readings))
	}
	return nil
}

// benchWorkerConfig is a worker configuration built in code: no face
// recognition, the given NATS server, database and topology, an admin
// listener on a free loopback port.
func benchWorkerConfig(natsURL, dsn string, topo messaging.TopologyConfig) (config.Worker, error) {
	key, err := crypto.GenerateKey("bench")
	if err != nil {
		return config.Worker{}, err
	}
	return config.Worker{
		AdminAddr:          "127.0.0.1:0",
		NATSURL:            natsURL,
		NATSConnectWait:    5 * time.Second,
		DatabaseURL:        dsn,
		EncryptionKeys:     []crypto.Key{key},
		FaceMatchThreshold: config.DefaultFaceMatchThreshold,
		RecognitionTimeout: 5 * time.Second,
		CacheEntries:       config.DefaultRecognitionCacheEntries,
		CacheTTL:           config.DefaultRecognitionCacheTTL,
		BatchSize:          config.DefaultBatchSize,
		BatchLinger:        config.DefaultBatchLinger,
		PhotoConcurrency:   config.DefaultPhotoConcurrency,
		RetryBackoff:       []time.Duration{time.Second, 5 * time.Second},
		Limits:             models.DefaultLimits(),
		Topology:           topo,
		LogLevel:           slog.LevelWarn,
		ShutdownTimeout:    10 * time.Second,
	}, nil
}

// benchLogger passes the worker's warnings and errors to the progress log.
func benchLogger(env *Env) *slog.Logger {
	return slog.New(slog.NewTextHandler(env.Log, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
