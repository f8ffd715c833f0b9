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
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// CreateDatabase creates database name unless it already exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return CreateDatabase(ctx, c.DSN("postgres"), name)
}

// DropDatabase drops database name if it exists, disconnecting its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return DropDatabase(ctx, c.DSN("postgres"), name)
}

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

// run starts the server process and waits until it is ready.
func (c *Cluster) run(ctx context.Context, bins binaries, owner *osUser, opts Options) error {
	args := []string{
		"-D", c.dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port=" + strconv.Itoa(c.port),
		"-c", "max_connections=" + strconv.Itoa(opts.MaxConnections),
		"-c", "unix_socket_directories=" + socketDir(c.dataDir, c.port),
		"-c", "log_destination=stderr",
		"-c", "logging_collector=off",
	}
	if !opts.Persistent {
		// Nothing in a throwaway cluster needs to survive a crash.
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
		)
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("localpg: open server log: %w", err)
	}
	defer logf.Close() // the child holds its own copy of the descriptor
	offset, _ := logf.Seek(0, 2)

	c.cmd = exec.Command(bins.postgres, args...)
	c.cmd.Stdout = logf
	c.cmd.Stderr = logf
	c.cmd.Env = serverEnv()
	c.cmd.Dir = c.root
	c.cmd.SysProcAttr = owner.sysProcAttr()
	c.cmd.SysProcAttr.Setpgid = true // a Ctrl-C in the terminal is ours to handle, not the server's
	setParentDeathSignal(c.cmd.SysProcAttr, syscall.SIGINT)

	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the OS thread that forked the
		// child exits, not the process; keep this goroutine on its thread
		// for the server's whole life so only process exit can trigger it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("localpg: start %s: %w", bins.postgres, err)
	}

	if err := c.waitReady(ctx); err != nil {
		_ = c.cmd.Process.Kill()
		<-c.done
		log := tailFrom(c.logPath, offset)
		if strings.Contains(log, "Address already in use") {
			return fmt.Errorf("localpg: port %d in use: %w", c.port, err)
		}
		return fmt.Errorf("localpg: %w; server log %s:\n%s", err, c.logPath, log)
	}
	return nil
}

// waitReady polls postmaster.pid for the "ready" status the postmaster
// writes once it accepts connections: the same test `pg_ctl -w` makes.
func (c *Cluster) waitReady(ctx context.Context) error {
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	want := strconv.Itoa(c.cmd.Process.Pid)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) > 7 && strings.TrimSpace(lines[0]) == want &&
				strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("server exited during start-up (%v)", c.err)
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// CreateDatabase connects to the maintenance database at adminDSN and creates
// database name unless it already exists.
func CreateDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("localpg: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("localpg: create database %q: %w", name, err)
	}
	return nil
}

// DropDatabase connects to the maintenance database at adminDSN and drops
// database name if it exists, terminating the sessions still connected to it.
func DropDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("localpg: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	if err != nil {
		return fmt.Errorf("localpg: drop database %q: %w", name, err)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortFree reports whether port on 127.0.0.1 can be listened on now.
func PortFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func prepareRoot(opts Options, owner *osUser) (string, error) {
	if opts.Persistent {
		return persistentRoot(opts, owner)
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	root, err := os.MkdirTemp(parent, "localpg-")
	if err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return "", fmt.Errorf("localpg: %w", err)
	}
	return root, nil
}

func isInitialized(dataDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	switch {
	case err == nil:
		return true, nil
	case !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("localpg: %w", err)
	}
	// A directory without PG_VERSION is a half-finished initdb (or not ours):
	// initdb refuses a non-empty directory, so say so plainly.
	entries, err := os.ReadDir(dataDir)
	if err == nil && len(entries) > 0 {
		return false, fmt.Errorf("localpg: %s is not empty but holds no cluster (PG_VERSION missing); remove it", dataDir)
	}
	return false, nil
}

func checkVersion(ctx context.Context, bins binaries, dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	have := strings.TrimSpace(string(b))
	out, err := exec.CommandContext(ctx, bins.postgres, "--version").Output()
	if err != nil {
		return fmt.Errorf("localpg: %s --version: %w", bins.postgres, err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return nil
	}
	if major, _, _ := strings.Cut(fields[2], "."); major != have {
		return fmt.Errorf("localpg: %s was made by PostgreSQL %s but the server binaries are %s; remove the directory to start afresh",
			dataDir, have, fields[2])
	}
	return nil
}

// clearStaleLock removes a postmaster.pid left by a server that is gone (a
// killed run), which could otherwise block start-up when its PID has been
// reused. A live server on the same data directory is an error: two runs
// must not share one cluster by accident.
func clearStaleLock(dataDir string) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err == nil && pid > 0 && serverAlive(pid, dataDir) {
		return fmt.Errorf("localpg: a PostgreSQL server (PID %d) is already running on %s; stop it first", pid, dataDir)
	}
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("localpg: remove stale %s: %w", pidFile, err)
	}
	// Socket lock files carry the same PID and the same risk.
	locks, _ := filepath.Glob(filepath.Join(dataDir, ".s.PGSQL.*"))
	for _, l := range locks {
		_ = os.Remove(l)
	}
	return nil
}

// initdb creates the cluster in a sibling directory and renames it into
// place, so an interrupted initdb (Ctrl-C during the first `make run`) never
// leaves a half-made data directory that a later start would trip over.
func initdb(ctx context.Context, bins binaries, owner *osUser, dataDir, logPath string, noSync bool) error {
	tmp := dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	args := []string{
		"-D", tmp,
		"-A", "trust",
		"-U", Superuser,
		"-E", "UTF8",
		"--no-locale",
		"--no-instructions",
	}
	if noSync {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, bins.initdb, args...)
	cmd.Env = serverEnv()
	cmd.Dir = filepath.Dir(dataDir)
	cmd.SysProcAttr = owner.sysProcAttr()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	_ = os.WriteFile(logPath, out.Bytes(), 0o644)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("localpg: initdb: %w:\n%s", err, strings.TrimSpace(out.String()))
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("localpg: %w", err)
	}
	return nil
}

// socketDir keeps the server's Unix socket in its data directory, away from
// the system's /var/run/postgresql. Socket paths are limited to ~107 bytes;
// when the data directory is too deep, the server listens on TCP only.
func socketDir(dataDir string, port int) string {
	if len(filepath.Join(dataDir, ".s.PGSQL."+strconv.Itoa(port)+".lock")) > 100 {
		return ""
	}
	return dataDir
}

// serverEnv is the environment for initdb and postgres: the caller's, less
// the PG* variables that would point the tools at another cluster.
func serverEnv() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG")
	})
	return append(env, "LC_ALL=C")
}

type binaries struct {
	initdb, postgres string
}

// findBinaries looks for initdb and postgres in dir, else in PATH, else in
// the usual install locations (highest version first).
func findBinaries(dir string) (binaries, error) {
	if dir != "" {
		return binariesIn(dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if b, err := binariesIn(filepath.Dir(real)); err == nil {
				return b, nil
			}
		}
		if q, err := exec.LookPath("postgres"); err == nil {
			return binaries{initdb: p, postgres: q}, nil
		}
	}
	candidates, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(candidates, func(a, b string) int { return versionOf(b) - versionOf(a) })
	candidates = append(candidates, "/usr/local/pgsql/bin", "/usr/pgsql-15/bin")
	for _, d := range candidates {
		if b, err := binariesIn(d); err == nil {
			return b, nil
		}
	}
	return binaries{}, errors.New("localpg: PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; " +
		"install them (e.g. apt-get install postgresql-15) or set DATABASE_URL / TEST_DATABASE_URL to an existing server")
}

// FindTool returns the path of a PostgreSQL program (psql, pg_dump, …)
// installed beside the server binaries Start would use.
func FindTool(name string) (string, error) {
	b, err := findBinaries("")
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(b.initdb)
	if real, err := filepath.EvalSymlinks(b.initdb); err == nil {
		dir = filepath.Dir(real)
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", fmt.Errorf("localpg: %s not found beside %s", name, b.initdb)
	}
	return p, nil
}

func binariesIn(dir string) (binaries, error) {
	b := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
	for _, p := range []string{b.initdb, b.postgres} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return binaries{}, fmt.Errorf("localpg: %s is not an executable", p)
		}
	}
	return b, nil
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// tail returns the last lines of the file at path, for error messages.
func tail(path string) string { return tailFrom(path, 0) }

func tailFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if offset > 0 && offset <= int64(len(b)) {
		b = b[offset:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
