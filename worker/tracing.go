package worker

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// msgSpans are the processing spans of a batch's messages, msgSpans[i] for
// batch[i]: each a child of the publish span whose context the message
// carries, so a reading's trace runs from the API's request to its answer
// here. nil while tracing is off, when every method does nothing.
type msgSpans []trace.Span

// startMsgSpans starts the processing span of each message of batch, from
// the moment it reached the worker.
func startMsgSpans(ctx context.Context, batch []received) msgSpans {
	if !tracing.On() {
		return nil
	}
	spans := make(msgSpans, len(batch))
	for i, r := range batch {
		var seq, delivered uint64
		if md, err := r.msg.Metadata(); err == nil {
			seq, delivered = md.Sequence.Stream, md.NumDelivered
		}
		_, spans[i] = tracing.StartProcess(ctx, r.msg.Subject(), r.msg.Headers(), seq, delivered, r.at)
	}
	return spans
}

// ctx returns ctx carrying message i's span: what the message's answer (ack,
// nak, dead letter) and its log lines are given, so they join its trace.
func (s msgSpans) ctx(ctx context.Context, i int) context.Context {
	if s == nil {
		return ctx
	}
	return tracing.ContextWith(ctx, s[i])
}

// decoded records the reading's id on message i's span.
func (s msgSpans) decoded(i int, env *models.Meta) {
	if s != nil {
		tracing.SetMessageID(s[i], env.MessageID.String())
	}
}

// outcome records how message i was answered (outcomeStored, …).
func (s msgSpans) outcome(i int, outcome string) {
	if s != nil && s[i].IsRecording() {
		s[i].SetAttributes(attribute.String("telemetry.outcome", outcome))
	}
}

// fail marks message i's span failed with err.
func (s msgSpans) fail(i int, err error) {
	if s != nil && s[i].IsRecording() {
		s[i].RecordError(err)
		s[i].SetStatus(codes.Error, err.Error())
	}
}

// links are the span contexts of the messages at indexes, for the batch
// span's links.
func (s msgSpans) links(indexes []int) []trace.SpanContext {
	if s == nil {
		return nil
	}
	out := make([]trace.SpanContext, len(indexes))
	for j, i := range indexes {
		out[j] = s[i].SpanContext()
	}
	return out
}

// end ends every span.
func (s msgSpans) end() {
	for _, span := range s {
		span.End()
	}
}
