package storage

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/tracing"
)

// queryTracer gives each query of the read pool a client span, a child of
// the request's, named by the statement's first keyword ("SELECT", "WITH")
// and carrying its text (parameterised: no value a client sent is in it).
// The write paths start their spans themselves (InsertGPS, …), named by
// their table, and do not use it.
type queryTracer struct{}

var _ pgx.QueryTracer = queryTracer{}

type querySpanKey struct{}

func (queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !tracing.On() {
		return ctx
	}
	op, _, _ := strings.Cut(strings.TrimSpace(data.SQL), " ")
	ctx, span := tracing.StartDB(ctx, strings.ToUpper(strings.TrimSpace(op)), "", 0)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("db.query.text", data.SQL))
	}
	return context.WithValue(ctx, querySpanKey{}, span)
}

func (queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if span, ok := ctx.Value(querySpanKey{}).(trace.Span); ok {
		tracing.End(span, data.Err)
	}
}
