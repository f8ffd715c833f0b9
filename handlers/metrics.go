package handlers

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/models"
)

// metrics are the API's own series, registered on the registry api.New
// creates (metrics.NewRegistry, which holds the Go and process ones).
type metrics struct {
	requests          *prometheus.CounterVec
	duration          *prometheus.HistogramVec
	publish           *prometheus.HistogramVec
	rateLimited       *prometheus.CounterVec
	deviceRateLimited *prometheus.CounterVec
	authFailures      *prometheus.CounterVec
	trackedClients    prometheus.GaugeFunc
	series            sync.Map // seriesKey → *requestSeries
}

func newMetrics(reg prometheus.Registerer, trackedClients func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_http_requests_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "api_http_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of the response, by route pattern, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method", "status"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "api_publish_duration_seconds",
			Help:    "Time to get JetStream's ack for a reading, by telemetry type and outcome (ok, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type", "outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_rate_limited_total",
			Help: "Requests refused with 429 by the per-client-IP rate limit, by route pattern.",
		}, []string{"route"}),
		deviceRateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_device_rate_limited_total",
			Help: "Requests refused with 429 by the per-device rate limit (RATE_LIMIT_DEVICE_RPS), by route pattern.",
		}, []string{"route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "api_auth_failures_total",
			Help: "Requests refused by authentication (missing, invalid: 401) or authorization (forbidden: 403).",
		}, []string{"reason"}),
		trackedClients: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "api_rate_limit_tracked_clients",
			Help: "Client IPs whose token bucket is currently kept in memory.",
		}, trackedClients),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.publish, m.rateLimited, m.deviceRateLimited,
		m.authFailures, m.trackedClients} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	for _, reason := range []string{"missing", "invalid", "forbidden"} {
		m.authFailures.WithLabelValues(reason) // export zeros so rates work from the start
	}
	for _, route := range []string{RouteGyroscope, RouteGPS, RoutePhoto} { // the routes a device posts to
		m.deviceRateLimited.WithLabelValues(route)
	}
	return m, nil
}

// registerTrackedDevices exports the device limiter's bucket count.
func registerTrackedDevices(reg prometheus.Registerer, tracked func() float64) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "api_rate_limit_tracked_devices",
		Help: "Devices whose token bucket is currently kept in memory (0 while RATE_LIMIT_DEVICE_RPS is 0).",
	}, tracked)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register api metrics: %w", err)
	}
	return nil
}

// middleware counts and times every request, including those the inner
// layers refuse (429, 401, 403).
func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		info := infoFrom(r.Context())
		status := info.rec.statusCode()
		method := methodLabel(r.Method)
		sr := m.seriesOf(info.route, method, status)
		sr.requests.Inc()
		sr.duration.Observe(time.Since(start).Seconds())
	})
}

// requestSeries are the request counter and histogram of one route,
// method and status.
type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

type seriesKey struct {
	route, method string
	status        int
}

// seriesOf returns the series of a request, looked up once per label set:
// WithLabelValues validates and hashes the labels under a lock on every
// call, twice a request. The label sets are bounded (route patterns,
// methodLabel, statuses the server writes), and so is the cache.
func (m *metrics) seriesOf(route, method string, status int) *requestSeries {
	k := seriesKey{route, method, status}
	if s, ok := m.series.Load(k); ok {
		return s.(*requestSeries)
	}
	code := strconv.Itoa(status)
	s, _ := m.series.LoadOrStore(k, &requestSeries{
		requests: m.requests.WithLabelValues(route, method, code),
		duration: m.duration.WithLabelValues(route, method, code),
	})
	return s.(*requestSeries)
}

// methodLabel bounds the label's values: a client may send any method name.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// observePublish records one reading's publish: its type, whether it was
// acknowledged, and how long that took.
func (m *metrics) observePublish(t models.Type, ok bool, took time.Duration) {
	outcome := "error"
	if ok {
		outcome = "ok"
	}
	m.publish.WithLabelValues(string(t), outcome).Observe(took.Seconds())
}
