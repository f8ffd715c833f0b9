package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// Readiness probe tuning: a probe of the stream is cached this long, so a
// scraping load balancer cannot turn /readyz into JetStream API traffic, and
// gives up after probeTimeout.
const (
	readyCacheFor = time.Second
	probeTimeout  = 800 * time.Millisecond // under Kubernetes' default 1 s probe timeout
)

// readiness answers /readyz (check is the metrics.ReadyFunc the admin
// server calls): not draining, NATS connected, and the TELEMETRY stream
// answering its info request.
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
