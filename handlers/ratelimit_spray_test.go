package handlers

import (
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
)

// bytesPerTrackedClient is the documented cost of one tracked client
// (RATE_LIMIT_MAX_CLIENTS in config/help.go says ~275 bytes); the spray
// test allows this much per bucket, with room for map growth.
const bytesPerTrackedClient = 400

// A million distinct client IPs (half IPv4, half IPv6 from distinct /64s),
// sprayed from two goroutines over a simulated ten seconds at the default
// cap: the limiter never tracks more buckets than the cap, its heap stays
// within the documented per-client cost, and a busy client that keeps
// coming back during the spray keeps its (empty) bucket: the spray does not
// launder its limit.
func TestRateLimiterMillionClientSpray(t *testing.T) {
	const (
		clients = 1_000_000
		cap     = config.DefaultMaxTrackedIPs
		workers = 2
	)
	// 1 request/s, burst 20: the sprayed buckets stay live (not idle-expired)
	// for the whole spray, so only the cap bounds them.
	rl := newRateLimiter(1, 20, cap)
	abuser := netip.MustParseAddr("198.51.100.7")
	start := time.Unix(1764324000, 0)

	before := heapInUse()
	began := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0.0
	abuserAllowed, abuserTakes := 0, 0
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			allowed, takes := 0, 0
			for i := w; i < clients; i += workers {
				now := start.Add(time.Duration(i) * 10 * time.Microsecond) // 10 s in all
				rl.take(sprayAddr(i), now)
				if i%1000 == 0 {
					takes++
					if rl.take(abuser, now).allowed {
						allowed++
					}
				}
				if i%(clients/20) == 0 {
					n := rl.tracked()
					mu.Lock()
					peak = max(peak, n)
					mu.Unlock()
				}
			}
			mu.Lock()
			abuserAllowed += allowed
			abuserTakes += takes
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	tracked := rl.tracked()
	peak = max(peak, tracked)
	after := heapInUse()
	runtime.KeepAlive(rl)

	delta := int64(after) - int64(before)
	t.Logf("%d distinct clients in %s: %v buckets tracked (peak %v, cap %d), heap +%.1f MiB (%d bytes per tracked bucket)",
		clients, elapsed.Round(time.Millisecond), tracked, peak, cap, float64(delta)/(1<<20), delta/int64(max(1, tracked)))
	// The cap is split over the shards, rounded up (a shard holds at least
	// one client): the bound actually enforced is perShard × shards, at
	// most limiterShards-1 over the configured cap.
	if bound := float64(rl.perShard * limiterShards); peak > bound {
		t.Errorf("tracked %v buckets, over the bound of %v (cap %d)", peak, bound, cap)
	}
	if tracked < cap*9/10 {
		t.Errorf("tracked %v buckets after the spray, want about the cap %d (the test did not fill it)", tracked, cap)
	}
	if limit := int64(cap) * bytesPerTrackedClient; delta > limit {
		t.Errorf("the limiter's heap grew by %d bytes, over %d (%d bytes × the cap)", delta, limit, bytesPerTrackedClient)
	}
	// 10 s at 1 request/s with a burst of 20: at most 30 of the abuser's
	// 1,000 requests pass. Had its bucket been evicted and re-created it
	// would have been let through again with a fresh burst.
	if abuserAllowed > 30 {
		t.Errorf("the busy client was allowed %d of %d requests during the spray, want at most 30: its bucket was evicted",
			abuserAllowed, abuserTakes)
	}
}

// sprayAddr is the i-th sprayed client: even i an IPv4 address, odd i an
// IPv6 address in its own /64 (the limiter keys IPv6 by /64, so addresses
// within one /64 would not be distinct clients).
func sprayAddr(i int) netip.Addr {
	if i%2 == 0 {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	var a [16]byte
	a[0], a[1] = 0x20, 0x01
	a[4], a[5], a[6], a[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	a[15] = 1
	return bucketKey(netip.AddrFrom16(a))
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
