package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

func init() {
	Register(Section{
		Name:  "e2e",
		About: "API and worker together: sustained GPS readings/s (closed loop), then POST→commit p50/p99 at half that rate (open loop)",
		Run:   runE2E,
	})
}

// e2eDrainLimit bounds the wait for the worker to store every accepted
// reading after a load; a backlog that takes longer is a failure.
const e2eDrainLimit = 2 * time.Minute

// runE2E measures the pipeline as a phone sees it: the real API and the real
// worker in this process, a fresh NATS server and database, GPS readings.
//
// First the sustained rate: closed loop at Options.Connections for a round,
// counting both the readings answered 202 per second and the rows stored
// per second; the lower is what the system keeps up with (the API alone can
// outrun the worker for a while, into the stream's backlog). Then, once the
// backlog is drained, an open loop at half that rate: requests are due at a
// constant pace whether or not earlier ones were answered, so a stall shows
// in the latency of everything queued behind it instead of slowing the
// arrivals; each 202's latency runs from its due time to its row's commit
// (see commitWatcher). Every reading answered 202 must then be stored once.
func runE2E(ctx context.Context, env *Env, rep *Report) (err error) {
	ns, err := env.NewNATS()
	if err != nil {
		return err
	}
	defer ns.Stop()
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return err
	}
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	set, err := newStackSettings(ns.URL, dsn)
	if err != nil {
		return err
	}
	commits, err := watchCommits(ns.URL)
	if err != nil {
		return err
	}
	defer commits.close()
	stack, err := startInProcess(ctx, set)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stack.stop(); serr != nil && err == nil {
			err = fmt.Errorf("bench: stopping the API and the worker: %w", serr)
		}
	}()

	var led ledger
	var loadErr error // a bad loadgen.Config: the bench's own bug
	load := func(rate float64, d time.Duration) loadgen.Result {
		res, lerr := loadgen.Run(ctx, loadgen.Config{
			BaseURL: stack.baseURL, Concurrency: inFlight(env, rate), Rate: rate,
			Duration: d, Source: gpsSource(set.apiSecret), OnResponse: led.onResponse,
		})
		loadErr = errors.Join(loadErr, lerr)
		return res
	}
	fail := func(what string) error {
		return fmt.Errorf("bench: %s; API and worker logs:\n%s", what, stack.logs)
	}

	// Sustained rate, closed loop. Warm-up and round are separate runs so
	// that every 202 of both reaches the ledger.
	env.Logf("e2e: closed loop, %d connections, %s warm-up + %s", env.Connections, env.Warmup, env.Round)
	load(0, env.Warmup)
	before, cerr := gpsRows(ctx, db)
	t0 := time.Now()
	closed := load(0, env.Round)
	after, cerr2 := gpsRows(ctx, db)
	wall := time.Since(t0)
	if loadErr != nil || ctx.Err() != nil {
		return errors.Join(loadErr, ctx.Err())
	}
	if cerr = errors.Join(cerr, cerr2); cerr != nil {
		return cerr
	}
	accepted := closed.ReadingsPerSecond()
	stored := float64(after-before) / wall.Seconds()
	sustained := min(accepted, stored)
	if closed.OK == 0 || sustained <= 0 {
		return fail(fmt.Sprintf("closed loop: no reading accepted and stored (%s)", statusSummary(closed)))
	}
	rep.Add(Row{Section: "e2e", Name: "sustained", Value: sustained, Unit: "readings/s",
		Note: fmt.Sprintf("closed loop, %d conns: %.0f accepted/s, %.0f stored/s%s", env.Connections, accepted, stored, notePrefix(statusSummary(closed)))})
	env.Logf("e2e: sustained %.0f readings/s (accepted %.0f/s, stored %.0f/s); draining", sustained, accepted, stored)
	if _, err := e2eDrain(ctx, db, &led); err != nil {
		return fail(err.Error())
	}

	// Latency, open loop at half the sustained rate.
	rate := sustained / 2
	env.Logf("e2e: open loop at %.0f/s, %s warm-up + %s", rate, env.Warmup, env.Round)
	load(rate, env.Warmup)
	commits.recording.Store(true)
	led.record(true)
	open := load(rate, env.Round)
	led.record(false)
	if loadErr != nil || ctx.Err() != nil {
		return errors.Join(loadErr, ctx.Err())
	}
	n, err := e2eDrain(ctx, db, &led)
	if err != nil {
		return fail(err.Error())
	}
	// Announcements trail their commits by a hop: give the last ones a moment.
	due := led.dueTimes()
	lat, missing := commits.latencies(due)
	for wait := time.Now().Add(5 * time.Second); missing > 0 && time.Now().Before(wait); {
		time.Sleep(100 * time.Millisecond)
		lat, missing = commits.latencies(due)
	}
	commits.recording.Store(false)
	how := fmt.Sprintf("open loop at %.0f/s: %d readings, commit = its announcement on events.stored.gps", rate, lat.Count())
	if missing > 0 {
		how += fmt.Sprintf(", %d not announced (not counted)", missing)
	}
	rep.Add(
		Row{Section: "e2e", Name: "p50 POST→commit", Value: millis(lat.Quantile(0.5)), Unit: "ms", Note: how},
		Row{Section: "e2e", Name: "p99 POST→commit", Value: millis(lat.Quantile(0.99)), Unit: "ms", MaxValue: 250,
			Note: fmt.Sprintf("max %.0f ms; POST→202 p50 %.1f ms, p99 %.1f ms%s", millis(lat.Max()),
				millis(open.Latency.Quantile(0.5)), millis(open.Latency.Quantile(0.99)), notePrefix(statusSummary(open)))},
	)

	ids := led.accepted()
	rep.Add(
		Row{Section: "e2e", Name: "readings accepted (202)", Value: float64(len(ids)), Unit: "readings"},
		Row{Section: "e2e", Name: "readings stored", Value: float64(n), Unit: "rows",
			Baseline: "readings accepted (202)", MinRatio: 1, Note: "exactly the accepted ids, each once"},
	)
	if err := checkStored(ctx, db, ids); err != nil {
		return fail(err.Error())
	}
	if lat.Count() == 0 {
		return fail("open loop: no latency measured")
	}
	return nil
}

// e2eDrain waits until the worker has stored every reading the ledger holds
// and returns the number of rows.
func e2eDrain(ctx context.Context, db *pgxpool.Pool, led *ledger) (int64, error) {
	want := int64(led.count())
	n, err := waitStored(ctx, db, want, e2eDrainLimit)
	if err != nil {
		return n, err
	}
	if n < want {
		return n, fmt.Errorf("%d readings accepted but only %d stored after %s", want, n, e2eDrainLimit)
	}
	return n, nil
}

// notePrefix returns s after a separator, or "" for an empty s.
func notePrefix(s string) string {
	if s == "" {
		return ""
	}
	return "; not 2xx: " + s
}
