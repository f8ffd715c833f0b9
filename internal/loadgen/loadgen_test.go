package loadgen

import (
	"bytes"
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// serve starts a real HTTP server on loopback that answers with h.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// indexed is a Source whose request i carries i in a header and its body.
func indexed(readings int) Source {
	return func(i int64) Request {
		return Request{
			Path:     "/telemetry/gps",
			Header:   http.Header{"X-Index": {strconv.FormatInt(i, 10)}},
			Body:     strconv.AppendInt(nil, i, 10),
			Readings: readings,
		}
	}
}

func run(t *testing.T, cfg Config) Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := res.Latency.Count(); n != res.OK {
		t.Errorf("latency histogram holds %d answers, OK is %d", n, res.OK)
	}
	var answered, failed int64
	for _, n := range res.Status {
		answered += n
	}
	for _, n := range res.Errors {
		failed += n
	}
	if answered+failed != res.Sent {
		t.Errorf("statuses %d + errors %d != sent %d", answered, failed, res.Sent)
	}
	return res
}

func TestClosedLoopCounts(t *testing.T) {
	var hits atomic.Int64
	var mu sync.Mutex
	seen := map[string]int{}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/telemetry/gps" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		mu.Lock()
		seen[r.Header.Get("X-Index")]++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"` + r.Header.Get("X-Index") + `"}`))
	})
	var ids sync.Map
	res := run(t, Config{
		BaseURL: srv.URL + "/", Concurrency: 8, N: 500, Source: indexed(3),
		OnResponse: func(req Request, status int, body []byte, due time.Time) {
			if _, dup := ids.LoadOrStore(string(body), status); dup || due.IsZero() {
				t.Errorf("answer %s again or without a time", body)
			}
		},
	})
	if res.Sent != 500 || res.OK != 500 || res.Readings != 1500 || !maps.Equal(res.Status, map[int]int64{202: 500}) ||
		len(res.Errors) != 0 || res.Dropped != 0 || res.Cancelled != 0 || hits.Load() != 500 {
		t.Errorf("result %+v, server hits %d", res, hits.Load())
	}
	for i := range 500 {
		if seen[strconv.Itoa(i)] != 1 {
			t.Fatalf("request %d sent %d times", i, seen[strconv.Itoa(i)])
		}
	}
	n := 0
	ids.Range(func(any, any) bool { n++; return true })
	if n != 500 {
		t.Errorf("OnResponse saw %d distinct answers, want 500", n)
	}
	if res.Elapsed <= 0 || res.RequestsPerSecond() <= 0 || math.Abs(res.ReadingsPerSecond()-3*res.RequestsPerSecond()) > 1e-6*res.ReadingsPerSecond() {
		t.Errorf("elapsed %s, %.0f req/s, %.0f readings/s", res.Elapsed, res.RequestsPerSecond(), res.ReadingsPerSecond())
	}
}

// Only 2xx is success: other statuses, answers cut off mid-body and refused
// connections are counted, each in its own place, never in OK, Readings or
// Latency.
func TestFailuresNeverCountAsOK(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.Header.Get("X-Index"))
		switch i % 5 {
		case 0:
			w.WriteHeader(http.StatusAccepted)
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Location", "/elsewhere") // reported, never followed
			w.WriteHeader(http.StatusFound)
		case 3: // the connection dies before any answer
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case 4: // the answer promises 100 bytes and stops after 5
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte("short"))
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}
	})
	res := run(t, Config{BaseURL: srv.URL, Concurrency: 4, N: 100, Source: indexed(10)})
	var failed int64
	for _, n := range res.Errors {
		failed += n
	}
	if res.Sent != 100 || res.OK != 20 || res.Readings != 200 || res.Failed() != 80 || failed != 40 || res.Errors["eof"] != 40 ||
		!maps.Equal(res.Status, map[int]int64{202: 20, 503: 20, 302: 20}) {
		t.Errorf("result %+v", res)
	}
	for class := range res.Errors {
		if res.ErrorSamples[class] == "" {
			t.Errorf("no sample message for %q", class)
		}
	}

	srv.Close() // nothing listens any more
	res = run(t, Config{BaseURL: srv.URL, Concurrency: 2, N: 10, Source: indexed(1)})
	if res.Sent != 10 || res.OK != 0 || res.Readings != 0 || res.Errors["refused"] != 10 {
		t.Errorf("refused: result %+v", res)
	}
}

func TestOpenLoopPacing(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	var mu sync.Mutex
	due := map[int64]time.Time{}
	res := run(t, Config{
		BaseURL: srv.URL, Concurrency: 50, Rate: 500, N: 200, Source: indexed(1),
		OnResponse: func(req Request, _ int, _ []byte, d time.Time) {
			i, _ := strconv.ParseInt(string(req.Body), 10, 64)
			mu.Lock()
			due[i] = d
			mu.Unlock()
		},
	})
	if res.Sent+res.Dropped != 200 || res.Status[202] != res.Sent {
		t.Errorf("result %+v", res)
	}
	// 200 arrivals at 500/s take 398 ms however fast the server is.
	if res.Elapsed < 390*time.Millisecond || res.Elapsed > 10*time.Second {
		t.Errorf("elapsed %s for 200 arrivals at 500/s", res.Elapsed)
	}
	// Arrival i is due i × 2 ms after arrival 0.
	for i, d := range due {
		if off := d.Sub(due[0]) - time.Duration(i)*2*time.Millisecond; off < -time.Microsecond || off > time.Microsecond {
			t.Errorf("arrival %d due %s after arrival 0", i, d.Sub(due[0]))
		}
	}

	// A time bound: arrivals due in the first 300 ms at 100/s are 30.
	res = run(t, Config{BaseURL: srv.URL, Concurrency: 20, Rate: 100, Duration: 300 * time.Millisecond, Source: indexed(1)})
	if res.Sent+res.Dropped+res.Cancelled != 30 {
		t.Errorf("300 ms at 100/s: result %+v", res)
	}
}

// An arrival that finds every one of the Concurrency slots busy is dropped
// and counted, never queued; the server never sees more than Concurrency.
func TestOpenLoopDrops(t *testing.T) {
	release := make(chan struct{})
	var inFlight, peak atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		inFlight.Add(-1)
		w.WriteHeader(http.StatusAccepted)
	})
	// The 50 arrivals are due within 0.5 ms; the server holds the first
	// two for a whole second.
	time.AfterFunc(time.Second, func() { close(release) })
	res := run(t, Config{BaseURL: srv.URL, Concurrency: 2, Rate: 100_000, N: 50, Source: indexed(1)})
	if res.Sent+res.Dropped != 50 || res.Sent < 2 || res.Dropped < 40 || res.OK != res.Sent || peak.Load() > 2 {
		t.Errorf("result %+v, server peak in flight %d", res, peak.Load())
	}
}

// Open-loop latency runs from the time a request was due: the wait in a
// slow server's queue and any delay before the request could be sent count.
func TestOpenLoopLatencyFromDueTime(t *testing.T) {
	var mu sync.Mutex
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock() // one request at a time, 50 ms each
		time.Sleep(50 * time.Millisecond)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	// 10 arrivals due within 90 ms; the last one served ends ≥ 500 ms after the
	// first was due, so its latency is ≥ 410 ms.
	res := run(t, Config{BaseURL: srv.URL, Concurrency: 10, Rate: 100, N: 10, Source: indexed(1)})
	if res.OK != 10 || res.Latency.Min() < 50*time.Millisecond || res.Latency.Max() < 410*time.Millisecond {
		t.Errorf("result %+v, latency min %s max %s", res, res.Latency.Min(), res.Latency.Max())
	}

	// A request that could only be built 30 ms after it was due is 30 ms late
	// on a fast server: measured from its sending it would be ~0.
	fast := serve(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	slowSource := func(i int64) Request { time.Sleep(30 * time.Millisecond); return indexed(1)(i) }
	res = run(t, Config{BaseURL: fast.URL, Concurrency: 10, Rate: 1000, N: 10, Source: slowSource})
	if res.OK != 10 || res.Latency.Min() < 30*time.Millisecond {
		t.Errorf("result %+v, latency min %s", res, res.Latency.Min())
	}
}

func TestWarmupAndProgress(t *testing.T) {
	var hits atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1); w.WriteHeader(http.StatusAccepted) })
	header := http.Header{"X-Api-Key": {"k"}}
	var progress bytes.Buffer
	res := run(t, Config{
		BaseURL: srv.URL, Concurrency: 4, Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond,
		Progress: &syncWriter{w: &progress}, ProgressEvery: 20 * time.Millisecond,
		Source: func(int64) Request { return Request{Path: "/x", Header: header} },
	})
	if res.Sent == 0 || res.Sent >= hits.Load() || res.OK != res.Sent {
		t.Errorf("sent %d of %d hits: warm-up requests must be sent but not recorded", res.Sent, hits.Load())
	}
	if res.Elapsed < 300*time.Millisecond || res.Elapsed > 10*time.Second {
		t.Errorf("elapsed %s, want the 300 ms after warm-up", res.Elapsed)
	}
	if len(header) != 1 || header.Get("X-Api-Key") != "k" {
		t.Errorf("shared header changed: %v", header)
	}
	if out := progress.String(); !strings.Contains(out, "warm-up] sent 0") || !strings.Contains(out, "s] sent ") {
		t.Errorf("progress:\n%s", out)
	}
}

// syncWriter serialises writes for a bytes.Buffer read after the run.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// A request cut off (by ctx, or by DrainTimeout after the bound) is neither
// a success nor a failure, and the run ends on time.
func TestCancelled(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	res, err := Run(ctx, Config{BaseURL: srv.URL, Concurrency: 3, N: 1000, Source: indexed(1)})
	if err != nil || res.Cancelled != 3 || res.Sent != 0 || time.Since(begin) > 10*time.Second {
		t.Errorf("ctx: err %v, result %+v after %s", err, res, time.Since(begin))
	}
	res = run(t, Config{BaseURL: srv.URL, Concurrency: 3, Duration: 50 * time.Millisecond, DrainTimeout: 50 * time.Millisecond, Source: indexed(1)})
	if res.Cancelled != 3 || res.Sent != 0 {
		t.Errorf("drain: result %+v", res)
	}
}

func TestConfigRefused(t *testing.T) {
	ok := Config{BaseURL: "http://127.0.0.1:1", Concurrency: 1, N: 1, Source: indexed(1)}
	for name, mutate := range map[string]func(*Config){
		"remote host":       func(c *Config) { c.BaseURL = "http://192.0.2.1:8080" },
		"remote name":       func(c *Config) { c.BaseURL = "http://example.com" },
		"loopback-ish name": func(c *Config) { c.BaseURL = "http://127.0.0.1.nip.io" },
		"not http":          func(c *Config) { c.BaseURL = "ftp://127.0.0.1" },
		"no scheme":         func(c *Config) { c.BaseURL = "127.0.0.1:8080" },
		"unbounded":         func(c *Config) { c.N = 0 },
		"no workers":        func(c *Config) { c.Concurrency = 0 },
		"negative rate":     func(c *Config) { c.Rate = -1 },
		"no source":         func(c *Config) { c.Source = nil },
		"negative warm-up":  func(c *Config) { c.Warmup = -time.Second },
	} {
		cfg := ok
		mutate(&cfg)
		if _, err := Run(context.Background(), cfg); !ierr.Is(err, ierr.Invalid) {
			t.Errorf("%s: err %v, want an Invalid error", name, err)
		}
	}
	for raw, allowed := range map[string]bool{
		"http://127.0.0.1:8080": true, "http://[::1]:8080": true, "https://localhost:8443": true, "http://127.8.9.10": true,
		"http://10.0.0.1:8080": false, "http://example.com": false,
	} {
		if _, err := CheckTarget(raw, false); (err == nil) != allowed {
			t.Errorf("CheckTarget(%q) = %v, want allowed=%v", raw, err, allowed)
		}
		if _, err := CheckTarget(raw, true); err != nil {
			t.Errorf("CheckTarget(%q, allowRemote) = %v", raw, err)
		}
	}
}

// Labelled requests are also counted per label; unlabelled ones only overall.
func TestByLabel(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refused" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	res := run(t, Config{BaseURL: srv.URL, Concurrency: 4, N: 90, Source: func(i int64) Request {
		switch i % 3 {
		case 0:
			return Request{Path: "/ok", Label: "batch", Readings: 10}
		case 1:
			return Request{Path: "/refused", Label: "photo"}
		}
		return Request{Path: "/ok"}
	}})
	batch, photo := res.ByLabel["batch"], res.ByLabel["photo"]
	if len(res.ByLabel) != 2 || res.OK != 60 || res.Readings != 330 ||
		batch.Sent != 30 || batch.OK != 30 || batch.Readings != 300 || batch.Latency.Count() != 30 || !maps.Equal(batch.Status, map[int]int64{202: 30}) ||
		photo.Sent != 30 || photo.OK != 0 || photo.Latency.Count() != 0 || !maps.Equal(photo.Status, map[int]int64{503: 30}) ||
		batch.Elapsed != res.Elapsed || batch.RequestsPerSecond() <= 0 {
		t.Errorf("result %+v\nbatch %+v\nphoto %+v", res, batch, photo)
	}
}
