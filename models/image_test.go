package models

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	stdjpeg "image/jpeg"
	stdpng "image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// pngOfSize is the PNG fixture declaring width × height in its IHDR (CRC
// recomputed: only the dimensions are wrong).
func pngOfSize(width, height uint32) []byte {
	b := append([]byte{}, pngFixture...)
	binary.BigEndian.PutUint32(b[16:], width)
	binary.BigEndian.PutUint32(b[20:], height)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// jpegOfSize is a small JPEG whose frame header declares width × height.
func jpegOfSize(t testing.TB, width, height uint16) []byte {
	var b bytes.Buffer
	if err := stdjpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	img := b.Bytes()
	sof := bytes.Index(img, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(img[sof+5:], height)
	binary.BigEndian.PutUint16(img[sof+7:], width)
	return img
}

func TestSniffImageDecodesTheHeader(t *testing.T) {
	fixtures, _ := filepath.Glob("../testdata/faces/*.[jp][pn]g")
	if len(fixtures) < 4 {
		t.Fatalf("fixtures: %v", fixtures)
	}
	for _, path := range fixtures {
		want := ContentTypePNG
		if strings.HasSuffix(path, ".jpg") {
			want = ContentTypeJPEG
		}
		if ct, err := SniffImage(mustRead(path), testLim.MaxPhotoBytes); err != nil || ct != want {
			t.Errorf("%s: %s %v", path, ct, err)
		}
	}
	random := make([]byte, 4096)
	rand.NewChaCha8([32]byte{7}).Read(random)
	refused := map[string][]byte{
		"jpeg magic, random bytes": append(append([]byte{}, jpegMagic...), random...),
		"png magic, random bytes":  append(append([]byte{}, pngMagic...), random...),
		"png with a bad IHDR CRC":  append(append([]byte{}, pngFixture[:29]...), 0, 0, 0, 0),
		"png 100000 × 100000":      pngOfSize(100000, 100000),
		"png 16385 × 1":            pngOfSize(MaxImageSide+1, 1),
		"png 1 × 16385":            pngOfSize(1, MaxImageSide+1),
		"png 16384 × 3052":         pngOfSize(MaxImageSide, 3052), // 50,003,968 pixels
		"png 0 × 1":                pngOfSize(0, 1),
		"png 2^31 × 1":             pngOfSize(1<<31, 1),
		"jpeg 65535 × 65535":       jpegOfSize(t, 65535, 65535),
		"jpeg 0 × 10":              jpegOfSize(t, 0, 10),
		"gif":                      []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
		"webp":                     []byte("RIFF\x24\x00\x00\x00WEBPVP8 "),
	}
	// Every cut of a fixture inside its header: the JPEG's frame header
	// (SOF2) ends at byte 249, the PNG's IHDR at byte 33.
	for n := 3; n < 249; n++ {
		refused["jpeg cut at "+strconv.Itoa(n)] = jpegFixture[:n]
	}
	for n := 8; n < 33; n++ {
		refused["png cut at "+strconv.Itoa(n)] = pngFixture[:n]
	}
	for name, b := range refused {
		_, err := SniffImage(b, testLim.MaxPhotoBytes)
		if f := ierr.FieldsOf(err); !ierr.Is(err, ierr.Unsupported) || len(f) != 1 || f[0].Field != "photo" {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"png 16384 × 3051":   pngOfSize(MaxImageSide, 3051), // 49,987,584 pixels
		"png 1 × 1":          pngOfSize(1, 1),
		"jpeg 8160 × 6120":   jpegOfSize(t, 8160, 6120), // a 50 MP phone sensor
		"jpeg header only":   jpegFixture[:249],
		"png header only":    pngFixture[:33],
		"jpeg, zeros after":  append(append([]byte{}, jpegFixture...), make([]byte, 1000)...),
		"png 1 × 16384 tall": pngOfSize(1, MaxImageSide),
	} {
		if _, err := SniffImage(b, testLim.MaxPhotoBytes); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestPhotoValidateDecodesTheHeader: the worker refuses what the API
// would, with the same rule.
func TestPhotoValidateDecodesTheHeader(t *testing.T) {
	meta := Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", ReceivedAt: testNow, DeviceID: "d", RecordedAt: testNow}
	p := Photo{Meta: meta, ContentType: ContentTypeJPEG, Image: append(append([]byte{}, jpegMagic...), "not a jpeg"...)}
	if err := p.Validate(testLim); !ierr.Is(err, ierr.Invalid) || !strings.Contains(ierr.FieldsOf(err)[0].Message, "header does not decode") {
		t.Errorf("undecodable header: %v", err)
	}
	p = Photo{Meta: meta, ContentType: ContentTypePNG, Image: pngOfSize(100000, 100000)}
	if err := p.Validate(testLim); !ierr.Is(err, ierr.Invalid) || !strings.Contains(ierr.FieldsOf(err)[0].Message, "100000 × 100000") {
		t.Errorf("huge PNG: %v", err)
	}
}

// FuzzSniffImage: the image check never panics; what it accepts has the
// content type its magic bytes name, decodes as that format with
// dimensions in bounds, and passes the worker's check; what it refuses is
// one "photo" field error of kind Unsupported (or TooLarge, Invalid).
func FuzzSniffImage(f *testing.F) {
	for _, path := range []string{"../testdata/faces/grace_hopper.jpg", "../testdata/faces/chelsea.png"} {
		b := mustRead(path)
		f.Add(b[:min(len(b), 2048)]) // the header and a little data: small inputs fuzz faster
	}
	var small bytes.Buffer
	_ = stdpng.Encode(&small, image.NewGray(image.Rect(0, 0, 3, 2)))
	f.Add(small.Bytes())
	f.Add(jpegOfSize(f, 16, 16))
	f.Add(pngOfSize(100000, 100000)[:64])
	f.Add([]byte("\xff\xd8\xff\xe0garbage"))
	f.Add([]byte{})
	const maxBytes = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		ct, err := SniffImage(b, maxBytes)
		if err != nil {
			if f := ierr.FieldsOf(err); len(f) != 1 || f[0].Field != "photo" || f[0].Message == "" {
				t.Fatalf("refusal %v", err)
			}
			switch ierr.KindOf(err) {
			case ierr.Unsupported, ierr.TooLarge, ierr.Invalid:
			default:
				t.Fatalf("refusal of kind %v", ierr.KindOf(err))
			}
			return
		}
		var cfg image.Config
		var derr error
		switch {
		case ct == ContentTypeJPEG && bytes.HasPrefix(b, jpegMagic):
			cfg, derr = stdjpeg.DecodeConfig(bytes.NewReader(b))
		case ct == ContentTypePNG && bytes.HasPrefix(b, pngMagic):
			cfg, derr = stdpng.DecodeConfig(bytes.NewReader(b))
		default:
			t.Fatalf("accepted as %s: %q", ct, b[:min(len(b), 16)])
		}
		if derr != nil || cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide || cfg.Width*cfg.Height > MaxImagePixels {
			t.Fatalf("accepted %s of %d × %d (%v)", ct, cfg.Width, cfg.Height, derr)
		}
		p := Photo{Meta: Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "fuzz", ReceivedAt: testNow, DeviceID: "d", RecordedAt: testNow},
			ContentType: ct, Image: b}
		if err := p.Validate(Limits{MaxFutureSkew: testLim.MaxFutureSkew, MaxPhotoBytes: maxBytes}); err != nil {
			t.Fatalf("accepted image fails the worker's check: %v", err)
		}
	})
}

// BenchmarkSniffImage is the cost of the header check on each photo, in
// the API and again in the worker.
func BenchmarkSniffImage(b *testing.B) {
	for _, path := range []string{"../testdata/faces/grace_hopper.jpg", "../testdata/faces/astronaut.png"} {
		img, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Ext(path)[1:], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SniffImage(img, 5<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
