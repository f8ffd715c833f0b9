package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/crypto"
	"github.com/challenge-v3/challenge-v3/internal/localpg"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/storage"
	"github.com/challenge-v3/challenge-v3/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testEnv is a real NATS server and a real PostgreSQL database with the
// topology and schema in place, and a worker that tests start and stop.
type testEnv struct {
	t    *testing.T
	cfg  config.Worker
	nats *testenv.NATSServer
	nc   *nats.Conn
	js   jetstream.JetStream
	db   *pgxpool.Pool
	logs *testenv.LogBuffer
}

func newTestEnv(t *testing.T, configure ...func(*config.Worker)) *testEnv {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	key, err := crypto.GenerateKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	port, err := localpg.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	topo := messaging.DefaultTopology()
	topo.AckWait = 5 * time.Second
	topo.MaxDeliver = 5
	cfg := config.Worker{
		AdminAddr:          "127.0.0.1:" + strconv.Itoa(port),
		NATSURL:            ns.URL,
		NATSConnectWait:    5 * time.Second,
		DatabaseURL:        dsn,
		EncryptionKeys:     []crypto.Key{key},
		FaceMatchThreshold: 90,
		RecognitionTimeout: time.Second,
		CacheEntries:       100,
		CacheTTL:           time.Minute,
		BatchSize:          500,
		BatchLinger:        20 * time.Millisecond,
		PhotoConcurrency:   2,
		RetryBackoff:       []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
		Limits:             models.DefaultLimits(),
		Topology:           topo,
		LogLevel:           slog.LevelDebug,
		ShutdownTimeout:    5 * time.Second,
	}
	for _, f := range configure {
		f(&cfg)
	}
	e := &testEnv{t: t, cfg: cfg, nats: ns, logs: &testenv.LogBuffer{}}
	ctx := context.Background()
	// The API creates the topology when it starts first; readings can then
	// wait in the stream for a worker.
	e.nc, e.js = testenv.JetStream(t, ns.URL)
	if err := messaging.EnsureTopology(ctx, e.js, cfg.Topology); err != nil {
		t.Fatal(err)
	}
	if e.db, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.db.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", e.logs.String())
		}
	})
	return e
}

// start runs a worker until the returned stop is called (or the test ends);
// stop returns Run's error.
func (e *testEnv) start(opts worker.Options) (stop func() error) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: e.cfg.LogLevel}))
	go func() { done <- worker.RunWith(ctx, e.cfg, log, opts) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = fmt.Errorf("worker did not stop within 30 s")
			}
		})
		return runErr
	}
	e.t.Cleanup(func() {
		if err := stop(); err != nil {
			e.t.Errorf("worker: %v", err)
		}
	})
	e.waitFor(10*time.Second, "worker ready", func() bool {
		select {
		case err := <-done:
			e.t.Fatalf("worker stopped at start-up: %v", err)
		default:
		}
		resp, err := http.Get("http://" + e.cfg.AdminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return stop
}

func (e *testEnv) waitFor(timeout time.Duration, what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publish sends a message the way the API does: the JSON wire form, with the
// message id as Nats-Msg-Id.
func (e *testEnv) publish(t models.Type, v any) {
	e.t.Helper()
	data, err := models.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	e.publishRaw(t.Subject(), messageID(v).String(), data)
}

func (e *testEnv) publishRaw(subject, msgID string, data []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data,
		Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}); err != nil {
		e.t.Fatal(err)
	}
}

func messageID(v any) uuid.UUID {
	switch m := v.(type) {
	case models.GPS:
		return m.MessageID
	case models.Gyroscope:
		return m.MessageID
	case models.Photo:
		return m.MessageID
	}
	panic(fmt.Sprintf("no message id in %T", v))
}

func (e *testEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// orphans counts data rows without exactly their audit row, and audit rows
// without their data row.
func (e *testEnv) orphans() int {
	e.t.Helper()
	n := 0
	for _, table := range []string{"gps", "gyroscope", "photo"} {
		n += e.count(fmt.Sprintf(`SELECT count(*) FROM %[1]s d
			LEFT JOIN audit_log a ON a.message_id = d.message_id AND a.action = '%[1]s.stored'
			WHERE a.id IS NULL OR a.resource_id <> d.id::text`, table))
		n += e.count(fmt.Sprintf(`SELECT count(*) FROM audit_log a LEFT JOIN %[1]s d USING (message_id)
			WHERE a.action = '%[1]s.stored' AND d.id IS NULL`, table))
	}
	return n
}

func (e *testEnv) consumerInfo(t models.Type) *jetstream.ConsumerInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(t))
	if err != nil {
		e.t.Fatal(err)
	}
	return c.CachedInfo()
}

// drained reports whether the consumer has nothing left to deliver or to
// be acknowledged.
func (e *testEnv) drained(t models.Type) bool {
	info := e.consumerInfo(t)
	return info.NumPending == 0 && info.NumAckPending == 0
}

// deadLetters reads every message in TELEMETRY_DLQ.
func (e *testEnv) deadLetters() []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, messaging.DLQStreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := s.CachedInfo().State.FirstSeq; seq > 0 && seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m)
		}
	}
	return out
}

func (e *testEnv) streamMsgs() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// metric reads one sample from the worker's /metrics, e.g.
// metric(`worker_messages_total{outcome="stored",type="gps"}`).
func (e *testEnv) metric(series string) float64 {
	e.t.Helper()
	resp, err := http.Get("http://" + e.cfg.AdminAddr + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return f
		}
	}
	e.t.Fatalf("metric %s not found", series)
	return 0
}

func (e *testEnv) sealer(keys ...crypto.Key) *crypto.Sealer {
	e.t.Helper()
	if len(keys) == 0 {
		keys = e.cfg.EncryptionKeys
	}
	s, err := crypto.NewSealer(keys)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *testEnv) photoRow(id uuid.UUID) storage.Photo {
	e.t.Helper()
	st, err := storage.Open(context.Background(), e.cfg.DatabaseURL)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	p, err := st.GetPhoto(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// Readings as the API builds them.

func meta(device string) models.Meta {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return models.Meta{MessageID: uuid.Must(uuid.NewV7()), Actor: "fleet-app", ReceivedAt: now,
		DeviceID: device, RecordedAt: now.Add(-2 * time.Second)}
}

func gpsReading(lat, lon float64) models.GPS {
	return models.GPS{Meta: meta("00:0a:95:9d:68:16"), Latitude: lat, Longitude: lon}
}

func gyroReading(x, y, z float64) models.Gyroscope {
	return models.Gyroscope{Meta: meta("00:0a:95:9d:68:17"), X: x, Y: y, Z: z}
}

func photoReading(img []byte) models.Photo {
	ct, err := models.SniffImage(img, models.DefaultLimits().MaxPhotoBytes)
	if err != nil {
		panic(err)
	}
	return models.Photo{Meta: meta("device-42"), ContentType: ct, Image: img}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
