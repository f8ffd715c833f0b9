package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

const secret = "api-test-secret-0123456789"

func testConfig(natsURL string) config.API {
	top := messaging.DefaultTopology()
	top.MaxBytes = 64 << 20
	return config.API{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		NATSURL: natsURL, NATSConnectWait: 5 * time.Second,
		APIKeys:         []config.APIKey{config.NewAPIKey("phone", secret, config.ScopeIngest)},
		RateLimitRPS:    1000,
		RateLimitBurst:  1000,
		MaxTrackedIPs:   1000,
		ReadTimeout:     time.Minute,
		PublishTimeout:  time.Second,
		RequestTimeout:  2 * time.Second,
		ShutdownTimeout: 10 * time.Second,
		Limits:          models.DefaultLimits(),
		Topology:        top,
	}
}

// running is an API served in the background by the test.
type running struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg config.API, before ...func(*Server)) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return r
}

// stop cancels the server's context and returns what Serve returned.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
		return nil
	}
}

func post(t *testing.T, addr, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", secret)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := openapitest.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := openapitest.Client(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gpsBody() string {
	return fmt.Sprintf(`{"device_id":"d","timestamp":%d,"latitude":-23.5,"longitude":-46.6}`, time.Now().Unix())
}

func jsFor(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := testenv.JetStream(t, url)
	return js
}

func TestServeEndToEnd(t *testing.T) {
	ns := testenv.NATS(t)
	r := start(t, testConfig(ns.URL))

	resp, body := post(t, r.Addr(), "/telemetry/gps", gpsBody())
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var acc struct{ ID, Status string }
	if err := json.Unmarshal([]byte(body), &acc); err != nil || acc.Status != "accepted" {
		t.Fatalf("body %s", body)
	}
	st, err := jsFor(t, ns.URL).Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(context.Background(), models.TypeGPS.Subject())
	if err != nil {
		t.Fatal(err)
	}
	v, err := models.Unmarshal(models.TypeGPS, msg.Data, models.DefaultLimits())
	if err != nil || v.(*models.GPS).MessageID.String() != acc.ID || v.(*models.GPS).Latitude != -23.5 {
		t.Fatalf("message %s: %v", msg.Data, err)
	}
	if resp, _ := post(t, r.Addr(), "/telemetry/gps", gpsBody(), "X-API-Key", "wrong-wrong-wrong-wrong"); resp.StatusCode != 401 {
		t.Errorf("wrong key: %d", resp.StatusCode)
	}

	admin := "http://" + r.AdminAddr()
	if code, body := get(t, admin+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz %d %s", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz %d %s", code, body)
	}
	code, metrics := get(t, admin+"/metrics")
	for _, want := range []string{
		`api_http_requests_total{method="POST",route="POST /telemetry/gps",status="202"} 1`,
		`api_http_requests_total{method="POST",route="POST /telemetry/gps",status="401"} 1`,
		`api_auth_failures_total{reason="invalid"} 1`,
		`api_publish_duration_seconds_count{outcome="ok",type="gps"} 1`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if code, _ := get(t, "http://"+r.Addr()+"/metrics"); code != http.StatusUnauthorized {
		t.Errorf("/metrics must not be served on the public listener (got %d)", code)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Error("the public listener still accepts after shutdown")
	}
}

func TestNATSDownAnswers503WithinPublishTimeout(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := testConfig(ns.URL)
	r := start(t, cfg)
	admin := "http://" + r.AdminAddr()

	ns.Stop()
	slack := 500 * time.Millisecond
	for _, key := range []string{"", "retry-me"} {
		begin := time.Now()
		resp, body := post(t, r.Addr(), "/telemetry/gps", gpsBody(), "Idempotency-Key", key)
		took := time.Since(begin)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("key %q: status %d, Retry-After %q: %s", key, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if took > cfg.PublishTimeout+slack {
			t.Errorf("key %q: 503 after %s, want within the publish timeout %s", key, took, cfg.PublishTimeout)
		}
		if strings.Contains(body, "127.0.0.1") || strings.Contains(body, "nats:") {
			t.Errorf("503 body leaks internals: %s", body)
		}
	}
	if code, body := get(t, admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with NATS down: %d %s", code, body)
	}
	if code, _ := get(t, admin+"/healthz"); code != 200 {
		t.Errorf("/healthz must stay 200 (the process is alive): %d", code)
	}

	ns.Restart(t)
	waitFor(t, 10*time.Second, "readyz after NATS restart", func() bool {
		code, _ := get(t, admin+"/readyz")
		return code == 200
	})
	resp, body := post(t, r.Addr(), "/telemetry/gps", gpsBody(), "Idempotency-Key", "retry-me")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
}

// TestUnresponsiveNATSAnswers503AtThePublishTimeout covers the case a
// closed socket does not: NATS is reachable but silent (a partition, a
// stalled server). The request must still end with a 503 at the deadline.
func TestUnresponsiveNATSAnswers503AtThePublishTimeout(t *testing.T) {
	ns := testenv.NATS(t)
	px := newFreezableProxy(t, strings.TrimPrefix(ns.URL, "nats://"))
	cfg := testConfig("nats://" + px.addr())
	r := start(t, cfg)
	if resp, body := post(t, r.Addr(), "/telemetry/gps", gpsBody()); resp.StatusCode != 202 {
		t.Fatalf("through the proxy: %d %s", resp.StatusCode, body)
	}

	px.freeze()
	begin := time.Now()
	resp, body := post(t, r.Addr(), "/telemetry/gps", gpsBody())
	took := time.Since(begin)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if took < cfg.PublishTimeout-100*time.Millisecond || took > cfg.PublishTimeout+time.Second {
		t.Errorf("503 after %s, want about the publish timeout %s", took, cfg.PublishTimeout)
	}
	if code, _ := get(t, "http://"+r.AdminAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a silent NATS: %d", code)
	}
	px.thaw()
}

func TestGracefulShutdownFinishesInFlightRequest(t *testing.T) {
	ns := testenv.NATS(t)
	active := make(chan struct{}, 1)
	r := start(t, testConfig(ns.URL), func(s *Server) {
		s.public.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateActive {
				select {
				case active <- struct{}{}:
				default:
				}
			}
		}
	})

	// A slow upload: headers and half the body now, the rest after the
	// shutdown has begun.
	body := gpsBody()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://"+r.Addr()+"/telemetry/gps", pr)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", secret)
	req.ContentLength = int64(len(body))
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := openapitest.Client(t).Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	if _, err := pw.Write([]byte(body[:10])); err != nil {
		t.Fatal(err)
	}
	select { // the server is now reading the request
	case <-active:
	case <-time.After(5 * time.Second):
		t.Fatal("the request never reached the server")
	}

	r.cancel()
	waitFor(t, 5*time.Second, "readyz to report the drain", func() bool {
		code, b := get(t, "http://"+r.AdminAddr()+"/readyz")
		return code == 503 && strings.Contains(b, "shutting down")
	})
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Error("new connections are still accepted during the shutdown")
	}
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	default:
	}

	if _, err := pw.Write([]byte(body[10:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	got := <-res
	if got.err != nil || got.code != http.StatusAccepted {
		t.Fatalf("in-flight request: %d %s %v", got.code, got.body, got.err)
	}
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last request")
	}
	st, err := jsFor(t, ns.URL).Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream after shutdown: %+v %v", info.State, err)
	}
}

func TestNewRefusesSmallMaxPayload(t *testing.T) {
	ns := testenv.NATSWith(t, func(o *server.Options) { o.MaxPayload = 1 << 20 })
	_, err := New(context.Background(), testConfig(ns.URL), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := testConfig("nats://127.0.0.1:1")
	cfg.APIKeys = nil
	if _, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "API_KEYS") {
		t.Fatalf("err = %v", err)
	}
}

func TestServerTimeouts(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := testConfig(ns.URL)
	s, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	for _, srv := range []*http.Server{s.public, s.admin} {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= srv.ReadTimeout || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
			t.Errorf("timeouts %+v", srv)
		}
	}
	if s.public.ReadTimeout != cfg.ReadTimeout {
		t.Errorf("ReadTimeout %s", s.public.ReadTimeout)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freezableProxy forwards TCP to a target; frozen, it stops moving bytes
// without closing anything, like a partitioned network.
type freezableProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
}

func newFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezableProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		p.thaw()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, c, up)
			connsMu.Unlock()
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
	return p
}

func (p *freezableProxy) addr() string { return p.ln.Addr().String() }

func (p *freezableProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.frozen {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				dst.Close()
			}
			return
		}
	}
}

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

func (p *freezableProxy) thaw() {
	p.mu.Lock()
	p.frozen = false
	p.cond.Broadcast()
	p.mu.Unlock()
}
