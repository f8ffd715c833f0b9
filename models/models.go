// Package models defines the telemetry readings, the rules that make one valid,
// and the wire form they take on NATS.
//
// The same rules run on both sides of the queue: the API validates a request
// before it publishes, and the worker validates the message again before it
// stores it (a message is data from the network like any other).
package models

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Type names a kind of telemetry reading. Each type has its own subject,
// consumer and table.
type Type string

// The telemetry types.
const (
	TypeGyroscope Type = "gyroscope"
	TypeGPS       Type = "gps"
	TypePhoto     Type = "photo"
)

// Types lists every telemetry type in a stable order.
var Types = []Type{TypeGyroscope, TypeGPS, TypePhoto}

// SubjectPrefix is the NATS subject prefix of every telemetry message.
const SubjectPrefix = "telemetry."

// Subject is the NATS subject messages of type t are published on.
func (t Type) Subject() string { return SubjectPrefix + string(t) }

// Limits are the tunable validation bounds.
type Limits struct {
	// MaxFutureSkew is how far past the moment of receipt a reading's timestamp
	// may lie (device clocks drift).
	MaxFutureSkew time.Duration
	// MaxPhotoBytes is the largest decoded image accepted (Rekognition's limit
	// for image bytes is 5 MiB).
	MaxPhotoBytes int
}

// DefaultLimits are the limits SPEC.md names.
func DefaultLimits() Limits {
	return Limits{MaxFutureSkew: 5 * time.Minute, MaxPhotoBytes: 5 << 20}
}

// MinTimestamp is the earliest reading time accepted.
var MinTimestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Meta is what every message carries besides its reading.
type Meta struct {
	MessageID  uuid.UUID `json:"message_id"`
	Actor      string    `json:"actor"` // name of the API key that sent it
	ReceivedAt time.Time `json:"received_at"`
	DeviceID   string    `json:"device_id"`
	RecordedAt time.Time `json:"recorded_at"`
}

// Gyroscope is one gyroscope reading (rad/s on each axis).
type Gyroscope struct {
	Meta
	X float64 `json:"x"`
	Y float64 `json:"y"`
	Z float64 `json:"z"`
}

// GPS is one GPS fix in decimal degrees (WGS 84).
type GPS struct {
	Meta
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// Photo is one camera photo. Image holds the decoded bytes; on the wire they
// travel base64-encoded inside the JSON message.
type Photo struct {
	Meta
	ContentType string `json:"content_type"`
	Image       []byte `json:"image"`
}

// Reading is the constraint of generic code over the reading types; Type is
// a value method, so even the zero value names its type (see TypeOf).
type Reading interface {
	Gyroscope | GPS | Photo
	Type() Type
}

// Message is a pointer to a Reading (*Gyroscope, *GPS or *Photo): what
// generic code needs to fill, check and route one. Go has no field access on
// type parameters, so the shared Meta is reached through Envelope.
//
// A generic function takes both: func f[T Reading, P Message[T]](…); callers
// name T (or pass a value it is inferred from) and P is inferred.
type Message[T Reading] interface {
	*T
	Type() Type
	Envelope() *Meta
	Validate(Limits) error
	requestDecoder[T]
	// scanMessage decodes a queue message in the encoder's own layout;
	// false: leave it to encoding/json (see message_scan.go).
	scanMessage(data []byte) bool
}

// TypeOf is the Type of reading type T.
func TypeOf[T Reading]() Type {
	var v T
	return v.Type()
}

// Type is TypeGyroscope.
func (Gyroscope) Type() Type { return TypeGyroscope }

// Type is TypeGPS.
func (GPS) Type() Type { return TypeGPS }

// Type is TypePhoto.
func (Photo) Type() Type { return TypePhoto }

// Envelope returns m itself. Promoted to *Gyroscope, *GPS and *Photo, it is
// how generic code reaches the fields every reading carries.
func (m *Meta) Envelope() *Meta { return m }

// validate checks the fields every message shares. It is used by the
// worker, so the "future" bound is relative to when the API received the
// reading, which keeps the verdict the same on every redelivery.
func (m *Meta) validate(lim Limits, fe *fieldErrors) {
	if m.MessageID == uuid.Nil {
		fe.add("message_id", "is required")
	}
	if m.Actor == "" {
		fe.add("actor", "is required")
	}
	if m.ReceivedAt.IsZero() {
		fe.add("received_at", "is required")
	}
	if id, msg := NormalizeDeviceID(m.DeviceID); msg != "" {
		fe.add("device_id", msg)
	} else if id != m.DeviceID {
		fe.add("device_id", "is not in normal form")
	}
	if msg := checkRecordedAt(m.RecordedAt, m.ReceivedAt, lim); msg != "" {
		fe.add("recorded_at", msg)
	}
}

// Validate checks a gyroscope message received from the queue.
func (g *Gyroscope) Validate(lim Limits) error {
	var fe fieldErrors
	g.Meta.validate(lim, &fe)
	fe.finite("x", g.X)
	fe.finite("y", g.Y)
	fe.finite("z", g.Z)
	return fe.err("models.Gyroscope.Validate")
}

// Validate checks a GPS message received from the queue.
func (g *GPS) Validate(lim Limits) error {
	var fe fieldErrors
	g.Meta.validate(lim, &fe)
	fe.latitude(g.Latitude)
	fe.longitude(g.Longitude)
	return fe.err("models.GPS.Validate")
}

// Validate checks a photo message received from the queue.
func (p *Photo) Validate(lim Limits) error {
	var fe fieldErrors
	p.Meta.validate(lim, &fe)
	ct, err := SniffImage(p.Image, lim.MaxPhotoBytes)
	switch {
	case err != nil:
		fe.add("image", ierr.FieldsOf(err)[0].Message)
	case ct != p.ContentType:
		fe.add("content_type", fmt.Sprintf("is %q but the image is %s", p.ContentType, ct))
	}
	return fe.err("models.Photo.Validate")
}
