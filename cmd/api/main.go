// Command api is the ingest API: it validates telemetry readings, publishes
// them to NATS JetStream and answers 202 once they are durable. Configuration
// comes from the environment only; `api -h` lists it (see docs/api.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/tracing"
)

const about = `api: the challenge-v3 ingest API. It validates telemetry readings (gyroscope,
GPS, photos), publishes them to NATS JetStream and answers 202 once JetStream
has stored them; with DATABASE_URL it also serves the read API. See docs/api.md.
`

const usage = `usage:
  api              run the API; it is configured by the environment only
  api -h | help    this help`

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the API stopped with an error
	exitUsage = 2 // bad arguments or environment
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run runs the api command and returns its exit code; logs go to stdout,
// usage and configuration errors to stderr.
func run(args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if len(args) == 1 && config.IsHelp(args[0]) {
			fmt.Fprintf(stdout, "%s\n%s\n\nenvironment:\n", about, usage)
			config.WriteVars(stdout, config.CommandAPI)
			return exitOK
		}
		fmt.Fprintf(stderr, "api: unexpected argument %q; the API takes no arguments, only environment variables\n%s\n", args[0], usage)
		return exitUsage
	}
	logCfg, logErr := config.LoadLog(getenv, config.LogJSON)
	traceCfg, traceErr := config.LoadTracing(getenv)
	cfg, err := config.LoadAPI(getenv)
	if err := errors.Join(logErr, traceErr, err); err != nil {
		fmt.Fprintf(stderr, "%v\n(api -h lists every variable with its default)\n", err)
		return exitUsage
	}
	log := logCfg.Logger(stdout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdown, err := tracing.Setup(ctx, tracing.ServiceAPI, traceCfg, log)
	if err != nil {
		log.Error("api failed", "error", err)
		return exitFail
	}
	defer flushSpans(shutdown, log)
	if err := api.Run(ctx, cfg, log); err != nil {
		log.Error("api failed", "error", err)
		return exitFail
	}
	return exitOK
}

// flushSpans sends the spans still buffered (the last requests') once the
// API has stopped, within a bound of its own: a collector that does not
// answer never holds up the exit.
func flushSpans(shutdown func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("tracing: spans not flushed at exit", "err", err)
	}
}
