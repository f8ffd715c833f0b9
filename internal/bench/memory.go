package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/challenge-v3/challenge-v3/internal/loadgen"
)

func init() { Register(MemorySection(0)) }

// The memory section's two lengths: the short run inside `make bench` shows
// the figures and catches a gross leak; `make soak` is the 5-minute run the
// issue's target is about (flat RSS), long enough for the dedupe window (2
// minutes) to fill and then hold steady.
const (
	memoryShortLoad     = 30 * time.Second
	memoryShortInterval = time.Second
	memorySoakInterval  = 5 * time.Second
	// soakMaxSlope is the soak run's target for the API's and the worker's
	// RSS trend over its second half: flat, give or take the noise of a
	// garbage-collected heap.
	soakMaxSlope = 1.0 // MiB/min
)

// MemorySection returns the memory section. load is how long the half-rate
// load lasts (`make soak`: 5m); 0 is the short run of `make bench`.
func MemorySection(load time.Duration) Section {
	about := fmt.Sprintf("RSS of the api, worker and nats-server processes over %s at half the sustained rate, and nats-server's with vs without Nats-Msg-Id", memoryShortLoad)
	if load > 0 {
		about = fmt.Sprintf("soak: RSS of the api, worker and nats-server processes over %s at half the sustained rate, and nats-server's with vs without Nats-Msg-Id", load)
	}
	return Section{Name: "memory", About: about, Run: func(ctx context.Context, env *Env, rep *Report) error {
		return runMemory(ctx, env, rep, load)
	}}
}

// runMemory builds the real binaries and runs each as its own process, so
// each has an RSS: a nats-server with JetStream, the worker and the API,
// configured through the environment as deployed. It finds the stack's
// sustained rate (closed loop, one round), then drives it at half that rate
// in an open loop while sampling /proc/<pid>/status, and reports for each
// process the RSS at the start and end of the load and its trend over the
// second half. Then the cost of JetStream's dedupe window: see runDedupe.
func runMemory(ctx context.Context, env *Env, rep *Report, load time.Duration) error {
	if !canMeasureRSS {
		return errors.New("bench: the memory section reads /proc/<pid>/status: Linux only")
	}
	soak := load > 0
	interval := memorySoakInterval
	if !soak {
		load, interval = memoryShortLoad, memoryShortInterval
	}
	dir, err := os.MkdirTemp(env.tmp, "memory-")
	if err != nil {
		return err
	}
	env.Logf("memory: building api, worker and nats-server")
	bins, err := buildBinaries(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	if err := runStackMemory(ctx, env, rep, bins, dir, load, interval, soak); err != nil {
		return err
	}
	return runDedupe(ctx, env, rep, bins, dir, soak)
}

// stackProcs are the three processes of the memory run.
type stackProcs struct {
	nats        *natsProc
	api, worker *proc
	baseURL     string
	// admin listeners of the API and the worker, for their go_goroutines
	apiAdmin, workerAdmin string
}

// stop stops the API, then the worker, then NATS, and returns the first
// failure (a process that had crashed, or did not stop on SIGTERM).
func (s *stackProcs) stop() error {
	var errs []error
	for _, p := range []*proc{s.api, s.worker, s.nats.proc} {
		if p != nil {
			errs = append(errs, p.stop(40*time.Second))
		}
	}
	return errors.Join(errs...)
}

// startStackProcs starts nats-server, then the API (which creates the
// JetStream topology), then the worker, and returns once the worker pulls.
func startStackProcs(ctx context.Context, env *Env, bins binaries, dir string) (_ *stackProcs, set stackSettings, err error) {
	s := &stackProcs{}
	defer func() {
		if err != nil {
			_ = s.stop()
		}
	}()
	if s.nats, err = startNATSProc(ctx, bins.natsServer, filepath.Join(dir, "nats"), env.SyncAlways); err != nil {
		return nil, set, err
	}
	dsn, err := env.NewDatabase(ctx)
	if err != nil {
		return nil, set, err
	}
	if set, err = newStackSettings(s.nats.url, dsn); err != nil {
		return nil, set, err
	}
	if s.api, err = startProc("api", bins.api, nil, set.apiEnv()); err != nil {
		return nil, set, err
	}
	addr, err := loggedAddr(ctx, s.api, "api listening", "http_addr")
	if err != nil {
		return nil, set, err
	}
	s.baseURL = "http://" + addr
	if s.apiAdmin, err = loggedAddr(ctx, s.api, "api listening", "admin_addr"); err != nil {
		return nil, set, err
	}
	wenv, err := set.workerEnv()
	if err != nil {
		return nil, set, err
	}
	if s.worker, err = startProc("worker", bins.worker, nil, wenv); err != nil {
		return nil, set, err
	}
	stopped := func() error {
		if done, werr := s.worker.exited(); done {
			return fmt.Errorf("bench: the worker exited at start-up (%v); its output:\n%s", werr, s.worker.out)
		}
		return nil
	}
	if err := waitPulling(ctx, s.nats.url, 60*time.Second, stopped); err != nil {
		return nil, set, err
	}
	if s.workerAdmin, err = loggedAddr(ctx, s.worker, "worker running", "admin_addr"); err != nil {
		return nil, set, err
	}
	return s, set, nil
}

// loggedAddr waits for the JSON log record msg of p and returns its field
// key: the binaries log the address they bound, which with port 0 is the
// only way to learn it without racing for a free port.
func loggedAddr(ctx context.Context, p *proc, msg, key string) (string, error) {
	line, err := p.waitOutput(ctx, `"msg":"`+msg+`"`, 60*time.Second)
	if err != nil {
		return "", err
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		return "", fmt.Errorf("bench: %s's %q record is not JSON: %s", p.name, msg, line)
	}
	addr, _ := rec[key].(string)
	if addr == "" {
		return "", fmt.Errorf("bench: %s's %q record has no %s: %s", p.name, msg, key, line)
	}
	return addr, nil
}

// runStackMemory is the API/worker/NATS part of the memory section.
func runStackMemory(ctx context.Context, env *Env, rep *Report, bins binaries, dir string, load, interval time.Duration, soak bool) (err error) {
	stack, set, err := startStackProcs(ctx, env, bins, dir)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stack.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	db, err := pgxpool.New(ctx, set.dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	var accepted int64 // every 2xx, to compare with the rows at the end
	client := fixedPoolClient(env.Connections)
	defer client.CloseIdleConnections()
	run := func(rate float64, d time.Duration, progress bool) (loadgen.Result, error) {
		cfg := loadgen.Config{
			BaseURL: stack.baseURL, Client: client, Concurrency: inFlight(env, rate), Rate: rate, Duration: d,
			Source: gpsSource(set.apiSecret),
		}
		if progress {
			cfg.Progress, cfg.ProgressEvery = env.Log, 30*time.Second
		}
		res, err := loadgen.Run(ctx, cfg)
		accepted += res.OK
		if err == nil {
			err = ctx.Err()
		}
		return res, err
	}

	env.Logf("memory: sustained rate of the processes, closed loop, %d connections, %s", env.Connections, env.Round)
	if _, err := run(0, env.Warmup, false); err != nil {
		return err
	}
	before, err := gpsRows(ctx, db)
	if err != nil {
		return err
	}
	t0 := time.Now()
	probe, err := run(0, env.Round, false)
	if err != nil {
		return err
	}
	after, err := gpsRows(ctx, db)
	if err != nil {
		return err
	}
	sustained := min(probe.ReadingsPerSecond(), float64(after-before)/time.Since(t0).Seconds())
	if sustained <= 0 {
		return fmt.Errorf("bench: memory: nothing accepted and stored (%s)", statusSummary(probe))
	}
	if n, err := waitStored(ctx, db, accepted, e2eDrainLimit); err != nil || n != accepted {
		return errors.Join(err, fmt.Errorf("bench: memory: %d accepted, %d stored after %s", accepted, n, e2eDrainLimit))
	}

	rate := sustained / 2
	env.Logf("memory: %s at %.0f readings/s (half of %.0f), RSS every %s", load, rate, sustained, interval)
	pids := map[string]int{"api": stack.api.pid(), "worker": stack.worker.pid(), "nats-server": stack.nats.pid()}
	var g0, g1 [2]int // goroutines of the API and the worker at the start and the end
	var gerr [4]error
	g0[0], gerr[0] = goroutines(ctx, stack.apiAdmin)
	g0[1], gerr[1] = goroutines(ctx, stack.workerAdmin)
	sampler := sampleRSS(ctx, pids, interval)
	res, err := run(rate, load, soak)
	g1[0], gerr[2] = goroutines(ctx, stack.apiAdmin)
	g1[1], gerr[3] = goroutines(ctx, stack.workerAdmin)
	serr := sampler.stop()
	if err = errors.Join(err, serr, errors.Join(gerr[:]...)); err != nil {
		return err
	}
	n, err := waitStored(ctx, db, accepted, e2eDrainLimit)
	if err != nil {
		return err
	}

	note := fmt.Sprintf("%s at %.0f/s over %d connections, %d samples", load, rate, env.Connections, sampler.summary("api").samples)
	if s := statusSummary(res); s != "" {
		note += "; not 2xx: " + s
	}
	maxSlope, slopeNote := 0.0, "least squares over the second half; short run, indicative: make soak has the target"
	if soak {
		maxSlope, slopeNote = soakMaxSlope, "least squares over the second half of the load"
	}
	for i, name := range []string{"api", "worker", "nats-server"} {
		sum := sampler.summary(name)
		target := maxSlope
		endNote := fmt.Sprintf("peak %.1f MiB", sum.peak)
		if i < 2 {
			endNote += fmt.Sprintf("; goroutines %d at start, %d at end", g0[i], g1[i])
		} else {
			target = 0 // reported; its dedupe window is measured apart below
		}
		rep.Add(
			Row{Section: "memory", Name: name + " RSS at start", Value: sum.start, Unit: "MiB", Note: note},
			Row{Section: "memory", Name: name + " RSS at end", Value: sum.end, Unit: "MiB", Note: endNote},
			Row{Section: "memory", Name: name + " RSS slope", Value: sum.slope, Unit: "MiB/min", MaxValue: target,
				Note: slopeNote},
		)
		note = ""
	}
	if n != accepted {
		return fmt.Errorf("bench: memory: %d readings accepted, %d stored after %s", accepted, n, e2eDrainLimit)
	}
	return nil
}
