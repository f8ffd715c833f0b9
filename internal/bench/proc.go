package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailBuffer keeps the first and the last few KiB written to it: the
// start-up lines (addresses a process announces) and what it said last
// (why it stopped), in bounded memory however long it runs.
type tailBuffer struct {
	mu   sync.Mutex
	head []byte
	tail []byte
	cut  bool // bytes were dropped between head and tail
}

const tailKeep = 32 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := tailKeep - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - tailKeep; over > 0 {
		b.tail = append(b.tail[:0], b.tail[over:]...)
		b.cut = true
	}
	return n, nil
}

// Head returns the first bytes written.
func (b *tailBuffer) Head() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.head)
}

// String returns the head and the tail, with a mark where bytes were dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return string(b.head) + "\n[…]\n" + string(b.tail)
	}
	return string(b.head) + string(b.tail)
}

// proc is a child process the memory section measures: its output kept in
// a tailBuffer, stopped with SIGTERM or SIGINT (then SIGKILL) by stop, and killed by
// the kernel if the bench itself dies (see procAttr).
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's, once done is closed
	// quit is the signal that asks for a clean stop: SIGTERM, but SIGINT
	// for nats-server, which exits 1 on SIGTERM (server/signal.go) and 0
	// on SIGINT, both after a full shutdown.
	quit syscall.Signal
}

// startProc starts path with args and exactly env (nothing inherited but
// PATH, HOME and TMPDIR: the caller's LOG_LEVEL or AWS settings must not
// change what is measured).
func startProc(name, path string, args []string, env map[string]string) (*proc, error) {
	cmd := exec.Command(path, args...)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{name: name, cmd: cmd, out: &tailBuffer{}, done: make(chan struct{}), quit: syscall.SIGTERM}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has stopped, and why.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitOutput waits until the process has written a line containing substr
// and returns that line; it fails if the process exits first or limit
// passes.
func (p *proc) waitOutput(ctx context.Context, substr string, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.out.Head()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), substr) {
				return sc.Text(), nil
			}
		}
		if done, err := p.exited(); done {
			return "", fmt.Errorf("bench: %s exited (%v) before saying %q; its output:\n%s", p.name, err, substr, p.out)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("bench: %s did not say %q within %s; its output:\n%s", p.name, substr, limit, p.out)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends the quit signal and waits up to grace for the process to
// exit, then kills it. It returns an error when the process had to be
// killed or exited with a failure.
func (p *proc) stop(grace time.Duration) error {
	if done, err := p.exited(); done {
		if err != nil {
			return fmt.Errorf("bench: %s had exited: %w", p.name, err)
		}
		return nil // e.g. it had the terminal's Ctrl-C too
	}
	_ = p.cmd.Process.Signal(p.quit)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("bench: %s after %s: %w", p.name, p.quit, p.err)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("bench: %s did not stop within %s of %s; killed", p.name, grace, p.quit)
	}
}

// rssBytes reads the resident set size of process pid from
// /proc/<pid>/status (VmRSS, which Linux reports in kB).
func rssBytes(pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("bench: RSS of %d: %w", pid, err)
	}
	return parseVmRSS(data)
}

func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, errors.New("bench: no VmRSS line in /proc/<pid>/status")
}
