package deploy

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// The Grafana dashboard and the compose profile that runs the observability
// stack; the alert rules are observability_test.go's.

// The dashboard's model, as far as the checks go.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(grafanaDashDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard under %s (%v)", grafanaDashDir, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

// grafanaDatasources reads the provisioned data sources: uid → url.
func grafanaDatasources(t *testing.T) map[string]string {
	t.Helper()
	var c struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			Editable  bool           `yaml:"editable"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	decodeStrict(t, grafanaDatasrc, &c)
	m := map[string]string{}
	for _, d := range c.Datasources {
		m[d.UID] = d.URL
	}
	return m
}

// TestDashboard: the provisioned dashboard parses, every panel queries the
// provisioned Prometheus, panels do not overlap, and every query is valid
// PromQL (promtool checks them as recording rules). That every metric they
// name is exported is e2e/dashboard_test.go's part, against the binaries.
func TestDashboard(t *testing.T) {
	sources := grafanaDatasources(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for file, d := range loadDashboards(t) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", file)
		}
		var all []panel
		for _, p := range d.Panels {
			all = append(all, p)
			all = append(all, p.Panels...)
		}
		ids := map[int]bool{}
		type cell struct{ x, y int }
		taken := map[cell]string{}
		for _, p := range all {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d used twice", file, p.ID)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: panel %q has gridPos %+v outside the 24-column grid", file, p.Title, g)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := taken[cell{x, y}]; ok {
						t.Errorf("%s: panels %q and %q overlap at %d,%d", file, other, p.Title, x, y)
					}
					taken[cell{x, y}] = p.Title
				}
			}
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || sources[p.Datasource.UID] == "" {
				t.Errorf("%s: panel %q does not use a provisioned data source: %+v", file, p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, q := range p.Targets {
				if q.Datasource != nil && sources[q.Datasource.UID] == "" {
					t.Errorf("%s: panel %q query %s uses data source %q, not provisioned", file, p.Title, q.RefID, q.Datasource.UID)
				}
				if strings.TrimSpace(q.Expr) == "" {
					t.Errorf("%s: panel %q query %s is empty", file, p.Title, q.RefID)
					continue
				}
				expr := grafanaVars.ReplaceAllString(q.Expr, "5m")
				fmt.Fprintf(&rules, "      - record: dashboard:panel_%d_%s\n        expr: %s\n", p.ID, q.RefID, strings.ReplaceAll(mustJSON(t, expr), "\n", " "))
			}
		}
	}
	tmp := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(tmp, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	promtool(t, ".", "check", "rules", tmp)
}

// grafanaVars are the interval variables Grafana substitutes in a query.
var grafanaVars = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)

// mustJSON quotes s for YAML (a JSON string is a YAML double-quoted string).
func mustJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// version is a pinned image tag: 0.15.0, v2.53.1, 11.1.0.
var version = regexp.MustCompile(`^v?\d+\.\d+\.\d+$`)

// TestComposeObservabilityProfile: the profile's services exist, only in
// that profile, with pinned images, mounts of files that exist, UIs on the
// host's loopback; Prometheus scrapes the services by the names and ports
// the compose file gives them, the exporter reads NATS's monitoring port,
// and Grafana finds its data sources and dashboards where they are mounted.
func TestComposeObservabilityProfile(t *testing.T) {
	c := loadCompose(t)
	for _, name := range observabilityServices {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("service %s is missing", name)
			continue
		}
		if !slices.Equal(s.Profiles, []string{"observability"}) {
			t.Errorf("%s: profiles %v, want [observability]", name, s.Profiles)
		}
		if _, tag, ok := strings.Cut(s.Image, ":"); !ok || !version.MatchString(tag) {
			t.Errorf("%s: image %q is not pinned to a version", name, s.Image)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q beyond the host's loopback", name, p)
			}
		}
		if name != "nats-exporter" && (s.Healthcheck == nil || len(s.Healthcheck.Test) == 0) {
			t.Errorf("%s has no healthcheck", name)
		}
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, not declared at the top level", name, src)
				}
			}
		}
	}
	// Every bind mount of every service names a file or directory that exists.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}

	// Prometheus: its configuration is the mounted deploy/prometheus, and
	// each scrape target is a compose service on the port it listens on.
	prom := c.Services["prometheus"]
	promInside := mountOf(t, prom, "./deploy/prometheus")
	if f := flagValue(prom.Command, "--config.file"); f != path.Join(promInside, "prometheus.yml") {
		t.Errorf("prometheus --config.file=%q, want %s/prometheus.yml", f, promInside)
	}
	listens := map[string]string{
		"api":           port(t, c.Services["api"].Environment["ADMIN_ADDR"]),
		"worker":        port(t, c.Services["worker"].Environment["ADMIN_ADDR"]),
		"nats-exporter": flagValue(c.Services["nats-exporter"].Command, "-port"),
		"alertmanager":  "9093",
		"prometheus":    "9090",
	}
	targets := scrapeTargets(t)
	for _, job := range []string{"api", "worker", "nats"} {
		if len(targets[job]) == 0 {
			t.Errorf("%s scrapes no job %q", promConfig, job)
		}
	}
	for job, hosts := range targets {
		for _, hp := range hosts {
			host, p, err := net.SplitHostPort(hp)
			if err != nil {
				t.Fatalf("%s job %s: target %q: %v", promConfig, job, hp, err)
			}
			if host == "localhost" {
				host = "prometheus"
			}
			if want, ok := listens[host]; !ok || p != want {
				t.Errorf("%s job %s scrapes %s: want a compose service on its port (%v)", promConfig, job, hp, listens)
			}
		}
	}

	// The exporter reads the monitoring port deploy/nats.conf opens.
	t.Setenv("NATS_JETSTREAM_KEY", "a-test-key-of-reasonable-length")
	opts, err := server.ProcessConfigFile(natsConf)
	if err != nil {
		t.Fatal(err)
	}
	exp := c.Services["nats-exporter"].Command
	if want := fmt.Sprintf("http://nats:%d", opts.HTTPPort); !slices.Contains(exp, want) {
		t.Errorf("nats-exporter command %v does not read %s (nats.conf http_port)", exp, want)
	}
	if !slices.Contains(exp, "-jsz=all") || !slices.Contains(exp, "-varz") {
		t.Errorf("nats-exporter command %v: want -varz and -jsz=all (streams and consumers)", exp)
	}

	// Alertmanager reads the mounted deploy/alertmanager.
	am := c.Services["alertmanager"]
	if f := flagValue(am.Command, "--config.file"); f != path.Join(mountOf(t, am, "./deploy/alertmanager"), "alertmanager.yml") {
		t.Errorf("alertmanager --config.file=%q is not the mounted alertmanager.yml", f)
	}

	// Grafana: provisioning where Grafana looks for it, dashboards where
	// the provider reads them, data sources at the services' ports.
	g := c.Services["grafana"]
	if got := mountOf(t, g, "./deploy/grafana/provisioning"); got != "/etc/grafana/provisioning" {
		t.Errorf("grafana mounts the provisioning at %s, want /etc/grafana/provisioning", got)
	}
	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeStrict(t, grafanaDashProv, &prov)
	dashInside := mountOf(t, g, "./deploy/grafana/dashboards")
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != dashInside {
		t.Errorf("%s: want one provider reading %s, where the dashboards are mounted", grafanaDashProv, dashInside)
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		rel, ok := strings.CutPrefix(home, dashInside+"/")
		if _, err := os.Stat(filepath.Join(grafanaDashDir, rel)); !ok || err != nil {
			t.Errorf("grafana home dashboard %s is not a mounted dashboard", home)
		}
	}
	for uid, u := range grafanaDatasources(t) {
		host, p, _ := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
		if want, ok := listens[host]; !ok || p != want {
			t.Errorf("grafana data source %s at %s: want a compose service on its port", uid, u)
		}
	}
}

// scrapeTargets reads the static targets of prometheus.yml, by job.
func scrapeTargets(t *testing.T) map[string][]string {
	t.Helper()
	var c struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	b, err := os.ReadFile(promConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil { // promtool checks the whole file
		t.Fatalf("%s: %v", promConfig, err)
	}
	m := map[string][]string{}
	for _, sc := range c.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			m[sc.JobName] = append(m[sc.JobName], s.Targets...)
		}
	}
	return m
}

// mountOf returns where service s mounts the host path src.
func mountOf(t *testing.T, s service, src string) string {
	t.Helper()
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == src {
			return parts[1]
		}
	}
	t.Errorf("%s is not mounted: %v", src, s.Volumes)
	return ""
}

// flagValue returns the value of --name=value (or -name=value) in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// port returns the port of a listen address such as ":8081".
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return p
}
