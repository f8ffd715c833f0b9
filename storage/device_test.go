package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// summaryDrift counts the devices whose row in device differs from the
// summary computed from the data tables (as migration 0002's backfill
// computes it), either way; it must always be 0.
func summaryDrift(t testing.TB, st *storage.Store) int {
	t.Helper()
	return count(t, st, `
		WITH per_type AS (
			SELECT 'gyroscope' AS t, device_id, min(recorded_at) AS first_seen, max(recorded_at) AS last_seen, count(*) AS n FROM gyroscope GROUP BY device_id
			UNION ALL SELECT 'gps', device_id, min(recorded_at), max(recorded_at), count(*) FROM gps GROUP BY device_id
			UNION ALL SELECT 'photo', device_id, min(recorded_at), max(recorded_at), count(*) FROM photo GROUP BY device_id
		), expected AS (
			SELECT s.device_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen,
				coalesce(sum(n) FILTER (WHERE t = 'gyroscope'), 0)::bigint AS gyroscope_count,
				coalesce(sum(n) FILTER (WHERE t = 'gps'), 0)::bigint AS gps_count,
				coalesce(sum(n) FILTER (WHERE t = 'photo'), 0)::bigint AS photo_count,
				g.latitude, g.longitude, g.recorded_at
			FROM per_type s LEFT JOIN (
				SELECT DISTINCT ON (device_id) device_id, latitude, longitude, recorded_at
				FROM gps ORDER BY device_id, recorded_at DESC, id DESC
			) g USING (device_id)
			GROUP BY s.device_id, g.latitude, g.longitude, g.recorded_at
		), actual AS (
			SELECT device_id, first_seen, last_seen, gyroscope_count, gps_count, photo_count,
				last_latitude, last_longitude, last_position_at FROM device
		)
		SELECT count(*) FROM ((TABLE expected EXCEPT TABLE actual) UNION ALL (TABLE actual EXCEPT TABLE expected)) diff`)
}

type deviceRow struct {
	firstSeen, lastSeen time.Time
	gyro, gps, photo    int64
	lat, lon            *float64
	positionAt          *time.Time
}

func device(t *testing.T, st *storage.Store, id string) deviceRow {
	t.Helper()
	var d deviceRow
	err := st.Pool().QueryRow(context.Background(), `SELECT first_seen, last_seen, gyroscope_count, gps_count, photo_count,
		last_latitude, last_longitude, last_position_at FROM device WHERE device_id = $1`, id).
		Scan(&d.firstSeen, &d.lastSeen, &d.gyro, &d.gps, &d.photo, &d.lat, &d.lon, &d.positionAt)
	if err != nil {
		t.Fatalf("device %s: %v", id, err)
	}
	return d
}

func fix(device string, at time.Time, lat, lon float64) models.GPS {
	m := meta(0)
	m.DeviceID, m.RecordedAt = device, at
	return models.GPS{Meta: m, Latitude: lat, Longitude: lon}
}

func TestDeviceSummaryCountsEachStoredReadingOnce(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	const a, b = "00:0a:95:9d:68:16", "device-b"

	gps := gpsBatch(4) // device a, t0-0.5s … t0+2.5s
	gps = append(gps, gps[1], fix(b, t0.Add(time.Hour), 1, 2))
	if _, err := st.InsertGPS(ctx, gps); err != nil {
		t.Fatal(err)
	}
	// A redelivered batch: two stored fixes and one new.
	if _, err := st.InsertGPS(ctx, []models.GPS{gps[0], gps[3], fix(a, t0.Add(-time.Minute), 5, 6)}); err != nil {
		t.Fatal(err)
	}
	gyro := []models.Gyroscope{{Meta: meta(10), X: 1}, {Meta: meta(11), Y: 1}}
	gyro[1].DeviceID = b
	for range 2 {
		if _, err := st.InsertGyroscope(ctx, gyro); err != nil {
			t.Fatal(err)
		}
	}
	p := storage.Photo{Meta: meta(20), ContentType: models.ContentTypeJPEG, SizeBytes: 4,
		Ciphertext: make([]byte, 32), KeyID: "k1", RecognitionStatus: "disabled"}
	p.DeviceID = "device-c"
	for range 2 {
		if _, _, err := st.InsertPhoto(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	da := device(t, st, a)
	if da.gps != 5 || da.gyro != 1 || da.photo != 0 {
		t.Errorf("device a counts gps=%d gyroscope=%d photo=%d, want 5 1 0", da.gps, da.gyro, da.photo)
	}
	if !da.firstSeen.Equal(t0.Add(-time.Minute)) || !da.lastSeen.Equal(gyro[0].RecordedAt) {
		t.Errorf("device a seen %v … %v, want %v … %v", da.firstSeen, da.lastSeen, t0.Add(-time.Minute), gyro[0].RecordedAt)
	}
	if db := device(t, st, b); db.gps != 1 || db.gyro != 1 || !db.firstSeen.Equal(gyro[1].RecordedAt) || !db.lastSeen.Equal(t0.Add(time.Hour)) {
		t.Errorf("device b = %+v", db)
	}
	dc := device(t, st, "device-c")
	if dc.photo != 1 || dc.gps != 0 || dc.lat != nil || dc.positionAt != nil || !dc.firstSeen.Equal(p.RecordedAt) {
		t.Errorf("device c = %+v, want one photo and no position", dc)
	}
	if n := summaryDrift(t, st); n != 0 {
		t.Fatalf("%d device rows differ from the data tables", n)
	}
}

func TestDeviceLastPositionIsTheNewestFix(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := context.Background()
	const id = "dev-1"
	insert := func(fixes ...models.GPS) {
		t.Helper()
		if _, err := st.InsertGPS(ctx, fixes); err != nil {
			t.Fatal(err)
		}
	}
	want := func(lat, lon float64, at time.Time) {
		t.Helper()
		d := device(t, st, id)
		if d.lat == nil || *d.lat != lat || *d.lon != lon || !d.positionAt.Equal(at) {
			t.Fatalf("last position %v %v at %v, want %v %v at %v", d.lat, d.lon, d.positionAt, lat, lon, at)
		}
	}

	// A device first seen by its gyroscope has no position yet.
	g := models.Gyroscope{Meta: meta(0)}
	g.DeviceID = id
	if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{g}); err != nil {
		t.Fatal(err)
	}
	if d := device(t, st, id); d.lat != nil || d.positionAt != nil {
		t.Fatalf("position %v before any fix", d.lat)
	}
	insert(fix(id, t0.Add(10*time.Second), 10, 10))
	want(10, 10, t0.Add(10*time.Second))
	// A late fix (older than the stored one) is counted but does not move
	// the device back.
	insert(fix(id, t0.Add(5*time.Second), 5, 5))
	want(10, 10, t0.Add(10*time.Second))
	// In one batch, the latest fix wins whatever its place in the batch.
	insert(fix(id, t0.Add(20*time.Second), 20, 20), fix(id, t0.Add(15*time.Second), 15, 15), fix(id, t0.Add(30*time.Second), 30, 30), fix(id, t0.Add(25*time.Second), 25, 25))
	want(30, 30, t0.Add(30*time.Second))
	// At the same timestamp, the fix stored last wins (the track ends there too).
	insert(fix(id, t0.Add(30*time.Second), 31, 31))
	want(31, 31, t0.Add(30*time.Second))
	// A redelivered old fix changes nothing.
	old := fix(id, t0.Add(40*time.Second), 40, 40)
	insert(old)
	insert(fix(id, t0.Add(50*time.Second), 50, 50))
	insert(old)
	want(50, 50, t0.Add(50*time.Second))

	if d := device(t, st, id); d.gps != 9 || d.gyro != 1 {
		t.Fatalf("counts gps=%d gyroscope=%d, want 9 1", d.gps, d.gyro)
	}
	if n := summaryDrift(t, st); n != 0 {
		t.Fatalf("%d device rows differ from the data tables", n)
	}
}

// TestConcurrentBatchesOnOverlappingDevices runs GPS and gyroscope batches
// from several goroutines at once, every batch touching the same devices in
// a shuffled order and redelivering part of an earlier batch: the device
// upserts must neither deadlock nor lose or double a count.
func TestConcurrentBatchesOnOverlappingDevices(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const (
		writers = 4 // two GPS, two gyroscope
		rounds  = 40
		perRow  = 60
		devices = 12
	)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var prevGPS []models.GPS
			var prevGyro []models.Gyroscope
			for round := range rounds {
				n := perRow
				devs := r.Perm(devices)
				if w%2 == 0 {
					batch := make([]models.GPS, 0, n+n/2)
					for i := range n {
						at := t0.Add(time.Duration(r.IntN(3600)) * time.Second)
						batch = append(batch, fix(fmt.Sprintf("dev-%02d", devs[i%devices]), at, float64(w), float64(round)))
					}
					batch = append(batch, prevGPS[:min(len(prevGPS), n/2)]...) // redelivered
					r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
					if _, err := st.InsertGPS(ctx, batch); err != nil {
						errs <- fmt.Errorf("gps writer %d round %d: %w", w, round, err)
						return
					}
					prevGPS = batch
					continue
				}
				batch := make([]models.Gyroscope, 0, n+n/2)
				for i := range n {
					m := meta(r.IntN(3600))
					m.DeviceID = fmt.Sprintf("dev-%02d", devs[i%devices])
					batch = append(batch, models.Gyroscope{Meta: m, X: float64(w)})
				}
				batch = append(batch, prevGyro[:min(len(prevGyro), n/2)]...)
				r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				if _, err := st.InsertGyroscope(ctx, batch); err != nil {
					errs <- fmt.Errorf("gyroscope writer %d round %d: %w", w, round, err)
					return
				}
				prevGyro = batch
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	const perType = writers / 2 * rounds * perRow
	if n := count(t, st, `SELECT sum(gps_count)::int FROM device`); n != perType {
		t.Errorf("sum of gps_count = %d, want %d", n, perType)
	}
	if n := count(t, st, `SELECT sum(gyroscope_count)::int FROM device`); n != perType {
		t.Errorf("sum of gyroscope_count = %d, want %d", n, perType)
	}
	if n := summaryDrift(t, st); n != 0 {
		t.Fatalf("%d device rows differ from the data tables", n)
	}
}

// TestInsertReturnsTheItemTheReadAPIServes: the worker announces what the
// Insert methods return, and a client that reads the reading back must get
// the same item.
func TestInsertReturnsTheItemTheReadAPIServes(t *testing.T) {
	t.Parallel()
	st, dsn := newStore(t)
	ctx := context.Background()
	r, err := storage.OpenReader(ctx, dsn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	gps, err := st.InsertGPS(ctx, gpsBatch(3))
	if err != nil || len(gps) != 3 {
		t.Fatalf("InsertGPS = %d items, %v", len(gps), err)
	}
	for _, it := range gps {
		got, err := r.GPS(ctx, it.ID)
		if err != nil || got != it {
			t.Errorf("InsertGPS returned %+v, the read API serves %+v (%v)", it, got, err)
		}
		if it.StoredAt.Location() != time.UTC || it.StoredAt.IsZero() {
			t.Errorf("stored_at %v, want a UTC time", it.StoredAt)
		}
	}
	gyro, err := st.InsertGyroscope(ctx, []models.Gyroscope{{Meta: meta(0), X: 0.5, Y: -1, Z: 2}})
	if err != nil || len(gyro) != 1 {
		t.Fatalf("InsertGyroscope = %d items, %v", len(gyro), err)
	}
	if got, err := r.Gyroscope(ctx, gyro[0].ID); err != nil || got != gyro[0] {
		t.Errorf("InsertGyroscope returned %+v, the read API serves %+v (%v)", gyro[0], got, err)
	}
	sim := 97.5
	p := storage.Photo{Meta: meta(0), ContentType: models.ContentTypePNG, SizeBytes: 10,
		Ciphertext: make([]byte, 38), KeyID: "k1", RecognitionStatus: "matched", Recognized: true,
		FaceID: "face-1", Similarity: &sim}
	item, inserted, err := st.InsertPhoto(ctx, p)
	if err != nil || !inserted {
		t.Fatalf("InsertPhoto = %v, %v", inserted, err)
	}
	got, err := r.Photo(ctx, p.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", deref(item)) != fmt.Sprintf("%+v", deref(got)) || item.ID != p.MessageID {
		t.Errorf("InsertPhoto returned %+v, the read API serves %+v", deref(item), deref(got))
	}
	if item, inserted, err := st.InsertPhoto(ctx, p); err != nil || inserted || item.ID != uuid.Nil {
		t.Fatalf("duplicate InsertPhoto = %+v, %v, %v; want nothing inserted", item, inserted, err)
	}
}

// deref replaces a photo item's pointers by their values, for printing.
func deref(it models.PhotoItem) any {
	face, sim := "<nil>", "<nil>"
	if it.Recognition.FaceID != nil {
		face = *it.Recognition.FaceID
	}
	if it.Recognition.Similarity != nil {
		sim = fmt.Sprint(*it.Recognition.Similarity)
	}
	return struct {
		Meta              models.ItemMeta
		ContentType, URL  string
		Size              int
		Status, Face, Sim string
		Recognized        bool
	}{it.ItemMeta, it.ContentType, it.ImageURL, it.SizeBytes, it.Recognition.Status, face, sim, it.Recognition.Recognized}
}
