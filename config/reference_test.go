package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// update rewrites the generated part of docs/configuration.md from vars
// instead of comparing it.
var update = flag.Bool("update", false, "rewrite the generated part of docs/configuration.md from config/help.go")

// The reference's file and the markers around its generated part.
const (
	referenceFile  = "../docs/configuration.md"
	referenceBegin = "<!-- BEGIN GENERATED from config/help.go by: go test ./config -run TestConfigurationReference -update -->"
	referenceEnd   = "<!-- END GENERATED -->"
	regenerate     = "go test ./config -run TestConfigurationReference -update"
)

// commandNames are the commands a row's bits stand for, in the order the
// "read by" column lists them (`worker status` reads what `worker dlq`
// reads).
var commandNames = []struct {
	bit   commands
	names string
}{
	{forAPI, CommandAPI},
	{forWorker, CommandWorker},
	{forMigrate, CommandMigrate},
	{forDLQ, CommandDLQ + ", " + CommandStatus},
	{forRekey, CommandRekey},
}

var reVarName = regexp.MustCompile(`\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b`)

// renderReference renders vars as the Markdown table of
// docs/configuration.md: one row per row of vars, in its order.
func renderReference() string {
	known := map[string]bool{}
	for _, r := range vars {
		known[r.Name] = true
	}
	var b strings.Builder
	b.WriteString("| variable | read by | default | meaning |\n|---|---|---|---|\n")
	for _, r := range vars {
		var by []string
		for _, c := range commandNames {
			if r.cmds&c.bit != 0 {
				by = append(by, c.names)
			}
		}
		def := "unset"
		switch {
		case r.Required:
			def = "**required**"
		case r.Default != "":
			def = "`" + strings.ReplaceAll(r.Default, "|", `\|`) + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Name, strings.Join(by, ", "), def, markdownText(r.Meaning, known))
	}
	return b.String()
}

// markdownText escapes a plain-text meaning for a table cell and puts the
// names of known variables in code spans.
func markdownText(s string, known map[string]bool) string {
	s = strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "*", `\*`).Replace(s)
	return reVarName.ReplaceAllStringFunc(s, func(name string) string {
		if known[name] {
			return "`" + name + "`"
		}
		return name
	})
}

// TestConfigurationReference: the table of docs/configuration.md between
// its markers is config/help.go's table, so the reference cannot drift
// from what the loaders read (help_test.go holds the table to the
// loaders). With -update it rewrites the table instead.
func TestConfigurationReference(t *testing.T) {
	b, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatalf("%v (regenerate the table with: %s)", err, regenerate)
	}
	doc := string(b)
	head, rest, ok := strings.Cut(doc, referenceBegin+"\n")
	if !ok || strings.Count(doc, referenceBegin) != 1 {
		t.Fatalf("%s must hold the line %q exactly once", referenceFile, referenceBegin)
	}
	have, tail, ok := strings.Cut(rest, referenceEnd)
	if !ok {
		t.Fatalf("%s: no %q after the begin marker", referenceFile, referenceEnd)
	}
	want := renderReference()
	if have == want {
		return
	}
	if *update {
		if err := os.WriteFile(referenceFile, []byte(head+referenceBegin+"\n"+want+referenceEnd+tail), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the generated table of %s", filepath.Clean(referenceFile))
		return
	}
	t.Errorf("the configuration reference in docs/configuration.md differs from config/help.go; "+
		"regenerate it with:\n\n\t%s\n\nfirst difference:\n%s", regenerate, firstDifference(have, want))
}

// firstDifference shows the first line where have and want differ.
func firstDifference(have, want string) string {
	h, w := strings.Split(have, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(h), len(w)); i++ {
		var hl, wl string
		if i < len(h) {
			hl = h[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if hl != wl {
			return fmt.Sprintf("  table line %d in the file:      %q\n  table line %d from help.go:     %q", i+1, hl, i+1, wl)
		}
	}
	return "(only line endings differ)"
}

// TestConfigurationReferenceNamesNoUnknownVariable: every variable the
// hand-written parts of docs/configuration.md name in a code span is one
// the loaders read (config/help.go) or one the compose files define, so
// the prose cannot invent or keep a variable that does not exist.
func TestConfigurationReferenceNamesNoUnknownVariable(t *testing.T) {
	b, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if i, j := strings.Index(doc, referenceBegin), strings.Index(doc, referenceEnd); i >= 0 && j > i {
		doc = doc[:i] + doc[j:]
	}
	var compose strings.Builder
	for _, f := range []string{"../docker-compose.yml", "../.env.example"} {
		c, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		compose.Write(c)
	}
	// The placeholders of .env.example are named too; they are no variables.
	known := map[string]bool{"CHANGE_ME": true}
	for _, r := range vars {
		known[r.Name] = true
	}
	checked := 0
	for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])`").FindAllStringSubmatch(doc, -1) {
		name := m[1]
		checked++
		if known[name] {
			continue
		}
		if strings.Contains(compose.String(), "${"+name) || strings.Contains(compose.String(), "\n"+name+"=") {
			continue
		}
		t.Errorf("docs/configuration.md names `%s`, which neither config/help.go nor docker-compose.yml/.env.example define", name)
	}
	if checked < 10 {
		t.Errorf("only %d variable names found outside the generated table: is the pattern broken?", checked)
	}
}

// TestRenderReference: the rendering escapes what Markdown would
// swallow and lists the commands of a row.
func TestRenderReference(t *testing.T) {
	known := map[string]bool{"ENCRYPTION_KEY": true, "ENCRYPTION_KEYS": true}
	got := markdownText("id:<base64 32 bytes>,…; this or ENCRYPTION_KEY; a|b, or *; TELEMETRY_DLQ", known)
	want := "id:&lt;base64 32 bytes&gt;,…; this or `ENCRYPTION_KEY`; a\\|b, or \\*; TELEMETRY_DLQ"
	if got != want {
		t.Errorf("markdownText = %q, want %q", got, want)
	}
	table := renderReference()
	for _, row := range []string{
		"| `NATS_URL` | api, worker, worker dlq, worker status | `nats://127.0.0.1:4222` |",
		"| `API_KEYS` | api | **required** |",
		"| `TRUSTED_PROXIES` | api | unset |",
	} {
		if !strings.Contains(table, row) {
			t.Errorf("the rendered table has no row starting %q", row)
		}
	}
}
