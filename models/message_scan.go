package models

// The worker decodes every GPS and gyroscope message it stores, tens of
// thousands a second in a drain, and encoding/json's reflection cost about
// 8 µs of the worker's CPU per reading for a message whose shape is fixed.
// The API writes those messages field by field (handlers/message.go) in
// exactly models.Marshal's bytes: no whitespace, the fields in declaration
// order, strings that need no escape, numbers in Go's shortest form. The
// scanner below reads exactly that layout and nothing else; any other
// text, valid JSON or not, goes to encoding/json, which gives the verdict.
// What the scanner accepts it decodes with the very functions
// encoding/json calls (uuid.UUID.UnmarshalText, time.Time.UnmarshalJSON,
// strconv.ParseFloat), and FuzzScanMessageMatchesEncodingJSON holds the two
// paths to the same answers.

import (
	"bytes"
	"strconv"
	"time"
)

// scanMessage decodes data into v when data is in the encoder's layout;
// false: leave data to encoding/json (v may then hold partial values).
func (g *GPS) scanMessage(data []byte) bool {
	s := msgScanner{b: data, ok: true}
	s.meta(&g.Meta)
	s.lit(`,"latitude":`)
	g.Latitude = s.number()
	s.lit(`,"longitude":`)
	g.Longitude = s.number()
	return s.end()
}

func (g *Gyroscope) scanMessage(data []byte) bool {
	s := msgScanner{b: data, ok: true}
	s.meta(&g.Meta)
	s.lit(`,"x":`)
	g.X = s.number()
	s.lit(`,"y":`)
	g.Y = s.number()
	s.lit(`,"z":`)
	g.Z = s.number()
	return s.end()
}

// scanMessage: a photo's message is megabytes of base64, which
// encoding/json's own decoding dominates; it always takes that path.
func (*Photo) scanMessage([]byte) bool { return false }

// msgScanner reads a message in the encoder's layout; once a read fails, ok
// is false and every further read is a no-op.
type msgScanner struct {
	b  []byte
	i  int
	ok bool
}

func (s *msgScanner) meta(m *Meta) {
	s.lit(`{"message_id":`)
	// The canonical form only (uuid.UUID.String's); UnmarshalText would
	// take braces, a urn: prefix or bare hex too.
	if id := s.str(); s.ok && (len(id) != 36 || m.MessageID.UnmarshalText(id) != nil) {
		s.ok = false
	}
	s.lit(`,"actor":`)
	m.Actor = string(s.str())
	s.lit(`,"received_at":`)
	m.ReceivedAt = s.time()
	s.lit(`,"device_id":`)
	m.DeviceID = string(s.str())
	s.lit(`,"recorded_at":`)
	m.RecordedAt = s.time()
}

// lit reads the literal l.
func (s *msgScanner) lit(l string) {
	if s.ok && bytes.HasPrefix(s.b[s.i:], []byte(l)) {
		s.i += len(l)
		return
	}
	s.ok = false
}

// end reads the closing brace, which must end the data.
func (s *msgScanner) end() bool {
	s.lit("}")
	return s.ok && s.i == len(s.b)
}

// str reads a string of printable ASCII without escapes (all the encoder
// writes unescaped) and returns its contents.
func (s *msgScanner) str() []byte {
	if !s.ok || s.i >= len(s.b) || s.b[s.i] != '"' {
		s.ok = false
		return nil
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[s.i+1 : j]
			s.i = j + 1
			return v
		case c < 0x20 || c >= 0x7f || c == '\\':
			s.ok = false
			return nil
		}
	}
	s.ok = false
	return nil
}

// time reads a timestamp as encoding/json does: time.Time.UnmarshalJSON
// of the quoted string.
func (s *msgScanner) time() time.Time {
	start := s.i
	s.str()
	var t time.Time
	if s.ok && t.UnmarshalJSON(s.b[start:s.i]) != nil {
		s.ok = false
	}
	return t
}

// number reads a JSON number (not null, which encoding/json would skip)
// that fits a float64.
func (s *msgScanner) number() float64 {
	if !s.ok {
		return 0
	}
	start := s.i
	for s.i < len(s.b) && s.b[s.i] != ',' && s.b[s.i] != '}' {
		s.i++
	}
	tok := s.b[start:s.i]
	if len(tok) == 0 || tok[0] == 'n' || tok[0] == 't' || tok[0] == 'f' || !validScalar(tok) {
		s.ok = false
		return 0
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		s.ok = false
		return 0
	}
	return f
}
