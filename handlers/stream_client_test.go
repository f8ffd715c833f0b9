package handlers

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// streamServer is the stream route behind the real middleware chain, on a
// real HTTP server, fed by calling its hub as the api's NATS subscription
// does.
type streamServer struct {
	t    testing.TB
	hub  *Hub
	srv  *httptest.Server
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
}

type streamOptions struct {
	cfg         config.Stream
	replay      storedReplayer
	replayLimit int
	// serverTimeout is the server's ReadTimeout and WriteTimeout (0: none).
	serverTimeout time.Duration
}

func newStreamServer(t testing.TB, o streamOptions) *streamServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &testenv.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	hub, err := NewHub(o.cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(reg, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	st := newStream(hub, o.replay)
	if o.replayLimit > 0 {
		st.replayLimit = o.replayLimit
	}
	mux := http.NewServeMux()
	mux.HandleFunc(RouteStream, st.serve)
	routeOf := func(*http.Request) string { return RouteStream }
	ipOf := func(*http.Request) netip.Addr { return netip.MustParseAddr("127.0.0.1") }
	h := chain(mux,
		func(next http.Handler) http.Handler { return requestLog(log, routeOf, ipOf, nil, next) },
		m.middleware,
		recoverPanics,
		authenticate(testConfig().APIKeys, m),
	)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = o.serverTimeout
	srv.Config.WriteTimeout = o.serverTimeout
	srv.Start()
	t.Cleanup(func() {
		hub.Close() // ends the streams, so Close does not wait for them
		srv.Close()
	})
	return &streamServer{t: t, hub: hub, srv: srv, reg: reg, logs: logs}
}

// sseRecord is one block of a stream: an event, or comments / a retry.
type sseRecord struct {
	event, id, data, retry string
	comments               []string
}

// sseClient reads a stream in the background, block by block.
type sseClient struct {
	t       testing.TB
	resp    *http.Response
	records chan sseRecord
	done    chan struct{} // closed when the stream ended
	cancel  context.CancelFunc
}

// openStream connects with the read key; headers are name, value pairs.
func openStream(t testing.TB, base, query string, headers ...string) *sseClient {
	t.Helper()
	c, resp := tryStream(t, base, query, headers...)
	if c == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /telemetry/stream%s = %d %s", query, resp.StatusCode, b)
	}
	return c
}

// tryStream connects and returns the client, or nil and the refusal.
func tryStream(t testing.TB, base, query string, headers ...string) (*sseClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/telemetry/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", readSecret)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := openapitest.Client(t).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	c := &sseClient{t: t, resp: resp, records: make(chan sseRecord, 100_000), done: make(chan struct{}), cancel: cancel}
	go c.read()
	return c, resp
}

func (c *sseClient) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var r sseRecord
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			c.records <- r
			r = sseRecord{}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			r.comments = append(r.comments, value)
		case "event":
			r.event = value
		case "id":
			r.id = value
		case "data":
			if r.data != "" {
				r.data += "\n"
			}
			r.data += value
		case "retry":
			r.retry = value
		}
	}
}

// next is the next block, within d.
func (c *sseClient) next(d time.Duration) (sseRecord, bool) {
	c.t.Helper()
	select {
	case r := <-c.records:
		return r, true
	case <-time.After(d):
		return sseRecord{}, false
	}
}

// nextEvent skips comments and returns the next event, failing after d.
func (c *sseClient) nextEvent(d time.Duration) sseRecord {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("no event within %s", d)
		}
		if r.event != "" {
			return r
		}
	}
}

// comment waits for a comment containing want and fails after d.
func (c *sseClient) comment(want string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("no comment %q within %s", want, d)
		}
		for _, cm := range r.comments {
			if strings.Contains(cm, want) {
				return
			}
		}
	}
}

// noEvent fails if an event arrives within d.
func (c *sseClient) noEvent(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, ok := c.next(time.Until(deadline))
		if !ok {
			return
		}
		if r.event != "" {
			c.t.Fatalf("unexpected event %s %s", r.event, r.id)
		}
	}
}

// ended reports whether the server ended the stream within d.
func (c *sseClient) ended(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (c *sseClient) close() { c.cancel() }
