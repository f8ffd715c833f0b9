package handlers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/models"
)

// item is a reading's item JSON as the worker announces it.
func item(t testing.TB, typ models.Type, id uuid.UUID, device string) []byte {
	t.Helper()
	meta := models.ItemMeta{ID: id, DeviceID: device, Timestamp: time.Now().UTC(), ReceivedAt: time.Now().UTC(), StoredAt: time.Now().UTC()}
	var v any
	switch typ {
	case models.TypeGyroscope:
		v = models.GyroscopeItem{ItemMeta: meta, X: 1, Y: 2, Z: 3}
	case models.TypeGPS:
		v = models.GPSItem{ItemMeta: meta, Latitude: -23.5, Longitude: -46.6}
	case models.TypePhoto:
		v = models.PhotoItem{ItemMeta: meta, ContentType: "image/jpeg", SizeBytes: 10, ImageURL: models.PhotoImageURL(id),
			Recognition: models.Recognition{Status: "no_face"}}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// announce publishes a new reading to the hub and returns its id and JSON.
func (s *streamServer) announce(typ models.Type, device string) (uuid.UUID, string) {
	s.t.Helper()
	id := uuid.Must(uuid.NewV7())
	data := item(s.t, typ, id, device)
	if err := s.hub.Publish(typ, id, data); err != nil {
		s.t.Fatal(err)
	}
	return id, string(data)
}

// waitClients waits until the hub has n clients.
func (s *streamServer) waitClients(n int) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.hub.connected() != float64(n) {
		if time.Now().After(deadline) {
			s.t.Fatalf("%v stream clients, want %d", s.hub.connected(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLiveStreamDeliversEachAnnouncedReading(t *testing.T) {
	s := newStreamServer(t, streamOptions{})
	c := openStream(t, s.srv.URL, "")
	first, _ := c.next(time.Second)
	if first.retry != "3000" {
		t.Errorf("first block = %+v, want retry: 3000", first)
	}
	if got := c.resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	s.waitClients(1)
	for _, typ := range models.Types {
		id, data := s.announce(typ, "truck-1")
		start := time.Now()
		ev := c.nextEvent(time.Second)
		if ev.event != string(typ) || ev.id != id.String() || ev.data != data {
			t.Errorf("event = %+v, want %s %s %s", ev, typ, id, data)
		}
		t.Logf("%s delivered in %s", typ, time.Since(start))
	}
	if got := testutil.ToFloat64(s.hub.m.sent.WithLabelValues("live")); got != 3 {
		t.Errorf("events sent = %v, want 3", got)
	}
	if got := testutil.ToFloat64(s.hub.m.clients); got != 1 {
		t.Errorf("clients gauge = %v, want 1", got)
	}
	c.close()
	s.waitClients(0)
}

func TestLiveStreamFiltersByTypeAndDevice(t *testing.T) {
	s := newStreamServer(t, streamOptions{})
	// A MAC in another notation is normalised like ingest.
	c := openStream(t, s.srv.URL, "?types=gps,photo&device_id=00-0A-95-9D-68-16")
	all := openStream(t, s.srv.URL, "")
	s.waitClients(2)
	const mac = "00:0a:95:9d:68:16"
	s.announce(models.TypeGyroscope, mac)
	s.announce(models.TypeGPS, "truck-2")
	gps, _ := s.announce(models.TypeGPS, mac)
	photo, _ := s.announce(models.TypePhoto, mac)
	for _, want := range []uuid.UUID{gps, photo} {
		if ev := c.nextEvent(time.Second); ev.id != want.String() {
			t.Errorf("filtered client got %s %s, want %s", ev.event, ev.id, want)
		}
	}
	c.noEvent(100 * time.Millisecond)
	for i := 0; i < 4; i++ {
		all.nextEvent(time.Second)
	}
}

func TestLiveStreamParameters(t *testing.T) {
	s := newStreamServer(t, streamOptions{})
	cases := []struct {
		name, query, field string
		headers            []string
	}{
		{"unknown parameter", "?type=gps", "type", nil},
		{"repeated parameter", "?types=gps&types=photo", "types", nil},
		{"unknown type", "?types=gps,accelerometer", "types", nil},
		{"empty type", "?types=gps,", "types", nil},
		{"bad device", "?device_id=a/b", "device_id", nil},
		{"bad last_event_id", "?last_event_id=17", "last_event_id", nil},
		{"bad Last-Event-ID", "", "Last-Event-ID", []string{"Last-Event-ID", "17"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, resp := tryStream(t, s.srv.URL, tc.query, tc.headers...)
			if c != nil {
				t.Fatal("stream opened")
			}
			p := decodeBody[Problem](t, resp)
			if resp.StatusCode != 400 || len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
				t.Errorf("status %d, problem %+v, want 400 naming %s", resp.StatusCode, p, tc.field)
			}
		})
	}
	for _, tc := range []struct {
		key    string
		status int
	}{{"", 401}, {ingestSecret, 403}} {
		req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/telemetry/stream", nil)
		if tc.key != "" {
			req.Header.Set("X-API-Key", tc.key)
		}
		resp, err := openapitest.Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("key %q: status %d, want %d", tc.key, resp.StatusCode, tc.status)
		}
	}
}

func TestLiveStreamHeartbeats(t *testing.T) {
	s := newStreamServer(t, streamOptions{cfg: config.Stream{Heartbeat: 50 * time.Millisecond}})
	c := openStream(t, s.srv.URL, "")
	for i := 0; i < 3; i++ {
		c.comment("heartbeat", time.Second)
	}
}

// The public server's timeouts (sized for uploads) must not end a stream.
func TestLiveStreamOutlivesTheServerTimeouts(t *testing.T) {
	s := newStreamServer(t, streamOptions{cfg: config.Stream{Heartbeat: 50 * time.Millisecond}, serverTimeout: 200 * time.Millisecond})
	c := openStream(t, s.srv.URL, "")
	s.waitClients(1)
	time.Sleep(time.Second)
	id, _ := s.announce(models.TypeGPS, "truck-1")
	if ev := c.nextEvent(time.Second); ev.id != id.String() {
		t.Fatalf("event %s, want %s", ev.id, id)
	}
	if c.ended(0) {
		t.Fatal("the stream ended")
	}
}

func TestLiveStreamRefusesClientsBeyondTheCap(t *testing.T) {
	s := newStreamServer(t, streamOptions{cfg: config.Stream{MaxClients: 2}})
	a := openStream(t, s.srv.URL, "")
	openStream(t, s.srv.URL, "")
	s.waitClients(2)
	c, resp := tryStream(t, s.srv.URL, "")
	if c != nil {
		t.Fatal("a third stream opened")
	}
	p := decodeBody[Problem](t, resp)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || p.Type != ProblemTypeBase+"too-many-streams" {
		t.Errorf("status %d, Retry-After %q, problem %+v", resp.StatusCode, resp.Header.Get("Retry-After"), p)
	}
	a.close()
	s.waitClients(1)
	openStream(t, s.srv.URL, "")
}

func TestLiveStreamClosedHubEndsStreamsAndRefusesNewOnes(t *testing.T) {
	s := newStreamServer(t, streamOptions{})
	c := openStream(t, s.srv.URL, "")
	s.waitClients(1)
	start := time.Now()
	s.hub.Close()
	c.comment("shutting down", time.Second)
	if !c.ended(time.Second) {
		t.Fatal("the stream did not end")
	}
	t.Logf("stream ended %s after Close", time.Since(start))
	_, resp := tryStream(t, s.srv.URL, "")
	if p := decodeBody[Problem](t, resp); resp.StatusCode != 503 || p.Type != ProblemTypeBase+"shutting-down" {
		t.Errorf("after Close: %d %+v", resp.StatusCode, p)
	}
}

// A client that stops reading is cut off once STREAM_CLIENT_BUFFER events
// wait for it; another client keeps receiving every event meanwhile.
func TestLiveStreamCutsOffAClientThatNeverReads(t *testing.T) {
	s := newStreamServer(t, streamOptions{cfg: config.Stream{ClientBuffer: 64}})
	reader := openStream(t, s.srv.URL, "")

	// The stuck client sends its request and never reads a byte.
	d := net.Dialer{}
	conn, err := d.Dial("tcp", s.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /telemetry/stream HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n\r\n", readSecret)
	s.waitClients(2)

	// 8 KiB events, paced so a reading client keeps up.
	pad := strings.Repeat("x", 8<<10)
	const n = 2000
	var want []string
	for i := 0; i < n; i++ {
		id := uuid.Must(uuid.NewV7())
		data := fmt.Sprintf(`{"id":%q,"device_id":"truck-1","pad":%q}`, id, pad)
		if err := s.hub.Publish(models.TypeGPS, id, []byte(data)); err != nil {
			t.Fatal(err)
		}
		want = append(want, id.String())
		time.Sleep(time.Millisecond)
	}
	for i, id := range want {
		if ev := reader.nextEvent(5 * time.Second); ev.id != id {
			t.Fatalf("event %d = %s, want %s (clients dropped: %v)", i, ev.id, id, testutil.ToFloat64(s.hub.m.dropped))
		}
	}
	if got := testutil.ToFloat64(s.hub.m.dropped); got != 1 {
		t.Errorf("clients dropped = %v, want 1", got)
	}
	s.waitClients(1)

	// Its stream ends (with a comment saying why) once it reads again;
	// until then the write deadline bounds what it holds.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the stuck client's stream did not end: %v after %d bytes", err, len(body))
	}
	if !strings.Contains(string(body), ": disconnected: this client fell 64 events behind") {
		t.Errorf("the stuck client's stream ends with %q", body[max(0, len(body)-200):])
	}
	t.Logf("the stuck client had %d bytes waiting when it was cut off", len(body))
}

// Publishing to many clients while they come and go is race-free.
func TestLiveStreamHubConcurrency(t *testing.T) {
	s := newStreamServer(t, streamOptions{cfg: config.Stream{ClientBuffer: 4}})
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := s.hub.subscribe(0, "")
				if err != nil {
					return
				}
				select {
				case <-c.events:
				case <-c.dropped:
				case <-time.After(time.Millisecond):
				}
				s.hub.unsubscribe(c)
			}
		}()
	}
	for i := 0; i < 2000; i++ {
		s.announce(models.TypeGPS, "truck-1")
	}
	cancel()
	wg.Wait()
	s.waitClients(0)
}

func TestEventFrame(t *testing.T) {
	id := uuid.MustParse("0196a3c4-7d2e-7b1a-9c3f-4e5d6a7b8c9d")
	got := string(eventFrame(models.TypeGPS, id, []byte("{\"a\":1,\r\n\"b\":2}\n")))
	want := "event: gps\nid: 0196a3c4-7d2e-7b1a-9c3f-4e5d6a7b8c9d\ndata: {\"a\":1,\ndata: \"b\":2}\n\n"
	if got != want {
		t.Errorf("frame = %q, want %q", got, want)
	}
}

// BenchmarkLiveStreamIdleConnections measures what an idle stream costs the
// server: it opens idleStreams streams on loopback through the middleware
// chain (raw sockets, so the client side adds almost nothing to the
// process) and reports the growth of the Go heap, of the goroutine stacks
// and of the process's resident memory, per stream. Run it without -race:
//
//	go test -run '^$' -bench LiveStreamIdleConnections -benchtime 1x ./handlers/
func BenchmarkLiveStreamIdleConnections(b *testing.B) {
	const idleStreams = 2000
	for i := 0; i < b.N; i++ {
		s := newStreamServer(b, streamOptions{})
		before := memoryInUse()
		conns := make([]net.Conn, 0, idleStreams)
		for j := 0; j < idleStreams; j++ {
			conn, err := net.Dial("tcp", s.srv.Listener.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, conn)
			fmt.Fprintf(conn, "GET /telemetry/stream HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n\r\n", readSecret)
			buf := make([]byte, 1024)
			var got []byte
			for !strings.Contains(string(got), "retry: ") {
				n, err := conn.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				got = append(got, buf[:n]...)
			}
		}
		s.waitClients(idleStreams)
		after := memoryInUse()
		per := func(f func(memory) uint64) float64 { return (float64(f(after)) - float64(f(before))) / idleStreams }
		heap := per(func(m memory) uint64 { return m.heap })
		stack := per(func(m memory) uint64 { return m.stack })
		rss := per(func(m memory) uint64 { return m.rss })
		b.ReportMetric(heap+stack, "go-bytes/stream")
		b.ReportMetric(rss, "rss-bytes/stream")
		b.Logf("%d idle streams, each: Go heap %.1f KiB + stacks %.1f KiB = %.1f KiB; process RSS %.1f KiB; goroutines %d",
			idleStreams, heap/1024, stack/1024, (heap+stack)/1024, rss/1024, runtime.NumGoroutine())
		for _, c := range conns {
			c.Close()
		}
		s.waitClients(0)
	}
}

type memory struct{ heap, stack, rss uint64 }

// memoryInUse is the Go heap and stacks in use after a collection, and the
// process's resident set size, in bytes.
func memoryInUse() memory {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := memory{heap: ms.HeapInuse, stack: ms.StackInuse}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, resident uint64
		fmt.Sscan(string(statm), &size, &resident)
		m.rss = resident * uint64(os.Getpagesize())
	}
	return m
}
