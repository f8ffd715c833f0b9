package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
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

// A gyroscope or GPS message written field by field is models.Marshal's,
// byte for byte, whatever the numbers, times and strings; what the fast
// path cannot write exactly it leaves to models.Marshal.
func TestReadingMessageIsModelsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.98, -46.633308, 90, -180, 1e-6, 9.99999e-7, 1e-7, 1.5e-300,
		1e20, 1e21, 123456789012345678901234.0, math.MaxFloat64, math.SmallestNonzeroFloat64, 5e-324, 0.1 + 0.2}
	for range 2000 {
		floats = append(floats, (rng.Float64()-0.5)*math.Pow(10, float64(rng.IntN(60)-30)), float64(rng.IntN(1000)-500))
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", -3*3600), time.FixedZone("", 5*3600+45*60), time.FixedZone("", 30)}
	times := []time.Time{{}, time.Unix(0, 0), time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}
	strs := []string{"", "phone", "aa:bb:cc:dd:ee:ff", "truck-7.a_b", "<&>", `q"uote`, `back\slash`, "tab\t", "ümlaut", "\u2028", "\x7f"}
	fast := 0
	for i := range len(floats) {
		meta := models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: strs[i%len(strs)], DeviceID: strs[(i/3)%len(strs)],
			ReceivedAt: times[i%len(times)].In(zones[i%len(zones)]), RecordedAt: times[(i/2)%len(times)].In(zones[(i/5)%len(zones)])}
		f := func(k int) float64 { return floats[(i+k)%len(floats)] }
		for _, msg := range []message{
			&models.GPS{Meta: meta, Latitude: f(0), Longitude: f(7)},
			&models.Gyroscope{Meta: meta, X: f(0), Y: f(3), Z: f(11)},
		} {
			want, wantErr := models.Marshal(msg)
			got, err := encode(msg)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("%d: encode = %s, %v\nwant %s, %v", i, got, err, want, wantErr)
			}
			if _, ok := appendReading(nil, msg); ok {
				fast++
			}
		}
	}
	if fast == 0 {
		t.Error("no message took the fast path")
	}
	// What the API really publishes always takes it.
	g := &models.GPS{Meta: models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", DeviceID: "00:0a:95:9d:68:16",
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), RecordedAt: time.Unix(1764324000, 250_000_000)},
		Latitude: -23.55052, Longitude: -46.633308}
	for _, f := range floats {
		g.Latitude, g.Longitude = f, -f
		if _, ok := appendReading(nil, g); !ok {
			t.Fatalf("a GPS reading at %v did not take the fast path", f)
		}
	}
}

// The 202 body written by hand is json.Marshal's of Accepted.
func TestAcceptedBody(t *testing.T) {
	id := uuid.Must(uuid.NewV7())
	w := httptest.NewRecorder()
	writeAccepted(w, id)
	want, _ := json.Marshal(Accepted{ID: id.String(), Status: "accepted"})
	if w.Code != http.StatusAccepted || w.Body.String() != string(want)+"\n" ||
		w.Header().Get("Content-Length") != strconv.Itoa(len(want)+1) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("%d %v %q; want 202 %s", w.Code, w.Header(), w.Body, want)
	}
}
