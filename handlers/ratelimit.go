package handlers

import (
	"container/list"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const limiterShards = 64

// rateLimiter keeps one token bucket per client IP, in memory bounded two
// ways: a bucket idle long enough to have refilled completely is dropped
// (it is indistinguishable from a new one, so this loses nothing), and past
// the cap on tracked IPs the least recently seen bucket is dropped.
//
// Buckets live in a sharded LRU; expiry is lazy (each request to a shard
// first drops that shard's expired tail), so there is no janitor goroutine
// to start or stop, and an idle shard costs nothing but its memory.
type rateLimiter struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration
	perShard int
	seed     maphash.Seed
	shards   [limiterShards]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*list.Element // of *bucket
	lru     list.List                    // front: most recently seen
}

type bucket struct {
	ip   netip.Addr
	lim  *rate.Limiter
	seen time.Time
}

// newRateLimiter returns nil when rps is 0 (rate limiting disabled).
func newRateLimiter(rps float64, burst, maxClients int) *rateLimiter {
	if rps <= 0 {
		return nil
	}
	rl := &rateLimiter{
		limit: rate.Limit(rps),
		burst: burst,
		idle:  time.Duration(float64(burst) / rps * float64(time.Second)),
		// Rounded up: a shard must hold at least one client, and a cap
		// under the shard count would otherwise be silently raised.
		perShard: max(1, (maxClients+limiterShards-1)/limiterShards),
		seed:     maphash.MakeSeed(),
	}
	for i := range rl.shards {
		rl.shards[i].buckets = make(map[netip.Addr]*list.Element)
	}
	return rl
}

// verdict is the outcome of one take from a bucket.
type verdict struct {
	allowed   bool
	remaining int
	reset     time.Duration // until the bucket is full again
	retry     time.Duration // until the next token, when refused
}

func (rl *rateLimiter) take(ip netip.Addr, now time.Time) verdict {
	s := &rl.shards[maphash.Comparable(rl.seed, ip)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Back(); el != nil && now.Sub(el.Value.(*bucket).seen) >= rl.idle; el = s.lru.Back() {
		s.remove(el)
	}
	var b *bucket
	if el, ok := s.buckets[ip]; ok {
		b = el.Value.(*bucket)
		s.lru.MoveToFront(el)
	} else {
		if len(s.buckets) >= rl.perShard {
			s.remove(s.lru.Back())
		}
		b = &bucket{ip: ip, lim: rate.NewLimiter(rl.limit, rl.burst)}
		s.buckets[ip] = s.lru.PushFront(b)
	}
	b.seen = now
	v := verdict{allowed: b.lim.AllowN(now, 1)}
	tokens := b.lim.TokensAt(now)
	v.remaining = max(0, int(math.Floor(tokens)))
	v.reset = rl.wait(float64(rl.burst) - tokens)
	if !v.allowed {
		v.retry = rl.wait(1 - tokens)
	}
	return v
}

func (rl *rateLimiter) wait(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(rl.limit) * float64(time.Second))
}

func (s *limiterShard) remove(el *list.Element) {
	delete(s.buckets, el.Value.(*bucket).ip)
	s.lru.Remove(el)
}

// tracked counts the buckets held, for the gauge.
func (rl *rateLimiter) tracked() float64 {
	if rl == nil {
		return 0
	}
	n := 0
	for i := range rl.shards {
		s := &rl.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return float64(n)
}

// middleware refuses a client over its rate with 429 and sets the
// RateLimit-* headers (draft-ietf-httpapi-ratelimit-headers) on every
// answer: Limit is the bucket size, Remaining the whole tokens left, Reset
// the seconds until the bucket is full again.
func (rl *rateLimiter) middleware(m *metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if rl == nil {
			return next
		}
		limit := strconv.Itoa(rl.burst)
		policy := limit + ";w=" + strconv.Itoa(ceilSeconds(rl.idle))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info := infoFrom(r.Context())
			v := rl.take(bucketKey(info.clientIP), time.Now())
			h := w.Header()
			h.Set("RateLimit-Limit", limit)
			h.Set("RateLimit-Remaining", strconv.Itoa(v.remaining))
			h.Set("RateLimit-Policy", policy)
			if !v.allowed {
				retry := strconv.Itoa(max(1, ceilSeconds(v.retry)))
				h.Set("RateLimit-Reset", retry)
				h.Set("Retry-After", retry)
				m.rateLimited.WithLabelValues(info.route).Inc()
				writeProblem(w, r, Problem{
					Type:   ProblemTypeBase + "rate-limited",
					Title:  "Too many requests",
					Status: http.StatusTooManyRequests,
					Detail: "This client IP is over its request rate; retry after the number of seconds in Retry-After.",
				})
				return
			}
			h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(v.reset)))
			next.ServeHTTP(w, r)
		})
	}
}

// bucketKey is the address a bucket is kept for: an IPv6 client gets one
// bucket per /64, the block a single subscriber is usually given, or it
// could rotate addresses within it to escape its limit.
func bucketKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

func ceilSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// maxForwardedHops bounds the X-Forwarded-For hops examined per request.
const maxForwardedHops = 32

// clientIP is the address a request is attributed to: the TCP peer, unless
// the peer is a trusted proxy; then the right-most X-Forwarded-For hop that
// is not itself a trusted proxy (hops left of it could be forged by the
// client). A malformed hop stops the walk at the last address vouched for.
func clientIP(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) netip.Addr {
	peer, ok := parseHop(remoteAddr)
	if !ok || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	hops := 0
	for i := len(forwardedFor) - 1; i >= 0; i-- {
		rest := forwardedFor[i]
		for rest != "" {
			var hop string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				hop, rest = rest[j+1:], rest[:j]
			} else {
				hop, rest = rest, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			if hops++; hops > maxForwardedHops {
				return client
			}
			a, ok := parseHop(hop)
			if !ok {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

// parseHop reads an IP address, with or without a port, as RemoteAddr and
// X-Forwarded-For carry them.
func parseHop(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.WithZone("").Unmap(), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
