package rekognitionfake

import (
	"bytes"
	"crypto/sha256"
	"image"
	_ "image/jpeg" // register the decoders used for format validation
	_ "image/png"
	"regexp"
	"slices"

	"github.com/google/uuid"
)

// The emulated operations and the deterministic face model they share (see
// the package comment).

const noFaceMessage = "There are no faces in the image. Should be at least 1."

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

var (
	collectionIDPattern    = regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,255}$`)
	externalImageIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.\-:]{1,255}$`)
)

type imageInput struct {
	Bytes    []byte `json:"Bytes"`
	S3Object any    `json:"S3Object"`
}

type boundingBox struct {
	Width, Height, Left, Top float64
}

var wholeFace = boundingBox{Width: 0.5, Height: 0.6, Left: 0.25, Top: 0.15}

type faceJSON struct {
	FaceId                 string
	BoundingBox            boundingBox
	ImageId                string
	ExternalImageId        string `json:",omitempty"`
	Confidence             float64
	IndexFacesModelVersion string
}

func checkCollectionID(id string) *apiError {
	if !collectionIDPattern.MatchString(id) {
		return errorf("ValidationException", "1 validation error detected: Value '%s' at 'collectionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+", id)
	}
	return nil
}

// checkImage validates the image as Rekognition does and returns its digest.
func checkImage(img *imageInput) (digest, *apiError) {
	if img == nil || (img.Bytes == nil && img.S3Object == nil) {
		return digest{}, errorf("InvalidParameterException", "Request has invalid parameters")
	}
	if img.S3Object != nil {
		return digest{}, errorf("InvalidS3ObjectException", "S3 objects are not emulated")
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
	return "aws:rekognition:" + Region + ":" + AccountID + ":collection/" + id
}

func (e *Emulator) createCollection(body []byte) (any, *apiError) {
	in, aerr := collectionArg(body)
	if aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.collections[in.CollectionId]; ok {
		return nil, errorf("ResourceAlreadyExistsException", "The collection id: %s already exists", in.CollectionId)
	}
	e.collections[in.CollectionId] = &collection{id: in.CollectionId, created: e.now()}
	if err := e.save(); err != nil {
		delete(e.collections, in.CollectionId)
		return nil, err
	}
	return map[string]any{
		"CollectionArn":    e.arn(in.CollectionId),
		"FaceModelVersion": FaceModelVersion,
		"StatusCode":       200,
	}, nil
}

func (e *Emulator) describeCollection(body []byte) (any, *apiError) {
	in, aerr := collectionArg(body)
	if aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	return map[string]any{
		"CollectionARN":     e.arn(c.id),
		"CreationTimestamp": float64(c.created.UnixMilli()) / 1000,
		"FaceCount":         len(c.faces),
		"FaceModelVersion":  FaceModelVersion,
		"UserCount":         0,
	}, nil
}

func notFound(id string) *apiError {
	return errorf("ResourceNotFoundException", "The collection id: %s does not exist", id)
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
	var in struct {
		CollectionId       string
		Image              *imageInput
		FaceMatchThreshold *float64
		MaxFaces           *int
		QualityFilter      string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}
	threshold := 80.0
	if in.FaceMatchThreshold != nil {
		threshold = *in.FaceMatchThreshold
	}
	maxFaces := 4096
	if in.MaxFaces != nil {
		maxFaces = *in.MaxFaces
	}
	if threshold < 0 || threshold > 100 || maxFaces < 1 || maxFaces > 4096 {
		return nil, errorf("InvalidParameterException", "Request has invalid parameters")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	filtered := in.QualityFilter != "" && in.QualityFilter != "NONE"
	if e.noFace[d] || (filtered && e.lowQuality[d]) {
		return nil, errorf("InvalidParameterException", noFaceMessage)
	}

	type match struct {
		Face       faceJSON
		Similarity float64
	}
	who, querySim := e.person(d)
	matches := []match{}
	for _, f := range c.faces {
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
		matches = append(matches, match{Face: e.faceJSON(f), Similarity: sim})
	}
	slices.SortStableFunc(matches, func(a, b match) int {
		switch {
		case a.Similarity > b.Similarity:
			return -1
		case a.Similarity < b.Similarity:
			return 1
		}
		return 0
	})
	if len(matches) > maxFaces {
		matches = matches[:maxFaces]
	}
	return map[string]any{
		"FaceMatches":             matches,
		"FaceModelVersion":        FaceModelVersion,
		"SearchedFaceBoundingBox": wholeFace,
		"SearchedFaceConfidence":  99.98,
	}, nil
}

func (e *Emulator) faceJSON(f face) faceJSON {
	return faceJSON{
		FaceId:                 f.id,
		BoundingBox:            wholeFace,
		ImageId:                f.imageID,
		ExternalImageId:        f.externalImageID,
		Confidence:             99.98,
		IndexFacesModelVersion: FaceModelVersion,
	}
}

func (e *Emulator) indexFaces(body []byte) (any, *apiError) {
	var in struct {
		CollectionId    string
		Image           *imageInput
		ExternalImageId *string
		MaxFaces        *int
		QualityFilter   string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if err := checkCollectionID(in.CollectionId); err != nil {
		return nil, err
	}
	if in.ExternalImageId != nil && !externalImageIDPattern.MatchString(*in.ExternalImageId) {
		return nil, errorf("ValidationException", "1 validation error detected: Value '%s' at 'externalImageId' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-:]+", *in.ExternalImageId)
	}
	if in.MaxFaces != nil && *in.MaxFaces < 1 {
		return nil, errorf("InvalidParameterException", "Request has invalid parameters")
	}
	d, aerr := checkImage(in.Image)
	if aerr != nil {
		return nil, aerr
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.collections[in.CollectionId]
	if !ok {
		return nil, notFound(in.CollectionId)
	}
	out := map[string]any{
		"FaceModelVersion": FaceModelVersion,
		"FaceRecords":      []any{},
		"UnindexedFaces":   []any{},
	}
	filtered := in.QualityFilter != "NONE" // absent means AUTO
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
	f := face{id: uuid.NewString(), imageID: uuid.NewString(), image: d}
	if in.ExternalImageId != nil {
		f.externalImageID = *in.ExternalImageId
	}
	c.faces = append(c.faces, f)
	if err := e.save(); err != nil {
		c.faces = c.faces[:len(c.faces)-1]
		return nil, err
	}
	out["FaceRecords"] = []any{map[string]any{
		"Face":       e.faceJSON(f),
		"FaceDetail": map[string]any{"BoundingBox": wholeFace, "Confidence": 99.98},
	}}
	return out, nil
}

func (e *Emulator) detectFaces(body []byte) (any, *apiError) {
	var in struct {
		Image      *imageInput
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

// collectionArg decodes and checks the input of an operation taking only a
// CollectionId.
func collectionArg(body []byte) (in struct{ CollectionId string }, err *apiError) {
	if err = decode(body, &in); err == nil {
		err = checkCollectionID(in.CollectionId)
	}
	return in, err
}
