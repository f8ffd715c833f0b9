package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/internal/devstack"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// runStack runs the dev stack as `make run` does, on free ports, with its
// state in dir, until stop is called; it returns the banner.
func runStack(t *testing.T, dir string) (banner string, stop func()) {
	t.Helper()
	out := &testenv.LogBuffer{}
	env := map[string]string{"LOG_LEVEL": "warn", "HOME": t.TempDir()}
	cfg := devstack.Config{
		Dir:             dir,
		HTTPAddr:        freeAddr(t),
		APIAdminAddr:    freeAddr(t),
		WorkerAdminAddr: freeAddr(t),
		NATSPort:        0,
		PGPort:          0,
		Getenv:          func(k string) string { return env[k] },
		Out:             out,
		LogOutput:       io.Discard,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devstack.Run(ctx, cfg) }()

	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "curl -i") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Run returned before the banner: %v", err)
		case <-deadline:
			cancel()
			<-done
			t.Fatal("no banner within 2 minutes")
		case <-time.After(50 * time.Millisecond):
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after cancel: %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("Run did not return within a minute of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return out.String(), stop
}

var (
	reURL = regexp.MustCompile(`curl -i -X POST (\S+)/telemetry/gps`)
	reKey = regexp.MustCompile(`X-API-Key: ([^']+)'`)
	reDSN = regexp.MustCompile(`psql\S* '([^']+)'`)
	reGet = regexp.MustCompile(`curl -s '([^']+/telemetry/gps\?[^']+)'`)
)

func match(t *testing.T, re *regexp.Regexp, s string) string {
	t.Helper()
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("banner does not match %s:\n%s", re, s)
	}
	return m[1]
}

// TestRunThePrintedCurlStoresTheReading is what a new user does: make run,
// paste the curl line, find the row in PostgreSQL. Then Ctrl-C and a second
// run on the same state: same key, same data.
func TestRunThePrintedCurlStoresTheReading(t *testing.T) {
	dir, err := os.MkdirTemp("", "devstack-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // reachable by the "postgres" user when run as root
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, ".devstack")

	banner, stop := runStack(t, state)
	apiURL, key, dsn := match(t, reURL, banner), match(t, reKey, banner), match(t, reDSN, banner)

	body := fmt.Sprintf(`{"device_id":"AA-BB-CC-DD-EE-01","timestamp":%q,"latitude":-23.55052,"longitude":-46.633308}`,
		time.Now().UTC().Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/telemetry/gps", strings.NewReader(body))
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /telemetry/gps = %d %s, want 202", resp.StatusCode, respBody)
	}

	waitForRow(t, dsn, "aa:bb:cc:dd:ee:01")
	readThroughAPI(t, match(t, reGet, banner), key, "aa:bb:cc:dd:ee:01")
	apiReadsAsItsOwnRole(t, dsn)

	// The README's face walkthrough: faces are recognised locally.
	hopper := postPhoto(t, apiURL, key, dsn, "grace_hopper.jpg")
	again := postPhoto(t, apiURL, key, dsn, "grace_hopper.jpg")
	other := postPhoto(t, apiURL, key, dsn, "astronaut.png")
	if hopper.status != "new_face" || again.status != "matched" || again.faceID != hopper.faceID ||
		other.status != "new_face" || other.faceID == hopper.faceID {
		t.Fatalf("grace_hopper.jpg twice, astronaut.png: %+v, %+v, %+v; want new_face, matched to the first, another new_face",
			hopper, again, other)
	}
	stop()

	// Ctrl-C released every port and stopped the cluster.
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(apiURL, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("API still listening after the stack stopped")
	}

	banner2, _ := runStack(t, state)
	if key2 := match(t, reKey, banner2); key2 != key {
		t.Errorf("dev key changed across runs: %q then %q", key, key2)
	}
	dsn2 := match(t, reDSN, banner2)
	waitForRow(t, dsn2, "aa:bb:cc:dd:ee:01")
	// The worker's cache went with the first run: the face is recognised by
	// the local service from the collection it kept (an identical photo
	// scores just under 100 there).
	if p := postPhoto(t, match(t, reURL, banner2), key, dsn2, "grace_hopper.jpg"); p.status != "matched" ||
		p.faceID != hopper.faceID || p.similarity >= 100 || p.similarity < 99 {
		t.Errorf("grace_hopper.jpg after a restart: %+v, want matched to %s by the local service", p, hopper.faceID)
	}
	for _, f := range []string{"encryption.key", "dev-api-key", "api-db-password", "pg/data/PG_VERSION",
		devstack.RekognitionDir + "/collections.json"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("state file: %v", err)
		}
	}
}

func waitForRow(t *testing.T, dsn, device string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var lat, lon float64
		err := conn.QueryRow(ctx, "SELECT latitude, longitude FROM gps WHERE device_id = $1", device).Scan(&lat, &lon)
		if err == nil {
			if lat != -23.55052 || lon != -46.633308 {
				t.Fatalf("stored (%v, %v), want (-23.55052, -46.633308)", lat, lon)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no gps row for %s: %v", device, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readThroughAPI runs the banner's read line for device: the reading comes
// back with the posted values.
func readThroughAPI(t *testing.T, printed, key, device string) {
	t.Helper()
	u, err := url.Parse(printed)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("device_id", device)
	u.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Items []struct {
			DeviceID  string  `json:"device_id"`
			Latitude  float64 `json:"latitude"`
			Longitude float64 `json:"longitude"`
		} `json:"items"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s, want 200", u, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Items) != 1 || page.Items[0].DeviceID != device ||
		page.Items[0].Latitude != -23.55052 || page.Items[0].Longitude != -46.633308 {
		t.Fatalf("GET %s = %s (%v), want the one reading of %s", u, body, err, device)
	}
}

// apiReadsAsItsOwnRole: the API's read sessions are challenge_api's, a role
// that can read the readings but not change them.
func apiReadsAsItsOwnRole(t *testing.T, dsn string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var apiSessions, otherReadSessions int
	var canSelect, canInsert, canAudit bool
	err = conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_stat_activity WHERE usename = $1),
		(SELECT count(*) FROM pg_stat_activity WHERE usename <> $1 AND application_name = 'challenge-v3-read'),
		has_table_privilege($1, 'gps', 'SELECT'), has_table_privilege($1, 'gps', 'INSERT'),
		has_any_column_privilege($1, 'audit_log', 'INSERT')`, devstack.APIRole).
		Scan(&apiSessions, &otherReadSessions, &canSelect, &canInsert, &canAudit)
	if err != nil {
		t.Fatal(err)
	}
	if apiSessions == 0 || otherReadSessions != 0 {
		t.Errorf("%d sessions of %s and %d read sessions of another user, want the API's reads as %s only",
			apiSessions, devstack.APIRole, otherReadSessions, devstack.APIRole)
	}
	if !canSelect || canInsert || !canAudit {
		t.Errorf("%s: SELECT gps %v, INSERT gps %v, INSERT audit_log %v; want true, false, true",
			devstack.APIRole, canSelect, canInsert, canAudit)
	}
}

type storedPhoto struct {
	status, faceID string
	similarity     float64
}

// postPhoto posts testdata/faces/name as the README does (multipart) and
// waits for its row.
func postPhoto(t *testing.T, apiURL, key, dsn, name string) storedPhoto {
	t.Helper()
	img, err := os.ReadFile(filepath.Join("..", "..", "testdata", "faces", name))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("device_id", "cam-1")
	_ = mw.WriteField("timestamp", time.Now().UTC().Format(time.RFC3339))
	fw, _ := mw.CreateFormFile("photo", name)
	_, _ = fw.Write(img)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, apiURL+"/telemetry/photo", &buf)
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct{ ID string }
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &accepted) != nil || accepted.ID == "" {
		t.Fatalf("POST /telemetry/photo %s = %d %s, want 202 with an id", name, resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var p storedPhoto
		var faceID *string
		var similarity *float64
		err := conn.QueryRow(ctx, "SELECT recognition_status, face_id, similarity FROM photo WHERE message_id = $1",
			accepted.ID).Scan(&p.status, &faceID, &similarity)
		if err == nil {
			if faceID != nil {
				p.faceID = *faceID
			}
			if similarity != nil {
				p.similarity = *similarity
			}
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no photo row for %s (%s): %v", name, accepted.ID, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
