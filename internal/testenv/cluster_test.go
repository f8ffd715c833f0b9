package testenv_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// Three clustered nodes keep an R3 stream through the loss of its leader:
// another node is elected and serves the messages, and a client given every
// node's URL carries on.
func TestNATSClusterSurvivesItsStreamLeader(t *testing.T) {
	t.Parallel()
	c := testenv.NewNATSCluster(t, 3)
	if n := strings.Count(c.URL, ","); n != 2 {
		t.Fatalf("URL %q lists %d nodes, want 3", c.URL, n+1)
	}
	_, js := testenv.JetStream(t, c.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each attempt bounded, and repeated (creating the same stream again
	// is a no-op): on a loaded machine the meta leader can leave a
	// request unanswered, which failed this test once in CI-like runs.
	for {
		attempt, stop := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateStream(attempt, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		stop()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("creating the R3 stream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 10 {
		if _, err := js.Publish(ctx, "r3.x", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	leader, err := c.StreamLeader(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	c.Nodes[leader].Stop()
	next, err := c.StreamLeader(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatalf("node %d still leads after it stopped", leader)
	}
	for {
		s, err := js.Stream(ctx, "R3")
		if err == nil && s.CachedInfo().State.Msgs == 10 {
			if _, err := js.Publish(ctx, "r3.x", []byte("m")); err == nil {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream did not come back with its 10 messages on node %d: %v", next, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
