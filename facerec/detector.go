package facerec

import (
	"fmt"
	"io/fs"
	"math"
	"slices"
)

// The tiny face detector: face-api's TinyFaceDetector, a YOLOv2-style
// network of depthwise-separable convolutions predicting, for each cell of a
// 13×13 grid (at the default 416 px input) and each of five anchor boxes, a
// box and a face score (src/tinyYolov2/TinyYolov2Base.ts, runMobilenet and
// extractBoxes; anchors and mean colour from src/tinyFaceDetector/const.ts).

var detectorAnchors = [5][2]float64{
	{1.603231, 2.094468},
	{6.041143, 7.080126},
	{2.882459, 3.518061},
	{4.266906, 5.178857},
	{9.041765, 10.66308},
}

var detectorMeanRGB = [3]float32{117.001, 114.697, 97.404}

const (
	// detectorIOU is the overlap above which non-maximum suppression drops
	// the weaker of two boxes (face-api's IOU_THRESHOLD).
	detectorIOU = 0.4
	// DefaultInputSize is the side the image is scaled to for detection:
	// face-api's default. Smaller is faster and misses small faces.
	DefaultInputSize = 416
)

type separableParams struct {
	dw, pw, bias []float32
	pwPacked     convFilter // pw for convGemm (detector only)
}

type detector struct {
	conv0, conv0Bias []float32
	conv0Packed      convFilter
	sep              [5]separableParams // conv1..conv5
	conv8, conv8Bias []float32
	conv8Packed      convFilter
}

// paramReader takes tensors from a weight map, remembering the first error,
// so a model constructor reads as a list of its tensors.
type paramReader struct {
	wm  weightMap
	err error
}

func (r *paramReader) get(name string, shape ...int) []float32 {
	if r.err != nil {
		return nil
	}
	t, err := r.wm.take(name, shape...)
	if err != nil {
		r.err = err
		return nil
	}
	return t.data
}

func (r *paramReader) separable(prefix string, in, out int) separableParams {
	return separableParams{
		dw:   r.get(prefix+"/depthwise_filter", 3, 3, in, 1),
		pw:   r.get(prefix+"/pointwise_filter", 1, 1, in, out),
		bias: r.get(prefix+"/bias", out),
	}
}

func loadDetector(fsys fs.FS, dir string) (*detector, error) {
	wm, err := loadWeights(fsys, dir, "tiny_face_detector_model-weights_manifest.json")
	if err != nil {
		return nil, fmt.Errorf("tiny face detector: %w", err)
	}
	r := &paramReader{wm: wm}
	d := &detector{
		conv0:     r.get("conv0/filters", 3, 3, 3, 16),
		conv0Bias: r.get("conv0/bias", 16),
		conv8:     r.get("conv8/filters", 1, 1, 512, 25),
		conv8Bias: r.get("conv8/bias", 25),
	}
	sizes := []int{16, 32, 64, 128, 256, 512}
	for i := range d.sep {
		d.sep[i] = r.separable(fmt.Sprintf("conv%d", i+1), sizes[i], sizes[i+1])
	}
	if r.err != nil {
		return nil, fmt.Errorf("tiny face detector: %w", r.err)
	}
	// The detector's activations are leaky, never zero: its convolutions
	// run on register-blocked kernels (gemm.go).
	d.conv0Packed = newConvFilter(d.conv0, 3, 3, 16)
	for i := range d.sep {
		d.sep[i].pwPacked = newConvFilter(d.sep[i].pw, 1, sizes[i], sizes[i+1])
	}
	d.conv8Packed = newConvFilter(d.conv8, 1, 512, 25)
	return d, nil
}

// detection is one face box in pixels of the image it was detected in,
// with its score (the sigmoid of the network's objectness, 0–1).
type detection struct {
	box   box
	score float64
}

// detect finds faces in img, scaled to inputSize (a multiple of 32), with a
// score above minScore, after non-maximum suppression, best first.
func (d *detector) detect(img *Image, inputSize int, minScore float64) []detection {
	// toBatchTensor(inputSize, false): pad the short side at its end to a
	// square with zeros, then resize bilinearly to inputSize.
	side := max(img.w, img.h)
	x := img.squareInput(rect{w: img.w, h: img.h}, false, inputSize)
	normalise(x, detectorMeanRGB)
	out := d.forward(x)

	// extractBoxes: the reshaped dimensions correct for the padding.
	scale := float64(inputSize) / float64(side)
	rw := math.Round(float64(img.w) * scale)
	rh := math.Round(float64(img.h) * scale)
	corrX := float64(inputSize) / rw
	corrY := float64(inputSize) / rh
	cells := out.h
	var found []detection
	for row := 0; row < cells; row++ {
		for col := 0; col < cells; col++ {
			cell := out.d[(row*out.w+col)*out.c:][:out.c]
			for a, anchor := range detectorAnchors {
				v := cell[a*5:][:5]
				score := sigmoid(float64(v[4]))
				if score <= minScore {
					continue
				}
				cx := (float64(col) + sigmoid(float64(v[0]))) / float64(cells) * corrX
				cy := (float64(row) + sigmoid(float64(v[1]))) / float64(cells) * corrY
				bw := math.Exp(float64(v[2])) * anchor[0] / float64(cells) * corrX
				bh := math.Exp(float64(v[3])) * anchor[1] / float64(cells) * corrY
				// Relative to the image, then in its pixels (ObjectDetection).
				found = append(found, detection{
					box: box{
						x: (cx - bw/2) * float64(img.w),
						y: (cy - bh/2) * float64(img.h),
						w: bw * float64(img.w),
						h: bh * float64(img.h),
					},
					score: score,
				})
			}
		}
	}
	return nonMaxSuppression(found, detectorIOU)
}

func (d *detector) forward(x fmap) fmap {
	out := leaky(convGemm(x, d.conv0Packed, d.conv0Bias, 1, valid(x.h, x.w, 3, 1)))
	for _, p := range d.sep {
		out = maxPool(out, 2, 2, same(out.h, out.w, 2, 2))
		dw := depthwise(out, p.dw, 3, 1, explicit(out.h, out.w, 3, 1, 1))
		out = leaky(convGemm(dw, p.pwPacked, p.bias, 1, valid(dw.h, dw.w, 1, 1)))
	}
	// A stride-1 pooling keeps the grid (13×13 at 416 px).
	out = maxPool(out, 2, 1, same(out.h, out.w, 2, 1))
	return convGemm(out, d.conv8Packed, d.conv8Bias, 1, valid(out.h, out.w, 1, 1))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// nonMaxSuppression keeps the best-scoring boxes, dropping any box that
// overlaps a kept one by more than iou (face-api's ops/nonMaxSuppression).
func nonMaxSuppression(dets []detection, iou float64) []detection {
	slices.SortStableFunc(dets, func(a, b detection) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	var kept []detection
	for _, d := range dets {
		keep := true
		for _, k := range kept {
			if k.box.iou(d.box) > iou {
				keep = false
				break
			}
		}
		if keep {
			kept = append(kept, d)
		}
	}
	return kept
}
