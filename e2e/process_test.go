package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// buildCommand builds one of the module's commands (e.g. "api") into a
// temporary directory, without -race: the fault tests kill the real binary
// as deployed, and the race detector would only slow it.
func buildCommand(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// process is a command of the module running as its own process, its
// output appended to the stack's logs (so noSecretsLogged scans it too).
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, once exited is closed
	stderr testenv.LogBuffer
}

// startProcess runs bin with the stack's environment plus extra, and only
// that: nothing of the test's own environment leaks into the binary.
func (s *stack) startProcess(bin string, extra map[string]string) *process {
	s.t.Helper()
	env := []string{"LOG_FORMAT=json", "LOG_LEVEL=debug"}
	for k, v := range s.env {
		if _, over := extra[k]; !over && k != "LOG_LEVEL" {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	p := &process{cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, io.MultiWriter(s.logs, &p.stderr)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.t.Cleanup(func() {
		p.kill()
		if s.t.Failed() {
			logs := s.logs.String()
			s.t.Logf("%s exited: %v; its stderr:\n%s\nthe stack's last logs:\n%s", filepath.Base(bin), p.err,
				p.stderr.String(), logs[max(0, len(logs)-3000):])
		}
	})
	return p
}

// signal sends sig and waits up to within for the process to exit; it
// returns how long the exit took, or fails the test.
func (p *process) signal(t *testing.T, sig syscall.Signal, within time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		return time.Since(began)
	case <-time.After(within):
		t.Fatalf("%s still running %s after %s", p.cmd.Path, within, sig)
		return 0
	}
}

// kill ends the process if it still runs (test clean-up).
func (p *process) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
