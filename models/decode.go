package models

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// DecodeGyroscope reads a gyroscope request body. now is the moment of
// receipt. On failure the error is an *ierr.Error of kind Invalid naming
// every failing field.
func DecodeGyroscope(r io.Reader, now time.Time, lim Limits) (Gyroscope, error) {
	const op = "models.DecodeGyroscope"
	var g Gyroscope
	obj, fe, err := decodeObject(r, "device_id", "timestamp", "x", "y", "z")
	if err != nil {
		return g, ierr.E(ierr.Invalid, op, err)
	}
	g.DeviceID, g.RecordedAt = obj.meta(now, lim, &fe)
	g.X = obj.number("x", &fe)
	g.Y = obj.number("y", &fe)
	g.Z = obj.number("z", &fe)
	return g, fe.err(op)
}

// DecodeGPS reads a GPS request body; see DecodeGyroscope.
func DecodeGPS(r io.Reader, now time.Time, lim Limits) (GPS, error) {
	const op = "models.DecodeGPS"
	var g GPS
	obj, fe, err := decodeObject(r, "device_id", "timestamp", "latitude", "longitude")
	if err != nil {
		return g, ierr.E(ierr.Invalid, op, err)
	}
	g.DeviceID, g.RecordedAt = obj.meta(now, lim, &fe)
	if g.Latitude = obj.number("latitude", &fe); !fe.has("latitude") {
		fe.latitude(g.Latitude)
	}
	if g.Longitude = obj.number("longitude", &fe); !fe.has("longitude") {
		fe.longitude(g.Longitude)
	}
	return g, fe.err(op)
}

// DecodePhotoJSON reads a JSON photo request whose "photo" field is the image
// as base64 (standard or URL alphabet, padded or not, optionally as a
// data: URI). A too large image is TooLarge, a non-JPEG/PNG one Unsupported,
// unless other fields are also invalid: then everything is reported as
// Invalid in one answer.
func DecodePhotoJSON(r io.Reader, now time.Time, lim Limits) (Photo, error) {
	const op = "models.DecodePhotoJSON"
	var p Photo
	obj, fe, err := decodeObject(r, "device_id", "timestamp", "photo")
	if err != nil {
		return p, ierr.E(ierr.Invalid, op, err)
	}
	p.DeviceID, p.RecordedAt = obj.meta(now, lim, &fe)
	raw, ok := obj["photo"]
	var img []byte
	switch {
	case !ok:
		fe.add("photo", "is required")
	default:
		var b64 []byte
		switch {
		case len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0:
			b64 = raw[1 : len(raw)-1] // no escapes: decode in place, no copy
		default:
			var s string
			if json.Unmarshal(raw, &s) != nil {
				fe.add("photo", "must be a base64 string")
				return finishPhoto(op, p, nil, lim, fe)
			}
			b64 = []byte(s)
		}
		if img, err = decodeBase64Image(b64, lim.MaxPhotoBytes); err != nil {
			fe.add("photo", err.Error())
			img = nil
			if errors.Is(err, errImageTooLarge) && len(fe) == 1 {
				return p, &ierr.Error{Kind: ierr.TooLarge, Op: op, Fields: fe}
			}
		}
	}
	return finishPhoto(op, p, img, lim, fe)
}

// NewPhoto builds a photo from multipart form values; see DecodePhotoJSON.
func NewPhoto(deviceID, timestamp string, img []byte, now time.Time, lim Limits) (Photo, error) {
	const op = "models.NewPhoto"
	var fe fieldErrors
	var p Photo
	if id, msg := NormalizeDeviceID(deviceID); msg != "" {
		fe.add("device_id", msg)
	} else {
		p.DeviceID = id
	}
	t, msg := parseTimestampString(timestamp)
	if msg == "" {
		msg = checkRecordedAt(t, now, lim)
	}
	if msg != "" {
		fe.add("timestamp", msg)
	} else {
		p.RecordedAt = t
	}
	if img == nil {
		fe.add("photo", "is required")
	}
	return finishPhoto(op, p, img, lim, fe)
}

func finishPhoto(op string, p Photo, img []byte, lim Limits, fe fieldErrors) (Photo, error) {
	if img != nil {
		ct, err := SniffImage(img, lim.MaxPhotoBytes)
		if err != nil {
			if len(fe) == 0 {
				e := err.(*ierr.Error)
				e.Op = op
				return p, e
			}
			fe = append(fe, ierr.FieldsOf(err)...)
		} else {
			p.ContentType, p.Image = ct, img
		}
	}
	return p, fe.err(op)
}

var errImageTooLarge = errors.New("image too large")

// decodeBase64Image decodes the image without ever allocating more than the
// limit allows for.
func decodeBase64Image(s []byte, maxBytes int) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(s, []byte("data:")); ok {
		_, data, found := bytes.Cut(rest, []byte(";base64,"))
		if !found {
			return nil, errors.New("data URI must be base64-encoded")
		}
		s = data
	}
	if len(s) == 0 {
		return nil, errors.New("is required")
	}
	enc := base64.StdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !bytes.HasSuffix(s, []byte("=")) && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	if enc.DecodedLen(len(s)) > maxBytes+2 {
		return nil, fmt.Errorf("%w: must be at most %d bytes decoded", errImageTooLarge, maxBytes)
	}
	img := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(img, s)
	if err != nil {
		return nil, errors.New("must be valid base64")
	}
	if n > maxBytes {
		return nil, fmt.Errorf("%w: must be at most %d bytes decoded", errImageTooLarge, maxBytes)
	}
	return img[:n], nil
}

// object is a decoded JSON object of scalar fields.
type object map[string]json.RawMessage

// decodeObject reads exactly one JSON object whose keys are among allowed:
// unknown or duplicate keys are field errors; malformed JSON or trailing data
// is a plain error (the body as a whole is wrong).
//
// Request bodies are flat objects of scalars, and a photo's base64 string is
// megabytes long, so a small scanner does the work (about 5x faster than
// encoding/json's token stream on a photo); anything it does not expect,
// like a nested value, goes to the general decoder, which gives the verdict.
func decodeObject(r io.Reader, allowed ...string) (object, fieldErrors, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		// A read error (e.g. *http.MaxBytesError): keep it for the HTTP layer.
		return nil, nil, fmt.Errorf("reading body: %w", err)
	}
	if obj, fe, err, ok := scanObject(body, allowed); ok {
		return obj, fe, err
	}
	return decodeObjectStream(bytes.NewReader(body), allowed...)
}

// scanObject parses a flat JSON object of scalar values. ok is false when
// the body holds something it leaves to the general decoder.
func scanObject(b []byte, allowed []string) (obj object, fe fieldErrors, err error, ok bool) {
	s := scanner{b: b}
	s.ws()
	if s.i == len(b) {
		return nil, nil, errors.New("body is empty or truncated JSON"), true
	}
	if b[s.i] != '{' {
		return nil, nil, nil, false
	}
	s.i++
	obj = make(object, len(allowed))
	s.ws()
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			s.ws()
			rawKey, ok := s.str()
			if !ok {
				return nil, nil, nil, false
			}
			key, ok := unquote(rawKey)
			if !ok {
				return nil, nil, nil, false
			}
			s.ws()
			if s.peek() != ':' {
				return nil, nil, nil, false
			}
			s.i++
			s.ws()
			var raw []byte
			switch s.peek() {
			case '"':
				raw, ok = s.str()
			case '{', '[', 0:
				ok = false
			default:
				raw, ok = s.scalar()
			}
			if !ok {
				return nil, nil, nil, false
			}
			obj.put(key, raw, allowed, &fe)
			s.ws()
			c := s.peek()
			s.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, nil, nil, false
			}
		}
	}
	s.ws()
	if s.i != len(b) {
		return nil, nil, errors.New("body must hold exactly one JSON object (trailing data found)"), true
	}
	return obj, fe, nil, true
}

// scanner walks a JSON text; every method leaves i after what it read.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string and returns it with its quotes. Escapes are checked
// only for being well formed (by encoding/json, when there are any).
func (s *scanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			raw := s.b[start:s.i]
			return raw, !escaped || json.Valid(raw)
		case c == '\\':
			escaped = true
			j++ // the escaped byte; \uXXXX is checked by json.Valid
		case c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// scalar reads a number, true, false or null.
func (s *scanner) scalar() ([]byte, bool) {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ' ', '\t', '\n', '\r':
			tok := s.b[start:s.i]
			return tok, len(tok) > 0 && json.Valid(tok)
		}
		s.i++
	}
	return nil, false
}

// unquote turns a scanned string into its value.
func unquote(raw []byte) (string, bool) {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	var v string
	return v, json.Unmarshal(raw, &v) == nil
}

// decodeObjectStream is decodeObject on encoding/json's token stream: the
// general path, for bodies the scanner leaves alone.
func decodeObjectStream(r io.Reader, allowed ...string) (object, fieldErrors, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, bodyErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("body must be a JSON object")
	}
	obj := make(object, len(allowed))
	var fe fieldErrors
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, bodyErr(err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, bodyErr(err)
		}
		obj.put(key, raw, allowed, &fe)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, bodyErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("body must hold exactly one JSON object (trailing data found)")
	}
	return obj, fe, nil
}

func bodyErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("body is empty or truncated JSON")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("body is not valid JSON (offset %d)", se.Offset)
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return errors.New("body is not valid JSON")
	}
	// A read error (e.g. *http.MaxBytesError): keep it for the HTTP layer.
	return fmt.Errorf("reading body: %w", err)
}

// put records one member of the object: an unknown or repeated key is a
// field error, not a value.
func (o object) put(key string, raw []byte, allowed []string, fe *fieldErrors) {
	switch {
	case !contains(allowed, key):
		fe.add(key, "is not a known field")
	case o[key] != nil:
		fe.add(key, "appears more than once")
	default:
		o[key] = raw
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (fe fieldErrors) has(field string) bool {
	for _, f := range fe {
		if f.Field == field {
			return true
		}
	}
	return false
}

// meta parses device_id and timestamp, the fields every request shares.
func (o object) meta(now time.Time, lim Limits, fe *fieldErrors) (string, time.Time) {
	var deviceID string
	if raw, ok := o["device_id"]; !ok {
		fe.add("device_id", "is required")
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			fe.add("device_id", "must be a string")
		} else if id, msg := NormalizeDeviceID(s); msg != "" {
			fe.add("device_id", msg)
		} else {
			deviceID = id
		}
	}
	var t time.Time
	raw, ok := o["timestamp"]
	var msg string
	switch {
	case !ok:
		msg = "is required"
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			msg = "must be a string or a number"
		} else {
			t, msg = parseTimestampString(s)
		}
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		t, msg = parseEpoch(string(raw))
	default:
		msg = "must be an RFC 3339 string or a number of Unix epoch seconds"
	}
	if msg == "" {
		msg = checkRecordedAt(t, now, lim)
	}
	if msg != "" {
		fe.add("timestamp", msg)
		t = time.Time{}
	}
	return deviceID, t
}

// number parses a required finite JSON number.
func (o object) number(field string, fe *fieldErrors) float64 {
	raw, ok := o[field]
	if !ok {
		fe.add(field, "is required")
		return 0
	}
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		fe.add(field, "must be a number")
		return 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		fe.add(field, "must be a finite number")
		return 0
	}
	return f
}

// strictUnmarshal decodes one JSON value rejecting unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// More() is false before a stray '}' or ']'; only EOF proves the end.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after message")
	}
	return nil
}
