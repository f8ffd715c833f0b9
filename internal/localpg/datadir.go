package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

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
