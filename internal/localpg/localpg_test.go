package localpg_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// sharedTempDir returns a directory the "postgres" OS user can reach when
// the tests run as root (t.TempDir is mode 0700 and owned by root).
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func start(t *testing.T, opts localpg.Options) *localpg.Cluster {
	t.Helper()
	c, err := localpg.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return c
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(t.Context(), "SHOW "+setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestThrowawayCluster(t *testing.T) {
	t.Parallel()
	c := start(t, localpg.Options{})

	wantDSN := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port())
	if got := c.DSN("postgres"); got != wantDSN {
		t.Errorf("DSN = %q, want %q", got, wantDSN)
	}

	conn := connect(t, c.DSN("postgres"))
	for setting, want := range map[string]string{
		"fsync":                   "off",
		"listen_addresses":        "127.0.0.1",
		"max_connections":         "200",
		"server_encoding":         "UTF8",
		"unix_socket_directories": c.DataDir(),
	} {
		if got := show(t, conn, setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var user string
	if err := conn.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != localpg.Superuser {
		t.Errorf("current_user = %q, want %q", user, localpg.Superuser)
	}

	// CreateDatabase is idempotent; the database is usable; DropDatabase
	// removes it even while a session is connected.
	for range 2 {
		if err := c.CreateDatabase(t.Context(), "app-db"); err != nil {
			t.Fatal(err)
		}
	}
	app := connect(t, c.DSN("app-db"))
	if _, err := app.Exec(t.Context(), "CREATE TABLE t (v text); INSERT INTO t VALUES ('ünïcode')"); err != nil {
		t.Fatal(err)
	}
	if err := c.DropDatabase(t.Context(), "app-db"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = 'app-db'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database still exists after DropDatabase")
	}

	// Stop removes a throwaway cluster's files; a second Stop is harmless.
	root := filepath.Dir(c.DataDir())
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s still exists after Stop (err=%v)", root, err)
	}
	if localpg.PortFree(c.Port()) == false {
		t.Errorf("port %d still taken after Stop", c.Port())
	}
}

func TestFixedPort(t *testing.T) {
	t.Parallel()
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := start(t, localpg.Options{Port: port, Dir: sharedTempDir(t)})
	if c.Port() != port {
		t.Fatalf("Port() = %d, want %d", c.Port(), port)
	}
	if localpg.PortFree(port) {
		t.Errorf("PortFree(%d) = true while the server listens on it", port)
	}
	connect(t, c.DSN("postgres"))
}

func TestPersistentClusterKeepsData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(sharedTempDir(t), "pg")

	c := start(t, localpg.Options{Dir: dir, Persistent: true})
	if err := c.CreateDatabase(t.Context(), "telemetry"); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, c.DSN("telemetry"))
	if got := show(t, conn, "fsync"); got != "on" {
		t.Errorf("persistent cluster fsync = %q, want on", got)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Restart on another port: the data directory is reused, not re-initialized.
	c2 := start(t, localpg.Options{Dir: dir, Persistent: true})
	if c2.DataDir() != c.DataDir() {
		t.Fatalf("DataDir changed: %q then %q", c.DataDir(), c2.DataDir())
	}
	var v int
	if err := connect(t, c2.DSN("telemetry")).QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != 42 {
		t.Fatalf("kept row = %d, want 42", v)
	}
}

func TestStalePostmasterPidIsCleared(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(sharedTempDir(t), "pg")
	c := start(t, localpg.Options{Dir: dir, Persistent: true})
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// A killed run leaves postmaster.pid behind, and its PID may since have
	// gone to an unrelated process (here: this test process).
	stale := fmt.Sprintf("%d\n%s\n1700000000\n%d\n%s\n127.0.0.1\n  5432001     32768\nready   \n",
		os.Getpid(), c.DataDir(), c.Port(), c.DataDir())
	pidFile := filepath.Join(c.DataDir(), "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, localpg.Options{Dir: dir, Persistent: true})
	connect(t, c2.DSN("postgres"))
}

func TestRunningClusterIsNotStartedTwice(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(sharedTempDir(t), "pg")
	start(t, localpg.Options{Dir: dir, Persistent: true})

	_, err := localpg.Start(t.Context(), localpg.Options{Dir: dir, Persistent: true})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start on a live data directory: err = %v, want 'already running'", err)
	}
}

func TestPersistentNeedsDir(t *testing.T) {
	t.Parallel()
	if _, err := localpg.Start(t.Context(), localpg.Options{Persistent: true}); err == nil {
		t.Fatal("Start(Persistent, no Dir) succeeded")
	}
}

func TestMissingBinaries(t *testing.T) {
	t.Parallel()
	_, err := localpg.Start(t.Context(), localpg.Options{BinDir: t.TempDir(), Dir: sharedTempDir(t)})
	if err == nil || !strings.Contains(err.Error(), "initdb") {
		t.Fatalf("Start with an empty BinDir: err = %v, want one naming initdb", err)
	}
}

func TestUnreachableDirAsRoot(t *testing.T) {
	t.Parallel()
	// t.TempDir is 0700: fine for a normal user, out of reach of the
	// "postgres" user that a root caller hands the server to.
	c, err := localpg.Start(t.Context(), localpg.Options{Dir: t.TempDir()})
	if os.Geteuid() == 0 {
		if err == nil || !strings.Contains(err.Error(), "cannot enter") {
			if c != nil {
				c.Stop(context.Background())
			}
			t.Fatalf("as root, Start under a 0700 dir: err = %v, want 'cannot enter'", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t.Context())
}

// TestServerDiesWithItsParent runs a child test process that starts a
// cluster and exits without Stop (as a test binary killed by -timeout
// would); the server must follow it.
func TestServerDiesWithItsParent(t *testing.T) {
	t.Parallel()
	if os.Getenv("LOCALPG_HELPER") == "1" {
		return
	}
	dir := sharedTempDir(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperStartAndExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LOCALPG_HELPER=1", "LOCALPG_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	pidFile := filepath.Join(dir, "pg", "data", "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		// The server already shut down and removed its pid file.
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("postmaster.pid: %q", b)
	}
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("server PID %d still running 15 s after its parent exited", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHelperStartAndExit(t *testing.T) {
	if os.Getenv("LOCALPG_HELPER") != "1" {
		return // only meaningful as TestServerDiesWithItsParent's child
	}
	dir := filepath.Join(os.Getenv("LOCALPG_HELPER_DIR"), "pg")
	if _, err := localpg.Start(t.Context(), localpg.Options{Dir: dir, Persistent: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(0) // no Stop: the kernel's parent-death signal has to do it
}

// TestInterruptedInitdbLeavesNoHalfCluster: Ctrl-C during the first
// `make run` must not break the next one.
func TestInterruptedInitdbLeavesNoHalfCluster(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(sharedTempDir(t), "pg")
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if c, err := localpg.Start(ctx, localpg.Options{Dir: dir, Persistent: true}); err == nil {
		c.Stop(context.Background()) // the machine was fast; still a valid outcome
	}
	if _, err := os.Stat(filepath.Join(dir, "data.initdb")); !os.IsNotExist(err) {
		t.Errorf("initdb's work directory left behind (err=%v)", err)
	}
	c := start(t, localpg.Options{Dir: dir, Persistent: true})
	connect(t, c.DSN("postgres"))
}

// TestPersistentClusterOutOfTheServerUsersReach is `make run` as root from a
// checkout in /root (mode 0700): the "postgres" user cannot enter it, so
// the cluster lives under SharedDir with a symlink in the checkout; its data
// survives a restart, and deleting the checkout's state (make clean) starts
// the next run afresh.
func TestPersistentClusterOutOfTheServerUsersReach(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to another OS user; as any other user the directory is the caller's own")
	}
	home := t.TempDir() // 0700, root's: like /root
	state := filepath.Join(home, "checkout", ".devstack")
	dir := filepath.Join(state, "pg")
	// What a run before this fix left behind: an empty directory.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(sharedTempDir(t), "var-lib")
	opts := localpg.Options{Dir: dir, Persistent: true, SharedDir: shared}

	c := start(t, opts)
	if fi, err := os.Lstat(dir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("%s is not a symlink to the cluster (%v, %v)", dir, fi, err)
	}
	if !strings.HasPrefix(c.DataDir(), shared+"/") {
		t.Fatalf("DataDir = %s, want it under %s", c.DataDir(), shared)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Errorf("the cluster is not reachable through the link: %v", err)
	}
	if err := c.CreateDatabase(t.Context(), "telemetry"); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, c.DSN("telemetry"))
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	c2 := start(t, opts)
	if c2.DataDir() != c.DataDir() {
		t.Fatalf("DataDir changed across runs: %s then %s", c.DataDir(), c2.DataDir())
	}
	var v int
	if err := connect(t, c2.DSN("telemetry")).QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("kept row after a restart: %d, %v", v, err)
	}
	if err := c2.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	// make clean: the state directory goes, link and all; the next run
	// initialises a new cluster rather than reviving the discarded one.
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	c3 := start(t, opts)
	var n int
	if err := connect(t, c3.DSN("postgres")).QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = 'telemetry'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("after make clean: %d telemetry databases (%v), want a fresh cluster", n, err)
	}
}
