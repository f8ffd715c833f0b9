package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// The observability profile's queries (deploy/), relative to this package.
var (
	dashboardGlob = filepath.Join("..", "deploy", "grafana", "dashboards", "*.json")
	alertRules    = filepath.Join("..", "deploy", "prometheus", "alerts.yml")
)

// Metrics the queries may name that the binaries do not export. The NATS
// exporter's come from natsio/prometheus-nats-exporter 0.15.0 run with
// -jsz=all (docker-compose.yml), collector/jsz.go: JetStream's state,
// which no binary of ours exports. Each lists its label names (Prometheus
// adds job and instance to every series).
var (
	jszServerLabels = []string{"server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader"}
	jszStreamLabels = append(slices.Clone(jszServerLabels), "account", "account_id", "stream_name", "stream_leader", "is_stream_leader")
	notOurs         = map[string][]string{
		// Prometheus's own, one per scrape target.
		"up": nil,
		// prometheus-nats-exporter, from /jsz.
		"jetstream_server_total_message_bytes": jszServerLabels,
		"jetstream_server_max_storage":         jszServerLabels,
		"jetstream_stream_total_messages":      jszStreamLabels,
		"jetstream_stream_first_seq":           jszStreamLabels,
	}
	targetLabels = []string{"job", "instance"}
)

// TestDashboardAndAlertsQueryExportedMetrics runs the api and the worker,
// causes the events after which their remaining series appear (a reading of
// each type, a photo, a 429), scrapes both /metrics and holds every PromQL
// expression of the provisioned Grafana dashboards and of the alert rules
// to what they export: each metric it names exists (a histogram's _bucket,
// _sum and _count included), or is a recording rule of alerts.yml, or one
// of the few from Prometheus and the NATS exporter listed above; each label
// a selector matches on exists on that metric, with a value the binaries
// can export where the values are bounded.
func TestDashboardAndAlertsQueryExportedMetrics(t *testing.T) {
	exprs, recorded := observabilityQueries(t)

	apiAdmin, workerAdmin := freeAddr(t), freeAddr(t)
	s := newStack(t, map[string]string{
		"ADMIN_ADDR":       apiAdmin,
		"RATE_LIMIT_RPS":   "1",
		"RATE_LIMIT_BURST": "20",
	})
	s.env["ADMIN_ADDR"] = workerAdmin // read by startWorker only
	s.startWorker()
	s.accept("/telemetry/gps", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "latitude": 1, "longitude": 2})
	s.accept("/telemetry/gyroscope", map[string]any{"device_id": "truck-1", "timestamp": 1764324000, "x": 0.1, "y": 0.2, "z": 0.3})
	if status, out := s.postMultipart("cam-1", "1764324000", readFixture(t, "grace_hopper.jpg")); status != http.StatusAccepted {
		t.Fatalf("photo: %d %v", status, out)
	}
	s.waitCount(1, `SELECT count(*) FROM gps`)
	s.waitCount(1, `SELECT count(*) FROM gyroscope`)
	s.waitCount(1, `SELECT count(*) FROM photo`)
	s.expectRateLimited()

	exported := map[string]*dto.MetricFamily{}
	for _, addr := range []string{apiAdmin, workerAdmin} {
		for name, mf := range scrape(t, addr) {
			exported[name] = mf
		}
	}
	ref := readMetricsReference(t, filepath.Join("..", "README.md"))

	for _, e := range exprs {
		refs, err := promqlSelectors(e.expr)
		if err != nil {
			t.Errorf("%s: %v: %s", e.where, err, e.expr)
			continue
		}
		if len(refs) == 0 {
			t.Errorf("%s names no metric: %s", e.where, e.expr)
		}
		for _, r := range refs {
			checkSelector(t, e.where, r, exported, ref, recorded)
		}
	}
}

// query is one PromQL expression and where it comes from.
type query struct{ where, expr string }

// observabilityQueries returns every expression of the dashboards (Grafana's
// interval variables replaced) and of alerts.yml, and the recording rules
// alerts.yml defines.
func observabilityQueries(t *testing.T) ([]query, map[string]bool) {
	t.Helper()
	var out []query
	files, err := filepath.Glob(dashboardGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard at %s (%v)", dashboardGlob, err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var walk func(file string, raw []json.RawMessage)
	walk = func(file string, raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for _, q := range p.Targets {
				out = append(out, query{
					where: fmt.Sprintf("%s panel %q query %s", filepath.Base(file), p.Title, q.RefID),
					expr:  grafanaVars.ReplaceAllString(q.Expr, "5m"),
				})
			}
			walk(file, p.Panels)
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, d.Panels)
	}

	b, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	recorded := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if r.Record != "" {
				recorded[r.Record] = true
				name = r.Record
			}
			out = append(out, query{where: "alerts.yml " + name, expr: r.Expr})
		}
	}
	return out, recorded
}

// grafanaVars are the interval variables Grafana substitutes in a query.
var grafanaVars = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)

// checkSelector holds one selector to the exported metrics.
func checkSelector(t *testing.T, where string, r selector, exported map[string]*dto.MetricFamily, ref map[string]documentedMetric, recorded map[string]bool) {
	t.Helper()
	if recorded[r.name] {
		return
	}
	if labels, ok := notOurs[r.name]; ok {
		for _, m := range r.matchers {
			if labels != nil && !slices.Contains(labels, m.label) && !slices.Contains(targetLabels, m.label) {
				t.Errorf("%s: %s has no label %s", where, r.name, m.label)
			}
		}
		return
	}
	name, mf := r.name, exported[r.name]
	if mf == nil {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(r.name, suffix); ok && exported[base].GetType() == dto.MetricType_HISTOGRAM {
				name, mf = base, exported[base]
			}
		}
	}
	if mf == nil {
		t.Errorf("%s queries %s, which neither binary exports", where, r.name)
		return
	}
	seen := map[string]map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if seen[l.GetName()] == nil {
				seen[l.GetName()] = map[string]bool{}
			}
			seen[l.GetName()][l.GetValue()] = true
		}
	}
	if strings.HasSuffix(r.name, "_bucket") {
		seen["le"] = map[string]bool{}
	}
	for _, m := range r.matchers {
		values, ok := seen[m.label]
		if !ok && !slices.Contains(targetLabels, m.label) {
			t.Errorf("%s: %s has no label %s (it has %v)", where, name, m.label, keys(seen))
			continue
		}
		alternatives, literal := m.literals()
		if !ok || !literal {
			continue
		}
		// Where the metrics reference lists a label's values (held to the
		// binaries by TestMetricsReferenceMatchesTheBinaries), the value
		// must be one of them; where it has the label but lists no values
		// (a route, a status), anything goes; a label it does not document
		// must take a value exported here.
		listed, documented := ref[name].labels[m.label]
		if documented && listed == nil {
			continue
		}
		for _, v := range alternatives {
			if (documented && !slices.Contains(listed, v)) || (!documented && !values[v]) {
				t.Errorf("%s: %s{%s%s%q}: %s takes no value %q", where, name, m.label, m.op, m.value, m.label, v)
			}
		}
	}
}

func keys(m map[string]map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// selector is a metric name with its label matchers, as a query names it.
type selector struct {
	name     string
	matchers []labelMatcher
}

type labelMatcher struct{ label, op, value string }

// plainAlternation is a regular expression that only lists values.
var plainAlternation = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)

// literals returns the values an equality matcher, or a regular expression
// that is only an alternation of words, names.
func (m labelMatcher) literals() ([]string, bool) {
	switch m.op {
	case "=", "!=":
		return []string{m.value}, true
	case "=~", "!~":
		if plainAlternation.MatchString(m.value) {
			return strings.Split(m.value, "|"), true
		}
	}
	return nil, false
}

// PromQL words that are not metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "bool": true, "offset": true,
	"inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
	"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
	"quantile": true,
}

// promqlSelectors finds the vector selectors of a PromQL expression: a name
// not followed by "(" that is not a keyword, with its {…} matchers. Strings,
// [ranges] and the label lists of by/without/on/ignoring/group_x are
// skipped; promtool checks the syntax (deploy/observability_test.go).
func promqlSelectors(expr string) ([]selector, error) {
	var out []selector
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	closing := func(i int, end byte) (int, error) { // index after the matching end
		for j := i + 1; j < len(expr); j++ {
			switch expr[j] {
			case end:
				return j + 1, nil
			case '"', '\'', '`':
				k := strings.IndexByte(expr[j+1:], expr[j])
				if k < 0 {
					return 0, fmt.Errorf("unterminated string at %d", j)
				}
				j += k + 1
			}
		}
		return 0, fmt.Errorf("no %q after %d", end, i)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			k := strings.IndexByte(expr[i+1:], c)
			if k < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i += k + 2
		case c == '[':
			j, err := closing(i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(expr) && isPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := skipSpace(j)
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				if k < len(expr) && expr[k] == '(' {
					end, err := closing(k, ')')
					if err != nil {
						return nil, err
					}
					k = end
				}
				i = k
			case promqlKeywords[strings.ToLower(word)] || (k < len(expr) && expr[k] == '('):
				i = j // a keyword, an aggregation or a function
			default:
				sel := selector{name: word}
				i = j
				if k < len(expr) && expr[k] == '{' {
					end, err := closing(k, '}')
					if err != nil {
						return nil, err
					}
					ms, err := parseMatchers(expr[k+1 : end-1])
					if err != nil {
						return nil, fmt.Errorf("%s: %w", word, err)
					}
					sel.matchers = ms
					i = end
				}
				out = append(out, sel)
			}
		case c == '{':
			return nil, fmt.Errorf("a selector without a metric name at %d", i)
		default:
			i++
		}
	}
	return out, nil
}

var matcherRE = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)`)

// parseMatchers reads `label op "value", …`.
func parseMatchers(s string) ([]labelMatcher, error) {
	var out []labelMatcher
	for rest := strings.TrimSpace(s); rest != ""; rest = strings.TrimSpace(rest) {
		m := matcherRE.FindStringSubmatchIndex(rest)
		if m == nil {
			return nil, fmt.Errorf("cannot read the matchers {%s}", s)
		}
		out = append(out, labelMatcher{label: rest[m[2]:m[3]], op: rest[m[4]:m[5]], value: rest[m[6]:m[7]]})
		rest = rest[m[1]:]
	}
	return out, nil
}

// TestPromQLSelectors: the extraction the test above relies on.
func TestPromQLSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (type, le) (rate(api_publish_duration_seconds_bucket{outcome="ok"}[5m]))`, []string{`api_publish_duration_seconds_bucket{outcome="ok"}`}},
		{`max by (type) (a + b) / sum by (type) (rate(c{outcome=~"x|y", z!="by (q)"}[5m]))`, []string{`a`, `b`, `c{outcome=~"x|y",z!="by (q)"}`}},
		{`x > 0 and on (stream_name) changes(y[7d]) == 0 unless ignoring (a) z offset 5m`, []string{`x`, `y`, `z`}},
		{`time() - min_over_time(timestamp(f{s="T"})[7d:1h]) > 6.5 * 86400`, []string{`f{s="T"}`}},
		{`telemetry:oldest_pending_age_seconds:estimate > 600`, []string{`telemetry:oldest_pending_age_seconds:estimate`}},
		{`histogram_quantile(0.99, sum without (instance) (rate(h_bucket[5m]))) > 1e3`, []string{`h_bucket`}},
	} {
		refs, err := promqlSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, r := range refs {
			s := r.name
			if len(r.matchers) > 0 {
				var ms []string
				for _, m := range r.matchers {
					ms = append(ms, m.label+m.op+`"`+m.value+`"`)
				}
				s += "{" + strings.Join(ms, ",") + "}"
			}
			got = append(got, s)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: selectors %q, want %q", tc.expr, got, tc.want)
		}
	}
}
