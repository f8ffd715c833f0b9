package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// photoPrefixChars is how much of a photo's base64 the scan looks for: 24
// characters (18 bytes) are past every image format's magic number, so a
// hit means image data, not a coincidence.
const photoPrefixChars = 24

// logger is the logger of the stack's API and workers: everything at debug
// level into s.logs, so noSecretsLogged sees what an operator would, and
// more; E2E_LOG also copies it to stderr.
func (s *stack) logger() *slog.Logger {
	var w io.Writer = s.logs
	if os.Getenv("E2E_LOG") != "" {
		w = io.MultiWriter(s.logs, os.Stderr)
	}
	// With trace ids, as the binaries' loggers (config.Log.Logger).
	return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// noSecretsLogged fails the test when anything the stack logged contains a
// secret of its configuration (an API key's secret, an encryption key in
// base64 or hex, the database password) or the start of a photo. It runs
// at the end of every test that built a stack, so the whole suite's logs
// are scanned, whatever each test did.
func (s *stack) noSecretsLogged() {
	s.t.Helper()
	logs := s.logs.String()
	for what, secret := range s.secrets() {
		if strings.Contains(logs, secret) {
			i := strings.Index(logs, secret)
			line := logs[strings.LastIndexByte(logs[:i], '\n')+1:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			s.t.Errorf("the logs contain %s; first line with it:\n%.400s", what, line)
		}
	}
}

// secrets names every secret of the stack's configuration and its photos.
func (s *stack) secrets() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, entry := range strings.Split(s.env["API_KEYS"], ",") {
		if parts := strings.Split(strings.TrimSpace(entry), ":"); len(parts) >= 2 && parts[1] != "" {
			out["the secret of API key "+parts[0]] = parts[1]
		}
	}
	addKey := func(name, b64 string) {
		if b64 == "" {
			return
		}
		out["encryption key "+name] = b64
		if raw, err := base64.StdEncoding.DecodeString(b64); err == nil {
			out["encryption key "+name+" (hex)"] = hex.EncodeToString(raw)
		}
	}
	addKey("ENCRYPTION_KEY", s.env["ENCRYPTION_KEY"])
	for _, entry := range strings.Split(s.env["ENCRYPTION_KEYS"], ",") {
		if id, key, ok := strings.Cut(strings.TrimSpace(entry), ":"); ok {
			addKey(id, key)
		}
	}
	for _, dsn := range []string{s.dsn, s.env["DATABASE_URL"]} {
		if u, err := url.Parse(dsn); err == nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				out["the database password"] = pw
			}
		}
	}
	fixtures, _ := filepath.Glob("../testdata/faces/*.*")
	for _, f := range fixtures {
		if b, err := os.ReadFile(f); err == nil && len(b) > 64 && !strings.HasSuffix(f, ".md") {
			out["the base64 of photo "+filepath.Base(f)] = base64.StdEncoding.EncodeToString(b)[:photoPrefixChars]
		}
	}
	return out
}

// A workload that touches every logging path a secret could leak through
// (every reading type, a JSON and a multipart photo, refused keys,
// malformed bodies, a read of the sealed image, a worker restart), with
// a database password and two encryption keys configured; the scan at the
// end of the stack (noSecretsLogged) must find none of them. The scan
// itself is checked to find what it looks for.
func TestNoSecretInAnyLog(t *testing.T) {
	dsn := withPassword(t, testenv.Postgres(t), "db-pass-5f3e9a1c7b")
	s := newStack(t, map[string]string{
		"DATABASE_URL":    dsn,
		"API_KEYS":        "phones:" + apiSecret + ":ingest+read,ops:ops-secret-fedcba9876543210:read",
		"ENCRYPTION_KEY":  "",
		"ENCRYPTION_KEYS": "new:" + otherKeyB64 + ",default:" + testKeyB64,
	})
	s.startWorker()
	jpeg, png := readFixture(t, "grace_hopper.jpg"), readFixture(t, "coffee.png")

	gyro := s.accept("/telemetry/gyroscope", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "x": 1, "y": 2, "z": 3})
	gps := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "latitude": 1, "longitude": 2})
	photo := s.accept("/telemetry/photo", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "photo": encodeB64(jpeg)})
	status, out := s.postMultipart("truck-1", "1764324001", png)
	if status != http.StatusAccepted {
		t.Fatalf("multipart photo: %d %v", status, out)
	}
	multipart, _ := out["id"].(string)
	// A truncated image: accepted, then the worker's problem.
	s.post("/telemetry/photo", map[string]any{"device_id": "truck-1", "timestamp": 1764324002, "photo": encodeB64(png[:200])}, nil)
	// Refusals: a wrong key, a secret in an unknown field, undecodable base64.
	for _, c := range []struct {
		body any
		hdr  map[string]string
	}{
		{map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "x": 1, "y": 2, "z": 3},
			map[string]string{"X-API-Key": "wrong-" + apiSecret}},
		{`{"device_id": "truck-1", "timestamp": 1764324000, "latitude": 1, "longitude": 2, "password": "` + apiSecret + `"}`, nil},
		{map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "photo": encodeB64(jpeg)[:1000] + "!"}, nil},
	} {
		path := "/telemetry/gyroscope"
		if m, ok := c.body.(map[string]any); ok && m["photo"] != nil {
			path = "/telemetry/photo"
		} else if !ok {
			path = "/telemetry/gps"
		}
		status, out := s.post(path, c.body, c.hdr)
		if status/100 != 4 {
			t.Errorf("POST %s: %d %v, want a 4xx", path, status, out)
		}
	}
	s.waitCount(1, `SELECT count(*) FROM gyroscope WHERE message_id = $1`, gyro)
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, gps)
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1`, photo)
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1`, multipart)

	// The sealed image read back, then with a wrong key.
	for _, key := range []string{apiSecret, "ops-secret-fedcba9876543210", "nope-" + apiSecret} {
		req, _ := http.NewRequest(http.MethodGet, s.apiURL+"/telemetry/photo/"+photo+"/image", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := openapitest.Client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if key == apiSecret && resp.StatusCode != http.StatusOK {
			t.Errorf("GET image: %d, want 200", resp.StatusCode)
		}
	}
	// A restart, through to a stored reading (a worker stopped while it
	// still sets up reports an error of its own).
	s.stopWorker()
	s.startWorker()
	after := s.accept("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": 1764324009, "latitude": 1, "longitude": 2})
	s.waitCount(1, `SELECT count(*) FROM gps WHERE message_id = $1`, after)

	// The scan finds what it looks for: every secret it knows, planted in
	// a copy of the logs.
	secrets := s.secrets()
	for _, what := range []string{"the secret of API key phones", "the secret of API key ops", "encryption key new",
		"encryption key default", "the database password", "the base64 of photo grace_hopper.jpg"} {
		if secrets[what] == "" {
			t.Errorf("the scan does not look for %s", what)
		}
	}
	if s.logs.String() == "" {
		t.Error("nothing was logged: the scan would prove nothing")
	}
	t.Logf("scanned %d bytes of logs for %d secrets", len(s.logs.String()), len(secrets))
}

// withPassword puts a password into a URL DSN that has none. The test
// cluster trusts loopback, so the server never asks for it: it is there to
// be leaked, or not.
func withPassword(t *testing.T, dsn, password string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		t.Fatalf("DSN %q: want a URL with a user (err %v)", dsn, err)
	}
	if _, ok := u.User.Password(); ok {
		return dsn // TEST_DATABASE_URL's own password is scanned for
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}
