package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/challenge-v3/challenge-v3/models"
)

// deviceStore is what the device routes need from storage.Reader.
type deviceStore interface {
	ListDevices(ctx context.Context, after string, limit int) (devices []models.Device, next string, err error)
	Device(ctx context.Context, deviceID string) (models.Device, error)
	Track(ctx context.Context, deviceID string, from, to time.Time, limit int) (points []models.Position, truncated bool, err error)
}

// devices serves GET /devices, /devices/{device_id} and its track.
type devices struct {
	store deviceStore
}

func (h devices) list(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(r, deviceListParams...)
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit := p.limit(DefaultPageLimit, MaxPageLimit)
	var after string
	if c, ok := p.get("cursor"); ok {
		var msg string
		if after, msg = decodeDeviceCursor(c); msg != "" {
			p.fail("cursor", msg)
		}
	}
	if err := p.err(); err != nil {
		writeError(w, r, err)
		return
	}
	items, next, err := h.store.ListDevices(r.Context(), after, limit)
	if err != nil {
		writeError(w, r, fromStorage(err, ""))
		return
	}
	writeJSON(w, http.StatusOK, listAnswer(items, encodeDeviceCursor(next)))
}

func (h devices) one(w http.ResponseWriter, r *http.Request) {
	id, err := pathDeviceID(r)
	if err == nil {
		err = noParams(r)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	d, err := h.store.Device(r.Context(), id)
	if err != nil {
		writeError(w, r, fromStorage(err, unknownDevice(id)))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func unknownDevice(id string) string {
	return "No reading from device " + id + " is stored. A device appears once the worker has stored its first reading."
}

// Track is a device's GPS fixes as an RFC 7946 GeoJSON Feature.
type Track struct {
	Type       string          `json:"type"` // "Feature"
	Geometry   *Geometry       `json:"geometry"`
	Properties TrackProperties `json:"properties"`
}

// Geometry is a LineString of two or more fixes, or a Point for a single
// one: a LineString needs at least two positions (RFC 7946 §3.1.4), and a
// track with no fix has a null geometry (§3.2).
type Geometry struct {
	Type        string          `json:"type"`
	Coordinates json.RawMessage `json:"coordinates"`
}

// TrackProperties carry what GeoJSON positions cannot: the time of each
// fix, in the order of the coordinates.
type TrackProperties struct {
	DeviceID   string      `json:"device_id"`
	Timestamps []time.Time `json:"timestamps"`
	// Truncated: the range holds more than MaxTrackPoints fixes; ask for
	// the rest with from set after the last timestamp.
	Truncated bool `json:"truncated"`
}

func (h devices) track(w http.ResponseWriter, r *http.Request) {
	id, err := pathDeviceID(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := readParams(r, trackParams...)
	if err != nil {
		writeError(w, r, err)
		return
	}
	from, to := p.timeRange()
	if err := p.err(); err != nil {
		writeError(w, r, err)
		return
	}
	points, truncated, err := h.store.Track(r.Context(), id, from, to, MaxTrackPoints)
	if err != nil {
		writeError(w, r, fromStorage(err, unknownDevice(id)))
		return
	}
	body, _ := json.Marshal(newTrack(id, points, truncated)) // only floats, strings and times
	hdr := w.Header()
	hdr.Set("Content-Type", "application/geo+json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

// newTrack builds the Feature; coordinates are [longitude, latitude], the
// order RFC 7946 §3.1.1 prescribes.
func newTrack(deviceID string, points []models.Position, truncated bool) Track {
	t := Track{Type: "Feature", Properties: TrackProperties{
		DeviceID: deviceID, Timestamps: make([]time.Time, len(points)), Truncated: truncated,
	}}
	coords := make([][2]float64, len(points))
	for i, p := range points {
		coords[i] = [2]float64{p.Longitude, p.Latitude}
		t.Properties.Timestamps[i] = p.Timestamp.UTC()
	}
	switch len(points) {
	case 0:
	case 1:
		c, _ := json.Marshal(coords[0])
		t.Geometry = &Geometry{Type: "Point", Coordinates: c}
	default:
		c, _ := json.Marshal(coords)
		t.Geometry = &Geometry{Type: "LineString", Coordinates: c}
	}
	return t
}
