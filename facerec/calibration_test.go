package facerec

import (
	"image"
	"math"
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/facetest"
)

// TestAlteredCopiesMatchAndPeopleDoNot is the calibration behind
// Similarity: altered copies of one photo are well inside the match
// boundary, the two people well outside.
func TestAlteredCopiesMatchAndPeopleDoNot(t *testing.T) {
	e := testEngine(t)
	all := fixtureAnalyses(t)
	grace := all[facetest.GraceHopper].faces[0].Descriptor
	astronaut := all[facetest.Astronaut].faces[0].Descriptor

	people := Distance(grace, astronaut)
	t.Logf("grace_hopper vs astronaut: distance %.3f, similarity %.1f", people, Similarity(people))
	if people <= MatchDistance || Similarity(people) >= 80 {
		t.Errorf("the two people are %.3f apart (similarity %.1f): they would match at Rekognition's default threshold", people, Similarity(people))
	}

	src := facetest.Decode(t, facetest.GraceHopper)
	decode := func(b []byte) *Image {
		img, err := Decode(b, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	variants := []struct {
		name string
		img  *Image
	}{
		{"resized to 60%", FromImage(facetest.Resize(src, 307, 307))},
		{"re-encoded as JPEG quality 40", decode(facetest.JPEG(t, src, 40))},
		{"brightness +30%", FromImage(facetest.Brighten(src, 1.3))},
		{"cropped off-centre", FromImage(facetest.Crop(src, image.Rect(40, 20, 480, 480)))},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			faces := Largest(e.Detect(v.img))
			if len(faces) == 0 {
				t.Fatal("no face detected")
			}
			d, err := e.Describe(v.img, faces[0])
			if err != nil {
				t.Fatal(err)
			}
			same := Distance(grace, d.Descriptor)
			other := Distance(astronaut, d.Descriptor)
			t.Logf("confidence %.3f; distance to the original %.3f (similarity %.2f), to the other person %.3f (similarity %.1f)",
				faces[0].Confidence, same, Similarity(same), other, Similarity(other))
			if same >= strictDist {
				t.Errorf("distance to the original %.3f, want < %v (similarity ≥ 99)", same, strictDist)
			}
			if other <= MatchDistance {
				t.Errorf("distance to the other person %.3f, want > %v", other, MatchDistance)
			}
		})
	}
}

func TestSimilarityMapping(t *testing.T) {
	tests := []struct {
		distance, similarity float64
	}{
		{0.6, 80},
		{0.4, 99},
		{DistanceAt(90), 90},
	}
	for _, tt := range tests {
		if got := Similarity(tt.distance); math.Abs(got-tt.similarity) > 1e-9 {
			t.Errorf("Similarity(%.4f) = %v, want %v", tt.distance, got, tt.similarity)
		}
	}
	if d := DistanceAt(90); math.Abs(d-0.549) > 0.001 {
		t.Errorf("threshold 90 is distance %.4f, documented as 0.549", d)
	}
	if s := Similarity(0); s < 99.99 || s > 100 {
		t.Errorf("Similarity(0) = %v, want 99.99…", s)
	}
	prev := 101.0
	for d := 0.0; d <= 2; d += 0.01 {
		s := Similarity(d)
		if s >= prev || s < 0 {
			t.Fatalf("Similarity(%.2f) = %v after %v: not decreasing within [0, 100]", d, s, prev)
		}
		prev = s
	}
}
