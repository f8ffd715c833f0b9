package handlers

import (
	"net/http"
	"strings"
)

// CORS for the front-end's origins (CORS_ALLOWED_ORIGINS). It is two
// layers of the chain: headers, outside the rate limit, so that every
// answer to an allowed origin (a 429 and a 401 included) can be read by the
// page; preflight, inside the rate limit but before authentication, because
// a browser sends a preflight without the API key and it must neither be
// refused with 401 nor count as an authentication failure.
type cors struct {
	origins map[string]bool // exact, as browsers send Origin
	any     bool            // "*" configured
}

// CORS header values. The methods and request headers are those of the
// API's routes; the exposed headers are those a page needs to read.
const (
	corsAllowMethods  = "GET, POST, OPTIONS"
	corsAllowHeaders  = "X-API-Key, Content-Type, Idempotency-Key, Last-Event-ID"
	corsExposeHeaders = "ETag, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After, X-Request-Id, Location, Idempotent-Replayed"
	// corsMaxAge lets a browser reuse a preflight for 10 minutes, so a page
	// does not pay a second round trip (and a rate-limit token) per request.
	corsMaxAge = "600"
)

func newCORS(origins []string) *cors {
	c := &cors{origins: make(map[string]bool, len(origins))}
	for _, o := range origins {
		if o == "*" {
			c.any = true
		}
		c.origins[o] = true
	}
	return c
}

// enabled: at least one origin is configured.
func (c *cors) enabled() bool { return len(c.origins) > 0 }

// allowOrigin is the Access-Control-Allow-Origin for origin, "" when it is
// not allowed. An exact entry is echoed; "*" answers "*" (no credentials
// are involved: the API key is a header the page sets itself).
func (c *cors) allowOrigin(origin string) string {
	switch {
	case origin == "":
		return ""
	case c.origins[origin]:
		return origin
	case c.any:
		return "*"
	}
	return ""
}

// isPreflight tells a CORS preflight from any other OPTIONS request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// headers adds the CORS headers of an actual (non-preflight) request.
func (c *cors) headers(next http.Handler) http.Handler {
	if !c.enabled() {
		return next // answers never vary by origin
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin") // the answer depends on it: no shared cache may mix origins
		if allow := c.allowOrigin(r.Header.Get("Origin")); allow != "" && !isPreflight(r) {
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		next.ServeHTTP(w, r)
	})
}

// preflight answers CORS preflights: 204 with the allowed methods and
// headers for an allowed origin, 403 without any CORS header otherwise (so
// the browser refuses the actual request). Other OPTIONS requests go on.
func (c *cors) preflight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isPreflight(r) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		if c.enabled() {
			h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
		}
		allow := c.allowOrigin(r.Header.Get("Origin"))
		if allow == "" {
			detail := "This origin is not allowed to call the API from a browser (CORS_ALLOWED_ORIGINS)."
			if !c.enabled() {
				detail = "Cross-origin requests are not enabled on this server (CORS_ALLOWED_ORIGINS is unset)."
			}
			writeProblem(w, r, Problem{
				Type:   ProblemTypeBase + "cors-origin-not-allowed",
				Title:  "Origin not allowed",
				Status: http.StatusForbidden,
				Detail: detail,
			})
			return
		}
		h.Set("Access-Control-Allow-Origin", allow)
		h.Set("Access-Control-Allow-Methods", corsAllowMethods)
		h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}

// routeMethod is the method a request's route is resolved with: a
// preflight is labelled with the route it asks about.
func routeMethod(r *http.Request) string {
	if isPreflight(r) {
		return strings.ToUpper(r.Header.Get("Access-Control-Request-Method"))
	}
	return r.Method
}
