package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/models"
)

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// postPhotos posts a JPEG as base64 JSON and a PNG as multipart, waits for
// both to be stored and returns their items with the posted bytes.
func postPhotos(s *readStack) map[string][]byte {
	s.t.Helper()
	at := time.Now().UTC().Add(-time.Minute)
	jpeg := readFixture(s.t, "grace_hopper.jpg")
	png := readFixture(s.t, "coffee.png")
	jpegID := s.accept("/telemetry/photo", map[string]any{"device_id": "cam-1", "timestamp": rfc3339(at), "photo": encodeB64(jpeg)})
	status, out := s.postMultipart("cam-1", strconv.FormatInt(at.Unix(), 10), png)
	if status != http.StatusAccepted {
		s.t.Fatalf("multipart photo: %d %v", status, out)
	}
	pngID := out["id"].(string)
	waitStored[models.PhotoItem](s, "photo", jpegID)
	waitStored[models.PhotoItem](s, "photo", pngID)
	return map[string][]byte{jpegID: jpeg, pngID: png}
}

func (s *readStack) views(id string) int {
	s.t.Helper()
	return s.count(`SELECT count(*) FROM audit_log WHERE action = 'photo.viewed' AND message_id = $1`, id)
}

// The image route returns the exact bytes posted with their type, a strong
// ETag, private caching; every 200 is one photo.viewed audit row naming the
// key, a 304 none.
func TestPhotoImageIsTheOriginalAndEachViewIsAudited(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	photos := postPhotos(s)
	for id, img := range photos {
		wantType := "image/jpeg"
		if bytes.HasPrefix(img, []byte("\x89PNG")) {
			wantType = "image/png"
		}
		t.Run(wantType, func(t *testing.T) {
			item := getJSON[models.PhotoItem](s, "/telemetry/photo/"+id)
			resp, body := s.get(item.ImageURL)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
				t.Fatalf("GET %s = %d, %d bytes, equal %v", item.ImageURL, resp.StatusCode, len(body), bytes.Equal(body, img))
			}
			h := resp.Header
			etag := h.Get("ETag")
			if h.Get("Content-Type") != wantType || h.Get("Content-Length") != strconv.Itoa(len(img)) ||
				!strings.HasPrefix(etag, `"`) || !strings.Contains(h.Get("Cache-Control"), "private") ||
				h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v", h)
			}
			if n := s.views(id); n != 1 {
				t.Errorf("%d photo.viewed rows after one view, want 1", n)
			}
			var actor, reqID string
			if err := s.db.QueryRow(context.Background(), `SELECT actor, details->>'request_id' FROM audit_log
				WHERE action = 'photo.viewed' AND message_id = $1`, id).Scan(&actor, &reqID); err != nil {
				t.Fatal(err)
			}
			if actor != readKeyName || reqID != h.Get("X-Request-Id") {
				t.Errorf("audit row: actor %q request_id %q, want %q %q", actor, reqID, readKeyName, h.Get("X-Request-Id"))
			}

			resp, body = s.get(item.ImageURL, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
				t.Errorf("If-None-Match: %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
			}
			resp, _ = s.get(item.ImageURL, "If-None-Match", `"something-else"`)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("another tag: %d, want 200", resp.StatusCode)
			}
			if n := s.views(id); n != 2 {
				t.Errorf("%d photo.viewed rows after two 200s and a 304, want 2", n)
			}
		})
	}
	resp, body := s.get("/telemetry/photo/" + newID() + "/image")
	p := problemOf(t, resp, body, http.StatusNotFound)
	if !strings.Contains(p.Detail, "queued") {
		t.Errorf("404 detail %q", p.Detail)
	}
}

// A ciphertext that does not open (tampered, or sealed with a key the API
// no longer has) is a 500 problem with no detail and one error log line
// naming the message and the key; nothing is served or audited. A rotated
// key still opens what it sealed.
func TestPhotoThatDoesNotDecrypt(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	photos := postPhotos(s)
	var tampered, retired string
	for id := range photos {
		if tampered == "" {
			tampered = id
		} else {
			retired = id
		}
	}
	ctx := context.Background()
	if _, err := s.db.Exec(ctx, `UPDATE photo SET image_ciphertext = set_byte(image_ciphertext, 40, get_byte(image_ciphertext, 40) # 1)
		WHERE message_id = $1`, tampered); err != nil {
		t.Fatal(err)
	}

	logs := &testenv.LogBuffer{}
	// The stack's key stays, as "old", behind a new active one: rotation.
	base, _ := s.startAPI(map[string]string{"ENCRYPTION_KEY": "", "ENCRYPTION_KEYS": "new:" + otherKeyB64 + ",default:" + testKeyB64},
		slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	resp, body := s.request(http.MethodGet, base+"/telemetry/photo/"+retired+"/image")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, photos[retired]) {
		t.Errorf("after a key rotation: %d, equal %v", resp.StatusCode, bytes.Equal(body, photos[retired]))
	}

	resp, body = s.request(http.MethodGet, base+"/telemetry/photo/"+tampered+"/image")
	p := problemOf(t, resp, body, http.StatusInternalServerError)
	if p.Detail != "" || len(p.Errors) != 0 || bytes.Contains(body, []byte("authentication")) || bytes.Contains(body, []byte("default")) {
		t.Errorf("500 leaks detail: %s", body)
	}
	// A key id the API does not know, as after a key was removed too early.
	if _, err := s.db.Exec(ctx, `UPDATE photo SET encryption_key_id = 'retired' WHERE message_id = $1`, retired); err != nil {
		t.Fatal(err)
	}
	resp, body = s.request(http.MethodGet, base+"/telemetry/photo/"+retired+"/image")
	if p := problemOf(t, resp, body, http.StatusInternalServerError); p.Detail != "" || bytes.Contains(body, []byte("retired")) {
		t.Errorf("500 leaks detail: %s", body)
	}
	var errLines []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			errLines = append(errLines, line)
		}
	}
	if len(errLines) != 2 ||
		!strings.Contains(errLines[0], tampered) || !strings.Contains(errLines[0], `\"default\"`) ||
		!strings.Contains(errLines[1], retired) || !strings.Contains(errLines[1], `\"retired\"`) {
		t.Errorf("want one error line per failure naming the message and the key; got:\n%s", strings.Join(errLines, "\n"))
	}
	if strings.Contains(logs.String(), "panic") {
		t.Error("a ciphertext that does not open caused a panic")
	}
	if n := s.views(tampered) + s.views(retired); n != 1 { // the one 200 after the rotation
		t.Errorf("%d photo.viewed rows, want 1: a failed view is not audited", n)
	}
}

// Without ENCRYPTION_KEYS the API serves everything but images.
func TestPhotoImageWithoutKeys(t *testing.T) {
	s := newReadStack(t, nil)
	s.startWorker()
	photos := postPhotos(s)
	base, _ := s.startAPI(map[string]string{"ENCRYPTION_KEY": "", "ENCRYPTION_KEYS": ""}, quietLog())
	for id := range photos {
		resp, body := s.request(http.MethodGet, base+"/telemetry/photo/"+id+"/image")
		p := problemOf(t, resp, body, http.StatusServiceUnavailable)
		if !strings.Contains(p.Detail, "ENCRYPTION_KEYS") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("problem %+v", p)
		}
		if resp, body := s.request(http.MethodGet, base+"/telemetry/photo/"+id); resp.StatusCode != http.StatusOK {
			t.Errorf("photo metadata without keys: %d %s", resp.StatusCode, body)
		}
	}
}
