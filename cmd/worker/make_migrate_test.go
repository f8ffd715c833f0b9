package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/internal/devstack"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
)

// makeMigrate runs `make migrate` from the repository root as a user does,
// with DEVSTACK pointing at a dev stack state directory and DATABASE_URL
// unset unless databaseURL is given.
func makeMigrate(t *testing.T, devstackDir, databaseURL string) (code int, stdout, stderr string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", root, "migrate", "DEVSTACK="+devstackDir)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "MAKEFLAGS=") && !strings.HasPrefix(kv, "MFLAGS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if databaseURL != "" {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+databaseURL)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		t.Fatalf("make migrate: %v", err)
	}
	return 0, out.String(), errOut.String()
}

// `make migrate` right after `make run` (DATABASE_URL unset) migrates the
// dev stack's database, found from the running cluster under .devstack.
func TestMakeMigrateUsesTheDevStacksDatabase(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("this test runs `make migrate` and needs make: %v", err)
	}
	base, err := os.MkdirTemp("", "make-migrate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // the server may run as "postgres"
		t.Fatal(err)
	}
	stateDir := filepath.Join(base, ".devstack")

	// The cluster as the dev stack starts it (internal/devstack startCluster).
	pg, err := localpg.Start(t.Context(), localpg.Options{Dir: filepath.Join(stateDir, "pg"), Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := pg.Stop(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(stop)
	if err := pg.CreateDatabase(t.Context(), devstack.DatabaseName); err != nil {
		t.Fatal(err)
	}
	dsn := pg.DSN(devstack.DatabaseName)

	code, out, errOut := makeMigrate(t, stateDir, "")
	want := fmt.Sprintf("make migrate: DATABASE_URL is unset; using the dev stack's database %s\n", dsn)
	if code != 0 || errOut != want || !strings.Contains(out, `"msg":"database schema is up to date"`) {
		t.Fatalf("make migrate: exit %d\nstdout %q\nstderr %q\nwant stderr %q", code, out, errOut, want)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var migrated bool
	err = conn.QueryRow(t.Context(), `SELECT to_regclass('gps') IS NOT NULL AND to_regclass('audit_log') IS NOT NULL`).Scan(&migrated)
	conn.Close(context.Background())
	if err != nil || !migrated {
		t.Fatalf("tables after make migrate: %v, %v", migrated, err)
	}

	// DATABASE_URL, when set, wins and nothing is said about the dev stack.
	code, _, errOut = makeMigrate(t, stateDir, dsn)
	if code != 0 || errOut != "" {
		t.Errorf("make migrate with DATABASE_URL: exit %d, stderr %q", code, errOut)
	}

	// The dev stack stopped: its state is there but no server; say so.
	stop()
	code, out, errOut = makeMigrate(t, stateDir, "")
	if code == 0 || out != "" || !strings.Contains(errOut, "make migrate: DATABASE_URL is unset and the dev stack's PostgreSQL is not running") ||
		!strings.Contains(errOut, "start it with make run, or set DATABASE_URL") {
		t.Errorf("make migrate with the dev stack stopped: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// No dev stack state at all: the worker's own message, as before.
	code, _, errOut = makeMigrate(t, filepath.Join(base, "none"), "")
	if code == 0 || !strings.Contains(errOut, "DATABASE_URL: is required") {
		t.Errorf("make migrate without a dev stack: exit %d, stderr %q", code, errOut)
	}
}
