package models_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// BenchmarkDecodePhotoJSON decodes a 1 MiB JPEG sent as base64 JSON, the
// heaviest request the API parses: on one line, and line-wrapped as
// Android's Base64.DEFAULT does (a "\n" escape every 76 characters).
func BenchmarkDecodePhotoJSON(b *testing.B) {
	img, err := os.ReadFile("../testdata/faces/grace_hopper.jpg")
	if err != nil {
		b.Fatal(err)
	}
	img = append(img, make([]byte, 1<<20-len(img))...)
	std := base64.StdEncoding.EncodeToString(img)
	var wrapped strings.Builder
	for s := std; s != ""; s = s[min(76, len(s)):] {
		wrapped.WriteString(s[:min(76, len(s))] + `\n`)
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct{ name, photo string }{{"standard", std}, {"android_wrapped", wrapped.String()}} {
		body := []byte(`{"device_id":"aa:bb:cc:dd:ee:ff","timestamp":"2026-11-28T10:00:00Z","photo":"` + c.photo + `"}`)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := models.Decode[models.Photo](bytes.NewReader(body), now, models.DefaultLimits()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeGPS decodes a GPS request, the most frequent one.
func BenchmarkDecodeGPS(b *testing.B) {
	body := []byte(`{"device_id":"AA-BB-CC-DD-EE-FF","timestamp":"2026-11-28T10:00:00Z","latitude":-23.55052,"longitude":-46.633308}`)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := models.Decode[models.GPS](bytes.NewReader(body), now, models.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalGPS decodes and re-validates a GPS queue message, what
// the worker does for every reading of a batch.
func BenchmarkUnmarshalGPS(b *testing.B) {
	data := []byte(`{"message_id":"019ac9f0-0000-7000-8000-000000000000","actor":"fleet-app","received_at":"2026-11-28T10:00:00Z","device_id":"aa:bb:cc:dd:ee:ff","recorded_at":"2026-11-28T10:00:00Z","latitude":-23.55052,"longitude":-46.633308}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := models.UnmarshalAs[models.GPS](data, models.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeHostile decodes bodies of nothing but unknown keys, as
// large as each route reads: what an attacker can make the API parse.
func BenchmarkDecodeHostile(b *testing.B) {
	junk := func(size int) []byte {
		var s strings.Builder
		s.WriteString("{")
		for i := 0; s.Len() < size-20; i++ {
			if i > 0 {
				s.WriteString(",")
			}
			s.WriteString(`"k` + strconv.Itoa(i) + `":0`)
		}
		s.WriteString("}")
		return []byte(s.String())
	}
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		body   []byte
		decode func(io.Reader) error
	}{
		{"gps_64KiB", junk(64 << 10), func(r io.Reader) error {
			_, err := models.Decode[models.GPS](r, now, models.DefaultLimits())
			return err
		}},
		{"photo_7MiB", junk(7 << 20), func(r io.Reader) error {
			_, err := models.Decode[models.Photo](r, now, models.DefaultLimits())
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.decode(bytes.NewReader(c.body)); len(ierr.FieldsOf(err)) != models.MaxFieldErrors {
					b.Fatalf("%.200v", err)
				}
			}
		})
	}
}
