package rekognitionlocal_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/internal/facetest"
	"github.com/challenge-v3/challenge-v3/services"
)

// TestPhotoAnalyzerAgainstServer drives the worker's own Rekognition code
// (services.PhotoAnalyzerService, the real SDK client, its default
// threshold of 90) against the server with real photos: the statuses a
// user sees in the photo table.
func TestPhotoAnalyzerAgainstServer(t *testing.T) {
	ctx := context.Background()
	srv := start(t, "")
	client := sdkClient(srv.url)
	newWorker := func() *services.PhotoAnalyzerService {
		svc, err := services.NewPhotoAnalyzerService(client, services.PhotoAnalyzerConfig{CollectionID: "fleet-drivers"}, prometheus.NewRegistry(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.EnsureCollection(ctx); err != nil {
			t.Fatalf("EnsureCollection: %v", err)
		}
		return svc
	}
	worker := newWorker()
	analyze := func(svc *services.PhotoAnalyzerService, device string, img []byte) services.Analysis {
		t.Helper()
		a, err := svc.Analyze(ctx, device, img)
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		return a
	}

	first := analyze(worker, "truck-7", facetest.Bytes(t, facetest.GraceHopper))
	if first.Status != services.StatusNewFace || first.FaceID == "" {
		t.Fatalf("first grace_hopper.jpg: %+v, want new_face", first)
	}
	// The same photo again, to a restarted worker (no cache): the server
	// recognises it.
	again := analyze(newWorker(), "truck-7", facetest.Bytes(t, facetest.GraceHopper))
	if again.Status != services.StatusMatched || again.FaceID != first.FaceID {
		t.Fatalf("grace_hopper.jpg again: %+v, want matched to %s", again, first.FaceID)
	}
	// Another photo of her: cropped, shrunk, brighter, re-encoded.
	altered := analyze(worker, "truck-9", facetest.Altered(t))
	if altered.Status != services.StatusMatched || altered.FaceID != first.FaceID || *altered.Similarity < 90 {
		t.Fatalf("altered copy: %+v, want matched to %s", altered, first.FaceID)
	}
	t.Logf("altered copy matched with similarity %.3f", *altered.Similarity)
	other := analyze(worker, "truck-7", facetest.Bytes(t, facetest.Astronaut))
	if other.Status != services.StatusNewFace || other.FaceID == first.FaceID {
		t.Fatalf("astronaut.png: %+v, want a new face", other)
	}
	for _, name := range []string{facetest.Coffee, facetest.Chelsea} {
		if a := analyze(worker, "truck-7", facetest.Bytes(t, name)); a.Status != services.StatusNoFace {
			t.Errorf("%s: %+v, want no_face", name, a)
		}
	}
	if n := srv.Faces(); n != 2 {
		t.Errorf("%d faces indexed, want 2", n)
	}
}
