package messaging

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
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

// DLQ writes dead letters to TELEMETRY_DLQ, keeping the stream under its
// byte bound by discarding the oldest dead letters (counted), and settles
// the messages whose deliveries ran out (advisory.go, sweep.go). It is the
// only writer of TELEMETRY_DLQ.
type DLQ struct {
	js        jetstream.JetStream
	log       *slog.Logger
	discarded prometheus.Counter     // worker_dlq_discarded_total
	swept     *prometheus.CounterVec // worker_dlq_swept_total{type}
}

// NewDLQ returns the dead-letter writer of a worker and registers its
// metrics on reg.
func NewDLQ(js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) (*DLQ, error) {
	d := &DLQ{
		js:  js,
		log: log,
		discarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "worker_dlq_discarded_total",
			Help: "Dead letters discarded, oldest first, to keep TELEMETRY_DLQ under DLQ_MAX_BYTES; alert when it increases.",
		}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_dlq_swept_total",
			Help: "Messages whose deliveries ran out that the periodic sweep found in TELEMETRY and dead-lettered (their advisory was lost).",
		}, []string{"type"}),
	}
	for _, c := range []prometheus.Collector{d.discarded, d.swept} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dead-letter metrics: %w", err)
		}
	}
	for _, t := range models.Types {
		d.swept.WithLabelValues(string(t))
	}
	return d, nil
}

// DeadLetter copies msg to TELEMETRY_DLQ with headers saying why, and only
// then terminates it in the main stream: a terminated message's payload is
// gone from the worker's reach, so the copy must come first. The copy is
// deduplicated on the original's stream sequence, so a crash between the two
// steps cannot leave two dead letters. Its span is a child of ctx's, the
// worker's processing of msg (startDeadLetter).
func (d *DLQ) DeadLetter(ctx context.Context, t models.Type, msg jetstream.Msg, reason string) (err error) {
	const op = "messaging.DeadLetter"
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	ctx, span := startDeadLetter(ctx, t, msg.Headers(), reason)
	defer func() { tracing.End(span, err) }()
	md, err := msg.Metadata()
	if err != nil {
		return ierr.E(ierr.Internal, op, err)
	}
	hdr := deadLetterHeaders(msg.Headers(), reason, msg.Subject(), md.Sequence.Stream, md.NumDelivered)
	pctx, cancel := context.WithTimeout(ctx, deadLetterPublishTimeout)
	defer cancel()
	if _, err := d.publish(pctx, &nats.Msg{Subject: DLQSubject(t), Header: hdr, Data: msg.Data()}); err != nil {
		return ierr.E(ierr.Unavailable, op, err)
	}
	if err := msg.TermWithReason(reason); err != nil {
		return ierr.E(ierr.Unavailable, op, err)
	}
	return nil
}

// startDeadLetter starts the span of dead-lettering a message whose headers
// are orig: a child of ctx's span when there is one (the worker's
// processing of the message), else of the trace the message's headers carry
// (an advisory or the sweep settling a message no worker holds), so the
// dead letter shows in the trace of the request that sent the reading.
//
// The dead letter keeps the original's trace context (deadLetterHeaders
// copies every header): a replayed dead letter's processing joins that
// trace again.
func startDeadLetter(ctx context.Context, t models.Type, orig nats.Header, reason string) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.Extract(ctx, orig)
	}
	return tracing.StartDeadLetter(ctx, DLQSubject(t), reason)
}

// deadLetterHeaders are the original headers plus the DLQ ones, with the
// dedupe id every path that dead-letters the message shares.
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
