package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/models"
)

// readiness is the body of /readyz.
type readiness struct {
	Status string            `json:"status"`
	Reason string            `json:"reason"`
	Checks map[string]string `json:"checks"`
}

func (s *readStack) readyz(admin string) (int, readiness) {
	s.t.Helper()
	resp, body := s.request(http.MethodGet, admin+"/readyz")
	var r readiness
	if err := json.Unmarshal(body, &r); err != nil {
		s.t.Fatalf("/readyz %s: %v", body, err)
	}
	return resp.StatusCode, r
}

// PostgreSQL stops under a running API: the read routes answer 503 with
// Retry-After, ingest goes on answering 202, and /readyz stays 200 with the
// database reported down; when it is back, so are the reads.
func TestReadsWhileTheDatabaseIsDown(t *testing.T) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "e2e-read-pg-") // reachable by "postgres" when run as root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg, err := localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	port := pg.Port()
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	if err := pg.CreateDatabase(ctx, "telemetry"); err != nil {
		t.Fatal(err)
	}
	s := newReadStack(t, map[string]string{"DATABASE_URL": pg.DSN("telemetry"), "READ_STATEMENT_TIMEOUT": "1s",
		"RETRY_BACKOFF": "200ms,400ms", "CONSUMER_MAX_DELIVER": "100"})
	s.startWorker()
	base, admin := s.startAPI(nil, quietLog())
	id := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-3", "timestamp": time.Now().Unix() - 60, "latitude": 1, "longitude": 2})
	waitStored[models.GPSItem](s, "gps", id)
	if code, r := s.readyz(admin); code != http.StatusOK || r.Checks["database"] != "ok" || r.Checks["nats"] != "ok" {
		t.Fatalf("/readyz with everything up = %d %+v", code, r)
	}

	s.db.Reset() // the test's own pool must not hold the server up
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/telemetry/gps", "/telemetry/gps/" + id, "/telemetry/photo/" + id + "/image", "/devices", "/devices/truck-3/track"} {
		start := time.Now()
		resp, body := s.request(http.MethodGet, base+path)
		p := problemOf(t, resp, body, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") == "" || p.Detail == "" || strings.Contains(string(body), "connect") {
			t.Errorf("GET %s: %+v, Retry-After %q", path, p, resp.Header.Get("Retry-After"))
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("GET %s took %s with the database down", path, took)
		}
	}
	// Ingest does not depend on PostgreSQL.
	queued := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-3", "timestamp": time.Now().Unix() - 30, "latitude": 3, "longitude": 4})
	s.eventually("/readyz reporting the database", func() (bool, string) {
		code, r := s.readyz(admin)
		return code == http.StatusOK && r.Status == "ready" && r.Checks["nats"] == "ok" &&
			strings.HasPrefix(r.Checks["database"], "unavailable: "), r.Status + " " + r.Checks["database"]
	})

	if pg, err = localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true, Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	item := waitStored[models.GPSItem](s, "gps", queued)
	if item.Latitude != 3 {
		t.Errorf("reading accepted while the database was down = %+v", item)
	}
	s.eventually("/readyz with the database back", func() (bool, string) {
		code, r := s.readyz(admin)
		return code == http.StatusOK && r.Checks["database"] == "ok", r.Checks["database"]
	})
	if resp, body := s.request(http.MethodGet, base+"/telemetry/gps"); resp.StatusCode != http.StatusOK {
		t.Errorf("reads after the database is back: %d %s", resp.StatusCode, body)
	}
}

// CORS through the whole stack: a browser's preflight from an allowed
// origin is answered without a key, one from another origin is refused,
// and the actual answers carry the headers a page needs.
func TestCORSPreflightThroughTheStack(t *testing.T) {
	const origin = "http://localhost:3000"
	s := newReadStack(t, map[string]string{"CORS_ALLOWED_ORIGINS": "https://fleet.example.com," + origin})
	preflight := func(from string) *http.Response {
		resp, _ := s.request(http.MethodOptions, s.apiURL+"/telemetry/gps?device_id=truck-1", "X-API-Key", "", "Origin", from,
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-api-key")
		return resp
	}
	resp := preflight(origin)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "X-API-Key") ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = preflight("https://evil.example")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("foreign preflight: %d %v", resp.StatusCode, resp.Header)
	}
	s.migrate()
	resp, body := s.get("/telemetry/gps", "Origin", origin)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("actual request: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}
