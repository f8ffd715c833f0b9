package handlers

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/models"
)

var (
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

type part struct {
	name, filename, contentType string
	data                        []byte
}

// multipartBody builds a multipart/form-data body and its Content-Type.
func multipartBody(t testing.TB, parts ...part) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		cd := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			cd += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", cd)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	mw.Close()
	return &b, mw.FormDataContentType()
}

func photoParts(deviceID, ts string, img []byte) []part {
	return []part{
		{name: "device_id", data: []byte(deviceID)},
		{name: "timestamp", data: []byte(ts)},
		{name: "photo", filename: "p.jpg", contentType: "image/jpeg", data: img},
	}
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func TestEndpointsPublishTheExactMessage(t *testing.T) {
	s := newStack(t, nil)
	recorded := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	ts := rfc(recorded)

	t.Run("gyroscope", func(t *testing.T) {
		before := time.Now().Add(-time.Millisecond)
		resp := s.postJSON("/telemetry/gyroscope", fmt.Sprintf(`{"device_id":"00-0A-95-9D-68-16","timestamp":%q,"x":0.98,"y":-0.45,"z":0}`, ts))
		wantStatus(t, resp, http.StatusAccepted)
		acc := decodeBody[Accepted](t, resp)
		msg := s.lastMsg(models.TypeGyroscope)
		v := checkMeta(t, acc, msg.Header.Get("Nats-Msg-Id"), models.TypeGyroscope, msg.Data, before)
		g := v.(*models.Gyroscope)
		if g.DeviceID != "00:0a:95:9d:68:16" || !g.RecordedAt.Equal(recorded) || g.X != 0.98 || g.Y != -0.45 || g.Z != 0 {
			t.Errorf("message = %+v", g)
		}
	})
	t.Run("gps", func(t *testing.T) {
		before := time.Now().Add(-time.Millisecond)
		resp := s.postJSON("/telemetry/gps", `{"device_id":"truck-7","timestamp":1764324000.25,"latitude":-23.55052,"longitude":-46.633308}`)
		wantStatus(t, resp, http.StatusAccepted)
		acc := decodeBody[Accepted](t, resp)
		msg := s.lastMsg(models.TypeGPS)
		g := checkMeta(t, acc, msg.Header.Get("Nats-Msg-Id"), models.TypeGPS, msg.Data, before).(*models.GPS)
		if g.DeviceID != "truck-7" || !g.RecordedAt.Equal(time.Unix(1764324000, 250_000_000)) || g.Latitude != -23.55052 || g.Longitude != -46.633308 {
			t.Errorf("message = %+v", g)
		}
	})
	t.Run("photo json", func(t *testing.T) {
		before := time.Now().Add(-time.Millisecond)
		resp := s.postJSON("/telemetry/photo", fmt.Sprintf(`{"device_id":"aabb.ccdd.eeff","timestamp":%q,"photo":%q}`, ts, base64.StdEncoding.EncodeToString(jpegFixture)))
		wantStatus(t, resp, http.StatusAccepted)
		acc := decodeBody[Accepted](t, resp)
		msg := s.lastMsg(models.TypePhoto)
		p := checkMeta(t, acc, msg.Header.Get("Nats-Msg-Id"), models.TypePhoto, msg.Data, before).(*models.Photo)
		if p.DeviceID != "aa:bb:cc:dd:ee:ff" || !p.RecordedAt.Equal(recorded) || p.ContentType != models.ContentTypeJPEG || !bytes.Equal(p.Image, jpegFixture) {
			t.Errorf("message = %s %s %s %d bytes", p.DeviceID, p.RecordedAt, p.ContentType, len(p.Image))
		}
	})
	t.Run("photo multipart", func(t *testing.T) {
		before := time.Now().Add(-time.Millisecond)
		// The client says image/jpeg; the content is PNG and wins.
		body, ct := multipartBody(t, photoParts("AA:BB:CC:DD:EE:01", ts, pngFixture)...)
		resp := s.do(http.MethodPost, "/telemetry/photo", ct, body)
		wantStatus(t, resp, http.StatusAccepted)
		acc := decodeBody[Accepted](t, resp)
		msg := s.lastMsg(models.TypePhoto)
		p := checkMeta(t, acc, msg.Header.Get("Nats-Msg-Id"), models.TypePhoto, msg.Data, before).(*models.Photo)
		if p.DeviceID != "aa:bb:cc:dd:ee:01" || !p.RecordedAt.Equal(recorded) || p.ContentType != models.ContentTypePNG || !bytes.Equal(p.Image, pngFixture) {
			t.Errorf("message = %s %s %s %d bytes", p.DeviceID, p.RecordedAt, p.ContentType, len(p.Image))
		}
	})
	if n := s.msgCount(); n != 4 {
		t.Errorf("stream holds %d messages, want 4", n)
	}
}

// checkMeta checks the 202 body against the message read back and returns
// the decoded, re-validated message.
func checkMeta(t *testing.T, acc Accepted, natsMsgID string, typ models.Type, data []byte, before time.Time) any {
	t.Helper()
	id, err := uuid.Parse(acc.ID)
	if err != nil || id.Version() != 7 || acc.Status != "accepted" {
		t.Fatalf("202 body = %+v (version %d)", acc, id.Version())
	}
	// Without an Idempotency-Key nothing is de-duplicated by JetStream:
	// the unique message_id in PostgreSQL keeps it stored once.
	if natsMsgID != "" {
		t.Errorf("Nats-Msg-Id = %q on a request without an Idempotency-Key, want none", natsMsgID)
	}
	v, err := models.Unmarshal(typ, data, models.DefaultLimits())
	if err != nil {
		t.Fatalf("the published message does not re-validate: %v", err)
	}
	var meta models.Meta
	switch m := v.(type) {
	case *models.Gyroscope:
		meta = m.Meta
	case *models.GPS:
		meta = m.Meta
	case *models.Photo:
		meta = m.Meta
	}
	if meta.MessageID != id || meta.Actor != "phone" {
		t.Errorf("meta = %+v", meta)
	}
	if meta.ReceivedAt.Before(before) || meta.ReceivedAt.After(time.Now()) {
		t.Errorf("received_at %s outside the request", meta.ReceivedAt)
	}
	return v
}

func TestValidAcceptedForms(t *testing.T) {
	s := newStack(t, nil)
	now := time.Now()
	cases := []struct{ name, path, body string }{
		{"zero axes", "/telemetry/gyroscope", `{"device_id":"d","timestamp":%q,"x":0,"y":0,"z":0}`},
		{"zero coordinates", "/telemetry/gps", `{"device_id":"d","timestamp":%q,"latitude":0,"longitude":0}`},
		{"coordinate bounds", "/telemetry/gps", `{"device_id":"d","timestamp":%q,"latitude":-90,"longitude":180}`},
		{"other bounds", "/telemetry/gps", `{"device_id":"d","timestamp":%q,"latitude":90,"longitude":-180}`},
		{"64-char id", "/telemetry/gps", `{"device_id":"` + strings.Repeat("a", 64) + `","timestamp":%q,"latitude":1,"longitude":1}`},
		{"id charset", "/telemetry/gps", `{"device_id":"A-z_0.9:x","timestamp":%q,"latitude":1,"longitude":1}`},
		{"exponent number", "/telemetry/gyroscope", `{"device_id":"d","timestamp":%q,"x":1e-3,"y":-2E2,"z":1.5e+1}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, s.postJSON(c.path, fmt.Sprintf(c.body, rfc(now))), http.StatusAccepted)
		})
	}
	timestamps := []struct{ name, ts string }{
		{"offset", `"` + now.In(time.FixedZone("BRT", -3*3600)).Format(time.RFC3339) + `"`},
		{"epoch integer", fmt.Sprint(now.Unix())},
		{"epoch fraction", fmt.Sprintf("%d.123456", now.Unix())},
		{"epoch string", fmt.Sprintf(`"%d"`, now.Unix())},
		{"4 min ahead", `"` + rfc(now.Add(4*time.Minute)) + `"`},
		{"2000-01-01", `"2000-01-01T00:00:00Z"`},
	}
	for _, c := range timestamps {
		t.Run("timestamp "+c.name, func(t *testing.T) {
			wantStatus(t, s.postJSON("/telemetry/gps", `{"device_id":"d","timestamp":`+c.ts+`,"latitude":1,"longitude":2}`), http.StatusAccepted)
		})
	}
	for _, form := range []string{"00:0a:95:9d:68:16", "00:0A:95:9D:68:16", "00-0a-95-9d-68-16", "00-0A-95-9D-68-16", "000a.959d.6816", "000A.959D.6816"} {
		t.Run("mac "+form, func(t *testing.T) {
			wantStatus(t, s.postJSON("/telemetry/gps", `{"device_id":"`+form+`","timestamp":`+fmt.Sprint(now.Unix())+`,"latitude":1,"longitude":2}`), http.StatusAccepted)
			g, err := models.Unmarshal(models.TypeGPS, s.lastMsg(models.TypeGPS).Data, models.DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			if id := g.(*models.GPS).DeviceID; id != "00:0a:95:9d:68:16" {
				t.Errorf("device_id = %q", id)
			}
		})
	}
	t.Run("charset utf-8", func(t *testing.T) {
		resp := s.do(http.MethodPost, "/telemetry/gps", "application/json; charset=UTF-8",
			strings.NewReader(fmt.Sprintf(`{"device_id":"d","timestamp":%d,"latitude":1,"longitude":2}`, now.Unix())))
		wantStatus(t, resp, http.StatusAccepted)
	})
}

// problemCase is one request that must be refused without publishing.
type problemCase struct {
	name        string
	path        string
	contentType string
	body        func() io.Reader
	status      int
	fields      []string // every field the problem must name; nil: a body-level problem
	headers     []string
}

func jsonCase(name, path, body string, status int, fields ...string) problemCase {
	return problemCase{name: name, path: path, contentType: "application/json",
		body: func() io.Reader { return strings.NewReader(body) }, status: status, fields: fields}
}

func TestInvalidRequestsAreRefusedAndNotPublished(t *testing.T) {
	s := newStack(t, nil)
	now := time.Now()
	ts := `"` + rfc(now) + `"`
	gyro := func(fields string) string { return `{"device_id":"d","timestamp":` + ts + `,` + fields + `}` }
	gps := func(lat, lon string) string {
		return `{"device_id":"d","timestamp":` + ts + `,"latitude":` + lat + `,"longitude":` + lon + `}`
	}
	gpsTS := func(v string) string {
		return `{"device_id":"d","timestamp":` + v + `,"latitude":1,"longitude":2}`
	}
	gpsID := func(v string) string {
		return `{"device_id":` + v + `,"timestamp":` + ts + `,"latitude":1,"longitude":2}`
	}
	photoJSON := func(b64 string) string {
		return `{"device_id":"d","timestamp":` + ts + `,"photo":"` + b64 + `"}`
	}
	b64 := base64.StdEncoding.EncodeToString
	bigImage := append(append([]byte{}, jpegFixture...), make([]byte, 5<<20+1-len(jpegFixture))...) // a JPEG of 5 MiB + 1 byte

	cases := []problemCase{
		jsonCase("all fields missing", "/telemetry/gyroscope", `{}`, 400, "device_id", "timestamp", "x", "y", "z"),
		jsonCase("axis missing", "/telemetry/gyroscope", gyro(`"x":1,"y":2`), 400, "z"),
		jsonCase("axis null", "/telemetry/gyroscope", gyro(`"x":null,"y":2,"z":3`), 400, "x"),
		jsonCase("axis string", "/telemetry/gyroscope", gyro(`"x":"1","y":2,"z":3`), 400, "x"),
		jsonCase("axis huge", "/telemetry/gyroscope", gyro(`"x":1e400,"y":2,"z":3`), 400, "x"),
		jsonCase("axis -huge", "/telemetry/gyroscope", gyro(`"x":1,"y":-1e999,"z":3`), 400, "y"),
		jsonCase("axis NaN", "/telemetry/gyroscope", gyro(`"x":NaN,"y":2,"z":3`), 400),
		jsonCase("axis boolean", "/telemetry/gyroscope", gyro(`"x":1,"y":true,"z":3`), 400, "y"),
		jsonCase("latitude missing", "/telemetry/gps", `{"device_id":"d","timestamp":`+ts+`,"longitude":2}`, 400, "latitude"),
		jsonCase("latitude > 90", "/telemetry/gps", gps("90.000001", "0"), 400, "latitude"),
		jsonCase("latitude < -90", "/telemetry/gps", gps("-91", "0"), 400, "latitude"),
		jsonCase("longitude > 180", "/telemetry/gps", gps("0", "180.5"), 400, "longitude"),
		jsonCase("longitude < -180", "/telemetry/gps", gps("0", "-181"), 400, "longitude"),
		jsonCase("both out of range", "/telemetry/gps", gps("1e308", "-1e308"), 400, "latitude", "longitude"),
		jsonCase("coordinate huge", "/telemetry/gps", gps("1e999", "0"), 400, "latitude"),
		jsonCase("device_id empty", "/telemetry/gps", gpsID(`""`), 400, "device_id"),
		jsonCase("device_id 65 chars", "/telemetry/gps", gpsID(`"`+strings.Repeat("a", 65)+`"`), 400, "device_id"),
		jsonCase("device_id space", "/telemetry/gps", gpsID(`"truck 7"`), 400, "device_id"),
		jsonCase("device_id slash", "/telemetry/gps", gpsID(`"a/b"`), 400, "device_id"),
		jsonCase("device_id unicode", "/telemetry/gps", gpsID(`"caminhão"`), 400, "device_id"),
		jsonCase("device_id number", "/telemetry/gps", gpsID(`123`), 400, "device_id"),
		jsonCase("device_id null", "/telemetry/gps", gpsID(`null`), 400, "device_id"),
		jsonCase("timestamp without offset", "/telemetry/gps", gpsTS(`"2026-11-28T10:00:00"`), 400, "timestamp"),
		jsonCase("timestamp with space", "/telemetry/gps", gpsTS(`"2026-11-28 10:00:00Z"`), 400, "timestamp"),
		jsonCase("timestamp date only", "/telemetry/gps", gpsTS(`"2026-11-28"`), 400, "timestamp"),
		jsonCase("timestamp 6 min ahead", "/telemetry/gps", gpsTS(`"`+rfc(now.Add(6*time.Minute))+`"`), 400, "timestamp"),
		jsonCase("epoch 6 min ahead", "/telemetry/gps", gpsTS(fmt.Sprint(now.Add(6*time.Minute).Unix())), 400, "timestamp"),
		jsonCase("timestamp before 2000", "/telemetry/gps", gpsTS(`"1999-12-31T23:59:59Z"`), 400, "timestamp"),
		jsonCase("epoch before 2000", "/telemetry/gps", gpsTS(`946684799.5`), 400, "timestamp"),
		jsonCase("epoch negative", "/telemetry/gps", gpsTS(`-1`), 400, "timestamp"),
		jsonCase("epoch huge", "/telemetry/gps", gpsTS(`1e300`), 400, "timestamp"),
		jsonCase("timestamp boolean", "/telemetry/gps", gpsTS(`true`), 400, "timestamp"),
		jsonCase("timestamp empty", "/telemetry/gps", gpsTS(`""`), 400, "timestamp"),
		jsonCase("unknown field", "/telemetry/gps", `{"device_id":"d","timestamp":`+ts+`,"latitude":1,"longitude":2,"altitude":3}`, 400, "altitude"),
		jsonCase("duplicate key", "/telemetry/gps", `{"device_id":"d","timestamp":`+ts+`,"latitude":1,"latitude":1,"longitude":2}`, 400, "latitude"),
		jsonCase("trailing object", "/telemetry/gps", gps("1", "2")+`{}`, 400),
		jsonCase("trailing garbage", "/telemetry/gps", gps("1", "2")+` x`, 400),
		jsonCase("two objects", "/telemetry/gyroscope", gyro(`"x":1,"y":2,"z":3`)+"\n"+gyro(`"x":1,"y":2,"z":3`), 400),
		jsonCase("malformed json", "/telemetry/gps", `{"device_id":"d",`, 400),
		jsonCase("empty body", "/telemetry/gps", ``, 400),
		jsonCase("array body", "/telemetry/gps", `[1,2]`, 400),
		jsonCase("string body", "/telemetry/gps", `"gps"`, 400),
		jsonCase("invalid utf-8 in id", "/telemetry/gps", gpsID("\"\xff\xfe\""), 400, "device_id"),
		{name: "wrong content type", path: "/telemetry/gps", contentType: "text/plain", body: func() io.Reader { return strings.NewReader(gps("1", "2")) }, status: 415},
		{name: "no content type", path: "/telemetry/gyroscope", body: func() io.Reader { return strings.NewReader(gyro(`"x":1,"y":2,"z":3`)) }, status: 415},
		{name: "form content type", path: "/telemetry/gps", contentType: "application/x-www-form-urlencoded", body: func() io.Reader { return strings.NewReader("device_id=d") }, status: 415},
		{name: "latin-1 charset", path: "/telemetry/gps", contentType: "application/json; charset=iso-8859-1", body: func() io.Reader { return strings.NewReader(gps("1", "2")) }, status: 415},
		{name: "multipart to gps", path: "/telemetry/gps", contentType: "multipart/form-data; boundary=x", body: func() io.Reader { return strings.NewReader("--x--") }, status: 415},
		{name: "photo as text/plain", path: "/telemetry/photo", contentType: "text/plain", body: func() io.Reader { return strings.NewReader("hi") }, status: 415},
		{name: "gps body over 64 KiB", path: "/telemetry/gps", contentType: "application/json", body: func() io.Reader {
			return strings.NewReader(`{"device_id":"d",` + strings.Repeat(" ", 64<<10) + `"timestamp":` + ts + `,"latitude":1,"longitude":2}`)
		}, status: 413},
		{name: "gyroscope body over 64 KiB", path: "/telemetry/gyroscope", contentType: "application/json", body: func() io.Reader {
			return strings.NewReader(`{"device_id":"` + strings.Repeat("a", 70<<10) + `"}`)
		}, status: 413},
		jsonCase("photo missing", "/telemetry/photo", `{"device_id":"d","timestamp":`+ts+`}`, 400, "photo"),
		jsonCase("photo empty", "/telemetry/photo", photoJSON(""), 400, "photo"),
		jsonCase("photo not base64", "/telemetry/photo", photoJSON("!!!not base64!!!"), 400, "photo"),
		jsonCase("photo number", "/telemetry/photo", `{"device_id":"d","timestamp":`+ts+`,"photo":42}`, 400, "photo"),
		jsonCase("photo is text", "/telemetry/photo", photoJSON(b64([]byte("hello, I am a JPEG, trust me"))), 415, "photo"),
		jsonCase("photo is gif", "/telemetry/photo", photoJSON(b64([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))), 415, "photo"),
		jsonCase("photo over 5 MiB", "/telemetry/photo", photoJSON(b64(bigImage)), 413, "photo"),
		jsonCase("photo gif and bad id", "/telemetry/photo", `{"device_id":"a b","timestamp":`+ts+`,"photo":"`+b64([]byte("GIF89a...."))+`"}`, 400, "device_id", "photo"),
		{name: "photo body over limit", path: "/telemetry/photo", contentType: "application/json", body: func() io.Reader {
			return strings.NewReader(photoJSON(strings.Repeat("A", 8<<20)))
		}, status: 413},
		{name: "multipart image is text", path: "/telemetry/photo", status: 415, fields: []string{"photo"}},
		{name: "multipart image over 5 MiB", path: "/telemetry/photo", status: 413, fields: []string{"photo"}},
		{name: "multipart photo missing", path: "/telemetry/photo", status: 400, fields: []string{"photo"}},
		{name: "multipart photo empty", path: "/telemetry/photo", status: 400, fields: []string{"photo"}},
		{name: "multipart fields missing", path: "/telemetry/photo", status: 400, fields: []string{"device_id", "timestamp"}},
		{name: "multipart bad fields", path: "/telemetry/photo", status: 400, fields: []string{"device_id", "timestamp"}},
		{name: "multipart unknown part", path: "/telemetry/photo", status: 400, fields: []string{"comment"}},
		{name: "multipart duplicate part", path: "/telemetry/photo", status: 400, fields: []string{"device_id"}},
		{name: "multipart long field", path: "/telemetry/photo", status: 400, fields: []string{"timestamp"}},
		{name: "multipart body over limit", path: "/telemetry/photo", status: 413},
		{name: "multipart no boundary", path: "/telemetry/photo", contentType: "multipart/form-data", body: func() io.Reader { return strings.NewReader("x") }, status: 400},
		{name: "multipart unterminated", path: "/telemetry/photo", contentType: "multipart/form-data; boundary=zz", body: func() io.Reader {
			return strings.NewReader("--zz\r\nContent-Disposition: form-data; name=\"device_id\"\r\n\r\nd\r\n")
		}, status: 400},
		{name: "multipart part without name", path: "/telemetry/photo", contentType: "multipart/form-data; boundary=zz", body: func() io.Reader {
			return strings.NewReader("--zz\r\nContent-Type: text/plain\r\n\r\nd\r\n--zz--\r\n")
		}, status: 400},
		{name: "idempotency key too long", path: "/telemetry/gps", contentType: "application/json", body: func() io.Reader { return strings.NewReader(gps("1", "2")) },
			status: 400, fields: []string{"Idempotency-Key"}, headers: []string{"Idempotency-Key", strings.Repeat("k", 256)}},
		{name: "idempotency key control char", path: "/telemetry/gps", contentType: "application/json", body: func() io.Reader { return strings.NewReader(gps("1", "2")) },
			status: 400, fields: []string{"Idempotency-Key"}, headers: []string{"Idempotency-Key", "a\tb"}},
		{name: "idempotency key twice", path: "/telemetry/gps", contentType: "application/json", body: func() io.Reader { return strings.NewReader(gps("1", "2")) },
			status: 400, fields: []string{"Idempotency-Key"}, headers: []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}},
		{name: "idempotency key empty quotes", path: "/telemetry/gps", contentType: "application/json", body: func() io.Reader { return strings.NewReader(gps("1", "2")) },
			status: 400, fields: []string{"Idempotency-Key"}, headers: []string{"Idempotency-Key", `""`}},
	}
	multiparts := map[string][]part{
		"multipart image is text":    photoParts("d", rfc(now), []byte("plain text, not an image")),
		"multipart image over 5 MiB": photoParts("d", rfc(now), bigImage),
		"multipart photo missing":    photoParts("d", rfc(now), nil)[:2],
		"multipart photo empty":      photoParts("d", rfc(now), []byte{}),
		"multipart fields missing":   photoParts("d", rfc(now), jpegFixture)[2:],
		"multipart bad fields":       photoParts("not ok!", "2026-11-28T10:00:00", jpegFixture),
		"multipart unknown part":     append(photoParts("d", rfc(now), jpegFixture), part{name: "comment", data: []byte("hi")}),
		"multipart duplicate part":   append(photoParts("d", rfc(now), jpegFixture), part{name: "device_id", data: []byte("e")}),
		"multipart long field":       photoParts("d", strings.Repeat("1", 2000), jpegFixture),
		"multipart body over limit":  append(photoParts("d", rfc(now), jpegFixture), part{name: "junk", data: make([]byte, 8<<20)}),
	}
	for i := range cases {
		if parts, ok := multiparts[cases[i].name]; ok {
			body, ct := multipartBody(t, parts...)
			cases[i].contentType, cases[i].body = ct, func() io.Reader { return body }
		}
	}

	before := s.msgCount()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := s.do(http.MethodPost, c.path, c.contentType, c.body(), c.headers...)
			p := checkProblem(t, resp, c.status)
			var got []string
			for _, fe := range p.Errors {
				got = append(got, fe.Field)
				if fe.Message == "" {
					t.Errorf("field %q has no message", fe.Field)
				}
			}
			for _, f := range c.fields {
				if !slices.Contains(got, f) {
					t.Errorf("problem names fields %q, want %q among them (detail %q)", got, f, p.Detail)
				}
			}
			if c.fields == nil && p.Detail == "" {
				t.Error("a body-level problem needs a detail")
			}
			if n := s.msgCount(); n != before {
				t.Fatalf("stream went from %d to %d messages after a refused request", before, n)
			}
		})
	}
}

// checkProblem asserts an RFC 9457 answer and returns it.
func checkProblem(t *testing.T, resp *http.Response, status int) Problem {
	t.Helper()
	wantStatus(t, resp, status)
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	p := decodeBody[Problem](t, resp)
	if p.Status != status || !strings.HasPrefix(p.Type, ProblemTypeBase) || p.Title == "" || p.RequestID == "" {
		t.Errorf("problem = %+v", p)
	}
	if p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q != X-Request-Id %q", p.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return p
}

func TestIdempotencyKey(t *testing.T) {
	s := newStack(t, nil)
	ts := time.Now().Unix()
	body := fmt.Sprintf(`{"device_id":"00:0a:95:9d:68:16","timestamp":%d,"latitude":1.5,"longitude":2}`, ts)
	before := s.msgCount()

	first := s.postJSON("/telemetry/gps", body, "Idempotency-Key", "retry-1")
	wantStatus(t, first, http.StatusAccepted)
	id := decodeBody[Accepted](t, first).ID
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Error("a first request is not a replay")
	}

	// The same reading in another notation (MAC form, RFC 3339, quoted key)
	// is the same request.
	same := fmt.Sprintf(`{"device_id":"00-0A-95-9D-68-16","timestamp":%q,"latitude":1.5,"longitude":2.0}`, time.Unix(ts, 0).UTC().Format(time.RFC3339))
	for i, b := range []string{body, same} {
		resp := s.postJSON("/telemetry/gps", b, "Idempotency-Key", `"retry-1"`)
		wantStatus(t, resp, http.StatusAccepted)
		if got := decodeBody[Accepted](t, resp).ID; got != id {
			t.Errorf("retry %d got id %s, want %s", i, got, id)
		}
		if resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("retry %d: Idempotent-Replayed = %q", i, resp.Header.Get("Idempotent-Replayed"))
		}
	}
	if n := s.msgCount(); n != before+1 {
		t.Errorf("stream grew by %d messages, want 1", n-before)
	}
	// A key's message carries its id as Nats-Msg-Id, so that a retry the
	// key store no longer remembers is still dropped by JetStream.
	if got := s.lastMsg(models.TypeGPS).Header.Get(jetstream.MsgIDHeader); got != id {
		t.Errorf("Nats-Msg-Id = %q, want the message id %q", got, id)
	}

	t.Run("different body", func(t *testing.T) {
		other := strings.Replace(body, "1.5", "1.6", 1)
		p := checkProblem(t, s.postJSON("/telemetry/gps", other, "Idempotency-Key", "retry-1"), http.StatusUnprocessableEntity)
		if !strings.HasSuffix(p.Type, "idempotency-key-reused") {
			t.Errorf("type = %s", p.Type)
		}
		if n := s.msgCount(); n != before+1 {
			t.Errorf("stream grew by %d messages, want 1", n-before)
		}
	})
	t.Run("keys are per type", func(t *testing.T) {
		resp := s.postJSON("/telemetry/gyroscope", fmt.Sprintf(`{"device_id":"d","timestamp":%d,"x":1,"y":2,"z":3}`, ts), "Idempotency-Key", "retry-1")
		wantStatus(t, resp, http.StatusAccepted)
		if decodeBody[Accepted](t, resp).ID == id {
			t.Error("a gyroscope reading reused the GPS reading's id")
		}
	})
	t.Run("concurrent retries share one id", func(t *testing.T) {
		start := s.msgCount()
		b := fmt.Sprintf(`{"device_id":"d","timestamp":%d,"x":0,"y":0,"z":0}`, ts)
		ids := make(chan string, 8)
		for range 8 {
			go func() {
				resp, err := s.srv.Client().Do(func() *http.Request {
					req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/telemetry/gyroscope", strings.NewReader(b))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("X-API-Key", ingestSecret)
					req.Header.Set("Idempotency-Key", "burst")
					return req
				}())
				if err != nil {
					ids <- err.Error()
					return
				}
				defer resp.Body.Close()
				var acc Accepted
				_ = json.NewDecoder(resp.Body).Decode(&acc)
				ids <- fmt.Sprint(resp.StatusCode, " ", acc.ID)
			}()
		}
		var first string
		for i := range 8 {
			got := <-ids
			if i == 0 {
				first = got
			}
			if !strings.HasPrefix(got, "202 ") || got != first {
				t.Errorf("answer %d = %q, first %q", i, got, first)
			}
		}
		if n := s.msgCount(); n != start+1 {
			t.Errorf("stream grew by %d, want 1", n-start)
		}
	})
}

func TestStreamFullAnswers503(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.Topology.MaxBytes = 2 << 10 })
	body := fmt.Sprintf(`{"device_id":"d","timestamp":%d,"latitude":1,"longitude":2}`, time.Now().Unix())
	for i := 0; ; i++ {
		resp := s.postJSON("/telemetry/gps", body)
		if resp.StatusCode == http.StatusAccepted {
			if i > 50 {
				t.Fatal("a 2 KiB stream accepted 50 messages")
			}
			continue
		}
		p := checkProblem(t, resp, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if strings.Contains(p.Detail, "nats") || strings.Contains(p.Detail, "maximum") || p.Errors != nil {
			t.Errorf("503 leaks the cause: %+v", p)
		}
		if !strings.Contains(s.logs.String(), `"status":503`) || !strings.Contains(s.logs.String(), "maximum bytes") {
			t.Errorf("the cause of a 503 must be logged once by the access log; logs:\n%s", s.logs.String())
		}
		return
	}
}

func TestLargePhotoPassesEndToEnd(t *testing.T) {
	s := newStack(t, nil)
	// A real JPEG padded to exactly 5 MiB (bytes after the end-of-image
	// marker are ignored by decoders and kept by us).
	img := append(append([]byte{}, jpegFixture...), make([]byte, 5<<20-len(jpegFixture))...)
	ts := rfc(time.Now())
	t.Run("json", func(t *testing.T) {
		resp := s.postJSON("/telemetry/photo", `{"device_id":"d","timestamp":"`+ts+`","photo":"`+base64.StdEncoding.EncodeToString(img)+`"}`)
		wantStatus(t, resp, http.StatusAccepted)
		p, err := models.Unmarshal(models.TypePhoto, s.lastMsg(models.TypePhoto).Data, models.DefaultLimits())
		if err != nil || !bytes.Equal(p.(*models.Photo).Image, img) {
			t.Fatalf("5 MiB photo did not round-trip: %v", err)
		}
	})
	t.Run("multipart", func(t *testing.T) {
		body, ct := multipartBody(t, photoParts("d", ts, img)...)
		resp := s.do(http.MethodPost, "/telemetry/photo", ct, body)
		wantStatus(t, resp, http.StatusAccepted)
		p, err := models.Unmarshal(models.TypePhoto, s.lastMsg(models.TypePhoto).Data, models.DefaultLimits())
		if err != nil || !bytes.Equal(p.(*models.Photo).Image, img) {
			t.Fatalf("5 MiB photo did not round-trip: %v", err)
		}
	})
}

func TestUnknownRoutes(t *testing.T) {
	s := newStack(t, nil)
	checkProblem(t, s.do(http.MethodPost, "/telemetry/temperature", "application/json", strings.NewReader("{}")), http.StatusNotFound)
	resp := s.do(http.MethodPut, "/telemetry/gps", "application/json", strings.NewReader("{}"))
	checkProblem(t, resp, http.StatusMethodNotAllowed)
	if resp.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("Allow = %q", resp.Header.Get("Allow"))
	}
}

// wrapLines breaks s into lines of n characters, each ended by sep, as
// line-wrapping base64 encoders do (the last line too).
func wrapLines(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + sep)
		s = s[n:]
	}
	b.WriteString(s + sep)
	return b.String()
}

// base64Encoders give every base64 form of an image that real clients
// send (SPEC §2).
var base64Encoders = map[string]func([]byte) string{
	"standard":               base64.StdEncoding.EncodeToString,
	"url-safe":               base64.URLEncoding.EncodeToString,
	"standard unpadded":      base64.RawStdEncoding.EncodeToString,
	"url-safe unpadded":      base64.RawURLEncoding.EncodeToString,
	"data uri":               func(b []byte) string { return "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(b) },
	"android Base64.DEFAULT": func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\n") },
	"android URL_SAFE":       func(b []byte) string { return wrapLines(base64.URLEncoding.EncodeToString(b), 76, "\n") },
	"mime":                   func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\r\n") },
	"openssl (64 columns)":   func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 64, "\n") },
	"data uri, wrapped": func(b []byte) string {
		return "data:image/png;base64," + wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\n")
	},
	"data uri, wrapped, CRLF": func(b []byte) string {
		return "data:image/png;base64," + wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\r\n")
	},
}

// photoRequest is a photo request whose "photo" is the JSON string of text.
func photoRequest(text string) string {
	b, _ := json.Marshal(text)
	return `{"device_id":"d","timestamp":"` + rfc(time.Now()) + `","photo":` + string(b) + `}`
}

func TestPhotoBase64Forms(t *testing.T) {
	s := newStack(t, nil)
	for _, fx := range []struct {
		name string
		img  []byte
		ct   string
	}{{"jpeg", jpegFixture, models.ContentTypeJPEG}, {"png", pngFixture, models.ContentTypePNG}} {
		for form, encode := range base64Encoders {
			t.Run(fx.name+"/"+form, func(t *testing.T) {
				wantStatus(t, s.postJSON("/telemetry/photo", photoRequest(encode(fx.img))), http.StatusAccepted)
				p, err := models.Unmarshal(models.TypePhoto, s.lastMsg(models.TypePhoto).Data, models.DefaultLimits())
				if err != nil || !bytes.Equal(p.(*models.Photo).Image, fx.img) || p.(*models.Photo).ContentType != fx.ct {
					t.Fatalf("published photo differs: %v", err)
				}
			})
		}
	}
}

// TestPhotoSizeLimitIsOnDecodedBytes: an image of exactly 5 MiB passes
// with line breaks (\n and \r\n; unwrapped: TestLargePhotoPassesEndToEnd);
// one byte more is 413 in every form.
func TestPhotoSizeLimitIsOnDecodedBytes(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		// 5 MiB publishes under -race on a busy machine take seconds.
		c.PublishTimeout, c.RequestTimeout, c.ShutdownTimeout = 20*time.Second, 30*time.Second, 40*time.Second
	})
	max := s.cfg.Limits.MaxPhotoBytes
	atLimit := append(append([]byte{}, jpegFixture...), make([]byte, max-len(jpegFixture))...)
	over := append(atLimit[:max:max], 0)
	for _, c := range []struct {
		form    string
		atLimit bool
	}{{"android Base64.DEFAULT", true}, {"data uri, wrapped, CRLF", true}, {"standard", false}, {"url-safe unpadded", false}, {"mime", false}} {
		t.Run(c.form, func(t *testing.T) {
			if c.atLimit {
				wantStatus(t, s.postJSON("/telemetry/photo", photoRequest(base64Encoders[c.form](atLimit))), http.StatusAccepted)
			}
			p := checkProblem(t, s.postJSON("/telemetry/photo", photoRequest(base64Encoders[c.form](over))), http.StatusRequestEntityTooLarge)
			if len(p.Errors) != 1 || p.Errors[0].Field != "photo" {
				t.Errorf("413 names %+v, want the photo", p.Errors)
			}
		})
	}
}

// TestHostileBodiesGetSmallAnswers: however many faults a body holds, the
// answer lists at most 20 field errors, says how many more there are, and
// stays within a few KiB; no field error echoes a long client string.
func TestHostileBodiesGetSmallAnswers(t *testing.T) {
	s := newStack(t, nil)
	const maxAnswer = 4 << 10
	ts := `"` + rfc(time.Now()) + `"`
	// members repeats member(i) after head until the body would pass size.
	members := func(size int, head string, member func(i int) string) string {
		var b strings.Builder
		b.WriteString("{" + head)
		for i := 0; ; i++ {
			m := member(i)
			if b.Len()+len(m)+2 > size {
				break
			}
			if i > 0 || head != "" {
				b.WriteByte(',')
			}
			b.WriteString(m)
		}
		b.WriteString("}")
		return b.String()
	}
	unknown := func(i int) string { return fmt.Sprintf(`"k%d":0`, i) }
	jsonBody := func(body string) func() io.Reader { return func() io.Reader { return strings.NewReader(body) } }
	cases := []struct {
		name, path, contentType string
		body                    func() io.Reader
		status                  int
		more                    bool // the detail must count errors not listed
	}{
		{name: "gps: 64 KiB of unknown keys", path: "/telemetry/gps", body: jsonBody(members(JSONBodyLimit, "", unknown)), status: 400, more: true},
		{name: "gps: 64 KiB of duplicate keys", path: "/telemetry/gps", body: jsonBody(members(JSONBodyLimit, `"device_id":"d","timestamp":`+ts+`,"longitude":1`, func(int) string { return `"latitude":1` })), status: 400, more: true},
		{name: "gyroscope: unknown keys with nested values", path: "/telemetry/gyroscope", body: jsonBody(members(JSONBodyLimit, "", func(i int) string { return fmt.Sprintf(`"k%d":[{}]`, i) })), status: 400, more: true},
		{name: "gps: deeply nested value", path: "/telemetry/gps", body: jsonBody(`{"latitude":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`), status: 400},
		{name: "gps: deeply nested objects", path: "/telemetry/gps", body: jsonBody(strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000)), status: 400},
		{name: "gps: one 60 KB unknown key", path: "/telemetry/gps", body: jsonBody(`{"` + strings.Repeat("k", 60_000) + `":1}`), status: 400},
		{name: "gps: 60 KB escaped key", path: "/telemetry/gps", body: jsonBody(`{"` + strings.Repeat(`\u00e9`, 10_000) + `":1}`), status: 400},
		{name: "photo: 7 MiB of junk keys", path: "/telemetry/photo", body: jsonBody(members(7<<20, "", unknown)), status: 400, more: true},
		{name: "photo: 7 MiB of duplicate photos", path: "/telemetry/photo", body: jsonBody(members(7<<20, `"device_id":"d","timestamp":`+ts, func(int) string { return `"photo":"/9j/"` })), status: 400, more: true},
		{name: "photo: multipart of junk parts", path: "/telemetry/photo", body: func() io.Reader {
			parts := photoParts("d", rfc(time.Now()), jpegFixture)
			for i := 0; i < 20_000; i++ {
				parts = append(parts, part{name: fmt.Sprintf("junk%d", i)})
			}
			parts = append(parts, part{name: strings.Repeat("n", 60_000)})
			body, ct := multipartBody(t, parts...)
			return &typedBody{body, ct}
		}, status: 400, more: true},
	}
	before := s.msgCount()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body()
			ct := "application/json"
			if tb, ok := body.(*typedBody); ok {
				ct = tb.contentType
			}
			resp := s.do(http.MethodPost, c.path, ct, body)
			raw, _ := io.ReadAll(resp.Body)
			t.Logf("%d-byte answer: %.300s", len(raw), raw)
			if resp.StatusCode != c.status || len(raw) > maxAnswer {
				t.Fatalf("status %d, %d-byte answer; want %d within %d bytes: %.300s…", resp.StatusCode, len(raw), c.status, maxAnswer, raw)
			}
			var p Problem
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Errors) > 20 {
				t.Errorf("%d field errors listed, want at most 20", len(p.Errors))
			}
			if c.more && !regexp.MustCompile(`^[0-9,]+ fields are invalid; errors lists the first 20 … and [0-9]{1,3}(,[0-9]{3})* more\.$`).MatchString(p.Detail) {
				t.Errorf("detail %q does not say how many more errors there are", p.Detail)
			}
			for _, fe := range p.Errors {
				if len(fe.Field) > 100 || len(fe.Message) > 200 {
					t.Errorf("field error echoes %d+%d bytes", len(fe.Field), len(fe.Message))
				}
			}
		})
	}
	if n := s.msgCount(); n != before {
		t.Errorf("stream went from %d to %d messages", before, n)
	}
}

// typedBody is a request body that brings its own Content-Type.
type typedBody struct {
	io.Reader
	contentType string
}

// pngWithSize is the PNG fixture with width × height declared in its IHDR
// (CRC recomputed, so only the dimensions are wrong).
func pngWithSize(width, height uint32) []byte {
	b := append([]byte{}, pngFixture...)
	// Signature (8), IHDR length (4) and type (4), then width and height.
	binary.BigEndian.PutUint32(b[16:], width)
	binary.BigEndian.PutUint32(b[20:], height)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// TestPhotoHeaderMustDecode: a photo is JPEG or PNG when its header
// decodes as one with sane dimensions, not when its first bytes say so;
// anything else is 415 at the door, in either request form.
func TestPhotoHeaderMustDecode(t *testing.T) {
	s := newStack(t, nil)
	random := make([]byte, 4096)
	rand.NewChaCha8([32]byte{1}).Read(random)
	// A JPEG whose frame header (SOF0) declares 65535 × 65535.
	hugeJPEG := func() []byte {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
			t.Fatal(err)
		}
		img := b.Bytes()
		i := bytes.Index(img, []byte{0xFF, 0xC0})
		binary.BigEndian.PutUint16(img[i+5:], 65535)
		binary.BigEndian.PutUint16(img[i+7:], 65535)
		return img
	}()
	refused := map[string][]byte{
		"jpeg magic, random bytes":   append([]byte{0xFF, 0xD8, 0xFF}, random...),
		"png magic, random bytes":    append([]byte("\x89PNG\r\n\x1a\n"), random...),
		"jpeg cut inside its header": jpegFixture[:240], // its frame header (SOF2) spans bytes 230–248
		"png cut inside its IHDR":    pngFixture[:24],
		"png of 100000 × 100000":     pngWithSize(100000, 100000),
		"png of 20000 × 10":          pngWithSize(20000, 10),
		"png of 0 × 10":              pngWithSize(0, 10),
		"jpeg of 65535 × 65535":      hugeJPEG,
		"gif":                        []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"),
	}
	before := s.msgCount()
	for name, img := range refused {
		t.Run(name, func(t *testing.T) {
			body, ct := multipartBody(t, photoParts("d", rfc(time.Now()), img)...)
			for form, resp := range map[string]*http.Response{
				"json":      s.postJSON("/telemetry/photo", photoRequest(base64.StdEncoding.EncodeToString(img))),
				"multipart": s.do(http.MethodPost, "/telemetry/photo", ct, body),
			} {
				p := checkProblem(t, resp, http.StatusUnsupportedMediaType)
				if len(p.Errors) != 1 || p.Errors[0].Field != "photo" || !strings.Contains(p.Errors[0].Message, "JPEG or PNG") && !strings.Contains(p.Errors[0].Message, "pixels") {
					t.Errorf("%s: errors = %+v", form, p.Errors)
				}
			}
		})
	}
	if n := s.msgCount(); n != before {
		t.Fatalf("stream went from %d to %d messages", before, n)
	}
	for name, img := range map[string][]byte{"jpeg": jpegFixture, "png": pngFixture, "png of 16384 × 3000": pngWithSize(16384, 3000)} {
		t.Run("accepted "+name, func(t *testing.T) {
			wantStatus(t, s.postJSON("/telemetry/photo", photoRequest(base64.StdEncoding.EncodeToString(img))), http.StatusAccepted)
		})
	}
}
