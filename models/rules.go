package models

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// fieldErrors collects every failing field so one answer names them all.
type fieldErrors []ierr.FieldError

func (fe *fieldErrors) add(field, msg string) {
	*fe = append(*fe, ierr.FieldError{Field: field, Message: msg})
}

func (fe *fieldErrors) finite(field string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		fe.add(field, "must be a finite number")
	}
}

func (fe *fieldErrors) latitude(v float64) {
	if math.IsNaN(v) || v < -90 || v > 90 {
		fe.add("latitude", "must be between -90 and 90")
	}
}

func (fe *fieldErrors) longitude(v float64) {
	if math.IsNaN(v) || v < -180 || v > 180 {
		fe.add("longitude", "must be between -180 and 180")
	}
}

func (fe fieldErrors) has(field string) bool {
	for _, f := range fe {
		if f.Field == field {
			return true
		}
	}
	return false
}

func (fe fieldErrors) err(op string) error {
	if len(fe) == 0 {
		return nil
	}
	return ierr.InvalidFields(op, fe)
}

// NormalizeDeviceID validates a device id and returns its normal form. A MAC
// address in any usual notation (aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF,
// aabb.ccdd.eeff) becomes lower-case colon form; any other id is kept as sent.
// msg is non-empty when the id is invalid.
func NormalizeDeviceID(id string) (normal, msg string) {
	if id == "" {
		return "", "is required"
	}
	if len(id) > 64 {
		return "", "must be at most 64 characters"
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == ':' || c == '.' || c == '_' || c == '-') {
			return "", "may contain only letters, digits and : . _ -"
		}
	}
	if mac, ok := parseMAC(id); ok {
		return mac, ""
	}
	return id, ""
}

// parseMAC recognises the three usual MAC notations and returns the
// lower-case colon form.
func parseMAC(s string) (string, bool) {
	var hex string
	switch {
	case len(s) == 17 && (s[2] == ':' || s[2] == '-'):
		sep := s[2]
		for i := 2; i < 17; i += 3 {
			if s[i] != sep {
				return "", false
			}
		}
		hex = strings.ReplaceAll(s, string(sep), "")
	case len(s) == 14 && s[4] == '.' && s[9] == '.':
		hex = s[0:4] + s[5:9] + s[10:14]
	default:
		return "", false
	}
	if len(hex) != 12 {
		return "", false
	}
	var b strings.Builder
	b.Grow(17)
	for i := 0; i < 12; i++ {
		c := hex[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		if i > 0 && i%2 == 0 {
			b.WriteByte(':')
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// checkRecordedAt applies the time bounds; ref is the moment of receipt.
func checkRecordedAt(t, ref time.Time, lim Limits) string {
	switch {
	case t.IsZero():
		return "is required"
	case t.Before(MinTimestamp):
		return "must not be before 2000-01-01T00:00:00Z"
	case t.After(ref.Add(lim.MaxFutureSkew)):
		return fmt.Sprintf("must not be more than %s in the future", lim.MaxFutureSkew)
	}
	return ""
}

// parseTimestampString parses RFC 3339 (an offset is required) or a decimal
// count of Unix epoch seconds, with an optional fraction.
func parseTimestampString(s string) (time.Time, string) {
	if s == "" {
		return time.Time{}, "is required"
	}
	if strings.Trim(s, "0123456789.eE+-") == "" {
		return parseEpoch(s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, "must be RFC 3339 with a time-zone offset (e.g. 2026-11-28T10:00:00Z) or Unix epoch seconds"
	}
	return t.UTC(), ""
}

// parseEpoch parses a JSON number of seconds since the Unix epoch exactly
// (no float rounding for the common "1764324000.123" form).
func parseEpoch(s string) (time.Time, string) {
	const msg = "must be RFC 3339 with a time-zone offset or Unix epoch seconds"
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if strings.ContainsAny(s, "eE") || strings.HasPrefix(s, "-") {
		// Exponent or negative forms: fall back to float, then range-check.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, msg
		}
		if math.Abs(f) > 1e11 {
			return time.Time{}, epochTooLarge(f, msg)
		}
		sec, fr := math.Modf(f)
		return time.Unix(int64(sec), int64(fr*1e9)).UTC(), ""
	}
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > 1e11 {
		if f, ferr := strconv.ParseFloat(intPart, 64); ferr == nil {
			return time.Time{}, epochTooLarge(f, msg)
		}
		return time.Time{}, msg
	}
	var nsec int64
	if hasFrac {
		if frac == "" || len(frac) > 9 && strings.TrimRight(frac[9:], "0123456789") != "" {
			return time.Time{}, msg
		}
		if len(frac) > 9 {
			frac = frac[:9]
		}
		n, err := strconv.ParseUint(frac, 10, 64)
		if err != nil {
			return time.Time{}, msg
		}
		for i := len(frac); i < 9; i++ {
			n *= 10
		}
		nsec = int64(n)
	}
	return time.Unix(sec, nsec).UTC(), ""
}

// epochUnits are the finer epoch units clients send by mistake (Java's
// System.currentTimeMillis(), JavaScript's Date.now(), Go's UnixNano()).
var epochUnits = []struct {
	name string
	per  float64 // units per second
}{{"milliseconds", 1e3}, {"microseconds", 1e6}, {"nanoseconds", 1e9}}

// epochTooLarge is the message for an epoch number too large to be seconds.
// When it reads as a plausible reading time in a finer unit, the message
// says so and shows the same instant as the client should send it: a bare
// "must be … seconds" leaves an Android developer staring at a number that
// is, to them, obviously a time.
func epochTooLarge(f float64, fallback string) string {
	for _, u := range epochUnits {
		sec := math.Floor(f / u.per)
		if sec >= float64(MinTimestamp.Unix()) && sec < 1e10 { // 2000 to 2286
			t := time.Unix(int64(sec), 0).UTC()
			return fmt.Sprintf("looks like Unix epoch %s; send seconds (%d) or RFC 3339 (%s) instead",
				u.name, int64(sec), t.Format(time.RFC3339))
		}
	}
	return fallback
}
