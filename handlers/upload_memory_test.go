package handlers

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// gate holds every Publish until n of them have arrived, so that n uploads
// are in flight at once, each holding what it holds at its publish.
type gate struct {
	publisher
	cur atomic.Pointer[gateRound]
}

type gateRound struct {
	arrived chan struct{} // one send per Publish reaching the gate
	open    chan struct{} // closed to let them through
}

func (g *gate) Publish(ctx context.Context, subject, msgID string, data []byte) error {
	if r := g.cur.Load(); r != nil {
		r.arrived <- struct{}{}
		<-r.open
	}
	return g.publisher.Publish(ctx, subject, msgID, data)
}

// heapSampler records the largest heap (live objects plus garbage not yet
// swept: what the process holds between collections) until stopped.
type heapSampler struct {
	stop chan struct{}
	done chan uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan uint64, 1)}
	go func() {
		s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		for {
			rtmetrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-h.stop:
				h.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) peak() uint64 {
	close(h.stop)
	return <-h.done
}

// liveHeap is the heap reachable after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkPhotoUploadMemory sends PHOTO_MAX_INFLIGHT (default 48) photos
// of 5 MiB at once, as JSON base64 and as multipart, through the real HTTP
// server and real NATS, and holds each at its publish until all are in
// flight. It reports, per upload and as a multiple of the 5 MiB image:
//   - live-B/upload: the heap still reachable with every upload at its
//     publish (after a full GC), i.e. what an upload in flight pins;
//   - peak-B/upload: the largest heap seen while the uploads were read,
//     decoded and prepared (live + garbage between collections, default
//     GOGC), which is what the process's RSS follows.
//
// The NATS server runs in this process too, so both are measured before
// any of these messages reach it. Run with
//
//	go test ./handlers/ -run '^$' -bench PhotoUploadMemory -benchtime 3x
func BenchmarkPhotoUploadMemory(b *testing.B) {
	n := config.DefaultPhotoMaxInFlight
	g := &gate{}
	s := newStackWrapped(b, func(c *config.API) {
		c.PhotoMaxInFlight, c.PhotoPerClient = n, n // every upload comes from this one client
		c.Topology.MaxBytes = 1 << 30
		c.PublishTimeout, c.RequestTimeout, c.ShutdownTimeout = 30*time.Second, 60*time.Second, 90*time.Second
	}, Backends{}, func(p publisher) publisher { g.publisher = p; return g })
	const decoded = 5 << 20
	img := append(append([]byte{}, jpegFixture...), make([]byte, decoded-len(jpegFixture))...)
	ts := rfc(time.Now())
	jsonBody := []byte(`{"device_id":"d","timestamp":"` + ts + `","photo":"` + base64.StdEncoding.EncodeToString(img) + `"}`)
	form, formType := multipartBody(b, photoParts("d", ts, img)...)
	formBody, _ := io.ReadAll(form)
	img = nil

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	b.Cleanup(client.CloseIdleConnections)
	for _, c := range []struct {
		name, contentType string
		body              []byte
	}{{"json", "application/json", jsonBody}, {"multipart", formType, formBody}} {
		b.Run(c.name, func(b *testing.B) {
			var live, peak uint64
			for b.Loop() {
				round := &gateRound{arrived: make(chan struct{}, n), open: make(chan struct{})}
				g.cur.Store(round)
				var opened sync.Once
				openGate := func() { opened.Do(func() { close(round.open) }) }
				b.Cleanup(openGate) // a failed round must not hold the server's close
				base := liveHeap()
				sampler := sampleHeap()
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for i := range n {
					wg.Go(func() {
						req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/telemetry/photo", bytes.NewReader(c.body))
						req.Header.Set("Content-Type", c.contentType)
						req.Header.Set("X-API-Key", ingestSecret)
						req.Header.Set("Idempotency-Key", fmt.Sprintf("%s-%d-%d", c.name, time.Now().UnixNano(), i))
						resp, err := client.Do(req)
						if err != nil {
							errs <- err
							return
						}
						defer resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							body, _ := io.ReadAll(resp.Body)
							errs <- fmt.Errorf("status %d: %s", resp.StatusCode, body)
						}
					})
				}
				for range n {
					select {
					case <-round.arrived:
					case err := <-errs:
						b.Fatal(err)
					}
				}
				p := sampler.peak()
				l := liveHeap()
				openGate()
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				g.cur.Store(nil)
				live = max(live, (l-min(l, base))/uint64(n))
				peak = max(peak, (p-min(p, base))/uint64(n))
				purge(b, s)
			}
			b.ReportMetric(float64(live), "live-B/upload")
			b.ReportMetric(float64(live)/decoded, "live-x-image")
			b.ReportMetric(float64(peak), "peak-B/upload")
			b.ReportMetric(float64(peak)/decoded, "peak-x-image")
		})
	}
}

// purge empties TELEMETRY between rounds.
func purge(tb testing.TB, s *stack) {
	tb.Helper()
	st, err := s.js.Stream(context.Background(), messaging.StreamName)
	if err == nil {
		err = st.Purge(context.Background())
	}
	if err != nil {
		tb.Fatal(err)
	}
}
