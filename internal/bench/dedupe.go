package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// The dedupe comparison: the rate issue 9 names (20,000 msg/s) for as long
// as the run allows; a 2-minute window at that rate is 2.4 million ids.
const (
	dedupeRate  = 20_000 // msg/s
	dedupeShort = 10 * time.Second
	dedupeSoak  = 60 * time.Second
)

// dedupeResult is one nats-server's memory after a publishing run.
type dedupeResult struct {
	rss     rssSummary
	sent    int64
	elapsed time.Duration
}

// runDedupe measures what JetStream's duplicate detection costs the NATS
// server: two fresh nats-server processes each take the same messages at
// the same rate straight from nats.go (no API, no worker: nothing else
// changes), one with a Nats-Msg-Id on every message, one with none. The
// server keeps every id seen within the stream's duplicate window (2
// minutes) in memory, so the difference of their RSS is the window's cost,
// and divided by the ids it holds, the cost of one id.
func runDedupe(ctx context.Context, env *Env, rep *Report, bins binaries, dir string, soak bool) error {
	d := dedupeShort
	if soak {
		d = dedupeSoak
	}
	var res [2]dedupeResult
	for i, withIDs := range []bool{false, true} {
		env.Logf("memory: nats-server alone, %d msg/s for %s, Nats-Msg-Id on every message: %t", dedupeRate, d, withIDs)
		r, err := dedupeRound(ctx, bins.natsServer, filepath.Join(dir, fmt.Sprintf("dedupe-%d", i)), env.SyncAlways, withIDs, d)
		if err != nil {
			return err
		}
		res[i] = r
	}
	without, with := res[0], res[1]
	rate := func(r dedupeResult) string {
		return fmt.Sprintf("%d messages at %.0f/s", r.sent, float64(r.sent)/r.elapsed.Seconds())
	}
	cost := with.rss.end - without.rss.end
	ids := with.sent // all within the window: the run is shorter than it
	perID := cost * (1 << 20) / float64(ids)
	window := float64(dedupeRate) * messaging.DefaultTopology().DuplicateWindow.Seconds()
	rep.Add(
		Row{Section: "memory", Name: "nats-server RSS, no Nats-Msg-Id", Value: without.rss.end, Unit: "MiB", Note: rate(without)},
		Row{Section: "memory", Name: "nats-server RSS, Nats-Msg-Id on all", Value: with.rss.end, Unit: "MiB",
			Baseline: "nats-server RSS, no Nats-Msg-Id", Note: rate(with)},
		Row{Section: "memory", Name: "dedupe window cost", Value: cost, Unit: "MiB",
			Note: fmt.Sprintf("%d ids held: ~%.0f bytes each; a full 2-minute window at %d msg/s (%.1f M ids) ≈ %.0f MiB",
				ids, perID, dedupeRate, window/1e6, perID*window/(1<<20))},
	)
	return nil
}

// dedupeRound starts a nats-server with the project's topology, publishes
// at dedupeRate for d (asynchronously, every ack awaited) and returns its
// RSS once every message is acknowledged.
func dedupeRound(ctx context.Context, serverPath, dir string, syncAlways, withIDs bool, d time.Duration) (_ dedupeResult, err error) {
	n, err := startNATSProc(ctx, serverPath, dir, syncAlways)
	if err != nil {
		return dedupeResult{}, err
	}
	defer func() {
		if serr := n.stop(30 * time.Second); serr != nil && err == nil {
			err = serr
		}
	}()
	nc, err := nats.Connect(n.url, nats.Name("bench-dedupe"))
	if err != nil {
		return dedupeResult{}, err
	}
	defer nc.Close()
	var nacked atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { nacked.Add(1) }))
	if err != nil {
		return dedupeResult{}, err
	}
	if err := messaging.EnsureTopology(ctx, js, messaging.DefaultTopology()); err != nil {
		return dedupeResult{}, err
	}

	// A message the size of the API's GPS message; its id in the body, as
	// the API's carries it, whether or not the header repeats it.
	subject := models.TypeGPS.Subject()
	sampler := sampleRSS(ctx, map[string]int{"nats-server": n.pid()}, time.Second)
	total := int64(dedupeRate * d.Seconds())
	start := time.Now()
	var sent int64
	var failed error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for sent < total && failed == nil {
		due := min(total, int64(time.Since(start).Seconds()*dedupeRate))
		for ; sent < due; sent++ {
			id := uuid.Must(uuid.NewV7()).String()
			data := fmt.Appendf(nil, `{"message_id":%q,"device_id":"00:0a:95:9d:68:16","timestamp":"2026-11-28T10:00:00Z","latitude":-23.55052,"longitude":-46.633308,"received_at":"2026-11-28T10:00:01Z","actor":"bench"}`, id)
			// A loaded machine can hold the acks back for a while: wait
			// rather than fail, and report the rate achieved.
			opts := []jetstream.PublishOpt{jetstream.WithStallWait(10 * time.Second)}
			if withIDs {
				opts = append(opts, jetstream.WithMsgID(id))
			}
			if _, err := js.PublishAsync(subject, data, opts...); err != nil {
				failed = err
				break
			}
		}
		select {
		case <-ctx.Done():
			failed = ctx.Err()
		case <-tick.C:
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		failed = ctx.Err()
	case <-time.After(30 * time.Second):
		failed = errors.Join(failed, fmt.Errorf("bench: %d publishes not acknowledged within 30 s", js.PublishAsyncPending()))
	}
	elapsed := time.Since(start)
	if k := nacked.Load(); k > 0 {
		failed = errors.Join(failed, fmt.Errorf("bench: %d of %d publishes failed", k, sent))
	}
	serr := sampler.stop()
	if err := errors.Join(failed, serr); err != nil {
		return dedupeResult{}, fmt.Errorf("bench: dedupe run: %w", err)
	}
	return dedupeResult{rss: sampler.summary("nats-server"), sent: sent, elapsed: elapsed}, nil
}
