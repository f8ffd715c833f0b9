package facerec

import (
	"runtime"
	"sync"
)

// The neural-network operations the three models need, on float32 feature
// maps in height × width × channels order (TensorFlow's NHWC with a batch of
// one). Each follows the semantics of the TensorFlow.js CPU kernel it
// replaces (padding, rounding of output sizes, pooling windows), so the Go
// forward pass reproduces face-api's numbers up to float32 summation order.

// fmap is a feature map: h rows of w pixels of c channels.
type fmap struct {
	h, w, c int
	d       []float32
}

func newFmap(h, w, c int) fmap {
	return fmap{h: h, w: w, c: c, d: make([]float32, h*w*c)}
}

// padding is the number of implicit zero (or, for max pooling, ignored)
// rows and columns before the first input pixel, and the output size.
type padding struct {
	top, left int
	oh, ow    int
}

// same is TensorFlow's SAME padding for a k×k window with stride s: the
// output has ceil(in/s) pixels a side and the padding is split with the
// smaller half before.
func same(h, w, k, s int) padding {
	oh, ow := (h+s-1)/s, (w+s-1)/s
	ph := max((oh-1)*s+k-h, 0)
	pw := max((ow-1)*s+k-w, 0)
	return padding{top: ph / 2, left: pw / 2, oh: oh, ow: ow}
}

// valid is TensorFlow's VALID padding: no padding, windows fully inside.
func valid(h, w, k, s int) padding {
	return padding{oh: max((h-k)/s+1, 0), ow: max((w-k)/s+1, 0)}
}

// explicit pads p pixels on every side (tf.pad followed by a VALID op).
func explicit(h, w, k, s, p int) padding {
	return padding{top: p, left: p, oh: max((h+2*p-k)/s+1, 0), ow: max((w+2*p-k)/s+1, 0)}
}

// parallel runs fn over [0, n) split into contiguous chunks, one per CPU.
func parallel(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// move and zero are copy and clear for the kernels: the built-ins call the
// race detector even in a go:norace function.
//
//go:norace
func move(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = v
	}
}

//go:norace
func zero(dst []float32) {
	for i := range dst {
		dst[i] = 0
	}
}

// axpy adds a*x to y.
//
//go:norace
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < len(x); i++ {
		y[i] += a * x[i]
	}
}

// conv2d is a k×k convolution with filter f laid out [k, k, in, out] and an
// optional bias (nil: none).
func conv2d(x fmap, f []float32, k, oc int, bias []float32, stride int, p padding) fmap {
	out := newFmap(p.oh, p.ow, oc)
	parallel(p.oh, func(lo, hi int) { convRows(out, x, f, k, bias, stride, p, lo, hi) })
	return out
}

// convRows computes rows [lo, hi) of conv2d's output. Zero inputs are
// skipped: after a ReLU about half of them are zero, and skipping them
// changes no result.
//
// The kernels are excluded from race instrumentation (go:norace), which
// makes them 10–30× slower: each goroutine of parallel writes its own rows
// of a fresh output and only reads the input and the weights
// (TestParallelMatchesSerial), and the goroutines' start and end are still
// seen by the detector.
//
//go:norace
func convRows(out, x fmap, f []float32, k int, bias []float32, stride int, p padding, lo, hi int) {
	ic, oc := x.c, out.c
	for oy := lo; oy < hi; oy++ {
		for ox := 0; ox < p.ow; ox++ {
			o := out.d[(oy*p.ow+ox)*oc:][:oc]
			if bias != nil {
				move(o, bias)
			}
			for ky := 0; ky < k; ky++ {
				iy := oy*stride - p.top + ky
				if iy < 0 || iy >= x.h {
					continue
				}
				for kx := 0; kx < k; kx++ {
					ix := ox*stride - p.left + kx
					if ix < 0 || ix >= x.w {
						continue
					}
					in := x.d[(iy*x.w+ix)*ic:][:ic]
					wk := f[(ky*k+kx)*ic*oc:][:ic*oc]
					for i, v := range in {
						if v == 0 {
							continue
						}
						axpy(v, wk[i*oc:][:oc], o)
					}
				}
			}
		}
	}
}

// depthwise is a k×k depthwise convolution (channel multiplier 1) with
// filter f laid out [k, k, c, 1].
func depthwise(x fmap, f []float32, k, stride int, p padding) fmap {
	out := newFmap(p.oh, p.ow, x.c)
	parallel(p.oh, func(lo, hi int) { depthwiseRows(out, x, f, k, stride, p, lo, hi) })
	return out
}

//go:norace
func depthwiseRows(out, x fmap, f []float32, k, stride int, p padding, lo, hi int) {
	c := x.c
	for oy := lo; oy < hi; oy++ {
		for ox := 0; ox < p.ow; ox++ {
			o := out.d[(oy*p.ow+ox)*c:][:c]
			for ky := 0; ky < k; ky++ {
				iy := oy*stride - p.top + ky
				if iy < 0 || iy >= x.h {
					continue
				}
				for kx := 0; kx < k; kx++ {
					ix := ox*stride - p.left + kx
					if ix < 0 || ix >= x.w {
						continue
					}
					in := x.d[(iy*x.w+ix)*c:][:c]
					wk := f[(ky*k+kx)*c:][:c]
					for ch, v := range in {
						o[ch] += v * wk[ch]
					}
				}
			}
		}
	}
}

// separable is tf.separableConv2d (3×3 depthwise, then 1×1 pointwise)
// followed by the bias.
func separable(x fmap, dw, pw, bias []float32, stride int, p padding) fmap {
	return conv2d(depthwise(x, dw, 3, stride, p), pw, 1, len(bias), bias, 1, valid(p.oh, p.ow, 1, 1))
}

// maxPool is a k×k max pooling; padded positions never win.
func maxPool(x fmap, k, stride int, p padding) fmap {
	out := newFmap(p.oh, p.ow, x.c)
	parallel(p.oh, func(lo, hi int) { maxPoolRows(out, x, k, stride, p, lo, hi) })
	return out
}

//go:norace
func maxPoolRows(out, x fmap, k, stride int, p padding, lo, hi int) {
	c := x.c
	for oy := lo; oy < hi; oy++ {
		for ox := 0; ox < p.ow; ox++ {
			o := out.d[(oy*p.ow+ox)*c:][:c]
			first := true
			for ky := 0; ky < k; ky++ {
				iy := oy*stride - p.top + ky
				if iy < 0 || iy >= x.h {
					continue
				}
				for kx := 0; kx < k; kx++ {
					ix := ox*stride - p.left + kx
					if ix < 0 || ix >= x.w {
						continue
					}
					in := x.d[(iy*x.w+ix)*c:][:c]
					if first {
						move(o, in)
						first = false
						continue
					}
					for ch, v := range in {
						if v > o[ch] {
							o[ch] = v
						}
					}
				}
			}
		}
	}
}

// avgPool is a k×k VALID average pooling.
//
//go:norace
func avgPool(x fmap, k, stride int) fmap {
	p := valid(x.h, x.w, k, stride)
	c := x.c
	out := newFmap(p.oh, p.ow, c)
	inv := 1 / float32(k*k)
	for oy := 0; oy < p.oh; oy++ {
		for ox := 0; ox < p.ow; ox++ {
			o := out.d[(oy*p.ow+ox)*c:][:c]
			for ky := 0; ky < k; ky++ {
				for kx := 0; kx < k; kx++ {
					in := x.d[((oy*stride+ky)*x.w+ox*stride+kx)*c:][:c]
					for ch, v := range in {
						o[ch] += v
					}
				}
			}
			for ch := range o {
				o[ch] *= inv
			}
		}
	}
	return out
}

//go:norace
func relu(x fmap) fmap {
	for i, v := range x.d {
		if v < 0 {
			x.d[i] = 0
		}
	}
	return x
}

// leaky is face-api's leaky ReLU with slope 0.1.
//
//go:norace
func leaky(x fmap) fmap {
	for i, v := range x.d {
		if v < 0 {
			x.d[i] = 0.1 * v
		}
	}
	return x
}

// add adds y to x in place; the shapes must be equal.
//
//go:norace
func add(x, y fmap) fmap {
	yd := y.d[:len(x.d)]
	for i := range x.d {
		x.d[i] += yd[i]
	}
	return x
}

// scale multiplies every channel by mul and adds off, in place.
//
//go:norace
func scale(x fmap, mul, off []float32) fmap {
	c := x.c
	for i := 0; i < len(x.d); i += c {
		px := x.d[i : i+c]
		for ch := range px {
			px[ch] = px[ch]*mul[ch] + off[ch]
		}
	}
	return x
}
