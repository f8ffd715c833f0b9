package messaging_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// publishTraced publishes a GPS message under a publish span, as the API
// does, and returns that span's context.
func publishTraced(t *testing.T, js jetstream.JetStream, msgID, data string) trace.SpanContext {
	t.Helper()
	ctx, span := tracing.StartPublish(context.Background(), models.TypeGPS.Subject(), msgID)
	defer span.End()
	hdr := tracing.Inject(ctx, nats.Header{jetstream.MsgIDHeader: []string{msgID}})
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: models.TypeGPS.Subject(), Header: hdr, Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
	return span.SpanContext()
}

func deadLetterSpans(rec *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tracingtest.InTrace(rec, id) {
		if s.Name() == "dead-letter "+messaging.DLQSubject(models.TypeGPS) {
			out = append(out, s)
		}
	}
	return out
}

// Dead-lettering is a producer span in the trace of the request that sent
// the reading: a child of the worker's processing span when there is one,
// else of the trace context the message carries (an advisory settling a
// message no worker holds). The dead letter keeps that context, so a replay
// joins the trace again. (Not parallel: it installs the process's tracer
// provider.)
func TestDeadLetterSpans(t *testing.T) {
	rec := tracingtest.Record(t)
	topo := exhaustTopology()
	_, _, js := setup(t, topo)
	d := newDLQ(t, js)

	// In the worker: the process span is the parent.
	pub := publishTraced(t, js, "gps-1", "not json")
	msg := fetchOne(t, js, models.TypeGPS)
	ctx, proc := tracing.StartProcess(context.Background(), msg.Subject(), msg.Headers(), 1, 1, time.Time{})
	if err := d.DeadLetter(ctx, models.TypeGPS, msg, "invalid JSON"); err != nil {
		t.Fatal(err)
	}
	proc.End()
	spans := deadLetterSpans(rec, pub.TraceID())
	if len(spans) != 1 || spans[0].Parent().SpanID() != proc.SpanContext().SpanID() ||
		spans[0].SpanKind() != trace.SpanKindProducer || spans[0].Status().Code == codes.Error ||
		tracingtest.Attr(spans[0], "telemetry.dead_letter.reason") != "invalid JSON" {
		t.Fatalf("dead-letter spans of the reading's trace: %v", spans)
	}
	dl := dlqMessages(t, js)
	if len(dl) != 1 || tracing.Header(dl[0].Header).Get("traceparent") != tracing.Header(msg.Headers()).Get("traceparent") ||
		tracing.Header(dl[0].Header).Get("traceparent") == "" {
		t.Fatalf("the dead letter's trace context: %v, the original's %v", dl, msg.Headers())
	}

	// Exhausted with no worker holding it: the advisory's dead-lettering
	// continues the trace the message carries.
	pub = publishTraced(t, js, "gps-2", `{"n":2}`)
	runOutOfDeliveries(t, js, 1)
	finishRunningOut(t, js, 1)
	var (
		mu   sync.Mutex
		dead int
	)
	notStored := func(context.Context, models.Type, []byte) (bool, error) { return false, nil }
	cc, err := d.WatchExhausted(context.Background(), notStored, func(messaging.Exhausted) {
		mu.Lock()
		defer mu.Unlock()
		dead++
	}, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	waitFor(t, 10*time.Second, "the exhausted message dead-lettered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return dead == 1
	})
	spans = deadLetterSpans(rec, pub.TraceID())
	if len(spans) != 1 || spans[0].Parent().SpanID() != pub.SpanID() || !spans[0].Parent().IsRemote() {
		t.Fatalf("exhausted: dead-letter spans of the reading's trace: %v", spans)
	}
}

// Each publish is a producer span, a child of the caller's (the request's),
// whose context the message carries in its headers; a publish that fails
// is a failed span.
func TestPublishSpans(t *testing.T) {
	rec := tracingtest.Record(t)
	_, _, js := setup(t, messaging.DefaultTopology())
	p, err := messaging.NewPublisher(context.Background(), js, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, request := tracing.Start(context.Background(), "POST /telemetry/batch", trace.SpanKindServer)
	if err := p.Publish(ctx, models.TypeGPS.Subject(), "", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	errs := p.PublishAll(ctx, []messaging.Outgoing{
		{Subject: models.TypeGPS.Subject(), Data: []byte(`{"n":2}`)},
		{Subject: models.TypeGyroscope.Subject(), MsgID: "gyro-3", Data: []byte(`{"n":3}`)},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Publish(cancelled, models.TypeGPS.Subject(), "", []byte(`{"n":4}`)); err == nil {
		t.Fatal("a publish with a cancelled context succeeded")
	}
	request.End()

	sends := append(tracingtest.Named(rec, "send telemetry.gps"), tracingtest.Named(rec, "send telemetry.gyroscope")...)
	if len(sends) != 4 {
		t.Fatalf("%d publish spans, want 4", len(sends))
	}
	failed := 0
	for _, s := range sends {
		if s.Parent().SpanID() != request.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindProducer {
			t.Errorf("%s: parent %s, kind %v", s.Name(), s.Parent().SpanID(), s.SpanKind())
		}
		if s.Status().Code == codes.Error {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed publish spans, want 1", failed)
	}
	// The stored messages carry their own publish span's context.
	stream, err := js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, s := range sends {
		ids[s.SpanContext().SpanID().String()] = true
	}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		tp := tracing.Header(m.Header).Get("traceparent") // 00-<trace>-<span>-01
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != request.SpanContext().TraceID().String() || !ids[parts[2]] {
			t.Errorf("message %d: traceparent %q", seq, tp)
		}
		if seq == 3 && m.Header.Get(jetstream.MsgIDHeader) != "gyro-3" {
			t.Errorf("message 3 lost its Nats-Msg-Id: %v", m.Header)
		}
	}
}
