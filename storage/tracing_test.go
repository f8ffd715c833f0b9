package storage_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// Each write is a client span, a child of the caller's (the worker's batch
// or photo), named as the database conventions name it, with the batch's
// size; a statement the schema refuses is a failed span. (Not parallel: it
// installs the process's tracer provider.)
func TestWriteSpans(t *testing.T) {
	st, _ := newStore(t)
	rec := tracingtest.Record(t)
	ctx, batch := tracing.Start(context.Background(), "batch telemetry.gps", trace.SpanKindInternal)
	if _, err := st.InsertGPS(ctx, gpsBatch(3)); err != nil {
		t.Fatal(err)
	}
	bad := gpsBatch(2)
	bad[1].Latitude = 91
	if _, err := st.InsertGPS(ctx, bad); !ierr.Is(err, ierr.Invalid) {
		t.Fatalf("out-of-range latitude: %v", err)
	}
	if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{{Meta: meta(9), X: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.InsertPhoto(ctx, storage.Photo{Meta: meta(10), ContentType: models.ContentTypeJPEG, SizeBytes: 4,
		Ciphertext: make([]byte, 32), KeyID: "k1", RecognitionStatus: "disabled"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stored(ctx, models.TypePhoto, meta(11).MessageID); err != nil {
		t.Fatal(err)
	}
	batch.End()

	gps := tracingtest.Named(rec, "INSERT gps")
	if len(gps) != 2 || gps[0].Status().Code == codes.Error || gps[1].Status().Code != codes.Error ||
		tracingtest.Attr(gps[0], "db.operation.batch.size") != "3" || tracingtest.Attr(gps[0], "db.system.name") != "postgresql" {
		t.Fatalf("INSERT gps spans: %v", gps)
	}
	for _, name := range []string{"INSERT gps", "INSERT gyroscope", "INSERT photo", "SELECT photo"} {
		spans := tracingtest.Named(rec, name)
		if len(spans) == 0 {
			t.Errorf("no %s span", name)
			continue
		}
		for _, s := range spans {
			if s.Parent().SpanID() != batch.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
				t.Errorf("%s: parent %s, kind %v", name, s.Parent().SpanID(), s.SpanKind())
			}
		}
	}
}

// The read pool's queries are client spans, children of the request's,
// named by their first keyword and carrying their parameterised text.
func TestReadSpans(t *testing.T) {
	r, st := newReader(t)
	g := readFix("dev-a", 1, 10)
	if _, err := st.InsertGPS(context.Background(), []models.GPS{g}); err != nil {
		t.Fatal(err)
	}
	rec := tracingtest.Record(t)
	ctx, request := tracing.Start(context.Background(), "GET /telemetry/gps/{id}", trace.SpanKindServer)
	if _, err := r.GPS(ctx, g.MessageID); err != nil {
		t.Fatal(err)
	}
	request.End()
	var reads int
	for _, s := range tracingtest.InTrace(rec, request.SpanContext().TraceID()) {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		reads++
		if s.Parent().SpanID() != request.SpanContext().SpanID() || tracingtest.Attr(s, "db.system.name") != "postgresql" ||
			!strings.Contains(tracingtest.Attr(s, "db.query.text"), "$1") || strings.Contains(tracingtest.Attr(s, "db.query.text"), g.MessageID.String()) {
			t.Errorf("read span %s: parent %s, attributes %v", s.Name(), s.Parent().SpanID(), s.Attributes())
		}
	}
	if reads == 0 {
		t.Error("no span for the read query")
	}
}
