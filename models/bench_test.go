package models_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
)

// BenchmarkDecodePhotoJSON decodes a 1 MiB JPEG sent as base64 JSON, the
// heaviest request the API parses.
func BenchmarkDecodePhotoJSON(b *testing.B) {
	img, err := os.ReadFile("../testdata/faces/grace_hopper.jpg")
	if err != nil {
		b.Fatal(err)
	}
	img = append(img, make([]byte, 1<<20-len(img))...)
	body := []byte(`{"device_id":"aa:bb:cc:dd:ee:ff","timestamp":"2026-11-28T10:00:00Z","photo":"` +
		base64.StdEncoding.EncodeToString(img) + `"}`)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := models.DecodePhotoJSON(bytes.NewReader(body), now, models.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
