package models

import (
	"time"

	"github.com/google/uuid"
)

// The read API's representations of stored readings (SPEC §8). The list
// routes, the single-reading route and the live stream all answer with these
// shapes, so a front-end parses one format whatever route it used. Times are
// UTC.

// ItemMeta is what every stored reading carries.
type ItemMeta struct {
	ID         uuid.UUID `json:"id"` // the message id the 202 returned
	DeviceID   string    `json:"device_id"`
	Timestamp  time.Time `json:"timestamp"`   // when the device took the reading
	ReceivedAt time.Time `json:"received_at"` // when the API accepted it
	StoredAt   time.Time `json:"stored_at"`   // when the worker's transaction stored it
}

// GyroscopeItem is a stored gyroscope reading.
type GyroscopeItem struct {
	ItemMeta
	X float64 `json:"x"`
	Y float64 `json:"y"`
	Z float64 `json:"z"`
}

// GPSItem is a stored GPS fix.
type GPSItem struct {
	ItemMeta
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// PhotoItem is a stored photo's metadata; never its bytes, which are served
// by ImageURL.
type PhotoItem struct {
	ItemMeta
	ContentType string      `json:"content_type"`
	SizeBytes   int         `json:"size_bytes"`
	ImageURL    string      `json:"image_url"`
	Recognition Recognition `json:"recognition"`
}

// Recognition is the face-recognition outcome of a stored photo. FaceID is
// nil for no_face and disabled; Similarity is set only when matched.
type Recognition struct {
	Status     string   `json:"status"` // matched, new_face, no_face, disabled
	Recognized bool     `json:"recognized"`
	FaceID     *string  `json:"face_id"`
	Similarity *float64 `json:"similarity"`
}

// PhotoImageURL is the read API path of a stored photo's image.
func PhotoImageURL(id uuid.UUID) string { return "/telemetry/photo/" + id.String() + "/image" }

// Position is a GPS fix in a device summary.
type Position struct {
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	Timestamp time.Time `json:"timestamp"`
}

// Device summarises what was stored from one device.
type Device struct {
	DeviceID     string           `json:"device_id"`
	FirstSeen    time.Time        `json:"first_seen"` // earliest reading timestamp
	LastSeen     time.Time        `json:"last_seen"`  // latest reading timestamp
	Counts       map[Type]int64   `json:"counts"`     // stored readings per type, every type present
	LastPosition *Position        `json:"last_position"`
	LastPhoto    *DevicePhotoSeen `json:"last_photo,omitempty"` // only on GET /devices/{device_id}
}

// DevicePhotoSeen is a device's latest photo in its summary.
type DevicePhotoSeen struct {
	ID          uuid.UUID   `json:"id"`
	Timestamp   time.Time   `json:"timestamp"`
	ImageURL    string      `json:"image_url"`
	Recognition Recognition `json:"recognition"`
}

// StoredSubjectPrefix starts the core NATS subjects on which the worker
// announces a reading once its transaction has committed:
// "events.stored.gps" and so on. They are outside the TELEMETRY stream's
// subjects on purpose: an announcement is best effort (at most once), the
// durable copy is the row.
const StoredSubjectPrefix = "events.stored."

// StoredReadingIDHeader is the header of an announcement that carries the
// reading's message id, so a subscriber can de-duplicate without parsing
// the body.
const StoredReadingIDHeader = "Reading-Id"

// StoredSubject is the announcement subject of readings of type t.
func (t Type) StoredSubject() string { return StoredSubjectPrefix + string(t) }
