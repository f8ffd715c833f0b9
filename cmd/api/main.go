// Command api is the ingest API: it validates telemetry readings, publishes
// them to NATS JetStream and answers 202 once they are durable. Configuration
// comes from the environment (see docs/api.md).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
)

func main() {
	cfg, err := config.LoadAPI(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = api.Run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("api failed", "error", err)
		os.Exit(1)
	}
}
