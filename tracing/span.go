package tracing

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// scope is the instrumentation scope of every span the system starts.
const scope = "github.com/challenge-v3/challenge-v3"

// untouched is the global tracer provider as the process found it:
// OpenTelemetry's delegating no-op. While it is still the global one no
// provider was installed (tracing is off), and the helpers below return at
// once instead of going through it, which would lock a mutex and allocate a
// context per span for nothing.
var untouched = otel.GetTracerProvider()

// offSpan is the span the helpers return while tracing is off; boxed once.
var offSpan trace.Span = noop.Span{}

// On reports whether a tracer provider is installed (Setup with an
// endpoint, or a test's). Callers use it to skip work whose only purpose is
// a span, such as collecting a batch's links.
func On() bool { return otel.GetTracerProvider() != untouched }

// tracer is the system's tracer of the installed provider, or nil when
// tracing is off. It is looked up at each use, not kept, so a provider
// installed later (by a test, after another) is the one used.
func tracer() trace.Tracer {
	tp := otel.GetTracerProvider()
	if tp == untouched {
		return nil
	}
	return tp.Tracer(scope)
}

// Start starts a span named name of kind kind, a child of ctx's span. With
// tracing off it returns ctx itself and a no-op span, allocating nothing.
// Attributes are set by the caller after checking span.IsRecording(), so
// that building them costs nothing either when tracing is off.
func Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	return t.Start(ctx, name, trace.WithSpanKind(kind))
}

// ContextWith returns ctx carrying span, for work done on span's behalf
// under another context's deadline (a message's answer sent under the
// batch's settle timeout) and for its log lines; ctx itself when span is
// not a real span (tracing off), allocating nothing then.
func ContextWith(ctx context.Context, span trace.Span) context.Context {
	if !span.SpanContext().IsValid() {
		return ctx
	}
	return trace.ContextWithSpan(ctx, span)
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// StartServer starts the span of one HTTP request to route (the ServeMux
// pattern, "POST /telemetry/gps", which is also its name). A W3C
// traceparent header the request carries is continued when trusted (it
// came from a proxy in TRUSTED_PROXIES); from anyone else the span starts
// a trace of its own and links to the incoming one, so a client can neither
// pick the trace id nor decide that its requests are sampled.
func StartServer(ctx context.Context, hdr map[string][]string, method, route, path string, trusted bool) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(method),
		semconv.HTTPRouteKey.String(route),
		semconv.URLPathKey.String(path),
	)}
	remote := trace.SpanContextFromContext(propagator.Extract(ctx, Header(hdr)))
	switch {
	case remote.IsValid() && trusted:
		ctx = trace.ContextWithRemoteSpanContext(ctx, remote)
	case remote.IsValid():
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote}))
	}
	return t.Start(ctx, route, opts...)
}

// EndServer ends a request's span with its answer's status: only a 5xx is
// the server's failure (a 4xx is the client's), as the HTTP conventions
// say; cause, when known, is the 5xx's error.
func EndServer(span trace.Span, status int, cause error) {
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			desc := strconv.Itoa(status)
			if cause != nil {
				span.RecordError(cause)
				desc = cause.Error()
			}
			span.SetStatus(codes.Error, desc)
		}
	}
	span.End()
}

// StartPublish starts the producer span of a message published to subject
// (msgID, its Nats-Msg-Id, may be empty). Write the returned context into
// the message's headers with Inject: the worker's span of the message
// continues this trace.
func StartPublish(ctx context.Context, subject, msgID string) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	attrs := []attribute.KeyValue{
		messagingNATS,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationNameKey.String("publish"),
		semconv.MessagingDestinationNameKey.String(subject),
	}
	if msgID != "" {
		attrs = append(attrs, attribute.String("messaging.nats.msg_id", msgID))
	}
	return t.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// StartProcess starts the consumer span of the worker's processing of one
// message from subject, a child of the span whose context the message's
// headers carry (the API's publish), so one reading's spans from the
// request to the commit share a trace. The span starts at received, when
// the message reached the worker (the time it then waits for its batch is
// part of its processing), or now when received is zero.
func StartProcess(ctx context.Context, subject string, hdr map[string][]string, streamSeq, delivered uint64, received time.Time) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	ctx = propagator.Extract(ctx, Header(hdr))
	if received.IsZero() {
		received = time.Now()
	}
	return t.Start(ctx, "process "+subject, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(received), trace.WithAttributes(
		messagingNATS,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationNameKey.String(subject),
		attribute.Int64("messaging.nats.stream_sequence", int64(streamSeq)),
		attribute.Int64("messaging.nats.delivered", int64(delivered)),
	))
}

// SetMessageID records on span the id of the reading its message carries
// (messaging.message.id), known once the worker has decoded the message.
func SetMessageID(span trace.Span, id string) {
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageIDKey.String(id))
	}
}

// StartBatch starts the span of a batch of messages from subject written in
// one transaction, a child of ctx's span, linked to each message's span
// (msgs): a batch belongs to many traces, and the links lead from it to each
// of them. The caller passes the context of its first message's span, so a
// reading alone in its batch has one trace from the request to the commit.
func StartBatch(ctx context.Context, subject string, msgs []trace.SpanContext) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	links := make([]trace.Link, 0, len(msgs))
	for _, sc := range msgs {
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	return t.Start(ctx, "batch "+subject, trace.WithSpanKind(trace.SpanKindInternal), trace.WithLinks(links...), trace.WithAttributes(
		messagingNATS,
		semconv.MessagingDestinationNameKey.String(subject),
		semconv.MessagingBatchMessageCountKey.Int(len(msgs)),
	))
}

// StartDB starts the span of one PostgreSQL statement or transaction:
// operation ("INSERT", "TRANSACTION") on table ("" for none), named
// "INSERT gps" as the database conventions name it; rows is how many rows
// a batch statement writes (db.operation.batch.size, recorded from 2 on as
// the conventions say).
func StartDB(ctx context.Context, operation, table string, rows int) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	name := operation
	attrs := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL, semconv.DBOperationNameKey.String(operation)}
	if table != "" {
		name += " " + table
		attrs = append(attrs, semconv.DBCollectionNameKey.String(table))
	}
	if rows > 1 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", rows))
	}
	return t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// StartRekognition starts the client span of one Rekognition operation,
// named "Rekognition.SearchFacesByImage" as the AWS SDK conventions name it.
func StartRekognition(ctx context.Context, operation string) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	return t.Start(ctx, "Rekognition."+operation, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("rpc.system", "aws-api"),
		attribute.String("rpc.service", "Rekognition"),
		semconv.RPCMethodKey.String(operation),
	))
}

// StartDeadLetter starts the producer span of a message's copy to the
// dead-letter subject, with the reason it is dead-lettered.
func StartDeadLetter(ctx context.Context, subject, reason string) (context.Context, trace.Span) {
	t := tracer()
	if t == nil {
		return ctx, offSpan
	}
	return t.Start(ctx, "dead-letter "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		messagingNATS,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationNameKey.String(subject),
		attribute.String("telemetry.dead_letter.reason", reason),
	))
}

var messagingNATS = semconv.MessagingSystemKey.String("nats")
