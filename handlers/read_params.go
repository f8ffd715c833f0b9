package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// Page sizes of the list routes (SPEC §8).
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
	// MaxTrackPoints is the most GPS fixes one track answer carries.
	MaxTrackPoints = 10_000
)

// recognitionStatuses are the values of recognition_status.
var recognitionStatuses = []string{"matched", "new_face", "no_face", "disabled"}

// params reads a read route's query string. Every problem is collected, so
// one 400 names every wrong parameter; a parameter the route does not know,
// or one given twice, is refused rather than ignored: a typo (devise_id=)
// silently widening a query is worse than an error.
type params struct {
	v    url.Values
	errs []ierr.FieldError
}

// readParams parses r's query string against the parameters the route
// knows.
func readParams(r *http.Request, known ...string) (*params, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fieldProblem(ierr.Invalid, "", "The query string is malformed (bad %-escape or a ';' separator).")
	}
	p := &params{v: v}
	names := make([]string, 0, len(v))
	for name := range v {
		names = append(names, name)
	}
	slices.Sort(names) // a stable order of errors
	for _, name := range names {
		switch {
		case !slices.Contains(known, name):
			msg := "is not a parameter of this route"
			if len(known) > 0 {
				msg += "; known: " + strings.Join(known, ", ")
			}
			p.fail(name, msg)
		case len(v[name]) > 1:
			p.fail(name, "must be given at most once")
		}
	}
	return p, nil
}

func (p *params) fail(name, msg string) {
	p.errs = append(p.errs, ierr.FieldError{Field: name, Message: msg})
}

// failed reports whether name already has an error (so it is named once).
func (p *params) failed(name string) bool {
	return slices.ContainsFunc(p.errs, func(fe ierr.FieldError) bool { return fe.Field == name })
}

// get returns the value of a parameter given exactly once; ok is false when
// it is absent or already failed. An empty value is an error, not absence:
// device_id= must not quietly mean every device.
func (p *params) get(name string) (string, bool) {
	vs, present := p.v[name]
	if !present || p.failed(name) {
		return "", false
	}
	if vs[0] == "" {
		p.fail(name, "must not be empty; leave the parameter out instead")
		return "", false
	}
	return vs[0], true
}

// err is the 400 naming every wrong parameter, or nil.
func (p *params) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	msg := "The query parameter " + p.errs[0].Field + " is invalid; see errors."
	if len(p.errs) > 1 {
		msg = strconv.Itoa(len(p.errs)) + " query parameters are invalid; see errors."
	}
	return &ierr.Error{Kind: ierr.Invalid, Op: "handlers.params", Err: errors.New(msg), Fields: p.errs}
}

// deviceID reads a device id, normalised as ingest normalises it (a MAC
// address in any notation matches the stored colon form).
func (p *params) deviceID(name string) string {
	v, ok := p.get(name)
	if !ok {
		return ""
	}
	id, msg := models.NormalizeDeviceID(v)
	if msg != "" {
		p.fail(name, msg)
	}
	return id
}

// time reads a time parameter: RFC 3339 or Unix epoch seconds.
func (p *params) time(name string) time.Time {
	v, ok := p.get(name)
	if !ok {
		return time.Time{}
	}
	t, msg := models.ParseTime(v)
	if msg != "" {
		p.fail(name, msg)
	}
	return t
}

// timeRange reads from and to, both inclusive, from not after to.
func (p *params) timeRange() (from, to time.Time) {
	from, to = p.time("from"), p.time("to")
	if !from.IsZero() && !to.IsZero() && from.After(to) {
		p.fail("from", "must not be after to")
	}
	return from, to
}

// limit reads a page size in [1, max].
func (p *params) limit(def, max int) int {
	v, ok := p.get("limit")
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		p.fail("limit", "must be an integer between 1 and "+strconv.Itoa(max))
		return def
	}
	return n
}

// oneOf reads a parameter whose value must be one of allowed.
func (p *params) oneOf(name string, allowed ...string) string {
	v, ok := p.get(name)
	if ok && !slices.Contains(allowed, v) {
		p.fail(name, "must be one of "+strings.Join(allowed, ", "))
		return ""
	}
	return v
}

// faceID reads a Rekognition face id (a UUID), in the lower-case form it is
// stored in.
func (p *params) faceID(name string) string {
	v, ok := p.get(name)
	if !ok {
		return ""
	}
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		p.fail(name, "must be a face id such as 3f1c2a4e-8b7d-4c5e-9a6b-0d1e2f3a4b5c")
		return ""
	}
	return id.String()
}

// Parameters of each read route.
var (
	readingListParams = []string{"device_id", "from", "to", "order", "limit", "cursor"}
	photoListParams   = []string{"device_id", "from", "to", "order", "limit", "cursor", "face_id", "recognition_status"}
	deviceListParams  = []string{"limit", "cursor"}
	trackParams       = []string{"from", "to"}
)

// listQuery parses the query of GET /telemetry/{type}.
func listQuery(r *http.Request, t models.Type) (storage.ListQuery, error) {
	known := readingListParams
	if t == models.TypePhoto {
		known = photoListParams
	}
	p, err := readParams(r, known...)
	if err != nil {
		return storage.ListQuery{}, err
	}
	q := storage.ListQuery{DeviceID: p.deviceID("device_id")}
	q.From, q.To = p.timeRange()
	q.Asc = p.oneOf("order", "asc", "desc") == "asc"
	q.Limit = p.limit(DefaultPageLimit, MaxPageLimit)
	if t == models.TypePhoto {
		q.FaceID = p.faceID("face_id")
		q.RecognitionStatus = p.oneOf("recognition_status", recognitionStatuses...)
	}
	if c, ok := p.get("cursor"); ok && len(p.errs) == 0 {
		// Checked last: whether a cursor belongs to this query depends on
		// every other parameter being what it says.
		pos, msg := decodeListCursor(c, t, q)
		if msg != "" {
			p.fail("cursor", msg)
		}
		q.After = pos
	}
	return q, p.err()
}

// pathID reads the {id} path segment: a message id.
func pathID(r *http.Request) (uuid.UUID, error) {
	v := r.PathValue("id")
	id, err := uuid.Parse(v)
	if err != nil || len(v) != 36 {
		return uuid.Nil, fieldProblem(ierr.Invalid, "id", "must be a reading id as the 202 answer gave it, such as 0192f5e4-7a1b-7c3d-8e9f-0a1b2c3d4e5f")
	}
	return id, nil
}

// pathDeviceID reads the {device_id} path segment.
func pathDeviceID(r *http.Request) (string, error) {
	id, msg := models.NormalizeDeviceID(r.PathValue("device_id"))
	if msg != "" {
		return "", fieldProblem(ierr.Invalid, "device_id", msg)
	}
	return id, nil
}

// noParams refuses any query parameter on a route that takes none.
func noParams(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	return p.err()
}
