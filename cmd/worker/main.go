// Command worker consumes the telemetry queues and stores the readings in
// PostgreSQL (see docs/worker.md). Configuration comes from the environment.
//
//	worker          run the worker (default)
//	worker migrate  apply the database migrations and exit (needs DATABASE_URL only)
//	worker dlq list [-n 50]
//	worker dlq replay SEQ [SEQ...] | -all [-n 1000]
//	                inspect and replay dead letters (needs NATS_URL only; see dlq.go)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := "worker"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	switch cmd {
	case "worker":
		logCfg, logErr := config.LoadLog(os.Getenv, config.LogJSON)
		cfg, err := config.LoadWorker(os.Getenv)
		if err := errors.Join(logErr, err); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		log := logCfg.Logger(os.Stdout)
		if err := worker.Run(ctx, cfg, log); err != nil {
			log.Error("worker failed", "error", err)
			os.Exit(1)
		}
	case "migrate":
		logCfg, logErr := config.LoadLog(os.Getenv, config.LogJSON)
		cfg, err := config.LoadMigrate(os.Getenv)
		if err := errors.Join(logErr, err); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		log := logCfg.Logger(os.Stdout)
		if err := worker.Migrate(ctx, cfg.DatabaseURL); err != nil {
			log.Error("migration failed", "error", err)
			os.Exit(1)
		}
		log.Info("database schema is up to date")
	case "dlq":
		os.Exit(runDLQ(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "usage: worker [migrate | dlq list|replay ...]\nunknown command %q\n", cmd)
		os.Exit(2)
	}
}
