package rekognitionfake

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// Optional persistence of the emulated collections and faces, so that a
// restarted dev stack still recognises the faces it indexed before, as AWS
// would. The test controls (no-face images, same-person declarations,
// faults, latency, call counts) are not persisted: they belong to one run.

// stateVersion is the format of the state file; a file of another version is
// refused rather than guessed at.
const stateVersion = 1

type stateFile struct {
	Version     int               `json:"version"`
	Collections []collectionState `json:"collections"`
}

type collectionState struct {
	ID      string      `json:"id"`
	Created time.Time   `json:"created"`
	Faces   []faceState `json:"faces"`
}

type faceState struct {
	FaceID          string `json:"face_id"`
	ImageID         string `json:"image_id"`
	ExternalImageID string `json:"external_image_id,omitempty"`
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
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("rekognitionfake: read state: %w", err)
	default:
		if err := e.load(b); err != nil {
			return nil, fmt.Errorf("rekognitionfake: state file %s: %w (delete it to start with no collections)", path, err)
		}
	}
	// Written once now, so an unwritable location fails here rather than on
	// the first IndexFaces.
	e.mu.Lock()
	defer e.mu.Unlock()
	if aerr := e.save(); aerr != nil {
		return nil, fmt.Errorf("rekognitionfake: %s", aerr.Message)
	}
	return e, nil
}

// load replaces the emulator's collections with those encoded in b.
func (e *Emulator) load(b []byte) error {
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if st.Version != stateVersion {
		return fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	collections := map[string]*collection{}
	for _, cs := range st.Collections {
		if checkCollectionID(cs.ID) != nil {
			return fmt.Errorf("invalid collection id %q", cs.ID)
		}
		if _, dup := collections[cs.ID]; dup {
			return fmt.Errorf("collection %q listed twice", cs.ID)
		}
		c := &collection{id: cs.ID, created: cs.Created}
		for _, f := range cs.Faces {
			raw, err := hex.DecodeString(f.ImageSHA256)
			if err != nil || len(raw) != len(digest{}) {
				return fmt.Errorf("collection %q: face %q: image_sha256 is not a SHA-256 in hex", cs.ID, f.FaceID)
			}
			if f.FaceID == "" {
				return fmt.Errorf("collection %q: a face without face_id", cs.ID)
			}
			c.faces = append(c.faces, face{id: f.FaceID, imageID: f.ImageID, externalImageID: f.ExternalImageID, image: digest(raw)})
		}
		collections[cs.ID] = c
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.collections = collections
	return nil
}

// save writes the collections to the state file, when there is one. The
// caller holds e.mu, so writes happen in the order of the changes. A failure
// is an InternalServerError answer, which the SDK retries.
func (e *Emulator) save() *apiError {
	if e.path == "" {
		return nil
	}
	st := stateFile{Version: stateVersion, Collections: []collectionState{}}
	for _, c := range e.collections {
		cs := collectionState{ID: c.id, Created: c.created, Faces: []faceState{}}
		for _, f := range c.faces {
			cs.Faces = append(cs.Faces, faceState{FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID, ImageSHA256: hex.EncodeToString(f.image[:])})
		}
		st.Collections = append(st.Collections, cs)
	}
	slices.SortFunc(st.Collections, func(a, b collectionState) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = awsjson.WriteFileAtomic(e.path, append(b, '\n'))
	}
	if err != nil {
		return errorf("InternalServerError", "emulator state not saved: %v", err)
	}
	return nil
}
