package uuidv7

import (
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// An id is a version 7, RFC 9562 variant UUID whose timestamp is the
// millisecond it was made in, and it survives the text round trip every
// client and the database put it through.
func TestNewIsAUUIDv7OfNow(t *testing.T) {
	for range 1000 {
		before := time.Now().UnixMilli()
		id := New()
		after := time.Now().UnixMilli()
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d, variant %s", id, id.Version(), id.Variant())
		}
		sec, nsec := id.Time().UnixTime()
		ms := sec*1000 + nsec/1e6
		if ms < before || ms > after {
			t.Fatalf("%s: timestamp %d ms, made between %d and %d", id, ms, before, after)
		}
		back, err := uuid.Parse(id.String())
		if err != nil || back != id {
			t.Fatalf("%s: parsed back as %s, %v", id, back, err)
		}
	}
}

func TestAtEncodesTheMillisecond(t *testing.T) {
	at := time.Date(2026, 12, 1, 19, 53, 40, 123_456_789, time.UTC)
	id := At(at)
	sec, nsec := id.Time().UnixTime()
	if got := time.Unix(sec, nsec).UTC(); !got.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("%s: time %s, want %s", id, got, at.Truncate(time.Millisecond))
	}
	if id := At(time.Unix(-5, 0)); id[0]|id[1]|id[2]|id[3]|id[4]|id[5] != 0 {
		t.Fatalf("a time before the epoch: %s, want the epoch's timestamp", id)
	}
}

// Ids made at once from many goroutines, most in the same millisecond,
// are all different: the random bits, not a lock, keep them apart.
func TestNewIsUniqueUnderConcurrency(t *testing.T) {
	const workers, each = 8, 25_000
	out := make([][]uuid.UUID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ids := make([]uuid.UUID, each)
			for i := range ids {
				ids[i] = New()
			}
			out[w] = ids
		})
	}
	wg.Wait()
	seen := make(map[uuid.UUID]bool, workers*each)
	for _, ids := range out {
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("%s made twice", id)
			}
			seen[id] = true
		}
	}
}

// The random bits vary: of 1,000 ids made in one millisecond's worth of
// calls, no two share their last 8 bytes.
func TestRandomBitsVary(t *testing.T) {
	at := time.Now()
	seen := map[[8]byte]bool{}
	for range 1000 {
		id := At(at)
		var tail [8]byte
		copy(tail[:], id[8:])
		if seen[tail] {
			t.Fatalf("random bits repeated: %x", tail)
		}
		seen[tail] = true
	}
}

func BenchmarkNew(b *testing.B) {
	b.Run("uuidv7.New", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = New()
			}
		})
	})
	b.Run("google-uuid.NewV7", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = uuid.Must(uuid.NewV7())
			}
		})
	})
}
