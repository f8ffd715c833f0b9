package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

const (
	// resubscribeFirst and resubscribeMax shape the back-off between
	// fetches of a consumer that keep failing.
	resubscribeFirst = 250 * time.Millisecond
	resubscribeMax   = 5 * time.Second
	// photoPollWait is how long one photo fetch waits for a photo.
	photoPollWait = 10 * time.Second
)

// photoSlot processes photos one at a time until ctx (the soft stop) is done,
// fetching each only when it can start on it: a photo never waits in a
// client buffer while its ack timer runs (it would be redelivered to another
// worker and analysed twice). A fetch that fails is retried with back-off
// and logged.
func (w *worker) photoSlot(ctx, work context.Context) {
	const t = models.TypePhoto
	var cons jetstream.Consumer
	failures := 0
	for ctx.Err() == nil {
		m, err := w.fetchOne(ctx, t, &cons)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			cons = nil
			failures++
			delay := min(resubscribeFirst<<min(failures-1, 8), resubscribeMax)
			w.log.Warn("consumer fetch failed; fetching again", "type", t, "retry_in", delay, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		failures = 0
		if m != nil {
			w.handlePhoto(ctx, work, m)
		}
	}
}

// fetchOne waits up to photoPollWait for one message of consumer t; nil, nil
// when none came.
func (w *worker) fetchOne(ctx context.Context, t models.Type, cons *jetstream.Consumer) (jetstream.Msg, error) {
	if *cons == nil {
		c, err := w.js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(t))
		if err != nil {
			return nil, err
		}
		*cons = c
	}
	fctx, cancel := context.WithTimeout(ctx, photoPollWait)
	defer cancel()
	batch, err := (*cons).Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	var m jetstream.Msg
	for msg := range batch.Messages() {
		m = msg
	}
	if err := batch.Error(); m == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, err
	}
	return m, nil
}
