package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// natsProc is a nats-server process with JetStream, on a free loopback
// port, with the project's max_payload and its own store.
type natsProc struct {
	*proc
	url string
}

// startNATSProc starts the server built at path with its files under dir.
// syncAlways is deploy/nats.conf's sync_interval: always.
func startNATSProc(ctx context.Context, path, dir string, syncAlways bool) (*natsProc, error) {
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, err
	}
	sync := ""
	if syncAlways {
		sync = "  sync_interval: always\n"
	}
	// Port -1: the server picks a free one and writes it to the ports file,
	// so nothing can take it between our choice and its bind.
	conf := fmt.Sprintf("listen: 127.0.0.1:-1\nmax_payload: 8MB\nports_file_dir: %s\njetstream {\n  store_dir: %s\n%s}\n",
		strconv.Quote(dir), strconv.Quote(store), sync)
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc("nats-server", path, []string{"-c", confPath}, nil)
	if err != nil {
		return nil, err
	}
	p.quit = syscall.SIGINT
	n := &natsProc{proc: p}
	// The server writes <executable>_<pid>.ports once it listens.
	portsFile := filepath.Join(dir, fmt.Sprintf("%s_%d.ports", filepath.Base(path), p.pid()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if data, err := os.ReadFile(portsFile); err == nil {
			var ports struct{ Nats []string }
			if json.Unmarshal(data, &ports) == nil && len(ports.Nats) > 0 {
				n.url = ports.Nats[0]
				return n, nil
			}
		}
		if done, err := p.exited(); done {
			return nil, fmt.Errorf("bench: nats-server exited (%v); its output:\n%s", err, p.out)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = p.stop(5 * time.Second)
			return nil, fmt.Errorf("bench: nats-server wrote no ports file within 30 s; its output:\n%s", p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
