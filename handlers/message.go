package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"

	"github.com/challenge-v3/challenge-v3/ierr"
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
		b, err := models.Marshal(msg)
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
