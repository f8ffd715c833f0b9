package rekognitionlocal

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/challenge-v3/challenge-v3/facerec"
)

// The analyses of recent images, by the SHA-256 of their bytes. The worker
// sends a new photo twice (SearchFacesByImage finds no match, then
// IndexFaces) and a faceless one twice (SearchFacesByImage, then
// DetectFaces); remembering the first analysis halves the cost of both. Only
// results are kept (boxes, landmarks, descriptors: about 2 KB a face), never
// the pixels.

const recentAnalyses = 32

// analysis is what is known of one image: its size and faces, largest
// first, and the details of those described so far.
type analysis struct {
	w, h  int
	faces []facerec.Face

	mu      sync.Mutex
	details map[int]detailResult
}

type detailResult struct {
	detail facerec.Detail
	err    error
}

type analysisCache struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*analysis
	order [][sha256.Size]byte // oldest first
}

func (c *analysisCache) get(key [sha256.Size]byte) *analysis {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func (c *analysisCache) put(key [sha256.Size]byte, a *analysis) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byKey == nil {
		c.byKey = map[[sha256.Size]byte]*analysis{}
	}
	if _, ok := c.byKey[key]; ok {
		return
	}
	if len(c.order) == recentAnalyses {
		delete(c.byKey, c.order[0])
		c.order = c.order[1:]
	}
	c.byKey[key] = a
	c.order = append(c.order, key)
}

// photo is one request's image: its analysis, shared with other requests
// for the same bytes, and its decoded pixels, decoded only if a face must be
// described that no earlier request described.
type photo struct {
	bytes []byte
	img   *facerec.Image
	a     *analysis
}

// look validates and analyses the request's image (detection only), or
// takes the analysis of the same bytes from the cache. Identical bytes are
// the same image, so a cached analysis needs no new validation.
func (s *Server) look(ctx context.Context, in *imageInput) (*photo, *apiError) {
	if in != nil && in.Bytes != nil && in.S3Object == nil {
		if a := s.recent.get(sha256.Sum256(in.Bytes)); a != nil {
			return &photo{bytes: in.Bytes, a: a}, nil
		}
	}
	img, aerr := decodeImage(in)
	if aerr != nil {
		return nil, aerr
	}
	p := &photo{bytes: in.Bytes, img: img}
	if aerr := s.analyse(ctx, func() {
		p.a = &analysis{w: img.Width(), h: img.Height(), faces: facerec.Largest(s.engine.Detect(img)), details: map[int]detailResult{}}
	}); aerr != nil {
		return nil, aerr
	}
	s.recent.put(sha256.Sum256(in.Bytes), p.a)
	return p, nil
}

// describe returns the landmarks and descriptor of face i of the photo
// (r.err is facerec.ErrNoDescriptor when the face cannot have one).
func (s *Server) describe(ctx context.Context, p *photo, i int) (detailResult, *apiError) {
	p.a.mu.Lock()
	r, ok := p.a.details[i]
	p.a.mu.Unlock()
	if ok {
		return r, nil
	}
	if p.img == nil {
		img, err := facerec.Decode(p.bytes, facerec.DefaultLimits)
		if err != nil { // it decoded before
			return r, errorf("InternalServerError", "image: %v", err)
		}
		p.img = img
	}
	if aerr := s.analyse(ctx, func() {
		r.detail, r.err = s.engine.Describe(p.img, p.a.faces[i])
	}); aerr != nil {
		return r, aerr
	}
	p.a.mu.Lock()
	p.a.details[i] = r
	p.a.mu.Unlock()
	return r, nil
}
