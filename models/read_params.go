package models

import "time"

// ParseTime reads a time parameter of the read API (from, to) the way
// ingest reads a timestamp string: RFC 3339 with an offset, or Unix epoch
// seconds with an optional fraction. msg is non-empty when s is not a time,
// and says what is expected. No range rule applies: a query may ask about
// any period.
func ParseTime(s string) (t time.Time, msg string) {
	return parseTimestampString(s)
}
