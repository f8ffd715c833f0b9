package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// runPhotos consumes the photo queue with PhotoConcurrency photos in flight
// until ctx is done. Each slot fetches a photo only when it is free to start
// on it (photoSlot). On shutdown the slots stop fetching at once, and photos
// being processed finish within ShutdownTimeout (work).
func (w *worker) runPhotos(ctx, work context.Context) error {
	var wg sync.WaitGroup
	for range w.cfg.PhotoConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.photoSlot(ctx, work)
		}()
	}
	wg.Wait()
	return nil
}

// handlePhoto validates, analyses, seals and stores one photo with its
// audit row, announces it if it was new, then acknowledges it. Traced, the
// photo's processing span (a child of its publish span) holds its
// Rekognition calls, its INSERT and its answer, and the lines logged about
// it carry its trace id.
func (w *worker) handlePhoto(ctx, work context.Context, m jetstream.Msg) {
	const t = models.TypePhoto
	start := time.Now()
	sctx, cancel := settleContext(work)
	defer cancel()
	spans := startMsgSpans(ctx, []received{{msg: m, at: start}})
	defer spans.end()
	sctx = spans.ctx(sctx, 0)
	// Its ack timer starts now, when processing does (photoSlot fetched it
	// just now; this also covers a delivery that sat in the connection), and
	// attempt restarts it while the analysis runs: a photo is never
	// redelivered to another worker mid-analysis, where its face would be
	// indexed twice.
	_ = m.InProgress()
	p, err := models.UnmarshalAs[models.Photo](m.Data(), w.cfg.Limits)
	if err != nil {
		spans.fail(0, err)
		w.settle(sctx, t, m, err)
		return
	}
	spans.decoded(0, p.Envelope())
	var (
		item     models.PhotoItem
		inserted bool
	)
	err = w.attempt(ctx, work, t, []jetstream.Msg{m}, func(actx context.Context) error {
		actx = spans.ctx(actx, 0)
		// A redelivered photo that was stored is not analysed again: indexing
		// the same face twice would give the person two face ids.
		stored, err := w.store.Stored(actx, t, p.MessageID)
		if err != nil || stored {
			return err
		}
		a, err := w.analyzer.AnalyzeMessage(actx, p.MessageID.String(), p.DeviceID, p.Image)
		if err != nil {
			return err
		}
		// The message id's 16 bytes are the additional data: a ciphertext
		// moved to another row does not decrypt.
		keyID, sealed, err := w.sealer.Seal(p.Image, p.MessageID[:])
		if err != nil {
			return err
		}
		item, inserted, err = w.store.InsertPhoto(actx, storage.Photo{
			Meta:              p.Meta,
			ContentType:       p.ContentType,
			SizeBytes:         len(p.Image),
			Ciphertext:        sealed,
			KeyID:             keyID,
			RecognitionStatus: string(a.Status),
			Recognized:        a.Recognized,
			FaceID:            a.FaceID,
			Similarity:        a.Similarity,
		})
		return err
	})
	if err != nil {
		spans.fail(0, err)
		if delay := w.settle(sctx, t, m, err); delay > 0 {
			w.log.WarnContext(sctx, "photo not stored; will be retried", "message_id", p.MessageID, "retry_in", delay, "err", err)
		}
		return
	}
	if inserted {
		w.announcer.announce(t, []stored{{id: item.ID, item: item}})
	}
	// A photo is costly to process again, so make the ack certain.
	if err := m.DoubleAck(sctx); err != nil {
		w.log.WarnContext(sctx, "photo stored but its ack was not confirmed; a redelivery will be counted as a duplicate",
			"message_id", p.MessageID, "err", err)
	}
	w.metrics.latency.WithLabelValues(string(t)).Observe(time.Since(start).Seconds())
	if inserted {
		w.metrics.count(t, outcomeStored, 1)
		spans.outcome(0, outcomeStored)
	} else {
		w.metrics.count(t, outcomeDuplicate, 1)
		spans.outcome(0, outcomeDuplicate)
	}
}
