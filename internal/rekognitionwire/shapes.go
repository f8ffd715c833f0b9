package rekognitionwire

import (
	"cmp"
	"slices"
)

// BoundingBox is Rekognition's BoundingBox: ratios of the image's width and
// height, which may leave [0, 1] for a face at the border.
type BoundingBox struct {
	Width, Height, Left, Top float64
}

// Face is Rekognition's Face shape, as IndexFaces, SearchFacesByImage and
// ListFaces answer it.
type Face struct {
	FaceId                 string
	BoundingBox            BoundingBox
	ImageId                string
	ExternalImageId        string `json:",omitempty"`
	Confidence             float64
	IndexFacesModelVersion string
}

// SortMatches orders matches by similarity, highest first (equal ones keep
// their order, the collection's), and keeps the first maxFaces. A server
// keeps its own match type, whose field order is the order of its JSON.
func SortMatches[M any](matches []M, similarity func(M) float64, maxFaces int) []M {
	slices.SortStableFunc(matches, func(a, b M) int { return cmp.Compare(similarity(b), similarity(a)) })
	if len(matches) > maxFaces {
		matches = matches[:maxFaces]
	}
	return matches
}
