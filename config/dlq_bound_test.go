package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// DLQ_MAX_BYTES bounds TELEMETRY_DLQ for both binaries (whichever starts
// first creates it); DLQ_SWEEP_INTERVAL is the worker's.
func TestDLQBoundAndSweepVariables(t *testing.T) {
	k, _ := crypto.GenerateKey("k1")
	worker := func(kv map[string]string) (config.Worker, error) {
		kv["DATABASE_URL"] = "postgres://app:pw@db:5432/telemetry"
		kv["ENCRYPTION_KEYS"] = k.Encode()
		return config.LoadWorker(workerEnv(kv))
	}
	c, err := worker(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Topology.DLQMaxBytes != 1<<30 || c.DLQSweepInterval != messaging.DefaultSweepInterval {
		t.Errorf("defaults: DLQ max bytes %d, sweep interval %s", c.Topology.DLQMaxBytes, c.DLQSweepInterval)
	}
	c, err = worker(map[string]string{"DLQ_MAX_BYTES": "64MiB", "DLQ_SWEEP_INTERVAL": "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Topology.DLQMaxBytes != 64<<20 || c.DLQSweepInterval != 10*time.Second {
		t.Errorf("values: DLQ max bytes %d, sweep interval %s", c.Topology.DLQMaxBytes, c.DLQSweepInterval)
	}
	for _, tt := range []struct{ name, value, want string }{
		{"DLQ_MAX_BYTES", "lots", "DLQ_MAX_BYTES: must be a positive size"},
		{"DLQ_MAX_BYTES", "8MiB", "DLQ_MAX_BYTES: must be at least 16MiB"},
		{"DLQ_SWEEP_INTERVAL", "10ms", "DLQ_SWEEP_INTERVAL:"},
	} {
		_, err := worker(map[string]string{tt.name: tt.value})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%s: err = %v, want %q", tt.name, tt.value, err, tt.want)
		}
	}
	api, err := config.LoadAPI(workerEnv(map[string]string{
		"API_KEYS": "a:k7Qp2xVb9LmN4rT8wZ3sY6:ingest", "DLQ_MAX_BYTES": "32MiB",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if api.Topology.DLQMaxBytes != 32<<20 {
		t.Errorf("api: DLQ max bytes %d", api.Topology.DLQMaxBytes)
	}
}
