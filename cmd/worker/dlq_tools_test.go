package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/challenge-v3/challenge-v3/internal/testenv"
	"github.com/challenge-v3/challenge-v3/messaging"
	"github.com/challenge-v3/challenge-v3/models"
	"github.com/challenge-v3/challenge-v3/worker"
)

// deadLetter publishes a dead letter as the worker writes it and returns
// its body's message id.
func deadLetter(t *testing.T, js jetstream.JetStream, typ models.Type, reason string, at time.Time, body string) {
	t.Helper()
	hdr := nats.Header{}
	hdr.Set(messaging.HeaderDLQReason, reason)
	hdr.Set(messaging.HeaderDLQSubject, typ.Subject())
	hdr.Set(messaging.HeaderDLQStreamSequence, "7")
	hdr.Set(messaging.HeaderDLQDeliveries, "3")
	hdr.Set(messaging.HeaderDLQDeadLetteredAt, at.UTC().Format(time.RFC3339Nano))
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: messaging.DLQSubject(typ), Header: hdr, Data: []byte(body)}); err != nil {
		t.Fatal(err)
	}
}

func dlqWithLetters(t *testing.T) (jetstream.JetStream, map[string]string, []string) {
	t.Helper()
	ns := testenv.NATS(t)
	_, js := testenv.JetStream(t, ns.URL)
	if err := messaging.EnsureTopology(context.Background(), js, messaging.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	img := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n0123456789"))
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	deadLetter(t, js, models.TypeGPS, "storing: latitude 91 out of range", now.Add(-5*time.Hour),
		`{"message_id":"`+ids[0]+`","device_id":"d1","latitude":91,"longitude":2}`)
	deadLetter(t, js, models.TypePhoto, "Rekognition InvalidImageFormat", now.Add(-3*time.Hour),
		`{"message_id":"`+ids[1]+`","device_id":"d1","content_type":"image/png","image":"`+img+`"}`)
	deadLetter(t, js, models.TypeGPS, "exhausted 10 deliveries: LOCK timeout", now.Add(-1*time.Hour),
		`{"message_id":"`+ids[2]+`","device_id":"d2","latitude":1,"longitude":2}`)
	deadLetter(t, js, models.TypeGyroscope, "exhausted 10 deliveries: lock timeout", now.Add(-30*time.Minute),
		`{"message_id":"`+ids[3]+`","device_id":"d3","x":1,"y":2,"z":3}`)
	return js, map[string]string{"NATS_URL": ns.URL, "NATS_CONNECT_TIMEOUT": "5s"}, ids
}

// seqsReplayed is the first three words of each line of out.
func seqsReplayed(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			lines = append(lines, strings.Join(f[:4], " "))
		} else {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// normalized is out's lines with their spacing collapsed.
func normalized(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// seqsOf reads the SEQ column of a dlq list table.
func seqsOf(out string) string {
	var seqs []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[0] != "SEQ" && !strings.Contains(l, "dead letters") {
			seqs = append(seqs, f[0])
		}
	}
	return strings.Join(seqs, ",")
}

func TestDLQListFilters(t *testing.T) {
	_, env, _ := dlqWithLetters(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list"}, "1,2,3,4"},
		{[]string{"list", "-type", "gps"}, "1,3"},
		{[]string{"list", "-reason", "Lock Timeout"}, "3,4"},
		{[]string{"list", "-type", "gps", "-reason", "lock"}, "3"},
		{[]string{"list", "-since", "2h"}, "3,4"},
		{[]string{"list", "-since", "4h ago", "-until", "45m"}, "2,3"},
		{[]string{"list", "-until", time.Now().Add(-4 * time.Hour).UTC().Format(time.RFC3339)}, "1"},
		{[]string{"list", "-type", "photo", "-n", "5"}, "2"},
		{[]string{"list", "-reason", "nothing like it"}, ""},
	} {
		code, out, errOut := dlqCmd(t, env, tt.args...)
		if code != 0 || errOut != "" || seqsOf(out) != tt.want {
			t.Errorf("dlq %q: exit %d, stderr %q, listed %q, want %q:\n%s", tt.args, code, errOut, seqsOf(out), tt.want, out)
		}
	}
	if _, out, _ := dlqCmd(t, env, "list", "-type", "gps"); !strings.HasSuffix(out, "2 matching of 4 dead letters, oldest first\n") {
		t.Errorf("filtered list footer:\n%s", out)
	}
	for _, args := range [][]string{
		{"list", "-type", "lidar"},
		{"list", "-since", "yesterday"},
		{"list", "-since", "1h", "-until", "2h"},
		{"show"},
		{"show", "x"},
		{"show", "1", "2"},
		{"replay", "-type", "gps", "3"},
		{"replay", "-all", "-type", "gps"},
		{"purge"},
		{"purge", "-all", "-n", "0"},
		{"replay", "-yes", "1"},
	} {
		code, out, errOut := dlqCmd(t, env, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "worker dlq: ") || !strings.Contains(errOut, "usage:") {
			t.Errorf("dlq %q: exit %d, stdout %q, stderr %q; want 2 with a sentence and the usage", args, code, out, errOut)
		}
	}
}

func TestDLQShow(t *testing.T) {
	_, env, ids := dlqWithLetters(t)
	code, out, errOut := dlqCmd(t, env, "show", "2")
	if code != 0 || errOut != "" {
		t.Fatalf("dlq show 2: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"sequence 2", "subject dlq.telemetry.photo",
		"reason Rekognition InvalidImageFormat", "original subject telemetry.photo",
		"original sequence 7", "deliveries 3",
		"Dlq-Delivery-Count 3",
		"message_id \"" + ids[1] + "\"",
		"content_type \"image/png\"",
		"image (elided: image/png, 18 bytes)",
	} {
		if !slices.Contains(normalized(out), want) {
			t.Errorf("dlq show 2 lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "iVBOR") {
		t.Errorf("dlq show printed the image:\n%s", out)
	}
	code, out, errOut = dlqCmd(t, env, "show", "1")
	if code != 0 || !slices.Contains(normalized(out), "latitude 91") {
		t.Errorf("dlq show 1: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	code, _, errOut = dlqCmd(t, env, "show", "99")
	if code != 1 || errOut != "worker dlq show: no dead letter with sequence 99 (worker dlq list shows those there are)\n" {
		t.Errorf("dlq show 99: exit %d, stderr %q", code, errOut)
	}
}

func TestDLQReplayAndPurgeAreAudited(t *testing.T) {
	js, env, ids := dlqWithLetters(t)
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	if err := worker.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	env["DATABASE_URL"] = dsn

	// purge without -yes shows and deletes nothing.
	code, out, errOut := dlqCmd(t, env, "purge", "-type", "gps")
	if code != 2 || seqsOf(out) != "1,3" || !strings.Contains(errOut, "would purge these 2 dead letters; nothing was deleted. Run it again with -yes") {
		t.Errorf("purge without -yes: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = dlqCmd(t, env, "purge", "-actor", "ops-anna", "4")
	if code != 2 || seqsOf(out) != "4" {
		t.Errorf("purge 4 without -yes: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = dlqCmd(t, env, "replay", "-reason", "lock timeout", "-actor", "ops-anna")
	if code != 0 || seqsReplayed(out) != "replayed 3 to telemetry.gps; replayed 4 to telemetry.gyroscope" ||
		strings.Count(errOut, `msg="dead letter replayed"`) != 2 || !strings.Contains(errOut, "actor=ops-anna audited=true") {
		t.Errorf("replay by filter: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = dlqCmd(t, env, "purge", "-all", "-yes", "-actor", "ops-anna")
	if code != 0 || seqsReplayed(out) != "purged 1 (telemetry.gps, 98; purged 2 (telemetry.photo, 132" ||
		strings.Count(errOut, `msg="dead letter purged"`) != 2 {
		t.Errorf("purge -all -yes: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ := dlqCmd(t, env, "list"); code != 0 || !strings.HasSuffix(out, "0 of 0 dead letters, oldest first\n") {
		t.Errorf("after purge: exit %d:\n%s", code, out)
	}

	// TELEMETRY holds the replays, each body (and so message_id) unchanged.
	s, err := js.Stream(ctx, messaging.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for i, seq := range []uint64{1, 2} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil || !strings.Contains(string(m.Data), ids[2+i]) {
			t.Errorf("TELEMETRY %d: %v %s", seq, err, m.Data)
		}
	}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT actor, action, resource, resource_id, details->>'message_id', details->>'type'
		FROM audit_log ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var a, b, c, d, e, f string
		err := r.Scan(&a, &b, &c, &d, &e, &f)
		return strings.Join([]string{a, b, c, d, e, f}, " "), err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ops-anna message.replayed dead_letter 3 " + ids[2] + " gps",
		"ops-anna message.replayed dead_letter 4 " + ids[3] + " gyroscope",
		"ops-anna message.purged dead_letter 1 " + ids[0] + " gps",
		"ops-anna message.purged dead_letter 2 " + ids[1] + " photo",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit_log:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An unreachable database stops the command before it does anything.
	deadLetter(t, js, models.TypeGPS, "x", time.Now(), `{}`)
	env["DATABASE_URL"] = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"
	code, out, errOut = dlqCmd(t, env, "replay", "-all", "-actor", "x")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "worker dlq replay: cannot reach PostgreSQL (DATABASE_URL) to audit it, so nothing was done;") {
		t.Errorf("replay with the database down: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
