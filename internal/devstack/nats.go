package devstack

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// startNATSServer starts an embedded NATS server with JetStream on 127.0.0.1,
// on port (or a free one if it is busy), storing streams under storeDir so
// accepted but unprocessed readings survive a restart.
func startNATSServer(storeDir string, port int, verbose bool) (*server.Server, error) {
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if port == 0 || checkListenAddr(fmt.Sprintf("127.0.0.1:%d", port)) != nil {
		port = server.RANDOM_PORT // Port 0 would mean the default, 4222
	}
	opts := &server.Options{
		ServerName: "devstack",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		MaxPayload: messaging.MaxMessageBytes, // as deploy/nats.conf: 5 MiB photos in base64 JSON
		// As deploy/nats.conf: a 202 means durable (SPEC §3), so with one
		// server every write is synced before JetStream acknowledges it; the
		// default (every 2 minutes) could lose answered readings to a host
		// crash. Its cost is BenchmarkJetStreamSyncAlways in internal/testenv.
		SyncAlways: true,
		NoSigs:     true, // Ctrl-C belongs to the dev stack, which shuts NATS down last
		NoLog:      !verbose,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devstack: NATS: %w", err)
	}
	if verbose {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("devstack: NATS not ready within 15 s (store %s)", storeDir)
	}
	return s, nil
}
