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

// get returns the face id remembered for key ("" meaning no face) and whether
// an unexpired entry exists.
func (c *faceCache) get(key imageKey) (faceID string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return "", false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return "", false
	}
	c.order.MoveToFront(el)
	return e.faceID, true
}

// put remembers faceID for key, evicting the least recently used entry when
// the cache is full.
func (c *faceCache) put(key imageKey, faceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	expires := c.now().Add(c.ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*cacheEntry)
		e.faceID, e.expires = faceID, expires
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
	c.items[key] = c.order.PushFront(&cacheEntry{key: key, faceID: faceID, expires: expires})
}

// len reports the number of entries, expired ones not yet evicted included.
func (c *faceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
