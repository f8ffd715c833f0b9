// Package config parses and validates each binary's configuration from the
// environment, once, before anything starts. A wrong value stops the binary
// with a message naming the variable.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// Getenv looks a variable up; os.Getenv in production, a map in tests.
type Getenv func(string) string

// env reads variables and collects every error, so one start-up failure
// names every wrong variable at once.
type env struct {
	get  Getenv
	errs []error
}

func (e *env) fail(name, format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (e *env) err() error { return errors.Join(e.errs...) }

func (e *env) str(name, def string) string {
	if v := strings.TrimSpace(e.get(name)); v != "" {
		return v
	}
	return def
}

func (e *env) required(name string) string {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		e.fail(name, "is required")
	}
	return v
}

func (e *env) int(name string, def, min, max int) int {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e.fail(name, "must be an integer between %d and %d, got %q", min, max, v)
		return def
	}
	return n
}

func (e *env) float(name string, def, min, max float64) float64 {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < min || f > max || f != f {
		e.fail(name, "must be a number between %g and %g, got %q", min, max, v)
		return def
	}
	return f
}

func (e *env) duration(name string, def, min time.Duration) time.Duration {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		e.fail(name, "must be a duration of at least %s (e.g. 30s, 5m), got %q", min, v)
		return def
	}
	return d
}

func (e *env) bytes(name string, def int64) int64 {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return def
	}
	n, err := parseBytes(v)
	if err != nil || n <= 0 {
		e.fail(name, "must be a positive size such as 512MiB, 10GiB or 1048576, got %q", v)
		return def
	}
	return n
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			return n * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func (e *env) logLevel() slog.Level {
	var l slog.Level
	v := e.str("LOG_LEVEL", "info")
	if err := l.UnmarshalText([]byte(v)); err != nil {
		e.fail("LOG_LEVEL", "must be debug, info, warn or error, got %q", v)
	}
	return l
}

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
