package handlers

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
)

// With PHOTO_MAX_INFLIGHT uploads in progress, the next photo is shed with
// 503 + Retry-After before its body is read; once a slot frees, photos are
// accepted again. Gyroscope and GPS are not affected.
func TestPhotoUploadsBeyondTheLimitAreShed(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.PhotoMaxInFlight = 1 })

	// A slow upload holds the only slot: its body arrives through a pipe.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("device_id", "cam-1")
	_ = mw.WriteField("timestamp", "2026-11-28T10:00:00Z")
	fw, _ := mw.CreateFormFile("photo", "p.jpg")
	_, _ = fw.Write(jpegFixture)
	_ = mw.Close()
	pr, pw := io.Pipe()
	// If the test fails early, end the upload so the server can close.
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	slow := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/telemetry/photo", pr)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("X-API-Key", ingestSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(slow)
			return
		}
		slow <- resp
	}()
	half := form.Len() / 2
	if _, err := pw.Write(form.Bytes()[:half]); err != nil {
		t.Fatal(err)
	}

	// Probe with an invalid photo body until the slot is seen taken: a probe
	// that gets the slot is a 400 and accepts nothing.
	var shed *http.Response
	deadline := time.Now().Add(5 * time.Second)
	for shed == nil && time.Now().Before(deadline) {
		resp := s.postJSON("/telemetry/photo", `{}`)
		if resp.StatusCode == http.StatusServiceUnavailable {
			shed = resp
			break
		}
		resp.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if shed == nil {
		t.Fatal("no photo was shed while the only slot was taken")
	}
	var p Problem
	if err := json.NewDecoder(shed.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	shed.Body.Close()
	if shed.Header.Get("Retry-After") == "" || p.Type != ProblemTypeBase+"overloaded" {
		t.Errorf("shed answer: Retry-After %q, problem %+v", shed.Header.Get("Retry-After"), p)
	}
	// Other types do not wait for photo slots.
	if resp := s.postJSON("/telemetry/gps", `{"device_id":"d","timestamp":"2026-11-28T10:00:00Z","latitude":1,"longitude":2}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("gps while photos are saturated: %d", resp.StatusCode)
	}

	// The slow upload completes and is accepted; its slot is free again.
	if _, err := pw.Write(form.Bytes()[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	resp := <-slow
	if resp == nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the slow upload: %v", resp)
	}
	resp.Body.Close()
	if resp := s.postJSON("/telemetry/photo", `{}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("after the slot freed, an invalid photo got %d, want 400 (it was let in)", resp.StatusCode)
	}
}
