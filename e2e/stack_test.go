package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/rekognition"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/openapitest"
	"github.com/challenge-v3/challenge-v3/internal/rekognitionfake"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/services"
	"github.com/challenge-v3/challenge-v3/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	apiSecret   = "e2e-secret-0123456789abcdef"
	collection  = "fleet-faces"
	testKeyB64  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	fetchWindow = 20 * time.Second
)

// stack is one running system.
type stack struct {
	t      *testing.T
	nats   *testenv.NATSServer
	dsn    string
	db     *pgxpool.Pool
	js     jetstream.JetStream
	fake   *rekognitionfake.Server
	apiURL string
	env    map[string]string
	worker func()             // stops the worker started last
	logs   *testenv.LogBuffer // everything the API and the workers logged, scanned by noSecretsLogged
	photos []string           // base64 of every photo posted, for the same scan
}

// newStack starts NATS, PostgreSQL, the Rekognition emulator and the API.
// The worker is started by startWorker, so tests can accept readings while
// it is down. extra overrides environment variables of both binaries.
func newStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, nats: testenv.NATS(t), dsn: extra["DATABASE_URL"], fake: rekognitionfake.New(),
		logs: &testenv.LogBuffer{}}
	// Registered first, so it runs last: after the API and every worker stopped.
	t.Cleanup(s.noSecretsLogged)
	if s.dsn == "" {
		s.dsn = testenv.Postgres(t)
	}
	t.Cleanup(s.fake.Close)
	s.env = map[string]string{
		"HTTP_ADDR":                 "127.0.0.1:0",
		"ADMIN_ADDR":                "127.0.0.1:0",
		"NATS_URL":                  s.nats.URL,
		"API_KEYS":                  "phones:" + apiSecret + ":ingest+read",
		"RATE_LIMIT_RPS":            "0",
		"DATABASE_URL":              s.dsn,
		"ENCRYPTION_KEY":            testKeyB64,
		"REKOGNITION_COLLECTION_ID": collection,
		"RETRY_BACKOFF":             "50ms,100ms,200ms",
		"BATCH_LINGER":              "10ms",
		"LOG_LEVEL":                 "error",
	}
	for k, v := range extra {
		s.env[k] = v
	}
	getenv := func(k string) string { return s.env[k] }

	cfg, err := config.LoadAPI(getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := api.New(ctx, cfg, s.logger())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("api: %v", err)
		}
	})
	s.apiURL = "http://" + srv.Addr()

	_, s.js = testenv.JetStream(t, s.nats.URL)
	if s.db, err = pgxpool.New(context.Background(), s.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.db.Close)
	return s
}

// startWorker runs the worker in-process, with its Rekognition client
// pointed at the emulator through the standard endpoint override.
func (s *stack) startWorker() {
	s.t.Helper()
	cfg, err := config.LoadWorker(func(k string) string { return s.env[k] })
	if err != nil {
		s.t.Fatal(err)
	}
	client := rekognition.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("e2e", "e2e", ""),
		Retryer: func() aws.Retryer {
			return services.NewRetryer(func(o *retry.StandardOptions) {
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}, func(o *rekognition.Options) { o.BaseEndpoint = aws.String(s.fake.URL) })

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- worker.RunWith(ctx, cfg, s.logger(), worker.Options{Rekognition: client}) }()
	stopped := false
	s.worker = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-errc; err != nil {
			s.t.Errorf("worker: %v", err)
		}
	}
	s.t.Cleanup(s.worker)
}

func (s *stack) stopWorker() { s.worker() }

func quietLog() *slog.Logger {
	if os.Getenv("E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// post sends a JSON body and returns the status and decoded answer.
func (s *stack) post(path string, body any, hdr map[string]string) (int, map[string]any) {
	s.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			s.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, s.apiURL+path, bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", apiSecret)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return s.do(req)
}

func (s *stack) postMultipart(deviceID, timestamp string, img []byte) (int, map[string]any) {
	s.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("device_id", deviceID)
	_ = mw.WriteField("timestamp", timestamp)
	fw, err := mw.CreateFormFile("photo", "photo.bin")
	if err != nil {
		s.t.Fatal(err)
	}
	_, _ = fw.Write(img)
	_ = mw.Close()
	req, err := http.NewRequest(http.MethodPost, s.apiURL+"/telemetry/photo", &buf)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-API-Key", apiSecret)
	return s.do(req)
}

func (s *stack) do(req *http.Request) (int, map[string]any) {
	s.t.Helper()
	resp, err := openapitest.Client(s.t).Do(req) // every exchange checked against the OpenAPI document
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// accept posts and insists on 202, returning the message id.
func (s *stack) accept(path string, body any) string {
	s.t.Helper()
	status, out := s.post(path, body, nil)
	if status != http.StatusAccepted {
		s.t.Fatalf("POST %s = %d %v, want 202", path, status, out)
	}
	id, _ := out["id"].(string)
	if id == "" || out["status"] != "accepted" {
		s.t.Fatalf("POST %s answer %v", path, out)
	}
	return id
}

// eventually polls cond until it holds or the window ends.
func (s *stack) eventually(what string, cond func() (bool, string)) {
	s.t.Helper()
	deadline := time.Now().Add(fetchWindow)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.t.Fatalf("%s: not reached within %s (last: %s)", what, fetchWindow, last)
}

func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		// The worker creates the schema; before it has run there is no table.
		if strings.Contains(err.Error(), "does not exist") {
			return 0
		}
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (s *stack) waitCount(want int, query string, args ...any) {
	s.t.Helper()
	s.eventually(query, func() (bool, string) {
		n := s.count(query, args...)
		return n == want, fmt.Sprintf("%d rows, want %d", n, want)
	})
}

// dlqMessages returns the dead letters of one type.
func (s *stack) dlqCount() uint64 {
	s.t.Helper()
	st, err := s.js.Stream(context.Background(), "TELEMETRY_DLQ")
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0
		}
		s.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.Msgs
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/faces/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
