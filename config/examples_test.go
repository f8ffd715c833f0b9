package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// TestExampleValuesAreRefused: a configuration copied from .env.example
// without generating its secrets does not start; the error names the
// variable and says how to generate a value, and each variable is named once.
func TestExampleValuesAreRefused(t *testing.T) {
	realKey := "k1:" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name   string
		load   func(Getenv) error
		env    map[string]string
		want   []string
		unique string // named exactly once
	}{
		{"api key secret", loadAPI, map[string]string{
			"API_KEYS": "phone-fleet:CHANGE_ME-generate-a-secret:ingest,frontend:" + goodSecret + ":read",
		}, []string{"API_KEYS: entry 1 (phone-fleet) still has the example secret", "openssl rand -hex 32"}, "API_KEYS"},
		{"api key secret, lower case", loadAPI, map[string]string{
			"API_KEYS": "a:" + goodSecret + ":ingest,b:please-change-me-now-x:read",
		}, []string{"API_KEYS: entry 2 (b) still has the example secret"}, "API_KEYS"},
		{"api photo keys", loadAPI, map[string]string{
			"API_KEYS": "a:" + goodSecret + ":ingest", "ENCRYPTION_KEYS": "k1:REPLACE_WITH_BASE64_32_BYTES",
		}, []string{"ENCRYPTION_KEYS: still has the example value", "openssl rand -base64 32"}, "ENCRYPTION_KEYS:"},
		{"api database password", loadAPI, map[string]string{
			"API_KEYS": "a:" + goodSecret + ":ingest", "DATABASE_URL": "postgres://challenge_api:CHANGE_ME_api_db@postgres:5432/telemetry",
		}, []string{"DATABASE_URL: the password still has the example value", "API_DB_PASSWORD"}, "DATABASE_URL"},
		{"worker keys", loadWorker, map[string]string{
			"DATABASE_URL": "postgres://telemetry:pw@db/telemetry", "ENCRYPTION_KEYS": "k1:CHANGE_ME_openssl_rand_base64_32",
		}, []string{"ENCRYPTION_KEYS: still has the example value"}, "ENCRYPTION_KEY"},
		{"worker single key", loadWorker, map[string]string{
			"DATABASE_URL": "postgres://telemetry:pw@db/telemetry", "ENCRYPTION_KEY": "change-me",
		}, []string{"ENCRYPTION_KEY: still has the example value"}, "ENCRYPTION_KEY"},
		{"worker database password", loadWorker, map[string]string{
			"DATABASE_URL": "postgres://telemetry:change-me@db/telemetry", "ENCRYPTION_KEYS": realKey,
		}, []string{"DATABASE_URL: the password still has the example value", "POSTGRES_PASSWORD"}, "DATABASE_URL"},
		{"worker database password, key=value DSN", loadWorker, map[string]string{
			"DATABASE_URL": "host=db user=telemetry password=CHANGE_ME dbname=telemetry", "ENCRYPTION_KEYS": realKey,
		}, []string{"DATABASE_URL: the password still has the example value"}, "DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.load(func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatal("an example value was accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), tt.unique); n != 1 {
				t.Errorf("%s named %d times, want once:\n%v", tt.unique, n, err)
			}
		})
	}
}

func loadAPI(get Getenv) error    { _, err := LoadAPI(get); return err }
func loadWorker(get Getenv) error { _, err := LoadWorker(get); return err }

func TestIsExample(t *testing.T) {
	for v, want := range map[string]bool{
		"CHANGE_ME": true, "change-me-too": true, "ChangeMe123": true, "k1:REPLACE_WITH_BASE64_32_BYTES": true,
		"replace-me": true, "": false, goodSecret: false, "0f3a9c": false, "exchange-metrics-key-01": false, "please-change-me-now": true,
	} {
		if got := isExample(v); got != want {
			t.Errorf("isExample(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestAPIKeysSharingASecret: the API finds a key by its secret, so of two
// keys with one secret only one could ever authenticate, with its own name
// and scopes; that is a configuration error, whether the secrets are given
// in plaintext or as digests.
func TestAPIKeysSharingASecret(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for name, keys := range map[string]string{
		"plaintext":           "phone:" + goodSecret + ":ingest,frontend:" + goodSecret + ":read",
		"digests":             "phone:" + digest + ":ingest,frontend:" + digest + ":read",
		"plaintext vs digest": "phone:" + goodSecret + ":ingest,frontend:sha256:" + sha256Hex(goodSecret) + ":read",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadAPI(envMap(map[string]string{"API_KEYS": keys}))
			if err == nil || !strings.Contains(err.Error(), `API_KEYS: keys "phone" and "frontend" have the same secret`) {
				t.Fatalf("err = %v, want the shared secret named", err)
			}
			if strings.Contains(err.Error(), goodSecret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
	c := API{HTTPAddr: ":1", AdminAddr: ":2", NATSURL: DefaultNATSURL, MaxTrackedIPs: 1, PublishTimeout: 1, RequestTimeout: 1, ShutdownTimeout: 2, ReadTimeout: 1,
		APIKeys: []APIKey{NewAPIKey("a", goodSecret, ScopeIngest), NewAPIKey("b", goodSecret, ScopeRead)}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "same secret") {
		t.Errorf("Validate of keys built by hand with one secret: %v", err)
	}
}

func TestRateLimitMaxClientsIsBounded(t *testing.T) {
	env := map[string]string{"API_KEYS": "a:" + goodSecret + ":ingest", "RATE_LIMIT_MAX_CLIENTS": "10000000"}
	if c, err := LoadAPI(envMap(env)); err != nil || c.MaxTrackedIPs != maxTrackedIPs {
		t.Fatalf("10,000,000: %v (%d)", err, c.MaxTrackedIPs)
	}
	for _, v := range []string{"10000001", "100000000", "0"} {
		env["RATE_LIMIT_MAX_CLIENTS"] = v
		if _, err := LoadAPI(envMap(env)); err == nil || !strings.Contains(err.Error(), "RATE_LIMIT_MAX_CLIENTS: must be an integer between 1 and 10000000") {
			t.Errorf("%s: err = %v, want RATE_LIMIT_MAX_CLIENTS named with its bounds", v, err)
		}
	}
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}
