package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/worker"
)

// Readings are published with Nats-Msg-Id only when an Idempotency-Key
// asks for it, so exactly-once rests on the worker's unique message_id for
// every other one. Through the real API, NATS, worker and PostgreSQL: a
// message that reaches the stream twice without Nats-Msg-Id (what a
// redelivery or a replay looks like to the worker) is one row with one
// audit row; a request retried with its Idempotency-Key is one row; plain
// requests are a row each.
func TestExactlyOnceWithoutNatsMsgID(t *testing.T) {
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := storage.Migrate(ctx, db); err != nil { // before the worker, so the tables exist when counted
		t.Fatal(err)
	}
	r := start(t, testConfig(ns.URL))
	stopWorker := startWorker(t, ns.URL, dsn)
	defer stopWorker()

	// The same message twice on the stream, neither with a Nats-Msg-Id.
	js := jsFor(t, ns.URL)
	pub, err := messaging.NewPublisher(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dup := models.GPS{Meta: models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "phone", DeviceID: "truck-1",
		ReceivedAt: time.Now().UTC().Truncate(time.Microsecond), RecordedAt: time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)},
		Latitude: -23.5, Longitude: -46.6}
	data, err := models.Marshal(&dup)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := pub.Publish(ctx, models.TypeGPS.Subject(), "", data); err != nil {
			t.Fatal(err)
		}
	}

	// A request and its retry with one Idempotency-Key, and two plain
	// requests of the same reading.
	reading := gpsBody()
	accepted := func(headers ...string) string {
		t.Helper()
		resp, body := post(t, r.Addr(), "/telemetry/gps", reading, headers...)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var acc struct{ ID string }
		if err := json.Unmarshal([]byte(body), &acc); err != nil {
			t.Fatal(err)
		}
		return acc.ID
	}
	keyed, retried := accepted("Idempotency-Key", "phone-retry"), accepted("Idempotency-Key", "phone-retry")
	if keyed != retried {
		t.Fatalf("the retry got id %s, the first request %s", retried, keyed)
	}
	plain1, plain2 := accepted(), accepted()
	if plain1 == plain2 {
		t.Fatal("two plain requests got the same id")
	}

	want := map[string]int{dup.MessageID.String(): 1, keyed: 1, plain1: 1, plain2: 1}
	count := func(table string) map[string]int {
		rows, err := db.Query(ctx, `SELECT message_id::text, count(*) FROM `+table+` GROUP BY message_id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := collect(rows)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	waitFor(t, 20*time.Second, "the worker to store every reading", func() bool {
		return len(count("gps")) == len(want) && pending(t, js) == 0
	})
	for table, got := range map[string]map[string]int{"gps": count("gps"), "audit_log": count("audit_log")} {
		for id, n := range want {
			if got[id] != n {
				t.Errorf("%s: message %s has %d rows, want %d", table, id, got[id], n)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: rows for %d message ids, want %d: %v", table, len(got), len(want), got)
		}
	}
}

// collect reads (message_id, count) rows.
func collect(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close()
}) (map[string]int, error) {
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		got[id] = n
	}
	return got, rows.Err()
}

// pending is how many GPS messages the worker has not acknowledged yet.
func pending(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	c, err := js.Consumer(context.Background(), messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

// startWorker runs the real worker against natsURL and dsn until the
// returned stop is called.
func startWorker(t *testing.T, natsURL, dsn string) (stop func()) {
	t.Helper()
	key, err := crypto.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	top := messaging.DefaultTopology()
	top.MaxBytes = 64 << 20
	cfg := config.Worker{
		AdminAddr: "127.0.0.1:0", NATSURL: natsURL, NATSConnectWait: 5 * time.Second,
		DatabaseURL: dsn, EncryptionKeys: []crypto.Key{key}, FaceMatchThreshold: 90,
		RecognitionTimeout: time.Second, CacheEntries: 100, CacheTTL: time.Minute,
		BatchSize: 500, BatchLinger: 20 * time.Millisecond, PhotoConcurrency: 2,
		RetryBackoff: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond},
		Limits:       models.DefaultLimits(), Topology: top, ShutdownTimeout: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop within 30 s")
		}
	}
}
