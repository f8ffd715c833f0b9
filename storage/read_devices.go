package storage

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// deviceColumns are the columns of the device summary table that scanDevice
// reads.
const deviceColumns = `d.device_id, d.first_seen, d.last_seen, d.gyroscope_count, d.gps_count, d.photo_count,
	d.last_latitude, d.last_longitude, d.last_position_at`

// deviceSQL is one device's summary with its latest photo: the LATERAL
// subquery reads one entry of photo (device_id, recorded_at, id) backwards.
const deviceSQL = `SELECT ` + deviceColumns + `,
	p.message_id, p.recorded_at, p.recognition_status, p.recognized, p.face_id, p.similarity
FROM device d
LEFT JOIN LATERAL (
	SELECT message_id, recorded_at, recognition_status, recognized, face_id, similarity
	FROM photo WHERE photo.device_id = d.device_id
	ORDER BY recorded_at DESC, id DESC LIMIT 1
) p ON true
WHERE d.device_id = $1`

// listDevicesSQL is a page of devices: the primary key's index read from
// after ("" sorts before every device id) onwards, limit+1 entries.
const listDevicesSQL = `SELECT ` + deviceColumns + ` FROM device d
WHERE d.device_id > $1 ORDER BY d.device_id LIMIT $2`

// scanDevice reads deviceColumns, then dest.
func scanDevice(row pgx.Row, dest ...any) (models.Device, error) {
	var d models.Device
	var gyro, gps, photo int64
	var lat, lon *float64
	var at *time.Time
	err := row.Scan(append([]any{&d.DeviceID, &d.FirstSeen, &d.LastSeen, &gyro, &gps, &photo, &lat, &lon, &at}, dest...)...)
	if err != nil {
		return models.Device{}, err
	}
	d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
	d.Counts = map[models.Type]int64{models.TypeGyroscope: gyro, models.TypeGPS: gps, models.TypePhoto: photo}
	if lat != nil && lon != nil && at != nil {
		d.LastPosition = &models.Position{Latitude: *lat, Longitude: *lon, Timestamp: at.UTC()}
	}
	return d, nil
}

// ListDevices returns devices in device_id order, from the one after after
// ("" = the first), limit at most; next is the cursor of the following
// page, "" when this is the last. LastPhoto is left nil (Device fills it).
func (r *Reader) ListDevices(ctx context.Context, after string, limit int) (devices []models.Device, next string, err error) {
	const op = "storage.Reader.ListDevices"
	if limit < 1 {
		return nil, "", ierr.Errorf(ierr.Invalid, op, "limit %d: must be at least 1", limit)
	}
	rows, err := r.pool.Query(ctx, listDevicesSQL, after, limit+1)
	if err != nil {
		return nil, "", translate(op, err)
	}
	defer rows.Close()
	devices = make([]models.Device, 0, limit)
	for rows.Next() {
		if len(devices) == limit {
			next = devices[limit-1].DeviceID
			break
		}
		d, err := scanDevice(rows)
		if err != nil {
			return nil, "", translate(op, err)
		}
		devices = append(devices, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", translate(op, err)
	}
	return devices, next, nil
}

// Device returns one device's summary with LastPhoto filled (nil when it
// sent none); NotFound when no reading of it is stored.
func (r *Reader) Device(ctx context.Context, deviceID string) (models.Device, error) {
	const op = "storage.Reader.Device"
	var (
		photoID    *uuid.UUID
		photoAt    *time.Time
		status     *string
		recognized *bool
		rec        models.Recognition
	)
	d, err := scanDevice(r.pool.QueryRow(ctx, deviceSQL, deviceID),
		&photoID, &photoAt, &status, &recognized, &rec.FaceID, &rec.Similarity)
	if err != nil {
		return models.Device{}, translate(op, err) // pgx.ErrNoRows → NotFound
	}
	if photoID != nil && photoAt != nil && status != nil && recognized != nil {
		rec.Status, rec.Recognized = *status, *recognized
		d.LastPhoto = &models.DevicePhotoSeen{
			ID:          *photoID,
			Timestamp:   photoAt.UTC(),
			ImageURL:    models.PhotoImageURL(*photoID),
			Recognition: rec,
		}
	}
	return d, nil
}

// trackSQL is the GPS fixes of one device in [from, to] (zero = unbounded),
// oldest first: a forward range scan of gps (device_id, recorded_at, id)
// that stops after limit+1 entries.
func trackSQL(deviceID string, from, to time.Time, limit int) (string, []any) {
	var w whereBuilder
	w.add("device_id = $?", deviceID)
	w.timeRange(from, to)
	return "SELECT latitude, longitude, recorded_at FROM gps" + w.String() +
		" ORDER BY recorded_at, id LIMIT " + w.arg(limit+1), w.args
}

// Track returns the GPS fixes of one device in [from, to] (zero times are
// unbounded), oldest first, at most limit; truncated is true when more
// fixes exist in the range.
func (r *Reader) Track(ctx context.Context, deviceID string, from, to time.Time, limit int) (points []models.Position, truncated bool, err error) {
	const op = "storage.Reader.Track"
	if limit < 1 {
		return nil, false, ierr.Errorf(ierr.Invalid, op, "limit %d: must be at least 1", limit)
	}
	sql, args := trackSQL(deviceID, from, to, limit)
	rows, err := r.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, translate(op, err)
	}
	defer rows.Close()
	points = make([]models.Position, 0, min(limit, 1024))
	for rows.Next() {
		if len(points) == limit {
			truncated = true
			break
		}
		var p models.Position
		if err := rows.Scan(&p.Latitude, &p.Longitude, &p.Timestamp); err != nil {
			return nil, false, translate(op, err)
		}
		p.Timestamp = p.Timestamp.UTC()
		points = append(points, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, translate(op, err)
	}
	return points, truncated, nil
}
