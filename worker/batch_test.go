package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// TestBatchesWrittenAtOnceStoreEachReadingOnce queues every block of
// readings three times in a row (the same message ids under different
// Nats-Msg-Id values, as redeliveries would come), so that the batches the
// worker writes at the same time hold the same messages and the same
// devices: each reading must be stored once with its audit row, counted
// once in its device's summary, and no batch may fail (a deadlock would be
// retried, and counted as such).
func TestBatchesWrittenAtOnceStoreEachReadingOnce(t *testing.T) {
	t.Parallel()
	const (
		batch   = 50
		blocks  = 8
		copies  = 3
		devices = 7
	)
	e := newTestEnv(t, func(c *config.Worker) {
		c.BatchSize = batch
		c.Topology.MaxAckPending = 2 * batch
	})
	var readings []models.GPS
	for i := range batch * blocks {
		g := gpsReading(float64(i%180)-89.5, float64(i%360)-179.5)
		g.DeviceID = fmt.Sprintf("device-%d", i%devices)
		readings = append(readings, g)
	}
	var acks []jetstream.PubAckFuture
	for b := range blocks {
		for c := range copies {
			for _, g := range readings[b*batch : (b+1)*batch] {
				data, err := models.Marshal(g)
				if err != nil {
					t.Fatal(err)
				}
				f, err := e.js.PublishAsync(models.TypeGPS.Subject(), data,
					jetstream.WithMsgID(fmt.Sprintf("%s-%d", g.MessageID, c)))
				if err != nil {
					t.Fatal(err)
				}
				acks = append(acks, f)
			}
		}
	}
	awaitAcks(t, acks)

	e.start(worker.Options{})
	total := float64(len(readings) * copies)
	e.waitFor(30*time.Second, "every delivery answered", func() bool {
		return e.metric(`worker_messages_total{outcome="stored",type="gps"}`)+
			e.metric(`worker_messages_total{outcome="duplicate",type="gps"}`) == total
	})
	e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypeGPS) })

	if got := e.count(`SELECT count(*) FROM gps`); got != len(readings) {
		t.Fatalf("gps rows = %d, want %d", got, len(readings))
	}
	if got := e.count(`SELECT count(*) FROM audit_log WHERE action = 'gps.stored'`); got != len(readings) {
		t.Fatalf("audit rows = %d, want %d", got, len(readings))
	}
	if o := e.orphans(); o != 0 {
		t.Fatalf("%d orphan rows", o)
	}
	if got := e.metric(`worker_messages_total{outcome="stored",type="gps"}`); got != float64(len(readings)) {
		t.Fatalf("stored = %v, want %d", got, len(readings))
	}
	if got := e.metric(`worker_messages_total{outcome="retried",type="gps"}`); got != 0 {
		t.Fatalf("%v deliveries retried: a batch failed (deadlock?); worker logs show why", got)
	}
	if got := e.count(`SELECT count(*) FROM device`); got != devices {
		t.Fatalf("devices = %d, want %d", got, devices)
	}
	if bad := e.count(`SELECT count(*) FROM device d
		WHERE gps_count <> (SELECT count(*) FROM gps g WHERE g.device_id = d.device_id)`); bad != 0 {
		t.Fatalf("%d devices whose gps_count is not their number of stored fixes", bad)
	}
}
