package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// serve runs the admin server on a real loopback listener and returns its
// base URL; the server is shut down when the test ends.
func serve(t *testing.T, reg *prometheus.Registry, ready ReadyFunc, log *slog.Logger, checks ...Check) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(reg, ready, log, checks...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func alwaysReady(context.Context) error { return nil }

func get(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// probe reads a /healthz or /readyz answer, checking it is the JSON status
// document a probe must not cache.
func probe(t *testing.T, url string) (int, status) {
	t.Helper()
	resp, body := get(t, http.MethodGet, url)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", url, ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", url, cc)
	}
	var s status
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("%s: body %q is not a status document: %v", url, body, err)
	}
	return resp.StatusCode, s
}

func TestHealthzAnswersOK(t *testing.T) {
	t.Parallel()
	notReady := func(context.Context) error { return errors.New("nats not connected") }
	base := serve(t, NewRegistry(), notReady, discard())

	// Alive even when not ready: a failing dependency must not get the
	// process restarted.
	code, s := probe(t, base+"/healthz")
	if code != http.StatusOK || !reflect.DeepEqual(s, status{Status: "ok"}) {
		t.Errorf("/healthz = %d %+v, want 200 {ok}", code, s)
	}
}

func TestReadyzFollowsTheReadinessFunction(t *testing.T) {
	t.Parallel()
	var missing atomic.Pointer[error]
	ready := func(context.Context) error {
		if p := missing.Load(); p != nil {
			return *p
		}
		return nil
	}
	base := serve(t, NewRegistry(), ready, discard())

	for _, tt := range []struct {
		name     string
		err      error
		wantCode int
		want     status
	}{
		{"ready", nil, http.StatusOK, status{Status: "ready"}},
		{"nats down", errors.New("nats not connected"), http.StatusServiceUnavailable, status{Status: "unavailable", Reason: "nats not connected"}},
		{"draining", errors.New("shutting down"), http.StatusServiceUnavailable, status{Status: "unavailable", Reason: "shutting down"}},
		{"ready again", nil, http.StatusOK, status{Status: "ready"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				missing.Store(nil)
			} else {
				missing.Store(&tt.err)
			}
			code, s := probe(t, base+"/readyz")
			if code != tt.wantCode || !reflect.DeepEqual(s, tt.want) {
				t.Errorf("/readyz = %d %+v, want %d %+v", code, s, tt.wantCode, tt.want)
			}
		})
	}
}

func TestReadyzBoundsTheCheck(t *testing.T) {
	t.Parallel()
	deadlines := make(chan time.Duration, 1)
	ready := func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok {
			deadlines <- -1
			return nil
		}
		deadlines <- time.Until(d)
		return nil
	}
	base := serve(t, NewRegistry(), ready, discard())
	if code, _ := probe(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d", code)
	}
	if left := <-deadlines; left <= 0 || left > readyTimeout {
		t.Errorf("the readiness check got %s to answer, want a deadline within %s", left, readyTimeout)
	}
}

func TestMetricsExposesRuntimeProcessAndOwnInstruments(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	base := serve(t, reg, alwaysReady, discard())

	resp, body := get(t, http.MethodGet, base+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	for _, want := range []string{
		"go_goroutines ", "go_memstats_alloc_bytes ", // Go collector
		"process_resident_memory_bytes ", "process_open_fds ", // process collector
		"test_things_total 3",
		"promhttp_metric_handler_errors_total", // the handler's own failures
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestScrapeErrorsGoToTheErrorLog(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	reg.MustRegister(broken{})
	logs := &testenv.LogBuffer{}
	base := serve(t, reg, alwaysReady, slog.New(slog.NewJSONHandler(logs, nil)))

	if resp, _ := get(t, http.MethodGet, base+"/metrics"); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("/metrics with a failing collector = %d, want 500", resp.StatusCode)
	}
	if l := logs.String(); !strings.Contains(l, `"level":"WARN"`) || !strings.Contains(l, "collector broke") {
		t.Errorf("the scrape error was not logged at warning level: %q", l)
	}
}

// broken is a collector whose every scrape fails.
type broken struct{}

var brokenDesc = prometheus.NewDesc("test_broken", "Never collected.", nil, nil)

func (broken) Describe(ch chan<- *prometheus.Desc) { ch <- brokenDesc }
func (broken) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(brokenDesc, errors.New("collector broke"))
}

func TestOnlyTheAdminRoutesAnswer(t *testing.T) {
	t.Parallel()
	base := serve(t, NewRegistry(), alwaysReady, discard())
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/nothing", http.StatusNotFound},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
		{http.MethodPost, "/readyz", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodHead, "/healthz", http.StatusOK},
	} {
		if resp, _ := get(t, tt.method, base+tt.path); resp.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

func TestServerHasTimeoutsAndAnErrorLog(t *testing.T) {
	t.Parallel()
	srv := NewServer(NewRegistry(), alwaysReady, discard())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s unset: a slow client could hold a connection forever", name)
		}
	}
	if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes = %d, want a bound below the default 1 MiB", srv.MaxHeaderBytes)
	}
	// A check that uses its whole allowance must still get its 503 written.
	if srv.WriteTimeout <= readyTimeout {
		t.Errorf("WriteTimeout %s does not cover the readiness timeout %s", srv.WriteTimeout, readyTimeout)
	}
	if srv.ErrorLog == nil {
		t.Error("no ErrorLog: server errors would go to the standard logger")
	}
}

func TestReadyzReportsNamedChecks(t *testing.T) {
	t.Parallel()
	var natsDown, dbDown atomic.Bool
	probeOf := func(down *atomic.Bool, reason string) ReadyFunc {
		return func(context.Context) error {
			if down.Load() {
				return errors.New(reason)
			}
			return nil
		}
	}
	base := serve(t, NewRegistry(), nil, discard(),
		Check{Name: "nats", Probe: probeOf(&natsDown, "nats not connected")},
		Check{Name: "database", Probe: probeOf(&dbDown, "database not reachable"), Optional: true})
	for _, tt := range []struct {
		name       string
		nats, db   bool // down
		wantCode   int
		wantStatus status
	}{
		{"all up", false, false, http.StatusOK,
			status{Status: "ready", Checks: map[string]string{"nats": "ok", "database": "ok"}}},
		// An optional dependency is reported but does not take the binary
		// out of rotation.
		{"optional down", false, true, http.StatusOK,
			status{Status: "ready", Checks: map[string]string{"nats": "ok", "database": "unavailable: database not reachable"}}},
		{"required down", true, false, http.StatusServiceUnavailable,
			status{Status: "unavailable", Reason: "nats not connected", Checks: map[string]string{"nats": "unavailable: nats not connected", "database": "ok"}}},
		{"both down", true, true, http.StatusServiceUnavailable,
			status{Status: "unavailable", Reason: "nats not connected",
				Checks: map[string]string{"nats": "unavailable: nats not connected", "database": "unavailable: database not reachable"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			natsDown.Store(tt.nats)
			dbDown.Store(tt.db)
			code, s := probe(t, base+"/readyz")
			if code != tt.wantCode || !reflect.DeepEqual(s, tt.wantStatus) {
				t.Errorf("/readyz = %d %+v, want %d %+v", code, s, tt.wantCode, tt.wantStatus)
			}
		})
	}
}

func TestReadyzOverallCheckComesFirst(t *testing.T) {
	t.Parallel()
	draining := func(context.Context) error { return errors.New("shutting down") }
	base := serve(t, NewRegistry(), draining, discard(),
		Check{Name: "nats", Probe: func(context.Context) error { return errors.New("nats not connected") }})
	code, s := probe(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || s.Reason != "shutting down" || s.Checks["nats"] != "unavailable: nats not connected" {
		t.Errorf("/readyz = %d %+v, want 503 shutting down with the nats check listed", code, s)
	}
}
