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

// rateLimiter keeps one token bucket per key (a client IP, or a device), in
// memory bounded two ways: a bucket idle long enough to have refilled
// completely is dropped (it is indistinguishable from a new one, so this
// loses nothing), and past the cap on tracked keys the least recently seen
// bucket is dropped.
//
// Buckets live in a sharded LRU; expiry is lazy (each request to a shard
// first drops that shard's expired tail), so there is no janitor goroutine
// to start or stop, and an idle shard costs nothing but its memory.
type rateLimiter[K comparable] struct {
	limit    rate.Limit
	burst    int
	idle     time.Duration
	perShard int
	seed     maphash.Seed
	shards   [limiterShards]limiterShard[K]
}

type limiterShard[K comparable] struct {
	mu      sync.Mutex
	buckets map[K]*list.Element // of *bucket[K]
	lru     list.List           // front: most recently seen
}

type bucket[K comparable] struct {
	key  K
	lim  *rate.Limiter
	seen time.Time
}

// newRateLimiter is the per-client-IP limiter; nil when rps is 0 (rate
// limiting disabled).
func newRateLimiter(rps float64, burst, maxClients int) *rateLimiter[netip.Addr] {
	return newLimiter[netip.Addr](rps, burst, maxClients)
}

// newLimiter returns nil when rps is 0 (this limit disabled).
func newLimiter[K comparable](rps float64, burst, maxClients int) *rateLimiter[K] {
	if rps <= 0 {
		return nil
	}
	rl := &rateLimiter[K]{
		limit: rate.Limit(rps),
		burst: burst,
		idle:  time.Duration(float64(burst) / rps * float64(time.Second)),
		// Rounded up: a shard must hold at least one client, and a cap
		// under the shard count would otherwise be silently raised.
		perShard: max(1, (maxClients+limiterShards-1)/limiterShards),
		seed:     maphash.MakeSeed(),
	}
	for i := range rl.shards {
		rl.shards[i].buckets = make(map[K]*list.Element)
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

func (rl *rateLimiter[K]) take(key K, now time.Time) verdict {
	s := &rl.shards[maphash.Comparable(rl.seed, key)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Back(); el != nil && now.Sub(el.Value.(*bucket[K]).seen) >= rl.idle; el = s.lru.Back() {
		s.remove(el)
	}
	var b *bucket[K]
	if el, ok := s.buckets[key]; ok {
		b = el.Value.(*bucket[K])
		s.lru.MoveToFront(el)
	} else {
		if len(s.buckets) >= rl.perShard {
			s.remove(s.lru.Back())
		}
		b = &bucket[K]{key: key, lim: rate.NewLimiter(rl.limit, rl.burst)}
		s.buckets[key] = s.lru.PushFront(b)
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

func (rl *rateLimiter[K]) wait(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(rl.limit) * float64(time.Second))
}

func (s *limiterShard[K]) remove(el *list.Element) {
	delete(s.buckets, el.Value.(*bucket[K]).key)
	s.lru.Remove(el)
}

// tracked counts the buckets held, for the gauge.
func (rl *rateLimiter[K]) tracked() float64 {
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

// setHeaders sets the RateLimit-* headers (draft-ietf-httpapi-ratelimit-
// headers) of a take: Limit is the bucket size, Remaining the whole tokens
// left, Reset the seconds until the bucket is full again (refused: until
// the next token, also in Retry-After), Policy "<burst>;w=<seconds to
// refill>".
func (rl *rateLimiter[K]) setHeaders(h http.Header, v verdict) {
	h.Set("RateLimit-Limit", strconv.Itoa(rl.burst))
	h.Set("RateLimit-Remaining", strconv.Itoa(v.remaining))
	h.Set("RateLimit-Policy", strconv.Itoa(rl.burst)+";w="+strconv.Itoa(ceilSeconds(rl.idle)))
	if v.allowed {
		h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(v.reset)))
		return
	}
	retry := strconv.Itoa(max(1, ceilSeconds(v.retry)))
	h.Set("RateLimit-Reset", retry)
	h.Set("Retry-After", retry)
}

// ipLimit refuses a client IP over its rate with 429, and sets the
// RateLimit-* headers of its bucket on every answer.
func ipLimit(rl *rateLimiter[netip.Addr], m *metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if rl == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info := infoFrom(r.Context())
			v := rl.take(bucketKey(info.clientIP), time.Now())
			rl.setHeaders(w.Header(), v)
			if !v.allowed {
				m.rateLimited.WithLabelValues(info.route).Inc()
				writeProblem(w, r, Problem{
					Type:   ProblemTypeBase + "rate-limited",
					Title:  "Too many requests",
					Status: http.StatusTooManyRequests,
					Detail: "This client IP is over its request rate; retry after the number of seconds in Retry-After.",
				})
				return
			}
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
// X-Forwarded-For carry them. The form is told by its colons and brackets
// (ip:port has one colon, [ipv6]:port a bracket; a bare IPv6 address has
// several colons and no bracket), so each string is parsed once: a failed
// netip parse allocates its error, and RemoteAddr is parsed on every request.
func parseHop(s string) (netip.Addr, bool) {
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		return ap.Addr().WithZone("").Unmap(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
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

// deviceKey is what the per-device limit counts: a device as one API key
// sends it (its normalised device_id), so one key's clients cannot spend
// another's budget by naming its devices.
type deviceKey struct {
	actor, deviceID string
}

// limitDevice takes a token for the device a parsed reading names. The
// per-IP limit has already run (it protects the parser, which the device
// id is behind); this one tells apart the phones that share an IP behind
// carrier-grade NAT. The answer carries the RateLimit-* headers of
// whichever bucket is closer to empty, so a client sees the limit it will
// meet first; over the device's rate it is 429 device-rate-limited.
func (h *ingest) limitDevice(w http.ResponseWriter, info *reqInfo, deviceID string) error {
	if h.devices == nil {
		return nil
	}
	v := h.devices.take(deviceKey{info.keyName, deviceID}, time.Now())
	hdr := w.Header()
	if ip, err := strconv.Atoi(hdr.Get("RateLimit-Remaining")); err != nil || !v.allowed || v.remaining < ip {
		h.devices.setHeaders(hdr, v)
	}
	if v.allowed {
		return nil
	}
	h.m.deviceRateLimited.WithLabelValues(info.route).Inc()
	return &refusal{Problem: Problem{
		Type:   ProblemTypeBase + "device-rate-limited",
		Title:  "Too many requests from this device",
		Status: http.StatusTooManyRequests,
		Detail: "Device " + deviceID + " is over its request rate; nothing was accepted. Retry after the number of seconds in Retry-After, with the same Idempotency-Key.",
	}}
}
