// Command worker consumes the telemetry queues and stores the readings in
// PostgreSQL (see docs/worker.md). Configuration comes from the environment;
// `worker -h` lists it.
//
//	worker          run the worker (default)
//	worker migrate  apply the database migrations and exit (needs DATABASE_URL only)
//	worker dlq list|show|replay|purge ...
//	                inspect, replay and purge dead letters (NATS_URL; DATABASE_URL to audit)
//	worker rekey    re-seal photos under old keys with the active one (rekey.go)
//	worker status   backlog, dead letters and database at a glance (status.go)
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

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/tracing"
	"github.com/challenge-v3/challenge-v3/worker"
)

const about = `worker: the challenge-v3 worker. It consumes the telemetry queues of NATS
JetStream, recognises faces in photos (AWS Rekognition), seals photos with
AES-256-GCM and stores each reading with its audit row in PostgreSQL. See
docs/worker.md.
`

const usage = `usage:
  worker                        run the worker (the default)
  worker migrate                apply the database migrations and exit
  worker dlq list|show|replay|purge ...
                                inspect, replay and purge dead letters (worker dlq -h)
  worker rekey [-batch N] [-rate R]
                                re-seal old photos with the active key (worker rekey -h)
  worker status                 backlog per type, dead letters, database (worker status -h)
  worker -h | help [COMMAND]    this help, or a command's`

const migrateAbout = `worker migrate: apply the database migrations to DATABASE_URL and exit. The
worker also applies them at start-up, under an advisory lock.

usage:
  worker migrate
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run runs `worker ARGS...` and returns its exit code; logs and results go
// to stdout, usage and configuration errors to stderr.
func run(args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := "worker", []string(nil)
	if len(args) > 0 {
		cmd, rest = args[0], args[1:]
	}
	if config.IsHelp(cmd) {
		return help(rest, stdout, stderr)
	}
	switch cmd {
	case "worker", "migrate":
		if len(rest) == 1 && config.IsHelp(rest[0]) {
			return help([]string{cmd}, stdout, stderr)
		}
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "worker %s: unexpected argument %q\n%s\n", cmd, rest[0], usage)
			return exitUsage
		}
		if cmd == "migrate" {
			return runMigrate(ctx, getenv, stdout, stderr)
		}
		return runWorker(ctx, getenv, stdout, stderr)
	case "dlq":
		return runDLQ(ctx, rest, getenv, stdout, stderr)
	case "rekey":
		return runRekey(ctx, rest, getenv, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, getenv, stdout, stderr)
	}
	fmt.Fprintf(stderr, "worker: unknown command %q\n%s\n", cmd, usage)
	return exitUsage
}

// help prints to stdout the help of `worker`, or of the command args
// name; an unknown command gets the usage on stderr.
func help(args []string, stdout, stderr io.Writer) int {
	topic := "worker"
	if len(args) == 1 && !config.IsHelp(args[0]) {
		topic = args[0]
	} else if len(args) > 1 {
		topic = fmt.Sprint(args)
	}
	switch topic {
	case "worker":
		fmt.Fprintf(stdout, "%s\n%s\n\nenvironment of the worker:\n", about, usage)
		config.WriteVars(stdout, config.CommandWorker)
	case "migrate":
		fmt.Fprintf(stdout, "%s\nenvironment:\n", migrateAbout)
		config.WriteVars(stdout, config.CommandMigrate)
	case "dlq":
		dlqHelp(stdout)
	case "rekey":
		rekeyHelp(stdout)
	case "status":
		statusHelp(stdout)
	default:
		fmt.Fprintf(stderr, "worker: no help for %q; the commands are migrate, dlq, rekey and status\n%s\n", topic, usage)
		return exitUsage
	}
	return exitOK
}

func runWorker(ctx context.Context, getenv config.Getenv, stdout, stderr io.Writer) int {
	logCfg, logErr := config.LoadLog(getenv, config.LogJSON)
	traceCfg, traceErr := config.LoadTracing(getenv)
	cfg, err := config.LoadWorker(getenv)
	if err := errors.Join(logErr, traceErr, err); err != nil {
		fmt.Fprintf(stderr, "%v\n(worker -h lists every variable with its default)\n", err)
		return exitUsage
	}
	log := logCfg.Logger(stdout)
	shutdown, err := tracing.Setup(ctx, tracing.ServiceWorker, traceCfg, log)
	if err != nil {
		log.Error("worker failed", "error", err)
		return exitFail
	}
	defer flushSpans(shutdown, log)
	if err := worker.Run(ctx, cfg, log); err != nil {
		log.Error("worker failed", "error", err)
		return exitFail
	}
	return exitOK
}

func runMigrate(ctx context.Context, getenv config.Getenv, stdout, stderr io.Writer) int {
	logCfg, logErr := config.LoadLog(getenv, config.LogJSON)
	cfg, err := config.LoadMigrate(getenv)
	if err := errors.Join(logErr, err); err != nil {
		fmt.Fprintf(stderr, "%v\n(worker migrate -h lists its variables)\n", err)
		return exitUsage
	}
	log := logCfg.Logger(stdout)
	if err := worker.Migrate(ctx, cfg.DatabaseURL); err != nil {
		log.Error("migration failed", "error", err)
		return exitFail
	}
	log.Info("database schema is up to date")
	return exitOK
}

// flushSpans sends the spans still buffered (the last messages') once the
// worker has stopped, within a bound of its own: a collector that does not
// answer never holds up the exit.
func flushSpans(shutdown func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("tracing: spans not flushed at exit", "err", err)
	}
}
