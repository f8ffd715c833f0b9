package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Which failures make the worker ask the database, and when the answer
// pauses it.
func TestOutageObserve(t *testing.T) {
	timeout := ierr.Errorf(ierr.Unavailable, "storage.InsertGPS", "statement timeout")
	refused := ierr.E(ierr.Unavailable, "storage.InsertGPS", fmt.Errorf("%w: connection refused", storage.ErrUnreachable))
	throttled := ierr.Errorf(ierr.Unavailable, "rekognition.SearchFacesByImage", "throttled")
	invalid := ierr.Errorf(ierr.Invalid, "models.Unmarshal", "bad json")
	tests := []struct {
		name     string
		errs     []error
		pingErr  error
		wantPing int
		wantDown bool
	}{
		{"a connection failure, the database down", []error{refused}, errors.New("refused"), 1, true},
		{"a connection failure, the database up (one broken connection)", []error{refused}, nil, 1, false},
		{"two time-outs in a row", []error{timeout, timeout}, errors.New("refused"), 0, false},
		{"three failures in a row, the database down", []error{timeout, throttled, timeout}, errors.New("timeout"), 1, true},
		{"three failures in a row, the database up", []error{timeout, timeout, timeout}, nil, 1, false},
		{"a success breaks the streak", []error{timeout, timeout, nil, timeout, timeout}, errors.New("refused"), 0, false},
		{"invalid messages say nothing about the database", []error{invalid, invalid, invalid, invalid}, errors.New("refused"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newConsumerMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			var pings atomic.Int32
			ping := func(context.Context) error { pings.Add(1); return tt.pingErr }
			o := newOutage(ping, m, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends the prober
			var last error
			for _, err := range tt.errs {
				last = o.observe(ctx, err)
			}
			down, _ := o.state()
			if down != tt.wantDown || int(pings.Load()) < tt.wantPing || (tt.wantPing == 0 && pings.Load() != 0) {
				t.Fatalf("down %v after %d pings, want %v after %d", down, pings.Load(), tt.wantDown, tt.wantPing)
			}
			if got, _ := decide(last, 1, 5); (got == pause) != tt.wantDown {
				t.Fatalf("decide(%v) = %v", last, got)
			}
		})
	}
}

// The subscription running when the database goes down is kept: what it
// delivers during the outage is held alive with InProgress, never
// redelivered, and handed over once the database is back. (Draining it at
// the pause lost the messages the server had already sent for the open pull
// request: they came back after AckWait as redeliveries.)
func TestOutageKeepsTheSubscription(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	_, js := testenv.JetStream(t, ns.URL)
	topo := messaging.DefaultTopology()
	topo.AckWait = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	m, err := newConsumerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	ping := func(context.Context) error {
		if up.Load() {
			return nil
		}
		return errors.New("connection refused")
	}
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})
	w := &worker{cfg: config.Worker{Topology: topo}, log: log, js: js, metrics: m, outage: newOutage(ping, m, log)}
	in := make(chan jetstream.Msg)
	// A buffer smaller than the messages published during the outage: the
	// subscription pulls several times while paused.
	go w.feed(ctx, models.TypeGPS, 4, in)

	publish := func(n int) {
		for i := range n {
			if _, err := js.Publish(ctx, models.TypeGPS.Subject(), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	receive := func() jetstream.Msg {
		select {
		case msg := <-in:
			return msg
		case <-time.After(10 * time.Second):
			t.Fatal("no message within 10 s")
			return nil
		}
	}
	info := func() *jetstream.ConsumerInfo {
		c, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
		if err != nil {
			t.Fatal(err)
		}
		i, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	publish(1)
	if err := receive().Ack(); err != nil {
		t.Fatal(err)
	}

	w.outage.trip(ctx, errors.New("test: the database is down"))
	const n = 20
	publish(n)
	deadline := time.Now().Add(30 * time.Second)
	for i := info(); i.NumPending != 0 || i.NumAckPending != n; i = info() {
		if time.Now().After(deadline) {
			t.Fatalf("%d pending, %d ack pending: the paused worker does not hold what was published during the outage", i.NumPending, i.NumAckPending)
		}
		select {
		case <-in:
			t.Fatal("a message was handed over while the database is down")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Longer than AckWait: held messages are kept alive, not redelivered.
	select {
	case <-in:
		t.Fatal("a message was handed over while the database is down")
	case <-time.After(2*topo.AckWait + topo.AckWait/2):
	}
	if i := info(); i.NumRedelivered != 0 {
		t.Fatalf("%d messages redelivered during the outage", i.NumRedelivered)
	}

	up.Store(true)
	seen := map[uint64]bool{}
	for range n {
		msg := receive()
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if seen[md.Sequence.Stream] || md.NumDelivered != 1 {
			t.Fatalf("stream sequence %d handed over again or delivered %d times", md.Sequence.Stream, md.NumDelivered)
		}
		seen[md.Sequence.Stream] = true
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if i := info(); i.NumRedelivered != 0 || i.NumPending != 0 {
		t.Fatalf("%d redelivered, %d pending after the outage", i.NumRedelivered, i.NumPending)
	}
	cancel()
	for range in { // feed closes in once it has stopped
	}
}
