package models

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// junkKeys is a JSON object of n unknown keys.
func junkKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":0`)
	}
	return b.String() + "}"
}

func TestFieldErrorsAreCapped(t *testing.T) {
	t.Run("the reading's own fields are listed, unknown keys fill the rest", func(t *testing.T) {
		_, err := Decode[GPS](strings.NewReader(junkKeys(3432)), testNow, testLim)
		fields := fieldsOf(err)
		if len(fields) != MaxFieldErrors || fields[0] != "k0" || fields[15] != "k15" ||
			strings.Join(fields[16:], ",") != "device_id,timestamp,latitude,longitude" {
			t.Fatalf("fields = %v", fields)
		}
		var more OmittedFields
		if !errors.As(err, &more) || more != 3432-16 || !ierr.Is(err, ierr.Invalid) {
			t.Errorf("omitted = %d, err %v", more, err)
		}
	})
	t.Run("duplicates in the general decoder's path", func(t *testing.T) {
		body := `{"x":[1],` + strings.Repeat(`"y":1,`, 100) + `"z":1,"device_id":"d","timestamp":1764324000}`
		_, err := Decode[Gyroscope](strings.NewReader(body), testNow, testLim)
		var more OmittedFields
		if fields := fieldsOf(err); len(fields) != MaxFieldErrors || fields[0] != "y" || fields[19] != "x" || !errors.As(err, &more) || more != 99-19 {
			t.Fatalf("fields = %v, omitted %d", fields, more)
		}
	})
	t.Run("exactly 20 faults: no omission", func(t *testing.T) {
		body := strings.Replace(junkKeys(18), "{", `{"device_id":"d","timestamp":1764324000,"latitude":91,"longitude":181,`, 1)
		_, err := Decode[GPS](strings.NewReader(body), testNow, testLim)
		var more OmittedFields
		if fields := fieldsOf(err); len(fields) != MaxFieldErrors || errors.As(err, &more) {
			t.Fatalf("fields = %v, omitted %d", fields, more)
		}
	})
	t.Run("a long key is named by its prefix", func(t *testing.T) {
		for _, key := range []string{strings.Repeat("k", 60_000), strings.Repeat("é", 30_000)} {
			_, err := Decode[GPS](strings.NewReader(`{"`+key+`":1}`), testNow, testLim)
			f := ierr.FieldsOf(err)[0].Field
			if len(f) > 70 || !strings.HasSuffix(f, "…") || !utf8.ValidString(f) || !strings.HasPrefix(key, strings.TrimSuffix(f, "…")) {
				t.Errorf("field %q", f)
			}
		}
	})
	t.Run("the kind of a lone image fault is kept", func(t *testing.T) {
		var k KeyErrors
		tooLarge := &ierr.Error{Kind: ierr.TooLarge, Fields: []ierr.FieldError{{Field: "photo", Message: "too large"}}}
		if err := k.Join("op", tooLarge); err != tooLarge {
			t.Errorf("Join without key faults = %v", err)
		}
		k.Add("extra", "is not a known field")
		if err := k.Join("op", tooLarge); !ierr.Is(err, ierr.Invalid) || len(ierr.FieldsOf(err)) != 2 {
			t.Errorf("Join with a key fault = %v", err)
		}
		if err := k.Join("op", nil); !ierr.Is(err, ierr.Invalid) || len(ierr.FieldsOf(err)) != 1 {
			t.Errorf("Join of valid values = %v", err)
		}
	})
}

// TestJunkKeysCostNoMemoryPerKey: a body of 50,000 unknown keys
// allocates no more than one of the same size holding twenty (and spaces):
// past the keys named, a key costs nothing but its count.
func TestJunkKeysCostNoMemoryPerKey(t *testing.T) {
	many := junkKeys(50_000)
	few := junkKeys(MaxFieldErrors)
	few = few[:len(few)-1] + strings.Repeat(" ", len(many)-len(few)) + "}"
	allocs := func(body string) float64 {
		return testing.AllocsPerRun(2, func() {
			_, _ = Decode[Photo](strings.NewReader(body), testNow, testLim)
		})
	}
	if a, b := allocs(few), allocs(many); b > a+5 {
		t.Errorf("%v allocations for 20 junk keys, %v for 50,000 in a body of the same size", a, b)
	}
}
