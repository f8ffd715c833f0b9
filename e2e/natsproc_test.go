package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// buildNATSServer builds internal/cmd/nats-server (nats-server's own main,
// same flags and configuration file, from the module's nats-server
// requirement; see its doc for why not nats-server's main package) into a
// temporary directory.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/challenge-v3/challenge-v3/internal/cmd/nats-server")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// natsProcCluster is a JetStream cluster of nats-server processes on
// 127.0.0.1, for the fault a process of its own allows: SIGKILL, no
// goodbye, no leadership handed over.
type natsProcCluster struct {
	t       *testing.T
	bin     string
	confs   []string
	monitor []string // http://127.0.0.1:port of each node's monitoring
	procs   []*exec.Cmd
	exited  []chan struct{}
	logs    testenv.LogBuffer
	js      jetstream.JetStream
	urlList string
}

// newNATSProcCluster starts size nodes n1…nsize routed to each other, each
// with its own store, and waits until they can place a replicated stream.
func newNATSProcCluster(t *testing.T, size int) *natsProcCluster {
	t.Helper()
	c := &natsProcCluster{t: t, bin: buildNATSServer(t)}
	ports := reservePorts(t, 3*size)
	var routes, urls []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i]))
	}
	c.urlList = strings.Join(urls, ",")
	for i := range size {
		others := slices.Delete(slices.Clone(routes), i, i+1)
		conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 8MB
cluster {
  name: e2e
  listen: 127.0.0.1:%d
  routes: [%s]
}
jetstream {
  store_dir: %q
}
`, i+1, ports[3*i], ports[3*i+2], ports[3*i+1], strings.Join(others, ", "), t.TempDir())
		path := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.confs = append(c.confs, path)
		c.monitor = append(c.monitor, fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]))
		c.procs = append(c.procs, nil)
		c.exited = append(c.exited, nil)
	}
	for i := range size {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.procs {
			c.kill(i)
		}
		if t.Failed() {
			logs := c.logs.String()
			t.Logf("nats-server logs (end):\n%s", logs[max(0, len(logs)-4000):])
		}
	})
	// nats-server 2.10 sometimes elects a meta group of two while the third
	// node's routes are still connecting, and keeps it: the third is left
	// out (not current, or following without being a member, so an R3
	// stream has no third peer). Restarting the node left out makes it
	// join.
	var late []int
	for i := range size {
		if err := c.waitHealthy(i, 15*time.Second); err != nil {
			late = append(late, i)
		}
	}
	_, c.js = testenv.JetStream(t, c.urlList)
	if len(late) == 0 {
		if err := c.waitForPlacement(15 * time.Second); err == nil {
			return c
		}
		late = c.outsideMetaGroup()
	}
	t.Logf("a node left out of the meta group at start-up; restarting nodes %v:\n%s", late, c.metaGroups())
	for _, i := range late {
		c.kill(i)
		c.start(i)
	}
	for i := range size {
		if err := c.waitHealthy(i, 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, c.metaGroups())
		}
	}
	if err := c.waitForPlacement(30 * time.Second); err != nil {
		t.Fatalf("%v\n%s", err, c.metaGroups())
	}
	return c
}

// reservePorts returns n free loopback ports (listened on, then freed).
func reservePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func (c *natsProcCluster) start(i int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, "-c", c.confs[i])
	cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.procs[i], c.exited[i] = cmd, done
}

// kill sends SIGKILL to node i, if it runs, and waits for it to be gone.
func (c *natsProcCluster) kill(i int) {
	if c.procs[i] == nil {
		return
	}
	select {
	case <-c.exited[i]:
	default:
		_ = c.procs[i].Process.Kill()
		<-c.exited[i]
	}
	c.procs[i] = nil
}

// waitHealthy waits up to timeout until node i's /healthz answers 200:
// JetStream is current with the meta leader.
func (c *natsProcCluster) waitHealthy(i int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(c.monitor[i] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server n%d not healthy within %s: %w", i+1, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitForPlacement waits up to timeout until an R3 stream with a byte
// limit can be placed (the peers' storage statistics arrive a moment after
// the cluster forms).
func (c *natsProcCluster) waitForPlacement(timeout time.Duration) error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: "E2E_PLACEMENT_PROBE", Subjects: []string{"e2e.placement.probe"},
		Replicas: len(c.procs), MaxBytes: 1 << 20}
	for {
		_, err := c.js.CreateStream(ctx, cfg)
		if err == nil {
			return c.js.DeleteStream(ctx, cfg.Name)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("an R%d stream cannot be placed within %s: %w", len(c.procs), timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outsideMetaGroup lists the running nodes that the meta leader does not
// count in its group.
func (c *natsProcCluster) outsideMetaGroup() []int {
	members := map[int]bool{}
	for _, m := range c.metaViews() {
		if m.Leader != "" && node(m.Leader) == m.node {
			members[m.node] = true
			for _, r := range m.Replicas {
				members[node(r.Name)] = true
			}
		}
	}
	var out []int
	for i := range c.procs {
		if c.procs[i] != nil && !members[i] {
			out = append(out, i)
		}
	}
	return out
}

// node is the index of the node named name (n1 → 0), -1 for none.
func node(name string) int {
	var i int
	if _, err := fmt.Sscanf(name, "n%d", &i); err != nil {
		return -1
	}
	return i - 1
}

// clusterLeader asks JetStream which node leads: the stream's group, or a
// consumer's when consumer is not empty. It waits, until ctx ends, for a
// leader that is running (after a kill the cluster names the dead node
// until it notices).
func (c *natsProcCluster) clusterLeader(ctx context.Context, consumer string) (int, error) {
	for {
		var leader string
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		if consumer == "" {
			if s, err := c.js.Stream(qctx, messaging.StreamName); err == nil && s.CachedInfo().Cluster != nil {
				leader = s.CachedInfo().Cluster.Leader
			}
		} else if cons, err := c.js.Consumer(qctx, messaging.StreamName, consumer); err == nil && cons.CachedInfo().Cluster != nil {
			leader = cons.CachedInfo().Cluster.Leader
		}
		cancel()
		if i := node(leader); i >= 0 && c.procs[i] != nil {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, errors.Join(fmt.Errorf("no running leader of %s %s", messaging.StreamName, consumer), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restart starts node i again on its configuration and store, and waits
// until it is a current replica of TELEMETRY again.
func (c *natsProcCluster) restart(i int) {
	c.t.Helper()
	c.start(i)
	if err := c.waitHealthy(i, 30*time.Second); err != nil {
		c.t.Fatalf("%v\n%s", err, c.metaGroups())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := c.js.Stream(ctx, messaging.StreamName)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			cl := s.CachedInfo().Cluster
			current := 0
			for _, r := range cl.Replicas {
				if r.Current && !r.Offline {
					current++
				}
			}
			if cl.Leader != "" && current == len(c.procs)-1 {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("n%d not a current replica of %s within 30 s of its restart", i+1, messaging.StreamName)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metaView is a node's view of JetStream's meta group (/jsz meta_cluster).
type metaView struct {
	node        int
	Leader      string `json:"leader"`
	ClusterSize int    `json:"cluster_size"`
	Replicas    []struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
	} `json:"replicas"`
}

// metaViews asks every running node for its view of the meta group.
func (c *natsProcCluster) metaViews() []metaView {
	var out []metaView
	for i, m := range c.monitor {
		if c.procs[i] == nil {
			continue
		}
		resp, err := http.Get(m + "/jsz")
		if err != nil {
			continue
		}
		var jsz struct {
			Meta metaView `json:"meta_cluster"`
		}
		if json.NewDecoder(resp.Body).Decode(&jsz) == nil {
			jsz.Meta.node = i
			out = append(out, jsz.Meta)
		}
		resp.Body.Close()
	}
	return out
}

// metaGroups describes the meta group as each node sees it, for a log line.
func (c *natsProcCluster) metaGroups() string {
	var b strings.Builder
	for _, m := range c.metaViews() {
		var replicas []string
		for _, r := range m.Replicas {
			replicas = append(replicas, fmt.Sprintf("%s (current %v)", r.Name, r.Current))
		}
		fmt.Fprintf(&b, "n%d: leader %s, cluster size %d, replicas %v\n", m.node+1, m.Leader, m.ClusterSize, replicas)
	}
	return b.String()
}
