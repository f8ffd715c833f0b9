package facerec

import (
	"os"
	"testing"
)

func benchImage(b *testing.B, name string) *Image {
	b.Helper()
	raw, err := os.ReadFile("../testdata/faces/" + name)
	if err != nil {
		b.Fatal(err)
	}
	img, err := Decode(raw, DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkDetect is the detection cost of one photo (512×512, scaled to
// the 416 px input): it does not depend on the number of faces.
func BenchmarkDetect(b *testing.B) {
	e := testEngine(b)
	img := benchImage(b, "grace_hopper.jpg")
	for b.Loop() {
		if len(e.Detect(img)) != 1 {
			b.Fatal("no face")
		}
	}
}

// BenchmarkDescribe is the cost per face: landmarks, alignment and the
// 128-d descriptor.
func BenchmarkDescribe(b *testing.B) {
	e := testEngine(b)
	img := benchImage(b, "grace_hopper.jpg")
	faces := e.Detect(img)
	for b.Loop() {
		if _, err := e.Describe(img, faces[0]); err != nil {
			b.Fatal(err)
		}
	}
}
