package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// The "api" and "batch" sections: the ingest API against the servers that
// bound it (servers.go), every one on its own embedded NATS server with the
// project's topology, driven by the same closed-loop load generator with
// the same keep-alive connections and bodies, in alternated rounds.

func init() {
	Register(Section{
		Name:  "api",
		About: "POST /telemetry/gps: this API against a bare net/http server, a minimal durable server and a straightforward sync-publish one",
		Run:   runAPI,
	})
	Register(Section{
		Name:  "batch",
		About: "POST /telemetry/batch of 100 and 1,000 GPS readings against a minimal durable batch server",
		Run:   runBatch,
	})
}

// apiNote says what "this API" runs with, in the table.
const apiNote = "api.New: auth, metrics, request ids, access log at info (JSON into io.Discard), rate limit off"

// slicesPerRound is how many alternated slices a round is cut into, and
// rewarm the warm-up before every slice but a contender's first.
const (
	slicesPerRound = 3
	rewarm         = 250 * time.Millisecond
)

// contender is one variant under load in a comparison.
type contender struct {
	name string
	v    *variant
	js   jetstream.JetStream // the variant's NATS server; nil: none to check
	src  loadgen.Source
	// readings counts the readings each request carries (1 for a reading).
	readings int
	rounds   []float64 // per slice: readings/s (requests/s when readings is 1)
	cpu      []float64 // per slice: the process's CPU µs per reading
	client   *http.Client
}

func runAPI(ctx context.Context, env *Env, rep *Report) error {
	src := readingSource()
	cs, err := startContenders(ctx, env, src, 1, variants...)
	if err != nil {
		return err
	}
	if err := alternate(ctx, env, cs); err != nil {
		return err
	}
	bare, minimal, straight, this := cs[0], cs[1], cs[2], cs[3]
	rep.Add(
		row("api", bare, "req/s", "", 0, "decode the GPS body, 202; no NATS: the HTTP ceiling"),
		row("api", minimal, "req/s", bare.name, 0, "decode, async publish, ack awaited, 202; nothing else"),
		row("api", straight, "req/s", minimal.name, 0, "sync publish with Nats-Msg-Id; request log, auth, recover"+ratios(straight, minimal)),
		row("api", this, "req/s", minimal.name, 0.9, apiNote+ratios(this, minimal)),
	)
	rep.Add(cpuRows("api", minimal, []*contender{straight, this}, 0.9)...)
	return nil
}

func runBatch(ctx context.Context, env *Env, rep *Report) error {
	cs, err := startContenders(ctx, env, arraySource(100), 100, variantMinimalBatch, variantAPI)
	if err != nil {
		return err
	}
	if err := alternate(ctx, env, cs); err != nil {
		return err
	}
	minimal, this := cs[0], cs[1]
	minimal.name, this.name = "minimal durable batch of 100", "this API, batch of 100"
	rep.Add(
		row("batch", minimal, "readings/s", "", 0, "decode 100 readings, publish each async, await every ack, 202; nothing else"),
		row("batch", this, "readings/s", minimal.name, 0.85, "POST /telemetry/batch; "+apiNote+ratios(this, minimal)),
	)
	rep.Add(cpuRows("batch", minimal, []*contender{this}, 0.85)...)

	// 1,000-reading batches: every accepted reading is on the stream. Eight
	// connections keep 8,000 readings in flight, about the publisher's
	// bound on pending acks (messaging.MaxPendingPublishes): with 64, most
	// of each batch would wait for a slot, and on a loaded machine some
	// past the publish timeout (a 503, rightly, but no figure).
	big, conns := cs[1], min(env.Connections, 8)
	if err := purge(ctx, big.js); err != nil {
		return err
	}
	var accepted atomic.Int64
	res, err := loadgen.Run(ctx, loadgen.Config{
		BaseURL: big.v.URL, Concurrency: conns, Duration: env.Round,
		Source: arraySource(1000),
		OnResponse: func(_ loadgen.Request, _ int, body []byte, _ time.Time) {
			var r struct{ Accepted int64 }
			if json.Unmarshal(body, &r) == nil {
				accepted.Add(r.Accepted)
			}
		},
	})
	if err != nil {
		return err
	}
	if err := allAnswered(res, "this API, batch of 1,000"); err != nil {
		return err
	}
	stored, err := streamCount(ctx, big.js)
	if err != nil {
		return err
	}
	if stored != uint64(accepted.Load()) || res.Readings != accepted.Load() {
		return fmt.Errorf("bench: batches of 1,000: %d readings accepted (%d answered 2xx), %d on the stream", accepted.Load(), res.Readings, stored)
	}
	rep.Add(Row{Section: "batch", Name: "this API, batch of 1,000", Value: res.ReadingsPerSecond(), Unit: "readings/s",
		Baseline: minimal.name, Rounds: []float64{res.ReadingsPerSecond()},
		Note: fmt.Sprintf("one run, %d connections; %s readings accepted, the stream holds exactly them", conns, num(float64(stored)))})
	return nil
}

// startContenders starts the named variants, each on its own NATS server.
func startContenders(ctx context.Context, env *Env, src loadgen.Source, readings int, names ...string) ([]*contender, error) {
	var cs []*contender
	for _, name := range names {
		v, js, err := startVariant(ctx, env, name)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		env.OnClose(v.stop)
		if name == variantBare {
			js = nil // its stream stays empty
		}
		cs = append(cs, &contender{name: name, v: v, js: js, src: src, readings: readings})
	}
	return cs, nil
}

// alternate runs Rounds rounds. Each round is cut into slices
// (slicesPerRound of Round/slicesPerRound, when that leaves a second or
// more) and every contender takes one in turn per pass, starting one
// further along the list each pass: the load other processes put on a
// shared machine drifts over seconds, and short alternated slices spread
// it over every contender alike. Each slice starts on an empty stream,
// after a warm-up on the contender's own keep-alive connections (the full
// Warmup the first time, a short one after that).
func alternate(ctx context.Context, env *Env, cs []*contender) error {
	slices, slice := slicesPerRound, env.Round/slicesPerRound
	if slice < time.Second {
		slices, slice = 1, env.Round
	}
	passes := env.Rounds * slices
	for round := range passes {
		for k := range cs {
			c := cs[(round+k)%len(cs)]
			if c.js != nil {
				if err := purge(ctx, c.js); err != nil {
					return err
				}
			}
			// The warm-up is a run of its own on the same client (the same
			// keep-alive connections), so the CPU read around the measured
			// run is the measured requests' only.
			if c.client == nil {
				c.client = newClient(env.Connections)
				env.OnClose(c.client.CloseIdleConnections)
			}
			cfg := loadgen.Config{BaseURL: c.v.URL, Client: c.client, Concurrency: env.Connections, Source: c.src}
			warmup := env.Warmup
			if len(c.rounds) > 0 {
				warmup = min(warmup, rewarm)
			}
			if warmup > 0 {
				warm := cfg
				warm.Duration = warmup
				var err error
				// Labelled like the measured run: the client's connections
				// are dialled here, and their goroutines keep the label.
				pprof.Do(ctx, pprof.Labels("load", c.name), func(ctx context.Context) {
					_, err = loadgen.Run(ctx, warm)
				})
				if err != nil {
					return fmt.Errorf("bench: %s: %w", c.name, err)
				}
			}
			cfg.Duration = slice
			cpu0, cpuOK := cpuTime()
			// The load generator's goroutines carry load=name in a profile.
			var res loadgen.Result
			var err error
			pprof.Do(ctx, pprof.Labels("load", c.name), func(ctx context.Context) {
				res, err = loadgen.Run(ctx, cfg)
			})
			if err != nil {
				return fmt.Errorf("bench: %s: %w", c.name, err)
			}
			cpu := ""
			if cpu1, ok := cpuTime(); cpuOK && ok && res.Readings > 0 {
				perReading := float64((cpu1 - cpu0).Microseconds()) / float64(res.Readings)
				c.cpu = append(c.cpu, perReading)
				cpu = fmt.Sprintf(", %.1f µs CPU/%s", perReading, perUnit(c))
			}
			if err := allAnswered(res, c.name); err != nil {
				return err
			}
			if c.js != nil { // every recorded 202 is on the stream (with the warm-up's)
				n, err := streamCount(ctx, c.js)
				if err != nil {
					return err
				}
				if n < uint64(res.Readings) {
					return fmt.Errorf("bench: %s: %d readings answered 202, %d on the stream", c.name, res.Readings, n)
				}
			}
			rate := res.ReadingsPerSecond()
			c.rounds = append(c.rounds, rate)
			env.Logf("pass %d/%d %-22s %s %s%s", round+1, passes, c.name, num(rate), unitOf(c), cpu)
		}
	}
	return nil
}

// allAnswered fails a run in which any request failed or was cut off: a
// figure with refusals in it measures something else.
func allAnswered(res loadgen.Result, name string) error {
	if res.OK == 0 || res.Failed() > 0 || res.Cancelled > 0 {
		return fmt.Errorf("bench: %s: %d of %d requests answered 2xx (%d cut off); statuses %v, errors %v",
			name, res.OK, res.Sent, res.Cancelled, res.Status, res.Errors)
	}
	return nil
}

func unitOf(c *contender) string {
	if c.readings > 1 {
		return "readings/s"
	}
	return "req/s"
}

func row(section string, c *contender, unit, baseline string, minRatio float64, note string) Row {
	if cpu := cpuNote(c); cpu != "" {
		note = cpu + "; " + note
	}
	return Row{Section: section, Name: c.name, Value: Median(c.rounds), Unit: unit, Baseline: baseline,
		MinRatio: minRatio, Rounds: c.rounds, Note: note}
}

// cpuRows restate the comparison as work per CPU-second: requests (or
// readings) per second of the process's CPU time, the median of the
// rounds. A closed-loop rate on a shared machine swings with the CPU the
// other processes leave; the CPU each request costs hardly does, and on a
// machine of its own the rate is what the CPU allows. The same target as
// the rate applies: the two rows say the same thing measured two ways.
func cpuRows(section string, base *contender, others []*contender, minRatio float64) []Row {
	name := func(c *contender) string { return c.name + ", per CPU-second" }
	unit := perUnit(base) + "/CPU-s"
	if len(base.cpu) == 0 {
		return nil
	}
	rows := []Row{{Section: section, Name: name(base), Value: 1e6 / Median(base.cpu), Unit: unit,
		Rounds: inverse(base.cpu), Note: "1 / CPU per " + perUnit(base) + " of the whole process (load generator and NATS included)"}}
	for _, c := range others {
		if len(c.cpu) == 0 {
			continue
		}
		r := Row{Section: section, Name: name(c), Value: 1e6 / Median(c.cpu), Unit: unit, Baseline: name(base), Rounds: inverse(c.cpu)}
		if c.name == variantAPI || strings.HasPrefix(c.name, "this API") {
			r.MinRatio = minRatio
		}
		rows = append(rows, r)
	}
	return rows
}

// inverse turns µs per unit into units per CPU-second.
func inverse(us []float64) []float64 {
	out := make([]float64, len(us))
	for i, v := range us {
		if v > 0 {
			out[i] = 1e6 / v
		}
	}
	return out
}

// cpuNote is the median CPU time per reading of c's rounds: the whole
// process's (load generator and NATS server included, the same for every
// variant), so differences between variants are what each server costs.
// Other processes on the machine disturb it far less than they do a rate.
func cpuNote(c *contender) string {
	if len(c.cpu) == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f µs CPU/%s (median)", Median(c.cpu), perUnit(c))
}

// perUnit is what one CPU figure is per: "req" or "reading".
func perUnit(c *contender) string {
	if c.readings > 1 {
		return "reading"
	}
	return "req"
}

// newClient is what loadgen's default client is (keep-alive connections
// for every worker, no proxy, no redirects), kept across a contender's runs.
func newClient(conns int) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{Proxy: nil, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ratios lists c's per-slice ratios to base, the figures a noisy machine
// makes worth seeing next to the ratio of medians.
func ratios(c, base *contender) string {
	var parts []string
	for i := range min(len(c.rounds), len(base.rounds)) {
		if base.rounds[i] > 0 {
			parts = append(parts, fmt.Sprintf("%.2f", c.rounds[i]/base.rounds[i]))
		}
	}
	return "; per slice " + strings.Join(parts, " ")
}

func purge(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, messaging.StreamName)
	if err == nil {
		err = st.Purge(ctx)
	}
	return err
}

func streamCount(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	st, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// ingestHeader is every variant's request header (loadgen never changes it).
func ingestHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {benchKey}}
}

// readingSource cycles through 4,096 GPS bodies.
func readingSource() loadgen.Source {
	bodies, h := gpsBodies(4096), ingestHeader()
	return func(i int64) loadgen.Request {
		return loadgen.Request{Method: http.MethodPost, Path: "/telemetry/gps", Header: h, Body: bodies[i%int64(len(bodies))], Readings: 1}
	}
}

// arraySource cycles through 64 JSON arrays of n GPS readings.
func arraySource(n int) loadgen.Source {
	readings, h := gpsBodies(64*n), ingestHeader()
	bodies := make([][]byte, 64)
	for i := range bodies {
		var b bytes.Buffer
		b.WriteByte('[')
		for j := range n {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"type":"gps",`)
			b.Write(readings[i*n+j][1:])
		}
		b.WriteByte(']')
		bodies[i] = b.Bytes()
	}
	return func(i int64) loadgen.Request {
		return loadgen.Request{Method: http.MethodPost, Path: "/telemetry/batch", Header: h, Body: bodies[i%int64(len(bodies))], Readings: n}
	}
}
