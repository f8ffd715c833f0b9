package e2e

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
	"github.com/challenge-v3/challenge-v3/messaging"
)

func photoBody(device string, img []byte) map[string]any {
	return map[string]any{"device_id": device, "timestamp": "2026-11-28T10:00:00Z",
		"photo": base64.StdEncoding.EncodeToString(img)}
}

type photoRow struct {
	status     string
	recognized bool
	faceID     *string
	similarity *float64
}

func (s *stack) photoRow(id string) photoRow {
	s.t.Helper()
	s.waitCount(1, `SELECT count(*) FROM photo WHERE message_id = $1`, id)
	var r photoRow
	if err := s.db.QueryRow(context.Background(),
		`SELECT recognition_status, recognized, face_id, similarity FROM photo WHERE message_id = $1`, id).
		Scan(&r.status, &r.recognized, &r.faceID, &r.similarity); err != nil {
		s.t.Fatal(err)
	}
	return r
}

// A first photo of a person indexes a new face; the same photo again is
// matched to that face from the cache, without calling Rekognition.
func TestPhotoRecognitionNewFaceThenCachedMatch(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	img := readFixture(t, "grace_hopper.jpg")

	first := s.photoRow(s.accept("/telemetry/photo", photoBody("cam-1", img)))
	if first.status != "new_face" || first.recognized || first.faceID == nil || first.similarity != nil {
		t.Fatalf("first photo = %+v, want new_face with a face id", first)
	}
	if got := s.fake.Faces(collection); len(got) != 1 || got[0].FaceID != *first.faceID || !strings.HasPrefix(got[0].ExternalImageID, "cam-1:") {
		t.Fatalf("collection holds %+v, want the one new face for cam-1", got)
	}
	searches, indexes := s.fake.Calls(rekognitionfake.OpSearchFacesByImage), s.fake.Calls(rekognitionfake.OpIndexFaces)

	again := s.photoRow(s.accept("/telemetry/photo", photoBody("cam-2", img)))
	if again.status != "matched" || !again.recognized || again.faceID == nil || *again.faceID != *first.faceID ||
		again.similarity == nil || *again.similarity != 100 {
		t.Fatalf("same photo again = %+v, want matched to %s with similarity 100", again, *first.faceID)
	}
	if s.fake.Calls(rekognitionfake.OpSearchFacesByImage) != searches || s.fake.Calls(rekognitionfake.OpIndexFaces) != indexes {
		t.Error("a re-sent identical photo called Rekognition")
	}
	if n := len(s.fake.Faces(collection)); n != 1 {
		t.Errorf("collection holds %d faces, want 1 (no duplicate face indexed)", n)
	}
}

// A photo without a face is stored as no_face, once, and not dead-lettered.
func TestPhotoWithoutFaceIsStoredAsNoFace(t *testing.T) {
	s := newStack(t, nil)
	img := readFixture(t, "coffee.png")
	s.fake.SetNoFace(img)
	s.startWorker()
	r := s.photoRow(s.accept("/telemetry/photo", photoBody("cam-1", img)))
	if r.status != "no_face" || r.recognized || r.faceID != nil {
		t.Fatalf("faceless photo = %+v, want no_face", r)
	}
	if n := s.dlqCount(); n != 0 {
		t.Errorf("DLQ holds %d messages, want 0", n)
	}
}

// A throttling storm is retried with back-off until it passes; nothing is
// dead-lettered.
func TestThrottlingStormIsRetriedNotDeadLettered(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	// More throttles than the SDK's own attempts: the worker must Nak and
	// come back for it, several deliveries in a row.
	s.fake.FailNext(rekognitionfake.OpSearchFacesByImage, 8, rekognitionfake.Fault{Code: "ThrottlingException"})
	s.fake.FailNext(rekognitionfake.OpIndexFaces, 2, rekognitionfake.Fault{Code: "ProvisionedThroughputExceededException"})
	r := s.photoRow(s.accept("/telemetry/photo", photoBody("cam-1", readFixture(t, "astronaut.png"))))
	if r.status != "new_face" {
		t.Fatalf("photo after the storm = %+v, want new_face", r)
	}
	if n := s.dlqCount(); n != 0 {
		t.Errorf("DLQ holds %d messages after throttling, want 0", n)
	}
	if n := s.count(`SELECT count(*) FROM audit_log WHERE action = 'photo.stored'`); n != 1 {
		t.Errorf("%d photo.stored audit rows, want 1", n)
	}
}

// An image Rekognition cannot read ends in the DLQ with the reason, and no
// photo row is written.
func TestUndecodableImageIsDeadLettered(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	// JPEG magic and nothing else of a JPEG is refused at the door: it never
	// reaches the stream, so it can never fill the dead-letter queue.
	bad := append([]byte{0xFF, 0xD8, 0xFF, 0xE0}, []byte(strings.Repeat("not really a jpeg ", 64))...)
	if status, _ := s.post("/telemetry/photo", photoBody("cam-1", bad), nil); status != http.StatusUnsupportedMediaType {
		t.Fatalf("JPEG magic + junk: status %d, want 415", status)
	}
	// An image whose header decodes but that Rekognition cannot read (a
	// corrupt scan further in) is dead-lettered by the worker.
	s.fake.FailNext(rekognitionfake.OpSearchFacesByImage, 1, rekognitionfake.Fault{Code: "InvalidImageFormatException"})
	id := s.accept("/telemetry/photo", photoBody("cam-1", readFixture(t, "grace_hopper.jpg")))

	s.eventually("dead letter", func() (bool, string) { return s.dlqCount() == 1, "" })
	st, err := s.js.Stream(context.Background(), messaging.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := st.GetLastMsgForSubject(context.Background(), "dlq.telemetry.photo")
	if err != nil {
		t.Fatal(err)
	}
	if reason := dl.Header.Get(messaging.HeaderDLQReason); !strings.Contains(reason, "InvalidImageFormat") {
		t.Errorf("dead letter reason = %q, want it to name InvalidImageFormatException", reason)
	}
	s.waitCount(1, `SELECT count(*) FROM audit_log WHERE action = 'message.dead_lettered' AND message_id = $1`, id)
	if n := s.count(`SELECT count(*) FROM photo`); n != 0 {
		t.Errorf("photo holds %d rows, want 0", n)
	}
}

// A misconfiguration (access denied) pauses photos: nothing is
// dead-lettered, and once it is fixed the photo is stored.
func TestAccessDeniedHoldsPhotosUntilFixed(t *testing.T) {
	s := newStack(t, nil)
	s.startWorker()
	s.fake.FailNext(rekognitionfake.OpSearchFacesByImage, -1, rekognitionfake.Fault{Code: "AccessDeniedException"})
	id := s.accept("/telemetry/photo", photoBody("cam-1", readFixture(t, "grace_hopper.jpg")))

	s.eventually("denied calls", func() (bool, string) {
		return s.fake.Calls(rekognitionfake.OpSearchFacesByImage) >= 3, ""
	})
	time.Sleep(200 * time.Millisecond)
	if n := s.dlqCount(); n != 0 {
		t.Fatalf("DLQ holds %d messages during a misconfiguration, want 0", n)
	}
	if n := s.count(`SELECT count(*) FROM photo`); n != 0 {
		t.Fatalf("photo stored during a misconfiguration")
	}
	s.fake.ClearFaults()
	if r := s.photoRow(id); r.status != "new_face" {
		t.Fatalf("photo after the fix = %+v, want new_face", r)
	}
}
