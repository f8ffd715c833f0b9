package api

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/metrics"
)

// Readiness probe tuning: a probe of the stream is cached this long, so a
// scraping load balancer cannot turn /readyz into JetStream API traffic, and
// gives up after probeTimeout.
const (
	readyCacheFor = time.Second
	probeTimeout  = 800 * time.Millisecond // under Kubernetes' default 1 s probe timeout
)

// readiness answers /readyz: ready (not draining) overall, NATS connected
// and the TELEMETRY stream answering its info request as a required check,
// and the read API's database as an optional one: ingest never depends on
// PostgreSQL, so the api stays ready while only the read routes answer 503.
type readiness struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	db       pinger // nil without DATABASE_URL
	draining atomic.Bool
	mu       sync.Mutex
	probedAt time.Time
	probeErr error
	dbMu     sync.Mutex
	dbAt     time.Time
	dbErr    error
}

// pinger is what readiness needs from storage.Reader.
type pinger interface {
	Ping(ctx context.Context) error
}

// Reasons /readyz gives; they name no address or dependency error text.
var (
	errDraining     = errors.New("shutting down")
	errDisconnected = errors.New("nats not connected")
	errNoStream     = errors.New("stream " + messaging.StreamName + " not reachable")
	errDatabaseDown = errors.New("database not reachable")
	errDatabaseConf = errors.New("database refuses the read API (credentials, database name or privileges)")
)

// checks are the named checks of /readyz.
func (rd *readiness) checks() []metrics.Check {
	c := []metrics.Check{{Name: "nats", Probe: rd.nats}}
	if rd.db != nil {
		c = append(c, metrics.Check{Name: "database", Probe: rd.database, Optional: true})
	}
	return c
}

func (rd *readiness) notDraining(context.Context) error {
	if rd.draining.Load() {
		return errDraining
	}
	return nil
}

func (rd *readiness) nats(ctx context.Context) error {
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

// database pings the read pool, cached like the stream probe so probes
// cannot turn into database traffic.
func (rd *readiness) database(ctx context.Context) error {
	rd.dbMu.Lock()
	defer rd.dbMu.Unlock()
	if time.Since(rd.dbAt) < readyCacheFor {
		return rd.dbErr
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	rd.dbErr = nil
	if err := rd.db.Ping(ctx); err != nil {
		rd.dbErr = errDatabaseDown
		if ierr.Is(err, ierr.Misconfigured) { // wrong password, no such database
			rd.dbErr = errDatabaseConf
		}
	}
	rd.dbAt = time.Now()
	return rd.dbErr
}
