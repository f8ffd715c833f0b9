package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/challenge-v3/challenge-v3/config"
)

// The compose file is also loaded by compose-go, the library `docker
// compose` itself is built on: it validates the file against the Compose
// Specification's JSON schema (an unknown or misspelt key, a wrong type,
// an invalid depends_on condition or health check duration fail), merges
// the YAML anchors, interpolates ${VAR} from an env file exactly as the CLI
// does, applies profiles and checks that every depends_on names a service
// that is enabled. No Docker engine is involved. The hand-modelled
// loadCompose stays for the checks that want the file as written
// (uninterpolated values, the x-shared-env block).

// profileSets are the ways the file is started: `docker compose up`,
// `docker compose --profile observability up`, and the same two on the
// 3-node NATS cluster (`-f docker-compose.yml -f
// docker-compose.nats-cluster.yml --profile nats-cluster`), with the
// services each runs.
var profileSets = []struct {
	files    []string // compose files given after docker-compose.yml
	profiles []string
	services []string
}{
	{nil, nil, []string{"api", "worker", "nats", "postgres"}},
	{nil, []string{"observability"}, []string{
		"api", "worker", "nats", "postgres",
		"nats-exporter", "prometheus", "alertmanager", "grafana",
	}},
	{[]string{clusterOverride}, []string{"nats-cluster"}, []string{"api", "worker", "nats-1", "nats-2", "nats-3", "postgres"}},
	{[]string{clusterOverride}, []string{"nats-cluster", "observability"}, []string{
		"api", "worker", "nats-1", "nats-2", "nats-3", "postgres",
		"nats-exporter", "prometheus", "alertmanager", "grafana",
	}},
}

// testDotenv writes a .env built from .env.example, its placeholders
// replaced by generated values of the right shape, as an operator
// following its comments would, and returns its path.
func testDotenv(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	generated := map[string]string{
		"API_KEYS":              "phone-fleet:" + randomHex(32) + ":ingest,frontend:" + randomHex(32) + ":read",
		"ENCRYPTION_KEYS":       "k1:" + randomBase64(32),
		"POSTGRES_PASSWORD":     randomHex(24),
		"API_DB_PASSWORD":       randomHex(24),
		"NATS_JETSTREAM_KEY":    randomBase64(32),
		"NATS_CLUSTER_PASSWORD": randomHex(32),
	}
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		k, _, ok := strings.Cut(line, "=")
		if strings.HasPrefix(strings.TrimSpace(line), "#") || !ok {
			continue
		}
		if v, ok := generated[strings.TrimSpace(k)]; ok {
			lines[i] = k + "=" + v
			delete(generated, strings.TrimSpace(k))
		}
	}
	for k := range generated {
		t.Fatalf("%s has no %s= line to fill in", envExample, k)
	}
	out := strings.Join(lines, "\n")
	if regexp.MustCompile(`(?m)^[^#].*CHANGE_ME`).MatchString(out) {
		t.Fatalf("%s has a placeholder this test does not know how to fill in:\n%s", envExample, out)
	}
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadProject loads the compose file with compose-go, from the repository
// root (as `docker compose` run there), with envFile as its .env and no
// variable from the test's own environment.
func loadProject(t *testing.T, envFile string, profiles ...string) (*types.Project, error) {
	t.Helper()
	return loadProjectFiles(t, envFile, nil, profiles...)
}

// loadProjectFiles is loadProject with more compose files after
// docker-compose.yml, as `docker compose -f docker-compose.yml -f …`.
func loadProjectFiles(t *testing.T, envFile string, files []string, profiles ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions(append([]string{composeFile}, files...),
		cli.WithWorkingDirectory(".."),
		cli.WithEnvFiles(envFile),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// mustLoadProject is loadProject for the default profile set with a valid
// .env, failing the test when the file does not load.
func mustLoadProject(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	return mustLoadProjectFiles(t, nil, profiles...)
}

// mustLoadProjectFiles is mustLoadProject with more compose files.
func mustLoadProjectFiles(t *testing.T, files []string, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadProjectFiles(t, testDotenv(t), files, profiles...)
	if err != nil {
		t.Fatalf("compose-go: %s %v with profiles %v: %v", composeFile, files, profiles, err)
	}
	return p
}

// TestComposeSpecLoads: each profile set loads under the Compose
// Specification and starts the services it should, each waiting on
// dependencies that are healthy by a health check of their own.
func TestComposeSpecLoads(t *testing.T) {
	for _, ps := range profileSets {
		name := "profiles=" + strings.Join(ps.profiles, ",")
		for _, f := range ps.files {
			name = filepath.Base(f) + "," + name
		}
		t.Run(name, func(t *testing.T) {
			p := mustLoadProjectFiles(t, ps.files, ps.profiles...)
			if p.Name != "challenge-v3" {
				t.Errorf("project name = %q, want challenge-v3", p.Name)
			}
			got := p.ServiceNames()
			want := slices.Clone(ps.services)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("services started = %v, want %v", got, want)
			}
			if err := p.CheckContainerNameUnicity(); err != nil {
				t.Error(err)
			}
			for name, s := range p.Services {
				if s.ContainerName == "" {
					t.Errorf("%s has no container_name", name)
				}
				for dep, d := range s.DependsOn {
					target, ok := p.Services[dep]
					if !ok {
						t.Errorf("%s depends on %s, not started with profiles %v", name, dep, ps.profiles)
						continue
					}
					switch d.Condition {
					case types.ServiceConditionHealthy:
						if hc := target.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
							t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
						}
					case types.ServiceConditionStarted:
					default:
						t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
					}
					if !d.Required {
						t.Errorf("%s: dependency on %s is optional", name, dep)
					}
				}
				if hc := s.HealthCheck; hc != nil {
					if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
						t.Errorf("%s health check lacks interval, timeout or retries: %+v", name, hc)
					} else if *hc.Timeout >= *hc.Interval {
						t.Errorf("%s health check timeout %v is not below its interval %v", name, *hc.Timeout, *hc.Interval)
					}
				}
				for _, v := range s.Volumes {
					switch v.Type {
					case types.VolumeTypeVolume:
						if _, ok := p.Volumes[v.Source]; !ok {
							t.Errorf("%s mounts volume %s, not declared", name, v.Source)
						}
					case types.VolumeTypeBind:
						if _, err := os.Stat(v.Source); err != nil {
							t.Errorf("%s bind-mounts %s: %v", name, v.Source, err)
						}
					}
				}
				if s.Build != nil {
					if _, err := os.Stat(filepath.Join(s.Build.Context, "Dockerfile")); err != nil {
						t.Errorf("%s builds from %s: %v", name, s.Build.Context, err)
					}
				}
			}
			// The system itself waits for NATS and PostgreSQL to be healthy.
			for _, name := range []string{"api", "worker"} {
				for dep, d := range p.Services[name].DependsOn {
					if d.Condition != types.ServiceConditionHealthy {
						t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, d.Condition)
					}
				}
			}
		})
	}
}

// TestComposeSpecRefusesEnvExampleAsIs: compose itself refuses .env.example
// copied as is (NATS_JETSTREAM_KEY is empty and required), before any
// container starts.
func TestComposeSpecRefusesEnvExampleAsIs(t *testing.T) {
	_, err := loadProject(t, envExample)
	if err == nil || !strings.Contains(err.Error(), "NATS_JETSTREAM_KEY") {
		t.Fatalf("compose-go with .env.example as is: err = %v, want a required NATS_JETSTREAM_KEY", err)
	}
}

// TestComposeSpecCatchesATypo guards the guard: the loader rejects a
// misspelt key in a copy of the compose file, so the validation the tests
// above rely on is on.
func TestComposeSpecCatchesATypo(t *testing.T) {
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "    healthcheck:", "    healthchek:", 1)
	if bad == string(b) {
		t.Fatal("no healthcheck: key to misspell")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "docker-compose.yml")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(dir), cli.WithEnvFiles(testDotenv(t)), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil || !strings.Contains(err.Error(), "healthchek") {
		t.Fatalf("compose-go with a misspelt healthcheck key: err = %v, want it named", err)
	}
}

// TestComposeSpecAdminPortsStayPrivate: on the loaded model, every port
// other than the API's public one is published on the host's loopback
// only, and NATS and PostgreSQL are not published at all.
func TestComposeSpecAdminPortsStayPrivate(t *testing.T) {
	p := mustLoadProject(t, "observability")
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if name == "nats" || name == "postgres" {
				t.Errorf("%s publishes port %d", name, port.Target)
			}
			if name == "api" && port.Target == 8080 {
				continue
			}
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q, want 127.0.0.1", name, port.Target, port.HostIP)
			}
		}
	}
}

// loadedEnv returns a service's interpolated environment as the container
// gets it.
func loadedEnv(t *testing.T, p *types.Project, service string) map[string]string {
	t.Helper()
	s, ok := p.Services[service]
	if !ok {
		t.Fatalf("no service %s", service)
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// TestComposeStopGraceCoversTheAPIShutdown: docker stops the API with
// SIGTERM and kills it after stop_grace_period, which must cover the
// drain delay and the shutdown budget the API is configured with, or
// in-flight requests are cut (docs/operations.md).
func TestComposeStopGraceCoversTheAPIShutdown(t *testing.T) {
	t.Run("defaults", func(t *testing.T) { stopGraceCoversShutdown(t, mustLoadProject(t)) })
	t.Run("a drain delay with its grace period", func(t *testing.T) {
		dotenv := dotenvWithLine(t, "SHUTDOWN_DELAY", "SHUTDOWN_DELAY=15s")
		dotenv = editDotenv(t, dotenv, "API_STOP_GRACE_PERIOD", "API_STOP_GRACE_PERIOD=45s")
		p, err := loadProject(t, dotenv)
		if err != nil {
			t.Fatal(err)
		}
		stopGraceCoversShutdown(t, p)
	})
}

// editDotenv replaces the line setting key in the .env file at path.
func editDotenv(t *testing.T, path, key, line string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasPrefix(l, key+"=") {
			lines[i], found = line, true
		}
	}
	if !found {
		t.Fatalf("%s has no %s= line", path, key)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func stopGraceCoversShutdown(t *testing.T, p *types.Project) {
	t.Helper()
	env := loadedEnv(t, p, "api")
	cfg, err := config.LoadAPI(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the api's compose environment: %v", err)
	}
	grace := p.Services["api"].StopGracePeriod
	if grace == nil {
		t.Fatal("the api has no stop_grace_period: docker's default (10 s) is shorter than SHUTDOWN_TIMEOUT")
	}
	if need := cfg.ShutdownDelay + cfg.ShutdownTimeout; time.Duration(*grace) <= need {
		t.Errorf("api stop_grace_period %s, want more than SHUTDOWN_DELAY (%s) + SHUTDOWN_TIMEOUT (%s)",
			time.Duration(*grace), cfg.ShutdownDelay, cfg.ShutdownTimeout)
	}
}
