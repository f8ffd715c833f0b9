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
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

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
		DLQMaxBytes:     e.bytes("DLQ_MAX_BYTES", d.DLQMaxBytes),
		AckWait:         e.duration("CONSUMER_ACK_WAIT", d.AckWait, time.Second),
		MaxDeliver:      e.int("CONSUMER_MAX_DELIVER", d.MaxDeliver, 2, 1000),
		MaxAckPending:   e.int("CONSUMER_MAX_ACK_PENDING", d.MaxAckPending, 1, 100000),
	}
	if t.DLQMaxBytes < messaging.MinDLQMaxBytes {
		e.fail("DLQ_MAX_BYTES", "must be at least %dMiB (two of the largest messages)", messaging.MinDLQMaxBytes>>20)
		t.DLQMaxBytes = d.DLQMaxBytes
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

// isExample reports whether v holds one of the placeholders .env.example
// puts where a secret goes (CHANGE_ME, change-me, REPLACE_WITH…): such a
// value was copied, not generated, and the binaries refuse it at start-up,
// so the example configuration cannot run as is with guessable secrets.
func isExample(v string) bool { return reExample.MatchString(v) }

// reExample matches a placeholder as a word of its own, so a real value
// such as "exchange-metrics" is not mistaken for one.
var reExample = regexp.MustCompile(`(?i)(^|[^a-z])(change[-_]?me|replace[-_](with|me))`)

// refuseExampleKeys fails ENCRYPTION_KEYS or ENCRYPTION_KEY when it still
// holds .env.example's placeholder, and from then on reads it as unset, so
// the key parser does not add a second, less helpful error. It reports
// whether either was refused.
func (e *env) refuseExampleKeys() bool {
	refused := map[string]bool{}
	for _, v := range []struct{ name, how string }{
		{"ENCRYPTION_KEYS", "generate each key with: openssl rand -base64 32, and list them as id:<key>"},
		{"ENCRYPTION_KEY", "generate the key with: openssl rand -base64 32"},
	} {
		if isExample(e.get(v.name)) {
			e.fail(v.name, "still has the example value of .env.example; %s", v.how)
			refused[v.name] = true
		}
	}
	if len(refused) == 0 {
		return false
	}
	get := e.get
	e.get = func(name string) string {
		if refused[name] {
			return ""
		}
		return get(name)
	}
	return true
}

// refuseExamplePassword fails name, a PostgreSQL DSN, when its password still
// holds .env.example's placeholder. The DSN is never echoed.
func (e *env) refuseExamplePassword(name, dsn string) {
	if dsn == "" {
		return
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return // the DSN reader has named the variable already
	}
	if isExample(cfg.Password) {
		e.fail(name, "the password still has the example value of .env.example (POSTGRES_PASSWORD or API_DB_PASSWORD there); generate one with: openssl rand -hex 24")
	}
}
