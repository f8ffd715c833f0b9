package worker

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/models"
)

// Outcome label values of worker_announcements_total.
const (
	announceSent   = "sent"
	announceFailed = "failed"
)

// announcer tells the read API's live stream about each reading once its
// transaction has committed: a core NATS message (not JetStream) on
// t.StoredSubject() whose body is the item's JSON, with models.StoredReadingIDHeader.
//
// It is best effort, at most once: nc.Publish only appends to the
// connection's buffer (or its reconnect buffer), so it neither waits for a
// subscriber nor slows the insert or the ack that follow it, and a failure
// is counted, never retried. The row is the durable copy; a stream client
// that missed an announcement replays from PostgreSQL with Last-Event-ID.
type announcer struct {
	nc    *nats.Conn
	log   *slog.Logger
	total *prometheus.CounterVec // worker_announcements_total{type,outcome}
}

func newAnnouncer(nc *nats.Conn, reg prometheus.Registerer, log *slog.Logger) (*announcer, error) {
	a := &announcer{nc: nc, log: log, total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "worker_announcements_total",
		Help: "Stored readings announced on core NATS (events.stored.<type>) for the live stream, by type and outcome (sent, failed); best effort, never retried.",
	}, []string{"type", "outcome"})}
	if err := reg.Register(a.total); err != nil {
		return nil, fmt.Errorf("register worker metrics: %w", err)
	}
	for _, t := range models.Types {
		a.total.WithLabelValues(string(t), announceSent)
		a.total.WithLabelValues(string(t), announceFailed)
	}
	return a, nil
}

// announce publishes readings of type t, which the caller has just
// committed. Call it only with readings the transaction inserted: a
// duplicate delivery announces nothing.
func (a *announcer) announce(t models.Type, readings []stored) {
	if len(readings) == 0 {
		return
	}
	subject := t.StoredSubject()
	failed := 0
	var firstErr error
	for _, r := range readings {
		data, err := json.Marshal(r.item)
		if err == nil {
			err = a.nc.PublishMsg(&nats.Msg{Subject: subject, Data: data,
				Header: nats.Header{models.StoredReadingIDHeader: []string{r.id.String()}}})
		}
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	a.total.WithLabelValues(string(t), announceSent).Add(float64(len(readings) - failed))
	if failed > 0 {
		a.total.WithLabelValues(string(t), announceFailed).Add(float64(failed))
		// Debug: the counter is the signal; a NATS outage would otherwise log
		// once per batch on top of the consumer's own errors.
		a.log.Debug("stored readings not announced", "type", t, "failed", failed, "err", firstErr)
	}
}
