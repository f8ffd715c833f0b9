package models

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
)

var (
	testNow     = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	testLim     = DefaultLimits()
	jpegFixture = mustRead("../testdata/faces/grace_hopper.jpg")
	pngFixture  = mustRead("../testdata/faces/chelsea.png")
)

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	return b
}

func mustFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return f
}

func fieldsOf(err error) []string {
	var out []string
	for _, f := range ierr.FieldsOf(err) {
		out = append(out, f.Field)
	}
	return out
}

func TestDecodeGyroscope(t *testing.T) {
	g, err := Decode[Gyroscope](strings.NewReader(`{"device_id":"00:0A:95:9D:68:16","timestamp":"2026-11-28T07:00:00-03:00","x":0.98,"y":-0.45,"z":0}`), testNow, testLim)
	if err != nil {
		t.Fatal(err)
	}
	if g.DeviceID != "00:0a:95:9d:68:16" || !g.RecordedAt.Equal(testNow) || g.RecordedAt.Location() != time.UTC || g.X != 0.98 || g.Y != -0.45 || g.Z != 0 {
		t.Errorf("decoded %+v", g)
	}
	_, err = Decode[Gyroscope](strings.NewReader(`{"x":"1","y":null,"w":2}`), testNow, testLim)
	if got := fieldsOf(err); !slices.Equal(got, []string{"w", "device_id", "timestamp", "x", "y", "z"}) {
		t.Errorf("fields = %v (%v)", got, err)
	}
	if !ierr.Is(err, ierr.Invalid) {
		t.Errorf("kind = %v", ierr.KindOf(err))
	}
}

func TestDecodeGPS(t *testing.T) {
	tests := []struct {
		lat, lon string
		fields   []string
	}{
		{"0", "0", nil},
		{"-90", "180", nil},
		{"90", "-180", nil},
		{"-23.55052", "-46.633308", nil},
		{"90.0000001", "0", []string{"latitude"}},
		{"0", "-180.0000001", []string{"longitude"}},
		{"1e400", "0", []string{"latitude"}},
		{`"1"`, "true", []string{"latitude", "longitude"}},
	}
	for _, tt := range tests {
		t.Run(tt.lat+","+tt.lon, func(t *testing.T) {
			body := fmt.Sprintf(`{"device_id":"d","timestamp":1764324000,"latitude":%s,"longitude":%s}`, tt.lat, tt.lon)
			g, err := Decode[GPS](strings.NewReader(body), testNow, testLim)
			if got := fieldsOf(err); !slices.Equal(got, tt.fields) {
				t.Fatalf("fields = %v, want %v", got, tt.fields)
			}
			if err == nil && (fmt.Sprint(g.Latitude) != fmt.Sprint(mustFloat(tt.lat)) || fmt.Sprint(g.Longitude) != fmt.Sprint(mustFloat(tt.lon))) {
				t.Errorf("decoded %v,%v", g.Latitude, g.Longitude)
			}
		})
	}
}

func TestDecodeBodyErrors(t *testing.T) {
	for _, body := range []string{``, `{`, `[]`, `null`, `{"device_id":"d"} {}`, `{"device_id":"d"}]`, `{"a":1,}`, `{"x":NaN}`} {
		_, err := Decode[GPS](strings.NewReader(body), testNow, testLim)
		if !ierr.Is(err, ierr.Invalid) || len(ierr.FieldsOf(err)) != 0 {
			t.Errorf("%q: err = %v, want a body-level Invalid error", body, err)
		}
	}
	_, err := Decode[GPS](strings.NewReader(`{"latitude":1,"latitude":2,"longitude":1,"device_id":"d","timestamp":1764324000}`), testNow, testLim)
	if got := fieldsOf(err); !slices.Equal(got, []string{"latitude"}) {
		t.Errorf("duplicate key: fields = %v", got)
	}
}

func TestTimestamps(t *testing.T) {
	tests := []struct {
		raw  string
		want time.Time
		ok   bool
	}{
		{`"2026-11-28T10:00:00Z"`, testNow, true},
		{`"2026-11-28T07:00:00.5-03:00"`, testNow.Add(500 * time.Millisecond), true},
		{`1764324000`, time.Unix(1764324000, 0), true},
		{`1764324000.123456789`, time.Unix(1764324000, 123456789), true},
		{`1764324000.1234567891`, time.Unix(1764324000, 123456789), true},
		{`1.764324e9`, time.Unix(1764324000, 0), true},
		{`"1764324000.25"`, time.Unix(1764324000, 250_000_000), true},
		{`"2026-11-28T10:05:00Z"`, testNow.Add(5 * time.Minute), true},
		{`"2000-01-01T00:00:00Z"`, MinTimestamp, true},
		{`"2026-11-28T10:05:00.000000001Z"`, time.Time{}, false},
		{`"1999-12-31T23:59:59.999Z"`, time.Time{}, false},
		{`"2026-11-28T10:00:00"`, time.Time{}, false},
		{`"28/11/2026"`, time.Time{}, false},
		{`-1`, time.Time{}, false},
		{`1e12`, time.Time{}, false},
		{`""`, time.Time{}, false},
		{`null`, time.Time{}, false},
		{`{}`, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			g, err := Decode[GPS](strings.NewReader(`{"device_id":"d","latitude":1,"longitude":1,"timestamp":`+tt.raw+`}`), testNow, testLim)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if tt.ok && !g.RecordedAt.Equal(tt.want) {
				t.Errorf("recorded_at = %s, want %s", g.RecordedAt, tt.want)
			}
			if !tt.ok && !slices.Equal(fieldsOf(err), []string{"timestamp"}) {
				t.Errorf("fields = %v", fieldsOf(err))
			}
		})
	}
	t.Run("configurable skew", func(t *testing.T) {
		lim := testLim
		lim.MaxFutureSkew = time.Hour
		if _, err := Decode[GPS](strings.NewReader(`{"device_id":"d","latitude":1,"longitude":1,"timestamp":"2026-11-28T10:59:00Z"}`), testNow, lim); err != nil {
			t.Error(err)
		}
	})
}

func TestNormalizeDeviceID(t *testing.T) {
	tests := []struct{ in, want, msg string }{
		{"00:0a:95:9d:68:16", "00:0a:95:9d:68:16", ""},
		{"00:0A:95:9D:68:16", "00:0a:95:9d:68:16", ""},
		{"00-0A-95-9D-68-16", "00:0a:95:9d:68:16", ""},
		{"000A.959D.6816", "00:0a:95:9d:68:16", ""},
		{"00:0A-95:9D:68:16", "00:0A-95:9D:68:16", ""}, // mixed separators: not a MAC, kept
		{"000a959d6816", "000a959d6816", ""},           // bare hex: kept (see decisions)
		{"GG:0a:95:9d:68:16", "GG:0a:95:9d:68:16", ""},
		{"truck-7_A.b:c", "truck-7_A.b:c", ""},
		{strings.Repeat("z", 64), strings.Repeat("z", 64), ""},
		{"", "", "is required"},
		{strings.Repeat("z", 65), "", "must be at most 64 characters"},
		{"a b", "", "may contain only letters, digits and : . _ -"},
		{"ação", "", "may contain only letters, digits and : . _ -"},
	}
	for _, tt := range tests {
		got, msg := NormalizeDeviceID(tt.in)
		if got != tt.want || msg != tt.msg {
			t.Errorf("NormalizeDeviceID(%q) = %q, %q; want %q, %q", tt.in, got, msg, tt.want, tt.msg)
		}
	}
}

func TestDecodePhotoJSON(t *testing.T) {
	body := func(photo string) string {
		return `{"device_id":"d","timestamp":"2026-11-28T09:59:00Z","photo":"` + photo + `"}`
	}
	std := base64.StdEncoding.EncodeToString(jpegFixture)
	for name, enc := range map[string]string{
		"std":       std,
		"url":       base64.URLEncoding.EncodeToString(jpegFixture),
		"raw std":   base64.RawStdEncoding.EncodeToString(jpegFixture),
		"raw url":   base64.RawURLEncoding.EncodeToString(jpegFixture),
		"data uri":  "data:image/jpeg;base64," + std,
		"data noct": "data:;base64," + std,
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Decode[Photo](strings.NewReader(body(enc)), testNow, testLim)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p.Image, jpegFixture) || p.ContentType != ContentTypeJPEG {
				t.Errorf("image %d bytes, %s", len(p.Image), p.ContentType)
			}
		})
	}
	t.Run("png", func(t *testing.T) {
		p, err := Decode[Photo](strings.NewReader(body(base64.StdEncoding.EncodeToString(pngFixture))), testNow, testLim)
		if err != nil || p.ContentType != ContentTypePNG {
			t.Fatalf("%v %s", err, p.ContentType)
		}
	})
	kinds := []struct {
		name, body string
		kind       ierr.Kind
		fields     []string
	}{
		{"gif", body(base64.StdEncoding.EncodeToString([]byte("GIF89a"))), ierr.Unsupported, []string{"photo"}},
		{"too large", body(base64.StdEncoding.EncodeToString(make([]byte, 5<<20+1))), ierr.TooLarge, []string{"photo"}},
		{"too large and bad id", strings.Replace(body(base64.StdEncoding.EncodeToString(make([]byte, 5<<20+1))), `"d"`, `"a b"`, 1), ierr.Invalid, []string{"device_id", "photo"}},
		{"gif and bad timestamp", strings.Replace(body("R0lGODlh"), "09:59:00Z", "09:59:00", 1), ierr.Invalid, []string{"timestamp", "photo"}},
		{"not base64", body("%%%"), ierr.Invalid, []string{"photo"}},
		{"data uri not base64", body("data:image/png,abc"), ierr.Invalid, []string{"photo"}},
		{"empty", body(""), ierr.Invalid, []string{"photo"}},
	}
	for _, tt := range kinds {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode[Photo](strings.NewReader(tt.body), testNow, testLim)
			if ierr.KindOf(err) != tt.kind || !slices.Equal(fieldsOf(err), tt.fields) {
				t.Errorf("err = %v (kind %v), want kind %v fields %v", err, ierr.KindOf(err), tt.kind, tt.fields)
			}
		})
	}
}

func TestNewPhoto(t *testing.T) {
	p, err := NewPhoto("AA-BB-CC-DD-EE-FF", "1764323940", pngFixture, testNow, testLim)
	if err != nil || p.DeviceID != "aa:bb:cc:dd:ee:ff" || p.ContentType != ContentTypePNG || !p.RecordedAt.Equal(time.Unix(1764323940, 0)) {
		t.Fatalf("%+v %v", p.Meta, err)
	}
	_, err = NewPhoto("", "", nil, testNow, testLim)
	if got := fieldsOf(err); !slices.Equal(got, []string{"device_id", "timestamp", "photo"}) {
		t.Errorf("fields = %v", got)
	}
	_, err = NewPhoto("d", "1764323940", []byte("text"), testNow, testLim)
	if !ierr.Is(err, ierr.Unsupported) {
		t.Errorf("text image: %v", err)
	}
}

func TestMarshalUnmarshalRoundTrip(t *testing.T) {
	meta := Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: testNow, DeviceID: "d", RecordedAt: testNow.Add(-time.Second)}
	for _, v := range []any{
		&Gyroscope{Meta: meta, X: 1, Y: -0, Z: 3.5},
		&GPS{Meta: meta, Latitude: -90, Longitude: 180},
		&Photo{Meta: meta, ContentType: ContentTypeJPEG, Image: jpegFixture},
	} {
		data, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		typ := map[string]Type{"*models.Gyroscope": TypeGyroscope, "*models.GPS": TypeGPS, "*models.Photo": TypePhoto}[fmt.Sprintf("%T", v)]
		got, err := Unmarshal(typ, data, testLim)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		again, _ := Marshal(got)
		if !bytes.Equal(again, data) {
			t.Errorf("%s did not round-trip", typ)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	meta := Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: testNow, DeviceID: "d", RecordedAt: testNow}
	good, _ := Marshal(&GPS{Meta: meta, Latitude: 1, Longitude: 2})
	cases := map[string][]byte{
		"unknown field": bytes.Replace(good, []byte(`{`), []byte(`{"extra":1,`), 1),
		"trailing":      append(append([]byte{}, good...), []byte(` {}`)...),
		"stray brace":   append(append([]byte{}, good...), '}'),
		"not normal id": bytes.Replace(good, []byte(`"device_id":"d"`), []byte(`"device_id":"AA-BB-CC-DD-EE-FF"`), 1),
		"no message id": bytes.Replace(good, []byte(meta.MessageID.String()), []byte(uuid.Nil.String()), 1),
		"no actor":      bytes.Replace(good, []byte(`"actor":"phone"`), []byte(`"actor":""`), 1),
		"future":        bytes.Replace(good, []byte(`"recorded_at":"2026-11-28T10:00:00Z"`), []byte(`"recorded_at":"2026-11-28T10:06:00Z"`), 1),
		"out of range":  bytes.Replace(good, []byte(`"latitude":1`), []byte(`"latitude":91`), 1),
	}
	for name, data := range cases {
		if bytes.Equal(data, good) {
			t.Fatalf("%s: the case did not change the message", name)
		}
		if _, err := Unmarshal(TypeGPS, data, testLim); !ierr.Is(err, ierr.Invalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := Unmarshal("temperature", good, testLim); !ierr.Is(err, ierr.Invalid) {
		t.Errorf("unknown type: %v", err)
	}
	photo, _ := Marshal(&Photo{Meta: meta, ContentType: ContentTypePNG, Image: jpegFixture})
	if _, err := Unmarshal(TypePhoto, photo, testLim); !slices.Equal(fieldsOf(err), []string{"content_type"}) {
		t.Errorf("content type mismatch: %v", err)
	}
}

func TestUnmarshalAs(t *testing.T) {
	meta := Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: testNow, DeviceID: "d", RecordedAt: testNow}
	data, _ := Marshal(&GPS{Meta: meta, Latitude: 1, Longitude: 2})
	g, err := UnmarshalAs[GPS](data, testLim)
	if err != nil || g.Meta != meta || g.Latitude != 1 || g.Longitude != 2 {
		t.Fatalf("%+v %v", g, err)
	}
	if _, err := UnmarshalAs[Gyroscope](data, testLim); !ierr.Is(err, ierr.Invalid) {
		t.Errorf("a GPS message read as gyroscope: %v", err)
	}
	for want, got := range map[Type]Type{TypeGyroscope: TypeOf[Gyroscope](), TypeGPS: TypeOf[GPS](), TypePhoto: TypeOf[Photo]()} {
		if got != want {
			t.Errorf("TypeOf = %s, want %s", got, want)
		}
	}
}

func TestSniffImage(t *testing.T) {
	if ct, err := SniffImage(jpegFixture, len(jpegFixture)); err != nil || ct != ContentTypeJPEG {
		t.Errorf("jpeg: %s %v", ct, err)
	}
	if _, err := SniffImage(jpegFixture, len(jpegFixture)-1); !ierr.Is(err, ierr.TooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	for _, b := range [][]byte{[]byte("GIF89a"), []byte("\xff\xd8"), []byte("\x89PNG"), []byte("<svg>")} {
		if _, err := SniffImage(b, 100); !ierr.Is(err, ierr.Unsupported) {
			t.Errorf("%q: %v", b, err)
		}
	}
	if _, err := SniffImage(nil, 100); !ierr.Is(err, ierr.Invalid) {
		t.Errorf("empty: %v", err)
	}
}

func TestSubjects(t *testing.T) {
	for _, typ := range Types {
		if typ.Subject() != "telemetry."+string(typ) {
			t.Errorf("%s subject %s", typ, typ.Subject())
		}
	}
}
