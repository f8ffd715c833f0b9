package handlers

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

func TestListCursorRoundTrip(t *testing.T) {
	pos := &storage.Position{At: time.Date(2026, 11, 28, 10, 0, 0, 123456000, time.UTC), ID: 42}
	q := storage.ListQuery{DeviceID: "truck-1", From: time.Unix(1764324000, 0).UTC(), Limit: 100}
	c := encodeListCursor(pos, models.TypeGPS, q)
	if strings.ContainsAny(c, "+/=") {
		t.Errorf("cursor %q is not unpadded base64url", c)
	}
	q.Limit = 7 // the page size may change from page to page
	got, msg := decodeListCursor(c, models.TypeGPS, q)
	if msg != "" || got == nil || !got.At.Equal(pos.At) || got.ID != pos.ID {
		t.Fatalf("decode = %+v %q, want %+v", got, msg, pos)
	}
	if encodeListCursor(nil, models.TypeGPS, q) != "" {
		t.Error("the last page must have no cursor")
	}
}

func TestListCursorRefusals(t *testing.T) {
	pos := &storage.Position{At: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), ID: 42}
	q := storage.ListQuery{DeviceID: "truck-1", Limit: 100}
	good := encodeListCursor(pos, models.TypeGPS, q)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	tamper := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	asc, other, photos := q, q, q
	asc.Asc = true
	other.DeviceID = "truck-2"
	photos.RecognitionStatus = "matched"
	for _, tt := range []struct {
		name, cursor string
		t            models.Type
		q            storage.ListQuery
		want         string
	}{
		{"made up", "hello", models.TypeGPS, q, "not a cursor this API issued"},
		{"empty payload", "", models.TypeGPS, q, "not a cursor this API issued"},
		{"not base64url", good[:10] + "+" + good[11:], models.TypeGPS, q, "not a cursor this API issued"},
		{"truncated", good[:len(good)-2], models.TypeGPS, q, "not a cursor this API issued"},
		{"too long", good + strings.Repeat("A", 200), models.TypeGPS, q, "not a cursor this API issued"},
		{"device cursor", encodeDeviceCursor("truck-1"), models.TypeGPS, q, "not a cursor this API issued"},
		{"other order", good, models.TypeGPS, asc, "made for order=desc"},
		{"other type", good, models.TypeGyroscope, q, "another query"},
		{"other device", good, models.TypeGPS, other, "another query"},
		{"other filter", good, models.TypePhoto, photos, "another query"},
		{"tampered version", tamper(0), models.TypeGPS, q, "not a cursor this API issued"},
		{"tampered position", tamper(9), models.TypeGPS, q, ""}, // the digest covers the query, not the position
		{"tampered digest", tamper(20), models.TypeGPS, q, "another query"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, msg := decodeListCursor(tt.cursor, tt.t, tt.q)
			if tt.want == "" && msg != "" || !strings.Contains(msg, tt.want) {
				t.Errorf("decode(%q) = %q, want %q", tt.cursor, msg, tt.want)
			}
		})
	}
	// A position PostgreSQL could not take is refused, not sent.
	far := encodeListCursor(&storage.Position{At: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), ID: 1}, models.TypeGPS, q)
	if _, msg := decodeListCursor(far, models.TypeGPS, q); msg == "" {
		t.Error("a cursor in year 12000 was accepted")
	}
	zero := encodeListCursor(&storage.Position{At: pos.At, ID: 0}, models.TypeGPS, q)
	if _, msg := decodeListCursor(zero, models.TypeGPS, q); msg == "" {
		t.Error("a cursor with row id 0 was accepted")
	}
}

func TestDeviceCursor(t *testing.T) {
	c := encodeDeviceCursor("aa:bb:cc:dd:ee:ff")
	if after, msg := decodeDeviceCursor(c); msg != "" || after != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("decode = %q %q", after, msg)
	}
	if encodeDeviceCursor("") != "" {
		t.Error("the last page must have no cursor")
	}
	for _, bad := range []string{"", "x", encodeDeviceCursor("AA-BB-CC-DD-EE-FF"), encodeDeviceCursor("with space"),
		base64.RawURLEncoding.EncodeToString([]byte("d")), base64.RawURLEncoding.EncodeToString([]byte("rtruck"))} {
		if _, msg := decodeDeviceCursor(bad); msg == "" {
			t.Errorf("decodeDeviceCursor(%q) accepted", bad)
		}
	}
}

// No string makes the cursor decoders panic, and what they accept is a
// position the database can take.
func FuzzListCursor(f *testing.F) {
	q := storage.ListQuery{Limit: 100}
	f.Add(encodeListCursor(&storage.Position{At: time.Now(), ID: 1}, models.TypeGPS, q))
	f.Add(encodeDeviceCursor("truck-1"))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		if pos, msg := decodeListCursor(s, models.TypeGPS, q); msg == "" {
			if pos == nil || pos.ID <= 0 || pos.At.Year() < 1 || pos.At.Year() > 9999 {
				t.Errorf("accepted %q as %+v", s, pos)
			}
		}
		if after, msg := decodeDeviceCursor(s); msg == "" {
			if id, bad := models.NormalizeDeviceID(after); bad != "" || id != after {
				t.Errorf("accepted %q as device %q", s, after)
			}
		}
	})
}
