//go:build unix

package devstack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/devstack"
	"github.com/challenge-v3/challenge-v3/internal/docscheck"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

// exampleTimeout bounds one example block; the whole test stays under a
// minute.
const exampleTimeout = 20 * time.Second

// TestDocsExamples runs every shell example of README.md and docs/*.md
// against a dev stack, as a user pastes them from the repository root
// after `make run` (issue 13, item 1), so an example cannot rot.
//
// Each ```sh, ```bash or ```console block runs with bash under
// `set -euo pipefail`, in document order, each file's blocks sharing their
// shell variables as they would in one terminal (ID set by one block is there
// for the next). A block must exit 0 within 20 s. The markers that skip a
// block, bound a never-ending one or allow HTTP errors are described in
// package docscheck; an unmarked block that fails fails the test, and the
// skipped ones are listed with their reasons.
//
// Differences from a user's terminal, kept few and explicit:
//   - The blocks' working directory is a temporary copy of the repository
//     (without .git and bin); the stack runs on free ports with its state in
//     the copy's .devstack, so .devstack/dev-api-key is where the examples
//     look for it.
//   - In each block's text, the default addresses are replaced by the
//     stack's: http://127.0.0.1:8080 (API), :8081 and :8082 (the admin
//     listeners) and the psql DSN postgres://postgres@127.0.0.1:5433/….
//     KEY, API and NATS_URL are exported to the stack's; DATABASE_URL is
//     removed from the environment.
//   - curl is a wrapper that adds --fail-with-body unless the command asks
//     for -f itself: an example that gets a 4xx or 5xx fails (its answer is
//     still printed), unless its block is marked "expects an HTTP error".
//   - The per-IP rate limit is off (RATE_LIMIT_RPS=0): the test pastes far
//     faster than a person, and the limit has its own tests.
//   - psql comes from beside the PostgreSQL server binaries when it is not
//     on PATH (Debian's layout).
func TestDocsExamples(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("the docs' examples are bash; bash is not on PATH")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("the docs' examples use curl; curl is not on PATH")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := docscheck.Files(repo)
	if err != nil {
		t.Fatal(err)
	}
	var examples [][]docscheck.Example
	for _, f := range files {
		doc, err := docscheck.ParseFile(repo, f)
		if err != nil {
			t.Fatal(err)
		}
		ex, err := docscheck.Examples(doc)
		if err != nil {
			t.Fatal(err) // a malformed marker
		}
		examples = append(examples, ex)
	}

	work, err := os.MkdirTemp("", "docs-examples-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(work, 0o755) // reachable by the "postgres" user when run as root
	t.Cleanup(func() { os.RemoveAll(work) })
	copyRepository(t, repo, work)
	st := startExampleStack(t, filepath.Join(work, ".devstack"))

	bin := filepath.Join(work, ".docs-examples-bin")
	writeFile(t, filepath.Join(bin, "curl"), curlWrapper(curl), 0o755)
	path := bin + string(os.PathListSeparator) + os.Getenv("PATH")
	if _, err := exec.LookPath("psql"); err != nil {
		if p, err := localpg.FindTool("psql"); err == nil {
			path = bin + string(os.PathListSeparator) + filepath.Dir(p) + string(os.PathListSeparator) + os.Getenv("PATH")
		}
	}
	env := []string{"PATH=" + path, "KEY=" + st.key, "API=" + st.api, "NATS_URL=" + st.nats}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PATH", "KEY", "API", "NATS_URL", "DATABASE_URL":
		default:
			env = append(env, kv)
		}
	}
	rewrite := strings.NewReplacer(
		"http://127.0.0.1:8080", st.api,
		"http://127.0.0.1:8081", st.apiAdmin,
		"http://127.0.0.1:8082", st.workerAdmin,
		"postgres://postgres@127.0.0.1:5433/telemetry?sslmode=disable", st.dsn,
	)
	r := &exampleRunner{bash: bash, dir: work, env: env, rewrite: rewrite}
	r.baseline = r.variableNames(t)
	r.checkItCanFail(t)

	var ran, skipped []string
	for i, f := range files {
		state := filepath.Join(bin, strings.ReplaceAll(f, "/", "_")+".vars")
		writeFile(t, state, "", 0o644)
		for _, e := range examples[i] {
			where := fmt.Sprintf("%s:%d", e.File, e.Line)
			if e.Skip != "" {
				skipped = append(skipped, where+": "+e.Skip)
				continue
			}
			ran = append(ran, where)
			out, err := r.run(t, e, state)
			if err != nil {
				t.Errorf("%s: the ```%s example %v; it ran:\n%s\noutput:\n%s", where, e.Lang, err,
					indent(r.rewrite.Replace(e.Commands())), indent(tail(out, 4000)))
				continue
			}
			t.Logf("%s: ok; output:\n%s", where, indent(tail(out, 1500)))
		}
	}
	t.Logf("ran %d examples: %s", len(ran), strings.Join(ran, ", "))
	t.Logf("skipped %d (marked \"example: not run\"):\n%s", len(skipped), indent(strings.Join(skipped, "\n")))
	if t.Failed() {
		t.Logf("dev stack log (tail):\n%s", indent(tail(st.log.String(), 6000)))
	}
}

// exampleRunner runs example blocks with bash in dir.
type exampleRunner struct {
	bash     string
	dir      string
	env      []string
	rewrite  *strings.Replacer
	baseline string // a file naming the variables every fresh shell has
}

// variableNames writes the names of the variables a fresh bash has in the
// runner's environment to a file: the variables a block adds are the others.
func (r *exampleRunner) variableNames(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(r.bash, "-c", "compgen -v")
	cmd.Dir, cmd.Env = r.dir, r.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash -c 'compgen -v': %v", err)
	}
	p := filepath.Join(r.dir, ".docs-examples-bin", "baseline-vars")
	writeFile(t, p, string(out), 0o644)
	return p
}

// checkItCanFail: an example that gets an HTTP error fails unless its block
// expects one, and a marked time-out ends a block that would run on.
func (r *exampleRunner) checkItCanFail(t *testing.T) {
	t.Helper()
	state := filepath.Join(r.dir, ".docs-examples-bin", "self-check.vars")
	writeFile(t, state, "", 0o644)
	notFound := docscheck.Example{Block: docscheck.Block{Lang: "sh",
		Text: `curl -s "$API/telemetry/gps/00000000-0000-7000-8000-000000000000" -H "X-API-Key: $KEY"` + "\n"}}
	if out, err := r.run(t, notFound, state); err == nil || !strings.Contains(err.Error(), "exit status 22") {
		t.Fatalf("a curl answered 404 in an example: %v, want curl's exit status 22 (HTTP error)\n%s", err, out)
	}
	notFound.HTTPErrors = "on purpose"
	if out, err := r.run(t, notFound, state); err != nil {
		t.Fatalf("a curl answered 404 in a block that expects it: %v\n%s", err, out)
	}
	endless := docscheck.Example{Block: docscheck.Block{Lang: "sh", Text: "sleep 60\n"}, Timeout: 200 * time.Millisecond}
	if out, err := r.run(t, endless, state); err != nil {
		t.Fatalf("a block marked with a time-out: %v\n%s", err, out)
	}
}

// run runs one block. Variables from the file's earlier blocks are read
// from state, and the block's own are written back to it on success.
func (r *exampleRunner) run(t *testing.T, e docscheck.Example, state string) (string, error) {
	t.Helper()
	script := `set -euo pipefail
source "$DOCS_EXAMPLE_STATE"
trap '__vars=$(compgen -v | grep -vxFf "$DOCS_EXAMPLE_BASELINE" || true)
if [ -n "$__vars" ]; then declare -p $__vars >"$DOCS_EXAMPLE_STATE.next"; else : >"$DOCS_EXAMPLE_STATE.next"; fi' EXIT
` + r.rewrite.Replace(e.Commands())
	file := filepath.Join(r.dir, ".docs-examples-bin", "example.sh")
	writeFile(t, file, script, 0o644)

	limit := exampleTimeout
	if e.Timeout > 0 {
		limit = e.Timeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bash, file)
	cmd.Dir = r.dir
	cmd.Env = append(r.env, "DOCS_EXAMPLE_STATE="+state, "DOCS_EXAMPLE_BASELINE="+r.baseline)
	if e.HTTPErrors != "" {
		cmd.Env = append(cmd.Env, "DOCS_EXAMPLE_HTTP_ERRORS=1")
	}
	// The block's commands (curl -N) are in bash's process group: a time-out
	// ends them all, not bash alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	switch {
	case timedOut && e.Timeout > 0:
		return out.String(), nil // still running at its marked time-out, as it should
	case timedOut:
		return out.String(), fmt.Errorf("did not finish within %v", limit)
	case err != nil:
		return out.String(), fmt.Errorf("failed (%v)", err)
	}
	if err := os.Rename(state+".next", state); err != nil {
		return out.String(), fmt.Errorf("keeping its variables: %v", err)
	}
	return out.String(), nil
}

// curlWrapper is a curl that fails on an HTTP error answer like curl -f but
// still prints the answer (--fail-with-body), unless the command asks for
// -f/--fail itself (curl refuses both) or the block expects errors.
func curlWrapper(curl string) string {
	return `#!/usr/bin/env bash
# Written by TestDocsExamples (internal/devstack/docs_examples_test.go).
fail=--fail-with-body
if [ -n "${DOCS_EXAMPLE_HTTP_ERRORS:-}" ]; then fail=; fi
for a in "$@"; do
	case $a in
	--fail | --fail-with-body) fail= ;;
	--*) ;;
	-*f*) fail= ;;
	esac
done
exec ` + shellQuote(curl) + ` ${fail:+"$fail"} "$@"
`
}

// exampleStack is what the examples need to know of the running dev stack.
type exampleStack struct {
	api, apiAdmin, workerAdmin, nats, dsn, key string
	log                                        *testenv.LogBuffer
}

var (
	reBannerAPI    = regexp.MustCompile(`(?m)^  API +(http://\S+)$`)
	reBannerAdmin  = regexp.MustCompile(`(?m)^  API admin +(http://\S+)/metrics`)
	reBannerWorker = regexp.MustCompile(`(?m)^  worker admin +(http://\S+)/metrics`)
	reBannerNATS   = regexp.MustCompile(`(?m)^  NATS +(nats://\S+)`)
	reBannerPSQL   = regexp.MustCompile(`(?m)^  \S*psql '([^']+)'`)
)

// startExampleStack runs the dev stack with its state in dir on free ports
// until the test ends, and reads its addresses from the banner.
func startExampleStack(t *testing.T, dir string) exampleStack {
	t.Helper()
	out, logs := &testenv.LogBuffer{}, &testenv.LogBuffer{}
	env := map[string]string{"LOG_LEVEL": "warn", "HOME": t.TempDir(), "RATE_LIMIT_RPS": "0"}
	cfg := devstack.Config{
		Dir:             dir,
		HTTPAddr:        freeAddr(t),
		APIAdminAddr:    freeAddr(t),
		WorkerAdminAddr: freeAddr(t),
		Getenv:          func(k string) string { return env[k] },
		Out:             out,
		LogOutput:       logs,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devstack.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev stack: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the dev stack did not stop within a minute")
		}
	})
	deadline := time.After(2 * time.Minute)
	for !reBannerPSQL.MatchString(out.String()) {
		select {
		case err := <-done:
			done <- err // for the clean-up
			t.Fatalf("the dev stack stopped before its banner: %v\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("no banner within 2 minutes\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	banner := out.String()
	key, err := os.ReadFile(filepath.Join(dir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	return exampleStack{
		api:         match(t, reBannerAPI, banner),
		apiAdmin:    match(t, reBannerAdmin, banner),
		workerAdmin: match(t, reBannerWorker, banner),
		nats:        match(t, reBannerNATS, banner),
		dsn:         match(t, reBannerPSQL, banner),
		key:         strings.TrimSpace(string(key)),
		log:         logs,
	}
}

// copyRepository makes work a copy of the repository's working tree, but
// .git, bin and .devstack (work's own is the test stack's): a block that
// writes where it should not (make run, cp .env.example .env) cannot touch
// the repository.
func copyRepository(t *testing.T, repo, work string) {
	t.Helper()
	skip := map[string]bool{".git": true, ".devstack": true, "bin": true}
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repo, p)
		if err != nil || rel == "." {
			return err
		}
		if skip[rel] {
			return filepath.SkipDir
		}
		dst := filepath.Join(work, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			return copyFile(p, dst)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
