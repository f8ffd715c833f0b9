package facerec

import "math"

// Boxes and the face alignment, following face-api's Box and FaceLandmarks
// classes (src/classes/Box.ts, FaceLandmarks.ts) including their rounding,
// so the crops handed to the networks are pixel for pixel face-api's.

// box is a rectangle in image pixels with fractional coordinates.
type box struct{ x, y, w, h float64 }

func (b box) area() float64 { return b.w * b.h }

func (b box) iou(o box) float64 {
	w := max(0, min(b.x+b.w, o.x+o.w)-max(b.x, o.x))
	h := max(0, min(b.y+b.h, o.y+o.h)-max(b.y, o.y))
	inter := w * h
	union := b.area() + o.area() - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// clip is Box.clipAtImageBorders: the part of b inside a w×h image, each
// coordinate floored. Its width or height is 0 or less when b lies outside.
func (b box) clip(w, h int) rect {
	x := max(b.x, 0)
	y := max(b.y, 0)
	cw := min(b.x+b.w-x, float64(w)-x)
	ch := min(b.y+b.h-y, float64(h)-y)
	return rect{
		x: int(math.Floor(x)),
		y: int(math.Floor(y)),
		w: int(math.Floor(cw)),
		h: int(math.Floor(ch)),
	}
}

// alignedCrop is FaceLandmarks.alignDlib: a square around the eyes and the
// mouth, sized from their distances (dlib's alignment constants), clipped
// to the image. pts are in image pixels; cropW and cropH are the size of the
// crop the landmarks were found in, which face-api (by mistake, harmlessly:
// the crop is clipped to the image afterwards) uses as the image size.
func alignedCrop(pts [68]point, cropW, cropH, imgW, imgH int) rect {
	const relX, relY, relScale = 0.5, 0.43, 0.45
	leftEye := centre(pts[36:42])
	rightEye := centre(pts[42:48])
	mouth := centre(pts[48:68])
	dist := func(p point) float64 { dx, dy := mouth.x-p.x, mouth.y-p.y; return math.Sqrt(dx*dx + dy*dy) }
	eyeToMouth := (dist(leftEye) + dist(rightEye)) / 2
	size := math.Floor(eyeToMouth / relScale)
	ref := centre([]point{leftEye, rightEye, mouth})
	x := math.Floor(max(0, ref.x-relX*size))
	y := math.Floor(max(0, ref.y-relY*size))
	r := box{x: x, y: y, w: min(size, float64(cropW)+x), h: min(size, float64(cropH)+y)}
	return r.clip(imgW, imgH)
}

func centre(pts []point) point {
	var sx, sy float64
	for _, p := range pts {
		sx += p.x
		sy += p.y
	}
	n := float64(len(pts))
	return point{sx / n, sy / n}
}
