package facerec

import (
	"fmt"
	"io/fs"
)

// The tiny 68-point landmark network: face-api's FaceLandmark68TinyNet, three
// dense blocks of separable convolutions on a 112×112 face crop, global
// average pooling and a fully connected layer giving 68 (x, y) pairs
// relative to the crop (src/faceFeatureExtractor/TinyFaceFeatureExtractor.ts,
// denseBlock.ts; src/faceLandmarkNet/FaceLandmark68NetBase.ts). Only the eye
// and mouth points are used, to align the face for recognition.

const landmarkInput = 112

// featureMeanRGB is the mean colour the landmark and recognition networks
// subtract.
var featureMeanRGB = [3]float32{122.782, 117.001, 104.298}

type denseBlock struct {
	conv0, conv0Bias []float32       // first block: a full 3×3 convolution
	sep0             separableParams // other blocks: a separable one
	sep1, sep2       separableParams
}

type landmarker struct {
	dense      [3]denseBlock
	fc, fcBias []float32
}

func loadLandmarker(fsys fs.FS, dir string) (*landmarker, error) {
	wm, err := loadWeights(fsys, dir, "face_landmark_68_tiny_model-weights_manifest.json")
	if err != nil {
		return nil, fmt.Errorf("landmark model: %w", err)
	}
	r := &paramReader{wm: wm}
	l := &landmarker{
		fc:     r.get("fc/weights", 128, 136),
		fcBias: r.get("fc/bias", 136),
	}
	channels := []int{3, 32, 64, 128}
	for i := range l.dense {
		p := fmt.Sprintf("dense%d", i)
		in, out := channels[i], channels[i+1]
		if i == 0 {
			l.dense[i].conv0 = r.get(p+"/conv0/filters", 3, 3, in, out)
			l.dense[i].conv0Bias = r.get(p+"/conv0/bias", out)
		} else {
			l.dense[i].sep0 = r.separable(p+"/conv0", in, out)
		}
		l.dense[i].sep1 = r.separable(p+"/conv1", out, out)
		l.dense[i].sep2 = r.separable(p+"/conv2", out, out)
	}
	if r.err != nil {
		return nil, fmt.Errorf("landmark model: %w", r.err)
	}
	return l, nil
}

// point is a position in image pixels.
type point struct{ x, y float64 }

// landmarks returns the 68 points of the face in crop r of img, in pixels
// of the crop (FaceLandmark68NetBase.postProcess, then FaceLandmarks).
func (l *landmarker) landmarks(img *Image, r rect) [68]point {
	x := img.squareInput(r, true, landmarkInput)
	normalise(x, featureMeanRGB)
	for i, b := range l.dense {
		x = b.forward(x, i == 0)
	}
	x = avgPool(x, 14, 2) // 14×14×128 → 1×1×128
	out := make([]float32, 136)
	copy(out, l.fcBias)
	for i, v := range x.d {
		axpy(v, l.fc[i*136:][:136], out)
	}

	// Undo the centred padding: positions relative to the crop.
	// The scaled dimensions and padding are computed in float64 and held in
	// float32 tensors, as in postProcess.
	const size = float32(landmarkInput)
	s := float64(landmarkInput) / float64(max(r.w, r.h))
	w64, h64 := float64(r.w)*s, float64(r.h)*s
	dw, dh := float32(w64), float32(h64)
	var padX, padY float32
	switch {
	case w64 < h64:
		padX = float32((h64 - w64) / 2)
	case h64 < w64:
		padY = float32((w64 - h64) / 2)
	}
	var pts [68]point
	for i := range pts {
		rx := (out[2*i]*size - padX) / dw
		ry := (out[2*i+1]*size - padY) / dh
		pts[i] = point{float64(rx) * float64(r.w), float64(ry) * float64(r.h)}
	}
	return pts
}

func (b *denseBlock) forward(x fmap, first bool) fmap {
	var out1 fmap
	if first {
		out1 = conv2d(x, b.conv0, 3, len(b.conv0Bias), b.conv0Bias, 2, same(x.h, x.w, 3, 2))
	} else {
		out1 = separable(x, b.sep0.dw, b.sep0.pw, b.sep0.bias, 2, same(x.h, x.w, 3, 2))
	}
	relu(out1)
	out2 := separable(out1, b.sep1.dw, b.sep1.pw, b.sep1.bias, 1, same(out1.h, out1.w, 3, 1))
	in3 := relu(add(cloneFmap(out1), out2))
	out3 := separable(in3, b.sep2.dw, b.sep2.pw, b.sep2.bias, 1, same(in3.h, in3.w, 3, 1))
	return relu(add(add(out1, out2), out3))
}

func cloneFmap(x fmap) fmap {
	return fmap{h: x.h, w: x.w, c: x.c, d: append([]float32(nil), x.d...)}
}

// normalise subtracts the mean colour and scales to about ±1, in place.
//
//go:norace
func normalise(x fmap, mean [3]float32) {
	for i := 0; i < len(x.d); i += 3 {
		x.d[i] = (x.d[i] - mean[0]) / 255
		x.d[i+1] = (x.d[i+1] - mean[1]) / 255
		x.d[i+2] = (x.d[i+2] - mean[2]) / 255
	}
}
