// Package metrics is what every binary shares on its operational side: the
// Prometheus registry, with the Go runtime and process collectors, and the
// admin server that exposes it on /metrics next to /healthz and /readyz,
// with one set of timeouts and one JSON answer format.
//
// The instruments themselves stay next to the code they measure. Each set
// has a constructor that takes a prometheus.Registerer and returns an error
// when a collector cannot be registered, so a name clash stops start-up with
// an error instead of a panic; Run creates the registry and passes it down.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry already holding the Go runtime and process
// collectors; the binary registers its own instruments on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// Two distinct collectors on an empty registry cannot clash: a panic
	// here would be a programming error, not a condition to report.
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
