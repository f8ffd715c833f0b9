package docscheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/docscheck"
)

// root is the repository root, from this package's directory.
const root = "../.."

func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"validation-error", "validation-error"},
		{"Live stream: `GET /telemetry/stream`", "live-stream-get-telemetrystream"},
		{"API reference: `/openapi.json` and `/docs`", "api-reference-openapijson-and-docs"},
		{"The DLQ's bound", "the-dlqs-bound"},
		{"Least privilege: the API's database user", "least-privilege-the-apis-database-user"},
		{"Retries, time-outs and errors", "retries-time-outs-and-errors"},
		{"Dev stack (`make run`)", "dev-stack-make-run"},
		{"[the API](docs/api.md) in brief", "the-api-in-brief"},
		{"snake_case and Ünïcode §8", "snake_case-and-ünïcode-8"},
	}
	for _, tt := range tests {
		if got := docscheck.Slug(tt.heading); got != tt.want {
			t.Errorf("Slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	doc := docscheck.Parse("x.md", strings.Join([]string{
		"# Title",
		"See [lists](#lists), [api](docs/api.md#errors) and `[not](a-link.md)`.",
		"## Lists",
		"## Lists",
		"<!-- example: not run (starts the stack) -->",
		"",
		"```sh",
		"make run",
		"# not a heading",
		"```",
		"- item:",
		"",
		"  ```bash",
		"  echo indented",
		"  ```",
		"<!-- example: run with timeout 3s -->",
		"Prose breaks the marker's hold.",
		"```console",
		"$ echo one \\",
		"  two",
		"one two",
		"$ true",
		"```",
		`<a id="custom"></a>`,
		"[ref]: ../outside.md",
	}, "\n"))
	for _, a := range []string{"title", "lists", "lists-1", "custom"} {
		if !doc.Anchors[a] {
			t.Errorf("anchor %q missing: %v", a, doc.Anchors)
		}
	}
	if doc.Anchors["not-a-heading"] {
		t.Error("a # line in a code block became an anchor")
	}
	var targets []string
	for _, l := range doc.Links {
		targets = append(targets, l.Target)
	}
	if got, want := strings.Join(targets, " "), "#lists docs/api.md#errors ../outside.md"; got != want {
		t.Errorf("links %q, want %q", got, want)
	}
	ex, err := docscheck.Examples(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 3 {
		t.Fatalf("%d examples, want 3: %+v", len(ex), ex)
	}
	if ex[0].Skip != "starts the stack" || ex[0].Line != 7 || ex[0].Text != "make run\n# not a heading\n" {
		t.Errorf("first example %+v", ex[0])
	}
	if ex[1].Skip != "" || ex[1].Text != "echo indented\n" {
		t.Errorf("indented example %+v", ex[1])
	}
	if ex[2].Timeout != 0 || ex[2].Commands() != "echo one \\\n  two\ntrue\n" {
		t.Errorf("console example: timeout %v, commands %q", ex[2].Timeout, ex[2].Commands())
	}
}

func TestMarkers(t *testing.T) {
	tests := []struct {
		marker  string
		skip    string
		timeout time.Duration
		errs    string
		bad     bool
	}{
		{marker: "example: not run (needs Docker)", skip: "needs Docker"},
		{marker: "example: run with timeout 3s", timeout: 3 * time.Second},
		{marker: "example: expects an HTTP error (403 without CORS)", errs: "403 without CORS"},
		{marker: "example: not run", bad: true},
		{marker: "example: run with timeout soon", bad: true},
		{marker: "example: skip (typo)", bad: true},
		{marker: "a comment about something else"},
	}
	for _, tt := range tests {
		doc := docscheck.Parse("x.md", "<!-- "+tt.marker+" -->\n```sh\ntrue\n```\n")
		ex, err := docscheck.Examples(doc)
		if tt.bad {
			if err == nil {
				t.Errorf("%q: no error", tt.marker)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.marker, err)
			continue
		}
		if e := ex[0]; e.Skip != tt.skip || e.Timeout != tt.timeout || e.HTTPErrors != tt.errs {
			t.Errorf("%q: got %+v", tt.marker, e)
		}
	}
	if _, err := docscheck.Examples(docscheck.Parse("x.md", "<!-- example: not run (x) -->\n```json\n{}\n```\n")); err == nil {
		t.Error("a marker on a json block: no error")
	}
}

// TestRelativeLinksResolve: every relative link of README.md and docs/*.md
// leads to a file of the repository, and its #fragment to a heading there.
func TestRelativeLinksResolve(t *testing.T) {
	files, err := docscheck.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string]*docscheck.Doc{}
	anchors := func(file string) (map[string]bool, error) {
		if d, ok := parsed[file]; ok {
			return d.Anchors, nil
		}
		d, err := docscheck.ParseFile(root, file)
		if err != nil {
			return nil, err
		}
		parsed[file] = d
		return d.Anchors, nil
	}
	checked := 0
	for _, f := range files {
		if _, err := anchors(f); err != nil {
			t.Fatal(err)
		}
		d := parsed[f]
		checked += len(d.Links)
		for _, err := range docscheck.CheckLinks(root, d, anchors) {
			t.Error(err)
		}
	}
	if checked < 20 {
		t.Errorf("only %d links found in %v: is the parser broken?", checked, files)
	}
}

// TestCheckLinksFindsBrokenOnes: the check above can fail.
func TestCheckLinksFindsBrokenOnes(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docs", "a.md"), []byte("# A\n## Here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := docscheck.Parse("README.md", "# Top\n[ok](docs/a.md#here) [ok](#top) [ok](https://x.example/y.md#z)\n"+
		"[bad](docs/a.md#gone) [bad](#nowhere) [bad](docs/b.md) [bad](../shared/SPEC.md)\n")
	errs := docscheck.CheckLinks(dir, doc, func(file string) (map[string]bool, error) {
		d, err := docscheck.ParseFile(dir, file)
		if err != nil {
			return nil, err
		}
		return d.Anchors, nil
	})
	if len(errs) != 4 {
		t.Errorf("%d errors, want 4 (the bad links): %v", len(errs), errs)
	}
}

// TestNoReferenceOutsideTheRepository: the user's documentation does not
// send a reader to files this repository does not have (issue 13, item 3).
func TestNoReferenceOutsideTheRepository(t *testing.T) {
	files, err := docscheck.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, "testdata/faces/PROVENANCE.md") {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, s := range []string{"SPEC.md", "SPEC §", "../shared/"} {
				if strings.Contains(line, s) {
					t.Errorf("%s:%d names %q, which is not in the repository: %s", f, i+1, s, line)
				}
			}
		}
	}
}
