package storage

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// Photo is a row of the photo table. The image is only ever here sealed:
// Ciphertext is what crypto.Sealer.Seal returned under KeyID.
type Photo struct {
	models.Meta // Actor is written to the audit row, not to the photo table

	ID          int64
	CreatedAt   time.Time
	ContentType string
	SizeBytes   int // of the plaintext image
	Ciphertext  []byte
	KeyID       string

	RecognitionStatus string // matched, new_face, no_face or disabled
	Recognized        bool
	FaceID            string   // "" when none
	Similarity        *float64 // percent, for a match
}

// insertPhotoSQL stores a photo, its audit row (action $15,
// ActionPhotoStored) and its device's summary in one statement, and returns
// the row with the columns of readingTables[TypePhoto]; see insertGPSSQL.
const insertPhotoSQL = `
WITH inserted AS (
	INSERT INTO photo (message_id, device_id, recorded_at, received_at, content_type, size_bytes,
		image_ciphertext, encryption_key_id, recognition_status, recognized, face_id, similarity)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULLIF($11, ''), $12)
	ON CONFLICT (message_id) DO NOTHING
	RETURNING id, message_id, device_id, recorded_at, received_at, created_at,
		content_type, size_bytes, recognition_status, recognized, face_id, similarity
), audited AS (
	INSERT INTO audit_log (actor, action, resource, resource_id, message_id, details)
	SELECT $13, $15::text, 'photo', inserted.id::text, inserted.message_id, $14::jsonb
	FROM inserted
), summarized AS (
	INSERT INTO device AS d (device_id, first_seen, last_seen, photo_count)
	SELECT device_id, recorded_at, recorded_at, 1 FROM inserted
	ON CONFLICT (device_id) DO UPDATE SET
		first_seen = least(d.first_seen, EXCLUDED.first_seen),
		last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
		photo_count = d.photo_count + 1,
		updated_at = now()
)
SELECT id, message_id, device_id, recorded_at, received_at, created_at,
	content_type, size_bytes, recognition_status, recognized, face_id, similarity
FROM inserted`

// InsertPhoto stores a photo with its audit row, and counts it in its
// device's summary, in one statement. It returns the stored photo as the
// read API serves it; inserted is false (and the item zero) when the
// message was stored before (a duplicate delivery).
func (s *Store) InsertPhoto(ctx context.Context, p Photo) (item models.PhotoItem, inserted bool, err error) {
	const op = "storage.InsertPhoto"
	ctx, span := tracing.StartDB(ctx, "INSERT", "photo", 0)
	defer func() { tracing.End(span, err) }()
	// The audit details never hold image bytes, digests of them, or secrets.
	details := map[string]any{
		"device_id":          p.DeviceID,
		"content_type":       p.ContentType,
		"size_bytes":         p.SizeBytes,
		"encryption_key_id":  p.KeyID,
		"recognition_status": p.RecognitionStatus,
		"recognized":         p.Recognized,
	}
	if p.FaceID != "" {
		details["face_id"] = p.FaceID
	}
	if p.Similarity != nil {
		details["similarity"] = *p.Similarity
	}
	item, _, err = scanPhoto(s.pool.QueryRow(ctx, insertPhotoSQL,
		messageID(p.MessageID), p.DeviceID, p.RecordedAt, p.ReceivedAt, p.ContentType, p.SizeBytes,
		p.Ciphertext, p.KeyID, p.RecognitionStatus, p.Recognized, p.FaceID, p.Similarity,
		p.Actor, details, ActionPhotoStored,
	))
	if errors.Is(err, pgx.ErrNoRows) {
		return models.PhotoItem{}, false, nil
	}
	if err != nil {
		return models.PhotoItem{}, false, translate(op, err)
	}
	return item, true, nil
}

// GetPhoto reads the photo row of a message; NotFound when there is none.
// Meta.Actor is left empty (it lives in the audit log).
func (s *Store) GetPhoto(ctx context.Context, messageID uuid.UUID) (Photo, error) {
	const op = "storage.GetPhoto"
	var p Photo
	var faceID *string
	err := s.pool.QueryRow(ctx, `
		SELECT id, message_id, device_id, recorded_at, received_at, created_at, content_type, size_bytes,
			image_ciphertext, encryption_key_id, recognition_status, recognized, face_id, similarity
		FROM photo WHERE message_id = $1`, messageID).Scan(
		&p.ID, &p.MessageID, &p.DeviceID, &p.RecordedAt, &p.ReceivedAt, &p.CreatedAt, &p.ContentType, &p.SizeBytes,
		&p.Ciphertext, &p.KeyID, &p.RecognitionStatus, &p.Recognized, &faceID, &p.Similarity)
	if errors.Is(err, pgx.ErrNoRows) {
		return Photo{}, ierr.Errorf(ierr.NotFound, op, "no photo for message %s", messageID)
	}
	if err != nil {
		return Photo{}, translate(op, err)
	}
	if faceID != nil {
		p.FaceID = *faceID
	}
	return p, nil
}
