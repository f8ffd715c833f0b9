package handlers

import (
	"net/http"
	"strings"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
)

const (
	allowedOrigin = "https://fleet.example.com"
	foreignOrigin = "https://evil.example"
)

func preflight(s *stack, path, origin, method string) *http.Response {
	s.t.Helper()
	return s.do(http.MethodOptions, path, "", nil, "X-API-Key", "", "Origin", origin,
		"Access-Control-Request-Method", method, "Access-Control-Request-Headers", "x-api-key, content-type")
}

func TestCORSPreflight(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.Read.CORSAllowedOrigins = []string{allowedOrigin, "http://localhost:3000"}
		c.RateLimitRPS, c.RateLimitBurst = 1000, 1000
	})
	resp := preflight(s, "/telemetry/gps", allowedOrigin, http.MethodPost)
	wantStatus(t, resp, http.StatusNoContent)
	h := resp.Header
	if h.Get("Access-Control-Allow-Origin") != allowedOrigin {
		t.Errorf("Allow-Origin = %q", h.Get("Access-Control-Allow-Origin"))
	}
	for _, want := range []string{"GET", "POST", "OPTIONS"} {
		if !strings.Contains(h.Get("Access-Control-Allow-Methods"), want) {
			t.Errorf("Allow-Methods %q lacks %s", h.Get("Access-Control-Allow-Methods"), want)
		}
	}
	for _, want := range []string{"X-API-Key", "Content-Type", "Idempotency-Key", "Last-Event-ID"} {
		if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
			t.Errorf("Allow-Headers %q lacks %s", h.Get("Access-Control-Allow-Headers"), want)
		}
	}
	if h.Get("Access-Control-Max-Age") == "" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Errorf("preflight headers %v", h)
	}

	// A foreign origin: 403 and no CORS header, so the browser refuses.
	resp = preflight(s, "/telemetry/gps", foreignOrigin, http.MethodGet)
	checkProblem(t, resp, http.StatusForbidden)
	for name := range resp.Header {
		if strings.HasPrefix(name, "Access-Control-") {
			t.Errorf("a foreign origin's preflight got %s", name)
		}
	}

	// Neither preflight needed a key or counted as an authentication
	// failure; both were logged and measured under the route they asked
	// about.
	for _, reason := range []string{"missing", "invalid", "forbidden"} {
		if got := s.metric("api_auth_failures_total", map[string]string{"reason": reason}); got != 0 {
			t.Errorf("auth failures %s = %v after preflights", reason, got)
		}
	}
	if got := s.metric("api_http_requests_total", map[string]string{"route": RouteGPS, "method": "OPTIONS", "status": "204"}); got != 1 {
		t.Errorf("preflight of %s counted %v times, want 1", RouteGPS, got)
	}
	if got := s.metric("api_http_requests_total", map[string]string{"route": RouteReadGPS, "method": "OPTIONS", "status": "403"}); got != 1 {
		t.Errorf("refused preflight of %s counted %v times, want 1", RouteReadGPS, got)
	}
}

func TestCORSActualRequests(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.Read.CORSAllowedOrigins = []string{allowedOrigin}
		c.RateLimitRPS, c.RateLimitBurst = 1000, 1000
	})
	// An allowed origin can read the answer and its headers, errors too.
	for _, tt := range []struct {
		name   string
		key    string
		status int
	}{
		{"accepted", ingestSecret, http.StatusAccepted},
		{"no key", "", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := s.postJSON("/telemetry/gps", gpsBody(), "X-API-Key", tt.key, "Origin", allowedOrigin)
			wantStatus(t, resp, tt.status)
			if resp.Header.Get("Access-Control-Allow-Origin") != allowedOrigin {
				t.Errorf("Allow-Origin = %q", resp.Header.Get("Access-Control-Allow-Origin"))
			}
			expose := resp.Header.Get("Access-Control-Expose-Headers")
			for _, want := range []string{"ETag", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After", "X-Request-Id", "Location"} {
				if !strings.Contains(expose, want) {
					t.Errorf("Expose-Headers %q lacks %s", expose, want)
				}
			}
			if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
				t.Error("no Vary: Origin")
			}
		})
	}
	// A foreign origin gets the answer (the server cannot tell a browser
	// from curl) but no CORS header: the browser hides it from the page.
	resp := s.postJSON("/telemetry/gps", gpsBody(), "Origin", foreignOrigin)
	wantStatus(t, resp, http.StatusAccepted)
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("foreign origin: Allow-Origin = %q", v)
	}
}

func TestCORSOffByDefault(t *testing.T) {
	s := newStack(t, nil)
	resp := preflight(s, "/telemetry/gps", allowedOrigin, http.MethodPost)
	p := checkProblem(t, resp, http.StatusForbidden)
	if !strings.Contains(p.Detail, "not enabled") || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight without CORS_ALLOWED_ORIGINS: %+v %v", p, resp.Header)
	}
	resp = s.postJSON("/telemetry/gps", gpsBody(), "Origin", allowedOrigin)
	wantStatus(t, resp, http.StatusAccepted)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Vary") != "" {
		t.Errorf("CORS headers without CORS_ALLOWED_ORIGINS: %v", resp.Header)
	}
}

func TestCORSAnyOrigin(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.Read.CORSAllowedOrigins = []string{"*"} })
	resp := preflight(s, "/devices", foreignOrigin, http.MethodGet)
	wantStatus(t, resp, http.StatusNoContent)
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("Allow-Origin = %q, want *", resp.Header.Get("Access-Control-Allow-Origin"))
	}
}
