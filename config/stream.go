package config

import "time"

// Stream configures the live stream GET /telemetry/stream (SPEC §8). A
// zero field means its default, so a configuration built by hand (tests,
// the dev stack) needs none of them.
type Stream struct {
	// Heartbeat is the interval of the ": heartbeat" comment that keeps
	// proxies and load balancers from closing an idle stream; keep it under
	// their idle timeout (often 30–60 s).
	Heartbeat time.Duration
	// ClientBuffer is how many events may wait for one client. A client
	// that falls this far behind is disconnected (it reconnects with
	// Last-Event-ID) instead of slowing the others or growing memory.
	ClientBuffer int
	// MaxClients caps the connected stream clients; past it a new one is
	// answered 503 with Retry-After.
	MaxClients int
}

// Defaults and bounds of the live stream.
const (
	DefaultStreamHeartbeat    = 15 * time.Second
	DefaultStreamClientBuffer = 256
	DefaultStreamMaxClients   = 10_000

	minStreamHeartbeat    = time.Second
	maxStreamHeartbeat    = 10 * time.Minute
	maxStreamClientBuffer = 65_536
	maxStreamClients      = 1_000_000
)

// stream reads the live stream's variables.
func (e *env) stream() Stream {
	return Stream{
		Heartbeat:    e.duration("STREAM_HEARTBEAT", DefaultStreamHeartbeat, minStreamHeartbeat),
		ClientBuffer: e.int("STREAM_CLIENT_BUFFER", DefaultStreamClientBuffer, 1, maxStreamClientBuffer),
		MaxClients:   e.int("STREAM_MAX_CLIENTS", DefaultStreamMaxClients, 1, maxStreamClients),
	}
}

// check applies the bounds to a configuration built by hand as well as
// loaded; zero (the default) always passes.
func (s Stream) check(fail func(name, format string, args ...any)) {
	if s.Heartbeat < 0 || s.Heartbeat > maxStreamHeartbeat {
		fail("STREAM_HEARTBEAT", "must be a duration between %s and %s", minStreamHeartbeat, maxStreamHeartbeat)
	}
	if s.ClientBuffer < 0 || s.ClientBuffer > maxStreamClientBuffer {
		fail("STREAM_CLIENT_BUFFER", "must be an integer between 1 and %d", maxStreamClientBuffer)
	}
	if s.MaxClients < 0 || s.MaxClients > maxStreamClients {
		fail("STREAM_MAX_CLIENTS", "must be an integer between 1 and %d", maxStreamClients)
	}
}

// WithDefaults is s with every zero field set to its default.
func (s Stream) WithDefaults() Stream {
	if s.Heartbeat == 0 {
		s.Heartbeat = DefaultStreamHeartbeat
	}
	if s.ClientBuffer == 0 {
		s.ClientBuffer = DefaultStreamClientBuffer
	}
	if s.MaxClients == 0 {
		s.MaxClients = DefaultStreamMaxClients
	}
	return s
}
