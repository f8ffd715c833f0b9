package config

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

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
	// recently seen client's bucket is dropped. The device limiter has the
	// same cap.
	MaxTrackedIPs int
	// DeviceRateRPS is the token refill rate per device (per API key and
	// device_id), checked once the body is parsed, on top of the per-IP
	// limit: phones behind one carrier-grade NAT address share an IP
	// bucket, so an operator can lift the IP limit and still bound each
	// device. 0 (the default) disables it.
	DeviceRateRPS   float64
	DeviceRateBurst int
	// PhotoMaxInFlight bounds the photo uploads handled at once (each holds
	// up to ~2.7x its image, ~14 MiB for 5 MiB, while it is read, decoded
	// and published); past it the API sheds load with 503 instead of
	// running out of memory. 0 means DefaultPhotoMaxInFlight.
	PhotoMaxInFlight int
	// PhotoPerClient bounds one client IP's share of the photo uploads (an
	// IPv6 client's: its /64's), so a few clients with slow links cannot
	// take every slot; beyond it 429. 0 means DefaultPhotoPerClient; never
	// more than PhotoMaxInFlight.
	PhotoPerClient int
	// UploadMinRate is the slowest a request body may arrive, in bytes per
	// second on average once UploadRateGrace has passed; a slower body is
	// cut off with 408, so a trickle cannot hold a photo slot for the whole
	// ReadTimeout. 0 means DefaultUploadMinRate.
	UploadMinRate int64
	// UploadRateGrace is the start of a body that UploadMinRate does not
	// judge (a phone's link warming up, a 100-continue round trip). 0 means
	// DefaultUploadRateGrace.
	UploadRateGrace time.Duration
	// ImageMaxInFlight bounds the photo images served at once by GET
	// /telemetry/photo/{id}/image (each holds its ciphertext, then its
	// plaintext until a possibly slow client has it); past it 503. 0 means
	// DefaultImageMaxInFlight.
	ImageMaxInFlight int
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
	// their publishes, then the NATS drain. It starts after ShutdownDelay.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long the API keeps serving after SIGTERM with
	// /readyz already answering 503, so that load balancers polling it stop
	// sending traffic before the public listener closes. 0 (the default)
	// closes it at once. The delay comes before ShutdownTimeout, not out of
	// it: a supervisor's grace period must cover both.
	ShutdownDelay time.Duration

	Limits   models.Limits
	Topology messaging.TopologyConfig

	// Read configures the read API (config/read.go): off without a
	// DATABASE_URL.
	Read Read
	// Stream configures GET /telemetry/stream (config/stream.go).
	Stream Stream
}

// Defaults of the API configuration.
const (
	DefaultAPIHTTPAddr    = ":8080"
	DefaultAPIAdminAddr   = ":8081"
	DefaultRateLimitRPS   = 10
	DefaultRateLimitBurst = 20
	DefaultMaxTrackedIPs  = 100_000
	// maxTrackedIPs bounds RATE_LIMIT_MAX_CLIENTS: a tracked client
	// costs ~275 bytes (measured: map entry, LRU element, bucket, limiter),
	// so 10 million is ~2.75 GB; a typo in a larger value would let a flood
	// of source addresses take the host's memory.
	maxTrackedIPs = 10_000_000
	// DefaultPhotoMaxInFlight keeps photo uploads under ~650 MiB of live
	// memory (BenchmarkPhotoUploadMemory in handlers).
	DefaultPhotoMaxInFlight = 48
	// DefaultPhotoPerClient: however slow their links, it takes twelve
	// clients to hold the default slots.
	DefaultPhotoPerClient = 4
	// DefaultUploadMinRate (32 KiB/s) is about what a good EDGE link
	// carries; a 5 MiB photo at that rate would still outlast the read
	// timeout.
	DefaultUploadMinRate   = 32 << 10
	DefaultUploadRateGrace = 5 * time.Second
	// DefaultImageMaxInFlight keeps image downloads under ~160 MiB.
	DefaultImageMaxInFlight = 16
	DefaultReadTimeout      = 60 * time.Second
	DefaultPublishTimeout   = 3 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultShutdownTimeout  = 25 * time.Second
)

// LoadAPI reads the API configuration from the environment and validates it
// across fields. The error names every wrong variable.
func LoadAPI(getenv Getenv) (API, error) {
	e := &env{get: getenv}
	e.refuseExampleKeys()
	lim := models.DefaultLimits()
	lim.MaxFutureSkew = e.duration("MAX_FUTURE_SKEW", lim.MaxFutureSkew, 0)
	c := API{
		HTTPAddr:         e.addr("HTTP_ADDR", DefaultAPIHTTPAddr),
		AdminAddr:        e.addr("ADMIN_ADDR", DefaultAPIAdminAddr),
		NATSURL:          e.natsURL("NATS_URL", DefaultNATSURL),
		NATSConnectWait:  e.duration("NATS_CONNECT_TIMEOUT", DefaultNATSConnectTimeout, 0),
		APIKeys:          e.apiKeys("API_KEYS"),
		RateLimitRPS:     e.float("RATE_LIMIT_RPS", DefaultRateLimitRPS, 0, 1e6),
		RateLimitBurst:   e.int("RATE_LIMIT_BURST", DefaultRateLimitBurst, 1, 1_000_000),
		MaxTrackedIPs:    e.int("RATE_LIMIT_MAX_CLIENTS", DefaultMaxTrackedIPs, 1, maxTrackedIPs),
		DeviceRateRPS:    e.float("RATE_LIMIT_DEVICE_RPS", 0, 0, 1e6),
		DeviceRateBurst:  e.int("RATE_LIMIT_DEVICE_BURST", DefaultRateLimitBurst, 1, 1_000_000),
		PhotoMaxInFlight: e.int("PHOTO_MAX_INFLIGHT", DefaultPhotoMaxInFlight, 1, 100_000),
		ImageMaxInFlight: e.int("IMAGE_MAX_INFLIGHT", DefaultImageMaxInFlight, 1, 10_000),
		PhotoPerClient:   e.int("PHOTO_MAX_INFLIGHT_PER_CLIENT", DefaultPhotoPerClient, 1, 100_000),
		UploadMinRate:    e.bytes("UPLOAD_MIN_RATE", DefaultUploadMinRate),
		UploadRateGrace:  e.duration("UPLOAD_MIN_RATE_GRACE", DefaultUploadRateGrace, 100*time.Millisecond),
		TrustedProxies:   e.prefixes("TRUSTED_PROXIES"),
		LogLevel:         e.logLevel(),
		ReadTimeout:      e.duration("HTTP_READ_TIMEOUT", DefaultReadTimeout, time.Second),
		PublishTimeout:   e.duration("PUBLISH_TIMEOUT", DefaultPublishTimeout, 10*time.Millisecond),
		RequestTimeout:   e.duration("REQUEST_TIMEOUT", DefaultRequestTimeout, 10*time.Millisecond),
		ShutdownTimeout:  e.duration("SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Second),
		ShutdownDelay:    e.duration("SHUTDOWN_DELAY", 0, 0),
		Limits:           lim,
		Topology:         e.topology(),
		Read:             e.read(),
		Stream:           e.stream(),
	}
	e.refuseExamplePassword("DATABASE_URL", c.Read.DatabaseURL)
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
	secrets := map[[sha256.Size]byte]string{} // digest → the first key name with it
	for _, k := range c.APIKeys {
		if names[k.Name] {
			fail("API_KEYS", "key name %q appears more than once", k.Name)
		}
		names[k.Name] = true
		// The API finds a key by its secret: of two keys sharing one, only
		// one could ever authenticate, with its own name and scopes.
		if first, ok := secrets[k.Digest]; ok {
			fail("API_KEYS", "keys %q and %q have the same secret; give each key its own", first, k.Name)
		}
		secrets[k.Digest] = k.Name
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
	if c.DeviceRateRPS < 0 {
		fail("RATE_LIMIT_DEVICE_RPS", "must not be negative")
	}
	if c.DeviceRateRPS > 0 && c.DeviceRateBurst < 1 {
		fail("RATE_LIMIT_DEVICE_BURST", "must be at least 1")
	}
	if c.PhotoMaxInFlight < 0 {
		fail("PHOTO_MAX_INFLIGHT", "must be at least 1")
	}
	if c.ImageMaxInFlight < 0 {
		fail("IMAGE_MAX_INFLIGHT", "must be at least 1")
	}
	if c.PhotoPerClient < 0 {
		fail("PHOTO_MAX_INFLIGHT_PER_CLIENT", "must be at least 1")
	}
	if c.UploadMinRate < 0 || c.UploadMinRate > 1<<30 {
		fail("UPLOAD_MIN_RATE", "must be a positive rate in bytes per second of at most 1GiB, such as 32KiB")
	}
	if c.UploadRateGrace < 0 || (c.ReadTimeout > 0 && c.UploadRateGrace >= c.ReadTimeout) {
		fail("UPLOAD_MIN_RATE_GRACE", "must be shorter than HTTP_READ_TIMEOUT (%s)", c.ReadTimeout)
	}
	if c.MaxTrackedIPs < 1 || c.MaxTrackedIPs > maxTrackedIPs {
		fail("RATE_LIMIT_MAX_CLIENTS", "must be between 1 and %d (each tracked client costs ~275 bytes)", maxTrackedIPs)
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
	if c.ShutdownDelay < 0 {
		fail("SHUTDOWN_DELAY", "must not be negative")
	}
	// The budgets add up (delay, then drain); bounding the delay by the
	// drain's budget catches a unit slip such as 15m for 15s.
	if c.ShutdownDelay >= c.ShutdownTimeout {
		fail("SHUTDOWN_DELAY", "must be shorter than SHUTDOWN_TIMEOUT (%s); the drain's budget starts after the delay, so a grace period must cover both", c.ShutdownTimeout)
	}
	if c.ReadTimeout <= 0 {
		fail("HTTP_READ_TIMEOUT", "must be positive")
	}
	checkShared(c.Limits, c.Topology, fail)
	c.Read.check(fail)
	c.Stream.check(fail)
}
