package facerec

// A register-blocked alternative to convRows for dense inputs (no ReLU
// zeros to skip): two output pixels × four output channels per pass over
// the patch, so each loaded value feeds several multiplications.

// convFilter is a convolution filter repacked for convGemm: panels of four
// output channels, each panel k·k·in rows of 4 values.
type convFilter struct {
	k, ic, oc int
	panels    []float32
}

func newConvFilter(f []float32, k, ic, oc int) convFilter {
	kk := k * k * ic
	np := (oc + 3) / 4
	panels := make([]float32, np*kk*4)
	for j := 0; j < oc; j++ {
		p := panels[(j/4)*kk*4:]
		for r := 0; r < kk; r++ {
			p[r*4+j%4] = f[r*oc+j]
		}
	}
	return convFilter{k: k, ic: ic, oc: oc, panels: panels}
}

func convGemm(x fmap, f convFilter, bias []float32, stride int, p padding) fmap {
	out := newFmap(p.oh, p.ow, f.oc)
	parallel(p.oh, func(lo, hi int) { convGemmRows(out, x, f, bias, stride, p, lo, hi) })
	return out
}

//go:norace
func convGemmRows(out, x fmap, f convFilter, bias []float32, stride int, p padding, lo, hi int) {
	kk := f.k * f.k * f.ic
	direct := f.k == 1 && stride == 1 && p.top == 0 && p.left == 0
	var buf []float32
	if !direct {
		buf = make([]float32, 2*kk)
	}
	n := (hi - lo) * p.ow
	first := lo * p.ow
	np := (f.oc + 3) / 4
	for i := 0; i < n; i += 2 {
		p0 := first + i
		p1 := p0 + 1
		if i+1 >= n {
			p1 = -1
		}
		var a0, a1 []float32
		if direct {
			a0 = x.d[p0*f.ic:][:kk]
			if p1 >= 0 {
				a1 = x.d[p1*f.ic:][:kk]
			} else {
				a1 = a0
			}
		} else {
			a0, a1 = buf[:kk], buf[kk:2*kk]
			patch(a0, x, f.k, stride, p, p0)
			if p1 >= 0 {
				patch(a1, x, f.k, stride, p, p1)
			}
		}
		o0 := out.d[p0*f.oc:][:f.oc]
		var o1 []float32
		if p1 >= 0 {
			o1 = out.d[p1*f.oc:][:f.oc]
		}
		for j := 0; j < np; j++ {
			c := kernel2x4(a0, a1, f.panels[j*kk*4:][:kk*4])
			for jj := 0; jj < 4 && j*4+jj < f.oc; jj++ {
				ch := j*4 + jj
				var b float32
				if bias != nil {
					b = bias[ch]
				}
				o0[ch] = c[jj] + b
				if o1 != nil {
					o1[ch] = c[4+jj] + b
				}
			}
		}
	}
}

// patch copies the k×k×in input window of output pixel px into dst, with
// zeros where the window leaves the input.
//
//go:norace
func patch(dst []float32, x fmap, k, stride int, p padding, px int) {
	oy, ox := px/p.ow, px%p.ow
	ic := x.c
	for ky := 0; ky < k; ky++ {
		iy := oy*stride - p.top + ky
		row := dst[ky*k*ic:][:k*ic]
		if iy < 0 || iy >= x.h {
			zero(row)
			continue
		}
		for kx := 0; kx < k; kx++ {
			ix := ox*stride - p.left + kx
			d := row[kx*ic:][:ic]
			if ix < 0 || ix >= x.w {
				zero(d)
				continue
			}
			move(d, x.d[(iy*x.w+ix)*ic:][:ic])
		}
	}
}

//go:norace
func kernel2x4(a0, a1, b []float32) [8]float32 {
	a1 = a1[:len(a0)]
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	for i, v0 := range a0 {
		v1 := a1[i]
		bb := b[:4:4]
		c00 += v0 * bb[0]
		c01 += v0 * bb[1]
		c02 += v0 * bb[2]
		c03 += v0 * bb[3]
		c10 += v1 * bb[0]
		c11 += v1 * bb[1]
		c12 += v1 * bb[2]
		c13 += v1 * bb[3]
		b = b[4:]
	}
	return [8]float32{c00, c01, c02, c03, c10, c11, c12, c13}
}
