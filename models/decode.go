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
	"unicode/utf8"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Decode reads the request body of a reading of type T: one flat JSON
// object (see scan.go). now is the moment of receipt. On failure the error
// is an *ierr.Error of kind Invalid naming every failing field (at most
// MaxFieldErrors; see KeyErrors); a photo whose only fault is its image is
// TooLarge or Unsupported instead.
//
// A photo's "photo" field is the image as base64 in any form real clients
// produce: standard or URL alphabet, padded or not, optionally as a data:
// URI, and line-wrapped with \n or \r\n (Android's Base64.DEFAULT, MIME).
func Decode[T Reading, P Message[T]](r io.Reader, now time.Time, lim Limits) (T, error) {
	// A nil P names the type; the methods called on it do not read it. (A
	// method called on &v through the type parameter would move v to the
	// heap: one allocation more per request.)
	var p P
	op, fields := p.request()
	obj, keys, err := decodeObject(r, fields...)
	if err != nil {
		var zero T
		return zero, ierr.E(ierr.Invalid, op, err)
	}
	var fe fieldErrors
	var m Meta
	m.DeviceID, m.RecordedAt = obj.meta(now, lim, &fe)
	v, err := p.fromRequest(op, obj, m, lim, fe)
	return v, keys.Join(op, err)
}

// MaxFieldErrors is the most field errors an error of this package lists.
// A body of thousands of unknown or repeated keys would otherwise be
// answered with thousands of errors: an answer many times the request's
// size, built in memory. The rest are counted (OmittedFields).
const MaxFieldErrors = 20

// maxEchoedKey is the longest prefix of a client's key that a field error
// names: the key is echoed to the client, and keys may be 60 KB long.
const maxEchoedKey = 64

// OmittedFields is the cause (ierr.Error.Err) of an Invalid error whose
// Fields were cut at MaxFieldErrors: how many more fields are at fault.
type OmittedFields int

func (n OmittedFields) Error() string {
	return strconv.Itoa(int(n)) + " more fields are invalid"
}

// KeyErrors collects the faults of a body's keys, as opposed to its values:
// unknown and repeated keys of a JSON body, unknown and repeated parts of a
// form. Their number is the client's to choose, so the first
// MaxFieldErrors are named and the rest only counted: memory and the answer
// stay bounded whatever the body. The zero value is ready to use.
type KeyErrors struct {
	named []ierr.FieldError
	more  int
}

// full reports whether further faults are only counted.
func (k *KeyErrors) full() bool { return len(k.named) == MaxFieldErrors }

// Add records that key is at fault; a long key is named by its prefix.
func (k *KeyErrors) Add(key, msg string) {
	if k.full() {
		k.more++
		return
	}
	if len(key) > maxEchoedKey {
		cut := maxEchoedKey
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		key = key[:cut] + "…"
	}
	k.named = append(k.named, ierr.FieldError{Field: key, Message: msg})
}

// Join returns the error of a body whose values gave err (nil when they
// are valid): err itself when no key is at fault, else one Invalid error
// naming the keys at fault, then the fields err names. It lists at most
// MaxFieldErrors: the value's own fields always (there are a handful), the
// keys at fault in what room is left, and the number left out as an
// OmittedFields cause. A body-level error (no fields) is returned as is.
func (k *KeyErrors) Join(op string, err error) error {
	own := ierr.FieldsOf(err)
	if len(k.named) == 0 || err != nil && len(own) == 0 {
		return err
	}
	named, more := k.named, k.more
	if over := len(named) + len(own) - MaxFieldErrors; over > 0 {
		cut := min(over, len(named))
		named, more = named[:len(named)-cut], more+cut
	}
	fields := append(named[:len(named):len(named)], own...)
	if len(fields) > MaxFieldErrors {
		fields, more = fields[:MaxFieldErrors], more+len(fields)-MaxFieldErrors
	}
	e := ierr.InvalidFields(op, fields)
	if more > 0 {
		e.Err = OmittedFields(more)
	}
	return e
}

// requestDecoder is what Decode needs of each reading type. Its methods
// do not read their receiver, which may be nil.
type requestDecoder[T Reading] interface {
	// request names the operation (for errors) and the fields a body may hold.
	request() (op string, fields []string)
	// fromRequest reads the reading's own fields from o into a reading with
	// meta m, and returns the error naming every field at fault, fe included
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
	b64, err := base64Text(raw)
	if err != nil {
		fe.add("photo", err.Error())
		err := p.setImage(op, nil, lim, fe)
		return p, err
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

// base64Text returns the text of raw, a JSON string with its quotes, as the
// base64 decoder needs it: escapes undone and line breaks dropped (a
// line-wrapped encoding travels in JSON as "\n" or "\r\n" escapes, and
// org.json writes "/" as "\/", Gson "=" as "\u003d").
//
// It works in place, overwriting raw: raw is this request's own buffer and
// nothing reads the photo's raw text afterwards, so a photo of megabytes is
// never copied, wrapped or not. Without escapes, the common case, raw is
// only scanned.
func base64Text(raw []byte) ([]byte, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, errors.New("must be a base64 string")
	}
	s := raw[1 : len(raw)-1]
	errBase64 := errors.New("must be valid base64")
	w, i := 0, 0 // write and read offsets; w <= i throughout
	for {
		j := bytes.IndexByte(s[i:], '\\')
		if j < 0 {
			j = len(s) - i
		}
		if w != i {
			copy(s[w:], s[i:i+j])
		}
		w, i = w+j, i+j
		if i == len(s) {
			return s[:w], nil
		}
		if i+1 == len(s) {
			return nil, errBase64
		}
		c := s[i+1]
		i += 2
		switch c {
		case 'n', 'r':
			continue
		case '"', '\\', '/':
		case 'u':
			if i+4 > len(s) {
				return nil, errBase64
			}
			r, err := strconv.ParseUint(string(s[i:i+4]), 16, 16)
			i += 4
			if err != nil || r >= 0x80 { // base64 is ASCII
				return nil, errBase64
			}
			if c = byte(r); c == '\n' || c == '\r' {
				continue
			}
		default: // \b, \f, \t: never part of base64
			return nil, errBase64
		}
		s[w] = c
		w++
	}
}

// decodeBase64Image decodes the image (s holds no line breaks; see
// base64Text) without ever allocating more than the limit allows for.
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
	// Two byte scans, not bytes.ContainsAny: those are vectorised, a
	// set lookup per byte is not, and a photo is megabytes.
	if bytes.IndexByte(s, '-') >= 0 || bytes.IndexByte(s, '_') >= 0 {
		enc = base64.URLEncoding
	}
	if !bytes.HasSuffix(s, []byte("=")) && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	// Exact up to the padding (at most 2 bytes), as s holds only base64.
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
