package models

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Image content types accepted.
const (
	ContentTypeJPEG = "image/jpeg"
	ContentTypePNG  = "image/png"
)

// The dimensions of an image accepted. A header can declare any size (a
// 100-byte PNG may claim 100000 × 100000), and whatever decodes the pixels
// later — Rekognition, a viewer of the stored photo — allocates for what it
// declares: 50 megapixels is 200 MB as RGBA. 50 MP admits what phone
// cameras take (a 50 MP sensor is 8160 × 6120; larger ones bin to 12 MP by
// default, and their full-size files pass 5 MiB anyway); 16384 on a side
// admits any real photo, panoramas included.
const (
	MaxImageSide   = 16384
	MaxImagePixels = 50_000_000
)

var (
	jpegMagic = []byte{0xFF, 0xD8, 0xFF}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

// SniffImage identifies a JPEG or PNG by its content, whatever the client
// claimed, and enforces the size limit: the bytes must start as that
// format and its header must decode with sane dimensions (see
// MaxImageSide). The pixels are not decoded. The error is TooLarge,
// Unsupported or Invalid (empty), with one field error for "photo".
func SniffImage(b []byte, maxBytes int) (string, error) {
	const op = "models.SniffImage"
	fieldErr := func(k ierr.Kind, msg string) error {
		return &ierr.Error{Kind: k, Op: op, Fields: []ierr.FieldError{{Field: "photo", Message: msg}}}
	}
	switch {
	case len(b) == 0:
		return "", fieldErr(ierr.Invalid, "is required")
	case len(b) > maxBytes:
		return "", fieldErr(ierr.TooLarge, fmt.Sprintf("must be at most %d bytes decoded", maxBytes))
	}
	ct, msg := imageHeader(b)
	if msg != "" {
		return "", fieldErr(ierr.Unsupported, msg)
	}
	return ct, nil
}

// imageHeader returns the content type of b, or why b is not an image
// accepted. Each format's own DecodeConfig is called rather than
// image.DecodeConfig, which would accept any format some package of the
// binary happens to register.
func imageHeader(b []byte) (contentType, msg string) {
	var (
		name   string
		decode func(io.Reader) (image.Config, error)
	)
	switch {
	case bytes.HasPrefix(b, jpegMagic):
		contentType, name, decode = ContentTypeJPEG, "JPEG", jpeg.DecodeConfig
	case bytes.HasPrefix(b, pngMagic):
		contentType, name, decode = ContentTypePNG, "PNG", png.DecodeConfig
	default:
		return "", "must be a JPEG or PNG image"
	}
	cfg, err := decode(bytes.NewReader(b))
	if err != nil {
		return "", "must be a JPEG or PNG image: it starts as " + name + " but its header does not decode (damaged, truncated or an unsupported variant)"
	}
	if w, h := cfg.Width, cfg.Height; w < 1 || h < 1 || w > MaxImageSide || h > MaxImageSide || int64(w)*int64(h) > MaxImagePixels {
		return "", fmt.Sprintf("is a %s of %d × %d pixels; at most %d on a side and %d megapixels are accepted",
			name, w, h, MaxImageSide, MaxImagePixels/1_000_000)
	}
	return contentType, ""
}
