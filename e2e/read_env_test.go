package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/handlers"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Keys of the read tests besides the stack's "phones" (ingest+read): a
// front-end's read-only key and a phone's ingest-only key.
const (
	readSecret   = "e2e-frontend-secret-0123456789"
	ingestSecret = "e2e-phone-only-secret-0123456789"
	readKeyName  = "frontend"
	// otherKeyB64 is a second encryption key, for rotation.
	otherKeyB64 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// readStack is a running system whose HTTP exchanges are all validated
// against the OpenAPI document.
type readStack struct {
	*stack
	client *http.Client
}

// newReadStack starts the stack with the three keys; the worker is left to
// the test, as with newStack.
func newReadStack(t *testing.T, extra map[string]string) *readStack {
	t.Helper()
	env := map[string]string{
		"API_KEYS": "phones:" + apiSecret + ":ingest+read," + readKeyName + ":" + readSecret + ":read,phone-only:" + ingestSecret + ":ingest",
	}
	for k, v := range extra {
		env[k] = v
	}
	return &readStack{stack: newStack(t, env), client: openapitest.Client(t)}
}

// migrate applies the schema now, so a test can write rows before the
// worker runs (the worker's own migration then finds nothing to do).
func (s *readStack) migrate() {
	s.t.Helper()
	if err := storage.Migrate(context.Background(), s.db); err != nil {
		s.t.Fatal(err)
	}
}

// request sends a request with the read key unless headers say otherwise
// (an "X-API-Key" of "" removes it) and returns the answer with its body.
func (s *readStack) request(method, url string, headers ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("X-API-Key", readSecret)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, body
}

// get reads a path of the stack's API.
func (s *readStack) get(path string, headers ...string) (*http.Response, []byte) {
	s.t.Helper()
	return s.request(http.MethodGet, s.apiURL+path, headers...)
}

// getJSON insists on 200 and decodes the answer.
func getJSON[T any](s *readStack, path string) T {
	s.t.Helper()
	resp, body := s.get(path)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		s.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	return v
}

// problem decodes a problem answer and checks its status.
func problemOf(t *testing.T, resp *http.Response, body []byte, status int) handlers.Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s = %d, want %d; body %s", resp.Request.Method, resp.Request.URL.RequestURI(), resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var p handlers.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem %s: %v", body, err)
	}
	return p
}

// waitStored polls GET /telemetry/{type}/{id} until the reading is stored,
// as a client following its 202 does, and returns the item.
func waitStored[T any](s *readStack, typ, id string) T {
	s.t.Helper()
	var item T
	s.eventually("GET /telemetry/"+typ+"/"+id, func() (bool, string) {
		resp, body := s.get("/telemetry/" + typ + "/" + id)
		switch resp.StatusCode {
		case http.StatusOK:
			if err := json.Unmarshal(body, &item); err != nil {
				s.t.Fatal(err)
			}
			return true, ""
		case http.StatusNotFound, http.StatusServiceUnavailable: // queued; schema not there yet
			return false, fmt.Sprint(resp.StatusCode, " ", string(body))
		}
		s.t.Fatalf("GET /telemetry/%s/%s = %d %s", typ, id, resp.StatusCode, body)
		return false, ""
	})
	return item
}

// startAPI runs another API on the stack's NATS and database, with env
// overriding the stack's environment and its log on log; it returns the
// public and admin base URLs.
func (s *readStack) startAPI(env map[string]string, log *slog.Logger) (string, string) {
	s.t.Helper()
	cfg, err := config.LoadAPI(func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return s.env[k]
	})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := api.New(ctx, cfg, log)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	s.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("api: %v", err)
		}
	})
	return "http://" + srv.Addr(), "http://" + srv.AdminAddr()
}

// rfc3339 renders t as the API renders times.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
