package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// testVariant starts one variant on its own embedded NATS server with the
// project's topology and returns its URL and a JetStream context on the
// same server.
func testVariant(tb testing.TB, name string) (string, jetstream.JetStream) {
	tb.Helper()
	env, err := NewEnv(Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(env.Close)
	ctx := context.Background()
	v, js, err := startVariant(ctx, env, name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.stop)
	return v.URL, js
}

func streamMsgs(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	st, err := js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}

// Every variant answers a GPS reading with 202 and, except the bare one,
// has it on the stream by then; an invalid body is refused.
func TestVariantsAnswerAndStore(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			url, js := testVariant(t, name)
			post := func(body []byte) int {
				req, _ := http.NewRequest(http.MethodPost, url+"/telemetry/gps", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-API-Key", benchKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode == http.StatusAccepted && !strings.Contains(string(b), `"status":"accepted"`) {
					t.Errorf("202 body %s", b)
				}
				return resp.StatusCode
			}
			bodies := gpsBodies(3)
			for _, b := range bodies {
				if got := post(b); got != http.StatusAccepted {
					t.Fatalf("status %d, want 202", got)
				}
			}
			want := uint64(len(bodies))
			if name == variantBare {
				want = 0
			}
			if got := streamMsgs(t, js); got != want {
				t.Errorf("%d messages on the stream, want %d", got, want)
			}
			if got := post([]byte(`{"device_id":"x","latitude":91}`)); got != http.StatusBadRequest {
				t.Errorf("invalid body: status %d, want 400", got)
			}
		})
	}
}

// BenchmarkVariants drives each variant with 64 keep-alive connections in
// a closed loop, for profiling one of them:
//
//	go test ./internal/bench -run '^$' -bench 'Variants/this_API' -benchtime 100000x -cpuprofile cpu.out
func BenchmarkVariants(b *testing.B) {
	for _, name := range variants {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			url, _ := testVariant(b, name)
			bodies := gpsBodies(1024)
			tr := &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			var next atomic.Int64
			var failed atomic.Int64
			n := int64(b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= n {
							return
						}
						req, _ := http.NewRequest(http.MethodPost, url+"/telemetry/gps", bytes.NewReader(bodies[i%int64(len(bodies))]))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("X-API-Key", benchKey)
						resp, err := client.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d of %d requests failed", f, n)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
