package messaging_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// deadLetter publishes data on t's subject, fetches it from t's consumer as
// the worker does and dead-letters it with reason.
func deadLetter(t *testing.T, js jetstream.JetStream, typ models.Type, msgID string, data []byte, reason string) {
	t.Helper()
	ctx := context.Background()
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: typ.Subject(), Data: data, Header: nats.Header{
		jetstream.MsgIDHeader: []string{msgID},
		"Trace-Id":            []string{"trace-" + msgID},
	}}, jetstream.WithExpectStream(messaging.StreamName)); err != nil {
		t.Fatal(err)
	}
	msg := fetchOne(t, js, typ)
	if err := newDLQ(t, js).DeadLetter(ctx, typ, msg, reason); err != nil {
		t.Fatal(err)
	}
}

func fetchOne(t *testing.T, js jetstream.JetStream, typ models.Type) jetstream.Msg {
	t.Helper()
	cons, err := js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(typ))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	msg := <-batch.Messages()
	if msg == nil {
		t.Fatalf("no %s message fetched (%v)", typ, batch.Error())
	}
	return msg
}

func listDLQ(t *testing.T, js jetstream.JetStream, limit int) []messaging.DeadLetterInfo {
	t.Helper()
	list, err := messaging.ListDeadLetters(context.Background(), js, limit)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func seqs(list []messaging.DeadLetterInfo) []uint64 {
	out := make([]uint64, 0, len(list))
	for _, d := range list {
		out = append(out, d.Sequence)
	}
	return out
}

func TestListAndReplayDeadLetters(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	start := time.Now()
	// The largest body a photo message has: a 5 MiB image in base64 JSON.
	photo := bytes.Repeat([]byte("A"), messaging.MaxMessageBytes-64<<10)
	deadLetter(t, js, models.TypeGPS, "gps-1", []byte("not json"), "invalid JSON")
	deadLetter(t, js, models.TypeGyroscope, "gyro-1", []byte(`{"x":1}`), "exhausted 10 deliveries: db down")
	deadLetter(t, js, models.TypePhoto, "photo-1", photo, "not a JPEG or PNG")

	if _, err := messaging.ListDeadLetters(ctx, js, 0); !ierr.Is(err, ierr.Invalid) {
		t.Errorf("limit 0: err = %v, want Invalid", err)
	}
	list := listDLQ(t, js, 10)
	if got := seqs(list); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("dead letters = %v, want 1, 2, 3 (oldest first)", got)
	}
	want := []struct {
		subject, orig, reason string
		origSeq               uint64
		size                  int
	}{
		{"dlq.telemetry.gps", "telemetry.gps", "invalid JSON", 1, len("not json")},
		{"dlq.telemetry.gyroscope", "telemetry.gyroscope", "exhausted 10 deliveries: db down", 2, len(`{"x":1}`)},
		{"dlq.telemetry.photo", "telemetry.photo", "not a JPEG or PNG", 3, len(photo)},
	}
	for i, w := range want {
		d := list[i]
		if d.Subject != w.subject || d.OriginalSubject != w.orig || d.Reason != w.reason ||
			d.OriginalSequence != w.origSeq || d.Deliveries != 1 || d.Size != w.size ||
			d.DeadLetteredAt.Before(start.Add(-time.Second)) || d.DeadLetteredAt.After(time.Now()) {
			t.Errorf("dead letter %d = %+v, want %+v", i, d, w)
		}
	}
	if got := seqs(listDLQ(t, js, 2)); len(got) != 2 || got[1] != 2 {
		t.Errorf("limit 2 listed %v", got)
	}

	// Replay the middle one: back on TELEMETRY, deliverable to the worker,
	// with its body and its own headers, and gone from the DLQ.
	info, err := messaging.ReplayDeadLetter(ctx, js, 2)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sequence != 2 || info.OriginalSubject != "telemetry.gyroscope" || info.DeadLetteredAt.IsZero() {
		t.Errorf("replay returned %+v", info)
	}
	m := fetchOne(t, js, models.TypeGyroscope)
	h := m.Headers()
	if m.Subject() != "telemetry.gyroscope" || string(m.Data()) != `{"x":1}` || h.Get("Trace-Id") != "trace-gyro-1" ||
		!strings.HasPrefix(h.Get(jetstream.MsgIDHeader), "replay-TELEMETRY_DLQ-2-") {
		t.Errorf("replayed message = %s %q headers %v", m.Subject(), m.Data(), h)
	}
	for k := range h {
		if strings.HasPrefix(k, "Dlq-") {
			t.Errorf("replayed message kept header %s", k)
		}
	}
	if md, _ := m.Metadata(); md.NumDelivered != 1 {
		t.Errorf("replayed message delivered %d times, want a fresh message", md.NumDelivered)
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(listDLQ(t, js, 10)); len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("after replaying 2 the DLQ lists %v, want 1, 3", got)
	}
	if _, err := messaging.ReplayDeadLetter(ctx, js, 2); !ierr.Is(err, ierr.NotFound) {
		t.Errorf("second replay of 2: err = %v, want NotFound", err)
	}
	if _, err := messaging.ReplayDeadLetter(ctx, js, 0); !ierr.Is(err, ierr.Invalid) {
		t.Errorf("replay of 0: err = %v, want Invalid", err)
	}

	// The largest photo makes the round trip intact.
	if _, err := messaging.ReplayDeadLetter(ctx, js, 3); err != nil {
		t.Fatal(err)
	}
	if m := fetchOne(t, js, models.TypePhoto); m.Subject() != "telemetry.photo" || !bytes.Equal(m.Data(), photo) {
		t.Errorf("replayed photo: subject %s, %d bytes, want %d identical bytes", m.Subject(), len(m.Data()), len(photo))
	}
	if got := seqs(listDLQ(t, js, 10)); len(got) != 1 || got[0] != 1 {
		t.Errorf("DLQ lists %v, want 1", got)
	}
}

// A replay repeated after its delete failed (or by two operators at once)
// puts the message on TELEMETRY once.
func TestReplayDeadLetterIsDeduplicated(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	deadLetter(t, js, models.TypeGPS, "gps-1", []byte("not json"), "invalid JSON")
	dlq, err := js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// An earlier replay of dead letter 1 reached TELEMETRY; its delete did not happen.
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: models.TypeGPS.Subject(), Data: []byte("not json")},
		jetstream.WithMsgID(messaging.ReplayMsgID(1, raw.Time))); err != nil {
		t.Fatal(err)
	}
	if _, err := messaging.ReplayDeadLetter(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 1 {
		t.Errorf("TELEMETRY holds %d messages, want 1", n)
	}
	if n := streamMsgs(t, js, messaging.DLQStreamName); n != 0 {
		t.Errorf("DLQ holds %d messages, want 0", n)
	}
}

func TestReplayDeadLetterRefusesNonTelemetrySubjects(t *testing.T) {
	_, _, js := setup(t, messaging.DefaultTopology())
	ctx := context.Background()
	for _, orig := range []string{"dlq.telemetry.gps", "telemetry.unknown", "$JS.API.STREAM.DELETE.TELEMETRY", ""} {
		hdr := nats.Header{messaging.HeaderDLQReason: []string{"test"}}
		if orig != "" {
			hdr.Set(messaging.HeaderDLQSubject, orig)
		}
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: messaging.DLQSubject(models.TypeGPS), Header: hdr, Data: []byte("{}")})
		if err != nil {
			t.Fatal(err)
		}
		_, err = messaging.ReplayDeadLetter(ctx, js, ack.Sequence)
		if !ierr.Is(err, ierr.Invalid) {
			t.Errorf("original subject %q: err = %v, want Invalid", orig, err)
		}
	}
	if n := streamMsgs(t, js, messaging.DLQStreamName); n != 4 {
		t.Errorf("DLQ holds %d messages, want all 4 kept", n)
	}
	if n := streamMsgs(t, js, messaging.StreamName); n != 0 {
		t.Errorf("TELEMETRY holds %d messages, want 0", n)
	}
}
