package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTailBufferKeepsHeadAndTail(t *testing.T) {
	var b tailBuffer
	fmt.Fprintln(&b, "api listening http_addr=127.0.0.1:4242")
	filler := strings.Repeat("x", 1000) + "\n"
	for range 200 { // 200 KB: far more than head and tail keep
		b.Write([]byte(filler))
	}
	fmt.Fprintln(&b, "api stopped")
	if !strings.HasPrefix(b.Head(), "api listening") {
		t.Errorf("head lost the first line: %.40q", b.Head())
	}
	s := b.String()
	if !strings.HasSuffix(s, "api stopped\n") || !strings.Contains(s, "[…]") {
		t.Errorf("String() = …%q, want the last line after a cut mark", s[max(0, len(s)-40):])
	}
	if len(s) > 2*tailKeep+16 {
		t.Errorf("kept %d bytes, want at most ~%d", len(s), 2*tailKeep)
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tapi\nVmPeak:\t  900000 kB\nVmRSS:\t   13244 kB\nRssAnon:\t 5000 kB\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 13244<<10 {
		t.Fatalf("parseVmRSS = %d, %v; want %d", got, err, 13244<<10)
	}
	for _, bad := range []string{"Name:\tzombie\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) succeeded", bad)
		}
	}
}

func TestSummarizeSlopeOverSecondHalf(t *testing.T) {
	// 100 MiB that grows 40 MiB/min during the first minute (warm-up), then
	// stays flat with ±1 MiB of noise for a minute.
	var xs []rssSample
	for s := 0; s <= 120; s += 5 {
		at := time.Duration(s) * time.Second
		mb := 100 + 40*min(at.Minutes(), 1)
		if s > 60 {
			mb += float64(s%10/5*2 - 1) // ±1
		}
		xs = append(xs, rssSample{at: at, rss: int64(mb * (1 << 20))})
	}
	sum := summarize(xs)
	if sum.start != 100 || sum.peak < 140 || sum.samples != len(xs) {
		t.Errorf("summary = %+v", sum)
	}
	if sum.slope < -2 || sum.slope > 2 {
		t.Errorf("slope over the flat second half = %.2f MiB/min, want ~0", sum.slope)
	}
	// A steady leak of 12 MiB/min shows whole.
	var leak []rssSample
	for s := 0; s <= 120; s += 5 {
		leak = append(leak, rssSample{at: time.Duration(s) * time.Second, rss: int64((50 + 12*float64(s)/60) * (1 << 20))})
	}
	if got := summarize(leak).slope; got < 11.9 || got > 12.1 {
		t.Errorf("slope of a 12 MiB/min leak = %.2f", got)
	}
	if got := slopePerMinute(leak[:1]); got != 0 {
		t.Errorf("slope of one sample = %v, want 0", got)
	}
}

func TestAcceptedID(t *testing.T) {
	if got := acceptedID([]byte(`{"id":"0193a5b0-7e4a-7cc2-9f3e-2b1d4c5e6f70","status":"accepted"}`)); got != "0193a5b0-7e4a-7cc2-9f3e-2b1d4c5e6f70" {
		t.Errorf("acceptedID = %q", got)
	}
	if got := acceptedID([]byte(`not json`)); got != "" {
		t.Errorf("acceptedID(garbage) = %q, want empty", got)
	}
}
