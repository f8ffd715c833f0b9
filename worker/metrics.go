package worker

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/models"
)

// Outcome label values of worker_messages_total.
const (
	outcomeStored       = "stored"
	outcomeDuplicate    = "duplicate"
	outcomeDeadLettered = "dead_lettered"
	outcomeRetried      = "retried"
)

// Reason label values of worker_paused.
const (
	pauseDatabase      = "database"      // PostgreSQL unreachable: every type pauses (outage)
	pauseMisconfigured = "misconfigured" // e.g. Rekognition access denied: the type's messages are held (attempt)
)

// consumerMetrics are the worker's own series, registered on the registry
// Run creates (metrics.NewRegistry, which holds the Go and process ones).
type consumerMetrics struct {
	messages   *prometheus.CounterVec   // worker_messages_total{type,outcome}
	latency    *prometheus.HistogramVec // worker_message_processing_seconds{type}
	batchSize  *prometheus.HistogramVec // worker_batch_size{type}
	pending    *prometheus.GaugeVec     // worker_consumer_pending_messages{type}
	ackPending *prometheus.GaugeVec     // worker_consumer_ack_pending_messages{type}
	oldestAge  *prometheus.GaugeVec     // worker_consumer_oldest_pending_age_seconds{type}
	paused     *prometheus.GaugeVec     // worker_paused{type,reason}
	restarts   *prometheus.CounterVec   // worker_consumer_restarts_total{type}
	dlq        prometheus.Gauge         // worker_dlq_messages

	mu   sync.Mutex
	held map[models.Type]int // attempts holding messages of a type for a misconfiguration
}

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	m := &consumerMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_messages_total",
			Help: "Telemetry messages handled, by type and outcome (stored, duplicate, dead_lettered, retried).",
		}, []string{"type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "worker_message_processing_seconds",
			Help:    "Time from a message's arrival at the worker to its acknowledgement (batch wait included).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"type"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "worker_batch_size",
			Help:    "Messages per GPS or gyroscope batch.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500},
		}, []string{"type"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_consumer_pending_messages",
			Help: "Consumer lag: messages in TELEMETRY not yet delivered to any worker (polled).",
		}, []string{"type"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_consumer_ack_pending_messages",
			Help: "Messages delivered to workers and not yet acknowledged (polled).",
		}, []string{"type"}),
		oldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_consumer_oldest_pending_age_seconds",
			Help: "Age of the oldest message of a type still in TELEMETRY, delivered or not (exact: read from the stream; polled); 0 when none.",
		}, []string{"type"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_paused",
			Help: "1 while processing of a type is paused, by reason: database (PostgreSQL unreachable; messages held) or misconfigured (e.g. Rekognition access denied; messages held and retried); alert when > 0.",
		}, []string{"type", "reason"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_consumer_restarts_total",
			Help: "Consumer subscriptions re-created after a transient error (missed heartbeats, NATS unreachable, consumer leader change).",
		}, []string{"type"}),
		dlq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_dlq_messages",
			Help: "Messages currently in the TELEMETRY_DLQ stream (polled); alert when it grows.",
		}),
	}
	m.held = map[models.Type]int{}
	for _, c := range []prometheus.Collector{m.messages, m.latency, m.batchSize, m.pending, m.ackPending, m.oldestAge, m.paused, m.restarts, m.dlq} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register worker metrics: %w", err)
		}
	}
	for _, t := range models.Types {
		for _, o := range []string{outcomeStored, outcomeDuplicate, outcomeDeadLettered, outcomeRetried} {
			m.messages.WithLabelValues(string(t), o)
		}
		m.latency.WithLabelValues(string(t))
		m.pending.WithLabelValues(string(t))
		m.ackPending.WithLabelValues(string(t))
		m.oldestAge.WithLabelValues(string(t))
		m.paused.WithLabelValues(string(t), pauseDatabase)
		m.paused.WithLabelValues(string(t), pauseMisconfigured)
		m.restarts.WithLabelValues(string(t))
	}
	return m, nil
}

// holding counts an attempt that starts (+1) or stops (-1) holding messages
// of type t for a misconfiguration; worker_paused shows 1 while any does.
func (m *consumerMetrics) holding(t models.Type, delta int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held[t] += delta
	v := 0.0
	if m.held[t] > 0 {
		v = 1
	}
	m.paused.WithLabelValues(string(t), pauseMisconfigured).Set(v)
}

func (m *consumerMetrics) count(t models.Type, outcome string, n int) {
	m.messages.WithLabelValues(string(t), outcome).Add(float64(n))
}
