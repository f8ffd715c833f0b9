package messaging_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// dlqState is TELEMETRY_DLQ's configuration and state, read afresh.
func dlqState(t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(context.Background(), messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// poisonPayload is dead letter i of a flood: mostly 1 MiB photos, every
// fourth one small, so the dead letters the bound discards differ in size.
func poisonPayload(i int) []byte {
	if i%4 == 3 {
		return bytes.Repeat([]byte{'s'}, 1<<10)
	}
	return bytes.Repeat([]byte{'p'}, 1<<20)
}

// A flood of poison messages three times the DLQ's bound: the DLQ never
// goes over it, the oldest dead letters make room for the newest, each one
// discarded is counted, and TELEMETRY still takes readings.
func TestDLQBoundDiscardsTheOldestDeadLettersAndCountsThem(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.DLQMaxBytes = messaging.MinDLQMaxBytes
	_, _, js := setup(t, topo)
	ctx := context.Background()
	d, reg := newDLQWithRegistry(t, js)

	const flood = 48 // ~36 MiB of dead letters for a 16 MiB bound
	var lastSeq uint64
	for i := range flood {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: models.TypePhoto.Subject(), Data: poisonPayload(i),
			Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprintf("poison-%d", i)}}})
		if err != nil {
			t.Fatalf("publish %d to TELEMETRY: %v", i, err)
		}
		lastSeq = ack.Sequence
		if err := d.DeadLetter(ctx, models.TypePhoto, fetchOne(t, js, models.TypePhoto), "undecodable image"); err != nil {
			t.Fatalf("dead letter %d: %v", i, err)
		}
		if st := dlqState(t, js).State; int64(st.Bytes) > topo.DLQMaxBytes {
			t.Fatalf("after dead letter %d the DLQ holds %d bytes, over its bound of %d", i, st.Bytes, topo.DLQMaxBytes)
		}
	}

	info := dlqState(t, js)
	if info.Config.MaxBytes != topo.DLQMaxBytes || info.Config.Discard != jetstream.DiscardNew {
		t.Errorf("DLQ config MaxBytes %d discard %v", info.Config.MaxBytes, info.Config.Discard)
	}
	present := info.State.Msgs
	discarded := metricValue(t, reg, "worker_dlq_discarded_total")
	t.Logf("%d dead letters written, %d kept (%d MiB), %v discarded", flood, present, info.State.Bytes>>20, discarded)
	if discarded == 0 || discarded != float64(flood)-float64(present) {
		t.Errorf("worker_dlq_discarded_total = %v, want %d written - %d kept = %d", discarded, flood, present, flood-int(present))
	}
	// The newest dead letter is kept; the oldest went.
	newest, err := js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	last, err := newest.GetLastMsgForSubject(ctx, messaging.DLQSubject(models.TypePhoto))
	if err != nil {
		t.Fatal(err)
	}
	if got := last.Header.Get(messaging.HeaderDLQStreamSequence); got != strconv.FormatUint(lastSeq, 10) {
		t.Errorf("newest dead letter is of TELEMETRY sequence %s, want %d", got, lastSeq)
	}
	if info.State.FirstSeq == 1 {
		t.Error("the oldest dead letter is still there")
	}
	// TELEMETRY is untouched by the flood.
	if _, err := js.Publish(ctx, models.TypePhoto.Subject(), poisonPayload(0)); err != nil {
		t.Errorf("TELEMETRY refused a publish after the flood: %v", err)
	}
}

// Two workers dead-lettering at once race for the room: whatever the
// interleaving, the DLQ stays under its bound and the two counters add up
// to exactly what left it.
func TestDLQBoundHoldsWithConcurrentWriters(t *testing.T) {
	topo := messaging.DefaultTopology()
	topo.DLQMaxBytes = messaging.MinDLQMaxBytes
	_, _, js := setup(t, topo)
	ctx := context.Background()
	d1, reg1 := newDLQWithRegistry(t, js)
	d2, reg2 := newDLQWithRegistry(t, js)

	const each = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for w, d := range []*messaging.DLQ{d1, d2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cons, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypePhoto))
			if err != nil {
				errs <- err
				return
			}
			for i := range each {
				if _, err := js.Publish(ctx, models.TypePhoto.Subject(), poisonPayload(i)); err != nil {
					errs <- err
					return
				}
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					errs <- err
					return
				}
				for m := range batch.Messages() {
					if err := d.DeadLetter(ctx, models.TypePhoto, m, fmt.Sprintf("writer %d", w)); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := dlqState(t, js).State
	discarded := metricValue(t, reg1, "worker_dlq_discarded_total") + metricValue(t, reg2, "worker_dlq_discarded_total")
	written := st.LastSeq // every dead letter got a sequence; none was deleted otherwise
	if int64(st.Bytes) > topo.DLQMaxBytes {
		t.Errorf("DLQ holds %d bytes, over its bound of %d", st.Bytes, topo.DLQMaxBytes)
	}
	if written != 2*each || discarded != float64(written-st.Msgs) {
		t.Errorf("%d written, %d kept, %v counted as discarded", written, st.Msgs, discarded)
	}
}

// A DLQ created before the bound existed (unbounded, discard-old) is
// bounded at the next start-up.
func TestEnsureTopologyBoundsAnExistingDLQ(t *testing.T) {
	ns := testenv.NATS(t)
	_, js := testenv.JetStream(t, ns.URL)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: messaging.DLQStreamName, Subjects: []string{messaging.DLQSubjectPrefix + "*"},
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardOld, MaxAge: 30 * 24 * time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	topo := messaging.DefaultTopology()
	if err := messaging.EnsureTopology(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	if cfg := dlqState(t, js).Config; cfg.MaxBytes != topo.DLQMaxBytes || cfg.Discard != jetstream.DiscardNew {
		t.Errorf("DLQ MaxBytes %d discard %v, want %d and discard-new", cfg.MaxBytes, cfg.Discard, topo.DLQMaxBytes)
	}
	bad := topo
	bad.DLQMaxBytes = messaging.MaxMessageBytes
	if err := bad.Validate(); err == nil {
		t.Error("a DLQ bound smaller than two of the largest messages was accepted")
	}
}
