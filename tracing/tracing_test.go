package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/tracing"
)

func TestConfigURL(t *testing.T) {
	for _, tt := range []struct {
		cfg  tracing.Config
		want string
	}{
		{tracing.Config{}, ""},
		{tracing.Config{Endpoint: "http://collector:4318"}, "http://collector:4318/v1/traces"},
		{tracing.Config{Endpoint: "https://otlp.example/otlp/"}, "https://otlp.example/otlp/v1/traces"},
		{tracing.Config{Endpoint: "http://a:4318", TracesEndpoint: "http://b:4318/custom"}, "http://b:4318/custom"},
	} {
		if got := tt.cfg.URL(); got != tt.want || tt.cfg.Enabled() != (tt.want != "") {
			t.Errorf("%+v: URL %q, Enabled %v; want %q", tt.cfg, got, tt.cfg.Enabled(), tt.want)
		}
	}
}

// Without an endpoint Setup installs nothing: the helpers return the
// caller's context and a span that records nothing.
func TestSetupOffInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	shutdown, err := tracing.Setup(context.Background(), tracing.ServiceAPI, tracing.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != before || tracing.On() {
		t.Fatal("Setup without an endpoint installed a provider")
	}
	ctx := context.Background()
	got, span := tracing.StartPublish(ctx, "telemetry.gps", "id")
	if got != ctx || span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("tracing off: new context %v, recording %v", got != ctx, span.IsRecording())
	}
	if hdr := tracing.Inject(got, nil); hdr != nil {
		t.Errorf("tracing off: headers %v", hdr)
	}
	if err := shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// With an endpoint, spans reach it over OTLP/HTTP (protobuf, POST to
// /v1/traces) with the service name, at the latest when shutdown flushes.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	var (
		mu   sync.Mutex
		reqs []*coltracepb.ExportTraceServiceRequest
		errs []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			errs = append(errs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			errs = append(errs, err.Error())
		}
		reqs = append(reqs, &req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer collector.Close()

	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	var logs bytes.Buffer
	shutdown, err := tracing.Setup(context.Background(), tracing.ServiceWorker,
		tracing.Config{Endpoint: collector.URL}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !tracing.On() {
		t.Fatal("Setup with an endpoint did not install a provider")
	}
	_, span := tracing.StartDB(context.Background(), "INSERT", "gps", 1)
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 || len(reqs) == 0 {
		t.Fatalf("collector got %d requests, errors %v", len(reqs), errs)
	}
	var names, services []string
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.Resource.Attributes {
				if kv.Key == "service.name" {
					services = append(services, kv.Value.GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
	}
	if strings.Join(names, ",") != "INSERT gps" || strings.Join(services, ",") != tracing.ServiceWorker {
		t.Errorf("exported spans %v of services %v", names, services)
	}
	if !strings.Contains(logs.String(), "tracing on") {
		t.Errorf("no start-up line in the log:\n%s", logs.String())
	}
}

// The trace context written into a message's headers crosses a real NATS
// server and makes the consumer's span a child of the producer's.
func TestContextCrossesNATS(t *testing.T) {
	rec := tracingtest.Record(t)
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("telemetry.gps")
	if err != nil {
		t.Fatal(err)
	}

	pctx, pub := tracing.StartPublish(context.Background(), "telemetry.gps", "")
	m := &nats.Msg{Subject: "telemetry.gps", Data: []byte("{}")}
	m.Header = tracing.Inject(pctx, m.Header) // a message without headers gets them
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	pub.End()
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	received := time.Now().Add(-time.Second)
	_, proc := tracing.StartProcess(context.Background(), got.Subject, got.Header, 7, 2, received)
	tracing.SetMessageID(proc, "msg-1")
	proc.End()

	sends, procs := tracingtest.Named(rec, "send telemetry.gps"), tracingtest.Named(rec, "process telemetry.gps")
	if len(sends) != 1 || len(procs) != 1 {
		t.Fatalf("spans: %d send, %d process", len(sends), len(procs))
	}
	send, p := sends[0], procs[0]
	if p.Parent().SpanID() != send.SpanContext().SpanID() || p.SpanContext().TraceID() != send.SpanContext().TraceID() || !p.Parent().IsRemote() {
		t.Errorf("process span's parent %v, want the remote send span %v", p.Parent(), send.SpanContext())
	}
	if !p.StartTime().Equal(received) {
		t.Errorf("process span starts at %v, want when the message was received (%v)", p.StartTime(), received)
	}
	if send.SpanKind() != trace.SpanKindProducer || p.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds %v, %v", send.SpanKind(), p.SpanKind())
	}
	for key, want := range map[string]string{"messaging.message.id": "msg-1", "messaging.nats.stream_sequence": "7", "messaging.nats.delivered": "2", "messaging.system": "nats"} {
		if got := tracingtest.Attr(p, key); got != want {
			t.Errorf("process span %s = %q, want %q", key, got, want)
		}
	}
}

// A batch span is a child of the context it is given and links to every
// message's span.
func TestBatchLinksItsMessages(t *testing.T) {
	rec := tracingtest.Record(t)
	var msgs []trace.SpanContext
	var first context.Context
	for i := range 3 {
		ctx, span := tracing.StartProcess(context.Background(), "telemetry.gyroscope", nats.Header{}, uint64(i), 1, time.Time{})
		if i == 0 {
			first = ctx
		}
		msgs = append(msgs, span.SpanContext())
		defer span.End()
	}
	_, batch := tracing.StartBatch(first, "telemetry.gyroscope", msgs)
	batch.End()
	got := tracingtest.Named(rec, "batch telemetry.gyroscope")
	if len(got) != 1 {
		t.Fatalf("%d batch spans", len(got))
	}
	b := got[0]
	if b.Parent().SpanID() != msgs[0].SpanID() || b.SpanContext().TraceID() != msgs[0].TraceID() {
		t.Errorf("batch parent %v, want the first message's span %v", b.Parent(), msgs[0])
	}
	if len(b.Links()) != 3 {
		t.Fatalf("%d links", len(b.Links()))
	}
	for i, l := range b.Links() {
		if l.SpanContext.SpanID() != msgs[i].SpanID() {
			t.Errorf("link %d: %v, want %v", i, l.SpanContext, msgs[i])
		}
	}
	if n := tracingtest.Attr(b, "messaging.batch.message_count"); n != "3" {
		t.Errorf("message count %q", n)
	}
}

func TestEndMarksFailuresAndServerErrors(t *testing.T) {
	rec := tracingtest.Record(t)
	_, ok := tracing.StartRekognition(context.Background(), "IndexFaces")
	tracing.End(ok, nil)
	_, bad := tracing.StartRekognition(context.Background(), "SearchFacesByImage")
	tracing.End(bad, errors.New("throttled"))
	for status, want := range map[int]codes.Code{202: codes.Unset, 429: codes.Unset, 503: codes.Error} {
		_, s := tracing.StartServer(context.Background(), http.Header{}, "POST", "POST /telemetry/gps", "/telemetry/gps", false)
		tracing.EndServer(s, status, nil)
		spans := tracingtest.Named(rec, "POST /telemetry/gps")
		if got := spans[len(spans)-1]; got.Status().Code != want || tracingtest.Attr(got, "http.response.status_code") != strconv.Itoa(status) {
			t.Errorf("status %d: span status %v, attrs %v", status, got.Status(), got.Attributes())
		}
	}
	if s := tracingtest.Named(rec, "Rekognition.IndexFaces"); len(s) != 1 || s[0].Status().Code != codes.Unset {
		t.Errorf("IndexFaces: %v", s)
	}
	if s := tracingtest.Named(rec, "Rekognition.SearchFacesByImage"); len(s) != 1 || s[0].Status().Code != codes.Error || len(s[0].Events()) != 1 {
		t.Errorf("SearchFacesByImage: %v", s)
	}
}

// An incoming traceparent is continued from a trusted proxy; from anyone
// else the request gets a trace of its own that links to it.
func TestServerIncomingTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := http.Header{}
	h.Set("Traceparent", parent) // as net/http stores it
	for _, trusted := range []bool{true, false} {
		_, s := tracing.StartServer(context.Background(), h, "GET", "GET /devices", "/devices", trusted)
		s.End()
	}
	got := tracingtest.Named(rec, "GET /devices")
	if proxied := got[0]; proxied.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		proxied.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("trusted: span %v parent %v", proxied.SpanContext(), proxied.Parent())
	}
	if client := got[1]; client.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" || client.Parent().IsValid() ||
		len(client.Links()) != 1 || client.Links()[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("untrusted: span %v parent %v links %v", client.SpanContext(), client.Parent(), client.Links())
	}
}

func TestHeaderIgnoresCase(t *testing.T) {
	h := tracing.Header{"Traceparent": {"a"}}
	if h.Get("traceparent") != "a" {
		t.Error("Get is case-sensitive")
	}
	h.Set("traceparent", "b")
	if len(h) != 1 || h.Get("traceparent") != "b" {
		t.Errorf("after Set: %v", h)
	}
}

func TestContextWith(t *testing.T) {
	ctx := context.Background()
	_, off := tracing.Start(ctx, "op", trace.SpanKindInternal)
	if tracing.ContextWith(ctx, off) != ctx {
		t.Error("tracing off: ContextWith made a new context")
	}
	tracingtest.Record(t)
	_, on := tracing.Start(ctx, "op", trace.SpanKindInternal)
	defer on.End()
	if got := trace.SpanFromContext(tracing.ContextWith(ctx, on)); got != on {
		t.Errorf("ContextWith carries %v, want the span", got)
	}
}
