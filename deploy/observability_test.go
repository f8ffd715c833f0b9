package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The observability profile's files (SPEC §9), relative to this package.
const (
	promDir          = "prometheus"
	promConfig       = "prometheus/prometheus.yml"
	alertRules       = "prometheus/alerts.yml"
	alertmanagerConf = "alertmanager/alertmanager.yml"
	grafanaDatasrc   = "grafana/provisioning/datasources/datasources.yml"
	grafanaDashProv  = "grafana/provisioning/dashboards/dashboards.yml"
	grafanaDashDir   = "grafana/dashboards"
	runbooks         = "../docs/runbooks.md"
	// runbookBase is where each alert's runbook_url points, followed by
	// "#" and the alert's name in lower case (GitHub's heading anchor).
	runbookBase = "https://github.com/challenge-v3/challenge-v3/blob/main/docs/runbooks.md"
)

// The unit tests of alerts.yml: alerts_days_test.yml holds those of the
// alerts that look back days, evaluated hourly.
var alertTests = []string{"alerts_test.yml", "alerts_days_test.yml"}

// The services of the observability profile, by compose service name.
var observabilityServices = []string{"nats-exporter", "prometheus", "alertmanager", "grafana"}

// promtool is Debian's `prometheus` package (.ci/run installs it). Missing,
// the test fails: `make test` installs nothing itself.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: apt-get install --no-install-recommends prometheus (Debian's package; .ci/run installs it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestPromtool: the configuration and the rules pass promtool's checks, and
// the rules their unit tests.
func TestPromtool(t *testing.T) {
	t.Run("check config", func(t *testing.T) {
		promtool(t, promDir, "check", "config", filepath.Base(promConfig)) // and the rule files it names
	})
	t.Run("check rules", func(t *testing.T) {
		promtool(t, promDir, "check", "rules", filepath.Base(alertRules))
	})
	t.Run("test rules", func(t *testing.T) {
		promtool(t, promDir, append([]string{"test", "rules"}, alertTests...)...)
	})
}

// ruleFile models alerts.yml; unknown keys are refused.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func loadRules(t *testing.T) (alerts, records []rule) {
	t.Helper()
	var f ruleFile
	decodeStrict(t, alertRules, &f)
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r)
			} else {
				records = append(records, r)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s has no alerts", alertRules)
	}
	return alerts, records
}

// The alerts SPEC §9 asks for, each by the name that covers it.
var specAlerts = map[string]string{
	"API error rate":                "APIServerErrors",
	"API 503 rate":                  "APIIngestUnavailable",
	"publish latency":               "APIPublishLatencyHigh",
	"consumer lag":                  "TelemetryConsumerLagHigh",
	"oldest pending age":            "TelemetryOldestPendingAgeHigh",
	"DLQ growth":                    "TelemetryDLQGrowing",
	"DLQ discards":                  "TelemetryDLQDiscarding",
	"worker paused":                 "TelemetryWorkerPaused",
	"Rekognition errors":            "RekognitionErrors",
	"Rekognition throttling":        "RekognitionThrottled",
	"database errors (worker)":      "WorkerDatabaseErrors",
	"database unreachable (worker)": "WorkerDatabaseUnavailable",
	"database errors (API)":         "APIDatabaseUnavailable",
	"targets down":                  "TargetDown",
}

// TestAlertRules: each alert has a severity, a summary, a description and a
// runbook_url pointing at its entry in docs/runbooks.md, and each entry
// there belongs to an alert.
func TestAlertRules(t *testing.T) {
	alerts, _ := loadRules(t)
	anchors, entries := runbookAnchors(t)
	names := map[string]bool{}
	for _, a := range alerts {
		if names[a.Alert] {
			t.Errorf("alert %s is defined twice", a.Alert)
		}
		names[a.Alert] = true
		if s := a.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning (alertmanager.yml routes on it)", a.Alert, s)
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if a.Annotations[k] == "" {
				t.Errorf("%s has no %s annotation", a.Alert, k)
			}
		}
		want := runbookBase + "#" + strings.ToLower(a.Alert)
		if got := a.Annotations["runbook_url"]; got != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, got, want)
		}
		if !anchors[strings.ToLower(a.Alert)] {
			t.Errorf("%s: %s has no heading \"### %s\"", a.Alert, runbooks, a.Alert)
		}
	}
	for _, e := range entries {
		if !names[e] {
			t.Errorf("%s has an entry for %s, which alerts.yml does not define", runbooks, e)
		}
	}
	for what, name := range specAlerts {
		if !names[name] {
			t.Errorf("SPEC §9 asks for an alert on %s: %s is missing", what, name)
		}
	}
}

var (
	heading    = regexp.MustCompile(`^(#{1,6})\s+(.+?)\s*$`)
	alertEntry = regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
)

// runbookAnchors returns the anchors of every heading of docs/runbooks.md
// (as GitHub makes them) and the alert entries: level-3 headings that are a
// single CamelCase word.
func runbookAnchors(t *testing.T) (anchors map[string]bool, entries []string) {
	t.Helper()
	f, err := os.Open(runbooks)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	anchors = map[string]bool{}
	fenced := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		m := heading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		anchors[githubAnchor(m[2])] = true
		if m[1] == "###" && alertEntry.MatchString(m[2]) {
			entries = append(entries, m[2])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return anchors, entries
}

// githubAnchor is the id GitHub gives a heading: lower case, punctuation
// other than - and _ removed, spaces as dashes.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// unitTestFile models a promtool rule test file.
type unitTestFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string           `yaml:"eval_time"`
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTests []struct {
			Expr       string           `yaml:"expr"`
			EvalTime   string           `yaml:"eval_time"`
			ExpSamples []map[string]any `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestEveryAlertIsUnitTested: for every alert, a case where it fires and one
// where it stays silent; for every recording rule, an expression test.
func TestEveryAlertIsUnitTested(t *testing.T) {
	alerts, records := loadRules(t)
	fires, silent, recorded := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, name := range alertTests {
		var f unitTestFile
		decodeStrict(t, filepath.Join(promDir, name), &f)
		if !slices.Equal(f.RuleFiles, []string{filepath.Base(alertRules)}) {
			t.Errorf("%s tests %v, want [%s]", name, f.RuleFiles, filepath.Base(alertRules))
		}
		for _, tc := range f.Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
			for _, e := range tc.PromQLExprTests {
				recorded[strings.TrimSpace(e.Expr)] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a.Alert] {
			t.Errorf("%s: no unit test where it fires", a.Alert)
		}
		if !silent[a.Alert] {
			t.Errorf("%s: no unit test where it stays silent", a.Alert)
		}
	}
	for _, r := range records {
		if !recorded[r.Record] {
			t.Errorf("recording rule %s: no promql_expr_test of it", r.Record)
		}
	}
}

// TestAlertmanagerConfig: every route names a declared receiver, and the
// inhibition rules name alerts that exist.
func TestAlertmanagerConfig(t *testing.T) {
	type route struct {
		Receiver       string   `yaml:"receiver"`
		GroupBy        []string `yaml:"group_by"`
		GroupWait      string   `yaml:"group_wait"`
		GroupInterval  string   `yaml:"group_interval"`
		RepeatInterval string   `yaml:"repeat_interval"`
		Matchers       []string `yaml:"matchers"`
		Routes         []route  `yaml:"routes"`
	}
	var c struct {
		Route        route `yaml:"route"`
		InhibitRules []struct {
			SourceMatchers []string `yaml:"source_matchers"`
			TargetMatchers []string `yaml:"target_matchers"`
			Equal          []string `yaml:"equal"`
		} `yaml:"inhibit_rules"`
		Receivers []map[string]any `yaml:"receivers"`
	}
	decodeStrict(t, alertmanagerConf, &c)
	receivers := map[string]bool{}
	for _, r := range c.Receivers {
		name, _ := r["name"].(string)
		receivers[name] = true
	}
	var walk func(r route, top bool)
	walk = func(r route, top bool) {
		if (top || r.Receiver != "") && !receivers[r.Receiver] {
			t.Errorf("route receiver %q is not among the receivers %v", r.Receiver, receivers)
		}
		for _, s := range r.Routes {
			walk(s, false)
		}
	}
	walk(c.Route, true)

	alerts, _ := loadRules(t)
	names := map[string]bool{}
	for _, a := range alerts {
		names[a.Alert] = true
	}
	alertname := regexp.MustCompile(`^alertname\s*(=~|=)\s*"([^"]*)"$`)
	for _, ir := range c.InhibitRules {
		for _, m := range append(slices.Clone(ir.SourceMatchers), ir.TargetMatchers...) {
			mm := alertname.FindStringSubmatch(m)
			if mm == nil {
				continue
			}
			for n := range strings.SplitSeq(mm[2], "|") {
				if !names[n] {
					t.Errorf("%s: inhibit rule matcher %s names no alert of %s", alertmanagerConf, m, alertRules)
				}
			}
		}
	}
}
