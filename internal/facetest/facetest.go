// Package facetest provides the face photos of testdata/faces and altered
// copies of them (resized, re-encoded, brightened, cropped), for the tests
// of face detection and recognition: the only licensed photos of people
// are one per person, so "another photo of the same person" is made here.
package facetest

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	_ "image/png" // the PNG fixtures
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The fixtures, in testdata/faces at the repository root (PROVENANCE.md).
const (
	GraceHopper = "grace_hopper.jpg" // one face
	Astronaut   = "astronaut.png"    // one face, another person
	Coffee      = "coffee.png"       // no face
	Chelsea     = "chelsea.png"      // a cat: no human face
)

// Bytes returns the bytes of fixture name.
func Bytes(tb testing.TB, name string) []byte {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("facetest: cannot locate the repository")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "faces", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Decode returns fixture name decoded.
func Decode(tb testing.TB, name string) image.Image {
	tb.Helper()
	img, _, err := image.Decode(bytes.NewReader(Bytes(tb, name)))
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// Resize scales img to w×h by averaging the source pixels each target
// pixel covers (a box filter: fine for shrinking).
func Resize(img image.Image, w, h int) *image.NRGBA {
	src := toNRGBA(img)
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	dst := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		y0, y1 := y*sh/h, max((y+1)*sh/h, y*sh/h+1)
		for x := 0; x < w; x++ {
			x0, x1 := x*sw/w, max((x+1)*sw/w, x*sw/w+1)
			var r, g, b, n int
			for yy := y0; yy < y1; yy++ {
				for xx := x0; xx < x1; xx++ {
					p := src.Pix[src.PixOffset(xx, yy):]
					r, g, b, n = r+int(p[0]), g+int(p[1]), b+int(p[2]), n+1
				}
			}
			dst.SetNRGBA(x, y, color.NRGBA{uint8(r / n), uint8(g / n), uint8(b / n), 255})
		}
	}
	return dst
}

// Brighten multiplies every colour channel by k, saturating at 255.
func Brighten(img image.Image, k float64) *image.NRGBA {
	dst := toNRGBA(img)
	for i := 0; i < len(dst.Pix); i += 4 {
		for c := 0; c < 3; c++ {
			dst.Pix[i+c] = uint8(min(255, float64(dst.Pix[i+c])*k+0.5))
		}
	}
	return dst
}

// Crop returns the part r of img, moved to the origin.
func Crop(img image.Image, r image.Rectangle) *image.NRGBA {
	dst := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(dst, dst.Bounds(), img, r.Min.Add(img.Bounds().Min), draw.Src)
	return dst
}

// JPEG encodes img as a JPEG of the given quality (1–100).
func JPEG(tb testing.TB, img image.Image, quality int) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// Altered is another photo of the person in grace_hopper.jpg: cropped by a
// few percent off-centre, shrunk to 80%, brightened by 15% and re-encoded
// as a JPEG of quality 75.
func Altered(tb testing.TB) []byte {
	tb.Helper()
	img := Decode(tb, GraceHopper)
	img = Crop(img, image.Rect(30, 10, 500, 490))
	img = Resize(img, 376, 384)
	img = Brighten(img, 1.15)
	return JPEG(tb, img, 75)
}

func toNRGBA(img image.Image) *image.NRGBA {
	b := img.Bounds()
	dst := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(dst, dst.Bounds(), img, b.Min, draw.Src)
	return dst
}
