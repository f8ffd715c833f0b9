package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
)

// Each endpoint: 202, then the exact values are in their table with one
// audit row naming the API key.
func TestReadingsLandInTheirTables(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()

	gyroID := s.accept("/telemetry/gyroscope", map[string]any{
		"device_id": "00-0A-95-9D-68-16", "timestamp": "2026-11-28T10:00:00.123456Z",
		"x": 0.98, "y": -0.45, "z": 0,
	})
	gpsID := s.accept("/telemetry/gps", map[string]any{
		"device_id": "truck-17", "timestamp": 1764324000.5,
		"latitude": -23.55052, "longitude": -46.633308,
	})
	photo := readFixture(t, "grace_hopper.jpg")
	photoID := s.accept("/telemetry/photo", map[string]any{
		"device_id": "truck-17", "timestamp": "2026-11-28T10:00:00-03:00",
		"photo": base64.StdEncoding.EncodeToString(photo),
	})

	s.waitCount(1, `SELECT count(*) FROM gyroscope WHERE message_id = $1`, gyroID)
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, gpsID)
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1`, photoID)

	ctx := context.Background()
	var dev string
	var x, y, z float64
	var rec time.Time
	if err := s.db.QueryRow(ctx, `SELECT device_id, x, y, z, recorded_at FROM gyroscope WHERE message_id = $1`, gyroID).
		Scan(&dev, &x, &y, &z, &rec); err != nil {
		t.Fatal(err)
	}
	if dev != "00:0a:95:9d:68:16" || x != 0.98 || y != -0.45 || z != 0 ||
		!rec.Equal(time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC)) {
		t.Errorf("gyroscope row = %s %v %v %v %s", dev, x, y, z, rec)
	}
	var lat, lon float64
	if err := s.db.QueryRow(ctx, `SELECT device_id, latitude, longitude, recorded_at FROM gps WHERE message_id = $1`, gpsID).
		Scan(&dev, &lat, &lon, &rec); err != nil {
		t.Fatal(err)
	}
	if dev != "truck-17" || lat != -23.55052 || lon != -46.633308 || !rec.Equal(time.Unix(1764324000, 5e8)) {
		t.Errorf("gps row = %s %v %v %s", dev, lat, lon, rec)
	}
	var ct, status, keyID string
	var size int
	var cipher []byte
	if err := s.db.QueryRow(ctx, `SELECT content_type, size_bytes, image_ciphertext, encryption_key_id, recognition_status, recorded_at
		FROM photo WHERE message_id = $1`, photoID).Scan(&ct, &size, &cipher, &keyID, &status, &rec); err != nil {
		t.Fatal(err)
	}
	if ct != "image/jpeg" || size != len(photo) || status != "new_face" ||
		!rec.Equal(time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)) {
		t.Errorf("photo row = %s %d %s %s", ct, size, status, rec)
	}
	if bytes.Contains(cipher, photo[:64]) {
		t.Error("the stored photo bytes contain the plaintext")
	}
	key, err := crypto.ParseKeys("", testKeyB64)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := crypto.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	mid := uuid.MustParse(photoID)
	plain, err := sealer.Open(keyID, cipher, mid[:])
	if err != nil || !bytes.Equal(plain, photo) {
		t.Errorf("decrypting the stored photo: err=%v, equal=%v", err, bytes.Equal(plain, photo))
	}

	for table, id := range map[string]string{"gyroscope": gyroID, "gps": gpsID, "photo": photoID} {
		var actor, action, resource string
		if err := s.db.QueryRow(ctx, `SELECT actor, action, resource FROM audit_log WHERE message_id = $1`, id).
			Scan(&actor, &action, &resource); err != nil {
			t.Fatalf("audit row of %s: %v", table, err)
		}
		if actor != "phones" || action != table+".stored" || resource != table {
			t.Errorf("audit of %s = %s %s %s", table, actor, action, resource)
		}
	}
	if n := s.count(`SELECT count(*) FROM audit_log`); n != 3 {
		t.Errorf("audit_log holds %d rows, want 3", n)
	}
}

// The worker is down while 1,000 readings are accepted; started, it stores
// every one of them exactly once.
func TestReadingsAcceptedWhileWorkerIsDownAreAllStoredOnce(t *testing.T) {
	s := newStack(t, nil)
	const n = 1000
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				body := map[string]any{"device_id": fmt.Sprintf("dev-%d", i%50), "timestamp": 1764324000 + i,
					"latitude": float64(i%180) - 90, "longitude": float64(i%360) - 180}
				status, out := s.post("/telemetry/gps", body, nil)
				if status != http.StatusAccepted {
					t.Errorf("reading %d: %d %v", i, status, out)
					return
				}
				ids <- out["id"].(string)
			}
		}()
	}
	wg.Wait()
	close(ids)
	if t.Failed() {
		t.FailNow()
	}
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct ids for %d accepted readings", len(seen), n)
	}

	s.startWorker()
	s.waitCount(n, `SELECT count(*) FROM gps`)
	s.waitCount(n, `SELECT count(*) FROM audit_log WHERE action = 'gps.stored'`)
	if d := s.count(`SELECT count(DISTINCT message_id) FROM gps`); d != n {
		t.Errorf("%d distinct message ids stored, want %d", d, n)
	}
	// Stop and restart: nothing is stored twice.
	s.stopWorker()
	s.startWorker()
	time.Sleep(300 * time.Millisecond)
	if c := s.count(`SELECT count(*) FROM gps`); c != n {
		t.Errorf("after a worker restart gps holds %d rows, want %d", c, n)
	}
}

// A client retry with the same Idempotency-Key gets the same id and the
// reading is stored once.
func TestIdempotencyKeyStoresOnce(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	body := map[string]any{"device_id": "truck-1", "timestamp": "2026-11-28T10:00:00Z", "x": 1, "y": 2, "z": 3}
	hdr := map[string]string{"Idempotency-Key": "reading-42"}
	st1, a := s.post("/telemetry/gyroscope", body, hdr)
	st2, b := s.post("/telemetry/gyroscope", body, hdr)
	if st1 != http.StatusAccepted || st2 != http.StatusAccepted || a["id"] != b["id"] {
		t.Fatalf("answers %d %v and %d %v, want two 202 with one id", st1, a, st2, b)
	}
	s.waitCount(1, `SELECT count(*) FROM gyroscope WHERE message_id = $1`, a["id"])
	time.Sleep(200 * time.Millisecond)
	if n := s.count(`SELECT count(*) FROM gyroscope`); n != 1 {
		t.Errorf("gyroscope holds %d rows, want 1", n)
	}
}

// Multipart photos travel the same path as JSON ones.
func TestMultipartPhotoIsStored(t *testing.T) {
	s := newStack(t, map[string]string{"REKOGNITION_COLLECTION_ID": ""})
	s.startWorker()
	img := readFixture(t, "coffee.png")
	status, out := s.postMultipart("AA:BB:CC:DD:EE:FF", "1764324000", img)
	if status != http.StatusAccepted {
		t.Fatalf("multipart photo: %d %v", status, out)
	}
	id := out["id"].(string)
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1 AND device_id = 'aa:bb:cc:dd:ee:ff'
		AND content_type = 'image/png' AND size_bytes = $2 AND recognition_status = 'disabled'`, id, len(img))
}

// The largest photo the contract allows (5 MiB decoded) travels the whole
// way, as base64 JSON: API, JetStream (8 MiB messages), Rekognition, the
// sealed row.
func TestLargestPhotoIsStored(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	img := readFixture(t, "grace_hopper.jpg")
	img = append(img, bytes.Repeat([]byte{0}, 5<<20-len(img))...) // trailing bytes after the JPEG's end
	id := s.accept("/telemetry/photo", map[string]any{"device_id": "cam-big", "timestamp": "2026-11-28T10:00:00Z",
		"photo": base64.StdEncoding.EncodeToString(img)})
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1 AND size_bytes = $2
		AND octet_length(image_ciphertext) = $2 + 28 AND recognition_status = 'new_face'`, id, 5<<20)
	status, out := s.post("/telemetry/photo", map[string]any{"device_id": "cam-big", "timestamp": "2026-11-28T10:00:00Z",
		"photo": base64.StdEncoding.EncodeToString(append(img, 0))}, nil)
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("5 MiB + 1 byte: %d %v, want 413", status, out)
	}
}

// Competing workers share the queues: both take readings, and every reading
// is stored exactly once whichever worker takes it.
func TestTwoWorkersStoreEachReadingOnce(t *testing.T) {
	s := newStack(t, nil)
	var admins []string
	for range 2 {
		port, err := localpg.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		s.env["ADMIN_ADDR"] = fmt.Sprintf("127.0.0.1:%d", port)
		admins = append(admins, s.env["ADMIN_ADDR"])
		s.startWorker()
	}
	const n = 600
	for i := range n {
		body := map[string]any{"device_id": fmt.Sprintf("dev-%d", i%7), "timestamp": 1764324000 + i, "x": i, "y": -i, "z": 0.5}
		s.accept("/telemetry/gyroscope", body)
	}
	s.waitCount(n, `SELECT count(*) FROM gyroscope`)
	s.waitCount(n, `SELECT count(*) FROM audit_log WHERE action = 'gyroscope.stored'`)

	// Each worker's own count of stored readings: both worked, and together
	// they stored each reading once (the unique message_id alone would hide
	// a double store as a "duplicate").
	total := 0
	for _, addr := range admins {
		stored := scrapeCounter(t, "http://"+addr+"/metrics", `worker_messages_total{outcome="stored",type="gyroscope"}`)
		if stored == 0 {
			t.Errorf("worker %s stored nothing: the queue was not shared", addr)
		}
		total += stored
	}
	if total != n {
		t.Errorf("the workers stored %d readings in all, want %d", total, n)
	}
	if d := s.dlqCount(); d != 0 {
		t.Errorf("%d dead letters with two workers, want 0", d)
	}
}

// scrapeCounter reads one sample of a Prometheus text exposition.
func scrapeCounter(t *testing.T, url, series string) int {
	t.Helper()
	resp, err := openapitest.Client(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return int(f)
		}
	}
	return 0
}

// NATS restarts under a running system: readings accepted before and after
// are all stored, once; the API and the worker reconnect on their own.
func TestNATSRestartLosesNothing(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	post := func(from, to int) {
		for i := from; i < to; i++ {
			s.accept("/telemetry/gps", map[string]any{"device_id": "truck-9", "timestamp": 1764324000 + i,
				"latitude": 10, "longitude": float64(i % 180)})
		}
	}
	post(0, 100)
	s.waitCount(100, `SELECT count(*) FROM gps`)

	s.nats.Restart(t)
	// The API answers 503 until its connection is back, then 202 again.
	s.eventually("API accepting after the restart", func() (bool, string) {
		status, out := s.post("/telemetry/gps", map[string]any{"device_id": "probe", "timestamp": 1764324000,
			"latitude": 0, "longitude": 0}, map[string]string{"Idempotency-Key": "probe-after-restart"})
		return status == http.StatusAccepted, fmt.Sprint(status, out)
	})
	post(100, 200)
	s.waitCount(200, `SELECT count(*) FROM gps WHERE device_id = 'truck-9'`)
	s.waitCount(1, `SELECT count(*) FROM gps WHERE device_id = 'probe'`)
	time.Sleep(300 * time.Millisecond)
	if c := s.count(`SELECT count(*) FROM gps`); c != 201 {
		t.Errorf("gps holds %d rows, want 201", c)
	}
}
