package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A real child process: its output is watched, its RSS read from /proc,
// and stop ends it with SIGTERM (a shell that traps it exits 0).
func TestProcLifecycle(t *testing.T) {
	p, err := startProc("sh", "/bin/sh", []string{"-c", `trap 'echo bye; exit 0' TERM; echo "ready at $BENCH_MARK"; while :; do sleep 0.1; done`},
		map[string]string{"BENCH_MARK": "here"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	line, err := p.waitOutput(context.Background(), "ready", 30*time.Second)
	if err != nil || line != "ready at here" {
		t.Fatalf("waitOutput = %q, %v", line, err)
	}
	rss, err := rssBytes(p.pid())
	if err != nil || rss <= 0 {
		t.Fatalf("rssBytes = %d, %v", rss, err)
	}
	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(p.out.String(), "bye") {
		t.Errorf("the process did not see SIGTERM; output %q", p.out.String())
	}
	if _, err := rssBytes(p.pid()); err == nil {
		t.Error("RSS of a stopped process read without error")
	}
	if err := p.stop(time.Second); err != nil {
		t.Errorf("stopping a process that exited cleanly: %v", err)
	}
}

func TestWaitOutputFailsWhenTheProcessExits(t *testing.T) {
	p, err := startProc("sh", "/bin/sh", []string{"-c", "echo starting; exit 3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.waitOutput(context.Background(), "listening", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("waitOutput = %v; want an exit error with the output", err)
	}
	if err := p.stop(time.Second); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("stop after a failed exit = %v; want its exit status", err)
	}
}
