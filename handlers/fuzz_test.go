package handlers

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// FuzzMultipartPhoto: the multipart reader never panics; what it accepts
// re-validates as a queue message once Meta is filled in; what it refuses
// is a client error that names fields or explains the body.
func FuzzMultipartPhoto(f *testing.F) {
	tinyPNG := []byte("\x89PNG\r\n\x1a\nrest-of-image")
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	ts := now.Add(-time.Minute).Format(time.RFC3339)
	for _, parts := range [][]part{
		photoParts("00:0a:95:9d:68:16", ts, tinyPNG),
		photoParts("d", "1764324000.5", []byte("\xff\xd8\xffjpeg")),
		photoParts("d", ts, []byte("GIF89a")),
		photoParts("", "", nil)[:2],
		append(photoParts("d", ts, tinyPNG), part{name: "x", data: []byte("y")}),
	} {
		body, ct := multipartBody(f, parts...)
		var b bytes.Buffer
		b.ReadFrom(body)
		f.Add(b.Bytes(), strings.TrimPrefix(ct, "multipart/form-data; boundary="))
	}
	f.Add([]byte("--zz\r\nContent-Disposition: form-data; name=\"photo\"\r\n\r\n\x89PNG\r\n\x1a\n\r\n--zz--"), "zz")
	f.Add([]byte("--zz--"), "zz")
	f.Add([]byte(""), "")

	lim := models.Limits{MaxFutureSkew: 5 * time.Minute, MaxPhotoBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/telemetry/photo", bytes.NewReader(body))
		p, err := decodeMultipartPhoto(w, r, pace{}, boundary, 4<<10, now, lim)
		if err != nil {
			switch ierr.KindOf(err) {
			case ierr.Invalid, ierr.TooLarge, ierr.Unsupported:
			default:
				t.Fatalf("refusal of kind %v: %v", ierr.KindOf(err), err)
			}
			if len(ierr.FieldsOf(err)) == 0 && clientDetail(err, 0) == "" {
				t.Fatalf("refusal without fields or detail: %v", err)
			}
			return
		}
		p.MessageID, p.Actor, p.ReceivedAt = uuid.Must(uuid.NewV7()), "fuzz", now
		if err := p.Validate(lim); err != nil {
			t.Fatalf("accepted photo does not re-validate: %v", err)
		}
	})
}

// FuzzClientIP: the client IP is the peer unless the peer is trusted, and
// is otherwise one of the forwarded hops or the peer itself.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.1:80", "1.2.3.4")
	f.Add("10.0.0.1:80", "6.6.6.6, 1.2.3.4, 10.0.0.2")
	f.Add("203.0.113.1:80", "1.2.3.4")
	f.Add("[::ffff:10.0.0.1]:80", "[2001:db8::1]:443, garbage")
	f.Add("10.0.0.1:80", ",,, ,")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		got := clientIP(peer, []string{xff}, trusted)
		p, ok := parseHop(peer)
		if !ok {
			if got.IsValid() {
				t.Fatalf("unparsable peer %q gave %s", peer, got)
			}
			return
		}
		if !isTrusted(p, trusted) {
			if got != p {
				t.Fatalf("untrusted peer %s: client %s", p, got)
			}
			return
		}
		if got == p {
			return
		}
		for _, hop := range strings.Split(xff, ",") {
			if a, ok := parseHop(strings.TrimSpace(hop)); ok && a == got {
				return
			}
		}
		t.Fatalf("client %s is neither the peer %s nor a hop of %q", got, p, xff)
	})
}

func BenchmarkGPSHandler(b *testing.B) {
	s := newStack(b, nil)
	body := []byte(fmt.Sprintf(`{"device_id":"00:0a:95:9d:68:16","timestamp":%d,"latitude":-23.55052,"longitude":-46.633308}`, time.Now().Unix()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/telemetry/gps", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-API-Key", ingestSecret)
		w := httptest.NewRecorder()
		s.h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
