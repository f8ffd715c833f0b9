package rekognitionlocal

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/internal/awsjson"
)

// The collections and their faces, kept in one file in the data folder and
// rewritten (to a temporary file renamed over it) after every change, so a
// crash leaves the old state or the new one. A rewrite costs about 1 KB per
// face: fine for the thousands of faces of a development stack.

// stateVersion is the format of the state file; another version is refused
// rather than guessed at.
const stateVersion = 1

// StateFile is the name of the state file in the data folder.
const StateFile = "collections.json"

type collection struct {
	id      string
	created time.Time
	faces   []face
}

// face is an indexed face: what ListFaces and a match answer, and the
// descriptor searches compare.
type face struct {
	id, imageID, externalImageID string
	box                          boundingBox
	confidence                   float64
	descriptor                   facerec.Descriptor
}

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
	FaceID          string      `json:"face_id"`
	ImageID         string      `json:"image_id"`
	ExternalImageID string      `json:"external_image_id,omitempty"`
	BoundingBox     boundingBox `json:"bounding_box"`
	Confidence      float64     `json:"confidence"`
	// Descriptor is the 128 float32 values, little-endian, in base64.
	Descriptor string `json:"descriptor"`
}

// loadState reads the collections from path; a missing file is no
// collections.
func loadState(path string) (map[string]*collection, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*collection{}, nil
	}
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("version %d, want %d", st.Version, stateVersion)
	}
	out := map[string]*collection{}
	for _, cs := range st.Collections {
		if checkCollectionID(cs.ID) != nil {
			return nil, fmt.Errorf("invalid collection id %q", cs.ID)
		}
		if _, dup := out[cs.ID]; dup {
			return nil, fmt.Errorf("collection %q listed twice", cs.ID)
		}
		c := &collection{id: cs.ID, created: cs.Created}
		for _, f := range cs.Faces {
			d, err := decodeDescriptor(f.Descriptor)
			if err != nil {
				return nil, fmt.Errorf("collection %q, face %q: %w", cs.ID, f.FaceID, err)
			}
			if f.FaceID == "" {
				return nil, fmt.Errorf("collection %q: a face without face_id", cs.ID)
			}
			c.faces = append(c.faces, face{
				id: f.FaceID, imageID: f.ImageID, externalImageID: f.ExternalImageID,
				box: f.BoundingBox, confidence: f.Confidence, descriptor: d,
			})
		}
		out[cs.ID] = c
	}
	return out, nil
}

// saveState writes the collections to path.
func saveState(path string, collections map[string]*collection) error {
	st := stateFile{Version: stateVersion, Collections: []collectionState{}}
	for _, c := range collections {
		cs := collectionState{ID: c.id, Created: c.created, Faces: []faceState{}}
		for _, f := range c.faces {
			cs.Faces = append(cs.Faces, faceState{
				FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID,
				BoundingBox: f.box, Confidence: f.confidence, Descriptor: encodeDescriptor(f.descriptor),
			})
		}
		st.Collections = append(st.Collections, cs)
	}
	slices.SortFunc(st.Collections, func(a, b collectionState) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return awsjson.WriteFileAtomic(path, append(b, '\n'))
}

func encodeDescriptor(d facerec.Descriptor) string {
	b := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func decodeDescriptor(s string) (facerec.Descriptor, error) {
	var d facerec.Descriptor
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 4*len(d) {
		return d, errors.New("descriptor is not 128 float32 values in base64")
	}
	for i := range d {
		d[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return d, nil
}
