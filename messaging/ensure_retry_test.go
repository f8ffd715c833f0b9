package messaging_test

import (
	"context"

	"log/slog"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// On a cluster that is not whole yet, an R3 topology cannot be placed:
// EnsureTopology fails as Unavailable (not Invalid: nothing is wrong with
// the request), and EnsureTopologyWithin waits for the missing node instead
// of making the binary exit.
func TestEnsureTopologyWithinWaitsForTheCluster(t *testing.T) {
	cluster := testenv.NewNATSCluster(t, 3)
	cluster.Nodes[2].Stop()
	_, js := testenv.JetStream(t, cluster.URL)
	topo := messaging.DefaultTopology()
	topo.Replicas = 3

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Bounded: while the cluster elects a new meta leader the request may
	// go unanswered, which is Unavailable too.
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	t0 := time.Now()
	err := messaging.EnsureTopology(actx, js, topo)
	acancel()
	t.Logf("first attempt: %v after %s", err, time.Since(t0))
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("R3 topology on 2 of 3 nodes: err = %v; want Unavailable", err)
	}

	go func() {
		time.Sleep(2 * time.Second)
		cluster.Nodes[2].Restart(t)
	}()
	if err := messaging.EnsureTopologyWithin(ctx, js, topo, 45*time.Second, slog.New(slog.NewTextHandler(testWriter{t}, nil))); err != nil {
		t.Fatalf("EnsureTopologyWithin once the third node is back: %v", err)
	}
	info, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("TELEMETRY replicas = %d; want 3", got)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
