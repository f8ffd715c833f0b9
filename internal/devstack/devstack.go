// Package devstack runs the whole system on one machine without Docker, for
// `make run`: an embedded NATS server with JetStream, a local PostgreSQL
// cluster (or the server named by DATABASE_URL), and the API and the worker
// in-process, each configured through its own config loader exactly as the
// deployed binaries are.
//
// State that must outlive a run lives under Config.Dir (./.devstack): the
// JetStream store, the PostgreSQL cluster, the photo encryption key (rows
// encrypted by one run must decrypt in the next) and the dev API key (so a
// printed curl line keeps working). `make clean` deletes it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/worker"
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
// fails; it then stops the API and the worker, then NATS, then the
// PostgreSQL cluster if it started one.
func Run(ctx context.Context, cfg Config) (err error) {
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
	newLogger := func(component string, level slog.Level) *slog.Logger {
		h := slog.NewTextHandler(cfg.LogOutput, &slog.HandlerOptions{Level: level})
		return slog.New(h).With("component", component)
	}
	log := newLogger("devstack", slog.LevelInfo)
	defer func() {
		// Ctrl-C is how the dev stack is meant to end, during start-up too.
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil
		}
	}()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if err := checkListenAddr(cfg.HTTPAddr); err != nil {
		return fmt.Errorf("devstack: API address %s is taken (set HTTP_ADDR to another one): %w", cfg.HTTPAddr, err)
	}
	apiAdmin, err := freeAddr(cfg.APIAdminAddr)
	if err != nil {
		return err
	}
	workerAdmin, err := freeAddr(cfg.WorkerAdminAddr)
	if err != nil {
		return err
	}

	// NATS first, stopped last.
	ns, err := startNATS(filepath.Join(cfg.Dir, "nats"), cfg.NATSPort, cfg.Getenv("LOG_LEVEL") == "debug")
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		log.Info("NATS stopped")
	}()
	natsURL := ns.ClientURL()
	log.Info("NATS with JetStream started", "url", natsURL, "store", ns.StoreDir())

	// PostgreSQL: the caller's server, or our persistent cluster.
	dsn := cfg.DatabaseURL
	if dsn == "" {
		pg, dsnLocal, pgErr := startPostgres(ctx, cfg.Dir, cfg.PGPort, log)
		if pgErr != nil {
			return pgErr
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if stopErr := pg.Stop(sctx); stopErr != nil {
				err = errors.Join(err, stopErr) // Run's result
			}
			log.Info("PostgreSQL stopped")
		}()
		dsn = dsnLocal
	} else {
		log.Info("using PostgreSQL from DATABASE_URL")
	}

	keys, err := loadKeys(cfg.Dir, cfg.Getenv)
	if err != nil {
		return err
	}

	rekog := startRekognition(cfg.Getenv)
	defer rekog.close()

	apiEnv := overlay(cfg.Getenv, map[string]string{
		"HTTP_ADDR":  cfg.HTTPAddr,
		"ADMIN_ADDR": apiAdmin,
		"NATS_URL":   natsURL,
		"API_KEYS":   keys.apiKeys,
	})
	workerEnv := overlay(cfg.Getenv, mergeMaps(map[string]string{
		"ADMIN_ADDR":     workerAdmin,
		"NATS_URL":       natsURL,
		"DATABASE_URL":   dsn,
		"ENCRYPTION_KEY": keys.encryptionKey, // "" when the environment has ENCRYPTION_KEY(S)
	}, rekog.env))

	apiCfg, err := config.LoadAPI(apiEnv)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	workerCfg, err := config.LoadWorker(workerEnv)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}

	// The worker starts first and the API once the worker's admin listener
	// is up (it opens after the streams are in place and the migrations ran).
	// Both create or update the JetStream topology at start-up; doing it one
	// after the other keeps clear of a data race inside nats-server 2.10
	// between a stream update and an account-info request (reported
	// upstream as nats-io/nats-server#8114), which -race reports.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := worker.Run(gctx, workerCfg, newLogger("worker", workerCfg.LogLevel)); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		return gctx.Err() // returning early without an error still stops the stack
	})
	g.Go(func() error {
		if err := waitHTTP(gctx, "http://"+dialAddr(workerAdmin)+"/healthz", 0); err != nil {
			return nil // the stack is stopping; the worker's error says why
		}
		if err := api.Run(gctx, apiCfg, newLogger("api", apiCfg.LogLevel)); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		return gctx.Err()
	})
	g.Go(func() error {
		err := waitHTTP(gctx, "http://"+dialAddr(apiAdmin)+"/readyz", 2*time.Minute)
		if err == nil {
			err = waitHTTP(gctx, "http://"+dialAddr(workerAdmin)+"/readyz", 10*time.Second)
		}
		if gctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("the API or the worker is not ready yet; printing the banner anyway", "err", err)
		}
		printBanner(cfg.Out, banner{
			apiURL:      "http://" + dialAddr(cfg.HTTPAddr),
			apiAdmin:    "http://" + dialAddr(apiAdmin),
			workerAdmin: "http://" + dialAddr(workerAdmin),
			natsURL:     natsURL,
			natsStore:   ns.StoreDir(),
			dsn:         dsn,
			devKey:      keys.devSecret,
			rekognition: rekog.describe,
			now:         time.Now(),
		})
		return nil
	})
	err = g.Wait()
	log.Info("API and worker stopped")
	return err
}

// startPostgres starts (initializing on first use) the persistent cluster
// under dir/pg and creates the dev database.
func startPostgres(ctx context.Context, dir string, port int, log *slog.Logger) (*localpg.Cluster, string, error) {
	if port != 0 && !localpg.PortFree(port) {
		log.Info("PostgreSQL port busy, picking a free one", "port", port)
		port = 0
	}
	t0 := time.Now()
	pg, err := localpg.Start(ctx, localpg.Options{Dir: filepath.Join(dir, "pg"), Port: port, Persistent: true})
	if err != nil {
		return nil, "", fmt.Errorf("devstack: PostgreSQL (set DATABASE_URL to use an existing server instead): %w", err)
	}
	if err := pg.CreateDatabase(ctx, DatabaseName); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, "", errors.Join(fmt.Errorf("devstack: %w", err), pg.Stop(sctx))
	}
	log.Info("PostgreSQL started", "port", pg.Port(), "data", pg.DataDir(), "took", time.Since(t0).Round(time.Millisecond))
	return pg, pg.DSN(DatabaseName), nil
}

// overlay returns a Getenv that answers from m first (non-empty values
// only), then from base.
func overlay(base config.Getenv, m map[string]string) config.Getenv {
	return func(name string) string {
		if v, ok := m[name]; ok && v != "" {
			return v
		}
		return base(name)
	}
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// checkListenAddr reports whether addr can be listened on now.
func checkListenAddr(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// freeAddr returns addr if it can be listened on, else the same host with a
// free port.
func freeAddr(addr string) (string, error) {
	if checkListenAddr(addr) == nil {
		return addr, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("devstack: %q: %w", addr, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("devstack: no free port on %q: %w", host, err)
	}
	defer l.Close()
	return net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// dialAddr turns a listen address into one a client on this machine can
// dial (":8080" → "127.0.0.1:8080").
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
