package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// binaries are the programs the memory section runs as separate processes,
// so each has an RSS of its own.
type binaries struct {
	api, worker, natsServer string
}

// buildBinaries builds cmd/api, cmd/worker and a nats-server into dir. The
// NATS server is ./internal/cmd/nats-server, nats-server's main built from
// the module's own nats-server requirement (the version the tests embed and
// go.sum pins), so it needs no download beyond what building the bench
// needed.
func buildBinaries(ctx context.Context, dir string) (binaries, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{
		api:        filepath.Join(dir, "api"),
		worker:     filepath.Join(dir, "worker"),
		natsServer: filepath.Join(dir, "nats-server"),
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := goBuild(ctx, root, dir+string(filepath.Separator), "./cmd/api", "./cmd/worker"); err != nil {
		return binaries{}, err
	}
	if err := goBuild(ctx, root, b.natsServer, "./internal/cmd/nats-server"); err != nil {
		return binaries{}, err
	}
	return b, nil
}

func goBuild(ctx context.Context, root, out string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", out}, pkgs...)...)
	cmd.Dir = root
	// The binaries as deployed: no cgo (the Dockerfile's setting).
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: go build %s: %w\n%s", strings.Join(pkgs, " "), err, msg)
	}
	return nil
}

// moduleRoot is the directory of this module's go.mod: `go run ./cmd/bench`
// may be started from any directory inside it.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "-json", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	var env struct{ GOMOD string }
	if err := json.Unmarshal(out, &env); err != nil || env.GOMOD == "" || env.GOMOD == os.DevNull {
		return "", fmt.Errorf("bench: not inside the module (go env GOMOD: %q): run it from the checkout", strings.TrimSpace(string(out)))
	}
	return filepath.Dir(env.GOMOD), nil
}
