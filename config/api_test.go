package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) Getenv {
	return func(k string) string { return m[k] }
}

const goodSecret = "0123456789abcdef-secret"

func TestLoadAPIDefaults(t *testing.T) {
	c, err := LoadAPI(envMap(map[string]string{"API_KEYS": "phone:" + goodSecret + ":ingest"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.AdminAddr != ":8081" || c.NATSURL != DefaultNATSURL {
		t.Errorf("addresses = %q %q %q", c.HTTPAddr, c.AdminAddr, c.NATSURL)
	}
	if c.RateLimitRPS != DefaultRateLimitRPS || c.RateLimitBurst != DefaultRateLimitBurst || c.MaxTrackedIPs != DefaultMaxTrackedIPs {
		t.Errorf("rate limit = %v/%v/%v", c.RateLimitRPS, c.RateLimitBurst, c.MaxTrackedIPs)
	}
	if c.Limits.MaxFutureSkew != 5*time.Minute || c.Limits.MaxPhotoBytes != 5<<20 {
		t.Errorf("limits = %+v", c.Limits)
	}
	if c.PublishTimeout != DefaultPublishTimeout || c.RequestTimeout != DefaultRequestTimeout || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("timeouts = %v %v %v", c.PublishTimeout, c.RequestTimeout, c.ShutdownTimeout)
	}
	if c.LogLevel != slog.LevelInfo || len(c.TrustedProxies) != 0 {
		t.Errorf("log level %v, proxies %v", c.LogLevel, c.TrustedProxies)
	}
	if len(c.APIKeys) != 1 || c.APIKeys[0].Name != "phone" || c.APIKeys[0].Digest != sha256.Sum256([]byte(goodSecret)) {
		t.Errorf("keys = %+v", c.APIKeys)
	}
	if !c.APIKeys[0].Allows(ScopeIngest) || c.APIKeys[0].Allows(ScopeRead) {
		t.Errorf("scopes = %v", c.APIKeys[0].Scopes)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a loaded config: %v", err)
	}
}

func TestLoadAPIValues(t *testing.T) {
	digest := sha256.Sum256([]byte("another-long-secret"))
	c, err := LoadAPI(envMap(map[string]string{
		"HTTP_ADDR":        "127.0.0.1:9000",
		"ADMIN_ADDR":       "127.0.0.1:9001",
		"NATS_URL":         "nats://a:4222, nats://user:pw@b:4222",
		"API_KEYS":         "phone:" + goodSecret + ":ingest, frontend:sha256:" + strings.ToUpper(hex.EncodeToString(digest[:])) + ":read+ingest,colon:se:cr:et:long:enough:read+ingest",
		"RATE_LIMIT_RPS":   "2.5",
		"RATE_LIMIT_BURST": "5",
		"TRUSTED_PROXIES":  "10.0.0.0/8, 192.168.1.7, ::1, 172.16.5.4/12",
		"LOG_LEVEL":        "debug",
		"MAX_FUTURE_SKEW":  "90s",
		"PUBLISH_TIMEOUT":  "1s",
		"REQUEST_TIMEOUT":  "2s",
		"SHUTDOWN_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimitRPS != 2.5 || c.RateLimitBurst != 5 || c.Limits.MaxFutureSkew != 90*time.Second || c.LogLevel != slog.LevelDebug {
		t.Errorf("values = %+v", c)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("172.16.0.0/12"),
	}
	if fmt.Sprint(c.TrustedProxies) != fmt.Sprint(want) {
		t.Errorf("proxies = %v, want %v", c.TrustedProxies, want)
	}
	if len(c.APIKeys) != 3 {
		t.Fatalf("keys = %+v", c.APIKeys)
	}
	fe := c.APIKeys[1]
	if fe.Name != "frontend" || fe.Digest != digest || !fe.Allows(ScopeRead) || !fe.Allows(ScopeIngest) {
		t.Errorf("digest key = %+v", fe)
	}
	if c.APIKeys[2].Digest != sha256.Sum256([]byte("se:cr:et:long:enough")) {
		t.Error("a secret may contain colons: it is what lies between the first and the last one")
	}
}

func TestLoadAPIErrorsNameEveryVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"no keys", map[string]string{}, []string{"API_KEYS: is required"}},
		{"bad entry", map[string]string{"API_KEYS": "justaname"}, []string{"API_KEYS: entry 1 must be name:secret:scope"}},
		{"short secret", map[string]string{"API_KEYS": "a:tinypw:ingest"}, []string{"entry 1 (a): secret must be at least 16"}},
		{"bad scope", map[string]string{"API_KEYS": "a:" + goodSecret + ":write"}, []string{`unknown scope "write"`}},
		{"repeated scope", map[string]string{"API_KEYS": "a:" + goodSecret + ":ingest+ingest"}, []string{`scope "ingest" repeated`}},
		{"duplicate name", map[string]string{"API_KEYS": "a:" + goodSecret + ":ingest,a:" + goodSecret + "x:read"}, []string{`key name "a" appears more than once`}},
		{"bad name", map[string]string{"API_KEYS": "a b:" + goodSecret + ":ingest"}, []string{"entry 1: name must be"}},
		{"bad digest", map[string]string{"API_KEYS": "a:sha256:abcd:ingest"}, []string{"sha256: secret must be 64 hex digits"}},
		{"read only", map[string]string{"API_KEYS": "a:" + goodSecret + ":read"}, []string{`API_KEYS: must hold at least one key with the "ingest" scope`}},
		{"everything wrong at once", map[string]string{
			"API_KEYS":         "a:" + goodSecret + ":ingest",
			"HTTP_ADDR":        "8080",
			"ADMIN_ADDR":       ":99999",
			"NATS_URL":         "http://user:hunter2@host:4222,",
			"RATE_LIMIT_RPS":   "-1",
			"RATE_LIMIT_BURST": "0",
			"TRUSTED_PROXIES":  "10.0.0.0/33,nope",
			"LOG_LEVEL":        "loud",
			"MAX_FUTURE_SKEW":  "soon",
			"PUBLISH_TIMEOUT":  "0",
			"STREAM_MAX_BYTES": "lots",
		}, []string{
			"HTTP_ADDR:", "ADMIN_ADDR:", "NATS_URL: entry 1 has scheme \"http\"", "NATS_URL: entry 2 is empty",
			"RATE_LIMIT_RPS:", "RATE_LIMIT_BURST:", "TRUSTED_PROXIES: entry 1", "TRUSTED_PROXIES: entry 2",
			"LOG_LEVEL:", "MAX_FUTURE_SKEW:", "PUBLISH_TIMEOUT:", "STREAM_MAX_BYTES:",
		}},
		{"cross-field timeouts", map[string]string{
			"API_KEYS": "a:" + goodSecret + ":ingest", "PUBLISH_TIMEOUT": "5s", "REQUEST_TIMEOUT": "2s", "SHUTDOWN_TIMEOUT": "4s",
		}, []string{"REQUEST_TIMEOUT: must not be shorter than PUBLISH_TIMEOUT", "SHUTDOWN_TIMEOUT: must be longer than PUBLISH_TIMEOUT"}},
		{"same listener twice", map[string]string{
			"API_KEYS": "a:" + goodSecret + ":ingest", "HTTP_ADDR": ":9000", "ADMIN_ADDR": ":9000",
		}, []string{"ADMIN_ADDR: must differ from HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadAPI(envMap(tt.env))
			if err == nil {
				t.Fatal("LoadAPI accepted a wrong configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{goodSecret, "hunter2", "tinypw"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks secret %q:\n%v", secret, err)
				}
			}
		})
	}
}

func TestAPIKeyLogValueHidesDigest(t *testing.T) {
	k := NewAPIKey("phone", goodSecret, ScopeIngest)
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("k", "key", k)
	if strings.Contains(b.String(), "Digest") || !strings.Contains(b.String(), "phone") {
		t.Errorf("log line = %s", b.String())
	}
}
