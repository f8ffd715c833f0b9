package worker

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// received is a message and when it reached the worker.
type received struct {
	msg jetstream.Msg
	at  time.Time
}

// insertBatch stores a batch of readings and returns those it inserted
// (storage.Store.InsertGPS, InsertGyroscope through storedItems).
type insertBatch[T models.Reading] func(context.Context, []T) ([]stored, error)

// stored is a reading the worker inserted (not a duplicate): its message id
// and its item as the read API serves it (models.GPSItem, GyroscopeItem or
// PhotoItem).
type stored struct {
	id   uuid.UUID
	item any
}

// storedItems adapts a storage insert that returns items to one that
// returns stored readings.
func storedItems[T models.Reading, I any](insert func(context.Context, []T) ([]I, error), meta func(I) models.ItemMeta) insertBatch[T] {
	return func(ctx context.Context, batch []T) ([]stored, error) {
		items, err := insert(ctx, batch)
		out := make([]stored, len(items))
		for i, it := range items {
			out[i] = stored{id: meta(it).ID, item: it}
		}
		return out, err
	}
}

// batchWriters is how many batches of one type are written at once. With
// one, the worker is idle while PostgreSQL runs a batch's statement and
// PostgreSQL is idle while the worker decodes the next batch, acknowledges
// the last one and announces its readings; with two, one batch is in the
// database while the other is prepared or settled, and a drain runs at the
// pace of the slower of the two sides instead of their sum. More would only
// wait: the consumer's MaxAckPending (twice BatchSize by default) bounds
// the messages out at once, and concurrent batches of the same devices
// queue on their device rows. Two batches written at once are exactly what
// two worker instances do, which the statements are built for (storage's
// lock order, ON CONFLICT on the message id).
const batchWriters = 2

// runBatches consumes the queue of reading type T (GPS or gyroscope) until
// ctx is done (work is the hard stop that bounds what follows, see attempt):
// messages are collected into a batch that is handed to one of
// batchWriters writers (flushBatch) when it holds BatchSize messages or its
// first message has waited BatchLinger. On shutdown it stops pulling, writes
// what it already holds (the open batch and the client buffer), waits for
// the writers, acknowledges it all, and returns nil. Subscription failures
// and database outages are handled by feed, never returned.
func runBatches[T models.Reading, P models.Message[T]](ctx, work context.Context, w *worker, insert insertBatch[T]) error {
	typ := models.TypeOf[T]()
	in := make(chan jetstream.Msg)
	// Two batches in the client buffer keep the next batch ready while one
	// is being written.
	go w.feed(ctx, typ, min(2*w.cfg.BatchSize, w.cfg.Topology.MaxAckPending), in)

	// Unbuffered: a full batch waits in the collector, not in a queue,
	// until a writer is free, and the linger of the next batch starts only
	// then.
	full := make(chan []received)
	var writers sync.WaitGroup
	for range batchWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for batch := range full {
				flushBatch[T, P](ctx, work, w, insert, batch)
			}
		}()
	}
	defer writers.Wait()
	defer close(full)

	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	var batch []received
	flush := func() {
		linger.Stop()
		if len(batch) > 0 {
			full <- batch
			batch = nil
		}
	}
	for {
		select {
		case m, ok := <-in:
			if !ok {
				flush()
				return nil
			}
			batch = append(batch, received{msg: m, at: time.Now()})
			if len(batch) == 1 {
				linger.Reset(w.cfg.BatchLinger)
			}
			if len(batch) >= w.cfg.BatchSize {
				flush()
			}
		case <-linger.C:
			flush()
		}
	}
}

// flushBatch validates a batch, writes the valid messages in one
// transaction, and only after the commit announces the readings it inserted
// and acknowledges every message (stored or duplicate). Invalid messages are
// dead-lettered on their own.
//
// Traced (worker/tracing.go), each message has its processing span, in the
// trace of the request that sent it, until it is answered; the batch has a
// span, a child of its first message's that links to every message's, and
// the INSERT is the batch's child. Lines logged about a message or the
// batch carry the trace id.
func flushBatch[T models.Reading, P models.Message[T]](ctx, work context.Context, w *worker, insert insertBatch[T], batch []received) {
	typ := models.TypeOf[T]()
	w.metrics.batchSize.WithLabelValues(string(typ)).Observe(float64(len(batch)))
	sctx, cancel := settleContext(work)
	defer cancel()
	spans := startMsgSpans(ctx, batch)
	defer spans.end()
	var (
		items []T
		good  []received
		at    = make([]int, 0, len(batch)) // at[j] is good[j]'s index in batch (and spans)
	)
	for i, r := range batch {
		v, err := models.UnmarshalAs[T, P](r.msg.Data(), w.cfg.Limits)
		if err != nil {
			spans.fail(i, err)
			w.settle(spans.ctx(sctx, i), typ, r.msg, err)
			continue
		}
		spans.decoded(i, P(&v).Envelope())
		items = append(items, v)
		good = append(good, r)
		at = append(at, i)
	}
	if len(items) == 0 {
		return
	}
	msgs := make([]jetstream.Msg, len(good))
	for i, r := range good {
		msgs[i] = r.msg
	}
	bctx, bspan := tracing.StartBatch(spans.ctx(ctx, at[0]), typ.Subject(), spans.links(at))
	var inserted []stored
	err := w.attempt(ctx, work, typ, msgs, func(actx context.Context) error {
		var err error
		inserted, err = insert(tracing.ContextWith(actx, bspan), items)
		return err
	})
	defer func() { tracing.End(bspan, err) }()
	if err != nil {
		if ierr.Is(err, ierr.Invalid) && len(items) > 1 {
			// The schema refused a row that validation let through: write the
			// messages one by one so only the culprit is dead-lettered.
			for i := range items {
				flushBatch[T, P](ctx, work, w, insert, good[i:i+1])
			}
			return
		}
		var delay time.Duration
		for j, r := range good {
			spans.fail(at[j], err)
			delay = max(delay, w.settle(spans.ctx(sctx, at[j]), typ, r.msg, err))
		}
		if delay > 0 {
			w.log.WarnContext(bctx, "batch not stored; will be retried", "type", typ, "messages", len(good), "retry_in_max", delay, "err", err)
		}
		return
	}
	// Committed. The announcements go into the connection's buffer ahead of
	// the acks, and the flush below sends both.
	w.announcer.announce(typ, inserted)
	isNew := make(map[uuid.UUID]bool, len(inserted))
	for _, r := range inserted {
		isNew[r.id] = true
	}
	stored, dup := 0, 0
	for i, r := range good {
		id := P(&items[i]).Envelope().MessageID
		if isNew[id] {
			stored++
			spans.outcome(at[i], outcomeStored)
			delete(isNew, id) // the same message twice in a batch: the second is a duplicate
		} else {
			dup++
			spans.outcome(at[i], outcomeDuplicate)
		}
		// Committed: a lost ack only means a redelivery that the unique
		// message_id turns into a counted duplicate.
		if err := r.msg.Ack(); err != nil {
			w.log.DebugContext(spans.ctx(sctx, at[i]), "ack not sent", "type", typ, "err", err)
		}
	}
	// One round trip makes sure the server has read every ack (and
	// announcement) of the batch.
	if err := w.nc.FlushWithContext(sctx); err != nil {
		w.log.WarnContext(bctx, "acks of a stored batch may be lost; the messages will come back as duplicates", "type", typ, "err", err)
	}
	now := time.Now()
	latency := w.metrics.latency.WithLabelValues(string(typ))
	for _, r := range good {
		latency.Observe(now.Sub(r.at).Seconds())
	}
	w.metrics.count(typ, outcomeStored, stored)
	w.metrics.count(typ, outcomeDuplicate, dup)
	w.log.DebugContext(bctx, "batch stored", "type", typ, "stored", stored, "duplicates", dup, "took", now.Sub(batch[0].at))
}
