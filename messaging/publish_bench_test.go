package messaging_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/messaging"
)

// BenchmarkPublish compares Publisher.Publish with the bare nats.go calls
// it wraps (PublishMsgAsync on a context with the same pending bound and
// ack timeout, then a select on the future), 64 publishers each awaiting
// its own ack, as the API's handlers do. The difference is what the
// wrapper costs a request: spans, the timeout bookkeeping, the options.
func BenchmarkPublish(b *testing.B) {
	const publishers = 64
	data := []byte(`{"message_id":"01938f5e-0000-7000-8000-000000000000","actor":"bench","received_at":"2026-12-01T19:53:40.123456Z","device_id":"bench-0001","recorded_at":"2026-12-01T19:53:35Z","latitude":-23.55,"longitude":-46.63}`)
	run := func(b *testing.B, publish func(ctx context.Context) error) {
		var next, failed atomic.Int64
		n := int64(b.N)
		b.ResetTimer()
		var wg sync.WaitGroup
		for range publishers {
			wg.Go(func() {
				ctx := context.Background()
				for next.Add(1) <= n {
					if publish(ctx) != nil {
						failed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			b.Fatalf("%d publishes failed", f)
		}
	}
	b.Run("Publisher", func(b *testing.B) {
		_, _, js := setup(b, messaging.DefaultTopology())
		p, err := messaging.NewPublisher(context.Background(), js, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		run(b, func(ctx context.Context) error { return p.Publish(ctx, "telemetry.gps", "", data) })
	})
	b.Run("nats.go", func(b *testing.B) {
		_, nc, _ := setup(b, messaging.DefaultTopology())
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(messaging.MaxPendingPublishes),
			jetstream.WithPublishAsyncTimeout(5*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		run(b, func(ctx context.Context) error {
			paf, err := js.PublishMsgAsync(&nats.Msg{Subject: "telemetry.gps", Data: data})
			if err != nil {
				return err
			}
			select {
			case <-paf.Ok():
				return nil
			case err := <-paf.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
}
