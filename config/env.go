// Package config parses and validates each binary's configuration from the
// environment, once, before anything starts. A wrong value stops the binary
// with a message naming the variable.
//
// It is the only package that reads the environment: every binary and
// subcommand has its loader here (LoadAPI, LoadWorker, LoadMigrate,
// LoadDLQ), and each takes the lookup function (os.Getenv in a main, a map
// in tests and the dev stack). The AWS SDK still resolves its standard chain
// (profiles, roles, shared files) by itself; see Worker.
package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// Getenv looks a variable up; os.Getenv in production, a map in tests.
type Getenv func(string) string

// Defaults shared by the binaries and subcommands that reach NATS.
const (
	DefaultNATSURL = "nats://127.0.0.1:4222"
	// DefaultNATSConnectTimeout is how long start-up keeps trying to reach
	// NATS (the worker: and PostgreSQL); containers start in any order.
	DefaultNATSConnectTimeout = 30 * time.Second
)

// env reads variables and collects every error, so one start-up failure
// names every wrong variable at once. Its readers are in parse.go.
type env struct {
	get  Getenv
	errs []error
}

func (e *env) fail(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (e *env) err() error { return errors.Join(e.errs...) }

// topology reads the JetStream sizing shared by both binaries (whichever
// starts first creates the streams, so both must agree).
func (e *env) topology() messaging.TopologyConfig {
	d := messaging.DefaultTopology()
	t := messaging.TopologyConfig{
		Replicas:        e.int("NATS_REPLICAS", d.Replicas, 1, 5),
		MaxBytes:        e.bytes("STREAM_MAX_BYTES", d.MaxBytes),
		MaxAge:          e.duration("STREAM_MAX_AGE", d.MaxAge, time.Minute),
		DuplicateWindow: e.duration("STREAM_DUPLICATE_WINDOW", d.DuplicateWindow, 2*time.Minute),
		DLQMaxAge:       e.duration("DLQ_MAX_AGE", d.DLQMaxAge, time.Minute),
		AckWait:         e.duration("CONSUMER_ACK_WAIT", d.AckWait, time.Second),
		MaxDeliver:      e.int("CONSUMER_MAX_DELIVER", d.MaxDeliver, 2, 1000),
		MaxAckPending:   e.int("CONSUMER_MAX_ACK_PENDING", d.MaxAckPending, 1, 100000),
	}
	if err := t.Validate(); err != nil {
		e.fail("STREAM_*/CONSUMER_*", "%v", err)
	}
	return t
}

// checkShared applies the rules of the settings both binaries share.
func checkShared(lim models.Limits, topo messaging.TopologyConfig, fail func(name, format string, args ...any)) {
	if lim.MaxFutureSkew < 0 {
		fail("MAX_FUTURE_SKEW", "must not be negative")
	}
	if max := models.DefaultLimits().MaxPhotoBytes; lim.MaxPhotoBytes <= 0 || lim.MaxPhotoBytes > max {
		fail("Limits.MaxPhotoBytes", "must be between 1 and %d", max)
	}
	if err := topo.Validate(); err != nil {
		fail("STREAM_*/CONSUMER_*", "%v", err)
	}
}
