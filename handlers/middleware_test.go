package handlers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
)

func gpsBody() string {
	return fmt.Sprintf(`{"device_id":"d","timestamp":%d,"latitude":1,"longitude":2}`, time.Now().Unix())
}

func TestAuthentication(t *testing.T) {
	s := newStack(t, nil)
	before := s.msgCount()
	cases := []struct {
		name, method, key string
		status            int
	}{
		{"missing key", http.MethodPost, "", 401},
		{"wrong key", http.MethodPost, "not-a-key-0123456789", 401},
		{"key with a different case", http.MethodPost, strings.ToUpper(ingestSecret), 401},
		{"read key posting", http.MethodPost, readSecret, 403},
		{"ingest key reading", http.MethodGet, ingestSecret, 403},
		// Authorised, then told the read API is off (no DATABASE_URL).
		{"read key reading without a database", http.MethodGet, readSecret, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := s.do(c.method, "/telemetry/gps", "application/json", strings.NewReader(gpsBody()), "X-API-Key", c.key)
			checkProblem(t, resp, c.status)
			if c.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "X-API-Key") {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	if n := s.msgCount(); n != before {
		t.Errorf("refused requests published %d messages", n-before)
	}
	wantStatus(t, s.postJSON("/telemetry/gps", gpsBody()), http.StatusAccepted)

	logs := s.logs.String()
	for _, secret := range []string{ingestSecret, readSecret, "not-a-key"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the access log contains the secret %q", secret)
		}
	}
	if !strings.Contains(logs, `"key":"phone"`) || !strings.Contains(logs, `"key":"reader"`) {
		t.Errorf("the access log must name the key; logs:\n%s", logs)
	}
	for reason, want := range map[string]float64{"missing": 1, "invalid": 2, "forbidden": 2} {
		if got := s.metric("api_auth_failures_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("auth failures %s = %v, want %v", reason, got, want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.RateLimitRPS = 0.5 // a token every 2 s: the test never sees a refill
		c.RateLimitBurst = 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for i := range 3 {
		resp := s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.7")
		wantStatus(t, resp, http.StatusAccepted)
		if got := resp.Header.Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: RateLimit-Remaining = %q, want %d", i, got, 2-i)
		}
		if resp.Header.Get("RateLimit-Limit") != "3" || resp.Header.Get("RateLimit-Reset") == "" {
			t.Errorf("request %d: RateLimit headers %v", i, resp.Header)
		}
	}
	before := s.msgCount()
	// Rate limiting comes before authentication: even a keyless flood is cut.
	for _, key := range []string{ingestSecret, ""} {
		resp := s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.7", "X-API-Key", key)
		p := checkProblem(t, resp, http.StatusTooManyRequests)
		if !strings.HasSuffix(p.Type, "rate-limited") {
			t.Errorf("type = %s", p.Type)
		}
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || retry < 1 || retry > 2 {
			t.Errorf("Retry-After = %q, want 1-2 s", resp.Header.Get("Retry-After"))
		}
		if resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("RateLimit-Limit") != "3" ||
			resp.Header.Get("RateLimit-Reset") != resp.Header.Get("Retry-After") {
			t.Errorf("429 RateLimit headers: %v", resp.Header)
		}
	}
	if s.msgCount() != before {
		t.Error("a rate-limited request was published")
	}
	// Another client behind the same proxy has its own bucket.
	wantStatus(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.8"), http.StatusAccepted)
	// A forged left-most hop does not buy a new bucket: the right-most
	// untrusted hop is the client.
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "198.51.100.1, 203.0.113.7"), http.StatusTooManyRequests)
	// Trusted hops right of the client are skipped.
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.7, 127.0.0.9"), http.StatusTooManyRequests)

	if got := s.metric("api_rate_limited_total", map[string]string{"route": RouteGPS}); got != 4 {
		t.Errorf("rate limited counter = %v, want 4", got)
	}
	if !strings.Contains(s.logs.String(), `"client_ip":"203.0.113.7"`) {
		t.Error("the access log must carry the resolved client IP")
	}
}

func TestForwardedForIgnoredFromUntrustedPeer(t *testing.T) {
	s := newStack(t, func(c *config.API) {
		c.RateLimitRPS, c.RateLimitBurst = 0.5, 1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	wantStatus(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.1"), http.StatusAccepted)
	// The peer (127.0.0.1) is not a trusted proxy: changing the header does
	// not escape its bucket.
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Forwarded-For", "203.0.113.2"), http.StatusTooManyRequests)
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	cases := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer", "203.0.113.5:1234", []string{"1.2.3.4"}, "203.0.113.5"},
		{"no header", "10.0.0.1:1234", nil, "10.0.0.1"},
		{"one hop", "10.0.0.1:1234", []string{"1.2.3.4"}, "1.2.3.4"},
		{"forged left hops", "10.0.0.1:1234", []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{"trusted chain", "10.0.0.1:1234", []string{"1.2.3.4, 10.1.1.1, 10.2.2.2"}, "1.2.3.4"},
		{"several headers", "10.0.0.1:1234", []string{"6.6.6.6, 1.2.3.4", "10.1.1.1"}, "1.2.3.4"},
		{"all trusted", "10.0.0.1:1234", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9"},
		{"garbage hop", "10.0.0.1:1234", []string{"1.2.3.4, garbage, 10.1.1.1"}, "10.1.1.1"},
		{"hop with port", "10.0.0.1:1234", []string{"1.2.3.4:5555"}, "1.2.3.4"},
		{"ipv6 peer and hop", "[2001:db8::1]:443", []string{"2001:4860::8888"}, "2001:4860::8888"},
		{"ipv6 hop with port", "10.0.0.1:1234", []string{"[2001:4860::8888]:80"}, "2001:4860::8888"},
		{"mapped ipv4 peer", "[::ffff:10.0.0.1]:80", []string{"1.2.3.4"}, "1.2.3.4"},
		{"empty hops", "10.0.0.1:1", []string{" , ,1.2.3.4, "}, "1.2.3.4"},
		{"unparsable peer", "@", []string{"1.2.3.4"}, "invalid IP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := clientIP(c.peer, c.xff, trusted).String(); got != c.want {
				t.Errorf("clientIP = %s, want %s", got, c.want)
			}
		})
	}
}

func TestRateLimiterMemoryIsBounded(t *testing.T) {
	rl := newRateLimiter(1, 2, limiterShards*10)
	now := time.Now()
	addr := func(net byte, i int) netip.Addr {
		return netip.AddrFrom4([4]byte{net, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := range 100_000 {
		rl.take(addr(10, i), now)
	}
	if n := rl.tracked(); n > limiterShards*10 {
		t.Errorf("tracking %v clients, cap %d", n, limiterShards*10)
	}

	// Idle buckets (full again after burst/rps = 2 s) are dropped when their
	// shard is next touched.
	rl = newRateLimiter(1, 2, 1_000_000)
	for i := range 20_000 {
		rl.take(addr(10, i), now)
	}
	later := now.Add(3 * time.Second)
	for i := range 5_000 { // touches every shard (all but surely)
		rl.take(addr(192, i), later)
	}
	if n := rl.tracked(); n != 5_000 {
		t.Errorf("tracking %v clients after the idle ones expired, want 5000", n)
	}
}

func TestRateLimiterVerdicts(t *testing.T) {
	rl := newRateLimiter(2, 2, 100)
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	v1, v2, v3 := rl.take(ip, now), rl.take(ip, now), rl.take(ip, now)
	if !v1.allowed || v1.remaining != 1 || !v2.allowed || v2.remaining != 0 || v3.allowed {
		t.Fatalf("verdicts %+v %+v %+v", v1, v2, v3)
	}
	if v3.retry != 500*time.Millisecond || v2.reset != time.Second {
		t.Errorf("retry %v (want 500ms), reset %v (want 1s)", v3.retry, v2.reset)
	}
	if v := rl.take(ip, now.Add(500*time.Millisecond)); !v.allowed {
		t.Error("a token must be back after 1/rps")
	}
	if newRateLimiter(0, 1, 1) != nil {
		t.Error("RATE_LIMIT_RPS=0 disables the limiter")
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.LogLevel = slog.LevelDebug }) // every success logged
	resp := s.postJSON("/telemetry/gps", gpsBody(), "X-Request-Id", "trace-abc.123")
	wantStatus(t, resp, http.StatusAccepted)
	if got := resp.Header.Get("X-Request-Id"); got != "trace-abc.123" {
		t.Errorf("a sane incoming id is kept, got %q", got)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 129), "a/b", `quote"`, "ümlaut"} {
		resp := s.postJSON("/telemetry/gps", gpsBody(), "X-Request-Id", bad)
		if got := resp.Header.Get("X-Request-Id"); got == bad || len(got) != 36 {
			t.Errorf("id %q must be replaced by a generated one, got %q", bad, got)
		}
	}
	logs := s.logs.String()
	for _, want := range []string{`"request_id":"trace-abc.123"`, `"method":"POST"`, `"route":"POST /telemetry/gps"`, `"status":202`, `"bytes":`, `"duration_ms":`, `"client_ip":"127.0.0.1"`, `"key":"phone"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
}

// At the default level every refusal and failure has its line, and
// successes are sampled: one a second at most, marked so.
func TestAccessLogAtDefaultLevel(t *testing.T) {
	s := newStack(t, nil)
	start := time.Now()
	const successes = 30
	for i := range successes {
		wantStatus(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Request-Id", "ok-"+strconv.Itoa(i)), http.StatusAccepted)
	}
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody(), "X-Request-Id", "no-key", "X-API-Key", ""), http.StatusUnauthorized)
	checkProblem(t, s.postJSON("/telemetry/gps", `{"device_id":"d"}`, "X-Request-Id", "invalid"), http.StatusBadRequest)
	elapsed := time.Since(start)

	lines := map[string]map[string]any{}
	sampled := 0
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if l["msg"] != "http request" {
			continue
		}
		id, _ := l["request_id"].(string)
		lines[id] = l
		if strings.HasPrefix(id, "ok-") {
			sampled++
			if l["sampled"] != true || l["level"] != "INFO" {
				t.Errorf("a success logged at the default level must be a sampled info line: %v", l)
			}
		}
	}
	if l := lines["no-key"]; l == nil || l["status"] != 401.0 {
		t.Errorf("the 401 has no access-log line: %v", l)
	}
	if l := lines["invalid"]; l == nil || l["status"] != 400.0 {
		t.Errorf("the 400 has no access-log line: %v", l)
	}
	// The first success of a fresh server is always sampled; then at most
	// one a second.
	if lines["ok-0"] == nil || sampled > 1+int(elapsed/time.Second) {
		t.Errorf("%d of %d successes logged in %s; want the first and at most one a second", sampled, successes, elapsed)
	}
}

func TestSamplerLetsOneASecondThrough(t *testing.T) {
	var s sampler
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Millisecond, false}, {999 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {5 * time.Second, true}} {
		if got := s.take(t0.Add(c.at)); got != c.want {
			t.Errorf("step %d (+%s): take = %v, want %v", i, c.at, got, c.want)
		}
	}
}

func TestMetricsByRoutePattern(t *testing.T) {
	s := newStack(t, func(c *config.API) { c.RateLimitRPS, c.RateLimitBurst = 0.5, 2 })
	wantStatus(t, s.postJSON("/telemetry/gps", gpsBody()), http.StatusAccepted)
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody(), "X-API-Key", "wrong-key-0123456789"), 401)
	checkProblem(t, s.postJSON("/telemetry/gps", gpsBody()), 429)
	checkProblem(t, s.postJSON("/no/such/path/12345", gpsBody()), 429)

	want := map[[3]string]float64{
		{RouteGPS, "POST", "202"}:       1,
		{RouteGPS, "POST", "401"}:       1,
		{RouteGPS, "POST", "429"}:       1,
		{RouteUnmatched, "POST", "429"}: 1,
	}
	for labels, n := range want {
		got := s.metric("api_http_requests_total", map[string]string{"route": labels[0], "method": labels[1], "status": labels[2]})
		if got != n {
			t.Errorf("requests%v = %v, want %v", labels, got, n)
		}
	}
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && strings.Contains(l.GetValue(), "12345") {
					t.Errorf("raw path leaked into a label: %s", l.GetValue())
				}
			}
		}
	}
	for _, n := range []string{"api_http_request_duration_seconds", "api_publish_duration_seconds", "api_rate_limited_total", "api_auth_failures_total", "api_rate_limit_tracked_clients"} {
		if !names[n] {
			t.Errorf("metric %s not exported", n)
		}
	}
}

// metric is the value of the counter or gauge name with exactly labels, or
// of a histogram's sample count; 0 when absent.
func (s *stack) metric(name string, labels map[string]string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func TestPanicBecomes500(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, func() float64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	h := chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }),
		func(next http.Handler) http.Handler {
			return requestLog(slog.New(slog.NewJSONHandler(logs, nil)), func(*http.Request) string { return "test" },
				func(*http.Request) netip.Addr { return netip.MustParseAddr("192.0.2.1") }, nil, next)
		},
		m.middleware,
		recoverPanics,
	)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/x", nil))
	if w.Code != 500 || w.Header().Get("Content-Type") != "application/problem+json" || strings.Contains(w.Body.String(), "boom") {
		t.Errorf("answer %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "panic: boom") || !strings.Contains(logs.String(), `"status":500`) {
		t.Errorf("log: %s", logs.String())
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("test", "POST", "500")); got != 1 {
		t.Errorf("500 counted %v times", got)
	}
}

func TestIPv6ClientsShareABucketPer64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if bucketKey(a) != bucketKey(b) || bucketKey(a) == bucketKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("IPv6 buckets must be per /64")
	}
	if v4 := netip.MustParseAddr("192.0.2.1"); bucketKey(v4) != v4 {
		t.Error("IPv4 buckets are per address")
	}
}

// headerValue reads what Header.Get reads for the canonical keys the hot
// path asks for, whatever case the client sent them in.
func TestHeaderValueIsHeaderGet(t *testing.T) {
	raw := "POST / HTTP/1.1\r\nHost: x\r\nx-api-key: k1\r\nX-REQUEST-ID: r1\r\ncontent-type: application/json\r\nContent-Length: 0\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"X-Api-Key", "X-Request-Id", "Content-Type", "Origin"} {
		if got, want := headerValue(r.Header, key), r.Header.Get(key); got != want {
			t.Errorf("headerValue(%q) = %q, Header.Get = %q", key, got, want)
		}
	}
	if got := headerValue(r.Header, "X-Api-Key"); got != "k1" {
		t.Errorf("X-Api-Key = %q, want k1", got)
	}
}
