package facerec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/challenge-v3/challenge-v3/internal/facetest"
)

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pngDeclaring returns a valid small PNG whose header is rewritten to
// declare w×h pixels (with a correct CRC): the shape of a decompression
// bomb, caught before any pixel is decoded.
func pngDeclaring(t testing.TB, w, h uint32) []byte {
	t.Helper()
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 8, 8)))
	// signature (8) | length (4) | "IHDR" (4) | width, height | ... | CRC
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func uniform(w, h int, c color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		r, g, b, a := c.RGBA()
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(r>>8), uint8(g>>8), uint8(b>>8), uint8(a>>8)
	}
	return img
}

func TestDecodeRefusesBadInput(t *testing.T) {
	grace := facetest.Bytes(t, facetest.GraceHopper)
	astronaut := facetest.Bytes(t, facetest.Astronaut)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"text", []byte("not an image at all"), ErrFormat},
		{"JPEG magic then garbage", append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, bytes.Repeat([]byte{7}, 100)...), ErrFormat},
		{"JPEG cut in half", grace[:len(grace)/2], ErrFormat},
		{"JPEG header only", grace[:600], ErrFormat},
		{"PNG cut in half", astronaut[:len(astronaut)/2], ErrFormat},
		{"GIF", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), ErrFormat},
		{"more than 5 MiB", append(bytes.Clone(grace), make([]byte, 5<<20)...), ErrTooLarge},
		{"PNG declaring 100000×100000", pngDeclaring(t, 100000, 100000), ErrTooLarge},
		{"PNG declaring 8000×8000 (64 MP)", pngDeclaring(t, 8000, 8000), ErrTooLarge},
		{"PNG declaring 10001×1", pngDeclaring(t, 10001, 1), ErrTooLarge},
		{"PNG declaring 0×8", pngDeclaring(t, 0, 8), ErrFormat},
		{"PNG declaring 16×16 with 8×8 of data", pngDeclaring(t, 16, 16), ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Decode(tt.data, DefaultLimits)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, %v; want %v", img, err, tt.want)
			}
		})
	}
}

// TestDegenerateImagesHaveNoFace: images that decode but cannot show a
// face go through the whole pipeline without a panic.
func TestDegenerateImagesHaveNoFace(t *testing.T) {
	e := testEngine(t)
	tests := []struct {
		name string
		data []byte
	}{
		{"1×1 PNG", encodePNG(t, uniform(1, 1, color.White))},
		{"1×1 JPEG", facetest.JPEG(t, uniform(1, 1, color.Black), 90)},
		// As wide as the limits allow: scaled to the detector's input, it is
		// a line of pixels.
		{"10000×12 PNG", encodePNG(t, image.NewGray(image.Rect(0, 0, 10000, 12)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Decode(tt.data, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if faces := e.Detect(img); len(faces) != 0 {
				t.Errorf("%d faces in a blank image", len(faces))
			}
		})
	}
}

func TestDescribeFaceAtTheBorder(t *testing.T) {
	e := testEngine(t)
	img := FromImage(uniform(100, 80, color.Gray{128}))
	tests := []struct {
		name string
		box  Box
	}{
		{"outside", Box{Left: 200, Top: 10, Width: 30, Height: 30}},
		{"negative", Box{Left: -50, Top: -40, Width: 30, Height: 30}},
		{"overlapping the corner", Box{Left: -10, Top: -10, Width: 40, Height: 40}},
		{"larger than the image", Box{Left: -100, Top: -100, Width: 400, Height: 400}},
		{"degenerate", Box{Left: 10, Top: 10, Width: 0.5, Height: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Describe(img, Face{Box: tt.box, Confidence: 0.9})
			if err != nil && !errors.Is(err, ErrNoDescriptor) {
				t.Fatalf("Describe: %v", err)
			}
			if err == nil && (d.Crop.Left < 0 || d.Crop.Top < 0 || d.Crop.Left+d.Crop.Width > 100 || d.Crop.Top+d.Crop.Height > 80) {
				t.Errorf("crop %+v leaves the 100×80 image", d.Crop)
			}
		})
	}
}

// TestPixelFormats: every decoded pixel layout reads as the same colours.
func TestPixelFormats(t *testing.T) {
	want := color.NRGBA{200, 100, 50, 255}
	src := uniform(4, 4, want)
	pal := image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{want})
	deep := image.NewNRGBA64(image.Rect(0, 0, 4, 4))
	for y := 0; y < 4; y++ {
		for x := 0; x < 4; x++ {
			deep.Set(x, y, want)
		}
	}
	gray := image.NewGray(image.Rect(0, 0, 4, 4))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	sub := uniform(8, 8, want).SubImage(image.Rect(2, 2, 6, 6))
	tests := []struct {
		name string
		img  image.Image
		want color.NRGBA
	}{
		{"NRGBA", src, want},
		{"paletted", pal, want},
		{"16-bit", deep, want},
		{"gray", gray, color.NRGBA{77, 77, 77, 255}},
		{"sub-image", sub, want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Decode(encodePNG(t, tt.img), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if r, g, b := img.Pixel(3, 3); r != tt.want.R || g != tt.want.G || b != tt.want.B {
				t.Errorf("pixel (%d,%d,%d), want %v", r, g, b, tt.want)
			}
			if r, g, b := FromImage(tt.img).Pixel(0, 0); r != tt.want.R || g != tt.want.G || b != tt.want.B {
				t.Errorf("FromImage pixel (%d,%d,%d), want %v", r, g, b, tt.want)
			}
		})
	}
}

// FuzzDecode feeds arbitrary bytes to the entry point of every image the
// server receives, then samples the decoded pixels the way the networks do.
// It must never panic, and whatever decodes is within the limits.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{facetest.GraceHopper, facetest.Astronaut} {
		b := facetest.Bytes(f, name)
		f.Add(b[:min(len(b), 4096)]) // a valid header, truncated data
	}
	f.Add(encodePNG(f, uniform(3, 2, color.White)))
	f.Add(facetest.JPEG(f, uniform(9, 5, color.Black), 50))
	f.Add(pngDeclaring(f, 100000, 100000))
	lim := Limits{MaxBytes: 1 << 20, MaxSide: 2048, MaxPixels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, lim)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrFormat nor ErrTooLarge", err)
			}
			return
		}
		if img.w <= 0 || img.h <= 0 || img.w > lim.MaxSide || img.h > lim.MaxSide || img.w*img.h > lim.MaxPixels {
			t.Fatalf("decoded %d×%d beyond the limits", img.w, img.h)
		}
		whole := rect{w: img.w, h: img.h}
		img.squareInput(whole, false, 64)
		img.squareInput(box{x: -3, y: 1.5, w: float64(img.w) / 2, h: float64(img.h) + 4}.clip(img.w, img.h), true, 32)
	})
}
