package rekognitionfake_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/aws/aws-sdk-go-v2/service/rekognition/types"
	"github.com/aws/smithy-go"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "faces", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// sdkClient is the real AWS SDK client without retries, so every call is one
// request and errors arrive as the emulator sent them.
func sdkClient(url string) *rekognition.Client {
	return rekognition.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
	}, func(o *rekognition.Options) { o.BaseEndpoint = aws.String(url) })
}

func start(t *testing.T) (*rekognitionfake.Server, *rekognition.Client) {
	t.Helper()
	srv := rekognitionfake.New()
	t.Cleanup(srv.Close)
	return srv, sdkClient(srv.URL)
}

// post sends one raw awsJson1_1 request.
func post(t *testing.T, url, op string, body any, signed bool) (*http.Response, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "RekognitionService."+op)
	if signed {
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/rekognition/aws4_request, SignedHeaders=host, Signature=00")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp, out
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestWireFormat(t *testing.T) {
	srv, _ := start(t)

	resp, out := post(t, srv.URL, "CreateCollection", map[string]string{"CollectionId": "faces"}, true)
	if resp.StatusCode != http.StatusOK || out["CollectionArn"] != "aws:rekognition:us-east-1:000000000000:collection/faces" {
		t.Fatalf("CreateCollection: %d %v", resp.StatusCode, out)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("X-Amzn-RequestId") == "" {
		t.Error("no X-Amzn-RequestId")
	}

	resp, out = post(t, srv.URL, "CreateCollection", map[string]string{"CollectionId": "faces"}, true)
	if resp.StatusCode != http.StatusBadRequest ||
		!strings.HasPrefix(resp.Header.Get("X-Amzn-ErrorType"), "ResourceAlreadyExistsException:") ||
		out["__type"] != "ResourceAlreadyExistsException" ||
		!strings.Contains(out["message"].(string), "already exists") {
		t.Fatalf("duplicate CreateCollection: %d %v %v", resp.StatusCode, resp.Header, out)
	}

	img := map[string]any{"CollectionId": "faces", "Image": map[string]string{"Bytes": base64.StdEncoding.EncodeToString(fixture(t, "grace_hopper.jpg"))}}
	resp, out = post(t, srv.URL, "IndexFaces", img, true)
	records, _ := out["FaceRecords"].([]any)
	if resp.StatusCode != http.StatusOK || len(records) != 1 {
		t.Fatalf("IndexFaces: %d %v", resp.StatusCode, out)
	}

	tests := []struct {
		name   string
		op     string
		signed bool
		status int
		code   string
	}{
		{"unsigned", "DescribeCollection", false, http.StatusBadRequest, "MissingAuthenticationTokenException"},
		{"unknown operation", "DetectLabels", true, http.StatusBadRequest, "UnknownOperationException"},
		{"missing collection", "DescribeCollection", true, http.StatusBadRequest, "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := post(t, srv.URL, tt.op, map[string]string{"CollectionId": "nope"}, tt.signed)
			if resp.StatusCode != tt.status || out["__type"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", resp.StatusCode, out, tt.status, tt.code)
			}
		})
	}
}

func TestFailNextAndCalls(t *testing.T) {
	srv, client := start(t)
	ctx := context.Background()
	srv.FailNext(rekognitionfake.OpDescribeCollection, 1, rekognitionfake.Fault{Code: "ThrottlingException"})
	srv.FailNext(rekognitionfake.OpDescribeCollection, 1, rekognitionfake.Fault{Code: "InternalServerError"})
	srv.FailNext(rekognitionfake.OpDescribeCollection, 1, rekognitionfake.Fault{Status: 503, Code: "ServiceUnavailable", Message: "down for maintenance"})

	var statuses []int
	var codes []string
	for range 4 {
		_, err := client.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String("faces")})
		codes = append(codes, apiCode(err))
		var re interface{ HTTPStatusCode() int }
		if errors.As(err, &re) {
			statuses = append(statuses, re.HTTPStatusCode())
		}
	}
	wantCodes := []string{"ThrottlingException", "InternalServerError", "ServiceUnavailable", "ResourceNotFoundException"}
	wantStatuses := []int{400, 500, 503, 400}
	for i := range wantCodes {
		if codes[i] != wantCodes[i] || statuses[i] != wantStatuses[i] {
			t.Fatalf("answers = %v %v, want %v %v", codes, statuses, wantCodes, wantStatuses)
		}
	}
	if got := srv.Calls(rekognitionfake.OpDescribeCollection); got != 4 {
		t.Fatalf("Calls = %d, want 4", got)
	}

	srv.FailNext(rekognitionfake.OpCreateCollection, -1, rekognitionfake.Fault{Code: "AccessDeniedException"})
	for range 3 {
		_, err := client.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("faces")})
		var denied *types.AccessDeniedException
		if !errors.As(err, &denied) {
			t.Fatalf("err = %v, want the SDK's modelled AccessDeniedException", err)
		}
	}
	srv.ClearFaults()
	if _, err := client.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("faces")}); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
	srv.ResetCalls()
	if got := srv.Calls(rekognitionfake.OpCreateCollection); got != 0 {
		t.Fatalf("Calls after ResetCalls = %d", got)
	}
}

func TestLatencyHonoursClientTimeout(t *testing.T) {
	srv, client := start(t)
	srv.SetLatency(rekognitionfake.OpDescribeCollection, 2*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := client.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String("faces")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	srv.Close() // must not wait for the 2s delay
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestFaceModel(t *testing.T) {
	t.Parallel()
	srv, client := start(t)
	ctx := context.Background()
	const coll = "faces"
	if _, err := client.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String(coll)}); err != nil {
		t.Fatal(err)
	}
	grace, astronaut, coffee := fixture(t, "grace_hopper.jpg"), fixture(t, "astronaut.png"), fixture(t, "coffee.png")
	// Two more images of Grace Hopper, as far as the emulator knows: same
	// picture, different bytes.
	graceB := append(bytes.Clone(grace), 0)
	graceC := append(bytes.Clone(grace), 0, 0)
	srv.SetSamePerson(graceB, grace, 95)
	srv.SetSamePerson(graceC, graceB, 85) // chained: the same person as grace, similarity 85
	srv.SetNoFace(coffee)

	index := func(img []byte, ext string, qf types.QualityFilter) *rekognition.IndexFacesOutput {
		t.Helper()
		out, err := client.IndexFaces(ctx, &rekognition.IndexFacesInput{
			CollectionId: aws.String(coll), Image: &types.Image{Bytes: img},
			ExternalImageId: aws.String(ext), MaxFaces: aws.Int32(1), QualityFilter: qf,
		})
		if err != nil {
			t.Fatalf("IndexFaces: %v", err)
		}
		return out
	}
	search := func(img []byte, threshold float32, maxFaces int32) ([]types.FaceMatch, error) {
		t.Helper()
		out, err := client.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{
			CollectionId: aws.String(coll), Image: &types.Image{Bytes: img},
			FaceMatchThreshold: aws.Float32(threshold), MaxFaces: aws.Int32(maxFaces),
		})
		if err != nil {
			return nil, err
		}
		if out.SearchedFaceConfidence == nil || out.SearchedFaceBoundingBox == nil {
			t.Fatalf("search answer lacks the searched face: %+v", out)
		}
		return out.FaceMatches, nil
	}

	if m, err := search(grace, 80, 1); err != nil || len(m) != 0 {
		t.Fatalf("empty collection: %v, %v", m, err)
	}
	gFace := index(grace, "dev-1", types.QualityFilterAuto).FaceRecords[0].Face
	if aws.ToString(gFace.FaceId) == "" || aws.ToString(gFace.ExternalImageId) != "dev-1" {
		t.Fatalf("indexed face = %+v", gFace)
	}
	aFace := index(astronaut, "dev-2", types.QualityFilterAuto).FaceRecords[0].Face

	m, err := search(grace, 90, 1)
	if err != nil || len(m) != 1 || aws.ToString(m[0].Face.FaceId) != *gFace.FaceId || aws.ToFloat32(m[0].Similarity) != float32(rekognitionfake.ExactMatchSimilarity) {
		t.Fatalf("identical image: %+v, %v", m, err)
	}
	if m, _ := search(graceB, 90, 1); len(m) != 1 || aws.ToFloat32(m[0].Similarity) != 95 {
		t.Fatalf("same person at 95: %+v", m)
	}
	if m, _ := search(graceC, 90, 1); len(m) != 0 {
		t.Fatalf("same person at 85 with threshold 90: %+v", m)
	}
	if m, _ := search(graceC, 80, 1); len(m) != 1 || aws.ToFloat32(m[0].Similarity) != 85 {
		t.Fatalf("same person at 85 with threshold 80: %+v", m)
	}

	// Index graceB too: a search for grace now has two candidates, best first.
	index(graceB, "dev-3", types.QualityFilterAuto)
	if m, _ := search(grace, 80, 10); len(m) != 2 || aws.ToFloat32(m[0].Similarity) < aws.ToFloat32(m[1].Similarity) {
		t.Fatalf("two matches, sorted: %+v", m)
	}
	if m, _ := search(grace, 80, 1); len(m) != 1 || aws.ToString(m[0].Face.FaceId) != *gFace.FaceId {
		t.Fatalf("MaxFaces 1: %+v", m)
	}
	if m, _ := search(astronaut, 50, 10); len(m) != 1 || aws.ToString(m[0].Face.FaceId) != *aFace.FaceId {
		t.Fatalf("another person: %+v", m)
	}

	// No face.
	_, err = search(coffee, 80, 1)
	var ipe *types.InvalidParameterException
	if !errors.As(err, &ipe) || ipe.ErrorMessage() != "There are no faces in the image. Should be at least 1." {
		t.Fatalf("faceless search: %v", err)
	}
	if out := index(coffee, "dev-1", types.QualityFilterAuto); len(out.FaceRecords) != 0 || len(out.UnindexedFaces) != 0 {
		t.Fatalf("faceless index: %+v", out)
	}

	// A low-quality face: unindexed by AUTO, indexed by NONE.
	poor := append(bytes.Clone(grace), 1)
	srv.SetLowQualityFace(poor)
	out := index(poor, "dev-4", types.QualityFilterAuto)
	if len(out.FaceRecords) != 0 || len(out.UnindexedFaces) != 1 || out.UnindexedFaces[0].Reasons[0] != types.ReasonLowFaceQuality {
		t.Fatalf("low quality with AUTO: %+v", out)
	}
	if out := index(poor, "dev-4", types.QualityFilterNone); len(out.FaceRecords) != 1 {
		t.Fatalf("low quality with NONE: %+v", out)
	}

	desc, err := client.DescribeCollection(ctx, &rekognition.DescribeCollectionInput{CollectionId: aws.String(coll)})
	if err != nil || aws.ToInt64(desc.FaceCount) != 4 || desc.CreationTimestamp == nil || time.Since(*desc.CreationTimestamp) > time.Minute {
		t.Fatalf("DescribeCollection: %+v, %v", desc, err)
	}
	if faces := srv.Faces(coll); len(faces) != 4 || faces[0].FaceID != *gFace.FaceId {
		t.Fatalf("Faces = %+v", faces)
	}
}

func TestImageAndParameterValidation(t *testing.T) {
	t.Parallel()
	srv, client := start(t)
	ctx := context.Background()
	if _, err := client.CreateCollection(ctx, &rekognition.CreateCollectionInput{CollectionId: aws.String("faces")}); err != nil {
		t.Fatal(err)
	}
	tooLarge := append(bytes.Clone(fixture(t, "grace_hopper.jpg")), make([]byte, rekognitionfake.MaxImageBytes)...)
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"not an image", func() error {
			_, err := client.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: aws.String("faces"), Image: &types.Image{Bytes: []byte("hello")}})
			return err
		}, "InvalidImageFormatException"},
		{"too large", func() error {
			_, err := client.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: aws.String("faces"), Image: &types.Image{Bytes: tooLarge}})
			return err
		}, "ImageTooLargeException"},
		{"bad external image id", func() error {
			_, err := client.IndexFaces(ctx, &rekognition.IndexFacesInput{CollectionId: aws.String("faces"), Image: &types.Image{Bytes: fixture(t, "grace_hopper.jpg")}, ExternalImageId: aws.String("a b")})
			return err
		}, "ValidationException"},
		{"missing collection", func() error {
			_, err := client.SearchFacesByImage(ctx, &rekognition.SearchFacesByImageInput{CollectionId: aws.String("other"), Image: &types.Image{Bytes: fixture(t, "grace_hopper.jpg")}})
			return err
		}, "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := apiCode(tt.call()); got != tt.code {
				t.Fatalf("code = %q, want %q", got, tt.code)
			}
		})
	}
	if n := len(srv.Faces("faces")); n != 0 {
		t.Fatalf("rejected requests indexed %d faces", n)
	}
}

// The emulator behind a plain http.Server, as `make run` serves it.
func TestHandlerWithHTTPServer(t *testing.T) {
	em := rekognitionfake.NewEmulator()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: em.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	client := sdkClient("http://" + ln.Addr().String())
	if _, err := client.CreateCollection(context.Background(), &rekognition.CreateCollectionInput{CollectionId: aws.String("dev")}); err != nil {
		t.Fatalf("CreateCollection: %v", err)
	}
	if got := em.Collections(); len(got) != 1 || got[0] != "dev" {
		t.Fatalf("collections = %v", got)
	}
}

func TestDetectFaces(t *testing.T) {
	t.Parallel()
	srv, client := start(t)
	ctx := context.Background()
	grace, coffee := fixture(t, "grace_hopper.jpg"), fixture(t, "coffee.png")
	poor := append(bytes.Clone(grace), 1)
	srv.SetNoFace(coffee)
	srv.SetLowQualityFace(poor)
	for _, tt := range []struct {
		name  string
		img   []byte
		faces int
	}{{"face", grace, 1}, {"no face", coffee, 0}, {"low-quality face", poor, 1}} {
		out, err := client.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: &types.Image{Bytes: tt.img}})
		if err != nil || len(out.FaceDetails) != tt.faces {
			t.Fatalf("%s: %+v, %v; want %d faces", tt.name, out, err, tt.faces)
		}
	}
	if _, err := client.DetectFaces(ctx, &rekognition.DetectFacesInput{Image: &types.Image{Bytes: []byte("hello")}}); apiCode(err) != "InvalidImageFormatException" {
		t.Fatalf("not an image: %v", err)
	}
	if got := srv.Calls(rekognitionfake.OpDetectFaces); got != 4 {
		t.Fatalf("Calls = %d, want 4", got)
	}
}
