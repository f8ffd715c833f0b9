package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// action is what happens to a message whose processing failed.
type action int

const (
	// retry: NakWithDelay from the back-off schedule; the delivery counts.
	retry action = iota
	// deadLetter: copy to TELEMETRY_DLQ with the reason, then Term.
	deadLetter
	// hold: keep the message, extend its ack deadline and retry in place;
	// deliveries are not burned while the deployment is being fixed.
	hold
	// pause: the database is down (outage); keep the message alive until it
	// is back and retry in place. At shutdown: no answer at all, the message
	// is redelivered after AckWait.
	pause
)

// decide maps a failure to an action: the one place where error kinds
// become acknowledgement decisions.
//
//   - Invalid (and TooLarge, Unsupported): the message can never succeed →
//     dead-letter at once.
//   - Misconfigured (Rekognition access denied or collection missing, schema
//     not migrated, permission denied): no message can succeed until an
//     operator acts, and blaming the messages would dead-letter the whole
//     fleet → hold.
//   - The database is down (errOutage, see outage): not the message's
//     fault, and every message would fail alike → pause.
//   - Unavailable, and anything else (Internal): transient as far as we can
//     tell → retry with back-off, and dead-letter once MaxDeliver deliveries
//     are used up (the server would stop delivering it anyway).
func decide(err error, delivered uint64, maxDeliver int) (action, string) {
	switch ierr.KindOf(err) {
	case ierr.Invalid, ierr.TooLarge, ierr.Unsupported:
		return deadLetter, err.Error()
	case ierr.Misconfigured:
		return hold, ""
	}
	if errors.Is(err, errOutage) {
		return pause, ""
	}
	if delivered >= uint64(maxDeliver) {
		return deadLetter, fmt.Sprintf("exhausted %d deliveries: %v", delivered, err)
	}
	return retry, ""
}

// backoff is the redelivery delay after a message's n-th delivery failed.
func backoff(schedule []time.Duration, n uint64) time.Duration {
	i := int(min(n, uint64(len(schedule)))) - 1
	return schedule[max(i, 0)]
}

// settle answers a message whose processing failed with cause, and reports
// the retry delay when the message will come back (0 when it was
// dead-lettered, which deadLetter logs, or left unanswered). A hold that
// reaches settle (the worker is stopping) is retried with a delay; a pause
// (stopping during a database outage) is not answered at all.
func (w *worker) settle(ctx context.Context, t models.Type, msg jetstream.Msg, cause error) time.Duration {
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	act, reason := decide(cause, delivered, w.cfg.Topology.MaxDeliver)
	switch {
	case act == deadLetter && w.deadLetter(ctx, t, msg, delivered, reason):
		return 0
	case act == pause:
		return 0
	}
	return w.nak(t, msg, delivered)
}

func (w *worker) nak(t models.Type, msg jetstream.Msg, delivered uint64) time.Duration {
	w.metrics.count(t, outcomeRetried, 1)
	delay := backoff(w.cfg.RetryBackoff, delivered)
	if err := msg.NakWithDelay(delay); err != nil {
		// Without the nak the server redelivers after AckWait: slower, still safe.
		w.log.Debug("nak not sent", "type", t, "err", err)
	}
	return delay
}

// deadLetter copies msg to the DLQ, terminates it and audits it. When the
// copy fails it reports false and the caller retries the message instead: it
// is never terminated without its copy.
func (w *worker) deadLetter(ctx context.Context, t models.Type, msg jetstream.Msg, delivered uint64, reason string) bool {
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	if err := w.dlq.DeadLetter(ctx, t, msg, reason); err != nil {
		w.log.ErrorContext(ctx, "dead-lettering failed; the message will be retried", "type", t, "stream_seq", seq, "err", err)
		return false
	}
	w.metrics.count(t, outcomeDeadLettered, 1)
	w.log.WarnContext(ctx, "message dead-lettered", "type", t, "stream_seq", seq, "deliveries", delivered, "reason", reason)
	w.auditDeadLetter(ctx, t, msg.Data(), reason, seq, delivered)
	return true
}

// auditDeadLetter writes the message.dead_lettered audit row, best effort:
// the dead letter itself (with its reason) is already safe in the DLQ.
func (w *worker) auditDeadLetter(ctx context.Context, t models.Type, data []byte, reason string, seq, delivered uint64) {
	// The message failed validation, so read what can be read of it.
	var partial struct {
		MessageID string `json:"message_id"`
		Actor     string `json:"actor"`
		DeviceID  string `json:"device_id"`
	}
	_ = json.Unmarshal(data, &partial)
	e := storage.AuditEntry{
		Actor:    "worker", // the API key name, when the message names one
		Action:   storage.ActionDeadLettered,
		Resource: string(t),
		Details: map[string]any{
			"reason":          reason,
			"subject":         t.Subject(),
			"stream_sequence": seq,
			"deliveries":      delivered,
		},
	}
	if partial.Actor != "" && len(partial.Actor) <= 128 {
		e.Actor = partial.Actor
	}
	if id, err := uuid.Parse(partial.MessageID); err == nil {
		e.MessageID = id
	}
	if id, msg := models.NormalizeDeviceID(partial.DeviceID); msg == "" {
		e.Details["device_id"] = id
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.store.Audit(actx, e); err != nil {
		w.log.WarnContext(ctx, "dead-letter audit row not written", "type", t, "stream_seq", seq, "err", err)
	}
}

// attempt runs fn until it succeeds or fails for a reason of the message's
// own, and returns that outcome; the retries in between spend no delivery.
// While fn fails with a Misconfigured error it holds msgs (InProgress) and
// retries with back-off; while the database is down (outage) it holds them
// until the database answers again. Either wait ends with ctx (the soft
// stop). Each try runs under work (the hard stop, which outlives ctx by
// ShutdownTimeout so that work under way when the worker stops can finish),
// bounded by AckWait, with the messages' ack timers restarted every third
// of AckWait while it runs.
func (w *worker) attempt(ctx, work context.Context, t models.Type, msgs []jetstream.Msg, fn func(context.Context) error) error {
	var heldSince time.Time
	defer func() {
		if !heldSince.IsZero() {
			w.metrics.holding(t, -1)
		}
	}()
	for try := uint64(1); ; try++ {
		if down, _ := w.outage.state(); down && ctx.Err() != nil {
			// Stopping during an outage: trying would only wait for a dead
			// database; the messages are left for redelivery.
			return errOutage
		}
		err := w.outage.observe(ctx, w.try(work, msgs, fn))
		act, _ := decide(err, 1, w.cfg.Topology.MaxDeliver)
		if err == nil || (act != hold && act != pause) || ctx.Err() != nil {
			if !heldSince.IsZero() && act != hold {
				w.log.Info("processing resumed", "type", t, "held_for", time.Since(heldSince).Round(time.Millisecond))
			}
			return err
		}
		if act == pause {
			// The outage logs and shows the pause once for the whole worker.
			if !w.holdWhileDown(ctx, msgs) {
				return err
			}
			continue
		}
		if heldSince.IsZero() {
			heldSince = time.Now()
			w.metrics.holding(t, 1)
			w.log.Error("processing paused: a dependency is misconfigured; messages are held and retried, not dead-lettered",
				"type", t, "messages", len(msgs), "err", err)
		} else {
			w.log.Debug("still misconfigured", "type", t, "try", try, "err", err)
		}
		if !w.waitInProgress(ctx, msgs, backoff(w.cfg.RetryBackoff, try)) {
			return err
		}
	}
}

// try runs fn once under work, bounded by AckWait, keeping msgs alive.
func (w *worker) try(work context.Context, msgs []jetstream.Msg, fn func(context.Context) error) error {
	stop := w.keepAlive(msgs)
	defer stop()
	actx, cancel := context.WithTimeout(work, w.cfg.Topology.AckWait)
	defer cancel()
	return fn(actx)
}

// waitInProgress waits d, telling the server every third of AckWait that
// msgs are still being worked on. It reports false when ctx ends first.
func (w *worker) waitInProgress(ctx context.Context, msgs []jetstream.Msg, d time.Duration) bool {
	every := w.cfg.Topology.AckWait / 3
	deadline := time.Now().Add(d)
	for {
		inProgress(msgs, w.log)
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, every))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// keepAlive tells the server every third of AckWait that msgs are still
// being worked on, until the returned stop is called: a slow try (a slow
// Rekognition answer, a long transaction) never lets a message be
// redelivered to another worker while it is processed here.
func (w *worker) keepAlive(msgs []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(w.cfg.Topology.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				inProgress(msgs, w.log)
			}
		}
	}()
	// After stop returns no InProgress can follow the message's ack.
	return func() { close(done); wg.Wait() }
}

// inProgress restarts the ack timers of msgs.
func inProgress(msgs []jetstream.Msg, log *slog.Logger) {
	for _, m := range msgs {
		if err := m.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			log.Debug("in-progress not sent", "err", err)
		}
	}
}

// settleContext bounds the answers (ack, nak, dead letter) sent after
// processing; work is the hard-stop context.
func settleContext(work context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(work, 10*time.Second)
}
