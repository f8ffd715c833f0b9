package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

const (
	// rekognitionLatency is how long the test server takes to answer every
	// call. Each photo is a face the collection has never seen, so the
	// worker makes two calls (SearchFacesByImage finds no match, IndexFaces
	// adds it): about 100 ms a photo one at a time.
	rekognitionLatency = 50 * time.Millisecond
	// photosPerSlot is how many photos a round queues per photo in flight,
	// so that every round lasts about the same (3 s at 100 ms a photo).
	photosPerSlot = 30
	// photoEfficiency is the target: N photos in flight store at least
	// this fraction of N times what one at a time stores. The remaining
	// fifth is the worker's own time per photo (fetch, decode, seal, the
	// row and its audit row, the confirmed ack), which a 2-core machine
	// shared with the NATS server, PostgreSQL and the test server cannot
	// overlap perfectly, and the rounds' ramp up and down.
	photoEfficiency = 0.8
)

// photoConcurrencies are the PHOTO_CONCURRENCY values compared; 4 is the
// default.
var photoConcurrencies = []int{1, 4, 8}

func init() {
	Register(Section{
		Name:  "photos",
		About: "the worker's photo path with a Rekognition test server answering in 50 ms: 1 vs 4 vs 8 photos in flight",
		Run:   runPhotos,
	})
}

// runPhotos measures the worker draining queued photos through a
// Rekognition test server (the real AWS SDK client, pointed at it by the
// configuration's endpoint override) with 1, 4 and 8 photos in flight,
// in alternated rounds, and checks each photo was analysed and stored
// once.
func runPhotos(ctx context.Context, env *Env, rep *Report) error {
	images, err := benchImages(photosPerSlot * slices.Max(photoConcurrencies))
	if err != nil {
		return err
	}
	rates := make(map[int][]float64)
	for round := range env.Rounds {
		// Rotate the order, so no concurrency always runs first or last.
		order := append(slices.Clone(photoConcurrencies[round%len(photoConcurrencies):]), photoConcurrencies[:round%len(photoConcurrencies)]...)
		for _, c := range order {
			r, err := photoRound(ctx, env, images[:photosPerSlot*c], c)
			if err != nil {
				return err
			}
			rates[c] = append(rates[c], r)
		}
		env.Logf("photos round %d: %s", round+1, photoRatesLine(rates, round))
	}
	baseline := photoRowName(1)
	avg := 0
	for _, img := range images {
		avg += len(img)
	}
	avg /= len(images)
	for _, c := range photoConcurrencies {
		row := Row{Section: "photos", Name: photoRowName(c), Value: Median(rates[c]), Unit: "photos/s", Rounds: rates[c]}
		if c == 1 {
			row.Note = fmt.Sprintf("every call answered in %s, 2 calls a photo (new faces), %d KiB JPEGs",
				rekognitionLatency, avg>>10)
		} else {
			row.Baseline = baseline
			row.MinRatio = photoEfficiency * float64(c)
			row.Note = fmt.Sprintf("target %.1f× = %.1f × %d", row.MinRatio, photoEfficiency, c)
		}
		if c == config.DefaultPhotoConcurrency {
			row.Note += " (the default)"
		}
		rep.Add(row)
	}
	return nil
}

func photoRowName(c int) string { return "PHOTO_CONCURRENCY=" + strconv.Itoa(c) }

func photoRatesLine(rates map[int][]float64, round int) string {
	var b bytes.Buffer
	for i, c := range photoConcurrencies {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d in flight %.1f photos/s", c, rates[c][round])
	}
	return b.String()
}

// photoRound queues one photo message per image in a fresh JetStream, runs
// the worker with concurrency photos in flight against a fresh test server
// and database until every photo is stored, and returns photos/s from the
// first stored photo on.
func photoRound(ctx context.Context, env *Env, images [][]byte, concurrency int) (float64, error) {
	fake := rekognitionfake.New()
	defer fake.Close()
	for _, op := range []string{rekognitionfake.OpCreateCollection, rekognitionfake.OpDescribeCollection,
		rekognitionfake.OpSearchFacesByImage, rekognitionfake.OpIndexFaces, rekognitionfake.OpDetectFaces} {
		fake.SetLatency(op, rekognitionLatency)
	}
	ns, err := env.NewNATS()
	if err != nil {
		return 0, err
	}
	defer ns.Stop()
	topo := messaging.DefaultTopology()
	now := time.Now().UTC().Truncate(time.Microsecond)
	photos := make([]models.Photo, len(images))
	for i, img := range images {
		photos[i] = models.Photo{
			Meta: models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "bench", ReceivedAt: now,
				DeviceID: fmt.Sprintf("bench-%03d", i), RecordedAt: now.Add(-time.Second)},
			ContentType: "image/jpeg",
			Image:       img,
		}
	}
	if err := queueReadings(ctx, ns.URL, topo, photos); err != nil {
		return 0, err
	}
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return 0, err
	}
	cfg, err := benchWorkerConfig(ns.URL, dsn, topo)
	if err != nil {
		return 0, err
	}
	cfg.PhotoConcurrency = concurrency
	cfg.RekognitionCollectionID = "bench-faces"
	cfg.RekognitionEndpoint = fake.URL
	cfg.AWSRegion = rekognitionfake.Region
	cfg.AWSCredentials = config.AWSCredentials{AccessKeyID: "AKIDBENCH", SecretAccessKey: "bench-secret"}
	m, err := runWorkerUntilStored(ctx, env, cfg, worker.Options{}, "photo", len(photos))
	if err != nil {
		return 0, err
	}
	if calls := fake.Calls(rekognitionfake.OpSearchFacesByImage); calls != len(photos) {
		return 0, fmt.Errorf("bench: %d SearchFacesByImage calls for %d photos: a photo was analysed twice or not at all", calls, len(photos))
	}
	return m.rate, checkPhotos(ctx, dsn, len(photos))
}

// checkPhotos fails unless the database holds want photos, each a new face
// with exactly its photo.stored audit row.
func checkPhotos(ctx context.Context, dsn string, want int) error {
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	var rows, newFaces, audits, unpaired int
	err = db.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM photo),
		(SELECT count(*) FROM photo WHERE recognition_status = 'new_face'),
		(SELECT count(*) FROM audit_log WHERE action = 'photo.stored'),
		(SELECT count(*) FROM photo p FULL JOIN (SELECT * FROM audit_log WHERE action = 'photo.stored') a
			ON a.message_id = p.message_id AND a.resource_id = p.id::text
			WHERE p.id IS NULL OR a.id IS NULL)`).Scan(&rows, &newFaces, &audits, &unpaired)
	if err != nil {
		return fmt.Errorf("bench: checking the stored photos: %w", err)
	}
	if rows != want || newFaces != want || audits != want || unpaired != 0 {
		return fmt.Errorf("bench: stored %d photos (%d new faces) and %d audit rows, %d unpaired; want %d each and none unpaired",
			rows, newFaces, audits, unpaired, want)
	}
	return nil
}

// benchImages makes n different JPEGs: one 640×480 picture with a
// different trailer after its end each time (decoders stop at the end
// marker; the digests differ, so neither the worker's cache nor the test
// server takes one photo for another).
func benchImages(n int) ([][]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			i := img.PixOffset(x, y)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = uint8(x), uint8(y), uint8(x^y), 255
		}
	}
	var base bytes.Buffer
	if err := jpeg.Encode(&base, img, &jpeg.Options{Quality: 85}); err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(slices.Clip(base.Bytes()), "bench-photo-%d", i)
	}
	return out, nil
}
