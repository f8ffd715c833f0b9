package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// exactQuantile is the definition Quantile approximates: the sample of rank
// ceil(q·n) in sorted order.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	distributions := map[string]func() time.Duration{
		// log-uniform from 1 µs to 60 s: every octave of the range
		"log-uniform": func() time.Duration { return time.Duration(math.Exp(rng.Float64()*math.Log(60e9/1e3)) * 1e3) },
		// a typical latency shape: ~2 ms with a long tail
		"lognormal": func() time.Duration { return time.Duration(2e6 * math.Exp(rng.NormFloat64())) },
		// narrow: all within 1.00–1.01 ms, where buckets are widest relative to the spread
		"narrow": func() time.Duration { return time.Millisecond + time.Duration(rng.IntN(10_000)) },
	}
	for name, draw := range distributions {
		t.Run(name, func(t *testing.T) {
			h := NewHistogram()
			samples := make([]time.Duration, 100_000)
			var sum time.Duration
			for i := range samples {
				samples[i] = draw()
				sum += samples[i]
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1} {
				got, want := h.Quantile(q), exactQuantile(samples, q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
					t.Errorf("Quantile(%g) = %s, exact %s (%.3f%% off)", q, got, want, 100*rel)
				}
			}
			if h.Count() != int64(len(samples)) || h.Max() != samples[len(samples)-1] || h.Min() != samples[0] {
				t.Errorf("count %d max %s min %s, want %d %s %s", h.Count(), h.Max(), h.Min(), len(samples), samples[len(samples)-1], samples[0])
			}
			if want := sum / time.Duration(len(samples)); h.Mean() != want {
				t.Errorf("mean %s, want %s", h.Mean(), want)
			}
		})
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every bucket's bounds map back to it, and none is wider than 1% of its values.
	for i := range numBuckets {
		low, high := bounds(i)
		if bucketOf(low) != i || bucketOf(high-1) != i || (i+1 < numBuckets && bucketOf(high) != i+1) {
			t.Fatalf("bucket %d [%d, %d) maps back to %d..%d", i, low, high, bucketOf(low), bucketOf(high-1))
		}
		if low > 0 && float64(high-low)/float64(low) > 0.01 && high-low > 1 {
			t.Fatalf("bucket %d [%d, %d) is wider than 1%%", i, low, high)
		}
	}
	h := NewHistogram()
	for _, d := range []time.Duration{-5, 0, 3 * time.Microsecond, 3 * time.Microsecond, time.Hour} {
		h.Record(d)
	}
	b := h.Buckets()
	if len(b) != 3 || b[0].Low != 0 || b[0].Count != 2 || b[1].Count != 2 || b[1].Low > 3*time.Microsecond || b[1].High <= 3*time.Microsecond {
		t.Errorf("buckets %+v", b)
	}
	// Beyond the range: the last bucket counts it, Max and Quantile(1) stay exact.
	if b[2].Count != 1 || h.Max() != time.Hour || h.Quantile(1) != time.Hour || h.Min() != 0 {
		t.Errorf("out-of-range value: buckets %+v max %s q1 %s", b, h.Max(), h.Quantile(1))
	}
	empty := NewHistogram()
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 || empty.Max() != 0 || empty.Min() != 0 || len(empty.Buckets()) != 0 {
		t.Error("an empty histogram reports non-zero figures")
	}
}

func TestHistogramMergeAndConcurrentRecord(t *testing.T) {
	whole, merged := NewHistogram(), NewHistogram()
	var wg sync.WaitGroup
	parts := make([]*Histogram, 8)
	for k := range parts {
		parts[k] = NewHistogram()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(k), 7))
			for range 10_000 {
				d := time.Duration(rng.Int64N(int64(time.Second)))
				parts[k].Record(d)
				whole.Record(d) // shared by all eight goroutines
			}
		})
	}
	wg.Wait()
	for _, p := range parts {
		merged.Merge(p)
	}
	merged.Merge(NewHistogram()) // an empty one changes nothing
	if whole.Count() != 80_000 || merged.Count() != 80_000 {
		t.Fatalf("counts %d, %d, want 80000", whole.Count(), merged.Count())
	}
	if !slices.Equal(whole.Buckets(), merged.Buckets()) || whole.Mean() != merged.Mean() || whole.Max() != merged.Max() || whole.Min() != merged.Min() {
		t.Error("merged per-goroutine histograms differ from the shared one")
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if whole.Quantile(q) != merged.Quantile(q) {
			t.Errorf("Quantile(%g): %s vs %s", q, whole.Quantile(q), merged.Quantile(q))
		}
	}
}
