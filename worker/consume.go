package worker

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

const (
	// resubscribeFirst and resubscribeMax shape the back-off between
	// subscriptions of a consumer that keep failing.
	resubscribeFirst = 250 * time.Millisecond
	resubscribeMax   = 5 * time.Second
	// photoPollWait is how long one photo fetch waits for a photo.
	photoPollWait = 10 * time.Second
)

// feed hands the messages of consumer t to in, one at a time, until ctx (the
// soft stop) is done; then it closes in. A subscription that fails (a missed
// heartbeat, a consumer leader change, NATS unreachable) is drained and made
// again with back-off, logged and counted: nothing a subscription can
// report ends the worker. While the database is down (outage) it fetches
// nothing, and keeps the messages the last subscription had buffered alive
// with InProgress until they can be handed over.
func (w *worker) feed(ctx context.Context, t models.Type, buffer int, in chan<- jetstream.Msg) {
	defer close(in)
	var held []jetstream.Msg
	failures := 0
	for {
		for {
			if !w.holdWhileDown(ctx, held) {
				// Stopping during an outage: held messages are left for
				// redelivery after AckWait.
				return
			}
			if held = w.handOver(held, in); len(held) == 0 {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		began := time.Now()
		err := w.subscribe(ctx, t, buffer, in, &held)
		if err == nil || ctx.Err() != nil {
			continue
		}
		if time.Since(began) > resubscribeMax {
			failures = 0 // it had been working: start the back-off again
		}
		failures++
		delay := min(resubscribeFirst<<min(failures-1, 8), resubscribeMax)
		w.metrics.restarts.WithLabelValues(string(t)).Inc()
		w.log.Warn("consumer subscription failed; subscribing again", "type", t, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// handOver gives held to in, and returns what it could not give because the
// database went down meanwhile.
func (w *worker) handOver(held []jetstream.Msg, in chan<- jetstream.Msg) []jetstream.Msg {
	_, changed := w.outage.state()
	for len(held) > 0 {
		select {
		case in <- held[0]:
			held = held[1:]
		case <-changed:
			return held
		}
	}
	return nil
}

// subscribe runs one subscription of consumer t, with up to buffer messages
// pulled ahead, until ctx is done or the database goes down (nil), or the
// subscription fails (its error). In each case it drains the subscription
// first: what it buffered is handed to in, or appended to held while the
// database is down, never dropped.
func (w *worker) subscribe(ctx context.Context, t models.Type, buffer int, in chan<- jetstream.Msg, held *[]jetstream.Msg) error {
	down, changed := w.outage.state()
	if down {
		return nil
	}
	cons, err := w.js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(t))
	if err != nil {
		return err
	}
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(buffer)}
	if w.pullExpiry > 0 {
		opts = append(opts, jetstream.PullExpiry(w.pullExpiry))
	}
	it, err := cons.Messages(opts...)
	if err != nil {
		return err
	}
	defer it.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-changed:
		case <-done:
			return
		}
		it.Drain()
	}()

	var failed error
	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				return nil
			default: // closed by a failure, or by NATS
				return cmp.Or(failed, err)
			}
		}
		if err != nil {
			// ErrNoHeartbeat and the like: take what the subscription holds,
			// then make a new one.
			if failed == nil {
				failed = err
				it.Drain()
			}
			continue
		}
		if down, _ := w.outage.state(); down {
			*held = append(*held, m)
			continue
		}
		select {
		case in <- m:
		case <-changed: // the database went down while the batch loop was busy
			*held = append(*held, m)
		}
	}
}

// photoSlot processes photos one at a time until ctx (the soft stop) is done,
// fetching each only when it can start on it: a photo never waits in a
// client buffer while its ack timer runs (it would be redelivered to another
// worker and analysed twice). A fetch that fails is retried with back-off,
// logged and counted; nothing is fetched while the database is down.
func (w *worker) photoSlot(ctx, work context.Context) {
	const t = models.TypePhoto
	var cons jetstream.Consumer
	failures := 0
	for {
		if !w.holdWhileDown(ctx, nil) || ctx.Err() != nil {
			return
		}
		m, err := w.fetchOne(ctx, t, &cons)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			cons = nil
			failures++
			delay := min(resubscribeFirst<<min(failures-1, 8), resubscribeMax)
			w.metrics.restarts.WithLabelValues(string(t)).Inc()
			w.log.Warn("consumer fetch failed; fetching again", "type", t, "retry_in", delay, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		failures = 0
		if m != nil {
			w.handlePhoto(ctx, work, m)
		}
	}
}

// fetchOne waits up to photoPollWait for one message of consumer t; nil, nil
// when none came.
func (w *worker) fetchOne(ctx context.Context, t models.Type, cons *jetstream.Consumer) (jetstream.Msg, error) {
	if *cons == nil {
		c, err := w.js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(t))
		if err != nil {
			return nil, err
		}
		*cons = c
	}
	fctx, cancel := context.WithTimeout(ctx, photoPollWait)
	defer cancel()
	batch, err := (*cons).Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	var m jetstream.Msg
	for msg := range batch.Messages() {
		m = msg
	}
	if err := batch.Error(); m == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	return m, nil
}
