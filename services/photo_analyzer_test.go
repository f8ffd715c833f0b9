package services

import (
	"bytes"
	"context"
	"errors"
	"image"
	_ "image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
)

const (
	testCollection = "challenge-test-faces"
	testDevice     = "00:0a:95:9d:68:16"
)

// fixture reads a real photo from the repository's testdata/faces.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "faces", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// variant returns the JPEG photo with a comment segment inserted after the
// start-of-image marker: the same picture in different bytes, as a phone
// re-sending a shot with different metadata.
func variant(t *testing.T, img []byte, comment string) []byte {
	t.Helper()
	if len(img) < 2 || img[0] != 0xFF || img[1] != 0xD8 {
		t.Fatal("variant needs a JPEG")
	}
	n := len(comment) + 2
	seg := append([]byte{0xFF, 0xFE, byte(n >> 8), byte(n)}, comment...)
	out := append(append(append([]byte{}, img[:2]...), seg...), img[2:]...)
	if _, _, err := image.DecodeConfig(bytes.NewReader(out)); err != nil {
		t.Fatalf("variant is not a valid image: %v", err)
	}
	return out
}

// fixedBackoff keeps SDK retries fast in tests; the retry policy (attempts,
// which errors are retried) stays the production one.
type fixedBackoff time.Duration

func (d fixedBackoff) BackoffDelay(int, error) (time.Duration, error) { return time.Duration(d), nil }

// newTestClient is the real SDK client, with static credentials, pointed at url.
func newTestClient(url string) *rekognition.Client {
	return rekognition.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: func() aws.Retryer {
			return NewRetryer(func(o *retry.StandardOptions) { o.Backoff = fixedBackoff(time.Millisecond) })
		},
	}, func(o *rekognition.Options) { o.BaseEndpoint = aws.String(url) })
}

type harness struct {
	fake   *rekognitionfake.Server
	client *rekognition.Client
	reg    *prometheus.Registry
	svc    *PhotoAnalyzerService
}

// newHarness starts a fake Rekognition with the collection created, and an
// analyzer on it; call counts start at zero.
func newHarness(t *testing.T, cfg PhotoAnalyzerConfig) *harness {
	t.Helper()
	fake := rekognitionfake.New()
	t.Cleanup(fake.Close)
	h := &harness{fake: fake, client: newTestClient(fake.URL)}
	if cfg.CollectionID == "" {
		cfg.CollectionID = testCollection
	}
	// Created directly, not by EnsureCollection under the test's (possibly
	// tiny) CallTimeout.
	if _, err := h.client.CreateCollection(context.Background(), &rekognition.CreateCollectionInput{CollectionId: aws.String(cfg.CollectionID)}); err != nil {
		t.Fatalf("CreateCollection: %v", err)
	}
	h.reg, h.svc = h.newService(t, cfg)
	fake.ResetCalls()
	return h
}

// newService builds another analyzer on the same fake (a restarted or second
// worker), with its own registry.
func (h *harness) newService(t *testing.T, cfg PhotoAnalyzerConfig) (*prometheus.Registry, *PhotoAnalyzerService) {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc, err := NewPhotoAnalyzerService(h.client, cfg, reg, nil)
	if err != nil {
		t.Fatalf("NewPhotoAnalyzerService: %v", err)
	}
	return reg, svc
}

func (h *harness) calls() map[string]int {
	return map[string]int{
		"search": h.fake.Calls(rekognitionfake.OpSearchFacesByImage),
		"detect": h.fake.Calls(rekognitionfake.OpDetectFaces),
		"index":  h.fake.Calls(rekognitionfake.OpIndexFaces),
	}
}

// metric returns the value of the counter (or the sample count of the
// histogram) name with exactly the given labels, as scraped from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func analyze(t *testing.T, s *PhotoAnalyzerService, img []byte) Analysis {
	t.Helper()
	a, err := s.Analyze(context.Background(), testDevice, img)
	if err != nil {
		t.Fatalf("Analyze: %v", err)
	}
	return a
}

func similarity(a Analysis) float64 {
	if a.Similarity == nil {
		return -1
	}
	return *a.Similarity
}

func TestAnalyzeNewFaceThenCachedMatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	grace := fixture(t, "grace_hopper.jpg")

	first := analyze(t, h.svc, grace)
	if first.Status != StatusNewFace || first.Recognized || first.FaceID == "" || first.Similarity != nil {
		t.Fatalf("first photo: got %+v, want new_face with a face id and no similarity", first)
	}
	if got := h.calls(); got["search"] != 1 || got["index"] != 1 {
		t.Fatalf("first photo calls = %v, want one search and one index", got)
	}
	faces := h.fake.Faces(testCollection)
	if len(faces) != 1 || faces[0].FaceID != first.FaceID || faces[0].ExternalImageID != testDevice {
		t.Fatalf("collection = %+v, want the one face %s with ExternalImageId %s", faces, first.FaceID, testDevice)
	}

	again := analyze(t, h.svc, grace)
	if again.Status != StatusMatched || !again.Recognized || again.FaceID != first.FaceID || similarity(again) != 100 {
		t.Fatalf("same photo again: got %+v, want matched to %s with similarity 100", again, first.FaceID)
	}
	if got := h.calls(); got["search"] != 1 || got["index"] != 1 {
		t.Fatalf("same photo again made Rekognition calls: %v", got)
	}

	for labels, want := range map[[2]string]float64{
		{opSearchFacesByImage, outcomeSuccess}: 1,
		{opIndexFaces, outcomeSuccess}:         1,
	} {
		if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": labels[0], "outcome": labels[1]}); got != want {
			t.Errorf("rekognition_calls_total%v = %v, want %v", labels, got, want)
		}
	}
	if got := metric(t, h.reg, "rekognition_call_duration_seconds", map[string]string{"operation": opSearchFacesByImage}); got != 1 {
		t.Errorf("search duration observations = %v, want 1", got)
	}
	if hit, miss := metric(t, h.reg, "photo_analysis_cache_total", map[string]string{"result": "hit"}),
		metric(t, h.reg, "photo_analysis_cache_total", map[string]string{"result": "miss"}); hit != 1 || miss != 1 {
		t.Errorf("cache hit/miss = %v/%v, want 1/1", hit, miss)
	}

	// Another person is a new face of their own.
	other := analyze(t, h.svc, fixture(t, "astronaut.png"))
	if other.Status != StatusNewFace || other.FaceID == "" || other.FaceID == first.FaceID {
		t.Fatalf("another person: got %+v, want new_face with a new id", other)
	}
	if n := len(h.fake.Faces(testCollection)); n != 2 {
		t.Fatalf("collection holds %d faces, want 2", n)
	}
}

func TestAnalyzeMatchesKnownFaceWithoutIndexingAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	grace := fixture(t, "grace_hopper.jpg")
	first := analyze(t, h.svc, grace)

	// A restarted worker has an empty cache: Rekognition finds the face.
	_, restarted := h.newService(t, PhotoAnalyzerConfig{CollectionID: testCollection})
	got := analyze(t, restarted, grace)
	if got.Status != StatusMatched || !got.Recognized || got.FaceID != first.FaceID || similarity(got) != rekognitionfake.ExactMatchSimilarity {
		t.Fatalf("got %+v, want matched to %s with Rekognition's similarity", got, first.FaceID)
	}
	if n := len(h.fake.Faces(testCollection)); n != 1 {
		t.Fatalf("collection holds %d faces, want 1 (no duplicate)", n)
	}
}

func TestAnalyzeSamePersonThreshold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{MatchThreshold: 90})
	grace := fixture(t, "grace_hopper.jpg")
	similar := variant(t, grace, "re-sent")
	far := variant(t, grace, "blurred")
	h.fake.SetSamePerson(similar, grace, 97.5)
	h.fake.SetSamePerson(far, grace, 85)

	ref := analyze(t, h.svc, grace)

	got := analyze(t, h.svc, similar)
	if got.Status != StatusMatched || got.FaceID != ref.FaceID || similarity(got) != 97.5 {
		t.Fatalf("similar photo: got %+v, want matched to %s with similarity 97.5", got, ref.FaceID)
	}
	got = analyze(t, h.svc, far)
	if got.Status != StatusNewFace || got.FaceID == ref.FaceID {
		t.Fatalf("photo under the threshold: got %+v, want new_face with a new id", got)
	}
}

func TestAnalyzeNoFace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	coffee, cat := fixture(t, "coffee.png"), fixture(t, "chelsea.png")
	h.fake.SetNoFace(coffee)
	h.fake.SetNoFace(cat)

	for _, img := range [][]byte{coffee, cat} {
		got := analyze(t, h.svc, img)
		if got != (Analysis{Status: StatusNoFace}) {
			t.Fatalf("got %+v, want no_face", got)
		}
	}
	if got := h.calls(); got["search"] != 2 || got["detect"] != 2 || got["index"] != 0 {
		t.Fatalf("calls = %v, want two searches, each settled by DetectFaces, and no index", got)
	}
	if got := analyze(t, h.svc, coffee); got.Status != StatusNoFace {
		t.Fatalf("repeat: got %+v, want no_face", got)
	}
	if got := h.calls(); got["search"] != 2 {
		t.Fatalf("repeated faceless photo called Rekognition: %v", got)
	}
	if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": opSearchFacesByImage, "outcome": outcomeNoFace}); got != 2 {
		t.Errorf("no_face outcomes = %v, want 2", got)
	}
}

// Whether a photo has no face is decided by the error code and DetectFaces,
// never by the wording of Rekognition's message: a reworded (or empty)
// message still stores a faceless photo as no_face, and the no-face wording
// on a photo with a face is an invalid parameter (dead-lettered, as before).
func TestAnalyzeNoFaceDoesNotDependOnTheMessage(t *testing.T) {
	t.Parallel()
	const rekognitionWording = "There are no faces in the image. Should be at least 1."
	tests := []struct {
		name     string
		message  string
		faceless bool // what DetectFaces sees
		want     Analysis
		kind     ierr.Kind // when want is zero: the error wanted
		outcome  string    // of the search in rekognition_calls_total
	}{
		{"today's wording", rekognitionWording, true, Analysis{Status: StatusNoFace}, 0, outcomeNoFace},
		{"reworded", "No face was detected in the supplied image", true, Analysis{Status: StatusNoFace}, 0, outcomeNoFace},
		{"no message", "InvalidParameterException", true, Analysis{Status: StatusNoFace}, 0, outcomeNoFace},
		{"no-face wording, face present", rekognitionWording, false, Analysis{}, ierr.Invalid, outcomeInvalid},
		{"invalid parameter, face present", "Request has invalid parameters", false, Analysis{}, ierr.Invalid, outcomeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, PhotoAnalyzerConfig{})
			img := fixture(t, "chelsea.png")
			if tt.faceless {
				h.fake.SetNoFace(img)
			}
			h.fake.FailNext(rekognitionfake.OpSearchFacesByImage, -1, rekognitionfake.Fault{Code: "InvalidParameterException", Message: tt.message})

			got, err := h.svc.Analyze(context.Background(), testDevice, img)
			if tt.want != (Analysis{}) {
				if err != nil || got != tt.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
			} else if !ierr.Is(err, tt.kind) {
				t.Fatalf("got %+v, %v; want a %v error", got, err, tt.kind)
			}
			if c := h.calls(); c["search"] != 1 || c["detect"] != 1 || c["index"] != 0 {
				t.Errorf("calls = %v, want one search settled by one DetectFaces, no index", c)
			}
			for op, outcome := range map[string]string{opSearchFacesByImage: tt.outcome, opDetectFaces: outcomeSuccess} {
				if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": op, "outcome": outcome}); got != 1 {
					t.Errorf("rekognition_calls_total{%s,%s} = %v, want 1", op, outcome, got)
				}
			}
		})
	}
}

// DetectFaces failing leaves the search unsettled: the photo is retried (or
// held) with DetectFaces' error, and nothing is cached.
func TestAnalyzeNoFaceUnsettled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code    string
		kind    ierr.Kind
		outcome string
	}{
		{"ThrottlingException", ierr.Unavailable, outcomeThrottled},
		{"AccessDeniedException", ierr.Misconfigured, outcomeMisconfigured},
		{"InvalidParameterException", ierr.Invalid, outcomeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, PhotoAnalyzerConfig{})
			img := fixture(t, "coffee.png")
			h.fake.SetNoFace(img)
			h.fake.FailNext(rekognitionfake.OpDetectFaces, -1, rekognitionfake.Fault{Code: tt.code})

			if _, err := h.svc.Analyze(context.Background(), testDevice, img); !ierr.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			for _, op := range []string{opSearchFacesByImage, opDetectFaces} {
				if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": op, "outcome": tt.outcome}); got != 1 {
					t.Errorf("rekognition_calls_total{%s,%s} = %v, want 1", op, tt.outcome, got)
				}
			}
			h.fake.ClearFaults()
			if got := analyze(t, h.svc, img); got.Status != StatusNoFace {
				t.Fatalf("after recovery: got %+v, want no_face", got)
			}
		})
	}
}

func TestAnalyzeFaceTooPoorToIndex(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	poor := variant(t, fixture(t, "grace_hopper.jpg"), "out of focus")
	h.fake.SetLowQualityFace(poor)

	if got := analyze(t, h.svc, poor); got != (Analysis{Status: StatusNoFace}) {
		t.Fatalf("got %+v, want no_face", got)
	}
	if got := h.calls(); got["search"] != 1 || got["index"] != 1 {
		t.Fatalf("calls = %v, want one search and one index", got)
	}
	if n := len(h.fake.Faces(testCollection)); n != 0 {
		t.Fatalf("collection holds %d faces, want 0", n)
	}
}

func TestAnalyzeDisabled(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s, err := NewPhotoAnalyzerService(nil, PhotoAnalyzerConfig{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Enabled() {
		t.Fatal("Enabled() = true without a collection")
	}
	if err := s.EnsureCollection(context.Background()); err != nil {
		t.Fatalf("EnsureCollection: %v", err)
	}
	got, err := s.Analyze(context.Background(), testDevice, fixture(t, "grace_hopper.jpg"))
	if err != nil || got != (Analysis{Status: StatusDisabled}) {
		t.Fatalf("got %+v, %v; want disabled", got, err)
	}
}

func TestAnalyzeErrorTaxonomy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		op       string // operation the fault is injected into
		code     string
		message  string
		kind     ierr.Kind
		outcome  string
		attempts int // HTTP requests the SDK makes (RetryMaxAttempts when retryable)
	}{
		{"throttling", rekognitionfake.OpSearchFacesByImage, "ThrottlingException", "", ierr.Unavailable, outcomeThrottled, RetryMaxAttempts},
		{"provisioned throughput", rekognitionfake.OpIndexFaces, "ProvisionedThroughputExceededException", "", ierr.Unavailable, outcomeThrottled, RetryMaxAttempts},
		{"internal server error", rekognitionfake.OpSearchFacesByImage, "InternalServerError", "", ierr.Unavailable, outcomeUnavailable, RetryMaxAttempts},
		{"invalid image format", rekognitionfake.OpSearchFacesByImage, "InvalidImageFormatException", "", ierr.Invalid, outcomeInvalid, 1},
		{"image too large", rekognitionfake.OpIndexFaces, "ImageTooLargeException", "", ierr.Invalid, outcomeInvalid, 1},
		{"invalid parameter", rekognitionfake.OpSearchFacesByImage, "InvalidParameterException", "Requested image should either contain bytes or s3 object.", ierr.Invalid, outcomeInvalid, 1},
		{"access denied", rekognitionfake.OpSearchFacesByImage, "AccessDeniedException", "", ierr.Misconfigured, outcomeMisconfigured, 1},
		{"access denied on index", rekognitionfake.OpIndexFaces, "AccessDeniedException", "", ierr.Misconfigured, outcomeMisconfigured, 1},
		{"collection not found", rekognitionfake.OpSearchFacesByImage, "ResourceNotFoundException", "", ierr.Misconfigured, outcomeMisconfigured, 1},
		{"unknown client error", rekognitionfake.OpSearchFacesByImage, "UnrecognizedClientException", "The security token included in the request is invalid.", ierr.Misconfigured, outcomeMisconfigured, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, PhotoAnalyzerConfig{})
			h.fake.FailNext(tt.op, -1, rekognitionfake.Fault{Code: tt.code, Message: tt.message})

			_, err := h.svc.Analyze(context.Background(), testDevice, fixture(t, "grace_hopper.jpg"))
			var ie *ierr.Error
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T) is not an *ierr.Error", err, err)
			}
			if ie.Kind != tt.kind {
				t.Fatalf("kind = %v, want %v (error: %v)", ie.Kind, tt.kind, err)
			}
			if got := h.fake.Calls(tt.op); got != tt.attempts {
				t.Errorf("%s requests = %d, want %d", tt.op, got, tt.attempts)
			}
			if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": tt.op, "outcome": tt.outcome}); got != 1 {
				t.Errorf("rekognition_calls_total{%s,%s} = %v, want 1", tt.op, tt.outcome, got)
			}

			// The failure is not cached: once Rekognition recovers, the photo succeeds.
			h.fake.ClearFaults()
			if got := analyze(t, h.svc, fixture(t, "grace_hopper.jpg")); got.Status != StatusNewFace {
				t.Fatalf("after recovery: got %+v, want new_face", got)
			}
		})
	}
}

func TestAnalyzeThrottlingThenSuccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	h.fake.FailNext(rekognitionfake.OpSearchFacesByImage, RetryMaxAttempts-1, rekognitionfake.Fault{Code: "ThrottlingException"})
	h.fake.FailNext(rekognitionfake.OpIndexFaces, RetryMaxAttempts-1, rekognitionfake.Fault{Code: "InternalServerError"})

	got := analyze(t, h.svc, fixture(t, "grace_hopper.jpg"))
	if got.Status != StatusNewFace {
		t.Fatalf("got %+v, want new_face after SDK retries", got)
	}
	if got := h.calls(); got["search"] != RetryMaxAttempts || got["index"] != RetryMaxAttempts {
		t.Fatalf("requests = %v, want %d of each", got, RetryMaxAttempts)
	}
	if n := len(h.fake.Faces(testCollection)); n != 1 {
		t.Fatalf("collection holds %d faces, want 1", n)
	}
	// One operation each, and it succeeded: retries are inside the SDK.
	if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": opSearchFacesByImage, "outcome": outcomeSuccess}); got != 1 {
		t.Errorf("search successes = %v, want 1", got)
	}
}

func TestAnalyzeThrottlingStormIsUnavailableUntilItEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	grace := fixture(t, "grace_hopper.jpg")
	// Longer than one operation's attempts: the worker must Nak and come back.
	h.fake.FailNext(rekognitionfake.OpSearchFacesByImage, 2*RetryMaxAttempts, rekognitionfake.Fault{Code: "ThrottlingException"})

	for i := range 2 {
		if _, err := h.svc.Analyze(context.Background(), testDevice, grace); !ierr.Is(err, ierr.Unavailable) {
			t.Fatalf("delivery %d: err = %v, want unavailable", i+1, err)
		}
	}
	if got := analyze(t, h.svc, grace); got.Status != StatusNewFace {
		t.Fatalf("after the storm: got %+v, want new_face", got)
	}
}

func TestAnalyzeRejectedImages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	tests := []struct {
		name  string
		img   []byte
		calls int
	}{
		{"not an image", []byte("GIF89a definitely not a jpeg"), 1},
		{"truncated jpeg", fixture(t, "grace_hopper.jpg")[:2], 1},
		{"too large", make([]byte, MaxImageBytes+1), 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.fake.ResetCalls()
			_, err := h.svc.Analyze(context.Background(), testDevice, tt.img)
			if !ierr.Is(err, ierr.Invalid) {
				t.Fatalf("err = %v, want invalid", err)
			}
			if got := h.fake.Calls(rekognitionfake.OpSearchFacesByImage); got != tt.calls {
				t.Fatalf("search requests = %d, want %d", got, tt.calls)
			}
		})
	}
}

func TestAnalyzeCollectionDeletedAtRunTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	h.fake.DeleteCollection(testCollection)

	_, err := h.svc.Analyze(context.Background(), testDevice, fixture(t, "grace_hopper.jpg"))
	if !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("err = %v, want misconfigured", err)
	}
	if got := metric(t, h.reg, "rekognition_calls_total", map[string]string{"operation": opSearchFacesByImage, "outcome": outcomeMisconfigured}); got != 1 {
		t.Fatalf("misconfigured count = %v, want 1", got)
	}
}

func TestAnalyzeCallTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{CallTimeout: 50 * time.Millisecond})
	h.fake.SetLatency(rekognitionfake.OpSearchFacesByImage, 5*time.Second)

	start := time.Now()
	_, err := h.svc.Analyze(context.Background(), testDevice, fixture(t, "grace_hopper.jpg"))
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Analyze took %v with a 50ms call timeout", d)
	}
}

func TestAnalyzeRekognitionUnreachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	h.fake.Close()

	_, err := h.svc.Analyze(context.Background(), testDevice, fixture(t, "grace_hopper.jpg"))
	if !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestAnalyzeConcurrentIdenticalPhotos(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	h.fake.SetLatency(rekognitionfake.OpSearchFacesByImage, 100*time.Millisecond)
	grace := fixture(t, "grace_hopper.jpg")

	const n = 16
	results := make([]Analysis, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = h.svc.Analyze(context.Background(), testDevice, grace)
		})
	}
	wg.Wait()

	if got := h.calls(); got["search"] != 1 || got["index"] != 1 {
		t.Fatalf("calls = %v, want one search and one index for %d identical photos", got, n)
	}
	newFaces := 0
	for i, a := range results {
		if errs[i] != nil {
			t.Fatalf("photo %d: %v", i, errs[i])
		}
		if a.FaceID != results[0].FaceID || a.FaceID == "" {
			t.Fatalf("photo %d: face id %q, want %q for all", i, a.FaceID, results[0].FaceID)
		}
		switch a.Status {
		case StatusNewFace:
			newFaces++
		case StatusMatched:
			if similarity(a) != 100 || !a.Recognized {
				t.Fatalf("photo %d: %+v, want similarity 100 and recognized", i, a)
			}
		default:
			t.Fatalf("photo %d: status %s", i, a.Status)
		}
	}
	if newFaces != 1 {
		t.Fatalf("%d photos reported new_face, want exactly 1", newFaces)
	}
}

func TestAnalyzeCallerGivesUpResultStillCached(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	h.fake.SetLatency(rekognitionfake.OpIndexFaces, 150*time.Millisecond)
	grace := fixture(t, "grace_hopper.jpg")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := h.svc.Analyze(ctx, testDevice, grace); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}

	// The redelivered photo joins the flight still running or hits the
	// cache it filled: the face is indexed exactly once.
	got := analyze(t, h.svc, grace)
	if got.Status != StatusMatched || got.FaceID == "" {
		t.Fatalf("redelivery: got %+v, want matched", got)
	}
	if c := h.calls(); c["index"] != 1 || len(h.fake.Faces(testCollection)) != 1 {
		t.Fatalf("calls = %v, faces = %d; want the face indexed once", c, len(h.fake.Faces(testCollection)))
	}
}

func TestAnalyzeCacheExpiresAndIsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{CacheEntries: 2, CacheTTL: time.Minute})
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	h.svc.cache.now = func() time.Time { return now }
	grace := fixture(t, "grace_hopper.jpg")
	other := variant(t, grace, "other") // distinct images: each its own person to the fake
	third := variant(t, grace, "third")

	first := analyze(t, h.svc, grace)

	now = now.Add(59 * time.Second)
	if got := analyze(t, h.svc, grace); similarity(got) != 100 || h.calls()["search"] != 1 {
		t.Fatalf("within TTL: got %+v after %v; want a cache hit", got, h.calls())
	}

	now = now.Add(2 * time.Second) // past the TTL of the entry written at 10:00:00
	got := analyze(t, h.svc, grace)
	if got.Status != StatusMatched || got.FaceID != first.FaceID || similarity(got) != rekognitionfake.ExactMatchSimilarity {
		t.Fatalf("after TTL: got %+v, want matched through Rekognition", got)
	}
	if c := h.calls(); c["search"] != 2 || c["index"] != 1 {
		t.Fatalf("after TTL: calls = %v, want a second search and no second index", c)
	}

	// Bound: two more photos push grace (least recently used) out.
	analyze(t, h.svc, other)
	analyze(t, h.svc, third)
	if n := h.svc.cache.len(); n != 2 {
		t.Fatalf("cache holds %d entries, want 2", n)
	}
	h.fake.ResetCalls()
	analyze(t, h.svc, third) // most recent: a hit
	analyze(t, h.svc, grace) // evicted: a search
	if c := h.calls(); c["search"] != 1 || c["index"] != 0 {
		t.Fatalf("calls = %v, want one search for the evicted photo only", c)
	}
}

func TestEnsureCollection(t *testing.T) {
	t.Parallel()
	fake := rekognitionfake.New()
	t.Cleanup(fake.Close)
	reg := prometheus.NewRegistry()
	s, err := NewPhotoAnalyzerService(newTestClient(fake.URL), PhotoAnalyzerConfig{CollectionID: "fleet-faces"}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := s.EnsureCollection(ctx); err != nil {
		t.Fatalf("first EnsureCollection: %v", err)
	}
	if got := fake.Collections(); len(got) != 1 || got[0] != "fleet-faces" {
		t.Fatalf("collections = %v, want [fleet-faces]", got)
	}
	if err := s.EnsureCollection(ctx); err != nil {
		t.Fatalf("second EnsureCollection: %v", err)
	}
	if got := fake.Calls(rekognitionfake.OpCreateCollection); got != 1 {
		t.Fatalf("CreateCollection calls = %d, want 1", got)
	}

	// Another worker created it between our Describe and Create.
	fake.FailNext(rekognitionfake.OpDescribeCollection, 1, rekognitionfake.Fault{Code: "ResourceNotFoundException"})
	if err := s.EnsureCollection(ctx); err != nil {
		t.Fatalf("EnsureCollection racing another worker: %v", err)
	}
	if got := metric(t, reg, "rekognition_calls_total", map[string]string{"operation": opCreateCollection, "outcome": outcomeAlreadyExists}); got != 1 {
		t.Fatalf("already_exists outcomes = %v, want 1", got)
	}

	fake.FailNext(rekognitionfake.OpDescribeCollection, 1, rekognitionfake.Fault{Code: "AccessDeniedException"})
	if err := s.EnsureCollection(ctx); !ierr.Is(err, ierr.Misconfigured) {
		t.Fatalf("denied: err = %v, want misconfigured", err)
	}
	fake.FailNext(rekognitionfake.OpDescribeCollection, RetryMaxAttempts, rekognitionfake.Fault{Code: "ThrottlingException"})
	if err := s.EnsureCollection(ctx); !ierr.Is(err, ierr.Unavailable) {
		t.Fatalf("throttled: err = %v, want unavailable", err)
	}
}

func TestNewPhotoAnalyzerServiceValidates(t *testing.T) {
	t.Parallel()
	client := newTestClient("http://127.0.0.1:1")
	tests := []struct {
		name   string
		client *rekognition.Client
		cfg    PhotoAnalyzerConfig
	}{
		{"collection without client", nil, PhotoAnalyzerConfig{CollectionID: "faces"}},
		{"bad collection id", client, PhotoAnalyzerConfig{CollectionID: "faces/prod"}},
		{"threshold above 100", client, PhotoAnalyzerConfig{CollectionID: "faces", MatchThreshold: 101}},
		{"negative threshold", client, PhotoAnalyzerConfig{CollectionID: "faces", MatchThreshold: -1}},
		{"negative timeout", client, PhotoAnalyzerConfig{CollectionID: "faces", CallTimeout: -time.Second}},
		{"negative cache size", client, PhotoAnalyzerConfig{CollectionID: "faces", CacheEntries: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewPhotoAnalyzerService(tt.client, tt.cfg, nil, nil); err == nil {
				t.Fatal("no error")
			}
		})
	}

	reg := prometheus.NewRegistry()
	s, err := NewPhotoAnalyzerService(client, PhotoAnalyzerConfig{CollectionID: "faces"}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MatchThreshold != DefaultMatchThreshold || s.cfg.CallTimeout != DefaultCallTimeout ||
		s.cfg.CacheEntries != DefaultCacheEntries || s.cfg.CacheTTL != DefaultCacheTTL {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
	if _, err := NewPhotoAnalyzerService(client, PhotoAnalyzerConfig{CollectionID: "faces"}, reg, nil); err == nil {
		t.Fatal("registering the metrics twice on one registry: no error")
	}
}

func TestExternalImageID(t *testing.T) {
	long := bytes.Repeat([]byte("a"), 300)
	tests := []struct{ in, want string }{
		{"00:0a:95:9d:68:16", "00:0a:95:9d:68:16"},
		{"truck-42_front.cam", "truck-42_front.cam"},
		{"dev/ice id", "dev_ice_id"},
		{"câmera", "c_mera"},
		{"", "unknown"},
		{string(long), string(long[:255])},
	}
	for _, tt := range tests {
		if got := ExternalImageID(tt.in); got != tt.want {
			t.Errorf("ExternalImageID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFloat32To64(t *testing.T) {
	for _, f := range []float32{99.99, 97.5, 100, 90.123456} {
		got := float32To64(f)
		if float32(got) != f {
			t.Errorf("float32To64(%v) = %v does not round-trip", f, got)
		}
	}
	if got := float32To64(99.99); got != 99.99 {
		t.Errorf("float32To64(99.99) = %v", got)
	}
}

// A redelivered message (its row could not be written after Rekognition
// answered) gets its first analysis again: new_face, not a match of the
// photo with the face it was itself indexed as. Another message with the
// same photo is a repeat: matched, similarity 100.
func TestAnalyzeMessageRedeliveryKeepsFirstAnalysis(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	grace := fixture(t, "grace_hopper.jpg")
	ctx := context.Background()

	first, err := h.svc.AnalyzeMessage(ctx, "msg-1", testDevice, grace)
	if err != nil || first.Status != StatusNewFace {
		t.Fatalf("first delivery = %+v, %v; want new_face", first, err)
	}
	calls := h.calls()
	again, err := h.svc.AnalyzeMessage(ctx, "msg-1", testDevice, grace)
	if err != nil || again.Status != StatusNewFace || again.FaceID != first.FaceID || again.Recognized {
		t.Fatalf("redelivery = %+v, %v; want the first analysis %+v", again, err, first)
	}
	other, err := h.svc.AnalyzeMessage(ctx, "msg-2", testDevice, grace)
	if err != nil || other.Status != StatusMatched || other.FaceID != first.FaceID || similarity(other) != 100 {
		t.Fatalf("another message with the same photo = %+v, %v; want matched to %s", other, err, first.FaceID)
	}
	if got := h.calls(); got["search"] != calls["search"] || got["index"] != calls["index"] {
		t.Errorf("cache hits called Rekognition: %v, before %v", got, calls)
	}
}

// The same message redelivered to another worker (no shared cache): the face
// its first delivery indexed is recognised as its own by the ExternalImageId
// suffix, so the row says new_face, and nothing is indexed twice.
func TestAnalyzeMessageOnAnotherWorkerKeepsNewFace(t *testing.T) {
	t.Parallel()
	h := newHarness(t, PhotoAnalyzerConfig{})
	_, other := h.newService(t, PhotoAnalyzerConfig{CollectionID: h.svc.cfg.CollectionID})
	grace := fixture(t, "grace_hopper.jpg")
	ctx := context.Background()
	const msg = "0192f5c4-0000-7000-8000-000000000001"

	first, err := h.svc.AnalyzeMessage(ctx, msg, "cam-1", grace)
	if err != nil || first.Status != StatusNewFace {
		t.Fatalf("first delivery = %+v, %v", first, err)
	}
	if faces := h.fake.Faces(h.svc.cfg.CollectionID); len(faces) != 1 || faces[0].ExternalImageID != "cam-1:"+msg {
		t.Fatalf("indexed faces %+v, want ExternalImageId cam-1:%s", faces, msg)
	}
	again, err := other.AnalyzeMessage(ctx, msg, "cam-1", grace)
	if err != nil || again.Status != StatusNewFace || again.FaceID != first.FaceID || again.Recognized || again.Similarity != nil {
		t.Fatalf("redelivery on another worker = %+v, %v; want new_face %s", again, err, first.FaceID)
	}
	stranger, err := other.AnalyzeMessage(ctx, "0192f5c4-0000-7000-8000-000000000002", "cam-2", grace)
	if err != nil || stranger.Status != StatusMatched || stranger.FaceID != first.FaceID {
		t.Fatalf("another message with the photo = %+v, %v; want matched", stranger, err)
	}
	if n := len(h.fake.Faces(h.svc.cfg.CollectionID)); n != 1 {
		t.Errorf("%d faces indexed, want 1", n)
	}
}

func TestFaceTag(t *testing.T) {
	const id = "0192f5c4-0000-7000-8000-000000000001"
	if got := faceTag("00:0a:95:9d:68:16", id); got != "00:0a:95:9d:68:16:"+id {
		t.Errorf("faceTag = %q", got)
	}
	long := strings.Repeat("d", 300)
	if got := faceTag(long, id); len(got) != 255 || !strings.HasSuffix(got, ":"+id) {
		t.Errorf("faceTag of a long id = %d bytes %q", len(got), got[len(got)-40:])
	}
	if got := faceTag("cam", ""); got != "cam" {
		t.Errorf("faceTag without a message = %q", got)
	}
}
