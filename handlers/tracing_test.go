package handlers

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/internal/tracingtest"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// tracedServer is the stack's handler built again with the binaries' log
// handler (tracing.LogHandler), in front of the same NATS; trustLoopback
// makes the test client a trusted proxy.
func tracedServer(t *testing.T, s *stack, trustLoopback bool) (*httptest.Server, *testenv.LogBuffer) {
	t.Helper()
	pub, err := messaging.NewPublisher(context.Background(), s.js, s.cfg.PublishTimeout)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	cfg := s.cfg
	if trustLoopback {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	h, err := New(cfg, Backends{Publisher: pub}, prometheus.NewRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, logs
}

// Every request is a server span named by its route pattern, with its
// status; the publish of its reading is its child, and the message carries
// the publish span's context; the access-log line carries the trace id; an
// incoming traceparent from a client starts a trace of its own linked to
// it. (Not parallel: it installs the process's tracer provider.)
func TestRequestSpans(t *testing.T) {
	rec := tracingtest.Record(t)
	s := newStack(t, nil)
	srv, logs := tracedServer(t, s, false)
	post := func(key string, hdr ...string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/telemetry/gps", strings.NewReader(gpsBody()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if post(ingestSecret) != 202 || post("wrong-key-0123456789") != 401 || post(ingestSecret, "traceparent", incoming) != 202 {
		t.Fatal("unexpected statuses")
	}

	servers := tracingtest.Named(rec, RouteGPS)
	sends := tracingtest.Named(rec, "send telemetry.gps")
	if len(servers) != 3 || len(sends) != 2 {
		t.Fatalf("%d request spans, %d publish spans; want 3 and 2", len(servers), len(sends))
	}
	for i, want := range []string{"202", "401", "202"} {
		sp := servers[i]
		if got := tracingtest.Attr(sp, "http.response.status_code"); got != want || sp.SpanKind() != trace.SpanKindServer ||
			sp.Status().Code == codes.Error || tracingtest.Attr(sp, "http.route") != RouteGPS {
			t.Errorf("request %d: status %s, kind %v, span status %v, attributes %v", i, got, sp.SpanKind(), sp.Status(), sp.Attributes())
		}
	}
	for i, parent := range []int{0, 2} {
		if sends[i].Parent().SpanID() != servers[parent].SpanContext().SpanID() {
			t.Errorf("publish %d's parent is not its request's span", i)
		}
	}
	if c := servers[2]; c.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" || c.Parent().IsValid() ||
		len(c.Links()) != 1 || c.Links()[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("a client's traceparent: span %v ← %v, links %v; want a new trace linked to it", c.SpanContext(), c.Parent(), c.Links())
	}

	// The stored message carries its publish span's context.
	stream, err := s.js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(context.Background(), "telemetry.gps")
	if err != nil {
		t.Fatal(err)
	}
	if tp := tracing.Header(m.Header).Get("traceparent"); !strings.Contains(tp, sends[1].SpanContext().SpanID().String()) {
		t.Errorf("message traceparent %q, want the publish span %s", tp, sends[1].SpanContext().SpanID())
	}

	// Each access-log line carries its request's trace id.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	seen := map[string]bool{}
	for _, l := range lines {
		var rec struct {
			Msg     string `json:"msg"`
			TraceID string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "http request" {
			seen[rec.TraceID] = true
		}
	}
	for i, sp := range servers {
		if !seen[sp.SpanContext().TraceID().String()] {
			t.Errorf("no access-log line with request %d's trace id %s:\n%s", i, sp.SpanContext().TraceID(), logs.String())
		}
	}
}

// BenchmarkGPSHandlerTracing is BenchmarkGPSHandler (the whole chain and a
// real publish to embedded NATS) with tracing off, as the API runs without
// OTEL_EXPORTER_OTLP_ENDPOINT, and on, with the SDK exporting to memory
// through a batch span processor. Run with -count to alternate the two.
func BenchmarkGPSHandlerTracing(b *testing.B) {
	s := newStack(b, nil)
	body := []byte(gpsBody())
	run := func(b *testing.B, reset func()) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/telemetry/gps", strings.NewReader(string(body)))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-API-Key", ingestSecret)
			w := httptest.NewRecorder()
			s.h.ServeHTTP(w, r)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if n++; n%1024 == 0 && reset != nil {
				reset()
			}
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil) })
	b.Run("on", func(b *testing.B) {
		exp := tracingtest.Export(b)
		run(b, exp.Reset)
	})
}

// A trusted proxy's traceparent (TRUSTED_PROXIES) is continued.
func TestRequestSpanContinuesProxyTrace(t *testing.T) {
	rec := tracingtest.Record(t)
	s := newStack(t, nil)
	srv, _ := tracedServer(t, s, true)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/telemetry/gps", strings.NewReader(gpsBody()))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", ingestSecret)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := tracingtest.Named(rec, RouteGPS)
	if len(spans) != 1 || spans[0].SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		spans[0].Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("request spans %v", spans)
	}
}
