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
// First the sustained rate: closed loop at Options.Connections, counting
// both the readings answered 202 per second and the rows stored per second;
// the lower is what the system keeps up with (the API alone can outrun the
// worker for a while, into the stream's backlog). Then, once the backlog is
// drained, an open loop at half that rate: requests are due at a constant
// pace whether or not earlier ones were answered, so a stall shows in the
// latency of everything queued behind it instead of slowing the arrivals;
// each 202's latency runs from its due time to its row's commit (see
// commitWatcher). Each is Options.Rounds rounds of Options.Round, the median
// reported. Every reading answered 202 must then be stored, once.
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

	// Sustained rate, closed loop, Options.Rounds rounds after one warm-up;
	// the median is reported. Warm-up and rounds are separate runs so that
	// every 202 reaches the ledger.
	env.Logf("e2e: closed loop, %d connections, %s warm-up + %d × %s", env.Connections, env.Warmup, env.Rounds, env.Round)
	load(0, env.Warmup)
	var sustained, accepted, stored []float64
	var closedNote string
	for range env.Rounds {
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
		a, st := closed.ReadingsPerSecond(), float64(after-before)/wall.Seconds()
		if closed.OK == 0 || min(a, st) <= 0 {
			return fail(fmt.Sprintf("closed loop: no reading accepted and stored (%s)", statusSummary(closed)))
		}
		sustained, accepted, stored = append(sustained, min(a, st)), append(accepted, a), append(stored, st)
		closedNote += notePrefix(statusSummary(closed))
	}
	rate := Median(sustained) / 2
	rep.Add(Row{Section: "e2e", Name: "sustained", Value: Median(sustained), Unit: "readings/s", Rounds: sustained,
		Note: fmt.Sprintf("closed loop, %d conns, lower of accepted (median %.0f/s) and stored (%.0f/s)%s",
			env.Connections, Median(accepted), Median(stored), closedNote)})
	env.Logf("e2e: sustained %.0f readings/s (accepted %.0f/s, stored %.0f/s); draining", Median(sustained), Median(accepted), Median(stored))
	if _, err := e2eDrain(ctx, db, &led); err != nil {
		return fail(err.Error())
	}

	// Latency, open loop at half the sustained rate, as many rounds.
	env.Logf("e2e: open loop at %.0f/s, %s warm-up + %d × %s", rate, env.Warmup, env.Rounds, env.Round)
	load(rate, env.Warmup)
	commits.recording.Store(true)
	var rounds []map[string]time.Time
	var opens []loadgen.Result
	for range env.Rounds {
		led.startRound()
		opens = append(opens, load(rate, env.Round))
		rounds = append(rounds, led.endRound())
		if loadErr != nil || ctx.Err() != nil {
			return errors.Join(loadErr, ctx.Err())
		}
	}
	n, err := e2eDrain(ctx, db, &led)
	if err != nil {
		return fail(err.Error())
	}
	// Announcements trail their commits by a hop: give the last ones a moment.
	var p50, p99, worst, api50, api99 []float64
	var count, missing int
	for i, due := range rounds {
		lat, miss := commits.latencies(due)
		for wait := time.Now().Add(5 * time.Second); miss > 0 && time.Now().Before(wait); {
			time.Sleep(100 * time.Millisecond)
			lat, miss = commits.latencies(due)
		}
		if lat.Count() == 0 {
			return fail("open loop: no latency measured")
		}
		count, missing = count+int(lat.Count()), missing+miss
		p50, p99, worst = append(p50, millis(lat.Quantile(0.5))), append(p99, millis(lat.Quantile(0.99))), append(worst, millis(lat.Max()))
		api50, api99 = append(api50, millis(opens[i].Latency.Quantile(0.5))), append(api99, millis(opens[i].Latency.Quantile(0.99)))
	}
	commits.recording.Store(false)
	how := fmt.Sprintf("open loop at %.0f/s: %d readings, commit = its announcement on events.stored.gps", rate, count)
	if missing > 0 {
		how += fmt.Sprintf(", %d not announced (not counted)", missing)
	}
	var openNote string
	for _, o := range opens {
		openNote += notePrefix(statusSummary(o))
	}
	rep.Add(
		Row{Section: "e2e", Name: "p50 POST→commit", Value: Median(p50), Unit: "ms", Rounds: p50, Note: how},
		Row{Section: "e2e", Name: "p99 POST→commit", Value: Median(p99), Unit: "ms", MaxValue: 250, Rounds: p99,
			Note: fmt.Sprintf("max %.0f ms; POST→202 p50 %.1f ms, p99 %.1f ms%s", Median(worst), Median(api50), Median(api99), openNote)},
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
