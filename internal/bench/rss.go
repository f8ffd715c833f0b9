package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// rssSample is one reading of a process's resident set size.
type rssSample struct {
	at  time.Duration // since the sampler started
	rss int64         // bytes
}

// rssSampler reads the RSS of some processes every interval until stopped.
type rssSampler struct {
	mu      sync.Mutex
	series  map[string][]rssSample
	errs    []error
	pids    map[string]int
	start   time.Time
	stopped chan struct{}
	done    chan struct{}
}

// sampleRSS starts sampling the processes of pids (name → pid) at once and
// then every interval.
func sampleRSS(ctx context.Context, pids map[string]int, interval time.Duration) *rssSampler {
	s := &rssSampler{series: map[string][]rssSample{}, pids: pids, start: time.Now(),
		stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-ctx.Done():
				return
			case <-s.stopped:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	at := time.Since(s.start)
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, pid := range s.pids {
		rss, err := rssBytes(pid)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		s.series[name] = append(s.series[name], rssSample{at: at, rss: rss})
	}
}

// stop takes a last sample and ends the sampling; it returns the first
// error a sample met (a process gone).
func (s *rssSampler) stop() error {
	close(s.stopped)
	<-s.done
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	return nil
}

// rssSummary is what the report says of one process's series.
type rssSummary struct {
	start, end, peak float64 // MiB
	// slope is the least-squares trend in MiB per minute over the second
	// half of the run: the first half holds the warm-up growth (heap to its
	// steady size, caches, the dedupe window filling), the second whether
	// memory still grows.
	slope   float64
	samples int
}

func (s *rssSampler) summary(name string) rssSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return summarize(s.series[name])
}

func summarize(xs []rssSample) rssSummary {
	if len(xs) == 0 {
		return rssSummary{}
	}
	sum := rssSummary{start: toMiB(xs[0].rss), end: toMiB(xs[len(xs)-1].rss), samples: len(xs)}
	for _, x := range xs {
		sum.peak = max(sum.peak, toMiB(x.rss))
	}
	half := xs[len(xs)-1].at / 2
	var second []rssSample
	for _, x := range xs {
		if x.at >= half {
			second = append(second, x)
		}
	}
	sum.slope = slopePerMinute(second)
	return sum
}

// slopePerMinute is the least-squares slope of xs in MiB per minute (0 for
// fewer than two samples).
func slopePerMinute(xs []rssSample) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, x := range xs {
		t, y := x.at.Minutes(), toMiB(x.rss)
		sx, sy, sxx, sxy = sx+t, sy+y, sxx+t*t, sxy+t*y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

func toMiB(b int64) float64 { return float64(b) / (1 << 20) }
