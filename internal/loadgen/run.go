package loadgen

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runner is one run's shared state; each worker keeps its own tallies and
// histogram, merged once at the end, so the hot path shares only a few
// atomic counters (for the progress line and the bounds).
type runner struct {
	cfg  Config
	base string // BaseURL without a trailing slash

	start, recordStart, end time.Time // end is zero without a Duration

	next     atomic.Int64 // closed loop: the next Source index
	recorded atomic.Int64 // closed loop: recorded requests claimed against N

	stopOnce sync.Once
	stopped  atomic.Bool
	drain    *time.Timer // cancels the requests still in flight DrainTimeout after the stop
	reqCtx   context.Context
	cancel   context.CancelFunc

	live struct { // recorded requests so far, for the progress line
		sent, ok, errors, dropped, inFlight atomic.Int64
	}
}

// job is one open-loop arrival.
type job struct {
	i   int64
	due time.Time
	rec bool
}

type worker struct {
	r       *runner
	all     *tally
	byLabel map[string]*tally
}

func newRunner(cfg Config, base *url.URL) *runner {
	return &runner{cfg: cfg, base: strings.TrimSuffix(base.String(), "/")}
}

// stop ends the issuing of requests; those in flight get DrainTimeout.
func (r *runner) stop() {
	r.stopOnce.Do(func() {
		r.stopped.Store(true)
		r.drain = time.AfterFunc(r.cfg.DrainTimeout, r.cancel)
	})
}

func (r *runner) run(ctx context.Context) Result {
	r.start = time.Now()
	r.recordStart = r.start.Add(r.cfg.Warmup)
	if r.cfg.Duration > 0 {
		r.end = r.recordStart.Add(r.cfg.Duration)
		r.reqCtx, r.cancel = context.WithDeadline(ctx, r.end.Add(r.cfg.DrainTimeout))
	} else {
		r.reqCtx, r.cancel = context.WithCancel(ctx)
	}
	defer r.cancel()

	progressDone := make(chan struct{})
	var progress sync.WaitGroup
	if r.cfg.Progress != nil {
		progress.Go(func() { r.progress(progressDone) })
	}

	workers := make([]*worker, r.cfg.Concurrency)
	for k := range workers {
		workers[k] = &worker{r: r, all: newTally(), byLabel: map[string]*tally{}}
	}
	var dropped int64
	if r.cfg.Rate > 0 {
		dropped = r.openLoop(ctx, workers)
	} else {
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() { w.closedLoop(ctx) })
		}
		wg.Wait()
	}
	r.stop()
	r.drain.Stop()
	finished := time.Now()
	close(progressDone)
	progress.Wait()

	res := newResult()
	res.Dropped = dropped
	res.Elapsed = max(finished.Sub(r.recordStart), 0)
	for _, w := range workers {
		w.all.addTo(&res)
		for label, t := range w.byLabel {
			if res.ByLabel == nil {
				res.ByLabel = map[string]Result{}
			}
			g, ok := res.ByLabel[label]
			if !ok {
				g = newResult()
				g.Elapsed = res.Elapsed
			}
			t.addTo(&g)
			res.ByLabel[label] = g
		}
	}
	return res
}

// closedLoop sends one request after another until a bound is reached.
func (w *worker) closedLoop(ctx context.Context) {
	r := w.r
	for !r.stopped.Load() && ctx.Err() == nil {
		now := time.Now()
		if !r.end.IsZero() && !now.Before(r.end) {
			r.stop()
			return
		}
		rec := !now.Before(r.recordStart)
		if rec && r.cfg.N > 0 {
			c := r.recorded.Add(1)
			if c > r.cfg.N {
				r.stop()
				return
			}
			if c == r.cfg.N {
				r.stop() // this is the last one: others stop, it is still sent
			}
		}
		w.do(r.next.Add(1)-1, now, rec)
	}
}

// openLoop dispatches arrivals at the configured rate to the workers and
// returns the recorded arrivals dropped because Concurrency requests were in
// flight. A slot is taken when an arrival is dispatched and given back when
// its request ends, so a request is never queued behind another: it is sent
// at once or dropped. Late arrivals (the scheduler overslept, or a worker
// was slow to wake) keep their due time, which their latency includes.
func (r *runner) openLoop(ctx context.Context, workers []*worker) (dropped int64) {
	slots := make(chan struct{}, len(workers))
	jobs := make(chan job, len(workers)) // never full: at most one job per slot
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for j := range jobs {
				w.do(j.i, j.due, j.rec)
				<-slots
			}
		})
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	perArrival := float64(time.Second) / r.cfg.Rate
	var arrivals int64 // recorded ones, against N
	for i := int64(0); ctx.Err() == nil; i++ {
		due := r.start.Add(time.Duration(float64(i) * perArrival))
		if !r.end.IsZero() && !due.Before(r.end) {
			break
		}
		rec := !due.Before(r.recordStart)
		if rec && r.cfg.N > 0 {
			if arrivals == r.cfg.N {
				break
			}
			arrivals++
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
			case <-timer.C:
			}
			if ctx.Err() != nil {
				break
			}
		}
		select {
		case slots <- struct{}{}:
			jobs <- job{i: i, due: due, rec: rec}
		default:
			if rec {
				dropped++
				r.live.dropped.Add(1)
			}
		}
	}
	r.stop()
	close(jobs)
	wg.Wait()
	return dropped
}

// do sends request i, due (or sent) at due, and tallies it when rec.
func (w *worker) do(i int64, due time.Time, rec bool) {
	r := w.r
	req := r.cfg.Source(i)
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	path := req.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	tallies := [2]*tally{w.all}
	if req.Label != "" && rec {
		t, ok := w.byLabel[req.Label]
		if !ok {
			t = newTally()
			w.byLabel[req.Label] = t
		}
		tallies[1] = t
	}
	hreq, err := http.NewRequestWithContext(r.reqCtx, method, r.base+path, bytes.NewReader(req.Body))
	if err != nil { // a bad Method or Path from the Source
		if rec {
			w.fail(tallies, "request", err)
		}
		return
	}
	if req.Header != nil {
		hreq.Header = req.Header
	}
	r.live.inFlight.Add(1)
	status, body, err := w.roundTrip(hreq, rec && r.cfg.OnResponse != nil)
	latency := time.Since(due)
	r.live.inFlight.Add(-1)
	if !rec {
		return
	}
	switch {
	case err != nil && r.reqCtx.Err() != nil:
		for _, t := range tallies {
			if t != nil {
				t.cancelled++
			}
		}
	case err != nil:
		w.fail(tallies, classify(err), err)
	default:
		r.live.sent.Add(1)
		for _, t := range tallies {
			if t != nil {
				t.answer(status, req.Readings, latency)
			}
		}
		if status/100 == 2 {
			r.live.ok.Add(1)
			if r.cfg.OnResponse != nil {
				r.cfg.OnResponse(req, status, body, due)
			}
		}
	}
}

func (w *worker) fail(tallies [2]*tally, class string, err error) {
	w.r.live.sent.Add(1)
	w.r.live.errors.Add(1)
	for _, t := range tallies {
		if t != nil {
			t.fail(class, err)
		}
	}
}

// roundTrip sends hreq and reads the whole answer (an answer whose body
// breaks off is a transport error, not a status); the body is kept only
// when keep and the status is 2xx.
func (w *worker) roundTrip(hreq *http.Request, keep bool) (status int, body []byte, err error) {
	resp, err := w.r.cfg.Client.Do(hreq)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if keep && resp.StatusCode/100 == 2 {
		body, err = io.ReadAll(resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}
