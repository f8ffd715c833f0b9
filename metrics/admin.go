package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
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

// A Check is one dependency /readyz reports by name, next to the overall
// status.
type Check struct {
	Name  string // e.g. "nats", "database"
	Probe ReadyFunc
	// Optional marks a dependency the binary does its main work without:
	// its failure is reported but leaves /readyz at 200 (the api's
	// database: ingest goes on, only the read routes answer 503), so a load
	// balancer does not take ingest out of rotation for it.
	Optional bool
}

// NewServer returns the admin server: /metrics serves reg, /healthz answers
// 200 while the process runs, /readyz answers 200 or 503 as ready and the
// required checks say, listing every check by name. ready may be nil when
// the checks say it all. The caller binds the listener, calls Serve, and
// Shutdown when it stops (last, so /readyz reports a drain while it lasts).
// Errors of the server and of scrapes are logged on log at warning level.
func NewServer(reg *prometheus.Registry, ready ReadyFunc, log *slog.Logger, checks ...Check) *http.Server {
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: errLog}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, status{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if s := readiness(ctx, ready, checks); s.Status != "ready" {
			writeStatus(w, http.StatusServiceUnavailable, s)
		} else {
			writeStatus(w, http.StatusOK, s)
		}
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
	// Checks gives each named dependency's state: "ok" or
	// "unavailable: <reason>".
	Checks map[string]string `json:"checks,omitempty"`
}

// readiness runs ready and every check at once, each within ctx, and sums them
// up: unavailable when ready or a required check fails, the reason being
// ready's, else the first failing required check's (each names what is
// missing, as ReadyFunc says).
func readiness(ctx context.Context, ready ReadyFunc, checks []Check) status {
	errs := make([]error, len(checks)+1)
	var wg sync.WaitGroup
	run := func(i int, f ReadyFunc) {
		defer wg.Done()
		errs[i] = f(ctx)
	}
	if ready != nil {
		wg.Add(1)
		go run(len(checks), ready)
	}
	for i, c := range checks {
		wg.Add(1)
		go run(i, c.Probe)
	}
	wg.Wait()
	s := status{Status: "ready"}
	if err := errs[len(checks)]; err != nil {
		s = status{Status: "unavailable", Reason: err.Error()}
	}
	if len(checks) > 0 {
		s.Checks = make(map[string]string, len(checks))
	}
	for i, c := range checks {
		if errs[i] == nil {
			s.Checks[c.Name] = "ok"
			continue
		}
		s.Checks[c.Name] = "unavailable: " + errs[i].Error()
		if !c.Optional && s.Status == "ready" {
			s = status{Status: "unavailable", Reason: errs[i].Error(), Checks: s.Checks}
		}
	}
	return s
}

func writeStatus(w http.ResponseWriter, code int, s status) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // a probe must see the present state
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}
