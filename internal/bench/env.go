package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Options are the run's knobs, shared by every section.
type Options struct {
	Rounds      int           // alternated rounds per comparison; the median is reported
	Round       time.Duration // length of one measured round
	Warmup      time.Duration // load sent before each round and not measured
	Connections int           // keep-alive connections of the load generator
	// SyncAlways makes the embedded NATS servers fsync every write, as
	// deploy/nats.conf does; off, they use the server's default (a sync
	// every 2 minutes), which measures CPU rather than this machine's disk.
	SyncAlways bool
	Log        io.Writer // progress lines; never nil
}

// Env gives sections what they measure against: embedded NATS servers
// with JetStream and fresh PostgreSQL databases, all on 127.0.0.1. It
// starts PostgreSQL only when a section first asks for a database.
type Env struct {
	Options

	tmp string

	pgOnce sync.Once
	pg     *localpg.Cluster
	pgErr  error
	dbSeq  atomic.Int64

	mu      sync.Mutex
	closers []func()
}

// NewEnv prepares an environment; Close releases everything it started.
func NewEnv(opts Options) (*Env, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	tmp, err := os.MkdirTemp("", "challenge-bench-")
	if err != nil {
		return nil, err
	}
	// The PostgreSQL server runs as "postgres" when we are root; it must be
	// able to enter this directory.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	return &Env{Options: opts, tmp: tmp}, nil
}

// Logf writes one progress line.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.Log, "bench: "+format+"\n", args...)
}

// OnClose registers f to run at Close, last registered first.
func (e *Env) OnClose(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, f)
}

// Close stops every server the environment started and removes its files.
func (e *Env) Close() {
	e.mu.Lock()
	closers := e.closers
	e.closers = nil
	e.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	if e.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = e.pg.Stop(ctx)
		cancel()
	}
	os.RemoveAll(e.tmp)
}

// NATS is an embedded NATS server with JetStream, stopped at Close (or
// earlier with Stop).
type NATS struct {
	URL    string
	Server *server.Server
}

// Stop shuts the server down.
func (n *NATS) Stop() {
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
}

// NewNATS starts a fresh embedded NATS server with JetStream on a random
// loopback port, with the project's max_payload, its own store directory,
// and fsync as Options.SyncAlways says. Sections that compare variants give
// each the same kind of server; a fresh one per variant keeps one variant's
// backlog from slowing the next.
func (e *Env) NewNATS() (*NATS, error) {
	dir, err := os.MkdirTemp(e.tmp, "nats-")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		Host:         "127.0.0.1",
		Port:         server.RANDOM_PORT,
		JetStream:    true,
		StoreDir:     dir,
		MaxPayload:   messaging.MaxMessageBytes,
		NoLog:        true,
		NoSigs:       true,
		PingInterval: 2 * time.Minute,
		SyncAlways:   e.SyncAlways,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bench: NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bench: NATS server not ready within 10 s")
	}
	addr := srv.Addr().(*net.TCPAddr)
	n := &NATS{URL: "nats://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port)), Server: srv}
	var once sync.Once
	e.OnClose(func() { once.Do(n.Stop) })
	return n, nil
}

// NewDatabase creates a fresh database with the project's migrations
// applied and returns its DSN (superuser, trust on loopback). The first
// call starts a throwaway PostgreSQL cluster from the machine's binaries.
func (e *Env) NewDatabase(ctx context.Context) (string, error) {
	e.pgOnce.Do(func() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		e.Logf("starting PostgreSQL")
		e.pg, e.pgErr = localpg.Start(sctx, localpg.Options{Dir: e.tmp})
	})
	if e.pgErr != nil {
		return "", fmt.Errorf("bench: PostgreSQL: %w", e.pgErr)
	}
	name := fmt.Sprintf("bench_%d", e.dbSeq.Add(1))
	if err := localpg.CreateDatabase(ctx, e.pg.DSN("postgres"), name); err != nil {
		return "", err
	}
	dsn := e.pg.DSN(name)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	if err := storage.Migrate(ctx, pool); err != nil {
		return "", fmt.Errorf("bench: migrations: %w", err)
	}
	return dsn, nil
}
