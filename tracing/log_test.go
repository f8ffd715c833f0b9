package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/tracing"
)

func TestLogHandlerAddsTheTraceID(t *testing.T) {
	tracingtest.Record(t)
	var b bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&b, nil))).With("component", "api").WithGroup("g")
	ctx, span := tracing.Start(context.Background(), "op", 0)
	defer span.End()

	log.InfoContext(ctx, "with span", "k", "v")
	log.Info("without context")
	log.InfoContext(context.Background(), "without span")

	dec := json.NewDecoder(&b)
	var lines []map[string]any
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	g, _ := lines[0]["g"].(map[string]any)
	if g[tracing.LogTraceID] != span.SpanContext().TraceID().String() || g[tracing.LogSpanID] != span.SpanContext().SpanID().String() ||
		g["k"] != "v" || lines[0]["component"] != "api" {
		t.Errorf("line with a span: %v", lines[0])
	}
	for _, l := range lines[1:] {
		if g, _ := l["g"].(map[string]any); g != nil || l[tracing.LogTraceID] != nil {
			t.Errorf("line without a span: %v", l)
		}
	}
}
