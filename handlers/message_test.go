package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
)

// The photo message written in place is models.Marshal's, byte for byte,
// and the streamed fingerprint is the digest of those bytes: the worker
// reads what it always read, and a retry across versions of the API keeps
// its Idempotency-Key's fingerprint.
func TestPhotoMessageIsModelsMarshal(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.FixedZone("", -3*3600))
	var msgs []message
	for _, img := range [][]byte{nil, {0xff}, {0xff, 0xd8}, {0xff, 0xd8, 0xff}, []byte("<&>\"\\/+="), jpegFixture, pngFixture} {
		for _, id := range []uuid.UUID{{}, uuid.Must(uuid.NewV7())} {
			p := &models.Photo{Meta: models.Meta{MessageID: id, Actor: "phone", DeviceID: "aa:bb:cc:dd:ee:ff", RecordedAt: at},
				ContentType: models.ContentTypeJPEG, Image: img}
			if id != (uuid.UUID{}) {
				p.ReceivedAt = at.Add(time.Second)
			}
			msgs = append(msgs, p)
		}
	}
	msgs = append(msgs, &models.GPS{Meta: models.Meta{Actor: "phone", DeviceID: "d", RecordedAt: at}, Latitude: -23.5, Longitude: 0},
		&models.Gyroscope{Meta: models.Meta{DeviceID: "d"}, X: 1})
	for i, msg := range msgs {
		want, err := models.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encode(msg)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%d: encode =\n%.200s\nwant\n%.200s", i, got, want)
		}
		if len(got) != cap(got) && msg.Type() == models.TypePhoto && len(got) > 1<<10 {
			t.Errorf("%d: a photo message of %d bytes sits in %d", i, len(got), cap(got))
		}
		sum := sha256.Sum256(want)
		if fp, err := fingerprint(msg); err != nil || fp != hex.EncodeToString(sum[:]) {
			t.Errorf("%d: fingerprint = %s, %v; want the digest of models.Marshal", i, fp, err)
		}
	}
}

// Building a 5 MiB photo's message allocates the message once, and its
// fingerprint next to nothing (models.Marshal: about three times the
// message, each).
func TestPhotoMessageAllocations(t *testing.T) {
	img := append(append([]byte{}, jpegFixture...), make([]byte, 5<<20-len(jpegFixture))...)
	p := &models.Photo{Meta: models.Meta{DeviceID: "d"}, ContentType: models.ContentTypeJPEG, Image: img}
	var msg []byte
	encoded := allocated(func() { msg, _ = encode(p) })
	if limit := uint64(len(msg)) + 64<<10; encoded > limit {
		t.Errorf("encode allocates %d bytes for a %d-byte message", encoded, len(msg))
	}
	if digested := allocated(func() { _, _ = fingerprint(p) }); digested > 64<<10 {
		t.Errorf("fingerprint allocates %d bytes for a %d-byte message", digested, len(msg))
	}
}

// allocated is the heap allocated while f runs (other goroutines' too, so
// limits leave room for them).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
