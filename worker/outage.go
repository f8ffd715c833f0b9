package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// errOutage marks a failure that happened while the database was down
// (decide: pause). It is not a property of the message.
var errOutage = errors.New("the database is down")

const (
	// suspectStreak is how many transient failures in a row, across all
	// messages and types, make the worker ask the database whether it is up.
	suspectStreak = 3
	// pingTimeout bounds each ping that confirms or ends an outage.
	pingTimeout = 5 * time.Second
	// probeFirst and probeMax shape the ping back-off while the database is
	// down: soon after a restart it answers, and a long outage costs one
	// ping per probeMax per worker.
	probeFirst = 100 * time.Millisecond
	probeMax   = 2 * time.Second
)

// outage is the worker's view of the one dependency every message needs,
// PostgreSQL. A failure that says the connection is gone
// (storage.ErrUnreachable), or suspectStreak transient failures in a row, is
// checked with a ping; if the ping fails too the worker pauses: the
// messages the consumers hold, and those their open subscriptions still
// deliver (at most MaxAckPending a consumer), are kept alive with InProgress
// and retried in place once the database answers again, so an outage of any
// length spends no deliveries and dead-letters nothing; no new subscription
// or photo fetch starts. One prober pings with back-off until then.
type outage struct {
	ping    func(context.Context) error
	log     *slog.Logger
	metrics *consumerMetrics

	mu      sync.Mutex
	down    bool
	since   time.Time
	streak  int
	changed chan struct{} // closed, and replaced, when down changes
}

func newOutage(ping func(context.Context) error, m *consumerMetrics, log *slog.Logger) *outage {
	return &outage{ping: ping, log: log, metrics: m, changed: make(chan struct{})}
}

// state reports whether the database is down, and a channel closed at the
// next change.
func (o *outage) state() (down bool, changed <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.down, o.changed
}

// observe looks at the outcome of a try that touched the database and
// returns err, marked with errOutage when the database is down. ctx
// (the soft stop) ends the prober an outage starts.
func (o *outage) observe(ctx context.Context, err error) error {
	if err == nil {
		o.mu.Lock()
		o.streak = 0
		o.mu.Unlock()
		return nil
	}
	if !ierr.Is(err, ierr.Unavailable) {
		return err
	}
	o.mu.Lock()
	down := o.down
	o.streak++
	suspect := o.streak >= suspectStreak || errors.Is(err, storage.ErrUnreachable)
	if suspect {
		o.streak = 0
	}
	o.mu.Unlock()
	if !down && suspect {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		perr := o.ping(pctx)
		cancel()
		if perr == nil || ctx.Err() != nil {
			return err // a statement failed, the database is up: the message's own retry
		}
		o.trip(ctx, err)
		down = true
	}
	if down {
		return fmt.Errorf("%w: %w", errOutage, err)
	}
	return err
}

// trip marks the database down, unless it already is, and starts the prober.
func (o *outage) trip(ctx context.Context, cause error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down {
		return
	}
	o.setDown(true)
	o.log.Error("processing paused: the database is unreachable; messages in hand, and those the open subscriptions still deliver (up to CONSUMER_MAX_ACK_PENDING a type), are held (InProgress) and retried when it is back, no delivery is spent",
		"err", cause)
	go o.probe(ctx)
}

// setDown changes the state; o.mu is held.
func (o *outage) setDown(down bool) {
	o.down = down
	if down {
		o.since = time.Now()
	}
	v := 0.0
	if down {
		v = 1
	}
	for _, t := range models.Types {
		o.metrics.paused.WithLabelValues(string(t), pauseDatabase).Set(v)
	}
	close(o.changed)
	o.changed = make(chan struct{})
}

// probe pings with back-off until the database answers (then resumes the
// worker) or ctx ends.
func (o *outage) probe(ctx context.Context) {
	wait := probeFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := o.ping(pctx)
		cancel()
		if err == nil {
			o.mu.Lock()
			downFor := time.Since(o.since)
			o.streak = 0
			o.setDown(false)
			o.mu.Unlock()
			o.log.Info("processing resumed: the database is reachable again", "paused_for", downFor.Round(time.Millisecond))
			return
		}
		o.log.Debug("database still unreachable", "retry_in", wait, "err", err)
		wait = min(2*wait, probeMax)
	}
}

// holdWhileDown keeps msgs alive with InProgress (every third of AckWait)
// while the database is down. It reports true once it is up, false when ctx
// (the soft stop) ends first: the messages are then left unacknowledged, to
// be redelivered after AckWait.
func (w *worker) holdWhileDown(ctx context.Context, msgs []jetstream.Msg) bool {
	for {
		down, changed := w.outage.state()
		if !down {
			return true
		}
		inProgress(msgs, w.log)
		t := time.NewTimer(w.cfg.Topology.AckWait / 3)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}
