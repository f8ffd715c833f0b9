package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/challenge-v3/challenge-v3/api"
	"github.com/challenge-v3/challenge-v3/config"
	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
)

// The bodies loadtest generates are the API's: against the real API on an
// embedded NATS server every request of every kind is answered 202, and the
// TELEMETRY stream holds exactly the readings the report counts.
func TestAgainstRealAPI(t *testing.T) {
	ns := testenv.NATS(t)
	const secret = "loadtest-secret-0123456789abcdef"
	env := map[string]string{
		"HTTP_ADDR":      "127.0.0.1:0",
		"ADMIN_ADDR":     "127.0.0.1:0",
		"NATS_URL":       ns.URL,
		"API_KEYS":       "loadtest:" + secret + ":ingest",
		"RATE_LIMIT_RPS": "0",
		"LOG_LEVEL":      "error",
	}
	cfg, err := config.LoadAPI(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := api.New(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("api: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the API did not stop")
		}
	})

	// -c 4: the API's default share of photo uploads per client.
	code, out, errOut := loadtest(t, "-url", "http://"+srv.Addr(), "-key", secret, "-n", "100", "-c", "4", "-json",
		"-mix", "gps=70,gyroscope=20,batch=9,photo=1", "-batch-size", "10")
	var s struct {
		OK       int64            `json:"ok"`
		Readings int64            `json:"readings"`
		Status   map[string]int64 `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || code != exitOK || errOut != "" {
		t.Fatalf("exit %d (%v)\n%s%s", code, err, out, errOut)
	}
	const readings = 70 + 20 + 9*10 + 1
	if s.OK != 100 || s.Readings != readings || s.Status["202"] != 100 {
		t.Errorf("result:\n%s", out)
	}
	_, js := testenv.JetStream(t, ns.URL)
	stream, err := js.Stream(context.Background(), messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != readings {
		t.Errorf("the stream holds %d messages, want the %d readings answered 202", info.State.Msgs, readings)
	}
}
