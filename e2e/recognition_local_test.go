package e2e

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/facerec"
	"github.com/challenge-v3/challenge-v3/internal/facetest"
	"github.com/challenge-v3/challenge-v3/rekognitionlocal"
	"github.com/challenge-v3/challenge-v3/worker"
)

// The photo path with real face recognition: the worker, configured as
// `make run` configures it without AWS (AWS_ENDPOINT_URL_REKOGNITION and
// static dummy credentials), builds its own AWS SDK client and talks to
// rekognitionlocal, which detects and recognises the faces in the photos.

var (
	faceEngineOnce sync.Once
	faceEngine     *facerec.Engine
	faceEngineErr  error
)

// localRecognition serves rekognitionlocal on a loopback port, with its
// collections in a fresh folder, until the test ends. The engine (its
// models) is loaded once for the package.
func localRecognition(t *testing.T) (*rekognitionlocal.Server, string) {
	t.Helper()
	faceEngineOnce.Do(func() { faceEngine, faceEngineErr = facerec.New(facerec.Options{}) })
	if faceEngineErr != nil {
		t.Fatal(faceEngineErr)
	}
	srv, err := rekognitionlocal.New(rekognitionlocal.Options{Dir: t.TempDir(), Engine: faceEngine})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("rekognitionlocal: %v", err)
		}
	})
	return srv, "http://" + ln.Addr().String()
}

// startWorkerAt runs the worker as the dev stack does without AWS: its
// configuration names the endpoint and dummy credentials, and it builds
// the SDK client itself (standard retries, no test hooks).
func (s *stack) startWorkerAt(endpoint string) {
	s.t.Helper()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_REKOGNITION": endpoint,
		"AWS_REGION":                   "us-east-1",
		"AWS_ACCESS_KEY_ID":            "local",
		"AWS_SECRET_ACCESS_KEY":        "local",
	} {
		s.env[k] = v
	}
	cfg, err := config.LoadWorker(func(k string) string { return s.env[k] })
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- worker.Run(ctx, cfg, quietLog()) }()
	stopped := false
	s.worker = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			s.t.Errorf("worker: %v", err)
		}
	}
	s.t.Cleanup(s.worker)
}

// TestLocalRecognitionThroughTheWorker is the README's walkthrough and
// more: grace_hopper.jpg twice and astronaut.png once are new_face,
// matched, new_face; another photo of Grace Hopper (cropped, shrunk,
// brightened, re-encoded) is matched to her face; a photo of coffee has
// no face; and after a worker restart (its cache gone) the server alone
// recognises her.
func TestLocalRecognitionThroughTheWorker(t *testing.T) {
	srv, endpoint := localRecognition(t)
	s := newStack(t, nil)
	s.startWorkerAt(endpoint)

	postFile := func(device, name string) photoRow {
		t.Helper()
		status, out := s.postMultipart(device, "2026-11-28T10:00:00Z", facetest.Bytes(t, name))
		id, _ := out["id"].(string)
		if status != http.StatusAccepted || id == "" {
			t.Fatalf("POST /telemetry/photo %s = %d %v, want 202", name, status, out)
		}
		return s.photoRow(id) // waits for the row: photos are posted one after the other
	}

	hopper := postFile("cam-1", facetest.GraceHopper)
	again := postFile("cam-1", facetest.GraceHopper)
	other := postFile("cam-2", facetest.Astronaut)
	if hopper.status != "new_face" || hopper.faceID == nil {
		t.Fatalf("grace_hopper.jpg = %+v, want new_face with a face id", hopper)
	}
	if again.status != "matched" || !again.recognized || again.faceID == nil || *again.faceID != *hopper.faceID {
		t.Fatalf("grace_hopper.jpg again = %+v, want matched to %s", again, *hopper.faceID)
	}
	if other.status != "new_face" || other.faceID == nil || *other.faceID == *hopper.faceID {
		t.Fatalf("astronaut.png = %+v, want a new face other than %s", other, *hopper.faceID)
	}
	if got := s.statuses(); len(got) != 3 || got[0] != "new_face" || got[1] != "matched" || got[2] != "new_face" {
		t.Fatalf("photo table = %v, want [new_face matched new_face]", got)
	}

	// Another photo of the same person, which the worker's cache cannot know.
	altered := s.photoRow(s.accept("/telemetry/photo", photoBody("cam-3", facetest.Altered(t))))
	if altered.status != "matched" || altered.faceID == nil || *altered.faceID != *hopper.faceID ||
		altered.similarity == nil || *altered.similarity < 90 || *altered.similarity >= 100 {
		t.Fatalf("altered grace_hopper = %+v, want matched to %s with a similarity in [90, 100)", altered, *hopper.faceID)
	}
	t.Logf("altered copy matched with similarity %.3f", *altered.similarity)

	if r := postFile("cam-1", facetest.Coffee); r.status != "no_face" || r.recognized || r.faceID != nil {
		t.Fatalf("coffee.png = %+v, want no_face", r)
	}

	// A restarted worker has no cache: the identical photo is recognised by
	// the server from the collection (an identical face scores just under 100).
	s.stopWorker()
	s.startWorkerAt(endpoint)
	if r := postFile("cam-4", facetest.GraceHopper); r.status != "matched" || r.faceID == nil ||
		*r.faceID != *hopper.faceID || r.similarity == nil || *r.similarity >= 100 {
		t.Fatalf("grace_hopper.jpg to a restarted worker = %+v, want matched to %s by the server", r, *hopper.faceID)
	}

	if n := srv.Faces(); n != 2 {
		t.Errorf("the collection holds %d faces, want 2 (one per person)", n)
	}
	if n := s.dlqCount(); n != 0 {
		t.Errorf("DLQ holds %d messages, want 0", n)
	}
}

// statuses is the photo table's recognition_status column, oldest first.
func (s *stack) statuses() []string {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT recognition_status FROM photo ORDER BY id`)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var st string
		if err := rows.Scan(&st); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}
