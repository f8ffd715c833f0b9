// Command api is the ingest API: it validates telemetry readings, publishes
// them to NATS JetStream and answers 202 once they are durable. Configuration
// comes from the environment only; `api -h` lists it (see docs/api.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
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
	cfg, err := config.LoadAPI(getenv)
	if err := errors.Join(logErr, err); err != nil {
		fmt.Fprintf(stderr, "%v\n(api -h lists every variable with its default)\n", err)
		return exitUsage
	}
	log := logCfg.Logger(stdout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := api.Run(ctx, cfg, log); err != nil {
		log.Error("api failed", "error", err)
		return exitFail
	}
	return exitOK
}
