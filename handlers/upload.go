package handlers

import (
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"
)

// A photo upload is read for as long as its client takes to send it, and it
// holds one of the PHOTO_MAX_INFLIGHT slots meanwhile. Two rules keep slow
// clients from holding all of them: each client IP gets a share of the
// slots (uploadSlots), and every request body must keep arriving at a
// minimum average rate once its first seconds have passed (pace).

// uploadSlots bounds the photo uploads in progress, all of them (memory) and
// each client's (fairness). Only clients with an upload in progress are
// tracked, so it holds at most total entries.
type uploadSlots struct {
	total, perClient int
	mu               sync.Mutex
	inUse            int
	clients          map[netip.Addr]int
}

func newUploadSlots(total, perClient int) *uploadSlots {
	return &uploadSlots{total: total, perClient: min(perClient, total), clients: make(map[netip.Addr]int)}
}

// acquire takes a slot for client, or returns the refusal to answer with:
// 503 when every slot is taken (the server's state: any client would be
// refused), else 429 when this client already has its share in progress
// (its own doing, which it can correct by sending one photo at a time).
func (s *uploadSlots) acquire(client netip.Addr) (release func(), err error) {
	key := bucketKey(client)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.inUse >= s.total:
		return nil, overloaded(s.total)
	case s.clients[key] >= s.perClient:
		return nil, tooManyUploads(s.perClient)
	}
	s.inUse++
	s.clients[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inUse--
		if s.clients[key]--; s.clients[key] == 0 {
			delete(s.clients, key)
		}
	}, nil
}

// overloadRetryAfter is the wait suggested when an upload or a download is
// refused for want of a slot: one frees as soon as one in progress ends.
const overloadRetryAfter = 2

// overloaded refuses a photo upload when limit of them are in progress,
// before its body is read: the API stays within its memory instead of
// failing for everyone.
func overloaded(limit int) error {
	return &refusal{
		Problem: Problem{
			Type:   ProblemTypeBase + "overloaded",
			Title:  "Too many photo uploads in progress",
			Status: http.StatusServiceUnavailable,
			Detail: "The server is handling " + strconv.Itoa(limit) + " photo uploads; nothing was read or accepted. Retry after a moment with the same Idempotency-Key.",
		},
		retryAfter: overloadRetryAfter,
		close:      true, // the body is not read
	}
}

func tooManyUploads(limit int) error {
	return &refusal{
		Problem: Problem{
			Type:   ProblemTypeBase + "too-many-uploads",
			Title:  "Too many photo uploads from this client",
			Status: http.StatusTooManyRequests,
			Detail: "This client IP already has " + strconv.Itoa(limit) + " photo uploads in progress; nothing was read or accepted. Send photos one after another, or retry after the number of seconds in Retry-After with the same Idempotency-Key.",
		},
		retryAfter: overloadRetryAfter,
		close:      true,
	}
}

// pace is the minimum upload rate: UPLOAD_MIN_RATE bytes per second on
// average, judged once UPLOAD_MIN_RATE_GRACE has passed. The zero pace
// judges nothing.
type pace struct {
	minRate float64 // bytes per second
	grace   time.Duration
	// readTimeout is the server's (HTTP_READ_TIMEOUT): the deadline set
	// here never goes past it, and is put back to it once the body is in.
	readTimeout time.Duration
}

// body returns r's body paced: before each read, the connection's read
// deadline is set to the moment the next byte would be late, start + grace
// + (bytes so far + 1) / minRate, so a trickle is cut off as soon as its
// average falls behind instead of holding its slot until the read timeout,
// and a stalled body needs no timer to notice. A body that misses it fails
// with a *slowBody error.
//
// done must be called once the handler has read what it will read: a body
// not read to its end gets the server's own deadline back, for net/http to
// read the rest after the answer and keep the connection.
func (pc pace) body(w http.ResponseWriter, r *http.Request) *pacedBody {
	b := &pacedBody{}
	pc.start(b, w, r)
	return b
}

// start makes b r's body paced, as body does, in memory the caller has.
//
// A body whose declared length could arrive whole at the minimum rate
// within the grace (a reading, a batch: at most 160 KiB at the defaults)
// gets one deadline for all of it, start + grace + length / minRate, set
// before its first read: it is judged on its average like any body, and a
// stalled one is cut off at most one grace later than by the per-byte
// schedule, while the read deadline, which rearms the connection's timer,
// is set once a request instead of before every read.
func (pc pace) start(b *pacedBody, w http.ResponseWriter, r *http.Request) {
	*b = pacedBody{ReadCloser: r.Body, pace: pc, rc: *http.NewResponseController(w), start: time.Now()}
	b.off = pc.minRate <= 0
	if !b.off && r.ContentLength > 0 && float64(r.ContentLength) <= pc.minRate*pc.grace.Seconds() {
		b.whole = r.ContentLength
	}
}

type pacedBody struct {
	io.ReadCloser
	pace  pace
	rc    http.ResponseController // by value: no allocation of its own
	start time.Time
	n     int64
	off   bool // not judged (zero pace, finished, or a connection without deadlines)
	// whole is the declared length of a body judged by one deadline for
	// all of it (see start), 0 for the per-byte schedule; set says that
	// deadline is in place.
	whole   int64
	set     bool
	tooSlow bool // the deadline in place is the pace's, not the read timeout
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if b.off {
		return b.ReadCloser.Read(p)
	}
	if !b.set {
		next := b.n + 1 // the next byte's due time
		if b.whole > 0 {
			next, b.set = b.whole, true // the last byte's, once
		}
		due := b.start.Add(b.pace.grace + time.Duration(float64(next)/b.pace.minRate*float64(time.Second)))
		timeout := b.serverDeadline()
		b.tooSlow = timeout.IsZero() || due.Before(timeout)
		if !b.tooSlow {
			due = timeout
		}
		if err := b.rc.SetReadDeadline(due); err != nil { // e.g. httptest.ResponseRecorder
			b.off = true
			return b.ReadCloser.Read(p)
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		// net/http clears the deadline itself as it starts watching the
		// idle connection for the client going away.
		b.off = true
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.off = true // the connection is broken off; leave it
		return n, &slowBody{pace: b.pace, readTimeout: !b.tooSlow}
	}
	return n, err
}

// serverDeadline is when the server's own read timeout ends this request;
// zero without one.
func (b *pacedBody) serverDeadline() time.Time {
	if b.pace.readTimeout <= 0 {
		return time.Time{}
	}
	return b.start.Add(b.pace.readTimeout)
}

// done stops judging the body and, unless it was read to its end, gives
// the connection the server's deadline back.
func (b *pacedBody) done() {
	if b.off {
		return
	}
	b.off = true
	_ = b.rc.SetReadDeadline(b.serverDeadline())
}

// slowBody is the error of a body cut off by the minimum rate, or by the
// read timeout.
type slowBody struct {
	pace        pace
	readTimeout bool
}

func (e *slowBody) Error() string {
	if e.readTimeout {
		return "request body not received within the read timeout"
	}
	return "request body slower than the minimum upload rate"
}

// answer is 408, and the connection is closed: the rest of the body is not
// wanted.
func (e *slowBody) answer() error {
	const retry = ", so it was cut off and nothing was accepted. Retry on a better connection, with the same Idempotency-Key."
	detail := "The request body arrived slower than " + perSecond(e.pace.minRate) + " on average after its first " + e.pace.grace.String() + retry
	if e.readTimeout {
		detail = "The request body was not received within " + e.pace.readTimeout.String() + retry
	}
	return &refusal{
		Problem: Problem{
			Type:   ProblemTypeBase + "upload-too-slow",
			Title:  "The request body arrived too slowly",
			Status: http.StatusRequestTimeout,
			Detail: detail,
		},
		close: true,
	}
}

// perSecond writes a rate in bytes per second for a reader: 32 KiB/s.
func perSecond(bps float64) string {
	switch {
	case bps >= 1<<20 && int64(bps)%(1<<20) == 0:
		return strconv.FormatInt(int64(bps)>>20, 10) + " MiB/s"
	case bps >= 1<<10 && int64(bps)%(1<<10) == 0:
		return strconv.FormatInt(int64(bps)>>10, 10) + " KiB/s"
	}
	return strconv.FormatFloat(bps, 'f', -1, 64) + " bytes/s"
}
