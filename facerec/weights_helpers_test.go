package facerec

import (
	"encoding/json"
	"os"
	"testing"
)

// manifestQuant returns the quantisation of tensor name in a manifest.
func manifestQuant(t *testing.T, path, name string) (min, scale float64) {
	t.Helper()
	for _, w := range manifestEntries(t, path) {
		if w.Name == name && w.Quantization != nil {
			return w.Quantization.Min, w.Quantization.Scale
		}
	}
	t.Fatalf("%s: no quantised tensor %s", path, name)
	return 0, 0
}

// offsetOf returns the byte offset of tensor name in its shard.
func offsetOf(t *testing.T, path, name string) int {
	t.Helper()
	off := 0
	for _, w := range manifestEntries(t, path) {
		if w.Name == name {
			return off
		}
		n := 1
		for _, d := range w.Shape {
			n *= d
		}
		width := 4
		if w.Quantization != nil {
			width = 1
		}
		off += n * width
	}
	t.Fatalf("%s: no tensor %s", path, name)
	return 0
}

func manifestEntries(t *testing.T, path string) []weightEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var groups []manifestGroup
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatal(err)
	}
	var all []weightEntry
	for _, g := range groups {
		all = append(all, g.Weights...)
	}
	return all
}
