package worker_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/services"
	"github.com/challenge-v3/challenge-v3/worker"
)

type fixedBackoff time.Duration

func (d fixedBackoff) BackoffDelay(int, error) (time.Duration, error) { return time.Duration(d), nil }

// emulatedRekognition is the local Rekognition emulator and a real SDK
// client pointed at it (production retry policy, short back-off).
func emulatedRekognition(t *testing.T) (*rekognitionfake.Server, *rekognition.Client) {
	t.Helper()
	srv := rekognitionfake.New()
	t.Cleanup(srv.Close)
	client := rekognition.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: func() aws.Retryer {
			return services.NewRetryer(func(o *retry.StandardOptions) { o.Backoff = fixedBackoff(time.Millisecond) })
		},
	}, func(o *rekognition.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	return srv, client
}

func TestPhotoRecognitionOutcomes(t *testing.T) {
	t.Parallel()
	fake, client := emulatedRekognition(t)
	e := newTestEnv(t, func(c *config.Worker) {
		c.RekognitionCollectionID = "fleet-faces"
		c.Topology.AckWait = 4 * time.Second // shorter than the hold below
		c.Topology.MaxDeliver = 10
		// Generous: the SDK signs and encodes ~1 MB photos, slow under -race.
		c.RecognitionTimeout = 1900 * time.Millisecond
	})
	e.start(worker.Options{Rekognition: client})
	if got := fake.Collections(); len(got) != 1 || got[0] != "fleet-faces" {
		t.Fatalf("collections at start-up: %v", got)
	}
	hopper, coffee := readFixture(t, "grace_hopper.jpg"), readFixture(t, "coffee.png")
	fake.SetNoFace(coffee)

	storeAndGet := func(img []byte) (models.Photo, string) {
		t.Helper()
		p := photoReading(img)
		e.publish(models.TypePhoto, p)
		// Generous: a call that runs out of RecognitionTimeout on a loaded
		// machine is retried (100 ms back-off here), which is slower, not wrong.
		e.waitFor(30*time.Second, "photo row", func() bool {
			return e.count(`SELECT count(*) FROM photo WHERE message_id = $1`, p.MessageID) == 1
		})
		return p, e.photoRow(p.MessageID).RecognitionStatus
	}

	t.Run("new face, then the same face matched", func(t *testing.T) {
		first, status := storeAndGet(hopper)
		row := e.photoRow(first.MessageID)
		if status != "new_face" || row.Recognized || row.FaceID == "" || row.Similarity != nil {
			t.Fatalf("first photo: %+v", row)
		}
		second, status := storeAndGet(hopper)
		again := e.photoRow(second.MessageID)
		if status != "matched" || !again.Recognized || again.FaceID != row.FaceID || again.Similarity == nil {
			t.Fatalf("second photo: %+v", again)
		}
		if audit := e.audit(second.MessageID); len(audit) != 1 || audit[0].Details["recognized"] != true || audit[0].Details["face_id"] != row.FaceID {
			t.Fatalf("audit %+v", audit)
		}
	})
	t.Run("no face is stored, not retried", func(t *testing.T) {
		p, status := storeAndGet(coffee)
		if row := e.photoRow(p.MessageID); status != "no_face" || row.FaceID != "" || row.Recognized {
			t.Fatalf("no-face photo: %+v", row)
		}
	})
	t.Run("throttling is retried with back-off", func(t *testing.T) {
		before := e.metric(`worker_messages_total{outcome="retried",type="photo"}`)
		fake.FailNext(rekognitionfake.OpSearchFacesByImage, 3, rekognitionfake.Fault{Code: "ThrottlingException"}) // all SDK attempts
		// A new face in a small photo: the SDK signs and sends it three
		// times within one RecognitionTimeout, which a 790 KB one
		// (astronaut.png) under -race on a loaded machine once exceeded.
		// Other bytes are another person to the emulator.
		p, status := storeAndGet(append(slices.Clone(hopper), "throttled"...))
		if status != "new_face" {
			t.Fatalf("status %q", status)
		}
		if after := e.metric(`worker_messages_total{outcome="retried",type="photo"}`); after < before+1 {
			t.Fatalf("retried %v → %v, want a retry", before, after)
		}
		if rows := e.audit(p.MessageID); len(rows) != 1 {
			t.Fatalf("%d audit rows", len(rows))
		}
	})
	t.Run("an image Rekognition refuses is dead-lettered", func(t *testing.T) {
		fake.FailNext(rekognitionfake.OpSearchFacesByImage, 1, rekognitionfake.Fault{Code: "InvalidImageFormatException"})
		p := photoReading(readFixture(t, "chelsea.png"))
		e.publish(models.TypePhoto, p)
		e.waitFor(10*time.Second, "dead letter", func() bool { return len(e.deadLetters()) == 1 })
		if r := e.deadLetters()[0].Header.Get(messaging.HeaderDLQReason); !strings.Contains(r, "invalid") {
			t.Fatalf("reason %q", r)
		}
		if n := e.count(`SELECT count(*) FROM photo WHERE message_id = $1`, p.MessageID); n != 0 {
			t.Fatal("refused photo stored")
		}
	})
	t.Run("a misconfiguration holds photos instead of dead-lettering them", func(t *testing.T) {
		fake.FailNext(rekognitionfake.OpSearchFacesByImage, -1, rekognitionfake.Fault{Code: "AccessDeniedException"})
		deliveredBefore := e.consumerInfo(models.TypePhoto).Delivered.Consumer
		dlqBefore := len(e.deadLetters())
		p := photoReading(readFixture(t, "chelsea.png"))
		e.publish(models.TypePhoto, p)
		e.waitFor(5*time.Second, "paused gauge", func() bool { return e.metric(`worker_paused{reason="misconfigured",type="photo"}`) == 1 })
		// Longer than AckWait: InProgress must keep the message from being
		// redelivered while it is held.
		time.Sleep(4500 * time.Millisecond)
		info := e.consumerInfo(models.TypePhoto)
		if info.NumAckPending != 1 || info.NumRedelivered != 0 || info.Delivered.Consumer != deliveredBefore+1 {
			t.Fatalf("while held: ack pending %d, redelivered %d, deliveries %d (before %d)",
				info.NumAckPending, info.NumRedelivered, info.Delivered.Consumer, deliveredBefore)
		}
		if len(e.deadLetters()) != dlqBefore {
			t.Fatal("a held photo was dead-lettered")
		}
		fake.ClearFaults() // the operator fixes the IAM policy
		e.waitFor(10*time.Second, "held photo stored", func() bool {
			return e.count(`SELECT count(*) FROM photo WHERE message_id = $1`, p.MessageID) == 1
		})
		e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypePhoto) })
		if g := e.metric(`worker_paused{reason="misconfigured",type="photo"}`); g != 0 {
			t.Fatalf("paused gauge %v after recovery", g)
		}
		if !strings.Contains(e.logs.String(), "processing paused") || !strings.Contains(e.logs.String(), "processing resumed") {
			t.Fatal("pause and resume not logged")
		}
	})
	if n := e.orphans(); n != 0 {
		t.Fatalf("%d orphans", n)
	}
}

// A photo's ack timer must not run while it waits for the worker: with
// Rekognition so slow that the queue of photos takes longer than AckWait,
// each photo is still delivered once and its face indexed once. (A photo
// that waited in a client buffer past AckWait was redelivered, and a second
// worker, or slot, could index the same face again.)
func TestSlowRecognitionDeliversEachPhotoOnce(t *testing.T) {
	t.Parallel()
	fake, client := emulatedRekognition(t)
	// Two calls per new face: ~0.8 s per photo, 4 s for the queue.
	const latency = 400 * time.Millisecond
	fake.SetLatency(rekognitionfake.OpSearchFacesByImage, latency)
	fake.SetLatency(rekognitionfake.OpIndexFaces, latency)
	e := newTestEnv(t, func(c *config.Worker) {
		c.RekognitionCollectionID = "fleet-faces"
		c.PhotoConcurrency = 1
		c.Topology.AckWait = 3 * time.Second
		// Under AckWait/2, as configuration requires, and well over the
		// latency: a call that timed out would be a retry, not the subject.
		c.RecognitionTimeout = 1400 * time.Millisecond
		c.Topology.MaxDeliver = 10
	})
	e.start(worker.Options{Rekognition: client})

	img := readFixture(t, "grace_hopper.jpg")
	const n = 5
	for i := range n {
		// Other bytes, another person to the emulator: each photo is a new
		// face, to be indexed exactly once.
		e.publish(models.TypePhoto, photoReading(append(slices.Clone(img), fmt.Sprintf("photo %d", i)...)))
	}
	start := time.Now()
	e.waitFor(30*time.Second, "every photo stored", func() bool { return e.count(`SELECT count(*) FROM photo`) == n })
	took := time.Since(start)
	e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypePhoto) })

	info := e.consumerInfo(models.TypePhoto)
	t.Logf("%d photos in %s with AckWait %s: %d deliveries, %d redelivered, %d IndexFaces calls",
		n, took.Round(time.Millisecond), e.cfg.Topology.AckWait, info.Delivered.Consumer, info.NumRedelivered, fake.Calls(rekognitionfake.OpIndexFaces))
	if took <= e.cfg.Topology.AckWait {
		t.Fatalf("the queue took %s, not longer than AckWait: the test proves nothing", took)
	}
	if info.Delivered.Consumer != n || info.NumRedelivered != 0 {
		t.Errorf("%d deliveries (%d redelivered) for %d photos, want each delivered once", info.Delivered.Consumer, info.NumRedelivered, n)
	}
	if calls, faces := fake.Calls(rekognitionfake.OpIndexFaces), len(fake.Faces("fleet-faces")); calls != n || faces != n {
		t.Errorf("IndexFaces called %d times, %d faces in the collection, want %d each", calls, faces, n)
	}
	if got := e.count(`SELECT count(DISTINCT face_id) FROM photo WHERE recognition_status = 'new_face'`); got != n {
		t.Errorf("%d distinct new faces stored, want %d", got, n)
	}
	if got := e.metric(`worker_messages_total{outcome="duplicate",type="photo"}`); got != 0 {
		t.Errorf("%v duplicate photo deliveries", got)
	}
}

// The same when the worker's only photo slot is held for longer than
// AckWait (a misconfiguration being fixed): the photos queued behind it are
// not taken from the server until the slot is free, so none is redelivered.
func TestPhotosQueuedBehindAHeldPhotoAreDeliveredOnce(t *testing.T) {
	t.Parallel()
	fake, client := emulatedRekognition(t)
	e := newTestEnv(t, func(c *config.Worker) {
		c.RekognitionCollectionID = "fleet-faces"
		c.PhotoConcurrency = 1
		c.Topology.AckWait = 2 * time.Second
		c.RecognitionTimeout = 900 * time.Millisecond
		c.Topology.MaxDeliver = 10
	})
	e.start(worker.Options{Rekognition: client})
	fake.FailNext(rekognitionfake.OpSearchFacesByImage, -1, rekognitionfake.Fault{Code: "AccessDeniedException"})

	img := readFixture(t, "grace_hopper.jpg")
	const n = 3
	for i := range n {
		e.publish(models.TypePhoto, photoReading(append(slices.Clone(img), fmt.Sprintf("queued %d", i)...)))
	}
	e.waitFor(5*time.Second, "the first photo held", func() bool {
		return e.metric(`worker_paused{reason="misconfigured",type="photo"}`) == 1
	})
	time.Sleep(e.cfg.Topology.AckWait + time.Second)
	fake.ClearFaults()
	e.waitFor(15*time.Second, "every photo stored", func() bool { return e.count(`SELECT count(*) FROM photo`) == n })
	e.waitFor(5*time.Second, "queue drained", func() bool { return e.drained(models.TypePhoto) })

	info := e.consumerInfo(models.TypePhoto)
	t.Logf("%d photos held %s behind one slot with AckWait %s: %d deliveries, %d redelivered, %d IndexFaces calls",
		n, e.cfg.Topology.AckWait+time.Second, e.cfg.Topology.AckWait, info.Delivered.Consumer, info.NumRedelivered, fake.Calls(rekognitionfake.OpIndexFaces))
	if info.Delivered.Consumer != n || info.NumRedelivered != 0 {
		t.Errorf("%d deliveries (%d redelivered) for %d photos, want each delivered once", info.Delivered.Consumer, info.NumRedelivered, n)
	}
	if calls := fake.Calls(rekognitionfake.OpIndexFaces); calls != n {
		t.Errorf("IndexFaces called %d times, want %d", calls, n)
	}
}
