package messaging

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// Connect dials NATS with the options every binary of the system needs:
// no reconnect buffer (a publish while disconnected fails at once instead of
// queueing in memory, so the API can answer 503 rather than a false 202) and
// endless reconnection in the background. It waits up to wait for the first
// connection.
func Connect(ctx context.Context, url, name string, wait time.Duration) (*nats.Conn, error) {
	const op = "messaging.Connect"
	deadline := time.Now().Add(wait)
	for {
		nc, err := nats.Connect(url,
			nats.Name(name),
			nats.ReconnectBufSize(-1),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(250*time.Millisecond),
			nats.Timeout(2*time.Second),
		)
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, ierr.E(ierr.Unavailable, op, fmt.Errorf("connecting to %s: %w", redactURL(url), err))
		}
		select {
		case <-ctx.Done():
			return nil, ierr.E(ierr.Unavailable, op, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// CheckMaxPayload fails when the server would refuse the largest message the
// system publishes.
func CheckMaxPayload(nc *nats.Conn) error {
	if mp := nc.MaxPayload(); mp < MaxMessageBytes {
		return ierr.Errorf(ierr.Invalid, "messaging.CheckMaxPayload",
			"NATS server max_payload is %d bytes; photos need at least %d (set max_payload: 8MB in the server config)", mp, MaxMessageBytes)
	}
	return nil
}

func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "***" + u[at:]
		}
	}
	return u
}

// MaxPendingPublishes bounds the publishes of one Publisher that await
// JetStream's ack. Past it a publish waits for a free slot (at most its
// timeout, then Unavailable): a JetStream that falls behind slows the API
// down instead of filling its memory. A reading's message is a few hundred
// bytes, so the bound is ~2 MiB of them; photos are bounded before this by
// their upload slots.
const MaxPendingPublishes = 8192

// Publisher publishes telemetry messages and waits for JetStream's ack.
//
// Publishes are asynchronous (one reply subscription for all of them, no
// round trip held per request) and each caller waits for its own ack, so a
// caller still hears success only once the message is stored.
type Publisher struct {
	js      jetstream.JetStream // async publishing: bounded pending, acks time out
	kv      jetstream.KeyValue
	timeout time.Duration
	// opts are a publish's options when its context leaves it the whole
	// timeout (the usual case): built once, not per message.
	opts []jetstream.PublishOpt
}

// noRetry makes a publish one attempt: retrying here would hide an outage
// from the client and eat its request timeout; the client retries with its
// Idempotency-Key instead.
var noRetry = jetstream.WithRetryAttempts(0)

// noHeaders is the header of a message that has none. nats.go gives such
// a message an empty map of its own whenever a publish has options, and
// writes to it only for options that set headers (message id, expected
// stream or sequence, TTL), which Publisher never passes: one shared empty
// map, never written, spares that allocation per message. Header bytes are
// sent only for a non-empty header, so the wire is the same.
var noHeaders = nats.Header{}

// NewPublisher returns a publisher on js's connection whose every publish
// gives up after timeout. EnsureTopology must have run.
func NewPublisher(ctx context.Context, js jetstream.JetStream, timeout time.Duration) (*Publisher, error) {
	const op = "messaging.NewPublisher"
	kv, err := js.KeyValue(ctx, IdempotencyKV)
	if err != nil {
		return nil, translate(op, err)
	}
	// A context of its own: the async options (pending bound, ack timeout)
	// belong to a JetStream context, and the caller's stays as it was.
	ajs, err := jetstream.New(js.Conn(),
		jetstream.WithPublishAsyncMaxPending(MaxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, ierr.E(ierr.Internal, op, err)
	}
	return &Publisher{js: ajs, kv: kv, timeout: timeout,
		opts: []jetstream.PublishOpt{noRetry, jetstream.WithStallWait(timeout)}}, nil
}

// Publish stores data on subject and returns only once the stream has
// acknowledged it, or an Unavailable error (NATS down, stream full, no ack
// within the timeout or before ctx ends). The timeout bounds the whole call,
// the wait for a free pending slot included, so a caller needs no deadline
// of its own to be answered within it.
//
// msgID, when not empty, is sent as Nats-Msg-Id: JetStream then drops a
// second message with the same id within the duplicate window. Only
// Idempotency-Key requests need that (their retries reuse the id); without
// one every message is new, and the server is spared the de-duplication
// (an entry per message for the whole window). Downstream, exactly-once
// rests on the unique message_id column either way.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	return p.start(ctx, subject, msgID, data).wait(ctx)
}

// Outgoing is one message of PublishAll.
type Outgoing struct {
	Subject string
	MsgID   string // Nats-Msg-Id, or "" for none (see Publish)
	Data    []byte
}

// PublishAll publishes every message at once and waits for each ack:
// errs[i] is nil once msgs[i] is stored, else it is Unavailable and
// msgs[i] may or may not be stored. One failure does not stop the others.
func (p *Publisher) PublishAll(ctx context.Context, msgs []Outgoing) (errs []error) {
	pending := make([]pendingAck, len(msgs))
	for i, m := range msgs {
		pending[i] = p.start(ctx, m.Subject, m.MsgID, m.Data)
	}
	errs = make([]error, len(msgs))
	for i := range pending {
		errs[i] = pending[i].wait(ctx)
	}
	return errs
}

// pendingAck is a publish sent (paf, under its span until wait ends it)
// or already failed (err). deadline, when set, is when the publish's
// timeout runs out: the ack's own timer started only once the message had
// a pending slot, so a publish that waited for one must not wait for its
// ack the whole timeout again.
type pendingAck struct {
	paf      jetstream.PubAckFuture
	span     trace.Span
	err      error
	deadline time.Time
}

// slotWaitSlack is how long a send may take before its ack wait gets a
// deadline of its own (a timer, see pendingAck): a send that found a free
// slot returns in microseconds, and its ack timer alone keeps the publish
// within the timeout plus this.
const slotWaitSlack = time.Millisecond

// start sends one message without waiting for its ack. When the pending
// bound is reached it waits for a slot, within the publish timeout and ctx.
// The message carries the trace context of its publish span (a child of
// ctx's, the request's), which the worker's processing continues.
func (p *Publisher) start(ctx context.Context, subject, msgID string, data []byte) pendingAck {
	const op = "messaging.Publish"
	ctx, span := tracing.StartPublish(ctx, subject, msgID)
	failed := func(err error) pendingAck {
		err = ierr.E(ierr.Unavailable, op, err)
		tracing.End(span, err)
		return pendingAck{err: err}
	}
	begun := time.Now()
	stall, opts := p.timeout, p.opts
	if d, ok := ctx.Deadline(); ok {
		if left := d.Sub(begun); left < stall {
			stall, opts = left, []jetstream.PublishOpt{noRetry, jetstream.WithStallWait(left)}
		}
	}
	if err := ctx.Err(); err != nil || stall <= 0 {
		return failed(cmp.Or(err, context.DeadlineExceeded))
	}
	m := &nats.Msg{Subject: subject, Data: data}
	if msgID != "" {
		m.Header = nats.Header{jetstream.MsgIDHeader: []string{msgID}}
	}
	m.Header = tracing.Inject(ctx, m.Header)
	if m.Header == nil {
		m.Header = noHeaders
	}
	paf, err := p.js.PublishMsgAsync(m, opts...)
	if err != nil {
		return failed(err)
	}
	a := pendingAck{paf: paf, span: span}
	if time.Since(begun) > slotWaitSlack {
		a.deadline = begun.Add(p.timeout)
	}
	return a
}

// wait returns once the message is acknowledged (nil) or has failed: an
// error ack (stream full), no ack within the publish timeout, a lost
// connection (nats.go fails every pending ack when it reconnects), or ctx.
// It ends the publish span.
func (a pendingAck) wait(ctx context.Context) error {
	if a.err != nil {
		return a.err
	}
	err := a.acked(ctx)
	tracing.End(a.span, err)
	return err
}

func (a pendingAck) acked(ctx context.Context) error {
	const op = "messaging.Publish"
	var late <-chan time.Time // nil: the ack's own timer bounds the wait
	if !a.deadline.IsZero() {
		t := time.NewTimer(time.Until(a.deadline))
		defer t.Stop()
		late = t.C
	}
	select {
	case ack := <-a.paf.Ok():
		// The stream is checked here rather than with an
		// Nats-Expected-Stream header on every message: stream subjects
		// cannot overlap, so only a TELEMETRY deleted and replaced by
		// another stream on its subjects could take the message.
		if ack.Stream != StreamName {
			return ierr.Errorf(ierr.Unavailable, op, "stored by stream %q, not %s", ack.Stream, StreamName)
		}
		return nil
	case err := <-a.paf.Err():
		return ierr.E(ierr.Unavailable, op, err)
	case <-ctx.Done():
		return ierr.E(ierr.Unavailable, op, ctx.Err())
	case <-late:
		return ierr.E(ierr.Unavailable, op, jetstream.ErrAsyncPublishTimeout)
	}
}

// ClaimIdempotencyKey maps (actor, kind, key) to a message id for the
// duplicate window. The first caller's candidate id wins; later callers get
// that id back. fingerprint identifies the request body: reusing a key for a
// different body is a Conflict.
func (p *Publisher) ClaimIdempotencyKey(ctx context.Context, actor, kind, key, candidateID, fingerprint string) (string, error) {
	const op = "messaging.ClaimIdempotencyKey"
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	sum := sha256.Sum256([]byte(actor + "\x00" + kind + "\x00" + key))
	kvKey := hex.EncodeToString(sum[:])
	value := candidateID + " " + fingerprint
	_, err := p.kv.Create(ctx, kvKey, []byte(value))
	if err == nil {
		return candidateID, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", ierr.E(ierr.Unavailable, op, err)
	}
	entry, err := p.kv.Get(ctx, kvKey)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) { // expired between the two calls
			return p.ClaimIdempotencyKey(ctx, actor, kind, key, candidateID, fingerprint)
		}
		return "", ierr.E(ierr.Unavailable, op, err)
	}
	id, fp, _ := strings.Cut(string(entry.Value()), " ")
	if fp != fingerprint {
		return "", ierr.Errorf(ierr.Conflict, op, "idempotency key was already used for a different request body")
	}
	return id, nil
}
