package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is a JetStream cluster of embedded NATS servers on 127.0.0.1,
// each with its own store directory, routed to every other: what a
// deployment with NATS_REPLICAS=3 runs on, for fault tests that stop a node.
type NATSCluster struct {
	// URL lists every node's client URL, comma-separated, as NATS_URL takes
	// it: a client connects to any and fails over to the others.
	URL string
	// Nodes are the servers; each can be stopped and restarted (same ports,
	// same store) like a single NATSServer.
	Nodes []*NATSServer
}

// clusterName names the test clusters' route mesh.
const clusterName = "testenv"

// NewNATSCluster starts size clustered servers (named n1, n2, …), waits
// until JetStream has a meta group of all of them and can place a
// replicated stream, and shuts them down in t.Cleanup.
func NewNATSCluster(t testing.TB, size int) *NATSCluster {
	t.Helper()
	// Each node must be told every route before it starts (JetStream
	// clustering requires configured routes), so the route ports are
	// reserved first: listened on, then freed for the servers.
	routes := make([]*url.URL, size)
	listeners := make([]net.Listener, size)
	for i := range size {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: reserving a route port: %v", err)
		}
		listeners[i] = ln
		routes[i] = &url.URL{Scheme: "nats-route", Host: ln.Addr().String()}
	}
	for _, ln := range listeners {
		ln.Close()
	}
	// Started together, as a deployment's nodes are: started one after
	// the other, the first two elected a meta group of two that the third
	// was not always added to (seen with -race on 2 cores).
	c := &NATSCluster{Nodes: make([]*NATSServer, size)}
	srvs := make([]*server.Server, size)
	for i := range size {
		_, port, _ := net.SplitHostPort(routes[i].Host)
		p, _ := strconv.Atoi(port)
		opts := baseOptions(t)
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: clusterName, Host: "127.0.0.1", Port: p}
		opts.Routes = routes
		c.Nodes[i] = &NATSServer{opts: opts}
		o := opts // NewServer keeps and adjusts its *Options
		srv, err := server.NewServer(&o)
		if err != nil {
			t.Fatalf("testenv: NATS server n%d: %v", i+1, err)
		}
		srvs[i] = srv
		t.Cleanup(c.Nodes[i].Stop)
	}
	for _, srv := range srvs {
		go srv.Start()
	}
	urls := make([]string, size)
	for i, srv := range srvs {
		if !srv.ReadyForConnections(10 * time.Second) {
			for _, srv := range srvs {
				srv.Shutdown()
			}
			t.Fatalf("testenv: NATS server n%d not ready within 10 s", i+1)
		}
		addr := srv.Addr().(*net.TCPAddr)
		n := c.Nodes[i]
		n.srv = srv
		n.opts.Port = addr.Port // a restart keeps the client port
		n.URL = "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
		urls[i] = n.URL
	}
	c.URL = strings.Join(urls, ",")
	c.waitForMetaLeader(t, 30*time.Second)
	c.waitForPlacement(t, 30*time.Second)
	return c
}

// waitForPlacement waits until the meta leader can place a replicated
// stream with a byte limit, by creating (and deleting) one: it places such
// a stream only on peers whose storage statistics it has received, which
// come a moment after the cluster forms. Before that, EnsureTopology is
// refused with "no suitable peers for placement".
func (c *NATSCluster) waitForPlacement(t testing.TB, timeout time.Duration) {
	t.Helper()
	nc, err := nats.Connect(c.URL, nats.Name("testenv-cluster-probe"))
	if err != nil {
		t.Fatalf("testenv: NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: NATS cluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: "TESTENV_PLACEMENT_PROBE", Subjects: []string{"testenv.placement.probe"},
		Storage: jetstream.FileStorage, Replicas: len(c.Nodes), MaxBytes: 1 << 20}
	for {
		// Each attempt bounded, as messaging.EnsureTopologyWithin does: a
		// request the meta leader leaves unanswered must not eat the wait.
		attempt, stop := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateStream(attempt, cfg)
		stop()
		if err == nil {
			if err := js.DeleteStream(ctx, cfg.Name); err != nil {
				t.Fatalf("testenv: NATS cluster: deleting the placement probe: %v", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: NATS cluster: an R%d stream cannot be placed within %s: %v", len(c.Nodes), timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitForMetaLeader waits until one running node leads JetStream's meta
// group, every running node is in the group and current with it: before
// that, creating a stream fails, or places it on fewer nodes.
func (c *NATSCluster) waitForMetaLeader(t testing.TB, timeout time.Duration) {
	t.Helper()
	WaitForMetaGroup(t, func() []*server.Server {
		var running []*server.Server
		for _, n := range c.Nodes {
			if srv := n.Server(); srv != nil {
				running = append(running, srv)
			}
		}
		return running
	}, timeout)
}

// WaitForMetaGroup waits up to timeout until, of the servers nodes
// returns (asked again on every check), one leads JetStream's meta group,
// every one is in the group and current with it. It fails t past timeout.
func WaitForMetaGroup(t testing.TB, nodes func() []*server.Server, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		running := nodes()
		leaders, current, peers := 0, 0, 0
		for _, srv := range running {
			if srv.JetStreamIsLeader() {
				leaders++
				if j, err := srv.Jsz(nil); err == nil && j.Meta != nil {
					peers = len(j.Meta.Replicas) + 1
				}
			}
			if srv.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders == 1 && current == len(running) && peers >= len(running) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: NATS cluster: %d meta leaders, %d of %d nodes current, %d in the meta group after %s", leaders, current, len(running), peers, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StreamLeader is the index in Nodes of the running node that leads
// stream's Raft group in the default account, waiting up to timeout for one
// (after a leader stops, until its successor is elected).
func (c *NATSCluster) StreamLeader(ctx context.Context, stream string) (int, error) {
	for {
		for i, n := range c.Nodes {
			if srv := n.Server(); srv != nil && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("testenv: no leader of stream %s: %w", stream, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ConsumerLeaders is the index in Nodes of the running node that leads
// each of the durable consumers of stream (in the default account), -1 for
// one no running node leads at the moment.
func (c *NATSCluster) ConsumerLeaders(stream string, consumers ...string) []int {
	out := make([]int, len(consumers))
	for j, name := range consumers {
		out[j] = -1
		for i, n := range c.Nodes {
			if srv := n.Server(); srv != nil && srv.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, name) {
				out[j] = i
			}
		}
	}
	return out
}

// Restart starts node i again (same ports, same store) after Stop, and waits
// until it is back in the meta group and current with every stream given:
// the cluster can lose another node then without losing a quorum.
func (c *NATSCluster) Restart(t testing.TB, i int, streams ...string) {
	t.Helper()
	c.Nodes[i].Restart(t)
	c.waitForMetaLeader(t, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for _, stream := range streams {
		for !c.Nodes[i].Server().JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			if time.Now().After(deadline) {
				t.Fatalf("testenv: NATS node n%d not current with stream %s within 30 s of its restart", i+1, stream)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
