package models

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

var photoKeys = []string{"device_id", "timestamp", "photo"}

// FuzzScanObjectMatchesEncodingJSON holds the scanner to encoding/json: on
// every input it accepts, the general decoder must give the same fields,
// the same field errors and the same verdict.
func FuzzScanObjectMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"device_id":"a","timestamp":1,"photo":"/9j/"}`,
		`{}`, ` { "photo" : "x\"y" , "photo": null } `, `{"x":[1]}`, `{"a":1}x`, `{"a":tru}`,
		`{"device_id":"\u0061","timestamp":-1.5e3}`, `{"a":"b\u00"}`, "{\"a\":\"\x01\"}", `{"a":01}`,
		`{"a":1,}`, `[1]`, ``, `   `, `{"photo":"data:image/png;base64,iVBORw0KGgo="}`,
		// Past MaxFieldErrors: later keys are counted, escaped ones still read.
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":0,"k":1,"l":2,"m":3,"n":4,"o":5,"p":6,"q":7,"r":8,"s":9,"t":0,"u":1,"\u0070hoto":"x","photo":"y","v":-0.5e+3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, fe, err, ok := scanObject(b, photoKeys)
		if !ok {
			return // left to the general decoder
		}
		want, wantFE, wantErr := decodeObjectStream(bytes.NewReader(b), photoKeys...)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: scanner err = %v, encoding/json err = %v", b, err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(fe, wantFE) {
			t.Fatalf("%q: field errors %v, want %v", b, fe, wantFE)
		}
		if len(obj) != len(want) {
			t.Fatalf("%q: fields %v, want %v", b, obj, want)
		}
		for k, v := range want {
			var got, exp any
			if json.Unmarshal(obj[k], &got) != nil || json.Unmarshal(v, &exp) != nil || !reflect.DeepEqual(got, exp) {
				t.Fatalf("%q: field %s = %s, want %s", b, k, obj[k], v)
			}
		}
	})
}

// BenchmarkDecodeObject compares the scanner with encoding/json's token
// stream (the baseline) on a photo request of 1 MiB.
func BenchmarkDecodeObject(b *testing.B) {
	body := []byte(`{"device_id":"aa:bb:cc:dd:ee:ff","timestamp":"2026-11-28T10:00:00Z","photo":"` +
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xFF, 0xD8, 0xFF, 0x42}, 1<<18)) + `"}`)
	for _, c := range []struct {
		name   string
		decode func() error
	}{
		{"scanner", func() error { _, _, err := decodeObject(bytes.NewReader(body), photoKeys...); return err }},
		{"encoding_json_baseline", func() error {
			_, _, err := decodeObjectStream(bytes.NewReader(body), photoKeys...)
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := c.decode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestScanObjectLeavesNestedValuesToEncodingJSON(t *testing.T) {
	_, _, _, ok := scanObject([]byte(`{"photo":{"a":1}}`), photoKeys)
	if ok {
		t.Fatal("scanner took a nested object")
	}
	_, fe, err := decodeObject(strings.NewReader(`{"photo":{"a":1}}`), photoKeys...)
	if err != nil || len(fe.named) != 0 {
		t.Fatalf("nested value: fe=%v err=%v (the field check reports it later)", fe, err)
	}
}

type hinted struct {
	io.Reader
	hint int64
}

func (h hinted) SizeHint() int64 { return h.hint }

// readBody returns exactly the body whatever the hint says: right, short,
// long or absent.
func TestReadBodyWithAnyHint(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 1000)
	for _, hint := range []int64{0, 1, 9999, 10000, 10001, 50000} {
		got, err := readBody(hinted{iotest.OneByteReader(bytes.NewReader(body)), hint})
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("hint %d: %d bytes, err %v; want the %d-byte body", hint, len(got), err, len(body))
		}
	}
	if got, _ := readBody(hinted{bytes.NewReader(body), int64(len(body))}); cap(got) != len(body)+1 {
		t.Errorf("right hint: capacity %d, want %d (one buffer, no growth)", cap(got), len(body)+1)
	}
}
