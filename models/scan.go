package models

// The JSON scanner behind request decoding. Request bodies are flat objects
// of scalars and a photo's base64 string is megabytes long, so a small
// scanner reads them (about 5x faster than encoding/json's token stream on a
// photo); whatever it does not expect goes to encoding/json, which gives the
// verdict. FuzzScanObjectMatchesEncodingJSON holds the two to the same
// answers.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// object is a decoded JSON object of scalar fields.
type object map[string]json.RawMessage

// decodeObject reads exactly one JSON object whose keys are among allowed:
// unknown or duplicate keys are key errors (bounded however many there
// are); malformed JSON or trailing data is a plain error (the body as a
// whole is wrong).
//
// Request bodies are flat objects of scalars, and a photo's base64 string is
// megabytes long, so a small scanner does the work (about 5x faster than
// encoding/json's token stream on a photo); anything it does not expect,
// like a nested value, goes to the general decoder, which gives the verdict.
func decodeObject(r io.Reader, allowed ...string) (object, KeyErrors, error) {
	body, err := readBody(r)
	if err != nil {
		// A read error (e.g. *http.MaxBytesError): keep it for the HTTP layer.
		return nil, KeyErrors{}, fmt.Errorf("reading body: %w", err)
	}
	if obj, fe, err, ok := scanObject(body, allowed); ok {
		return obj, fe, err
	}
	return decodeObjectStream(bytes.NewReader(body), allowed...)
}

// scanObject parses a flat JSON object of scalar values. ok is false when
// the body holds something it leaves to the general decoder.
func scanObject(b []byte, allowed []string) (obj object, fe KeyErrors, err error, ok bool) {
	s := scanner{b: b}
	s.ws()
	if s.i == len(b) {
		return nil, KeyErrors{}, errors.New("body is empty or truncated JSON"), true
	}
	if b[s.i] != '{' {
		return nil, KeyErrors{}, nil, false
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
				return nil, KeyErrors{}, nil, false
			}
			s.ws()
			if s.peek() != ':' {
				return nil, KeyErrors{}, nil, false
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
				return nil, KeyErrors{}, nil, false
			}
			switch key, known := knownKey(rawKey, allowed); {
			case known:
				obj.put(key, raw, allowed, &fe)
			case fe.full() && bytes.IndexByte(rawKey, '\\') < 0:
				fe.more++ // unknown, past the keys named: its name is not needed
			default:
				if key, ok = unquote(rawKey); !ok {
					return nil, KeyErrors{}, nil, false
				}
				obj.put(key, raw, allowed, &fe)
			}
			s.ws()
			c := s.peek()
			s.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, KeyErrors{}, nil, false
			}
		}
	}
	s.ws()
	if s.i != len(b) {
		return nil, KeyErrors{}, errors.New("body must hold exactly one JSON object (trailing data found)"), true
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
// for being well formed here (json.Valid on a photo wrapped with a "\n"
// escape every line would cost more than the rest of the decode).
func (s *scanner) str() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:s.i], true
		case c == '\\':
			j++
			if j == len(s.b) {
				return nil, false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) || !isHex(s.b[j+1]) || !isHex(s.b[j+2]) || !isHex(s.b[j+3]) || !isHex(s.b[j+4]) {
					return nil, false
				}
				j += 4
			default:
				return nil, false
			}
		case c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scalar reads a number, true, false or null.
func (s *scanner) scalar() ([]byte, bool) {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ' ', '\t', '\n', '\r':
			tok := s.b[start:s.i]
			return tok, validScalar(tok)
		}
		s.i++
	}
	return nil, false
}

// validScalar reports whether t is a JSON number, true, false or null
// (json.Valid's answer, without its pooled state machine per value).
func validScalar(t []byte) bool {
	switch string(t) {
	case "true", "false", "null":
		return true
	}
	i := 0
	digits := func() int {
		n := 0
		for ; i < len(t) && t[i] >= '0' && t[i] <= '9'; i++ {
			n++
		}
		return n
	}
	if i < len(t) && t[i] == '-' {
		i++
	}
	switch {
	case i < len(t) && t[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(t) && t[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(t)
}

// knownKey returns the entry of allowed that rawKey, a scanned string
// without escapes, names; matched in place, so a key costs no allocation.
func knownKey(rawKey []byte, allowed []string) (string, bool) {
	name := rawKey[1 : len(rawKey)-1]
	for _, a := range allowed {
		if string(name) == a {
			return a, true
		}
	}
	return "", false
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
func decodeObjectStream(r io.Reader, allowed ...string) (object, KeyErrors, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, KeyErrors{}, bodyErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, KeyErrors{}, errors.New("body must be a JSON object")
	}
	obj := make(object, len(allowed))
	var fe KeyErrors
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, KeyErrors{}, bodyErr(err)
		}
		key := tok.(string) // inside an object the decoder only yields string keys here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, KeyErrors{}, bodyErr(err)
		}
		obj.put(key, raw, allowed, &fe)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, KeyErrors{}, bodyErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, KeyErrors{}, errors.New("body must hold exactly one JSON object (trailing data found)")
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
func (o object) put(key string, raw []byte, allowed []string, fe *KeyErrors) {
	switch {
	case !contains(allowed, key):
		fe.Add(key, "is not a known field")
	case o[key] != nil:
		fe.Add(key, "appears more than once")
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

// SizeHinter is a request body that knows its announced length (an HTTP
// Content-Length, already capped at the body limit by the caller).
type SizeHinter interface{ SizeHint() int64 }

// readBody is io.ReadAll that, given a size hint, reads into one buffer of
// that size: a 7 MiB photo body is then held once, not copied through a
// series of growing buffers (io.ReadAll's last growth can double it).
func readBody(r io.Reader) ([]byte, error) {
	h, ok := r.(SizeHinter)
	if !ok || h.SizeHint() <= 0 {
		return io.ReadAll(r)
	}
	// One spare byte so that a body matching its hint ends with io.EOF
	// without another growth.
	b := make([]byte, 0, h.SizeHint()+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) { // longer than announced: grow as io.ReadAll does
			b = append(b, 0)[:len(b)]
		}
	}
}
