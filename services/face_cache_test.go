package services

import (
	"crypto/sha256"
	"testing"
	"time"
)

func TestFaceCache(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	c := newFaceCache(2, time.Minute, func() time.Time { return now })
	a, b, d := imageKey(sha256.Sum256([]byte("a"))), imageKey(sha256.Sum256([]byte("b"))), imageKey(sha256.Sum256([]byte("d")))

	if _, ok := c.get(a); ok {
		t.Fatal("empty cache: hit")
	}
	c.put(a, cacheEntry{faceID: "face-a"})
	c.put(b, cacheEntry{faceID: ""}) // a photo without a face is remembered too
	if e, ok := c.get(a); !ok || e.faceID != "face-a" {
		t.Fatalf("get(a) = %q, %v", e.faceID, ok)
	}
	if e, ok := c.get(b); !ok || e.faceID != "" {
		t.Fatalf("get(b) = %q, %v; want a no-face hit", e.faceID, ok)
	}

	// b was used last, so a is evicted first.
	c.get(b)
	c.put(d, cacheEntry{faceID: "face-d"})
	if _, ok := c.get(a); ok {
		t.Fatal("least recently used entry survived")
	}
	if c.len() != 2 {
		t.Fatalf("len = %d, want 2", c.len())
	}

	// Updating an entry refreshes its TTL and does not grow the cache.
	now = now.Add(50 * time.Second)
	c.put(d, cacheEntry{faceID: "face-d2"})
	now = now.Add(50 * time.Second)
	if _, ok := c.get(b); ok {
		t.Fatal("entry past its TTL: hit")
	}
	if e, ok := c.get(d); !ok || e.faceID != "face-d2" {
		t.Fatalf("get(d) = %q, %v; want the refreshed entry", e.faceID, ok)
	}
	if c.len() != 1 {
		t.Fatalf("len = %d, want 1 after the expired entry was dropped", c.len())
	}
	now = now.Add(time.Minute)
	if _, ok := c.get(d); ok {
		t.Fatal("entry exactly at or past its TTL: hit")
	}
}
