// Package jsonappend appends JSON values exactly as encoding/json writes
// them, without reflection or allocation, for the hot paths that write a
// known, flat message per reading: the API's queue messages
// (handlers/message.go) and the worker's stored-reading announcements
// (worker/announce.go).
//
// Each function takes and returns an ok flag: a value it cannot write
// byte-identically (a string needing an escape, a year outside 0–9999, a
// NaN) makes ok false and leaves b as it was, and the caller falls back to
// encoding/json for the whole message. Chained calls keep the first false.
package jsonappend

import (
	"encoding/hex"
	"math"
	"strconv"
	"time"
)

// String appends s quoted if no character of it needs an escape in JSON
// (encoding/json escapes <, > and & too).
func String(b []byte, s string, ok bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), ok
}

// Time appends t as time.Time's MarshalJSON does, for years 0–9999 and
// offsets in whole minutes.
func Time(b []byte, t time.Time, ok bool) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), ok
}

// Float appends key and f as encoding/json writes a float64: shortest
// form, exponent only below 1e-6 or from 1e21, "e-07" as "e-7".
func Float(b []byte, key string, f float64, ok bool) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	b = append(b, key...)
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, ok
}

// UUID appends id in its canonical text form (uuid.UUID's String), unquoted.
func UUID(b []byte, id [16]byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	return append(b, s[:]...)
}
