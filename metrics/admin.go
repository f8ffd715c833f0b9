package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin listener limits, the same for every binary. The listener is private
// and its answers are small; writeTimeout leaves room for the slowest
// readiness check and a scrape of the whole registry.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10

	// readyTimeout bounds one readiness check, so a hung dependency shows
	// as a 503 with a reason rather than as a probe that never answers.
	readyTimeout = 2 * time.Second
)

// ReadyFunc reports whether the binary can do its work: nil when it can,
// otherwise an error whose text /readyz gives as the reason. That text names
// what is missing ("nats not connected"), never a dependency's error text.
// ctx ends when the check must give up.
type ReadyFunc func(ctx context.Context) error

// NewServer returns the admin server: /metrics serves reg, /healthz answers
// 200 while the process runs, /readyz answers 200 or 503 as ready says. The
// caller binds the listener, calls Serve, and Shutdown when it stops (last,
// so /readyz reports a drain while it lasts). Errors of the server and of
// scrapes are logged on log at warning level.
func NewServer(reg *prometheus.Registry, ready ReadyFunc, log *slog.Logger) *http.Server {
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: errLog}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := ready(ctx); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// status is the body of every /healthz and /readyz answer.
type status struct {
	Status string `json:"status"`           // ok, ready, unavailable
	Reason string `json:"reason,omitempty"` // why not ready
}

func writeStatus(w http.ResponseWriter, code int, s, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // a probe must see the present state
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(status{Status: s, Reason: reason})
}
