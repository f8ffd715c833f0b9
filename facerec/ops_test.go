package facerec

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func randomFmap(r *rand.Rand, h, w, c int, relu bool) fmap {
	x := newFmap(h, w, c)
	for i := range x.d {
		v := r.Float32() - 0.5
		if relu && v < 0 {
			v = 0
		}
		x.d[i] = v
	}
	return x
}

func randomWeights(r *rand.Rand, n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = r.Float32() - 0.5
	}
	return w
}

func TestPadding(t *testing.T) {
	// TensorFlow's rules: SAME keeps ceil(in/stride) with the smaller half
	// of the padding first; VALID keeps whole windows.
	tests := []struct {
		name string
		got  padding
		want padding
	}{
		{"same 3×3 stride 2 on 112", same(112, 112, 3, 2), padding{top: 0, left: 0, oh: 56, ow: 56}},
		{"same 3×3 stride 1 on 35", same(35, 35, 3, 1), padding{top: 1, left: 1, oh: 35, ow: 35}},
		{"same 2×2 stride 2 on 207", same(207, 207, 2, 2), padding{top: 0, left: 0, oh: 104, ow: 104}},
		{"same 2×2 stride 1 on 13", same(13, 13, 2, 1), padding{top: 0, left: 0, oh: 13, ow: 13}},
		{"valid 7×7 stride 2 on 150", valid(150, 150, 7, 2), padding{oh: 72, ow: 72}},
		{"valid 3×3 stride 2 on 8", valid(8, 8, 3, 2), padding{oh: 3, ow: 3}},
		{"valid window larger than input", valid(2, 2, 3, 1), padding{oh: 0, ow: 0}},
		{"explicit 1 then 3×3", explicit(13, 13, 3, 1, 1), padding{top: 1, left: 1, oh: 13, ow: 13}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

// TestParallelMatchesSerial: the kernels run without race instrumentation
// (go:norace), so this checks what the race detector would: splitting the
// rows across goroutines gives bit for bit the single-threaded result.
func TestParallelMatchesSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randomFmap(r, 23, 19, 8, true)
	f := randomWeights(r, 3*3*8*16)
	bias := randomWeights(r, 16)
	dw := randomWeights(r, 3*3*8)
	p := same(x.h, x.w, 3, 2)

	serialConv := newFmap(p.oh, p.ow, 16)
	convRows(serialConv, x, f, 3, bias, 2, p, 0, p.oh)
	serialDW := newFmap(p.oh, p.ow, 8)
	depthwiseRows(serialDW, x, dw, 3, 2, p, 0, p.oh)
	serialPool := newFmap(p.oh, p.ow, 8)
	maxPoolRows(serialPool, x, 3, 2, p, 0, p.oh)
	cf := newConvFilter(f, 3, 8, 16)
	serialGemm := newFmap(p.oh, p.ow, 16)
	convGemmRows(serialGemm, x, cf, bias, 2, p, 0, p.oh)

	for _, tc := range []struct {
		name           string
		serial, parall fmap
	}{
		{"conv2d", serialConv, conv2d(x, f, 3, 16, bias, 2, p)},
		{"depthwise", serialDW, depthwise(x, dw, 3, 2, p)},
		{"maxPool", serialPool, maxPool(x, 3, 2, p)},
		{"convGemm", serialGemm, convGemm(x, cf, bias, 2, p)},
	} {
		if !slices.Equal(tc.serial.d, tc.parall.d) {
			t.Errorf("%s: the parallel result differs from the serial one", tc.name)
		}
	}
}

// TestGemmMatchesConv: the register-blocked kernel computes the same
// convolution as the straightforward one, for odd sizes, strides, padding
// and a channel count that is not a multiple of its 4-wide panels.
func TestGemmMatchesConv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		h, w, k, ic, oc, stride int
		same                    bool
	}{
		{35, 36, 3, 32, 32, 1, true},
		{20, 21, 3, 3, 16, 1, false},
		{13, 13, 1, 64, 25, 1, false},
		{17, 15, 3, 32, 64, 2, false},
		{9, 9, 7, 3, 6, 2, true},
		{1, 1, 1, 5, 3, 1, false},
	}
	for _, tt := range tests {
		x := randomFmap(r, tt.h, tt.w, tt.ic, false)
		f := randomWeights(r, tt.k*tt.k*tt.ic*tt.oc)
		bias := randomWeights(r, tt.oc)
		p := valid(x.h, x.w, tt.k, tt.stride)
		if tt.same {
			p = same(x.h, x.w, tt.k, tt.stride)
		}
		want := conv2d(x, f, tt.k, tt.oc, bias, tt.stride, p)
		got := convGemm(x, newConvFilter(f, tt.k, tt.ic, tt.oc), bias, tt.stride, p)
		for i := range want.d {
			if d := want.d[i] - got.d[i]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("%+v: value %d is %v, want %v", tt, i, got.d[i], want.d[i])
			}
		}
	}
}
