package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
)

// track is the GeoJSON answer of /devices/{device_id}/track.
type track struct {
	Type     string `json:"type"`
	Geometry *struct {
		Type        string          `json:"type"`
		Coordinates json.RawMessage `json:"coordinates"`
	} `json:"geometry"`
	Properties struct {
		DeviceID   string      `json:"device_id"`
		Timestamps []time.Time `json:"timestamps"`
		Truncated  bool        `json:"truncated"`
	} `json:"properties"`
}

func (s *readStack) track(path string) track {
	s.t.Helper()
	resp, body := s.get(path)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/geo+json" {
		s.t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	var tr track
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil {
		s.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	if tr.Type != "Feature" {
		s.t.Errorf("GET %s: type %q, want Feature", path, tr.Type)
	}
	return tr
}

// Devices list what each device sent, one device's summary carries its
// last fix and photo, and its track is RFC 7946 GeoJSON.
func TestDevicesAndTracks(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	const mac = "aa:bb:cc:00:00:01"
	type fix struct {
		lat, lon float64
		at       time.Time
	}
	// Posted out of order: the track is in time order whatever the arrival.
	fixes := []fix{{-23.55, -46.63, t0.Add(20 * time.Second)}, {-23.56, -46.64, t0}, {-23.57, -46.65, t0.Add(10 * time.Second)}}
	var ids []string
	for _, f := range fixes {
		ids = append(ids, s.accept("/telemetry/gps", map[string]any{"device_id": "AA-BB-CC-00-00-01", "timestamp": rfc3339(f.at), "latitude": f.lat, "longitude": f.lon}))
	}
	gyroID := s.accept("/telemetry/gyroscope", map[string]any{"device_id": mac, "timestamp": rfc3339(t0.Add(30 * time.Second)), "x": 1, "y": 2, "z": 3})
	photoID := s.accept("/telemetry/photo", map[string]any{"device_id": mac, "timestamp": rfc3339(t0.Add(5 * time.Second)),
		"photo": encodeB64(readFixture(t, "grace_hopper.jpg"))})
	loneID := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": rfc3339(t0), "latitude": 1.5, "longitude": 2.5})
	for _, id := range append(ids, loneID) {
		waitStored[models.GPSItem](s, "gps", id)
	}
	waitStored[models.GyroscopeItem](s, "gyroscope", gyroID)
	photo := waitStored[models.PhotoItem](s, "photo", photoID)

	d := getJSON[models.Device](s, "/devices/AABB.CC00.0001")
	want := map[models.Type]int64{models.TypeGPS: 3, models.TypeGyroscope: 1, models.TypePhoto: 1}
	if d.DeviceID != mac || !d.FirstSeen.Equal(t0) || !d.LastSeen.Equal(t0.Add(30*time.Second)) || len(d.Counts) != 3 ||
		d.Counts[models.TypeGPS] != want[models.TypeGPS] || d.Counts[models.TypeGyroscope] != 1 || d.Counts[models.TypePhoto] != 1 {
		t.Errorf("device = %+v", d)
	}
	if p := d.LastPosition; p == nil || p.Latitude != -23.55 || p.Longitude != -46.63 || !p.Timestamp.Equal(t0.Add(20*time.Second)) {
		t.Errorf("last position = %+v, want the latest fix", d.LastPosition)
	}
	if lp := d.LastPhoto; lp == nil || lp.ID != photo.ID || lp.ImageURL != photo.ImageURL || lp.Recognition.Status != photo.Recognition.Status {
		t.Errorf("last photo = %+v, want %+v", d.LastPhoto, photo)
	}

	// The list: both devices in device_id order, page by page.
	all := getJSON[listPage[models.Device]](s, "/devices")
	var names []string
	for _, dev := range all.Items {
		names = append(names, dev.DeviceID)
		if dev.LastPhoto != nil {
			t.Errorf("the list carries last_photo for %s", dev.DeviceID)
		}
	}
	if !slices.Equal(names, []string{mac, "truck-1"}) || all.NextCursor != nil {
		t.Errorf("devices = %v, next %v", names, all.NextCursor)
	}
	first := getJSON[listPage[models.Device]](s, "/devices?limit=1")
	if len(first.Items) != 1 || first.Items[0].DeviceID != mac || first.NextCursor == nil {
		t.Fatalf("first page = %+v", first)
	}
	second := getJSON[listPage[models.Device]](s, "/devices?limit=1&cursor="+*first.NextCursor)
	if len(second.Items) != 1 || second.Items[0].DeviceID != "truck-1" || second.NextCursor != nil {
		t.Errorf("second page = %+v", second)
	}

	tr := s.track("/devices/" + mac + "/track")
	if tr.Geometry == nil || tr.Geometry.Type != "LineString" || string(tr.Geometry.Coordinates) != "[[-46.64,-23.56],[-46.65,-23.57],[-46.63,-23.55]]" {
		t.Errorf("track geometry = %+v %s", tr.Geometry, tr.Geometry.Coordinates)
	}
	if tr.Properties.DeviceID != mac || tr.Properties.Truncated || len(tr.Properties.Timestamps) != 3 ||
		!tr.Properties.Timestamps[0].Equal(t0) || !tr.Properties.Timestamps[2].Equal(t0.Add(20*time.Second)) {
		t.Errorf("track properties = %+v", tr.Properties)
	}
	part := s.track("/devices/" + mac + "/track?from=" + url.QueryEscape(rfc3339(t0.Add(10*time.Second))))
	if part.Geometry == nil || part.Geometry.Type != "LineString" || len(part.Properties.Timestamps) != 2 {
		t.Errorf("track from t0+10s = %+v", part)
	}
	// One fix: a Point (a LineString needs two positions); none: null.
	lone := s.track("/devices/truck-1/track")
	if lone.Geometry == nil || lone.Geometry.Type != "Point" || string(lone.Geometry.Coordinates) != "[2.5,1.5]" {
		t.Errorf("single-fix track = %+v", lone.Geometry)
	}
	empty := s.track("/devices/" + mac + "/track?to=" + url.QueryEscape(rfc3339(t0.Add(-time.Second))))
	if empty.Geometry != nil || len(empty.Properties.Timestamps) != 0 {
		t.Errorf("empty track = %+v", empty)
	}

	resp, body := s.get("/devices/nobody-here")
	p := problemOf(t, resp, body, http.StatusNotFound)
	if !strings.Contains(p.Detail, "nobody-here") {
		t.Errorf("404 detail %q", p.Detail)
	}
}
