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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
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
	status  string
}

func run(ctx context.Context, args []string, out io.Writer) error {
	o, err := parse(args, out)
	if err != nil {
		return err
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
	report(out, target, o, done, elapsed)
	return nil
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
	return sample{latency: time.Since(begin), status: fmt.Sprint(resp.StatusCode)}
}

func report(out io.Writer, target string, o options, samples []sample, elapsed time.Duration) {
	var lat []time.Duration
	counts := map[string]int{}
	var sum time.Duration
	for _, s := range samples {
		if s.status == "" {
			continue
		}
		counts[s.status]++
		lat = append(lat, s.latency)
		sum += s.latency
	}
	fmt.Fprintf(out, "target      %s (%s, -n %d, -c %d)\n", target, o.typ, o.n, o.c)
	fmt.Fprintf(out, "completed   %d requests in %s (%.1f req/s)\n", len(lat), elapsed.Round(time.Millisecond), float64(len(lat))/elapsed.Seconds())
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(out, "latency     p50 %s  p90 %s  p99 %s  max %s  mean %s\n",
		pct(.50).Round(time.Microsecond), pct(.90).Round(time.Microsecond), pct(.99).Round(time.Microsecond),
		lat[len(lat)-1].Round(time.Microsecond), (sum / time.Duration(len(lat))).Round(time.Microsecond))
	statuses := make([]string, 0, len(counts))
	for s := range counts {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	var b strings.Builder
	for _, s := range statuses {
		fmt.Fprintf(&b, "  %s: %d", s, counts[s])
	}
	fmt.Fprintf(out, "status    %s\n", b.String())
}
