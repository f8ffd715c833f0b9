package worker

import (
	"fmt"

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

// consumerMetrics are the worker's own series, registered on the registry
// Run creates (metrics.NewRegistry, which holds the Go and process ones).
type consumerMetrics struct {
	messages   *prometheus.CounterVec   // worker_messages_total{type,outcome}
	latency    *prometheus.HistogramVec // worker_message_processing_seconds{type}
	batchSize  *prometheus.HistogramVec // worker_batch_size{type}
	pending    *prometheus.GaugeVec     // worker_consumer_pending_messages{type}
	ackPending *prometheus.GaugeVec     // worker_consumer_ack_pending_messages{type}
	paused     *prometheus.GaugeVec     // worker_paused{type}
	restarts   *prometheus.CounterVec   // worker_consumer_restarts_total{type}
	dlq        prometheus.Gauge         // worker_dlq_messages
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
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "worker_paused",
			Help: "Messages held in place because a dependency is misconfigured (e.g. Rekognition access denied); alert when > 0.",
		}, []string{"type"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "worker_consumer_restarts_total",
			Help: "Consumer subscriptions re-created after a transient error (missed heartbeats, NATS unreachable, consumer leader change).",
		}, []string{"type"}),
		dlq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "worker_dlq_messages",
			Help: "Messages currently in the TELEMETRY_DLQ stream (polled); alert when it grows.",
		}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.latency, m.batchSize, m.pending, m.ackPending, m.paused, m.restarts, m.dlq} {
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
		m.paused.WithLabelValues(string(t))
		m.restarts.WithLabelValues(string(t))
	}
	return m, nil
}

func (m *consumerMetrics) count(t models.Type, outcome string, n int) {
	m.messages.WithLabelValues(string(t), outcome).Add(float64(n))
}
