package worker_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/worker"
)

// TestAdminAnswersInJSON checks the worker's probes give the same JSON
// documents as the API's, and that /readyz follows the NATS connection.
func TestAdminAnswersInJSON(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.start(worker.Options{})
	admin := "http://" + e.cfg.AdminAddr

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != `{"status":"ok"}` {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != `{"status":"ready"}` {
		t.Errorf("/readyz = %d %s", code, body)
	}

	e.nats.Stop()
	e.waitFor(5*time.Second, "readyz to report NATS down", func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && body == `{"status":"unavailable","reason":"nats not connected"}`
	})
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz must stay 200 (the process is alive): %d", code)
	}
	e.nats.Restart(t)
	e.waitFor(10*time.Second, "readyz after NATS restart", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
}
