package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// maxDeliveriesSubject is where the server announces a message of a
// TELEMETRY consumer that reached MaxDeliver without being acknowledged or
// terminated. Stream TELEMETRY_EXHAUSTED keeps these announcements.
const maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamName + ".*"

const (
	advisoryTimeout = 5 * time.Second
	// advisoryRetryStep and advisoryRetryMax space the attempts at an
	// advisory whose message could not be dead-lettered (NATS or the DLQ
	// unreachable): 2s, 4s, 6s, … up to a minute.
	advisoryRetryStep = 2 * time.Second
	advisoryRetryMax  = time.Minute
)

// maxDeliveriesAdvisory is the part of the server's
// io.nats.jetstream.advisory.v1.max_deliver event used here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// Exhausted describes a message whose deliveries ran out, dead-lettered by
// WatchExhausted or Sweep.
type Exhausted struct {
	Type       models.Type
	Subject    string
	Sequence   uint64 // in TELEMETRY
	Deliveries uint64
	Reason     string
	Data       []byte
}

// WatchExhausted catches the messages whose deliveries ran out with no
// answer from a worker (a worker crashed or stalled past AckWait every
// time): the server then stops delivering them but, with work-queue
// retention, keeps them in TELEMETRY (a single server keeps them for ever; a
// cluster's periodic interest check deletes them within minutes, which is
// why this must be prompt). For each MAX_DELIVERIES advisory it copies the
// message, read by its stream sequence, to TELEMETRY_DLQ with the same
// headers DeadLetter writes, deletes it from TELEMETRY, and calls
// onDeadLetter (which must not block for long).
//
// The advisories are read from stream TELEMETRY_EXHAUSTED through one
// durable consumer shared by every worker: an advisory sent while no worker
// ran waits there, and one whose message could not be copied is retried
// with a growing delay until it is (onError hears of each failure). A
// message a worker dead-letters itself (DeadLetter terminates it) raises no
// advisory, and both paths use the same dedupe id, so one message never
// gives two dead letters. Stop watching with the returned context's Stop.
//
// stored tells whether a message's reading is in the database after all: a
// last delivery whose transaction committed just after its ack wait ran out
// is finished, not dead. Such a message is only removed from TELEMETRY.
func (d *DLQ) WatchExhausted(ctx context.Context, stored StoredFunc, onDeadLetter func(Exhausted), onError func(error)) (jetstream.ConsumeContext, error) {
	const op = "messaging.WatchExhausted"
	c, err := d.js.Consumer(ctx, ExhaustedStreamName, exhaustedConsumer)
	if err != nil {
		return nil, translate(op, err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		ex, err := d.deadLetterExhausted(stored, m.Data())
		switch {
		case ierr.Is(err, ierr.Invalid):
			onError(err)
			_ = m.Term() // unreadable: it never will be
		case err != nil:
			onError(err)
			n := uint64(1)
			if md, err := m.Metadata(); err == nil {
				n = md.NumDelivered
			}
			_ = m.NakWithDelay(min(time.Duration(n)*advisoryRetryStep, advisoryRetryMax))
		default:
			if ex != nil {
				onDeadLetter(*ex)
			}
			_ = m.Ack()
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Missed heartbeats are recovered from by Consume itself.
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			onError(ierr.E(ierr.Unavailable, op, err))
		}
	}))
	if err != nil {
		return nil, translate(op, err)
	}
	return cc, nil
}

// StoredFunc reports whether the reading in a message of type t is stored.
type StoredFunc func(ctx context.Context, t models.Type, data []byte) (bool, error)

// deadLetterExhausted handles one advisory; nil, nil when there is nothing
// to do (another consumer's advisory, a message already gone).
func (d *DLQ) deadLetterExhausted(stored StoredFunc, advisory []byte) (*Exhausted, error) {
	const op = "messaging.deadLetterExhausted"
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(advisory, &adv); err != nil {
		return nil, ierr.E(ierr.Invalid, op, fmt.Errorf("advisory: %w", err))
	}
	if adv.Stream != StreamName || !isTelemetryConsumer(adv.Consumer) || adv.StreamSeq == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), advisoryTimeout)
	defer cancel()
	stream, err := d.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, translate(op, err)
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil // dead-lettered or deleted by someone else already
	}
	if err != nil {
		return nil, translate(op, err)
	}
	reason := fmt.Sprintf("exhausted %d deliveries without an acknowledgement (consumer %s: worker crashed or exceeded the ack wait)",
		adv.Deliveries, adv.Consumer)
	return d.settleExhausted(ctx, stream, raw, adv.Deliveries, reason, stored)
}

// settleExhausted dead-letters raw, a message of TELEMETRY no consumer will
// deliver again, then deletes it from TELEMETRY; a message whose reading is
// stored after all is only deleted. It reports the dead letter when it wrote
// it (nil when it was there already: a worker or another path got there
// first). The copy always comes before the delete.
func (d *DLQ) settleExhausted(ctx context.Context, stream jetstream.Stream, raw *jetstream.RawStreamMsg, deliveries uint64, reason string, stored StoredFunc) (_ *Exhausted, err error) {
	const op = "messaging.settleExhausted"
	t := models.Type(strings.TrimPrefix(raw.Subject, models.SubjectPrefix))
	// If the database cannot say whether the reading is stored, dead-letter
	// it anyway (a replay of a stored reading is harmless, message_id is
	// unique) rather than leave it where a cluster would delete it unseen.
	if done, err := stored(ctx, t, raw.Data); err == nil && done {
		if err := stream.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, translate(op, err)
		}
		return nil, nil
	}
	ctx, span := startDeadLetter(ctx, t, raw.Header, reason)
	defer func() { tracing.End(span, err) }()
	hdr := deadLetterHeaders(raw.Header, reason, raw.Subject, raw.Sequence, deliveries)
	ack, err := d.publish(ctx, &nats.Msg{Subject: DLQSubject(t), Header: hdr, Data: raw.Data})
	if err != nil {
		return nil, ierr.E(ierr.Unavailable, op, err)
	}
	if err := stream.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, translate(op, err)
	}
	if ack.Duplicate {
		// A worker dead-lettered it on its last delivery while the server
		// was giving up on it: already copied, already reported.
		return nil, nil
	}
	return &Exhausted{Type: t, Subject: raw.Subject, Sequence: raw.Sequence, Deliveries: deliveries,
		Reason: hdr.Get(HeaderDLQReason), Data: raw.Data}, nil
}

func isTelemetryConsumer(name string) bool {
	for _, t := range models.Types {
		if name == ConsumerName(t) {
			return true
		}
	}
	return false
}
