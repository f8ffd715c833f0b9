package facerec

import "math"

// Distances between descriptors, and their translation to Rekognition's
// Similarity (0–100) so that a FaceMatchThreshold means a distance.
//
// dlib trained its network to keep each person's faces within a ball of
// radius 0.6, and reports its LFW accuracy at that boundary. The mapping is
// a logistic curve anchored at two points:
//
//	distance 0.6 → Similarity 80 (Rekognition's default FaceMatchThreshold:
//	               a client that sends none gets dlib's boundary)
//	distance 0.4 → Similarity 99
//
// which puts the worker's default threshold, 90, at distance 0.549, and
// identical faces at 99.998. On the test photos, altered copies of one face
// are 0.08–0.15 apart (Similarity 99.98+), the two different people 0.65
// (about 63).
const (
	// MatchDistance is the distance that maps to Similarity 80.
	MatchDistance = 0.6
	strictDist    = 0.4
	strictSim     = 99.0
	matchSim      = 80.0
)

var (
	// similarity = 100 / (1 + exp((d - simCentre) / simScale))
	simScale  = (MatchDistance - strictDist) / (math.Log(100/matchSim-1) - math.Log(100/strictSim-1))
	simCentre = MatchDistance - simScale*math.Log(100/matchSim-1)
)

// Distance is the Euclidean distance between two descriptors.
func Distance(a, b Descriptor) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// Similarity maps a descriptor distance to Rekognition's 0–100 scale;
// it decreases as the distance grows.
func Similarity(distance float64) float64 {
	return 100 / (1 + math.Exp((distance-simCentre)/simScale))
}

// DistanceAt is the largest distance whose Similarity is at least
// threshold (0 < threshold < 100): Similarity's inverse.
func DistanceAt(threshold float64) float64 {
	return simCentre + simScale*math.Log(100/threshold-1)
}
