package testenv_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// BenchmarkJetStreamSyncAlways measures what a durable 202 costs (SPEC §3):
// the shipped single-node configurations (deploy/nats.conf, the dev stack)
// run JetStream with sync_interval: always, which syncs each write to disk
// before the acknowledgement, instead of the server default of every two
// minutes. Two servers run side by side in the same process, each with a
// file store under TMPDIR and the TELEMETRY topology as the binaries create
// it; each round publishes the same GPS messages (as the API builds them,
// with a Nats-Msg-Id each) to both, in turn, with async acks, so drift in
// the machine's load hits both alike.
//
// It reports both rates and their ratio. The figure depends on the disk:
// TMPDIR must be on the kind of disk the JetStream store would use (on a
// tmpfs a sync costs nothing and the ratio is ~1).
func BenchmarkJetStreamSyncAlways(b *testing.B) {
	type setup struct {
		name   string
		js     jetstream.JetStream
		failed *atomic.Int64
		took   time.Duration
	}
	var setups []*setup
	for _, s := range []struct {
		name   string
		always bool
	}{{"default", false}, {"always", true}} {
		ns := testenv.NATSWith(b, func(o *server.Options) { o.SyncAlways = s.always })
		if got := ns.Server().JetStreamConfig().SyncAlways; got != s.always {
			b.Fatalf("%s: server runs with SyncAlways=%v", s.name, got)
		}
		nc, err := messaging.Connect(context.Background(), ns.URL, "bench-"+s.name, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(nc.Close)
		failed := &atomic.Int64{}
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(512),
			jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
		if err != nil {
			b.Fatal(err)
		}
		if err := messaging.EnsureTopology(context.Background(), js, messaging.DefaultTopology()); err != nil {
			b.Fatal(err)
		}
		setups = append(setups, &setup{name: s.name, js: js, failed: failed})
	}
	data := gpsMessage(b)
	const perRound = 2000

	b.ResetTimer()
	for range b.N {
		for _, s := range setups {
			s.took += publishAsync(b, s.js, data, perRound)
		}
	}
	b.StopTimer()

	rate := map[string]float64{}
	for _, s := range setups {
		if n := s.failed.Load(); n > 0 {
			b.Fatalf("%s: %d publishes failed", s.name, n)
		}
		rate[s.name] = float64(b.N*perRound) / s.took.Seconds()
		b.ReportMetric(rate[s.name], s.name+"-msgs/s")
	}
	b.ReportMetric(rate["default"]/rate["always"], "slowdown-x")
	b.ReportMetric(float64(len(data)), "msg-bytes")
}

// publishAsync publishes n copies of data, each under its own message id,
// and returns how long until JetStream had acknowledged them all.
func publishAsync(b *testing.B, js jetstream.JetStream, data []byte, n int) time.Duration {
	b.Helper()
	start := time.Now()
	for range n {
		msg := &nats.Msg{Subject: "telemetry.gps", Data: data, Header: nats.Header{
			jetstream.MsgIDHeader: []string{uuid.Must(uuid.NewV7()).String()},
		}}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithExpectStream(messaging.StreamName), jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d publishes not acknowledged within 2 minutes", js.PublishAsyncPending())
	}
	return time.Since(start)
}

// gpsMessage is a GPS reading as the API publishes it.
func gpsMessage(b *testing.B) []byte {
	b.Helper()
	now := time.Now().UTC()
	data, err := models.Marshal(models.GPS{
		Meta: models.Meta{
			MessageID:  uuid.Must(uuid.NewV7()),
			Actor:      "phone-fleet",
			ReceivedAt: now,
			DeviceID:   "00:0a:95:9d:68:16",
			RecordedAt: now.Add(-time.Second),
		},
		Latitude:  -23.55052,
		Longitude: -46.633308,
	})
	if err != nil {
		b.Fatal(err)
	}
	return data
}
