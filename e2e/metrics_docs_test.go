package e2e

import (
	"bufio"
	"context"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/challenge-v3/challenge-v3/internal/openapitest"
)

// The metrics reference in the README is what operators build dashboards
// and alerts on. This test runs the api and the worker, causes the events
// after which the remaining series appear (a reading of each type, a photo
// without a face, a publish that fails, a 429), scrapes both /metrics and
// holds the table to what they export:
//   - every metric of ours (not go_*, process_*, promhttp_*) is in the table,
//     under the binary that exports it, with its type and label names;
//   - every metric in the table is exported by its binary;
//   - a label whose values the table lists takes exactly those values: none
//     is exported that the table lacks, and each listed one is exported
//     (series created at start-up, or caused here);
//   - every metric name the docs mention anywhere exists, and the label
//     values their PromQL selectors use are listed ones.
func TestMetricsReferenceMatchesTheBinaries(t *testing.T) {
	ref := readMetricsReference(t, filepath.Join("..", "README.md"))
	apiAdmin, workerAdmin := freeAddr(t), freeAddr(t)
	s := newStack(t, map[string]string{
		"ADMIN_ADDR":       apiAdmin,
		"RATE_LIMIT_RPS":   "1",
		"RATE_LIMIT_BURST": "20",
		"PUBLISH_TIMEOUT":  "1s",
	})
	s.env["ADMIN_ADDR"] = workerAdmin // read by startWorker only
	s.startWorker()

	// One reading of each type, and a photo without a face.
	s.accept("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "latitude": 1, "longitude": 2})
	s.accept("/telemetry/gyroscope", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "x": 0.1, "y": 0.2, "z": 0.3})
	faceless := readFixture(t, "coffee.png")
	s.fake.SetNoFace(faceless)
	for _, img := range [][]byte{readFixture(t, "grace_hopper.jpg"), faceless} {
		if status, out := s.postMultipart("cam-1", "1764324000", img); status != http.StatusAccepted {
			t.Fatalf("photo: %d %v", status, out)
		}
	}
	s.waitCount(1, `SELECT count(*) FROM gps`)
	s.waitCount(1, `SELECT count(*) FROM gyroscope`)
	s.waitCount(2, `SELECT count(*) FROM photo`)
	worker := scrape(t, workerAdmin)

	// A publish JetStream never acknowledges: the API answers 503.
	s.nats.Stop()
	if status, out := s.post("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": 1764324001, "latitude": 1, "longitude": 2}, nil); status != http.StatusServiceUnavailable {
		t.Fatalf("POST with NATS down = %d %v, want 503", status, out)
	}
	s.nats.Restart(t)

	// Past the burst: 429.
	s.expectRateLimited()
	api := scrape(t, apiAdmin)

	exported := map[string]map[string]*dto.MetricFamily{"api": api, "worker": worker}
	for binary, families := range exported {
		for name, mf := range families {
			if !ours(name) {
				continue
			}
			d, ok := ref[name]
			if !ok {
				t.Errorf("%s exports %s (%s), which the metrics reference does not list", binary, name, mf.GetHelp())
				continue
			}
			if !slices.Contains(d.binaries, binary) {
				t.Errorf("%s is exported by %s; the reference says %v", name, binary, d.binaries)
			}
			if got := typeName(mf.GetType()); got != d.typ {
				t.Errorf("%s is a %s; the reference says %s", name, got, d.typ)
			}
			checkLabels(t, name, d, mf)
		}
	}
	for name, d := range ref {
		for _, binary := range d.binaries {
			if exported[binary] == nil {
				t.Errorf("%s: unknown binary %q in the reference", name, binary)
			} else if _, ok := exported[binary][name]; !ok {
				t.Errorf("%s is in the reference, but %s does not export it", name, binary)
			}
		}
	}

	checkMentions(t, ref)
}

// documentedMetric is one row of the metrics reference.
type documentedMetric struct {
	binaries []string
	typ      string
	// labels maps each label name to its listed values; nil for a label
	// whose values the table does not list (a route, a status).
	labels map[string][]string
}

var (
	backticked  = regexp.MustCompile("`([^`]*)`")
	listedLabel = regexp.MustCompile("^`([a-zA-Z_][a-zA-Z0-9_]*)`\\s*:(.*)$")
)

// readMetricsReference parses the table under "## Metrics reference" in
// path. Its labels column is "; "-separated: `name` (values not listed; a
// comma-separated list of such names is fine) or `name`: `v1`, `v2`, …
func readMetricsReference(t *testing.T, path string) map[string]documentedMetric {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ref := map[string]documentedMetric{}
	section, inTable := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section = line == "## Metrics reference"
			continue
		case !section:
			continue
		case !strings.HasPrefix(line, "|"):
			if inTable {
				section = false
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("%s: metrics reference row with %d cells, want 5: %s", path, len(cells), line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		m := backticked.FindStringSubmatch(cells[0])
		if m == nil {
			continue // the header and its separator
		}
		d := documentedMetric{typ: cells[2], labels: map[string][]string{}}
		for b := range strings.SplitSeq(cells[1], ",") {
			d.binaries = append(d.binaries, strings.TrimSpace(b))
		}
		for item := range strings.SplitSeq(cells[3], ";") {
			item = strings.TrimSpace(item)
			if lm := listedLabel.FindStringSubmatch(item); lm != nil {
				values := []string{}
				for _, v := range backticked.FindAllStringSubmatch(lm[2], -1) {
					values = append(values, v[1])
				}
				if len(values) == 0 {
					t.Fatalf("%s: %s: label %s lists no values", path, m[1], lm[1])
				}
				d.labels[lm[1]] = values
				continue
			}
			for _, name := range backticked.FindAllStringSubmatch(item, -1) {
				d.labels[name[1]] = nil
			}
		}
		if _, dup := ref[m[1]]; dup {
			t.Fatalf("%s: %s listed twice", path, m[1])
		}
		ref[m[1]] = d
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ref) == 0 {
		t.Fatalf("%s: no table under \"## Metrics reference\"", path)
	}
	return ref
}

// checkLabels compares a family's label names and values with its row.
func checkLabels(t *testing.T, name string, d documentedMetric, mf *dto.MetricFamily) {
	t.Helper()
	seen := map[string]map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if seen[l.GetName()] == nil {
				seen[l.GetName()] = map[string]bool{}
			}
			seen[l.GetName()][l.GetValue()] = true
		}
	}
	if got, want := slices.Sorted(maps.Keys(seen)), slices.Sorted(maps.Keys(d.labels)); !slices.Equal(got, want) {
		t.Errorf("%s has the labels %v; the reference says %v", name, got, want)
		return
	}
	for label, listed := range d.labels {
		if listed == nil {
			continue
		}
		for v := range seen[label] {
			if !slices.Contains(listed, v) {
				t.Errorf("%s{%s=%q} is exported; the reference lists %v", name, label, v, listed)
			}
		}
		for _, v := range listed {
			if !seen[label][v] {
				t.Errorf("%s{%s=%q} is listed in the reference but was not exported: create the series at start-up, or make this test cause it", name, label, v)
			}
		}
	}
}

var (
	// metricName finds our metric names in prose and PromQL; a name
	// followed by a file extension (rekognition_calls.go) is a file.
	metricName = regexp.MustCompile(`\b(?:api|worker|rekognition|photo_analysis)_[a-z0-9_]*[a-z0-9]\b(\{[^}]*\})?(\.[a-z])?`)
	matcher    = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:(=~|!~|!=|=)\s*"([^"]*)")?\s*$`)
)

// checkMentions holds every metric the README and docs/*.md mention to the
// reference: the name exists (a histogram's _bucket, _sum and _count
// included), and a selector's labels are its labels, with listed values.
func checkMentions(t *testing.T, ref map[string]documentedMetric) {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range append([]string{filepath.Join("..", "README.md")}, docs...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllStringSubmatch(string(b), -1) {
			if m[2] != "" {
				continue
			}
			name := strings.TrimSuffix(m[0], m[1])
			d, ok := ref[name]
			if !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, cut := strings.CutSuffix(name, suffix); cut && ref[base].typ == "histogram" {
						d, ok = ref[base], true
					}
				}
			}
			if !ok {
				t.Errorf("%s mentions %s, which is not in the metrics reference", path, name)
				continue
			}
			if m[1] == "" {
				continue
			}
			for item := range strings.SplitSeq(strings.Trim(m[1], "{}"), ",") {
				mm := matcher.FindStringSubmatch(item)
				if mm == nil {
					t.Errorf("%s: cannot read the selector %s", path, m[0])
					break
				}
				listed, known := d.labels[mm[1]]
				switch {
				case !known:
					t.Errorf("%s: %s has no label %s", path, m[0], mm[1])
				case mm[2] == "" || listed == nil:
				default:
					for v := range strings.SplitSeq(mm[3], "|") {
						if !slices.Contains(listed, v) {
							t.Errorf("%s: %s uses %s=%q; the reference lists %v", path, m[0], mm[1], v, listed)
						}
					}
				}
			}
		}
	}
}

// ours reports whether a metric is the system's own, not a library's.
func ours(name string) bool {
	for _, p := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

func typeName(t dto.MetricType) string {
	return strings.ToLower(t.String())
}

// scrape fetches and parses the Prometheus text exposition at addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := openapitest.Client(t).Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	return families
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// expectRateLimited posts past the burst of 20 (RATE_LIMIT_BURST) until the
// API answers 429, failing the test if 100 requests never get one.
func (s *stack) expectRateLimited() {
	s.t.Helper()
	for range 100 {
		if status, _ := s.post("/telemetry/gps", "{}", map[string]string{"X-API-Key": ""}); status == http.StatusTooManyRequests {
			return
		}
	}
	s.t.Fatal("no 429 after 100 requests with a burst of 20")
}
