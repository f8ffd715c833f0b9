package tracing

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator is W3C Trace Context, the one format the system reads and
// writes: a message carries "traceparent" (and "tracestate") headers. It is
// fixed here rather than taken from the global, so that a test installing a
// provider needs nothing else to see one trace from the API to the worker.
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Header adapts message headers to the propagators: nats.Header and
// http.Header both convert to it. Keys are written as given (lower case, as
// W3C Trace Context names its fields) and looked up exactly first, then
// ignoring case, since HTTP canonicalises header names ("Traceparent") and
// NATS keeps them as written.
type Header map[string][]string

var _ propagation.TextMapCarrier = Header(nil)

// Get returns the first value of key, "" when absent.
func (h Header) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces the values of key, and any spelling of key in another case.
func (h Header) Set(key, value string) {
	for k := range h {
		if k != key && strings.EqualFold(k, key) {
			delete(h, k)
		}
	}
	h[key] = []string{value}
}

// Keys lists the keys of h.
func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx's span into hdr, a message's
// headers, and returns them: a new map when hdr is nil and there is a
// context to write, hdr itself (nil included) when ctx has no span
// (tracing off), allocating nothing then.
//
//	msg.Header = tracing.Inject(ctx, msg.Header)
func Inject(ctx context.Context, hdr map[string][]string) map[string][]string {
	// On first: looking for a span walks the whole context chain, on
	// every message, and finds none while tracing is off.
	if !On() || !trace.SpanContextFromContext(ctx).IsValid() {
		return hdr
	}
	if hdr == nil {
		hdr = make(map[string][]string, 2)
	}
	propagator.Inject(ctx, Header(hdr))
	return hdr
}

// Extract returns ctx with the remote span context hdr carries, to be the
// parent of the next span; ctx itself when tracing is off or hdr carries
// none.
func Extract(ctx context.Context, hdr map[string][]string) context.Context {
	if !On() {
		return ctx
	}
	return propagator.Extract(ctx, Header(hdr))
}
