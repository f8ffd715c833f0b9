package deploy

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// TestNATSClusterRoutesNeedThePassword runs the cluster of the
// nats-cluster profile: three nats-servers in the test process, each built
// from deploy/nats-cluster.conf with the environment compose gives its node
// from .env. Only the addresses differ: the file's fixed ports (4222, 6222,
// 8222) cannot be shared by three servers on one host, so each listens on
// loopback ports of its own (monitoring off) and the route URLs compose
// gives are moved to them, credentials untouched.
//
// The three form a route mesh and a JetStream meta group with the
// password. A fourth server that routes to them without the password, or
// with a wrong one, is refused by the node it dials (an authentication
// error there) and becomes no node's route peer; the same fourth server
// with the file's credentials joins all three, so what refused the others
// was the password.
func TestNATSClusterRoutesNeedThePassword(t *testing.T) {
	p := mustLoadProjectFiles(t, []string{clusterOverride}, "nats-cluster")
	ports := freePorts(t, len(clusterNodes))
	logs := make([]*serverLog, len(clusterNodes))
	nodes := make([]*server.Server, len(clusterNodes))
	var fileCluster server.ClusterOpts
	for i, name := range clusterNodes {
		env := loadedEnv(t, p, name)
		for k := range clusterNodes {
			key := "NATS_ROUTE_" + strconv.Itoa(k+1)
			u, err := url.Parse(env[key])
			if err != nil || u.Hostname() != clusterNodes[k] {
				t.Fatalf("%s: %s = %q, want a route URL to %s", name, key, env[key], clusterNodes[k])
			}
			u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[k]))
			env[key] = u.String()
		}
		opts, err := nodeConfig(t, env)
		if err != nil {
			t.Fatalf("%s: %s: %v", name, clusterConf, err)
		}
		if opts.Cluster.Username == "" || opts.Cluster.Password == "" {
			t.Fatalf("%s: %s has no cluster authorization", name, clusterConf)
		}
		fileCluster = opts.Cluster
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[i]
		opts.StoreDir = t.TempDir()
		opts.NoLog, opts.NoSigs = true, true
		nodes[i], logs[i] = newLoggedServer(t, opts)
	}
	for _, srv := range nodes {
		go srv.Start()
	}
	for i, srv := range nodes {
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s not ready within 10 s", clusterNodes[i])
		}
	}
	// JetStream replicates over the authenticated routes: a meta group of
	// all three forms only through them.
	testenv.WaitForMetaGroup(t, func() []*server.Server { return nodes }, 15*time.Second)
	waitForDelivery(t, nodes[0], nodes[2], "nats-1 to nats-3")

	// A fourth server dials nats-1, as anything on the network could.
	dial := func(user *url.Userinfo) *url.URL {
		return &url.URL{Scheme: "nats-route", User: user, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
	}
	for _, c := range []struct {
		name  string
		route *url.URL
	}{
		{"no password", dial(nil)},
		{"wrong password", dial(url.UserPassword(fileCluster.Username, "wrong-"+randomHex(16)))},
		{"the user alone", dial(url.User(fileCluster.Username))},
	} {
		t.Run(c.name, func(t *testing.T) {
			refusals := logs[0].count("authentication error")
			fourth := startFourth(t, fileCluster.Name, server.ClusterOpts{}, c.route)
			defer stopServer(fourth)
			deadline := time.Now().Add(10 * time.Second)
			for logs[0].count("authentication error") == refusals {
				if time.Now().After(deadline) {
					t.Fatalf("nats-1 logged no refused route within 10 s; its routes: %d", nodes[0].NumRemotes())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Refused at CONNECT: nats-1 never registered it, so it
			// never told nats-2 and nats-3 about it either.
			for i, srv := range nodes {
				if n := srv.NumRemotes(); n != len(nodes)-1 {
					t.Errorf("%s has %d route peers after the fourth server's refusal, want %d", clusterNodes[i], n, len(nodes)-1)
				}
			}
		})
	}

	t.Run("the file's credentials", func(t *testing.T) {
		auth := server.ClusterOpts{Username: fileCluster.Username, Password: fileCluster.Password}
		fourth := startFourth(t, fileCluster.Name, auth, dial(url.UserPassword(fileCluster.Username, fileCluster.Password)))
		defer stopServer(fourth)
		// A message published on each node reaches it, also from nats-2
		// and nats-3, which it did not dial: a route relays nothing that
		// came over another route, so each node routes to it directly.
		for i, srv := range nodes {
			waitForDelivery(t, srv, fourth, clusterNodes[i]+" to the fourth server")
		}
	})
}

// startFourth starts a server outside the cluster's configuration, without
// JetStream, that routes to route with the cluster's name and the given
// cluster authorization (Username, Password).
func startFourth(t *testing.T, clusterName string, auth server.ClusterOpts, route *url.URL) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "fourth",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		Cluster: server.ClusterOpts{
			Name: clusterName, Host: "127.0.0.1", Port: server.RANDOM_PORT,
			Username: auth.Username, Password: auth.Password,
		},
		Routes: []*url.URL{route},
		NoLog:  true,
		NoSigs: true,
	})
	if err != nil {
		t.Fatalf("fourth server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		stopServer(srv)
		t.Fatal("fourth server not ready within 10 s")
	}
	return srv
}

// newLoggedServer creates a server from opts whose errors are recorded,
// shut down in t.Cleanup.
func newLoggedServer(t *testing.T, opts *server.Options) (*server.Server, *serverLog) {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", opts.ServerName, err)
	}
	log := &serverLog{}
	srv.SetLogger(log, false, false)
	t.Cleanup(func() {
		stopServer(srv)
		if t.Failed() {
			t.Logf("%s's errors:\n%s", opts.ServerName, log)
		}
	})
	return srv, log
}

func stopServer(srv *server.Server) {
	srv.Shutdown()
	srv.WaitForShutdown()
}

// waitForDelivery waits up to 10 s until a message published by a client
// of from reaches a subscriber on to, over their route. A route peer count
// alone would not do: the side that dials registers its peer on the
// peer's INFO, before the peer has checked its password, so a refused
// route shows for a moment in the dialler's count.
func waitForDelivery(t *testing.T, from, to *server.Server, what string) {
	t.Helper()
	sub, err := nats.Connect(to.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := nats.Connect(from.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	got, err := sub.SubscribeSync("routes.probe")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	// The subscription's interest reaches from's server over the route a
	// moment later; until then a publication there goes nowhere.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pub.Publish("routes.probe", []byte(what)); err != nil {
			t.Fatal(err)
		}
		if _, err := got.NextMsg(50 * time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message from %s within 10 s: route peers %d and %d", what, from.NumRemotes(), to.NumRemotes())
		}
	}
}

// freePorts reserves n loopback ports by listening on them, and frees them
// for the servers: the route URLs must name every node's port before any
// node starts.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	listeners := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserving a port: %v", err)
		}
		listeners[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range listeners {
		ln.Close()
	}
	return ports
}

// serverLog is a nats-server Logger that keeps the error lines, for a test
// to see a refusal the server only logs.
type serverLog struct {
	mu     sync.Mutex
	errors []string
}

func (l *serverLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, fmt.Sprintf(format, v...))
}

// Fatalf is kept as an error: nats-server's own logger would exit the
// process, which a test must not.
func (l *serverLog) Fatalf(format string, v ...any) { l.Errorf("fatal: "+format, v...) }

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.errors, "\n")
}

// count is the number of error lines that contain s.
func (l *serverLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.errors {
		if strings.Contains(e, s) {
			n++
		}
	}
	return n
}

func (*serverLog) Noticef(string, ...any) {}
func (*serverLog) Warnf(string, ...any)   {}
func (*serverLog) Debugf(string, ...any)  {}
func (*serverLog) Tracef(string, ...any)  {}
