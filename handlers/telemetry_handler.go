package handlers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/jsonappend"
	"github.com/challenge-v3/challenge-v3/internal/uuidv7"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// publisher is what the handlers need from messaging.Publisher.
type publisher interface {
	// Publish returns once JetStream has acknowledged data; msgID, when
	// not empty, is its Nats-Msg-Id (JetStream drops a repeat of it).
	Publish(ctx context.Context, subject, msgID string, data []byte) error
	// PublishAll publishes every message at once and waits for each ack;
	// errs[i] is nil once msgs[i] is stored.
	PublishAll(ctx context.Context, msgs []messaging.Outgoing) (errs []error)
	// ClaimIdempotencyKey returns the message id bound to the key: the
	// candidate on first use, the earlier id on a retry, Conflict when the
	// key was used for a different fingerprint.
	ClaimIdempotencyKey(ctx context.Context, actor, kind, key, candidateID, fingerprint string) (string, error)
}

// Accepted is the body of a 202 answer.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// ingest serves the three telemetry routes.
type ingest struct {
	pub            publisher
	lim            models.Limits
	m              *metrics
	requestTimeout time.Duration
	// publishBounded: PUBLISH_TIMEOUT ≤ REQUEST_TIMEOUT (config.LoadAPI
	// insists), so a lone publish needs no request deadline (see accept).
	publishBounded bool
	// photoSlots bounds the photo uploads in progress, all and per client:
	// a photo refused a slot is answered before its body is read.
	photoSlots *uploadSlots
	// pace is the minimum rate at which every request body must arrive.
	pace pace
	// devices is the per-device rate limit; nil when off.
	devices *rateLimiter[deviceKey]
}

func (h *ingest) gyroscope(w http.ResponseWriter, r *http.Request) {
	serveJSON[models.Gyroscope](h, w, r)
}

func (h *ingest) gps(w http.ResponseWriter, r *http.Request) {
	serveJSON[models.GPS](h, w, r)
}

// serveJSON is a JSON-only reading route: the gyroscope and GPS routes
// differ only in the reading type.
func serveJSON[T models.Reading, P models.Message[T]](h *ingest, w http.ResponseWriter, r *http.Request) {
	now, key, err := h.begin(w, r)
	if err == nil {
		err = requireJSON(w, r)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	v, err := decodeJSON(w, r, h.pace, JSONBodyLimit, func(body io.Reader) (T, error) {
		return models.Decode[T, P](body, now, h.lim)
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	h.accept(w, r, key, now, P(&v))
}

// photo takes the image as base64 inside JSON or as a multipart file.
func (h *ingest) photo(w http.ResponseWriter, r *http.Request) {
	release, err := h.photoSlots.acquire(infoFrom(r.Context()).clientIP)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer release()
	now, key, err := h.begin(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	mt, params, err := mediaType(r)
	var p models.Photo
	limit := PhotoBodyLimit(h.lim)
	switch {
	case err != nil:
	case mt == "application/json":
		p, err = decodeJSON(w, r, h.pace, limit, func(body io.Reader) (models.Photo, error) {
			return models.Decode[models.Photo](body, now, h.lim)
		})
	case mt == "multipart/form-data":
		p, err = decodeMultipartPhoto(w, r, h.pace, params["boundary"], limit, now, h.lim)
	default:
		err = fieldProblem(ierr.Unsupported, "", "Content-Type must be application/json or multipart/form-data.")
	}
	if ierr.Is(err, ierr.Unsupported) && len(ierr.FieldsOf(err)) == 0 {
		w.Header().Set("Accept-Post", "application/json, multipart/form-data")
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	h.accept(w, r, key, now, &p)
}

// begin fixes the moment of receipt and reads the Idempotency-Key header,
// before any of the body is read.
func (h *ingest) begin(w http.ResponseWriter, r *http.Request) (time.Time, string, error) {
	// Microseconds: what PostgreSQL keeps, so received_at round-trips.
	now := time.Now().UTC().Truncate(time.Microsecond)
	key, err := idempotencyKey(r.Header)
	return now, key, err
}

// message is a decoded reading as accept completes and publishes it:
// *models.Gyroscope, *models.GPS or *models.Photo.
type message interface {
	Type() models.Type
	Envelope() *models.Meta
}

// accept completes the message, binds it to its id and publishes it; the
// client hears 202 only once JetStream has acknowledged it.
func (h *ingest) accept(w http.ResponseWriter, r *http.Request, key string, now time.Time, msg message) {
	t, meta := msg.Type(), msg.Envelope()
	info := infoFrom(r.Context())
	if info == nil || info.keyName == "" {
		writeError(w, r, ierr.Errorf(ierr.Internal, "handlers.accept", "route %s reached without an authenticated key", r.URL.Path))
		return
	}
	meta.Actor = info.keyName
	if err := h.limitDevice(w, info, meta.DeviceID); err != nil {
		writeError(w, r, err)
		return
	}
	// REQUEST_TIMEOUT bounds the JetStream calls of a request once its
	// body is in (a slow upload must not eat the time they need). Without
	// an Idempotency-Key there is one, the publish, which its own timeout
	// (PUBLISH_TIMEOUT, slot wait included; config keeps it within
	// REQUEST_TIMEOUT) already bounds: no timer and context per request.
	ctx := r.Context()
	if key != "" || !h.publishBounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.requestTimeout)
		defer cancel()
	}

	id := uuidv7.New()
	replayed := false
	if key != "" {
		// The fingerprint covers the reading as the worker will store it,
		// before id and receipt time are set: a retry that differs only in
		// notation (MAC form, RFC 3339 vs epoch) is the same request.
		fp, err := fingerprint(msg)
		if err != nil {
			writeError(w, r, err)
			return
		}
		got, err := h.pub.ClaimIdempotencyKey(ctx, meta.Actor, string(t), key, id.String(), fp)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if got != id.String() {
			replayed = true
			if id, err = uuid.Parse(got); err != nil {
				writeError(w, r, ierr.E(ierr.Internal, "handlers.accept: stored idempotency id", err))
				return
			}
		}
	}
	meta.MessageID = id
	meta.ReceivedAt = now
	// A photo's image is not referenced after this: the collector may take
	// it back while the publish waits for its acknowledgement.
	data, err := encode(msg)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Nats-Msg-Id only for a key's request: its retry reuses the id, and
	// JetStream drops the repeat within the window. Any other request has
	// a fresh id, so de-duplication would be work for nothing; the unique
	// message_id in PostgreSQL keeps a redelivered message stored once.
	msgID := ""
	if key != "" {
		msgID = id.String()
	}
	start := time.Now()
	err = h.pub.Publish(ctx, t.Subject(), msgID, data)
	h.m.observePublish(t, err == nil, time.Since(start))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeAccepted(w, id)
}

// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
const MaxIdempotencyKeyLen = 255

// idempotencyKey reads the optional Idempotency-Key header: 1–255 printable
// ASCII characters, sent once. The draft standard's quoted form ("abc") is
// accepted and means the same as abc.
func idempotencyKey(h http.Header) (string, error) {
	const field = "Idempotency-Key"
	values := h.Values(field)
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fieldProblem(ierr.Invalid, field, "must be sent at most once")
	}
	k := values[0]
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if k == "" || len(k) > MaxIdempotencyKeyLen {
		return "", fieldProblem(ierr.Invalid, field, "must be 1 to "+strconv.Itoa(MaxIdempotencyKeyLen)+" characters")
	}
	if strings.IndexFunc(k, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
		return "", fieldProblem(ierr.Invalid, field, "must be printable ASCII")
	}
	return k, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v) // only fixed response types reach here
	writeBody(w, status, body)
}

// writeAccepted answers 202 with Accepted{id, "accepted"}: the answer to
// every reading, written as json.Marshal would without its reflection
// (TestAcceptedBody).
func writeAccepted(w http.ResponseWriter, id uuid.UUID) {
	var b [acceptedLen]byte
	body := append(b[:0], `{"id":"`...)
	body = jsonappend.UUID(body, id)
	body = append(body, `","status":"accepted"}`+"\n"...)
	// No Cache-Control: an answer to a POST is stored by no cache unless
	// it carries explicit freshness and a matching Content-Location (RFC
	// 9110 §9.3.3), and this one is written thousands of times a second
	// to clients that parse every header.
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Content-Length"] = headerAcceptedLen
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(body)
}

// acceptedLen is the length of every 202 body, final newline included.
const acceptedLen = len(`{"id":"","status":"accepted"}`) + 36 + 1

// Response header values set on every answer, built once: assigning a
// shared slice under a canonical key is Header.Set without its allocation.
// Nothing appends to or edits a response header's slice in place (Add
// would copy a full one), and net/http copies the header before writing.
var (
	headerJSON        = []string{"application/json"}
	headerNoStore     = []string{"no-store"}
	headerAcceptedLen = []string{strconv.Itoa(acceptedLen)}
)

// writeBody sends a JSON body and a final newline.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
