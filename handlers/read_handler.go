package handlers

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// The read routes (SPEC §8). Their patterns are per telemetry type rather
// than GET /telemetry/{type}: an unknown type is then an unmatched path like
// any other (404, or 405 with Allow), and the metrics label each type apart.
const (
	RouteReadGyroscope = "GET /telemetry/gyroscope"
	RouteReadGPS       = "GET /telemetry/gps"
	RouteReadPhoto     = "GET /telemetry/photo"
	RouteGyroscopeByID = "GET /telemetry/gyroscope/{id}"
	RouteGPSByID       = "GET /telemetry/gps/{id}"
	RoutePhotoByID     = "GET /telemetry/photo/{id}"
	RoutePhotoImage    = "GET /telemetry/photo/{id}/image"
	RouteDevices       = "GET /devices"
	RouteDevice        = "GET /devices/{device_id}"
	RouteDeviceTrack   = "GET /devices/{device_id}/track"
)

// readingStore is what the reading routes need from storage.Reader.
type readingStore interface {
	ListGyroscope(ctx context.Context, q storage.ListQuery) (storage.Page[models.GyroscopeItem], error)
	ListGPS(ctx context.Context, q storage.ListQuery) (storage.Page[models.GPSItem], error)
	ListPhotos(ctx context.Context, q storage.ListQuery) (storage.Page[models.PhotoItem], error)
	Gyroscope(ctx context.Context, id uuid.UUID) (models.GyroscopeItem, error)
	GPS(ctx context.Context, id uuid.UUID) (models.GPSItem, error)
	Photo(ctx context.Context, id uuid.UUID) (models.PhotoItem, error)
}

// reader is everything the read routes use; *storage.Reader implements it.
type reader interface {
	readingStore
	imageStore
	deviceStore
}

// readings serves the list and single-reading routes of one type.
type readings[T any] struct {
	t    models.Type
	list func(context.Context, storage.ListQuery) (storage.Page[T], error)
	one  func(context.Context, uuid.UUID) (T, error)
}

// ListAnswer is the body of a list route.
type ListAnswer[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"` // null on the last page
}

func (rs readings[T]) serveList(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r, rs.t)
	if err != nil {
		writeError(w, r, err)
		return
	}
	page, err := rs.list(r.Context(), q)
	if err != nil {
		writeError(w, r, fromStorage(err, ""))
		return
	}
	writeJSON(w, http.StatusOK, listAnswer(page.Items, encodeListCursor(page.Next, rs.t, q)))
}

func (rs readings[T]) serveOne(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		err = noParams(r)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	item, err := rs.one(r.Context(), id)
	if err != nil {
		writeError(w, r, fromStorage(err, stillQueued(rs.t, id)))
		return
	}
	writeJSON(w, http.StatusOK, item)
}

// stillQueued is the 404 detail of a reading looked up by id: the id a 202
// returned is not stored until the worker has taken it from the queue.
func stillQueued(t models.Type, id uuid.UUID) string {
	return "No " + string(t) + " reading with id " + id.String() + " is stored. A reading accepted moments ago may still be queued: retry in a second or two."
}

func listAnswer[T any](items []T, next string) ListAnswer[T] {
	if items == nil {
		items = []T{} // "items":[] rather than null
	}
	a := ListAnswer[T]{Items: items}
	if next != "" {
		a.NextCursor = &next
	}
	return a
}

// fromStorage makes a storage error fit for a client: NotFound carries the
// route's own detail (never the database's text); Unavailable and
// Misconfigured keep their kind for the 503 and their cause for the log;
// any other kind from a read (a query the handlers should never have sent)
// is an internal error.
func fromStorage(err error, notFound string) error {
	switch k := ierr.KindOf(err); k {
	case ierr.NotFound:
		if notFound == "" {
			notFound = "Not found."
		}
		return &ierr.Error{Kind: ierr.NotFound, Op: "handlers", Err: errors.New(notFound)}
	case ierr.Unavailable, ierr.Misconfigured:
		return err
	default:
		return ierr.E(ierr.Internal, "handlers.read", err)
	}
}

// notConfigured answers the read routes of an API started without
// DATABASE_URL.
func notConfigured(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, Problem{
		Type:   ProblemTypeBase + "read-api-not-configured",
		Title:  "The read API is not configured",
		Status: http.StatusNotFound,
		Detail: "This server accepts telemetry but does not serve stored data: it was started without DATABASE_URL.",
	})
}
