package messaging_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// exhaustTopology allows two deliveries of one second each.
func exhaustTopology() messaging.TopologyConfig {
	topo := messaging.DefaultTopology()
	topo.AckWait = time.Second
	topo.MaxDeliver = 2
	return topo
}

// fetchAll fetches up to n messages of cons, waiting at most wait.
func fetchAll(t *testing.T, cons jetstream.Consumer, n int, wait time.Duration) []jetstream.Msg {
	t.Helper()
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	return out
}

// runOutOfDeliveries lets "workers" take the n GPS messages waiting for
// delivery twice without answering (a worker that crashes on them), then
// pulls once more: nats-server 2.10 gives up on a message at the next pull
// after its last ack wait, and announces it then. It returns what the first
// fetch got, for the caller to answer some of them.
func runOutOfDeliveries(t *testing.T, js jetstream.JetStream, n int) []jetstream.Msg {
	t.Helper()
	cons, err := js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	first := fetchAll(t, cons, n, 2*time.Second)
	if len(first) != n {
		t.Fatalf("first delivery: %d of %d messages", len(first), n)
	}
	return first
}

// finishRunningOut is the second half of runOutOfDeliveries: the second
// delivery of the want messages not answered, then the pull that makes the
// server give up on them; it waits for their advisories in
// TELEMETRY_EXHAUSTED.
func finishRunningOut(t *testing.T, js jetstream.JetStream, want int) {
	t.Helper()
	cons, err := js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, cons, want, 3*time.Second); len(got) != want {
		t.Fatalf("second delivery: %d of %d messages", len(got), want)
	}
	if got := fetchAll(t, cons, 1, 1500*time.Millisecond); len(got) != 0 {
		t.Fatalf("a message was delivered a third time (MaxDeliver 2)")
	}
	waitFor(t, 5*time.Second, "max-deliveries advisories kept", func() bool {
		return streamMsgs(t, js, messaging.ExhaustedStreamName) == uint64(want)
	})
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func publishGPS(t *testing.T, js jetstream.JetStream, data string) uint64 {
	t.Helper()
	ack, err := js.Publish(context.Background(), models.TypeGPS.Subject(), []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func dlqMessages(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(messaging.DLQSubjectPrefix+"*"))
		if err != nil {
			return out
		}
		out = append(out, m)
		seq = m.Sequence
	}
}

// The server announced a message's end while no worker was watching (the
// worker crash-looping on it is the usual reason), and the first attempt to
// copy it fails: the announcement waits in TELEMETRY_EXHAUSTED and is
// retried until the dead letter is written.
func TestWatchExhaustedHandlesAdvisoriesSentWhileNoWorkerRan(t *testing.T) {
	topo := exhaustTopology()
	_, _, js := setup(t, topo)
	ctx := context.Background()
	d := newDLQ(t, js)
	x := publishGPS(t, js, `{"n":1}`)
	runOutOfDeliveries(t, js, 1)
	finishRunningOut(t, js, 1)

	// The DLQ is unusable when a worker first sees the advisory.
	if err := js.DeleteStream(ctx, messaging.DLQStreamName); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		failed int
		dead   []messaging.Exhausted
	)
	notStored := func(context.Context, models.Type, []byte) (bool, error) { return false, nil }
	cc, err := d.WatchExhausted(ctx, notStored, func(e messaging.Exhausted) {
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, e)
	}, func(error) {
		mu.Lock()
		defer mu.Unlock()
		failed++
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	waitFor(t, 5*time.Second, "a failed copy reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return failed > 0
	})
	if n := streamMsgs(t, js, messaging.StreamName); n != 1 {
		t.Fatalf("TELEMETRY holds %d messages after a failed copy, want the message kept", n)
	}
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil { // the DLQ is back
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the retried advisory dead-letters the message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(dead) == 1
	})
	dl := dlqMessages(t, js)
	if len(dl) != 1 || dl[0].Header.Get(messaging.HeaderDLQStreamSequence) != strconv.FormatUint(x, 10) ||
		!strings.Contains(dl[0].Header.Get(messaging.HeaderDLQReason), "without an acknowledgement") ||
		dl[0].Header.Get(messaging.HeaderDLQDeliveries) != "2" || string(dl[0].Data) != `{"n":1}` {
		t.Fatalf("dead letters %v", dl)
	}
	waitFor(t, 5*time.Second, "TELEMETRY and TELEMETRY_EXHAUSTED empty", func() bool {
		return streamMsgs(t, js, messaging.StreamName) == 0 && streamMsgs(t, js, messaging.ExhaustedStreamName) == 0
	})
}

// Advisories lost: the sweep finds the messages the consumer gave up on once
// its ack floor passes them, dead-letters them (or, stored after all, only
// removes them), and never touches a message still being retried.
func TestSweepSettlesExhaustedMessagesBelowTheAckFloor(t *testing.T) {
	_, _, js := setup(t, exhaustTopology())
	ctx := context.Background()
	d, reg := newDLQWithRegistry(t, js)
	storedPayload := []byte(`{"n":"stored after all"}`)
	x1 := publishGPS(t, js, `{"n":1}`)
	publishGPS(t, js, string(storedPayload))
	r := publishGPS(t, js, `{"n":"retried"}`)

	first := runOutOfDeliveries(t, js, 3)
	var retried jetstream.Msg
	for _, m := range first {
		if md, _ := m.Metadata(); md.Sequence.Stream == r {
			retried = m
			if err := m.NakWithDelay(time.Minute); err != nil { // a transient failure, retried later
				t.Fatal(err)
			}
		}
	}
	finishRunningOut(t, js, 2)
	// No worker ran and the advisories were lost.
	adv, err := js.Stream(ctx, messaging.ExhaustedStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := adv.Purge(ctx); err != nil {
		t.Fatal(err)
	}

	stored := func(_ context.Context, _ models.Type, data []byte) (bool, error) {
		return bytes.Equal(data, storedPayload), nil
	}
	var swept []messaging.Exhausted
	onDead := func(e messaging.Exhausted) { swept = append(swept, e) }
	// The retried message holds the ack floor below the other two
	// (nats-server 2.10 moves it only across acknowledgements): nothing is
	// touched yet, the retried message least of all.
	if found, _, err := d.Sweep(ctx, stored, onDead); err != nil || found != 0 {
		t.Fatalf("sweep with a message pending: found %d, err %v; want nothing", found, err)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 3 {
		t.Fatalf("TELEMETRY holds %d messages, want all 3", n)
	}
	if n := streamMsgs(t, js, messaging.DLQStreamName); n != 0 {
		t.Fatalf("DLQ holds %d messages, want 0", n)
	}

	// Its retry succeeds; the floor passes the exhausted two. (The client
	// refuses a second answer to one delivery, so the ack is sent by hand.)
	if _, err := js.Conn().Request(retried.Reply(), []byte("+ACK"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	found, dead, err := d.Sweep(ctx, stored, onDead)
	if err != nil || found != 2 || dead != 1 {
		t.Fatalf("sweep: found %d, dead-lettered %d, err %v; want 2 and 1", found, dead, err)
	}
	dl := dlqMessages(t, js)
	if len(dl) != 1 || dl[0].Header.Get(messaging.HeaderDLQStreamSequence) != strconv.FormatUint(x1, 10) ||
		!strings.HasPrefix(dl[0].Header.Get(messaging.HeaderDLQReason), messaging.SweepReason) ||
		dl[0].Header.Get(messaging.HeaderDLQDeliveries) != "2" || string(dl[0].Data) != `{"n":1}` {
		t.Fatalf("dead letters %v", dl)
	}
	if len(swept) != 1 || swept[0].Sequence != x1 || swept[0].Type != models.TypeGPS {
		t.Errorf("reported %+v", swept)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 0 {
		t.Errorf("TELEMETRY holds %d messages, want 0", n)
	}
	if v := metricValue(t, reg, "worker_dlq_swept_total", "type", "gps"); v != 1 {
		t.Errorf("worker_dlq_swept_total{type=gps} = %v, want 1", v)
	}
	if found, _, err := d.Sweep(ctx, stored, onDead); err != nil || found != 0 {
		t.Errorf("second sweep: found %d, err %v; want nothing", found, err)
	}
}
