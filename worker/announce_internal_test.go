package worker

import (
	"io"
	"log/slog"
	"testing"

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
