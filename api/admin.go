package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// Readiness probe tuning: a probe of the stream is cached this long, so a
// scraping load balancer cannot turn /readyz into JetStream API traffic, and
// gives up after probeTimeout.
const (
	readyCacheFor = time.Second
	probeTimeout  = 800 * time.Millisecond // under Kubernetes' default 1 s probe timeout
)

func adminHandler(reg *prometheus.Registry, rd *readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := rd.check(r.Context()); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})
	return mux
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}{status, reason})
}

// readiness answers /readyz: not draining, NATS connected, and the
// TELEMETRY stream answering its info request.
type readiness struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	draining atomic.Bool

	mu       sync.Mutex
	probedAt time.Time
	probeErr error
}

// Reasons /readyz gives; they name no address or dependency error text.
var (
	errDraining     = errors.New("shutting down")
	errDisconnected = errors.New("nats not connected")
	errNoStream     = errors.New("stream " + messaging.StreamName + " not reachable")
)

func (rd *readiness) check(ctx context.Context) error {
	if rd.draining.Load() {
		return errDraining
	}
	// The connection state is free to read: checked on every call so an
	// outage shows at once, not after the cache expires.
	if rd.nc.Status() != nats.CONNECTED {
		return errDisconnected
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if time.Since(rd.probedAt) < readyCacheFor {
		return rd.probeErr
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	rd.probeErr = nil
	if _, err := rd.js.Stream(ctx, messaging.StreamName); err != nil {
		rd.probeErr = errNoStream
	}
	rd.probedAt = time.Now()
	return rd.probeErr
}
