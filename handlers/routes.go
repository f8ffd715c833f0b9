// Package handlers is the HTTP edge of the API: the ingest routes, the read
// routes (stored readings, photo images, devices), the middleware chain in
// front of them (request id and access log → metrics → panic recovery →
// CORS headers → per-client-IP rate limit → CORS preflight → API-key
// authentication), request decoding, and the one mapping from typed errors
// to RFC 9457 problem documents.
package handlers

import (
	"cmp"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/ierr"
	"github.com/challenge-v3/challenge-v3/models"
)

// Route patterns of the telemetry endpoints; also the "route" metric label.
const (
	RouteGyroscope = "POST /telemetry/gyroscope"
	RouteGPS       = "POST /telemetry/gps"
	RoutePhoto     = "POST /telemetry/photo"
	// RouteUnmatched labels requests no route matched (404, 405).
	RouteUnmatched = "unmatched"
)

// Backends are what the routes call. Publisher is required; the others
// are optional.
type Backends struct {
	// Publisher takes ingested readings; usually a *messaging.Publisher.
	Publisher publisher
	// Reader serves the read routes; usually a *storage.Reader. nil: the API
	// was started without DATABASE_URL and the read routes answer 404 "not
	// configured".
	Reader reader
	// Sealer opens photo images; usually a *crypto.Sealer. nil: no
	// ENCRYPTION_KEYS, the image route answers 503.
	Sealer opener
	// Stream is the live stream's hub (GET /telemetry/stream, stream.go).
	Stream *Hub
}

// New returns the public handler: the telemetry routes behind the
// middleware chain. Its metrics are registered on reg.
func New(cfg config.API, b Backends, reg prometheus.Registerer, log *slog.Logger) (http.Handler, error) {
	rl := newRateLimiter(cfg.RateLimitRPS, cfg.RateLimitBurst, cfg.MaxTrackedIPs)
	devices := newLimiter[deviceKey](cfg.DeviceRateRPS, cfg.DeviceRateBurst, cfg.MaxTrackedIPs)
	m, err := newMetrics(reg, rl.tracked)
	if err != nil {
		return nil, err
	}
	if err := registerTrackedDevices(reg, devices.tracked); err != nil {
		return nil, err
	}
	ing := &ingest{pub: b.Publisher, lim: cfg.Limits, m: m, requestTimeout: cfg.RequestTimeout,
		publishBounded: cfg.PublishTimeout > 0 && cfg.PublishTimeout <= cfg.RequestTimeout, devices: devices,
		photoSlots: newUploadSlots(orDefault(cfg.PhotoMaxInFlight, config.DefaultPhotoMaxInFlight),
			orDefault(cfg.PhotoPerClient, config.DefaultPhotoPerClient)),
		pace: pace{
			minRate:     float64(orDefault(int(cfg.UploadMinRate), config.DefaultUploadMinRate)),
			grace:       cmp.Or(cfg.UploadRateGrace, config.DefaultUploadRateGrace),
			readTimeout: cfg.ReadTimeout,
		}}

	mux := http.NewServeMux()
	mux.HandleFunc(RouteGyroscope, ing.gyroscope)
	mux.HandleFunc(RouteGPS, ing.gps)
	mux.HandleFunc(RoutePhoto, ing.photo)
	mux.HandleFunc(RouteBatch, ing.batch)
	readRoutes(mux, b, orDefault(cfg.ImageMaxInFlight, config.DefaultImageMaxInFlight))
	docs, err := newDocs()
	if err != nil {
		return nil, err
	}
	docs.register(mux) // public: see isPublic
	mux.HandleFunc("/", unmatched(mux))

	// The route is resolved before the chain runs so that refusals by the
	// outer layers (429, 401) are labelled with the route they aimed at; a
	// CORS preflight with the route it asks about.
	hot := hotRoutes{gyroscope: ing.gyroscope, gps: ing.gps, photo: ing.photo, batch: ing.batch}
	routeOf := func(r *http.Request) string {
		if pattern, _ := hot.match(r); pattern != "" {
			return pattern
		}
		probe := r
		if m := routeMethod(r); m != r.Method {
			probe = &http.Request{Method: m, URL: r.URL, Host: r.Host}
		}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			return pattern
		}
		return RouteUnmatched
	}
	trusted := cfg.TrustedProxies
	ipOf := func(r *http.Request) netip.Addr {
		if len(trusted) == 0 { // the default: the peer, X-Forwarded-For unread
			peer, _ := parseHop(r.RemoteAddr)
			return peer
		}
		return clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
	}
	fromProxy := func(r *http.Request) bool {
		peer, ok := parseHop(r.RemoteAddr)
		return ok && isTrusted(peer, trusted)
	}
	cors := newCORS(cfg.Read.CORSAllowedOrigins)
	// The ingest routes are served from the route requestLog resolved; the
	// mux serves the rest.
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pattern, h := hot.match(r); h != nil {
			r.Pattern = pattern // as the mux would
			h(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return chain(dispatch,
		func(next http.Handler) http.Handler { return requestLog(log, routeOf, ipOf, fromProxy, next) },
		m.middleware,
		recoverPanics,
		cors.headers,
		ipLimit(rl, m),
		cors.preflight,
		authenticate(cfg.APIKeys, m),
	), nil
}

// hotRoutes resolve the ingest routes, most of the API's requests, with a
// method check and a string switch instead of two ServeMux lookups a
// request (one for the route label before the chain, one to serve). Only
// the exact, clean paths match, with POST: what the mux answers with
// these patterns (TestHotRoutesAgreeWithTheMux); anything else, a path
// the mux would redirect included, is left to the mux.
type hotRoutes struct {
	gyroscope, gps, photo, batch http.HandlerFunc
}

func (h *hotRoutes) match(r *http.Request) (string, http.HandlerFunc) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" {
		return "", nil
	}
	switch r.URL.Path {
	case "/telemetry/gps":
		return RouteGPS, h.gps
	case "/telemetry/gyroscope":
		return RouteGyroscope, h.gyroscope
	case "/telemetry/photo":
		return RoutePhoto, h.photo
	case "/telemetry/batch":
		return RouteBatch, h.batch
	}
	return "", nil
}

// orDefault is n, or def when n is unset (0 in a hand-built config).
func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// readRoutes registers the read API's routes (SPEC §8); imageSlots bounds
// the photo images served at once.
func readRoutes(mux *http.ServeMux, b Backends, imageSlots int) {
	routes := []string{RouteReadGyroscope, RouteReadGPS, RouteReadPhoto, RouteGyroscopeByID, RouteGPSByID,
		RoutePhotoByID, RoutePhotoImage, RouteDevices, RouteDevice, RouteDeviceTrack, RouteStream}
	if b.Reader == nil {
		for _, route := range routes {
			mux.HandleFunc(route, notConfigured)
		}
		return
	}
	rd := b.Reader
	gyro := readings[models.GyroscopeItem]{models.TypeGyroscope, rd.ListGyroscope, rd.Gyroscope}
	gps := readings[models.GPSItem]{models.TypeGPS, rd.ListGPS, rd.GPS}
	photos := readings[models.PhotoItem]{models.TypePhoto, rd.ListPhotos, rd.Photo}
	img := images{store: rd, sealer: b.Sealer, slots: make(chan struct{}, imageSlots)}
	dev := devices{store: rd}
	for route, h := range map[string]http.HandlerFunc{
		RouteReadGyroscope: gyro.serveList,
		RouteReadGPS:       gps.serveList,
		RouteReadPhoto:     photos.serveList,
		RouteGyroscopeByID: gyro.serveOne,
		RouteGPSByID:       gps.serveOne,
		RoutePhotoByID:     photos.serveOne,
		RoutePhotoImage:    img.serve,
		RouteDevices:       dev.list,
		RouteDevice:        dev.one,
		RouteDeviceTrack:   dev.track,
		RouteStream:        streamRoute(b.Stream, rd),
	} {
		mux.HandleFunc(route, h)
	}
}

// unmatched answers what no route took: 405 with Allow when the path has
// routes for other methods, else 404.
func unmatched(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if _, pattern := mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "" && pattern != "/" {
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, r, Problem{
				Type:   ProblemTypeBase + "method-not-allowed",
				Title:  "Method not allowed",
				Status: http.StatusMethodNotAllowed,
				Detail: "This path answers " + strings.Join(allow, ", ") + ": telemetry is sent with POST and read with GET.",
			})
			return
		}
		writeError(w, r, fieldProblem(ierr.NotFound, "", "No such endpoint; see /telemetry/{gyroscope,gps,photo} and /devices."))
	}
}
