// Package bench is what `make bench` runs: the system's stages measured side
// by side with the baselines that bound them (a bare HTTP server, a minimal
// durable server, a straightforward implementation, a raw COPY), in one
// process on loopback, printed as one table of ratios.
//
// A figure alone says little on a shared 2-core machine; a ratio against a
// baseline measured in the same run, in alternated rounds, says how close a
// stage is to what the hardware allows. Every section adds rows to a Report;
// a row names the row it is compared with and, when the project has one, the
// target ratio.
//
// Sections register themselves in init functions of this package's files;
// cmd/bench runs them in registration order, or those named by -only.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
)

// Row is one figure of the table.
type Row struct {
	Section string  `json:"section"` // e.g. "api", "batch", "worker", "e2e", "photos", "memory"
	Name    string  `json:"name"`    // what was measured, unique within its section
	Value   float64 `json:"value"`   // the median over the rounds when there are several
	Unit    string  `json:"unit"`    // "req/s", "readings/s", "ms", "MiB", …
	// Baseline names the row of the same section Value is divided by to give
	// the ratio ("" for a baseline or a row without one).
	Baseline string `json:"baseline,omitempty"`
	// MinRatio is the target: Value/baseline must be at least this (0: none).
	MinRatio float64 `json:"min_ratio,omitempty"`
	// MaxValue is a target for rows where lower is better, such as a
	// latency: Value must be at most this (0: none).
	MaxValue float64 `json:"max_value,omitempty"`
	// Rounds holds each round's figure when the row is a median of several.
	Rounds []float64 `json:"rounds,omitempty"`
	Note   string    `json:"note,omitempty"`
}

// Report collects the rows of a run. It is safe for concurrent use.
type Report struct {
	mu   sync.Mutex
	rows []Row
}

// Add appends rows.
func (r *Report) Add(rows ...Row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, rows...)
}

// Rows returns a copy of the rows in the order they were added.
func (r *Report) Rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Row(nil), r.rows...)
}

// Ratio is row's Value over its baseline's, and false when it has none.
func (r *Report) Ratio(row Row) (float64, bool) {
	if row.Baseline == "" {
		return 0, false
	}
	for _, b := range r.Rows() {
		if b.Section == row.Section && b.Name == row.Baseline && b.Value != 0 {
			return row.Value / b.Value, true
		}
	}
	return 0, false
}

// Missed lists, one line each, the rows whose target was not met.
func (r *Report) Missed() []string {
	var out []string
	for _, row := range r.Rows() {
		if row.MinRatio > 0 {
			if ratio, ok := r.Ratio(row); !ok || ratio < row.MinRatio {
				out = append(out, fmt.Sprintf("%s / %s: ratio %.2f, target ≥ %.2f", row.Section, row.Name, ratio, row.MinRatio))
			}
		}
		if row.MaxValue > 0 && row.Value > row.MaxValue {
			out = append(out, fmt.Sprintf("%s / %s: %s %s, target ≤ %s", row.Section, row.Name, num(row.Value), row.Unit, num(row.MaxValue)))
		}
	}
	return out
}

// WriteTable prints the rows as an aligned table: section, what, value,
// ratio to its baseline, target and whether it is met.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "section\twhat\tvalue\tratio\ttarget\t\tnote")
	for _, row := range r.Rows() {
		ratio, target, met := "", "", ""
		if x, ok := r.Ratio(row); ok {
			ratio = fmt.Sprintf("%.2f× %s", x, row.Baseline)
			if row.MinRatio > 0 {
				target = fmt.Sprintf("≥ %.2f×", row.MinRatio)
				met = mark(x >= row.MinRatio)
			}
		}
		if row.MaxValue > 0 {
			target = "≤ " + num(row.MaxValue) + " " + row.Unit
			met = mark(row.Value <= row.MaxValue)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", row.Section, row.Name, num(row.Value), row.Unit, ratio, target, met, row.Note)
	}
	return tw.Flush()
}

// WriteJSON prints the rows, each with its ratio, as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	type jsonRow struct {
		Row
		Ratio float64 `json:"ratio,omitempty"`
	}
	rows := r.Rows()
	out := struct {
		Rows   []jsonRow `json:"rows"`
		Missed []string  `json:"missed"`
	}{Rows: make([]jsonRow, len(rows)), Missed: r.Missed()}
	for i, row := range rows {
		out.Rows[i].Row = row
		out.Rows[i].Ratio, _ = r.Ratio(row)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// num prints a figure with as many digits as it deserves.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return thousands(int64(math.Round(v)))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Median of xs (0 for none); xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Section is one part of the run.
type Section struct {
	Name  string // what -only selects, e.g. "api"
	About string // one line for -h
	Run   func(ctx context.Context, env *Env, rep *Report) error
}

var (
	sectionsMu sync.Mutex
	sections   []Section
)

// Register adds a section; files of this package call it from init.
func Register(s Section) {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	sections = append(sections, s)
}

// Sections returns the registered sections in a fixed order: the order
// of Order, then any other in name order.
func Sections() []Section {
	sectionsMu.Lock()
	defer sectionsMu.Unlock()
	out := append([]Section(nil), sections...)
	rank := func(name string) int {
		for i, n := range Order {
			if n == name {
				return i
			}
		}
		return len(Order)
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank(out[i].Name), rank(out[j].Name)
		if ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Order is the order sections run in: the first hop first.
var Order = []string{"api", "batch", "worker", "e2e", "photos", "memory"}
