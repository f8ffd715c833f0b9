// Package handlers is the HTTP edge of the ingest API: the telemetry routes,
// the middleware chain in front of them (request id and access log →
// metrics → per-client-IP rate limit → API-key authentication), request
// decoding, and the one mapping from typed errors to RFC 9457 problem
// documents.
package handlers

import (
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
)

// Route patterns of the telemetry endpoints; also the "route" metric label.
const (
	RouteGyroscope = "POST /telemetry/gyroscope"
	RouteGPS       = "POST /telemetry/gps"
	RoutePhoto     = "POST /telemetry/photo"
	// RouteUnmatched labels requests no route matched (404, 405).
	RouteUnmatched = "unmatched"
)

// New returns the public handler: the telemetry routes behind the
// middleware chain. Its metrics are registered on reg. pub is usually a
// *messaging.Publisher.
func New(cfg config.API, pub publisher, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	rl := newRateLimiter(cfg.RateLimitRPS, cfg.RateLimitBurst, cfg.MaxTrackedIPs)
	m, err := newMetrics(reg, rl.tracked)
	if err != nil {
		return nil, err
	}
	photoSlots := cfg.PhotoMaxInFlight
	if photoSlots <= 0 {
		photoSlots = config.DefaultPhotoMaxInFlight
	}
	ing := &ingest{pub: pub, lim: cfg.Limits, m: m, requestTimeout: cfg.RequestTimeout,
		photoSlots: make(chan struct{}, photoSlots)}

	mux := http.NewServeMux()
	mux.HandleFunc(RouteGyroscope, ing.gyroscope)
	mux.HandleFunc(RouteGPS, ing.gps)
	mux.HandleFunc(RoutePhoto, ing.photo)
	mux.HandleFunc("/", unmatched)

	// The route is resolved before the chain runs so that refusals by the
	// outer layers (429, 401) are labelled with the route they aimed at.
	routeOf := func(r *http.Request) string {
		if _, pattern := mux.Handler(r); pattern != "" && pattern != "/" {
			return pattern
		}
		return RouteUnmatched
	}
	trusted := cfg.TrustedProxies
	ipOf := func(r *http.Request) netip.Addr {
		return clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
	}
	return chain(mux,
		func(next http.Handler) http.Handler { return requestLog(log, routeOf, ipOf, next) },
		m.middleware,
		recoverPanics,
		rl.middleware(m),
		authenticate(cfg.APIKeys, m),
	), nil
}

// telemetryPaths are the known paths, to tell 405 from 404.
var telemetryPaths = map[string]bool{
	"/telemetry/gyroscope": true,
	"/telemetry/gps":       true,
	"/telemetry/photo":     true,
}

func unmatched(w http.ResponseWriter, r *http.Request) {
	if telemetryPaths[r.URL.Path] {
		w.Header().Set("Allow", http.MethodPost)
		writeProblem(w, r, Problem{
			Type:   ProblemTypeBase + "method-not-allowed",
			Title:  "Method not allowed",
			Status: http.StatusMethodNotAllowed,
			Detail: "Telemetry is sent with POST.",
		})
		return
	}
	writeError(w, r, fieldProblem(ierr.NotFound, "", "No such endpoint; see /telemetry/{gyroscope,gps,photo}."))
}
