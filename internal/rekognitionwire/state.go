package rekognitionwire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// The file the collections persist in: JSON, rewritten whole (to a
// temporary file renamed over it) after every change, so a crash leaves the
// old state or the new one. Its layout is fixed (the dev stack keeps such
// files across versions); each server stores its own face fields next to
// the ids that every face has.

// stateVersion is the format of the state file; a file of another version is
// refused rather than guessed at.
const stateVersion = 1

// StoredFace is what every stored face has. A server's stored face embeds
// it, so the ids come first in each face's JSON object.
type StoredFace struct {
	FaceID          string `json:"face_id"`
	ImageID         string `json:"image_id"`
	ExternalImageID string `json:"external_image_id,omitempty"`
}

// Stored returns f; promoted through embedding, it lets ReadState read the
// ids of any server's stored face.
func (f StoredFace) Stored() StoredFace { return f }

// storedFace is a server's stored face.
type storedFace interface{ Stored() StoredFace }

type stateFile[S any] struct {
	Version     int                  `json:"version"`
	Collections []collectionState[S] `json:"collections"`
}

type collectionState[S any] struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Faces   []S       `json:"faces"`
}

// ReadState loads the collections from the file at path (none when it does
// not exist). face turns a stored face into the server's; the error it
// returns is reported with the face's collection and id.
func ReadState[S storedFace, F any](path string, face func(S) (F, error)) (Collections[F], error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Collections[F]{}, nil
	}
	if err != nil {
		return nil, err
	}
	var st stateFile[S]
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	out := Collections[F]{}
	for _, cs := range st.Collections {
		if CheckCollectionID(cs.ID) != nil {
			return nil, fmt.Errorf("invalid collection id %q", cs.ID)
		}
		if _, dup := out[cs.ID]; dup {
			return nil, fmt.Errorf("collection %q listed twice", cs.ID)
		}
		c := &Collection[F]{ID: cs.ID, Created: cs.Created}
		for _, sf := range cs.Faces {
			f, err := face(sf)
			if err != nil {
				return nil, fmt.Errorf("collection %q, face %q: %w", cs.ID, sf.Stored().FaceID, err)
			}
			if sf.Stored().FaceID == "" {
				return nil, fmt.Errorf("collection %q: a face without face_id", cs.ID)
			}
			c.Faces = append(c.Faces, f)
		}
		out[cs.ID] = c
	}
	return out, nil
}

// WriteState replaces the file at path with cs, sorted by id, each stored
// face made by stored; indent is the JSON's indentation.
func WriteState[S, F any](path string, cs Collections[F], stored func(F) S, indent string) error {
	st := stateFile[S]{Version: stateVersion, Collections: []collectionState[S]{}}
	for _, c := range cs {
		s := collectionState[S]{ID: c.ID, Created: c.Created, Faces: []S{}}
		for _, f := range c.Faces {
			s.Faces = append(s.Faces, stored(f))
		}
		st.Collections = append(st.Collections, s)
	}
	slices.SortFunc(st.Collections, func(a, b collectionState[S]) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(st, "", indent)
	if err != nil {
		return err
	}
	return awsjson.WriteFileAtomic(path, append(b, '\n'))
}
