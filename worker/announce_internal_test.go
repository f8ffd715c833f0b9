package worker

import (
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
)

// A failed announcement is counted and returns: it never reaches the insert
// or the ack that follow it.
func TestAnnounceFailureIsCountedNotReturned(t *testing.T) {
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAnnouncer(nc, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	readings := []stored{
		{id: uuid.New(), item: models.GPSItem{Latitude: 1}},
		{id: uuid.New(), item: models.GPSItem{Latitude: 2}},
	}
	a.announce(models.TypeGPS, readings)
	nc.Close()
	a.announce(models.TypeGPS, readings)
	a.announce(models.TypeGPS, nil)

	for outcome, want := range map[string]float64{announceSent: 2, announceFailed: 2} {
		var m dto.Metric
		if err := a.total.WithLabelValues("gps", outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != want {
			t.Errorf("worker_announcements_total{type=gps,outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
}

// The hand-written items are json.Marshal's bytes, and what they cannot
// write exactly goes to json.Marshal.
func TestAppendItemIsJSONMarshal(t *testing.T) {
	meta := models.ItemMeta{
		ID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), DeviceID: "00:0a:95:9d:68:16",
		Timestamp:  time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
		ReceivedAt: time.Date(2026, 11, 28, 10, 0, 1, 123456789, time.UTC),
		StoredAt:   time.Date(2026, 11, 28, 10, 0, 1, 500000000, time.FixedZone("", -3*3600)),
	}
	odd := meta
	odd.DeviceID = `<truck "7">`
	odd.Timestamp = time.Date(0, 1, 1, 0, 0, 0, 0, time.FixedZone("", 30))
	far := meta
	far.ReceivedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // json.Marshal refuses it
	for _, item := range []any{
		models.GPSItem{ItemMeta: meta, Latitude: -23.55052, Longitude: -46.633308},
		models.GPSItem{ItemMeta: meta, Latitude: 1e-7, Longitude: math.Copysign(0, -1)},
		models.GPSItem{ItemMeta: odd, Latitude: 90, Longitude: -180},
		models.GPSItem{},
		models.GPSItem{ItemMeta: far},
		models.GyroscopeItem{ItemMeta: meta, X: 1e21, Y: -5e-324, Z: math.MaxFloat64},
		models.GyroscopeItem{ItemMeta: meta, X: 0.98, Y: 123456789, Z: 1e20},
		models.PhotoItem{ItemMeta: meta, ContentType: "image/jpeg", SizeBytes: 1, ImageURL: models.PhotoImageURL(meta.ID)},
	} {
		want, wantErr := json.Marshal(item)
		got, err := appendItem([]byte("prefix"), item)
		if (err == nil) != (wantErr == nil) || err == nil && string(got) != "prefix"+string(want) {
			t.Fatalf("appendItem(%+v) = %s, %v\nwant prefix%s, %v", item, got, err, want, wantErr)
		}
	}
	if _, err := appendItem(nil, models.GyroscopeItem{X: math.NaN()}); err == nil {
		t.Fatal("a NaN item was encoded")
	}
}

func FuzzAppendItemIsJSONMarshal(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), "00:0a:95:9d:68:16", int64(1764324000), int64(0), 1.5, -2.25e-7, 1e21, false)
	f.Add([]byte("id"), "a\u00e9<&>\"\\\n", int64(-62167219201), int64(-1), math.Inf(1), 0.0, -0.0, true)
	f.Fuzz(func(t *testing.T, id []byte, device string, sec, nsec int64, x, y, z float64, gps bool) {
		var m models.ItemMeta
		copy(m.ID[:], id)
		m.DeviceID = device
		m.Timestamp = time.Unix(sec, nsec).UTC()
		m.ReceivedAt = time.Unix(sec/2, nsec).In(time.FixedZone("", int(nsec%100000)))
		m.StoredAt = time.Unix(sec, 0).UTC()
		var item any = models.GyroscopeItem{ItemMeta: m, X: x, Y: y, Z: z}
		if gps {
			item = models.GPSItem{ItemMeta: m, Latitude: x, Longitude: y}
		}
		want, wantErr := json.Marshal(item)
		got, err := appendItem(nil, item)
		if (err == nil) != (wantErr == nil) || err == nil && string(got) != string(want) {
			t.Fatalf("appendItem(%+v) = %s, %v\njson.Marshal: %s, %v", item, got, err, want, wantErr)
		}
	})
}

// BenchmarkAppendItem is an announcement's body: the hand-written item and
// json.Marshal (the baseline).
func BenchmarkAppendItem(b *testing.B) {
	item := any(models.GPSItem{ItemMeta: models.ItemMeta{ID: uuid.New(), DeviceID: "00:0a:95:9d:68:16",
		Timestamp: time.Now().UTC(), ReceivedAt: time.Now().UTC(), StoredAt: time.Now().UTC()}, Latitude: -23.55052, Longitude: -46.633308})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendItem(buf[:0], item)
		}
	})
	b.Run("json_marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(item)
		}
	})
}
