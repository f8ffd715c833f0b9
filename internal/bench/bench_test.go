package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestReportRatiosAndTargets(t *testing.T) {
	var r Report
	r.Add(
		Row{Section: "api", Name: "minimal durable", Value: 1000, Unit: "req/s"},
		Row{Section: "api", Name: "this API", Value: 950, Unit: "req/s", Baseline: "minimal durable", MinRatio: 0.9},
		Row{Section: "api", Name: "sync publish", Value: 500, Unit: "req/s", Baseline: "minimal durable", MinRatio: 0.9},
		Row{Section: "e2e", Name: "p99", Value: 300, Unit: "ms", MaxValue: 250},
	)
	if x, ok := r.Ratio(r.Rows()[1]); !ok || x != 0.95 {
		t.Fatalf("ratio = %v, %v; want 0.95, true", x, ok)
	}
	missed := r.Missed()
	if len(missed) != 2 || !strings.Contains(missed[0], "sync publish") || !strings.Contains(missed[1], "p99") {
		t.Fatalf("missed = %q; want the sync publish ratio and the p99", missed)
	}
	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.95× minimal durable", "≥ 0.90×", "met", "MISSED", "≤ 250 ms", "1,000 req/s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Rows []struct {
			Name  string  `json:"name"`
			Ratio float64 `json:"ratio"`
		} `json:"rows"`
		Missed []string `json:"missed"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Rows) != 4 || doc.Rows[1].Ratio != 0.95 || len(doc.Missed) != 2 {
		t.Fatalf("JSON = %s", js.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}
