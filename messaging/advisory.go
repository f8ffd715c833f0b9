package messaging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// maxDeliveriesSubject is where the server announces a message of a
// TELEMETRY consumer that reached MaxDeliver without being acknowledged or
// terminated.
const maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + StreamName + ".*"

// advisoryQueue makes each advisory go to one worker of a fleet.
const advisoryQueue = "telemetry-worker-advisories"

const advisoryTimeout = 5 * time.Second

// maxDeliveriesAdvisory is the part of the server's
// io.nats.jetstream.advisory.v1.max_deliver event used here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// Exhausted describes a message that WatchMaxDeliveries dead-lettered.
type Exhausted struct {
	Type       models.Type
	Subject    string
	Sequence   uint64 // in TELEMETRY
	Deliveries uint64
	Reason     string
	Data       []byte
}

// WatchMaxDeliveries catches the messages whose deliveries ran out with no
// answer from a worker (a worker crashed or stalled past AckWait every
// time): the server then stops delivering them but, with work-queue
// retention, keeps them in TELEMETRY for ever. On each MAX_DELIVERIES
// advisory it copies the message, read by its stream sequence, to
// TELEMETRY_DLQ with the same headers DeadLetter writes, deletes it from
// TELEMETRY, and calls onDeadLetter (which must not block for long).
//
// Advisories are core NATS messages: one that arrives while no worker is
// subscribed is lost, and the message stays in TELEMETRY. The subscription
// is a queue group, so each advisory is handled by one worker of a fleet. A
// message a worker dead-letters itself (DeadLetter terminates it) raises no
// advisory, and both paths use the same dedupe id, so one message never
// gives two dead letters. Stop watching with the subscription's Drain.
//
// stored tells whether a message's reading is in the database after all: a
// last delivery whose transaction committed just after its ack wait ran out
// is finished, not dead. Such a message is only removed from TELEMETRY.
func WatchMaxDeliveries(nc *nats.Conn, js jetstream.JetStream, stored StoredFunc, onDeadLetter func(Exhausted), onError func(error)) (*nats.Subscription, error) {
	const op = "messaging.WatchMaxDeliveries"
	sub, err := nc.QueueSubscribe(maxDeliveriesSubject, advisoryQueue, func(m *nats.Msg) {
		ex, err := deadLetterExhausted(js, stored, m.Data)
		switch {
		case err != nil:
			onError(err)
		case ex != nil:
			onDeadLetter(*ex)
		}
	})
	if err != nil {
		return nil, ierr.E(ierr.Unavailable, op, err)
	}
	return sub, nil
}

// StoredFunc reports whether the reading in a message of type t is stored.
type StoredFunc func(ctx context.Context, t models.Type, data []byte) (bool, error)

// deadLetterExhausted handles one advisory; nil, nil when there is nothing
// to do (another consumer's advisory, a message already gone).
func deadLetterExhausted(js jetstream.JetStream, stored StoredFunc, advisory []byte) (*Exhausted, error) {
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
	stream, err := js.Stream(ctx, StreamName)
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
	t := models.Type(strings.TrimPrefix(raw.Subject, models.SubjectPrefix))
	// The server announces an exhausted message once: if the database cannot
	// say whether the reading is stored, dead-letter it anyway (a replay of a
	// stored reading is harmless, message_id is unique) rather than leave it
	// in TELEMETRY where nothing will ever look at it again.
	if done, err := stored(ctx, t, raw.Data); err == nil && done {
		if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, translate(op, err)
		}
		return nil, nil
	}
	reason := fmt.Sprintf("exhausted %d deliveries without an acknowledgement (consumer %s: worker crashed or exceeded the ack wait)",
		adv.Deliveries, adv.Consumer)
	hdr := deadLetterHeaders(raw.Header, reason, raw.Subject, adv.StreamSeq, adv.Deliveries)
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: DLQSubject(t), Header: hdr, Data: raw.Data},
		jetstream.WithExpectStream(DLQStreamName))
	if err != nil {
		return nil, ierr.E(ierr.Unavailable, op, err)
	}
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, translate(op, err)
	}
	if ack.Duplicate {
		// A worker dead-lettered it on its last delivery while the server
		// was giving up on it: already copied, already reported.
		return nil, nil
	}
	return &Exhausted{Type: t, Subject: raw.Subject, Sequence: adv.StreamSeq, Deliveries: adv.Deliveries,
		Reason: reason, Data: raw.Data}, nil
}

func isTelemetryConsumer(name string) bool {
	for _, t := range models.Types {
		if name == ConsumerName(t) {
			return true
		}
	}
	return false
}

// deadLetterHeaders are the original headers plus the DLQ ones, as
// DeadLetter writes them, with the dedupe id both paths share.
func deadLetterHeaders(orig nats.Header, reason, subject string, seq, deliveries uint64) nats.Header {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	hdr := nats.Header{}
	for k, v := range orig {
		hdr[k] = v
	}
	s := strconv.FormatUint(seq, 10)
	hdr.Set(HeaderDLQReason, reason)
	hdr.Set(HeaderDLQSubject, subject)
	hdr.Set(HeaderDLQStreamSequence, s)
	hdr.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	hdr.Set(HeaderDLQDeadLetteredAt, time.Now().UTC().Format(time.RFC3339Nano))
	hdr.Set(jetstream.MsgIDHeader, "dlq-"+StreamName+"-"+s)
	return hdr
}
