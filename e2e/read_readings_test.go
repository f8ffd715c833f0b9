package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
)

// listPage is the body of a list route.
type listPage[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// gpsIDs lists the ids of GPS items in their order.
func gpsIDs(items []models.GPSItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ID.String()
	}
	return out
}

// Readings travel POST → JetStream → worker → PostgreSQL → GET: each list
// returns exactly what was posted, with the posted values, filtered by
// device (in any MAC notation) and time range, in both orders, page by page.
func TestListsReturnThePostedReadings(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	const macPosted, macStored = "AA-BB-CC-DD-EE-01", "aa:bb:cc:dd:ee:01"

	type fix struct {
		id, device string
		lat, lon   float64
		at         time.Time
	}
	var fixes []fix
	for i := range 6 {
		f := fix{device: macStored, lat: -23.5 + float64(i)/100, lon: -46.6 - float64(i)/100, at: t0.Add(time.Duration(i) * 10 * time.Second)}
		f.id = s.accept("/telemetry/gps", map[string]any{"device_id": macPosted, "timestamp": rfc3339(f.at), "latitude": f.lat, "longitude": f.lon})
		fixes = append(fixes, f)
	}
	for i := range 3 {
		f := fix{device: "truck-7", lat: float64(i), lon: 0, at: t0.Add(time.Duration(i)*10*time.Second + 5*time.Second)}
		// Epoch seconds on the way in; RFC 3339 UTC on the way out.
		f.id = s.accept("/telemetry/gps", map[string]any{"device_id": f.device, "timestamp": f.at.Unix(), "latitude": f.lat, "longitude": f.lon})
		fixes = append(fixes, f)
	}
	gyroAt := t0.Add(500 * time.Millisecond)
	gyroID := s.accept("/telemetry/gyroscope", map[string]any{"device_id": macPosted, "timestamp": rfc3339(gyroAt), "x": 0.98, "y": -0.45, "z": 0})
	jpeg := readFixture(t, "grace_hopper.jpg")
	photoID := s.accept("/telemetry/photo", map[string]any{"device_id": macPosted, "timestamp": rfc3339(t0),
		"photo": encodeB64(jpeg)})
	png := readFixture(t, "coffee.png")
	s.fake.SetNoFace(png)
	status, out := s.postMultipart("truck-7", strconv.FormatInt(t0.Add(time.Minute).Unix(), 10), png)
	if status != http.StatusAccepted {
		t.Fatalf("multipart photo: %d %v", status, out)
	}
	pngID := out["id"].(string)

	// A client follows each 202's id until its row exists.
	for _, f := range fixes {
		item := waitStored[models.GPSItem](s, "gps", f.id)
		if item.ID.String() != f.id || item.DeviceID != f.device || item.Latitude != f.lat || item.Longitude != f.lon ||
			!item.Timestamp.Equal(f.at) || item.Timestamp.Location() != time.UTC ||
			item.ReceivedAt.IsZero() || item.StoredAt.Before(item.ReceivedAt) {
			t.Errorf("GET /telemetry/gps/%s = %+v, want %+v", f.id, item, f)
		}
	}
	gyro := waitStored[models.GyroscopeItem](s, "gyroscope", gyroID)
	if gyro.DeviceID != macStored || gyro.X != 0.98 || gyro.Y != -0.45 || gyro.Z != 0 || !gyro.Timestamp.Equal(gyroAt) {
		t.Errorf("gyroscope item = %+v", gyro)
	}
	photo := waitStored[models.PhotoItem](s, "photo", photoID)
	if photo.ContentType != "image/jpeg" || photo.SizeBytes != len(jpeg) || photo.ImageURL != "/telemetry/photo/"+photoID+"/image" ||
		photo.Recognition.Status != "new_face" || photo.Recognition.FaceID == nil {
		t.Errorf("photo item = %+v", photo)
	}
	pngItem := waitStored[models.PhotoItem](s, "photo", pngID)
	if pngItem.ContentType != "image/png" || pngItem.SizeBytes != len(png) || pngItem.Recognition.Status != "no_face" || pngItem.DeviceID != "truck-7" {
		t.Errorf("png item = %+v", pngItem)
	}

	want := func(pick func(fix) bool, asc bool) []string {
		var ids []string
		var sel []fix
		for _, f := range fixes {
			if pick(f) {
				sel = append(sel, f)
			}
		}
		slices.SortFunc(sel, func(a, b fix) int { return a.at.Compare(b.at) })
		for _, f := range sel {
			ids = append(ids, f.id)
		}
		if !asc {
			slices.Reverse(ids)
		}
		return ids
	}
	all := func(fix) bool { return true }
	ofA := func(f fix) bool { return f.device == macStored }
	from, to := t0.Add(10*time.Second), t0.Add(30*time.Second)
	inRange := func(f fix) bool { return ofA(f) && !f.at.Before(from) && !f.at.After(to) }
	for _, tt := range []struct {
		name, query string
		want        []string
	}{
		{"everything, newest first", "", want(all, false)},
		{"everything, oldest first", "?order=asc", want(all, true)},
		{"one device, colon form", "?device_id=AA:BB:CC:DD:EE:01", want(ofA, false)},
		{"one device, dotted form", "?device_id=aabb.ccdd.ee01&order=asc", want(ofA, true)},
		{"range, both ends inclusive", "?device_id=" + macPosted + "&from=" + url.QueryEscape(rfc3339(from)) + "&to=" + url.QueryEscape(rfc3339(to)), want(inRange, false)},
		{"range in epoch seconds", fmt.Sprintf("?device_id=%s&from=%d&to=%d&order=asc", macPosted, from.Unix(), to.Unix()), want(inRange, true)},
		{"range with an offset", "?device_id=" + macPosted + "&from=" + url.QueryEscape(from.In(time.FixedZone("BRT", -3*3600)).Format(time.RFC3339)) +
			"&to=" + url.QueryEscape(rfc3339(to)), want(inRange, false)},
		{"nothing there", "?device_id=nobody", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			page := getJSON[listPage[models.GPSItem]](s, "/telemetry/gps"+tt.query)
			if got := gpsIDs(page.Items); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("ids = %v\nwant  %v", got, tt.want)
			}
			if page.NextCursor != nil || page.Items == nil {
				t.Errorf("a short page has next_cursor %v, items nil: %v", page.NextCursor, page.Items == nil)
			}
		})
	}

	// Page by page, two at a time, in both orders.
	for _, order := range []string{"desc", "asc"} {
		var got []string
		path := "/telemetry/gps?device_id=" + macPosted + "&limit=2&order=" + order
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("paging does not end")
			}
			page := getJSON[listPage[models.GPSItem]](s, path)
			got = append(got, gpsIDs(page.Items)...)
			if page.NextCursor == nil {
				break
			}
			path = "/telemetry/gps?device_id=" + macPosted + "&limit=2&order=" + order + "&cursor=" + *page.NextCursor
		}
		if w := want(ofA, order == "asc"); !slices.Equal(got, w) {
			t.Errorf("paged %s = %v, want %v", order, got, w)
		}
	}

	gyros := getJSON[listPage[models.GyroscopeItem]](s, "/telemetry/gyroscope?device_id="+macStored)
	if len(gyros.Items) != 1 || gyros.Items[0] != gyro {
		t.Errorf("gyroscope list = %+v, want [%+v]", gyros.Items, gyro)
	}
	photos := getJSON[listPage[models.PhotoItem]](s, "/telemetry/photo")
	if len(photos.Items) != 2 || photos.Items[0].ID != pngItem.ID || photos.Items[1].ID != photo.ID {
		t.Errorf("photo list = %+v", photos.Items)
	}
	byFace := getJSON[listPage[models.PhotoItem]](s, "/telemetry/photo?face_id="+*photo.Recognition.FaceID)
	if len(byFace.Items) != 1 || byFace.Items[0].ID != photo.ID {
		t.Errorf("photos of face %s = %+v", *photo.Recognition.FaceID, byFace.Items)
	}
	byStatus := getJSON[listPage[models.PhotoItem]](s, "/telemetry/photo?recognition_status=no_face&device_id=truck-7")
	if len(byStatus.Items) != 1 || byStatus.Items[0].ID != pngItem.ID {
		t.Errorf("no_face photos = %+v", byStatus.Items)
	}
	if raw := s.rawBody("/telemetry/photo/" + photoID); strings.Contains(raw, "image_ciphertext") || len(raw) > 2048 {
		t.Errorf("a photo item must carry no image bytes: %d bytes", len(raw))
	}
}

// rawBody is a 200 answer's body as text.
func (s *readStack) rawBody(path string) string {
	s.t.Helper()
	resp, body := s.get(path)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

// The id a 202 returned answers 404 ("may still be queued") while the
// worker has not stored it, then the reading.
func TestAcceptedIDIsPolledUntilStored(t *testing.T) {
	s := newReadStack(t, nil)
	at := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Minute)
	id := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-9", "timestamp": rfc3339(at), "latitude": 0, "longitude": 0})
	s.migrate() // the schema exists: the 404 is about the reading, not the table
	resp, body := s.get("/telemetry/gps/" + id)
	p := problemOf(t, resp, body, http.StatusNotFound)
	if !strings.Contains(p.Detail, "queued") || !strings.Contains(p.Detail, id) {
		t.Errorf("404 detail = %q", p.Detail)
	}
	s.startWorker()
	item := waitStored[models.GPSItem](s, "gps", id)
	if item.Latitude != 0 || item.Longitude != 0 || !item.Timestamp.Equal(at) || item.DeviceID != "truck-9" {
		t.Errorf("item = %+v", item)
	}
	// The id of one type is not a reading of another.
	resp, body = s.get("/telemetry/gyroscope/" + id)
	problemOf(t, resp, body, http.StatusNotFound)
}

// A client paging through 2,500 readings 100 at a time while 500 more
// arrive (through the API and the worker) sees every original reading
// exactly once, and no reading twice, in either order.
func TestPagingIsStableWhileReadingsArrive(t *testing.T) {
	s := newReadStack(t, nil)
	s.migrate()
	s.startWorker()
	const originals, arrivals, limit = 2500, 500, 100
	t0 := time.Now().UTC().Truncate(time.Second).Add(-48 * time.Hour)
	// Two readings per second: pairs share a timestamp, so the row id
	// breaks ties on every page boundary.
	var want []string
	rows, err := s.db.Query(context.Background(), `
		INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at)
		SELECT gen_random_uuid(), 'pager', (i % 90)::float8, (i % 180)::float8,
		       $1::timestamptz + (i / 2) * interval '1 second', now()
		FROM generate_series(0, $2 - 1) AS i
		RETURNING message_id::text`, t0, originals)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if rows.Close(); rows.Err() != nil || len(want) != originals {
		t.Fatalf("inserted %d rows: %v", len(want), rows.Err())
	}

	var posted []string
	post := func(n int) {
		for range n {
			i := len(posted)
			// Timestamps before, inside and after the paged range: a reading
			// landing behind the client's position is not seen, one ahead of
			// it is seen once.
			at := t0.Add(time.Duration(i%3-1) * time.Duration(originals/2) * time.Second / 2).Add(time.Duration(i) * time.Millisecond)
			posted = append(posted, s.accept("/telemetry/gps", map[string]any{"device_id": "pager", "timestamp": rfc3339(at),
				"latitude": 1, "longitude": 1}))
		}
	}
	for _, order := range []string{"desc", "asc"} {
		t.Run(order, func(t *testing.T) {
			seen := map[string]int{}
			cursor := ""
			pages := 0
			arrived := len(posted) + arrivals
			for {
				path := "/telemetry/gps?device_id=pager&limit=" + strconv.Itoa(limit) + "&order=" + order
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				page := getJSON[listPage[models.GPSItem]](s, path)
				pages++
				if len(page.Items) > limit {
					t.Fatalf("page of %d items with limit %d", len(page.Items), limit)
				}
				for i, it := range page.Items {
					seen[it.ID.String()]++
					if i > 0 {
						prev := page.Items[i-1]
						if order == "desc" && prev.Timestamp.Before(it.Timestamp) || order == "asc" && prev.Timestamp.After(it.Timestamp) {
							t.Fatalf("page %d out of %s order at %d", pages, order, i)
						}
					}
				}
				post(min(arrivals/(originals/limit), arrived-len(posted))) // 20 arrive while the client reads each page
				if page.NextCursor == nil {
					break
				}
				cursor = *page.NextCursor
				if pages > 2*(originals+2*arrivals)/limit {
					t.Fatal("paging does not end")
				}
			}
			for _, id := range want {
				if seen[id] != 1 {
					t.Errorf("original reading %s seen %d times", id, seen[id])
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("reading %s seen %d times", id, n)
				}
			}
			if len(posted) != arrived {
				t.Errorf("%d readings arrived while paging, want %d", arrivals-(arrived-len(posted)), arrivals)
			}
			t.Logf("%s: %d pages, %d readings seen, %d arrived in all", order, pages, len(seen), len(posted))
		})
	}
	s.waitCount(originals+len(posted), `SELECT count(*) FROM gps WHERE device_id = 'pager'`)
}

// 401 without or with a wrong key, 403 for a key without the read scope
// (and for the read-only key posting).
func TestReadRoutesNeedTheReadScope(t *testing.T) {
	s := newReadStack(t, nil)
	id := uuid.Must(uuid.NewV7()).String()
	paths := []string{"/telemetry/gyroscope", "/telemetry/gps", "/telemetry/photo", "/telemetry/gps/" + id,
		"/telemetry/photo/" + id + "/image", "/devices", "/devices/truck-1", "/devices/truck-1/track"}
	for _, path := range paths {
		for _, tt := range []struct {
			name, key string
			status    int
		}{
			{"no key", "", http.StatusUnauthorized},
			{"wrong key", "not-a-key-0123456789abcdef", http.StatusUnauthorized},
			{"ingest-only key", ingestSecret, http.StatusForbidden},
		} {
			resp, body := s.get(path, "X-API-Key", tt.key)
			p := problemOf(t, resp, body, tt.status)
			if tt.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: no WWW-Authenticate", tt.name, path)
			}
			if tt.status == http.StatusForbidden && !strings.Contains(p.Detail, "read") {
				t.Errorf("%s %s: detail %q", tt.name, path, p.Detail)
			}
		}
	}
	status, out := s.post("/telemetry/gps", map[string]any{"device_id": "d", "timestamp": time.Now().Unix(), "latitude": 0, "longitude": 0},
		map[string]string{"X-API-Key": readSecret})
	if status != http.StatusForbidden {
		t.Errorf("the read-only key posting: %d %v, want 403", status, out)
	}
}

// Every wrong parameter is a 400 problem naming it, never a 500, and no
// query reaches the database with it.
func TestReadBadParameters(t *testing.T) {
	s := newReadStack(t, nil)
	s.migrate()
	t0 := time.Now().UTC().Add(-time.Hour)
	if _, err := s.db.Exec(context.Background(), `
		INSERT INTO gps (message_id, device_id, latitude, longitude, recorded_at, received_at)
		SELECT gen_random_uuid(), 'truck-1', 0, 0, $1::timestamptz + i * interval '1 second', now()
		FROM generate_series(1, 3) AS i`, t0); err != nil {
		t.Fatal(err)
	}
	cursorOf := func(path string) string {
		page := getJSON[listPage[models.GPSItem]](s, path)
		if page.NextCursor == nil {
			t.Fatalf("%s: no next_cursor", path)
		}
		return *page.NextCursor
	}
	descCursor := cursorOf("/telemetry/gps?limit=1")
	deviceCursor := cursorOf("/telemetry/gps?limit=1&device_id=truck-1")
	tampered := []byte(descCursor)
	tampered[len(tampered)-1] ^= 0x01
	for _, tt := range []struct{ name, path, field string }{
		{"unknown parameter", "/telemetry/gps?devise_id=truck-1", "devise_id"},
		{"photo parameter on gps", "/telemetry/gps?face_id=3f1c2a4e-8b7d-4c5e-9a6b-0d1e2f3a4b5c", "face_id"},
		{"repeated parameter", "/telemetry/gps?limit=1&limit=2", "limit"},
		{"empty value", "/telemetry/gps?device_id=", "device_id"},
		{"bad device_id", "/telemetry/gyroscope?device_id=truck%201", "device_id"},
		{"device_id too long", "/telemetry/gyroscope?device_id=" + strings.Repeat("a", 65), "device_id"},
		{"bad from", "/telemetry/gps?from=yesterday", "from"},
		{"time without offset", "/telemetry/gps?to=2026-11-28T10:00:00", "to"},
		{"epoch milliseconds", "/telemetry/gps?from=1764324000000", "from"},
		{"from after to", "/telemetry/gps?from=2026-11-28T11:00:00Z&to=2026-11-28T10:00:00Z", "from"},
		{"limit zero", "/telemetry/gps?limit=0", "limit"},
		{"limit too large", "/telemetry/gps?limit=1001", "limit"},
		{"limit not a number", "/telemetry/gps?limit=ten", "limit"},
		{"bad order", "/telemetry/photo?order=newest", "order"},
		{"bad recognition_status", "/telemetry/photo?recognition_status=happy", "recognition_status"},
		{"bad face_id", "/telemetry/photo?face_id=x", "face_id"},
		{"made-up cursor", "/telemetry/gps?cursor=bm90LWEtY3Vyc29y", "cursor"},
		{"garbage cursor", "/telemetry/gps?cursor=%25%25%25", "cursor"},
		{"tampered cursor", "/telemetry/gps?limit=1&cursor=" + string(tampered), "cursor"},
		{"cursor of the other order", "/telemetry/gps?limit=1&order=asc&cursor=" + descCursor, "cursor"},
		{"cursor of another filter", "/telemetry/gps?limit=1&cursor=" + deviceCursor, "cursor"},
		{"cursor of another type", "/telemetry/gyroscope?limit=1&cursor=" + descCursor, "cursor"},
		{"reading cursor on devices", "/devices?cursor=" + descCursor, "cursor"},
		{"devices limit", "/devices?limit=5000", "limit"},
		{"bad id", "/telemetry/gps/12345", "id"},
		{"bad image id", "/telemetry/photo/not-a-uuid/image", "id"},
		{"parameter on one reading", "/telemetry/gps/" + uuid.NewString() + "?fields=all", "fields"},
		{"bad device in path", "/devices/truck%201", "device_id"},
		{"bad device of a track", "/devices/" + strings.Repeat("x", 65) + "/track", "device_id"},
		{"track range", "/devices/truck-1/track?from=2026-11-28T11:00:00Z&to=2026-11-28T10:00:00Z", "from"},
		{"track limit", "/devices/truck-1/track?limit=10", "limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.get(tt.path)
			p := problemOf(t, resp, body, http.StatusBadRequest)
			if len(p.Errors) == 0 || p.Errors[0].Field != tt.field || p.Errors[0].Message == "" {
				t.Errorf("errors = %+v, want the parameter %s named", p.Errors, tt.field)
			}
			if !strings.HasSuffix(p.Type, "#validation-error") || p.Detail == "" {
				t.Errorf("problem = %+v", p)
			}
		})
	}
	// Several wrong parameters are named together.
	resp, body := s.get("/telemetry/gps?limit=0&order=up&from=x")
	p := problemOf(t, resp, body, http.StatusBadRequest)
	var fields []string
	for _, fe := range p.Errors {
		fields = append(fields, fe.Field)
	}
	if slices.Sort(fields); !slices.Equal(fields, []string{"from", "limit", "order"}) {
		t.Errorf("fields = %v, want from, limit, order", fields)
	}
	raw, _ := json.Marshal(p)
	if strings.Contains(string(raw), "pgx") || strings.Contains(string(raw), "SQLSTATE") {
		t.Errorf("a problem leaks the database: %s", raw)
	}
}
