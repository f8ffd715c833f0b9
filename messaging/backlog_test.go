package messaging_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// OldestUnacked follows a type's oldest message through TELEMETRY: none in
// an empty stream, the first published while it waits (delivered or not),
// the next once the first is acknowledged; other types' messages do not
// count, and a clock behind the server's reads 0.
func TestOldestUnacked(t *testing.T) {
	t.Parallel()
	ns, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	stream, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	oldest := func(typ models.Type, now time.Time) (time.Duration, bool) {
		t.Helper()
		age, ok, err := messaging.OldestUnacked(ctx, stream, typ, now)
		if err != nil {
			t.Fatal(err)
		}
		return age, ok
	}
	publish := func(typ models.Type) time.Time {
		t.Helper()
		if _, err := js.Publish(ctx, typ.Subject(), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // the next publish is stamped strictly later
		return time.Now()
	}
	for _, typ := range models.Types {
		if age, ok := oldest(typ, time.Now()); ok || age != 0 {
			t.Fatalf("%s in an empty stream: %s, %v", typ, age, ok)
		}
	}

	t0 := time.Now()
	t1 := publish(models.TypeGyroscope)
	t2 := publish(models.TypeGPS) // the first GPS message, stamped in [t1, t2]
	t3 := publish(models.TypeGPS) // the second, in [t2, t3]
	now := t3.Add(10 * time.Minute)
	within := func(what string, age time.Duration, from, to time.Time) {
		t.Helper()
		if lo, hi := now.Sub(to), now.Sub(from); age < lo || age > hi {
			t.Errorf("%s: age %s, want between %s and %s", what, age, lo, hi)
		}
	}
	if age, ok := oldest(models.TypeGyroscope, now); !ok {
		t.Error("gyroscope: none")
	} else {
		within("gyroscope", age, t0, t1)
	}
	if age, ok := oldest(models.TypeGPS, now); !ok {
		t.Error("gps: none")
	} else {
		within("gps, both waiting", age, t1, t2)
	}
	if _, ok := oldest(models.TypePhoto, now); ok {
		t.Error("photo: a message, none was published")
	}

	// Delivered, not acknowledged: still the oldest. Acknowledged: gone.
	cons, err := stream.Consumer(ctx, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var first jetstream.Msg
	for m := range batch.Messages() {
		first = m
	}
	if first == nil {
		t.Fatalf("no GPS message delivered: %v", batch.Error())
	}
	if age, _ := oldest(models.TypeGPS, now); age < now.Sub(t2) {
		t.Errorf("gps, the first delivered but not acknowledged: age %s, want the first's (at least %s)", age, now.Sub(t2))
	}
	if err := first.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if age, ok := oldest(models.TypeGPS, now); !ok {
		t.Error("gps: none after the first was acknowledged")
	} else {
		within("gps, the first acknowledged", age, t2, t3)
	}

	if age, ok := oldest(models.TypeGyroscope, t0.Add(-time.Hour)); !ok || age != 0 {
		t.Errorf("a clock an hour behind the server's: %s, %v; want 0, true", age, ok)
	}

	ns.Stop()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := messaging.OldestUnacked(dctx, stream, models.TypeGPS, now); !ierr.Is(err, ierr.Unavailable) {
		t.Errorf("NATS down: err = %v, want unavailable", err)
	}
}
