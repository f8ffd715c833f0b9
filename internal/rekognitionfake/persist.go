package rekognitionfake

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// Optional persistence of the emulated collections and faces, so that a
// restarted dev stack still recognises the faces it indexed before, as AWS
// would. The test controls (no-face images, same-person declarations,
// faults, latency, call counts) are not persisted: they belong to one run.

// faceState is a face in the state file.
type faceState struct {
	rekognitionwire.StoredFace
	// ImageSHA256 is the digest of the indexed bytes, which is how the
	// emulator matches a later search; the image itself is not kept.
	ImageSHA256 string `json:"image_sha256"`
}

// OpenEmulator returns an emulator whose collections and faces are kept in
// the file at path: loaded now when the file exists, and written again after
// every change (CreateCollection, IndexFaces, DeleteCollection) to a
// temporary file renamed over it, so a crash leaves the old state or the
// new one, never half of either. A change that cannot be written is undone
// and answered with InternalServerError. Only one emulator may use a file at
// a time.
func OpenEmulator(path string) (*Emulator, error) {
	if path == "" {
		return nil, errors.New("rekognitionfake: empty state file path")
	}
	e := NewEmulator()
	e.path = path
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("rekognitionfake: state directory: %w", err)
	}
	collections, err := rekognitionwire.ReadState(path, loadFace)
	if err != nil {
		return nil, fmt.Errorf("rekognitionfake: state file %s: %w (delete it to start with no collections)", path, err)
	}
	e.collections = collections
	// Written once now, so an unwritable location fails here rather than on
	// the first IndexFaces.
	e.mu.Lock()
	defer e.mu.Unlock()
	if aerr := e.save(); aerr != nil {
		return nil, fmt.Errorf("rekognitionfake: %s", aerr.Message)
	}
	return e, nil
}

// storeFace and loadFace convert between a face and its stored form.
func storeFace(f face) faceState {
	return faceState{
		StoredFace:  rekognitionwire.StoredFace{FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID},
		ImageSHA256: hex.EncodeToString(f.image[:]),
	}
}

func loadFace(s faceState) (face, error) {
	raw, err := hex.DecodeString(s.ImageSHA256)
	if err != nil || len(raw) != len(digest{}) {
		return face{}, errors.New("image_sha256 is not a SHA-256 in hex")
	}
	return face{id: s.FaceID, imageID: s.ImageID, externalImageID: s.ExternalImageID, image: digest(raw)}, nil
}

// save writes the collections to the state file, when there is one. The
// caller holds e.mu, so writes happen in the order of the changes. A failure
// is an InternalServerError answer, which the SDK retries.
func (e *Emulator) save() *apiError {
	if e.path == "" {
		return nil
	}
	if err := rekognitionwire.WriteState(e.path, e.collections, storeFace, "  "); err != nil {
		return errorf("InternalServerError", "emulator state not saved: %v", err)
	}
	return nil
}

// commit saves a change the caller (holding e.mu) made to the collections,
// or reverts it with undo and answers why.
func (e *Emulator) commit(undo func()) *apiError {
	aerr := e.save()
	if aerr != nil {
		undo()
	}
	return aerr
}
