package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
