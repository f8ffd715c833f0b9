package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGoroutinesReadsTheGauge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines_total_bogus 3\ngo_goroutines 42\n")
	}))
	defer srv.Close()
	n, err := goroutines(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil || n != 42 {
		t.Fatalf("goroutines = %d, %v; want 42", n, err)
	}
}

// The memory section's client never opens more than its connections, however
// many requests are in flight.
func TestFixedPoolClientCapsConnections(t *testing.T) {
	var conns, arrived atomic.Int64
	four := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == 4 {
			close(four)
		}
		<-release
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := fixedPoolClient(4)
	defer c.CloseIdleConnections()
	done := make(chan error, 20)
	for range 20 {
		go func() {
			resp, err := c.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
	}
	// Four requests hold the four connections; without the cap the other
	// sixteen would open theirs within this pause (with it, none can).
	<-four
	time.Sleep(200 * time.Millisecond)
	if n := conns.Load(); n > 4 {
		t.Errorf("%d connections opened while 20 requests were in flight, want at most 4", n)
	}
	close(release)
	for range 20 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n > 4 {
		t.Errorf("%d connections opened, want at most 4", n)
	}
}
