package storage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// newReader opens a Reader on a fresh migrated database, with the Store
// that fills it.
func newReader(t testing.TB) (*storage.Reader, *storage.Store) {
	t.Helper()
	st, dsn := newStore(t)
	r, err := storage.OpenReader(context.Background(), dsn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, st
}

func exec(t testing.TB, st *storage.Store, sql string, args ...any) {
	t.Helper()
	if _, err := st.Pool().Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// messageIDs runs a query returning message ids, in its order.
func messageIDs(t testing.TB, st *storage.Store, sql string, args ...any) []uuid.UUID {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	ids := []uuid.UUID{}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// readFix is a GPS fix of device dev at t0 + sec seconds.
func readFix(dev string, sec int, lat float64) models.GPS {
	return models.GPS{
		Meta: models.Meta{
			MessageID:  uuid.New(),
			Actor:      "fleet-app",
			DeviceID:   dev,
			RecordedAt: t0.Add(time.Duration(sec) * time.Second),
			ReceivedAt: t0.Add(time.Duration(sec)*time.Second + 250*time.Millisecond),
		},
		Latitude:  lat,
		Longitude: -46.6 - lat/1000,
	}
}

// readPhoto is a photo of device dev at t0 + sec seconds with the given
// recognition outcome (face "" for none).
func readPhoto(dev string, sec int, status, face string) storage.Photo {
	p := storage.Photo{
		Meta: models.Meta{
			MessageID:  uuid.New(),
			Actor:      "fleet-app",
			DeviceID:   dev,
			RecordedAt: t0.Add(time.Duration(sec) * time.Second),
			ReceivedAt: t0.Add(time.Duration(sec)*time.Second + time.Second),
		},
		ContentType:       models.ContentTypeJPEG,
		SizeBytes:         3,
		Ciphertext:        make([]byte, 31),
		KeyID:             "k1",
		RecognitionStatus: status,
		Recognized:        status == "matched",
		FaceID:            face,
	}
	if status == "matched" {
		sim := 91.5
		p.Similarity = &sim
	}
	return p
}

// pageAll follows a list's pages from the first to the last and returns
// every item's id in order; it fails on an empty page that is not the
// first or on a Next on an incomplete page.
func pageAll[T any](t *testing.T, q storage.ListQuery, list func(context.Context, storage.ListQuery) (storage.Page[T], error), id func(T) uuid.UUID) []uuid.UUID {
	t.Helper()
	ids := []uuid.UUID{}
	for page := 0; ; page++ {
		p, err := list(context.Background(), q)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if p.Items == nil || (len(p.Items) == 0 && page > 0) {
			t.Fatalf("page %d: items %v (next %v)", page, p.Items, p.Next)
		}
		for _, it := range p.Items {
			ids = append(ids, id(it))
		}
		if p.Next == nil {
			return ids
		}
		if len(p.Items) != q.Limit {
			t.Fatalf("page %d: %d items and a next page", page, len(p.Items))
		}
		q.After = p.Next
		if page > 10000 {
			t.Fatal("no last page")
		}
	}
}

func gpsID(it models.GPSItem) uuid.UUID     { return it.ID }
func photoID(it models.PhotoItem) uuid.UUID { return it.ID }

func TestReaderListsGPSInBothOrders(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	// 30 fixes over 10 seconds, three per second, so timestamps tie within
	// a device and across devices: the row id must break the ties.
	var batch []models.GPS
	for i := range 30 {
		batch = append(batch, readFix([]string{"dev-a", "dev-b"}[i%2], i/3, float64(i)))
	}
	if _, err := st.InsertGPS(ctx, batch); err != nil {
		t.Fatal(err)
	}
	posted := map[uuid.UUID]models.GPS{}
	for _, g := range batch {
		posted[g.MessageID] = g
	}
	from, to := t0.Add(2*time.Second), t0.Add(6*time.Second)
	tests := []struct {
		name  string
		q     storage.ListQuery
		where string // the same filter in SQL, for the expected order
		args  []any
	}{
		{"all", storage.ListQuery{}, "true", nil},
		{"one device", storage.ListQuery{DeviceID: "dev-a"}, "device_id = $1", []any{"dev-a"}},
		{"range, bounds inclusive", storage.ListQuery{From: from, To: to}, "recorded_at BETWEEN $1 AND $2", []any{from, to}},
		{"device and range", storage.ListQuery{DeviceID: "dev-b", From: from, To: to},
			"device_id = $1 AND recorded_at BETWEEN $2 AND $3", []any{"dev-b", from, to}},
		{"from only", storage.ListQuery{From: to}, "recorded_at >= $1", []any{to}},
		{"to only", storage.ListQuery{To: from}, "recorded_at <= $1", []any{from}},
		{"unknown device", storage.ListQuery{DeviceID: "dev-z"}, "false", nil},
		{"empty range", storage.ListQuery{From: t0.Add(time.Hour)}, "false", nil},
	}
	for _, tc := range tests {
		asc := messageIDs(t, st, `SELECT message_id FROM gps WHERE `+tc.where+` ORDER BY recorded_at, id`, tc.args...)
		desc := slices.Clone(asc)
		slices.Reverse(desc)
		for _, order := range []struct {
			asc  bool
			want []uuid.UUID
		}{{true, asc}, {false, desc}} {
			for _, limit := range []int{1, 4, 5, 1000} {
				t.Run(fmt.Sprintf("%s/asc=%v/limit=%d", tc.name, order.asc, limit), func(t *testing.T) {
					q := tc.q
					q.Asc, q.Limit = order.asc, limit
					got := pageAll(t, q, r.ListGPS, gpsID)
					if !slices.Equal(got, order.want) {
						t.Fatalf("got %d ids %v\nwant %d %v", len(got), got, len(order.want), order.want)
					}
				})
			}
		}
	}

	// The items carry the posted values, in UTC.
	page, err := r.ListGPS(ctx, storage.ListQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 30 || page.Next != nil {
		t.Fatalf("%d items, next %v", len(page.Items), page.Next)
	}
	for _, it := range page.Items {
		g := posted[it.ID]
		if it.DeviceID != g.DeviceID || it.Latitude != g.Latitude || it.Longitude != g.Longitude ||
			!it.Timestamp.Equal(g.RecordedAt) || !it.ReceivedAt.Equal(g.ReceivedAt) || it.StoredAt.IsZero() {
			t.Fatalf("item %+v, posted %+v", it, g)
		}
		for _, at := range []time.Time{it.Timestamp, it.ReceivedAt, it.StoredAt} {
			if at.Location() != time.UTC {
				t.Fatalf("time %v not in UTC", at)
			}
		}
	}

	if _, err := r.ListGPS(ctx, storage.ListQuery{Limit: 10, FaceID: "f"}); !ierr.Is(err, ierr.Invalid) {
		t.Fatalf("face_id filter on GPS: %v", err)
	}
	if _, err := r.ListGPS(ctx, storage.ListQuery{Limit: 10, From: to, To: from}); !ierr.Is(err, ierr.Invalid) {
		t.Fatalf("from after to: %v", err)
	}
}

// TestReaderPagingIsStableWhileReadingsArrive pages through 250 fixes while
// 50 more arrive with timestamps among them: every original is seen exactly
// once and nothing twice, in both orders.
func TestReaderPagingIsStableWhileReadingsArrive(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	for _, asc := range []bool{true, false} {
		t.Run(fmt.Sprintf("asc=%v", asc), func(t *testing.T) {
			dev := fmt.Sprintf("dev-%v", asc)
			var originals []models.GPS
			for i := range 250 {
				originals = append(originals, readFix(dev, i, float64(i%90)))
			}
			if _, err := st.InsertGPS(ctx, originals); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			stop := make(chan struct{})
			go func() {
				defer wg.Done()
				for range 10 {
					select {
					case <-stop:
						return
					default:
					}
					var b []models.GPS
					for range 5 {
						b = append(b, readFix(dev, rand.IntN(260)-5, 1))
					}
					if _, err := st.InsertGPS(ctx, b); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			seen := map[uuid.UUID]int{}
			q := storage.ListQuery{DeviceID: dev, Asc: asc, Limit: 10}
			for {
				p, err := r.ListGPS(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, it := range p.Items {
					seen[it.ID]++
				}
				if p.Next == nil {
					break
				}
				q.After = p.Next
			}
			close(stop)
			wg.Wait()
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%v seen %d times", id, n)
				}
			}
			for _, g := range originals {
				if seen[g.MessageID] != 1 {
					t.Errorf("original %v seen %d times", g.MessageID, seen[g.MessageID])
				}
			}
		})
	}
}

func TestReaderListsPhotos(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	photos := []storage.Photo{
		readPhoto("dev-a", 1, "new_face", "face-1"),
		readPhoto("dev-a", 2, "matched", "face-1"),
		readPhoto("dev-b", 3, "matched", "face-1"),
		readPhoto("dev-b", 4, "new_face", "face-2"),
		readPhoto("dev-a", 5, "no_face", ""),
		readPhoto("dev-b", 6, "disabled", ""),
		readPhoto("dev-a", 7, "matched", "face-2"),
	}
	for _, p := range photos {
		if _, _, err := st.InsertPhoto(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		q     storage.ListQuery
		where string
		args  []any
	}{
		{"all", storage.ListQuery{}, "true", nil},
		{"face", storage.ListQuery{FaceID: "face-1"}, "face_id = $1", []any{"face-1"}},
		{"status", storage.ListQuery{RecognitionStatus: "matched"}, "recognition_status = $1", []any{"matched"}},
		{"face and status", storage.ListQuery{FaceID: "face-2", RecognitionStatus: "matched"},
			"face_id = $1 AND recognition_status = $2", []any{"face-2", "matched"}},
		{"device and status", storage.ListQuery{DeviceID: "dev-b", RecognitionStatus: "new_face"},
			"device_id = $1 AND recognition_status = $2", []any{"dev-b", "new_face"}},
		{"device, face and range", storage.ListQuery{DeviceID: "dev-a", FaceID: "face-1", From: t0.Add(2 * time.Second)},
			"device_id = $1 AND face_id = $2 AND recorded_at >= $3", []any{"dev-a", "face-1", t0.Add(2 * time.Second)}},
		{"unknown face", storage.ListQuery{FaceID: "face-9"}, "false", nil},
	}
	for _, tc := range tests {
		asc := messageIDs(t, st, `SELECT message_id FROM photo WHERE `+tc.where+` ORDER BY recorded_at, id`, tc.args...)
		desc := slices.Clone(asc)
		slices.Reverse(desc)
		for _, limit := range []int{1, 2, 100} {
			t.Run(fmt.Sprintf("%s/limit=%d", tc.name, limit), func(t *testing.T) {
				q := tc.q
				q.Limit, q.Asc = limit, true
				if got := pageAll(t, q, r.ListPhotos, photoID); !slices.Equal(got, asc) {
					t.Fatalf("asc: got %v, want %v", got, asc)
				}
				q.Asc = false
				if got := pageAll(t, q, r.ListPhotos, photoID); !slices.Equal(got, desc) {
					t.Fatalf("desc: got %v, want %v", got, desc)
				}
			})
		}
	}

	page, err := r.ListPhotos(ctx, storage.ListQuery{Limit: 100, Asc: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range page.Items {
		p := photos[i]
		rec := it.Recognition
		if it.ID != p.MessageID || it.ContentType != models.ContentTypeJPEG || it.SizeBytes != 3 ||
			it.ImageURL != "/telemetry/photo/"+p.MessageID.String()+"/image" ||
			rec.Status != p.RecognitionStatus || rec.Recognized != p.Recognized ||
			(rec.FaceID == nil) != (p.FaceID == "") || (rec.FaceID != nil && *rec.FaceID != p.FaceID) ||
			(rec.Similarity == nil) != (p.Similarity == nil) || (rec.Similarity != nil && *rec.Similarity != *p.Similarity) {
			t.Fatalf("item %d: %+v (recognition %+v), posted %+v", i, it, rec, p)
		}
	}
}

func TestReaderOneReading(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	g := readFix("dev-a", 1, 10)
	gy := models.Gyroscope{Meta: readFix("dev-a", 2, 0).Meta, X: 1.5, Y: -2, Z: 0}
	p := readPhoto("dev-a", 3, "matched", "face-1")
	p.Ciphertext = []byte("0123456789012345678901234567890")
	if _, err := st.InsertGPS(ctx, []models.GPS{g}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{gy}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.InsertPhoto(ctx, p); err != nil {
		t.Fatal(err)
	}

	if it, err := r.GPS(ctx, g.MessageID); err != nil || it.ID != g.MessageID || it.Latitude != 10 ||
		!it.Timestamp.Equal(g.RecordedAt) || it.Timestamp.Location() != time.UTC {
		t.Fatalf("GPS = %+v, %v", it, err)
	}
	if it, err := r.Gyroscope(ctx, gy.MessageID); err != nil || it.X != 1.5 || it.Y != -2 || it.Z != 0 || it.DeviceID != "dev-a" {
		t.Fatalf("Gyroscope = %+v, %v", it, err)
	}
	it, err := r.Photo(ctx, p.MessageID)
	if err != nil || it.Recognition.Status != "matched" || *it.Recognition.FaceID != "face-1" || it.ImageURL != models.PhotoImageURL(p.MessageID) {
		t.Fatalf("Photo = %+v, %v", it, err)
	}
	// The list and the single route give the same item.
	page, err := r.ListPhotos(ctx, storage.ListQuery{Limit: 1})
	if err != nil || len(page.Items) != 1 {
		t.Fatal(page, err)
	}
	a, _ := json.Marshal(page.Items[0])
	b, _ := json.Marshal(it)
	if string(a) != string(b) {
		t.Fatalf("list item %s, single item %s", a, b)
	}

	// A reading looked up in another type's table, or never stored, is not found.
	for name, f := range map[string]func() error{
		"gps":       func() error { _, err := r.GPS(ctx, gy.MessageID); return err },
		"gyroscope": func() error { _, err := r.Gyroscope(ctx, uuid.New()); return err },
		"photo":     func() error { _, err := r.Photo(ctx, g.MessageID); return err },
		"image":     func() error { _, err := r.PhotoImage(ctx, uuid.New()); return err },
	} {
		if err := f(); !ierr.Is(err, ierr.NotFound) {
			t.Errorf("%s: err = %v, want not found", name, err)
		}
	}

	img, err := r.PhotoImage(ctx, p.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if img.MessageID != p.MessageID || img.DeviceID != "dev-a" || img.KeyID != "k1" ||
		img.ContentType != models.ContentTypeJPEG || string(img.Ciphertext) != string(p.Ciphertext) || img.RowID == 0 {
		t.Fatalf("PhotoImage = %+v", img)
	}
	// Every view is audited, repeats included.
	for i := range 2 {
		if err := r.AuditPhotoViewed(ctx, "front-end", img, map[string]any{"request_id": fmt.Sprint("req-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.AuditPhotoViewed(ctx, "front-end", img, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE action = 'photo.viewed' AND message_id = $1
		AND actor = 'front-end' AND resource = 'photo' AND resource_id = $2`, p.MessageID, fmt.Sprint(img.RowID)); n != 3 {
		t.Fatalf("photo.viewed rows = %d, want 3", n)
	}
	if n := count(t, st, `SELECT count(*) FROM audit_log WHERE action = 'photo.viewed' AND details->>'request_id' = 'req-1'`); n != 1 {
		t.Fatalf("audit details not stored")
	}
}

func TestReaderDevicesAndTrack(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	var fixes []models.GPS
	for i := range 20 {
		fixes = append(fixes, readFix("dev-b", i, float64(i)))
	}
	fixes = append(fixes, readFix("dev-c", 5, 1))
	if _, err := st.InsertGPS(ctx, fixes); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{{Meta: readFix("dev-a", -3, 0).Meta}, {Meta: readFix("dev-b", 40, 0).Meta}}); err != nil {
		t.Fatal(err)
	}
	older, latest := readPhoto("dev-b", 30, "matched", "face-1"), readPhoto("dev-b", 31, "no_face", "")
	for _, p := range []storage.Photo{latest, older} {
		if _, _, err := st.InsertPhoto(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("list", func(t *testing.T) {
		var all []string
		after := ""
		for {
			devs, next, err := r.ListDevices(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range devs {
				all = append(all, d.DeviceID)
				if len(d.Counts) != 3 || d.LastPhoto != nil {
					t.Fatalf("device %+v", d)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(all, []string{"dev-a", "dev-b", "dev-c"}) {
			t.Fatalf("devices %v", all)
		}
		devs, next, err := r.ListDevices(ctx, "", 3)
		if err != nil || next != "" || len(devs) != 3 {
			t.Fatalf("one full page: %d devices, next %q, %v", len(devs), next, err)
		}
		a := devs[0]
		if a.LastPosition != nil || a.Counts[models.TypeGyroscope] != 1 || a.Counts[models.TypeGPS] != 0 || a.Counts[models.TypePhoto] != 0 ||
			!a.FirstSeen.Equal(t0.Add(-3*time.Second)) || a.FirstSeen.Location() != time.UTC {
			t.Fatalf("dev-a %+v", a)
		}
	})
	t.Run("one", func(t *testing.T) {
		d, err := r.Device(ctx, "dev-b")
		if err != nil {
			t.Fatal(err)
		}
		want := map[models.Type]int64{models.TypeGyroscope: 1, models.TypeGPS: 20, models.TypePhoto: 2}
		if fmt.Sprint(d.Counts) != fmt.Sprint(want) || !d.FirstSeen.Equal(t0) || !d.LastSeen.Equal(t0.Add(40*time.Second)) ||
			d.LastSeen.Location() != time.UTC {
			t.Fatalf("dev-b %+v", d)
		}
		if p := d.LastPosition; p == nil || p.Latitude != 19 || !p.Timestamp.Equal(t0.Add(19*time.Second)) {
			t.Fatalf("last position %+v", p)
		}
		lp := d.LastPhoto
		if lp == nil || lp.ID != latest.MessageID || !lp.Timestamp.Equal(latest.RecordedAt) || lp.Timestamp.Location() != time.UTC ||
			lp.ImageURL != models.PhotoImageURL(latest.MessageID) || lp.Recognition.Status != "no_face" || lp.Recognition.FaceID != nil {
			t.Fatalf("last photo %+v", lp)
		}
		if d, err := r.Device(ctx, "dev-c"); err != nil || d.LastPhoto != nil || d.LastPosition == nil {
			t.Fatalf("dev-c %+v, %v", d, err)
		}
		if _, err := r.Device(ctx, "dev-z"); !ierr.Is(err, ierr.NotFound) {
			t.Fatalf("unknown device: %v", err)
		}
	})
	t.Run("track", func(t *testing.T) {
		tests := []struct {
			from, to  time.Time
			limit     int
			want      []float64 // latitudes
			truncated bool
		}{
			{time.Time{}, time.Time{}, 10000, seq(0, 19), false},
			{t0.Add(5 * time.Second), t0.Add(8 * time.Second), 10000, seq(5, 8), false},
			{t0.Add(5 * time.Second), time.Time{}, 3, seq(5, 7), true},
			{time.Time{}, t0.Add(2 * time.Second), 3, seq(0, 2), false},
			{t0.Add(time.Hour), time.Time{}, 10, nil, false},
		}
		for _, tc := range tests {
			pts, truncated, err := r.Track(ctx, "dev-b", tc.from, tc.to, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var lats []float64
			for _, p := range pts {
				lats = append(lats, p.Latitude)
				if !p.Timestamp.Equal(t0.Add(time.Duration(p.Latitude)*time.Second)) || p.Timestamp.Location() != time.UTC ||
					p.Longitude != -46.6-p.Latitude/1000 {
					t.Fatalf("point %+v", p)
				}
			}
			if !slices.Equal(lats, tc.want) || truncated != tc.truncated {
				t.Errorf("Track(%v, %v, %d) = %v truncated=%v, want %v %v", tc.from, tc.to, tc.limit, lats, truncated, tc.want, tc.truncated)
			}
		}
		if pts, truncated, err := r.Track(ctx, "dev-z", time.Time{}, time.Time{}, 10); err != nil || len(pts) != 0 || pts == nil || truncated {
			t.Fatalf("unknown device: %v %v %v", pts, truncated, err)
		}
	})
}

func seq(from, to int) []float64 {
	var s []float64
	for i := from; i <= to; i++ {
		s = append(s, float64(i))
	}
	return s
}

func TestReaderStoredAfter(t *testing.T) {
	t.Parallel()
	r, st := newReader(t)
	ctx := context.Background()
	// Readings of each type whose created_at is set by hand: the moment
	// each transaction started, as now() records it.
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	type stored struct {
		typ     models.Type
		id      uuid.UUID
		dev     string
		created time.Duration // after base
	}
	var rows []stored
	add := func(typ models.Type, dev string, created time.Duration) uuid.UUID {
		var id uuid.UUID
		switch typ {
		case models.TypeGPS:
			g := readFix(dev, len(rows), 1)
			id = g.MessageID
			if _, err := st.InsertGPS(ctx, []models.GPS{g}); err != nil {
				t.Fatal(err)
			}
		case models.TypeGyroscope:
			g := models.Gyroscope{Meta: readFix(dev, len(rows), 1).Meta, X: 1}
			id = g.MessageID
			if _, err := st.InsertGyroscope(ctx, []models.Gyroscope{g}); err != nil {
				t.Fatal(err)
			}
		case models.TypePhoto:
			p := readPhoto(dev, len(rows), "disabled", "")
			id = p.MessageID
			if _, _, err := st.InsertPhoto(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		exec(t, st, `UPDATE `+string(typ)+` SET created_at = $1 WHERE message_id = $2`, base.Add(created), id)
		rows = append(rows, stored{typ, id, dev, created})
		return id
	}
	old := add(models.TypeGPS, "dev-a", 0)
	add(models.TypeGyroscope, "dev-a", 5*time.Second)
	late := add(models.TypePhoto, "dev-b", 8500*time.Millisecond) // committed after last, stamped before it
	last := add(models.TypeGPS, "dev-a", 10*time.Second)
	sameGPS := add(models.TypeGPS, "dev-b", 12*time.Second)
	sameGyro := add(models.TypeGyroscope, "dev-a", 12*time.Second) // same moment: gyroscope before gps
	next := add(models.TypePhoto, "dev-a", 13*time.Second)
	recent := add(models.TypeGPS, "dev-b", 20*time.Second)

	ids := func(evs []storage.Event) []uuid.UUID {
		var s []uuid.UUID
		for _, e := range evs {
			s = append(s, e.ID)
		}
		return s
	}
	tests := []struct {
		name   string
		types  []models.Type
		device string
		limit  int
		want   []uuid.UUID
	}{
		{"all", nil, "", 100, []uuid.UUID{late, sameGyro, sameGPS, next, recent}},
		{"limited", nil, "", 2, []uuid.UUID{late, sameGyro}},
		{"gps", []models.Type{models.TypeGPS}, "", 100, []uuid.UUID{sameGPS, recent}},
		{"gps and photo", []models.Type{models.TypePhoto, models.TypeGPS}, "", 100, []uuid.UUID{late, sameGPS, next, recent}},
		{"device", nil, "dev-a", 100, []uuid.UUID{sameGyro, next}},
		{"device and type", []models.Type{models.TypePhoto}, "dev-b", 100, []uuid.UUID{late}},
	}
	for _, tc := range tests {
		evs, found, err := r.StoredAfter(ctx, last, tc.types, tc.device, tc.limit)
		if err != nil || !found {
			t.Fatalf("%s: found=%v err=%v", tc.name, found, err)
		}
		if got := ids(evs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Anchored on the oldest, everything but it, in stored order.
	evs, found, err := r.StoredAfter(ctx, old, nil, "", 100)
	if err != nil || !found || len(evs) != len(rows)-1 || evs[0].Type != models.TypeGyroscope {
		t.Fatalf("after the oldest: %d events, found=%v, %v", len(evs), found, err)
	}
	// Data is the item as the single and list routes encode it.
	for _, e := range evs {
		var item any
		switch e.Type {
		case models.TypeGPS:
			item, err = r.GPS(ctx, e.ID)
		case models.TypeGyroscope:
			item, err = r.Gyroscope(ctx, e.ID)
		case models.TypePhoto:
			item, err = r.Photo(ctx, e.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(item)
		if string(e.Data) != string(want) {
			t.Fatalf("%s %v: data %s, want %s", e.Type, e.ID, e.Data, want)
		}
	}

	if evs, found, err := r.StoredAfter(ctx, uuid.New(), nil, "", 100); err != nil || found || evs != nil {
		t.Fatalf("unknown id: %v %v %v", evs, found, err)
	}
	if _, _, err := r.StoredAfter(ctx, last, []models.Type{"sonar"}, "", 100); !ierr.Is(err, ierr.Invalid) {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestOpenReaderSessions(t *testing.T) {
	t.Parallel()
	_, dsn := newStore(t)
	ctx := context.Background()

	show := func(r *storage.Reader, name string) string {
		t.Helper()
		var v string
		if err := storage.ReaderPool(r).QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	r, err := storage.OpenReader(ctx, dsn, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if v := show(r, "statement_timeout"); v != "1500ms" {
		t.Errorf("statement_timeout = %q", v)
	}
	if v := show(r, "lock_timeout"); v != "1s" {
		t.Errorf("lock_timeout = %q", v)
	}
	if v := show(r, "application_name"); v != "challenge-v3-read" {
		t.Errorf("application_name = %q", v)
	}
	if n := storage.ReaderPool(r).Config().MaxConns; n != 8 {
		t.Errorf("max conns = %d", n)
	}

	r2, err := storage.OpenReader(ctx, withParam(withParam(dsn, "pool_max_conns", "3"), "application_name", "mine"), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if n := storage.ReaderPool(r2).Config().MaxConns; n != 3 {
		t.Errorf("max conns with pool_max_conns=3: %d", n)
	}
	if v := show(r2, "application_name"); v != "mine" {
		t.Errorf("application_name from the DSN = %q", v)
	}
	if v := show(r2, "lock_timeout"); v != "200ms" {
		t.Errorf("lock_timeout capped by the statement timeout = %q", v)
	}
	// A statement over the timeout is Unavailable (the API answers 503).
	if _, err := storage.ReaderPool(r2).Exec(ctx, "SELECT pg_sleep(1)"); err == nil {
		t.Fatal("pg_sleep(1) ran past a 200ms statement timeout")
	}
	// A read blocked by a lock gives up at lock_timeout, Unavailable.
	st, err := storage.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE gps IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if _, err := r2.ListGPS(ctx, storage.ListQuery{Limit: 10}); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("read behind a lock: %v", err)
	}

	if _, err := storage.OpenReader(ctx, dsn, 0); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("zero timeout: %v", err)
	}
	if _, err := storage.OpenReader(ctx, "postgres://a:b@host:notaport/db", time.Second); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("bad DSN: %v", err)
	}
}

// TestReaderWithoutDatabase: the reader opens while PostgreSQL is down (the
// API starts and ingests) and every call is Unavailable.
func TestReaderWithoutDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r, err := storage.OpenReader(ctx, "postgres://reader@"+addr+"/x?connect_timeout=2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Ping(ctx); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := r.ListGPS(ctx, storage.ListQuery{Limit: 1}); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("ListGPS: %v", err)
	}
	if _, err := r.Device(ctx, "d"); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("Device: %v", err)
	}
	if _, _, err := r.StoredAfter(ctx, uuid.New(), nil, "", 10); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("StoredAfter: %v", err)
	}
}
