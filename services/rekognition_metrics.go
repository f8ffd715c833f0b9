package services

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation label values of the rekognition_* metrics.
const (
	opCreateCollection   = "CreateCollection"
	opDescribeCollection = "DescribeCollection"
	opSearchFacesByImage = "SearchFacesByImage"
	opIndexFaces         = "IndexFaces"
	opDetectFaces        = "DetectFaces"
)

// callOutcomes lists, for each operation, every outcome
// rekognition_calls_total can count it with: success, the answers an
// operation treats as normal, and the failures classify can report. All of
// them are created at start-up, so rate() and increase() see the first
// event rather than an absent series turning into 1, and /metrics shows the
// full set (the documentation is checked against it).
var callOutcomes = map[string][]string{
	opDescribeCollection: append([]string{outcomeSuccess, outcomeNotFound}, failureOutcomes...),
	opCreateCollection:   append([]string{outcomeSuccess, outcomeAlreadyExists}, failureOutcomes...),
	opSearchFacesByImage: append([]string{outcomeSuccess, outcomeNoFace}, failureOutcomes...),
	opDetectFaces:        append([]string{outcomeSuccess}, failureOutcomes...),
	opIndexFaces:         append([]string{outcomeSuccess}, failureOutcomes...),
}

// analyzerMetrics are the photo analysis metrics. One observation per SDK
// operation: SDK retry attempts are inside it (they show as latency).
type analyzerMetrics struct {
	calls    *prometheus.CounterVec   // rekognition_calls_total{operation,outcome}
	duration *prometheus.HistogramVec // rekognition_call_duration_seconds{operation}
	cache    *prometheus.CounterVec   // photo_analysis_cache_total{result}
}

func newAnalyzerMetrics(reg prometheus.Registerer) (*analyzerMetrics, error) {
	m := &analyzerMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rekognition_calls_total",
			Help: "Rekognition operations by outcome (success, no_face, already_exists, not_found, throttled, unavailable, invalid, misconfigured, error). Alert on outcome=\"misconfigured\".",
		}, []string{"operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rekognition_call_duration_seconds",
			Help:    "Duration of Rekognition operations, SDK retries included.",
			Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20},
		}, []string{"operation"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "photo_analysis_cache_total",
			Help: "Photo analysis cache lookups by result (hit, miss); a hit skips Rekognition.",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.duration, m.cache} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register photo analyzer metrics: %w", err)
			}
		}
	}
	for op, outcomes := range callOutcomes {
		for _, outcome := range outcomes {
			m.calls.WithLabelValues(op, outcome)
		}
		m.duration.WithLabelValues(op)
	}
	m.cache.WithLabelValues("hit")
	m.cache.WithLabelValues("miss")
	return m, nil
}
