package handlers

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/handlers/docsui"
	"github.com/challenge-v3/challenge-v3/handlers/openapi"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
)

// get sends a GET without an API key unless headers add one.
func (s *stack) get(path string, headers ...string) (*http.Response, []byte) {
	s.t.Helper()
	resp := s.do(http.MethodGet, path, "", nil, append([]string{"X-API-Key", ""}, headers...)...)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

func wantHeader(t *testing.T, resp *http.Response, name, want string) {
	t.Helper()
	if got := resp.Header.Get(name); got != want {
		t.Errorf("%s %s: %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, name, got, want)
	}
}

func TestOpenAPIDocumentIsServedWithoutKeyAsOpenAPI31(t *testing.T) {
	s := newStack(t, nil)
	resp, body := s.get("/openapi.json")
	wantStatus(t, resp, http.StatusOK)
	wantHeader(t, resp, "Content-Type", "application/json")
	wantHeader(t, resp, "Cache-Control", "no-cache")
	etag := resp.Header.Get("ETag")
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]+"$`).MatchString(etag) {
		t.Errorf("ETag %q is not a strong entity tag", etag)
	}

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(body)
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Errorf("the served document is not valid OpenAPI: %v", err)
	}

	resp, body = s.get("/openapi.json", "If-None-Match", etag)
	wantStatus(t, resp, http.StatusNotModified)
	if len(body) != 0 {
		t.Errorf("304 with a body of %d bytes", len(body))
	}
}

func TestDocsPageWorksOfflineWithoutKey(t *testing.T) {
	s := newStack(t, nil)
	for _, path := range []string{"/docs", "/docs/"} {
		resp, body := s.get(path)
		wantStatus(t, resp, http.StatusOK)
		wantHeader(t, resp, "Content-Type", "text/html; charset=utf-8")
		csp := resp.Header.Get("Content-Security-Policy")
		for _, directive := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, directive) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", path, csp, directive)
			}
		}
		if strings.Contains(csp, "http") || strings.Contains(csp, "*") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q allows another origin or eval", path, csp)
		}

		// Every asset of the page is this server's own, and is served.
		refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(body), -1)
		if len(refs) < 3 {
			t.Fatalf("%s references %d assets: %s", path, len(refs), body)
		}
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).Match(body) {
			t.Errorf("%s has an inline script: the CSP forbids it", path)
		}
		for _, m := range refs {
			ref := m[1]
			if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
				t.Errorf("%s references %q: not a same-origin path", path, ref)
				continue
			}
			resp, _ := s.get(ref)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s references %s, which answers %d", path, ref, resp.StatusCode)
			}
		}
	}

	for _, tc := range []struct{ path, contentType string }{
		{"/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
		{"/docs/init.js", "text/javascript; charset=utf-8"},
		{"/docs/swagger-ui.css", "text/css; charset=utf-8"},
		{"/docs/docs.css", "text/css; charset=utf-8"},
		{"/docs/favicon-32x32.png", "image/png"},
		{"/docs/LICENSE", "text/plain; charset=utf-8"},
		{"/docs/NOTICE", "text/plain; charset=utf-8"},
	} {
		resp, body := s.get(tc.path)
		wantStatus(t, resp, http.StatusOK)
		wantHeader(t, resp, "Content-Type", tc.contentType)
		wantHeader(t, resp, "X-Content-Type-Options", "nosniff")
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("ETag") == "" {
			t.Errorf("%s: no Content-Security-Policy or ETag", tc.path)
		}
		if len(body) == 0 {
			t.Errorf("%s is empty", tc.path)
		}
		if tc.path == "/docs/init.js" {
			js := string(body)
			for _, want := range []string{`url: "/openapi.json"`, "validatorUrl: null", "queryConfigEnabled: false"} {
				if !strings.Contains(js, want) {
					t.Errorf("init.js does not configure %s", want)
				}
			}
			if strings.Contains(js, "http://") || strings.Contains(js, "https://") {
				t.Errorf("init.js names another origin:\n%s", js)
			}
		}
	}

	resp, body := s.get("/docs/swagger-ui-standalone-preset.js")
	wantStatus(t, resp, http.StatusNotFound)
	wantHeader(t, resp, "Content-Type", "application/problem+json")
	if p := decodeProblem(t, body); p.Type != ProblemTypeBase+"not-found" {
		t.Errorf("unknown asset: problem type %q", p.Type)
	}
}

func decodeProblem(t *testing.T, body []byte) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem %q: %v", body, err)
	}
	return p
}

func TestDocumentationRoutesAreRateLimited(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.RateLimitRPS, c.RateLimitBurst = 0.01, 2 })
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		path := []string{"/openapi.json", "/docs", "/docs/init.js"}[i]
		resp, _ := s.get(path)
		if resp.StatusCode != want {
			t.Fatalf("request %d (%s): status %d, want %d", i+1, path, resp.StatusCode, want)
		}
		if resp.Header.Get("RateLimit-Limit") != "2" {
			t.Errorf("%s: RateLimit-Limit %q", path, resp.Header.Get("RateLimit-Limit"))
		}
	}
}

func TestDocsPageVendorsSwaggerUI5(t *testing.T) {
	if !strings.HasPrefix(docsui.SwaggerUIVersion, "5.") {
		t.Errorf("SwaggerUIVersion %q: the page's configuration is written for Swagger UI 5", docsui.SwaggerUIVersion)
	}
	readme, err := os.ReadFile("docsui/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "**"+docsui.SwaggerUIVersion+"**") {
		t.Errorf("docsui/README.md does not name version %s", docsui.SwaggerUIVersion)
	}
}

// routePattern matches a ServeMux pattern with a method.
var routePattern = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/\S*)$`)

// servedPatterns returns every route pattern written in the non-test Go
// files of dir, as constants or literals: how a route is registered does
// not matter, it is written somewhere.
func servedPatterns(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && routePattern.MatchString(s) && !slices.Contains(out, s) {
				out = append(out, s)
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

// documentedAs is the OpenAPI operations a ServeMux pattern stands for:
// "{$}" is the path with its trailing slash, which the document names
// without it; other wildcards are the document's path parameters.
func documentedAs(pattern string) string {
	return strings.TrimSuffix(strings.TrimSuffix(pattern, "{$}"), "/")
}

// documentedOperations returns "METHOD /path" of every operation of doc,
// split into those of the public listener and those of the admin one
// (a path with servers of its own).
func documentedOperations(doc *openapi3.T) (public, admin []string) {
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			op := method + " " + path
			if len(item.Servers) > 0 {
				admin = append(admin, op)
			} else {
				public = append(public, op)
			}
		}
	}
	slices.Sort(public)
	slices.Sort(admin)
	return public, admin
}

func TestEveryRouteIsDocumentedAndEveryDocumentedRouteServed(t *testing.T) {
	// The document as loaded (servers and all), not the harness's copy.
	doc, err := openapi3.NewLoader().LoadFromData(mustServedDocument(t))
	if err != nil {
		t.Fatal(err)
	}
	public, admin := documentedOperations(doc)

	check := func(listener string, patterns, documented []string) {
		t.Helper()
		var mapped []string
		for _, p := range patterns {
			op := documentedAs(p)
			if !slices.Contains(documented, op) {
				t.Errorf("%s route %q is not in the OpenAPI document (as %q)", listener, p, op)
			}
			mapped = append(mapped, op)
		}
		for _, op := range documented {
			if !slices.Contains(mapped, op) {
				t.Errorf("the OpenAPI document describes %q, which the %s listener does not serve", op, listener)
			}
		}
	}
	patterns := servedPatterns(t, ".")
	check("public", patterns, public)
	check("admin", servedPatterns(t, "../metrics"), admin)

	// Each pattern written in the code is really registered: a request for
	// it is labelled with it in the access log (at debug level, where
	// every success has its line too).
	s := newStack(t, func(c *config.API) { c.LogLevel = slog.LevelDebug })
	samples := strings.NewReplacer("{id}", "01938f5e-7c2a-7b1e-9f4e-3c1d2a6b8e90", "{device_id}", "truck-7",
		"{file}", docsui.Index, "{$}", "")
	for i, p := range patterns {
		m := routePattern.FindStringSubmatch(p)
		req, err := http.NewRequest(m[1], s.srv.URL+samples.Replace(m[2]), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", "route-probe-"+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := s.routeLogged(req.Header.Get("X-Request-Id")); got != p {
			t.Errorf("%s %s was routed to %q, want %q", req.Method, req.URL.Path, got, p)
		}
	}
}

// routeLogged returns the route of a request's access-log line. The line
// is written once the answer is sent, so the client may be first: wait a
// little for it.
func (s *stack) routeLogged(requestID string) string {
	s.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for _, line := range strings.Split(s.logs.String(), "\n") {
			var l struct {
				Msg       string `json:"msg"`
				RequestID string `json:"request_id"`
				Route     string `json:"route"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "http request" && l.RequestID == requestID {
				return l.Route
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
	}
}

func mustServedDocument(t *testing.T) []byte {
	t.Helper()
	s := newStack(t, nil)
	resp, body := s.get("/openapi.json")
	wantStatus(t, resp, http.StatusOK)
	return body
}

// The harness validates against the very bytes the server serves.
func TestHarnessUsesTheServedDocument(t *testing.T) {
	if !bytes.Equal(mustServedDocument(t), openapi.JSON()) {
		t.Error("GET /openapi.json differs from openapi.JSON(), which internal/openapitest validates against")
	}
	_ = openapitest.Document(t) // loads and validates it
}
