package handlers

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// ProblemTypeBase prefixes every problem "type": each type is a section of
// the API documentation.
const ProblemTypeBase = "https://github.com/challenge-v3/challenge-v3/blob/main/docs/api.md#"

// retryAfterSeconds is what a client is told to wait after a 503: long
// enough for a NATS reconnect, short against the ~10 s reporting period.
const retryAfterSeconds = 5

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail,omitempty"`
	Instance  string            `json:"instance,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Errors    []ierr.FieldError `json:"errors,omitempty"`
}

// problemKind describes how one ierr.Kind reaches a client.
type problemKind struct {
	status int
	slug   string
	title  string
	// detail replaces the error's text: for server-side kinds the cause is
	// for the log, never for the client.
	detail string
}

// kinds is the one place an ierr.Kind becomes an HTTP status.
//
// Conflict is 422: on the ingest path its only source is an Idempotency-Key
// reused with a different body, which the IETF Idempotency-Key draft answers
// with 422 (409 is kept for a concurrent request, which cannot happen here:
// the first claim wins and later ones share its id).
var kinds = map[ierr.Kind]problemKind{
	ierr.Invalid:         {http.StatusBadRequest, "validation-error", "The request is invalid", ""},
	ierr.TooLarge:        {http.StatusRequestEntityTooLarge, "too-large", "The request or its image is too large", ""},
	ierr.Unsupported:     {http.StatusUnsupportedMediaType, "unsupported-media-type", "The media type is not supported", ""},
	ierr.Unauthenticated: {http.StatusUnauthorized, "unauthenticated", "Authentication is required", ""},
	ierr.Forbidden:       {http.StatusForbidden, "forbidden", "The API key lacks the required scope", ""},
	ierr.Conflict:        {http.StatusUnprocessableEntity, "idempotency-key-reused", "The Idempotency-Key was used for a different request", ""},
	ierr.NotFound:        {http.StatusNotFound, "not-found", "Not found", ""},
	ierr.Unavailable: {http.StatusServiceUnavailable, "service-unavailable", "The service cannot accept the reading right now",
		"The message queue did not acknowledge the reading in time, so it may not have been accepted. Retry later with the same Idempotency-Key: a retry with the key is never stored twice."},
	ierr.Misconfigured: {http.StatusServiceUnavailable, "service-unavailable", "The service cannot accept the reading right now",
		"The service is misconfigured; nothing was accepted. Retry later with the same Idempotency-Key."},
	ierr.Internal: {http.StatusInternalServerError, "internal-error", "Internal server error",
		"An unexpected error occurred; nothing was accepted. Quote the request_id when reporting it."},
}

// readKinds replace rows of kinds on the read routes (GET, HEAD), whose
// server-side failures are the database's, not the queue's, and where
// nothing is being accepted. A 500 there has no detail: the request_id is
// what a report needs, and an image that does not decrypt must not say why.
var readKinds = map[ierr.Kind]problemKind{
	ierr.Unavailable: {http.StatusServiceUnavailable, "service-unavailable", "The stored data cannot be read right now",
		"The database did not answer in time. Retry after the number of seconds in Retry-After."},
	ierr.Misconfigured: {http.StatusServiceUnavailable, "service-unavailable", "The stored data cannot be read right now",
		"The read API cannot use its database (a server-side problem operators can see in the log). Retry later."},
	ierr.Internal: {http.StatusInternalServerError, "internal-error", "Internal server error", ""},
}

// writeError answers with the problem document err maps to. Server-side
// causes are handed to the access log (logged once there) and never shown.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var rf *refusal
	if errors.As(err, &rf) {
		rf.write(w, r)
		return
	}
	kind := ierr.KindOf(err)
	pk, ok := kinds[kind]
	if !ok {
		kind, pk = ierr.Internal, kinds[ierr.Internal]
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if rk, ok := readKinds[kind]; ok {
			pk = rk
		}
	}
	listed, more := listedFields(err)
	p := Problem{
		Type:   ProblemTypeBase + pk.slug,
		Title:  pk.title,
		Status: pk.status,
		Detail: pk.detail,
		Errors: listed,
	}
	if pk.status >= 500 {
		p.Errors = nil
		if info := infoFrom(r.Context()); info != nil {
			info.err = err
		}
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	} else if p.Detail == "" && more > 0 {
		p.Detail = thousands(len(listed)+more) + " fields are invalid; errors lists the first " +
			strconv.Itoa(len(listed)) + " … and " + thousands(more) + " more."
	} else if p.Detail == "" {
		p.Detail = clientDetail(err, len(p.Errors))
	}
	switch pk.status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `APIKey realm="telemetry", header="X-API-Key"`)
	case http.StatusRequestEntityTooLarge:
		// The rest of the body is not worth reading: close after replying.
		w.Header().Set("Connection", "close")
	}
	writeProblem(w, r, p)
}

// maxListedFields is the most field errors an answer lists (SPEC §2), so
// that a body of thousands of faults is answered in a few KiB. models cuts
// its own lists there already and counts the rest (models.OmittedFields);
// the cut here holds for any other source.
const maxListedFields = models.MaxFieldErrors

// listedFields returns the field errors of err that an answer lists, and
// how many more are at fault.
func listedFields(err error) ([]ierr.FieldError, int) {
	fields := ierr.FieldsOf(err)
	var more models.OmittedFields
	errors.As(err, &more)
	if len(fields) > maxListedFields {
		more += models.OmittedFields(len(fields) - maxListedFields)
		fields = fields[:maxListedFields]
	}
	return fields, int(more)
}

// thousands formats n ≥ 0 with thousands separators: 3,412.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// clientDetail is the human-readable detail of a client error. The causes of
// client-side kinds are written by this module for clients (models,
// messaging), never raw dependency text.
func clientDetail(err error, nFields int) string {
	var e *ierr.Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err.Error()
	}
	if nFields == 1 {
		return "1 field is invalid; see errors."
	}
	if nFields > 1 {
		return strconv.Itoa(nFields) + " fields are invalid; see errors."
	}
	return ""
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.Instance = r.URL.Path
	if info := infoFrom(r.Context()); info != nil {
		p.RequestID = info.id
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	body, _ := json.Marshal(p) // a Problem always marshals
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// fieldProblem is a 4xx about one field (or the body, field "").
func fieldProblem(kind ierr.Kind, field, msg string) error {
	e := &ierr.Error{Kind: kind, Op: "handlers"}
	if field != "" {
		e.Fields = []ierr.FieldError{{Field: field, Message: msg}}
	} else {
		e.Err = errors.New(msg)
	}
	return e
}

// refusal is an error that is its own answer: a problem document no
// ierr.Kind describes (a slot refused, an upload cut off), written as is.
type refusal struct {
	Problem
	retryAfter int  // seconds; 0: no Retry-After
	close      bool // close the connection after the answer (the body is not read)
}

func (r *refusal) Error() string { return r.Title }

func (r *refusal) write(w http.ResponseWriter, req *http.Request) {
	if r.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(r.retryAfter))
	}
	if r.close {
		w.Header().Set("Connection", "close")
	}
	writeProblem(w, req, r.Problem)
}
