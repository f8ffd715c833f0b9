// Package tracingtest records the spans of the code under test in memory:
// Record installs an OpenTelemetry SDK tracer provider whose spans end in a
// tracetest.SpanRecorder as the global provider, for the test's duration.
// The global provider is the process's, so a test that records must not
// run in parallel with another that does.
package tracingtest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Record installs a recording tracer provider (every span sampled) until
// the test ends, then puts the previous global provider back.
func Record(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	install(t, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample())))
	return rec
}

// install makes tp the process's tracer provider until the test ends.
func install(tb testing.TB, tp *sdktrace.TracerProvider) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	tb.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
}

// Named returns the ended spans called name, in the order they ended.
func Named(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// InTrace returns the ended spans of trace id.
func InTrace(rec *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// Attr returns the value of the attribute key of s as a string, "" when s
// has none.
func Attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// Export installs, until the test or benchmark ends, a provider built as
// tracing.Setup builds it (every span sampled, a batch span processor) that
// exports to an in-memory exporter, which it returns: what a benchmark of
// the instrumented code with tracing on measures. A long benchmark resets
// the exporter now and then, or it keeps every span.
func Export(tb testing.TB) *tracetest.InMemoryExporter {
	tb.Helper()
	exp := tracetest.NewInMemoryExporter()
	install(tb, sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp)))
	return exp
}
