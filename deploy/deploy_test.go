package deploy

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// The files under test, relative to this package's directory.
const (
	composeFile    = "../docker-compose.yml"
	dockerfile     = "../Dockerfile"
	natsConf       = "nats.conf"
	envExample     = "../.env.example"
	goMod          = "../go.mod"
	natsConfInside = "/etc/nats/nats.conf"
)

// composeFileT models the keys the compose file uses; decoding rejects any
// other, so a misspelt key (silently ignored by some compose versions)
// fails here.
type composeFileT struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
	// SharedEnv holds the settings the API and the worker must agree on.
	SharedEnv map[string]string `yaml:"x-shared-env"`
}

type service struct {
	Image         string            `yaml:"image"`
	ContainerName string            `yaml:"container_name"`
	Command       []string          `yaml:"command"`
	Environment   map[string]string `yaml:"environment"`
	Ports         []string          `yaml:"ports"`
	Volumes       []string          `yaml:"volumes"`
	Build         *struct {
		Context string `yaml:"context"`
		Target  string `yaml:"target"`
	} `yaml:"build"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
	Restart         string `yaml:"restart"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	// Profiles: the observability profile's services, checked by
	// observability_test.go; the others start with a plain `up`.
	Profiles  []string `yaml:"profiles"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func loadCompose(t *testing.T) composeFileT {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFileT
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a typo'd key is a silent no-op for compose: catch it here
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return c
}

// byContainer indexes the services by container name, the seed's names.
func byContainer(t *testing.T, c composeFileT) map[string]service {
	t.Helper()
	m := map[string]service{}
	for name, s := range c.Services {
		if s.ContainerName == "" {
			t.Errorf("service %s has no container_name", name)
		}
		m[s.ContainerName] = s
	}
	return m
}

// The variables each binary's configuration needs in production (SPEC §7).
var requiredEnv = map[string][]string{
	"challenge_app_api": {
		"HTTP_ADDR", "ADMIN_ADDR", "NATS_URL", "API_KEYS",
		"RATE_LIMIT_RPS", "RATE_LIMIT_BURST", "TRUSTED_PROXIES", "LOG_LEVEL",
		"DATABASE_URL", "CORS_ALLOWED_ORIGINS", "ENCRYPTION_KEYS", "ENCRYPTION_KEY",
	},
	"challenge_app_worker": {
		"ADMIN_ADDR", "NATS_URL", "DATABASE_URL", "ENCRYPTION_KEYS", "ENCRYPTION_KEY",
		"REKOGNITION_COLLECTION_ID", "FACE_MATCH_THRESHOLD", "AWS_REGION",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LOG_LEVEL",
	},
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	svc := byContainer(t, c)

	want := []string{"challenge_app_api", "challenge_app_worker", "challenge_nats", "challenge_db_postgres"}
	var got []string
	for name, s := range svc {
		if len(s.Profiles) == 0 {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("container names without a profile = %v, want %v", got, want)
	}

	// What is tested is what is deployed: NATS 2.10 and PostgreSQL 15.
	if img := svc["challenge_nats"].Image; img != "nats:2.10-alpine" {
		t.Errorf("challenge_nats image = %q, want nats:2.10-alpine", img)
	}
	if img := svc["challenge_db_postgres"].Image; img != "postgres:15" {
		t.Errorf("challenge_db_postgres image = %q, want postgres:15", img)
	}

	nats := svc["challenge_nats"]
	cmd := strings.Join(nats.Command, " ")
	if !strings.Contains(cmd, "-js") || !strings.Contains(cmd, "-c "+natsConfInside) {
		t.Errorf("challenge_nats command %q: want -js and -c %s", cmd, natsConfInside)
	}
	if !slices.ContainsFunc(nats.Volumes, func(v string) bool {
		return strings.HasPrefix(v, "./deploy/nats.conf:"+natsConfInside)
	}) {
		t.Errorf("challenge_nats does not mount ./deploy/nats.conf at %s: %v", natsConfInside, nats.Volumes)
	}

	for name, s := range svc {
		if len(s.Profiles) == 0 && (s.Healthcheck == nil || len(s.Healthcheck.Test) == 0) {
			t.Errorf("%s has no healthcheck", name)
		}
	}

	// Data lives in named volumes declared at the top level.
	for _, name := range []string{"challenge_nats", "challenge_db_postgres"} {
		named := false
		for _, v := range svc[name].Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, ok := c.Volumes[src]; ok {
				named = true
			}
		}
		if !named {
			t.Errorf("%s keeps its data in no named volume: %v", name, svc[name].Volumes)
		}
	}

	for _, name := range []string{"challenge_app_api", "challenge_app_worker"} {
		for dep, cond := range svc[name].DependsOn {
			if cond.Condition != "service_healthy" {
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, cond.Condition)
			}
		}
	}
}

func TestComposeAppEnvironment(t *testing.T) {
	svc := byContainer(t, loadCompose(t))
	for name, vars := range requiredEnv {
		env := svc[name].Environment
		for _, v := range vars {
			if _, ok := env[v]; !ok {
				t.Errorf("%s: environment lacks %s", name, v)
			}
		}
	}
}

// TestComposeAdminPortsStayPrivate: metrics and health are for operators;
// a published admin port must be bound to the host's loopback, and NATS and
// PostgreSQL are not published at all.
func TestComposeAdminPortsStayPrivate(t *testing.T) {
	svc := byContainer(t, loadCompose(t))
	admin := map[string]string{"challenge_app_api": "8081", "challenge_app_worker": "8082"}
	for name, s := range svc {
		for _, p := range s.Ports {
			inside := p[strings.LastIndex(p, ":")+1:]
			isAdmin := inside == admin[name]
			if (isAdmin || name == "challenge_nats" || name == "challenge_db_postgres") && !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q beyond the host's loopback", name, p)
			}
		}
		if port := admin[name]; port != "" {
			if got := s.Environment["ADMIN_ADDR"]; !strings.HasSuffix(got, ":"+port) {
				t.Errorf("%s ADMIN_ADDR = %q, want port %s", name, got, port)
			}
			if hc := strings.Join(s.Healthcheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+port+"/") {
				t.Errorf("%s healthcheck %q does not probe the admin port %s", name, hc, port)
			}
		}
	}
}

// TestComposeEnvironmentLoads feeds each binary's environment, as
// compose-go interpolates it from a .env made of .env.example with its
// placeholders filled in, to the binaries' own configuration loaders.
func TestComposeEnvironmentLoads(t *testing.T) {
	p := mustLoadProject(t)
	for name, vars := range map[string][]string{"api": requiredEnv["challenge_app_api"], "worker": requiredEnv["challenge_app_worker"]} {
		env := loadedEnv(t, p, name)
		for _, v := range vars {
			if _, ok := env[v]; !ok {
				t.Errorf("%s: environment lacks %s", name, v)
			}
		}
	}
	getenv := func(service string) config.Getenv {
		env := loadedEnv(t, p, service)
		return func(k string) string { return env[k] }
	}
	if _, err := config.LoadAPI(getenv("api")); err != nil {
		t.Errorf("challenge_app_api environment: %v", err)
	}
	if _, err := config.LoadWorker(getenv("worker")); err != nil {
		t.Errorf("challenge_app_worker environment: %v", err)
	}
}

// TestEnvExampleSecretsAreRefused: .env.example copied to .env as is does
// not run. Its secrets are placeholders that the binaries' own loaders
// refuse at start-up, naming each variable, and the JetStream key is empty,
// which compose refuses.
func TestEnvExampleSecretsAreRefused(t *testing.T) {
	svc := byContainer(t, loadCompose(t))
	dotenv := readDotenv(t, envExample)

	_, apiErr := config.LoadAPI(composeEnv(t, svc["challenge_app_api"], dotenv))
	_, workerErr := config.LoadWorker(composeEnv(t, svc["challenge_app_worker"], dotenv))
	for _, c := range []struct {
		binary string
		err    error
		want   []string
	}{
		{"api", apiErr, []string{
			"API_KEYS: entry 1 (phone-fleet) still has the example secret",
			"API_KEYS: entry 2 (frontend) still has the example secret",
			"ENCRYPTION_KEYS: still has the example value",
			"DATABASE_URL: the password still has the example value",
		}},
		{"worker", workerErr, []string{
			"ENCRYPTION_KEYS: still has the example value",
			"DATABASE_URL: the password still has the example value",
		}},
	} {
		if c.err == nil {
			t.Errorf("%s starts with .env.example as is", c.binary)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(c.err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", c.binary, w, c.err)
			}
		}
	}

	jsKey, ok := svc["challenge_nats"].Environment["NATS_JETSTREAM_KEY"]
	if !ok {
		t.Fatal("challenge_nats: no NATS_JETSTREAM_KEY")
	}
	if _, err := interpolate(jsKey, dotenv); err == nil || !strings.Contains(err.Error(), "NATS_JETSTREAM_KEY") {
		t.Errorf("challenge_nats NATS_JETSTREAM_KEY with .env.example as is: err = %v, want compose to refuse it", err)
	}
}

// composeEnv interpolates a service's environment with dotenv's values, as
// docker compose would, into the Getenv the binaries' loaders take.
func composeEnv(t *testing.T, s service, dotenv map[string]string) config.Getenv {
	t.Helper()
	env := map[string]string{}
	for k, v := range s.Environment {
		val, err := interpolate(v, dotenv)
		if err != nil {
			t.Fatalf("%s %s: %v", s.ContainerName, k, err)
		}
		env[k] = val
	}
	return func(k string) string { return env[k] }
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBase64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

var reVar = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate expands compose's ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?error} and $$.
func interpolate(s string, vars map[string]string) (string, error) {
	var err error
	out := reVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := reVar.FindStringSubmatch(m)
		name, op, arg := g[1], g[2], g[3]
		v, set := vars[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if v == "" {
				err = &missingVar{name: name, msg: arg}
			}
		}
		return v
	})
	return out, err
}

type missingVar struct{ name, msg string }

func (e *missingVar) Error() string { return e.name + " is required: " + e.msg }

func readDotenv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: malformed line %q", path, line)
		}
		vars[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return vars
}

// TestNATSConfig parses deploy/nats.conf with the NATS server's own parser
// (the nats-server module the tests embed is the 2.10 line the image runs).
func TestNATSConfig(t *testing.T) {
	t.Setenv("NATS_JETSTREAM_KEY", "a-test-key-of-reasonable-length")
	opts, err := server.ProcessConfigFile(natsConf)
	if err != nil {
		t.Fatalf("%s: %v", natsConf, err)
	}
	// Photos wait in the streams (and dead letters stay for weeks): they
	// must be encrypted on disk like the photo table is.
	if opts.JetStreamKey != "a-test-key-of-reasonable-length" {
		t.Errorf("jetstream key = %q, want it from $NATS_JETSTREAM_KEY (encryption at rest)", opts.JetStreamKey)
	}
	if opts.MaxPayload < messaging.MaxMessageBytes {
		t.Errorf("max_payload = %d bytes, want at least %d (8 MiB: a 5 MiB photo in base64 JSON)",
			opts.MaxPayload, messaging.MaxMessageBytes)
	}
	if !opts.JetStream {
		t.Error("jetstream is not enabled")
	}
	if opts.HTTPPort != 8222 {
		t.Errorf("http_port = %d, want 8222 (the compose health check probes it)", opts.HTTPPort)
	}
	// A 202 means durable (SPEC §3): with one replica, JetStream must sync
	// each write before it acknowledges, not every 2 minutes (the default).
	if !opts.SyncAlways {
		t.Errorf("jetstream sync_interval is %v, want always: a host crash would lose readings already answered 202", opts.SyncInterval)
	}

	// And by plain reading, in case the parser's units ever change.
	b, err := os.ReadFile(natsConf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?mi)^\s*max_payload\s*[:=]\s*(\d+)\s*(MB|MiB|M|KB|K|B)?\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no max_payload line in nats.conf")
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	switch strings.ToUpper(string(m[2])) {
	case "MB", "MIB", "M":
		n <<= 20
	case "KB", "K":
		n <<= 10
	}
	if n < messaging.MaxMessageBytes {
		t.Errorf("max_payload line %q is %d bytes, want at least %d", m[0], n, messaging.MaxMessageBytes)
	}
}

func TestVersionsMatchWhatTheTestsRun(t *testing.T) {
	b, err := os.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	mod := string(b)
	if !regexp.MustCompile(`(?m)^\s*github.com/nats-io/nats-server/v2 v2\.10\.`).MatchString(mod) {
		t.Error("go.mod: the embedded nats-server must be a v2.10 release, as the nats:2.10-alpine image")
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	df, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "FROM golang:"+m[1]+"-alpine") {
		t.Errorf("Dockerfile does not build with golang:%s-alpine (go.mod says go %s)", m[1], m[1])
	}
}

// TestDockerfile: multi-stage, built with golang:1.26-alpine, and every
// image compose builds runs as a non-root user.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, dockerfile)
	if stages[0].from != "golang:1.26-alpine" {
		t.Errorf("first stage FROM %q, want golang:1.26-alpine", stages[0].from)
	}
	if len(stages) < 2 {
		t.Fatal("Dockerfile is not multi-stage")
	}
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	// user resolves USER through the stages a stage is built FROM.
	var user func(s stage) string
	user = func(s stage) string {
		if s.user != "" {
			return s.user
		}
		if base, ok := byName[s.from]; ok {
			return user(base)
		}
		return "" // an image's default user: root for alpine and golang
	}
	svc := byContainer(t, loadCompose(t))
	for _, name := range []string{"challenge_app_api", "challenge_app_worker"} {
		b := svc[name].Build
		if b == nil || b.Target == "" {
			t.Errorf("%s is not built from a Dockerfile target", name)
			continue
		}
		s, ok := byName[b.Target]
		if !ok {
			t.Errorf("%s builds target %q, not in the Dockerfile", name, b.Target)
			continue
		}
		u := user(s)
		uid, _, _ := strings.Cut(u, ":")
		if u == "" || uid == "root" || uid == "0" {
			t.Errorf("target %s runs as %q, want a non-root USER", b.Target, u)
		}
		if strings.HasPrefix(s.from, "golang:") || (byName[s.from].from != "" && strings.HasPrefix(byName[s.from].from, "golang:")) {
			t.Errorf("target %s ships the Go toolchain image", b.Target)
		}
	}
}

type stage struct {
	name, from, user string
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			args := slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
			s := stage{from: args[0]}
			if len(args) >= 3 && strings.EqualFold(args[1], "AS") {
				s.name = args[2]
			}
			stages = append(stages, s)
		case "USER":
			if len(stages) > 0 && len(f) > 1 {
				stages[len(stages)-1].user = f[1]
			}
		}
	}
	if len(stages) == 0 {
		t.Fatalf("%s has no FROM", path)
	}
	return stages
}

func TestDockerignoreKeepsLocalStateOut(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".devstack", ".env", ".git"} {
		if !slices.Contains(strings.Fields(string(b)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

// The API and the worker must agree on the JetStream topology (whichever
// starts first writes it) and on MAX_FUTURE_SKEW (the worker re-checks what
// the API accepted): both get the same values from one block, as written
// and as compose-go merges and interpolates it.
func TestComposeSharedSettingsReachBothBinaries(t *testing.T) {
	c := loadCompose(t)
	p := mustLoadProject(t)
	api, worker := loadedEnv(t, p, "api"), loadedEnv(t, p, "worker")
	for _, k := range []string{"MAX_FUTURE_SKEW", "NATS_REPLICAS", "STREAM_MAX_BYTES", "STREAM_MAX_AGE",
		"STREAM_DUPLICATE_WINDOW", "DLQ_MAX_AGE", "CONSUMER_ACK_WAIT", "CONSUMER_MAX_DELIVER", "CONSUMER_MAX_ACK_PENDING"} {
		want, ok := c.SharedEnv[k]
		if !ok {
			t.Errorf("x-shared-env lacks %s", k)
			continue
		}
		for _, name := range []string{"api", "worker"} {
			if got := c.Services[name].Environment[k]; got != want {
				t.Errorf("%s: %s = %q, want the shared %q", name, k, got, want)
			}
		}
		if a, w := api[k], worker[k]; a == "" || a != w {
			t.Errorf("loaded: %s = %q for the api, %q for the worker; want one non-empty value", k, a, w)
		}
	}
}
