package loadgen

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// The engine's own cost: loadgen's closed loop against a plain loop over the
// same client, on the same bare server. Compare the ns/op of the two.
func BenchmarkClosedLoop(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	body := []byte(`{"device_id":"loadtest-0001","timestamp":"2026-12-01T10:00:00Z","latitude":-23.5,"longitude":-46.6}`)
	header := http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {"k"}}
	const c = 32
	b.Run("loadgen", func(b *testing.B) {
		b.ReportAllocs()
		res, err := Run(context.Background(), Config{BaseURL: srv.URL, Concurrency: c, N: int64(b.N),
			Source: func(int64) Request { return Request{Path: "/telemetry/gps", Header: header, Body: body} }})
		if err != nil || res.OK != int64(b.N) {
			b.Fatalf("%v %+v", err, res)
		}
	})
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		client := newClient(c)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				for next.Add(1) <= int64(b.N) {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/telemetry/gps", bytes.NewReader(body))
					req.Header = header
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	})
}
