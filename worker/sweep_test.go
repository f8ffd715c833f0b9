package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// The server gave up on a message and its advisory was lost (no worker ran,
// and it never reached TELEMETRY_EXHAUSTED): the worker's periodic sweep
// dead-letters the message, with its audit row, once the consumer's ack
// floor passes it, instead of leaving it in TELEMETRY for ever.
func TestSweepDeadLettersAnExhaustedMessageWhoseAdvisoryWasLost(t *testing.T) {
	t.Parallel()
	lost := gpsReading(1, 2)
	e := newExhaustedEnv(t, lost)
	e.cfg.DLQSweepInterval = 300 * time.Millisecond
	ctx := context.Background()
	// The pull after the last ack wait makes the server give up on it.
	cons, err := e.js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(e.cfg.Topology.AckWait)
	if _, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	adv, err := e.js.Stream(ctx, messaging.ExhaustedStreamName)
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(5*time.Second, "the advisory", func() bool {
		info, err := adv.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	if err := adv.Purge(ctx); err != nil { // lost
		t.Fatal(err)
	}

	e.start(worker.Options{})
	// A reading stored after it moves the ack floor past it.
	next := gpsReading(3, 4)
	e.publish(models.TypeGPS, next)
	e.waitFor(10*time.Second, "the swept dead letter", func() bool { return len(e.deadLetters()) == 1 })
	dl := e.deadLetters()[0]
	if !strings.HasPrefix(dl.Header.Get(messaging.HeaderDLQReason), messaging.SweepReason) ||
		dl.Header.Get(messaging.HeaderDLQDeliveries) != "2" || dl.Header.Get(messaging.HeaderDLQSubject) != "telemetry.gps" {
		t.Fatalf("dead letter %v", dl.Header)
	}
	e.waitFor(5*time.Second, "audit row", func() bool { return len(e.audit(lost.MessageID)) == 1 })
	if a := e.audit(lost.MessageID)[0]; a.Action != "message.dead_lettered" || a.Resource != "gps" ||
		!strings.HasPrefix(a.Details["reason"].(string), messaging.SweepReason) {
		t.Fatalf("audit %+v", a)
	}
	if n := e.count(`SELECT count(*) FROM gps WHERE message_id = $1`, lost.MessageID); n != 0 {
		t.Fatal("the exhausted message was stored")
	}
	if n := e.count(`SELECT count(*) FROM gps WHERE message_id = $1`, next.MessageID); n != 1 {
		t.Fatalf("the next reading stored %d times", n)
	}
	e.waitFor(5*time.Second, "TELEMETRY empty", func() bool { return e.streamMsgs() == 0 })
	if v := e.metric(`worker_dlq_swept_total{type="gps"}`); v != 1 {
		t.Errorf("worker_dlq_swept_total{type=gps} = %v, want 1", v)
	}
	if v := e.metric(`worker_messages_total{outcome="dead_lettered",type="gps"}`); v != 1 {
		t.Errorf("worker_messages_total{dead_lettered,gps} = %v, want 1", v)
	}
	if !strings.Contains(e.logs.String(), "sweep settled messages whose deliveries ran out") {
		t.Error("no log line for the sweep that found the message")
	}
}
