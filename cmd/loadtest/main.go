// Command loadtest fires a bounded number of telemetry requests at a running
// API on this machine and reports throughput, latency percentiles and status
// counts:
//
//	go run ./cmd/loadtest -url http://127.0.0.1:8080 -key "$API_KEY" -type gps -n 10000 -c 50
//
// It only talks to loopback addresses, stops after -n requests or -duration,
// whichever comes first, and never follows redirects. The API rate-limits per
// client IP, so start it with RATE_LIMIT_RPS=0 (or a high limit) to measure
// the pipeline rather than the limiter.
//
// Answers that are not 2xx are reported with a warning saying what they
// mean (429: the rate limit, and how to lift it), and the exit code is 1
// when more than half of the answers were not 2xx: a run that measured
// refusals must not look like a benchmark result to a script. Bad flags exit
// 2.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds on what one run may do.
const (
	maxRequests    = 1_000_000
	maxConcurrency = 1_000
	maxDuration    = 10 * time.Minute
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // more than half of the answers were not 2xx
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	base     *url.URL
	key      string
	n, c     int
	typ      string
	duration time.Duration
	photo    []byte
	photoB64 string // encoded once, not per request
}

func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "http://127.0.0.1:8080", "base URL of the API (loopback only)")
	key := fs.String("key", os.Getenv("API_KEY"), "API key with the ingest scope (default $API_KEY)")
	n := fs.Int("n", 1000, fmt.Sprintf("number of requests (at most %d)", maxRequests))
	c := fs.Int("c", 10, fmt.Sprintf("concurrent requests (at most %d)", maxConcurrency))
	typ := fs.String("type", "gps", "telemetry type: gps, gyroscope or photo")
	duration := fs.Duration("duration", 30*time.Second, fmt.Sprintf("stop after this long even if -n is not reached (at most %s)", maxDuration))
	photoPath := fs.String("photo", "", "JPEG or PNG file to send with -type photo (default: a generated 256x256 PNG)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{key: *key, n: *n, c: *c, typ: *typ, duration: *duration}
	var errs []error
	if o.n < 1 || o.n > maxRequests {
		errs = append(errs, fmt.Errorf("-n must be between 1 and %d", maxRequests))
	}
	if o.c < 1 || o.c > maxConcurrency {
		errs = append(errs, fmt.Errorf("-c must be between 1 and %d", maxConcurrency))
	}
	if o.duration <= 0 || o.duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration must be positive and at most %s", maxDuration))
	}
	if o.key == "" {
		errs = append(errs, errors.New("-key (or $API_KEY) is required"))
	}
	switch o.typ {
	case "gps", "gyroscope":
	case "photo":
		var err error
		if *photoPath != "" {
			o.photo, err = os.ReadFile(*photoPath)
		} else {
			o.photo, err = generatePNG()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("-photo: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("-type must be gps, gyroscope or photo, got %q", o.typ))
	}
	o.photoB64 = base64.StdEncoding.EncodeToString(o.photo)
	u, err := loopbackURL(*rawURL)
	if err != nil {
		errs = append(errs, err)
	}
	o.base = u
	return o, errors.Join(errs...)
}

// loopbackURL refuses any target that is not this machine.
func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-url must be an http(s) URL, got %q", raw)
	}
	host := u.Hostname()
	var addrs []net.IP
	if ip := net.ParseIP(host); ip != nil {
		addrs = []net.IP{ip}
	} else if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		ips, err := net.LookupIP(host)
		if err != nil {
			return nil, fmt.Errorf("-url: resolving %s: %w", host, err)
		}
		addrs = ips
	} else {
		return nil, fmt.Errorf("-url must name a loopback address (127.0.0.1, ::1, localhost), got %q", host)
	}
	for _, ip := range addrs {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("-url must name a loopback address, %s is not", ip)
		}
	}
	return u, nil
}

func generatePNG() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for y := range 256 {
		for x := range 256 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	err := png.Encode(&b, img)
	return b.Bytes(), err
}

// body builds request i's body; each worker reports as its own device.
func (o options) body(i int, now time.Time) []byte {
	device := fmt.Sprintf("loadtest-%04d", i%10_000)
	ts := now.UTC().Format(time.RFC3339Nano)
	switch o.typ {
	case "gyroscope":
		return fmt.Appendf(nil, `{"device_id":%q,"timestamp":%q,"x":%g,"y":%g,"z":%g}`,
			device, ts, rand.NormFloat64(), rand.NormFloat64(), rand.NormFloat64())
	case "photo":
		return fmt.Appendf(nil, `{"device_id":%q,"timestamp":%q,"photo":%q}`,
			device, ts, o.photoB64)
	default:
		return fmt.Appendf(nil, `{"device_id":%q,"timestamp":%q,"latitude":%g,"longitude":%g}`,
			device, ts, -23.55+rand.Float64()/100, -46.63+rand.Float64()/100)
	}
}

type sample struct {
	latency time.Duration
	status  string // "202", "transport error"; "" when cut off by -duration or Ctrl-C
	ok      bool   // a 2xx answer
	policy  string // RateLimit-Policy of a 429, e.g. "20;w=2"
}

// run runs the load test and returns the exit code; the report goes to out,
// flag errors and warnings about the answers to errOut.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	o, err := parse(args, errOut)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(errOut, "loadtest:", err)
		return exitUsage
	}
	target := o.base.JoinPath("/telemetry/" + o.typ).String()
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil, // never via a proxy: the target is loopback
			MaxIdleConns:        o.c,
			MaxIdleConnsPerHost: o.c,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()

	samples := make([]sample, o.n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range o.c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= o.n || ctx.Err() != nil {
					return
				}
				samples[i] = send(ctx, client, target, o.key, o.body(i, time.Now()))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := samples[:min(o.n, int(next.Load()))]
	return report(out, errOut, target, o, done, elapsed)
}

func send(ctx context.Context, client *http.Client, target, key string, body []byte) sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return sample{status: "error"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	begin := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return sample{} // cut off by -duration or Ctrl-C: not counted
		}
		return sample{latency: time.Since(begin), status: "transport error"}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s := sample{latency: time.Since(begin), status: fmt.Sprint(resp.StatusCode), ok: resp.StatusCode/100 == 2}
	if resp.StatusCode == http.StatusTooManyRequests {
		s.policy = resp.Header.Get("RateLimit-Policy")
	}
	return s
}

// report prints the figures to out and, when some answers were not 2xx, a
// warning per cause to errOut; it returns the exit code.
func report(out, errOut io.Writer, target string, o options, samples []sample, elapsed time.Duration) int {
	var lat []time.Duration // of 2xx answers: refusals are fast and would flatter the figures
	counts := map[string]int{}
	answered, policy := 0, ""
	var sum time.Duration
	for _, s := range samples {
		if s.status == "" {
			continue
		}
		answered++
		counts[s.status]++
		if s.policy != "" {
			policy = s.policy
		}
		if s.ok {
			lat = append(lat, s.latency)
			sum += s.latency
		}
	}
	accepted := len(lat)
	fmt.Fprintf(out, "target      %s (%s, -n %d, -c %d)\n", target, o.typ, o.n, o.c)
	fmt.Fprintf(out, "completed   %d requests in %s (%.1f req/s, any status)\n", answered, elapsed.Round(time.Millisecond), float64(answered)/elapsed.Seconds())
	if answered == 0 {
		fmt.Fprintln(errOut, "loadtest: no request was answered before -duration ran out")
		return exitFailed
	}
	fmt.Fprintf(out, "2xx         %d of %d (%s), %.1f req/s\n", accepted, answered, percent(accepted, answered), float64(accepted)/elapsed.Seconds())
	if accepted > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		fmt.Fprintf(out, "latency     p50 %s  p90 %s  p99 %s  max %s  mean %s (2xx answers)\n",
			pct(.50).Round(time.Microsecond), pct(.90).Round(time.Microsecond), pct(.99).Round(time.Microsecond),
			lat[len(lat)-1].Round(time.Microsecond), (sum / time.Duration(len(lat))).Round(time.Microsecond))
	}
	statuses := make([]string, 0, len(counts))
	for s := range counts {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	var b strings.Builder
	for _, s := range statuses {
		fmt.Fprintf(&b, "  %s: %d (%s)", s, counts[s], percent(counts[s], answered))
	}
	fmt.Fprintf(out, "status    %s\n", b.String())

	for _, s := range statuses {
		if s[0] == '2' {
			continue
		}
		fmt.Fprintf(errOut, "WARNING: %d of %d answers (%s) were %s: %s\n", counts[s], answered, percent(counts[s], answered), s, hint(s, policy))
	}
	if failed := answered - accepted; failed*2 > answered {
		fmt.Fprintf(errOut, "loadtest: FAILED: %d of %d answers (%s) were not 2xx; the figures above do not measure the pipeline\n",
			failed, answered, percent(failed, answered))
		return exitFailed
	}
	return exitOK
}

// hint says what answers of status mean and what to do about them; policy
// is the RateLimit-Policy a 429 carried ("<burst>;w=<seconds to refill>").
func hint(status, policy string) string {
	switch status {
	case "429":
		limit := "by default RATE_LIMIT_BURST=20, RATE_LIMIT_RPS=10"
		if burst, rps, ok := parsePolicy(policy); ok {
			limit = fmt.Sprintf("this API: RATE_LIMIT_BURST=%d, RATE_LIMIT_RPS about %.3g", burst, rps)
		}
		return "the API's rate limit refused them: each client IP gets a burst of RATE_LIMIT_BURST requests refilled at " +
			"RATE_LIMIT_RPS per second (" + limit + "), and this whole run is one client. " +
			"Restart the API with RATE_LIMIT_RPS=0 to lift it (the dev stack: RATE_LIMIT_RPS=0 make run), " +
			"or raise RATE_LIMIT_RPS and RATE_LIMIT_BURST above this run's rate."
	case "401":
		return "the API key was refused; pass one from API_KEYS with -key (the dev stack's is in .devstack/dev-api-key)."
	case "403":
		return "the API key lacks the ingest scope."
	case "400", "413", "415", "422":
		return "the API refused the body; a bug in loadtest or an API change."
	case "503":
		return "the API shed load or JetStream is unavailable or full; see the API's log and /readyz."
	case "transport error":
		return "no HTTP answer (connection refused or reset, or the 30s client timeout); is the API running at -url?"
	}
	return "see the API's log."
}

// parsePolicy reads the API's RateLimit-Policy "<burst>;w=<seconds to refill
// an empty bucket>"; the refill rate is burst/w, rounded down by the API's
// whole seconds.
func parsePolicy(policy string) (burst int, rps float64, ok bool) {
	b, w, found := strings.Cut(policy, ";w=")
	burst, err1 := strconv.Atoi(b)
	window, err2 := strconv.Atoi(w)
	if !found || err1 != nil || err2 != nil || burst < 1 || window < 1 {
		return 0, 0, false
	}
	return burst, float64(burst) / float64(window), true
}

func percent(n, of int) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of)) }
