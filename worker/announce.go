package worker

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

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
		b, ok = appendFloat(b, `,"latitude":`, it.Latitude, ok)
		b, ok = appendFloat(b, `,"longitude":`, it.Longitude, ok)
	case models.GyroscopeItem:
		b, ok = appendItemMeta(b, &it.ItemMeta)
		b, ok = appendFloat(b, `,"x":`, it.X, ok)
		b, ok = appendFloat(b, `,"y":`, it.Y, ok)
		b, ok = appendFloat(b, `,"z":`, it.Z, ok)
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
	b = appendUUID(b, m.ID)
	b, ok := appendJSONString(append(b, `","device_id":`...), m.DeviceID)
	b, ok = appendJSONTime(append(b, `,"timestamp":`...), m.Timestamp, ok)
	b, ok = appendJSONTime(append(b, `,"received_at":`...), m.ReceivedAt, ok)
	return appendJSONTime(append(b, `,"stored_at":`...), m.StoredAt, ok)
}

// appendUUID is uuid.UUID's text form (MarshalText) without its allocation.
func appendUUID(b []byte, id [16]byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	return append(b, s[:]...)
}

// appendJSONString quotes s if no character of it needs an escape in JSON
// (encoding/json escapes <, > and & too).
func appendJSONString(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// appendJSONTime is time.Time's MarshalJSON for years 0–9999 and offsets
// in whole minutes.
func appendJSONTime(b []byte, t time.Time, ok bool) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}

// appendFloat appends key and f as encoding/json writes a float64:
// shortest form, exponent only below 1e-6 or from 1e21, "e-07" as "e-7".
func appendFloat(b []byte, key string, f float64, ok bool) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	b = append(b, key...)
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, ok
}
