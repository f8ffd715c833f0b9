package facerec

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
)

// Decoding of untrusted image bytes, and sampling of the decoded pixels into
// the square network inputs the way face-api builds them from a tensor
// (NetInput.toBatchTensor: padToSquare, then tf.image.resizeBilinear with
// alignCorners and halfPixelCenters false).

// Errors returned by Decode; match them with errors.Is.
var (
	// ErrFormat: the bytes are not a complete JPEG or PNG image.
	ErrFormat = errors.New("facerec: not a decodable JPEG or PNG image")
	// ErrTooLarge: the bytes or the declared dimensions exceed the limits.
	ErrTooLarge = errors.New("facerec: image too large")
)

// Limits bound the work and memory one image may cost. The dimensions are
// checked from the header before any pixel is decoded, so a small file
// declaring a huge image (a "PNG bomb") costs nothing.
type Limits struct {
	MaxBytes  int // encoded size
	MaxSide   int // width and height, each
	MaxPixels int // width × height
}

// DefaultLimits are Rekognition's: at most 5 MiB of image bytes and, as
// DetectLabels documents, 10,000 px a side; the 50 MP cap bounds the memory
// of a decoded image (a 50 MP PNG decodes to 200 MB).
var DefaultLimits = Limits{MaxBytes: 5 << 20, MaxSide: 10000, MaxPixels: 50_000_000}

// Image is a decoded photo. Its pixels are read in place, never copied to a
// float buffer: the networks only sample a few hundred thousand of them.
type Image struct {
	w, h int
	img  image.Image
}

// Width and Height are the image's dimensions in pixels.
func (m *Image) Width() int  { return m.w }
func (m *Image) Height() int { return m.h }

// Decode decodes a JPEG or PNG image within lim. Every failure wraps
// ErrFormat or ErrTooLarge; it never panics on malformed input.
func Decode(b []byte, lim Limits) (*Image, error) {
	if lim.MaxBytes > 0 && len(b) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(b), lim.MaxBytes)
	}
	var (
		cfg    image.Config
		decode func([]byte) (image.Image, error)
		err    error
	)
	// The format is the header that decodes, not the first bytes' claim.
	if cfg, err = jpeg.DecodeConfig(bytes.NewReader(b)); err == nil {
		decode = func(b []byte) (image.Image, error) { return jpeg.Decode(bytes.NewReader(b)) }
	} else if cfg, err = png.DecodeConfig(bytes.NewReader(b)); err == nil {
		decode = func(b []byte) (image.Image, error) { return png.Decode(bytes.NewReader(b)) }
	} else {
		return nil, ErrFormat
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: %d×%d", ErrFormat, cfg.Width, cfg.Height)
	}
	if lim.MaxSide > 0 && (cfg.Width > lim.MaxSide || cfg.Height > lim.MaxSide) ||
		lim.MaxPixels > 0 && int64(cfg.Width)*int64(cfg.Height) > int64(lim.MaxPixels) {
		return nil, fmt.Errorf("%w: %d×%d", ErrTooLarge, cfg.Width, cfg.Height)
	}
	img, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	r := img.Bounds()
	if r.Dx() != cfg.Width || r.Dy() != cfg.Height {
		return nil, fmt.Errorf("%w: header says %d×%d, pixels are %d×%d", ErrFormat, cfg.Width, cfg.Height, r.Dx(), r.Dy())
	}
	return &Image{w: r.Dx(), h: r.Dy(), img: img}, nil
}

// FromImage wraps an already decoded image (tests build altered copies this
// way).
func FromImage(img image.Image) *Image {
	r := img.Bounds()
	return &Image{w: r.Dx(), h: r.Dy(), img: img}
}

// rgb returns the pixel at (x, y) (relative to the image's top-left) as
// 0–255 values; transparency is ignored, as it is by a tensor's RGB
// channels.
//
//go:norace
func (m *Image) rgb(x, y int) (r, g, b uint8) {
	x += m.img.Bounds().Min.X
	y += m.img.Bounds().Min.Y
	switch im := m.img.(type) {
	case *image.YCbCr:
		yi, ci := im.YOffset(x, y), im.COffset(x, y)
		return color.YCbCrToRGB(im.Y[yi], im.Cb[ci], im.Cr[ci])
	case *image.NRGBA:
		i := im.PixOffset(x, y)
		return im.Pix[i], im.Pix[i+1], im.Pix[i+2]
	case *image.RGBA: // what image/png returns for opaque RGB
		i := im.PixOffset(x, y)
		if im.Pix[i+3] == 0xff {
			return im.Pix[i], im.Pix[i+1], im.Pix[i+2]
		}
	case *image.Gray:
		v := im.Pix[im.PixOffset(x, y)]
		return v, v, v
	}
	c := color.NRGBAModel.Convert(m.img.At(x, y)).(color.NRGBA)
	return c.R, c.G, c.B
}

// rect is an integer pixel rectangle of an image.
type rect struct{ x, y, w, h int }

// squareInput reproduces face-api's toBatchTensor for one image tensor
// sliced to r: the slice is padded with zeros to a square (centred: the
// larger half of the padding after, as padToSquare does; otherwise all of it
// after), then resized bilinearly to size×size. Values are 0–255.
func (m *Image) squareInput(r rect, centred bool, size int) fmap {
	side := max(r.w, r.h)
	var preX, preY int
	if centred {
		diff := abs(r.w - r.h)
		pre := diff - int(math.Floor(float64(diff)*0.5+0.5)) // Math.round
		if r.w < r.h {
			preX = pre
		} else {
			preY = pre
		}
	}
	out := newFmap(size, size, 3)
	m.resizeInto(out, r, side, preX, preY)
	return out
}

// resizeInto fills out (size×size×3) from the padded square of side side
// holding crop r at (preX, preY).
//
//go:norace
func (m *Image) resizeInto(out fmap, r rect, side, preX, preY int) {
	size := out.h
	if side == size {
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				cr, cg, cb := m.padded(r, preX, preY, x, y)
				o := out.d[(y*size+x)*3:][:3]
				o[0], o[1], o[2] = float32(cr), float32(cg), float32(cb)
			}
		}
		return
	}
	ratio := float64(side) / float64(size)
	for y := 0; y < size; y++ {
		fy := ratio * float64(y)
		y0 := max(0, int(math.Floor(fy)))
		y1 := min(side-1, int(math.Ceil(fy)))
		dy := fy - float64(y0)
		for x := 0; x < size; x++ {
			fx := ratio * float64(x)
			x0 := max(0, int(math.Floor(fx)))
			x1 := min(side-1, int(math.Ceil(fx)))
			dx := fx - float64(x0)
			tlR, tlG, tlB := m.padded(r, preX, preY, x0, y0)
			trR, trG, trB := m.padded(r, preX, preY, x1, y0)
			blR, blG, blB := m.padded(r, preX, preY, x0, y1)
			brR, brG, brB := m.padded(r, preX, preY, x1, y1)
			o := out.d[(y*size+x)*3:][:3]
			o[0] = lerp2(tlR, trR, blR, brR, dx, dy)
			o[1] = lerp2(tlG, trG, blG, brG, dx, dy)
			o[2] = lerp2(tlB, trB, blB, brB, dx, dy)
		}
	}
}

// padded returns pixel (sx, sy) of the square padding crop r with zeros,
// the crop's corner at (preX, preY).
//
//go:norace
func (m *Image) padded(r rect, preX, preY, sx, sy int) (float64, float64, float64) {
	ix, iy := sx-preX, sy-preY
	if ix < 0 || iy < 0 || ix >= r.w || iy >= r.h {
		return 0, 0, 0
	}
	cr, cg, cb := m.rgb(r.x+ix, r.y+iy)
	return float64(cr), float64(cg), float64(cb)
}

// lerp2 is the bilinear interpolation of tfjs's resizeBilinear kernel, in
// the same order of operations.
func lerp2(tl, tr, bl, br, dx, dy float64) float32 {
	top := tl + (tr-tl)*dx
	bottom := bl + (br-bl)*dx
	return float32(top + (bottom-top)*dy)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Pixel returns the colour of pixel (x, y) as the networks see it: 8-bit
// RGB, transparency ignored. x and y must be inside the image.
func (m *Image) Pixel(x, y int) (r, g, b uint8) { return m.rgb(x, y) }
