package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/jsonappend"
	"github.com/challenge-v3/challenge-v3/models"
)

// The queue message of a reading is models.Marshal's JSON. For a photo that
// is megabytes of base64, and encoding/json builds it in a buffer that
// doubles as it grows before copying it out: about three times the
// message's size in allocations, twice per upload when an Idempotency-Key
// asks for a fingerprint too. A photo is therefore written here in the very
// same bytes, from models.Marshal of its small fields and the image encoded
// straight into place: the message is one allocation of its exact size, and
// the fingerprint is hashed as it streams, never built.
// TestPhotoMessageIsModelsMarshal holds the two to the same bytes.

// encode returns models.Marshal(msg).
func encode(msg message) ([]byte, error) {
	if b, ok := appendReading(make([]byte, 0, 320), msg); ok {
		return b, nil
	}
	p, ok := msg.(*models.Photo)
	if !ok || p.Image == nil {
		return models.Marshal(msg)
	}
	head, err := photoHead(p)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(head)+1+base64.StdEncoding.EncodedLen(len(p.Image))+len(photoTail))
	b = append(append(b, head...), '"')
	b = base64.StdEncoding.AppendEncode(b, p.Image)
	return append(b, photoTail...), nil
}

// fingerprint digests a message's content: the SHA-256 of
// models.Marshal(msg). MessageID and ReceivedAt must still be zero.
func fingerprint(msg message) (string, error) {
	h := sha256.New()
	if err := digest(h, msg); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func digest(h hash.Hash, msg message) error {
	p, ok := msg.(*models.Photo)
	if !ok || p.Image == nil {
		b, err := encode(msg)
		if err != nil {
			return err
		}
		h.Write(b)
		return nil
	}
	head, err := photoHead(p)
	if err != nil {
		return err
	}
	h.Write(head)
	h.Write([]byte{'"'})
	enc := base64.NewEncoder(base64.StdEncoding, h) // through a 1 KiB buffer
	_, _ = enc.Write(p.Image)                       // a hash never fails
	_ = enc.Close()
	h.Write(photoTail)
	return nil
}

// photoTail ends a photo's message after its base64 image.
var photoTail = []byte(`"}`)

// photoHead is p's message up to its image's opening quote: models.Marshal
// of p without the image, whose `"image":null}` ending is cut.
func photoHead(p *models.Photo) ([]byte, error) {
	bare := *p
	bare.Image = nil
	b, err := models.Marshal(&bare)
	if err != nil {
		return nil, err
	}
	head, ok := bytes.CutSuffix(b, []byte(`null}`))
	if !ok || !bytes.HasSuffix(head, []byte(`"image":`)) {
		return nil, ierr.Errorf(ierr.Internal, "handlers.photoHead", "a photo's JSON does not end with its image: %.80q", b)
	}
	return head, nil
}

// A gyroscope or GPS message is written field by field, in the bytes
// encoding/json would produce (TestReadingMessageIsModelsMarshal holds the
// two to the same output): at tens of thousands of readings a second,
// encoding/json's reflection was a tenth of the API's own CPU time for a
// message whose shape is fixed. What it cannot write exactly as
// encoding/json would (a string needing escapes, a year outside
// 0000–9999, a non-finite number) it leaves to models.Marshal.

// appendReading appends msg's message to b; false: not a gyroscope or GPS
// reading, or one to leave to models.Marshal.
func appendReading(b []byte, msg message) ([]byte, bool) {
	ok := true
	switch v := msg.(type) {
	case *models.GPS:
		b, ok = appendMeta(b, &v.Meta)
		b, ok = jsonappend.Float(b, `,"latitude":`, v.Latitude, ok)
		b, ok = jsonappend.Float(b, `,"longitude":`, v.Longitude, ok)
	case *models.Gyroscope:
		b, ok = appendMeta(b, &v.Meta)
		b, ok = jsonappend.Float(b, `,"x":`, v.X, ok)
		b, ok = jsonappend.Float(b, `,"y":`, v.Y, ok)
		b, ok = jsonappend.Float(b, `,"z":`, v.Z, ok)
	default:
		return b, false
	}
	return append(b, '}'), ok
}

func appendMeta(b []byte, m *models.Meta) ([]byte, bool) {
	b = append(b, `{"message_id":"`...)
	b = jsonappend.UUID(b, m.MessageID)
	b, ok := jsonappend.String(append(b, `","actor":`...), m.Actor, true)
	b, ok = jsonappend.Time(append(b, `,"received_at":`...), m.ReceivedAt, ok)
	b, ok = jsonappend.String(append(b, `,"device_id":`...), m.DeviceID, ok)
	return jsonappend.Time(append(b, `,"recorded_at":`...), m.RecordedAt, ok)
}
