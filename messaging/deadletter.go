package messaging

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// Headers a dead letter carries besides the original message's own.
const (
	HeaderDLQReason          = "Dlq-Reason"
	HeaderDLQSubject         = "Dlq-Original-Subject"
	HeaderDLQStreamSequence  = "Dlq-Original-Stream-Sequence"
	HeaderDLQDeliveries      = "Dlq-Delivery-Count"
	HeaderDLQDeadLetteredAt  = "Dlq-Dead-Lettered-At"
	maxReasonLen             = 1024
	deadLetterPublishTimeout = 5 * time.Second
)

// DeadLetter copies msg to TELEMETRY_DLQ with headers saying why, and only
// then terminates it in the main stream: a terminated message's payload is
// gone from the worker's reach, so the copy must come first. The copy is
// deduplicated on the original's stream sequence, so a crash between the two
// steps cannot leave two dead letters.
func DeadLetter(ctx context.Context, js jetstream.JetStream, t models.Type, msg jetstream.Msg, reason string) error {
	const op = "messaging.DeadLetter"
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	md, err := msg.Metadata()
	if err != nil {
		return ierr.E(ierr.Internal, op, err)
	}
	hdr := nats.Header{}
	for k, v := range msg.Headers() {
		hdr[k] = v
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	hdr.Set(HeaderDLQReason, reason)
	hdr.Set(HeaderDLQSubject, msg.Subject())
	hdr.Set(HeaderDLQStreamSequence, seq)
	hdr.Set(HeaderDLQDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	hdr.Set(HeaderDLQDeadLetteredAt, time.Now().UTC().Format(time.RFC3339Nano))
	hdr.Set(jetstream.MsgIDHeader, "dlq-"+StreamName+"-"+seq)

	pctx, cancel := context.WithTimeout(ctx, deadLetterPublishTimeout)
	defer cancel()
	if _, err := js.PublishMsg(pctx, &nats.Msg{Subject: DLQSubject(t), Header: hdr, Data: msg.Data()},
		jetstream.WithExpectStream(DLQStreamName)); err != nil {
		return ierr.E(ierr.Unavailable, op, err)
	}
	if err := msg.TermWithReason(reason); err != nil {
		return ierr.E(ierr.Unavailable, op, err)
	}
	return nil
}
