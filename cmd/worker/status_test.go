package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

func TestStatus(t *testing.T) {
	ctx := context.Background()
	js, env, _ := dlqWithLetters(t) // 4 dead letters
	for range 3 {
		if _, err := js.Publish(ctx, models.TypeGPS.Subject(), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	// A worker holding one GPS message unacknowledged.
	c, err := js.Consumer(ctx, messaging.StreamName, messaging.ConsumerName(models.TypeGPS))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
	}
	time.Sleep(1100 * time.Millisecond) // the oldest message is a second old
	env["DATABASE_URL"] = testenv.Postgres(t)

	status := func() (int, []string, string) {
		var out, errOut bytes.Buffer
		code := runStatus(ctx, nil, func(k string) string { return env[k] }, &out, &errOut)
		return code, normalized(out.String()), errOut.String()
	}
	code, lines, errOut := status()
	if len(lines) > 3 {
		if age, err := time.ParseDuration(strings.TrimPrefix(lines[3], "gps 2 1 0 0 ")); err == nil && age >= time.Second {
			lines[3] = "gps 2 1 0 0 AGE" // the oldest message's age, at least the second slept
		}
	}
	want := []string{
		"TYPE PENDING ACK-PENDING REDELIVERED WAITING-PULLS OLDEST-UNACKED",
		"gyroscope 0 0 0 0 -",
		"gps 2 1 0 0 AGE",
		"photo 0 0 0 0 -",
	}
	if code != 0 || errOut != "" || len(lines) < 8 || !strings.HasPrefix(lines[0], "TELEMETRY 3 messages, ") || strings.Join(lines[1:5], "\n") != strings.Join(want, "\n") ||
		!strings.HasPrefix(lines[5], "dead letters 4 in TELEMETRY_DLQ, ") || !strings.HasSuffix(lines[5], "ago (worker dlq list)") ||
		lines[6] != "database reachable" {
		t.Errorf("status: exit %d, stderr %q:\n%s", code, errOut, strings.Join(lines, "\n"))
	}

	env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	if code, lines, _ := status(); code != 1 || !strings.HasPrefix(lines[6], "database unreachable: ") {
		t.Errorf("status with the database down: exit %d:\n%s", code, strings.Join(lines, "\n"))
	}
	delete(env, "DATABASE_URL")
	if code, lines, _ := status(); code != 0 || lines[6] != "database not checked (DATABASE_URL unset)" {
		t.Errorf("status without DATABASE_URL: exit %d:\n%s", code, strings.Join(lines, "\n"))
	}

	for _, args := range [][]string{{"status", "-h"}, {"status", "--help"}, {"status", "help"}, {"help", "status"}} {
		code, out, errOut := runWorkerCmd(t, nil, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "worker status: one screen") || !hasRow(out, "NATS_URL", "nats://127.0.0.1:4222") {
			t.Errorf("worker %q: exit %d, stderr %q, stdout:\n%s", args, code, errOut, out)
		}
	}
	if code, out, errOut := runWorkerCmd(t, nil, "status", "now"); code != 2 || out != "" || !strings.Contains(errOut, "usage:") {
		t.Errorf("status now: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
