package models

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// wrapLines breaks s into lines of n characters, each ended by sep, as
// line-wrapping encoders do (the last line too).
func wrapLines(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString(sep)
		s = s[n:]
	}
	b.WriteString(s)
	b.WriteString(sep)
	return b.String()
}

// base64Encoders are the base64 forms of an image that real clients
// produce, by the client that produces them: each gives the Go string the
// client sends as the JSON value (photoBody encodes it as JSON).
var base64Encoders = map[string]func([]byte) string{
	"standard":                   base64.StdEncoding.EncodeToString,
	"url-safe":                   base64.URLEncoding.EncodeToString,
	"standard unpadded":          base64.RawStdEncoding.EncodeToString,
	"url-safe unpadded":          base64.RawURLEncoding.EncodeToString,
	"data uri":                   func(b []byte) string { return "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(b) },
	"data uri, no media type":    func(b []byte) string { return "data:;base64," + base64.StdEncoding.EncodeToString(b) },
	"data uri, url-safe":         func(b []byte) string { return "data:image/png;base64," + base64.URLEncoding.EncodeToString(b) },
	"android Base64.DEFAULT":     func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\n") },
	"android URL_SAFE":           func(b []byte) string { return wrapLines(base64.URLEncoding.EncodeToString(b), 76, "\n") },
	"android NO_PADDING":         func(b []byte) string { return wrapLines(base64.RawStdEncoding.EncodeToString(b), 76, "\n") },
	"android CRLF":               func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\r\n") },
	"python encodebytes":         func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\n") },
	"mime":                       func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\r\n") },
	"openssl / pem (64 columns)": func(b []byte) string { return wrapLines(base64.StdEncoding.EncodeToString(b), 64, "\n") },
	"data uri, wrapped": func(b []byte) string {
		return "data:image/jpeg;base64," + wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\n")
	},
	"data uri, wrapped with CRLF": func(b []byte) string {
		return "data:image/jpeg;base64," + wrapLines(base64.StdEncoding.EncodeToString(b), 76, "\r\n")
	},
}

// photoBody is a photo request with photo as its JSON string value.
func photoBody(photo string) string {
	b, _ := json.Marshal(photo)
	return `{"device_id":"d","timestamp":"2026-11-28T09:59:00Z","photo":` + string(b) + `}`
}

func TestDecodePhotoBase64Forms(t *testing.T) {
	for _, fx := range []struct {
		name string
		img  []byte
		ct   string
	}{{"jpeg", jpegFixture, ContentTypeJPEG}, {"png", pngFixture, ContentTypePNG}} {
		for form, encode := range base64Encoders {
			t.Run(fx.name+"/"+form, func(t *testing.T) {
				p, err := Decode[Photo](strings.NewReader(photoBody(encode(fx.img))), testNow, testLim)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p.Image, fx.img) || p.ContentType != fx.ct {
					t.Errorf("image %d bytes, %s; want %d bytes, %s", len(p.Image), p.ContentType, len(fx.img), fx.ct)
				}
			})
		}
	}
	// JSON encoders escape more than they must: org.json writes "/" as
	// "\/", Gson "=" as "\u003d".
	std := wrapLines(base64.StdEncoding.EncodeToString(jpegFixture), 76, "\n")
	escaped, _ := json.Marshal(std)
	escaped = bytes.ReplaceAll(escaped, []byte("/"), []byte(`\/`))
	escaped = bytes.ReplaceAll(escaped, []byte("="), []byte(`\u003d`))
	escaped = bytes.Replace(escaped, []byte(`\n`), []byte(`\u000a`), 1)
	p, err := Decode[Photo](strings.NewReader(`{"device_id":"d","timestamp":"2026-11-28T09:59:00Z","photo":`+string(escaped)+`}`), testNow, testLim)
	if err != nil || !bytes.Equal(p.Image, jpegFixture) {
		t.Errorf("escaped slashes and padding: %v", err)
	}
}

// TestDecodePhotoSizeLimit: the limit is on the decoded bytes, whatever
// the encoding adds (padding, line breaks, a data: prefix).
func TestDecodePhotoSizeLimit(t *testing.T) {
	lim := testLim
	atLimit := append(append([]byte{}, jpegFixture...), make([]byte, lim.MaxPhotoBytes-len(jpegFixture))...)
	over := append(atLimit, 0)
	for _, form := range []string{"standard", "url-safe unpadded", "android Base64.DEFAULT", "data uri, wrapped with CRLF"} {
		t.Run(form, func(t *testing.T) {
			encode := base64Encoders[form]
			p, err := Decode[Photo](strings.NewReader(photoBody(encode(atLimit))), testNow, lim)
			if err != nil || len(p.Image) != lim.MaxPhotoBytes {
				t.Fatalf("image of exactly %d bytes: %v", lim.MaxPhotoBytes, err)
			}
			_, err = Decode[Photo](strings.NewReader(photoBody(encode(over))), testNow, lim)
			if !ierr.Is(err, ierr.TooLarge) {
				t.Fatalf("one byte over: %v", err)
			}
		})
	}
}

func TestDecodePhotoBase64Refusals(t *testing.T) {
	std := base64.StdEncoding.EncodeToString(jpegFixture)
	for name, raw := range map[string]string{
		"tab escape":        `"` + std[:76] + `\t` + std[76:] + `"`,
		"non-ascii escape":  `"` + std[:76] + `\u00e9` + std[76:] + `"`,
		"space":             `"` + std[:76] + ` ` + std[76:] + `"`,
		"mixed alphabets":   `"` + strings.Replace(std, "+", "-", 1) + `"`,
		"padding mid-text":  `"` + std[:76] + `==\n` + std[76:] + `"`,
		"number":            `42`,
		"null":              `null`,
		"only line breaks":  `"\n\r\n"`,
		"data uri, escaped": `"data:image/jpeg;base64,\u00ff"`,
	} {
		t.Run(name, func(t *testing.T) {
			body := `{"device_id":"d","timestamp":"2026-11-28T09:59:00Z","photo":` + raw + `}`
			_, err := Decode[Photo](strings.NewReader(body), testNow, testLim)
			if !ierr.Is(err, ierr.Invalid) || len(ierr.FieldsOf(err)) != 1 || ierr.FieldsOf(err)[0].Field != "photo" {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// FuzzBase64TextMatchesEncodingJSON holds the in-place unescaping of a
// photo to encoding/json: on every JSON string, the text handed to the
// base64 decoder is the string's value without line breaks, or a refusal
// when that value is not ASCII (so never base64).
func FuzzBase64TextMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\nb\r\nc"`, `"a\/b\u003d"`, `"\u000a\u000D"`, `"\t"`, `"é"`, `"\ud83d\ude00"`, `""`, `"\\\""`, `42`, `"x\u0080"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want string
		if json.Unmarshal(raw, &want) != nil {
			return // not a JSON string: never reaches base64Text as one
		}
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
			return // base64Text sees a JSON value exactly, without spaces
		}
		want = strings.NewReplacer("\n", "", "\r", "").Replace(want)
		got, err := base64Text(append([]byte{}, raw...))
		ascii := strings.IndexFunc(want, func(r rune) bool { return r >= 0x80 }) < 0
		switch {
		case err != nil && ascii && !strings.ContainsAny(want, "\b\f\t"):
			t.Fatalf("%q: refused (%v), want %q", raw, err, want)
		case err == nil && ascii && string(got) != want:
			t.Fatalf("%q: %q, want %q", raw, got, want)
		case err == nil && !ascii && utf8ASCII(got):
			t.Fatalf("%q: non-ASCII value %q became ASCII %q", raw, want, got)
		}
	})
}

func utf8ASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
