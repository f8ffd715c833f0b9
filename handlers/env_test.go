package handlers

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

const (
	ingestSecret = "phone-secret-0123456789"
	readSecret   = "reader-secret-0123456789"
)

// testConfig is a valid API configuration with an ingest key ("phone") and
// a read-only key ("reader"), rate limiting off.
func testConfig() config.API {
	top := messaging.DefaultTopology()
	top.MaxBytes = 256 << 20
	return config.API{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", NATSURL: "nats://unused",
		APIKeys: []config.APIKey{
			config.NewAPIKey("phone", ingestSecret, config.ScopeIngest),
			config.NewAPIKey("reader", readSecret, config.ScopeRead),
		},
		RateLimitBurst:  1,
		MaxTrackedIPs:   1000,
		ReadTimeout:     time.Minute,
		PublishTimeout:  2 * time.Second,
		RequestTimeout:  4 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		Limits:          models.DefaultLimits(),
		Topology:        top,
	}
}

// stack is the handler under test in front of a real embedded NATS server.
type stack struct {
	t    testing.TB
	nats *testenv.NATSServer
	nc   *nats.Conn
	js   jetstream.JetStream
	srv  *httptest.Server
	h    http.Handler
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
	cfg  config.API
}

func newStack(t testing.TB, mutate func(*config.API)) *stack {
	t.Helper()
	return newStackWith(t, mutate, Backends{})
}

// newStackWith is newStack with read backends (b's Publisher is set here).
func newStackWith(t testing.TB, mutate func(*config.API), b Backends) *stack {
	t.Helper()
	return newStackWrapped(t, mutate, b, nil)
}

// newStackWrapped is newStackWith whose handlers publish through
// wrap(the real publisher) when wrap is not nil.
func newStackWrapped(t testing.TB, mutate func(*config.API), b Backends, wrap func(publisher) publisher) *stack {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	ns := testenv.NATS(t)
	ctx := context.Background()
	nc, js := testenv.JetStream(t, ns.URL)
	if err := messaging.EnsureTopology(ctx, js, cfg.Topology); err != nil {
		t.Fatal(err)
	}
	pub, err := messaging.NewPublisher(ctx, js, cfg.PublishTimeout)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &testenv.LogBuffer{}
	b.Publisher = pub
	if wrap != nil {
		b.Publisher = wrap(pub)
	}
	h, err := New(cfg, b, reg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: cfg.LogLevel})))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// Every exchange of s.do is checked against the OpenAPI document.
	srv.Client().Transport = openapitest.Transport(t, srv.Client().Transport)
	return &stack{t: t, nats: ns, nc: nc, js: js, srv: srv, h: h, reg: reg, logs: logs, cfg: cfg}
}

// do sends a request with the ingest key unless headers say otherwise
// (an "X-API-Key" of "" removes it).
func (s *stack) do(method, path, contentType string, body io.Reader, headers ...string) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("X-API-Key", ingestSecret)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	if headers := req.Header.Values("X-API-Key"); len(headers) > 1 {
		req.Header.Set("X-API-Key", headers[len(headers)-1])
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (s *stack) postJSON(path, body string, headers ...string) *http.Response {
	s.t.Helper()
	return s.do(http.MethodPost, path, "application/json", strings.NewReader(body), headers...)
}

// msgCount is the number of messages in TELEMETRY.
func (s *stack) msgCount() uint64 {
	s.t.Helper()
	st, err := s.js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

// lastMsg reads back the newest message on t's subject.
func (s *stack) lastMsg(t models.Type) *jetstream.RawStreamMsg {
	s.t.Helper()
	st, err := s.js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), t.Subject())
	if err != nil {
		s.t.Fatalf("reading back %s: %v", t.Subject(), err)
	}
	return m
}

func decodeBody[T any](t testing.TB, resp *http.Response) T {
	t.Helper()
	var v T
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return v
}

func wantStatus(t testing.TB, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, want, b)
	}
}
