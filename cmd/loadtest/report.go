package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

// summary is a run's result as -json prints it; the text report shows the same figures.
type summary struct {
	Target         string         `json:"target"`
	Mode           string         `json:"mode"` // "closed" or "open"
	Rate           float64        `json:"rate,omitempty"`
	Concurrency    int            `json:"concurrency"`
	N              int64          `json:"n"`
	Duration       float64        `json:"duration_seconds"`
	Warmup         float64        `json:"warmup_seconds"`
	Mix            map[string]int `json:"mix"`
	BatchSize      int            `json:"batch_size,omitempty"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`

	Sent      int64 `json:"sent"`      // requests answered or failed
	OK        int64 `json:"ok"`        // 2xx answers
	Failed    int64 `json:"failed"`    // non-2xx answers and transport errors
	Dropped   int64 `json:"dropped"`   // open loop: arrivals not sent, -c requests in flight
	Cancelled int64 `json:"cancelled"` // cut off by the end of the run or a signal
	// Readings accepted: those of 2xx answers, less those a 2xx batch rejected.
	Readings         int64   `json:"readings"`
	ReadingsRejected int64   `json:"readings_rejected_in_batches"`
	RequestsPerSec   float64 `json:"requests_per_second"` // 2xx answers
	ReadingsPerSec   float64 `json:"readings_per_second"`

	Latency      latency           `json:"latency_ms"` // of 2xx answers
	Histogram    []bucket          `json:"latency_histogram"`
	Status       map[int]int64     `json:"status"`
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// ByKind holds the figures of each kind of the mix (gps, gyroscope, batch, photo).
	ByKind map[string]kind `json:"by_kind"`
	Passed bool            `json:"passed"` // the exit code is 0
}

// kind is the part of a run's figures that one request kind of the mix had.
type kind struct {
	Sent           int64            `json:"sent"`
	OK             int64            `json:"ok"`
	Failed         int64            `json:"failed"`
	Readings       int64            `json:"readings"`
	RequestsPerSec float64          `json:"requests_per_second"`
	ReadingsPerSec float64          `json:"readings_per_second"`
	Latency        latency          `json:"latency_ms"`
	Status         map[int]int64    `json:"status"`
	Errors         map[string]int64 `json:"errors"`
}

type latency struct {
	P50, P90, P99, P999, Max, Mean, Min float64
}

// MarshalJSON names the percentiles as a reader expects them.
func (l latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99, "p99_9": l.P999, "max": l.Max, "mean": l.Mean, "min": l.Min})
}

// bucket is one row of the latency histogram: Count answers in (previous LE, LE].
type bucket struct {
	LE    float64 `json:"le_ms"` // +Inf is written as 0 with Inf true
	Inf   bool    `json:"inf,omitempty"`
	Count int64   `json:"count"`
	le    time.Duration
}

// edges are the histogram's row bounds, 1-2-5 from 1 µs to 100 s: the
// loadgen histogram's fine buckets (<1% wide) are summed into these, which
// a person reads at a glance.
var edges = func() []time.Duration {
	var e []time.Duration
	for d := time.Microsecond; d <= 100*time.Second; d *= 10 {
		e = append(e, d, 2*d, 5*d)
	}
	return e[:len(e)-2]
}()

func histogram(h *loadgen.Histogram) []bucket {
	rows := make([]bucket, len(edges)+1)
	for i, e := range edges {
		rows[i] = bucket{LE: ms(e), le: e}
	}
	rows[len(edges)] = bucket{Inf: true, le: math.MaxInt64}
	for _, b := range h.Buckets() {
		i, _ := slices.BinarySearch(edges, b.Low+1) // the first edge ≥ the bucket's values
		rows[i].Count += b.Count
	}
	first := slices.IndexFunc(rows, func(b bucket) bool { return b.Count > 0 })
	if first < 0 {
		return []bucket{}
	}
	last := len(rows) - 1
	for rows[last].Count == 0 {
		last--
	}
	return rows[first : last+1]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func summarize(o options, res loadgen.Result, obs *observed) summary {
	s := summary{
		Target: o.base.String(), Mode: "closed", Concurrency: o.c, N: o.n,
		Duration: o.duration.Seconds(), Warmup: o.warmup.Seconds(), Mix: o.mix.weights,
		ElapsedSeconds: res.Elapsed.Seconds(),
		Sent:           res.Sent, OK: res.OK, Failed: res.Failed(), Dropped: res.Dropped, Cancelled: res.Cancelled,
		ReadingsRejected: obs.rejected.Load(),
		RequestsPerSec:   res.RequestsPerSecond(),
		Histogram:        histogram(res.Latency),
		Status:           res.Status, Errors: res.Errors, ErrorSamples: res.ErrorSamples,
	}
	if o.rate > 0 {
		s.Mode, s.Rate = "open", o.rate
	}
	if o.mix.weights["batch"] > 0 {
		s.BatchSize = o.batchSize
	}
	s.Readings = res.Readings - s.ReadingsRejected
	if res.Elapsed > 0 {
		s.ReadingsPerSec = float64(s.Readings) / res.Elapsed.Seconds()
	}
	s.Latency = latencyOf(res.Latency)
	s.ByKind = map[string]kind{}
	for name, g := range res.ByLabel {
		k := kind{Sent: g.Sent, OK: g.OK, Failed: g.Failed(), Readings: g.Readings, RequestsPerSec: g.RequestsPerSecond(),
			Latency: latencyOf(g.Latency), Status: g.Status, Errors: g.Errors}
		if name == "batch" {
			k.Readings -= s.ReadingsRejected
		}
		if res.Elapsed > 0 {
			k.ReadingsPerSec = float64(k.Readings) / res.Elapsed.Seconds()
		}
		s.ByKind[name] = k
	}
	return s
}

func latencyOf(l *loadgen.Histogram) latency {
	return latency{P50: ms(l.Quantile(.5)), P90: ms(l.Quantile(.9)), P99: ms(l.Quantile(.99)), P999: ms(l.Quantile(.999)),
		Max: ms(l.Max()), Mean: ms(l.Mean()), Min: ms(l.Min())}
}

// report prints the result to out (text, or JSON with -json) and a warning
// per cause of failure to errOut; it returns the exit code.
func report(out, errOut io.Writer, o options, res loadgen.Result, obs *observed) int {
	s := summarize(o, res, obs)
	failures := verdict(s)
	s.Passed = len(failures) == 0
	if o.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
	} else {
		printText(out, o, s, res)
	}
	warn(errOut, o, s, obs)
	for _, f := range failures {
		fmt.Fprintln(errOut, "loadtest: FAILED:", f)
	}
	if len(failures) > 0 {
		return exitFailed
	}
	return exitOK
}

// verdict says why the run does not measure the pipeline, if it does not.
func verdict(s summary) []string {
	var f []string
	if s.Sent == 0 {
		f = append(f, "no request was answered before -duration ran out")
	} else if s.Failed*2 > s.Sent {
		f = append(f, fmt.Sprintf("%d of %d answers (%s) were not 2xx; the figures above do not measure the pipeline",
			s.Failed, s.Sent, percent(s.Failed, s.Sent)))
	}
	if arrivals := s.Sent + s.Dropped + s.Cancelled; s.Dropped*2 > arrivals {
		f = append(f, fmt.Sprintf("%d of %d arrivals (%s) were dropped; the API did not sustain -rate %g",
			s.Dropped, arrivals, percent(s.Dropped, arrivals), s.Rate))
	}
	return f
}

func printText(out io.Writer, o options, s summary, res loadgen.Result) {
	mode := fmt.Sprintf("closed loop, -c %d", o.c)
	from := "2xx answers"
	if o.rate > 0 {
		mode = fmt.Sprintf("open loop, -rate %g, -c %d", o.rate, o.c)
		from = "2xx answers, from the time each was due"
	}
	what := o.mix.String()
	if s.BatchSize > 0 {
		what += fmt.Sprintf(", batch size %d", s.BatchSize)
	}
	fmt.Fprintf(out, "target      %s (%s; %s, -n %d)\n", s.Target, what, mode, o.n)
	fmt.Fprintf(out, "completed   %d requests in %s (%.1f req/s, any status)\n", s.Sent, res.Elapsed.Round(time.Millisecond), float64(s.Sent)/max(s.ElapsedSeconds, 1e-9))
	if s.Sent == 0 {
		return
	}
	fmt.Fprintf(out, "2xx         %d of %d (%s), %.1f req/s, %.1f readings/s\n", s.OK, s.Sent, percent(s.OK, s.Sent), s.RequestsPerSec, s.ReadingsPerSec)
	if o.rate > 0 {
		arrivals := s.Sent + s.Dropped + s.Cancelled
		fmt.Fprintf(out, "dropped     %d of %d arrivals (%s): -c %d requests were in flight\n", s.Dropped, arrivals, percent(s.Dropped, arrivals), o.c)
	}
	if s.Cancelled > 0 {
		fmt.Fprintf(out, "cancelled   %d requests cut off by the end of the run or a signal (not counted)\n", s.Cancelled)
	}
	if s.OK > 0 {
		l := res.Latency
		fmt.Fprintf(out, "latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s (%s)\n",
			dur(l.Quantile(.5)), dur(l.Quantile(.9)), dur(l.Quantile(.99)), dur(l.Quantile(.999)), dur(l.Max()), dur(l.Mean()), from)
		fmt.Fprintf(out, "\nlatency histogram (%s)\n", from)
		var cum int64
		for _, b := range s.Histogram {
			cum += b.Count
			label := "≤ " + b.le.String()
			if b.Inf {
				label = "> " + edges[len(edges)-1].String()
			}
			fmt.Fprintf(out, "  %-10s %9d %6s %7s  %s\n", label, b.Count, percent(b.Count, s.OK), percent(cum, s.OK), bar(b.Count, s.OK))
		}
	}
	if len(s.ByKind) > 1 {
		fmt.Fprintf(out, "\nby kind     %9s %9s %10s %11s %9s %9s %9s\n", "sent", "2xx", "2xx/s", "readings/s", "p50", "p99", "max")
		for _, name := range kinds {
			k, ok := s.ByKind[name]
			if !ok {
				continue
			}
			g := res.ByLabel[name].Latency
			fmt.Fprintf(out, "  %-9s %9d %9d %10.1f %11.1f %9s %9s %9s\n", name, k.Sent, k.OK, k.RequestsPerSec, k.ReadingsPerSec,
				dur(g.Quantile(.5)), dur(g.Quantile(.99)), dur(g.Max()))
		}
	}
	fmt.Fprintln(out, "\nstatus histogram (all answers)")
	for _, code := range slices.Sorted(maps.Keys(s.Status)) {
		n := s.Status[code]
		fmt.Fprintf(out, "  %-10d %9d %6s  %s\n", code, n, percent(n, s.Sent), bar(n, s.Sent))
	}
	for _, class := range slices.Sorted(maps.Keys(s.Errors)) {
		n := s.Errors[class]
		fmt.Fprintf(out, "  %-10s %9d %6s  %s\n", "error:"+class, n, percent(n, s.Sent), bar(n, s.Sent))
	}
}

// warn writes one warning per non-2xx status, error class and drop, saying
// what it means and what to do.
func warn(errOut io.Writer, o options, s summary, obs *observed) {
	policy, _ := obs.policy.Load().(string)
	for _, code := range slices.Sorted(maps.Keys(s.Status)) {
		if code/100 == 2 {
			continue
		}
		n := s.Status[code]
		fmt.Fprintf(errOut, "WARNING: %d of %d answers (%s) were %d: %s\n", n, s.Sent, percent(n, s.Sent), code, hint(code, policy, o))
	}
	for _, class := range slices.Sorted(maps.Keys(s.Errors)) {
		n := s.Errors[class]
		fmt.Fprintf(errOut, "WARNING: %d of %d requests (%s) got no HTTP answer (%s): %s (e.g. %s)\n",
			n, s.Sent, percent(n, s.Sent), class, errorHint(class), s.ErrorSamples[class])
	}
	if s.ReadingsRejected > 0 {
		fmt.Fprintf(errOut, "WARNING: %d readings were rejected inside batches answered 2xx (not counted in readings/s): a bug in loadtest or an API change.\n", s.ReadingsRejected)
	}
	if s.Dropped > 0 {
		arrivals := s.Sent + s.Dropped + s.Cancelled
		fmt.Fprintf(errOut, "WARNING: %d of %d arrivals (%s) were dropped because -c %d requests were in flight: the API answers slower than -rate %g needs; raise -c (about rate × p99 latency) or lower -rate.\n",
			s.Dropped, arrivals, percent(s.Dropped, arrivals), o.c, o.rate)
	}
}

// hint says what answers of status mean and what to do about them; policy
// is the RateLimit-Policy a 429 carried ("<burst>;w=<seconds to refill>").
func hint(status int, policy string, o options) string {
	switch status {
	case 429:
		limit := "by default RATE_LIMIT_BURST=20, RATE_LIMIT_RPS=10"
		if burst, rps, ok := parsePolicy(policy); ok {
			limit = fmt.Sprintf("this API: RATE_LIMIT_BURST=%d, RATE_LIMIT_RPS about %.3g", burst, rps)
		}
		h := "the API's rate limit refused them: each client IP gets a burst of RATE_LIMIT_BURST requests refilled at " +
			"RATE_LIMIT_RPS per second (" + limit + "), and this whole run is one client. " +
			"Restart the API with RATE_LIMIT_RPS=0 to lift it (the dev stack: RATE_LIMIT_RPS=0 make run), " +
			"or raise RATE_LIMIT_RPS and RATE_LIMIT_BURST above this run's rate. " +
			"RATE_LIMIT_DEVICE_RPS limits each device too (-devices spreads the load)."
		if o.mix.weights["photo"] > 0 {
			h += " Photos: PHOTO_MAX_INFLIGHT_PER_CLIENT (default 4) bounds one client's uploads in flight."
		}
		return h
	case 401:
		return "the API key was refused; pass one from API_KEYS with -key (the dev stack's is in .devstack/dev-api-key)."
	case 403:
		return "the API key lacks the ingest scope."
	case 400, 413, 415, 422:
		return "the API refused the body; a bug in loadtest or an API change."
	case 503:
		return "the API shed load or JetStream is unavailable or full; see the API's log and /readyz."
	}
	if status/100 == 3 {
		return "a redirect (never followed): is -url the API itself, not a proxy or login page?"
	}
	return "see the API's log."
}

// errorHint says what a loadgen error class means.
func errorHint(class string) string {
	switch class {
	case "refused":
		return "nothing listens at -url; is the API running?"
	case "timeout":
		return "no answer within the 30s client timeout (or no connection within 5s): the API or its queue is stalled"
	case "reset", "eof", "broken_pipe":
		return "the connection closed mid-request: the API restarted or crashed, or a proxy or the kernel dropped it"
	case "no_local_port":
		return "this machine ran out of ephemeral ports for new connections; lower -c"
	case "too_many_open_files":
		return "the file-descriptor limit was reached; raise ulimit -n or lower -c"
	case "dns":
		return "the host in -url does not resolve"
	case "tls":
		return "the TLS handshake failed (certificate or protocol)"
	}
	return "see the sample message"
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

func percent(n, of int64) string {
	if of == 0 {
		return "0.0%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// bar draws n of total as up to 40 '#', at least one for any n > 0.
func bar(n, total int64) string {
	if n == 0 || total == 0 {
		return ""
	}
	return strings.Repeat("#", max(int(40*n/total), 1))
}

// dur prints a duration with three significant digits.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 3-digits(d.Seconds()), 64) + "s"
	case d >= time.Millisecond:
		return strconv.FormatFloat(ms(d), 'f', 3-digits(ms(d)), 64) + "ms"
	default:
		return strconv.FormatFloat(float64(d)/1e3, 'f', max(3-digits(float64(d)/1e3), 0), 64) + "µs"
	}
}

// digits is the number of digits before the point (1 for values below 10).
func digits(v float64) int {
	n := 1
	for v >= 10 && n < 3 {
		v /= 10
		n++
	}
	return n
}
