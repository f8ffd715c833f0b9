package jsonappend

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"
)

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "dev-1", "AA:BB:CC:DD:EE:FF", "a b", "~"} {
		if got, ok := String(nil, s, true); !ok || string(got) != marshal(t, s) {
			t.Errorf("String(%q) = %s, %v; want %s", s, got, ok, marshal(t, s))
		}
	}
	for _, s := range []string{"<", ">", "&", `"`, `\`, "\n", "é", "\x7f"} {
		if got, ok := String([]byte("x"), s, true); ok || string(got) != "x" {
			t.Errorf("String(%q) = %q, %v; want the buffer untouched and false", s, got, ok)
		}
	}
	for _, f := range []float64{0, -0.0, 1, -1.5, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 123456789.123, math.MaxFloat64, math.SmallestNonzeroFloat64, -23.5505199} {
		got, ok := Float(nil, "", f, true)
		if !ok || string(got) != marshal(t, f) {
			t.Errorf("Float(%v) = %s, %v; want %s", f, got, ok, marshal(t, f))
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, ok := Float(nil, "", f, true); ok {
			t.Errorf("Float(%v): ok; want false", f)
		}
	}
	for _, tm := range []time.Time{
		time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 1, 17, 0, 0, 123456000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.FixedZone("", -3*3600)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", 5*3600+30*60)),
	} {
		if got, ok := Time(nil, tm, true); !ok || string(got) != marshal(t, tm) {
			t.Errorf("Time(%v) = %s, %v; want %s", tm, got, ok, marshal(t, tm))
		}
	}
	for _, tm := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 30)),
	} {
		if _, ok := Time(nil, tm, true); ok {
			t.Errorf("Time(%v): ok; want false", tm)
		}
	}
	id := uuid.Must(uuid.NewV7())
	if got := UUID(nil, id); string(got) != id.String() {
		t.Errorf("UUID = %s; want %s", got, id)
	}
	if _, ok := String(nil, "fine", false); ok {
		t.Error("String kept ok = true after a false one")
	}
}
