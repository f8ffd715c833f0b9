package messaging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/ierr"
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

// Publisher publishes telemetry messages and waits for JetStream's ack.
type Publisher struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	timeout time.Duration
}

// NewPublisher returns a publisher whose every publish gives up after
// timeout. EnsureTopology must have run.
func NewPublisher(ctx context.Context, js jetstream.JetStream, timeout time.Duration) (*Publisher, error) {
	kv, err := js.KeyValue(ctx, IdempotencyKV)
	if err != nil {
		return nil, translate("messaging.NewPublisher", err)
	}
	return &Publisher{js: js, kv: kv, timeout: timeout}, nil
}

// Publish stores data on subject under msgID (JetStream drops a second
// message with the same id within the duplicate window). It returns only
// once the stream has acknowledged the message, or an Unavailable error.
func (p *Publisher) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	const op = "messaging.Publish"
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// One attempt only: retrying here would hide an outage from the client
	// and eat its request timeout; the client retries with its key instead.
	_, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader: []string{msgID},
	}}, jetstream.WithRetryAttempts(0), jetstream.WithExpectStream(StreamName))
	if err != nil {
		return ierr.E(ierr.Unavailable, op, err)
	}
	return nil
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
