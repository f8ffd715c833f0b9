package handlers

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"

	"github.com/challenge-v3/challenge-v3/handlers/docsui"
	"github.com/challenge-v3/challenge-v3/handlers/openapi"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// The documentation routes: the OpenAPI document and the docs page with
// its assets. They need no API key (see isPublic) and are rate limited like
// every other route.
const (
	RouteOpenAPI   = "GET /openapi.json"
	RouteDocs      = "GET /docs"
	RouteDocsSlash = "GET /docs/{$}"
	RouteDocsAsset = "GET /docs/{file}"
)

// isPublic tells the routes that answer without an API key: the API's
// description is public, like any published API reference.
func isPublic(route string) bool {
	switch route {
	case RouteOpenAPI, RouteDocs, RouteDocsSlash, RouteDocsAsset:
		return true
	}
	return false
}

// docsCSP lets the docs page use only what this server serves. Swagger UI
// sets inline style attributes (hence 'unsafe-inline' for styles only),
// shows its icons as data: images and a fetched image answer as a blob:.
// Scripts are same-origin files: index.html has no inline script.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// staticFile is an embedded file ready to serve.
type staticFile struct {
	body        []byte
	contentType string
	etag        string
	// cacheControl: the document and the page itself are revalidated on
	// every use (they change with each deployment; a 304 costs nothing),
	// the vendored assets are kept for an hour.
	cacheControl string
	csp          bool
}

// docs serves the documentation routes from memory.
type docs struct {
	document staticFile
	files    map[string]staticFile // by file name under /docs/
}

// docsTypes are the content types of the docs page's files, by extension.
var docsTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".txt":  "text/plain; charset=utf-8",
	"":      "text/plain; charset=utf-8", // LICENSE, NOTICE
}

// newDocs loads the embedded document and page once, and fails when the
// document is broken, so a bad build stops at start-up rather than serving
// it.
func newDocs() (*docs, error) {
	if err := openapi.Check(); err != nil {
		return nil, fmt.Errorf("handlers: %w", err)
	}
	d := &docs{
		document: newStaticFile(openapi.JSON(), "application/json", "no-cache", false),
		files:    map[string]staticFile{},
	}
	err := fs.WalkDir(docsui.FS(), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		ct, ok := docsTypes[path.Ext(name)]
		if !ok {
			return fmt.Errorf("docs page file %s: no content type for its extension", name)
		}
		b, err := fs.ReadFile(docsui.FS(), name)
		if err != nil {
			return err
		}
		cc := "public, max-age=3600"
		if name == docsui.Index {
			cc = "no-cache"
		}
		d.files[name] = newStaticFile(b, ct, cc, true)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("handlers: docs page: %w", err)
	}
	if _, ok := d.files[docsui.Index]; !ok {
		return nil, fmt.Errorf("handlers: docs page: no %s", docsui.Index)
	}
	return d, nil
}

func newStaticFile(b []byte, contentType, cacheControl string, csp bool) staticFile {
	sum := sha256.Sum256(b)
	return staticFile{body: b, contentType: contentType, cacheControl: cacheControl, csp: csp,
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}
}

// register adds the documentation routes to mux.
func (d *docs) register(mux *http.ServeMux) {
	mux.HandleFunc(RouteOpenAPI, func(w http.ResponseWriter, r *http.Request) { d.document.serve(w, r) })
	page := func(w http.ResponseWriter, r *http.Request) { d.files[docsui.Index].serve(w, r) }
	mux.HandleFunc(RouteDocs, page)
	mux.HandleFunc(RouteDocsSlash, page)
	mux.HandleFunc(RouteDocsAsset, d.asset)
}

func (d *docs) asset(w http.ResponseWriter, r *http.Request) {
	f, ok := d.files[r.PathValue("file")]
	if !ok {
		writeError(w, r, fieldProblem(ierr.NotFound, "", "No such file of the docs page; the page is at /docs."))
		return
	}
	f.serve(w, r)
}

// serve answers with the file, or 304 when the client's copy is current.
// Query parameters are ignored: Swagger UI may add its own.
func (f staticFile) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", f.cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	if f.csp {
		h.Set("Content-Security-Policy", docsCSP)
	}
	if tagged, anyTag := ifNoneMatch(r.Header.Values("If-None-Match"), f.etag); tagged || anyTag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(f.body)
	}
}
