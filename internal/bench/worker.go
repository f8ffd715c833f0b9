package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/worker"
)

const (
	// drainReadings is how many GPS readings each round of the worker
	// section queues and stores (about 2.5 s a round for the worker on 2
	// cores).
	drainReadings = 100_000
	// drainBatch is the worker's BATCH_SIZE and the baseline's readings per
	// transaction.
	drainBatch = 500
	// drainDevices is the fleet the readings come from, in turn: every
	// batch of 500 holds 500 different devices, the costliest case for the
	// device summary the worker keeps (one device row per device a batch).
	drainDevices = 5_000
	// drainTimeout bounds one variant of one round.
	drainTimeout = 2 * time.Minute
)

func init() {
	Register(Section{
		Name:  "worker",
		About: "the worker draining 100,000 queued GPS readings vs a raw CopyFrom of the same rows",
		Run:   func(ctx context.Context, env *Env, rep *Report) error { return runDrain(ctx, env, rep, drainReadings) },
	})
}

// runDrain measures, in alternated rounds, a raw CopyFrom of n GPS rows and
// their audit rows (the ceiling: no queue, no decoding, no exactly-once
// check) and the worker draining the same n readings from JetStream, each
// into a fresh database, and checks that every reading was stored once with
// its audit row.
func runDrain(ctx context.Context, env *Env, rep *Report, n int) error {
	readings := drainFleet(n)
	var copyRates, workerRates []float64
	for round := range env.Rounds {
		variants := []func() error{
			func() error {
				r, err := copyRound(ctx, env, readings)
				copyRates = append(copyRates, r)
				return err
			},
			func() error {
				r, err := drainRound(ctx, env, readings)
				workerRates = append(workerRates, r)
				return err
			},
		}
		if round%2 == 1 {
			variants[0], variants[1] = variants[1], variants[0]
		}
		for _, run := range variants {
			if err := run(); err != nil {
				return err
			}
		}
		env.Logf("worker round %d: raw CopyFrom %.0f readings/s, this worker %.0f readings/s (%.2f×)",
			round+1, copyRates[round], workerRates[round], workerRates[round]/copyRates[round])
	}
	note := fmt.Sprintf("%d readings, %d a transaction, %d devices", n, drainBatch, drainDevices)
	rep.Add(
		Row{Section: "worker", Name: "raw CopyFrom", Value: Median(copyRates), Unit: "readings/s",
			Rounds: copyRates, Note: note},
		Row{Section: "worker", Name: "this worker", Value: Median(workerRates), Unit: "readings/s",
			Baseline: "raw CopyFrom", MinRatio: 0.5, Rounds: workerRates,
			Note: "exactly once: data + audit + device summary"},
	)
	return nil
}

// drainFleet is n GPS readings as the API builds them, from drainDevices
// devices in turn, a second apart.
func drainFleet(n int) []models.GPS {
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	out := make([]models.GPS, n)
	for i := range out {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		out[i] = models.GPS{
			Meta: models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "bench",
				ReceivedAt: at.Add(time.Second), DeviceID: fmt.Sprintf("bench-%05d", i%drainDevices), RecordedAt: at},
			Latitude:  -23.5 + float64(i%1000)/10_000,
			Longitude: -46.6 - float64(i%1000)/10_000,
		}
	}
	return out
}

// copyRound writes readings with pgx CopyFrom, a GPS row and an audit row
// per reading, drainBatch readings a transaction on one connection, and
// returns readings/s after the first transaction (the worker's rate is
// also taken from its first stored batch on).
func copyRound(ctx context.Context, env *Env, readings []models.GPS) (float64, error) {
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	gpsCols := []string{"message_id", "device_id", "latitude", "longitude", "recorded_at", "received_at"}
	auditCols := []string{"actor", "action", "resource", "resource_id", "message_id", "details"}
	var start time.Time
	for lo := 0; lo < len(readings); lo += drainBatch {
		batch := readings[lo:min(lo+drainBatch, len(readings))]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"gps"}, gpsCols, pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
				g := &batch[i]
				return []any{[16]byte(g.MessageID), g.DeviceID, g.Latitude, g.Longitude, g.RecordedAt, g.ReceivedAt}, nil
			})); err != nil {
				return err
			}
			// A fresh table numbers its rows 1, 2, …: the audit rows name
			// them as the worker's do.
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_log"}, auditCols, pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
				g := &batch[i]
				return []any{g.Actor, storage.ActionGPSStored, "gps", strconv.Itoa(lo + i + 1), [16]byte(g.MessageID),
					`{"device_id": "` + g.DeviceID + `"}`}, nil
			}))
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("bench: raw CopyFrom: %w", err)
		}
		if lo == 0 {
			start = time.Now()
		}
	}
	rate := float64(len(readings)-min(drainBatch, len(readings))) / time.Since(start).Seconds()
	return rate, checkDrained(ctx, dsn, len(readings))
}

// drainRound queues readings in a fresh JetStream, then runs the worker
// into a fresh database until every reading is stored, and returns
// readings/s from the first stored batch on (start-up excluded).
func drainRound(ctx context.Context, env *Env, readings []models.GPS) (float64, error) {
	ns, err := env.NewNATS()
	if err != nil {
		return 0, err
	}
	defer ns.Stop()
	topo := messaging.DefaultTopology()
	if err := queueReadings(ctx, ns.URL, topo, readings); err != nil {
		return 0, err
	}
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return 0, err
	}
	cfg, err := benchWorkerConfig(ns.URL, dsn, topo)
	if err != nil {
		return 0, err
	}
	cfg.BatchSize = drainBatch
	rate, err := runWorkerUntilStored(ctx, env, cfg, worker.Options{}, "gps", len(readings))
	if err != nil {
		return 0, err
	}
	return rate, checkDrained(ctx, dsn, len(readings))
}

// runWorkerUntilStored runs the worker with cfg until table holds n rows
// (bounded by drainTimeout), stops it, and returns rows/s from the first
// stored row on: start-up (connections, migrations, topology, a face
// collection) is not what is measured.
func runWorkerUntilStored(ctx context.Context, env *Env, cfg config.Worker, opts worker.Options, table string, n int) (float64, error) {
	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return 0, err
	}
	defer db.Close()
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
	var start time.Time
	first := 0
	for {
		var last int64
		if err := db.QueryRow(rctx, lastID).Scan(&last); err != nil {
			return 0, fmt.Errorf("bench: waiting for %s rows: %w", table, err)
		}
		if last > 0 && start.IsZero() {
			start = time.Now()
			if err := db.QueryRow(rctx, countRows).Scan(&first); err != nil {
				return 0, err
			}
		}
		if last >= int64(n) {
			var stored int
			if err := db.QueryRow(rctx, countRows).Scan(&stored); err != nil {
				return 0, err
			}
			if stored >= n {
				break
			}
		}
		select {
		case <-finished:
			return 0, fmt.Errorf("bench: the worker stopped before storing %d %s rows: %v", n, table, runErr)
		case <-rctx.Done():
			return 0, fmt.Errorf("bench: waiting for %d %s rows: %w", n, table, rctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	stop()
	<-finished
	if runErr != nil {
		return 0, fmt.Errorf("bench: worker: %w", runErr)
	}
	if n == first || elapsed <= 0 {
		return 0, fmt.Errorf("bench: all %d %s rows appeared at once: too few to measure a rate", n, table)
	}
	return float64(n-first) / elapsed.Seconds(), nil
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

// checkDrained fails unless the database holds want GPS rows, each with
// exactly its gps.stored audit row, and no audit row without its reading.
func checkDrained(ctx context.Context, dsn string, want int) error {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	var rows, distinct, audits, unpaired int
	err = db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM gps),
		(SELECT count(DISTINCT message_id) FROM gps),
		(SELECT count(*) FROM audit_log WHERE action = 'gps.stored'),
		(SELECT count(*) FROM gps g FULL JOIN (SELECT * FROM audit_log WHERE action = 'gps.stored') a
			ON a.message_id = g.message_id AND a.resource_id = g.id::text
			WHERE g.id IS NULL OR a.id IS NULL)`).Scan(&rows, &distinct, &audits, &unpaired)
	if err != nil {
		return fmt.Errorf("bench: checking the stored rows: %w", err)
	}
	if rows != want || distinct != want || audits != want || unpaired != 0 {
		return fmt.Errorf("bench: stored %d GPS rows (%d distinct messages) and %d audit rows, %d unpaired; want %d each and none unpaired",
			rows, distinct, audits, unpaired, want)
	}
	return nil
}
