package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/internal/uuidv7"
	"github.com/challenge-v3/challenge-v3/tracing"
)

// reqInfo is what the middleware chain learns about one request, shared by
// pointer so the outer layers (access log, metrics) see what the inner ones
// found (client IP, key name, the cause of a 5xx).
type reqInfo struct {
	id       string
	route    string // the ServeMux pattern, or "unmatched"
	clientIP netip.Addr
	keyName  string
	err      error // cause of a 5xx answer, logged once by the access log
	rec      *recorder
	// One allocation a request: the recorder rec points to, and the
	// X-Request-Id header's value slice.
	recorder recorder
	idHeader [1]string
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	info, _ := ctx.Value(ctxKey{}).(*reqInfo)
	return info
}

// recorder captures the status and size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) statusCode() int {
	if rw.status == 0 {
		return http.StatusOK // the handler wrote nothing
	}
	return rw.status
}

// requestLog is the outermost middleware: it assigns the request id (a sane
// incoming X-Request-Id is kept), resolves the route pattern and the client
// IP once for every inner layer, starts the request's span, and writes the
// access log (accessLevel says which requests get a line). fromProxy
// reports whether a request came through a trusted proxy, whose traceparent
// the span continues; nil trusts none.
func requestLog(log *slog.Logger, routeOf func(*http.Request) string, clientIP func(*http.Request) netip.Addr,
	fromProxy func(*http.Request) bool, next http.Handler) http.Handler {
	var sample sampler
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := headerValue(r.Header, "X-Request-Id")
		if !validRequestID(id) {
			id = uuidv7.New().String()
		}
		info := &reqInfo{id: id, route: routeOf(r), clientIP: clientIP(r)}
		info.idHeader[0] = id
		w.Header()["X-Request-Id"] = info.idHeader[:] // the canonical key: Set without its allocation
		info.recorder.ResponseWriter = w
		rec := &info.recorder
		info.rec = rec
		// The request's span (none while tracing is off): the handlers'
		// spans (a publish) are its children, and the access-log line
		// carries its trace id.
		ctx, span := tracing.StartServer(r.Context(), r.Header, r.Method, info.route, r.URL.Path,
			fromProxy != nil && tracing.On() && fromProxy(r))
		ctx = context.WithValue(ctx, ctxKey{}, info)
		next.ServeHTTP(rec, r.WithContext(ctx))

		status := rec.statusCode()
		tracing.EndServer(span, status, info.err)
		level, sampled := accessLevel(ctx, log, status, &sample, start)
		if !log.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, 11)
		attrs = append(attrs,
			slog.String("request_id", id),
			slog.String("method", r.Method),
			slog.String("route", info.route),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Int64("request_bytes", r.ContentLength),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("client_ip", info.clientIP.String()),
		)
		if info.keyName != "" {
			attrs = append(attrs, slog.String("key", info.keyName))
		}
		if sampled {
			attrs = append(attrs, slog.Bool("sampled", true))
		}
		if status >= 500 && info.err != nil {
			attrs = append(attrs, slog.String("error", info.err.Error()))
		}
		log.LogAttrs(ctx, level, "http request", attrs...)
	})
}

// accessLevel is the level of a request's access-log line. Every answer
// that is not a success is logged (5xx at error with its cause, 4xx at
// info): those are what an operator looks for. A success is a debug line,
// except one per second logged at info and marked sampled, which shows
// at the default level that requests flow and what a typical one looks
// like. At thousands of readings a second a line per success would be the
// API's largest cost after HTTP itself (formatting and a write per
// request) and gigabytes of logs a day that say what the request metrics
// already count; LOG_LEVEL=debug brings every line back.
func accessLevel(ctx context.Context, log *slog.Logger, status int, s *sampler, now time.Time) (slog.Level, bool) {
	switch {
	case status >= 500:
		return slog.LevelError, false
	case status >= 400:
		return slog.LevelInfo, false
	case log.Enabled(ctx, slog.LevelDebug):
		return slog.LevelDebug, false
	case s.take(now):
		return slog.LevelInfo, true
	}
	return slog.LevelDebug, false
}

// sampler lets one event through per second: a single atomic load for
// the others.
type sampler struct {
	next atomic.Int64 // unix nanoseconds before which nothing passes
}

func (s *sampler) take(now time.Time) bool {
	t := now.UnixNano()
	next := s.next.Load()
	return t >= next && s.next.CompareAndSwap(next, t+int64(time.Second))
}

// recoverPanics turns a panic below it into a 500 problem answer (when
// nothing was written yet) and an access-log error with the stack, instead
// of a dropped connection; it sits inside the metrics layer so the 500 is
// counted.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // the deliberate way to abort a response
				panic(v)
			}
			info := infoFrom(r.Context())
			err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
			if info.rec.status == 0 {
				writeError(w, r, ierr.E(ierr.Internal, "handlers", err))
			} else {
				info.rec.status = http.StatusInternalServerError // for the log and metrics
			}
			info.err = err
		}()
		next.ServeHTTP(w, r)
	})
}

// validRequestID accepts 1–128 characters of [A-Za-z0-9._:-]: enough for
// UUIDs, trace ids and proxy-generated ids, nothing that could forge a log
// line or a header.
func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// headerValue is h.Get(key) for a key already in canonical form, as every
// caller writes it: Header.Get first checks (or builds) the canonical form
// of the key it is given, byte by byte, on every call.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// chain composes middleware, outermost first.
func chain(h http.Handler, mw ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}
