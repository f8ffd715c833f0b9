package handlers

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"

	"github.com/challenge-v3/challenge-v3/config"
)

func gpsFrom(device string) string {
	return `{"device_id":"` + device + `","timestamp":"2026-11-28T10:00:00Z","latitude":1,"longitude":2}`
}

// Phones behind one carrier-grade NAT address, with the per-IP limit
// lifted: the device over its own rate gets 429 device-rate-limited (with
// its bucket in Retry-After and RateLimit-*), and nothing is published;
// the other device behind the same address keeps getting 202.
func TestDeviceRateLimitBehindOneIP(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.RateLimitRPS = 0                          // the IP limit lifted
		c.DeviceRateRPS, c.DeviceRateBurst = 0.5, 3 // a token every 2 s: no refill during the test
	})
	const chatty, quiet = "00:0a:95:9d:68:16", "00:0a:95:9d:68:17"
	for i := range 3 {
		resp := s.postJSON("/telemetry/gps", gpsFrom(chatty))
		wantStatus(t, resp, http.StatusAccepted)
		if got := resp.Header.Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) || resp.Header.Get("RateLimit-Limit") != "3" {
			t.Errorf("request %d: RateLimit-Limit %q, Remaining %q; want the device's bucket", i,
				resp.Header.Get("RateLimit-Limit"), got)
		}
	}
	before := s.msgCount()
	// The same device in another notation, and on another route, is the
	// same device.
	for _, c := range []struct{ path, body string }{
		{"/telemetry/gps", gpsFrom(chatty)},
		{"/telemetry/gyroscope", `{"device_id":"00-0A-95-9D-68-16","timestamp":"2026-11-28T10:00:00Z","x":0,"y":0,"z":0}`},
	} {
		resp := s.postJSON(c.path, c.body)
		p := checkProblem(t, resp, http.StatusTooManyRequests)
		if p.Type != ProblemTypeBase+"device-rate-limited" {
			t.Errorf("%s: type %s", c.path, p.Type)
		}
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || retry < 1 || retry > 2 {
			t.Errorf("Retry-After = %q, want 1-2 s", resp.Header.Get("Retry-After"))
		}
		if resp.Header.Get("RateLimit-Limit") != "3" || resp.Header.Get("RateLimit-Remaining") != "0" ||
			resp.Header.Get("RateLimit-Reset") != resp.Header.Get("Retry-After") || resp.Header.Get("RateLimit-Policy") != "3;w=6" {
			t.Errorf("429 RateLimit headers: %v", resp.Header)
		}
	}
	if s.msgCount() != before {
		t.Error("a device-limited reading was published")
	}
	for range 3 {
		wantStatus(t, s.postJSON("/telemetry/gps", gpsFrom(quiet)), http.StatusAccepted)
	}
	if got := s.metric("api_device_rate_limited_total", map[string]string{"route": RouteGPS}); got != 1 {
		t.Errorf("device rate limited (gps) = %v, want 1", got)
	}
	if got := s.metric("api_rate_limit_tracked_devices", nil); got != 2 {
		t.Errorf("tracked devices = %v, want 2", got)
	}
}

// With both limits on, the answer's RateLimit-* headers are those of the
// bucket closer to empty; an invalid body never reaches the device limit.
func TestDeviceAndIPLimitsTogether(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.RateLimitRPS, c.RateLimitBurst = 0.5, 5
		c.DeviceRateRPS, c.DeviceRateBurst = 0.5, 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	xff := []string{"X-Forwarded-For", "198.51.100.9"}
	for i, c := range []struct {
		body, limit, remaining string
		status                 int
	}{
		{gpsFrom("d1"), "3", "2", http.StatusAccepted},          // IP 4 of 5 left, d1 2 of 3
		{`{"device_id":"d1"}`, "5", "3", http.StatusBadRequest}, // refused before the device is counted
		{gpsFrom("d1"), "3", "1", http.StatusAccepted},          // IP 2, d1 1
		{gpsFrom("d2"), "5", "1", http.StatusAccepted},          // IP 1, d2 2
		{gpsFrom("d1"), "5", "0", http.StatusAccepted},          // IP 0, d1 0: a tie shows the IP's
		{gpsFrom("d2"), "5", "0", http.StatusTooManyRequests},   // the IP's limit first
	} {
		resp := s.postJSON("/telemetry/gps", c.body, xff...)
		if resp.StatusCode != c.status || resp.Header.Get("RateLimit-Limit") != c.limit || resp.Header.Get("RateLimit-Remaining") != c.remaining {
			t.Errorf("request %d: %d, RateLimit-Limit %s, Remaining %s; want %d, %s, %s", i, resp.StatusCode,
				resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"), c.status, c.limit, c.remaining)
		}
	}
}
