package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram's layout, as in HdrHistogram: values (nanoseconds) below
// 2·subCount are counted exactly; above, every power of two is split into
// subCount equal buckets, so a bucket is at most 1/subCount = 0.78% of its
// values wide and its midpoint is within 0.4% of any value it holds. Values
// from 1 ns to 2^maxBits ns (~18 min) fit in numBuckets counters (~35 KiB),
// whatever the number of samples; larger values land in the last bucket
// (Max still reports them exactly).
const (
	subBits    = 7
	subCount   = 1 << subBits
	maxBits    = 40
	numBuckets = (maxBits - subBits + 1) * subCount
)

// Histogram counts durations in HDR-style log-linear buckets (≤1% relative
// error from 1 µs to minutes) in fixed memory. It is safe to record from many
// goroutines; a hot loop is better served by one histogram per goroutine,
// merged at the end, because concurrent recorders share its cache lines.
type Histogram struct {
	counts [numBuckets]atomic.Int64
	count  atomic.Int64
	sum    atomic.Int64 // nanoseconds; overflows only after ~292 years of latency
	min    atomic.Int64 // nanoseconds, math.MaxInt64 when empty
	max    atomic.Int64 // nanoseconds
}

// Bucket is one non-empty bucket of a Histogram: Count values in [Low, High).
type Bucket struct {
	Low, High time.Duration
	Count     int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf returns the index of the bucket that counts v nanoseconds.
func bucketOf(v int64) int {
	if v < 2*subCount {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	if shift > maxBits-subBits-1 {
		return numBuckets - 1
	}
	return shift*subCount + int(v>>shift)
}

// bounds returns bucket i's range [low, high) in nanoseconds.
func bounds(i int) (low, high int64) {
	if i < 2*subCount {
		return int64(i), int64(i) + 1
	}
	shift := i/subCount - 1
	top := int64(i%subCount + subCount)
	return top << shift, (top + 1) << shift
}

// Record counts one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	for cur := h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	for cur := h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() int64 { return h.count.Load() }

// Mean returns the exact mean of the recorded durations (0 when empty).
func (h *Histogram) Mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Max returns the largest recorded duration, exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Min returns the smallest recorded duration, exactly (0 when empty).
func (h *Histogram) Min() time.Duration {
	if h.count.Load() == 0 {
		return 0
	}
	return time.Duration(h.min.Load())
}

// Quantile returns the duration below or at which a fraction q (0..1) of the
// recorded durations lie: the midpoint of the bucket holding the sample of
// rank ceil(q·Count), so within 0.4% of the exact sample; the first and last
// ranks are exact (Min, Max). It is 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	switch rank {
	case n:
		return h.Max()
	case 1:
		return h.Min()
	}
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, high := bounds(i)
			mid := low + (high-low-1)/2
			return time.Duration(min(max(mid, h.min.Load()), h.max.Load()))
		}
	}
	return h.Max() // only reached while another goroutine records
}

// Merge adds o's durations to h. o should not be recorded into meanwhile.
func (h *Histogram) Merge(o *Histogram) {
	if o.count.Load() == 0 {
		return
	}
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.count.Add(o.count.Load())
	h.sum.Add(o.sum.Load())
	for v, cur := o.min.Load(), h.min.Load(); v < cur && !h.min.CompareAndSwap(cur, v); cur = h.min.Load() {
	}
	for v, cur := o.max.Load(), h.max.Load(); v > cur && !h.max.CompareAndSwap(cur, v); cur = h.max.Load() {
	}
}

// Buckets returns the non-empty buckets in increasing order, for printing
// (e.g. grouped into coarser ranges, or as a percentile spectrum).
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			low, high := bounds(i)
			out = append(out, Bucket{Low: time.Duration(low), High: time.Duration(high), Count: c})
		}
	}
	return out
}
