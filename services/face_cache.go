package services

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"
)

// imageKey is the SHA-256 digest of a photo's bytes. It lives only in memory:
// the database never holds an unkeyed digest of a plaintext photo.
type imageKey [sha256.Size]byte

// faceCache remembers, for recently analysed photos, the face id the photo
// matched or was indexed as ("" for a photo with no usable face). It is an LRU
// bounded by entry count whose entries also expire after a TTL, so memory is
// bounded and a face deleted from the collection is forgotten in time.
//
// An entry costs roughly 200 bytes (key, a 36-byte face id, list and map
// overhead): 10,000 entries is about 2 MB.
type faceCache struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time
	order *list.List // front = most recently used; values are *cacheEntry
	items map[imageKey]*list.Element
}

type cacheEntry struct {
	key     imageKey
	faceID  string
	expires time.Time
	// origin is the message whose analysis filled the entry, and first that
	// analysis: a redelivery of that same message (its insert failed after
	// Rekognition answered) must store what Rekognition said, e.g. new_face,
	// not a match of the photo with itself.
	origin string
	first  Analysis
}

func newFaceCache(maxEntries int, ttl time.Duration, now func() time.Time) *faceCache {
	return &faceCache{
		max:   maxEntries,
		ttl:   ttl,
		now:   now,
		order: list.New(),
		items: make(map[imageKey]*list.Element, min(maxEntries, 1024)),
	}
}

// get returns the entry remembered for key (faceID "" meaning no face) and
// whether an unexpired one exists.
func (c *faceCache) get(key imageKey) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return cacheEntry{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return cacheEntry{}, false
	}
	c.order.MoveToFront(el)
	return *e, true
}

// put remembers e for key, evicting the least recently used entry when the
// cache is full.
func (c *faceCache) put(key imageKey, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.key, e.expires = key, c.now().Add(c.ttl)
	if el, ok := c.items[key]; ok {
		*el.Value.(*cacheEntry) = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
	c.items[key] = c.order.PushFront(&e)
}

// len reports the number of entries, expired ones not yet evicted included.
func (c *faceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
