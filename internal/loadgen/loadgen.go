// Package loadgen sends HTTP load at a server and measures what it answered:
// the engine under cmd/loadtest (the operator's tool) and `make bench`.
//
// Two ways to generate load, because they answer different questions:
//
//   - closed loop (Config.Rate 0): Concurrency workers each send a request,
//     wait for the answer and send the next. It finds the throughput ceiling,
//     but a slow server slows the arrivals down, so its latencies hide the
//     queueing a real fleet of phones would cause.
//   - open loop (Config.Rate > 0): requests are due at a constant rate
//     whatever the server does, and latency is measured from the time a
//     request was due, not sent, so a stall shows as the latency every
//     waiting request saw ("coordinated omission" avoided). At most
//     Concurrency requests are in flight; an arrival finding them all busy is
//     counted as Dropped, never silently delayed.
//
// Only 2xx answers count as success; every other status and every transport
// error is counted by kind and never in OK, Readings or Latency. Targets are
// loopback-only unless Config.AllowRemote says otherwise.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/ierr"
)

// Request is one HTTP request to send. Readings is how many readings it
// carries (1, or N for a batch; 0 counts as 1), counted into Result.Readings
// when the answer is 2xx.
type Request struct {
	Method   string      // default POST
	Path     string      // joined to Config.BaseURL, e.g. "/telemetry/gps"
	Header   http.Header // sent as is (shared, never mutated by loadgen)
	Body     []byte      // sent as is
	Readings int
	// Label, if set, groups this request's outcome in Result.ByLabel (e.g.
	// "gps", "batch", "photo"), so a mix reports each kind on its own.
	Label string
}

// Source returns the i-th request (i from 0, warm-up requests included; in
// open loop i is the arrival's number, so a dropped arrival's i is never
// asked for); it must be safe for concurrent use, as every worker calls it.
type Source func(i int64) Request

// Config describes one run. Both bounds, N and Duration, apply to the
// recorded period, after the warm-up: a run lasts at most Warmup + Duration
// (plus the drain of the requests still in flight).
type Config struct {
	BaseURL string       // e.g. http://127.0.0.1:8080
	Client  *http.Client // nil: one with Concurrency keep-alive conns, no proxy, no redirects, a 30 s timeout
	// Closed loop: the number of workers; open loop: the cap on requests in flight.
	Concurrency int
	Rate        float64 // > 0: open loop, constant arrivals per second; 0: closed loop
	// N stops the run after N recorded requests (open loop: N recorded
	// arrivals, dropped ones included). 0: no count bound; then Duration must be set.
	N        int64
	Duration time.Duration // stop after this long (0: no time bound; then N must be set)
	Warmup   time.Duration // requests due (or sent) during warm-up are sent but not recorded
	Source   Source
	// DrainTimeout is how long requests still in flight when the run stops
	// may take before they are cancelled (and counted in Cancelled).
	// 0: 10 s.
	DrainTimeout  time.Duration
	Progress      io.Writer     // nil: silent; else one line every ProgressEvery
	ProgressEvery time.Duration // 0: 1 s
	// OnResponse, if set, is called for every recorded 2xx answer with its
	// body (e.g. to collect ids; the body is the callee's to keep) and the
	// time the request was due (open loop) or sent (closed loop). It is
	// called from many goroutines at once, after the latency was taken, and
	// holds its worker meanwhile.
	OnResponse func(req Request, status int, body []byte, due time.Time)
	// AllowRemote lifts the loopback-only rule: for pointing the tool at a
	// deployment you own. Tests and the bench never set it.
	AllowRemote bool
}

// Result is what a run recorded. Every recorded request is in exactly one of
// Status (it got an answer), Errors (it did not) or Cancelled; Sent is the
// first two together.
type Result struct {
	Sent, OK  int64            // OK: 2xx answers
	Readings  int64            // sum of Request.Readings over 2xx answers
	Status    map[int]int64    // every status received
	Errors    map[string]int64 // transport errors by class (timeout, refused, reset, eof, …): never success
	Dropped   int64            // open loop: arrivals not sent because Concurrency requests were in flight
	Cancelled int64            // cut off by ctx or the drain timeout: neither success nor failure
	Elapsed   time.Duration    // recorded period: from the end of warm-up until the last recorded request ended
	Latency   *Histogram       // of 2xx answers; open loop: from the due time (no coordinated omission)
	// ErrorSamples holds the first error message of each class in Errors,
	// for a report to show what "other" was.
	ErrorSamples map[string]string
	// ByLabel holds the same figures for the requests of each Request.Label
	// (nil when no request had one); Dropped is 0 there, as a dropped
	// arrival's request is never built, and Elapsed is the run's.
	ByLabel map[string]Result
}

// RequestsPerSecond returns the rate of 2xx answers over the recorded period.
func (r Result) RequestsPerSecond() float64 { return perSecond(r.OK, r.Elapsed) }

// ReadingsPerSecond returns the rate of readings answered 2xx over the recorded period.
func (r Result) ReadingsPerSecond() float64 { return perSecond(r.Readings, r.Elapsed) }

// Failed returns the recorded requests that got a non-2xx answer or none.
func (r Result) Failed() int64 { return r.Sent - r.OK }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Bounds on a configuration, so a typo cannot start an unbounded run.
const (
	maxConcurrency = 10_000
	defaultDrain   = 10 * time.Second
	defaultTimeout = 30 * time.Second
)

// validate checks cfg across fields and returns the parsed base URL.
func validate(cfg Config) (*url.URL, error) {
	const op = "loadgen.Run"
	var errs []error
	if cfg.Concurrency < 1 || cfg.Concurrency > maxConcurrency {
		errs = append(errs, fmt.Errorf("Concurrency must be between 1 and %d, got %d", maxConcurrency, cfg.Concurrency))
	}
	if cfg.Rate < 0 || cfg.Rate != cfg.Rate || cfg.Rate > 1e9 {
		errs = append(errs, fmt.Errorf("Rate must be 0 (closed loop) or a positive rate, got %g", cfg.Rate))
	}
	if cfg.N < 0 || cfg.Duration < 0 || cfg.Warmup < 0 || cfg.DrainTimeout < 0 || cfg.ProgressEvery < 0 {
		errs = append(errs, errors.New("N, Duration, Warmup, DrainTimeout and ProgressEvery must not be negative"))
	}
	if cfg.N == 0 && cfg.Duration == 0 {
		errs = append(errs, errors.New("N or Duration must be set: a run is always bounded"))
	}
	if cfg.Source == nil {
		errs = append(errs, errors.New("Source is required"))
	}
	base, err := CheckTarget(cfg.BaseURL, cfg.AllowRemote)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, ierr.E(ierr.Invalid, op, err)
	}
	return base, nil
}

// CheckTarget parses an http(s) base URL and, unless allowRemote, refuses
// any host that is not this machine: an IP literal must be loopback, and a
// name must be localhost (or *.localhost) and resolve to loopback only.
func CheckTarget(raw string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base URL must be an http(s) URL, got %q", raw)
	}
	if allowRemote {
		return u, nil
	}
	host := u.Hostname()
	var addrs []net.IP
	if ip := net.ParseIP(host); ip != nil {
		addrs = []net.IP{ip}
	} else if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		ips, err := net.LookupIP(host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		addrs = ips
	} else {
		return nil, fmt.Errorf("base URL must name a loopback address (127.0.0.1, ::1, localhost), got %q", host)
	}
	for _, ip := range addrs {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("base URL must name a loopback address, %s is not", ip)
		}
	}
	return u, nil
}

// newClient is the default client: keep-alive connections for every worker,
// never a proxy (an environment proxy would measure itself), never a
// redirect (a 3xx is an answer to report, not to follow).
func newClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout:       defaultTimeout,
		Transport:     NewTransport(concurrency),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NewTransport is the default client's transport: a keep-alive connection
// per concurrent request, no proxy (an environment proxy would measure
// itself), bounded dial and handshake times. Tools that wrap the transport
// (cmd/loadtest records the answers' rate-limit policy) start from it.
func NewTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
}

// Run sends the load cfg describes and returns what it recorded. It stops at
// the first bound reached (N, Duration) or when ctx ends, and returns the
// partial result then; the error is only for a bad Config.
func Run(ctx context.Context, cfg Config) (Result, error) {
	base, err := validate(cfg)
	if err != nil {
		return Result{}, err
	}
	if cfg.Client == nil {
		cfg.Client = newClient(cfg.Concurrency)
		defer cfg.Client.CloseIdleConnections()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = defaultDrain
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	r := newRunner(cfg, base)
	return r.run(ctx), nil
}
