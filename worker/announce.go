package worker

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/internal/jsonappend"
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
	// One message, header and body buffer for the whole batch: PublishMsg
	// copies them into the connection's buffer before it returns.
	ids := []string{""}
	msg := &nats.Msg{Subject: t.StoredSubject(), Header: nats.Header{models.StoredReadingIDHeader: ids}}
	var buf []byte
	failed := 0
	var firstErr error
	for _, r := range readings {
		data, err := appendItem(buf[:0], r.item)
		if err == nil {
			buf = data
			ids[0] = r.id.String()
			msg.Data = data
			err = a.nc.PublishMsg(msg)
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

// appendItem appends item's JSON, json.Marshal's very bytes
// (TestAppendItemIsJSONMarshal). A GPS or gyroscope item is written field
// by field: in a drain of tens of thousands of readings a second,
// json.Marshal's reflection cost the worker about 5 µs a reading for a
// shape that never changes. What it cannot write exactly as encoding/json
// would (a string needing an escape, a year outside 0000–9999, a
// non-finite number), and a photo's item, go to json.Marshal.
func appendItem(b []byte, item any) ([]byte, error) {
	start, ok := len(b), true
	switch it := item.(type) {
	case models.GPSItem:
		b, ok = appendItemMeta(b, &it.ItemMeta)
		b, ok = jsonappend.Float(b, `,"latitude":`, it.Latitude, ok)
		b, ok = jsonappend.Float(b, `,"longitude":`, it.Longitude, ok)
	case models.GyroscopeItem:
		b, ok = appendItemMeta(b, &it.ItemMeta)
		b, ok = jsonappend.Float(b, `,"x":`, it.X, ok)
		b, ok = jsonappend.Float(b, `,"y":`, it.Y, ok)
		b, ok = jsonappend.Float(b, `,"z":`, it.Z, ok)
	default:
		ok = false
	}
	if ok {
		return append(b, '}'), nil
	}
	data, err := json.Marshal(item)
	return append(b[:start], data...), err
}

func appendItemMeta(b []byte, m *models.ItemMeta) ([]byte, bool) {
	b = append(b, `{"id":"`...)
	b = jsonappend.UUID(b, m.ID)
	b, ok := jsonappend.String(append(b, `","device_id":`...), m.DeviceID, true)
	b, ok = jsonappend.Time(append(b, `,"timestamp":`...), m.Timestamp, ok)
	b, ok = jsonappend.Time(append(b, `,"received_at":`...), m.ReceivedAt, ok)
	return jsonappend.Time(append(b, `,"stored_at":`...), m.StoredAt, ok)
}
