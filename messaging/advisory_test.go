package messaging_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// TestNakWithDelayIsHonouredOnLaterDeliveries guards the consumer config:
// with a BackOff list, nats-server 2.10 brings a message nak'ed with a delay
// on its n-th delivery back only after BackOff[n-1]-AckWait more than asked,
// which broke the worker's retry schedule.
func TestNakWithDelayIsHonouredOnLaterDeliveries(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.AckWait = 3 * time.Second
	_, _, js := setup(t, topo)
	ctx := context.Background()
	if _, err := js.Publish(ctx, models.TypeGPS.Subject(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	for delivery := uint64(1); delivery <= 4; delivery++ {
		start := time.Now()
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(topo.AckWait-500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var got jetstream.Msg
		for m := range batch.Messages() {
			got = m
		}
		if got == nil {
			t.Fatalf("delivery %d did not come back within %s of a 100ms nak", delivery, time.Since(start).Round(time.Millisecond))
		}
		if md, _ := got.Metadata(); md.NumDelivered != delivery {
			t.Fatalf("delivery %d reported as %d", delivery, md.NumDelivered)
		}
		if err := got.NakWithDelay(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}
