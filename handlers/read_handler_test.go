package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// unreachableReader is a real read pool whose database never answers (its
// pool connects lazily, so it opens fine): what the API has while
// PostgreSQL is down.
func unreachableReader(t *testing.T) *storage.Reader {
	t.Helper()
	rd, err := storage.OpenReader(context.Background(), "postgres://reader:pw@127.0.0.1:1/telemetry?connect_timeout=1", 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	return rd
}

func (s *stack) read(path string, headers ...string) *http.Response {
	s.t.Helper()
	return s.do(http.MethodGet, path, "", nil, append([]string{"X-API-Key", readSecret}, headers...)...)
}

func TestReadRoutesWithoutADatabaseAreNotConfigured(t *testing.T) {
	s := newStack(t, nil)
	id := uuid.Must(uuid.NewV7())
	for _, path := range []string{"/telemetry/gps", "/telemetry/photo/" + id.String(), "/telemetry/photo/" + id.String() + "/image",
		"/devices", "/devices/truck-1", "/devices/truck-1/track"} {
		p := checkProblem(t, s.read(path), http.StatusNotFound)
		if !strings.HasSuffix(p.Type, "#read-api-not-configured") || !strings.Contains(p.Detail, "DATABASE_URL") {
			t.Errorf("GET %s: %+v", path, p)
		}
	}
	// Authentication still comes first.
	checkProblem(t, s.read("/devices", "X-API-Key", ""), http.StatusUnauthorized)
}

// With the database down, reads answer 503 with Retry-After and ingest
// goes on.
func TestReadRoutesWithTheDatabaseDown(t *testing.T) {
	s := newStackWith(t, nil, Backends{Reader: unreachableReader(t)})
	id := uuid.Must(uuid.NewV7())
	for _, path := range []string{"/telemetry/gyroscope", "/telemetry/gps?device_id=AA-BB-CC-DD-EE-FF", "/telemetry/photo/" + id.String(),
		"/devices", "/devices/truck-1", "/devices/truck-1/track"} {
		resp := s.read(path)
		p := checkProblem(t, resp, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(p.Title, "stored data") || p.Detail == "" {
			t.Errorf("GET %s: %+v, Retry-After %q", path, p, resp.Header.Get("Retry-After"))
		}
		if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(p.Detail, "dial") {
			t.Errorf("GET %s leaks the dependency's error: %q", path, p.Detail)
		}
	}
	wantStatus(t, s.postJSON("/telemetry/gps", gpsBody()), http.StatusAccepted)
	if !strings.Contains(s.logs.String(), `"route":"GET /telemetry/gyroscope"`) {
		t.Error("read requests must be labelled with their route pattern in the access log")
	}
	if got := s.metric("api_http_requests_total", map[string]string{"route": RouteDevice, "method": "GET", "status": "503"}); got != 1 {
		t.Errorf("503 of %s counted %v times, want 1", RouteDevice, got)
	}
}

// Parameters are refused before any query runs: the database being
// unreachable shows they never reach it.
func TestReadParametersAreCheckedFirst(t *testing.T) {
	s := newStackWith(t, nil, Backends{Reader: unreachableReader(t)})
	for _, tt := range []struct{ path, field string }{
		{"/telemetry/gps?limit=0", "limit"},
		{"/telemetry/gps?order=up", "order"},
		{"/telemetry/gps?from=2026-11-28T10:00:00Z&to=2026-11-28T09:00:00Z", "from"},
		{"/telemetry/gps?devise_id=x", "devise_id"},
		{"/telemetry/gps?cursor=abc", "cursor"},
		{"/telemetry/gps/not-a-uuid", "id"},
		{"/telemetry/gps/" + uuid.NewString() + "?pretty=1", "pretty"},
		{"/devices?limit=1001", "limit"},
		{"/devices?cursor=" + encodeListCursor(&storage.Position{At: time.Now(), ID: 1}, models.TypeGPS, storage.ListQuery{}), "cursor"},
		{"/devices/truck%201", "device_id"},
		{"/devices/truck-1/track?limit=5", "limit"},
	} {
		p := checkProblem(t, s.read(tt.path), http.StatusBadRequest)
		if len(p.Errors) == 0 || p.Errors[0].Field != tt.field {
			t.Errorf("GET %s: errors %+v, want the field %s named", tt.path, p.Errors, tt.field)
		}
	}
}

func TestImageWithoutEncryptionKeys(t *testing.T) {
	s := newStackWith(t, nil, Backends{Reader: unreachableReader(t)})
	resp := s.read("/telemetry/photo/" + uuid.NewString() + "/image")
	p := checkProblem(t, resp, http.StatusServiceUnavailable)
	if !strings.HasSuffix(p.Type, "#image-decryption-not-configured") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("problem %+v", p)
	}
}

func TestIfNoneMatch(t *testing.T) {
	const etag = `"photo-1"`
	for _, tt := range []struct {
		header        []string
		tagged, isAny bool
	}{
		{nil, false, false},
		{[]string{`"photo-1"`}, true, false},
		{[]string{`W/"photo-1"`}, true, false}, // weak comparison
		{[]string{`"other", "photo-1"`}, true, false},
		{[]string{`"other"`, `"photo-1"`}, true, false},
		{[]string{`"photo-2"`}, false, false},
		{[]string{`photo-1`}, false, false}, // not a quoted tag
		{[]string{`*`}, false, true},
	} {
		tagged, isAny := ifNoneMatch(tt.header, etag)
		if tagged != tt.tagged || isAny != tt.isAny {
			t.Errorf("If-None-Match %q = %v %v, want %v %v", tt.header, tagged, isAny, tt.tagged, tt.isAny)
		}
	}
}

func TestTrackIsGeoJSON(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	p1 := models.Position{Latitude: -23.5, Longitude: -46.6, Timestamp: at}
	p2 := models.Position{Latitude: -23.6, Longitude: -46.7, Timestamp: at.Add(time.Second)}
	for _, tt := range []struct {
		name   string
		points []models.Position
		want   string
	}{
		{"no fix", nil, `{"type":"Feature","geometry":null,"properties":{"device_id":"d","timestamps":[],"truncated":false}}`},
		{"one fix", []models.Position{p1},
			`{"type":"Feature","geometry":{"type":"Point","coordinates":[-46.6,-23.5]},"properties":{"device_id":"d","timestamps":["2026-11-28T10:00:00Z"],"truncated":false}}`},
		{"two fixes", []models.Position{p1, p2},
			`{"type":"Feature","geometry":{"type":"LineString","coordinates":[[-46.6,-23.5],[-46.7,-23.6]]},"properties":{"device_id":"d","timestamps":["2026-11-28T10:00:00Z","2026-11-28T10:00:01Z"],"truncated":false}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(newTrack("d", tt.points, false))
			if err != nil || string(b) != tt.want {
				t.Errorf("track = %s (%v)\nwant    %s", b, err, tt.want)
			}
		})
	}
}
