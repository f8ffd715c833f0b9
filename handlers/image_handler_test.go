package handlers

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
)

// heldImages is a read store whose PhotoImage waits until released: each
// image request in progress stays in progress. Other reads go to an
// unreachable database.
type heldImages struct {
	*storage.Reader
	img     storage.SealedImage
	entered chan struct{}
	release chan struct{}
}

func (h *heldImages) PhotoImage(ctx context.Context, id uuid.UUID) (storage.SealedImage, error) {
	h.entered <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		return storage.SealedImage{}, ctx.Err()
	}
	return h.img, nil
}

func (h *heldImages) AuditPhotoViewed(context.Context, string, storage.SealedImage, map[string]any) error {
	return nil
}

// With IMAGE_MAX_INFLIGHT images being served, the next image request is
// 503 too-many-downloads + Retry-After before the database is asked; the
// ones in progress complete, and then images are served again.
func TestImageDownloadsAreBounded(t *testing.T) {
	key, err := crypto.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := crypto.NewSealer([]crypto.Key{key})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7())
	keyID, ciphertext, err := sealer.Seal(jpegFixture, id[:])
	if err != nil {
		t.Fatal(err)
	}
	const slots = 2
	store := &heldImages{
		Reader:  unreachableReader(t),
		img:     storage.SealedImage{RowID: 1, MessageID: id, DeviceID: "d", ContentType: models.ContentTypeJPEG, KeyID: keyID, Ciphertext: ciphertext},
		entered: make(chan struct{}, 8),
		release: make(chan struct{}),
	}
	s := newStackWith(t, func(c *config.API) { c.ImageMaxInFlight = slots }, Backends{Reader: store, Sealer: sealer})
	path := "/telemetry/photo/" + id.String() + "/image"
	// Let held requests go before the server closes (it waits for them).
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(store.release) }) }
	t.Cleanup(releaseAll)

	type result struct {
		status int
		body   []byte
		err    error
	}
	held := make(chan result, slots)
	for range slots {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
			req.Header.Set("X-API-Key", readSecret)
			resp, err := s.srv.Client().Do(req)
			if err != nil {
				held <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			held <- result{resp.StatusCode, b, err}
		}()
	}
	for range slots {
		select {
		case <-store.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the image requests never reached the store")
		}
	}

	// Without a bound this request would wait for the store with the others.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.srv.URL+path, nil)
	req.Header.Set("X-API-Key", readSecret)
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("a request beyond the bound was not refused: %v", err)
	}
	defer resp.Body.Close()
	p := checkProblem(t, resp, http.StatusServiceUnavailable)
	if !strings.HasSuffix(p.Type, "#too-many-downloads") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("refusal: Retry-After %q, problem %+v", resp.Header.Get("Retry-After"), p)
	}
	select {
	case <-store.entered:
		t.Error("the refused request was sent to the database")
	default:
	}

	releaseAll()
	for range slots {
		r := <-held
		if r.err != nil || r.status != http.StatusOK || !bytes.Equal(r.body, jpegFixture) {
			t.Fatalf("an image in progress: status %d, %d bytes, %v", r.status, len(r.body), r.err)
		}
	}
	resp = s.read(path)
	wantStatus(t, resp, http.StatusOK)
	<-store.entered
}
