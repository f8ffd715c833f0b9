package messaging

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/models"
)

// OldestUnacked is how long, at now, the oldest message of type t that
// stream (TELEMETRY) still holds has been waiting, and false when it holds
// none. TELEMETRY is a work queue: a message leaves it once acknowledged
// (stored, or dead-lettered), so the first message on t's subject is the
// oldest not yet processed, delivered or not. This is exact, where a
// backlog divided by a drain rate is an estimate that a stalled worker
// (rate 0) or a burst turns into nonsense.
//
// It reads that one message (a direct get by subject, no consumer state
// touched), payload included: a photo costs up to MaxMessageBytes, so
// callers polling it skip types with nothing unacknowledged. The age is
// measured against the server's clock of the publish; a worker's clock
// behind it reads 0, not a negative age.
func OldestUnacked(ctx context.Context, stream jetstream.Stream, t models.Type, now time.Time) (time.Duration, bool, error) {
	m, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(t.Subject()))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, translate("messaging.OldestUnacked", err)
	}
	return max(now.Sub(m.Time), 0), true, nil
}
