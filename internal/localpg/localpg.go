// Package localpg runs a PostgreSQL cluster from the machine's own server
// binaries (initdb, postgres), for tests and for the no-Docker dev stack.
//
// A throwaway cluster lives in a fresh temporary directory, runs with
// fsync=off and is deleted by Stop. A persistent cluster lives in a directory
// the caller names and is reused across runs, so `make run` keeps its data.
//
// The server is a child process of the caller (not daemonized by pg_ctl) and,
// on Linux, is told to shut down when the caller dies, so a test binary killed
// by a timeout or a dev stack killed with SIGKILL does not leave a server
// running. It listens on 127.0.0.1 only and keeps its Unix socket inside the
// data directory. When the caller is root, which PostgreSQL refuses to run as,
// initdb and postgres run as the "postgres" OS user, and a persistent
// cluster whose directory that user cannot reach (a checkout in /root) lives
// under DefaultSharedDir instead, with a symlink in its place.
package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Superuser is the role initdb creates; every DSN connects as it, without a
// password (trust authentication on loopback).
const Superuser = "postgres"

// Options configures Start.
type Options struct {
	// Dir holds the cluster: its data directory (Dir/data) and server log
	// (Dir/postgres.log). Required when Persistent. For a throwaway cluster it
	// is the parent of a fresh temporary directory ("" = os.TempDir()).
	Dir string
	// Port to listen on at 127.0.0.1; 0 picks a free one.
	Port int
	// Persistent keeps the data across Stop and reuses an initialized data
	// directory; throwaway clusters trade durability for speed (fsync=off).
	Persistent bool
	// BinDir holds initdb and postgres; "" looks in PATH, then in the usual
	// Debian and source-install locations.
	BinDir string
	// MaxConnections is the server's max_connections; 0 means 200.
	MaxConnections int
	// StartTimeout bounds initdb plus server start-up when ctx has no earlier
	// deadline; 0 means 60 s.
	StartTimeout time.Duration
	// SharedDir is where a persistent cluster lives when the server's OS
	// user cannot reach Dir: the caller is root, so the server runs as
	// "postgres", and Dir is inside a directory other users cannot enter
	// (a checkout in /root). The cluster then lives in SharedDir/<hash of
	// Dir's absolute path> and Dir is a symlink to it, kept across runs.
	// "" means DefaultSharedDir.
	SharedDir string
}

// Cluster is a running PostgreSQL server started by Start.
type Cluster struct {
	root       string // Dir, or the temporary directory of a throwaway cluster
	dataDir    string
	logPath    string
	port       int
	persistent bool

	cmd  *exec.Cmd
	done chan struct{} // closed when the server process has exited
	err  error         // the process's exit status; read after done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start initializes (when needed) and starts a cluster, and returns once it
// accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Persistent && opts.Dir == "" {
		return nil, errors.New("localpg: a persistent cluster needs Options.Dir")
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 200
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	owner, err := serverUser()
	if err != nil {
		return nil, err
	}

	root, err := prepareRoot(opts, owner)
	if err != nil {
		return nil, err
	}
	c, err := start(ctx, opts, bins, owner, root)
	if err != nil && !opts.Persistent {
		os.RemoveAll(root)
	}
	return c, err
}

func start(ctx context.Context, opts Options, bins binaries, owner *osUser, root string) (*Cluster, error) {
	if err := owner.chown(root); err != nil {
		return nil, err
	}
	if err := owner.checkReachable(root); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(root, "data")
	logPath := filepath.Join(root, "postgres.log")

	initialized, err := isInitialized(dataDir)
	if err != nil {
		return nil, err
	}
	if initialized {
		if err := checkVersion(ctx, bins, dataDir); err != nil {
			return nil, err
		}
		if err := clearStaleLock(dataDir); err != nil {
			return nil, err
		}
	} else {
		if err := initdb(ctx, bins, owner, dataDir, logPath, !opts.Persistent); err != nil {
			return nil, err
		}
	}

	// A port picked by us may be taken by someone else before the server
	// binds it; pick again a few times rather than fail a test run.
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	for i := 1; ; i++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		c := &Cluster{
			root:       root,
			dataDir:    dataDir,
			logPath:    logPath,
			port:       port,
			persistent: opts.Persistent,
			done:       make(chan struct{}),
		}
		err = c.run(ctx, bins, owner, opts)
		if err == nil {
			return c, nil
		}
		if i >= attempts || ctx.Err() != nil || !strings.Contains(err.Error(), "in use") {
			return nil, err
		}
	}
}

// DSN returns a libpq URL for database dbname on this cluster.
func (c *Cluster) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory (PGDATA).
func (c *Cluster) DataDir() string { return c.dataDir }

// LogPath is the server's log file; its tail is quoted in start-up errors.
func (c *Cluster) LogPath() string { return c.logPath }

// Stop shuts the server down (fast shutdown: sessions are disconnected, a
// checkpoint is written) and, for a throwaway cluster, deletes its files.
// If ctx ends first the server is killed. Stop is safe to call more than once.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.stop(ctx)
		if !c.persistent {
			if err := os.RemoveAll(c.root); err != nil && c.stopErr == nil {
				c.stopErr = fmt.Errorf("localpg: remove cluster: %w", err)
			}
		}
	})
	return c.stopErr
}

func (c *Cluster) stop(ctx context.Context) error {
	select {
	case <-c.done:
		return c.exitError("server exited before Stop")
	default:
	}
	// SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait
	// for every client to disconnect.
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		return nil // exit status after a requested shutdown is not interesting
	case <-ctx.Done():
	}
	// SIGQUIT is "immediate" shutdown; the next start runs crash recovery.
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return fmt.Errorf("localpg: server did not shut down in time: %w", ctx.Err())
}

func (c *Cluster) exitError(what string) error {
	return fmt.Errorf("localpg: %s (%v); server log %s:\n%s", what, c.err, c.logPath, tail(c.logPath))
}
