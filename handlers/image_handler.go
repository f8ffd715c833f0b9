package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// imageStore is what the image route needs from storage.Reader.
type imageStore interface {
	PhotoImage(ctx context.Context, id uuid.UUID) (storage.SealedImage, error)
	AuditPhotoViewed(ctx context.Context, actor string, img storage.SealedImage, details map[string]any) error
}

// opener opens sealed photos; *crypto.Sealer implements it.
type opener interface {
	Open(keyID string, ciphertext, aad []byte) ([]byte, error)
}

// images serves GET /telemetry/photo/{id}/image.
type images struct {
	store  imageStore
	sealer opener // nil: no ENCRYPTION_KEYS, the route answers 503
	// slots bounds the images in progress: each holds up to 5 MiB of
	// ciphertext, then as much plaintext until the client has read it,
	// and a client may read slowly. A full channel is a 503 before the
	// database is asked.
	slots chan struct{}
}

// imageETag is the photo's strong entity tag. A stored photo never changes,
// so its message id identifies the bytes exactly: the tag is known without
// reading or decrypting anything, and reveals nothing about the content (a
// digest of the plaintext would let anyone holding a candidate image test
// whether it is this one).
func imageETag(id uuid.UUID) string { return `"photo-` + id.String() + `"` }

func (h images) serve(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		err = noParams(r)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if h.sealer == nil {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
		writeProblem(w, r, Problem{
			Type:   ProblemTypeBase + "image-decryption-not-configured",
			Title:  "Photo images cannot be served",
			Status: http.StatusServiceUnavailable,
			Detail: "Image decryption is not configured on this server (it was started without ENCRYPTION_KEYS); the photo's metadata is at " + strings.TrimSuffix(models.PhotoImageURL(id), "/image") + ".",
		})
		return
	}
	etag := imageETag(id)
	// A client holding the current bytes is told so without a database
	// read, and without an audit row: nothing is viewed that it did not
	// already have.
	tagged, anyTag := ifNoneMatch(r.Header.Values("If-None-Match"), etag)
	if tagged {
		notModified(w, etag)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		w.Header().Set("Retry-After", strconv.Itoa(overloadRetryAfter))
		writeProblem(w, r, Problem{
			Type:   ProblemTypeBase + "too-many-downloads",
			Title:  "Too many photo images being served",
			Status: http.StatusServiceUnavailable,
			Detail: "The server is sending " + strconv.Itoa(cap(h.slots)) + " photo images; retry after the number of seconds in Retry-After.",
		})
		return
	}
	img, err := h.store.PhotoImage(r.Context(), id)
	if err != nil {
		writeError(w, r, fromStorage(err, stillQueuedPhoto(id)))
		return
	}
	if anyTag { // "If-None-Match: *" and the photo exists
		notModified(w, etag)
		return
	}
	plain, err := h.sealer.Open(img.KeyID, img.Ciphertext, img.MessageID[:])
	if err != nil {
		// Tampered ciphertext, a row moved between messages, or a key id no
		// longer configured: the access log's error line names both, the
		// client learns nothing about which.
		writeError(w, r, ierr.E(ierr.Internal, "handlers.image",
			fmt.Errorf("photo %s (row %d) sealed with key %q does not open: %w", img.MessageID, img.RowID, img.KeyID, err)))
		return
	}
	img.Ciphertext = nil // only the plaintext is held while a slow client reads it
	if r.Method != http.MethodHead {
		// Audited before a byte of the image is written: a view that cannot
		// be recorded is not served.
		info := infoFrom(r.Context())
		details := map[string]any{"request_id": info.id, "client_ip": info.clientIP.String()}
		if err := h.store.AuditPhotoViewed(r.Context(), info.keyName, img, details); err != nil {
			writeError(w, r, fromStorage(err, ""))
			return
		}
	}
	hdr := w.Header()
	cacheHeaders(hdr, etag)
	hdr.Set("Content-Type", img.ContentType)
	hdr.Set("Content-Length", strconv.Itoa(len(plain)))
	hdr.Set("Content-Disposition", `inline; filename="`+id.String()+extension(img.ContentType)+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(plain)
}

func stillQueuedPhoto(id uuid.UUID) string { return stillQueued(models.TypePhoto, id) }

// cacheHeaders are sent with the image and its 304: the image may be kept
// by the browser only (never by a shared cache: it is personal data behind
// an API key), and revalidated with its tag.
func cacheHeaders(h http.Header, etag string) {
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private")
	h.Set("X-Content-Type-Options", "nosniff")
}

func extension(contentType string) string {
	switch contentType {
	case models.ContentTypeJPEG:
		return ".jpg"
	case models.ContentTypePNG:
		return ".png"
	}
	return ""
}

func notModified(w http.ResponseWriter, etag string) {
	cacheHeaders(w.Header(), etag)
	w.WriteHeader(http.StatusNotModified)
}

// ifNoneMatch evaluates If-None-Match (RFC 9110 §13.1.2) against the one
// strong tag of a photo, with the weak comparison the header calls for:
// tagged when a listed tag is it, anyTag for "*" (which matches only once
// the photo is known to exist).
func ifNoneMatch(values []string, etag string) (tagged, anyTag bool) {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			switch tag = strings.TrimSpace(tag); {
			case tag == "*":
				anyTag = true
			case strings.TrimPrefix(tag, "W/") == etag:
				tagged = true
			}
		}
	}
	return tagged, anyTag
}
