package api

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// postGPS posts a GPS reading through c and reports the status and
// whether the request went over a connection that had served one before.
func postGPS(t *testing.T, c *http.Client, addr string) (code int, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/telemetry/gps", strings.NewReader(gpsBody()))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", secret)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST /telemetry/gps: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection goes back to the pool
	return resp.StatusCode, reused
}

// TestShutdownDelayServesWhileReadyzFails: during SHUTDOWN_DELAY /readyz
// says "shutting down" while the public listener still answers, on new and
// on kept-alive connections, with durable 202s; then it closes as before.
func TestShutdownDelayServesWhileReadyzFails(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := testConfig(ns.URL)
	// Long enough that the two requests below, made as soon as /readyz
	// fails, fit in it on a loaded machine; the test asserts no timing.
	cfg.ShutdownDelay = 3 * time.Second
	r := start(t, cfg)

	keptTransport := &http.Transport{}
	t.Cleanup(keptTransport.CloseIdleConnections)
	kept := &http.Client{Transport: openapitest.Transport(t, keptTransport)}
	if code, _ := postGPS(t, kept, r.Addr()); code != http.StatusAccepted {
		t.Fatalf("before the shutdown: %d", code)
	}

	r.cancel()
	waitFor(t, 5*time.Second, "readyz to report the drain", func() bool {
		code, b := get(t, "http://"+r.AdminAddr()+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(b, "shutting down")
	})
	fresh := &http.Client{Transport: openapitest.Transport(t, &http.Transport{DisableKeepAlives: true})}
	if code, reused := postGPS(t, fresh, r.Addr()); code != http.StatusAccepted || reused {
		t.Errorf("new connection during the delay: status %d (reused %v), want 202", code, reused)
	}
	if code, reused := postGPS(t, kept, r.Addr()); code != http.StatusAccepted || !reused {
		t.Errorf("kept-alive connection during the delay: status %d (reused %v), want 202 on the same connection", code, reused)
	}
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned during the delay: %v", err)
	default:
	}

	waitFor(t, cfg.ShutdownDelay+10*time.Second, "the public listener to close after the delay", func() bool {
		c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
		t.Fatal("Serve did not return after the delay")
	}
	st, err := jsFor(t, ns.URL).Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil || info.State.Msgs != 3 {
		t.Fatalf("stream after shutdown: %+v %v, want the 3 accepted readings", info.State, err)
	}
}

// TestFailedListenerSkipsShutdownDelay: the delay is for a stop that was
// asked for; a listener that fails stops the API without it.
func TestFailedListenerSkipsShutdownDelay(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := testConfig(ns.URL)
	cfg.ShutdownTimeout = 2 * time.Minute
	cfg.ShutdownDelay = time.Minute
	r := start(t, cfg, func(s *Server) { _ = s.ln.Close() })
	select {
	case err := <-r.done:
		r.done <- err
		if err == nil || !strings.Contains(err.Error(), "public listener") {
			t.Errorf("Serve = %v, want the public listener's error", err)
		}
	case <-time.After(cfg.ShutdownDelay / 2):
		t.Fatal("Serve waited for SHUTDOWN_DELAY after a listener failed")
	}
}
