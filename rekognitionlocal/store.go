package rekognitionlocal

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"

	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The collections and their faces, kept in one file in the data folder and
// rewritten (to a temporary file renamed over it) after every change, so a
// crash leaves the old state or the new one. A rewrite costs about 1 KB per
// face: fine for the thousands of faces of a development stack.

// StateFile is the name of the state file in the data folder.
const StateFile = "collections.json"

type collection = rekognitionwire.Collection[face]

// face is an indexed face: what ListFaces and a match answer, and the
// descriptor searches compare.
type face struct {
	id, imageID, externalImageID string
	box                          boundingBox
	confidence                   float64
	descriptor                   facerec.Descriptor
}

// faceState is a face in the state file.
type faceState struct {
	rekognitionwire.StoredFace
	BoundingBox boundingBox `json:"bounding_box"`
	Confidence  float64     `json:"confidence"`
	// Descriptor is the 128 float32 values, little-endian, in base64.
	Descriptor string `json:"descriptor"`
}

// loadState reads the collections from path; a missing file is no
// collections.
func loadState(path string) (rekognitionwire.Collections[face], error) {
	return rekognitionwire.ReadState(path, loadFace)
}

// saveState writes the collections to path.
func saveState(path string, collections rekognitionwire.Collections[face]) error {
	return rekognitionwire.WriteState(path, collections, storeFace, " ")
}

// storeFace and loadFace convert between a face and its stored form.
func storeFace(f face) faceState {
	return faceState{
		StoredFace:  rekognitionwire.StoredFace{FaceID: f.id, ImageID: f.imageID, ExternalImageID: f.externalImageID},
		BoundingBox: f.box, Confidence: f.confidence, Descriptor: encodeDescriptor(f.descriptor),
	}
}

func loadFace(s faceState) (face, error) {
	d, err := decodeDescriptor(s.Descriptor)
	if err != nil {
		return face{}, err
	}
	return face{
		id: s.FaceID, imageID: s.ImageID, externalImageID: s.ExternalImageID,
		box: s.BoundingBox, confidence: s.Confidence, descriptor: d,
	}, nil
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
