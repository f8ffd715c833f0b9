package rekognitionfake

import (
	"bytes"
	"crypto/sha256"
	"image"
	_ "image/jpeg" // register the decoders used for format validation
	_ "image/png"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The emulated operations and the deterministic face model they share (see
// the package comment).

// operate runs operation op on a request body that passed the protocol checks.
func (e *Emulator) operate(op string, body []byte) (any, *apiError) {
	switch op {
	case OpCreateCollection:
		return e.createCollection(body)
	case OpDescribeCollection:
		return e.describeCollection(body)
	case OpSearchFacesByImage:
		return e.searchFacesByImage(body)
	case OpIndexFaces:
		return e.indexFaces(body)
	case OpDetectFaces:
		return e.detectFaces(body)
	}
	return nil, errorf("UnknownOperationException", "operation %s is not emulated", op)
}

type boundingBox = rekognitionwire.BoundingBox

var wholeFace = boundingBox{Width: 0.5, Height: 0.6, Left: 0.25, Top: 0.15}

// checkImage validates the image as Rekognition does and returns its digest.
func checkImage(img *rekognitionwire.ImageInput) (digest, *apiError) {
	if aerr := img.Check("S3 objects are not emulated"); aerr != nil {
		return digest{}, aerr
	}
	if len(img.Bytes) > MaxImageBytes {
		return digest{}, errorf("ImageTooLargeException", "Image size is too large")
	}
	if _, _, err := image.DecodeConfig(bytes.NewReader(img.Bytes)); err != nil {
		return digest{}, errorf("InvalidImageFormatException", "Request has invalid image format")
	}
	return sha256.Sum256(img.Bytes), nil
}

func (e *Emulator) arn(id string) string {
	return rekognitionwire.ARN(Region, id)
}

func (e *Emulator) createCollection(body []byte) (any, *apiError) {
	id, aerr := rekognitionwire.CollectionArg(body)
	if aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	undo, aerr := e.collections.Create(id, e.now())
	if aerr == nil {
		aerr = e.commit(undo)
	}
	if aerr != nil {
		return nil, aerr
	}
	return rekognitionwire.CreateOutput(e.arn(id), FaceModelVersion), nil
}

func (e *Emulator) describeCollection(body []byte) (any, *apiError) {
	id, aerr := rekognitionwire.CollectionArg(body)
	if aerr != nil {
		return nil, aerr
	}
	return e.inCollection(id, func(c *collection) (any, *apiError) {
		return c.DescribeOutput(e.arn(c.ID), FaceModelVersion), nil
	})
}

// inCollection answers with fn run on collection id while e.mu is held, or
// with ResourceNotFoundException.
func (e *Emulator) inCollection(id string, fn func(c *collection) (any, *apiError)) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, aerr := e.collections.Get(id)
	if aerr != nil {
		return nil, aerr
	}
	return fn(c)
}

// person resolves d to the digest identifying its person and d's declared
// similarity to that person.
func (e *Emulator) person(d digest) (digest, float64) {
	sim := ExactMatchSimilarity
	seen := map[digest]bool{}
	for !seen[d] {
		seen[d] = true
		a, ok := e.samePerson[d]
		if !ok {
			break
		}
		sim = min(sim, a.similarity)
		d = a.of
	}
	return d, sim
}

func (e *Emulator) searchFacesByImage(body []byte) (any, *apiError) {
	in, aerr := rekognitionwire.DecodeSearch(body)
	if aerr != nil {
		return nil, aerr
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}
	threshold, maxFaces, aerr := in.Limits()
	if aerr != nil {
		return nil, aerr
	}
	return e.inCollection(in.CollectionId, func(c *collection) (any, *apiError) {
		return e.search(c, d, in.Quality(), threshold, maxFaces)
	})
}

// search answers SearchFacesByImage for image d in c; e.mu is held.
func (e *Emulator) search(c *collection, d digest, quality string, threshold float64, maxFaces int) (any, *apiError) {
	filtered := quality != "" && quality != "NONE"
	if e.noFace[d] || (filtered && e.lowQuality[d]) {
		return nil, rekognitionwire.NoFace()
	}

	type match struct {
		Face       rekognitionwire.Face
		Similarity float64
	}
	who, querySim := e.person(d)
	matches := []match{}
	for _, f := range c.Faces {
		var sim float64
		if f.image == d {
			sim = ExactMatchSimilarity
		} else if p, faceSim := e.person(f.image); p == who {
			sim = min(querySim, faceSim)
		} else {
			continue
		}
		if sim < threshold {
			continue
		}
		matches = append(matches, match{Face: f.json(), Similarity: sim})
	}
	return map[string]any{
		"FaceMatches":             rekognitionwire.SortMatches(matches, func(m match) float64 { return m.Similarity }, maxFaces),
		"FaceModelVersion":        FaceModelVersion,
		"SearchedFaceBoundingBox": wholeFace,
		"SearchedFaceConfidence":  99.98,
	}, nil
}

func (f face) json() rekognitionwire.Face {
	return rekognitionwire.Face{
		FaceId:                 f.id,
		BoundingBox:            wholeFace,
		ImageId:                f.imageID,
		ExternalImageId:        f.externalImageID,
		Confidence:             99.98,
		IndexFacesModelVersion: FaceModelVersion,
	}
}

func (e *Emulator) indexFaces(body []byte) (any, *apiError) {
	in, aerr := rekognitionwire.DecodeIndex(body)
	if aerr != nil {
		return nil, aerr
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}
	return e.inCollection(in.CollectionId, func(c *collection) (any, *apiError) {
		return e.index(c, d, in.Quality(), in.ExternalImageID())
	})
}

// index answers IndexFaces for image d in c; e.mu is held.
func (e *Emulator) index(c *collection, d digest, quality, externalImageID string) (any, *apiError) {
	filtered := quality != "NONE" // absent is AUTO
	out := map[string]any{
		"FaceModelVersion": FaceModelVersion,
		"FaceRecords":      []any{},
		"UnindexedFaces":   []any{},
	}
	switch {
	case e.noFace[d]:
		return out, nil
	case filtered && e.lowQuality[d]:
		out["UnindexedFaces"] = []any{map[string]any{
			"Reasons":    []string{"LOW_FACE_QUALITY"},
			"FaceDetail": map[string]any{"BoundingBox": wholeFace, "Confidence": 61.5},
		}}
		return out, nil
	}
	f := face{id: uuid.NewString(), imageID: uuid.NewString(), externalImageID: externalImageID, image: d}
	c.Faces = append(c.Faces, f)
	if aerr := e.commit(func() { c.Faces = c.Faces[:len(c.Faces)-1] }); aerr != nil {
		return nil, aerr
	}
	out["FaceRecords"] = []any{map[string]any{
		"Face":       f.json(),
		"FaceDetail": map[string]any{"BoundingBox": wholeFace, "Confidence": 99.98},
	}}
	return out, nil
}

func (e *Emulator) detectFaces(body []byte) (any, *apiError) {
	var in struct {
		Image      *rekognitionwire.ImageInput
		Attributes []string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	details := []any{}
	if !e.noFace[d] {
		quality := map[string]float64{"Brightness": 80, "Sharpness": 90}
		if e.lowQuality[d] {
			quality = map[string]float64{"Brightness": 12, "Sharpness": 4}
		}
		details = append(details, map[string]any{
			"BoundingBox": wholeFace,
			"Confidence":  99.98,
			"Quality":     quality,
		})
	}
	return map[string]any{"FaceDetails": details}, nil
}
