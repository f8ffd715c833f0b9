// Package facerec detects and recognises faces in JPEG and PNG photos, in
// pure Go (no cgo, no native library): the three face-api networks vendored
// in models/ (see models/README.md) run on the CPU.
//
// The pipeline is face-api's detectAllFaces(TinyFaceDetector)
// .withFaceLandmarks(tiny).withFaceDescriptors(), reproduced operation for
// operation so its descriptors match face-api's (testdata/README.md):
//
//  1. Detect: the tiny face detector scores boxes on the image scaled to
//     InputSize, keeping those above MinConfidence after non-maximum
//     suppression.
//  2. Describe: the landmark network finds 68 points in the face's box; the
//     eyes and mouth give a square crop (dlib's alignment), which the
//     recognition network (dlib's ResNet) maps to a 128-d descriptor.
//
// Two descriptors of one person are close in Euclidean distance (Distance);
// Similarity maps a distance to Rekognition's 0–100 scale.
package facerec

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

//go:embed models/*.json models/*.bin
var modelFS embed.FS

// Options configure an Engine; the zero value means the defaults.
type Options struct {
	// InputSize is the side, a multiple of 32, the image is scaled to for
	// detection (default DefaultInputSize).
	InputSize int
	// MinConfidence is the detector score (0–1) above which a box is a face
	// (default DefaultMinConfidence).
	MinConfidence float64
}

// DefaultMinConfidence is face-api's default score threshold. On the test
// photos the two faces score 0.95 and 0.98, altered copies of one of them
// 0.64–0.98, and the faceless photos have no box above 0.05.
const DefaultMinConfidence = 0.5

// Engine holds the loaded networks. It is safe for concurrent use; each
// call uses every CPU, so callers bound how many run at once.
type Engine struct {
	det  *detector
	lm   *landmarker
	rec  *recogniser
	opts Options
}

// New loads the embedded models.
func New(opts Options) (*Engine, error) {
	sub, err := fs.Sub(modelFS, "models")
	if err != nil {
		return nil, err
	}
	return load(sub, ".", opts)
}

func load(fsys fs.FS, dir string, opts Options) (*Engine, error) {
	if opts.InputSize == 0 {
		opts.InputSize = DefaultInputSize
	}
	if opts.MinConfidence == 0 {
		opts.MinConfidence = DefaultMinConfidence
	}
	if opts.InputSize < 32 || opts.InputSize%32 != 0 {
		return nil, fmt.Errorf("facerec: input size %d is not a positive multiple of 32", opts.InputSize)
	}
	if opts.MinConfidence < 0 || opts.MinConfidence >= 1 {
		return nil, fmt.Errorf("facerec: minimum confidence %v is not in [0, 1)", opts.MinConfidence)
	}
	det, err := loadDetector(fsys, dir)
	if err != nil {
		return nil, err
	}
	lm, err := loadLandmarker(fsys, dir)
	if err != nil {
		return nil, err
	}
	rec, err := loadRecogniser(fsys, dir)
	if err != nil {
		return nil, err
	}
	return &Engine{det: det, lm: lm, rec: rec, opts: opts}, nil
}

// Box is a rectangle in image pixels.
type Box struct{ Left, Top, Width, Height float64 }

// Point is a position in image pixels.
type Point struct{ X, Y float64 }

// Face is a detected face.
type Face struct {
	Box        Box
	Confidence float64 // the detector's score, 0–1
}

// Descriptor is a face's position in the recognition network's space.
type Descriptor [DescriptorSize]float32

// Detail is a face with its landmarks and descriptor.
type Detail struct {
	Face
	// Landmarks are the 68 points of the iBUG 300-W scheme (36–41 the
	// subject's right eye, 42–47 the left, 48–67 the mouth, 30 the nose tip).
	Landmarks [68]Point
	// Crop is the aligned square the descriptor was computed from.
	Crop       Box
	Descriptor Descriptor
}

// ErrNoDescriptor: the face's box or aligned crop falls outside the image.
var ErrNoDescriptor = errors.New("facerec: the aligned face lies outside the image")

// Detect returns the faces in img, most confident first.
func (e *Engine) Detect(img *Image) []Face {
	dets := e.det.detect(img, e.opts.InputSize, e.opts.MinConfidence)
	faces := make([]Face, 0, len(dets))
	for _, d := range dets {
		faces = append(faces, Face{Box: Box{d.box.x, d.box.y, d.box.w, d.box.h}, Confidence: d.score})
	}
	return faces
}

// Landmarks finds f's 68 landmarks, in image pixels.
func (e *Engine) Landmarks(img *Image, f Face) ([68]Point, error) {
	var out [68]Point
	pts, _, ok := e.landmarks(img, f)
	if !ok {
		return out, ErrNoDescriptor
	}
	for i, p := range pts {
		out[i] = Point{p.x, p.y}
	}
	return out, nil
}

// landmarks returns f's landmarks in image pixels and the crop they were
// found in; ok is false when f's box lies outside the image.
func (e *Engine) landmarks(img *Image, f Face) (pts [68]point, crop rect, ok bool) {
	b := box{f.Box.Left, f.Box.Top, f.Box.Width, f.Box.Height}
	crop = b.clip(img.w, img.h)
	if crop.w <= 0 || crop.h <= 0 {
		return pts, crop, false
	}
	pts = e.lm.landmarks(img, crop)
	// face-api shifts the landmarks by the detection box's corner; where the
	// box starts outside the image the crop starts at 0, and so does the
	// shift here.
	sx, sy := max(b.x, 0), max(b.y, 0)
	for i := range pts {
		pts[i] = point{pts[i].x + sx, pts[i].y + sy}
	}
	return pts, crop, true
}

// Describe finds f's landmarks and computes its descriptor.
func (e *Engine) Describe(img *Image, f Face) (Detail, error) {
	pts, crop, ok := e.landmarks(img, f)
	if !ok {
		return Detail{}, ErrNoDescriptor
	}
	d := Detail{Face: f}
	for i, p := range pts {
		d.Landmarks[i] = Point{p.x, p.y}
	}
	aligned := alignedCrop(pts, crop.w, crop.h, img.w, img.h)
	if aligned.w <= 0 || aligned.h <= 0 {
		return Detail{}, ErrNoDescriptor
	}
	d.Crop = Box{float64(aligned.x), float64(aligned.y), float64(aligned.w), float64(aligned.h)}
	copy(d.Descriptor[:], e.rec.descriptor(img, aligned))
	return d, nil
}

// Largest returns faces sorted by box area, largest first (Rekognition
// searches with the largest face and indexes the largest MaxFaces).
func Largest(faces []Face) []Face {
	s := slices.Clone(faces)
	slices.SortStableFunc(s, func(a, b Face) int {
		aa, ba := a.Box.Width*a.Box.Height, b.Box.Width*b.Box.Height
		switch {
		case aa > ba:
			return -1
		case aa < ba:
			return 1
		}
		return 0
	})
	return s
}
