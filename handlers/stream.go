package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// RouteStream is the live stream's route pattern.
const RouteStream = "GET /telemetry/stream"

const (
	// streamRetry is the reconnection delay the stream advises (the SSE
	// "retry:" field): after a drop, a restart or a capped replay, an
	// EventSource comes back this much later with Last-Event-ID.
	streamRetry = 3 * time.Second
	// streamReplayLimit caps one Last-Event-ID replay (the memory it holds:
	// a few MB of items). Past it the stream ends and the client reconnects
	// from the last id it received, so a long absence is caught up in
	// chunks; see replayAfter for when that cannot make progress.
	streamReplayLimit = 10_000
	// streamReplaySlots bounds the replays in progress at once, and so
	// their memory, whatever the number of clients reconnecting together.
	streamReplaySlots = 16
	// streamWriteTimeout bounds each write to a client. The server's own
	// WriteTimeout (sized for uploads) would end every stream after a
	// minute, so the stream replaces it with a deadline per write: a client
	// that stops reading is cut off this long after its socket fills.
	streamWriteTimeout = 10 * time.Second
	// streamDedupWindow is how long after a replay a live event is checked
	// against the replayed ids: long enough for an announcement that was in
	// flight while the replay read its row.
	streamDedupWindow = 30 * time.Second
)

// storedReplayer reads back what was stored after an event id, for
// Last-Event-ID; *storage.Reader implements it.
type storedReplayer interface {
	StoredAfter(ctx context.Context, lastID uuid.UUID, types []models.Type, deviceID string, limit int) (events []storage.Event, found bool, err error)
}

// stream serves GET /telemetry/stream: Server-Sent Events of the readings
// the worker stores, filtered per client, after an optional replay.
type stream struct {
	hub         *Hub
	replay      storedReplayer // nil: no database, live events only
	replayLimit int            // streamReplayLimit, lower in tests
	slots       chan struct{}  // one per replay in progress
}

// streamRoute is the stream's handler: live events from hub, replayed ones
// from rd when it can (a *storage.Reader can). Without a hub (a handler
// built without the live stream) the route is not configured.
func streamRoute(hub *Hub, rd any) http.HandlerFunc {
	if hub == nil {
		return notConfigured
	}
	replay, _ := rd.(storedReplayer)
	return newStream(hub, replay).serve
}

// newStream returns the stream handler; replay may be nil.
func newStream(hub *Hub, replay storedReplayer) *stream {
	return &stream{hub: hub, replay: replay, replayLimit: streamReplayLimit,
		slots: make(chan struct{}, streamReplaySlots)}
}

// streamQuery is a validated stream request.
type streamQuery struct {
	types  typeSet
	device string     // normalised; "" = every device
	last   *uuid.UUID // Last-Event-ID; nil = live only
}

func (s *stream) serve(w http.ResponseWriter, r *http.Request) {
	q, err := parseStreamQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Subscribing before the replay reads PostgreSQL leaves no gap between
	// the two: anything committed after the query is announced after it.
	c, err := s.hub.subscribe(q.types, q.device)
	if err != nil {
		writeStreamRefused(w, r, err, s.hub.cfg.MaxClients)
		return
	}
	defer s.hub.unsubscribe(c)

	rc := http.NewResponseController(w)
	// The server's ReadTimeout also applies to its background read that
	// watches for the client hanging up, and would cancel the request when
	// it fires: a stream has no deadline on reading.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	out := &sseWriter{w: w, rc: rc}
	if out.write([]byte("retry: "+strconv.FormatInt(streamRetry.Milliseconds(), 10)+"\n\n")) != nil || out.flush() != nil {
		return
	}

	var seen map[uuid.UUID]struct{}
	if q.last != nil {
		var more bool
		if seen, more = s.replayAfter(r.Context(), out, q); !more {
			return
		}
	}
	s.live(r.Context(), out, c, seen)
}

// replayAfter writes what was stored after q.last and returns the ids it
// wrote (for de-duplication against the live events queued meanwhile) and
// whether the stream goes on. A database that cannot answer skips the
// replay: the live events still flow.
func (s *stream) replayAfter(ctx context.Context, out *sseWriter, q streamQuery) (map[uuid.UUID]struct{}, bool) {
	if s.replay == nil {
		return nil, out.comment("replay unavailable on this server; live events follow") == nil
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return nil, false
	}
	events, found, err := s.replay.StoredAfter(ctx, *q.last, q.types.list(), q.device, s.replayLimit+1)
	switch {
	case ctx.Err() != nil:
		return nil, false
	case err != nil:
		s.hub.log.LogAttrs(ctx, slog.LevelWarn, "stream replay skipped", slog.String("request_id", requestID(ctx)),
			slog.String("last_event_id", q.last.String()), slog.String("error", err.Error()))
		return nil, out.comment("replay unavailable: the database did not answer; live events follow") == nil
	case !found:
		return nil, out.comment("last event id "+q.last.String()+" not found; live events follow") == nil
	}
	capped := len(events) > s.replayLimit
	resumable := false
	if capped {
		events = events[:s.replayLimit]
		resumable = spansGrace(events[0].Data, events[len(events)-1].Data)
	}
	seen := make(map[uuid.UUID]struct{}, len(events))
	for i := range events {
		ev := events[i]
		events[i] = storage.Event{} // what was written can be collected
		if out.write(eventFrame(ev.Type, ev.ID, ev.Data)) != nil {
			return nil, false
		}
		s.hub.m.sent.WithLabelValues("replay").Inc()
		seen[ev.ID] = struct{}{}
	}
	switch {
	case resumable:
		// The client resumes from the last id it got: no gap, and no
		// single answer holds a long absence in memory.
		_ = out.comment("replay stopped after " + strconv.Itoa(s.replayLimit) +
			" events; reconnect with the last event id to continue")
		return nil, false
	case capped:
		// A resumed replay would start over within the same moments and
		// never get past them; carry on live and say what is missing.
		return seen, out.comment("replay capped at "+strconv.Itoa(s.replayLimit)+" events (more were stored within "+
			storage.ReplayGrace.String()+"); readings stored between the last replayed one and the live events are "+
			"not replayed: the list routes have them") == nil
	}
	return seen, out.comment("events replayed: "+strconv.Itoa(len(seen))+"; live events follow") == nil
}

// live writes the client's events as they are announced, with heartbeats,
// until the client leaves, falls too far behind, or the server shuts down.
// Events already replayed (seen) are skipped for streamDedupWindow.
func (s *stream) live(ctx context.Context, out *sseWriter, c *streamClient, seen map[uuid.UUID]struct{}) {
	dedupUntil := time.Now().Add(streamDedupWindow)
	heartbeat := time.NewTicker(s.hub.cfg.Heartbeat)
	defer heartbeat.Stop()
	write := func(ev *streamEvent) error {
		if seen != nil {
			if _, dup := seen[ev.id]; dup {
				return nil
			}
		}
		if err := out.write(ev.frame); err != nil {
			return err
		}
		s.hub.m.sent.WithLabelValues("live").Inc()
		return nil
	}
	for {
		select {
		case ev := <-c.events:
			if seen != nil && time.Now().After(dedupUntil) {
				seen = nil
			}
			if write(ev) != nil {
				return
			}
			// Write whatever else is queued before one flush.
			for n := len(c.events); n > 0; n-- {
				if write(<-c.events) != nil {
					return
				}
			}
			if out.flush() != nil {
				return
			}
		case <-heartbeat.C:
			if out.comment("heartbeat") != nil {
				return
			}
		case <-c.dropped:
			// It fell too far behind and misses events from now on: end
			// the stream so it comes back with Last-Event-ID for a replay.
			_ = out.comment("disconnected: this client fell " + strconv.Itoa(s.hub.cfg.ClientBuffer) +
				" events behind; reconnect with Last-Event-ID")
			return
		case <-s.hub.closed:
			_ = out.comment("server shutting down; reconnect with Last-Event-ID")
			return
		case <-ctx.Done():
			return
		}
	}
}

// sseWriter writes SSE text with a fresh write deadline per write.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (o *sseWriter) write(b []byte) error {
	_ = o.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := o.w.Write(b)
	return err
}

func (o *sseWriter) flush() error {
	_ = o.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	return o.rc.Flush()
}

// comment writes and flushes an SSE comment line, which clients ignore and
// curl shows.
func (o *sseWriter) comment(s string) error {
	if err := o.write([]byte(": " + s + "\n\n")); err != nil {
		return err
	}
	return o.flush()
}

// parseStreamQuery validates the parameters: types (comma list), device_id
// (normalised like ingest) and the Last-Event-ID header or, for EventSource
// polyfills that cannot set headers, the last_event_id parameter. The header
// wins: a browser updates it on every reconnect, while the URL keeps the id
// it was opened with.
func parseStreamQuery(r *http.Request) (streamQuery, error) {
	var q streamQuery
	p, err := readParams(r, "types", "device_id", "last_event_id")
	if err != nil {
		return q, err
	}
	if v, ok := p.get("types"); ok {
		for _, name := range strings.Split(v, ",") {
			bit := typeBit(models.Type(strings.TrimSpace(name)))
			if bit == 0 {
				p.fail("types", "must be a comma-separated list of gyroscope, gps, photo; got "+strconv.Quote(name))
				break
			}
			q.types |= bit
		}
	}
	q.device = p.deviceID("device_id")
	field, last := "Last-Event-ID", strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if last == "" {
		field = "last_event_id"
		last, _ = p.get(field)
	}
	if last != "" {
		if id, err := uuid.Parse(last); err != nil {
			p.fail(field, "must be the id of an event of this stream (a UUID)")
		} else {
			q.last = &id
		}
	}
	return q, p.err()
}

// writeStreamRefused answers 503 when the hub takes no more clients.
func writeStreamRefused(w http.ResponseWriter, r *http.Request, err error, max int) {
	p := Problem{
		Type:   ProblemTypeBase + "too-many-streams",
		Title:  "Too many stream clients",
		Status: http.StatusServiceUnavailable,
		Detail: "The server already serves " + strconv.Itoa(max) + " stream clients; retry later.",
	}
	if errors.Is(err, errHubClosed) {
		p.Type = ProblemTypeBase + "shutting-down"
		p.Title = "The server is shutting down"
		p.Detail = "This instance is stopping; reconnect in a moment."
	}
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeProblem(w, r, p)
}

// spansGrace reports whether the readings first and last (item JSON) were
// stored more than storage.ReplayGrace apart. A replay resumed from last
// starts ReplayGrace before it (to catch late commits), so only then does it
// start after first and get further than this one did.
func spansGrace(first, last []byte) bool {
	var a, b struct {
		StoredAt time.Time `json:"stored_at"`
	}
	if json.Unmarshal(first, &a) != nil || json.Unmarshal(last, &b) != nil {
		return false
	}
	return b.StoredAt.Sub(a.StoredAt) > storage.ReplayGrace
}

// requestID is the request's id for a log line, "" outside the chain.
func requestID(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}
