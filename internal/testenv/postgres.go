package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// EnvDatabaseURL names an existing PostgreSQL server (any database on it,
// as a role allowed to create databases) to use instead of a local cluster.
const EnvDatabaseURL = "TEST_DATABASE_URL"

// cluster is the test binary's own PostgreSQL cluster, started by the first
// Postgres call that needs it and stopped by Main. It is process state by
// nature: one cluster serves every test of the binary.
var cluster struct {
	once sync.Once
	c    *localpg.Cluster
	dir  string
	err  error
}

// Main runs the tests, then stops the PostgreSQL cluster that Postgres
// started (if any) and exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := stopCluster(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
	}
	os.Exit(code)
}

// Postgres returns the DSN of a new, empty database that is dropped when the
// test ends. The database lives on the server named by TEST_DATABASE_URL, or
// else on a throwaway cluster started once per test binary from the
// machine's PostgreSQL binaries. It fails the test (never skips it) when no
// server can be had.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvDatabaseURL)
	if admin == "" {
		c, err := sharedCluster()
		if err != nil {
			t.Fatalf("testenv: no PostgreSQL for this test: %v\n"+
				"(install the server binaries, e.g. apt-get install postgresql-15, or set %s)", err, EnvDatabaseURL)
		}
		admin = c.DSN("postgres")
	}

	name := "test_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := localpg.CreateDatabase(ctx, admin, name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := localpg.DropDatabase(ctx, admin, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("testenv: %s: %v", EnvDatabaseURL, err)
	}
	return dsn
}

func sharedCluster() (*localpg.Cluster, error) {
	cluster.once.Do(func() {
		sweepStaleDirs()
		dir, err := os.MkdirTemp("", fmt.Sprintf("testenv-pg-%d-", os.Getpid()))
		if err != nil {
			cluster.err = err
			return
		}
		// When the tests run as root the server runs as "postgres", which
		// must be able to enter this directory.
		if err := os.Chmod(dir, 0o755); err != nil {
			cluster.err = err
			return
		}
		cluster.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster.c, cluster.err = localpg.Start(ctx, localpg.Options{Dir: dir})
		if cluster.err != nil {
			os.RemoveAll(dir)
		}
	})
	return cluster.c, cluster.err
}

func stopCluster() error {
	if cluster.c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cluster.c.Stop(ctx)
	os.RemoveAll(cluster.dir)
	return err
}

// sweepStaleDirs removes the cluster directories of test binaries that died
// without running Main's clean-up (a -timeout panic, a kill). Their servers
// are already gone: localpg ties a server's life to its parent's.
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "testenv-pg-*-*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), "testenv-pg-")
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// withDatabase returns dsn (a URL or a keyword/value string) pointing at
// database name instead.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// Keyword/value form: a later keyword overrides an earlier one.
	return strings.TrimSpace(dsn) + " dbname=" + name, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
