package handlers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/docscheck"
)

// TestEveryProblemTypeIsDocumented: a problem's "type" is a link into
// docs/api.md, so every type the handlers can answer with must be a heading
// there, or a client following it lands at the top of the page. The types
// are the rows of kinds and readKinds plus every `ProblemTypeBase + "…"`
// in the package's source; a type built any other way fails the test, so a
// new one cannot slip past it.
func TestEveryProblemTypeIsDocumented(t *testing.T) {
	const doc = "docs/api.md"
	if !strings.HasSuffix(ProblemTypeBase, "/"+doc+"#") {
		t.Fatalf("ProblemTypeBase %q does not point into %s", ProblemTypeBase, doc)
	}
	types := map[string]string{} // slug → where it comes from
	for k, pk := range kinds {
		types[pk.slug] = "kinds[" + k.String() + "]"
	}
	for k, pk := range readKinds {
		types[pk.slug] = "readKinds[" + k.String() + "]"
	}
	for slug, where := range literalProblemTypes(t) {
		types[slug] = where
	}
	if len(types) < 10 {
		t.Fatalf("only %d problem types found: %v", len(types), types)
	}

	d, err := docscheck.ParseFile("..", doc)
	if err != nil {
		t.Fatal(err)
	}
	slugs := make([]string, 0, len(types))
	for s := range types {
		slugs = append(slugs, s)
	}
	sort.Strings(slugs)
	for _, s := range slugs {
		if !d.Anchors[s] {
			t.Errorf("problem type %s (%s) has no heading \"### %s\" in %s", ProblemTypeBase+s, types[s], s, doc)
		}
	}
}

// literalProblemTypes returns the suffix of every `ProblemTypeBase + "…"`
// in the package's non-test files, with its position. The one non-literal
// use allowed is a problemKind's slug (writeError), whose values the test
// takes from kinds and readKinds.
func literalProblemTypes(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	found := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok || be.Op != token.ADD {
				return true
			}
			if id, ok := be.X.(*ast.Ident); !ok || id.Name != "ProblemTypeBase" {
				return true
			}
			pos := fset.Position(be.Pos()).String()
			switch y := be.Y.(type) {
			case *ast.BasicLit:
				s, err := strconv.Unquote(y.Value)
				if err != nil || y.Kind != token.STRING {
					t.Errorf("%s: ProblemTypeBase + %s is not a string", pos, y.Value)
					return true
				}
				found[s] = pos
			case *ast.SelectorExpr:
				if y.Sel.Name != "slug" {
					t.Errorf("%s: ProblemTypeBase + .%s: this test cannot tell which problem type that is; "+
						"use a string literal or a row of kinds", pos, y.Sel.Name)
				}
			default:
				t.Errorf("%s: ProblemTypeBase + a %T: this test cannot tell which problem type that is; "+
					"use a string literal or a row of kinds", pos, y)
			}
			return true
		})
	}
	return found
}
