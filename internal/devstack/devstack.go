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
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// prepareState creates the state directory, checks the API address, picks
// the admin addresses and loads (or generates) the keys kept under Dir; it
// starts nothing, so a failure here leaves nothing to stop.
func (s *stack) prepareState() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if err := checkListenAddr(s.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("devstack: API address %s is taken (set HTTP_ADDR to another one): %w", s.cfg.HTTPAddr, err)
	}
	var err error
	if s.apiAdmin, err = freeAddr(s.cfg.APIAdminAddr); err != nil {
		return err
	}
	if s.workerAdmin, err = freeAddr(s.cfg.WorkerAdminAddr); err != nil {
		return err
	}
	if s.keys, err = loadKeys(s.cfg.Dir, s.cfg.Getenv); err != nil {
		return err
	}
	s.log.Info("photo encryption keys", "ids", s.keys.keyIDs, "active", strings.Split(s.keys.keyIDs, ",")[0],
		"kept_in", filepath.Join(s.cfg.Dir, KeyFile))
	s.apiDBPassword, err = persistedSecret(filepath.Join(s.cfg.Dir, "api-db-password"), func() (string, error) {
		return randomHex(24)
	})
	return err
}

// startNATS starts the embedded NATS server, its JetStream store under
// Dir/nats.
func (s *stack) startNATS() error {
	ns, err := startNATSServer(filepath.Join(s.cfg.Dir, "nats"), s.cfg.NATSPort, s.cfg.Getenv("LOG_LEVEL") == "debug")
	if err != nil {
		return err
	}
	s.nats = ns
	s.log.Info("NATS with JetStream started", "url", ns.ClientURL(), "store", ns.StoreDir())
	return nil
}

func (s *stack) stopNATS() {
	s.nats.Shutdown()
	s.nats.WaitForShutdown()
	s.log.Info("NATS stopped")
}

// startPostgres uses the caller's server (DATABASE_URL), or else our
// persistent cluster.
func (s *stack) startPostgres(ctx context.Context) error {
	if s.cfg.DatabaseURL != "" {
		s.dsn = s.cfg.DatabaseURL
		s.log.Info("using PostgreSQL from DATABASE_URL")
		return nil
	}
	pg, err := startCluster(ctx, s.cfg.Dir, s.cfg.PGPort, s.log)
	if err != nil {
		return err
	}
	s.pg, s.dsn = pg, pg.DSN(DatabaseName)
	return nil
}

// stopPostgres stops the cluster startPostgres started, if any.
func (s *stack) stopPostgres() error {
	if s.pg == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.pg.Stop(ctx)
	s.log.Info("PostgreSQL stopped")
	return err
}

// runAPIAndWorker configures the API and the worker through their own config
// loaders, runs them and prints the banner once both are ready; it returns
// when either stops (or ctx ends), both stopped.
func (s *stack) runAPIAndWorker(ctx context.Context) error {
	readDSN, err := apiDSN(s.dsn, s.apiDBPassword)
	if err != nil {
		return err
	}
	apiCfg, err := config.LoadAPI(s.apiEnv(readDSN))
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	workerCfg, err := config.LoadWorker(s.workerEnv())
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}

	// The worker starts first and the API once the worker's admin listener
	// is up (it opens after the streams are in place and the migrations ran)
	// and the API's database role is set up (it needs 0002's challenge_reader).
	// Both create or update the JetStream topology at start-up; doing it one
	// after the other keeps clear of a data race inside nats-server 2.10
	// between a stream update and an account-info request (reported
	// upstream as nats-io/nats-server#8114), which -race reports.
	apiUser := make(chan string, 1) // the database user the API reads as, for the banner
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := worker.Run(gctx, workerCfg, s.logger("worker", workerCfg.LogLevel)); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		return gctx.Err() // returning early without an error still stops the stack
	})
	g.Go(func() error {
		if err := waitHTTP(gctx, "http://"+dialAddr(s.workerAdmin)+"/healthz", 0); err != nil {
			return nil // the stack is stopping; the worker's error says why
		}
		readCfg, user, err := s.apiDatabase(gctx, apiCfg)
		if err != nil {
			return err
		}
		apiUser <- user
		if err := api.Run(gctx, readCfg, s.logger("api", readCfg.LogLevel)); err != nil {
			return fmt.Errorf("api: %w", err)
		}
		return gctx.Err()
	})
	g.Go(func() error {
		s.printBannerWhenReady(gctx, apiUser, rateLimitLine(apiCfg))
		return nil
	})
	err = g.Wait()
	s.log.Info("API and worker stopped")
	return err
}

// apiEnv is the API's environment: the caller's, overlaid with the dev
// stack's addresses and API key, the database as dsn, and the photo keys
// (the image route decrypts with them).
func (s *stack) apiEnv(dsn string) config.Getenv {
	return overlay(withPhotoKeys(s.cfg.Getenv, s.keys.encryptionKeys), map[string]string{
		"HTTP_ADDR":    s.cfg.HTTPAddr,
		"ADMIN_ADDR":   s.apiAdmin,
		"NATS_URL":     s.nats.ClientURL(),
		"API_KEYS":     s.keys.apiKeys,
		"DATABASE_URL": dsn,
	})
}

// apiDatabase sets up APIRole, once the worker has migrated, and returns
// the API's configuration and the database user it reads as. When the role
// cannot be set up (DATABASE_URL names a server where the owner may not
// create roles) the API reads as the owner, with a warning: the dev stack
// favours a working read API over least privilege there.
func (s *stack) apiDatabase(ctx context.Context, cfg config.API) (config.API, string, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := ensureAPIRole(rctx, s.dsn, s.apiDBPassword)
	if err == nil {
		return cfg, APIRole + ", a member of " + readerRole, nil
	}
	s.log.Warn("the API reads as the database owner: its own role could not be set up "+
		"(an administrator can create it as deploy/postgres-init/10-api-role.sh does)", "role", APIRole, "err", err)
	cfg, err = config.LoadAPI(s.apiEnv(s.dsn))
	if err != nil {
		return cfg, "", fmt.Errorf("devstack: %w", err)
	}
	return cfg, "the owner: " + APIRole + " could not be set up, see the log", nil
}

// workerEnv is the worker's environment: the caller's, overlaid with the dev
// stack's addresses, database, key and Rekognition settings.
func (s *stack) workerEnv() config.Getenv {
	return overlay(withPhotoKeys(s.cfg.Getenv, s.keys.encryptionKeys), mergeMaps(map[string]string{
		"ADMIN_ADDR":   s.workerAdmin,
		"NATS_URL":     s.nats.ClientURL(),
		"DATABASE_URL": s.dsn,
	}, s.rekog.env))
}

// printBannerWhenReady prints the banner once the API and the worker answer
// /readyz; if they take too long it prints it anyway, with a warning, and if
// the stack is stopping it prints nothing.
func (s *stack) printBannerWhenReady(ctx context.Context, apiUser <-chan string, rateLimit string) {
	err := waitHTTP(ctx, "http://"+dialAddr(s.apiAdmin)+"/readyz", 2*time.Minute)
	if err == nil {
		err = waitHTTP(ctx, "http://"+dialAddr(s.workerAdmin)+"/readyz", 10*time.Second)
	}
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.log.Warn("the API or the worker is not ready yet; printing the banner anyway", "err", err)
	}
	var user string
	select {
	case user = <-apiUser:
	case <-ctx.Done():
		return
	}
	printBanner(s.cfg.Out, banner{
		apiURL:      "http://" + dialAddr(s.cfg.HTTPAddr),
		rateLimit:   rateLimit,
		apiAdmin:    "http://" + dialAddr(s.apiAdmin),
		workerAdmin: "http://" + dialAddr(s.workerAdmin),
		natsURL:     s.nats.ClientURL(),
		natsStore:   s.nats.StoreDir(),
		dsn:         s.dsn,
		apiDBUser:   user,
		devKey:      s.keys.devSecret,
		rekognition: s.rekog.describe,
		now:         time.Now(),
	})
}

// startCluster starts (initializing on first use) the persistent cluster
// under dir/pg and creates the dev database. As root in a checkout the
// "postgres" user cannot enter (/root), dir/pg is a link to the cluster in
// localpg.DefaultSharedDir (SPEC §6: make run works from wherever the
// checkout is).
func startCluster(ctx context.Context, dir string, port int, log *slog.Logger) (*localpg.Cluster, error) {
	if port != 0 && !localpg.PortFree(port) {
		log.Info("PostgreSQL port busy, picking a free one", "port", port)
		port = 0
	}
	t0 := time.Now()
	pg, err := localpg.Start(ctx, localpg.Options{Dir: filepath.Join(dir, "pg"), Port: port, Persistent: true})
	if err != nil {
		return nil, fmt.Errorf("devstack: PostgreSQL (set DATABASE_URL to use an existing server instead): %w", err)
	}
	if err := pg.CreateDatabase(ctx, DatabaseName); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, errors.Join(fmt.Errorf("devstack: %w", err), pg.Stop(sctx))
	}
	log.Info("PostgreSQL started", "port", pg.Port(), "data", pg.DataDir(), "took", time.Since(t0).Round(time.Millisecond))
	if link := filepath.Join(dir, "pg"); isSymlink(link) {
		log.Info("the cluster lives outside the checkout, where the postgres OS user can reach it; "+
			"make clean removes the link, and the next make run starts a new cluster there", "link", link, "cluster", filepath.Dir(pg.DataDir()))
	}
	return pg, nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
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
