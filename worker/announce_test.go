package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// announcement is one message received on events.stored.>.
type announcement struct {
	subject, readingID string
	data               []byte
	// row is the item built from the row in PostgreSQL when the
	// announcement arrived; nil when there was no row yet.
	row []byte
}

// subscribeAnnouncements subscribes to every announcement subject, as the
// API does, and reads each one's row as soon as it arrives.
func (e *testEnv) subscribeAnnouncements() <-chan announcement {
	e.t.Helper()
	out := make(chan announcement, 1000)
	sub, err := e.nc.Subscribe(models.StoredSubjectPrefix+">", func(m *nats.Msg) {
		a := announcement{subject: m.Subject, readingID: m.Header.Get(models.StoredReadingIDHeader), data: m.Data}
		a.row = e.itemJSON(models.Type(m.Subject[len(models.StoredSubjectPrefix):]), a.readingID)
		out <- a
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { sub.Unsubscribe() })
	return out
}

// itemJSON builds, from the row of message id in PostgreSQL, the JSON item
// the read API serves for it; nil when there is no row.
func (e *testEnv) itemJSON(t models.Type, id string) []byte {
	ctx := context.Background()
	var (
		item  any
		meta  models.ItemMeta
		err   error
		dests = []any{&meta.ID, &meta.DeviceID, &meta.Timestamp, &meta.ReceivedAt, &meta.StoredAt}
		cols  = "message_id, device_id, recorded_at, received_at, created_at"
	)
	utc := func() {
		meta.Timestamp, meta.ReceivedAt, meta.StoredAt = meta.Timestamp.UTC(), meta.ReceivedAt.UTC(), meta.StoredAt.UTC()
	}
	switch t {
	case models.TypeGPS:
		var it models.GPSItem
		err = e.db.QueryRow(ctx, `SELECT `+cols+`, latitude, longitude FROM gps WHERE message_id = $1`, id).
			Scan(append(dests, &it.Latitude, &it.Longitude)...)
		utc()
		it.ItemMeta = meta
		item = it
	case models.TypeGyroscope:
		var it models.GyroscopeItem
		err = e.db.QueryRow(ctx, `SELECT `+cols+`, x, y, z FROM gyroscope WHERE message_id = $1`, id).
			Scan(append(dests, &it.X, &it.Y, &it.Z)...)
		utc()
		it.ItemMeta = meta
		item = it
	case models.TypePhoto:
		var it models.PhotoItem
		r := &it.Recognition
		err = e.db.QueryRow(ctx, `SELECT `+cols+`, content_type, size_bytes, recognition_status, recognized, face_id, similarity
			FROM photo WHERE message_id = $1`, id).
			Scan(append(dests, &it.ContentType, &it.SizeBytes, &r.Status, &r.Recognized, &r.FaceID, &r.Similarity)...)
		utc()
		it.ImageURL = models.PhotoImageURL(meta.ID)
		it.ItemMeta = meta
		item = it
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	b, err := json.Marshal(item)
	if err != nil {
		panic(err)
	}
	return b
}

// TestStoredReadingsAreAnnouncedOnce: every reading stored is announced on
// events.stored.<type> once, after its row is committed, with the item the
// read API serves for it; a duplicate delivery is not announced again.
func TestStoredReadingsAreAnnouncedOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.start(worker.Options{})
	got := e.subscribeAnnouncements()

	sent := map[uuid.UUID]models.Type{}
	var gps []models.GPS
	for i := range 5 {
		g := gpsReading(float64(i), -float64(i))
		gps = append(gps, g)
		e.publish(models.TypeGPS, g)
		sent[g.MessageID] = models.TypeGPS
	}
	for i := range 3 {
		g := gyroReading(float64(i), 0.5, -0.25)
		e.publish(models.TypeGyroscope, g)
		sent[g.MessageID] = models.TypeGyroscope
	}
	photo := photoReading(readFixture(t, "grace_hopper.jpg"))
	e.publish(models.TypePhoto, photo)
	sent[photo.MessageID] = models.TypePhoto

	seen := map[uuid.UUID]bool{}
	check := func(a announcement) {
		t.Helper()
		id, err := uuid.Parse(a.readingID)
		if err != nil {
			t.Fatalf("announcement on %s has Reading-Id %q", a.subject, a.readingID)
		}
		typ, ok := sent[id]
		if !ok {
			t.Fatalf("announcement of %s, which was never sent", id)
		}
		if seen[id] {
			t.Fatalf("%s announced twice", id)
		}
		seen[id] = true
		if a.subject != typ.StoredSubject() {
			t.Errorf("%s announced on %s, want %s", id, a.subject, typ.StoredSubject())
		}
		if a.row == nil {
			t.Fatalf("%s announced before its row was committed", id)
		}
		if !bytes.Equal(a.data, a.row) {
			t.Errorf("%s announced as\n%s\nthe row is\n%s", id, a.data, a.row)
		}
	}
	deadline := time.After(10 * time.Second)
	for len(seen) < len(sent) {
		select {
		case a := <-got:
			check(a)
		case <-deadline:
			t.Fatalf("%d of %d readings announced within 10 s", len(seen), len(sent))
		}
	}
	for typ, n := range map[models.Type]int{models.TypeGPS: 5, models.TypeGyroscope: 3, models.TypePhoto: 1} {
		if v := e.metric(fmt.Sprintf(`worker_announcements_total{outcome="sent",type="%s"}`, typ)); v != float64(n) {
			t.Errorf("%s announcements sent = %v, want %d", typ, v, n)
		}
	}

	// Redeliveries (new Nats-Msg-Id, so JetStream's dedupe lets them
	// through) are stored as duplicates and announced no more.
	for i, v := range []any{gps[0], gps[3], photo} {
		data, _ := models.Marshal(v)
		typ := models.TypeGPS
		if i == 2 {
			typ = models.TypePhoto
		}
		e.publishRaw(typ.Subject(), messageID(v).String()+"-again", data)
	}
	e.waitFor(10*time.Second, "duplicates answered", func() bool {
		return e.metric(`worker_messages_total{outcome="duplicate",type="gps"}`) == 2 &&
			e.metric(`worker_messages_total{outcome="duplicate",type="photo"}`) == 1
	})
	// Anything the worker published before answering the duplicates has
	// reached this connection once the flush returns.
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		t.Fatalf("a duplicate delivery was announced: %s %s", a.subject, a.readingID)
	case <-time.After(200 * time.Millisecond):
	}
}
