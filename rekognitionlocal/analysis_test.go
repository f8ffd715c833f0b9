package rekognitionlocal

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

func TestAnalysisCacheKeepsTheRecentOnes(t *testing.T) {
	var c analysisCache
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
	for i := range recentAnalyses + 5 {
		c.put(key(i), &analysis{w: i})
	}
	for i := range 5 {
		if c.get(key(i)) != nil {
			t.Errorf("analysis %d still cached after %d newer ones", i, recentAnalyses)
		}
	}
	for i := 5; i < recentAnalyses+5; i++ {
		if a := c.get(key(i)); a == nil || a.w != i {
			t.Errorf("analysis %d: %+v", i, a)
		}
	}
	c.put(key(10), &analysis{w: -1}) // the first analysis of an image stays
	if a := c.get(key(10)); a.w != 10 {
		t.Errorf("a second put replaced the analysis: %+v", a)
	}
	if len(c.order) != recentAnalyses || len(c.byKey) != recentAnalyses {
		t.Errorf("%d keys in order, %d in the map; want %d", len(c.order), len(c.byKey), recentAnalyses)
	}
}
