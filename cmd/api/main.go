// Command api is the ingest API: it validates telemetry readings, publishes
// them to NATS JetStream and answers 202 once they are durable. Configuration
// comes from the environment (see docs/api.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
)

func main() {
	logCfg, logErr := config.LoadLog(os.Getenv, config.LogJSON)
	cfg, err := config.LoadAPI(os.Getenv)
	if err := errors.Join(logErr, err); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := logCfg.Logger(os.Stdout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = api.Run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("api failed", "error", err)
		os.Exit(1)
	}
}
