package rekognitionwire_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/awsjson"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionwire"
)

type storedFace struct {
	rekognitionwire.StoredFace
	Extra string `json:"extra"`
}

type face struct{ id, extra string }

func load(s storedFace) (face, error) {
	if s.Extra == "bad" {
		return face{}, errors.New("bad extra")
	}
	return face{id: s.FaceID, extra: s.Extra}, nil
}

func store(f face) storedFace {
	return storedFace{StoredFace: rekognitionwire.StoredFace{FaceID: f.id, ImageID: "img-" + f.id}, Extra: f.extra}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	cs, err := rekognitionwire.ReadState(path, load)
	if err != nil || len(cs) != 0 {
		t.Fatalf("missing file: %v, %v; want no collections", cs, err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, aerr := cs.Create("b", created); aerr != nil {
		t.Fatal(aerr)
	}
	if _, aerr := cs.Create("a", created); aerr != nil {
		t.Fatal(aerr)
	}
	if _, aerr := cs.Create("a", created); aerr == nil || aerr.Code != "ResourceAlreadyExistsException" {
		t.Fatalf("second Create: %v", aerr)
	}
	cs["b"].Faces = []face{{id: "f1", extra: "x"}, {id: "f2"}}
	if err := rekognitionwire.WriteState(path, cs, store, " "); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The layout the dev stack's files have: sorted collections, the ids
	// first in each face, an empty list for a collection without faces.
	want := `{
 "version": 1,
 "collections": [
  {
   "id": "a",
   "created": "2026-01-02T03:04:05Z",
   "faces": []
  },
  {
   "id": "b",
   "created": "2026-01-02T03:04:05Z",
   "faces": [
    {
     "face_id": "f1",
     "image_id": "img-f1",
     "extra": "x"
    },
    {
     "face_id": "f2",
     "image_id": "img-f2",
     "extra": ""
    }
   ]
  }
 ]
}
`
	if string(b) != want {
		t.Fatalf("state file:\n%s\nwant:\n%s", b, want)
	}
	back, err := rekognitionwire.ReadState(path, load)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.IDs(); !slices.Equal(got, []string{"a", "b"}) || !slices.Equal(back["b"].Faces, cs["b"].Faces) || !back["b"].Created.Equal(created) {
		t.Fatalf("read back %v %v", got, back["b"])
	}
}

func TestReadStateRefuses(t *testing.T) {
	for name, tt := range map[string]struct{ content, want string }{
		"not JSON":        {"{", "unexpected end"},
		"other version":   {`{"version":2,"collections":[]}`, "version 2"},
		"bad id":          {`{"version":1,"collections":[{"id":"a b","faces":[]}]}`, "invalid collection id"},
		"listed twice":    {`{"version":1,"collections":[{"id":"a","faces":[]},{"id":"a","faces":[]}]}`, "listed twice"},
		"bad face":        {`{"version":1,"collections":[{"id":"a","faces":[{"face_id":"f","extra":"bad"}]}]}`, `collection "a", face "f": bad extra`},
		"face without id": {`{"version":1,"collections":[{"id":"a","faces":[{"extra":"x"}]}]}`, "without face_id"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := rekognitionwire.ReadState(path, load); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadState = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestSortMatches(t *testing.T) {
	type match struct {
		name string
		sim  float64
	}
	ms := []match{{"a", 81}, {"b", 99}, {"c", 81}, {"d", 90}}
	got := rekognitionwire.SortMatches(ms, func(m match) float64 { return m.sim }, 3)
	if want := []match{{"b", 99}, {"d", 90}, {"a", 81}}; !slices.Equal(got, want) {
		t.Fatalf("SortMatches = %v, want %v", got, want)
	}
}

func TestSearchLimits(t *testing.T) {
	for _, tt := range []struct {
		body      string
		threshold float64
		maxFaces  int
		code      string
	}{
		{`{"CollectionId":"c"}`, 80, 4096, ""},
		{`{"CollectionId":"c","FaceMatchThreshold":95.5,"MaxFaces":3}`, 95.5, 3, ""},
		{`{"CollectionId":"c","FaceMatchThreshold":101}`, 0, 0, "InvalidParameterException"},
		{`{"CollectionId":"c","MaxFaces":0}`, 0, 0, "InvalidParameterException"},
		{`{"CollectionId":"c","MaxFaces":4097}`, 0, 0, "InvalidParameterException"},
	} {
		in, aerr := rekognitionwire.DecodeSearch([]byte(tt.body))
		if aerr != nil {
			t.Fatalf("%s: %v", tt.body, aerr)
		}
		threshold, maxFaces, aerr := in.Limits()
		if code := codeOf(aerr); code != tt.code || threshold != tt.threshold || maxFaces != tt.maxFaces {
			t.Errorf("%s: %v %v %q, want %v %v %q", tt.body, threshold, maxFaces, code, tt.threshold, tt.maxFaces, tt.code)
		}
	}
}

func TestDecodeIndex(t *testing.T) {
	for body, code := range map[string]string{
		`{"CollectionId":"c","ExternalImageId":"trip:42","MaxFaces":1}`: "",
		`{"CollectionId":"c/d"}`:                       "ValidationException",
		`{"CollectionId":"c","ExternalImageId":"a b"}`: "ValidationException",
		`{"CollectionId":"c","MaxFaces":0}`:            "InvalidParameterException",
		`{"CollectionId":`:                             "SerializationException",
	} {
		if _, aerr := rekognitionwire.DecodeIndex([]byte(body)); codeOf(aerr) != code {
			t.Errorf("%s: %v, want %q", body, aerr, code)
		}
	}
	in, _ := rekognitionwire.DecodeIndex([]byte(`{"CollectionId":"c"}`))
	if in.FaceLimit() != 100 || in.Quality() != "AUTO" || in.ExternalImageID() != "" {
		t.Errorf("IndexFaces defaults: %d %q %q", in.FaceLimit(), in.Quality(), in.ExternalImageID())
	}
}

func codeOf(aerr *awsjson.Error) string {
	if aerr == nil {
		return ""
	}
	return aerr.Code
}

func TestRequestFraming(t *testing.T) {
	for _, tt := range []struct {
		target, auth string
		op           string
		ok           bool
		code         string
	}{
		{"RekognitionService.IndexFaces", "AWS4-HMAC-SHA256 Credential=AKID/20261201/eu-west-1/rekognition/aws4_request", "IndexFaces", true, ""},
		{"", "AWS4-HMAC-SHA256 x", "", false, ""},
		{"DynamoDB_20120810.GetItem", "AWS4-HMAC-SHA256 x", "DynamoDB_20120810.GetItem", false, ""},
		{"RekognitionService.IndexFaces", "", "IndexFaces", true, "MissingAuthenticationTokenException"},
		{"RekognitionService.IndexFaces", "Basic dXNlcjpwdw==", "IndexFaces", true, "MissingAuthenticationTokenException"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
		r.Header.Set("X-Amz-Target", tt.target)
		r.Header.Set("Authorization", tt.auth)
		op, ok := rekognitionwire.Operation(r)
		if op != tt.op || ok != tt.ok {
			t.Errorf("%q: Operation = %q, %v; want %q, %v", tt.target, op, ok, tt.op, tt.ok)
		}
		if code := codeOf(rekognitionwire.CheckSigned(r)); code != tt.code {
			t.Errorf("%q: CheckSigned = %q, want %q", tt.auth, code, tt.code)
		}
	}
	long := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", awsjson.MaxRequestBody+10)))
	if b, err := rekognitionwire.ReadBody(long); err != nil || len(b) != awsjson.MaxRequestBody+1 {
		t.Errorf("ReadBody of a long body: %d bytes, %v; want MaxRequestBody+1", len(b), err)
	}
}
