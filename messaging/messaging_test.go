package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// setup starts NATS, connects the way the binaries do and ensures the topology.
func setup(t testing.TB, topo messaging.TopologyConfig) (*testenv.NATSServer, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns := testenv.NATS(t)
	ctx := context.Background()
	nc, js := testenv.JetStream(t, ns.URL)
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	return ns, nc, js
}

// newDLQ is the dead-letter writer a worker builds, with its own registry.
func newDLQ(t *testing.T, js jetstream.JetStream) *messaging.DLQ {
	t.Helper()
	d, _ := newDLQWithRegistry(t, js)
	return d
}

func newDLQWithRegistry(t *testing.T, js jetstream.JetStream) (*messaging.DLQ, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	d, err := messaging.NewDLQ(js, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

// metricValue is the value of the counter or gauge name{labels} in reg
// (labels as name, value pairs); 0 when the series does not exist.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestEnsureTopologyIsIdempotentAndUpdates(t *testing.T) {
	topo := messaging.DefaultTopology()
	_, nc, js := setup(t, topo)
	ctx := context.Background()

	// A second binary starting with the same config changes nothing (no
	// update advisory); one with a new limit updates the stream in place.
	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		t.Fatalf("second EnsureTopology: %v", err)
	}
	if m, err := updates.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("an unchanged topology updated a stream: %s", m.Data)
	}
	topo.MaxBytes = 1 << 30
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		t.Fatalf("EnsureTopology with new limits: %v", err)
	}
	if _, err := updates.NextMsg(2 * time.Second); err != nil {
		t.Errorf("a changed MaxBytes sent no stream update advisory: %v", err)
	}

	s, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.MaxBytes != 1<<30 || cfg.Retention != jetstream.WorkQueuePolicy || cfg.Discard != jetstream.DiscardNew ||
		cfg.Storage != jetstream.FileStorage || cfg.MaxMsgSize != messaging.MaxMessageBytes || cfg.Duplicates < 2*time.Minute {
		t.Errorf("TELEMETRY config = %+v", cfg)
	}
	if strings.Join(cfg.Subjects, ",") != "telemetry.gyroscope,telemetry.gps,telemetry.photo" {
		t.Errorf("subjects = %v", cfg.Subjects)
	}
	dlq, err := js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := dlq.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != "dlq.telemetry.*" {
		t.Errorf("DLQ subjects = %v", got)
	}
	for _, typ := range models.Types {
		c, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(typ))
		if err != nil {
			t.Fatalf("consumer for %s: %v", typ, err)
		}
		cc := c.CachedInfo().Config
		if cc.FilterSubject != typ.Subject() || cc.AckPolicy != jetstream.AckExplicitPolicy ||
			cc.MaxDeliver != topo.MaxDeliver || cc.AckWait != topo.AckWait || len(cc.BackOff) != 0 {
			t.Errorf("consumer %s config = %+v", typ, cc)
		}
	}
}

func TestTopologyValidate(t *testing.T) {
	bad := messaging.DefaultTopology()
	bad.DuplicateWindow = time.Minute
	if err := bad.Validate(); err == nil {
		t.Error("a 1m duplicate window was accepted")
	}
	bad = messaging.DefaultTopology()
	bad.MaxDeliver = 1
	if err := bad.Validate(); err == nil {
		t.Error("MaxDeliver 1 was accepted")
	}
}

func TestPublishDeduplicatesOnMessageID(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.Publish(ctx, models.TypeGPS.Subject(), "same-id", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Publish(ctx, models.TypeGPS.Subject(), "other-id", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
}

func TestClaimIdempotencyKey(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	id, err := p.ClaimIdempotencyKey(ctx, "fleet-a", "gps", "k1", "id-1", "fp")
	if err != nil || id != "id-1" {
		t.Fatalf("first claim = %q, %v; want id-1", id, err)
	}
	id, err = p.ClaimIdempotencyKey(ctx, "fleet-a", "gps", "k1", "id-2", "fp")
	if err != nil || id != "id-1" {
		t.Fatalf("retry claim = %q, %v; want the first id", id, err)
	}
	// The key is scoped by API key name and by type.
	if id, _ := p.ClaimIdempotencyKey(ctx, "fleet-b", "gps", "k1", "id-3", "fp"); id != "id-3" {
		t.Errorf("another API key got %q, want its own id", id)
	}
	if id, _ := p.ClaimIdempotencyKey(ctx, "fleet-a", "gyroscope", "k1", "id-4", "fp"); id != "id-4" {
		t.Errorf("another type got %q, want its own id", id)
	}
	_, err = p.ClaimIdempotencyKey(ctx, "fleet-a", "gps", "k1", "id-5", "other body")
	if !ierr.Is(err, ierr.Conflict) {
		t.Errorf("same key, different body: err = %v, want Conflict", err)
	}
}

func TestPublishFailsFastWhenNATSIsDown(t *testing.T) {
	ns, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ns.Stop()
	start := time.Now()
	err = p.Publish(ctx, models.TypeGPS.Subject(), "id", []byte(`{}`))
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	// The publish deadline bounds it; a reconnect buffer would have made it
	// wait for the whole timeout or report a false success.
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("publish took %s with NATS down, want ≤ its 1s deadline", d)
	}
}

func TestPublishRefusedWhenStreamIsFull(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.MaxBytes = 4096
	_, _, js := setup(t, topo)
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(strings.Repeat("x", 1000))
	var full error
	for i := range 10 {
		if err := p.Publish(ctx, models.TypeGPS.Subject(), "m"+string(rune('a'+i)), payload); err != nil {
			full = err
			break
		}
	}
	if !ierr.Is(full, ierr.Unavailable) {
		t.Fatalf("publishing past MaxBytes: err = %v, want Unavailable", full)
	}
	before := streamMsgs(t, js, messaging.StreamName)
	if before == 0 || before >= 10 {
		t.Fatalf("stream holds %d messages", before)
	}
}

func TestCheckMaxPayload(t *testing.T) {
	ns := testenv.NATSWith(t, func(o *server.Options) { o.MaxPayload = 1 << 20 })
	nc, err := messaging.Connect(context.Background(), ns.URL, "t", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := messaging.CheckMaxPayload(nc); err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("1 MB server: err = %v, want a max_payload complaint", err)
	}
	big := testenv.NATS(t)
	nc2, err := messaging.Connect(context.Background(), big.URL, "t", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if err := messaging.CheckMaxPayload(nc2); err != nil {
		t.Fatalf("8 MiB server: %v", err)
	}
}

func TestConnectGivesUpWithUnavailable(t *testing.T) {
	_, err := messaging.Connect(context.Background(), "nats://127.0.0.1:1", "t", 200*time.Millisecond)
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}

func TestDeadLetterCopiesThenTerminates(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: models.TypeGPS.Subject(), Data: []byte("not json"),
		Header: nats.Header{jetstream.MsgIDHeader: []string{"poison-1"}}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := <-batch.Messages()
	if msg == nil {
		t.Fatal("no message fetched")
	}
	if err := newDLQ(t, js).DeadLetter(ctx, models.TypeGPS, msg, "invalid JSON"); err != nil {
		t.Fatal(err)
	}

	dlq, err := js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, messaging.DLQStreamName); n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
	raw, err := dlq.GetLastMsgForSubject(ctx, messaging.DLQSubject(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	h := raw.Header
	if string(raw.Data) != "not json" || h.Get(messaging.HeaderDLQReason) != "invalid JSON" ||
		h.Get(messaging.HeaderDLQSubject) != "telemetry.gps" || h.Get(messaging.HeaderDLQStreamSequence) != "1" ||
		h.Get(messaging.HeaderDLQDeliveries) != "1" {
		t.Errorf("dead letter = %q with headers %v", raw.Data, h)
	}
	// Terminated: the work queue is empty and nothing is redelivered.
	if n := streamMsgs(t, js, messaging.StreamName); n != 0 {
		t.Errorf("TELEMETRY still holds %d messages", n)
	}
	again, err := cons.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if m := <-again.Messages(); m != nil {
		t.Errorf("terminated message was redelivered: %q", m.Data())
	}
	if err := again.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("fetch error: %v", err)
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A worker that crashed after copying a message to the DLQ but before
// terminating it gets the message again; dead-lettering it again leaves one
// dead letter, not two.
func TestDeadLetterAfterACrashBeforeTermKeepsOneCopy(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.AckWait = time.Second
	_, _, js := setup(t, topo)
	ctx := context.Background()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: models.TypeGPS.Subject(), Data: []byte("not json"),
		Header: nats.Header{jetstream.MsgIDHeader: []string{"poison-2"}}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() jetstream.Msg {
		t.Helper()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		m := <-batch.Messages()
		if m == nil {
			t.Fatal("no message delivered")
		}
		return m
	}
	// First delivery: the copy reaches the DLQ (as DeadLetter publishes it),
	// then the worker dies before Term.
	first := fetch()
	md, _ := first.Metadata()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messaging.DLQSubject(models.TypeGPS), Data: first.Data(),
		Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("dlq-%s-%d", messaging.StreamName, md.Sequence.Stream)}}}); err != nil {
		t.Fatal(err)
	}
	// Redelivered after AckWait, dead-lettered again by the next worker.
	second := fetch()
	if err := newDLQ(t, js).DeadLetter(ctx, models.TypeGPS, second, "invalid JSON"); err != nil {
		t.Fatalf("DeadLetter after the crash: %v", err)
	}
	if n := streamMsgs(t, js, messaging.DLQStreamName); n != 1 {
		t.Errorf("DLQ holds %d messages, want 1", n)
	}
	// Term is sent without waiting for the server (as the worker does), so
	// the work-queue stream removes the message a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for streamMsgs(t, js, messaging.StreamName) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 0 {
		t.Errorf("TELEMETRY still holds %d messages", n)
	}
}
