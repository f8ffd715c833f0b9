// Package messaging owns everything NATS: the connection options, the
// TELEMETRY and TELEMETRY_DLQ streams, the per-type durable consumers, the
// idempotency-key bucket, publishing and dead-lettering.
//
// Streams and consumers are created or updated idempotently by whichever
// binary starts first (EnsureTopology), so the API and the worker can start in
// any order.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// Names of the JetStream resources.
const (
	StreamName       = "TELEMETRY"
	DLQStreamName    = "TELEMETRY_DLQ"
	DLQSubjectPrefix = "dlq.telemetry."
	IdempotencyKV    = "TELEMETRY_IDEMPOTENCY"
	// ExhaustedStreamName keeps the server's max-deliveries advisories for
	// TELEMETRY until a worker has dead-lettered their messages (advisory.go).
	ExhaustedStreamName = "TELEMETRY_EXHAUSTED"
	exhaustedConsumer   = "telemetry-exhausted"
	// exhaustedMaxMsgs bounds the advisories kept (~300 bytes each). A bound
	// in messages, not bytes: a byte bound would be reserved from the store.
	exhaustedMaxMsgs = 100_000
)

// MaxMessageBytes is the largest message the streams accept: a 5 MiB image
// becomes ~6.7 MiB of base64 inside its JSON message. NATS servers must run
// with max_payload of at least this much (the default is 1 MB).
const MaxMessageBytes = 8 << 20

// MinDLQMaxBytes is the smallest DLQ bound: room for the largest dead letter
// next to the one before it.
const MinDLQMaxBytes = 2 * MaxMessageBytes

// ConsumerName is the durable consumer (queue) of one telemetry type.
func ConsumerName(t models.Type) string { return "telemetry-" + string(t) }

// DLQSubject is the dead-letter subject for messages of type t.
func DLQSubject(t models.Type) string { return DLQSubjectPrefix + string(t) }

// TopologyConfig sizes the streams and consumers.
type TopologyConfig struct {
	Replicas        int           // 1 on a single node, 3 in a cluster
	MaxBytes        int64         // backlog limit of TELEMETRY; full → publishes refused
	MaxAge          time.Duration // oldest unconsumed reading kept
	DuplicateWindow time.Duration // Nats-Msg-Id dedupe window (≥ 2 min)
	DLQMaxAge       time.Duration // how long dead letters are kept
	DLQMaxBytes     int64         // bound of TELEMETRY_DLQ; the oldest dead letters are discarded (and counted) to stay under it
	AckWait         time.Duration // first redelivery delay of an unacknowledged message
	MaxDeliver      int           // deliveries before a message is dead-lettered
	MaxAckPending   int           // unacknowledged messages in flight per consumer
}

// DefaultTopology is a single-node topology sized for a small fleet.
func DefaultTopology() TopologyConfig {
	return TopologyConfig{
		Replicas:        1,
		MaxBytes:        10 << 30,
		MaxAge:          7 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		DLQMaxAge:       30 * 24 * time.Hour,
		DLQMaxBytes:     1 << 30,
		AckWait:         30 * time.Second,
		MaxDeliver:      10,
		MaxAckPending:   1000,
	}
}

// Validate checks the configuration across fields.
func (c TopologyConfig) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return errors.New("replicas must be between 1 and 5")
	case c.DuplicateWindow < 2*time.Minute:
		return errors.New("duplicate window must be at least 2m")
	case c.MaxAge != 0 && c.MaxAge < c.DuplicateWindow:
		return errors.New("max age must not be shorter than the duplicate window")
	case c.AckWait < time.Second:
		return errors.New("ack wait must be at least 1s")
	case c.DLQMaxBytes < MinDLQMaxBytes:
		return fmt.Errorf("dlq max bytes must be at least %d MiB (two of the largest messages)", MinDLQMaxBytes>>20)
	case c.MaxDeliver < 2:
		return errors.New("max deliver must be at least 2")
	case c.MaxAckPending < 1:
		return errors.New("max ack pending must be at least 1")
	}
	return nil
}

// EnsureTopology creates or updates the streams, the consumers and the
// idempotency bucket. It is safe to call from every process at start-up.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, c TopologyConfig) error {
	const op = "messaging.EnsureTopology"
	if err := c.Validate(); err != nil {
		return ierr.E(ierr.Invalid, op, err)
	}
	subjects := make([]string, 0, len(models.Types))
	for _, t := range models.Types {
		subjects = append(subjects, t.Subject())
	}
	err := ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Accepted telemetry readings awaiting the worker",
		Subjects:    subjects,
		// Work-queue retention deletes a message once acked, so MaxBytes
		// bounds the backlog, not history, and discard-new makes a full
		// backlog refuse publishes (the API answers 503) instead of dropping
		// accepted readings.
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   c.Replicas,
		MaxBytes:   c.MaxBytes,
		MaxAge:     c.MaxAge,
		MaxMsgSize: MaxMessageBytes,
		Discard:    jetstream.DiscardNew,
		Duplicates: c.DuplicateWindow,
	})
	if err != nil {
		return translate(op+": stream "+StreamName, err)
	}
	err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        DLQStreamName,
		Description: "Telemetry messages that can never be stored, with the reason",
		Subjects:    []string{DLQSubjectPrefix + "*"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		// Bounded so that a flood of poison messages cannot fill the store
		// TELEMETRY needs. The oldest dead letters make room for new ones,
		// but the writers discard them (DLQ.makeRoom), not the server:
		// nats-server 2.10 drops messages over a limit with no advisory or
		// counter, so only a writer that removes them itself can count what
		// the bound cost. Discard-new makes the server refuse a write that
		// would still go over (two writers racing), which the writer
		// retries after making room: nothing leaves uncounted.
		MaxBytes:   c.DLQMaxBytes,
		MaxAge:     c.DLQMaxAge,
		MaxMsgSize: MaxMessageBytes,
		Discard:    jetstream.DiscardNew,
		Duplicates: c.DuplicateWindow,
	})
	if err != nil {
		return translate(op+": stream "+DLQStreamName, err)
	}
	err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:        ExhaustedStreamName,
		Description: "Max-deliveries advisories of TELEMETRY's consumers, until their messages are dead-lettered",
		// The server announces an exhausted message once, on core NATS; kept
		// here, the announcement waits for a worker that was down (a worker
		// crash-looping on the message is the usual reason it ran out) and
		// is retried until its dead letter is written.
		Subjects:   []string{maxDeliveriesSubject},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   c.Replicas,
		MaxAge:     c.MaxAge, // the exhausted message is gone by then too
		MaxMsgs:    exhaustedMaxMsgs,
		Discard:    jetstream.DiscardOld, // the periodic sweep finds what an overflow drops
		Duplicates: c.DuplicateWindow,
	})
	if err != nil {
		return translate(op+": stream "+ExhaustedStreamName, err)
	}
	_, err = js.CreateOrUpdateConsumer(ctx, ExhaustedStreamName, jetstream.ConsumerConfig{
		Durable:       exhaustedConsumer,
		Description:   "Workers dead-letter the message of each advisory",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1, // retried until the dead letter is written
		MaxAckPending: 64,
	})
	if err != nil {
		return translate(op+": consumer "+exhaustedConsumer, err)
	}
	for _, t := range models.Types {
		_, err := js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
			Durable:       ConsumerName(t),
			Description:   "Worker queue for " + string(t) + " readings",
			FilterSubject: t.Subject(),
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    c.MaxDeliver,
			// No BackOff: with one set, nats-server 2.10 offsets a
			// NakWithDelay from AckWait but checks it against
			// BackOff[redeliveries], so the worker's retry delays grew by
			// BackOff[n]-AckWait (a 200ms nak on the 2nd delivery came back
			// after AckWait). The worker's NakWithDelay schedule
			// (RETRY_BACKOFF) is the back-off; AckWait covers crashes.
			MaxAckPending: c.MaxAckPending,
		})
		if err != nil {
			return translate(op+": consumer "+ConsumerName(t), err)
		}
	}
	if s, err := js.Stream(ctx, "KV_"+IdempotencyKV); err == nil {
		if cfg := s.CachedInfo().Config; cfg.MaxAge == c.DuplicateWindow && cfg.Replicas == c.Replicas {
			return nil
		}
	}
	_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      IdempotencyKV,
		Description: "Idempotency-Key → message id, for the dedupe window",
		TTL:         c.DuplicateWindow,
		Replicas:    c.Replicas,
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return translate(op+": bucket "+IdempotencyKV, err)
	}
	return nil
}

// ensureStream creates the stream, or updates it when its configuration
// differs from want. An unchanged stream is left alone: every process start
// calls this, and a no-op update is not free (it takes the stream's locks and
// emits an advisory; nats-server 2.10 also races a concurrent update against
// account-info reads, nats-io/nats-server#8114).
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	if s, err := js.Stream(ctx, want.Name); err == nil && sameStream(s.CachedInfo().Config, want) {
		return nil
	}
	_, err := js.CreateOrUpdateStream(ctx, want)
	return err
}

// sameStream compares the fields EnsureTopology sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.Replicas == want.Replicas &&
		limit(have.MaxBytes) == limit(want.MaxBytes) && limit(have.MaxMsgs) == limit(want.MaxMsgs) && have.MaxAge == want.MaxAge && limit(int64(have.MaxMsgSize)) == limit(int64(want.MaxMsgSize)) &&
		have.Discard == want.Discard && have.Duplicates == want.Duplicates
}

// limit reads an unset limit (0 in a request, -1 from the server) as -1.
func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// translate maps a NATS error to the typed error callers act on.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return ierr.E(ierr.Unavailable, op, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNotFound, jetstream.JSErrCodeConsumerNotFound, jetstream.JSErrCodeMessageNotFound:
			return ierr.E(ierr.NotFound, op, err)
		case jsNoPeers: // a cluster still forming, not a bad request
			return ierr.E(ierr.Unavailable, op, err)
		}
		if apiErr.Code == 400 {
			return ierr.E(ierr.Invalid, op, fmt.Errorf("jetstream refused: %w", err))
		}
	}
	return ierr.E(ierr.Unavailable, op, err)
}
