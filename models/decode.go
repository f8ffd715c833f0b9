package models

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Decode reads the request body of a reading of type T: one flat JSON
// object (see scan.go). now is the moment of receipt. On failure the error
// is an *ierr.Error of kind Invalid naming every failing field; a photo
// whose only fault is its image is TooLarge or Unsupported instead.
//
// A photo's "photo" field is the image as base64 (standard or URL alphabet,
// padded or not, optionally as a data: URI).
func Decode[T Reading, P Message[T]](r io.Reader, now time.Time, lim Limits) (T, error) {
	// A nil P names the type; the methods called on it do not read it. (A
	// method called on &v through the type parameter would move v to the
	// heap: one allocation more per request.)
	var p P
	op, fields := p.request()
	obj, fe, err := decodeObject(r, fields...)
	if err != nil {
		var zero T
		return zero, ierr.E(ierr.Invalid, op, err)
	}
	var m Meta
	m.DeviceID, m.RecordedAt = obj.meta(now, lim, &fe)
	return p.fromRequest(op, obj, m, lim, fe)
}

// requestDecoder is what Decode needs of each reading type. Its methods
// do not read their receiver, which may be nil.
type requestDecoder[T Reading] interface {
	// request names the operation (for errors) and the fields a body may hold.
	request() (op string, fields []string)
	// fromRequest reads the reading's own fields from o into a reading with
	// meta m, and returns the error naming everything at fault, fe included
	// (what the shared fields left).
	fromRequest(op string, o object, m Meta, lim Limits, fe fieldErrors) (T, error)
}

// The fields of each request body; package variables so that a decode does
// not allocate them.
var (
	gyroscopeFields = []string{"device_id", "timestamp", "x", "y", "z"}
	gpsFields       = []string{"device_id", "timestamp", "latitude", "longitude"}
	photoFields     = []string{"device_id", "timestamp", "photo"}
)

func (*Gyroscope) request() (string, []string) { return "models.DecodeGyroscope", gyroscopeFields }
func (*GPS) request() (string, []string)       { return "models.DecodeGPS", gpsFields }
func (*Photo) request() (string, []string)     { return "models.DecodePhotoJSON", photoFields }

func (*Gyroscope) fromRequest(op string, o object, m Meta, _ Limits, fe fieldErrors) (Gyroscope, error) {
	g := Gyroscope{Meta: m}
	g.X = o.number("x", &fe)
	g.Y = o.number("y", &fe)
	g.Z = o.number("z", &fe)
	return g, fe.err(op)
}

func (*GPS) fromRequest(op string, o object, m Meta, _ Limits, fe fieldErrors) (GPS, error) {
	g := GPS{Meta: m}
	if g.Latitude = o.number("latitude", &fe); !fe.has("latitude") {
		fe.latitude(g.Latitude)
	}
	if g.Longitude = o.number("longitude", &fe); !fe.has("longitude") {
		fe.longitude(g.Longitude)
	}
	return g, fe.err(op)
}

// fromRequest reads the base64 image. Too large an image is TooLarge at
// once, unless other fields are invalid too: then everything is reported as
// Invalid in one answer.
func (*Photo) fromRequest(op string, o object, m Meta, lim Limits, fe fieldErrors) (Photo, error) {
	p := Photo{Meta: m}
	raw, ok := o["photo"]
	if !ok {
		fe.add("photo", "is required")
		err := p.setImage(op, nil, lim, fe)
		return p, err
	}
	var b64 []byte
	switch {
	case len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0:
		b64 = raw[1 : len(raw)-1] // no escapes: decode in place, no copy
	default:
		var s string
		if json.Unmarshal(raw, &s) != nil {
			fe.add("photo", "must be a base64 string")
			err := p.setImage(op, nil, lim, fe)
			return p, err
		}
		b64 = []byte(s)
	}
	img, err := decodeBase64Image(b64, lim.MaxPhotoBytes)
	if err != nil {
		fe.add("photo", err.Error())
		if errors.Is(err, errImageTooLarge) && len(fe) == 1 {
			return p, &ierr.Error{Kind: ierr.TooLarge, Op: op, Fields: fe}
		}
		img = nil
	}
	err = p.setImage(op, img, lim, fe)
	return p, err
}

// NewPhoto builds a photo from multipart form values; see Decode.
func NewPhoto(deviceID, timestamp string, img []byte, now time.Time, lim Limits) (Photo, error) {
	const op = "models.NewPhoto"
	var fe fieldErrors
	var p Photo
	if id, msg := NormalizeDeviceID(deviceID); msg != "" {
		fe.add("device_id", msg)
	} else {
		p.DeviceID = id
	}
	t, msg := parseTimestampString(timestamp)
	if msg == "" {
		msg = checkRecordedAt(t, now, lim)
	}
	if msg != "" {
		fe.add("timestamp", msg)
	} else {
		p.RecordedAt = t
	}
	if img == nil {
		fe.add("photo", "is required")
	}
	err := p.setImage(op, img, lim, fe)
	return p, err
}

// setImage sniffs img (nil when it is missing or already refused) and
// returns the error naming everything at fault. When the image is the only
// fault, its own kind (TooLarge, Unsupported) is kept.
func (p *Photo) setImage(op string, img []byte, lim Limits, fe fieldErrors) error {
	if img != nil {
		ct, err := SniffImage(img, lim.MaxPhotoBytes)
		if err != nil {
			if len(fe) == 0 {
				e := err.(*ierr.Error)
				e.Op = op
				return e
			}
			fe = append(fe, ierr.FieldsOf(err)...)
		} else {
			p.ContentType, p.Image = ct, img
		}
	}
	return fe.err(op)
}

var errImageTooLarge = errors.New("image too large")

// decodeBase64Image decodes the image without ever allocating more than the
// limit allows for.
func decodeBase64Image(s []byte, maxBytes int) ([]byte, error) {
	if rest, ok := bytes.CutPrefix(s, []byte("data:")); ok {
		_, data, found := bytes.Cut(rest, []byte(";base64,"))
		if !found {
			return nil, errors.New("data URI must be base64-encoded")
		}
		s = data
	}
	if len(s) == 0 {
		return nil, errors.New("is required")
	}
	enc := base64.StdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !bytes.HasSuffix(s, []byte("=")) && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	if enc.DecodedLen(len(s)) > maxBytes+2 {
		return nil, fmt.Errorf("%w: must be at most %d bytes decoded", errImageTooLarge, maxBytes)
	}
	img := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(img, s)
	if err != nil {
		return nil, errors.New("must be valid base64")
	}
	if n > maxBytes {
		return nil, fmt.Errorf("%w: must be at most %d bytes decoded", errImageTooLarge, maxBytes)
	}
	return img[:n], nil
}

// meta parses device_id and timestamp, the fields every request shares.
func (o object) meta(now time.Time, lim Limits, fe *fieldErrors) (string, time.Time) {
	var deviceID string
	if raw, ok := o["device_id"]; !ok {
		fe.add("device_id", "is required")
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			fe.add("device_id", "must be a string")
		} else if id, msg := NormalizeDeviceID(s); msg != "" {
			fe.add("device_id", msg)
		} else {
			deviceID = id
		}
	}
	var t time.Time
	raw, ok := o["timestamp"]
	var msg string
	switch {
	case !ok:
		msg = "is required"
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			msg = "must be a string or a number"
		} else {
			t, msg = parseTimestampString(s)
		}
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		t, msg = parseEpoch(string(raw))
	default:
		msg = "must be an RFC 3339 string or a number of Unix epoch seconds"
	}
	if msg == "" {
		msg = checkRecordedAt(t, now, lim)
	}
	if msg != "" {
		fe.add("timestamp", msg)
		t = time.Time{}
	}
	return deviceID, t
}

// number parses a required finite JSON number.
func (o object) number(field string, fe *fieldErrors) float64 {
	raw, ok := o[field]
	if !ok {
		fe.add(field, "is required")
		return 0
	}
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		fe.add(field, "must be a number")
		return 0
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		fe.add(field, "must be a finite number")
		return 0
	}
	return f
}
