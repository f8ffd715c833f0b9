package models

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// queueMessages are messages as the API writes them (models.Marshal's
// bytes; handlers/message.go writes the same), of both scanned types.
func queueMessages(t testing.TB) [][]byte {
	t.Helper()
	meta := Meta{
		MessageID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), Actor: "fleet-gateway",
		ReceivedAt: time.Date(2026, 11, 28, 10, 0, 1, 123456789, time.UTC), DeviceID: "00:0a:95:9d:68:16",
		RecordedAt: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
	}
	offset := meta
	offset.RecordedAt = time.Date(2026, 11, 28, 7, 0, 0, 5000, time.FixedZone("", -3*3600))
	var out [][]byte
	for _, v := range []any{
		&GPS{Meta: meta, Latitude: -23.55052, Longitude: -46.633308},
		&GPS{Meta: offset, Latitude: 90, Longitude: -180},
		&GPS{Meta: meta, Latitude: 1e-7, Longitude: -0.0},
		&Gyroscope{Meta: meta, X: 0.98, Y: -0.45, Z: 0.12},
		&Gyroscope{Meta: offset, X: 1e21, Y: -1e-308, Z: math.MaxFloat64},
		&Gyroscope{Meta: meta, X: 5e-324, Y: 123456789, Z: 0},
	} {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// The scanner is the path every message the API writes takes: otherwise
// it saves nothing.
func TestQueueMessagesAreScanned(t *testing.T) {
	for _, data := range queueMessages(t) {
		var ok bool
		var got, want any
		if strings.Contains(string(data), `"latitude"`) {
			var g, w GPS
			ok, got, want = g.scanMessage(data), &g, &w
			if err := strictUnmarshal(data, &w); err != nil {
				t.Fatal(err)
			}
		} else {
			var g, w Gyroscope
			ok, got, want = g.scanMessage(data), &g, &w
			if err := strictUnmarshal(data, &w); err != nil {
				t.Fatal(err)
			}
		}
		if !ok {
			t.Fatalf("left to encoding/json: %s", data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\nscanned  %+v\nencoding/json %+v", data, got, want)
		}
		// And back to the very same bytes.
		if again, _ := Marshal(got); string(again) != string(data) {
			t.Fatalf("round trip changed the message:\n%s\n%s", data, again)
		}
	}
}

// Anything not in the encoder's exact layout is left to encoding/json,
// which gives the verdict; the result is the same either way.
func TestMessagesOutsideTheLayoutAreDecodedByEncodingJSON(t *testing.T) {
	base := string(queueMessages(t)[0])
	for _, c := range []struct {
		name, data string
		valid      bool
	}{
		{"whitespace", strings.Replace(base, `,"actor"`, `, "actor"`, 1), true},
		{"trailing newline", base + "\n", true},
		{"field renamed", strings.Replace(strings.Replace(base, `"latitude"`, `"tmp"`, 1), `"longitude"`, `"latitude"`, 1), false},
		{"escaped actor", strings.Replace(base, `"fleet-gateway"`, `"fleet\u002dgateway"`, 1), true},
		{"braced uuid", strings.Replace(base, `"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"`, `"{0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}"`, 1), true},
		{"null number", strings.Replace(base, `-46.633308`, `null`, 1), true},
		{"huge number", strings.Replace(base, `-46.633308`, `1e400`, 1), false},
		{"unknown field", strings.Replace(base, `}`, `,"extra":1}`, 1), false},
		{"trailing data", base + "{}", false},
		{"truncated", base[:len(base)-1], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var g GPS
			if g.scanMessage([]byte(c.data)) {
				t.Fatalf("scanned %s", c.data)
			}
			var got, want GPS
			err := decodeMessage(&got, []byte(c.data))
			wantErr := strictUnmarshal([]byte(c.data), &want)
			if (err == nil) != c.valid || (wantErr == nil) != c.valid {
				t.Fatalf("err %v, encoding/json %v, want valid=%v", err, wantErr, c.valid)
			}
			if c.valid && !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, encoding/json %+v", got, want)
			}
		})
	}
}

// FuzzScanMessageMatchesEncodingJSON: whatever the scanner accepts,
// encoding/json (strict, as the worker decodes) accepts too, with the same
// value.
func FuzzScanMessageMatchesEncodingJSON(f *testing.F) {
	for _, b := range queueMessages(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"message_id":"0193a1b2c3d47e5f8a9b0c1d2e3f4a5b","actor":"a","received_at":"2026-11-28T10:00:00+01:00","device_id":"d","recorded_at":"2026-11-28T10:00:00.1Z","x":-0,"y":1E5,"z":0.5e-3}`))
	f.Add([]byte(`{"message_id":"urn:uuid:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","actor":"","received_at":"2026-11-28T24:00:00Z","device_id":"","recorded_at":"0000-01-01T00:00:00Z","latitude":01,"longitude":1.}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var g, wg GPS
		if g.scanMessage(data) {
			if err := strictUnmarshal(data, &wg); err != nil {
				t.Fatalf("%q: scanned as %+v, encoding/json: %v", data, g, err)
			}
			if !reflect.DeepEqual(g, wg) {
				t.Fatalf("%q: scanned %+v, encoding/json %+v", data, g, wg)
			}
		}
		var y, wy Gyroscope
		if y.scanMessage(data) {
			if err := strictUnmarshal(data, &wy); err != nil {
				t.Fatalf("%q: scanned as %+v, encoding/json: %v", data, y, err)
			}
			if !reflect.DeepEqual(y, wy) {
				t.Fatalf("%q: scanned %+v, encoding/json %+v", data, y, wy)
			}
		}
	})
}

// BenchmarkUnmarshalGPSMessage is the worker's decode of one GPS message:
// the scanner, and encoding/json (the baseline) on the same bytes.
func BenchmarkUnmarshalGPSMessage(b *testing.B) {
	data := queueMessages(b)[0]
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var g GPS
			if !g.scanMessage(data) {
				b.Fatal("not scanned")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var g GPS
			if err := strictUnmarshal(data, &g); err != nil {
				b.Fatal(err)
			}
		}
	})
}
