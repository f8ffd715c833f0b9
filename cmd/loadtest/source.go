package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

// schedule maps request i to its kind so that every run of total
// consecutive requests holds each kind exactly its weight's times, spread
// through the run rather than in blocks: position (i·stride) mod total
// walks every position once per block because stride and total are coprime.
type schedule struct {
	stride, total int64
	slots         []string // kind by position, weights laid end to end
}

func newSchedule(m mix) schedule {
	s := schedule{total: int64(m.total)}
	for _, k := range kinds {
		for range m.weights[k] {
			s.slots = append(s.slots, k)
		}
	}
	s.stride = max(s.total*618/1000, 1) // near the golden ratio: neighbours land far apart
	for gcd(s.stride, s.total) != 1 {
		s.stride++
	}
	return s
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (s schedule) kind(i int64) string { return s.slots[(i%s.total)*s.stride%s.total] }

// source returns the requests of a run: each carries a fresh timestamp (so a
// long run never sends stale or future readings) and comes from one of
// o.devices devices.
func (o options) source() loadgen.Source {
	s := newSchedule(o.mix)
	header := func(contentType string) http.Header {
		return http.Header{"Content-Type": {contentType}, "X-Api-Key": {o.key}}
	}
	jsonHeader := header("application/json")
	return func(i int64) loadgen.Request {
		device := "loadtest-" + fmt.Sprintf("%04d", i%int64(o.devices))
		now := time.Now().UTC()
		switch kind := s.kind(i); kind {
		case "batch":
			return loadgen.Request{Path: "/telemetry/batch", Header: jsonHeader, Body: batchBody(device, now, o.batchSize), Readings: o.batchSize, Label: kind}
		case "photo":
			body := fmt.Appendf(nil, `{"device_id":%q,"timestamp":%q,"photo":%q}`, device, now.Format(time.RFC3339Nano), o.photoB64)
			return loadgen.Request{Path: "/telemetry/photo", Header: jsonHeader, Body: body, Readings: 1, Label: kind}
		default:
			return loadgen.Request{Path: "/telemetry/" + kind, Header: jsonHeader, Body: reading(nil, kind, device, now, false), Readings: 1, Label: kind}
		}
	}
}

// reading appends one gps or gyroscope reading's JSON; typed adds the
// "type" member a batch needs.
func reading(b []byte, kind, device string, ts time.Time, typed bool) []byte {
	b = append(b, '{')
	if typed {
		b = append(b, `"type":"`...)
		b = append(b, kind...)
		b = append(b, `",`...)
	}
	b = append(b, `"device_id":`...)
	b = strconv.AppendQuote(b, device)
	b = append(b, `,"timestamp":"`...)
	b = ts.AppendFormat(b, time.RFC3339Nano)
	if kind == "gyroscope" {
		b = append(b, `","x":`...)
		b = strconv.AppendFloat(b, rand.NormFloat64(), 'g', -1, 64)
		b = append(b, `,"y":`...)
		b = strconv.AppendFloat(b, rand.NormFloat64(), 'g', -1, 64)
		b = append(b, `,"z":`...)
		b = strconv.AppendFloat(b, rand.NormFloat64(), 'g', -1, 64)
	} else {
		b = append(b, `","latitude":`...)
		b = strconv.AppendFloat(b, -23.55+rand.Float64()/100, 'g', -1, 64)
		b = append(b, `,"longitude":`...)
		b = strconv.AppendFloat(b, -46.63+rand.Float64()/100, 'g', -1, 64)
	}
	return append(b, '}')
}

// batchBody is what a phone buffered while offline: a JSON array of n
// readings of one device, GPS and gyroscope alternating, one a second up to
// now.
func batchBody(device string, now time.Time, n int) []byte {
	b := make([]byte, 0, n*120)
	b = append(b, '[')
	for j := range n {
		if j > 0 {
			b = append(b, ',')
		}
		kind := "gps"
		if j%2 == 1 {
			kind = "gyroscope"
		}
		b = reading(b, kind, device, now.Add(time.Duration(j-n+1)*time.Second), true)
	}
	return append(b, ']')
}

func generatePNG() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for y := range 256 {
		for x := range 256 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	err := png.Encode(&b, img)
	return b.Bytes(), err
}
