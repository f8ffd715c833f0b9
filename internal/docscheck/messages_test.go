package docscheck_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// troubleshooting is the page whose quoted messages must exist in the code.
const troubleshooting = "docs/troubleshooting.md"

// reMessageLine is a line that quotes messages: "Message:" or "Messages:"
// in bold, at the start of the line or of a list item. Every code span on
// it is a quote.
var reMessageLine = regexp.MustCompile(`^\s*(?:[-*]\s+)?\*\*Messages?:\*\*`)

var reCodeSpan = regexp.MustCompile("`([^`]+)`")

// Quote is one message a documentation line quotes.
type quote struct {
	line int
	text string
}

// quotedMessages returns the quotes of the "Message:" lines of a page.
func quotedMessages(page string) []quote {
	var out []quote
	for i, line := range strings.Split(page, "\n") {
		if !reMessageLine.MatchString(line) {
			continue
		}
		for _, m := range reCodeSpan.FindAllStringSubmatch(line, -1) {
			out = append(out, quote{line: i + 1, text: m[1]})
		}
	}
	return out
}

// hole stands for what the code fills in at run time: a format verb's
// argument or a non-constant operand of a string concatenation.
const hole = "…"

// reVerb is a fmt verb ("%d", "%-8s", "%.1f", "%q", "%w"); "%%" is a
// literal percent sign.
var reVerb = regexp.MustCompile(`%(?:%|[-+#0]*[0-9]*(?:\.[0-9]+)?[vTtbcdoOqxXUeEfFgGspw])`)

// sourceStrings returns the string texts of the non-test Go files under
// root, and the embedded SQL migrations: every string literal, and every
// concatenation of string literals and constants, with format verbs and
// non-constant operands read as holes ("…"). A message a binary prints or
// logs is built from these.
func sourceStrings(t *testing.T, root string) []string {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".devstack", "testdata", "node_modules", "vendor", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go"):
			f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files = append(files, f)
		case strings.HasSuffix(p, ".sql") && strings.Contains(filepath.ToSlash(p), "storage/migrations/"):
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	consts := stringConstants(files)
	var visit func(n ast.Node) bool
	visit = func(n ast.Node) bool {
		switch e := n.(type) {
		case *ast.BinaryExpr:
			if e.Op != token.ADD {
				return true
			}
			var b strings.Builder
			literal := false
			for _, op := range flatten(e) {
				if s, ok := stringLit(op); ok {
					b.WriteString(verbsAsHoles(s))
					literal = true
				} else if s, ok := consts[constName(op)]; ok {
					b.WriteString(verbsAsHoles(s))
				} else {
					b.WriteString(hole)
					ast.Inspect(op, visit) // strings inside the operand: a call's arguments
				}
			}
			if literal {
				out = append(out, b.String())
			}
			return false
		case *ast.BasicLit:
			if s, ok := stringLit(e); ok {
				out = append(out, verbsAsHoles(s))
			}
		}
		return true
	}
	for _, f := range files {
		ast.Inspect(f, visit)
	}
	return out
}

// stringConstants maps the name of every string constant declared once
// (or with one value everywhere) to its value; a name with two values maps
// to nothing and reads as a hole.
func stringConstants(files []*ast.File) map[string]string {
	consts, clash := map[string]string{}, map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			g, ok := n.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				return true
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					s, ok := stringLit(vs.Values[i])
					if !ok {
						continue
					}
					if v, seen := consts[name.Name]; seen && v != s {
						clash[name.Name] = true
					}
					consts[name.Name] = s
				}
			}
			return true
		})
	}
	for name := range clash {
		delete(consts, name)
	}
	return consts
}

// flatten lists the operands of a chain of + in order.
func flatten(e ast.Expr) []ast.Expr {
	if p, ok := e.(*ast.ParenExpr); ok {
		return flatten(p.X)
	}
	if b, ok := e.(*ast.BinaryExpr); ok && b.Op == token.ADD {
		return append(flatten(b.X), flatten(b.Y)...)
	}
	return []ast.Expr{e}
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// constName is the name an identifier or a qualified identifier
// (messaging.StreamName) refers to, "" for another expression.
func constName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return x.Sel.Name
	}
	return ""
}

func verbsAsHoles(s string) string {
	return reVerb.ReplaceAllStringFunc(s, func(v string) string {
		if v == "%%" {
			return "%"
		}
		return hole
	})
}

// quotePattern is the regular expression of a quote: its text verbatim,
// each "…" standing for any text (a hole of the code, or words the page
// leaves out).
func quotePattern(q string) *regexp.Regexp {
	parts := strings.Split(q, hole)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(strings.Join(parts, ".*?"))
}

// longestPiece is the longest verbatim piece of a quote.
func longestPiece(q string) string {
	long := ""
	for _, p := range strings.Split(q, hole) {
		if len(p) > len(long) {
			long = p
		}
	}
	return long
}

// findQuote reports whether one source string holds the quote.
func findQuote(q string, sources []string) bool {
	long, re := longestPiece(q), quotePattern(q)
	for _, s := range sources {
		if strings.Contains(s, long) && re.MatchString(s) {
			return true
		}
	}
	return false
}

// minPiece is the shortest a quote's longest verbatim piece may be: a
// quote that is mostly "…" would match anything.
const minPiece = 12

// TestTroubleshootingQuotesRealMessages: every message docs/troubleshooting.md
// quotes on a **Message:** line is a string of the Go sources (or of the
// embedded migrations), so the page cannot drift from what the binaries
// print and log. "…" in a quote is what the code fills in (a number, a
// name, an error) or words left out; everything else is verbatim.
func TestTroubleshootingQuotesRealMessages(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(root, troubleshooting))
	if err != nil {
		t.Fatal(err)
	}
	quotes := quotedMessages(string(page))
	if len(quotes) < 40 {
		t.Fatalf("%s: only %d quoted messages found: is the convention (**Message:** `…`) still the page's?", troubleshooting, len(quotes))
	}
	sources := sourceStrings(t, root)
	for _, q := range quotes {
		if len(longestPiece(q.text)) < minPiece {
			t.Errorf("%s:%d: quote %q has no verbatim piece of %d characters or more; quote more of the message", troubleshooting, q.line, q.text, minPiece)
			continue
		}
		if !findQuote(q.text, sources) {
			t.Errorf("%s:%d: no string of the Go sources holds the quoted message %q; the code's text changed, or the quote is wrong", troubleshooting, q.line, q.text)
		}
	}
	t.Logf("%d quoted messages checked against %d source strings", len(quotes), len(sources))
}

// TestQuoteMatching: the check above finds what is there, holes and
// constants included, and fails on what is not.
func TestQuoteMatching(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import "fmt"

const StreamName = "TELEMETRY"

var errNoStream = fmt.Errorf("stream " + StreamName + " not reachable")

func f(n int, name string) error {
	return fmt.Errorf("NATS server max_payload is %d bytes; photos need at least %d (100%%)", n, 2*n) 
}

func g(name string) string { return "The API key " + name + " lacks the scope." }
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\n\nconst only = \"only in a test file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sources := sourceStrings(t, dir)
	for _, tt := range []struct {
		quote string
		found bool
	}{
		{"stream TELEMETRY not reachable", true},
		{"NATS server max_payload is … bytes; photos need at least … (100%)", true},
		{"max_payload is … bytes", true},
		{"The API key … lacks the scope.", true},
		{"NATS server max_payload is 1048576 bytes", false}, // a value where the code has a hole
		{"stream TELEMETRY is not reachable", false},
		{"only in a test file", false},
		{"photos need at least … NATS server", false}, // pieces out of order
	} {
		if got := findQuote(tt.quote, sources); got != tt.found {
			t.Errorf("findQuote(%q) = %v, want %v", tt.quote, got, tt.found)
		}
	}
	page := "intro `not a quote`\n- **Message:** `first` and `second`\n**Messages:** `third`\nMessage: `plain, not bold`\n"
	var got []string
	for _, q := range quotedMessages(page) {
		got = append(got, strconv.Itoa(q.line)+":"+q.text)
	}
	if want := "2:first 2:second 3:third"; strings.Join(got, " ") != want {
		t.Errorf("quotedMessages = %q, want %q", got, want)
	}
}
