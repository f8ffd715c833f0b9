package deploy

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/challenge-v3/challenge-v3/config"
)

// The 3-node NATS cluster: the nodes of the "nats-cluster" profile in
// docker-compose.yml, their configuration, and the override file that
// points the API and the worker at them.
const (
	clusterOverride = "../docker-compose.nats-cluster.yml"
	clusterConf     = "nats-cluster.conf"
	clusterConfIn   = "/etc/nats/nats-cluster.conf"
)

// clusterNodes are the node services, which are also their server names
// and the hosts the routes and the clients name.
var clusterNodes = []string{"nats-1", "nats-2", "nats-3"}

// TestNATSClusterConfig parses deploy/nats-cluster.conf with the NATS
// server's own parser, as a node reads it with the environment compose
// gives it: a stable server name, routes to all three nodes on the cluster
// port, and what a single node has (JetStream encrypted and synced, 8 MiB
// messages, the monitoring port the health check probes).
func TestNATSClusterConfig(t *testing.T) {
	p := mustLoadProjectFiles(t, []string{clusterOverride}, "nats-cluster")
	env := loadedEnv(t, p, "nats-2")
	opts, err := nodeConfig(t, env)
	if err != nil {
		t.Fatalf("%s: %v", clusterConf, err)
	}
	single, err := server.ProcessConfigFile(natsConf)
	if err != nil {
		t.Fatalf("%s: %v", natsConf, err)
	}
	if opts.ServerName != "nats-2" {
		t.Errorf("server_name = %q, want it from $NATS_SERVER_NAME", opts.ServerName)
	}
	if opts.Cluster.Name == "" || opts.Cluster.Port != 6222 {
		t.Errorf("cluster name %q port %d, want a name and 6222", opts.Cluster.Name, opts.Cluster.Port)
	}
	var routes []string
	for _, r := range opts.Routes {
		if r.Scheme != "nats-route" || r.Port() != "6222" {
			t.Errorf("route %s: want nats-route://<node>:6222", r)
		}
		routes = append(routes, r.Hostname())
	}
	slices.Sort(routes)
	if !slices.Equal(routes, clusterNodes) {
		t.Errorf("routes to %v, want %v", routes, clusterNodes)
	}
	if opts.JetStreamKey != p.Environment["NATS_JETSTREAM_KEY"] || !opts.JetStream || !opts.SyncAlways {
		t.Errorf("jetstream: key %q, enabled %v, sync always %v; want .env's NATS_JETSTREAM_KEY, enabled, always",
			opts.JetStreamKey, opts.JetStream, opts.SyncAlways)
	}
	if opts.MaxPayload != single.MaxPayload || opts.HTTPPort != single.HTTPPort || opts.Port != single.Port ||
		opts.StoreDir != single.StoreDir || opts.JetStreamMaxStore != single.JetStreamMaxStore {
		t.Errorf("max_payload %d, http_port %d, port %d, store_dir %q, max_file_store %d differ from %s's %d, %d, %d, %q, %d",
			opts.MaxPayload, opts.HTTPPort, opts.Port, opts.StoreDir, opts.JetStreamMaxStore,
			natsConf, single.MaxPayload, single.HTTPPort, single.Port, single.StoreDir, single.JetStreamMaxStore)
	}
}

// TestComposeNATSClusterProfile loads docker-compose.yml with the override
// file and the nats-cluster profile as compose-go does: three nodes of the
// image the single node runs, each with its name, its own volume and the
// configuration its command reads, nothing published; the single node not
// started; the API and the worker given every node's client URL and
// NATS_REPLICAS=3, which their own configuration loaders accept; and
// without the override the profile's nodes leave the default setup alone.
func TestComposeNATSClusterProfile(t *testing.T) {
	p := mustLoadProjectFiles(t, []string{clusterOverride}, "nats-cluster", "observability")
	if _, ok := p.Services["nats"]; ok {
		t.Error("the single nats node starts next to the cluster")
	}
	single := loadCompose(t).Services["nats"]
	volumes := map[string]string{}
	for _, name := range clusterNodes {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if s.Image != single.Image {
			t.Errorf("%s image %q, want the single node's %q", name, s.Image, single.Image)
		}
		if env := loadedEnv(t, p, name); env["NATS_SERVER_NAME"] != name || env["NATS_JETSTREAM_KEY"] == "" {
			t.Errorf("%s: NATS_SERVER_NAME %q (want %s), NATS_JETSTREAM_KEY set %v", name, env["NATS_SERVER_NAME"], name, env["NATS_JETSTREAM_KEY"] != "")
		}
		if cmd := strings.Join(s.Command, " "); !strings.Contains(cmd, "-js") || !strings.Contains(cmd, "-c "+clusterConfIn) {
			t.Errorf("%s command %q: want -js and -c %s", name, cmd, clusterConfIn)
		}
		mounted := false
		for _, v := range s.Volumes {
			switch {
			case v.Target == clusterConfIn:
				mounted = strings.HasSuffix(v.Source, "/deploy/"+clusterConf) && v.ReadOnly
			case v.Target == "/data":
				if other, ok := volumes[v.Source]; ok {
					t.Errorf("%s and %s share the store volume %s", name, other, v.Source)
				}
				volumes[v.Source] = name
			}
		}
		if !mounted {
			t.Errorf("%s does not mount deploy/%s read-only at %s", name, clusterConf, clusterConfIn)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes ports %v", name, s.Ports)
		}
		if hc := s.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:8222/healthz") {
			t.Errorf("%s health check %v does not probe /healthz on the monitoring port", name, hc)
		}
	}
	if len(volumes) != len(clusterNodes) {
		t.Errorf("store volumes %v, want one per node", volumes)
	}

	for _, name := range []string{"api", "worker"} {
		env := loadedEnv(t, p, name)
		var hosts []string
		for _, u := range strings.Split(env["NATS_URL"], ",") {
			parsed, err := url.Parse(u)
			if err != nil || parsed.Scheme != "nats" || parsed.Port() != "4222" {
				t.Errorf("%s: NATS_URL entry %q, want nats://<node>:4222", name, u)
				continue
			}
			hosts = append(hosts, parsed.Hostname())
		}
		slices.Sort(hosts)
		if !slices.Equal(hosts, clusterNodes) {
			t.Errorf("%s: NATS_URL names %v, want %v", name, hosts, clusterNodes)
		}
		if env["NATS_REPLICAS"] != "3" {
			t.Errorf("%s: NATS_REPLICAS = %q, want 3", name, env["NATS_REPLICAS"])
		}
		for _, node := range clusterNodes {
			if d, ok := p.Services[name].DependsOn[node]; !ok || d.Condition != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy", name, node)
			}
		}
	}
	getenv := func(service string) config.Getenv {
		env := loadedEnv(t, p, service)
		return func(k string) string { return env[k] }
	}
	api, err := config.LoadAPI(getenv("api"))
	if err != nil {
		t.Fatalf("api environment: %v", err)
	}
	worker, err := config.LoadWorker(getenv("worker"))
	if err != nil {
		t.Fatalf("worker environment: %v", err)
	}
	if api.Topology != worker.Topology || api.Topology.Replicas != 3 {
		t.Errorf("topology: api %+v, worker %+v; want the same, with 3 replicas", api.Topology, worker.Topology)
	}
	if exp := strings.Join(p.Services["nats-exporter"].Command, " "); !strings.Contains(exp, "http://nats-1:8222") {
		t.Errorf("nats-exporter command %q does not read nats-1's monitoring port", exp)
	}

	// Without the override file, the profile adds the nodes and changes
	// nothing else: the API and the worker stay on the single node.
	plain := mustLoadProject(t, "nats-cluster")
	if _, ok := plain.Services["nats"]; !ok {
		t.Error("the nats-cluster profile alone removes the single node")
	}
	if env := loadedEnv(t, plain, "api"); env["NATS_URL"] != "nats://nats:4222" {
		t.Errorf("without the override, api NATS_URL = %q", env["NATS_URL"])
	}
}

// nodeConfig parses deploy/nats-cluster.conf as a node's nats-server does,
// with env (the node's environment as compose interpolates it) set for the
// rest of the test.
func nodeConfig(t *testing.T, env map[string]string) (*server.Options, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	return server.ProcessConfigFile(clusterConf)
}

// TestComposeNATSClusterRoutesAuthenticated: each node, with the
// environment compose gives it from .env, reads a cluster that accepts a
// route only with NATS_CLUSTER_PASSWORD, and routes to all three nodes
// carrying that same password: the nodes accept one another's routes.
func TestComposeNATSClusterRoutesAuthenticated(t *testing.T) {
	p := mustLoadProjectFiles(t, []string{clusterOverride}, "nats-cluster")
	password := p.Environment["NATS_CLUSTER_PASSWORD"]
	if password == "" {
		t.Fatal("the test .env has no NATS_CLUSTER_PASSWORD")
	}
	for _, name := range clusterNodes {
		t.Run(name, func(t *testing.T) {
			opts, err := nodeConfig(t, loadedEnv(t, p, name))
			if err != nil {
				t.Fatalf("%s: %v", clusterConf, err)
			}
			if opts.Cluster.Username == "" || opts.Cluster.Password != password {
				t.Errorf("cluster authorization: user %q, password from .env %v; want a user and NATS_CLUSTER_PASSWORD",
					opts.Cluster.Username, opts.Cluster.Password == password)
			}
			var hosts []string
			for _, r := range opts.Routes {
				pw, _ := r.User.Password()
				if r.User.Username() != opts.Cluster.Username || pw != password {
					t.Errorf("route to %s: user %q, password from .env %v; want the cluster's user and password",
						r.Host, r.User.Username(), pw == password)
				}
				hosts = append(hosts, r.Host)
			}
			slices.Sort(hosts)
			if want := []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}; !slices.Equal(hosts, want) {
				t.Errorf("routes to %v, want %v", hosts, want)
			}
		})
	}
}

// TestComposeNATSClusterPasswordForms: NATS_CLUSTER_PASSWORD as an operator
// may leave or generate it. Missing or empty, `docker compose up` (which
// interpolates the cluster profile too) still loads, but every cluster node
// refuses to start, naming the missing password; a hex password that
// nats-server would read as a number were it not quoted (1e5…), or digits
// only, is taken whole.
func TestComposeNATSClusterPasswordForms(t *testing.T) {
	number := "1e5" + randomHex(16) // 1e5 alone is a float to nats-server
	digits := strings.Repeat("1234567890", 4)
	for _, c := range []struct {
		name, line string
		password   string // "" when the nodes must refuse to start
	}{
		{"absent", "", ""},
		{"empty", "NATS_CLUSTER_PASSWORD=", ""},
		{"read as a number unquoted", "NATS_CLUSTER_PASSWORD=" + number, number},
		{"digits only", "NATS_CLUSTER_PASSWORD=" + digits, digits},
	} {
		t.Run(c.name, func(t *testing.T) {
			dotenv := dotenvWithLine(t, "NATS_CLUSTER_PASSWORD", c.line)
			if _, err := loadProject(t, dotenv); err != nil {
				t.Fatalf("docker compose up without the profile: %v", err)
			}
			p, err := loadProjectFiles(t, dotenv, []string{clusterOverride}, "nats-cluster")
			if c.password == "" {
				// The override refuses first, naming the variable.
				if err == nil || !strings.Contains(err.Error(), "NATS_CLUSTER_PASSWORD") {
					t.Errorf("docker compose up with the cluster and no password: err = %v, want NATS_CLUSTER_PASSWORD required", err)
				}
				// Without the override (the profile alone), the nodes refuse.
				if p, err = loadProject(t, dotenv, "nats-cluster"); err != nil {
					t.Fatalf("docker compose --profile nats-cluster up: %v", err)
				}
			} else if err != nil {
				t.Fatalf("docker compose up with the cluster: %v", err)
			}
			for _, name := range clusterNodes {
				opts, err := nodeConfig(t, loadedEnv(t, p, name))
				switch {
				case c.password == "" && (err == nil || !strings.Contains(err.Error(), "NATS_CLUSTER_PASSWORD")):
					t.Errorf("%s starts without a cluster password: err = %v", name, err)
				case c.password != "" && err != nil:
					t.Errorf("%s: %v", name, err)
				case c.password != "" && opts.Cluster.Password != c.password:
					t.Errorf("%s: cluster password %q, want the one from .env", name, opts.Cluster.Password)
				}
			}
		})
	}
}

// dotenvWithLine is testDotenv with the line that sets key replaced by
// line (removed when line is empty).
func dotenvWithLine(t *testing.T, key, line string) string {
	t.Helper()
	return editDotenv(t, testDotenv(t), key, line)
}

// TestComposeNATSJetStreamKeyForms: the JetStream key of .env reaches
// nats-server intact whatever its characters. nats-server reads a
// variable's value as configuration, so an `openssl rand -base64 32` key
// that begins with a digit (about one in six), or reads as a number, must
// be handed quoted; unquoted, the single node and each cluster node would
// refuse their configuration.
func TestComposeNATSJetStreamKeyForms(t *testing.T) {
	for _, key := range []string{
		"4" + randomBase64(31),          // a digit first
		"1e5" + randomHex(16),           // a float
		strings.Repeat("1234567890", 4), // an integer
		"+/=" + randomBase64(29),        // base64's punctuation first
		"a-test-key-of-reasonable-length",
	} {
		t.Run(key[:4], func(t *testing.T) {
			dotenv := dotenvWithLine(t, "NATS_JETSTREAM_KEY", "NATS_JETSTREAM_KEY="+key)
			p, err := loadProject(t, dotenv)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range loadedEnv(t, p, "nats") {
				t.Setenv(k, v)
			}
			opts, err := server.ProcessConfigFile(natsConf)
			if err != nil {
				t.Fatalf("nats: %v", err)
			}
			if opts.JetStreamKey != key {
				t.Errorf("nats: JetStream key %q, want %q from .env", opts.JetStreamKey, key)
			}
			p, err = loadProjectFiles(t, dotenv, []string{clusterOverride}, "nats-cluster")
			if err != nil {
				t.Fatal(err)
			}
			opts, err = nodeConfig(t, loadedEnv(t, p, "nats-1"))
			if err != nil {
				t.Fatalf("nats-1: %v", err)
			}
			if opts.JetStreamKey != key {
				t.Errorf("nats-1: JetStream key %q, want %q from .env", opts.JetStreamKey, key)
			}
		})
	}
}
