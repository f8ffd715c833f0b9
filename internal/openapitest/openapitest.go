// Package openapitest checks, in tests, that the API does what its OpenAPI
// document (handlers/openapi/openapi.json) says: every request a test sends
// through Transport or Client and every response it gets back is validated
// against the document with kin-openapi, and a mismatch fails the test with
// the route, the status and the validation error.
//
// Use it wherever a test talks HTTP to the public or the admin listener:
//
//	client := openapitest.Client(t)                       // or
//	c := srv.Client(); c.Transport = openapitest.Transport(t, c.Transport)
//
// What is checked, per exchange:
//   - the request matches a documented operation (method and path); a
//     request to an undocumented one (a test of unknown routes) must be
//     refused with a problem document: 404 or 405, or 401, 403 or 429 from
//     the layers in front of the router; never 2xx;
//   - the request's parameters, headers, API-key presence and body (JSON,
//     multipart) against the operation. A request the document calls invalid
//     is fine when the server refuses it (4xx: a negative test), and an error
//     when the server accepts it (the document is stricter than the code);
//   - the response's status is documented for the operation, its headers
//     (required ones present, values matching their schemas) and its
//     Content-Type is one the document lists for that status;
//   - the response body against its schema for JSON, problem+json and
//     geo+json. Other bodies are not read: a text/event-stream stays open
//     (status and headers are checked), and images, the docs page's assets
//     and metrics are checked by Content-Type only.
//
// CORS preflights (OPTIONS with Access-Control-Request-Method) are passed
// through unchecked: they are answered by the CORS layer, not by an
// operation of the API, and OpenAPI does not describe them.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/challenge-v3/challenge-v3/handlers/openapi"
)

// maxValidatedRequestBody bounds the request bodies read again for
// validation: a test of the body limits may send much more, and the point of
// such a test is the server's 413, not the document.
const maxValidatedRequestBody = 16 << 20

// Document returns the embedded OpenAPI document, loaded and validated once
// per test binary. It fails t when the document is broken.
func Document(t testing.TB) *openapi3.T {
	t.Helper()
	s, err := load()
	if err != nil {
		t.Fatalf("openapitest: %v", err)
	}
	return s.doc
}

// Client returns an *http.Client whose transport is Transport(t, nil).
func Client(t testing.TB) *http.Client {
	return &http.Client{Transport: Transport(t, nil)}
}

// Transport returns a RoundTripper that sends through base
// (http.DefaultTransport when nil) and validates each request and response
// against the OpenAPI document, failing t (with t.Errorf, so it is safe from
// any goroutine) on a mismatch. The response's body is handed back intact.
func Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	t.Helper()
	s, err := load()
	if err != nil {
		t.Fatalf("openapitest: %v", err)
	}
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{t: t, base: base, s: s}
}

// spec is the loaded document and its router.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	// problem is the Problem schema, for answers to undocumented routes.
	problem *openapi3.Schema
	// elsewhere are the paths served on a listener of their own (the
	// admin one): on the public listener they are unknown routes.
	elsewhere map[string]bool
}

var (
	loadOnce sync.Once
	loaded   *spec
	loadErr  error
)

func init() {
	// NDJSON (the batch route) is validated as text: its lines are the
	// server's to judge one by one.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.FileBodyDecoder)
}

func load() (*spec, error) {
	loadOnce.Do(func() { loaded, loadErr = loadSpec(openapi.JSON()) })
	return loaded, loadErr
}

func loadSpec(data []byte) (*spec, error) {
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("openapi.json does not load: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapi.json: openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %w", err)
	}
	// Routes are matched by method and path only: the tests' servers listen
	// on random ports, and the admin routes have a server of their own.
	doc.Servers = nil
	elsewhere := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if len(item.Servers) > 0 {
			elsewhere[path] = true
		}
		item.Servers = nil
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: router: %w", err)
	}
	problem := doc.Components.Schemas["Problem"]
	if problem == nil || problem.Value == nil {
		return nil, errors.New("openapi.json: no Problem schema")
	}
	return &spec{doc: doc, router: router, problem: problem.Value, elsewhere: elsewhere}, nil
}

type transport struct {
	t    testing.TB
	base http.RoundTripper
	s    *spec
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		return tr.base.RoundTrip(req) // a CORS preflight: see the package comment
	}
	ctx := context.Background()
	name := req.Method + " " + req.URL.RequestURI()
	route, pathParams, findErr := tr.s.router.FindRoute(req)

	var in *openapi3filter.RequestValidationInput
	var reqErr error
	if findErr == nil {
		in, reqErr = tr.validateRequest(ctx, req, route, pathParams)
	}

	resp, err := tr.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	where := fmt.Sprintf("%s → %d", name, resp.StatusCode)

	if findErr != nil {
		tr.undocumented(where, resp, findErr)
		return resp, nil
	}
	if tr.s.elsewhere[route.Path] && refusals[resp.StatusCode] && route.Operation.Responses.Status(resp.StatusCode) == nil {
		// An admin path asked of the public listener, which does not know it.
		tr.undocumented(where, resp, fmt.Errorf("%s is served on another listener", route.Path))
		return resp, nil
	}
	if reqErr != nil && resp.StatusCode < 400 {
		tr.t.Errorf("openapitest: %s: the server accepted a request the OpenAPI document calls invalid: %v", where, reqErr)
	}
	tr.validateResponse(ctx, where, in, resp)
	return resp, nil
}

// validateRequest checks req against its operation, reading a replayable
// body from a copy (req itself is not touched: a RoundTripper must not).
func (tr *transport) validateRequest(ctx context.Context, req *http.Request, route *routers.Route, pathParams map[string]string) (*openapi3filter.RequestValidationInput, error) {
	opts := &openapi3filter.Options{
		AuthenticationFunc: apiKeyPresent,
		// Every documented status, and only those.
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	vreq := req.Clone(ctx)
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		vreq.Body = http.NoBody
	case req.GetBody != nil && req.ContentLength >= 0 && req.ContentLength <= maxValidatedRequestBody:
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("openapitest: request body: %w", err)
		}
		vreq.Body = body
	default:
		// A streamed or huge body: parameters and headers only.
		vreq.Body = http.NoBody
		opts.ExcludeRequestBody = true
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: pathParams, Route: route, Options: opts}
	err := openapi3filter.ValidateRequest(ctx, in)
	// The response is validated against the same route, without the body
	// options of the request.
	in.Options = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	return in, err
}

// apiKeyPresent is the document's one security scheme: the X-API-Key header
// must be there. Whether the key is valid is the server's to say.
func apiKeyPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "apiKey" || s.In != "header" {
		return in.NewError(fmt.Errorf("unsupported security scheme %s in %s", s.Type, s.In))
	}
	if in.RequestValidationInput.Request.Header.Get(s.Name) == "" {
		return in.NewError(fmt.Errorf("header %s is missing", s.Name))
	}
	return nil
}

// refusals are the answers a request for an undocumented operation may get:
// 404 or 405 from the router, or a refusal by a layer that runs before it
// (authentication 401/403, rate limit 429).
var refusals = map[int]bool{
	http.StatusNotFound: true, http.StatusMethodNotAllowed: true,
	http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusTooManyRequests: true,
}

// undocumented checks the answer to a request that matches no documented
// operation: it must be a refusal, as a problem document.
func (tr *transport) undocumented(where string, resp *http.Response, findErr error) {
	if !refusals[resp.StatusCode] {
		tr.t.Errorf("openapitest: %s: the route is not in the OpenAPI document (%v), yet the server answered %d", where, findErr, resp.StatusCode)
		return
	}
	body, ok := tr.readBody(where, resp)
	if !ok {
		return
	}
	if mt := mediaType(resp.Header.Get("Content-Type")); mt != "application/problem+json" {
		tr.t.Errorf("openapitest: %s: an unknown route must be answered with application/problem+json, got %q", where, mt)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		tr.t.Errorf("openapitest: %s: problem document: %v", where, err)
		return
	}
	if err := tr.s.problem.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		tr.t.Errorf("openapitest: %s: problem document does not match the Problem schema: %v", where, err)
	}
}

func (tr *transport) validateResponse(ctx context.Context, where string, in *openapi3filter.RequestValidationInput, resp *http.Response) {
	op := in.Route.Operation
	documented := op.Responses.Status(resp.StatusCode)
	if documented == nil {
		documented = op.Responses.Default()
	}
	if documented == nil {
		tr.t.Errorf("openapitest: %s: status %d is not documented for %s %s", where, resp.StatusCode, in.Route.Method, in.Route.Path)
		return
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                in.Options,
	}
	mt := mediaType(resp.Header.Get("Content-Type"))
	switch {
	case in.Request.Method == http.MethodHead || resp.StatusCode == http.StatusNotModified || resp.StatusCode == http.StatusNoContent:
		// No body. kin-openapi skips these statuses altogether: check the
		// headers at least.
		out.Options.ExcludeResponseBody = true
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			tr.t.Errorf("openapitest: %s: %v", where, err)
		}
		tr.checkHeaders(where, documented.Value, resp.Header)
		return
	case !isJSON(mt):
		// The stream never ends; images, pages, scripts and metrics have no
		// schema worth the name: status, headers and Content-Type only, the
		// body left unread.
		out.Options.ExcludeResponseBody = true
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			tr.t.Errorf("openapitest: %s: %v", where, err)
		}
		if len(documented.Value.Content) > 0 && documented.Value.Content.Get(mt) == nil {
			tr.t.Errorf("openapitest: %s: Content-Type %q is not documented for this status", where, mt)
		}
		return
	}
	body, ok := tr.readBody(where, resp)
	if !ok {
		return
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		tr.t.Errorf("openapitest: %s: %v\nbody: %s", where, err, truncate(body))
	}
}

// checkHeaders validates the documented headers of a bodiless answer
// (304), which kin-openapi does not look at.
func (tr *transport) checkHeaders(where string, r *openapi3.Response, h http.Header) {
	for name, ref := range r.Headers {
		if ref.Value == nil {
			continue
		}
		if ref.Value.Required && h.Get(name) == "" {
			tr.t.Errorf("openapitest: %s: required response header %q missing", where, name)
		}
	}
}

// readBody reads the whole response body and puts an identical one back.
func (tr *transport) readBody(where string, resp *http.Response) ([]byte, bool) {
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
	if err != nil {
		// The test may be about a broken-off answer: hand it back as it
		// came, unvalidated.
		return nil, false
	}
	return body, true
}

// errReader returns err, or io.EOF when err is nil.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == nil {
		return 0, io.EOF
	}
	return 0, e.err
}

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return mt
}

// isJSON tells the media types whose bodies are validated: JSON and its
// +json kinds (problem+json, geo+json).
func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

func truncate(b []byte) string {
	const max = 2 << 10
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}
