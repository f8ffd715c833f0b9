package services

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// Each Rekognition operation is a client span, a child of the photo's
// processing, with its outcome; a DetectFaces that settles a search is the
// search's child; a throttled call is a failed span; a cache hit makes no
// span and is noted on the processing span. (Not parallel: it installs the
// process's tracer provider.)
func TestRekognitionSpans(t *testing.T) {
	rec := tracingtest.Record(t)
	h := newHarness(t, PhotoAnalyzerConfig{})
	coffee := fixture(t, "coffee.png")
	h.fake.SetNoFace(coffee)

	// photo analyses img under a span of its own and returns that span's
	// trace, once the span has ended.
	photo := func(img []byte, id string) (trace.TraceID, error) {
		ctx, span := tracing.Start(context.Background(), "process telemetry.photo", trace.SpanKindConsumer)
		_, err := h.svc.AnalyzeMessage(ctx, id, testDevice, img)
		span.End()
		return span.SpanContext().TraceID(), err
	}
	byName := func(id trace.TraceID) map[string]sdktrace.ReadOnlySpan {
		out := map[string]sdktrace.ReadOnlySpan{}
		for _, s := range tracingtest.InTrace(rec, id) {
			out[s.Name()] = s
		}
		return out
	}

	grace := fixture(t, "grace_hopper.jpg")
	id, err := photo(grace, "m1")
	if err != nil {
		t.Fatal(err)
	}
	spans := byName(id)
	root, search, index := spans["process telemetry.photo"], spans["Rekognition.SearchFacesByImage"], spans["Rekognition.IndexFaces"]
	if len(spans) != 3 || search == nil || index == nil {
		t.Fatalf("new face: spans %v", spans)
	}
	for _, s := range []sdktrace.ReadOnlySpan{search, index} {
		if s.Parent().SpanID() != root.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient ||
			tracingtest.Attr(s, "rekognition.outcome") != outcomeSuccess || tracingtest.Attr(s, "rpc.service") != "Rekognition" {
			t.Errorf("%s: parent %v, kind %v, attributes %v", s.Name(), s.Parent().SpanID(), s.SpanKind(), s.Attributes())
		}
	}
	if tracingtest.Attr(root, "photo.analysis.cache") != "miss" {
		t.Errorf("processing span: %v", root.Attributes())
	}

	// The same photo again: the cache answers, no Rekognition span.
	id, _ = photo(grace, "m2")
	if spans := byName(id); len(spans) != 1 || tracingtest.Attr(spans["process telemetry.photo"], "photo.analysis.cache") != "hit" {
		t.Errorf("cache hit: spans %v", spans)
	}

	// No face: the search's answer is settled by DetectFaces, its child.
	id, _ = photo(coffee, "m3")
	spans = byName(id)
	search, detect := spans["Rekognition.SearchFacesByImage"], spans["Rekognition.DetectFaces"]
	if search == nil || detect == nil || detect.Parent().SpanID() != search.SpanContext().SpanID() ||
		tracingtest.Attr(search, "rekognition.outcome") != outcomeNoFace || search.Status().Code == codes.Error {
		t.Fatalf("no face: spans %v", spans)
	}

	// Throttled past the SDK's retries: a failed span, the error recorded.
	h.fake.FailNext(rekognitionfake.OpSearchFacesByImage, RetryMaxAttempts, rekognitionfake.Fault{Code: "ThrottlingException"})
	if id, err = photo(variant(t, grace, "throttled"), "m4"); err == nil {
		t.Fatal("throttled analysis succeeded")
	}
	search = byName(id)["Rekognition.SearchFacesByImage"]
	if search == nil || search.Status().Code != codes.Error || tracingtest.Attr(search, "rekognition.outcome") != outcomeThrottled || len(search.Events()) == 0 {
		t.Fatalf("throttled: %v", byName(id))
	}
}
