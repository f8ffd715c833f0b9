package handlers

import (
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// JSONBodyLimit is the largest gyroscope or GPS request body read.
const JSONBodyLimit = 64 << 10

// PhotoBodyLimit is the largest photo request body read, JSON or multipart:
// the base64 form of the largest image, an eighth more for what wrapping
// and JSON escaping add to it (a line break every 64 characters escaped as
// "\r\n" is 6.25%, org.json's "\/" for every "/" about 1.6% more), and room
// for the other fields. The image's own limit is checked once decoded.
func PhotoBodyLimit(lim models.Limits) int64 {
	n := int64(base64.StdEncoding.EncodedLen(lim.MaxPhotoBytes))
	return n + n/8 + 64<<10
}

// maxFormValue bounds the device_id and timestamp parts of a multipart body.
const maxFormValue = 1 << 10

// bodyReader remembers the first read error of a request body, so a body
// that is too large or broken off is told apart from one that is bad JSON.
type bodyReader struct {
	r    io.Reader
	err  error
	size int64 // the request's Content-Length, capped at its limit; 0 unknown
}

// SizeHint is how many bytes the body announced (models.SizeHinter): the
// decoder reads it into one buffer of that size instead of growing one.
func (b *bodyReader) SizeHint() int64 { return b.size }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// readFailure maps a body read error: over the limit is 413, too slow 408,
// anything else (client gone, bad chunked encoding) 400.
func readFailure(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fieldProblem(ierr.TooLarge, "", "The request body must be at most "+strconv.FormatInt(mbe.Limit, 10)+" bytes.")
	}
	var slow *slowBody
	if errors.As(err, &slow) {
		return slow.answer()
	}
	return fieldProblem(ierr.Invalid, "", "The request body could not be read completely.")
}

// mediaType parses Content-Type. A charset other than UTF-8 is refused:
// JSON is UTF-8 (RFC 8259).
func mediaType(r *http.Request) (string, map[string]string, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil, fieldProblem(ierr.Unsupported, "", "Content-Type is required.")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil, fieldProblem(ierr.Unsupported, "", "Content-Type is malformed.")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", nil, fieldProblem(ierr.Unsupported, "", "Only the UTF-8 charset is accepted.")
	}
	return mt, params, nil
}

// requireJSON refuses any body that is not application/json.
func requireJSON(w http.ResponseWriter, r *http.Request) error {
	if strings.EqualFold(headerValue(r.Header, "Content-Type"), "application/json") {
		return nil // what mediaType finds in the usual header, without parsing it
	}
	mt, _, err := mediaType(r)
	if err == nil && mt != "application/json" {
		err = fieldProblem(ierr.Unsupported, "", "Content-Type must be application/json.")
	}
	if err != nil {
		w.Header().Set("Accept-Post", "application/json")
	}
	return err
}

// decodeJSON is the one JSON decoding path: the body is paced (pc), capped
// with http.MaxBytesReader and handed to a strict models decoder (unknown
// fields, duplicate keys and trailing data are refused there).
func decodeJSON[T any](w http.ResponseWriter, r *http.Request, pc pace, limit int64, decode func(io.Reader) (T, error)) (T, error) {
	// The paced body and its reader in one allocation.
	both := &struct {
		paced pacedBody
		body  bodyReader
	}{}
	paced, body := &both.paced, &both.body
	pc.start(paced, w, r)
	*body = bodyReader{r: http.MaxBytesReader(w, paced, limit), size: min(max(r.ContentLength, 0), limit)}
	v, err := decode(body)
	paced.done()
	if body.err != nil {
		return v, readFailure(body.err)
	}
	return v, err
}

// decodeMultipartPhoto streams a multipart/form-data photo request: fields
// device_id and timestamp, file (or field) photo. Nothing is buffered past
// its limit: an image part is cut off at MaxPhotoBytes+1 and answered 413 at
// once; unknown parts are skipped, never stored.
func decodeMultipartPhoto(w http.ResponseWriter, r *http.Request, pc pace, boundary string, limit int64, now time.Time, lim models.Limits) (models.Photo, error) {
	const op = "handlers.decodeMultipartPhoto"
	if boundary == "" {
		return models.Photo{}, fieldProblem(ierr.Invalid, "", "multipart/form-data needs a boundary parameter.")
	}
	paced := pc.body(w, r)
	defer paced.done()
	body := &bodyReader{r: http.MaxBytesReader(w, paced, limit)}
	mr := multipart.NewReader(body, boundary)
	var (
		deviceID, timestamp string
		img                 []byte
		// The parts at fault, bounded however many a body holds; seen
		// holds only the three known names, for the same reason.
		fe   models.KeyErrors
		seen = map[string]bool{}
	)
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return models.Photo{}, partFailure(body)
		}
		name := part.FormName()
		switch {
		case name == "":
			return models.Photo{}, fieldProblem(ierr.Invalid, "", "Every multipart part needs a Content-Disposition: form-data name.")
		case seen[name]:
			fe.Add(name, "appears more than once")
		case name == "device_id" || name == "timestamp":
			seen[name] = true
			v, err := readAtMost(part, maxFormValue, 0)
			if errors.Is(err, errTooLong) {
				fe.Add(name, "must be at most "+strconv.Itoa(maxFormValue)+" bytes")
			} else if err != nil {
				return models.Photo{}, partFailure(body)
			} else if name == "device_id" {
				deviceID = string(v)
			} else {
				timestamp = string(v)
			}
		case name == "photo":
			seen[name] = true
			// The image is at most the body: sized by Content-Length, its
			// buffer is allocated once instead of doubling its way there
			// (a 5 MiB image would pass through 4 MiB and 8 MiB ones).
			if img, err = readAtMost(part, lim.MaxPhotoBytes, r.ContentLength); errors.Is(err, errTooLong) {
				return models.Photo{}, &ierr.Error{Kind: ierr.TooLarge, Op: op, Fields: []ierr.FieldError{{
					Field: "photo", Message: "must be at most " + strconv.Itoa(lim.MaxPhotoBytes) + " bytes decoded"}}}
			} else if err != nil {
				return models.Photo{}, partFailure(body)
			}
		default:
			fe.Add(name, "is not a known field")
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return models.Photo{}, partFailure(body)
		}
	}
	if body.err != nil {
		return models.Photo{}, readFailure(body.err)
	}
	p, err := models.NewPhoto(deviceID, timestamp, img, now, lim)
	return p, fe.Join(op, err)
}

// partFailure explains why reading a multipart body failed: the body itself
// (too large, broken off) or its multipart framing.
func partFailure(body *bodyReader) error {
	if body.err != nil {
		return readFailure(body.err)
	}
	return fieldProblem(ierr.Invalid, "", "The multipart body is malformed.")
}

var errTooLong = errors.New("too long")

// readAtMost reads r to its end if that is at most n bytes, else fails with
// errTooLong after reading n+1 bytes. The buffer never grows past n+1 bytes;
// it starts at sizeHint (at most what is left to read; ≤ 0 if unknown)
// when that is larger than 64 KiB.
func readAtMost(r io.Reader, n int, sizeHint int64) ([]byte, error) {
	b := make([]byte, 0, min(n+1, int(max(64<<10, min(sizeHint, int64(n)+1)))))
	for {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n+1, 2*cap(b)))
			copy(grown, b)
			b = grown
		}
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if len(b) > n {
			return nil, errTooLong
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
