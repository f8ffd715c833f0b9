package facerec

import (
	"encoding/json"
	"math"
	"os"
	"sync"
	"testing"
)

// fixtures are the photos of ../testdata/faces: two with one face each, two
// without a human face.
var fixtures = []string{"grace_hopper.jpg", "astronaut.png", "coffee.png", "chelsea.png"}

// analysis is what the engine finds in one fixture: every box above 0.05
// (to compare with face-api's and to see how far a faceless photo is from a
// face), and the detail of each face above the engine's threshold.
type analysis struct {
	img   *Image
	boxes []detection
	faces []Detail
}

var (
	analysesOnce sync.Once
	analyses     map[string]analysis
	analysesErr  error
)

// fixtureAnalyses runs the engine once per test binary on the fixtures;
// under -race each forward pass costs about twice its normal time, so the
// tests share the results.
func fixtureAnalyses(t *testing.T) map[string]analysis {
	t.Helper()
	e := testEngine(t)
	analysesOnce.Do(func() {
		analyses = map[string]analysis{}
		for _, name := range fixtures {
			img, err := decodeFixture(name)
			if err != nil {
				analysesErr = err
				return
			}
			a := analysis{img: img, boxes: e.det.detect(img, e.opts.InputSize, 0.05)}
			for _, f := range e.Detect(img) {
				d, err := e.Describe(img, f)
				if err != nil {
					analysesErr = err
					return
				}
				a.faces = append(a.faces, d)
			}
			analyses[name] = a
		}
	})
	if analysesErr != nil {
		t.Fatal(analysesErr)
	}
	return analyses
}

func decodeFixture(name string) (*Image, error) {
	b, err := os.ReadFile("../testdata/faces/" + name)
	if err != nil {
		return nil, err
	}
	return Decode(b, DefaultLimits)
}

func TestDetectsTheFacesOfTheFixtures(t *testing.T) {
	all := fixtureAnalyses(t)
	tests := []struct {
		name  string
		faces int
	}{
		{"grace_hopper.jpg", 1},
		{"astronaut.png", 1},
		{"coffee.png", 0},
		{"chelsea.png", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := all[tt.name]
			if len(a.faces) != tt.faces {
				t.Fatalf("%d faces above %v, want %d", len(a.faces), DefaultMinConfidence, tt.faces)
			}
			best := 0.0
			if len(a.boxes) > 0 {
				best = a.boxes[0].score
			}
			t.Logf("best box score %.3f (%d boxes above 0.05)", best, len(a.boxes))
			if tt.faces > 0 {
				f := a.faces[0]
				if f.Confidence < 0.8 {
					t.Errorf("confidence %.3f, want a clear face (> 0.8)", f.Confidence)
				}
				// The face is in the upper middle of these portraits.
				cx := f.Box.Left + f.Box.Width/2
				if cx < 0.25*float64(a.img.w) || cx > 0.75*float64(a.img.w) || f.Box.Width < 50 {
					t.Errorf("box %+v is not the portrait's face", f.Box)
				}
			} else if best > 0.3 {
				t.Errorf("a faceless photo has a box scoring %.3f, too close to the threshold", best)
			}
		})
	}
}

// reference is testdata/reference.json: face-api's own results for the
// fixtures (see testdata/README.md).
type reference struct {
	Generator string `json:"generator"`
	InputSize int    `json:"inputSize"`
	Images    map[string]struct {
		Width, Height int
		Boxes         []struct{ Score, X, Y, Width, Height float64 }
		Faces         []struct {
			Score      float64
			Box        struct{ X, Y, Width, Height float64 }
			Landmarks  [][2]float64
			Crop       struct{ X, Y, Width, Height int }
			Descriptor []float64
		}
	}
}

// TestMatchesFaceAPIReference checks every stage against face-api 1.7.15 on
// TensorFlow.js's CPU backend: boxes and scores, landmarks, the aligned
// crop, and each descriptor component within 1e-3 (the difference is float32
// summation order; it is about 1e-6).
func TestMatchesFaceAPIReference(t *testing.T) {
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if ref.InputSize != DefaultInputSize {
		t.Fatalf("reference computed at input size %d, engine uses %d", ref.InputSize, DefaultInputSize)
	}
	all := fixtureAnalyses(t)
	var worst float64
	for _, name := range fixtures {
		key := name[:len(name)-4]
		want, ok := ref.Images[key]
		if !ok {
			t.Fatalf("no reference for %s", key)
		}
		a := all[name]
		t.Run(name, func(t *testing.T) {
			if a.img.w != want.Width || a.img.h != want.Height {
				t.Fatalf("size %d×%d, reference %d×%d", a.img.w, a.img.h, want.Width, want.Height)
			}
			if len(a.boxes) != len(want.Boxes) {
				t.Fatalf("%d boxes above 0.05, face-api %d", len(a.boxes), len(want.Boxes))
			}
			for i, w := range want.Boxes {
				g := a.boxes[i]
				if !near(g.score, w.Score, 1e-4) || !near(g.box.x, w.X, 0.01) || !near(g.box.y, w.Y, 0.01) ||
					!near(g.box.w, w.Width, 0.01) || !near(g.box.h, w.Height, 0.01) {
					t.Errorf("box %d: %.7f %+v, face-api %+v", i, g.score, g.box, w)
				}
			}
			if len(a.faces) != len(want.Faces) {
				t.Fatalf("%d faces, face-api %d", len(a.faces), len(want.Faces))
			}
			for i, w := range want.Faces {
				g := a.faces[i]
				for j, p := range w.Landmarks {
					if !near(g.Landmarks[j].X, p[0], 0.01) || !near(g.Landmarks[j].Y, p[1], 0.01) {
						t.Errorf("face %d landmark %d: %+v, face-api %v", i, j, g.Landmarks[j], p)
					}
				}
				wantCrop := Box{float64(w.Crop.X), float64(w.Crop.Y), float64(w.Crop.Width), float64(w.Crop.Height)}
				if g.Crop != wantCrop {
					t.Errorf("face %d aligned crop %+v, face-api %+v", i, g.Crop, wantCrop)
				}
				var maxDiff float64
				for j, v := range w.Descriptor {
					maxDiff = max(maxDiff, math.Abs(float64(g.Descriptor[j])-v))
				}
				worst = max(worst, maxDiff)
				t.Logf("face %d: largest descriptor difference %.2g", i, maxDiff)
				if maxDiff > 1e-3 {
					t.Errorf("face %d: descriptor differs from face-api's by up to %.4f", i, maxDiff)
				}
			}
		})
	}
	t.Logf("%s: largest descriptor component difference %.2g", ref.Generator, worst)
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{InputSize: 100}, {InputSize: -32}, {MinConfidence: 1}, {MinConfidence: -0.1}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
