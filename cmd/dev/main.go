// Command dev runs the whole system on this machine without Docker (`make
// run`): embedded NATS with JetStream, a local PostgreSQL under ./.devstack
// (or DATABASE_URL), the API and the worker. Ctrl-C stops everything.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devstack.Run(ctx, devstack.ConfigFromEnv(os.Getenv)); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}
