package models

import (
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// A timestamp in a finer epoch unit than seconds gets a message naming the
// unit and the same instant as the client should send it.
func TestTimestampInFinerEpochUnit(t *testing.T) {
	const hint = "; send seconds (1764583200) or RFC 3339 (2025-12-01T10:00:00Z) instead"
	tests := []struct{ raw, want string }{
		{`1764583200000`, "looks like Unix epoch milliseconds" + hint},   // System.currentTimeMillis()
		{`"1764583200000"`, "looks like Unix epoch milliseconds" + hint}, // the same as a string
		{`1764583200123.5`, "looks like Unix epoch milliseconds" + hint},
		{`1.7645832e12`, "looks like Unix epoch milliseconds" + hint},
		{`1764583200000000`, "looks like Unix epoch microseconds" + hint},
		{`1764583200000000000`, "looks like Unix epoch nanoseconds" + hint},
		// Too large for seconds but no plausible time in any unit: the generic message.
		{`500000000000`, "must be RFC 3339 with a time-zone offset or Unix epoch seconds"},
		{`-1764583200000`, "must be RFC 3339 with a time-zone offset or Unix epoch seconds"},
		{`99999999999999999999999`, "must be RFC 3339 with a time-zone offset or Unix epoch seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			_, err := Decode[GPS](strings.NewReader(`{"device_id":"d","latitude":1,"longitude":1,"timestamp":`+tt.raw+`}`), testNow, testLim)
			fields := ierr.FieldsOf(err)
			if len(fields) != 1 || fields[0].Field != "timestamp" || fields[0].Message != tt.want {
				t.Errorf("field errors = %+v, want timestamp %q", fields, tt.want)
			}
		})
	}
	t.Run("multipart form value", func(t *testing.T) {
		_, err := NewPhoto("d", "1764583200000", nil, testNow, testLim)
		for _, f := range ierr.FieldsOf(err) {
			if f.Field == "timestamp" && f.Message == "looks like Unix epoch milliseconds"+hint {
				return
			}
		}
		t.Errorf("err = %v, want the milliseconds hint on timestamp", err)
	})
}
