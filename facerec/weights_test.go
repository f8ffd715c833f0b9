package facerec

import (
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadWeightsVendoredModels(t *testing.T) {
	fsys := os.DirFS("models")
	tests := []struct {
		manifest string
		bin      string
		tensors  int
		// a quantised tensor and an unquantised one, when the model has one
		quantised, plain string
	}{
		{"tiny_face_detector_model-weights_manifest.json", "tiny_face_detector_model.bin", 19, "conv0/filters", ""},
		{"face_landmark_68_tiny_model-weights_manifest.json", "face_landmark_68_tiny_model.bin", 28, "fc/weights", ""},
		{"face_recognition_model-weights_manifest.json", "face_recognition_model.bin", 117, "conv32_down/conv/filters", "conv64_down/conv1/conv/filters"},
	}
	for _, tt := range tests {
		t.Run(tt.manifest, func(t *testing.T) {
			wm, err := loadWeights(fsys, ".", tt.manifest)
			if err != nil {
				t.Fatal(err)
			}
			if len(wm) != tt.tensors {
				t.Errorf("%d tensors, want %d", len(wm), tt.tensors)
			}
			bin, err := os.ReadFile("models/" + tt.bin)
			if err != nil {
				t.Fatal(err)
			}
			// loadWeights refuses leftover bytes, so the tensors cover the
			// shard exactly; check one value of each kind by hand.
			for name, tn := range wm {
				n := 1
				for _, d := range tn.shape {
					n *= d
				}
				if n != tn.size() {
					t.Errorf("%s: %d values for shape %v", name, tn.size(), tn.shape)
				}
			}
			min, scale := manifestQuant(t, "models/"+tt.manifest, tt.quantised)
			off := offsetOf(t, "models/"+tt.manifest, tt.quantised)
			want := float32(float64(bin[off])*scale + min)
			if got := wm[tt.quantised].data[0]; got != want {
				t.Errorf("%s[0] = %v, want %v", tt.quantised, got, want)
			}
			if tt.plain != "" {
				p := wm[tt.plain]
				off := offsetOf(t, "models/"+tt.manifest, tt.plain)
				want := math.Float32frombits(binary.LittleEndian.Uint32(bin[off:]))
				if p.data[0] != want || want == 0 {
					t.Errorf("%s[0] = %v, want %v", tt.plain, p.data[0], want)
				}
			}
		})
	}
}

func TestLoadWeightsRejectsMalformedFiles(t *testing.T) {
	const manifest = `[{"paths":["w.bin"],"weights":[{"name":"a","shape":[2,2],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1}}%s]}]`
	tests := []struct {
		name, manifest, bin, want string
	}{
		{"short shard", manifest, "\x00\x01\x02", "shard too short"},
		{"leftover bytes", manifest, "\x00\x01\x02\x03\x04", "left over"},
		{"unknown quantisation", strings.Replace(manifest, `"dtype":"uint8"`, `"dtype":"float16"`, 1), "\x00\x01\x02\x03", "not supported"},
		{"duplicate", strings.Replace(manifest, "%s", `,{"name":"a","shape":[1],"dtype":"float32"}`, 1), "\x00\x01\x02\x03\x00\x00\x00\x00", "duplicate"},
		{"not json", "[", "", "unexpected end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := strings.Replace(tt.manifest, "%s", "", 1)
			fsys := fstest.MapFS{"m.json": {Data: []byte(m)}, "w.bin": {Data: []byte(tt.bin)}}
			_, err := loadWeights(fsys, ".", "m.json")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}

	fsys := fstest.MapFS{"m.json": {Data: []byte(strings.Replace(manifest, "%s", "", 1))}, "w.bin": {Data: []byte{0, 1, 2, 3}}}
	wm, err := loadWeights(fsys, ".", "m.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := wm["a"].data; got[0] != -1 || got[3] != 0.5 {
		t.Errorf("dequantised %v, want [-1 -0.5 0 0.5]", got)
	}
	if _, err := wm.take("a", 4); err == nil {
		t.Error("take with the wrong shape succeeded")
	}
	if _, err := wm.take("b", 1); err == nil {
		t.Error("take of a missing tensor succeeded")
	}
}
