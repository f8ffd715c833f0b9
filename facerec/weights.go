package facerec

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"path"
)

// Loading of TensorFlow.js weight files: a JSON manifest naming each tensor
// with its shape, dtype and optional quantisation, and the binary shards
// holding the tensors back to back in manifest order. face-api stores most
// tensors as uint8 with an affine (scale, min) quantisation, a few as plain
// little-endian float32.

// tensor is a dense float32 tensor in row-major order. Weight tensors keep
// the layout TensorFlow gives them: convolution filters are [h, w, in, out]
// (depthwise: [h, w, channels, 1]), fully connected weights [in, out].
type tensor struct {
	shape []int
	data  []float32
}

func (t tensor) size() int { return len(t.data) }

type manifestGroup struct {
	Paths   []string      `json:"paths"`
	Weights []weightEntry `json:"weights"`
}

type weightEntry struct {
	Name         string        `json:"name"`
	Shape        []int         `json:"shape"`
	Dtype        string        `json:"dtype"`
	Quantization *quantization `json:"quantization"`
}

type quantization struct {
	Dtype string  `json:"dtype"`
	Scale float64 `json:"scale"`
	Min   float64 `json:"min"`
}

// weightMap is a model's tensors by name.
type weightMap map[string]tensor

// loadWeights reads the manifest at manifestPath in fsys and the shards it
// names (relative to the manifest's directory) and dequantises every tensor
// to float32, as tf.io.decodeWeights does: v = q*scale + min.
func loadWeights(fsys fs.FS, dir, manifestName string) (weightMap, error) {
	raw, err := fs.ReadFile(fsys, path.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var groups []manifestGroup
	if err := json.Unmarshal(raw, &groups); err != nil {
		return nil, fmt.Errorf("%s: %w", manifestName, err)
	}
	wm := weightMap{}
	for _, g := range groups {
		var buf []byte
		for _, p := range g.Paths {
			b, err := fs.ReadFile(fsys, path.Join(dir, p))
			if err != nil {
				return nil, err
			}
			buf = append(buf, b...)
		}
		off := 0
		for _, w := range g.Weights {
			n := 1
			for _, d := range w.Shape {
				if d < 0 {
					return nil, fmt.Errorf("%s: %s: negative dimension", manifestName, w.Name)
				}
				n *= d
			}
			if w.Dtype != "float32" {
				return nil, fmt.Errorf("%s: %s: dtype %q is not supported", manifestName, w.Name, w.Dtype)
			}
			width := 4
			if q := w.Quantization; q != nil {
				switch q.Dtype {
				case "uint8":
					width = 1
				case "uint16":
					width = 2
				default:
					return nil, fmt.Errorf("%s: %s: quantisation %q is not supported", manifestName, w.Name, q.Dtype)
				}
			}
			if off+n*width > len(buf) {
				return nil, fmt.Errorf("%s: %s: shard too short (%d bytes, need %d)", manifestName, w.Name, len(buf), off+n*width)
			}
			if _, dup := wm[w.Name]; dup {
				return nil, fmt.Errorf("%s: %s: duplicate tensor", manifestName, w.Name)
			}
			data := make([]float32, n)
			b := buf[off : off+n*width]
			switch width {
			case 1:
				for i := range data {
					data[i] = float32(float64(b[i])*w.Quantization.Scale + w.Quantization.Min)
				}
			case 2:
				for i := range data {
					data[i] = float32(float64(binary.LittleEndian.Uint16(b[2*i:]))*w.Quantization.Scale + w.Quantization.Min)
				}
			case 4:
				for i := range data {
					data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
				}
			}
			off += n * width
			wm[w.Name] = tensor{shape: append([]int(nil), w.Shape...), data: data}
		}
		if off != len(buf) {
			return nil, fmt.Errorf("%s: %d bytes of shard data left over", manifestName, len(buf)-off)
		}
	}
	return wm, nil
}

// take returns the tensor name with the given shape, or an error naming
// what is missing or misshapen. A model's constructor calls it for every
// tensor it uses, so a wrong file fails at load time, not mid-inference.
func (wm weightMap) take(name string, shape ...int) (tensor, error) {
	t, ok := wm[name]
	if !ok {
		return tensor{}, fmt.Errorf("tensor %s is missing", name)
	}
	if len(t.shape) != len(shape) {
		return tensor{}, fmt.Errorf("tensor %s has shape %v, want %v", name, t.shape, shape)
	}
	for i := range shape {
		if t.shape[i] != shape[i] {
			return tensor{}, fmt.Errorf("tensor %s has shape %v, want %v", name, t.shape, shape)
		}
	}
	return t, nil
}
