package worker

import (
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
// report ends the worker. While the database is down (outage) the running
// subscription is kept and what it delivers is held (see subscribe); a
// subscription that ended is not made again until the database is back, and
// what it had delivered is kept alive with InProgress until it can be
// handed over.
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
// pulled ahead, until ctx is done (nil) or the subscription fails (its
// error). Every message it delivers passes through held on its way to in:
// while the database is down held keeps it, alive with InProgress every
// third of AckWait, and hands it over once the database is back.
//
// The subscription is kept through an outage rather than drained: draining
// unsubscribes while a pull request is still open on the server, and what
// the server had already sent for it reaches a closed inbox, to come back
// only after AckWait as a redelivery. Kept, the subscription goes on
// pulling while the worker is paused; the consumer's MaxAckPending bounds
// how much the worker then holds. A subscription is drained only when it
// ends (the soft stop, or a failure), and what the drain yields is held
// too, never dropped. A subscription is not started while the database is
// down (nil at once).
func (w *worker) subscribe(ctx context.Context, t models.Type, buffer int, in chan<- jetstream.Msg, held *[]jetstream.Msg) error {
	if down, _ := w.outage.state(); down {
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
	next := pump(it)

	keepAlive := time.NewTicker(w.cfg.Topology.AckWait / 3)
	defer keepAlive.Stop()
	stopping := ctx.Done()
	var failed error
	for {
		down, changed := w.outage.state()
		var out chan<- jetstream.Msg // nil (never ready) unless there is something to hand over
		var first jetstream.Msg
		if !down && len(*held) > 0 {
			out, first = in, (*held)[0]
		}
		select {
		case r, ok := <-next:
			switch {
			case !ok:
				if failed == nil && stopping != nil {
					failed = jetstream.ErrMsgIteratorClosed // closed by NATS, not by us
				}
				return failed
			case r.err != nil:
				// ErrNoHeartbeat and the like: take what the subscription
				// holds, then make a new one.
				if failed == nil {
					failed = r.err
					it.Drain()
				}
			default:
				*held = append(*held, r.msg)
			}
		case out <- first:
			*held = (*held)[1:]
		case <-changed:
		case <-keepAlive.C:
			if down {
				inProgress(*held, w.log)
			}
		case <-stopping:
			stopping = nil
			it.Drain()
		}
	}
}

// pulled is one answer of a pull iterator's Next.
type pulled struct {
	msg jetstream.Msg
	err error
}

// pump reads it until it is closed (jetstream.ErrMsgIteratorClosed), so that
// a caller can wait for a message and for other events at once. The channel
// is closed after the last message; the caller must read it to the end.
func pump(it jetstream.MessagesContext) <-chan pulled {
	next := make(chan pulled)
	go func() {
		defer close(next)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			next <- pulled{msg: m, err: err}
		}
	}()
	return next
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
