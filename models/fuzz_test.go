package models

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// fuzzLim keeps photos small so the fuzzer explores the limits too.
var fuzzLim = Limits{MaxFutureSkew: 5 * time.Minute, MaxPhotoBytes: 1 << 10}

// checkRefusal: a refused body is a client error that names fields or
// explains the body.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	switch ierr.KindOf(err) {
	case ierr.Invalid, ierr.TooLarge, ierr.Unsupported:
	default:
		t.Fatalf("refusal of kind %v: %v", ierr.KindOf(err), err)
	}
	var e *ierr.Error
	if len(ierr.FieldsOf(err)) == 0 && !(asErr(err, &e) && e.Err != nil) {
		t.Fatalf("refusal without fields or a body error: %v", err)
	}
}

func asErr(err error, target **ierr.Error) bool {
	e, ok := err.(*ierr.Error)
	*target = e
	return ok
}

// accepted fills Meta as the API does and checks the message re-validates
// and survives the queue codec.
func accepted(t *testing.T, typ Type, meta *Meta, v interface{ Validate(Limits) error }) {
	t.Helper()
	meta.MessageID, meta.Actor, meta.ReceivedAt = uuid.Must(uuid.NewV7()), "fuzz", testNow
	if err := v.Validate(fuzzLim); err != nil {
		t.Fatalf("accepted reading does not re-validate: %v", err)
	}
	data, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(typ, data, fuzzLim)
	if err != nil {
		t.Fatalf("accepted reading does not survive the queue: %v\n%s", err, data)
	}
	again, _ := Marshal(back)
	if !bytes.Equal(again, data) {
		t.Fatalf("queue codec changed the message:\n%s\n%s", data, again)
	}
}

func seedBodies(f *testing.F, bodies ...string) {
	for _, b := range bodies {
		f.Add([]byte(b))
	}
}

func FuzzDecodeGyroscope(f *testing.F) {
	seedBodies(f,
		`{"device_id":"00:0a:95:9d:68:16","timestamp":"2026-11-28T10:00:00Z","x":0.98,"y":-0.45,"z":0.12}`,
		`{"device_id":"AA-BB-CC-DD-EE-FF","timestamp":1764324000.5,"x":0,"y":0,"z":0}`,
		`{"device_id":"d","timestamp":"1764324000","x":1e308,"y":-1e-308,"z":-0}`,
		`{"x":1,"x":2}`, `{"w":1}`, `{} {}`, `[]`, ``, `{"x":1e400}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := Decode[Gyroscope](bytes.NewReader(body), testNow, fuzzLim)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		accepted(t, TypeGyroscope, &g.Meta, &g)
	})
}

func FuzzDecodeGPS(f *testing.F) {
	seedBodies(f,
		`{"device_id":"00:0a:95:9d:68:16","timestamp":"2026-11-28T10:00:00-03:00","latitude":-23.55052,"longitude":-46.633308}`,
		`{"device_id":"000a.959d.6816","timestamp":946684800,"latitude":90,"longitude":-180}`,
		`{"device_id":"d","timestamp":"2026-11-28T10:00:00","latitude":91,"longitude":181}`,
		`{"device_id":"d","timestamp":1.7643e9,"latitude":"1","longitude":null}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := Decode[GPS](bytes.NewReader(body), testNow, fuzzLim)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if g.Latitude < -90 || g.Latitude > 90 || g.Longitude < -180 || g.Longitude > 180 {
			t.Fatalf("accepted out-of-range fix %v,%v", g.Latitude, g.Longitude)
		}
		accepted(t, TypeGPS, &g.Meta, &g)
	})
}

func FuzzDecodePhotoJSON(f *testing.F) {
	// Real images small enough for fuzzLim, so the fuzzer starts from
	// bodies that are accepted; and magic bytes without a header.
	png := base64.StdEncoding.EncodeToString(pngOfSize(3, 2)[:33]) // signature and IHDR
	jpg := base64.RawURLEncoding.EncodeToString(jpegOfSize(f, 16, 16))
	seedBodies(f,
		`{"device_id":"d","timestamp":"2026-11-28T10:00:00Z","photo":"`+base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nimage"))+`"}`,
		`{"device_id":"d","timestamp":"2026-11-28T10:00:00Z","photo":"`+base64.StdEncoding.EncodeToString([]byte("\xff\xd8\xff\xe0jpeg?"))+`"}`,
		`{"device_id":"d","timestamp":"2026-11-28T10:00:00Z","photo":"`+png+`"}`,
		`{"device_id":"d","timestamp":1764324000,"photo":"data:image/jpeg;base64,`+jpg+`"}`,
		`{"device_id":"d","timestamp":1764324000,"photo":"R0lGODlh"}`,
		`{"device_id":"d","timestamp":1764324000,"photo":"`+strings.Repeat("A", 1500)+`"}`,
		`{"device_id":"d","timestamp":1764324000,"photo":42}`,
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Decode[Photo](bytes.NewReader(body), testNow, fuzzLim)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if len(p.Image) == 0 || len(p.Image) > fuzzLim.MaxPhotoBytes {
			t.Fatalf("accepted a %d-byte image", len(p.Image))
		}
		accepted(t, TypePhoto, &p.Meta, &p)
	})
}

func FuzzNormalizeDeviceID(f *testing.F) {
	for _, s := range []string{"00:0a:95:9d:68:16", "00-0A-95-9D-68-16", "000a.959d.6816", "truck-7", "", "a b", strings.Repeat("x", 65), "0a:0b:0c:0d:0e:0G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		normal, msg := NormalizeDeviceID(id)
		if msg != "" {
			if normal != "" {
				t.Fatalf("invalid id %q normalised to %q", id, normal)
			}
			return
		}
		if normal == "" || len(normal) > 64 {
			t.Fatalf("%q normalised to %q", id, normal)
		}
		again, msg := NormalizeDeviceID(normal)
		if again != normal || msg != "" {
			t.Fatalf("normal form %q of %q is not stable: %q %q", normal, id, again, msg)
		}
		if !strings.EqualFold(strings.NewReplacer("-", "", ":", "", ".", "").Replace(normal), strings.NewReplacer("-", "", ":", "", ".", "").Replace(id)) {
			t.Fatalf("%q normalised to a different id %q", id, normal)
		}
	})
}

// FuzzTimestamp covers both timestamp forms: a JSON string (RFC 3339 or
// epoch digits) and a bare JSON number.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{`"2026-11-28T10:00:00Z"`, `"2026-11-28T10:00:00.123456789+14:00"`, `1764324000.5`, `"1764324000"`, `1.7e9`, `-0`, `"2026-11-28T10:00:00"`, `1e400`, `1764324000.0000000001`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		g, err := Decode[GPS](io.MultiReader(strings.NewReader(`{"device_id":"d","latitude":0,"longitude":0,"timestamp":`), strings.NewReader(raw), strings.NewReader(`}`)), testNow, fuzzLim)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		rt := g.RecordedAt
		if rt.Location() != time.UTC || rt.Before(MinTimestamp) || rt.After(testNow.Add(fuzzLim.MaxFutureSkew)) {
			t.Fatalf("accepted %s from %s", rt, raw)
		}
		back, msg := parseTimestampString(rt.Format(time.RFC3339Nano))
		if msg != "" || !back.Equal(rt) {
			t.Fatalf("%s does not round-trip through RFC 3339: %s %q", rt, back, msg)
		}
		accepted(t, TypeGPS, &g.Meta, &g)
	})
}
