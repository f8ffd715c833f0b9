// Package devstack runs the whole system on one machine without Docker, for
// `make run`: an embedded NATS server with JetStream, a local PostgreSQL
// cluster (or the server named by DATABASE_URL), local face recognition
// behind the Rekognition API (rekognitionlocal) unless AWS is configured, and
// the API and the worker in-process, each configured through its own config
// loader exactly as the deployed binaries are.
//
// State that must outlive a run lives under Config.Dir (./.devstack): the
// JetStream store, the PostgreSQL cluster, the face collection, the photo
// encryption keys (rows encrypted by one run must decrypt in the next,
// including under keys a run was given in ENCRYPTION_KEYS), the dev API key
// (so a printed curl line keeps working) and the password of the API's
// database role. `make clean` deletes it.
//
// The worker connects as the database owner (it migrates and writes); the
// API as APIRole, a login role in challenge_reader (migration 0002) that the
// stack creates once the worker has migrated: the read routes run with the
// least privilege they need, as in the compose deployment.
package devstack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// DatabaseName is the database the dev stack creates in its own cluster.
const DatabaseName = "telemetry"

// Config says where the dev stack keeps its state and which ports it
// prefers. Build it with ConfigFromEnv.
type Config struct {
	// Dir holds everything the stack persists; "./.devstack" by default.
	Dir string
	// HTTPAddr is the API's public listener. The dev stack binds loopback by
	// default: it prints its key to the terminal; HTTP_ADDR=:8080 opens it
	// to the network (a phone on the LAN).
	HTTPAddr string
	// APIAdminAddr and WorkerAdminAddr are the two admin listeners (metrics,
	// health); a busy port is replaced by a free one.
	APIAdminAddr    string
	WorkerAdminAddr string
	// NATSPort and PGPort are preferred ports; a busy one is replaced by a
	// free one.
	NATSPort int
	PGPort   int
	// DatabaseURL names an existing PostgreSQL database to use instead of a
	// local cluster.
	DatabaseURL string
	// Getenv is the environment the binaries' settings come from; the dev
	// stack overlays its own values (addresses, URLs, generated keys).
	Getenv config.Getenv
	// Out receives the banner with the URL, the key and the curl line.
	Out io.Writer
	// LogOutput receives the logs of the dev stack, the API and the worker
	// (text, one line per record, tagged with the component), at the level
	// LOG_LEVEL sets; nil means os.Stderr.
	LogOutput io.Writer
}

// ConfigFromEnv builds the default Config, honouring DATABASE_URL and
// HTTP_ADDR from getenv.
func ConfigFromEnv(getenv config.Getenv) Config {
	c := Config{
		Dir:             ".devstack",
		HTTPAddr:        "127.0.0.1:8080",
		APIAdminAddr:    "127.0.0.1:8081",
		WorkerAdminAddr: "127.0.0.1:8082",
		NATSPort:        4222,
		PGPort:          5433,
		DatabaseURL:     getenv("DATABASE_URL"),
		Getenv:          getenv,
		Out:             os.Stdout,
		LogOutput:       os.Stderr,
	}
	if v := getenv("HTTP_ADDR"); v != "" {
		c.HTTPAddr = v
	}
	return c
}

// Run starts the stack and blocks until ctx is cancelled (Ctrl-C) or a part
// fails; it then stops the API and the worker, the local face recognition
// service if it started one, the PostgreSQL cluster if it started one, and
// NATS last.
func Run(ctx context.Context, cfg Config) (err error) {
	s := &stack{cfg: withDefaults(cfg)}
	s.log = s.logger("devstack", slog.LevelInfo)
	defer func() {
		// Ctrl-C is how the dev stack is meant to end, during start-up too.
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil
		}
	}()

	// A step that starts something defers its stop as soon as it has
	// succeeded, so whichever step fails, what already runs is stopped, in
	// reverse order: NATS starts first and stops last.
	if err := s.prepareState(); err != nil {
		return err
	}
	if err := s.startNATS(); err != nil {
		return err
	}
	defer s.stopNATS()
	if err := s.startPostgres(ctx); err != nil {
		return err
	}
	defer func() {
		if stopErr := s.stopPostgres(); stopErr != nil {
			err = errors.Join(err, stopErr) // Run's result
		}
	}()
	if s.rekog, err = startRekognition(s.cfg.Getenv, s.cfg.Dir, s.logger("rekognition-local", slog.LevelInfo)); err != nil {
		return err
	}
	defer func() {
		if stopErr := s.rekog.close(); stopErr != nil {
			err = errors.Join(err, stopErr) // Run's result
		}
	}()
	return s.runAPIAndWorker(ctx)
}

// withDefaults fills in the Config fields a caller may leave zero.
func withDefaults(cfg Config) Config {
	if cfg.Getenv == nil {
		// The caller's environment comes from cmd/dev (ConfigFromEnv with
		// os.Getenv); the dev stack never reads the process's itself.
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	return cfg
}

// stack is what Run's steps have set up so far: each step fills in what the
// later ones need. The fields do not change once the API and the worker run.
type stack struct {
	cfg Config
	log *slog.Logger

	apiAdmin, workerAdmin string // admin listen addresses, a busy preferred port replaced
	keys                  keys
	nats                  *server.Server
	pg                    *localpg.Cluster // nil when DATABASE_URL names the server
	dsn                   string           // the owner's: the worker's
	apiDBPassword         string           // APIRole's, kept under Dir
	rekog                 rekognitionSetup
}

// logger returns a text logger writing to LogOutput, tagged with component.
func (s *stack) logger(component string, level slog.Level) *slog.Logger {
	h := slog.NewTextHandler(s.cfg.LogOutput, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("component", component)
}
