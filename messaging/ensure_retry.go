package messaging

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// jsNoPeers is JetStream's "no suitable peers for placement" (10005): in a
// cluster whose nodes have not all joined yet, a replicated stream cannot
// be placed. It is answered as a 400, but it passes once the cluster forms.
const jsNoPeers = 10005

// attemptTimeout bounds one EnsureTopology attempt of EnsureTopologyWithin.
const attemptTimeout = 10 * time.Second

// EnsureTopologyWithin is EnsureTopology tried again, every second, for up
// to wait while it fails as Unavailable: on a brand-new cluster the first
// start of a binary can come before the nodes have formed (no peers for an
// R3 stream, no consumer leader yet), and a binary that waits for NATS to
// come up should wait for that too instead of exiting.
func EnsureTopologyWithin(ctx context.Context, js jetstream.JetStream, c TopologyConfig, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for {
		// Each attempt is bounded: while the cluster elects a meta leader
		// a request can go unanswered, and one attempt must not eat the
		// whole wait.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := EnsureTopology(actx, js, c)
		cancel()
		if err == nil || !ierr.Is(err, ierr.Unavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		log.Warn("JetStream topology not created yet; trying again", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}
