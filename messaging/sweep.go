package messaging

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/models"
)

// DefaultSweepInterval is how often a worker sweeps TELEMETRY for messages
// whose deliveries ran out unnoticed.
const DefaultSweepInterval = time.Minute

// SweepReason starts the Dlq-Reason of the dead letters the sweep writes.
const SweepReason = "max deliveries (swept)"

// sweepBatch bounds the messages one sweep settles per consumer.
const sweepBatch = 100

// Sweep finds messages of TELEMETRY whose deliveries ran out and whose
// advisory never reached WatchExhausted (the server lost it in a crash, it
// was sent before TELEMETRY_EXHAUSTED existed, or that stream overflowed),
// and settles them as WatchExhausted would, with reason SweepReason. It
// reports how many it found and how many of those it dead-lettered (the
// others were stored after all, or dead-lettered already). It is idempotent:
// workers may sweep at the same time.
//
// nats-server 2.10 does not list the messages a consumer gave up on; two
// facts identify them. A message at or below a consumer's ack floor is not
// pending on it, and a work-queue stream deletes every message acknowledged
// or terminated: one still there was given up on. The floor moves only
// across acknowledgements, so it passes an exhausted message once every
// message delivered before it is settled, and the sweep finds it then, not
// before; a message still being retried is above the floor and never
// touched. A consumer is scanned only when its counts say a message is
// exhausted (messages on its subject less those not yet delivered and those
// pending), so a quiet sweep costs two requests per consumer, not a fetch.
func (d *DLQ) Sweep(ctx context.Context, stored StoredFunc, onDeadLetter func(Exhausted)) (found, deadLettered int, err error) {
	const op = "messaging.Sweep"
	stream, err := d.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, 0, translate(op, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(models.SubjectPrefix+"*"))
	if err != nil {
		return 0, 0, translate(op, err)
	}
	for _, t := range models.Types {
		c, err := d.js.Consumer(ctx, StreamName, ConsumerName(t))
		if err != nil {
			return found, deadLettered, translate(op, err)
		}
		ci := c.CachedInfo()
		if info.State.Subjects[t.Subject()] <= ci.NumPending+uint64(max(ci.NumAckPending, 0)) {
			continue
		}
		deliveries := uint64(max(ci.Config.MaxDeliver, 0))
		reason := fmt.Sprintf("%s: exhausted %d deliveries without an acknowledgement on consumer %s; no worker handled the server's advisory",
			SweepReason, deliveries, ci.Name)
		floor := ci.AckFloor.Stream
		for seq, n := max(info.State.FirstSeq, 1), 0; seq <= floor && n < sweepBatch; n++ {
			raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(t.Subject()))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return found, deadLettered, translate(op, err)
			}
			if raw.Sequence > floor {
				break
			}
			found++
			ex, err := d.settleExhausted(ctx, stream, raw, deliveries, reason, stored)
			if err != nil {
				return found, deadLettered, err
			}
			if ex != nil {
				deadLettered++
				d.swept.WithLabelValues(string(t)).Inc()
				onDeadLetter(*ex)
			}
			seq = raw.Sequence + 1
		}
	}
	return found, deadLettered, nil
}

// RunSweeps sweeps at once and then every interval (DefaultSweepInterval
// when 0) until ctx is done, logging each sweep that found something or
// failed (the next one retries).
func (d *DLQ) RunSweeps(ctx context.Context, interval time.Duration, stored StoredFunc, onDeadLetter func(Exhausted)) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, max(interval, advisoryTimeout))
		found, dead, err := d.Sweep(sctx, stored, onDeadLetter)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Error("sweep for messages whose deliveries ran out failed; the next sweep retries",
				"found", found, "dead_lettered", dead, "err", err)
		case found > 0:
			d.log.Warn("sweep settled messages whose deliveries ran out and whose advisory was lost",
				"found", found, "dead_lettered", dead)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
