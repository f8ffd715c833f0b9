package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/models"
)

// Hub fans the worker's stored-reading announcements out to the clients of
// GET /telemetry/stream. Publish never blocks: each client has a bounded
// queue, and a client whose queue is full is dropped (it reconnects with
// Last-Event-ID and replays from PostgreSQL), so one slow reader can
// neither hold up the others nor make the API's memory grow.
//
// The api package feeds it from a core NATS subscription and closes it when
// shutdown starts, which ends every stream so graceful shutdown does not
// wait for clients that never hang up.
type Hub struct {
	cfg config.Stream
	m   *streamMetrics
	log *slog.Logger

	mu      sync.Mutex
	clients map[*streamClient]struct{}
	closed  chan struct{} // closed by Close
	isDone  bool
}

// streamEvent is one announcement, encoded once as an SSE frame and shared
// by every client it is queued for.
type streamEvent struct {
	typ    models.Type
	id     uuid.UUID
	device string
	frame  []byte
}

// streamClient is one connected stream: its filter and its queue.
type streamClient struct {
	types  typeSet
	device string // "" = every device
	events chan *streamEvent
	// dropped is closed by the hub when it removes the client because its
	// queue was full.
	dropped chan struct{}
}

// typeSet is a set of telemetry types; zero means every type.
type typeSet uint8

func typeBit(t models.Type) typeSet {
	for i, k := range models.Types {
		if k == t {
			return 1 << i
		}
	}
	return 0
}

func (s typeSet) has(t models.Type) bool { return s == 0 || s&typeBit(t) != 0 }

// list is the set's types in models.Types order; nil for every type.
func (s typeSet) list() []models.Type {
	if s == 0 {
		return nil
	}
	var out []models.Type
	for _, t := range models.Types {
		if s&typeBit(t) != 0 {
			out = append(out, t)
		}
	}
	return out
}

func (c *streamClient) wants(ev *streamEvent) bool {
	return c.types.has(ev.typ) && (c.device == "" || c.device == ev.device)
}

// Errors of Hub.subscribe, answered with 503.
var (
	errHubFull   = errors.New("too many stream clients")
	errHubClosed = errors.New("the server is shutting down")
)

// NewHub returns an empty hub; zero fields of cfg take their defaults. Its
// metrics (clients connected, events sent, clients dropped for slowness)
// are registered on reg; its streams log on log.
func NewHub(cfg config.Stream, reg prometheus.Registerer, log *slog.Logger) (*Hub, error) {
	h := &Hub{cfg: cfg.WithDefaults(), log: log, clients: map[*streamClient]struct{}{}, closed: make(chan struct{})}
	m, err := newStreamMetrics(reg, h.connected)
	if err != nil {
		return nil, err
	}
	h.m = m
	return h, nil
}

// Publish queues a stored reading for every client whose filter matches.
// data is the reading's item JSON (what the list routes return); the
// device filter reads its device_id.
func (h *Hub) Publish(t models.Type, id uuid.UUID, data []byte) error {
	if typeBit(t) == 0 {
		return fmt.Errorf("stream: unknown reading type %q", t)
	}
	if h.connected() == 0 {
		return nil
	}
	var meta struct {
		DeviceID string `json:"device_id"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return fmt.Errorf("stream: announcement %s is not an item: %w", id, err)
	}
	ev := &streamEvent{typ: t, id: id, device: meta.DeviceID}

	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !c.wants(ev) {
			continue
		}
		if ev.frame == nil {
			ev.frame = eventFrame(t, id, data)
		}
		select {
		case c.events <- ev:
		default:
			delete(h.clients, c)
			close(c.dropped)
			h.m.dropped.Inc()
		}
	}
	return nil
}

// Close ends every stream and refuses new ones. It is idempotent.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.isDone {
		h.isDone = true
		close(h.closed)
	}
}

// subscribe registers a client with its filter; it receives every matching
// event published from now on, until unsubscribe.
func (h *Hub) subscribe(types typeSet, device string) (*streamClient, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isDone {
		return nil, errHubClosed
	}
	if len(h.clients) >= h.cfg.MaxClients {
		return nil, errHubFull
	}
	c := &streamClient{types: types, device: device,
		events: make(chan *streamEvent, h.cfg.ClientBuffer), dropped: make(chan struct{})}
	h.clients[c] = struct{}{}
	return c, nil
}

// unsubscribe removes c; a client the hub already dropped is gone already.
func (h *Hub) unsubscribe(c *streamClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

func (h *Hub) connected() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return float64(len(h.clients))
}

// eventFrame is one SSE event. The item JSON is compact, but a newline in
// it would end the data field, so each line gets its own "data:" (a client
// joins them back with "\n").
func eventFrame(t models.Type, id uuid.UUID, data []byte) []byte {
	b := make([]byte, 0, len("event: \nid: \n\n")+len(t)+36+len(data)+8)
	b = append(b, "event: "...)
	b = append(b, t...)
	b = append(b, "\nid: "...)
	b = append(b, id.String()...)
	b = append(b, '\n')
	for line := range bytes.Lines(data) {
		b = append(b, "data: "...)
		b = append(b, bytes.TrimRight(line, "\r\n")...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// streamMetrics are the live stream's series.
type streamMetrics struct {
	clients prometheus.GaugeFunc
	sent    *prometheus.CounterVec
	dropped prometheus.Counter
}

func newStreamMetrics(reg prometheus.Registerer, connected func() float64) (*streamMetrics, error) {
	m := &streamMetrics{
		clients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "api_stream_clients",
			Help: "Clients connected to GET /telemetry/stream.",
		}, connected),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_stream_events_sent_total",
			Help: "Events written to stream clients, by source: live (announced by the worker) or replay (read back for Last-Event-ID).",
		}, []string{"source"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "api_stream_clients_dropped_total",
			Help: "Stream clients disconnected because they fell STREAM_CLIENT_BUFFER events behind.",
		}),
	}
	for _, c := range []prometheus.Collector{m.clients, m.sent, m.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stream metrics: %w", err)
		}
	}
	m.sent.WithLabelValues("live")
	m.sent.WithLabelValues("replay")
	return m, nil
}
