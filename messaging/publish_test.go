package messaging_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// Without a message id nothing is de-duplicated: the same bytes published
// twice are two messages, neither with a Nats-Msg-Id (exactly-once then
// rests on the worker's unique message_id, see worker's tests).
func TestPublishWithoutMessageIDIsNotDeduplicated(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.Publish(ctx, models.TypeGPS.Subject(), "", []byte(`{"same":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	st, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, models.TypeGPS.Subject())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Header) != 0 {
		t.Errorf("message headers = %v, want none", m.Header)
	}
}

// PublishAll answers for every message: all stored, or, when the stream
// fills part-way, exactly the stored ones without an error.
func TestPublishAll(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.MaxBytes = 8 << 10
	_, _, js := setup(t, topo)
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []messaging.Outgoing
	for i := range 5 {
		msgs = append(msgs, messaging.Outgoing{Subject: models.TypeGPS.Subject(), MsgID: "a-" + strconv.Itoa(i), Data: []byte(`{}`)})
	}
	msgs = append(msgs, messaging.Outgoing{Subject: models.TypeGPS.Subject(), MsgID: "a-0", Data: []byte(`{}`)}) // a repeat: dropped, not an error
	for i, err := range p.PublishAll(ctx, msgs) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 5 {
		t.Fatalf("stream holds %d messages, want 5", n)
	}

	msgs = msgs[:0]
	for range 20 {
		msgs = append(msgs, messaging.Outgoing{Subject: models.TypeGPS.Subject(), Data: []byte(strings.Repeat("x", 1000))})
	}
	stored := 0
	for _, err := range p.PublishAll(ctx, msgs) {
		switch {
		case err == nil:
			stored++
		case !ierr.Is(err, ierr.Unavailable):
			t.Errorf("err = %v, want Unavailable", err)
		}
	}
	if stored == 0 || stored == len(msgs) {
		t.Fatalf("%d of %d stored past MaxBytes, want some", stored, len(msgs))
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != uint64(5+stored) {
		t.Errorf("stream holds %d messages, want %d", n, 5+stored)
	}
}

// A subject no stream takes, an ended context, a dead server: each is
// Unavailable.
func TestPublishFailures(t *testing.T) {
	ns, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, "nowhere.gps", "", []byte(`{}`)); !ierr.Is(err, ierr.Unavailable) {
		t.Errorf("no stream: err = %v, want Unavailable", err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Publish(ended, models.TypeGPS.Subject(), "", []byte(`{}`)); !ierr.Is(err, ierr.Unavailable) {
		t.Errorf("ended context: err = %v, want Unavailable", err)
	}
	ns.Stop()
	msgs := []messaging.Outgoing{{Subject: models.TypeGPS.Subject(), Data: []byte(`{}`)}, {Subject: models.TypeGyroscope.Subject(), Data: []byte(`{}`)}}
	for i, err := range p.PublishAll(ctx, msgs) {
		if !ierr.Is(err, ierr.Unavailable) {
			t.Errorf("NATS down, message %d: err = %v, want Unavailable", i, err)
		}
	}
}

// The publish timeout bounds a whole publish, the wait for a pending slot
// included: the ack's own timer starts only once the message has a slot,
// so without that a publish that first waited for one (a JetStream that
// does not answer) took up to twice the timeout. A caller with no deadline
// of its own (the API's requests without an Idempotency-Key) relies on it.
func TestPublishTimeoutBoundsTheSlotWaitAndTheAck(t *testing.T) {
	_, nc, js := setup(t, messaging.DefaultTopology())
	// A subscriber that never answers: no "no responders", no ack.
	sub, err := nc.SubscribeSync("silent.gps")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	const timeout = time.Second
	ctx := context.Background()
	p, err := messaging.NewPublisher(ctx, js, timeout)
	if err != nil {
		t.Fatal(err)
	}
	// Every pending slot taken by a publish whose ack never comes.
	fill := make([]messaging.Outgoing, messaging.MaxPendingPublishes)
	for i := range fill {
		fill[i] = messaging.Outgoing{Subject: "silent.gps", Data: []byte(`{}`)}
	}
	filled := make(chan []error, 1)
	go func() { filled <- p.PublishAll(ctx, fill) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _, _ := sub.Pending(); n == len(fill) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the filling publishes did not all arrive")
		}
		time.Sleep(5 * time.Millisecond)
	}

	begin := time.Now()
	err = p.Publish(ctx, "silent.gps", "", []byte(`{}`))
	took := time.Since(begin)
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	// It waits for a slot until the first acks time out (about the
	// timeout after they were sent), then for its own ack only what is
	// left of its timeout: about one timeout in all, where the two waits
	// one after the other take about two.
	if took > timeout*8/5 {
		t.Errorf("publish failed after %s, want within about the timeout %s", took, timeout)
	}
	for i, err := range <-filled {
		if !ierr.Is(err, ierr.Unavailable) {
			t.Fatalf("filling publish %d: err = %v, want Unavailable", i, err)
		}
	}
}
