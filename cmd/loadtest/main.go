// Command loadtest sends bounded telemetry load at a running API and reports
// what it answered: throughput in requests and readings per second, latency
// percentiles and an HDR-style histogram of the 2xx answers, the same
// figures for each kind of the mix, a histogram of the statuses and the
// transport errors by class.
//
//	go run ./cmd/loadtest -key "$API_KEY" -n 10000 -c 50                       # closed loop: 50 at a time
//	go run ./cmd/loadtest -key "$API_KEY" -rate 2000 -duration 1m -warmup 5s   # open loop: 2,000 arrivals/s
//	go run ./cmd/loadtest -key "$API_KEY" -mix gps=70,gyroscope=20,batch=9,photo=1 -photo face.jpg -json
//
// Closed loop (-c workers, each sending when its last answer came) finds the
// throughput ceiling; open loop (-rate) sends at a constant rate whatever the
// API does and measures latency from the moment each request was due, so a
// stall shows in the percentiles instead of slowing the load down. At most
// -c requests are in flight; an arrival finding them all busy is dropped and
// counted, never queued. The mix draws gyroscope and GPS readings, batches
// of -batch-size readings (POST /telemetry/batch) and photos (-photo, or a
// generated PNG) in the given proportions, from -devices device ids.
//
// It talks to loopback addresses only unless -allow-remote is given (for a
// deployment you own), stops after -n requests or -duration (after
// -warmup), whichever comes first (-duration alone lifts -n to its maximum),
// and never follows redirects. The API
// rate-limits per client IP, so start it with RATE_LIMIT_RPS=0 (or a high
// limit) to measure the pipeline rather than the limiter.
//
// Only 2xx answers count as success. Every other status and every kind of
// transport error is reported with a warning on stderr saying what it means
// (429: the rate limit, and how to lift it), and the exit code is 1 when
// more than half of the requests were not answered 2xx, or (open loop) more
// than half of the arrivals were dropped: a run that measured refusals must
// not look like a benchmark result to a script. Bad flags exit 2. -json
// prints the result as one JSON object on stdout instead of the report.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // more than half of the requests were not answered 2xx, or of the arrivals dropped
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the load test and returns the exit code; the report goes to out,
// flag errors, progress and warnings about the answers to errOut.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	o, err := parse(args, errOut)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(errOut, "loadtest:", err)
		return exitUsage
	}
	var obs observed
	cfg := loadgen.Config{
		BaseURL:       o.base.String(),
		Client:        newClient(o.c, &obs),
		Concurrency:   o.c,
		Rate:          o.rate,
		N:             o.n,
		Duration:      o.duration,
		Warmup:        o.warmup,
		Source:        o.source(),
		ProgressEvery: o.progress,
		AllowRemote:   o.allowRemote,
	}
	defer cfg.Client.CloseIdleConnections()
	if o.progress > 0 {
		cfg.Progress = errOut
	}
	if o.mix.weights["batch"] > 0 {
		cfg.OnResponse = obs.batchAnswer
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil { // parse checks every flag, so this is a bug
		fmt.Fprintln(errOut, "loadtest:", err)
		return exitUsage
	}
	return report(out, errOut, o, res, &obs)
}

// observed is what loadtest reads from the answers beyond their status.
type observed struct {
	policy   atomic.Value // string: the RateLimit-Policy of a 429, e.g. "20;w=2"
	rejected atomic.Int64 // readings refused inside batches answered 2xx
}

// batchAnswer counts the readings a 2xx batch answer says were rejected:
// the batch is a success, those readings are not.
func (obs *observed) batchAnswer(req loadgen.Request, _ int, body []byte, _ time.Time) {
	if req.Path != "/telemetry/batch" {
		return
	}
	var a struct {
		Rejected int64 `json:"rejected"`
	}
	if json.Unmarshal(body, &a) == nil {
		obs.rejected.Add(a.Rejected)
	}
}

// policyRecorder keeps the RateLimit-Policy of the 429 answers, so the
// warning can state the limit in force.
type policyRecorder struct {
	next http.RoundTripper
	obs  *observed
}

func (p policyRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if v := resp.Header.Get("RateLimit-Policy"); v != "" {
			p.obs.policy.Store(v)
		}
	}
	return resp, err
}

// newClient keeps a keep-alive connection per concurrent request, never
// uses a proxy (an environment proxy would measure itself) and never follows
// a redirect (a 3xx is an answer to report).
func newClient(c int, obs *observed) *http.Client {
	return &http.Client{
		Timeout:       30 * time.Second,
		Transport:     policyRecorder{obs: obs, next: loadgen.NewTransport(c)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
