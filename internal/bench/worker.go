package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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
// its audit row. Besides the rates it reports the CPU a reading cost each
// (this process and PostgreSQL's backends), a figure the other load of a
// shared machine disturbs far less.
func runDrain(ctx context.Context, env *Env, rep *Report, n int) error {
	readings := drainFleet(n)
	var copies, drains []measured
	for round := range env.Rounds {
		variants := []func() error{
			func() error {
				m, err := copyRound(ctx, env, readings)
				copies = append(copies, m)
				return err
			},
			func() error {
				m, err := drainRound(ctx, env, readings)
				drains = append(drains, m)
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
		c, d := copies[round], drains[round]
		env.Logf("worker round %d: raw CopyFrom %.0f readings/s, this worker %.0f readings/s (%.2f×); CPU a reading %s vs %s",
			round+1, c.rate, d.rate, d.rate/c.rate, c.proc+c.pg, d.proc+d.pg)
	}
	rates := func(ms []measured) []float64 {
		out := make([]float64, len(ms))
		for i, m := range ms {
			out[i] = m.rate
		}
		return out
	}
	copyRates, drainRates := rates(copies), rates(drains)
	// The table divides medians; the rounds are pairs measured side by
	// side, so their own ratios say how much the machine's other load
	// moved the figure.
	paired := make([]string, len(copies))
	for i := range copies {
		paired[i] = fmt.Sprintf("%.2f", drainRates[i]/copyRates[i])
	}
	rep.Add(
		Row{Section: "worker", Name: "raw CopyFrom", Value: Median(copyRates), Unit: "readings/s", Rounds: copyRates,
			Note: fmt.Sprintf("%d readings, %d a transaction, %d devices", n, drainBatch, drainDevices)},
		Row{Section: "worker", Name: "this worker", Value: Median(drainRates), Unit: "readings/s",
			Baseline: "raw CopyFrom", MinRatio: 0.5, Rounds: drainRates,
			Note: "exactly once: data + audit + device summary; ratio by round " + strings.Join(paired, ", ")},
	)
	if copyCPU, ok := cpuRow("CPU a reading, raw CopyFrom", copies); ok {
		drainCPU, _ := cpuRow("CPU a reading, this worker", drains)
		drainCPU.Baseline = copyCPU.Name
		rep.Add(copyCPU, drainCPU)
	}
	return nil
}

// cpuRow is the median CPU a reading over rounds, in µs, with the split
// between PostgreSQL and this process in the note; false when it was not
// measured.
func cpuRow(name string, ms []measured) (Row, bool) {
	var total, pg, proc []float64
	for _, m := range ms {
		if m.proc == 0 && m.pg == 0 {
			return Row{}, false
		}
		total = append(total, float64(m.proc+m.pg)/float64(time.Microsecond))
		pg = append(pg, float64(m.pg)/float64(time.Microsecond))
		proc = append(proc, float64(m.proc)/float64(time.Microsecond))
	}
	return Row{Section: "worker", Name: name, Value: Median(total), Unit: "µs", Rounds: total,
		Note: fmt.Sprintf("PostgreSQL %.1f µs + this process %.1f µs (lower is better)", Median(pg), Median(proc))}, true
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
// measures from the end of the first transaction on (the worker is also
// measured from its first stored batch on).
func copyRound(ctx context.Context, env *Env, readings []models.GPS) (measured, error) {
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return measured{}, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return measured{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	meterConn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return measured{}, err
	}
	defer meterConn.Close(context.WithoutCancel(ctx))
	gpsCols := []string{"message_id", "device_id", "latitude", "longitude", "recorded_at", "received_at"}
	auditCols := []string{"actor", "action", "resource", "resource_id", "message_id", "details"}
	var (
		start time.Time
		meter *cpuMeter
	)
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
			return measured{}, fmt.Errorf("bench: raw CopyFrom: %w", err)
		}
		if lo == 0 {
			start = time.Now()
			if meter, err = startCPU(ctx, meterConn); err != nil {
				return measured{}, err
			}
		}
	}
	rows := len(readings) - min(drainBatch, len(readings))
	elapsed := time.Since(start)
	if rows <= 0 {
		return measured{}, fmt.Errorf("bench: raw CopyFrom: %d readings are too few to measure a rate", len(readings))
	}
	m := measured{rate: float64(rows) / elapsed.Seconds()}
	if proc, pg, ok := meter.stop(ctx); ok {
		m.proc, m.pg = proc/time.Duration(rows), pg/time.Duration(rows)
	}
	return m, checkDrained(ctx, dsn, len(readings))
}

// drainRound queues readings in a fresh JetStream, then runs the worker
// into a fresh database until every reading is stored, measured from the
// first stored batch on (start-up excluded).
func drainRound(ctx context.Context, env *Env, readings []models.GPS) (measured, error) {
	ns, err := env.NewNATS()
	if err != nil {
		return measured{}, err
	}
	defer ns.Stop()
	topo := messaging.DefaultTopology()
	if err := queueReadings(ctx, ns.URL, topo, readings); err != nil {
		return measured{}, err
	}
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return measured{}, err
	}
	cfg, err := benchWorkerConfig(ns.URL, dsn, topo)
	if err != nil {
		return measured{}, err
	}
	cfg.BatchSize = drainBatch
	m, err := runWorkerUntilStored(ctx, env, cfg, worker.Options{}, "gps", len(readings))
	if err != nil {
		return measured{}, err
	}
	return m, checkDrained(ctx, dsn, len(readings))
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
