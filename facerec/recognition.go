package facerec

import (
	"fmt"
	"io/fs"
)

// The face recognition network: face-api's FaceRecognitionNet, a port of
// dlib's ResNet (dlib_face_recognition_resnet_model_v1) mapping a 150×150
// face crop to a 128-dimensional descriptor in which faces of one person lie
// close together (src/faceRecognitionNet/FaceRecognitionNet.ts,
// residualLayer.ts, convLayer.ts, scaleLayer.ts).

const (
	recognitionInput = 150
	// DescriptorSize is the length of a face descriptor.
	DescriptorSize = 128
)

// convScale is a convolution followed by dlib's affine per-channel scale
// (its batch normalisation, folded).
type convScale struct {
	filters, bias []float32
	mul, off      []float32
	k, out        int
}

type residualParams struct{ conv1, conv2 convScale }

type recogniser struct {
	conv32Down convScale
	blocks     []residualBlock
	fc         []float32 // [256, 128]
}

type residualBlock struct {
	residualParams
	down bool
}

func loadRecogniser(fsys fs.FS, dir string) (*recogniser, error) {
	wm, err := loadWeights(fsys, dir, "face_recognition_model-weights_manifest.json")
	if err != nil {
		return nil, fmt.Errorf("recognition model: %w", err)
	}
	r := &paramReader{wm: wm}
	cs := func(prefix string, k, in, out int) convScale {
		return convScale{
			filters: r.get(prefix+"/conv/filters", k, k, in, out),
			bias:    r.get(prefix+"/conv/bias", out),
			mul:     r.get(prefix+"/scale/weights", out),
			off:     r.get(prefix+"/scale/biases", out),
			k:       k,
			out:     out,
		}
	}
	rec := &recogniser{conv32Down: cs("conv32_down", 7, 3, 32)}
	layers := []struct {
		name    string
		in, out int
		down    bool
	}{
		{"conv32_1", 32, 32, false},
		{"conv32_2", 32, 32, false},
		{"conv32_3", 32, 32, false},
		{"conv64_down", 32, 64, true},
		{"conv64_1", 64, 64, false},
		{"conv64_2", 64, 64, false},
		{"conv64_3", 64, 64, false},
		{"conv128_down", 64, 128, true},
		{"conv128_1", 128, 128, false},
		{"conv128_2", 128, 128, false},
		{"conv256_down", 128, 256, true},
		{"conv256_1", 256, 256, false},
		{"conv256_2", 256, 256, false},
		{"conv256_down_out", 256, 256, true},
	}
	for _, l := range layers {
		rec.blocks = append(rec.blocks, residualBlock{
			residualParams: residualParams{
				conv1: cs(l.name+"/conv1", 3, l.in, l.out),
				conv2: cs(l.name+"/conv2", 3, l.out, l.out),
			},
			down: l.down,
		})
	}
	rec.fc = r.get("fc", 256, DescriptorSize)
	if r.err != nil {
		return nil, fmt.Errorf("recognition model: %w", r.err)
	}
	return rec, nil
}

// apply runs the convolution with the given stride and padding, then the
// scale, then a ReLU if relu.
func (c convScale) apply(x fmap, stride int, p padding, withRelu bool) fmap {
	out := scale(conv2d(x, c.filters, c.k, c.out, c.bias, stride, p), c.mul, c.off)
	if withRelu {
		relu(out)
	}
	return out
}

// descriptor computes the 128-d descriptor of the face in crop r of img.
func (rc *recogniser) descriptor(img *Image, r rect) []float32 {
	x := img.squareInput(r, true, recognitionInput)
	normalise(x, featureMeanRGB)
	x = rc.conv32Down.apply(x, 2, valid(x.h, x.w, 7, 2), true)
	x = maxPool(x, 3, 2, valid(x.h, x.w, 3, 2))
	for _, b := range rc.blocks {
		if b.down {
			x = b.residualDown(x)
		} else {
			x = b.residual(x)
		}
	}
	// Global average pooling, then the fully connected layer (no bias).
	mean := make([]float32, x.c)
	for i := 0; i < len(x.d); i += x.c {
		for ch, v := range x.d[i : i+x.c] {
			mean[ch] += v
		}
	}
	n := float32(x.h * x.w)
	out := make([]float32, DescriptorSize)
	for ch, v := range mean {
		axpy(v/n, rc.fc[ch*DescriptorSize:][:DescriptorSize], out)
	}
	return out
}

func (b residualBlock) residual(x fmap) fmap {
	out := b.conv1.apply(x, 1, same(x.h, x.w, 3, 1), true)
	out = b.conv2.apply(out, 1, same(out.h, out.w, 3, 1), false)
	return relu(add(out, x))
}

// residualDown halves the resolution: a stride-2 VALID convolution on one
// path, a 2×2 average pooling on the shortcut, whose channels are doubled
// with zeros; when the convolution's output is a pixel short, it is padded
// with a zero row and column at the end (residualLayer.ts).
func (b residualBlock) residualDown(x fmap) fmap {
	out := b.conv1.apply(x, 2, valid(x.h, x.w, 3, 2), true)
	out = b.conv2.apply(out, 1, same(out.h, out.w, 3, 1), false)
	pooled := avgPool(x, 2, 2)
	if pooled.h != out.h || pooled.w != out.w {
		padded := newFmap(out.h+1, out.w+1, out.c)
		for y := 0; y < out.h; y++ {
			copy(padded.d[y*padded.w*out.c:][:out.w*out.c], out.d[y*out.w*out.c:][:out.w*out.c])
		}
		out = padded
	}
	// out has pooled's size now; add pooled into the first channels.
	for i := 0; i < out.h*out.w; i++ {
		o := out.d[i*out.c:][:out.c]
		p := pooled.d[i*pooled.c:][:pooled.c]
		for ch, v := range p {
			o[ch] += v
		}
	}
	return relu(out)
}
