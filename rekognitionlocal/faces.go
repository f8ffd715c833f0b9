package rekognitionlocal

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

// The operations that look at an image: IndexFaces, SearchFacesByImage and
// DetectFaces.

// minImageSide is Rekognition's minimum image dimension.
const minImageSide = 80

var errTooSmall = errors.New("image smaller than 80 px a side")

// imageErrors is how Rekognition answers each image it cannot analyse; a
// new failure is one more row.
var imageErrors = []struct {
	err           error
	code, message string
}{
	{facerec.ErrTooLarge, "ImageTooLargeException", "Image size is too large"},
	{facerec.ErrFormat, "InvalidImageFormatException", "Request has invalid image format"},
	// What AWS answers for an image under its minimum size.
	{errTooSmall, "InvalidParameterException", "Request has invalid parameters"},
}

type (
	imageInput  = rekognitionwire.ImageInput
	boundingBox = rekognitionwire.BoundingBox
)

type landmarkJSON struct {
	Type string
	X, Y float64
}

type faceDetail struct {
	BoundingBox boundingBox
	Confidence  float64
	Landmarks   []landmarkJSON `json:",omitempty"`
}

// decodeImage validates the request's image as Rekognition does and
// decodes it.
func decodeImage(in *imageInput) (*facerec.Image, *apiError) {
	if aerr := in.Check("S3 objects are not supported by rekognition-local: send the image bytes"); aerr != nil {
		return nil, aerr
	}
	img, err := facerec.Decode(in.Bytes, facerec.DefaultLimits)
	if err == nil && (img.Width() < minImageSide || img.Height() < minImageSide) {
		err = errTooSmall
	}
	if err != nil {
		for _, row := range imageErrors {
			if errors.Is(err, row.err) {
				return nil, errorf(row.code, "%s", row.message)
			}
		}
		return nil, errorf("InternalServerError", "image: %v", err)
	}
	return img, nil
}

// analyse runs fn while holding one of the analysis slots, which bound the
// CPU and memory spent on images at once; a client that goes away while
// waiting for one is not served.
func (s *Server) analyse(ctx context.Context, fn func()) *apiError {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return errorf("ThrottlingException", "request cancelled while waiting for an analysis slot")
	}
	defer func() { <-s.slots }()
	fn()
	return nil
}

func relBox(b facerec.Box, a *analysis) boundingBox {
	w, h := float64(a.w), float64(a.h)
	return boundingBox{Width: round(b.Width / w), Height: round(b.Height / h), Left: round(b.Left / w), Top: round(b.Top / h)}
}

// round keeps seven decimals: AWS answers float32 values, and more digits
// would only be noise.
func round(v float64) float64 {
	return math.Round(v*1e7) / 1e7
}

func confidence(f facerec.Face) float64 { return round(f.Confidence * 100) }

// landmarks are Rekognition's five basic landmarks, from the 68 points;
// "left" is the image's left.
func landmarks(pts [68]facerec.Point, a *analysis) []landmarkJSON {
	mean := func(ps []facerec.Point) facerec.Point {
		var x, y float64
		for _, p := range ps {
			x, y = x+p.X, y+p.Y
		}
		return facerec.Point{X: x / float64(len(ps)), Y: y / float64(len(ps))}
	}
	w, h := float64(a.w), float64(a.h)
	mark := func(t string, p facerec.Point) landmarkJSON {
		return landmarkJSON{Type: t, X: round(p.X / w), Y: round(p.Y / h)}
	}
	return []landmarkJSON{
		mark("eyeLeft", mean(pts[36:42])),
		mark("eyeRight", mean(pts[42:48])),
		mark("mouthLeft", pts[48]),
		mark("mouthRight", pts[54]),
		mark("nose", pts[30]),
	}
}

// Quality filters. Rekognition does not publish its bars; these are the
// detector's score (faces on the test photos score 0.64–0.98) and its
// documented minimum face size, 40 px in a 1920×1080 image and
// proportionally more in a larger one.
var minScore = map[string]float64{"LOW": 0.6, "AUTO": 0.6, "MEDIUM": 0.7, "HIGH": 0.8}

func checkQualityFilter(q string) *apiError {
	if q == "" || q == "NONE" {
		return nil
	}
	if _, ok := minScore[q]; !ok {
		return errorf("ValidationException", "1 validation error detected: Value '%s' at 'qualityFilter' failed to satisfy constraint: Member must satisfy enum value set: [AUTO, HIGH, LOW, MEDIUM, NONE]", q)
	}
	return nil
}

// qualityReasons lists why f fails filter q ("" or NONE: never).
func qualityReasons(f facerec.Face, a *analysis, q string) []string {
	if q == "" || q == "NONE" {
		return nil
	}
	var reasons []string
	minSide := 40 * max(1, float64(a.w)/1920, float64(a.h)/1080)
	if f.Box.Width < minSide || f.Box.Height < minSide {
		reasons = append(reasons, "SMALL_BOUNDING_BOX")
	}
	if f.Confidence < minScore[q] {
		reasons = append(reasons, "LOW_CONFIDENCE")
	}
	return reasons
}

// lookIn checks the quality filter asked for and that collection id
// exists, as Rekognition does before it looks at the image, then looks at
// the image.
func (s *Server) lookIn(ctx context.Context, id, quality string, img *imageInput) (*photo, *apiError) {
	if aerr := checkQualityFilter(quality); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	_, aerr := s.collections.Get(id)
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	return s.look(ctx, img)
}

func (s *Server) indexFaces(r *http.Request, c call) (any, *apiError) {
	in, aerr := rekognitionwire.DecodeIndex(c.body)
	if aerr != nil {
		return nil, aerr
	}
	maxFaces, quality := in.FaceLimit(), in.Quality()
	p, aerr := s.lookIn(r.Context(), in.CollectionId, quality, in.Image)
	if aerr != nil {
		return nil, aerr
	}

	type record struct {
		Face       rekognitionwire.Face
		FaceDetail faceDetail
	}
	type unindexed struct {
		Reasons    []string
		FaceDetail faceDetail
	}
	records := []record{}
	skipped := []unindexed{}
	var added []face
	imageID := uuid.NewString()
	for i, f := range p.a.faces {
		detail := faceDetail{BoundingBox: relBox(f.Box, p.a), Confidence: confidence(f)}
		if reasons := qualityReasons(f, p.a, quality); reasons != nil {
			skipped = append(skipped, unindexed{Reasons: reasons, FaceDetail: detail})
			continue
		}
		if len(added) == maxFaces {
			skipped = append(skipped, unindexed{Reasons: []string{"EXCEEDS_MAX_FACES"}, FaceDetail: detail})
			continue
		}
		d, aerr := s.describe(r.Context(), p, i)
		if aerr != nil {
			return nil, aerr
		}
		if d.err != nil {
			skipped = append(skipped, unindexed{Reasons: []string{"LOW_FACE_QUALITY"}, FaceDetail: detail})
			continue
		}
		detail.Landmarks = landmarks(d.detail.Landmarks, p.a)
		nf := face{
			id: uuid.NewString(), imageID: imageID, externalImageID: in.ExternalImageID(),
			box: detail.BoundingBox, confidence: detail.Confidence, descriptor: d.detail.Descriptor,
		}
		added = append(added, nf)
		records = append(records, record{Face: nf.json(), FaceDetail: detail})
	}
	if len(added) > 0 {
		err := s.change(func() (func(), *apiError) {
			col, aerr := s.collections.Get(in.CollectionId) // deleted during the analysis?
			if aerr != nil {
				return nil, aerr
			}
			before := col.Faces
			col.Faces = append(slices.Clip(col.Faces), added...)
			return func() { col.Faces = before }, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"FaceModelVersion": FaceModelVersion,
		"FaceRecords":      records,
		"UnindexedFaces":   skipped,
	}, nil
}

func (s *Server) searchFacesByImage(r *http.Request, c call) (any, *apiError) {
	in, aerr := rekognitionwire.DecodeSearch(c.body)
	if aerr != nil {
		return nil, aerr
	}
	threshold, maxFaces, aerr := in.Limits()
	if aerr != nil {
		return nil, aerr
	}
	quality := in.Quality()
	p, aerr := s.lookIn(r.Context(), in.CollectionId, quality, in.Image)
	if aerr != nil {
		return nil, aerr
	}
	// The largest face is searched; without one (or when it fails the
	// quality filter) Rekognition answers InvalidParameterException.
	if len(p.a.faces) == 0 || qualityReasons(p.a.faces[0], p.a, quality) != nil {
		return nil, rekognitionwire.NoFace()
	}
	d, aerr := s.describe(r.Context(), p, 0)
	if aerr != nil {
		return nil, aerr
	}
	if d.err != nil {
		return nil, rekognitionwire.NoFace()
	}
	searched := d.detail

	type match struct {
		Similarity float64
		Face       rekognitionwire.Face
	}
	matches := []match{}
	s.mu.Lock()
	col, aerr := s.collections.Get(in.CollectionId) // deleted during the analysis?
	if aerr == nil {
		for _, f := range col.Faces {
			sim := round(facerec.Similarity(facerec.Distance(searched.Descriptor, f.descriptor)))
			if sim >= threshold {
				matches = append(matches, match{Similarity: sim, Face: f.json()})
			}
		}
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{
		"FaceMatches":             rekognitionwire.SortMatches(matches, func(m match) float64 { return m.Similarity }, maxFaces),
		"FaceModelVersion":        FaceModelVersion,
		"SearchedFaceBoundingBox": relBox(searched.Box, p.a),
		"SearchedFaceConfidence":  confidence(searched.Face),
	}, nil
}

func (s *Server) detectFaces(r *http.Request, c call) (any, *apiError) {
	var in struct {
		Image      *imageInput
		Attributes []string
	}
	if err := decode(c.body, &in); err != nil {
		return nil, err
	}
	p, aerr := s.look(r.Context(), in.Image)
	if aerr != nil {
		return nil, aerr
	}
	details := []faceDetail{}
	for i, f := range p.a.faces {
		d := faceDetail{BoundingBox: relBox(f.Box, p.a), Confidence: confidence(f)}
		res, aerr := s.describe(r.Context(), p, i)
		if aerr != nil {
			return nil, aerr
		}
		if res.err == nil {
			d.Landmarks = landmarks(res.detail.Landmarks, p.a)
		}
		details = append(details, d)
	}
	return map[string]any{"FaceDetails": details}, nil
}
