package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
)

func dlqCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runDLQ(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDLQCommandUsage(t *testing.T) {
	// No NATS is needed to refuse these, and none is reachable.
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "NATS_CONNECT_TIMEOUT": "100ms"}
	for _, args := range [][]string{
		{},
		{"purge"},
		{"list", "extra"},
		{"list", "-n", "0"},
		{"list", "-x"},
		{"replay"},
		{"replay", "-all", "3"},
		{"replay", "abc"},
		{"replay", "0"},
		{"replay", "-n", "5", "3"},
		{"replay", "-all", "-n", "0"},
	} {
		code, out, errOut := dlqCmd(t, env, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage:") || !strings.HasPrefix(errOut, "worker dlq: ") {
			t.Errorf("dlq %q: exit %d, stdout %q, stderr %q; want 2 with a message and the usage", args, code, out, errOut)
		}
	}
	if code, out, _ := dlqCmd(t, env, "list", "-h"); code != 0 || !strings.Contains(out, "usage:") {
		t.Errorf("dlq list -h: exit %d, stdout %q", code, out)
	}
	code, _, errOut := dlqCmd(t, map[string]string{"NATS_CONNECT_TIMEOUT": "soon"}, "list")
	if code != 2 || !strings.Contains(errOut, "NATS_CONNECT_TIMEOUT") {
		t.Errorf("bad NATS_CONNECT_TIMEOUT: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = dlqCmd(t, env, "list")
	if want := "worker dlq: cannot reach NATS within NATS_CONNECT_TIMEOUT (100ms): connecting to nats://127.0.0.1:1: "; code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("NATS down: exit %d, stderr %q; want 1 and %q…", code, errOut, want)
	}
}

func TestDLQCommandListAndReplay(t *testing.T) {
	ns := testenv.NATS(t)
	ctx := context.Background()
	_, js := testenv.JetStream(t, ns.URL)
	if err := messaging.EnsureTopology(ctx, js, messaging.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	// Dead letters as the worker writes them; the third names no telemetry subject.
	for i, orig := range []string{"telemetry.gps", "telemetry.photo", "somewhere.else"} {
		typ := models.Type(strings.TrimPrefix(orig, "telemetry."))
		if i == 2 {
			typ = models.TypeGPS
		}
		hdr := nats.Header{}
		hdr.Set(messaging.HeaderDLQReason, "bad\nthing "+orig)
		hdr.Set(messaging.HeaderDLQSubject, orig)
		hdr.Set(messaging.HeaderDLQStreamSequence, "7")
		hdr.Set(messaging.HeaderDLQDeliveries, "3")
		hdr.Set(messaging.HeaderDLQDeadLetteredAt, "2026-11-28T10:00:00Z")
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messaging.DLQSubject(typ), Header: hdr, Data: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"NATS_URL": ns.URL, "NATS_CONNECT_TIMEOUT": "5s", "DATABASE_URL": ""}

	code, out, errOut := dlqCmd(t, env, "list", "-n", "2")
	if code != 0 || errOut != "" {
		t.Fatalf("dlq list: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") ||
		strings.Join(strings.Fields(lines[1]), " ") != "1 2026-11-28T10:00:00Z telemetry.gps 3 7 bad thing telemetry.gps" ||
		!strings.HasPrefix(lines[2], "2 ") || lines[3] != "2 of 3 dead letters, oldest first" {
		t.Errorf("dlq list -n 2 printed:\n%s", out)
	}

	code, out, errOut = dlqCmd(t, env, "replay", "1")
	if code != 0 || out != "replayed 1 to telemetry.gps (7 bytes, was TELEMETRY sequence 7)\n" {
		t.Errorf("dlq replay 1: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = dlqCmd(t, env, "replay", "1")
	if want := "worker dlq replay: no dead letter with sequence 1 (worker dlq list shows those there are)\n" +
		"worker dlq replay: 1 of 1 not replayed\n"; code != 1 || out != "" || errOut != want {
		t.Errorf("dlq replay 1 again: exit %d, stdout %q, stderr %q; want 1 and\n%s", code, out, errOut, want)
	}
	code, _, errOut = dlqCmd(t, env, "replay", "999")
	if code != 1 || !strings.HasPrefix(errOut, "worker dlq replay: no dead letter with sequence 999 ") {
		t.Errorf("dlq replay 999: exit %d, stderr %q", code, errOut)
	}

	// -all replays what it can, reports the rest, and fails.
	code, out, errOut = dlqCmd(t, env, "replay", "-all")
	if code != 1 || out != "replayed 2 to telemetry.photo (7 bytes, was TELEMETRY sequence 7)\n" ||
		!strings.Contains(errOut, "worker dlq replay: dead letter 3 has Dlq-Original-Subject \"somewhere.else\", not a telemetry subject") ||
		!strings.Contains(errOut, "1 of 2 not replayed") {
		t.Errorf("dlq replay -all: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	s, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.Msgs != 2 {
		t.Errorf("TELEMETRY holds %d messages, want the 2 replayed", st.Msgs)
	}
	code, out, _ = dlqCmd(t, env, "list")
	if code != 0 || !strings.Contains(out, "somewhere.else") || !strings.HasSuffix(out, "1 of 1 dead letters, oldest first\n") {
		t.Errorf("dlq list after replays: exit %d:\n%s", code, out)
	}
}

func TestDLQCommandWithoutStreams(t *testing.T) {
	ns := testenv.NATS(t) // nothing has created TELEMETRY_DLQ here
	env := map[string]string{"NATS_URL": ns.URL, "NATS_CONNECT_TIMEOUT": "5s"}
	for _, args := range [][]string{{"list"}, {"replay", "5", "6"}, {"replay", "-all"}} {
		code, out, errOut := dlqCmd(t, env, args...)
		if code != 1 || out != "" || !strings.Contains(errOut, ": this NATS server has no TELEMETRY_DLQ stream; ") {
			t.Errorf("dlq %q: exit %d, stdout %q, stderr %q; want 1 and a sentence about the missing stream", args, code, out, errOut)
		}
		if len(args) == 3 && !strings.HasSuffix(errOut, "2 of 2 not replayed\n") {
			t.Errorf("dlq %q: stderr %q; want the count of what was not replayed", args, errOut)
		}
		if n := strings.Count(errOut, "TELEMETRY_DLQ"); n != 1 {
			t.Errorf("dlq %q: the missing stream is reported %d times, want once:\n%s", args, n, errOut)
		}
	}
}
