package tracing_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/challenge-v3/challenge-v3/tracing"
)

// BenchmarkMessagePath is what tracing adds to one reading's path: the
// publish span with its context injected into the message's headers, the
// worker's process span extracting it, a database span, and a log line
// written with the context. Three ways: none (the path without the calls:
// the baseline), off (the calls with no provider installed, as a binary
// runs without OTEL_EXPORTER_OTLP_ENDPOINT: must allocate nothing) and on
// (the SDK with a batch span processor, as Setup installs it, exporting to
// nowhere). The figures are in docs/tracing.md.
func BenchmarkMessagePath(b *testing.B) {
	plain := slog.New(slog.NewJSONHandler(io.Discard, nil))
	wrapped := slog.New(tracing.LogHandler(slog.NewJSONHandler(io.Discard, nil)))
	run := func(b *testing.B, traced bool, log *slog.Logger) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			var hdr nats.Header // a message without Nats-Msg-Id, as most are

			lctx := ctx
			if traced {
				pctx, pub := tracing.StartPublish(ctx, "telemetry.gps", "")
				hdr = tracing.Inject(pctx, hdr)
				pub.End()
				wctx, proc := tracing.StartProcess(ctx, "telemetry.gps", hdr, 1, 1, time.Time{})
				tracing.SetMessageID(proc, "0190a3b2-7c1e-7d4a-9e2f-3b5c6d7e8f90")
				_, db := tracing.StartDB(wctx, "INSERT", "gps", 1)
				tracing.End(db, nil)
				tracing.End(proc, nil)
				lctx = pctx
			}
			log.InfoContext(lctx, "message stored", "type", "gps")
		}
	}
	b.Run("none", func(b *testing.B) { run(b, false, plain) })
	b.Run("off", func(b *testing.B) { run(b, true, wrapped) })
	b.Run("on", func(b *testing.B) {
		exporting(b)
		run(b, true, wrapped)
	})
}

// BenchmarkStart is one span started and ended, off and on.
func BenchmarkStart(b *testing.B) {
	run := func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_, span := tracing.Start(ctx, "op", 0)
			span.End()
		}
	}
	b.Run("off", run)
	b.Run("on", func(b *testing.B) {
		exporting(b)
		run(b)
	})
}

// exporting installs, until b ends, a provider as Setup builds it (every
// span sampled, a batch span processor) whose exporter drops the spans, so
// that a long benchmark does not keep them all in memory.
func exporting(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	b.Cleanup(func() {
		otel.SetTracerProvider(prev)
		_ = tp.Shutdown(context.Background())
	})
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
