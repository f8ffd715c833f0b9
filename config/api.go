package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

// Scope is a permission an API key carries.
type Scope string

// The scopes of API_KEYS.
const (
	ScopeIngest Scope = "ingest" // POST telemetry
	ScopeRead   Scope = "read"   // GET stored data
)

// MinSecretLen is the shortest plaintext API key secret accepted; a
// sha256:<hex> digest is not subject to it (its entropy is not visible).
const MinSecretLen = 16

// APIKey is one entry of API_KEYS. Only the SHA-256 digest of the secret is
// kept, so the plaintext never outlives start-up.
type APIKey struct {
	Name   string // logged and recorded as the actor; never the secret
	Digest [sha256.Size]byte
	Scopes []Scope
}

// Allows reports whether the key carries scope s.
func (k APIKey) Allows(s Scope) bool {
	for _, have := range k.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// LogValue keeps the digest out of logs.
func (k APIKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", k.Name), slog.Any("scopes", k.Scopes))
}

// NewAPIKey builds a key from its plaintext secret (tests and dev tooling).
func NewAPIKey(name, secret string, scopes ...Scope) APIKey {
	return APIKey{Name: name, Digest: sha256.Sum256([]byte(secret)), Scopes: scopes}
}

// API is the configuration of cmd/api.
type API struct {
	HTTPAddr  string // public listener for the telemetry routes
	AdminAddr string // /metrics, /healthz, /readyz; keep it private
	NATSURL   string // one URL or a comma-separated list of a cluster's URLs
	// NATSConnectWait is how long start-up keeps trying to reach NATS.
	NATSConnectWait time.Duration

	APIKeys []APIKey

	// RateLimitRPS is the token refill rate per client IP; 0 disables rate
	// limiting (e.g. behind a gateway that does it).
	RateLimitRPS   float64
	RateLimitBurst int
	// MaxTrackedIPs caps the rate limiter's memory: past it the least
	// recently seen client's bucket is dropped.
	MaxTrackedIPs int
	// PhotoMaxInFlight bounds the photo uploads handled at once (each holds
	// up to ~20 MB while it is read, decoded and published); past it the
	// API sheds load with 503 instead of running out of memory. 0 means
	// DefaultPhotoMaxInFlight.
	PhotoMaxInFlight int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix

	LogLevel slog.Level

	// ReadTimeout bounds reading one whole request, body included: long
	// enough for a 7 MiB upload over a slow mobile link.
	ReadTimeout time.Duration
	// PublishTimeout bounds each JetStream call (idempotency claim, publish).
	PublishTimeout time.Duration
	// RequestTimeout bounds the work done after a request's body has been
	// read (claim + publish), whatever the individual call timeouts.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown: in-flight requests and
	// their publishes, then the NATS drain.
	ShutdownTimeout time.Duration

	Limits   models.Limits
	Topology messaging.TopologyConfig
}

// Defaults of the API configuration.
const (
	DefaultAPIHTTPAddr    = ":8080"
	DefaultAPIAdminAddr   = ":8081"
	DefaultNATSURL        = "nats://127.0.0.1:4222"
	DefaultRateLimitRPS   = 10
	DefaultRateLimitBurst = 20
	DefaultMaxTrackedIPs  = 100_000
	// DefaultPhotoMaxInFlight keeps photo uploads under ~1 GB of memory.
	DefaultPhotoMaxInFlight = 48
	DefaultReadTimeout      = 60 * time.Second
	DefaultPublishTimeout   = 3 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultShutdownTimeout  = 25 * time.Second
)

// LoadAPI reads the API configuration from the environment and validates it
// across fields. The error names every wrong variable.
func LoadAPI(getenv Getenv) (API, error) {
	e := &env{get: getenv}
	lim := models.DefaultLimits()
	lim.MaxFutureSkew = e.duration("MAX_FUTURE_SKEW", lim.MaxFutureSkew, 0)
	c := API{
		HTTPAddr:         e.addr("HTTP_ADDR", DefaultAPIHTTPAddr),
		AdminAddr:        e.addr("ADMIN_ADDR", DefaultAPIAdminAddr),
		NATSURL:          e.natsURL("NATS_URL", DefaultNATSURL),
		NATSConnectWait:  e.duration("NATS_CONNECT_TIMEOUT", 30*time.Second, 0),
		APIKeys:          e.apiKeys("API_KEYS"),
		RateLimitRPS:     e.float("RATE_LIMIT_RPS", DefaultRateLimitRPS, 0, 1e6),
		RateLimitBurst:   e.int("RATE_LIMIT_BURST", DefaultRateLimitBurst, 1, 1_000_000),
		MaxTrackedIPs:    e.int("RATE_LIMIT_MAX_CLIENTS", DefaultMaxTrackedIPs, 1, 100_000_000),
		PhotoMaxInFlight: e.int("PHOTO_MAX_INFLIGHT", DefaultPhotoMaxInFlight, 1, 100_000),
		TrustedProxies:   e.prefixes("TRUSTED_PROXIES"),
		LogLevel:         e.logLevel(),
		ReadTimeout:      e.duration("HTTP_READ_TIMEOUT", DefaultReadTimeout, time.Second),
		PublishTimeout:   e.duration("PUBLISH_TIMEOUT", DefaultPublishTimeout, 10*time.Millisecond),
		RequestTimeout:   e.duration("REQUEST_TIMEOUT", DefaultRequestTimeout, 10*time.Millisecond),
		ShutdownTimeout:  e.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Second),
		Limits:           lim,
		Topology:         e.topology(),
	}
	c.check(e)
	if err := e.err(); err != nil {
		return API{}, fmt.Errorf("api configuration: %w", err)
	}
	return c, nil
}

// Validate checks a configuration built by hand (tests, the dev stack) by
// the same cross-field rules LoadAPI applies.
func (c API) Validate() error {
	e := &env{}
	c.check(e)
	return e.err()
}

// check applies the cross-field rules, skipping variables that already
// failed on their own so each is named once.
func (c API) check(e *env) {
	failed := map[string]bool{}
	for _, err := range e.errs {
		name, _, _ := strings.Cut(err.Error(), ":")
		failed[name] = true
	}
	fail := func(name, format string, args ...any) {
		if !failed[name] {
			failed[name] = true
			e.fail(name, format, args...)
		}
	}
	if c.HTTPAddr == "" {
		fail("HTTP_ADDR", "is required")
	}
	if c.AdminAddr == "" {
		fail("ADMIN_ADDR", "is required")
	}
	if c.HTTPAddr != "" && c.HTTPAddr == c.AdminAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		fail("ADMIN_ADDR", "must differ from HTTP_ADDR (%s)", c.HTTPAddr)
	}
	if c.NATSURL == "" {
		fail("NATS_URL", "is required")
	}
	ingest := false
	names := map[string]bool{}
	for _, k := range c.APIKeys {
		if names[k.Name] {
			fail("API_KEYS", "key name %q appears more than once", k.Name)
		}
		names[k.Name] = true
		ingest = ingest || k.Allows(ScopeIngest)
	}
	if !ingest {
		fail("API_KEYS", "must hold at least one key with the %q scope (format name:secret:ingest[+read])", ScopeIngest)
	}
	if c.RateLimitRPS < 0 {
		fail("RATE_LIMIT_RPS", "must not be negative")
	}
	if c.RateLimitRPS > 0 && c.RateLimitBurst < 1 {
		fail("RATE_LIMIT_BURST", "must be at least 1")
	}
	if c.PhotoMaxInFlight < 0 {
		fail("PHOTO_MAX_INFLIGHT", "must be at least 1")
	}
	if c.MaxTrackedIPs < 1 {
		fail("RATE_LIMIT_MAX_CLIENTS", "must be at least 1")
	}
	if c.PublishTimeout <= 0 {
		fail("PUBLISH_TIMEOUT", "must be positive")
	}
	if c.RequestTimeout < c.PublishTimeout {
		fail("REQUEST_TIMEOUT", "must not be shorter than PUBLISH_TIMEOUT (%s)", c.PublishTimeout)
	}
	if c.ShutdownTimeout <= c.PublishTimeout {
		fail("SHUTDOWN_TIMEOUT", "must be longer than PUBLISH_TIMEOUT (%s) so in-flight publishes can finish", c.PublishTimeout)
	}
	if c.ReadTimeout <= 0 {
		fail("HTTP_READ_TIMEOUT", "must be positive")
	}
	checkShared(c.Limits, c.Topology, fail)
}

// addr reads a listen address host:port (host may be empty).
func (e *env) addr(name, def string) string {
	v := e.str(name, def)
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		e.fail(name, "must be host:port or :port, got %q", v)
		return v
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.fail(name, "port must be a number between 0 and 65535, got %q", v)
	}
	return v
}

// natsURL reads a NATS URL or a comma-separated list of them. Errors never
// echo the value: it may carry credentials.
func (e *env) natsURL(name, def string) string {
	v := e.str(name, def)
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			e.fail(name, "entry %d is empty", i+1)
			continue
		}
		if !strings.Contains(part, "://") {
			part = "nats://" + part
		}
		u, err := url.Parse(part)
		if err != nil || u.Host == "" {
			e.fail(name, "entry %d is not a URL such as nats://host:4222", i+1)
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			e.fail(name, "entry %d has scheme %q; use nats, tls, ws or wss", i+1, u.Scheme)
		}
	}
	return v
}

// apiKeys parses "name:secret:scope[+scope]" entries, comma-separated. The
// secret is what lies between the first and the last colon, so it may be
// "sha256:<64 hex digits>" or contain colons itself. Errors name the entry by
// position and key name, never the secret.
func (e *env) apiKeys(name string) []APIKey {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		e.fail(name, "is required: comma-separated name:secret:scope[+scope] entries, scopes ingest and read")
		return nil
	}
	var keys []APIKey
	seen := map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		first, last := strings.Index(entry, ":"), strings.LastIndex(entry, ":")
		if first < 0 || first == last {
			e.fail(name, "entry %d must be name:secret:scope[+scope]", i+1)
			continue
		}
		keyName, secret, scopeList := entry[:first], entry[first+1:last], entry[last+1:]
		ok := true
		if !validKeyName(keyName) {
			e.fail(name, "entry %d: name must be 1-64 characters of [A-Za-z0-9._-]", i+1)
			ok = false
		} else if seen[keyName] {
			e.fail(name, "entry %d: key name %q appears more than once", i+1, keyName)
			ok = false
		}
		seen[keyName] = true
		k := APIKey{Name: keyName}
		if hexDigest, isDigest := strings.CutPrefix(secret, "sha256:"); isDigest {
			b, err := hex.DecodeString(hexDigest)
			if err != nil || len(b) != sha256.Size {
				e.fail(name, "entry %d (%s): sha256: secret must be 64 hex digits", i+1, keyName)
				ok = false
			} else {
				copy(k.Digest[:], b)
			}
		} else if len(secret) < MinSecretLen {
			e.fail(name, "entry %d (%s): secret must be at least %d characters (or sha256:<hex>)", i+1, keyName, MinSecretLen)
			ok = false
		} else {
			k.Digest = sha256.Sum256([]byte(secret))
		}
		for _, s := range strings.Split(scopeList, "+") {
			switch sc := Scope(s); sc {
			case ScopeIngest, ScopeRead:
				if k.Allows(sc) {
					e.fail(name, "entry %d (%s): scope %q repeated", i+1, keyName, s)
					ok = false
				}
				k.Scopes = append(k.Scopes, sc)
			default:
				e.fail(name, "entry %d (%s): unknown scope %q; use ingest, read or ingest+read", i+1, keyName, s)
				ok = false
			}
		}
		if ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func validKeyName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// prefixes reads a comma-separated list of CIDR prefixes or single
// addresses (a bare address is its own /32 or /128).
func (e *env) prefixes(name string) []netip.Prefix {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for i, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		var p netip.Prefix
		var err error
		if strings.Contains(part, "/") {
			p, err = netip.ParsePrefix(part)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(part); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			e.fail(name, "entry %d must be a CIDR prefix such as 10.0.0.0/8 or an IP address, got %q", i+1, part)
			continue
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
		}
		out = append(out, p)
	}
	return out
}
