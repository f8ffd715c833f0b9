package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

// Bounds on what one run may do.
const (
	maxRequests    = 1_000_000
	maxConcurrency = 1_000
	maxDuration    = 10 * time.Minute
	maxRate        = 200_000 // arrivals per second
	maxBatch       = 1_000   // the API's limit per batch
	maxDevices     = 1_000_000

	// openLoopConcurrency is -c's default with -rate: the cap on requests
	// in flight must be well above rate × latency, or arrivals are dropped.
	openLoopConcurrency = 200
)

// kinds are the request kinds a mix can name, in report order.
var kinds = []string{"gps", "gyroscope", "batch", "photo"}

type options struct {
	base        *url.URL
	allowRemote bool
	key         string
	n           int64
	c           int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	progress    time.Duration
	mix         mix
	batchSize   int
	devices     int
	jsonOut     bool
	photo       []byte
	photoB64    string // encoded once, not per request
}

// mix is a weight per request kind; zero weights are left out.
type mix struct {
	weights map[string]int
	total   int
}

func (m mix) String() string {
	var parts []string
	for _, k := range kinds {
		if w := m.weights[k]; w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, w))
		}
	}
	return strings.Join(parts, ",")
}

// parseMix reads "gps=70,gyroscope=20,batch=9,photo=1"; a bare kind ("gps")
// is weight 1.
func parseMix(s string) (mix, error) {
	m := mix{weights: map[string]int{}}
	for part := range strings.SplitSeq(s, ",") {
		name, weight, hasWeight := strings.Cut(strings.TrimSpace(part), "=")
		w := 1
		if hasWeight {
			var err error
			if w, err = strconv.Atoi(weight); err != nil || w < 0 || w > 1_000_000 {
				return mix{}, fmt.Errorf("-mix: weight of %q must be a whole number from 0 to 1000000, got %q", name, weight)
			}
		}
		known := false
		for _, k := range kinds {
			known = known || k == name
		}
		if !known {
			return mix{}, fmt.Errorf("-mix: unknown kind %q (one of %s)", name, strings.Join(kinds, ", "))
		}
		if _, dup := m.weights[name]; dup {
			return mix{}, fmt.Errorf("-mix: %q given twice", name)
		}
		m.weights[name] = w
		m.total += w
	}
	if m.total == 0 {
		return mix{}, errors.New("-mix: at least one weight must be positive")
	}
	for k, w := range m.weights {
		if w == 0 {
			delete(m.weights, k)
		}
	}
	return m, nil
}

func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: loadtest [flags]\n\nSends bounded telemetry load at the API and reports what it answered (see go doc ./cmd/loadtest).\n\nFlags:")
		fs.PrintDefaults()
	}
	rawURL := fs.String("url", "http://127.0.0.1:8080", "base URL of the API (loopback only, unless -allow-remote)")
	allowRemote := fs.Bool("allow-remote", false, "allow a -url that is not this machine: only for a deployment you own and may load")
	key := fs.String("key", os.Getenv("API_KEY"), "API key with the ingest scope (default $API_KEY)")
	n := fs.Int64("n", 1000, fmt.Sprintf("number of requests (at most %d; open loop: arrivals); default %d when only -duration is given", maxRequests, maxRequests))
	c := fs.Int("c", 10, fmt.Sprintf("closed loop: concurrent requests; with -rate: the cap on requests in flight, default %d (at most %d)", openLoopConcurrency, maxConcurrency))
	rate := fs.Float64("rate", 0, fmt.Sprintf("open loop: requests per second, sent whatever the answers take (at most %d); 0: closed loop", maxRate))
	duration := fs.Duration("duration", 30*time.Second, fmt.Sprintf("stop after this long even if -n is not reached (at most %s)", maxDuration))
	warmup := fs.Duration("warmup", 0, "send load this long before recording (not counted in -n or -duration)")
	progress := fs.Duration("progress", time.Second, "write a progress line to stderr this often; 0: none")
	typ := fs.String("type", "", "one request kind: gps, gyroscope, batch or photo (default gps; or use -mix)")
	rawMix := fs.String("mix", "", `request kinds by weight, e.g. "gps=70,gyroscope=20,batch=9,photo=1"`)
	batchSize := fs.Int("batch-size", 100, fmt.Sprintf("readings per POST /telemetry/batch (1 to %d)", maxBatch))
	devices := fs.Int("devices", 10_000, "distinct device ids the load comes from (per-device rate limits apply to each)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object instead of the text report")
	photoPath := fs.String("photo", "", "JPEG or PNG file to send as photos (default: a generated 256x256 PNG)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{
		allowRemote: *allowRemote, key: *key, n: *n, c: *c, rate: *rate, duration: *duration, warmup: *warmup,
		progress: *progress, batchSize: *batchSize, devices: *devices, jsonOut: *jsonOut,
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.rate > 0 && !set["c"] {
		o.c = openLoopConcurrency
	}
	if set["duration"] && !set["n"] {
		o.n = maxRequests // "-duration 1m" means a minute, not 1,000 requests
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if o.n < 1 || o.n > maxRequests {
		errs = append(errs, fmt.Errorf("-n must be between 1 and %d", maxRequests))
	}
	if o.c < 1 || o.c > maxConcurrency {
		errs = append(errs, fmt.Errorf("-c must be between 1 and %d", maxConcurrency))
	}
	if o.rate < 0 || o.rate > maxRate || o.rate != o.rate {
		errs = append(errs, fmt.Errorf("-rate must be between 0 (closed loop) and %d", maxRate))
	}
	if o.duration <= 0 || o.duration > maxDuration {
		errs = append(errs, fmt.Errorf("-duration must be positive and at most %s", maxDuration))
	}
	if o.warmup < 0 || o.warmup > maxDuration {
		errs = append(errs, fmt.Errorf("-warmup must be between 0 and %s", maxDuration))
	}
	if o.progress < 0 {
		errs = append(errs, errors.New("-progress must not be negative"))
	}
	if o.batchSize < 1 || o.batchSize > maxBatch {
		errs = append(errs, fmt.Errorf("-batch-size must be between 1 and %d", maxBatch))
	}
	if o.devices < 1 || o.devices > maxDevices {
		errs = append(errs, fmt.Errorf("-devices must be between 1 and %d", maxDevices))
	}
	if o.key == "" {
		errs = append(errs, errors.New("-key (or $API_KEY) is required"))
	}
	var err error
	switch {
	case *typ != "" && *rawMix != "":
		errs = append(errs, errors.New("-type and -mix are exclusive (-type gps is -mix gps=1)"))
	case *rawMix != "":
		o.mix, err = parseMix(*rawMix)
	case *typ == "":
		o.mix, err = parseMix("gps")
	default:
		o.mix, err = parseMix(*typ)
		if err != nil {
			err = fmt.Errorf("-type must be one of %s, got %q", strings.Join(kinds, ", "), *typ)
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	if o.mix.weights["photo"] > 0 {
		if *photoPath != "" {
			o.photo, err = os.ReadFile(*photoPath)
		} else {
			o.photo, err = generatePNG()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("-photo: %w", err))
		}
		o.photoB64 = base64.StdEncoding.EncodeToString(o.photo)
	}
	o.base, err = loadgen.CheckTarget(*rawURL, o.allowRemote)
	if err != nil {
		errs = append(errs, fmt.Errorf("-url: %w", err))
	}
	return o, errors.Join(errs...)
}
